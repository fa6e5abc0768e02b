//! The store's conformance suite: every test runs once on SQLite and once on PostgreSQL
//! (`sqlite::…` and `postgres::…`), each on a database of its own. PostgreSQL tests are skipped
//! when no server answers (see `common::db`), except under `CI=true`.

use crate::common::db as support;
use crate::common::patients::{self, PatientBuilder};

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use ivr::flow::{CallState, Phase, Value};
use ivr::issuer::{IssuerKey, ProcessingNumber};
use ivr::store::*;
use ivr::types::{CallSid, CallStatus, Channel, Direction, E164, NumberDelivery, PatientId, Scopes};

on_both_backends! {
    with_db: migrations_apply_once_and_the_database_answers;
    with_db: two_instances_starting_together_apply_each_migration_once;
    with_store: a_patient_is_inserted_then_updated_in_place;
    with_store: a_patient_is_found_by_id_and_by_phone;
    with_db: an_import_counts_new_updated_and_unchanged_patients_and_touches_only_the_changed;
    with_db: an_import_that_fails_on_one_patient_imports_none;
    with_store: ten_thousand_patients_are_imported_and_listed_in_id_order;
    with_store: a_patient_id_given_twice_in_one_import_keeps_its_last_row;
    with_store: a_job_is_created_planned_and_read_back;
    with_store: the_first_turn_creates_the_call_and_stores_its_state_event_answers_and_alerts;
    with_store: the_details_of_several_calls_read_at_once_are_each_calls_own;
    with_store: the_next_turn_advances_the_call_and_answers_are_upserted_by_name;
    with_store: answers_keep_their_types;
    with_store: an_answer_named_twice_in_one_turn_is_stored_once_with_its_last_value;
    with_store: a_first_turn_finds_its_patient_by_job_or_by_number_and_their_valid_number;
    with_store: a_first_turn_for_an_unknown_number_or_job_writes_nothing;
    with_store: a_replayed_turn_returns_its_stored_response_without_running_the_engine;
    with_store: a_turn_from_the_future_returns_the_latest_response_without_running_the_engine;
    with_store: twenty_copies_of_one_request_at_once_run_the_engine_once;
    with_store: ten_simultaneous_first_turns_create_one_call;
    with_store: two_hundred_turns_of_twenty_calls_at_once_all_commit_with_every_event;
    with_db: two_instances_on_one_database_take_turns_on_a_call;
    with_store: status_callbacks_move_forward_and_never_back;
    with_store: a_call_that_ends_before_its_flow_is_marked_incomplete;
    with_store: a_call_whose_flow_ended_stays_complete;
    with_store: unknown_statuses_and_unknown_calls_change_nothing;
    with_store: a_turn_for_an_unknown_call_without_creation_fails;
    with_store: an_engine_error_rolls_the_turn_back;
    with_store: a_failing_turn_among_waiting_turns_loses_only_itself;
    with_store: a_number_is_issued_and_found_valid_for_its_patient;
    with_store: a_new_number_revokes_the_patients_previous_one;
    with_store: a_number_is_consumed_once_and_unknown_or_expired_numbers_are_refused;
    with_store: twenty_simultaneous_verifications_consume_a_number_once;
    with_db: a_number_issued_in_a_turn_is_stored_with_the_call_and_its_message;
    with_store: a_turn_whose_numbers_always_collide_gives_up_and_writes_nothing;
    with_store: a_turn_whose_number_collides_once_draws_again;
    with_store: a_collision_leaves_nothing_behind_when_the_next_step_issues_no_number;
    with_db: many_tasks_issue_numbers_and_no_two_valid_numbers_are_equal;
    with_store: each_message_is_claimed_by_one_of_several_simultaneous_senders;
    with_store: a_finished_send_is_recorded_and_a_failure_alerts_the_health_centre;
    with_store: delivery_statuses_from_the_provider_update_the_message;
    with_store: a_failure_reported_before_the_send_was_recorded_is_not_overwritten;
    with_store: claims_left_unfinished_are_taken_over_by_their_owner_at_once_and_by_others_after_the_lease;
    with_store: a_send_handed_to_the_provider_keeps_its_time_until_its_outcome_is_known;
    with_store: the_sms_sent_figure_counts_each_message_the_carrier_took_once_and_never_goes_down;
    with_store: api_tokens_are_unique_by_name_and_found_by_hash_with_their_scopes;
    with_db: tokens_made_before_scopes_existed_may_only_verify;
    with_store: an_sms_to_a_landline_falls_back_once_to_email_or_to_the_next_call;
    with_store: a_number_held_for_the_next_call_is_done_once_the_call_reads_it;
    with_store: a_number_that_expired_before_its_message_went_out_is_replaced_once;
    with_store: a_number_issued_in_a_call_is_replaced_with_the_same_consent;
}

// ---- helpers ----

fn patient(id: &str, phone: &str) -> Patient {
    patients::patient(id, phone).area("north").care_from("2024-04-01")
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
        call_sid: CallSid::parse(sid).unwrap(),
        patient_id: Some(PatientId::parse("p1").unwrap()),
        job_id: None,
        direction: Direction::Outbound,
        state: call_state(""),
        flow_version: None,
        started_at: None,
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
    store.patients().upsert(&patient("p1", "+819012345678")).await.unwrap();
    store.calls().turn("CA1", 0, Some(new_call("CA1").into()), engine(write("turn 0"))).await.unwrap();
    store.calls().get("CA1").await.unwrap().unwrap()
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
    store.patients().upsert(&p).await.unwrap();
    assert_eq!(store.patients().get("p1").await.unwrap(), Some(p.clone()));

    p.name = "Renamed".into();
    p.phone = "+819087654321".parse().unwrap();
    p.email = Some("p1@example.jp".into());
    p.area = None;
    p.care_end = Some(patients::day("2024-05-01"));
    store.patients().upsert(&p).await.unwrap();
    assert_eq!(store.patients().get("p1").await.unwrap(), Some(p.clone()), "every field updated, none kept");
    assert_eq!(store.patients().by_phone("+819012345678").await.unwrap(), None, "the old number is gone");
}

async fn a_patient_is_found_by_id_and_by_phone(store: Store) {
    let (p2, p1) = (patient("p2", "+819011112222"), patient("p1", "+819011112222"));
    let (p3, upper) = (patient("p3", "+819033334444"), patient("P9", "+819033334444"));
    for p in [&p2, &p1, &p3, &upper] {
        store.patients().upsert(p).await.unwrap();
    }
    assert_eq!(store.patients().get("p3").await.unwrap(), Some(p3.clone()));
    assert_eq!(store.patients().get("nobody").await.unwrap(), None);
    // A shared phone: the first id, in byte order whatever the database's collation.
    assert_eq!(store.patients().by_phone("+819011112222").await.unwrap(), Some(p1));
    assert_eq!(store.patients().by_phone("+819033334444").await.unwrap(), Some(upper), "P9 before p3");
    assert_eq!(store.patients().by_phone("+810000000000").await.unwrap(), None);
}

async fn an_import_counts_new_updated_and_unchanged_patients_and_touches_only_the_changed(db: support::TestDb) {
    let store = db.open().await;
    let roster = vec![patient("p1", "+819011110000"), patient("p2", "+819022220000"), patient("p3", "+81312345678")];
    let count = store.patients().import(&roster).await.unwrap();
    assert_eq!(count, ImportCount { inserted: 3, updated: 0, unchanged: 0 });
    assert_eq!(store.patients().all().await.unwrap(), roster);

    // Every row stamped long ago: an import that changes nothing leaves the stamps alone.
    db.execute("update patients set updated_at = '2000-01-01T00:00:00Z'").await;
    let count = store.patients().import(&roster).await.unwrap();
    assert_eq!(count, ImportCount { inserted: 0, updated: 0, unchanged: 3 });
    assert_eq!(db.scalar("select count(*) from patients where updated_at > '2001-01-01'").await, 0);

    // One field of one patient, a null becoming a value in another, and a newcomer.
    let mut next = roster.clone();
    next[0].name = "Renamed".into();
    next[2].call_slot = Some("afternoon".into());
    next.push(patient("p4", "+819044440000"));
    let count = store.patients().import(&next).await.unwrap();
    assert_eq!(count, ImportCount { inserted: 1, updated: 2, unchanged: 1 });
    assert_eq!(store.patients().all().await.unwrap(), next);
    assert_eq!(db.scalar("select count(*) from patients where updated_at > '2001-01-01'").await, 3, "p1, p3, p4");

    // A value becoming null is a change too.
    let mut cleared = next.clone();
    cleared[2].call_slot = None;
    let count = store.patients().import(&cleared).await.unwrap();
    assert_eq!(count, ImportCount { inserted: 0, updated: 1, unchanged: 3 });
    assert_eq!(store.patients().get("p3").await.unwrap().unwrap().call_slot, None);
}

async fn an_import_that_fails_on_one_patient_imports_none(db: support::TestDb) {
    let store = db.open().await;
    store.patients().import(&[patient("p1", "+819011110000")]).await.unwrap();
    // The database refuses a patient named "refused", as a constraint or a full disk would.
    if db.is_sqlite() {
        db.execute(
            "create trigger refuse before insert on patients when new.name = 'refused'
             begin select raise(abort, 'refused'); end",
        )
        .await;
    } else {
        db.execute(
            "create function refuse() returns trigger language plpgsql as $$
             begin if new.name = 'refused' then raise exception 'refused'; end if; return new; end $$;
             create trigger refuse before insert on patients for each row execute function refuse();",
        )
        .await;
    }
    let mut changed = patient("p1", "+819011110000");
    changed.name = "Renamed".into();
    let mut bad = patient("p3", "+819033330000");
    bad.name = "refused".into();
    let roster = vec![changed, patient("p2", "+819022220000"), bad];
    assert!(store.patients().import(&roster).await.is_err());
    assert_eq!(store.patients().all().await.unwrap(), vec![patient("p1", "+819011110000")], "nothing changed");
}

async fn ten_thousand_patients_are_imported_and_listed_in_id_order(store: Store) {
    // Ids in an order that is not byte order, upper and lower case mixed.
    let roster: Vec<Patient> = (0..10_000)
        .rev()
        .map(|i| {
            let id = if i % 2 == 0 { format!("P{i:05}") } else { format!("p{i:05}") };
            let mut p = patient(&id, &format!("+8190{i:08}"));
            p.call_slot = (i % 3 == 0).then(|| "afternoon".to_string());
            p
        })
        .collect();
    let count = store.patients().import(&roster).await.unwrap();
    assert_eq!(count, ImportCount { inserted: 10_000, updated: 0, unchanged: 0 });
    let mut sorted = roster.clone();
    sorted.sort_by(|a, b| a.patient_id.cmp(&b.patient_id));
    assert_eq!(store.patients().all().await.unwrap(), sorted, "every patient, in byte order of their ids");

    let mut next = roster;
    for p in next.iter_mut().step_by(10) {
        p.area = Some("south".into());
    }
    let count = store.patients().import(&next).await.unwrap();
    assert_eq!(count, ImportCount { inserted: 0, updated: 1_000, unchanged: 9_000 });
}

async fn a_patient_id_given_twice_in_one_import_keeps_its_last_row(store: Store) {
    let mut second = patient("p1", "+819011110000");
    second.name = "Second".into();
    let count = store
        .patients()
        .import(&[patient("p1", "+819011110000"), patient("p2", "+819022220000"), second.clone()])
        .await
        .unwrap();
    assert_eq!(count, ImportCount { inserted: 2, updated: 0, unchanged: 0 });
    assert_eq!(store.patients().get("p1").await.unwrap(), Some(second));
}

async fn a_job_is_created_planned_and_read_back(store: Store) {
    store.patients().upsert(&patient("p1", "+819012345678")).await.unwrap();
    let first = store.campaign().create_job("p1", "daily-health-check").await.unwrap();
    let second = store.campaign().create_job("p1", "welcome").await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        store.campaign().job(first).await.unwrap(),
        Some(Job {
            job_id: first,
            patient_id: PatientId::parse("p1").unwrap(),
            flow: "daily-health-check".into(),
            status: "planned".into(),
            window_to: None,
        })
    );
    assert_eq!(store.campaign().job(second).await.unwrap().unwrap().flow, "welcome");
    assert_eq!(store.campaign().job(first.max(second) + 1000).await.unwrap(), None);
}

// ---- turns ----

async fn the_first_turn_creates_the_call_and_stores_its_state_event_answers_and_alerts(store: Store) {
    store.patients().upsert(&patient("p1", "+819012345678")).await.unwrap();
    let job = store.campaign().create_job("p1", "daily-health-check").await.unwrap();
    let seen = Arc::new(Mutex::new(None));
    let engine: TurnFn = {
        let seen = seen.clone();
        Box::new(move |call: &CallRecord| {
            *seen.lock().unwrap() = Some(call.clone());
            Ok(TurnWrite {
                answers: vec![("temperature".into(), Value::Number { raw: 365, scale: 1 })],
                alerts: vec![NewAlert::flow("health_check", ivr::types::Severity::Urgent)],
                ..write("turn 0")
            })
        })
    };
    let new = NewCall { job_id: Some(job), ..new_call("CA1") };
    let result = store.calls().turn("CA1", 0, Some(new.clone().into()), engine).await.unwrap();
    assert_eq!(result, TurnResult { response: "turn 0".into(), replay: false, queued: false });

    let seen = seen.lock().unwrap().take().expect("the engine ran");
    assert_eq!(seen.seq, -1, "the engine sees the call before its first turn");
    assert_eq!(seen.state, new.state);

    let call = store.calls().get("CA1").await.unwrap().expect("the call is stored");
    assert_eq!(call.call_id, seen.call_id);
    assert_eq!(call.call_sid.as_str(), "CA1");
    assert_eq!(call.patient_id.as_ref().map(|p| p.as_str()), Some("p1"));
    assert_eq!(call.job_id, Some(job));
    assert_eq!(call.direction, Direction::Outbound);
    assert_eq!((call.flow.as_str(), call.flow_version.as_str()), ("daily-health-check", "3"));
    assert_eq!(call.state, call_state("turn 0"));
    assert_eq!(call.seq, 0);
    assert!(!call.ended && !call.incomplete);
    assert_eq!((call.status.as_str(), call.duration), ("in-progress", None));
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 1);
    assert_eq!(
        store.calls().answers(call.call_id).await.unwrap(),
        vec![Answer { name: "temperature".into(), value: Value::Number { raw: 365, scale: 1 } }]
    );
    assert_eq!(store.calls().alerts(call.call_id).await.unwrap(), vec!["health_check".to_string()]);
}

async fn the_details_of_several_calls_read_at_once_are_each_calls_own(store: Store) {
    store.patients().upsert(&patient("p1", "+819012345678")).await.unwrap();
    let first = TurnWrite {
        answers: vec![
            ("temperature".into(), Value::Number { raw: 365, scale: 1 }),
            ("breathless".into(), Value::text("yes")),
        ],
        alerts: vec![
            NewAlert::flow("spo2_low", ivr::types::Severity::Urgent),
            NewAlert::flow("breathless", ivr::types::Severity::Urgent),
        ],
        ..write("<Response><Say>first</Say></Response>")
    };
    store.calls().turn("CA1", 0, Some(new_call("CA1").into()), engine(first)).await.unwrap();
    store.calls().turn("CA1", 1, None, engine(write("<Response><Say>second</Say></Response>"))).await.unwrap();
    store.calls().turn("CA2", 0, Some(new_call("CA2").into()), engine(write("other"))).await.unwrap();
    let one = store.calls().get("CA1").await.unwrap().unwrap().call_id;
    let two = store.calls().get("CA2").await.unwrap().unwrap().call_id;

    let all = store.calls().details(&[one, two, one + two + 1000], true).await.unwrap();
    assert_eq!(all.len(), 2, "a call that does not exist is absent");
    for id in [one, two] {
        let d = &all[&id];
        assert_eq!(d.answers, store.calls().answers(id).await.unwrap());
        assert_eq!(d.alerts, store.calls().alerts(id).await.unwrap());
        assert_eq!(d.steps, store.calls().steps(id).await.unwrap());
    }
    assert_eq!(all[&one].alerts, ["spo2_low", "breathless"], "in the order raised");
    assert_eq!(all[&one].answers.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["breathless", "temperature"]);
    assert_eq!(all[&one].steps.len(), 2);
    let without = store.calls().details(&[one], false).await.unwrap();
    assert!(without[&one].steps.is_empty() && without[&one].answers.len() == 2);
    assert!(store.calls().details(&[], true).await.unwrap().is_empty());
}

/// A first turn that records what the store found, and starts the call from it (with the flow
/// version `v9` to store).
fn finding(sid: &str, caller: Caller, at: DateTime<Utc>, seen: &Arc<Mutex<Vec<String>>>) -> Create {
    let (sid, seen) = (sid.to_string(), seen.clone());
    let start: StartFn = Box::new(move |found: Found<'_>| {
        let number = found.number.map_or("no number".to_string(), |n| n.number_id.to_string());
        let job = found.job.map_or("no job".to_string(), |j| format!("{} {}", j.job_id, j.flow));
        seen.lock().unwrap().push(format!("{}, {job}, {number}", found.patient.patient_id));
        let flow_version = Some(StoredFlow {
            version: "v9".into(),
            flow: "daily-health-check".into(),
            source_name: "daily.yaml".into(),
            source: "states: {}".into(),
            catalogs: vec![],
        });
        let direction = if found.job.is_some() { Direction::Outbound } else { Direction::Inbound };
        Ok(NewCall {
            patient_id: Some(found.patient.patient_id.clone()),
            job_id: found.job.map(|j| j.job_id),
            direction,
            state: CallState { version: "v9".into(), ..call_state("") },
            flow_version,
            ..new_call(&sid)
        })
    });
    Create::Find(FirstTurn { caller, now: at, start })
}

async fn a_first_turn_finds_its_patient_by_job_or_by_number_and_their_valid_number(store: Store) {
    add_patients(&store, &["p1", "p2"]).await;
    let job = store.campaign().create_job("p1", "welcome").await.unwrap();
    let (t, hash) = (now(), fresh_hash());
    let issued = store.numbers().issue(&staff_number("p2", &hash, t)).await.unwrap();
    let seen = Arc::new(Mutex::new(vec![]));

    let first = finding("CA1", Caller::Job(job), t, &seen);
    assert_eq!(store.calls().turn("CA1", 0, Some(first), engine(write("turn 0"))).await.unwrap().response, "turn 0");
    let call = store.calls().get("CA1").await.unwrap().expect("the call is stored");
    assert_eq!(
        (call.patient_id.as_ref().map(|p| p.as_str()), call.job_id, call.direction.as_str()),
        (Some("p1"), Some(job), "outbound")
    );

    let first = finding("CA2", Caller::Phone(E164::parse("+819000000002").unwrap()), t, &seen);
    store.calls().turn("CA2", 0, Some(first), engine(write("turn 0"))).await.unwrap();
    let call = store.calls().get("CA2").await.unwrap().expect("the call is stored");
    assert_eq!(
        (call.patient_id.as_ref().map(|p| p.as_str()), call.job_id, call.direction.as_str()),
        (Some("p2"), None, "inbound")
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![format!("p1, {job} welcome, no number"), format!("p2, no job, {}", issued.number_id)]
    );
    // The flow version went with the calls, stored once.
    let versions = store.flows().in_use().await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["v9"]);

    // A replayed first request finds the call: nothing is looked up or created again.
    let first = finding("CA2", Caller::Phone(E164::parse("+819000000002").unwrap()), t, &seen);
    let replay = store.calls().turn("CA2", 0, Some(first), must_not_run()).await.unwrap();
    assert_eq!((replay.response.as_str(), replay.replay), ("turn 0", true));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

async fn a_first_turn_for_an_unknown_number_or_job_writes_nothing(store: Store) {
    add_patients(&store, &["p1"]).await;
    let seen = Arc::new(Mutex::new(vec![]));
    let first = finding("CA1", Caller::Phone(E164::parse("+819099999999").unwrap()), now(), &seen);
    let err = store.calls().turn("CA1", 0, Some(first), must_not_run()).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownCaller), "{err:?}");
    let first = finding("CA1", Caller::Job(424242), now(), &seen);
    let err = store.calls().turn("CA1", 0, Some(first), must_not_run()).await.unwrap_err();
    assert!(matches!(err, StoreError::Turn(_)), "{err:?}");
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(store.calls().get("CA1").await.unwrap(), None);
    assert!(store.flows().in_use().await.unwrap().is_empty());

    // A start that fails (a flow not loaded) leaves nothing either.
    let start: StartFn = Box::new(|_| Err("no flow named gone".into()));
    let first =
        Create::Find(FirstTurn { caller: Caller::Phone(E164::parse("+819000000001").unwrap()), now: now(), start });
    let err = store.calls().turn("CA1", 0, Some(first), must_not_run()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Turn(m) if m == "no flow named gone"), "{err:?}");
    assert_eq!(store.calls().get("CA1").await.unwrap(), None);
}

async fn the_next_turn_advances_the_call_and_answers_are_upserted_by_name(store: Store) {
    let call = call_started(&store).await;
    let first = TurnWrite {
        answers: vec![
            ("temperature".into(), Value::Number { raw: 365, scale: 1 }),
            ("consent".into(), Value::text("no")),
        ],
        alerts: vec![NewAlert::flow("fever", ivr::types::Severity::Normal)],
        ..write("turn 1")
    };
    assert!(!store.calls().turn("CA1", 1, None, engine(first)).await.unwrap().replay);
    let second = TurnWrite {
        answers: vec![("temperature".into(), Value::Number { raw: 370, scale: 1 }), ("spo2".into(), Value::int(97))],
        alerts: vec![NewAlert::flow("low_spo2", ivr::types::Severity::Urgent)],
        ended: true,
        ..write("turn 2")
    };
    assert!(!store.calls().turn("CA1", 2, None, engine(second)).await.unwrap().replay);

    let now = store.calls().get("CA1").await.unwrap().unwrap();
    assert_eq!((now.seq, now.ended), (2, true));
    assert_eq!(now.state, call_state("turn 2"));
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 3);
    // The turns as the staff's page reads them: in order, each with its response.
    let steps = store.calls().steps(call.call_id).await.unwrap();
    let responses: Vec<&str> = steps.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(&responses[1..], ["turn 1", "turn 2"]);
    assert_eq!(steps[1].0, "asking");
    assert_eq!(
        store.calls().answers(call.call_id).await.unwrap(),
        vec![
            Answer { name: "consent".into(), value: Value::text("no") },
            Answer { name: "spo2".into(), value: Value::int(97) },
            Answer { name: "temperature".into(), value: Value::Number { raw: 370, scale: 1 } },
        ],
        "one answer per name, the latest"
    );
    assert_eq!(store.calls().alerts(call.call_id).await.unwrap(), vec!["fever".to_string(), "low_spo2".to_string()]);

    // A turn without a new state keeps the state, and a flow that ended stays ended.
    let keep = TurnWrite { state: None, ended: false, ..write("turn 3") };
    store.calls().turn("CA1", 3, None, engine(keep)).await.unwrap();
    let now = store.calls().get("CA1").await.unwrap().unwrap();
    assert_eq!((now.seq, now.ended), (3, true));
    assert_eq!(now.state, call_state("turn 2"));
}

async fn an_answer_named_twice_in_one_turn_is_stored_once_with_its_last_value(store: Store) {
    let call = call_started(&store).await;
    let answers = vec![
        ("temperature".to_string(), Value::Number { raw: 365, scale: 1 }),
        ("spo2".to_string(), Value::int(97)),
        ("temperature".to_string(), Value::Number { raw: 372, scale: 1 }),
    ];
    store.calls().turn("CA1", 1, None, engine(TurnWrite { answers, ..write("turn 1") })).await.unwrap();
    assert_eq!(
        store.calls().answers(call.call_id).await.unwrap(),
        vec![
            Answer { name: "spo2".into(), value: Value::int(97) },
            Answer { name: "temperature".into(), value: Value::Number { raw: 372, scale: 1 } },
        ]
    );
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
    store.calls().turn("CA1", 1, None, engine(TurnWrite { answers, ..write("turn 1") })).await.unwrap();
    let stored = store.calls().answers(call.call_id).await.unwrap();
    // In byte order of their names (as `str` compares), whatever the database's collation.
    let mut expected: Vec<Answer> = values.into_iter().map(|(n, v)| Answer { name: n.into(), value: v }).collect();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(stored, expected);
}

async fn a_replayed_turn_returns_its_stored_response_without_running_the_engine(store: Store) {
    let call = call_started(&store).await;
    let w = TurnWrite {
        answers: vec![("spo2".into(), Value::int(97))],
        alerts: vec![NewAlert::flow("x", ivr::types::Severity::Normal)],
        ..write("turn 1")
    };
    store.calls().turn("CA1", 1, None, engine(w)).await.unwrap();
    let before = store.calls().get("CA1").await.unwrap().unwrap();

    let replay = store.calls().turn("CA1", 1, None, must_not_run()).await.unwrap();
    assert_eq!(replay, TurnResult { response: "turn 1".into(), replay: true, queued: false });
    let replay = store.calls().turn("CA1", 0, Some(new_call("CA1").into()), must_not_run()).await.unwrap();
    assert_eq!(
        replay,
        TurnResult { response: "turn 0".into(), replay: true, queued: false },
        "an older turn: its own response"
    );

    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap(), before, "the call is unchanged");
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 2);
    assert_eq!(store.calls().answers(call.call_id).await.unwrap().len(), 1);
    assert_eq!(store.calls().alerts(call.call_id).await.unwrap().len(), 1);
}

async fn a_turn_from_the_future_returns_the_latest_response_without_running_the_engine(store: Store) {
    let call = call_started(&store).await;
    store.calls().turn("CA1", 1, None, engine(write("turn 1"))).await.unwrap();
    let result = store.calls().turn("CA1", 5, None, must_not_run()).await.unwrap();
    assert_eq!(result, TurnResult { response: "turn 1".into(), replay: true, queued: false });
    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap().seq, 1);
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 2);
}

async fn twenty_copies_of_one_request_at_once_run_the_engine_once(store: Store) {
    let call = call_started(&store).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, engine) = (store.clone(), counting(&runs, "turn 1"));
            tokio::spawn(async move { store.calls().turn("CA1", 1, None, engine).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the engine ran once");
    assert!(results.iter().all(|r| r.response == "turn 1"), "{results:?}");
    assert_eq!(results.iter().filter(|r| !r.replay).count(), 1, "one request took the turn");
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 2);
    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap().seq, 1);
}

async fn ten_simultaneous_first_turns_create_one_call(store: Store) {
    store.patients().upsert(&patient("p1", "+819012345678")).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, engine) = (store.clone(), counting(&runs, "turn 0"));
            tokio::spawn(async move { store.calls().turn("CA1", 0, Some(new_call("CA1").into()), engine).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the engine ran once");
    assert!(results.iter().all(|r| r.response == "turn 0"), "{results:?}");
    assert_eq!(results.iter().filter(|r| !r.replay).count(), 1);
    let call = store.calls().get("CA1").await.unwrap().expect("the call exists");
    assert_eq!(call.seq, 0);
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 1);
}

/// Twenty calls side by side, ten turns each in order (on SQLite, turns of different calls, and
/// of one call, share transactions): every turn is taken and everything it wrote is stored.
async fn two_hundred_turns_of_twenty_calls_at_once_all_commit_with_every_event(store: Store) {
    store.patients().upsert(&patient("p1", "+819012345678")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let sid = format!("CA{c}");
                for seq in 0..10 {
                    let answers = vec![(format!("q{seq}"), Value::Number { raw: seq, scale: 0 })];
                    let w = TurnWrite { answers, ..write(&format!("{sid} turn {seq}")) };
                    let create = (seq == 0).then(|| new_call(&sid).into());
                    let result = store.calls().turn(&sid, seq, create, engine(w)).await.unwrap();
                    assert_eq!((result.response, result.replay), (format!("{sid} turn {seq}"), false));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for c in 0..20 {
        let sid = format!("CA{c}");
        let call = store.calls().get(&sid).await.unwrap().expect("the call exists");
        assert_eq!((call.seq, call.state), (9, call_state(&format!("{sid} turn 9"))));
        assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 10, "{sid}");
        let answers = store.calls().answers(call.call_id).await.unwrap();
        assert_eq!(answers.len(), 10, "{sid}: {answers:?}");
    }
}

/// Two servers on one database (two pools, or two SQLite connections), as when several
/// instances share PostgreSQL behind a load balancer that spreads a call's webhooks.
async fn two_instances_on_one_database_take_turns_on_a_call(db: support::TestDb) {
    let (a, b) = (db.open().await, db.open().await);
    let call = call_started(&a).await;
    assert_eq!(b.calls().get("CA1").await.unwrap().unwrap(), call, "b sees what a wrote");

    // The same request reaches both instances, ten times each.
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, engine) = (if i % 2 == 0 { a.clone() } else { b.clone() }, counting(&runs, "turn 1"));
            tokio::spawn(async move { store.calls().turn("CA1", 1, None, engine).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(results.iter().all(|r| r.response == "turn 1"));

    // Consecutive turns alternate between the instances.
    assert!(!b.calls().turn("CA1", 2, None, engine(write("turn 2"))).await.unwrap().replay);
    assert!(!a.calls().turn("CA1", 3, None, engine(write("turn 3"))).await.unwrap().replay);
    assert_eq!(b.calls().turn("CA1", 3, None, must_not_run()).await.unwrap().response, "turn 3");
    assert_eq!(a.calls().event_count(call.call_id).await.unwrap(), 4);
}

// ---- status callbacks ----

async fn status_callbacks_move_forward_and_never_back(store: Store) {
    let call = call_started(&store).await;
    assert_eq!(call.status.as_str(), "in-progress");
    assert!(
        !store.calls().record_status("CA1", CallStatus::parse("ringing").unwrap(), None).await.unwrap(),
        "an earlier status is ignored"
    );
    assert!(
        !store.calls().record_status("CA1", CallStatus::parse("in-progress").unwrap(), None).await.unwrap(),
        "already in progress"
    );
    assert!(store.calls().record_status("CA1", CallStatus::parse("completed").unwrap(), Some(42)).await.unwrap());
    let done = store.calls().get("CA1").await.unwrap().unwrap();
    assert_eq!((done.status.as_str(), done.duration), ("completed", Some(42)));

    assert!(
        !store.calls().record_status("CA1", CallStatus::parse("in-progress").unwrap(), Some(7)).await.unwrap(),
        "late in-progress"
    );
    assert!(
        !store.calls().record_status("CA1", CallStatus::parse("failed").unwrap(), Some(9)).await.unwrap(),
        "a second final status"
    );
    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap(), done, "nothing changed");
}

async fn a_call_that_ends_before_its_flow_is_marked_incomplete(store: Store) {
    call_started(&store).await;
    assert!(store.calls().record_status("CA1", CallStatus::parse("completed").unwrap(), None).await.unwrap());
    let call = store.calls().get("CA1").await.unwrap().unwrap();
    assert!(call.incomplete && !call.ended);
    assert_eq!((call.status.as_str(), call.duration), ("completed", None));
}

async fn a_call_whose_flow_ended_stays_complete(store: Store) {
    call_started(&store).await;
    store.calls().turn("CA1", 1, None, engine(TurnWrite { ended: true, ..write("goodbye") })).await.unwrap();
    assert!(store.calls().record_status("CA1", CallStatus::parse("completed").unwrap(), Some(95)).await.unwrap());
    let call = store.calls().get("CA1").await.unwrap().unwrap();
    assert!(call.ended && !call.incomplete);
    assert_eq!((call.status.as_str(), call.duration), ("completed", Some(95)));
}

async fn unknown_statuses_and_unknown_calls_change_nothing(store: Store) {
    let call = call_started(&store).await;
    // A status the carrier never sends does not pass the edge; an earlier one changes nothing.
    assert!(CallStatus::parse("on-hold").is_err() && CallStatus::parse("").is_err());
    assert!(!store.calls().record_status("CA1", CallStatus::Queued, Some(5)).await.unwrap());
    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap(), call);
    assert!(
        !store.calls().record_status("CA-unknown", CallStatus::parse("completed").unwrap(), Some(5)).await.unwrap()
    );
    assert_eq!(store.calls().get("CA-unknown").await.unwrap(), None);
}

// ---- failures ----

async fn a_turn_for_an_unknown_call_without_creation_fails(store: Store) {
    let err = store.calls().turn("CA-unknown", 0, None, must_not_run()).await.unwrap_err();
    assert!(matches!(&err, StoreError::UnknownCall(sid) if sid == "CA-unknown"), "{err:?}");
    let err = store.calls().turn("CA-unknown", 3, None, must_not_run()).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownCall(_)), "{err:?}");

    // A later turn of a call never started cannot create it (its first turn is not stored).
    store.patients().upsert(&patient("p1", "+819012345678")).await.unwrap();
    let err = store.calls().turn("CA2", 3, Some(new_call("CA2").into()), must_not_run()).await.unwrap_err();
    assert!(matches!(err, StoreError::Turn(_)), "{err:?}");
    assert_eq!(store.calls().get("CA2").await.unwrap(), None, "the creation was rolled back");
}

async fn an_engine_error_rolls_the_turn_back(store: Store) {
    let call = call_started(&store).await;
    let failing: TurnFn = Box::new(|_| Err("the flow is broken".into()));
    let err = store.calls().turn("CA1", 1, None, failing).await.unwrap_err();
    assert!(matches!(&err, StoreError::Turn(m) if m == "the flow is broken"), "{err:?}");
    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap(), call, "seq and state unchanged");
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 1);
    assert!(store.calls().answers(call.call_id).await.unwrap().is_empty());
    assert!(store.calls().alerts(call.call_id).await.unwrap().is_empty());
    // The turn can be taken again.
    assert!(!store.calls().turn("CA1", 1, None, engine(write("turn 1"))).await.unwrap().replay);

    // An engine error on the first turn leaves no call behind.
    let failing: TurnFn = Box::new(|_| Err("no".into()));
    assert!(store.calls().turn("CA2", 0, Some(new_call("CA2").into()), failing).await.is_err());
    assert_eq!(store.calls().get("CA2").await.unwrap(), None);
}

/// Turns waiting behind a slow one (on SQLite they then share a transaction): the one whose
/// engine fails, on the call it was creating, leaves nothing behind; the others are all stored.
async fn a_failing_turn_among_waiting_turns_loses_only_itself(store: Store) {
    let call = call_started(&store).await;
    // A turn that takes a while, then turns arriving while it runs. The pauses let them queue
    // behind it; nothing below depends on them.
    let slow: TurnFn = Box::new(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Ok(write("turn 1"))
    });
    let first = {
        let store = store.clone();
        tokio::spawn(async move { store.calls().turn("CA1", 1, None, slow).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let others: Vec<_> = (2..12)
        .map(|i| {
            let (store, sid) = (store.clone(), format!("CA{i}"));
            let f: TurnFn =
                if i == 6 { Box::new(|_| Err("the flow is broken".into())) } else { engine(write("turn 0")) };
            tokio::spawn(async move { store.calls().turn(&sid, 0, Some(new_call(&sid).into()), f).await })
        })
        .collect();

    assert!(!first.await.unwrap().unwrap().replay);
    for (i, t) in (2..12).zip(others) {
        let (result, stored) = (t.await.unwrap(), store.calls().get(&format!("CA{i}")).await.unwrap());
        if i == 6 {
            assert!(matches!(&result, Err(StoreError::Turn(m)) if m == "the flow is broken"), "{result:?}");
            assert_eq!(stored, None, "the failing turn's call was not created");
        } else {
            assert_eq!(result.unwrap().response, "turn 0");
            let stored = stored.expect("the call was created");
            assert_eq!(stored.seq, 0);
            assert_eq!(store.calls().event_count(stored.call_id).await.unwrap(), 1);
        }
    }
    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap().seq, 1);
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 2);
}

// ---- processing numbers ----

static KEY: LazyLock<IssuerKey> = LazyLock::new(|| IssuerKey::new("k"));

/// The stored hash of a new 8-digit number.
fn fresh_hash() -> String {
    KEY.hash(&ProcessingNumber::generate(8))
}

/// Now, to the millisecond: what both back ends keep of a time.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

/// A number issued by a staff member at `at`, valid for a day, not sent.
fn staff_number(patient_id: &str, hash: &str, at: DateTime<Utc>) -> NewNumber {
    NewNumber {
        patient_id: PatientId::parse(patient_id).unwrap(),
        number_hash: hash.into(),
        sealed: Some(format!("sealed:v1:{}", &hash[..8])),
        issued_at: at,
        expires_at: at + hours(24),
        consent: Consent::Staff { name: "nurse-tanaka".into() },
        delivery: NumberDelivery::None,
        message: None,
    }
}

/// The same, sent by SMS to the patient's phone.
fn sms_number(patient_id: &str, phone: &str, hash: &str, at: DateTime<Utc>) -> NewNumber {
    NewNumber {
        delivery: NumberDelivery::Sms,
        message: Some(NewMessage {
            channel: Channel::Sms,
            recipient: phone.into(),
            body_sealed: format!("sealed:v1:body-{}", &hash[..8]),
        }),
        ..staff_number(patient_id, hash, at)
    }
}

/// A number the patient consented to in turn `seq` of the call.
fn call_number(patient_id: &str, hash: &str, seq: i64, at: DateTime<Utc>) -> NewNumber {
    NewNumber { consent: Consent::Call { seq }, ..sms_number(patient_id, "+819012345678", hash, at) }
}

async fn add_patients(store: &Store, ids: &[&str]) {
    for (i, id) in ids.iter().enumerate() {
        store.patients().upsert(&patient(id, &format!("+8190{:08}", i + 1))).await.unwrap();
    }
}

/// What verification says of `hash` now, without using the number up.
async fn check(store: &Store, hash: &str) -> Verdict {
    store.numbers().verify(hash, now(), "contact-app", false).await.unwrap()
}

fn valid_for(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Valid { patient_id, .. } => Some(patient_id.as_str()),
        _ => None,
    }
}

async fn a_number_is_issued_and_found_valid_for_its_patient(store: Store) {
    add_patients(&store, &["p1", "p2"]).await;
    let (t, hash) = (now(), fresh_hash());
    let issued = store.numbers().issue(&staff_number("p1", &hash, t)).await.unwrap();
    assert_eq!(issued.message_id, None, "no message for a number not sent");

    let valid = store.numbers().valid("p1", t).await.unwrap().expect("p1 has a valid number");
    assert_eq!(
        valid,
        ValidNumber {
            number_id: issued.number_id,
            expires_at: t + hours(24),
            sealed: Some(format!("sealed:v1:{}", &hash[..8])),
            read_pending: false,
        }
    );
    assert_eq!(store.numbers().valid("p1", t + hours(25)).await.unwrap(), None, "not once it has expired");
    assert_eq!(store.numbers().valid("p2", t).await.unwrap(), None);
    assert_eq!(store.numbers().valid("nobody", t).await.unwrap(), None);
    assert_eq!(store.numbers().valid_count().await.unwrap(), 1);

    // A check reports the number without using it up.
    let expected =
        Verdict::Valid { number_id: issued.number_id, patient_id: PatientId::parse("p1").unwrap(), issued_at: t };
    assert_eq!(store.numbers().verify(&hash, t, "contact-app", false).await.unwrap(), expected);
    assert_eq!(store.numbers().verify(&hash, t, "contact-app", false).await.unwrap(), expected);
    assert_eq!(store.numbers().valid_count().await.unwrap(), 1);
    assert_eq!(
        store.numbers().audit_log().await.unwrap(),
        vec![
            ("nurse-tanaka".to_string(), "issue".to_string(), "delivery none".to_string()),
            ("contact-app".into(), "check".into(), "valid".into()),
            ("contact-app".into(), "check".into(), "valid".into()),
        ]
    );

    let err = store.numbers().issue(&staff_number("nobody", &fresh_hash(), t)).await.unwrap_err();
    assert!(matches!(&err, StoreError::UnknownPatient(id) if id == "nobody"), "{err:?}");
    assert_eq!(store.numbers().valid_count().await.unwrap(), 1);
}

async fn a_new_number_revokes_the_patients_previous_one(store: Store) {
    add_patients(&store, &["p1", "p2"]).await;
    let (first, second, other) = (fresh_hash(), fresh_hash(), fresh_hash());
    store.numbers().issue(&staff_number("p2", &other, now())).await.unwrap();
    store.numbers().issue(&staff_number("p1", &first, now())).await.unwrap();
    let issued = store.numbers().issue(&staff_number("p1", &second, now())).await.unwrap();

    assert_eq!(check(&store, &first).await, Verdict::Revoked);
    assert_eq!(valid_for(&check(&store, &second).await), Some("p1"));
    assert_eq!(valid_for(&check(&store, &other).await), Some("p2"), "another patient's number stays valid");
    assert_eq!(store.numbers().valid("p1", now()).await.unwrap().unwrap().number_id, issued.number_id);
    assert_eq!(store.numbers().valid_count().await.unwrap(), 2);
}

async fn a_number_is_consumed_once_and_unknown_or_expired_numbers_are_refused(store: Store) {
    add_patients(&store, &["p1", "p2", "p3"]).await;
    let (t, hash) = (now(), fresh_hash());
    let issued = store.numbers().issue(&staff_number("p1", &hash, t)).await.unwrap();
    let verdict = store.numbers().verify(&hash, t, "contact-app", true).await.unwrap();
    assert_eq!(
        verdict,
        Verdict::Valid { number_id: issued.number_id, patient_id: PatientId::parse("p1").unwrap(), issued_at: t }
    );
    assert_eq!(store.numbers().verify(&hash, t, "contact-app", true).await.unwrap(), Verdict::Used);
    assert_eq!(check(&store, &hash).await, Verdict::Used);
    assert_eq!(store.numbers().valid("p1", t).await.unwrap(), None, "a used number is no longer the patient's");
    // Its story, for the staff's page: issued, verified by the app, by which token.
    let story = store.numbers().story("p1").await.unwrap();
    assert_eq!(story.len(), 1);
    assert_eq!((story[0].status.as_str(), story[0].used_by.as_deref()), ("used", Some("contact-app")));
    assert_eq!(story[0].issued_at, t);
    assert!(story[0].used_at.is_some());
    assert_eq!(store.numbers().verify(&fresh_hash(), t, "contact-app", true).await.unwrap(), Verdict::Unknown);

    // Issued two hours ago, expired an hour ago.
    let old = fresh_hash();
    let expired = NewNumber { expires_at: t - hours(1), ..staff_number("p2", &old, t - hours(2)) };
    store.numbers().issue(&expired).await.unwrap();
    assert_eq!(store.numbers().verify(&old, t, "contact-app", true).await.unwrap(), Verdict::Expired);
    assert_eq!(store.numbers().valid("p2", t).await.unwrap(), None);
    // Its hash may be issued again (the old number is marked expired), and is valid then.
    store.numbers().issue(&staff_number("p3", &old, t)).await.unwrap();
    assert_eq!(valid_for(&store.numbers().verify(&old, t, "contact-app", false).await.unwrap()), Some("p3"));

    let verifications: Vec<String> = store
        .numbers()
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|(actor, action, _)| actor == "contact-app" && action == "verify")
        .map(|(_, _, detail)| detail)
        .collect();
    assert_eq!(verifications, ["valid", "used", "unknown", "expired"], "every attempt is audited");
}

async fn twenty_simultaneous_verifications_consume_a_number_once(store: Store) {
    add_patients(&store, &["p1"]).await;
    let hash = fresh_hash();
    store.numbers().issue(&staff_number("p1", &hash, now())).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, hash) = (store.clone(), hash.clone());
            tokio::spawn(async move { store.numbers().verify(&hash, now(), &format!("app-{i}"), true).await })
        })
        .collect();
    let mut verdicts = Vec::new();
    for t in tasks {
        verdicts.push(t.await.unwrap().unwrap());
    }
    let valid = verdicts.iter().filter(|v| matches!(v, Verdict::Valid { .. })).count();
    assert_eq!(valid, 1, "{verdicts:?}");
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Used).count(), 19, "{verdicts:?}");
    let audited =
        store.numbers().audit_log().await.unwrap().into_iter().filter(|(_, action, _)| action == "verify").count();
    assert_eq!(audited, 20);
    assert_eq!(store.numbers().valid_count().await.unwrap(), 0);
}

async fn a_number_issued_in_a_turn_is_stored_with_the_call_and_its_message(db: support::TestDb) {
    let store = db.open().await;
    let call = call_started(&store).await;
    let (t, hash) = (now(), fresh_hash());
    let w = TurnWrite {
        issue: Some(call_number("p1", &hash, 1, t)),
        stored_response: Some("sealed:v1:turn 1".into()),
        ..write("turn 1")
    };
    let result = store.calls().turn("CA1", 1, None, engine(w)).await.unwrap();
    assert_eq!(
        result,
        TurnResult { response: "turn 1".into(), replay: false, queued: true },
        "the caller hears the number, and its message waits in the outbox"
    );
    let replay = store.calls().turn("CA1", 1, None, must_not_run()).await.unwrap();
    assert_eq!(replay.response, "sealed:v1:turn 1", "what is stored of the turn is sealed");

    let valid = store.numbers().valid("p1", t).await.unwrap().expect("the number is valid");
    assert_eq!(valid_for(&check(&store, &hash).await), Some("p1"));
    let consent = |col: &str| format!("select {col} from processing_numbers where number_id = {}", valid.number_id);
    assert_eq!(db.scalar(&consent("consent_call_id")).await, call.call_id, "the consent's call");
    assert_eq!(db.scalar(&consent("consent_seq")).await, 1, "the consent's turn");
    let by_call = "cast(case when consent_channel = 'call' and consent_staff is null then 1 else 0 end as bigint)";
    assert_eq!(db.scalar(&consent(by_call)).await, 1, "consented in the call, not by staff");
    assert_eq!(
        store.outbox().for_patient("p1").await.unwrap(),
        vec![("sms".into(), "+819012345678".into(), "pending".into(), 0)]
    );
    assert!(store.numbers().audit_log().await.unwrap().contains(&(
        "call".into(),
        "issue".into(),
        "delivery sms".into()
    )));
    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap().seq, 1);
}

/// A step that issues, on each run, the number `hashes` gives for that run (none when `None`).
fn issuing(runs: &Arc<AtomicUsize>, hashes: impl Fn(usize) -> Option<String> + Send + 'static) -> TurnFn {
    let runs = runs.clone();
    Box::new(move |_| {
        let run = runs.fetch_add(1, Ordering::SeqCst);
        Ok(TurnWrite { issue: hashes(run).map(|h| call_number("p1", &h, 1, now())), ..write("turn 1") })
    })
}

/// Patient p2 holds a valid number whose hash is returned; p1 holds one too (the second hash),
/// and call CA1 of p1 has taken its first turn.
async fn numbers_held(store: &Store) -> (CallRecord, String, String) {
    let call = call_started(store).await;
    store.patients().upsert(&patient("p2", "+819022223333")).await.unwrap();
    let (taken, held) = (fresh_hash(), fresh_hash());
    store.numbers().issue(&staff_number("p2", &taken, now())).await.unwrap();
    store.numbers().issue(&staff_number("p1", &held, now())).await.unwrap();
    (call, taken, held)
}

async fn a_turn_whose_numbers_always_collide_gives_up_and_writes_nothing(store: Store) {
    let (call, taken, held) = numbers_held(&store).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let always = taken.clone();
    let err = store.calls().turn("CA1", 1, None, issuing(&runs, move |_| Some(always.clone()))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 6, "the step ran once and was retried five times");

    assert_eq!(store.calls().get("CA1").await.unwrap().unwrap(), call, "the call did not advance");
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 1);
    assert!(store.outbox().for_patient("p1").await.unwrap().is_empty(), "no message");
    let issues = store.numbers().audit_log().await.unwrap().into_iter().filter(|(_, a, _)| a == "issue").count();
    assert_eq!(issues, 2, "only the two numbers issued by staff");
    assert_eq!(valid_for(&check(&store, &held).await), Some("p1"), "p1's number was not revoked");
    assert_eq!(valid_for(&check(&store, &taken).await), Some("p2"));
    assert_eq!(store.numbers().valid_count().await.unwrap(), 2);

    // The turn can be taken again, with a number of its own.
    let fresh = fresh_hash();
    let retry = issuing(&runs, move |_| Some(fresh.clone()));
    assert!(!store.calls().turn("CA1", 1, None, retry).await.unwrap().replay);
    assert_eq!(check(&store, &held).await, Verdict::Revoked);
}

async fn a_turn_whose_number_collides_once_draws_again(store: Store) {
    let (call, taken, held) = numbers_held(&store).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let drawn = Arc::new(Mutex::new(Vec::new()));
    let step = {
        let drawn = drawn.clone();
        issuing(&runs, move |run| {
            let h = if run == 0 { taken.clone() } else { fresh_hash() };
            drawn.lock().unwrap().push(h.clone());
            Some(h)
        })
    };
    let result = store.calls().turn("CA1", 1, None, step).await.unwrap();
    assert_eq!(result, TurnResult { response: "turn 1".into(), replay: false, queued: true });
    assert_eq!(runs.load(Ordering::SeqCst), 2, "a second draw after the collision");

    let drawn = drawn.lock().unwrap().clone();
    assert_eq!(valid_for(&check(&store, &drawn[1]).await), Some("p1"), "the second draw is p1's number");
    assert_eq!(valid_for(&check(&store, &drawn[0]).await), Some("p2"), "the colliding one is still p2's");
    assert_eq!(check(&store, &held).await, Verdict::Revoked, "p1's previous number is revoked");
    assert_eq!(store.numbers().valid_count().await.unwrap(), 2);
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 2);
    assert_eq!(store.outbox().for_patient("p1").await.unwrap().len(), 1, "one message, for the number issued");
    let issued_in_calls =
        store.numbers().audit_log().await.unwrap().into_iter().filter(|(a, _, _)| a == "call").count();
    assert_eq!(issued_in_calls, 1);
}

async fn a_collision_leaves_nothing_behind_when_the_next_step_issues_no_number(store: Store) {
    let (call, taken, held) = numbers_held(&store).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let step = issuing(&runs, move |run| (run == 0).then(|| taken.clone()));
    assert!(!store.calls().turn("CA1", 1, None, step).await.unwrap().replay);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(valid_for(&check(&store, &held).await), Some("p1"), "the collided attempt revoked nothing");
    assert_eq!(store.numbers().valid_count().await.unwrap(), 2);
    assert!(store.outbox().for_patient("p1").await.unwrap().is_empty());
    assert_eq!(store.calls().event_count(call.call_id).await.unwrap(), 2);
}

/// How many numbers the bulk test issues: `IVR_BULK_NUMBERS`, else 100,000 under `CI=true`
/// and 10,000 otherwise.
fn bulk_count() -> usize {
    match std::env::var("IVR_BULK_NUMBERS") {
        Ok(n) => n.parse().expect("IVR_BULK_NUMBERS is a count"),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => 100_000,
        Err(_) => 10_000,
    }
}

/// Many tasks issue numbers at once for a thousand patients (each new number revoking the
/// patient's previous one): every issue succeeds (a collision draws again), no two valid numbers
/// share a hash, and each patient ends with exactly one valid number, the last issued.
async fn many_tasks_issue_numbers_and_no_two_valid_numbers_are_equal(db: support::TestDb) {
    const PATIENTS: usize = 1000;
    const TASKS: usize = 8;
    let store = db.open().await;
    let total = bulk_count();
    let id = |i: usize| format!("p{i:04}");

    let creating: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (t..PATIENTS).step_by(TASKS) {
                    store.patients().upsert(&patient(&id(i), &format!("+8190{i:08}"))).await.unwrap();
                }
            })
        })
        .collect();
    for t in creating {
        t.await.unwrap();
    }

    let started = Instant::now();
    let collisions = Arc::new(AtomicUsize::new(0));
    let issuing: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, collisions) = (store.clone(), collisions.clone());
            tokio::spawn(async move {
                // Number k goes to patient k while every patient gets a first one, then to
                // patients at random: tasks sometimes issue for the same patient at once.
                for k in (t..total).step_by(TASKS) {
                    let p = if k < PATIENTS { k } else { rand::random_range(0..PATIENTS) };
                    loop {
                        match store.numbers().issue(&staff_number(&id(p), &fresh_hash(), Utc::now())).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict) => drop(collisions.fetch_add(1, Ordering::Relaxed)),
                            Err(e) => panic!("issue for {}: {e}", id(p)),
                        }
                    }
                }
            })
        })
        .collect();
    for t in issuing {
        t.await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {total} numbers issued by {TASKS} tasks in {took:.1} s ({:.0}/s), {} collisions drawn again",
        store.backend(),
        total as f64 / took,
        collisions.load(Ordering::Relaxed)
    );

    assert_eq!(db.scalar("select count(*) from processing_numbers").await, total as i64);
    let repeated = "select count(*) from (select number_hash from processing_numbers where status = 'valid'
                    group by number_hash having count(*) > 1) as r";
    assert_eq!(db.scalar(repeated).await, 0, "no two valid numbers are equal");
    assert_eq!(store.numbers().valid_count().await.unwrap(), PATIENTS as i64, "one valid number per patient");
    let two = "select count(*) from (select patient_id from processing_numbers where status = 'valid'
               group by patient_id having count(*) > 1) as r";
    assert_eq!(db.scalar(two).await, 0);
    let not_last = "select count(*) from processing_numbers n where status = 'valid'
                    and number_id < (select max(number_id) from processing_numbers m where m.patient_id = n.patient_id)";
    assert_eq!(db.scalar(not_last).await, 0, "the valid number is the patient's last");
    let revoked = db.scalar("select count(*) from processing_numbers where status = 'revoked'").await;
    assert_eq!(revoked, (total - PATIENTS) as i64);
}

// ---- the outbox ----

/// Patients `ids`, each with a number sent by SMS; their message ids, in order.
async fn messages_written(store: &Store, ids: &[&str], at: DateTime<Utc>) -> Vec<i64> {
    add_patients(store, ids).await;
    let mut out = Vec::new();
    for id in ids {
        let phone = store.patients().get(id).await.unwrap().unwrap().phone;
        let issued = store.numbers().issue(&sms_number(id, phone.as_str(), &fresh_hash(), at)).await.unwrap();
        out.push(issued.message_id.expect("a message for an SMS delivery"));
    }
    out
}

async fn each_message_is_claimed_by_one_of_several_simultaneous_senders(store: Store) {
    let ids: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let t = now();
    let written = messages_written(&store, &ids, t).await;
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let batch = store.outbox().claim("test", t, t + chrono::Duration::minutes(1), 3).await.unwrap();
                    if batch.is_empty() {
                        break claimed;
                    }
                    claimed.extend(batch);
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for s in senders {
        claimed.extend(s.await.unwrap());
    }
    let distinct: HashSet<i64> = claimed.iter().map(|m| m.message_id).collect();
    assert_eq!(claimed.len(), 20, "no message claimed twice");
    assert_eq!(distinct, written.iter().copied().collect(), "every message claimed");
    assert!(
        claimed.iter().all(|m| m.attempts == 0 && m.channel == Channel::Sms && m.body_sealed.starts_with("sealed:v1:"))
    );
    let first = claimed.iter().find(|m| m.message_id == written[0]).unwrap();
    assert_eq!(first.patient_id.as_ref().map(|p| p.as_str()), Some("p00"));
    assert_eq!(first.recipient, "+819000000001");
    assert!(first.number_id.is_some());
    assert_eq!(
        store.outbox().for_patient("p00").await.unwrap(),
        vec![("sms".into(), "+819000000001".into(), "sending".into(), 0)],
        "claimed, not yet handed to the provider: no send counted"
    );
    assert!(store.outbox().claim("test", t, t, 10).await.unwrap().is_empty(), "nothing left to claim");
}

async fn a_finished_send_is_recorded_and_a_failure_alerts_the_health_centre(store: Store) {
    let t = now();
    let m = messages_written(&store, &["p1", "p2", "p3", "p4"], t).await;
    let lease = t + chrono::Duration::minutes(1);
    assert_eq!(store.outbox().claim("test", t, lease, 10).await.unwrap().len(), 4);
    for id in &m {
        store.outbox().hand(*id, t).await.unwrap();
    }
    let status = |store: Store, id: &'static str| async move {
        let all = store.outbox().for_patient(id).await.unwrap();
        assert_eq!(all.len(), 1);
        (all[0].2.clone(), all[0].3)
    };

    store
        .outbox()
        .finish(m[0], &SendResult::Sent { provider_id: "SM1".into(), status: "queued".into() }, t)
        .await
        .unwrap();
    assert_eq!(status(store.clone(), "p1").await, ("sent".to_string(), 1));

    let later = t + chrono::Duration::minutes(5);
    store.outbox().finish(m[1], &SendResult::Retry { error: "timeout".into(), at: later }, t).await.unwrap();
    assert_eq!(status(store.clone(), "p2").await, ("pending".to_string(), 1));
    assert!(store.outbox().claim("test", t, lease, 10).await.unwrap().is_empty(), "not due yet");
    let again = store.outbox().claim("test", later, later + chrono::Duration::minutes(1), 10).await.unwrap();
    assert_eq!(again.iter().map(|c| (c.message_id, c.attempts)).collect::<Vec<_>>(), vec![(m[1], 1)]);
    store.outbox().hand(m[1], later).await.unwrap();
    assert_eq!(status(store.clone(), "p2").await, ("sending".to_string(), 2));

    let failed = SendResult::Failed { error: "21211 invalid number".into(), dead: false };
    store.outbox().finish(m[2], &failed, t).await.unwrap();
    assert_eq!(status(store.clone(), "p3").await, ("failed".to_string(), 1));
    let dead = SendResult::Failed { error: "gave up after 5 attempts".into(), dead: true };
    store.outbox().finish(m[3], &dead, t).await.unwrap();
    assert_eq!(status(store.clone(), "p4").await, ("dead".to_string(), 1));

    assert_eq!(
        store.calls().patient_alerts("p3").await.unwrap(),
        vec!["message_failed: 21211 invalid number".to_string()]
    );
    assert_eq!(
        store.calls().patient_alerts("p4").await.unwrap(),
        vec!["message_dead: gave up after 5 attempts".to_string()]
    );
    assert!(store.calls().patient_alerts("p1").await.unwrap().is_empty());
    assert!(store.calls().patient_alerts("p2").await.unwrap().is_empty());
}

async fn delivery_statuses_from_the_provider_update_the_message(store: Store) {
    let t = now();
    let m = messages_written(&store, &["p1"], t).await;
    store.outbox().claim("test", t, t + chrono::Duration::minutes(1), 10).await.unwrap();
    store
        .outbox()
        .finish(m[0], &SendResult::Sent { provider_id: "SM1".into(), status: "queued".into() }, t)
        .await
        .unwrap();

    assert!(store.outbox().status("SM1", "sent", None).await.unwrap());
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[0].2, "sent");
    assert!(store.outbox().status("SM1", "delivered", None).await.unwrap());
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[0].2, "delivered");
    assert!(store.outbox().status("SM1", "undelivered", Some("30003")).await.unwrap(), "known, but delivered is final");
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[0].2, "delivered");
    // What the webhook does next with a late 30003 or a late failure changes nothing either:
    // no second send, no alert.
    let retry = SendResult::Retry { error: "undelivered 30003".into(), at: t };
    store.outbox().finish(m[0], &retry, t).await.unwrap();
    store.outbox().finish(m[0], &SendResult::Failed { error: "failed 30005".into(), dead: false }, t).await.unwrap();
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[0].2, "delivered");
    assert!(
        store
            .outbox()
            .claim("test", t + chrono::Duration::hours(1), t + chrono::Duration::hours(2), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.calls().patient_alerts("p1").await.unwrap().is_empty());
    assert!(!store.outbox().status("SM-unknown", "delivered", None).await.unwrap());
}

async fn a_failure_reported_before_the_send_was_recorded_is_not_overwritten(store: Store) {
    let t = now();
    let m = messages_written(&store, &["p1"], t).await;
    store.outbox().claim("test", t, t + chrono::Duration::minutes(1), 10).await.unwrap();
    // The carrier's callback comes while the sender still waits for the API's answer: the
    // webhook records the send, then the failure.
    let sent = SendResult::Sent { provider_id: "SM1".into(), status: "failed".into() };
    store.outbox().finish(m[0], &sent, t).await.unwrap();
    store.outbox().status("SM1", "failed", Some("30005")).await.unwrap();
    store.outbox().finish(m[0], &SendResult::Failed { error: "failed 30005".into(), dead: false }, t).await.unwrap();
    // Then the sender records what the API answered.
    let late = SendResult::Sent { provider_id: "SM1".into(), status: "queued".into() };
    store.outbox().finish(m[0], &late, t).await.unwrap();
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[0].2, "failed");
}

async fn claims_left_unfinished_are_taken_over_by_their_owner_at_once_and_by_others_after_the_lease(store: Store) {
    let t = now();
    let m = messages_written(&store, &["p1", "p2"], t).await;
    let lease = t + chrono::Duration::minutes(1);
    let started = t + chrono::Duration::seconds(5);
    // Claimed by a process of instance "a" that then died; "a" starts again at `started`.
    assert_eq!(store.outbox().claim("a", t, lease, 10).await.unwrap().len(), 2);
    let unfinished = |owner: &'static str, at: DateTime<Utc>| {
        let store = store.clone();
        async move { store.outbox().unfinished(owner, started, at, at + chrono::Duration::minutes(1), 10).await.unwrap() }
    };
    assert!(unfinished("b", started).await.is_empty(), "another instance waits for the lease");
    let taken = unfinished("a", started).await;
    assert_eq!(taken.iter().map(|c| (c.message_id, c.attempts)).collect::<Vec<_>>(), vec![(m[0], 0), (m[1], 0)]);
    assert!(taken.iter().all(|c| c.handed_at.is_none()), "never handed to the provider");
    assert!(unfinished("a", started).await.is_empty(), "taken once: now a claim of this process");
    assert_eq!(
        store.outbox().for_patient("p1").await.unwrap(),
        vec![("sms".into(), "+819000000001".into(), "sending".into(), 0)],
        "nothing was handed to the provider"
    );
    // The new process hands one to the provider and dies too; another instance takes both over
    // once their lease has run out, and sees which may have gone out, and since when.
    let handed = started + chrono::Duration::seconds(1);
    store.outbox().hand(m[0], handed).await.unwrap();
    let expiry = started + chrono::Duration::minutes(1);
    assert!(unfinished("b", expiry - chrono::Duration::seconds(1)).await.is_empty());
    let taken = unfinished("b", expiry).await;
    assert_eq!(taken.len(), 2);
    assert_eq!(taken.iter().find(|c| c.message_id == m[0]).unwrap().handed_at, Some(handed));
    assert_eq!(taken.iter().find(|c| c.message_id == m[1]).unwrap().handed_at, None);
    // A finished claim is nobody's to take over.
    let sent = SendResult::Sent { provider_id: "SM1".into(), status: "queued".into() };
    store.outbox().finish(m[0], &sent, expiry).await.unwrap();
    let failed = SendResult::Failed { error: "21211".into(), dead: false };
    store.outbox().finish(m[1], &failed, expiry).await.unwrap();
    assert!(unfinished("b", expiry + chrono::Duration::hours(1)).await.is_empty());
    assert!(unfinished("a", expiry + chrono::Duration::hours(1)).await.is_empty());
}

async fn a_send_handed_to_the_provider_keeps_its_time_until_its_outcome_is_known(store: Store) {
    let t = now();
    let m = messages_written(&store, &["p1"], t).await;
    assert_eq!(store.outbox().attempts(m[0]).await.unwrap(), Some(0));
    assert_eq!(store.outbox().attempts(m[0] + 1000).await.unwrap(), None);
    let lease = |at: DateTime<Utc>| at + chrono::Duration::minutes(1);
    assert_eq!(store.outbox().claim("a", t, lease(t), 10).await.unwrap()[0].handed_at, None);
    store.outbox().hand(m[0], t).await.unwrap();
    // The answer was lost: it may have gone out. The next claim says since when.
    let next = t + chrono::Duration::minutes(1);
    store.outbox().finish(m[0], &SendResult::Unsure { error: "timeout".into(), at: next }, t).await.unwrap();
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[0].2, "pending");
    let again = store.outbox().claim("a", next, lease(next), 10).await.unwrap();
    assert_eq!(again.iter().map(|c| (c.attempts, c.handed_at)).collect::<Vec<_>>(), vec![(1, Some(t))]);
    assert_eq!(store.outbox().attempts(m[0]).await.unwrap(), Some(1), "claimed, not yet sent again");
    // Handed again: the first time is kept. Then a refusal that proves nothing went out.
    store.outbox().hand(m[0], next).await.unwrap();
    assert_eq!(store.outbox().attempts(m[0]).await.unwrap(), Some(2));
    let later = next + chrono::Duration::minutes(1);
    store.outbox().finish(m[0], &SendResult::Retry { error: "429".into(), at: later }, next).await.unwrap();
    let third = store.outbox().claim("a", later, lease(later), 10).await.unwrap();
    assert_eq!(third.iter().map(|c| (c.attempts, c.handed_at)).collect::<Vec<_>>(), vec![(2, None)]);
    // `hand` touches only a message in hand.
    let sent = SendResult::Sent { provider_id: "SM1".into(), status: "queued".into() };
    store.outbox().finish(m[0], &sent, later).await.unwrap();
    store.outbox().hand(m[0], later).await.unwrap();
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[0].2, "sent");
    assert!(store.outbox().claim("a", later + chrono::Duration::hours(1), lease(later), 10).await.unwrap().is_empty());
}

async fn the_sms_sent_figure_counts_each_message_the_carrier_took_once_and_never_goes_down(store: Store) {
    let t = now();
    let since = Utc::now() - chrono::Duration::hours(1);
    let day = t.date_naive();
    let sent = |store: Store| async move { store.campaign().summary(day, since).await.unwrap().sms_sent };
    let m = messages_written(&store, &["p1", "p2"], t).await;
    assert_eq!(sent(store.clone()).await, 0, "written, not yet sent");
    let lease = t + chrono::Duration::minutes(1);
    store.outbox().claim("test", t, lease, 10).await.unwrap();
    for (i, id) in m.iter().enumerate() {
        store.outbox().hand(*id, t).await.unwrap();
        let result = SendResult::Sent { provider_id: format!("SM{i}"), status: "queued".into() };
        store.outbox().finish(*id, &result, t).await.unwrap();
    }
    assert_eq!(sent(store.clone()).await, 2);
    // Reported undelivered (a handset off): back in the outbox, still counted; sent again, once.
    store.outbox().status("SM0", "undelivered", Some("30003")).await.unwrap();
    store.outbox().finish(m[0], &SendResult::Retry { error: "undelivered 30003".into(), at: t }, t).await.unwrap();
    assert_eq!(sent(store.clone()).await, 2, "an undelivered report takes none back");
    store.outbox().claim("test", t, lease, 10).await.unwrap();
    store.outbox().hand(m[0], t).await.unwrap();
    let again = SendResult::Sent { provider_id: "SM9".into(), status: "queued".into() };
    store.outbox().finish(m[0], &again, t).await.unwrap();
    assert_eq!(sent(store.clone()).await, 2, "a message sent twice counts once");
}

// ---- API tokens ----

async fn api_tokens_are_unique_by_name_and_found_by_hash_with_their_scopes(store: Store) {
    let verify = Scopes::parse("verify").unwrap();
    let staff = Scopes::parse("staff").unwrap();
    store.numbers().add_token("contact-app", "hash-a", verify).await.unwrap();
    let err = store.numbers().add_token("contact-app", "hash-b", staff).await.unwrap_err();
    assert!(matches!(&err, StoreError::Duplicate(what) if what.contains("contact-app")), "{err:?}");
    store.numbers().add_token("reception", "hash-c", staff).await.unwrap();
    let a = store.numbers().token("hash-a").await.unwrap().expect("hash-a");
    assert_eq!((a.name.as_str(), a.scopes, a.last_used_at), ("contact-app", verify, None));
    let c = store.numbers().token("hash-c").await.unwrap().expect("hash-c");
    assert_eq!((c.name.as_str(), c.scopes.to_string().as_str()), ("reception", "issue,import,read,followup"));
    assert_eq!(store.numbers().token("hash-b").await.unwrap(), None, "the refused token was not stored");
    assert_eq!(store.numbers().token("nothing").await.unwrap(), None);

    // Last use: kept when later than the one stored.
    let t0 = Utc::now().trunc_subsecs(3);
    store.numbers().token_used("contact-app", t0).await.unwrap();
    store.numbers().token_used("contact-app", t0 - chrono::Duration::minutes(5)).await.unwrap();
    let a = store.numbers().token("hash-a").await.unwrap().unwrap();
    assert_eq!(a.last_used_at, Some(t0));
    assert!(!a.use_is_news(t0 + chrono::Duration::seconds(30)) && a.use_is_news(t0 + chrono::Duration::minutes(1)));

    // Revoked: refused like an unknown token, listed with when, its name still taken.
    let later = t0 + chrono::Duration::minutes(2);
    assert_eq!(store.numbers().revoke_token("contact-app", later).await.unwrap(), Revoke::Revoked);
    assert_eq!(store.numbers().revoke_token("contact-app", later).await.unwrap(), Revoke::AlreadyRevoked);
    assert_eq!(store.numbers().revoke_token("nobody", later).await.unwrap(), Revoke::Unknown);
    assert_eq!(store.numbers().token("hash-a").await.unwrap(), None);
    assert!(store.numbers().token("hash-c").await.unwrap().is_some(), "the other token lives on");
    let err = store.numbers().add_token("contact-app", "hash-d", verify).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "a revoked token's name is not reused: {err:?}");
    let listed = store.numbers().tokens().await.unwrap();
    let names: Vec<_> = listed.iter().map(|t| (t.name.as_str(), t.scopes, t.revoked_at)).collect();
    assert_eq!(names, vec![("contact-app", verify, Some(later)), ("reception", staff, None)]);
    assert_eq!(listed[0].last_used_at, Some(t0));
    assert!((Utc::now() - listed[1].created_at).num_minutes().abs() < 5, "{:?}", listed[1].created_at);
}

/// Tokens made before scopes existed (migration 0008) may verify numbers, and nothing else.
async fn tokens_made_before_scopes_existed_may_only_verify(db: support::TestDb) {
    let store = db.open().await;
    // The database as it was before 0008: the columns gone, the migration not recorded.
    db.execute(
        "delete from schema_migrations where version = 8;
         alter table api_tokens drop column scopes;
         alter table api_tokens drop column last_used_at;
         insert into api_tokens (name, token_hash) values ('old-contact-app', 'hash-old');",
    )
    .await;
    drop(store);
    let store = db.open_unmigrated().await;
    assert_eq!(store.migrate().await.unwrap(), 1, "0008 alone");
    let old = store.numbers().token("hash-old").await.unwrap().expect("the old token lives on");
    assert_eq!(
        (old.name.as_str(), old.scopes.to_string().as_str(), old.last_used_at),
        ("old-contact-app", "verify", None)
    );
}

// ---- delivery fallbacks ----

/// What an SMS that cannot reach a landline says.
fn landline(email: bool) -> SendResult {
    SendResult::Undeliverable { error: "undelivered 30006".into(), email }
}

async fn an_sms_to_a_landline_falls_back_once_to_email_or_to_the_next_call(store: Store) {
    let t = now();
    let m = messages_written(&store, &["p1", "p2", "p3"], t).await;
    for id in ["p1", "p3"] {
        let p = Patient { email: Some(format!("{id}@example.jp")), ..store.patients().get(id).await.unwrap().unwrap() };
        store.patients().upsert(&p).await.unwrap();
    }
    let lease = t + chrono::Duration::minutes(1);
    assert_eq!(store.outbox().claim("test", t, lease, 10).await.unwrap().len(), 3);
    for (i, id) in m.iter().enumerate() {
        store.outbox().hand(*id, t).await.unwrap();
        let sent = SendResult::Sent { provider_id: format!("SM{i}"), status: "queued".into() };
        store.outbox().finish(*id, &sent, t).await.unwrap();
    }

    // p1 has an address and e-mail is configured: the same text goes by e-mail.
    assert_eq!(store.outbox().finish(m[0], &landline(true), t).await.unwrap(), Some(Fallback::Email));
    // p2 has no address, p3's cannot be used (no e-mail settings): read on the next call.
    assert_eq!(store.outbox().finish(m[1], &landline(true), t).await.unwrap(), Some(Fallback::ReadAloud));
    assert_eq!(store.outbox().finish(m[2], &landline(false), t).await.unwrap(), Some(Fallback::ReadAloud));
    // A replayed callback changes nothing, and its status does not overwrite the outcome.
    for id in &m {
        assert_eq!(store.outbox().finish(*id, &landline(true), t).await.unwrap(), None);
    }
    assert!(store.outbox().status("SM0", "undelivered", Some("30006")).await.unwrap());

    assert_eq!(
        store.outbox().for_patient("p1").await.unwrap(),
        vec![
            ("sms".into(), "+819000000001".into(), "failed".into(), 1),
            ("email".into(), "p1@example.jp".into(), "pending".into(), 0)
        ]
    );
    let email = store.outbox().claim("test", t, lease, 10).await.unwrap();
    assert_eq!(email.len(), 1);
    assert_eq!(email[0].body_sealed, "sealed:v1:body-".to_string() + &email[0].body_sealed[15..], "the SMS text");
    assert!(email[0].number_id.is_some());
    assert_eq!(
        store.calls().patient_alerts("p1").await.unwrap(),
        vec!["message_failed: SMS failed: landline (undelivered 30006); sent by e-mail instead".to_string()]
    );
    for id in ["p2", "p3"] {
        assert_eq!(store.outbox().for_patient(id).await.unwrap().len(), 1, "{id}: no other message");
        assert!(store.numbers().valid(id, t).await.unwrap().unwrap().read_pending, "{id}");
        assert_eq!(
            store.calls().patient_alerts(id).await.unwrap(),
            vec![
                "message_failed: SMS failed: landline (undelivered 30006); number will be read on the next call"
                    .to_string()
            ]
        );
    }
    assert!(!store.numbers().valid("p1", t).await.unwrap().unwrap().read_pending);
    let fallbacks =
        store.numbers().audit_log().await.unwrap().into_iter().filter(|(_, action, _)| action == "fallback").count();
    assert_eq!(fallbacks, 3);
}

async fn a_number_held_for_the_next_call_is_done_once_the_call_reads_it(store: Store) {
    call_started(&store).await;
    let t = now();
    let issued = store.numbers().issue(&sms_number("p1", "+819012345678", &fresh_hash(), t)).await.unwrap();
    let m = issued.message_id.unwrap();
    store.outbox().claim("test", t, t + chrono::Duration::minutes(1), 10).await.unwrap();
    assert_eq!(store.outbox().finish(m, &landline(false), t).await.unwrap(), Some(Fallback::ReadAloud));
    assert!(store.numbers().valid("p1", t).await.unwrap().unwrap().read_pending);

    store.calls().turn("CA1", 1, None, engine(TurnWrite { number_read: true, ..write("turn 1") })).await.unwrap();
    let valid = store.numbers().valid("p1", t).await.unwrap().unwrap();
    assert_eq!((valid.number_id, valid.read_pending), (issued.number_id, false), "read, and still valid");
    let read = store.numbers().audit_log().await.unwrap().into_iter().filter(|(_, action, _)| action == "read").count();
    assert_eq!(read, 1);
}

async fn a_number_that_expired_before_its_message_went_out_is_replaced_once(store: Store) {
    let t = now();
    let m = messages_written(&store, &["p1"], t).await[0];
    let first = store.numbers().valid("p1", t).await.unwrap().unwrap();
    let late_at = t + hours(25);
    assert!(store.outbox().claim("test", late_at, late_at, 10).await.unwrap().is_empty(), "never sent expired");
    let late = store.outbox().late(late_at, 10).await.unwrap();
    assert_eq!(
        late,
        vec![LateMessage {
            message_id: m,
            patient_id: PatientId::parse("p1").unwrap(),
            number_id: first.number_id,
            channel: Channel::Sms,
            recipient: "+819000000001".into(),
            reissued: false,
        }]
    );
    assert!(store.outbox().late(t, 10).await.unwrap().is_empty(), "not late while the number runs");

    let fresh = NewNumber {
        issued_at: late_at,
        expires_at: late_at + hours(24),
        ..sms_number("p1", "", &fresh_hash(), late_at)
    };
    let fresh = NewNumber {
        message: Some(NewMessage {
            channel: Channel::Sms,
            recipient: "+819000000001".into(),
            body_sealed: "sealed:v1:fresh".into(),
        }),
        ..fresh
    };
    assert!(store.outbox().replace_late(m, Some(&fresh), late_at).await.unwrap());
    assert!(!store.outbox().replace_late(m, Some(&fresh), late_at).await.unwrap(), "once");
    assert!(store.outbox().late(late_at, 10).await.unwrap().is_empty());
    let second = store.numbers().valid("p1", late_at).await.unwrap().expect("the fresh number");
    assert_ne!(second.number_id, first.number_id);
    assert_eq!(store.numbers().valid_count().await.unwrap(), 1, "the expired one is no longer valid");
    assert_eq!(
        store.outbox().for_patient("p1").await.unwrap(),
        vec![
            ("sms".into(), "+819000000001".into(), "cancelled".into(), 0),
            ("sms".into(), "+819000000001".into(), "pending".into(), 0)
        ]
    );
    let claimed = store.outbox().claim("test", late_at, late_at + chrono::Duration::minutes(1), 10).await.unwrap();
    assert_eq!((claimed.len(), claimed[0].body_sealed.as_str()), (1, "sealed:v1:fresh"));
    assert_eq!(store.calls().patient_alerts("p1").await.unwrap(), vec![REISSUED_ALERT.to_string()]);
    assert!(store.numbers().audit_log().await.unwrap().contains(&(
        "nurse-tanaka".into(),
        "issue".into(),
        "delivery sms".into()
    )));

    // The fresh number's message keeps failing until that number expires too: it is dead.
    let retry = SendResult::Retry { error: "503".into(), at: late_at + hours(30) };
    store.outbox().finish(claimed[0].message_id, &retry, late_at).await.unwrap();
    let later = late_at + hours(30);
    let late = store.outbox().late(later, 10).await.unwrap();
    assert_eq!(late.len(), 1);
    assert!(late[0].reissued, "a replacement is not replaced again");
    assert!(store.outbox().replace_late(late[0].message_id, None, later).await.unwrap());
    assert!(!store.outbox().replace_late(late[0].message_id, None, later).await.unwrap());
    assert_eq!(store.outbox().for_patient("p1").await.unwrap()[1].2, "dead");
    assert_eq!(store.numbers().valid_count().await.unwrap(), 0);
    assert_eq!(
        store.calls().patient_alerts("p1").await.unwrap(),
        vec![REISSUED_ALERT.to_string(), LATE_DEAD_ALERT.to_string()]
    );
}

async fn a_number_issued_in_a_call_is_replaced_with_the_same_consent(store: Store) {
    call_started(&store).await;
    let t = now();
    let w = TurnWrite { issue: Some(call_number("p1", &fresh_hash(), 1, t)), ..write("turn 1") };
    store.calls().turn("CA1", 1, None, engine(w)).await.unwrap();
    let late_at = t + hours(25);
    let late = store.outbox().late(late_at, 10).await.unwrap();
    assert_eq!(late.len(), 1);
    let fresh = NewNumber {
        issued_at: late_at,
        expires_at: late_at + hours(24),
        ..call_number("p1", &fresh_hash(), 1, late_at)
    };
    assert!(
        store.outbox().replace_late(late[0].message_id, Some(&fresh), late_at).await.unwrap(),
        "the consent's index allows it"
    );
    assert!(store.numbers().valid("p1", late_at).await.unwrap().is_some());
    let audit = store.numbers().audit_log().await.unwrap();
    let issues: Vec<_> = audit.iter().filter(|(actor, action, _)| actor == "call" && action == "issue").collect();
    assert_eq!(issues.len(), 2, "issued on the call's consent twice: {audit:?}");
    assert!(audit.contains(&("outbox".into(), "reissue".into(), "expired before delivery".into())));
}
