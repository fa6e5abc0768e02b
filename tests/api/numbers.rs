//! Processing numbers end to end: issued from the call exactly once, delivered, verified once
//! through the API, issued by staff, and never stored in the clear.

use std::time::Duration;

use ivr::http::api::token_hash;
use ivr::types::Scopes;
use serde_json::{Value as Json, json};

use crate::common::app::*;

const MOBILE: &str = "+819012345678";
const LANDLINE: &str = "+81312345678";
/// Healthy answers, then "I use the app" and "I consent".
const CONSENTING: [&str; 13] = ["0412", "365", "1", "2", "2", "2", "2", "2", "2", "1", "1", "", ""];

async fn wait_for_sms(app: &TestApp, n: usize) -> Vec<ivr::carrier::simulator::SimulatedSms> {
    let sim = app.server.as_ref().unwrap().state.simulator.clone().expect("the simulator carrier");
    for _ in 0..100 {
        if sim.messages().len() >= n {
            // Give a duplicate the chance to show up before counting.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return sim.messages();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.messages()
}

fn digits_in(text: &str) -> String {
    let start = text.find("処理番号は ").map(|i| i + "処理番号は ".len()).unwrap_or(0);
    text[start..].chars().take_while(|c| c.is_ascii_digit() || *c == ' ').filter(char::is_ascii_digit).collect()
}

async fn api(app: &TestApp, path: &str, token: Option<&str>, body: Json) -> (u16, Json) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", app.addr)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Json::Null))
}

/// A token with these scopes (`verify`, `staff`, `verify,issue`…).
async fn token(app: &TestApp, name: &str, scopes: &str) -> String {
    let t = format!("ivr_test_token_{name}");
    app.store.numbers().add_token(name, &token_hash(&t), Scopes::parse(scopes).unwrap()).await.unwrap();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consenting_app_user_gets_one_number_by_sms_that_verifies_once() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let (_, heard) = app.call(MOBILE, &CONSENTING).await;
    assert!(heard.iter().any(|h| h.contains("ショートメッセージでお送りしました")), "{heard:?}");
    let sms = wait_for_sms(&app, 1).await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0].to, MOBILE);
    assert!(sms[0].body.starts_with("接触確認アプリの陽性登録用の処理番号は "), "{}", sms[0].body);
    assert!(ivr::issuer::sms_segments(&sms[0].body) <= 2, "{}", sms[0].body);
    let number = digits_in(&sms[0].body);
    assert_eq!(number.len(), 8, "{}", sms[0].body);

    let t = token(&app, "cocoa", "verify").await;
    let (s, body) = api(&app, "/api/v1/processing-numbers/verify", Some(&t), json!({"number": number})).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["issued_at"].as_str().unwrap().ends_with("+09:00"), "{body}");
    // Used now: the same answer as for a number that never existed.
    let (s_used, used) = api(&app, "/api/v1/processing-numbers/verify", Some(&t), json!({"number": number})).await;
    let (s_unknown, unknown) =
        api(&app, "/api/v1/processing-numbers/verify", Some(&t), json!({"number": "00000000"})).await;
    assert_eq!((s_used, &used), (s_unknown, &unknown));
    assert_eq!(s_used, 404);
    let audit = app.store.numbers().audit_log().await.unwrap();
    let details: Vec<&str> = audit.iter().map(|(_, _, d)| d.as_str()).collect();
    assert!(details.contains(&"used") && details.contains(&"unknown"), "the audit log keeps the reason: {details:?}");

    // The next day's call does not ask again while the number is valid… (it was used: asked).
    let (_, heard) = app.call(MOBILE, &CONSENTING[..9]).await;
    assert!(heard.iter().any(|h| h.contains("接触確認アプリをご利用")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_concurrent_duplicate_webhooks_issue_one_number_and_one_sms() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let sid = "CA88888888888888888888888888888888";
    let p = |d: Option<&str>| {
        let mut v = vec![("CallSid".to_string(), sid.to_string()), ("From".to_string(), MOBILE.to_string())];
        if let Some(d) = d {
            v.push(("Digits".into(), d.into()));
        }
        v
    };
    app.client.post(&format!("{PUBLIC}/twilio/voice"), &p(None)).await.unwrap();
    let keys = ["0412", "365", "1", "2", "2", "2", "2", "2", "2", "1", "1"];
    for (i, k) in keys.iter().enumerate() {
        let url = format!("{PUBLIC}/twilio/voice/step?call={sid}&seq={}", i + 1);
        // The consent turn arrives five times at once, and again afterwards.
        let copies = if i == keys.len() - 1 { 5 } else { 1 };
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..copies {
            let (c, url, params) = (app.client.clone(), url.clone(), p(Some(k)));
            set.spawn(async move { c.post(&url, &params).await.unwrap() });
        }
        let bodies = set.join_all().await;
        assert!(bodies.iter().all(|b| b == &bodies[0]));
        if i == keys.len() - 1 {
            let again = app.client.post(&url, &p(Some(k))).await.unwrap();
            assert_eq!(again, bodies[0]);
        }
    }
    let sms = wait_for_sms(&app, 1).await;
    assert_eq!(sms.len(), 1);
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 1);
    assert_eq!(app.store.outbox().for_patient("P001").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landline_hears_the_number_twice_and_the_database_never_holds_it() {
    let app = spawn_app().await;
    app.add_patient("P002", LANDLINE).await;
    let (sid, heard) =
        app.call(LANDLINE, &["0412", "365", "1", "2", "2", "2", "2", "2", "2", "1", "1", "1", "2"]).await;
    let readings: Vec<&String> = heard.iter().filter(|h| h.contains("処理番号は、")).collect();
    assert_eq!(readings.len(), 2, "read, then read again on 1: {heard:?}");
    let spoken = readings[0].split("処理番号は、").nth(1).unwrap();
    let number: String = spoken
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ' ' || *c == '、')
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(number.len(), 8, "{spoken}");
    assert!(wait_for_sms(&app, 1).await.is_empty(), "a landline gets no SMS");
    // A replay of the turn that read it gives it again, from a sealed copy.
    let call = app.store.calls().get(&sid).await.unwrap().unwrap();
    assert!(call.ended);
    // Nothing in the database file holds the number in the clear.
    let db = app._dir.path().join("ivr.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for ext in ["-wal", "-shm"] {
        bytes.extend(std::fs::read(format!("{}{ext}", db.display())).unwrap_or_default());
    }
    let spaced = number.chars().map(String::from).collect::<Vec<_>>().join(" ");
    for needle in [number.as_str(), &spaced[..7]] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "the database holds {needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_api_refuses_bad_input_precisely_and_changes_nothing() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let t = token(&app, "cocoa", "verify").await;
    let path = "/api/v1/processing-numbers/verify";
    assert_eq!(api(&app, path, None, json!({"number": "12345678"})).await.0, 401);
    assert_eq!(api(&app, path, Some("ivr_wrong"), json!({"number": "12345678"})).await.0, 401);
    for bad in ["1234567", "123456789", "1234567a", "１２３４５６７８", ""] {
        let (s, body) = api(&app, path, Some(&t), json!({"number": bad})).await;
        assert_eq!((s, body["field"].as_str()), (422, Some("number")), "{bad}: {body}");
    }
    let (s, body) = api(&app, path, Some(&t), json!({"numbr": "12345678"})).await;
    assert_eq!(s, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("numbr"), "{body}");
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_issue_by_hand_and_a_number_is_consumed_exactly_once_under_concurrent_calls() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let staff = token(&app, "hokenjo-staff", "staff").await;
    let issue = |id: &'static str, body: Json| {
        let (app, staff) = (&app, staff.clone());
        async move { api(app, &format!("/api/v1/patients/{id}/processing-number"), Some(&staff), body).await }
    };
    let (s, b) = issue("P404", json!({"consent": true})).await;
    assert_eq!((s, b["field"].as_str()), (404, Some("id")), "{b}");
    let (s, b) = issue("P001", json!({})).await;
    assert_eq!((s, b["field"].as_str()), (422, Some("consent")), "{b}");
    let (s, b) = issue("P001", json!({"consent": true, "send": "email"})).await;
    assert_eq!((s, b["field"].as_str()), (422, Some("send")), "no e-mail address: {b}");
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 0, "bad requests change nothing");
    let (s, b) = issue("P001", json!({"consent": true, "send": "none", "staff": "佐藤"})).await;
    assert_eq!(s, 201, "{b}");
    let number = b["number"].as_str().unwrap().to_string();
    // A second number revokes the first.
    let (_, b2) = issue("P001", json!({"consent": true, "send": "sms"})).await;
    let second = b2["number"].as_str().unwrap().to_string();
    let app_token = token(&app, "cocoa", "verify").await;
    let path = "/api/v1/processing-numbers/verify";
    assert_eq!(api(&app, path, Some(&app_token), json!({"number": number})).await.0, 404, "revoked");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (url, t, n) = (format!("{}{path}", app.addr), app_token.clone(), second.clone());
        set.spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(t)
                .json(&json!({"number": n}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses = set.join_all().await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 19, "{statuses:?}");
    assert_eq!(wait_for_sms(&app, 1).await.len(), 1, "the sms one was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_slowed_by_a_per_client_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&format!("sqlite://{}", dir.path().join("ivr.db").display()));
    s.api.verify_per_minute = 5;
    let app = spawn_app_with(s, dir).await;
    let (a, b) = (token(&app, "a", "verify").await, token(&app, "b", "verify").await);
    let path = "/api/v1/processing-numbers/verify";
    let mut codes = Vec::new();
    for i in 0..8 {
        codes.push(api(&app, path, Some(&a), json!({"number": format!("{i:08}")})).await.0);
    }
    assert_eq!(&codes[..5], &[404; 5]);
    assert!(codes[5..].iter().all(|c| *c == 429), "{codes:?}");
    // The refusal says when to try again: one attempt refills every 12 s.
    let refused = reqwest::Client::new()
        .post(format!("{}{path}", app.addr))
        .bearer_auth(&a)
        .json(&json!({"number": "00000009"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&after), "{after}");
    assert_eq!(api(&app, path, Some(&b), json!({"number": "00000001"})).await.0, 404, "another client is not slowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landline_caller_may_type_a_mobile_number_to_get_the_number_by_sms() {
    let app = spawn_app().await;
    app.add_patient("P002", LANDLINE).await;
    let health = ["0412", "365", "1", "2", "2", "2", "2", "2", "2", "1", "1"];
    // 3: by SMS; a landline typed first is refused, then a mobile number, confirmed.
    let keys: Vec<&str> = health.iter().copied().chain(["3", "03123456789", "1", "3", "08011112222", "1"]).collect();
    let (_, heard) = app.call(LANDLINE, &keys).await;
    assert!(heard.iter().any(|h| h.contains("ショートメッセージをお送りできません")), "{heard:?}");
    assert!(heard.iter().any(|h| h.contains("0 8 0、1 1 1 1、2 2 2 2、ですね")), "{heard:?}");
    assert!(heard.iter().any(|h| h.contains("ショートメッセージでお送りしました")), "{heard:?}");
    let sms = wait_for_sms(&app, 1).await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0].to, "+818011112222");
    assert_eq!(digits_in(&sms[0].body).len(), 8, "{}", sms[0].body);
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 1, "still one number");
}

/// The number read aloud in a call, from what the caller heard.
fn number_heard(heard: &[String]) -> Option<String> {
    let reading = heard.iter().find(|h| h.contains("処理番号は、"))?;
    let spoken = reading.split("処理番号は、").nth(1)?;
    Some(
        spoken
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ' ' || *c == '、')
            .filter(char::is_ascii_digit)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_the_carrier_cannot_deliver_to_a_landline_is_read_on_the_next_call_once() {
    let app = spawn_app().await;
    // The roster says mobile, but the line is a landline: the carrier reports 30006.
    app.add_patient("P001", MOBILE).await;
    app.call(MOBILE, &CONSENTING).await;
    let sms = wait_for_sms(&app, 1).await;
    assert_eq!(sms.len(), 1);
    let number = digits_in(&sms[0].body);
    let callback = [("MessageSid", sms[0].sid.as_str()), ("MessageStatus", "undelivered"), ("ErrorCode", "30006")];
    for _ in 0..3 {
        // Replayed by the carrier: the fallback happens once.
        assert_eq!(app.post("/twilio/message-status?msg=1", &callback).await.0, 200);
    }
    let alerts = app.store.calls().patient_alerts("P001").await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].ends_with("number will be read on the next call"), "{alerts:?}");
    assert_eq!(app.store.outbox().for_patient("P001").await.unwrap().len(), 1, "no e-mail without an address");

    // The next call reads the number, digit by digit, twice, once the patient is known, then
    // asks the health questions.
    let keys: Vec<&str> = ["0412", "2"].into_iter().chain(CONSENTING[1..9].iter().copied()).collect();
    let (_, heard) = app.call(MOBILE, &keys).await;
    assert_eq!(number_heard(&heard).as_deref(), Some(number.as_str()), "{heard:?}");
    assert!(heard.iter().any(|h| h.contains("繰り返します")), "{heard:?}");
    assert!(!heard.iter().any(|h| h.contains("接触確認アプリをご利用")), "no new number is offered: {heard:?}");
    // Read once: the call after that neither reads it nor offers another while it is valid.
    let (_, heard) = app.call(MOBILE, &CONSENTING[..9]).await;
    assert_eq!(number_heard(&heard), None, "{heard:?}");
    assert!(!heard.iter().any(|h| h.contains("接触確認アプリをご利用")), "{heard:?}");
    assert_eq!(wait_for_sms(&app, 1).await.len(), 1, "no second SMS");
    let reads = app.store.numbers().audit_log().await.unwrap().into_iter().filter(|(_, a, _)| a == "read").count();
    assert_eq!(reads, 1);
}

#[tokio::test]
async fn an_api_request_with_a_wrong_key_or_value_is_a_4xx_naming_the_field() {
    let app = spawn_app().await;
    let t = token(&app, "app", "verify,issue").await;
    let verify = "/api/v1/processing-numbers/verify";
    let (status, body) = api(&app, verify, Some(&t), json!({"numbr": "12345678"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!((body["error"].as_str(), body["field"].as_str()), (Some("invalid_body"), Some("numbr")), "{body}");
    let (status, body) = api(&app, verify, Some(&t), json!({"number": 12345678})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "number", "{body}");
    let (status, body) =
        api(&app, "/api/v1/patients/P001/processing-number", Some(&t), json!({"consent": true, "send": "fax"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "send", "{body}");
    let (status, body) = api(&app, verify, None, json!({"number": "12345678"})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["field"], "authorization", "{body}");
}

/// The follow-up of numbers no channel delivered, as the server runs it every minute.
fn upkeep(app: &TestApp) -> ivr::scheduler::upkeep::Upkeep {
    let state = &app.server.as_ref().unwrap().state;
    ivr::scheduler::upkeep::Upkeep {
        store: app.store.clone(),
        hours: std::sync::Arc::new(state.campaign.hours.clone()),
        retention: ivr::scheduler::upkeep::Retention {
            calls_after_care_days: 0,
            staff_audit_days: 0,
            urgent_notices_days: 0,
        },
        clock: state.campaign.clock.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landline_number_whose_call_dropped_during_the_read_back_is_read_on_the_next_call() {
    let app = spawn_app().await;
    app.add_patient("P002", LANDLINE).await;
    // The call drops while the number is being read: no key ever comes at the menu after it.
    let (_, heard) = app.call(LANDLINE, &CONSENTING[..11]).await;
    let number = number_heard(&heard).expect("the number was being read");
    let now = chrono::Utc::now();
    assert!(app.store.numbers().valid("P002", now).await.unwrap().unwrap().read_pending, "not delivered yet");

    // The next call reads it right after the identity check, then the health check goes on.
    let keys: Vec<&str> = ["0412", "2"].into_iter().chain(CONSENTING[1..9].iter().copied()).collect();
    let (sid, heard) = app.call(LANDLINE, &keys).await;
    assert!(heard.iter().any(|h| h.contains("以前のお電話で発行した、処理番号をお伝えします。")), "{heard:?}");
    assert_eq!(number_heard(&heard).as_deref(), Some(number.as_str()), "{heard:?}");
    assert!(heard.iter().any(|h| h.contains("36.5度ですね")), "{heard:?}");
    assert!(!heard.iter().any(|h| h.contains("接触確認アプリをご利用")), "no second number: {heard:?}");
    let call = app.store.calls().get(&sid).await.unwrap().unwrap();
    assert!(call.ended);
    // Delivered by voice: never read again, never alerted.
    assert!(!app.store.numbers().valid("P002", now).await.unwrap().unwrap().read_pending);
    assert_eq!(upkeep(&app).follow_up_unread(now + chrono::Duration::days(2)).await.unwrap(), 0);
    let alerts = app.store.calls().patient_alerts("P002").await.unwrap();
    assert!(alerts.iter().all(|a| a.starts_with("hung_up: ")), "only the dropped call's hang-up: {alerts:?}");
    let (_, heard) = app.call(LANDLINE, &CONSENTING[..9]).await;
    assert_eq!(number_heard(&heard), None, "{heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landline_number_no_call_reads_to_the_end_raises_a_follow_up_alert_the_next_day() {
    let app = spawn_app().await;
    app.add_patient("P002", LANDLINE).await;
    let (_, heard) = app.call(LANDLINE, &CONSENTING[..11]).await;
    assert!(number_heard(&heard).is_some());
    let now = chrono::Utc::now();
    let upkeep = upkeep(&app);
    assert_eq!(upkeep.follow_up_unread(now).await.unwrap(), 0, "the patient may still be called today");
    assert_eq!(upkeep.follow_up_unread(now + chrono::Duration::days(1)).await.unwrap(), 1);
    assert_eq!(upkeep.follow_up_unread(now + chrono::Duration::days(1)).await.unwrap(), 0, "once");
    // The call that read the number hung up before its end (a hang-up alert of its own).
    let alerts: Vec<String> = app
        .store
        .calls()
        .patient_alerts("P002")
        .await
        .unwrap()
        .into_iter()
        .filter(|a| !a.starts_with("hung_up: "))
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].starts_with("number_unread: "), "{alerts:?}");
    let item = app.store.followups().open_for("P002").await.unwrap().expect("the unread number opens an item");
    assert!(item.reasons.iter().any(|r| r.kind == ivr::types::AlertKind::NumberUnread), "{item:?}");
}
