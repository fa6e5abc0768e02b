//! Personal data in the store, on SQLite and on PostgreSQL: a call's stored state keeps none of
//! the patient's roster data, retention empties exactly the calls of patients whose care ended
//! before the cut-off, and a number no call read is followed up by one alert.

use crate::common::db as support;
use crate::common::db::TestDb;
use crate::common::patients::{self, PatientBuilder};

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use ivr::calls::{PERSONAL_VARS, TurnContext, first_turn, turn_fn};
use ivr::flow::{CallState, Input, Phase, Value, Vars};
use ivr::issuer::{Issuer, IssuerKey, ProcessingNumber};
use ivr::store::*;
use ivr::types::{CallSid, Channel, Digits, Direction, E164, NumberDelivery, PatientId};

on_both_backends! {
    with_db: the_migration_strips_personal_data_from_calls_stored_before_it;
    with_store: a_new_calls_stored_state_holds_no_phone_name_or_birth_date;
    with_store: retention_empties_exactly_the_calls_of_patients_whose_care_ended_before_the_cut_off;
    with_store: a_number_no_call_read_to_the_end_raises_one_alert_after_the_bound;
}

const PHONE: &str = "+819012345678";

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn issuer() -> Issuer {
    Issuer {
        key: IssuerKey::new("personal data tests"),
        digits: 8,
        valid_for: chrono::Duration::hours(24),
        link: None,
        tz: chrono_tz::Asia::Tokyo,
    }
}

fn context() -> TurnContext {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let flows = ivr::flow::registry::Registry::load(root.join("call-flows"), root.join("prompts")).expect("flows load");
    let settings = ivr::config::Settings::load(None).expect("default settings");
    TurnContext {
        desk: Arc::new(ivr::calls::Desk {
            to: settings.transfer_to(),
            caller_id: None,
            hours: settings.opening_hours(),
        }),
        flows: Arc::new(flows),
        issuer: Arc::new(issuer()),
        public_url: "http://ivr.test".into(),
        centre_phone: "03-1234-5678".into(),
    }
}

async fn a_new_calls_stored_state_holds_no_phone_name_or_birth_date(store: Store) {
    let p = patients::patient("p1", PHONE).name("山田 花子").email("hanako@example.jp");
    store.patients().upsert(&p).await.unwrap();
    let ctx = context();
    let sid = CallSid::parse("CA00000000000000000000000000000001").unwrap();
    let t = now();
    let caller = Caller::Phone(E164::parse(PHONE).unwrap());
    let (first, _) = first_turn(&ctx, &sid, caller, "daily-health-check", t);
    let f = turn_fn(&ctx, sid.as_str(), 0, Input::Start, t);
    store.calls().turn(sid.as_str(), 0, Some(Create::Find(first)), f).await.unwrap();
    // The birth date is compared with the roster's at the time of the turn.
    let f = turn_fn(&ctx, sid.as_str(), 1, Input::Digits(Digits::parse("0412").unwrap()), t);
    let heard = store.calls().turn(sid.as_str(), 1, None, f).await.unwrap().response;
    assert!(heard.contains("体温"), "the identity is confirmed: {heard}");

    let call = store.calls().get(sid.as_str()).await.unwrap().unwrap();
    assert_eq!(call.patient.as_ref().map(|p| p.name.as_str()), Some("山田 花子"), "read from the roster");
    for k in PERSONAL_VARS {
        assert!(!call.state.vars.contains_key(k), "{k} stored: {:?}", call.state.vars);
    }
    assert_eq!(call.state.vars.get("identity"), Some(&Value::text("confirmed")));
    let stored = serde_json::to_string(&call.state).unwrap();
    for personal in ["山田", "hanako", "9012345678", "0412"] {
        assert!(!stored.contains(personal), "the stored state holds {personal}: {stored}");
    }
    let answers = store.calls().answers(call.call_id).await.unwrap();
    assert!(answers.iter().all(|a| a.value.to_string() != "0412"), "{answers:?}");
}

/// A call of `patient` with a typed mobile number, a temperature and a choice among its answers,
/// a TwiML response, and a sent SMS carrying a number whose sealed copy is kept.
async fn call_with_personal_data(store: &Store, patient: &str, n: u32, t: DateTime<Utc>) {
    let sid = format!("CA{n:032}");
    let mut vars = Vars::new();
    vars.insert("patient.id".into(), Value::text(patient));
    vars.insert("sms_to".into(), Value::text("09011112222"));
    vars.insert("temperature".into(), Value::Number { raw: 365, scale: 1 });
    let state = CallState {
        flow: "daily-health-check".into(),
        version: "1".into(),
        lang: "ja-JP".into(),
        state: "goodbye".into(),
        phase: Phase::Ended,
        tries: 0,
        vars,
    };
    let new = NewCall {
        call_sid: CallSid::parse(&sid).unwrap(),
        patient_id: Some(PatientId::parse(patient).unwrap()),
        job_id: None,
        direction: Direction::Outbound,
        state: state.clone(),
        flow_version: None,
        started_at: None,
    };
    let write = TurnWrite {
        state: Some(state),
        response: "<Response><Say>0 9 0、1 1 1 1、2 2 2 2、ですね</Say></Response>".into(),
        event_state: "goodbye".into(),
        event_input: "(start)".into(),
        answers: vec![
            ("sms_to".into(), Value::text("09011112222")),
            ("temperature".into(), Value::Number { raw: 365, scale: 1 }),
            ("breathless".into(), Value::text("no")),
        ],
        ended: true,
        ..Default::default()
    };
    store.calls().turn(&sid, 0, Some(new.into()), Box::new(move |_| Ok(write.clone()))).await.unwrap();
    let key = IssuerKey::new("personal data tests");
    let number = NewNumber {
        patient_id: PatientId::parse(patient).unwrap(),
        number_hash: key.hash(&ProcessingNumber::generate(8)),
        sealed: Some(key.seal("12345678")),
        issued_at: t,
        expires_at: t + chrono::Duration::hours(24),
        consent: Consent::Staff { name: "nurse".into() },
        delivery: NumberDelivery::Sms,
        message: Some(NewMessage { channel: Channel::Sms, recipient: PHONE.into(), body_sealed: key.seal("番号") }),
    };
    let issued = store.numbers().issue(&number).await.unwrap();
    let sent = SendResult::Sent { provider_id: format!("SM{n:032}"), status: "queued".into() };
    store.outbox().claim("test", t, t + chrono::Duration::minutes(1), 10).await.unwrap();
    store.outbox().finish(issued.message_id.unwrap(), &sent, t).await.unwrap();
}

/// What is left of a patient's call `n`: its variables, answer names, stored response, message
/// recipients, and whether the number's sealed copy is kept.
async fn left_of(
    store: &Store,
    patient: &str,
    n: u32,
    t: DateTime<Utc>,
) -> (usize, Vec<String>, String, Vec<String>, bool) {
    let sid = format!("CA{n:032}");
    let call = store.calls().get(&sid).await.unwrap().unwrap();
    let answers = store.calls().answers(call.call_id).await.unwrap().into_iter().map(|a| a.name).collect();
    let response = store.calls().turn(&sid, 0, None, Box::new(|_| panic!("a replay"))).await.unwrap().response;
    let recipients = store.outbox().for_patient(patient).await.unwrap().into_iter().map(|m| m.1).collect();
    let sealed = store.numbers().valid(patient, t).await.unwrap().unwrap().sealed.is_some();
    (call.state.vars.len(), answers, response, recipients, sealed)
}

async fn retention_empties_exactly_the_calls_of_patients_whose_care_ended_before_the_cut_off(store: Store) {
    let t = now();
    let roster = [
        patients::patient("old", "+819000000001").care("2026-01-01", "2026-01-10"),
        patients::patient("recent", "+819000000002").care("2026-01-01", "2026-03-01"),
        patients::patient("ongoing", "+819000000003").care_from("2026-01-01"),
        patients::patient("dateless", "+819000000004"),
    ];
    for (i, p) in roster.iter().enumerate() {
        store.patients().upsert(p).await.unwrap();
        call_with_personal_data(&store, p.patient_id.as_str(), i as u32 + 1, t).await;
    }
    let before: Vec<_> = left_of_each(&store, &roster, t).await;
    let cut = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(); // care that ended before March 1st

    let dry = store.patients().anonymise_ended_care(cut, true).await.unwrap();
    assert_eq!(dry, Anonymised { patients: 1, calls: 1, answers: 1, messages: 1, numbers: 1 });
    assert_eq!(left_of_each(&store, &roster, t).await, before, "a dry run changes nothing");

    let done = store.patients().anonymise_ended_care(cut, false).await.unwrap();
    assert_eq!(done, dry);
    let after = left_of_each(&store, &roster, t).await;
    assert_eq!(
        after[0],
        (0, vec!["breathless".to_string(), "temperature".to_string()], String::new(), vec![String::new()], false)
    );
    assert_eq!(after[1..], before[1..], "the other patients keep everything");
    assert_eq!(
        store.patients().anonymise_ended_care(cut, false).await.unwrap(),
        Anonymised::default(),
        "a second run finds nothing left"
    );
    assert_eq!(store.patients().get("old").await.unwrap().unwrap(), roster[0], "the roster row is the centre's");
}

async fn left_of_each(
    store: &Store,
    roster: &[Patient],
    t: DateTime<Utc>,
) -> Vec<(usize, Vec<String>, String, Vec<String>, bool)> {
    let mut out = Vec::new();
    for (i, p) in roster.iter().enumerate() {
        out.push(left_of(store, p.patient_id.as_str(), i as u32 + 1, t).await);
    }
    out
}

/// A number issued at `at` on turn `seq` of call `sid` (already started), to be read aloud.
fn read_aloud_number(patient: &str, seq: i64, at: DateTime<Utc>) -> NewNumber {
    let key = IssuerKey::new("personal data tests");
    NewNumber {
        patient_id: PatientId::parse(patient).unwrap(),
        number_hash: key.hash(&ProcessingNumber::generate(8)),
        sealed: Some(key.seal("12345678")),
        issued_at: at,
        expires_at: at + chrono::Duration::hours(24),
        consent: Consent::Call { seq },
        delivery: NumberDelivery::ReadAloud,
        message: None,
    }
}

async fn a_number_no_call_read_to_the_end_raises_one_alert_after_the_bound(store: Store) {
    let t = now();
    let h = chrono::Duration::hours;
    for (i, id) in ["dropped", "read", "expired"].iter().enumerate() {
        store.patients().upsert(&patients::patient(id, &format!("+8131234567{i}"))).await.unwrap();
        let sid = format!("CA{:032}", i + 1);
        let new = NewCall {
            call_sid: CallSid::parse(&sid).unwrap(),
            patient_id: Some(PatientId::parse(id).unwrap()),
            job_id: None,
            direction: Direction::Outbound,
            state: CallState::default(),
            flow_version: None,
            started_at: None,
        };
        // Issued at the consent turn, read aloud in its response.
        let at = if *id == "expired" { t - h(30) } else { t };
        let mut number = read_aloud_number(id, 0, at);
        if *id == "expired" {
            number.expires_at = t - h(1);
        }
        let issue = TurnWrite { issue: Some(number), response: "read".into(), ..Default::default() };
        store.calls().turn(&sid, 0, Some(new.into()), Box::new(move |_| Ok(issue.clone()))).await.unwrap();
    }
    assert!(store.numbers().valid("dropped", t).await.unwrap().unwrap().read_pending, "not delivered yet");
    // "read": the caller answered the menu after the number; "dropped" hung up during it.
    let read = TurnWrite { number_read: true, response: "menu".into(), ..Default::default() };
    store.calls().turn(&format!("CA{:032}", 2), 1, None, Box::new(move |_| Ok(read.clone()))).await.unwrap();
    assert!(!store.numbers().valid("read", t).await.unwrap().unwrap().read_pending);

    // Within the bound, only the number whose time is up is alerted.
    assert_eq!(store.numbers().alert_unread(t - h(1), t).await.unwrap(), 1);
    assert_eq!(store.calls().patient_alerts("expired").await.unwrap().len(), 1);
    assert!(store.calls().patient_alerts("dropped").await.unwrap().is_empty());
    // Past it, the number nobody read; once.
    assert_eq!(store.numbers().alert_unread(t + h(1), t + h(1)).await.unwrap(), 1);
    assert_eq!(store.numbers().alert_unread(t + h(2), t + h(2)).await.unwrap(), 0);
    let alerts = store.calls().patient_alerts("dropped").await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].starts_with("number_unread: "), "{alerts:?}");
    assert!(store.calls().patient_alerts("read").await.unwrap().is_empty(), "a number read is delivered");
}

/// A database at migration 7, as a deployment had it before calls stopped keeping personal
/// data, with one call stored then; migrating strips it.
async fn the_migration_strips_personal_data_from_calls_stored_before_it(db: TestDb) {
    let backend = if db.is_sqlite() { "sqlite" } else { "postgres" };
    let applied_at = if db.is_sqlite() { "text" } else { "timestamptz" };
    db.execute(&format!(
        "create table schema_migrations (version bigint primary key, name text not null, applied_at {applied_at} not null)"
    ))
    .await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for (i, file) in files.iter().take(7).enumerate() {
        db.execute(&std::fs::read_to_string(file).unwrap()).await;
        let now = if db.is_sqlite() { "'2026-01-01T00:00:00Z'" } else { "now()" };
        db.execute(&format!("insert into schema_migrations values ({}, 'before', {now})", i + 1)).await;
    }
    let old_state = r#"{"flow":"daily-health-check","version":"v1","lang":"ja-JP","state":"temperature","phase":"asking","tries":0,"vars":{"patient.id":"p1","patient.name":"山田 花子","patient.phone":"+819012345678","patient.birth_md":"0412","patient.email":"h@example.jp","patient.phone_kind":"mobile","birth_md":"0412","temperature":{"raw":365,"scale":1}}}"#;
    db.execute(&format!(
        "insert into patients (patient_id, name, phone, birth_md) values ('p1', '山田 花子', '+819012345678', '0412');
         insert into calls (call_sid, patient_id, direction, flow, flow_version, state)
           values ('CA1', 'p1', 'outbound', 'daily-health-check', 'v1', '{old_state}');
         insert into answers (call_id, patient_id, name, kind, value_text)
           select call_id, 'p1', 'birth_md', 'text', '0412' from calls;
         insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale)
           select call_id, 'p1', 'temperature', 'number', '36.5', 365, 1 from calls;"
    ))
    .await;

    let store = Store::open(db.url(), false).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), MIGRATION_COUNT - 7);
    let call = store.calls().get("CA1").await.unwrap().unwrap();
    let names: Vec<&str> = call.state.vars.keys().map(String::as_str).collect();
    assert_eq!(names, ["patient.id", "patient.phone_kind", "temperature"], "the rest is stripped");
    assert_eq!(call.state.state, "temperature", "the call goes on where it was");
    let answers = store.calls().answers(call.call_id).await.unwrap();
    let answers: Vec<(String, String)> = answers.into_iter().map(|a| (a.name, a.value.to_string())).collect();
    assert_eq!(answers, [("identity".into(), "confirmed".into()), ("temperature".into(), "36.5".into())]);
}
