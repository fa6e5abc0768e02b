//! Daily campaigns in the store, on SQLite and on PostgreSQL: planning is idempotent, each job
//! is claimed by one dialer, each attempt ends once, retries come back when due, leases run
//! out into reconciliation, and the health centre is alerted about the unreachable.

use crate::common::db as support;
use crate::common::patients;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use ivr::store::*;
use ivr::types::{CallSid, Channel, Direction, NumberDelivery, PatientId};

fn sid(s: &str) -> CallSid {
    CallSid::parse(s).unwrap()
}

on_both_backends! {
    with_store: planning_a_day_twice_adds_only_new_patients;
    with_store: due_jobs_are_claimed_with_their_next_attempt_and_only_once;
    with_store: simultaneous_dialers_claim_each_job_once;
    with_store: an_attempt_ends_once_and_its_job_moves_on;
    with_store: a_retry_comes_back_when_due_as_the_next_attempt;
    with_store: a_late_status_for_an_earlier_attempt_changes_nothing;
    with_store: unreachable_and_refused_jobs_alert_the_health_centre;
    with_store: an_answered_call_keeps_its_job_in_progress_until_it_ends;
    with_store: attempts_that_went_quiet_are_found_when_their_lease_runs_out;
    with_store: the_summary_counts_jobs_attempts_and_alerts;
    with_store: the_day_figures_count_each_area_and_the_total_and_nothing_of_other_days;
    with_store: patients_whose_call_went_through_today_are_reported;
    with_store: calls_of_an_earlier_day_never_placed_are_given_up_with_an_alert;
    with_store: a_campaign_started_by_hand_brings_planned_calls_forward;
    with_db: one_instance_at_a_time_holds_the_dialer_lock;
    with_store: each_check_in_of_a_day_has_a_job_of_its_own;
    with_db: a_patient_who_reported_in_the_check_in_is_not_dialled;
    with_store: a_call_not_placed_before_its_check_in_ended_is_given_up_with_an_alert;
    with_db: jobs_planned_before_check_ins_are_kept_as_the_days_one_check_in;
    with_db: a_web_request_goes_out_once_with_its_message_unless_the_patient_reported;
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
}

fn patient(id: &str) -> Patient {
    patients::patient(id, &format!("+8190{:08}", id.trim_start_matches('p').parse::<u32>().unwrap_or(0)))
}

fn job(id: &str, due: DateTime<Utc>) -> NewJob {
    NewJob {
        patient_id: PatientId::parse(id).unwrap(),
        flow: "daily-health-check".into(),
        day: day(),
        checkin: "00:00".into(),
        due_at: due,
        window: None,
        web_at: None,
    }
}

/// Patients p1..=pN with one job each, due at 00:00 + i minutes.
async fn planned(store: &Store, n: usize) -> Vec<String> {
    let ids: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
    let patients: Vec<Patient> = ids.iter().map(|id| patient(id)).collect();
    store.patients().import(&patients).await.unwrap();
    let jobs: Vec<NewJob> = ids.iter().enumerate().map(|(i, id)| job(id, at(0, i as u32))).collect();
    assert_eq!(store.campaign().plan_jobs(&jobs).await.unwrap(), n);
    ids
}

async fn claim_one(store: &Store, now: DateTime<Utc>) -> DueJob {
    let mut jobs = store.campaign().claim_jobs(now, now + Duration::minutes(20), 1).await.unwrap();
    assert_eq!(jobs.len(), 1, "one job due at {now}");
    jobs.remove(0)
}

async fn status_of(store: &Store, patient: &str) -> JobView {
    store.campaign().jobs_for_day(day()).await.unwrap().into_iter().find(|j| j.patient_id == patient).unwrap()
}

async fn planning_a_day_twice_adds_only_new_patients(store: Store) {
    planned(&store, 3).await;
    store.patients().import(&[patient("p4")]).await.unwrap();
    let again: Vec<NewJob> = ["p1", "p2", "p3", "p4"].iter().map(|id| job(id, at(1, 0))).collect();
    assert_eq!(store.campaign().plan_jobs(&again).await.unwrap(), 1, "only p4 is new");
    let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j.status == "planned" && j.attempt == 0 && j.day == Some(day())));
    assert_eq!(status_of(&store, "p1").await.due_at, Some(at(0, 0)), "the first plan's time is kept");
}

async fn due_jobs_are_claimed_with_their_next_attempt_and_only_once(store: Store) {
    planned(&store, 3).await;
    let jobs = store.campaign().claim_jobs(at(0, 1), at(0, 21), 10).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.patient_id.as_str()).collect::<Vec<_>>(), ["p1", "p2"], "p3 is due at 00:02");
    assert!(jobs.iter().all(|j| j.attempt == 1 && j.phone.as_str().starts_with("+8190")));
    assert!(
        store.campaign().claim_jobs(at(0, 1), at(0, 21), 10).await.unwrap().is_empty(),
        "claimed jobs are not claimed again"
    );
    assert_eq!(store.campaign().active_jobs().await.unwrap(), 2);
    let attempts = store.campaign().attempts(jobs[0].job_id).await.unwrap();
    assert_eq!((attempts.len(), attempts[0].attempt, attempts[0].ended), (1, 1, false));
    store.campaign().attempt_dialed(jobs[0].job_id, 1, &sid("CA1")).await.unwrap();
    store.campaign().attempt_dialed(jobs[0].job_id, 1, &sid("CA2")).await.unwrap();
    assert_eq!(
        store.campaign().attempts(jobs[0].job_id).await.unwrap()[0].call_sid.as_ref().map(CallSid::as_str),
        Some("CA1"),
        "the first id stays"
    );
}

async fn simultaneous_dialers_claim_each_job_once(store: Store) {
    planned(&store, 40).await;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = store.campaign().claim_jobs(at(2, 0), at(2, 20), 3).await.unwrap();
                if jobs.is_empty() {
                    return mine;
                }
                mine.extend(jobs.into_iter().map(|j| j.job_id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40), "every job claimed exactly once");
}

async fn an_attempt_ends_once_and_its_job_moves_on(store: Store) {
    planned(&store, 1).await;
    let j = claim_one(&store, at(0, 0)).await;
    assert!(
        store.campaign().end_attempt(j.job_id, 1, "completed", Some("human"), &JobNext::Done, at(0, 5)).await.unwrap()
    );
    // The same callback again, or another final status: nothing changes.
    assert!(!store.campaign().end_attempt(j.job_id, 1, "completed", None, &JobNext::Done, at(0, 6)).await.unwrap());
    let retry = JobNext::Retry(at(1, 0));
    assert!(!store.campaign().end_attempt(j.job_id, 1, "no-answer", None, &retry, at(0, 6)).await.unwrap());
    let v = status_of(&store, "p1").await;
    assert_eq!((v.status.as_str(), v.outcome.as_deref(), v.attempt), ("done", Some("completed"), 1));
    let a = &store.campaign().attempts(j.job_id).await.unwrap()[0];
    assert_eq!((a.status.as_str(), a.answered_by.as_deref(), a.ended), ("completed", Some("human"), true));
    assert_eq!(store.campaign().active_jobs().await.unwrap(), 0);
}

async fn a_retry_comes_back_when_due_as_the_next_attempt(store: Store) {
    planned(&store, 1).await;
    let j = claim_one(&store, at(0, 0)).await;
    store.campaign().end_attempt(j.job_id, 1, "no-answer", None, &JobNext::Retry(at(0, 30)), at(0, 1)).await.unwrap();
    let v = status_of(&store, "p1").await;
    assert_eq!((v.status.as_str(), v.due_at), ("retry", Some(at(0, 30))));
    assert!(store.campaign().claim_jobs(at(0, 29), at(0, 49), 5).await.unwrap().is_empty(), "not before it is due");
    let again = claim_one(&store, at(0, 30)).await;
    assert_eq!((again.job_id, again.attempt), (j.job_id, 2));
    assert_eq!(store.campaign().attempts(j.job_id).await.unwrap().len(), 2);
}

async fn a_late_status_for_an_earlier_attempt_changes_nothing(store: Store) {
    planned(&store, 1).await;
    let j = claim_one(&store, at(0, 0)).await;
    store.campaign().end_attempt(j.job_id, 1, "lost", None, &JobNext::Retry(at(0, 30)), at(0, 21)).await.unwrap();
    claim_one(&store, at(0, 30)).await;
    // Attempt 1's call did ring after all; its status arrives now. Attempt 1 already ended.
    assert!(!store.campaign().end_attempt(j.job_id, 1, "completed", None, &JobNext::Done, at(0, 31)).await.unwrap());
    assert_eq!(status_of(&store, "p1").await.status, "dialing", "attempt 2 goes on");
    store.campaign().attempt_progress(j.job_id, 1, "in-progress", None, at(1, 0)).await.unwrap();
    assert_eq!(status_of(&store, "p1").await.status, "dialing");
}

async fn unreachable_and_refused_jobs_alert_the_health_centre(store: Store) {
    planned(&store, 2).await;
    let a = claim_one(&store, at(0, 0)).await;
    let b = claim_one(&store, at(0, 1)).await;
    let gone = JobNext::Unreachable("1 attempt(s) today, the last busy".into());
    store.campaign().end_attempt(a.job_id, 1, "busy", None, &gone, at(0, 2)).await.unwrap();
    let refused = JobNext::Failed("the carrier refused the patient's number".into());
    store.campaign().end_attempt(b.job_id, 1, "refused", None, &refused, at(0, 2)).await.unwrap();
    assert_eq!(store.calls().patient_alerts("p1").await.unwrap(), ["unreachable: 1 attempt(s) today, the last busy"]);
    assert_eq!(
        store.calls().patient_alerts("p2").await.unwrap(),
        ["unreachable: the carrier refused the patient's number"]
    );
    assert_eq!(status_of(&store, "p1").await.status, "unreachable");
    assert_eq!(status_of(&store, "p2").await.status, "failed");
    assert!(store.campaign().claim_jobs(at(5, 0), at(5, 20), 5).await.unwrap().is_empty());
}

async fn an_answered_call_keeps_its_job_in_progress_until_it_ends(store: Store) {
    planned(&store, 1).await;
    let j = claim_one(&store, at(0, 0)).await;
    store.campaign().attempt_progress(j.job_id, 1, "ringing", None, at(0, 20)).await.unwrap();
    assert_eq!(status_of(&store, "p1").await.status, "dialing");
    store.campaign().attempt_progress(j.job_id, 1, "in-progress", Some("human"), at(0, 40)).await.unwrap();
    assert_eq!(status_of(&store, "p1").await.status, "in-progress");
    assert!(store.campaign().stale_attempts(at(0, 30)).await.unwrap().is_empty(), "answering extended the lease");
    assert_eq!(store.campaign().active_jobs().await.unwrap(), 1);
}

async fn attempts_that_went_quiet_are_found_when_their_lease_runs_out(store: Store) {
    planned(&store, 2).await;
    let a = claim_one(&store, at(0, 0)).await;
    let b = claim_one(&store, at(0, 1)).await;
    store.campaign().attempt_dialed(b.job_id, 1, &sid("CAb")).await.unwrap();
    assert!(store.campaign().stale_attempts(at(0, 19)).await.unwrap().is_empty());
    let stale = store.campaign().stale_attempts(at(0, 21)).await.unwrap();
    assert_eq!(
        stale.iter().map(|s| (s.job_id, s.attempt, s.call_sid.clone())).collect::<Vec<_>>(),
        [(a.job_id, 1, None), (b.job_id, 1, Some(sid("CAb")))]
    );
    store.campaign().extend_lease(b.job_id, at(1, 0)).await.unwrap();
    assert_eq!(store.campaign().stale_attempts(at(0, 21)).await.unwrap().len(), 1);
}

async fn the_summary_counts_jobs_attempts_and_alerts(store: Store) {
    planned(&store, 4).await;
    let a = claim_one(&store, at(0, 0)).await;
    let b = claim_one(&store, at(0, 1)).await;
    claim_one(&store, at(0, 2)).await;
    store.campaign().end_attempt(a.job_id, 1, "completed", None, &JobNext::Done, at(0, 5)).await.unwrap();
    store
        .campaign()
        .end_attempt(b.job_id, 1, "busy", None, &JobNext::Unreachable("no more attempts".into()), at(0, 5))
        .await
        .unwrap();
    let s = store.campaign().summary(day(), at(0, 0)).await.unwrap();
    assert_eq!((s.count("done"), s.count("unreachable"), s.count("dialing"), s.count("planned")), (1, 1, 1, 1));
    assert_eq!((s.total(), s.finished(), s.attempts, s.unanswered, s.alerts), (4, 2, 3, 1, 1));
}

async fn patients_whose_call_went_through_today_are_reported(store: Store) {
    planned(&store, 2).await;
    let now = Utc::now();
    let reported =
        store.campaign().reported_patients(now - Duration::hours(1), now + Duration::hours(1)).await.unwrap();
    assert!(reported.is_empty());
    let call = NewCall {
        call_sid: CallSid::parse("CA1").unwrap(),
        patient_id: Some(PatientId::parse("p1").unwrap()),
        job_id: None,
        direction: Direction::Outbound,
        state: Default::default(),
        flow_version: None,
        started_at: None,
    };
    let ended = TurnWrite { response: "<Response/>".into(), ended: true, ..Default::default() };
    store.calls().turn("CA1", 0, Some(call.into()), Box::new(move |_| Ok(ended.clone()))).await.unwrap();
    let reported =
        store.campaign().reported_patients(now - Duration::hours(1), now + Duration::hours(1)).await.unwrap();
    assert_eq!(reported, ["p1"]);
    assert!(
        store
            .campaign()
            .reported_patients(now + Duration::hours(1), now + Duration::hours(2))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn calls_of_an_earlier_day_never_placed_are_given_up_with_an_alert(store: Store) {
    planned(&store, 3).await;
    let a = claim_one(&store, at(0, 0)).await;
    store.campaign().end_attempt(a.job_id, 1, "busy", None, &JobNext::Retry(at(23, 0)), at(0, 5)).await.unwrap();
    claim_one(&store, at(0, 1)).await;
    let tomorrow = day().succ_opt().unwrap();
    assert_eq!(store.campaign().close_days(day(), at(1, 0)).await.unwrap(), 0, "today's jobs stay");
    assert_eq!(
        store.campaign().close_days(tomorrow, at(23, 59)).await.unwrap(),
        2,
        "p1 waiting to retry, p3 never dialled"
    );
    assert_eq!(status_of(&store, "p2").await.status, "dialing", "a call in progress is left to end");
    for p in ["p1", "p3"] {
        let v = status_of(&store, p).await;
        assert_eq!((v.status.as_str(), v.outcome.as_deref()), ("unreachable", Some("day ended")));
        assert_eq!(store.calls().patient_alerts(p).await.unwrap(), [day_ended().to_string()]);
    }
    assert_eq!(store.campaign().close_days(tomorrow, at(23, 59)).await.unwrap(), 0);
}

async fn a_campaign_started_by_hand_brings_planned_calls_forward(store: Store) {
    planned(&store, 3).await;
    let j = claim_one(&store, at(0, 0)).await;
    assert_eq!(
        store.campaign().advance_jobs(day(), "00:00", at(0, 1)).await.unwrap(),
        1,
        "p3, due at 00:02; p2 is due at 00:01 already"
    );
    assert_eq!(status_of(&store, "p3").await.due_at, Some(at(0, 1)));
    assert_eq!(status_of(&store, "p1").await.status, "dialing", "a job in hand is left alone");
    assert_eq!(store.campaign().attempts(j.job_id).await.unwrap().len(), 1);
}

/// The dialer lock is held by one store at a time, until it lets go or loses its connection
/// (on PostgreSQL: the session ended by the server); then another takes it.
async fn one_instance_at_a_time_holds_the_dialer_lock(db: support::TestDb) {
    let (first, second) = (db.open().await, db.open().await);
    let (mut a, mut b) = (first.dialer_lock(), second.dialer_lock());
    assert!(a.hold().await.unwrap(), "a free lock is taken");
    assert!(!b.hold().await.unwrap(), "a lock held is not");
    assert!(a.hold().await.unwrap(), "and stays held");
    if db.is_sqlite() {
        a.release().await;
        a = first.dialer_lock();
    } else {
        // Only this test's database: other tests' instances hold the same key in theirs.
        db.execute(
            "select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and granted \
             and database = (select oid from pg_database where datname = current_database())",
        )
        .await;
        assert!(a.hold().await.is_err(), "the leader hears that its connection is gone");
    }
    // The server ends a terminated session a moment after `pg_terminate_backend` returns: the
    // other instance takes the lock at one of its next tries, as the dialer's loop does.
    let mut taken = false;
    for _ in 0..50 {
        taken = b.hold().await.unwrap();
        if taken {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(taken, "another takes the lock");
    assert!(!a.hold().await.unwrap(), "the old holder does not get it back");
    b.release().await;
    assert!(a.hold().await.unwrap());
}

/// Six patients in two areas and none: every job status, their attempts, a call, a number
/// delivered and one given up, a follow-up; and a job and a number of other days, not counted.
async fn the_day_figures_count_each_area_and_the_total_and_nothing_of_other_days(store: Store) {
    let area = |id: &str, a: Option<&str>| Patient { area: a.map(str::to_string), ..patient(id) };
    let roster = [
        area("p1", Some("north")),
        area("p2", Some("north")),
        area("p3", Some("north")),
        area("p4", Some("south")),
        area("p5", Some("south")),
        area("p6", None),
    ];
    store.patients().import(&roster).await.unwrap();
    let jobs: Vec<NewJob> = (1..=6).map(|i| job(&format!("p{i}"), at(0, i - 1))).collect();
    store.campaign().plan_jobs(&jobs).await.unwrap();
    // Yesterday's job for p1, never dialled (due after every claim below).
    let yesterday = NewJob { day: day().pred_opt().unwrap(), ..job("p1", at(23, 0)) };
    store.campaign().plan_jobs(&[yesterday]).await.unwrap();
    let c = store.campaign();
    let p1 = claim_one(&store, at(0, 0)).await;
    let p2 = claim_one(&store, at(0, 1)).await;
    let p3 = claim_one(&store, at(0, 2)).await;
    let p4 = claim_one(&store, at(0, 3)).await;
    claim_one(&store, at(0, 4)).await; // p5: ringing
    c.end_attempt(p1.job_id, 1, "completed", Some("human"), &JobNext::Done, at(0, 10)).await.unwrap();
    c.attempt_progress(p2.job_id, 1, "in-progress", Some("human"), at(0, 30)).await.unwrap();
    c.end_attempt(p3.job_id, 1, "busy", None, &JobNext::Retry(at(2, 0)), at(0, 10)).await.unwrap();
    c.end_attempt(p4.job_id, 1, "no-answer", None, &JobNext::Unreachable("no answer".into()), at(0, 10)).await.unwrap();

    let call = NewCall {
        call_sid: sid("CA1"),
        patient_id: Some(PatientId::parse("p1").unwrap()),
        job_id: Some(p1.job_id),
        direction: Direction::Outbound,
        state: Default::default(),
        flow_version: None,
        started_at: None,
    };
    let ended = TurnWrite { response: "<Response/>".into(), ended: true, ..Default::default() };
    store.calls().turn("CA1", 0, Some(call.into()), Box::new(move |_| Ok(ended.clone()))).await.unwrap();

    let now = Utc::now();
    let sms = |id: &str, phone: &str, hash: &str, when: DateTime<Utc>| NewNumber {
        patient_id: PatientId::parse(id).unwrap(),
        number_hash: hash.into(),
        sealed: None,
        issued_at: when,
        expires_at: when + Duration::hours(24),
        consent: Consent::Staff { name: "nurse".into() },
        delivery: NumberDelivery::Sms,
        message: Some(NewMessage { channel: Channel::Sms, recipient: phone.into(), body_sealed: "sealed".into() }),
    };
    store.numbers().issue(&sms("p1", "+819000000001", "hash-p1", now)).await.unwrap();
    store.numbers().issue(&sms("p4", "+819000000004", "hash-p4", now)).await.unwrap();
    store.numbers().issue(&sms("p2", "+819000000002", "hash-p2-old", now - Duration::days(2))).await.unwrap();
    let claimed = store.outbox().claim("test", now, now + Duration::minutes(5), 10).await.unwrap();
    for m in &claimed {
        let result = if m.recipient.ends_with('1') {
            SendResult::Sent { provider_id: "SM1".into(), status: "sent".into() }
        } else {
            SendResult::Failed { error: "refused".into(), dead: true }
        };
        store.outbox().finish(m.message_id, &result, now).await.unwrap();
    }
    assert!(store.outbox().status("SM1", "delivered", None).await.unwrap());

    let f = store.campaign().day_figures(day(), now - Duration::hours(1), now + Duration::hours(1)).await.unwrap();
    let areas: Vec<&str> = f.areas.iter().map(|a| a.area.as_str()).collect();
    assert_eq!(areas, ["north", "south", ""], "by name, no area last");
    let (north, south, none) = (&f.areas[0], &f.areas[1], &f.areas[2]);
    let jobs = |a: &AreaDay| ["planned", "dialing", "in-progress", "retry", "done", "unreachable"].map(|s| a.count(s));
    assert_eq!(jobs(north), [0, 0, 1, 1, 1, 0]);
    assert_eq!(jobs(south), [0, 1, 0, 0, 0, 1]);
    assert_eq!(jobs(none), [1, 0, 0, 0, 0, 0]);
    let rest = |a: &AreaDay| (a.planned(), a.attempts, a.calls, a.numbers_issued, a.sms_delivered, a.sms_failed);
    assert_eq!(rest(north), (3, 3, 1, 1, 1, 0), "p2's older number is another day's");
    assert_eq!(rest(south), (2, 2, 0, 1, 0, 1));
    assert_eq!(rest(none), (1, 0, 0, 0, 0, 0));
    assert_eq!((north.followups_open, south.followups_open, none.followups_open), (0, 1, 0));
    let total = f.total();
    assert_eq!(rest(&total), (6, 5, 1, 2, 1, 1), "yesterday's job is not today's");
    assert_eq!((total.count("done"), total.followups_open, total.hung_up), (1, 1, 0));
}

/// A job of check-in `checkin` whose window runs from `from` to `to` (hours of the test day).
fn checkin_job(id: &str, checkin: &str, due: DateTime<Utc>, (from, to): (u32, u32)) -> NewJob {
    NewJob { checkin: checkin.into(), window: Some((at(from, 0), at(to, 0))), ..job(id, due) }
}

async fn each_check_in_of_a_day_has_a_job_of_its_own(store: Store) {
    store.patients().import(&[patient("p1"), patient("p2")]).await.unwrap();
    let jobs = [
        checkin_job("p1", "09:00", at(0, 0), (0, 6)),
        checkin_job("p1", "15:00", at(6, 0), (6, 15)),
        checkin_job("p2", "09:00", at(0, 1), (0, 6)),
    ];
    assert_eq!(store.campaign().plan_jobs(&jobs).await.unwrap(), 3);
    assert_eq!(store.campaign().plan_jobs(&jobs).await.unwrap(), 0, "planning again adds nothing");
    let day_jobs = store.campaign().jobs_for_day(day()).await.unwrap();
    let keys: Vec<(&str, &str)> = day_jobs.iter().map(|j| (j.patient_id.as_str(), j.checkin.as_str())).collect();
    assert_eq!(keys, [("p1", "09:00"), ("p1", "15:00"), ("p2", "09:00")]);
    // `--now` during the first check-in brings forward only its jobs.
    assert_eq!(store.campaign().advance_jobs(day(), "09:00", at(0, 0)).await.unwrap(), 1, "p2");
    let p1: Vec<_> = day_jobs.iter().filter(|j| j.patient_id == "p1").collect();
    assert_eq!(p1[1].due_at, Some(at(6, 0)));
    // A retry of the first check-in's call stays in it; the second one's job is its own.
    let j = claim_one(&store, at(0, 0)).await;
    let job = store.campaign().job(j.job_id).await.unwrap().unwrap();
    assert_eq!(job.window_to, Some(at(6, 0)));
}

async fn a_patient_who_reported_in_the_check_in_is_not_dialled(db: support::TestDb) {
    let store = db.open().await;
    store.patients().import(&["p1", "p2", "p3", "p4"].map(patient)).await.unwrap();
    let jobs: Vec<NewJob> =
        ["p1", "p2", "p3", "p4"].iter().map(|id| checkin_job(id, "09:00", at(1, 0), (0, 6))).collect();
    store.campaign().plan_jobs(&jobs).await.unwrap();
    // p1 phoned in, p2 reported on the web, both in the window; p3 reported on the web in the
    // next check-in; p4 began a web report and did not finish it.
    let report = |sid: &str, p: &str, direction: &str, ended: bool, t: DateTime<Utc>| {
        format!(
            "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, ended, created_at) \
             values ('{sid}', '{p}', '{direction}', 'daily-health-check', 'v1', '{{}}', {ended}, '{}');",
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
        )
    };
    db.execute(
        &[
            report("CA1", "p1", "inbound", true, at(0, 30)),
            report("WEB2", "p2", "web", true, at(0, 40)),
            report("WEB3", "p3", "web", true, at(6, 30)),
            report("WEB4", "p4", "web", false, at(0, 50)),
        ]
        .concat(),
    )
    .await;
    let mut reported = store.campaign().reported_by_channel(at(0, 0), at(6, 0)).await.unwrap();
    reported.sort_by(|a, b| a.patient_id.cmp(&b.patient_id));
    assert_eq!(
        reported,
        [
            ReportedPatient { patient_id: "p1".into(), web: false },
            ReportedPatient { patient_id: "p2".into(), web: true }
        ]
    );
    assert!(store.campaign().claim_jobs(at(0, 59), at(1, 19), 10).await.unwrap().is_empty(), "not due yet");
    let claimed = store.campaign().claim_jobs(at(1, 0), at(1, 20), 10).await.unwrap();
    let claimed: Vec<&str> = claimed.iter().map(|j| j.patient_id.as_str()).collect();
    assert_eq!(claimed, ["p3", "p4"], "only those who did not report in the check-in are dialled");
    for (p, outcome) in [("p1", REPORTED_BY_PHONE), ("p2", REPORTED_ON_WEB)] {
        let v = status_of(&store, p).await;
        assert_eq!((v.status.as_str(), v.outcome.as_deref(), v.attempt), ("reported", Some(outcome), 0));
    }
    let s = store.campaign().summary(day(), at(0, 0)).await.unwrap();
    assert_eq!((s.count("reported"), s.count("dialing"), s.finished(), s.attempts), (2, 2, 2, 2));
}

async fn a_call_not_placed_before_its_check_in_ended_is_given_up_with_an_alert(store: Store) {
    store.patients().import(&[patient("p1"), patient("p2")]).await.unwrap();
    let jobs = [checkin_job("p1", "09:00", at(1, 0), (0, 6)), checkin_job("p1", "15:00", at(6, 0), (6, 15))];
    store.campaign().plan_jobs(&jobs).await.unwrap();
    assert_eq!(store.campaign().close_days(day(), at(5, 59)).await.unwrap(), 0);
    assert_eq!(store.campaign().close_days(day(), at(6, 0)).await.unwrap(), 1, "the 09:00 job");
    let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
    let states: Vec<(&str, &str, Option<&str>)> =
        jobs.iter().map(|j| (j.checkin.as_str(), j.status.as_str(), j.outcome.as_deref())).collect();
    assert_eq!(states, [("09:00", "unreachable", Some("check-in ended")), ("15:00", "planned", None)]);
    assert_eq!(
        store.calls().patient_alerts("p1").await.unwrap(),
        ["unreachable: the 09:00 check-in ended before the call could be placed"]
    );
}

/// A database at migration 14 with a day's job planned: after the migration it is that day's
/// one check-in (`00:00`), so planning the day again adds nothing, and a check-in added later
/// plans its own.
async fn jobs_planned_before_check_ins_are_kept_as_the_days_one_check_in(db: support::TestDb) {
    let backend = if db.is_sqlite() { "sqlite" } else { "postgres" };
    let applied_at = if db.is_sqlite() { "text" } else { "timestamptz" };
    db.execute(&format!(
        "create table schema_migrations (version bigint primary key, name text not null, applied_at {applied_at} not null)"
    ))
    .await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut before = 0;
    for file in files.iter().filter(|f| f.file_name().unwrap().to_str().unwrap() < "0020") {
        before += 1;
        db.execute(&std::fs::read_to_string(file).unwrap()).await;
        let now = if db.is_sqlite() { "'2026-01-01T00:00:00Z'" } else { "now()" };
        db.execute(&format!("insert into schema_migrations values ({before}, 'before', {now})")).await;
    }
    db.execute(
        "insert into patients (patient_id, name, phone) values ('p1', '山田 花子', '+819012345678');
         insert into jobs (patient_id, flow, day, due_at, status) values ('p1', 'daily-health-check', '2026-11-25', '2026-11-25T00:00:00.000Z', 'planned');",
    )
    .await;
    let store = Store::open(db.url(), false).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), MIGRATION_COUNT - before);
    let jobs = store.campaign().jobs_for_day(day()).await.unwrap();
    assert_eq!((jobs.len(), jobs[0].checkin.as_str(), jobs[0].status.as_str()), (1, "00:00", "planned"));
    assert_eq!(store.campaign().plan_jobs(&[job("p1", at(1, 0))]).await.unwrap(), 0, "the same job");
    let later = checkin_job("p1", "15:00", at(6, 0), (6, 15));
    assert_eq!(store.campaign().plan_jobs(&[later]).await.unwrap(), 1);
    let j = claim_one(&store, at(0, 0)).await;
    assert_eq!(j.job_id, jobs[0].job_id, "the old job is dialled as before");
}

async fn a_web_request_goes_out_once_with_its_message_unless_the_patient_reported(db: support::TestDb) {
    let store = db.open().await;
    store.patients().import(&["p1", "p2", "p3"].map(patient)).await.unwrap();
    // Requests at 00:00, calls after the grace at 01:00; p3 reported as the check-in began.
    let jobs: Vec<NewJob> = ["p1", "p2", "p3"]
        .iter()
        .map(|id| NewJob { web_at: Some(at(0, 0)), ..checkin_job(id, "09:00", at(1, 0), (0, 6)) })
        .collect();
    store.campaign().plan_jobs(&jobs).await.unwrap();
    let advanced = store.campaign().advance_jobs(day(), "09:00", at(0, 0)).await.unwrap();
    assert_eq!(advanced, 0, "`--now` leaves a call waiting for a web report after its grace");
    db.execute(
        "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, ended, created_at) \
         values ('WEB3', 'p3', 'web', 'daily-health-check', 'v1', '{}', true, '2026-11-25T00:00:00.000Z');",
    )
    .await;
    assert!(store.campaign().due_web_requests(at(0, 0) - Duration::seconds(1), 10).await.unwrap().is_empty());
    assert_eq!(store.campaign().settle_reported(at(0, 0), false).await.unwrap(), 1, "p3 reported before the request");
    let due = store.campaign().due_web_requests(at(0, 0), 10).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|r| r.patient_id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!((due[0].checkin.as_str(), due[0].due_at, due[0].day), ("09:00", at(1, 0), day()));
    let message = NewMessage {
        channel: ivr::types::Channel::Sms,
        recipient: "+819000000001".into(),
        body_sealed: "sealed".into(),
    };
    assert!(store.campaign().web_request_sent(due[0].job_id, Some(&message), at(0, 0)).await.unwrap());
    assert!(!store.campaign().web_request_sent(due[0].job_id, Some(&message), at(0, 1)).await.unwrap(), "once");
    assert!(store.campaign().web_request_sent(due[1].job_id, None, at(0, 0)).await.unwrap(), "no way to reach p2");
    assert!(store.campaign().due_web_requests(at(0, 5), 10).await.unwrap().is_empty());
    let outbox = store.outbox().for_patient("p1").await.unwrap();
    assert_eq!(outbox.len(), 1, "one message: {outbox:?}");
    assert!(store.outbox().for_patient("p2").await.unwrap().is_empty());
    let s = store.campaign().summary(day(), at(0, 0) - Duration::hours(1)).await.unwrap();
    assert_eq!((s.web_requests, s.web_reports, s.count("reported"), s.count("planned")), (2, 1, 1, 2));
    // The calls follow at 10:00 for those who did not report.
    // p1 reports on the web before the grace ends: settled at once when every job is looked at.
    db.execute(
        "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, ended, created_at) \
         values ('WEB1', 'p1', 'web', 'daily-health-check', 'v1', '{}', true, '2026-11-25T00:20:00.000Z');",
    )
    .await;
    assert_eq!(store.campaign().settle_reported(at(0, 30), false).await.unwrap(), 0, "not due yet");
    assert_eq!(store.campaign().settle_reported(at(0, 30), true).await.unwrap(), 1);
    let claimed = store.campaign().claim_jobs(at(1, 0), at(1, 20), 10).await.unwrap();
    let claimed: Vec<&str> = claimed.iter().map(|j| j.patient_id.as_str()).collect();
    assert_eq!(claimed, ["p2"]);
}
