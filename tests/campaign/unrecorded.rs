//! Attempts claimed and committed whose call id was never recorded (the process died between the
//! claim and the carrier's answer), with the carrier simulator on a port of its own: when a
//! dialer starts leading, it looks each one up in the carrier's Calls list once the grace after
//! the claim is over. A call the carrier placed gets its id recorded and is settled from its
//! status at once; an attempt the carrier never saw is lost and frees its slot at once; while
//! the carrier cannot be reached nothing is freed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ivr::carrier::simulator::Persona;
use ivr::carrier::twilio::{CallRequest, TwilioClient};
use ivr::scheduler::DialPolicy;
use ivr::scheduler::clock::Clock;
use ivr::scheduler::dialer::{Campaign, Dialer, UNRECORDED_CALL_GRACE};
use ivr::scheduler::hours::{CallingHours, Slot};
use ivr::store::{NewJob, Store};
use tokio::sync::Notify;

use crate::common::db as support;
use crate::common::patients::patient;
use crate::outside::{TOKEN, carrier_outside};

/// Placed by the carrier, its id lost: a busy line.
const PLACED: &str = "+819055550016";
/// Never reached the carrier.
const NEVER: &str = "+819055550021";
/// Claimed a moment ago: a request for it may still be on its way.
const RECENT: &str = "+819055550031";

fn dialer(store: &Store, carrier: TwilioClient, public_url: &str) -> Dialer {
    let tz = chrono_tz::Asia::Tokyo;
    let hours = CallingHours::new(tz, vec![Slot::parse("all", "00:00-23:59").unwrap()], None, vec![]).unwrap();
    let policy = DialPolicy {
        calls_per_second: 10.0,
        max_concurrent_calls: 3,
        retry_after: chrono::Duration::minutes(30),
        max_attempts: 3,
        ring_timeout: chrono::Duration::seconds(30),
        machine_detection: false,
        // The default: only the Calls lookup may free these slots this soon.
        call_lease: chrono::Duration::minutes(20),
        call_check_after: chrono::Duration::minutes(1),
    };
    let campaign = Arc::new(Campaign { policy, hours, clock: Clock::System });
    Dialer::new(store.clone(), carrier, "+815000000000".into(), public_url.into(), campaign, Arc::new(Notify::new()))
}

/// (status, call sid, ended) of a job's only attempt, and the job's status.
async fn attempt(store: &Store, job_id: i64) -> (String, Option<String>, bool, String) {
    let attempts = store.campaign().attempts(job_id).await.unwrap();
    assert_eq!(attempts.len(), 1, "one attempt: {attempts:?}");
    let a = &attempts[0];
    let job = store.campaign().job(job_id).await.unwrap().unwrap();
    (a.status.clone(), a.call_sid.as_ref().map(|s| s.to_string()), a.ended, job.status)
}

async fn attempts_without_call_ids_are_looked_up_at_the_carrier(backend: support::Backend) {
    let Some(db) = support::TestDb::new(backend).await else { return };
    let store = db.open().await;
    let (carrier, api_base) = carrier_outside(0.0).await;
    carrier.set_persona(PLACED, Persona::Busy);
    let account = ivr::carrier::simulator::account_sid();
    let client = TwilioClient::new(&api_base, &account, TOKEN.to_string()).unwrap();
    // Where the webhooks go: a peer that takes them and tells nobody, as after a crash.
    let void = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let void_url = format!("http://{}", void.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(void, axum::Router::new().fallback(|| async { "" })).await });

    for (id, phone) in [("U001", PLACED), ("U002", NEVER), ("U003", RECENT)] {
        store.patients().upsert(&patient(id, phone)).await.unwrap();
    }
    let now = Utc::now();
    let claimed_at: DateTime<Utc> = now - UNRECORDED_CALL_GRACE - chrono::Duration::seconds(5);
    let day = now.with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let jobs: Vec<NewJob> = ["U001", "U002", "U003"]
        .iter()
        .enumerate()
        .map(|(i, id)| NewJob {
            patient_id: id.parse().unwrap(),
            flow: "daily-health-check".into(),
            day,
            checkin: "00:00".into(),
            due_at: claimed_at - chrono::Duration::minutes(10) + chrono::Duration::seconds(i as i64),
            window: None,
            web_at: None,
        })
        .collect();
    store.campaign().plan_jobs(&jobs).await.unwrap();
    // The first two claimed before the grace, the third just now; none gets a call id.
    let lease = chrono::Duration::minutes(20);
    let old = store.campaign().claim_jobs(claimed_at, claimed_at + lease, 2).await.unwrap();
    let recent = store.campaign().claim_jobs(now, now + lease, 1).await.unwrap();
    let job_of = |phone: &str| old.iter().chain(&recent).find(|j| j.phone.as_str() == phone).unwrap().job_id;
    let (placed_job, never_job, recent_job) = (job_of(PLACED), job_of(NEVER), job_of(RECENT));
    // The carrier took the first one's request; the server died before it heard the answer.
    let q = format!("job={placed_job}&attempt=1");
    let request = CallRequest::new(PLACED, "+815000000000", format!("{void_url}/twilio/voice?{q}"))
        .with_status_callback(format!("{void_url}/twilio/status?{q}"));
    let placed = client.create_call(&request).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !carrier.call(placed.sid.as_str()).is_some_and(|c| c.status.is_final()) {
        assert!(std::time::Instant::now() < deadline, "the carrier did not end the busy call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.campaign().active_jobs().await.unwrap(), 3);

    // The carrier cannot be reached: nothing is freed, no attempt is ended, no id made up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = TwilioClient::new(&down_base, &account, TOKEN.to_string()).unwrap();
    assert_eq!(dialer(&store, down, &void_url).tick(Utc::now()).await.unwrap(), 0);
    assert_eq!(store.campaign().active_jobs().await.unwrap(), 3, "no slot freed blindly");
    for job in [placed_job, never_job, recent_job] {
        let (status, sid, ended, job_status) = attempt(&store, job).await;
        assert!(!ended && sid.is_none() && job_status == "dialing", "job {job}: {status} {sid:?} {job_status}");
    }

    // The carrier answers: a new leader looks both old attempts up at once.
    let leader = dialer(&store, client.clone(), &void_url);
    assert_eq!(leader.tick(Utc::now()).await.unwrap(), 0);
    let (status, sid, ended, job_status) = attempt(&store, placed_job).await;
    assert_eq!(sid.as_deref(), Some(placed.sid.as_str()), "the call's id is recorded");
    assert!(ended && status == "busy" && job_status == "retry", "settled from its status: {status} {job_status}");
    let (status, sid, ended, job_status) = attempt(&store, never_job).await;
    assert!(ended && sid.is_none() && status == "lost" && job_status == "retry", "lost: {status} {job_status}");
    // The recent one is left alone: its request may still be on its way.
    let (_, sid, ended, job_status) = attempt(&store, recent_job).await;
    assert!(!ended && sid.is_none() && job_status == "dialing");
    assert_eq!(store.campaign().active_jobs().await.unwrap(), 1, "two slots are free");

    // Nobody was dialled by the lookups, and the lost attempt is never dialled again as itself.
    assert_eq!(carrier.calls().len(), 1);
    assert_eq!(leader.tick(Utc::now()).await.unwrap(), 0, "the retries wait for retry_after");
    assert_eq!(carrier.calls().len(), 1);

    // Once the grace is over, the recent one is looked up too: never placed, lost.
    leader.tick(now + UNRECORDED_CALL_GRACE + chrono::Duration::seconds(1)).await.unwrap();
    let (status, _, ended, job_status) = attempt(&store, recent_job).await;
    assert!(ended && status == "lost" && job_status == "retry", "{status} {job_status}");
    assert_eq!(store.campaign().active_jobs().await.unwrap(), 0);
}

#[tokio::test]
async fn unrecorded_attempts_on_sqlite_are_found_at_the_carrier_or_lost_never_freed_blindly() {
    attempts_without_call_ids_are_looked_up_at_the_carrier(support::Backend::Sqlite).await;
}

#[tokio::test]
async fn unrecorded_attempts_on_postgresql_are_found_at_the_carrier_or_lost_never_freed_blindly() {
    attempts_without_call_ids_are_looked_up_at_the_carrier(support::Backend::Postgres).await;
}
