//! `ivr serve --demo`: the whole system on one machine, for a newcomer to watch. A fresh SQLite
//! file, the carrier simulator playing fifty fictional patients (examples/patients.csv, each
//! with a behaviour chosen from their number: cooperative, slow, busy, an answering machine…),
//! and a campaign that starts at once. The terminal shows the campaign as it goes; the same
//! figures are on `/metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;

use crate::config::Settings;
use crate::server::Server;
use crate::store::CampaignSummary;

/// The demo's database file, recreated at each start.
pub const DEMO_DB: &str = "ivr-demo.db";
/// The demo's roster.
pub const DEMO_ROSTER: &str = "examples/patients.csv";

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
    let settings = demo_settings(Settings::load(config)?);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
    }
    let server = Server::start(&settings).await?;
    let store = server.state.store.clone();

    let bytes = std::fs::read(DEMO_ROSTER).map_err(|e| format!("{DEMO_ROSTER}: {e}"))?;
    let patients = server.state.parse_roster(DEMO_ROSTER, &bytes)?;
    store.patients().import(&patients).await?;

    let started = Utc::now();
    let planner = crate::server::planner(&settings);
    let plan = planner.plan(&store, started, true).await?;
    server.state.dialer_wake.notify_one();
    println!(
        "ivr demo: {} patients from {DEMO_ROSTER}, {} calls planned for {} (the others are out of care)",
        patients.len(),
        plan.jobs,
        plan.day
    );
    println!(
        "webhooks at {}; metrics at {}/metrics; database {DEMO_DB}. Ctrl-C stops.\n",
        server.state.public_url, server.state.public_url
    );

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
            _ = crate::server::shutdown_signal() => {
                server.stop().await;
                return Ok(());
            }
        }
    };
    println!("\n{}", report(&summary, clock.elapsed()));
    println!("The server keeps running (see /metrics); Ctrl-C stops it.");
    server.wait().await?;
    Ok(())
}

/// One line of progress.
fn progress(s: &CampaignSummary) -> String {
    format!(
        "planned {} · ringing {} · in call {} · completed {} · to retry {} · unanswered {} · unreachable {} · numbers issued {} · SMS sent {} · alerts {}",
        s.count("planned"),
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

/// The summary at the end.
fn report(s: &CampaignSummary, took: Duration) -> String {
    format!(
        "campaign finished in {}s: {} patients, {} calls dialled\n  completed {} · unreachable {} · unanswered attempts {}\n  processing numbers issued {} · SMS sent {} · alerts for the health centre {}",
        took.as_secs(),
        s.total(),
        s.attempts,
        s.count("done"),
        s.count("unreachable") + s.count("failed"),
        s.unanswered,
        s.numbers_issued,
        s.sms_sent,
        s.alerts
    )
}
