//! `ivr patients import FILE.csv`: loads or updates the roster. The whole file is checked
//! first; one bad row and nothing is imported, every mistake printed at its `FILE:ROW:COL`.
//! `ivr patients purge [--dry-run]`: retention now (docs/personal-data.md).

use std::collections::HashMap;
use std::path::Path;

use super::PatientsCommand;
use super::numbers::{Result, open};
use crate::roster;
use crate::store::{ImportCount, Patient, Store};
use secrecy::ExposeSecret;

pub async fn patients(cmd: &PatientsCommand) -> Result<()> {
    match cmd {
        PatientsCommand::Import { file, config, dry_run } => import(file, config.as_deref(), *dry_run).await,
        PatientsCommand::Purge { config, dry_run } => purge(config.as_deref(), *dry_run).await,
    }
}

/// Retention now, as the server runs it daily: the calls of ended care, the staff audit log,
/// the urgent notices.
async fn purge(config: Option<&Path>, dry_run: bool) -> Result<()> {
    let (settings, store) = open(config).await?;
    let hours = settings.calling_hours();
    let now = chrono::Utc::now();
    let done = settings.retention.run(&store, hours.day_of(now), now, dry_run).await?;
    let (verb, deleted) = if dry_run { ("would empty", "would delete") } else { ("emptied", "deleted") };
    let day = |at: chrono::DateTime<chrono::Utc>| at.with_timezone(&hours.tz()).format("%Y-%m-%d %H:%M").to_string();
    match done.calls {
        Some((before, a)) => println!(
            "{verb} {} patient(s) whose care ended before {before}: {} call(s), {} answer(s), {} message(s), {} number(s)",
            a.patients, a.calls, a.answers, a.messages, a.numbers
        ),
        None => println!("retention.calls_after_care_days is 0: calls are kept"),
    }
    match done.audit {
        Some((before, n)) => println!("{deleted} {n} staff audit row(s) from before {}", day(before)),
        None => println!("retention.staff_audit_days is 0: the staff audit log is kept"),
    }
    match done.notices {
        Some((before, n)) => println!(
            "{deleted} {} urgent notice(s) of closed items and {} notice message(s) from before {}",
            n.notices,
            n.messages,
            day(before)
        ),
        None => println!("retention.urgent_notices_days is 0: urgent notices are kept"),
    }
    if dry_run {
        println!("nothing was changed (--dry-run)");
    }
    Ok(())
}

async fn import(file: &Path, config: Option<&Path>, dry_run: bool) -> Result<()> {
    if dry_run {
        return dry_import(file, config).await;
    }
    let (settings, store) = open(config).await?;
    let bytes = read_roster(file)?;
    let patients = parse(file, &settings, &bytes)?;
    let count = store.patients().import(&patients).await?;
    println!("imported {} patients ({})", patients.len(), summary(&count));
    if settings.web.send_links {
        // Patients whose care period has begun get their personal link (sent by the server's
        // outbox).
        let links = settings.link_sender();
        let now = chrono::Utc::now();
        let sent = links.send_due(&store, now.with_timezone(&links.tz).date_naive(), now).await?;
        println!("report links queued for {sent} patients whose care began");
    }
    Ok(())
}

/// Checks the file and counts what would change. Writes nothing: a database that does not
/// exist yet is not created (every patient would be new), and none is migrated.
async fn dry_import(file: &Path, config: Option<&Path>) -> Result<()> {
    let settings = crate::config::Settings::load(config)?;
    let bytes = read_roster(file)?;
    let patients = parse(file, &settings, &bytes)?;
    let url = settings.database.url.expose_secret();
    let sqlite = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
    let missing = sqlite.is_some_and(|p| p == ":memory:" || !Path::new(p.split('?').next().unwrap_or(p)).exists());
    let existing = if missing {
        Vec::new()
    } else {
        let store = Store::open(url, false).await?;
        store.patients().all().await.map_err(|e| format!("{e} (is the database migrated? `ivr migrate` does it)"))?
    };
    let count = compare(&existing, &patients);
    println!("would import {} patients ({}); nothing was changed (--dry-run)", patients.len(), summary(&count));
    Ok(())
}

fn read_roster(file: &Path) -> Result<Vec<u8>> {
    Ok(std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?)
}

/// The roster, every row checked against the slots and languages of the deployment.
fn parse(file: &Path, settings: &crate::config::Settings, bytes: &[u8]) -> Result<Vec<Patient>> {
    let languages = roster::catalogue_languages(&settings.flows.prompts_dir)
        .map_err(|e| format!("prompt catalogues in {}: {e}", settings.flows.prompts_dir.display()))?;
    let languages: Vec<&str> = languages.iter().map(String::as_str).collect();
    let hours = settings.calling_hours();
    let slots = hours.slot_names();
    match roster::parse_roster(&file.display().to_string(), bytes, &slots, &languages) {
        Ok(p) => Ok(p),
        Err(errors) => {
            eprintln!("{errors}");
            Err(format!("{} error(s) in {}; nothing was imported", errors.errors.len(), file.display()).into())
        }
    }
}

fn summary(c: &ImportCount) -> String {
    format!("{} new, {} updated, {} unchanged", c.inserted, c.updated, c.unchanged)
}

/// What importing `incoming` over `existing` would do.
fn compare(existing: &[Patient], incoming: &[Patient]) -> ImportCount {
    let existing: HashMap<&str, &Patient> = existing.iter().map(|p| (p.patient_id.as_str(), p)).collect();
    let mut count = ImportCount::default();
    for p in incoming {
        match existing.get(p.patient_id.as_str()) {
            None => count.inserted += 1,
            Some(old) if *old == p => count.unchanged += 1,
            Some(_) => count.updated += 1,
        }
    }
    count
}
