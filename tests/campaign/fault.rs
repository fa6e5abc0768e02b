//! The real `ivr serve` killed (SIGKILL) ten times in the middle of a campaign and started again
//! each time, on SQLite and on PostgreSQL, with the carrier simulator in the test's process,
//! outside the server, as Twilio is: its calls and SMS go on while the server is down, and its
//! own record says what was dialled and sent.
//!
//! The kills fall at deterministic points: right after the carrier took an SMS whose answer it
//! holds back (the server dies not knowing it was sent), after a few more calls were placed
//! (their answers held back too: the server dies not knowing their ids), or a little after the
//! start. The scheduler runs on the default `call_lease` (20 minutes): only the lookups free the
//! slots of calls that died with the server. Then: no attempt dialled twice, no patient texted
//! twice, no patient given two numbers, every answer stored before a kill still stored, the
//! campaign finished, and after each restart the next call placed within a minute.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ivr::carrier::simulator::Simulator;
use ivr::store::Store;

use crate::common::db as support;
use crate::outside::{Instance, carrier_outside_with, import_phones, outside_config, run_ivr};

const PATIENTS: usize = 36;
const KILLS: usize = 10;
/// How long the carrier holds back its answer to an SMS it has taken.
const SMS_ANSWER_DELAY: Duration = Duration::from_millis(400);
/// How long the carrier holds back its answer to a call it has placed: a kill right after the
/// carrier placed calls falls before the server learnt their ids.
const CALL_ANSWER_DELAY: Duration = Duration::from_millis(150);

/// Patients whose numbers pick the carrier's personas: app users who get a number by SMS
/// (ending 0), one whose SMS is not delivered (8), others without the app (1), a wrong key (3),
/// hanging up (4), no answer (5), busy (6), a low SpO2 (9), and landlines (the number read
/// aloud).
fn roster() -> Vec<(String, String)> {
    const KINDS: [&str; 12] = ["0", "1", "0", "3", "0", "4", "5", "0", "6", "9", "8", "landline"];
    (0..PATIENTS)
        .map(|i| {
            let phone = match KINDS[i % KINDS.len()] {
                "landline" => format!("03-56{i:02}-{i:04}"),
                last => format!("090-77{i:02}-{i:03}{last}"),
            };
            (format!("K{i:03}"), phone)
        })
        .collect()
}

fn today() -> chrono::NaiveDate {
    Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive()
}

/// (jobs in a final state, jobs).
async fn finished(store: &Store) -> (usize, usize) {
    let jobs = store.campaign().jobs_for_day(today()).await.unwrap();
    let done = jobs.iter().filter(|j| matches!(j.status.as_str(), "done" | "unreachable" | "failed")).count();
    (done, jobs.len())
}

/// Every answer stored for the calls the carrier placed: (call, question, value).
async fn answers(store: &Store, carrier: &Simulator) -> HashSet<(String, String, String)> {
    let mut all = HashSet::new();
    for call in carrier.calls() {
        let Some(record) = store.calls().get(call.sid.as_str()).await.unwrap() else { continue };
        for a in store.calls().answers(record.call_id).await.unwrap() {
            all.insert((call.sid.to_string(), a.name.clone(), format!("{:?}", a.value)));
        }
    }
    all
}

/// Processing numbers issued, by patient, read from the database itself.
async fn numbers_by_patient(url: &str) -> HashMap<String, i64> {
    let sql = "select patient_id, count(*) from processing_numbers group by patient_id";
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut st = conn.prepare(sql).unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
        }
        None => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
            let _ = conn.close().await;
            rows.into_iter().collect()
        }
    }
}

/// Where kill `i` falls.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after the carrier took an SMS (its answer held back): the send's outcome unknown.
    SmsInFlight,
    /// Once this many more calls were placed.
    Calls(usize),
    /// This long after the server was ready.
    After(Duration),
}

fn kill_point(i: usize) -> KillPoint {
    match i % 3 {
        0 => KillPoint::SmsInFlight,
        1 => KillPoint::Calls(1 + (i * 7) % 4),
        _ => KillPoint::After(Duration::from_millis(200 + (i as u64 * 137) % 500)),
    }
}

/// Waits for kill point `point`, at most `within`; returns whether it came.
async fn reach(point: KillPoint, carrier: &Simulator, within: Duration) -> bool {
    let begun = Instant::now();
    let (calls, sms) = (carrier.calls().len(), carrier.messages().len());
    loop {
        let came = match point {
            KillPoint::SmsInFlight => carrier.messages().len() > sms,
            KillPoint::Calls(n) => carrier.calls().len() >= calls + n,
            KillPoint::After(wait) => begun.elapsed() >= wait,
        };
        if came {
            return true;
        }
        if begun.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn a_campaign_survives_ten_kills(backend: support::Backend) {
    let Some(db) = support::TestDb::new(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (carrier, api_base) = carrier_outside_with(0.15, SMS_ANSWER_DELAY, CALL_ANSWER_DELAY).await;
    // The default `call_lease` (20 minutes) and `call_check_after` (a minute): an attempt whose
    // call id the server had not recorded when it died is looked for in the carrier's Calls list
    // after the grace, not left to its lease.
    let scheduler = "calls_per_second = 6\nmax_concurrent_calls = 6\nretry_after = \"1s\"\nmax_attempts = 3\n\
                     ring_timeout = \"20s\"\n";
    let config = outside_config(dir.path(), db.url(), &api_base, "fault-test-issuer-key", scheduler);
    let roster = roster();
    import_phones(dir.path(), &config, &roster);
    run_ivr(&config, &["dial", "--now"]);
    let store = Store::open(db.url(), false).await.unwrap();
    let log = dir.path().join("server.log");
    let server_log = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();

    // Killed ten times, each time in the middle of the campaign.
    let mut restarts: Vec<DateTime<Utc>> = Vec::new();
    let mut stored_before_kills = HashSet::new();
    let mut sms_in_flight = 0;
    for i in 0..KILLS {
        restarts.push(Utc::now());
        let server = Instance::start_at(&config, &log, port);
        server.ready(Duration::from_secs(30)).await;
        let point = kill_point(i);
        let within =
            if matches!(point, KillPoint::SmsInFlight) { Duration::from_secs(8) } else { Duration::from_secs(3) };
        let came = reach(point, &carrier, within).await;
        server.kill();
        if came && matches!(point, KillPoint::SmsInFlight) {
            sms_in_flight += 1;
        }
        let (done, jobs) = finished(&store).await;
        assert!(done < jobs, "kill {i} ({point:?}) fell after the campaign's end: make it longer\n{}", server_log());
        stored_before_kills.extend(answers(&store, &carrier).await);
    }
    assert!(sms_in_flight >= 2, "kills with an SMS in flight: {sms_in_flight}\n{}", server_log());

    // Started once more, the server finishes the campaign and sends what is left.
    restarts.push(Utc::now());
    let last = Instance::start_at(&config, &log, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (done, jobs) = finished(&store).await;
        if done == jobs {
            break;
        }
        let open: Vec<_> = store
            .campaign()
            .jobs_for_day(today())
            .await
            .unwrap()
            .into_iter()
            .filter(|j| !matches!(j.status.as_str(), "done" | "unreachable" | "failed"))
            .collect();
        assert!(Instant::now() < deadline, "the campaign did not finish: {open:?}\n{}", server_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let mut open = Vec::new();
        for (id, _) in &roster {
            for (channel, _, status, _) in store.outbox().for_patient(id).await.unwrap() {
                if matches!(status.as_str(), "pending" | "sending") {
                    open.push((id.clone(), channel, status));
                }
            }
        }
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "messages not sent: {open:?}\n{}", server_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();

    // No attempt dialled twice: each call's webhook URL names its job and attempt.
    let calls = carrier.calls();
    let urls: HashSet<&String> = calls.iter().map(|c| &c.url).collect();
    assert_eq!(urls.len(), calls.len(), "an attempt was dialled twice");
    let mut attempts = 0;
    for job in store.campaign().jobs_for_day(today()).await.unwrap() {
        attempts += store.campaign().attempts(job.job_id).await.unwrap().len();
    }
    // An attempt claimed just before a kill may never have reached the carrier: at most one call
    // per attempt.
    assert!(calls.len() <= attempts, "{} calls for {attempts} attempts", calls.len());

    // No SMS twice: per phone, from the carrier's own record; and every SMS the outbox holds
    // reached the carrier exactly once.
    let mut sms_by_phone: HashMap<String, Vec<String>> = HashMap::new();
    for m in carrier.messages() {
        sms_by_phone.entry(m.to.clone()).or_default().push(m.body.clone());
    }
    assert!(sms_by_phone.values().all(|bodies| bodies.len() == 1), "an SMS was sent twice: {sms_by_phone:?}");
    let mut sms_in_outbox = 0;
    for (id, _) in &roster {
        for (channel, to, status, _) in store.outbox().for_patient(id).await.unwrap() {
            if channel == "sms" {
                sms_in_outbox += 1;
                assert_eq!(
                    sms_by_phone.get(&to).map(Vec::len),
                    Some(1),
                    "{id}: its SMS ({status}) reached the carrier once"
                );
            }
        }
    }
    assert!(sms_in_outbox >= 5, "app users got their numbers by SMS: {sms_in_outbox}");

    // No number twice: one per patient at most, and no two SMS carry the same one.
    let numbers = numbers_by_patient(db.url()).await;
    assert!(numbers.values().all(|n| *n == 1), "a patient got two numbers: {numbers:?}");
    let sent_numbers: Vec<String> = sms_by_phone
        .values()
        .flatten()
        .map(|body| body.chars().filter(char::is_ascii_digit).collect::<String>())
        .collect();
    assert_eq!(sent_numbers.iter().collect::<HashSet<_>>().len(), sent_numbers.len(), "{sent_numbers:?}");

    // No answer lost: everything stored before a kill is stored now, and every call the
    // server saw through has the health answers.
    let now_stored = answers(&store, &carrier).await;
    let lost: Vec<_> = stored_before_kills.difference(&now_stored).collect();
    assert!(lost.is_empty(), "answers lost: {lost:?}");
    for call in &calls {
        let Some(record) = store.calls().get(call.sid.as_str()).await.unwrap() else { continue };
        if record.ended && !record.incomplete {
            let names: HashSet<String> =
                store.calls().answers(record.call_id).await.unwrap().into_iter().map(|a| a.name).collect();
            assert!(names.contains("temperature"), "{}: {names:?}", call.sid);
        }
    }

    // After each restart, dialling went on within a minute (or there was nothing left to dial).
    let mut gaps = Vec::new();
    for at in &restarts {
        if let Some(next) = calls.iter().map(|c| c.at).filter(|t| t > at).min() {
            gaps.push((next - *at).to_std().unwrap_or_default());
        }
    }
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(longest < Duration::from_secs(60), "a dialling pause of {longest:?} after a restart: {gaps:?}");
    drop(last);
    // An SMS in flight at a kill is found at the carrier by the restarted server, not resent
    // (unless the carrier's status callback reached the server first).
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let found =
        text.lines().filter(|l| l.contains("looked up at the carrier") && l.contains("outcome=\"found\"")).count();
    assert!(found >= 1, "no SMS found at the carrier after {sms_in_flight} kills with one in flight");
    // Attempts whose call id died with the server: looked for in the carrier's Calls list (unless
    // a callback of the call reached the restarted server first and told its id).
    let calls_found =
        text.lines().filter(|l| l.contains("the carrier placed the call whose id was never recorded")).count();
    let never_placed = text.lines().filter(|l| l.contains("the carrier never placed its call")).count();
    let _ = writeln_stderr(&format!(
        "crash test ({backend:?}): {KILLS} kills ({sms_in_flight} with an SMS in flight, {found} found at the carrier \
         after the restart; calls without an id: {calls_found} found, {never_placed} never placed), {} calls, {} SMS, \
         {} answers kept, longest pause after a restart {longest:.1?}, {took:.1?}",
        calls.len(),
        sms_by_phone.len(),
        now_stored.len()
    ));
}

fn writeln_stderr(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr().lock(), "{line}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_on_sqlite_survives_ten_kills_without_dialling_texting_or_numbering_anyone_twice() {
    a_campaign_survives_ten_kills(support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_on_postgresql_survives_ten_kills_without_dialling_texting_or_numbering_anyone_twice() {
    a_campaign_survives_ten_kills(support::Backend::Postgres).await;
}
