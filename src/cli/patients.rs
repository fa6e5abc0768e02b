//! `ivr patients import FILE.csv`: loads or updates the roster. The whole file is checked
//! first; one bad row and nothing is imported, every mistake printed at its `FILE:ROW:COL`.

use std::collections::HashMap;
use std::path::Path;

use super::PatientsCommand;
use super::numbers::{Result, open};
use crate::roster;
use crate::store::{ImportCount, Patient};

pub async fn patients(cmd: &PatientsCommand) -> Result<()> {
    match cmd {
        PatientsCommand::Import { file, config, dry_run } => import(file, config.as_deref(), *dry_run).await,
    }
}

async fn import(file: &Path, config: Option<&Path>, dry_run: bool) -> Result<()> {
    let (settings, store) = open(config).await?;
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let languages = roster::catalogue_languages(&settings.flows.prompts_dir)
        .map_err(|e| format!("prompt catalogues in {}: {e}", settings.flows.prompts_dir.display()))?;
    let languages: Vec<&str> = languages.iter().map(String::as_str).collect();
    let hours = settings.calling_hours();
    let slots = hours.slot_names();
    let patients = match roster::parse_roster(&file.display().to_string(), &bytes, &slots, &languages) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return Err(format!("{} error(s) in {}; nothing was imported", errors.errors.len(), file.display()).into());
        }
    };
    if dry_run {
        let count = compare(&store.patients().all().await?, &patients);
        println!("would import {} patients ({}); nothing was changed (--dry-run)", patients.len(), summary(&count));
    } else {
        let count = store.patients().import(&patients).await?;
        println!("imported {} patients ({})", patients.len(), summary(&count));
    }
    Ok(())
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
