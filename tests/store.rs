//! The store's conformance suite: every test runs once on SQLite and once on PostgreSQL
//! (`sqlite::…` and `postgres::…`), each on a database of its own. PostgreSQL tests are skipped
//! when no server answers (see `support`), except under `CI=true`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ivr::flow::{CallState, Phase, Value};
use ivr::store::*;

on_both_backends! {
    with_db: migrations_apply_once_and_the_database_answers;
    with_db: two_instances_starting_together_apply_each_migration_once;
    with_store: a_patient_is_inserted_then_updated_in_place;
    with_store: a_patient_is_found_by_id_and_by_phone;
    with_store: a_job_is_created_planned_and_read_back;
    with_store: the_first_turn_creates_the_call_and_stores_its_state_event_answers_and_alerts;
    with_store: the_next_turn_advances_the_call_and_answers_are_upserted_by_name;
    with_store: answers_keep_their_types;
    with_store: a_replayed_turn_returns_its_stored_response_without_running_the_engine;
    with_store: a_turn_from_the_future_returns_the_latest_response_without_running_the_engine;
    with_store: twenty_copies_of_one_request_at_once_run_the_engine_once;
    with_store: ten_simultaneous_first_turns_create_one_call;
    with_db: two_instances_on_one_database_take_turns_on_a_call;
    with_store: status_callbacks_move_forward_and_never_back;
    with_store: a_call_that_ends_before_its_flow_is_marked_incomplete;
    with_store: a_call_whose_flow_ended_stays_complete;
    with_store: unknown_statuses_and_unknown_calls_change_nothing;
    with_store: a_turn_for_an_unknown_call_without_creation_fails;
    with_store: an_engine_error_rolls_the_turn_back;
}

// ---- helpers ----

fn patient(id: &str, phone: &str) -> Patient {
    Patient {
        patient_id: id.into(),
        name: format!("Patient {id}"),
        phone: phone.into(),
        birth_md: Some("0412".into()),
        language: "ja-JP".into(),
        email: None,
        area: Some("north".into()),
        care_start: Some("2024-04-01".into()),
        care_end: None,
    }
}

fn call_state(at: &str) -> CallState {
    CallState {
        flow: "daily-health-check".into(),
        version: "3".into(),
        lang: "ja-JP".into(),
        state: at.into(),
        phase: if at.is_empty() { Phase::New } else { Phase::Asking },
        ..Default::default()
    }
}

fn new_call(sid: &str) -> NewCall {
    NewCall {
        call_sid: sid.into(),
        patient_id: Some("p1".into()),
        job_id: None,
        direction: "outbound".into(),
        state: call_state(""),
    }
}

/// What a turn writes: its response, an event, and a new state named after the response.
fn write(response: &str) -> TurnWrite {
    TurnWrite {
        state: Some(call_state(response)),
        response: response.into(),
        event_state: "asking".into(),
        event_input: "Digits=1".into(),
        ..Default::default()
    }
}

fn engine(w: TurnWrite) -> TurnFn {
    Box::new(move |_| Ok(w.clone()))
}

fn must_not_run() -> TurnFn {
    Box::new(|_| panic!("the engine ran for a turn already taken"))
}

/// An engine that counts its runs and takes a little time, so that concurrent requests
/// overlap.
fn counting(runs: &Arc<AtomicUsize>, response: &str) -> TurnFn {
    let (runs, w) = (runs.clone(), write(response));
    Box::new(move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        Ok(w.clone())
    })
}

/// A store with patient p1 and call CA1 after its first turn ("turn 0").
async fn call_started(store: &Store) -> CallRecord {
    store.upsert_patient(&patient("p1", "+819012345678")).await.unwrap();
    store.turn("CA1", 0, Some(new_call("CA1")), engine(write("turn 0"))).await.unwrap();
    store.call("CA1").await.unwrap().unwrap()
}

// ---- migrations ----

async fn migrations_apply_once_and_the_database_answers(db: support::TestDb) {
    let store = db.open_unmigrated().await;
    assert_eq!(store.migrate().await.unwrap(), ivr::store::MIGRATION_COUNT, "every migration on an empty database");
    assert_eq!(store.migrate().await.unwrap(), 0, "nothing left to apply");
    store.ping().await.unwrap();
    // A server starting later finds the schema in place.
    let again = db.open().await;
    assert_eq!(again.migrate().await.unwrap(), 0);
    again.ping().await.unwrap();
}

async fn two_instances_starting_together_apply_each_migration_once(db: support::TestDb) {
    let (a, b) = (db.open_unmigrated().await, db.open_unmigrated().await);
    let a = tokio::spawn(async move { a.migrate().await });
    let b = tokio::spawn(async move { b.migrate().await });
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(a + b, ivr::store::MIGRATION_COUNT, "applied {a} and {b}");
}

// ---- patients and jobs ----

async fn a_patient_is_inserted_then_updated_in_place(store: Store) {
    let mut p = patient("p1", "+819012345678");
    store.upsert_patient(&p).await.unwrap();
    assert_eq!(store.patient("p1").await.unwrap(), Some(p.clone()));

    p.name = "Renamed".into();
    p.phone = "+819087654321".into();
    p.email = Some("p1@example.jp".into());
    p.area = None;
    p.care_end = Some("2024-05-01".into());
    store.upsert_patient(&p).await.unwrap();
    assert_eq!(store.patient("p1").await.unwrap(), Some(p.clone()), "every field updated, none kept");
    assert_eq!(store.patient_by_phone("+819012345678").await.unwrap(), None, "the old number is gone");
}

async fn a_patient_is_found_by_id_and_by_phone(store: Store) {
    let (p2, p1) = (patient("p2", "+819011112222"), patient("p1", "+819011112222"));
    let (p3, upper) = (patient("p3", "+819033334444"), patient("P9", "+819033334444"));
    for p in [&p2, &p1, &p3, &upper] {
        store.upsert_patient(p).await.unwrap();
    }
    assert_eq!(store.patient("p3").await.unwrap(), Some(p3.clone()));
    assert_eq!(store.patient("nobody").await.unwrap(), None);
    // A shared phone: the first id, in byte order whatever the database's collation.
    assert_eq!(store.patient_by_phone("+819011112222").await.unwrap(), Some(p1));
    assert_eq!(store.patient_by_phone("+819033334444").await.unwrap(), Some(upper), "P9 before p3");
    assert_eq!(store.patient_by_phone("+810000000000").await.unwrap(), None);
}

async fn a_job_is_created_planned_and_read_back(store: Store) {
    store.upsert_patient(&patient("p1", "+819012345678")).await.unwrap();
    let first = store.create_job("p1", "daily-health-check").await.unwrap();
    let second = store.create_job("p1", "welcome").await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        store.job(first).await.unwrap(),
        Some(Job {
            job_id: first,
            patient_id: "p1".into(),
            flow: "daily-health-check".into(),
            status: "planned".into()
        })
    );
    assert_eq!(store.job(second).await.unwrap().unwrap().flow, "welcome");
    assert_eq!(store.job(first.max(second) + 1000).await.unwrap(), None);
}

// ---- turns ----

async fn the_first_turn_creates_the_call_and_stores_its_state_event_answers_and_alerts(store: Store) {
    store.upsert_patient(&patient("p1", "+819012345678")).await.unwrap();
    let job = store.create_job("p1", "daily-health-check").await.unwrap();
    let seen = Arc::new(Mutex::new(None));
    let engine: TurnFn = {
        let seen = seen.clone();
        Box::new(move |call: &CallRecord| {
            *seen.lock().unwrap() = Some(call.clone());
            Ok(TurnWrite {
                answers: vec![("temperature".into(), Value::Number { raw: 365, scale: 1 })],
                alerts: vec!["health_check".into()],
                ..write("turn 0")
            })
        })
    };
    let new = NewCall { job_id: Some(job), ..new_call("CA1") };
    let result = store.turn("CA1", 0, Some(new.clone()), engine).await.unwrap();
    assert_eq!(result, TurnResult { response: "turn 0".into(), replay: false });

    let seen = seen.lock().unwrap().take().expect("the engine ran");
    assert_eq!(seen.seq, -1, "the engine sees the call before its first turn");
    assert_eq!(seen.state, new.state);

    let call = store.call("CA1").await.unwrap().expect("the call is stored");
    assert_eq!(call.call_id, seen.call_id);
    assert_eq!(call.call_sid, "CA1");
    assert_eq!(call.patient_id.as_deref(), Some("p1"));
    assert_eq!(call.job_id, Some(job));
    assert_eq!(call.direction, "outbound");
    assert_eq!((call.flow.as_str(), call.flow_version.as_str()), ("daily-health-check", "3"));
    assert_eq!(call.state, call_state("turn 0"));
    assert_eq!(call.seq, 0);
    assert!(!call.ended && !call.incomplete);
    assert_eq!((call.status.as_str(), call.duration), ("in-progress", None));
    assert_eq!(store.event_count(call.call_id).await.unwrap(), 1);
    assert_eq!(
        store.answers(call.call_id).await.unwrap(),
        vec![Answer { name: "temperature".into(), value: Value::Number { raw: 365, scale: 1 } }]
    );
    assert_eq!(store.alerts(call.call_id).await.unwrap(), vec!["health_check".to_string()]);
}

async fn the_next_turn_advances_the_call_and_answers_are_upserted_by_name(store: Store) {
    let call = call_started(&store).await;
    let first = TurnWrite {
        answers: vec![
            ("temperature".into(), Value::Number { raw: 365, scale: 1 }),
            ("consent".into(), Value::text("no")),
        ],
        alerts: vec!["fever".into()],
        ..write("turn 1")
    };
    assert!(!store.turn("CA1", 1, None, engine(first)).await.unwrap().replay);
    let second = TurnWrite {
        answers: vec![("temperature".into(), Value::Number { raw: 370, scale: 1 }), ("spo2".into(), Value::int(97))],
        alerts: vec!["low_spo2".into()],
        ended: true,
        ..write("turn 2")
    };
    assert!(!store.turn("CA1", 2, None, engine(second)).await.unwrap().replay);

    let now = store.call("CA1").await.unwrap().unwrap();
    assert_eq!((now.seq, now.ended), (2, true));
    assert_eq!(now.state, call_state("turn 2"));
    assert_eq!(store.event_count(call.call_id).await.unwrap(), 3);
    assert_eq!(
        store.answers(call.call_id).await.unwrap(),
        vec![
            Answer { name: "consent".into(), value: Value::text("no") },
            Answer { name: "spo2".into(), value: Value::int(97) },
            Answer { name: "temperature".into(), value: Value::Number { raw: 370, scale: 1 } },
        ],
        "one answer per name, the latest"
    );
    assert_eq!(store.alerts(call.call_id).await.unwrap(), vec!["fever".to_string(), "low_spo2".to_string()]);

    // A turn without a new state keeps the state, and a flow that ended stays ended.
    let keep = TurnWrite { state: None, ended: false, ..write("turn 3") };
    store.turn("CA1", 3, None, engine(keep)).await.unwrap();
    let now = store.call("CA1").await.unwrap().unwrap();
    assert_eq!((now.seq, now.ended), (3, true));
    assert_eq!(now.state, call_state("turn 2"));
}

async fn answers_keep_their_types(store: Store) {
    let call = call_started(&store).await;
    let values = [
        ("a_temperature", Value::Number { raw: 365, scale: 1 }),
        ("b_integer", Value::int(97)),
        ("c_trailing_zero", Value::Number { raw: 3650, scale: 2 }),
        ("d_negative", Value::Number { raw: -5, scale: 2 }),
        ("e_large", Value::int(i64::MAX)),
        ("f_month_day", Value::text("0412")),
        ("g_yes", Value::Bool(true)),
        ("h_no", Value::Bool(false)),
        ("i_text_true", Value::text("true")),
        ("j_japanese", Value::text("はい")),
        ("SpO2", Value::int(97)),
    ];
    let answers = values.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
    store.turn("CA1", 1, None, engine(TurnWrite { answers, ..write("turn 1") })).await.unwrap();
    let stored = store.answers(call.call_id).await.unwrap();
    // In byte order of their names (as `str` compares), whatever the database's collation.
    let mut expected: Vec<Answer> = values.into_iter().map(|(n, v)| Answer { name: n.into(), value: v }).collect();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(stored, expected);
}

async fn a_replayed_turn_returns_its_stored_response_without_running_the_engine(store: Store) {
    let call = call_started(&store).await;
    let w = TurnWrite { answers: vec![("spo2".into(), Value::int(97))], alerts: vec!["x".into()], ..write("turn 1") };
    store.turn("CA1", 1, None, engine(w)).await.unwrap();
    let before = store.call("CA1").await.unwrap().unwrap();

    let replay = store.turn("CA1", 1, None, must_not_run()).await.unwrap();
    assert_eq!(replay, TurnResult { response: "turn 1".into(), replay: true });
    let replay = store.turn("CA1", 0, Some(new_call("CA1")), must_not_run()).await.unwrap();
    assert_eq!(replay, TurnResult { response: "turn 0".into(), replay: true }, "an older turn: its own response");

    assert_eq!(store.call("CA1").await.unwrap().unwrap(), before, "the call is unchanged");
    assert_eq!(store.event_count(call.call_id).await.unwrap(), 2);
    assert_eq!(store.answers(call.call_id).await.unwrap().len(), 1);
    assert_eq!(store.alerts(call.call_id).await.unwrap().len(), 1);
}

async fn a_turn_from_the_future_returns_the_latest_response_without_running_the_engine(store: Store) {
    let call = call_started(&store).await;
    store.turn("CA1", 1, None, engine(write("turn 1"))).await.unwrap();
    let result = store.turn("CA1", 5, None, must_not_run()).await.unwrap();
    assert_eq!(result, TurnResult { response: "turn 1".into(), replay: true });
    assert_eq!(store.call("CA1").await.unwrap().unwrap().seq, 1);
    assert_eq!(store.event_count(call.call_id).await.unwrap(), 2);
}

async fn twenty_copies_of_one_request_at_once_run_the_engine_once(store: Store) {
    let call = call_started(&store).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, engine) = (store.clone(), counting(&runs, "turn 1"));
            tokio::spawn(async move { store.turn("CA1", 1, None, engine).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the engine ran once");
    assert!(results.iter().all(|r| r.response == "turn 1"), "{results:?}");
    assert_eq!(results.iter().filter(|r| !r.replay).count(), 1, "one request took the turn");
    assert_eq!(store.event_count(call.call_id).await.unwrap(), 2);
    assert_eq!(store.call("CA1").await.unwrap().unwrap().seq, 1);
}

async fn ten_simultaneous_first_turns_create_one_call(store: Store) {
    store.upsert_patient(&patient("p1", "+819012345678")).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, engine) = (store.clone(), counting(&runs, "turn 0"));
            tokio::spawn(async move { store.turn("CA1", 0, Some(new_call("CA1")), engine).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the engine ran once");
    assert!(results.iter().all(|r| r.response == "turn 0"), "{results:?}");
    assert_eq!(results.iter().filter(|r| !r.replay).count(), 1);
    let call = store.call("CA1").await.unwrap().expect("the call exists");
    assert_eq!(call.seq, 0);
    assert_eq!(store.event_count(call.call_id).await.unwrap(), 1);
}

/// Two servers on one database (two pools, or two SQLite connections), as when several
/// instances share PostgreSQL behind a load balancer that spreads a call's webhooks.
async fn two_instances_on_one_database_take_turns_on_a_call(db: support::TestDb) {
    let (a, b) = (db.open().await, db.open().await);
    let call = call_started(&a).await;
    assert_eq!(b.call("CA1").await.unwrap().unwrap(), call, "b sees what a wrote");

    // The same request reaches both instances, ten times each.
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, engine) = (if i % 2 == 0 { a.clone() } else { b.clone() }, counting(&runs, "turn 1"));
            tokio::spawn(async move { store.turn("CA1", 1, None, engine).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(results.iter().all(|r| r.response == "turn 1"));

    // Consecutive turns alternate between the instances.
    assert!(!b.turn("CA1", 2, None, engine(write("turn 2"))).await.unwrap().replay);
    assert!(!a.turn("CA1", 3, None, engine(write("turn 3"))).await.unwrap().replay);
    assert_eq!(b.turn("CA1", 3, None, must_not_run()).await.unwrap().response, "turn 3");
    assert_eq!(a.event_count(call.call_id).await.unwrap(), 4);
}

// ---- status callbacks ----

async fn status_callbacks_move_forward_and_never_back(store: Store) {
    let call = call_started(&store).await;
    assert_eq!(call.status, "in-progress");
    assert!(!store.record_status("CA1", "ringing", None).await.unwrap(), "an earlier status is ignored");
    assert!(!store.record_status("CA1", "in-progress", None).await.unwrap(), "already in progress");
    assert!(store.record_status("CA1", "completed", Some(42)).await.unwrap());
    let done = store.call("CA1").await.unwrap().unwrap();
    assert_eq!((done.status.as_str(), done.duration), ("completed", Some(42)));

    assert!(!store.record_status("CA1", "in-progress", Some(7)).await.unwrap(), "late in-progress");
    assert!(!store.record_status("CA1", "failed", Some(9)).await.unwrap(), "a second final status");
    assert_eq!(store.call("CA1").await.unwrap().unwrap(), done, "nothing changed");
}

async fn a_call_that_ends_before_its_flow_is_marked_incomplete(store: Store) {
    call_started(&store).await;
    assert!(store.record_status("CA1", "completed", None).await.unwrap());
    let call = store.call("CA1").await.unwrap().unwrap();
    assert!(call.incomplete && !call.ended);
    assert_eq!((call.status.as_str(), call.duration), ("completed", None));
}

async fn a_call_whose_flow_ended_stays_complete(store: Store) {
    call_started(&store).await;
    store.turn("CA1", 1, None, engine(TurnWrite { ended: true, ..write("goodbye") })).await.unwrap();
    assert!(store.record_status("CA1", "completed", Some(95)).await.unwrap());
    let call = store.call("CA1").await.unwrap().unwrap();
    assert!(call.ended && !call.incomplete);
    assert_eq!((call.status.as_str(), call.duration), ("completed", Some(95)));
}

async fn unknown_statuses_and_unknown_calls_change_nothing(store: Store) {
    let call = call_started(&store).await;
    assert!(!store.record_status("CA1", "on-hold", Some(5)).await.unwrap());
    assert!(!store.record_status("CA1", "", None).await.unwrap());
    assert_eq!(store.call("CA1").await.unwrap().unwrap(), call);
    assert!(!store.record_status("CA-unknown", "completed", Some(5)).await.unwrap());
    assert_eq!(store.call("CA-unknown").await.unwrap(), None);
}

// ---- failures ----

async fn a_turn_for_an_unknown_call_without_creation_fails(store: Store) {
    let err = store.turn("CA-unknown", 0, None, must_not_run()).await.unwrap_err();
    assert!(matches!(&err, StoreError::UnknownCall(sid) if sid == "CA-unknown"), "{err:?}");
    let err = store.turn("CA-unknown", 3, None, must_not_run()).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownCall(_)), "{err:?}");

    // A later turn of a call never started cannot create it (its first turn is not stored).
    store.upsert_patient(&patient("p1", "+819012345678")).await.unwrap();
    let err = store.turn("CA2", 3, Some(new_call("CA2")), must_not_run()).await.unwrap_err();
    assert!(matches!(err, StoreError::Turn(_)), "{err:?}");
    assert_eq!(store.call("CA2").await.unwrap(), None, "the creation was rolled back");
}

async fn an_engine_error_rolls_the_turn_back(store: Store) {
    let call = call_started(&store).await;
    let failing: TurnFn = Box::new(|_| Err("the flow is broken".into()));
    let err = store.turn("CA1", 1, None, failing).await.unwrap_err();
    assert!(matches!(&err, StoreError::Turn(m) if m == "the flow is broken"), "{err:?}");
    assert_eq!(store.call("CA1").await.unwrap().unwrap(), call, "seq and state unchanged");
    assert_eq!(store.event_count(call.call_id).await.unwrap(), 1);
    assert!(store.answers(call.call_id).await.unwrap().is_empty());
    assert!(store.alerts(call.call_id).await.unwrap().is_empty());
    // The turn can be taken again.
    assert!(!store.turn("CA1", 1, None, engine(write("turn 1"))).await.unwrap().replay);

    // An engine error on the first turn leaves no call behind.
    let failing: TurnFn = Box::new(|_| Err("no".into()));
    assert!(store.turn("CA2", 0, Some(new_call("CA2")), failing).await.is_err());
    assert_eq!(store.call("CA2").await.unwrap(), None);
}
