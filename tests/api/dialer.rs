//! The webhooks of calls the dialer placed: answering machines, a "machine" that is a person,
//! and status callbacks that end an attempt once and move its job on.

use chrono::{DateTime, Duration, Utc};
use ivr::scheduler::clock::Clock;
use ivr::store::{JobView, NewJob};

use crate::common::app::*;

const MOBILE: &str = "+819012345670";

/// A server whose clock stands at 10:00 in Tokyo today, inside the calling hours: a retry half
/// an hour on falls in the same slot whatever the hour the tests run at.
async fn spawn_at_ten() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&sqlite_url(dir.path()));
    let today = Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let ten = today.and_hms_opt(10, 0, 0).unwrap().and_local_timezone(chrono_tz::Asia::Tokyo).unwrap();
    spawn_app_at(s, dir, Clock::manual(ten.with_timezone(&Utc))).await
}

/// The server's time.
fn now(app: &TestApp) -> DateTime<Utc> {
    app.state.campaign.clock.now()
}

/// A planned job for P001, claimed as the dialer would: (job id, attempt).
async fn dialled(app: &TestApp) -> (i64, i32) {
    app.add_patient("P001", MOBILE).await;
    let now = now(app);
    let day = app.server.as_ref().unwrap().state.campaign.hours.tz();
    let day = now.with_timezone(&day).date_naive();
    // Due later than the server's own dialer looks (its clock stands still): this test claims
    // the job itself.
    let due = now + Duration::hours(12);
    let job = NewJob {
        patient_id: ivr::types::PatientId::parse("P001").unwrap(),
        flow: "daily-health-check".into(),
        day,
        checkin: "00:00".into(),
        due_at: due,
        window: None,
        web_at: None,
    };
    app.store.campaign().plan_jobs(&[job]).await.unwrap();
    let claimed = app.store.campaign().claim_jobs(due, due + Duration::minutes(20), 1).await.unwrap();
    (claimed[0].job_id, claimed[0].attempt)
}

async fn job(app: &TestApp) -> JobView {
    let tz = app.server.as_ref().unwrap().state.campaign.hours.tz();
    let day = now(app).with_timezone(&tz).date_naive();
    app.store.campaign().jobs_for_day(day).await.unwrap().remove(0)
}

fn answered(sid: &str, by: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CallSid", sid.to_string()),
        ("From", "+815000000000".into()),
        ("To", MOBILE.into()),
        ("Direction", "outbound-api".into()),
        ("CallStatus", "in-progress".into()),
        ("AnsweredBy", by.into()),
    ]
}

async fn post(app: &TestApp, path: &str, params: &[(&'static str, String)]) -> (u16, String) {
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.post(path, &params).await
}

#[tokio::test]
async fn an_answering_machine_hears_the_message_and_the_job_is_retried() {
    let app = spawn_at_ten().await;
    let (job_id, attempt) = dialled(&app).await;
    let q = format!("job={job_id}&attempt={attempt}");
    let (status, twiml) = post(&app, &format!("/twilio/voice?{q}"), &answered("CA1", "machine_end_beep")).await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("0 3、1 2 3 4、5 6 7 8"),
        "the message names the health centre's number (centre.phone): {twiml}"
    );
    assert!(twiml.contains("person=1") && twiml.ends_with("<Hangup/></Response>"), "{twiml}");
    assert!(app.store.calls().get("CA1").await.unwrap().is_none(), "no call record for a machine");
    let mut done = answered("CA1", "machine_end_beep");
    done[4].1 = "completed".into();
    for _ in 0..2 {
        // Replayed: the attempt ends once.
        assert_eq!(post(&app, &format!("/twilio/status?{q}"), &done).await.0, 200);
    }
    let j = job(&app).await;
    assert_eq!((j.status.as_str(), j.outcome.as_deref(), j.attempt), ("retry", Some("machine"), 1));
    assert_eq!(j.due_at.unwrap(), now(&app) + Duration::minutes(30), "retried half an hour on");
    let attempts = app.store.campaign().attempts(job_id).await.unwrap();
    assert_eq!(attempts[0].call_sid.as_ref().map(|s| s.as_str()), Some("CA1"));
    assert_eq!(attempts[0].answered_by.as_deref(), Some("machine_end_beep"));
}

#[tokio::test]
async fn a_machine_that_presses_a_key_is_a_person_and_the_call_goes_on() {
    let app = spawn_at_ten().await;
    let (job_id, attempt) = dialled(&app).await;
    let q = format!("job={job_id}&attempt={attempt}");
    post(&app, &format!("/twilio/voice?{q}"), &answered("CA2", "machine_start")).await;
    let mut pressed = answered("CA2", "machine_start");
    pressed.push(("Digits", "1".into()));
    let (_, twiml) = post(&app, &format!("/twilio/voice?{q}&person=1"), &pressed).await;
    assert!(twiml.contains("生年月日"), "the daily call starts: {twiml}");
    let call = app.store.calls().get("CA2").await.unwrap().unwrap();
    assert_eq!(call.job_id, Some(job_id));
    // Silence after the message instead: a machine after all, the call just ends.
    let mut silent = answered("CA3", "machine_start");
    silent.push(("Digits", String::new()));
    let (_, twiml) = post(&app, &format!("/twilio/voice?{q}&person=1"), &silent).await;
    assert!(twiml.contains("<Hangup/>") && !twiml.contains("<Gather"), "{twiml}");
}

#[tokio::test]
async fn a_completed_call_ends_the_job_and_unanswered_last_attempts_alert() {
    let app = spawn_at_ten().await;
    let (job_id, attempt) = dialled(&app).await;
    let q = format!("job={job_id}&attempt={attempt}");
    for status in ["initiated", "ringing"] {
        let mut p = answered("CA4", "");
        p[4].1 = status.into();
        post(&app, &format!("/twilio/status?{q}"), &p).await;
    }
    assert_eq!(job(&app).await.status, "dialing");
    let mut busy = answered("CA4", "");
    busy[4].1 = "busy".into();
    post(&app, &format!("/twilio/status?{q}"), &busy).await;
    assert_eq!(job(&app).await.status, "retry");

    // The last attempt (max_attempts = 3) goes unanswered: the health centre hears of it.
    let later = now(&app) + Duration::days(1);
    for n in 2..=3 {
        let claimed = app.store.campaign().claim_jobs(later, later + Duration::minutes(20), 1).await.unwrap();
        assert_eq!(claimed.len(), 1, "attempt {n} is due");
        let mut none = answered(&format!("CA5{n}"), "");
        none[4].1 = "no-answer".into();
        post(&app, &format!("/twilio/status?job={job_id}&attempt={n}"), &none).await;
    }
    let j = job(&app).await;
    assert_eq!((j.status.as_str(), j.attempt), ("unreachable", 3));
    let alerts = app.store.calls().patient_alerts("P001").await.unwrap();
    assert_eq!(alerts, ["unreachable: 3 attempt(s) today, the last no-answer"]);
}
