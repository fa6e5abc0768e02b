//! The real `ivr serve` killed (SIGKILL) in the middle of a campaign and started again: the
//! campaign finishes, no attempt of any patient is dialled twice, no SMS is sent twice, no
//! patient has two numbers, and every answer given before the kill is kept.
//!
//! The carrier simulator runs inside the server, so the calls in flight die with it, as they
//! would for a server whose carrier lost it; its log file (written before each API answer)
//! outlives the process and tells what was dialled and sent.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivr::store::{Patient, Store};

use crate::common::patients::{PatientBuilder, patient, roster_csv};

const TOKEN: &str = "fault-test-auth-token-0123456789";
const PATIENTS: usize = 60;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let file = dir.join("ivr.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[carrier]
auth_token = "{TOKEN}"
simulator_speed = 0.03
simulator_log = "{log}"

[issuer]
key = "fault-test-issuer-key"

[scheduler]
slots = {{ morning = "00:00-23:59", afternoon = "00:00-23:59" }}
quiet_hours = "none"
calls_per_second = 20
max_concurrent_calls = 12
retry_after = "1s"
max_attempts = 3
call_lease = "3s"
autostart = false

[flows]
dir = "{root}/call-flows"
prompts_dir = "{root}/prompts"
"#,
            db = dir.join("ivr.db").display(),
            log = dir.join("carrier.jsonl").display(),
        ),
    )
    .unwrap();
    file
}

fn ivr(args: &[&str], config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ivr"));
    c.args(args).arg("--config").arg(config).env("RUST_LOG", "warn").env_remove("IVR_DATABASE__URL");
    c
}

fn serve(config: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(config.with_file_name("server.log")).unwrap();
    ivr(&["serve"], config).stdout(Stdio::null()).stderr(log).spawn().expect("ivr serve starts")
}

async fn ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn roster(dir: &Path) -> std::path::PathBuf {
    let patients: Vec<Patient> = (0..PATIENTS)
        .map(|i| {
            let phone =
                if i % 11 == 10 { format!("+8131234{i:04}") } else { format!("+819011{i:02}00{}{}", i % 7, i % 10) };
            patient(&format!("F{i:03}"), &phone).slot(if i % 2 == 0 { "morning" } else { "afternoon" })
        })
        .collect();
    let file = dir.join("patients.csv");
    std::fs::write(&file, roster_csv(&patients)).unwrap();
    file
}

/// Lines of the simulator's log: (kind, the call's webhook URL or the SMS's masked number).
fn carrier_log(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("carrier.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let kind = v["kind"].as_str().unwrap_or("").to_string();
            let key = if kind == "call" { v["url"].as_str() } else { v["to"].as_str() };
            (kind, key.unwrap_or("").to_string())
        })
        .collect()
}

async fn finished(store: &Store, day: chrono::NaiveDate) -> (usize, usize) {
    let jobs = store.campaign().jobs_for_day(day).await.unwrap();
    let done = jobs.iter().filter(|j| matches!(j.status.as_str(), "done" | "unreachable" | "failed")).count();
    (done, jobs.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_survives_a_kill_without_dialling_or_texting_anyone_twice() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), port);
    let imported = ivr(&["patients", "import"], &config).arg(roster(dir.path())).output().unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let dialled = ivr(&["dial", "--now"], &config).output().unwrap();
    assert!(dialled.status.success(), "{}", String::from_utf8_lossy(&dialled.stderr));
    let out = String::from_utf8_lossy(&dialled.stdout);
    assert!(out.contains(&format!("{PATIENTS} call(s) planned")), "{out}");

    let store = Store::open(&format!("sqlite://{}", dir.path().join("ivr.db").display()), false).await.unwrap();
    let day = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();

    // Kill the server once some calls are over and others are in flight.
    let mut server = serve(&config);
    ready(port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (done, _) = finished(&store, day).await;
        let active = store.campaign().active_jobs().await.unwrap();
        if done >= PATIENTS / 5 && active > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let at_kill = finished(&store, day).await;
    let calls_at_kill = carrier_log(dir.path()).iter().filter(|(k, _)| k == "call").count();
    assert!(at_kill.0 < PATIENTS, "killed in the middle: {at_kill:?}");

    let mut server = serve(&config);
    ready(port).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while finished(&store, day).await.0 < PATIENTS {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let jobs = store.campaign().jobs_for_day(day).await.unwrap();
            let open: Vec<_> =
                jobs.iter().filter(|j| !matches!(j.status.as_str(), "done" | "unreachable" | "failed")).collect();
            panic!("the campaign did not finish: {open:?}\n{}", tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the outbox send what the last calls wrote.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.kill().unwrap();
    server.wait().unwrap();

    let log = carrier_log(dir.path());
    let calls: Vec<&String> = log.iter().filter(|(k, _)| k == "call").map(|(_, url)| url).collect();
    assert!(calls.len() > calls_at_kill, "calls went on after the restart");
    let unique: HashSet<&&String> = calls.iter().collect();
    assert_eq!(unique.len(), calls.len(), "an attempt was dialled twice: {calls:?}");
    let mut sms_per_phone: HashMap<&str, usize> = HashMap::new();
    for (_, to) in log.iter().filter(|(k, _)| k == "sms") {
        *sms_per_phone.entry(to).or_default() += 1;
    }
    assert!(sms_per_phone.values().all(|n| *n == 1), "an SMS was sent twice: {sms_per_phone:?}");

    for i in 0..PATIENTS {
        let id = format!("F{i:03}");
        let jobs = store.campaign().jobs_for_day(day).await.unwrap();
        let job = jobs.iter().find(|j| j.patient_id.as_str() == id).unwrap();
        let attempts = store.campaign().attempts(job.job_id).await.unwrap();
        assert!(attempts.iter().all(|a| a.ended), "{id}: {attempts:?}");
        assert_eq!(attempts.len(), job.attempt as usize, "{id}: one row per attempt");
        // Each attempt's call, placed before or after the kill, appears once in the carrier's log.
        let placed = calls.iter().filter(|u| u.contains(&format!("job={}&", job.job_id))).count();
        assert!(placed <= attempts.len(), "{id}: {placed} calls for {} attempts", attempts.len());
    }
    assert!(store.patients().all().await.unwrap().iter().all(|p: &Patient| p.patient_id.as_str().starts_with('F')));
}
