//! A simulated day: a roster of a few hundred patients with every persona of the carrier
//! simulator, planned in their slots and dialled by the server's own dialer through the
//! simulator's Twilio API, on a manual clock moved from one due call to the next, so a whole day
//! runs in seconds. Then, patient by patient: called in their slot, retried as configured,
//! answers stored, exactly one number and one SMS for each consenting app user, alerts for low
//! SpO2 and for the unreachable. And several instances on one database: one dials at a time,
//! within the account's rate, and another takes over when it dies.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use ivr::carrier::simulator::Persona;
use ivr::config::Settings;
use ivr::flow::Value;
use ivr::scheduler::clock::Clock;
use ivr::server::Server;
use ivr::store::{JobView, Patient, Store};
use secrecy::SecretString;

use crate::common::app;
use crate::common::db as support;
use crate::common::patients::{PatientBuilder, patient};
use crate::outside::{Instance, TOKEN, carrier_outside, import, outside_config, run_ivr};

const PATIENTS: usize = 240;

fn tokyo(h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Tokyo.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap().with_timezone(&Utc)
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
}

/// The last day of care of the patients whose care ended before [`day`].
fn ended() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

fn settings(dir: &Path) -> Settings {
    let mut s = app::settings(&app::sqlite_url(dir));
    s.server.public_url = None;
    s.carrier.auth_token = Some(SecretString::from(TOKEN));
    s.carrier.simulator_speed = 0.0;
    // The defaults: morning 09:00-11:00, afternoon 14:00-16:00, quiet 20:00-09:00, three
    // attempts 30 minutes apart. Limits high enough that the test never waits on them.
    s.scheduler.autostart = false;
    s.scheduler.calls_per_second = 500.0;
    s.scheduler.max_concurrent_calls = 64;
    s
}

/// Patient i: a mobile number whose last digit picks the persona, every eleventh a landline;
/// slots alternate; a few are out of care today.
fn roster() -> Vec<Patient> {
    (0..PATIENTS)
        .map(|i| {
            let phone = if i % 11 == 10 { format!("+8131234{i:04}") } else { format!("+819011{i:05}{}", i % 10) };
            patient(&format!("P{i:04}"), &phone)
                .language(if i % 13 == 0 { "en-US" } else { "ja-JP" })
                .area(if i % 2 == 0 { "north" } else { "south" })
                .care("2026-11-01", if i % 37 == 36 { "2026-11-20" } else { "2026-12-31" })
                .slot(if i % 3 == 0 { "afternoon" } else { "morning" })
        })
        .collect()
}

/// Moves the clock from one due call to the next, letting every call due by then finish
/// (the simulator plays it at once), until nothing is left to dial.
async fn run_day(server: &Server, clock: &Clock) {
    let store = &server.state.store;
    let deadline = Instant::now() + StdDuration::from_secs(240);
    loop {
        // Everything due by now is dialled and over, and the outbox has sent what it holds.
        loop {
            assert!(Instant::now() < deadline, "the day did not finish: {:?}", counts(store).await);
            let now = clock.now();
            let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
            let due = jobs.iter().any(|j| waiting(j) && j.due_at.is_some_and(|t| t <= now));
            if !due && store.campaign().active_jobs().await.unwrap() == 0 {
                break;
            }
            server.state.dialer_wake.notify_one();
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
        match jobs.iter().filter(|j| waiting(j)).filter_map(|j| j.due_at).min() {
            Some(next) => clock.set(next.max(clock.now())),
            None => return,
        }
    }
}

fn waiting(j: &JobView) -> bool {
    matches!(j.status.as_str(), "planned" | "retry")
}

async fn counts(store: &Store) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for j in store.campaign().jobs_for_day(day()).await.unwrap() {
        *c.entry(j.status).or_default() += 1;
    }
    c
}

/// Waits until the simulator has been asked for every SMS the outbox holds.
async fn outbox_settled(store: &Store, patients: &[Patient]) {
    let deadline = Instant::now() + StdDuration::from_secs(20);
    loop {
        let mut busy = false;
        for p in patients {
            let messages = store.outbox().for_patient(p.patient_id.as_str()).await.unwrap();
            busy |= messages.iter().any(|(_, _, status, _)| matches!(status.as_str(), "pending" | "sending"));
        }
        if !busy {
            // Delivery reports follow the send by a moment.
            tokio::time::sleep(StdDuration::from_millis(800)).await;
            return;
        }
        assert!(Instant::now() < deadline, "the outbox did not settle");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_simulated_day_calls_every_patient_in_their_slot_and_follows_each_one_up() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let clock = Clock::manual(tokyo(8, 0));
    let server = app::spawn_app_at(settings.clone(), dir, clock.clone()).await;
    let store = server.state.store.clone();
    let sim = server.state.simulator.clone().expect("the simulator is the carrier");
    let patients = roster();
    store.patients().import(&patients).await.unwrap();

    let planner = ivr::server::planner(&settings);
    let plan = planner.plan(&store, clock.now(), false).await.unwrap();
    let out_of_care = patients.iter().filter(|p| p.care_end == Some(ended())).count();
    assert_eq!((plan.jobs, plan.skipped.out_of_care), (PATIENTS - out_of_care, out_of_care));

    run_day(&server, &clock).await;
    outbox_settled(&store, &patients).await;

    let hours = &server.state.campaign.hours;
    let jobs: HashMap<String, JobView> = store
        .campaign()
        .jobs_for_day(day())
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.patient_id.to_string(), j))
        .collect();
    let sms = sim.messages();
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for p in &patients {
        let id = p.patient_id.as_str();
        let Some(job) = jobs.get(id) else {
            assert_eq!(p.care_end, Some(ended()), "{id} in care but not planned");
            continue;
        };
        let persona = Persona::for_number(&p.phone);
        *seen.entry(persona.as_str()).or_default() += 1;
        let attempts = store.campaign().attempts(job.job_id).await.unwrap();
        let alerts = store.calls().patient_alerts(id).await.unwrap();
        let texts: Vec<_> = sms.iter().filter(|m| m.to == p.phone.as_str()).collect();

        // Every attempt in calling hours: the first in the patient's slot, the others in a slot
        // of the day, at least `retry_after` apart; each attempt dialled once, with its call.
        let (start, end) = hours.slot_window(day(), p.call_slot.as_deref()).unwrap();
        assert!(attempts[0].started_at >= start && attempts[0].started_at < end, "{id}: first call outside its slot");
        for pair in attempts.windows(2) {
            assert!(pair[1].started_at - pair[0].started_at >= Duration::minutes(30), "{id}: retried too soon");
        }
        for a in &attempts {
            let in_a_slot =
                hours.day_windows(day()).into_iter().flatten().any(|(s, e)| a.started_at >= s && a.started_at < e);
            assert!(in_a_slot && a.ended, "{id}: attempt {} at {} ({})", a.attempt, a.started_at, a.status);
        }
        let placed = sim.calls().into_iter().filter(|c| c.to == p.phone.as_str()).count();
        assert_eq!(placed, attempts.len(), "{id}: one call per attempt");

        let unreachable = alerts.iter().filter(|a| a.starts_with("unreachable")).count();
        match persona {
            Persona::NoAnswer | Persona::Busy | Persona::Machine | Persona::HangsUp => {
                // Three attempts, or fewer when the day's last slot closed before the next.
                let out_of_time = alerts.iter().any(|a| a.contains("no calling time left today"));
                assert_eq!(job.status, "unreachable", "{id} ({persona:?})");
                assert!(attempts.len() == 3 || (out_of_time && attempts.len() < 3), "{id}: {attempts:?} {alerts:?}");
                if out_of_time {
                    let last = attempts.last().unwrap().started_at + Duration::minutes(30);
                    assert!(hours.next_call_time(last, p.call_slot.as_deref()).is_none(), "{id}: time was left");
                }
                assert_eq!(unreachable, 1, "{id}: {alerts:?}");
                let expected = match persona {
                    Persona::NoAnswer => "no-answer",
                    Persona::Busy => "busy",
                    Persona::Machine => "machine",
                    _ => "incomplete",
                };
                assert!(attempts.iter().all(|a| a.status == expected), "{id}: {attempts:?}");
                assert!(texts.is_empty(), "{id}: no SMS");
            }
            _ => {
                assert_eq!((job.status.as_str(), attempts.len(), unreachable), ("done", 1, 0), "{id} ({persona:?})");
                let sid = attempts[0].call_sid.clone().unwrap();
                let call = store.calls().get(sid.as_str()).await.unwrap().unwrap();
                assert!(call.ended && !call.incomplete, "{id}: the call went through");
                let answers = store.calls().answers(call.call_id).await.unwrap();
                let answer = |name: &str| answers.iter().find(|a| a.name == name).map(|a| a.value.clone());
                assert_eq!(answer("temperature"), Some(Value::Number { raw: 365, scale: 1 }), "{id}");
                let spo2 = if persona == Persona::LowSpo2 { 91 } else { 97 };
                assert_eq!(answer("spo2"), Some(Value::Number { raw: spo2, scale: 0 }), "{id}");
                let health_alert = alerts.iter().any(|a| !a.starts_with("unreachable") && !a.starts_with("message_"));
                assert_eq!(health_alert, persona == Persona::LowSpo2, "{id}: {alerts:?}");

                let app_user = persona != Persona::NotAppUser;
                let number = store.numbers().valid(id, Utc::now()).await.unwrap();
                assert_eq!(number.is_some(), app_user, "{id}: a number for each consenting app user");
                let by_sms = app_user && persona != Persona::LandlineAppUser;
                assert_eq!(texts.len(), usize::from(by_sms), "{id} ({persona:?}): one SMS");
                if by_sms {
                    let digits: String = texts[0].body.chars().filter(char::is_ascii_digit).collect();
                    assert!(digits.len() >= 8, "{id}: the SMS holds the number");
                }
                let failed = alerts.iter().any(|a| a.starts_with("message_failed"));
                assert_eq!(failed, persona == Persona::UndeliverableSms, "{id}: {alerts:?}");
            }
        }
    }
    // Every persona took part.
    assert_eq!(seen.len(), 11, "{seen:?}");
    server.stop().await;
}

/// Two check-ins a day, 09:00 and 15:00: every patient in care has a job for each, called in
/// the slots cut to the check-in (the afternoon's patients between 14:00 and 15:00 for the
/// first), retried within it and never into the next one; each check-in counts its own
/// attempts up to `max_attempts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_check_ins_a_day_call_each_patient_once_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.scheduler.checks = Some(vec!["09:00".into(), "15:00".into()]);
    let clock = Clock::manual(tokyo(8, 0));
    let server = app::spawn_app_at(settings.clone(), dir, clock.clone()).await;
    let store = server.state.store.clone();
    let patients: Vec<Patient> = roster().into_iter().take(60).collect();
    store.patients().import(&patients).await.unwrap();
    let in_care = patients.iter().filter(|p| p.care_end != Some(ended())).count();

    let plan = ivr::server::planner(&settings).plan(&store, clock.now(), false).await.unwrap();
    let per_checkin: Vec<(String, usize)> = plan.checkins.iter().map(|c| (c.checkin.to_string(), c.jobs)).collect();
    assert_eq!(per_checkin, [("09:00".to_string(), in_care), ("15:00".to_string(), in_care)]);
    assert_eq!(plan.jobs, 2 * in_care);
    run_day(&server, &clock).await;

    let hours = &server.state.campaign.hours;
    let bounds = [(tokyo(9, 0), tokyo(15, 0)), (tokyo(15, 0), tokyo(20, 0))];
    let max_attempts = settings.scheduler.max_attempts as usize;
    for p in &patients {
        let id = p.patient_id.as_str();
        let jobs: Vec<JobView> =
            store.campaign().jobs_for_day(day()).await.unwrap().into_iter().filter(|j| j.patient_id == id).collect();
        if p.care_end == Some(ended()) {
            assert!(jobs.is_empty(), "{id} is out of care");
            continue;
        }
        let checkins: Vec<&str> = jobs.iter().map(|j| j.checkin.as_str()).collect();
        assert_eq!(checkins, ["09:00", "15:00"], "{id}");
        let persona = Persona::for_number(&p.phone);
        for (job, (start, end)) in jobs.iter().zip(bounds) {
            let attempts = store.campaign().attempts(job.job_id).await.unwrap();
            assert!(!attempts.is_empty() && attempts.len() <= max_attempts, "{id} {}: {attempts:?}", job.checkin);
            for a in &attempts {
                let in_slot =
                    hours.day_windows(day()).into_iter().flatten().any(|(s, e)| a.started_at >= s && a.started_at < e);
                assert!(
                    in_slot && a.started_at >= start && a.started_at < end,
                    "{id} {}: attempt {} at {}",
                    job.checkin,
                    a.attempt,
                    a.started_at
                );
            }
            let answers = matches!(persona, Persona::AppUser | Persona::NotAppUser | Persona::LowSpo2);
            if answers {
                assert_eq!((job.status.as_str(), attempts.len()), ("done", 1), "{id} {}", job.checkin);
            }
            if persona == Persona::NoAnswer {
                assert_eq!(job.status, "unreachable", "{id} {}", job.checkin);
            }
        }
    }
    let alerts: Vec<String> = store.calls().patient_alerts("P0005").await.unwrap();
    assert_eq!(
        alerts.iter().filter(|a| a.starts_with("unreachable")).count(),
        2,
        "one unreachable alert per check-in: {alerts:?}"
    );
    server.stop().await;
}

/// Runs the campaign up to `until`: every call due by then is dialled and over, then the clock
/// stands at `until` and the dialer has taken a round there (web requests due are sent).
async fn run_until(server: &Server, clock: &Clock, until: DateTime<Utc>) {
    let store = &server.state.store;
    let deadline = Instant::now() + StdDuration::from_secs(120);
    loop {
        loop {
            assert!(Instant::now() < deadline, "the campaign did not get to {until}: {:?}", counts(store).await);
            let now = clock.now();
            let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
            let due = jobs.iter().any(|j| waiting(j) && j.due_at.is_some_and(|t| t <= now));
            if !due && store.campaign().active_jobs().await.unwrap() == 0 {
                break;
            }
            server.state.dialer_wake.notify_one();
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
        match jobs.iter().filter(|j| waiting(j)).filter_map(|j| j.due_at).filter(|t| *t <= until).min() {
            Some(next) => clock.set(next.max(clock.now())),
            None => break,
        }
    }
    clock.set(until.max(clock.now()));
    let requests_due = || async {
        store.campaign().due_web_requests(clock.now(), 1).await.unwrap().len()
            + store.campaign().active_jobs().await.unwrap() as usize
    };
    while requests_due().await > 0 {
        assert!(Instant::now() < deadline, "the web requests due at {until} were not sent");
        server.state.dialer_wake.notify_one();
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

/// A web report as the form stores it: a call with direction `web` whose flow reached its end.
fn web_report(dir: &Path, sid: &str, patient: &str, at: DateTime<Utc>) {
    let conn = rusqlite::Connection::open(dir.join("ivr.db")).unwrap();
    conn.execute(
        "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, ended, created_at)
         values (?1, ?2, 'web', 'daily-health-check', 'v1', '{}', 1, ?3)",
        rusqlite::params![sid, patient, at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()],
    )
    .unwrap();
}

/// Two check-ins with personal links, on a manual clock: at each check-in the patients with a
/// live link get the web request (an SMS with a new link) and are called only `web_grace`
/// later if no report came; one who reported on the web is not called for that check-in, and
/// the plan says so. A patient without a link is called as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patients_with_a_link_are_asked_on_the_web_first_and_called_only_if_they_did_not_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut settings = settings(dir.path());
    settings.scheduler.checks = Some(vec!["09:00".into(), "15:00".into()]);
    settings.scheduler.slots =
        Some([("morning", "09:00-12:00"), ("afternoon", "15:00-18:00")].map(|(n, s)| (n.into(), s.into())).into());
    settings.scheduler.web_grace = "60m".into();
    let clock = Clock::manual(tokyo(8, 0));
    let server = app::spawn_app_at(settings.clone(), dir, clock.clone()).await;
    let store = server.state.store.clone();
    let sim = server.state.simulator.clone().expect("the simulator is the carrier");
    // Not app users (numbers ending 1): the only SMS they get are web requests.
    let patients = [("W1", 1), ("W2", 2), ("C1", 3)]
        .map(|(id, n)| patient(id, &format!("+81901100{n}0001")).care("2026-11-01", "2026-12-31").slot("morning"));
    store.patients().import(&patients).await.unwrap();
    for p in &patients[..2] {
        store.links().create(&p.patient_id, tokyo(23, 59) + Duration::days(30), clock.now()).await.unwrap();
    }

    let planner = ivr::server::planner(&settings);
    let plan = planner.plan(&store, clock.now(), false).await.unwrap();
    for c in &plan.checkins {
        assert_eq!((c.jobs, c.web_first), (3, 2), "{}", c.checkin);
    }

    // 09:00: the requests go out; W1 reports on the web at 09:20.
    run_until(&server, &clock, tokyo(9, 0)).await;
    web_report(&path, "WEB1", "W1", tokyo(9, 20));
    // 15:00: the second check-in's requests; W2 reports at 15:30.
    run_until(&server, &clock, tokyo(15, 0)).await;
    web_report(&path, "WEB2", "W2", tokyo(15, 30));
    run_until(&server, &clock, tokyo(19, 0)).await;

    let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
    let job = |p: &str, c: &str| jobs.iter().find(|j| j.patient_id == p && j.checkin == c).unwrap().clone();
    let first_call = |j: &JobView| {
        let store = store.clone();
        let id = j.job_id;
        async move { store.campaign().attempts(id).await.unwrap().first().map(|a| a.started_at) }
    };
    // W1: reported on the web for the morning, called in the afternoon after the grace.
    let w1 = (job("W1", "09:00"), job("W1", "15:00"));
    assert_eq!(
        (w1.0.status.as_str(), w1.0.outcome.as_deref(), w1.0.attempt),
        ("reported", Some("reported on the web"), 0)
    );
    assert_eq!(w1.1.status, "done");
    assert!(first_call(&w1.1).await.unwrap() >= tokyo(16, 0), "W1 was called before the grace ended");
    // W2: called in the morning after the grace, reported on the web in the afternoon.
    let w2 = (job("W2", "09:00"), job("W2", "15:00"));
    assert_eq!(w2.0.status, "done");
    assert!(first_call(&w2.0).await.unwrap() >= tokyo(10, 0), "W2 was called before the grace ended");
    assert_eq!((w2.1.status.as_str(), w2.1.attempt), ("reported", 0));
    // C1, without a link: called at each check-in from its start.
    for c in ["09:00", "15:00"] {
        let j = job("C1", c);
        assert_eq!(j.status, "done", "C1 {c}");
        assert!(first_call(&j).await.unwrap() < tokyo(if c == "09:00" { 10 } else { 16 }, 0), "C1 {c}");
    }
    // Each request carried a link; C1 got none.
    outbox_settled(&store, &patients).await;
    let sms = sim.messages();
    for (p, n) in patients.iter().zip([2, 2, 0]) {
        let requests: Vec<_> = sms.iter().filter(|m| m.to == p.phone.as_str() && m.body.contains("/r/")).collect();
        assert_eq!(requests.len(), n, "{}: {requests:?}", p.patient_id);
    }
    // The plan, made again, says why W1 and W2 are not called.
    let again = planner.plan(&store, clock.now(), false).await.unwrap();
    let reason = |k: usize, id: &str| again.checkins[k].reasons[again.patients.iter().position(|p| p == id).unwrap()];
    assert_eq!(reason(0, "W1"), ivr::scheduler::plan::Reason::ReportedWeb);
    assert_eq!(reason(1, "W2"), ivr::scheduler::plan::Reason::ReportedWeb);
    let s = store.campaign().summary(day(), tokyo(0, 0)).await.unwrap();
    assert_eq!((s.web_requests, s.web_reports, s.count("reported"), s.attempts), (4, 2, 2, 4));
    server.stop().await;
}

/// Two servers on one PostgreSQL database share a campaign: the one holding the dialer lock
/// places every call, each job's attempt once, and every job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgresql_share_a_campaign() {
    let Some(db) = support::TestDb::new(support::Backend::Postgres).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.database.url = SecretString::from(db.url().to_string());
    settings.scheduler.calls_per_second = 50.0;
    settings.scheduler.max_concurrent_calls = 8;
    let clock = Clock::manual(tokyo(9, 0));
    let a = app::spawn_app_at(settings.clone(), dir, clock.clone()).await;
    let b = app::spawn_app_at(settings.clone(), tempfile::tempdir().unwrap(), clock.clone()).await;
    let store = a.state.store.clone();
    let patients: Vec<Patient> = roster().into_iter().take(80).collect();
    store.patients().import(&patients).await.unwrap();
    let plan = ivr::server::planner(&settings).plan(&store, clock.now(), true).await.unwrap();
    assert_eq!(plan.jobs, patients.iter().filter(|p| p.care_end != Some(ended())).count());

    // Both dialers run on their own; the clock moves on to each retry.
    let deadline = Instant::now() + StdDuration::from_secs(120);
    loop {
        let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
        if jobs.iter().all(|j| matches!(j.status.as_str(), "done" | "unreachable" | "failed")) {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not finish: {:?}", counts(&store).await);
        let now = clock.now();
        let due = jobs.iter().any(|j| waiting(j) && j.due_at.is_some_and(|t| t <= now));
        if !due && store.campaign().active_jobs().await.unwrap() == 0 {
            // (None: the last calls ended since `jobs` was read; the loop sees it next.)
            if let Some(next) = jobs.iter().filter(|j| waiting(j)).filter_map(|j| j.due_at).min() {
                clock.set(next.max(now));
            }
        }
        a.state.dialer_wake.notify_one();
        b.state.dialer_wake.notify_one();
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }

    let calls_a = a.state.simulator.clone().unwrap().calls();
    let calls_b = b.state.simulator.clone().unwrap().calls();
    assert!(calls_a.is_empty() != calls_b.is_empty(), "one instance dialled: {} and {}", calls_a.len(), calls_b.len());
    let urls: Vec<&String> = calls_a.iter().chain(&calls_b).map(|c| &c.url).collect();
    let unique: std::collections::HashSet<_> = urls.iter().collect();
    assert_eq!(unique.len(), urls.len(), "an attempt was dialled twice");
    let mut attempts = 0;
    for j in store.campaign().jobs_for_day(day()).await.unwrap() {
        let rows = store.campaign().attempts(j.job_id).await.unwrap();
        assert!(rows.iter().all(|r| r.ended && r.call_sid.is_some()), "{}: {rows:?}", j.patient_id);
        attempts += rows.len();
    }
    assert_eq!(attempts, urls.len(), "one call per attempt");
    a.stop().await;
    b.stop().await;
}

/// The account's rate: calls a second, for the test below.
const RATE: usize = 3;

/// Two `ivr serve` on one database, the carrier simulator outside both: only the instance that
/// leads dials, the account's rate holds over the whole campaign, and when the leader is killed
/// the other takes over and finishes the campaign.
async fn two_instances_keep_to_the_account_rate(backend: support::Backend) {
    let Some(db) = support::TestDb::new(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (carrier, api_base) = carrier_outside(0.0).await;
    let scheduler =
        format!("calls_per_second = {RATE}\nmax_concurrent_calls = 30\nretry_after = \"1s\"\ncall_lease = \"3s\"\n");
    let config = outside_config(dir.path(), db.url(), &api_base, "rate-test-issuer-key", &scheduler);
    // Thirty patients who answer every question (mobile numbers ending in 1: no SMS).
    import(dir.path(), &config, "R", 12, 30);

    let log = dir.path().join("server.log");
    let mut instances = vec![Instance::start(&config, &log), Instance::start(&config, &log)];
    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + StdDuration::from_secs(120);
    let leader = loop {
        let (a, b) = (instances[0].leads().await, instances[1].leads().await);
        match (a, b) {
            (Some(true), Some(false)) => break 0,
            (Some(false), Some(true)) => break 1,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no instance took the lead: {a:?} {b:?}\n{}", server_log());
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    };
    run_ivr(&config, &["dial", "--now"]);

    // The leader dials a third of the campaign, then dies.
    while carrier.calls().len() < 10 {
        assert!(Instant::now() < deadline, "the campaign did not get going\n{}", server_log());
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let killed = instances.remove(leader);
    let killed_port = killed.port;
    drop(killed);
    let store = Store::open(db.url(), false).await.unwrap();
    let today = Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    loop {
        let jobs = store.campaign().jobs_for_day(today).await.unwrap();
        if !jobs.is_empty() && jobs.iter().all(|j| matches!(j.status.as_str(), "done" | "unreachable" | "failed")) {
            break;
        }
        let open: Vec<_> = jobs.iter().filter(|j| !matches!(j.status.as_str(), "done")).collect();
        assert!(Instant::now() < deadline, "the campaign did not finish: {open:?}\n{}", server_log());
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }

    let mut calls = carrier.calls();
    calls.sort_by_key(|c| c.at);
    // The dialer's token bucket holds one call (no burst), so calls leave it at least 1/RATE s
    // apart; the tolerance of one call covers the few milliseconds by which their arrival at
    // the carrier varies, which can put both ends of a one-second span in the same window.
    for (i, first) in calls.iter().enumerate() {
        let window = calls[i..].iter().take_while(|c| c.at < first.at + Duration::seconds(1)).count();
        assert!(window <= RATE + 1, "{window} calls in the second from {}: {calls:?}", first.at);
    }
    let by_killed = |c: &&ivr::carrier::simulator::SimulatedCall| c.url.contains(&format!(":{killed_port}/"));
    let first_by_other = calls.iter().position(|c| !by_killed(&c)).expect("the other instance dialled");
    assert!(first_by_other >= 10, "only the leader dialled before it died");
    assert!(calls[first_by_other..].iter().all(|c| !by_killed(&c)), "one instance at a time dialled");
    assert_eq!(instances[0].leads().await, Some(true), "the other instance leads");
    let urls: std::collections::HashSet<_> = calls.iter().map(|c| &c.url).collect();
    assert_eq!(urls.len(), calls.len(), "an attempt was dialled twice");
    let jobs = store.campaign().jobs_for_day(today).await.unwrap();
    assert_eq!(jobs.len(), 30);
    assert!(jobs.iter().all(|j| j.status == "done"), "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_sqlite_file_keep_to_the_account_rate() {
    two_instances_keep_to_the_account_rate(support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgresql_keep_to_the_account_rate() {
    two_instances_keep_to_the_account_rate(support::Backend::Postgres).await;
}

/// `ivr serve` killed while its calls are in progress, the carrier simulator outside it: the
/// calls end at the carrier while the server is down (their final status callbacks are lost,
/// as Twilio does not repeat them), and the restarted server asks the carrier how they stand,
/// frees their slots and dials on at once, long before the 20-minute lease; no attempt is
/// dialled twice and the campaign finishes.
async fn a_restarted_server_frees_the_slots_of_calls_that_ended_while_it_was_down(backend: support::Backend) {
    use ivr::carrier::twilio::CallStatus;
    const SLOTS: usize = 4;
    let Some(db) = support::TestDb::new(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    // Calls last a few seconds (ringing, then one answer after another), so some are in
    // progress when the server dies.
    let (carrier, api_base) = carrier_outside(0.5).await;
    // The default `call_lease` (20 minutes) and `call_check_after` (1 minute).
    let scheduler = format!("calls_per_second = {SLOTS}\nmax_concurrent_calls = {SLOTS}\nretry_after = \"1s\"\n");
    let config = outside_config(dir.path(), db.url(), &api_base, "recovery-test-issuer-key", &scheduler);
    // Ten patients who answer every question (mobile numbers ending in 1: no SMS).
    import(dir.path(), &config, "K", 13, 10);

    let log = dir.path().join("server.log");
    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let store = Store::open(db.url(), false).await.unwrap();
    let today = Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let open_attempts = || async {
        let mut open = Vec::new();
        for j in store.campaign().jobs_for_day(today).await.unwrap() {
            open.extend(
                store
                    .campaign()
                    .attempts(j.job_id)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|a| !a.ended)
                    .map(|a| (j.job_id, a)),
            );
        }
        open
    };

    let first = Instance::start(&config, &log);
    let deadline = Instant::now() + StdDuration::from_secs(120);
    while first.leads().await != Some(true) {
        assert!(Instant::now() < deadline, "the server did not take the lead\n{}", server_log());
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    run_ivr(&config, &["dial", "--now"]);

    // Every slot holds a call the carrier is playing, each with its call id recorded.
    loop {
        let open = open_attempts().await;
        let playing = carrier.calls().iter().filter(|c| !c.status.is_final()).count();
        if open.len() == SLOTS && playing == SLOTS && open.iter().all(|(_, a)| a.call_sid.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "the slots did not fill: {open:?}\n{}", server_log());
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    drop(first);
    let held: Vec<(i64, i32, ivr::types::CallSid)> =
        open_attempts().await.into_iter().map(|(job, a)| (job, a.attempt, a.call_sid.unwrap())).collect();
    assert!(!held.is_empty(), "calls were in progress at the kill");

    // The carrier ends those calls (their webhooks find nobody), and gives up on their final
    // status callbacks before the server is back.
    loop {
        let calls = carrier.calls();
        let over = held.iter().all(|(_, _, sid)| calls.iter().any(|c| &c.sid == sid && c.status.is_final()));
        if over {
            break;
        }
        assert!(Instant::now() < deadline, "the carrier did not end the calls: {calls:?}");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let placed_before = carrier.calls().len();
    for (_, _, sid) in &held {
        let call = carrier.calls().into_iter().find(|c| &c.sid == sid).unwrap();
        assert!(!call.reported.iter().any(|s| s == call.status.as_str()), "the final status was reported: {call:?}");
    }
    assert_eq!(open_attempts().await.len(), held.len(), "the slots are still held while the server is down");

    // Restarted, the server frees the slots and dials on within about a minute.
    let restarted_at = Instant::now();
    let _second = Instance::start(&config, &log);
    let bound = StdDuration::from_secs(60);
    loop {
        let open = open_attempts().await;
        let freed = held.iter().all(|(job, attempt, _)| !open.iter().any(|(j, a)| j == job && a.attempt == *attempt));
        if freed && carrier.calls().len() > placed_before {
            break;
        }
        assert!(restarted_at.elapsed() < bound, "the slots were not freed: {open:?}\n{}", server_log());
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    for (job, attempt, sid) in &held {
        let rows = store.campaign().attempts(*job).await.unwrap();
        let row = rows.iter().find(|a| a.attempt == *attempt).unwrap();
        let at_carrier = carrier.calls().into_iter().find(|c| &c.sid == sid).unwrap().status;
        // Cut off mid-flow, or before its first question was answered.
        let expected = if at_carrier == CallStatus::Completed { "incomplete" } else { "failed" };
        assert!(row.ended && row.status == expected, "job {job}: {row:?}, the carrier says {at_carrier:?}");
    }

    // The campaign finishes, each attempt dialled once.
    loop {
        let jobs = store.campaign().jobs_for_day(today).await.unwrap();
        if jobs.len() == 10 && jobs.iter().all(|j| j.status == "done") {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not finish: {jobs:?}\n{}", server_log());
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let calls = carrier.calls();
    let urls: std::collections::HashSet<_> = calls.iter().map(|c| &c.url).collect();
    assert_eq!(urls.len(), calls.len(), "an attempt was dialled twice");
    let mut attempts = 0;
    for j in store.campaign().jobs_for_day(today).await.unwrap() {
        attempts += store.campaign().attempts(j.job_id).await.unwrap().len();
    }
    assert_eq!(attempts, calls.len(), "one call per attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_on_sqlite_frees_the_slots_of_calls_that_ended_while_it_was_down() {
    a_restarted_server_frees_the_slots_of_calls_that_ended_while_it_was_down(support::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_on_postgresql_frees_the_slots_of_calls_that_ended_while_it_was_down() {
    a_restarted_server_frees_the_slots_of_calls_that_ended_while_it_was_down(support::Backend::Postgres).await;
}
