//! The patients table and a patient's chart points on both back ends: each patient's latest
//! readings kept as turns write answers (a later answer of the same call included), the
//! filters, orders and pages of the table, and a patient's calls with the missed ones.

use crate::common::db as support;
use crate::common::patients::{self, PatientBuilder};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use ivr::flow::{CallState, Phase, Value};
use ivr::store::*;
use ivr::types::{CallSid, Direction, PatientId, Severity};

on_both_backends! {
    with_store: the_table_shows_each_patients_latest_readings_open_item_and_last_call;
    with_store: the_table_filters_searches_sorts_and_pages;
    with_store: a_patients_points_are_their_calls_in_time_order_with_the_missed_ones;
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 7).unwrap()
}

fn query() -> TableQuery {
    TableQuery {
        today: today(),
        search: None,
        area: None,
        language: None,
        slot: None,
        alert: AlertFilter::Any,
        sort: SortKey::Id,
        desc: false,
        limit: 50,
        offset: 0,
    }
}

fn names() -> Vec<String> {
    vec!["temperature".into(), "spo2".into()]
}

fn n(raw: i64, scale: u8) -> Value {
    Value::Number { raw, scale }
}

/// p1 (north, morning) answered twice, the second time with low SpO2 and an urgent alert; p2
/// (south, English) answered once, its temperature corrected in a later turn, then its next
/// day's job was unreachable; p3's care ended yesterday; p4 (north) never answered.
async fn roster(store: &Store) {
    let ps = [
        patients::patient("p1", "+819011110001")
            .name("山田 花子")
            .area("north")
            .slot("morning")
            .care_from("2026-12-01"),
        patients::patient("p2", "+819022220002").name("Jane Smith").area("south").language("en-US"),
        patients::patient("p3", "+819033330003").area("north").care("2026-11-20", "2026-12-06"),
        patients::patient("p4", "+819044440004").area("north").care("2026-12-01", "2026-12-14"),
    ];
    for p in &ps {
        store.patients().upsert(p).await.unwrap();
    }
    answer(store, "CA1", "p1", 0, vec![("temperature", n(365, 1)), ("spo2", n(97, 0))], None).await;
    let urgent = Some(NewAlert::flow("health_check", Severity::Urgent));
    answer(store, "CA2", "p1", 0, vec![("temperature", n(382, 1)), ("spo2", n(91, 0))], urgent).await;
    // Digits a caller typed are text: never a reading.
    answer(
        store,
        "CA3",
        "p2",
        0,
        vec![("temperature", n(370, 1)), ("sms_to", Value::Text("09012345678".into()))],
        None,
    )
    .await;
    answer(store, "CA3", "p2", 1, vec![("temperature", n(371, 1)), ("spo2", n(95, 0))], None).await;
    let due = Utc::now() - Duration::minutes(5);
    let job = NewJob {
        patient_id: PatientId::parse("p2").unwrap(),
        flow: "daily-health-check".into(),
        day: today(),
        due_at: due,
        checkin: "00:00".into(),
        window: None,
        web_at: None,
    };
    store.campaign().plan_jobs(&[job]).await.unwrap();
    let claimed = store.campaign().claim_jobs(Utc::now(), Utc::now() + Duration::minutes(5), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let next = JobNext::Unreachable("1 attempt(s) today, the last no-answer".into());
    let ended = store.campaign().end_attempt(claimed[0].job_id, 1, "no-answer", None, &next, Utc::now()).await.unwrap();
    assert!(ended);
}

async fn answer(
    store: &Store,
    sid: &str,
    patient: &str,
    seq: i64,
    answers: Vec<(&str, Value)>,
    alert: Option<NewAlert>,
) {
    let answers: Vec<(String, Value)> = answers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let engine: TurnFn = Box::new(move |_| {
        Ok(TurnWrite {
            state: Some(call_state()),
            response: "<Response/>".into(),
            event_state: "record".into(),
            event_input: "1".into(),
            answers: answers.clone(),
            alerts: alert.clone().into_iter().collect(),
            ..Default::default()
        })
    });
    let create = (seq == 0).then(|| {
        Create::from(NewCall {
            call_sid: CallSid::parse(sid).unwrap(),
            patient_id: Some(PatientId::parse(patient).unwrap()),
            job_id: None,
            direction: Direction::Outbound,
            state: call_state(),
            flow_version: None,
            started_at: None,
        })
    });
    store.calls().turn(sid, seq, create, engine).await.unwrap();
}

fn call_state() -> CallState {
    CallState {
        flow: "daily-health-check".into(),
        version: "1".into(),
        lang: "ja-JP".into(),
        state: "record".into(),
        phase: Phase::Asking,
        ..Default::default()
    }
}

fn ids(page: &TablePage) -> Vec<&str> {
    page.rows.iter().map(|r| r.patient.patient_id.as_str()).collect()
}

fn latest<'a>(row: &'a TableRow, name: &str) -> Option<&'a Value> {
    row.latest.iter().find(|(n, _)| n == name).map(|(_, r)| &r.value)
}

fn long_ago() -> DateTime<Utc> {
    Utc::now() - Duration::days(7)
}

async fn the_table_shows_each_patients_latest_readings_open_item_and_last_call(store: Store) {
    roster(&store).await;
    let page = store.trends().table(&query(), &names(), long_ago()).await.unwrap();
    assert_eq!(page.total, 3, "p3's care ended yesterday");
    assert_eq!(ids(&page), ["p1", "p2", "p4"]);
    let (p1, p2, p4) = (&page.rows[0], &page.rows[1], &page.rows[2]);
    assert_eq!(latest(p1, "temperature"), Some(&n(382, 1)));
    assert_eq!(latest(p1, "spo2"), Some(&n(91, 0)));
    assert_eq!(latest(p2, "temperature"), Some(&n(371, 1)), "the later turn's answer of the same call");
    assert!(latest(p2, "sms_to").is_none() && p2.latest.len() == 2, "{:?}", p2.latest);
    let temps: Vec<&Value> = p1.recent.iter().filter(|(n, _)| n == "temperature").map(|(_, r)| &r.value).collect();
    assert_eq!(temps, [&n(365, 1), &n(382, 1)], "oldest first");
    assert!(p4.latest.is_empty() && p4.recent.is_empty());
    assert_eq!(p1.followup.as_ref().map(|f| f.severity), Some(Severity::Urgent));
    assert_eq!(p2.followup.as_ref().map(|f| f.severity), Some(Severity::High), "unreachable opens an item");
    assert!(p4.followup.is_none());
    let call = p2.last_call.as_ref().expect("p2's job");
    assert_eq!(
        (call.status.as_str(), call.outcome.as_deref(), call.day),
        ("unreachable", Some("no-answer"), Some(today()))
    );
    assert!(p1.last_call.is_none(), "p1's calls were placed by no job");
    // Nothing from before `since` in the sparkline's readings.
    let later = store.trends().table(&query(), &names(), Utc::now() + Duration::minutes(1)).await.unwrap();
    assert!(later.rows[0].recent.is_empty());
    assert_eq!(latest(&later.rows[0], "spo2"), Some(&n(91, 0)));
}

async fn the_table_filters_searches_sorts_and_pages(store: Store) {
    roster(&store).await;
    let table = |q: TableQuery| {
        let store = store.clone();
        async move { store.trends().table(&q, &names(), long_ago()).await.unwrap() }
    };
    let by = |sort: SortKey, desc: bool| TableQuery { sort, desc, ..query() };
    assert_eq!(ids(&table(by(SortKey::Reading("spo2".into()), false)).await), ["p1", "p2", "p4"], "91, 95, none last");
    assert_eq!(ids(&table(by(SortKey::Reading("spo2".into()), true)).await), ["p2", "p1", "p4"]);
    assert_eq!(ids(&table(by(SortKey::Reading("temperature".into()), true)).await), ["p1", "p2", "p4"]);
    assert_eq!(ids(&table(by(SortKey::Followup, false)).await), ["p1", "p2", "p4"], "urgent, high, none");
    assert_eq!(
        ids(&table(by(SortKey::LastCall, false)).await),
        ["p2", "p1", "p4"],
        "unreachable first, never called last by id"
    );
    assert_eq!(ids(&table(by(SortKey::Name, false)).await), ["p2", "p1", "p4"], "Jane, 山田 (U+5C71), 患者 (U+60A3)");
    assert_eq!(ids(&table(by(SortKey::Id, true)).await), ["p4", "p2", "p1"]);

    let north = table(TableQuery { area: Some("north".into()), ..query() }).await;
    assert_eq!((ids(&north), north.total), (vec!["p1", "p4"], 2));
    let urgent = table(TableQuery { alert: AlertFilter::Severity(Severity::Urgent), ..query() }).await;
    assert_eq!((ids(&urgent), urgent.total), (vec!["p1"], 1));
    assert_eq!(ids(&table(TableQuery { alert: AlertFilter::Open, ..query() }).await), ["p1", "p2"]);
    assert_eq!(ids(&table(TableQuery { alert: AlertFilter::NoneOpen, ..query() }).await), ["p4"]);
    assert_eq!(ids(&table(TableQuery { language: Some("en-US".into()), ..query() }).await), ["p2"]);
    assert_eq!(ids(&table(TableQuery { slot: Some("morning".into()), ..query() }).await), ["p1"]);
    assert_eq!(
        ids(&table(TableQuery { slot: Some(String::new()), ..query() }).await),
        ["p2", "p4"],
        "the default slot"
    );
    let search = |s: &str| TableQuery { search: Some(s.into()), ..query() };
    assert_eq!(ids(&table(search("090-2222-0002")).await), ["p2"], "a phone number as typed");
    assert_eq!(ids(&table(search("山田")).await), ["p1"]);
    assert_eq!(ids(&table(search("JANE")).await), ["p2"], "any case");
    assert_eq!(ids(&table(search("P4")).await), ["p4"]);
    assert!(table(search("100%")).await.rows.is_empty(), "% is a character, not a wildcard");
    let second = table(TableQuery { limit: 1, offset: 1, ..query() }).await;
    assert_eq!((ids(&second), second.total), (vec!["p2"], 3));
}

async fn a_patients_points_are_their_calls_in_time_order_with_the_missed_ones(store: Store) {
    roster(&store).await;
    let p1 = store.trends().points("p1", &names()).await.unwrap();
    assert_eq!(p1.len(), 2);
    assert!(p1[0].at <= p1[1].at && p1.iter().all(|p| !p.missed));
    let mut readings = p1[1].readings.clone();
    readings.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(readings, [("spo2".to_string(), n(91, 0)), ("temperature".to_string(), n(382, 1))]);
    let p2 = store.trends().points("p2", &names()).await.unwrap();
    assert_eq!(p2.len(), 2, "{p2:?}");
    assert!(!p2[0].missed && p2[0].call_id.is_some());
    assert!(p2[1].missed && p2[1].status == "unreachable" && p2[1].readings.is_empty());
    assert!(store.trends().points("p4", &names()).await.unwrap().is_empty());
}
