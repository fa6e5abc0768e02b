//! The patients' personal links on SQLite and on PostgreSQL: a token shown once and kept only as
//! its hash, one live link per patient, revocation, the end of the care period, the patients a
//! check-in's web request goes to; and a web report, stored as a call with direction `web`,
//! counted as the day's report.

use crate::common::db as support;
use crate::common::patients;
use crate::common::patients::PatientBuilder;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use ivr::store::*;
use ivr::types::{CallSid, CallStatus, Direction, PatientId};

on_both_backends! {
    with_store: a_link_is_found_by_its_token_and_the_store_keeps_only_its_hash;
    with_store: a_new_link_revokes_the_patients_earlier_one;
    with_store: a_revoked_or_ended_link_no_longer_counts_as_live;
    with_store: a_link_for_a_patient_not_on_the_roster_is_refused;
    with_store: a_web_report_is_a_finished_call_that_counts_as_the_days_report;
    with_store: a_days_last_birth_date_try_revokes_the_link_and_alerts_once;
    with_store: the_patients_to_send_a_first_link_are_those_in_care_who_never_had_one;
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn id(s: &str) -> PatientId {
    PatientId::parse(s).unwrap()
}

async fn roster(store: &Store, ids: &[&str]) {
    for (i, p) in ids.iter().enumerate() {
        let phone = format!("+8190000000{i:02}");
        store.patients().upsert(&patients::patient(p, &phone)).await.unwrap();
    }
}

async fn a_link_is_found_by_its_token_and_the_store_keeps_only_its_hash(store: Store) {
    roster(&store, &["p1"]).await;
    let t = now();
    let new = store.links().create(&id("p1"), t + Duration::days(10), t).await.unwrap();
    assert_eq!(new.link.patient_id, id("p1"));
    assert_eq!((new.link.created_at, new.link.expires_at), (t, t + Duration::days(10)));
    assert_eq!(new.link.state(t), LinkState::Live);
    let found = store.links().find(&new.token).await.unwrap();
    assert_eq!(found, Some(new.link.clone()));
    assert_eq!(store.links().latest(&id("p1")).await.unwrap(), Some(new.link.clone()));
    let forged = LinkToken::parse(&"A".repeat(TOKEN_CHARS)).unwrap();
    assert_eq!(store.links().find(&forged).await.unwrap(), None);
    assert_eq!(store.links().latest(&id("p2")).await.unwrap(), None);
}

async fn a_new_link_revokes_the_patients_earlier_one(store: Store) {
    roster(&store, &["p1", "p2"]).await;
    let t = now();
    let first = store.links().create(&id("p1"), t + Duration::days(10), t).await.unwrap();
    let other = store.links().create(&id("p2"), t + Duration::days(10), t).await.unwrap();
    let second = store.links().create(&id("p1"), t + Duration::days(10), t + Duration::minutes(1)).await.unwrap();
    assert_ne!(first.token, second.token);
    let old = store.links().find(&first.token).await.unwrap().unwrap();
    assert_eq!(old.revoked_at, Some(t + Duration::minutes(1)));
    assert_eq!(old.revoked_by.as_deref(), Some(REPLACED));
    assert_eq!(old.state(t + Duration::minutes(2)), LinkState::Revoked);
    let new = store.links().find(&second.token).await.unwrap().unwrap();
    assert_eq!(new.state(t + Duration::minutes(2)), LinkState::Live);
    assert_eq!(store.links().latest(&id("p1")).await.unwrap(), Some(new));
    let p2 = store.links().find(&other.token).await.unwrap().unwrap();
    assert_eq!(p2.revoked_at, None, "another patient's link is left alone");
}

async fn a_revoked_or_ended_link_no_longer_counts_as_live(store: Store) {
    roster(&store, &["p1", "p2", "p3"]).await;
    let t = now();
    let day = |d: i64| t + Duration::days(d);
    for p in ["p1", "p2"] {
        store.links().create(&id(p), day(3), t).await.unwrap();
    }
    store.links().create(&id("p3"), day(1), t).await.unwrap();
    let live = |from, to| {
        let store = store.clone();
        async move { store.links().live_patients(from, to).await.unwrap() }
    };
    assert_eq!(live(t, day(1)).await, [id("p1"), id("p2"), id("p3")]);
    assert_eq!(live(day(1), day(2)).await, [id("p1"), id("p2")], "p3's care ended");
    assert_eq!(live(day(-2), day(-1)).await, Vec::<PatientId>::new(), "no link yet");

    assert_eq!(store.links().revoke(&id("p2"), "nurse1", day(1)).await.unwrap(), 1);
    assert_eq!(store.links().revoke(&id("p2"), "nurse1", day(1)).await.unwrap(), 0, "nothing live left");
    assert_eq!(live(day(1), day(2)).await, [id("p1")]);
    let p2 = store.links().latest(&id("p2")).await.unwrap().unwrap();
    assert_eq!((p2.state(day(2)), p2.revoked_by.as_deref()), (LinkState::Revoked, Some("nurse1")));
    let p3 = store.links().latest(&id("p3")).await.unwrap().unwrap();
    assert_eq!(p3.state(day(2)), LinkState::Expired);
    assert_eq!(store.links().revoke(&id("p3"), "nurse1", day(2)).await.unwrap(), 0, "an ended link stays ended");
}

async fn a_link_for_a_patient_not_on_the_roster_is_refused(store: Store) {
    let t = now();
    match store.links().create(&id("nobody"), t + Duration::days(1), t).await {
        Err(StoreError::UnknownPatient(p)) => assert_eq!(p, "nobody"),
        other => panic!("expected UnknownPatient, got {other:?}"),
    }
    assert_eq!(store.links().live_patients(t, t + Duration::days(1)).await.unwrap(), Vec::<PatientId>::new());
}

async fn a_web_report_is_a_finished_call_that_counts_as_the_days_report(store: Store) {
    roster(&store, &["p1", "p2"]).await;
    let t = now();
    let (from, to) = (t - Duration::hours(1), t + Duration::hours(1));
    let call = NewCall {
        call_sid: CallSid::parse("web-1-20261207-0").unwrap(),
        patient_id: Some(id("p1")),
        job_id: None,
        direction: Direction::Web,
        state: Default::default(),
        flow_version: None,
        started_at: None,
    };
    let write = TurnWrite {
        response: "report".into(),
        ended: true,
        answers: vec![("temperature".into(), ivr::flow::Value::Number { raw: 365, scale: 1 })],
        ..Default::default()
    };
    let f = { move |_: &CallRecord| Ok(write.clone()) };
    let r = store.calls().turn("web-1-20261207-0", 0, Some(call.clone().into()), Box::new(f.clone())).await.unwrap();
    assert!(!r.replay);
    let again = store.calls().turn("web-1-20261207-0", 0, Some(call.into()), Box::new(f)).await.unwrap();
    assert!(again.replay, "the same page sent twice is stored once");
    assert_eq!(again.response, "report");

    let stored = store.calls().get("web-1-20261207-0").await.unwrap().unwrap();
    assert_eq!((stored.direction, stored.status, stored.ended), (Direction::Web, CallStatus::Completed, true));
    assert_eq!(store.calls().answers(stored.call_id).await.unwrap().len(), 1);
    let calls = store.calls().of_patient("p1", 10).await.unwrap();
    assert_eq!(calls.iter().map(|c| c.direction).collect::<Vec<_>>(), [Direction::Web]);
    assert_eq!(store.campaign().reported_patients(from, to).await.unwrap(), ["p1"]);
    assert_eq!(store.links().web_reports(&id("p1"), from, to).await.unwrap(), 1);
    assert_eq!(store.links().web_reports(&id("p2"), from, to).await.unwrap(), 0);
    assert_eq!(store.links().web_reports(&id("p1"), to, to + Duration::hours(1)).await.unwrap(), 0);
}

async fn a_days_last_birth_date_try_revokes_the_link_and_alerts_once(store: Store) {
    roster(&store, &["p1"]).await;
    let t = now();
    let new = store.links().create(&id("p1"), t + Duration::days(10), t).await.unwrap();
    let alert = NewAlert::flow("identity_not_confirmed", ivr::types::Severity::Normal);
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    let miss = |day: chrono::NaiveDate, at: DateTime<Utc>| {
        let (store, alert) = (store.clone(), alert.clone());
        async move { store.links().identity_miss(new.link.link_id, day, 3, &alert, at).await.unwrap() }
    };
    assert_eq!(miss(day, t).await, Some(2));
    assert_eq!(miss(day, t).await, Some(1));
    // A new day counts anew.
    let next = day.succ_opt().unwrap();
    assert_eq!(miss(next, t).await, Some(2));
    assert_eq!(miss(next, t).await, Some(1));
    assert!(store.followups().open_for("p1").await.unwrap().is_none());
    assert_eq!(miss(next, t + Duration::minutes(1)).await, Some(0));
    let link = store.links().find(&new.token).await.unwrap().unwrap();
    assert_eq!((link.revoked_at, link.revoked_by.as_deref()), (Some(t + Duration::minutes(1)), Some(IDENTITY_CHECK)));
    let item = store.followups().open_for("p1").await.unwrap().expect("an item opens");
    assert_eq!(item.reasons.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(), ["identity_not_confirmed"]);
    // A revoked link counts nothing more and alerts no more.
    assert_eq!(miss(next, t + Duration::minutes(2)).await, None);
    assert_eq!(store.followups().open_for("p1").await.unwrap().unwrap().reasons.len(), 1);
}

async fn the_patients_to_send_a_first_link_are_those_in_care_who_never_had_one(store: Store) {
    let p = |id: &str, phone: &str| patients::patient(id, phone);
    for patient in [
        p("a1", "+819000000001").care("2026-12-01", "2026-12-10"),
        p("a2", "+819000000002").care_from("2026-12-07"),
        p("b1", "+819000000003").care("2026-12-08", "2026-12-10"),
        p("b2", "+819000000004").care("2026-11-20", "2026-12-06"),
        p("b3", "+819000000005"),
        p("c1", "+819000000006").care("2026-12-01", "2026-12-10"),
    ] {
        store.patients().upsert(&patient).await.unwrap();
    }
    let t = now();
    store.links().create(&id("c1"), t + Duration::days(3), t).await.unwrap();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    let found = store.links().unlinked_in_care(today).await.unwrap();
    // b1 not begun, b2 ended, b3 no care dates, c1 has had a link.
    assert_eq!(found.iter().map(|p| p.patient_id.as_str()).collect::<Vec<_>>(), ["a1", "a2"]);
}
