//! `ivr serve --demo`: the whole system on one machine, for a newcomer to watch. A fresh SQLite
//! file, the carrier simulator playing fifty fictional patients (examples/patients.csv, each
//! with a behaviour chosen from their number: cooperative, slow, busy, an answering machine…),
//! and a campaign that starts at once. Half the patients with a mobile phone have a personal
//! link: they get the web request first, and those who answer (the cooperative ones) report on
//! the web, played by the simulator over HTTP; the others are called after `web_grace`. The terminal shows the campaign as it goes; the same
//! figures are on `/metrics`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;

use crate::carrier::simulator::Persona;
use crate::config::Settings;
use crate::server::Server;
use crate::store::CampaignSummary;

/// The demo's database file, recreated at each start.
pub const DEMO_DB: &str = "ivr-demo.db";
/// The demo's roster.
pub const DEMO_ROSTER: &str = "examples/patients.csv";

/// The sample roster, flow and prompts, built in for a demo started outside the source tree.
const BUILT_IN_ROSTER: &str = include_str!("../examples/patients.csv");
/// A built-in file: its name and its text.
type BuiltIn = (&'static str, &'static str);
const BUILT_IN_FLOWS: [BuiltIn; 1] =
    [("daily-health-check.toml", include_str!("../call-flows/daily-health-check.toml"))];
const BUILT_IN_PROMPTS: [BuiltIn; 2] =
    [("ja-JP.toml", include_str!("../prompts/ja-JP.toml")), ("en-US.toml", include_str!("../prompts/en-US.toml"))];

/// Where the demo's flows and prompts come from: the folders the settings name when they are
/// there, else the built-in copies, written to a private folder for the server to load (and
/// watch, as it watches any flow folder). Returns that folder, if one was made, and one line
/// per source for the terminal.
pub fn use_built_in_files(settings: &mut Settings) -> std::io::Result<(Option<PathBuf>, Vec<String>)> {
    let mut made = None;
    let mut lines = Vec::new();
    let folders: [(&mut PathBuf, &str, &[BuiltIn]); 2] = [
        (&mut settings.flows.dir, "flows", &BUILT_IN_FLOWS),
        (&mut settings.flows.prompts_dir, "prompts", &BUILT_IN_PROMPTS),
    ];
    for (dir, what, files) in folders {
        if dir.is_dir() {
            lines.push(format!("{what}: {}/", dir.display()));
            continue;
        }
        let root = made.get_or_insert_with(|| std::env::temp_dir().join(format!("ivr-demo-{}", std::process::id())));
        let copy = root.join(what);
        std::fs::create_dir_all(&copy)?;
        for (name, text) in files {
            std::fs::write(copy.join(name), text)?;
        }
        lines.push(format!("{what}: built into ivr (no {}/ here)", dir.display()));
        *dir = copy;
    }
    Ok((made, lines))
}

/// The demo's roster: `examples/patients.csv` when it is there, else the built-in copy.
pub fn roster() -> Result<(Vec<u8>, String)> {
    match std::fs::read(DEMO_ROSTER) {
        Ok(bytes) => Ok((bytes, format!("roster: {DEMO_ROSTER}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((BUILT_IN_ROSTER.as_bytes().to_vec(), format!("roster: built into ivr (no {DEMO_ROSTER} here)")))
        }
        Err(e) => Err(format!("{DEMO_ROSTER}: {e}").into()),
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Settings for the demo: the given ones, with a fresh database, the simulator, and limits
/// that make a campaign of fifty patients last a couple of minutes.
pub fn demo_settings(mut settings: Settings) -> Settings {
    settings.database.url = SecretString::from(format!("sqlite://{DEMO_DB}"));
    settings.carrier.kind = Some("simulator".into());
    let s = &mut settings.scheduler;
    // Whatever the hour the demo runs at: the roster's slots cover the whole day, no quiet hours.
    s.slots = Some(
        [("morning", "00:00-23:59"), ("afternoon", "00:00-23:59")]
            .into_iter()
            .map(|(name, span)| (name.to_string(), span.to_string()))
            .collect(),
    );
    s.quiet_hours = "none".into();
    s.blocked_days.clear();
    s.calls_per_second = 2.0;
    s.max_concurrent_calls = 8;
    s.retry_after = "15s".into();
    s.ring_timeout = "20s".into();
    s.max_attempts = 2;
    s.call_lease = "2m".into();
    s.web_grace = "20s".into();
    s.autostart = false;
    settings
}

pub async fn run(config: Option<&Path>) -> Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        // The terminal is for the campaign's progress; warnings and errors still show.
        // SAFETY: set before any other thread reads the environment.
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    crate::telemetry::init();
    let mut settings = demo_settings(Settings::load(config)?);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
    }
    let (copies, mut sources) = use_built_in_files(&mut settings)?;
    let result = demo(&settings, &mut sources).await;
    if let Some(dir) = copies {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn demo(settings: &Settings, sources: &mut Vec<String>) -> Result<()> {
    // Listening from the start: a Ctrl-C while the loop below reads the store is not lost.
    let mut stop = crate::server::Shutdown::listen();
    let server = Server::start(settings).await?;
    let store = server.state.store.clone();

    let (bytes, source) = roster()?;
    sources.push(source);
    let patients = server.state.parse_roster(DEMO_ROSTER, &bytes)?;
    store.patients().import(&patients).await?;

    let password = demo_account(&store).await?;

    let started = Utc::now();
    let web_patients = give_links(&server, &patients, started).await?;
    let web_player = tokio::spawn(play_web_patients(server.state.simulator.clone(), web_patients));
    let planner = crate::server::planner(settings);
    let plan = planner.plan(&store, started, true).await?;
    server.state.dialer_wake.notify_one();
    println!(
        "ivr demo: {} patients, {} calls planned for {} (the others are out of care)",
        patients.len(),
        plan.jobs,
        plan.day
    );
    println!("{}", sources.join("; "));
    println!(
        "webhooks at {}; metrics at {}/metrics; database {DEMO_DB}. Ctrl-C stops.",
        server.state.public_url, server.state.public_url
    );
    println!("{}\n", staff_pages(&server.state.public_url, &password));

    let clock = Instant::now();
    let mut last = String::new();
    let summary = loop {
        let s = store.campaign().summary(plan.day, started).await?;
        let line = progress(&s);
        if line != last {
            println!("[{:>4}s] {line}", clock.elapsed().as_secs());
            last = line;
        }
        if s.total() > 0 && s.finished() == s.total() {
            break s;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stop.recv() => {
                server.stop().await;
                return Ok(());
            }
        }
    };
    web_player.abort();
    println!("\n{}", report(&summary, clock.elapsed()));
    println!("\n{}", next_steps(&server.state.public_url));
    server.wait().await?;
    Ok(())
}

/// Links for every other patient with a mobile phone: they get the web request first. Returns
/// those of them who answer on the web (the cooperative personas), by phone number.
async fn give_links(
    server: &Server,
    patients: &[crate::store::Patient],
    now: chrono::DateTime<Utc>,
) -> Result<HashMap<String, (Persona, String)>> {
    let hours = &server.state.campaign.hours;
    let mut web = HashMap::new();
    for p in patients.iter().filter(|p| p.phone.is_mobile()).step_by(2) {
        let expires = crate::scheduler::web::link_expiry(p, hours, now);
        server.state.store.links().create(&p.patient_id, expires, now).await?;
        let persona = Persona::for_number(&p.phone);
        let answers = matches!(
            persona,
            Persona::AppUser | Persona::NotAppUser | Persona::LowSpo2 | Persona::Slow | Persona::WrongKey
        );
        if answers {
            let birth = p.birth_md.clone().unwrap_or_else(|| "0101".into());
            web.insert(p.phone.as_str().to_string(), (persona, birth));
        }
    }
    Ok(web)
}

/// The simulator's web patients: each web request's SMS to one of them is opened, after a few
/// seconds, and the report filled and sent over HTTP.
async fn play_web_patients(
    sim: Option<std::sync::Arc<crate::carrier::simulator::Simulator>>,
    patients: HashMap<String, (Persona, String)>,
) {
    let Some(sim) = sim else { return };
    let client = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        for m in sim.messages() {
            let Some((persona, birth)) = patients.get(&m.to) else { continue };
            let Some(url) = m.body.split_whitespace().find(|w| w.contains("/r/")) else { continue };
            if !seen.insert(m.sid.clone()) {
                continue;
            }
            let (client, url, persona, birth) = (client.clone(), url.to_string(), *persona, birth.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if let Err(e) = crate::carrier::simulator::web::report(&client, &url, persona, &birth).await {
                    tracing::warn!(error = %e, "a simulated web report failed");
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One line of progress.
fn progress(s: &CampaignSummary) -> String {
    format!(
        "planned {} · web requests {} · web reports {} · ringing {} · in call {} · completed {} · to retry {} · unanswered {} · unreachable {} · numbers issued {} · SMS sent {} · alerts {}",
        s.count("planned"),
        s.web_requests,
        s.web_reports,
        s.count("dialing"),
        s.count("in-progress"),
        s.count("done"),
        s.count("retry"),
        s.unanswered,
        s.count("unreachable") + s.count("failed"),
        s.numbers_issued,
        s.sms_sent,
        s.alerts
    )
}

/// The demo's staff account: `demo`, an admin, with a fresh random password (returned, to be
/// printed: the database keeps only its hash).
async fn demo_account(store: &crate::store::Store) -> Result<String> {
    let password = hex::encode(rand::random::<[u8; 8]>());
    let name = crate::types::UserName::parse(DEMO_USER).expect("a valid name");
    let secret = secrecy::SecretString::from(password.clone());
    crate::staff::add_user(store, &name, crate::types::Role::Admin, crate::types::UiLanguage::Ja, &secret)
        .await
        .map_err(|e| e.to_string())?;
    Ok(password)
}

/// The demo's staff account's name.
pub const DEMO_USER: &str = "demo";

/// Where the staff pages are, and the demo account to sign in with.
fn staff_pages(url: &str, password: &str) -> String {
    format!("staff pages at {url}/ui/ (user {DEMO_USER}, password {password})")
}

/// What a newcomer can do once the campaign is over.
fn next_steps(url: &str) -> String {
    format!(
        "The server keeps running. Next:\n  \
         {url}/metrics   the campaign's figures, for Prometheus\n  \
         {url}/healthz   alive (200)\n  \
         {url}/readyz    ready to take calls (200; 503 while it is not)\n  \
         {url}/ui/       the staff pages (要フォロー), as user {DEMO_USER}\n\
         Ctrl-C stops the server."
    )
}

/// The summary at the end.
fn report(s: &CampaignSummary, took: Duration) -> String {
    format!(
        "campaign finished in {}s: {} patients, {} calls dialled\n  web requests {} · web reports {} · calls saved {}\n  completed {} · unreachable {} · unanswered attempts {}\n  processing numbers issued {} · SMS sent {} · alerts for the health centre {}",
        took.as_secs(),
        s.total(),
        s.attempts,
        s.web_requests,
        s.web_reports,
        s.count("reported"),
        s.count("done"),
        s.count("unreachable") + s.count("failed"),
        s.unanswered,
        s.numbers_issued,
        s.sms_sent,
        s.alerts
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_flow_and_prompts_pass_the_check_and_the_roster_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::load(None).unwrap();
        settings.flows.dir = dir.path().join("no-flows");
        settings.flows.prompts_dir = dir.path().join("no-prompts");
        let (made, lines) = use_built_in_files(&mut settings).unwrap();
        let made = made.expect("a folder for the copies");
        assert!(lines[0].starts_with("flows: built into ivr (no ") && lines[1].starts_with("prompts: built into ivr"));
        let registry =
            crate::flow::registry::Registry::load(settings.flows.dir.clone(), settings.flows.prompts_dir.clone());
        assert!(registry.is_ok(), "{:?}", registry.err().map(|d| d.to_string()));
        std::fs::remove_dir_all(made).unwrap();
        let roster = crate::roster::parse_roster(
            "built-in",
            BUILT_IN_ROSTER.as_bytes(),
            &["morning", "afternoon"],
            &["ja-JP", "en-US"],
        );
        assert_eq!(roster.map(|p| p.len()).unwrap_or(0), 50);
    }

    #[test]
    fn the_folders_that_are_there_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::load(None).unwrap();
        settings.flows.dir = dir.path().to_path_buf();
        settings.flows.prompts_dir = dir.path().to_path_buf();
        let (made, lines) = use_built_in_files(&mut settings).unwrap();
        assert!(made.is_none() && settings.flows.dir == dir.path());
        assert_eq!(lines[0], format!("flows: {}/", dir.path().display()));
    }

    #[test]
    fn the_demo_prints_where_the_staff_pages_are_and_how_to_sign_in() {
        let text = staff_pages("http://127.0.0.1:8080", "0123456789abcdef");
        assert_eq!(text, "staff pages at http://127.0.0.1:8080/ui/ (user demo, password 0123456789abcdef)");
    }

    #[test]
    fn after_the_summary_the_demo_says_what_to_do_next() {
        let text = next_steps("http://127.0.0.1:8080");
        for part in ["http://127.0.0.1:8080/metrics", "/healthz", "/readyz", "/ui/", "Ctrl-C stops"] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
}
