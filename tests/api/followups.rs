//! The follow-up queue over HTTP: calls through the signed webhooks fill it, staff tokens claim
//! and close its items, stale actions are refused with who did what, and every read and action
//! is in the audit log.

use serde_json::{Value, json};

use crate::common::app::*;

const MOBILE: &str = "+819012345678";
/// The daily call with SpO2 91 %: the shipped flow's urgent alert.
const LOW_SPO2: [&str; 12] = ["0412", "365", "1", "1", "91", "1", "2", "2", "2", "2", "2", "2"];

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new().get(format!("{}{path}", app.addr)).bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    let resp =
        reqwest::Client::new().post(format!("{}{path}", app.addr)).bearer_auth(token).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_spo2_in_a_call_fills_the_queue_and_a_nurse_claims_and_closes_it() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    app.add_patient("P002", "+819012345679").await;
    let (a, b) = (app.add_token("nurse-a", "staff").await, app.add_token("nurse-b", "staff").await);
    let (status, empty) = get(&app, "/api/v1/followups", &a).await;
    assert_eq!((status, empty["items"].as_array().unwrap().len()), (200, 0), "{empty}");

    // The shipped flow, walked through the webhooks: SpO2 91 % raises its urgent alert.
    let (sid, _) = app.call(MOBILE, &LOW_SPO2).await;
    let call_id = app.store.calls().get(&sid).await.unwrap().unwrap().call_id;
    let (_, queue) = get(&app, "/api/v1/followups", &a).await;
    let items = queue["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queue}");
    let item = &items[0];
    assert_eq!((item["patient_id"].as_str(), item["status"].as_str()), (Some("P001"), Some("open")));
    assert_eq!(item["severity"], "urgent");
    assert_eq!(item["reasons"][0]["kind"], "flow");
    assert_eq!(item["reasons"][0]["reason"], "spo2_low");
    assert_eq!(item["reasons"][0]["call_id"], call_id);
    let id = item["id"].as_i64().unwrap();

    // Another call the next day, SpO2 still low: its alert joins the same item.
    app.call(MOBILE, &LOW_SPO2).await;
    let (_, queue) = get(&app, "/api/v1/followups", &a).await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 1, "one open item per patient: {queue}");
    assert_eq!(queue["items"][0]["id"], id);
    assert_eq!(queue["items"][0]["reasons"].as_array().unwrap().len(), 2);
    let seen = queue["items"][0]["version"].as_i64().unwrap();
    assert_eq!(seen, 2, "opened, then joined");

    // nurse-a claims; nurse-b is refused and told who holds it since when.
    let claim = format!("/api/v1/followups/{id}/claim");
    let (status, claimed) = post(&app, &claim, &a, json!({"version": seen})).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!((claimed["status"].as_str(), claimed["claimed_by"].as_str()), (Some("claimed"), Some("nurse-a")));
    let since = claimed["claimed_at"].as_str().unwrap().to_string();
    let (status, refused) = post(&app, &claim, &b, json!({})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"], "stale");
    assert_eq!(refused["message"], format!("this item is claimed by nurse-a since {since}"));
    assert_eq!(refused["last_change"]["by"], "nurse-a");
    let close = format!("/api/v1/followups/{id}/close");
    let (status, refused) = post(&app, &close, &b, json!({"outcome": "visited", "note": ""})).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("stale")), "{refused}");

    // A close on the version nurse-a saw before her claim is stale too.
    let (status, stale) =
        post(&app, &close, &a, json!({"outcome": "reached_by_phone", "note": "x", "version": seen})).await;
    assert_eq!(status, 409, "{stale}");
    assert!(stale["message"].as_str().unwrap().starts_with("this item changed since version 2: claimed by nurse-a"));

    // Closing needs an outcome; then it closes with the note.
    let (status, missing) = post(&app, &close, &a, json!({"note": "called"})).await;
    assert_eq!((status, missing["field"].as_str()), (422, Some("outcome")), "{missing}");
    let (status, bad) = post(&app, &close, &a, json!({"outcome": "cured", "note": ""})).await;
    assert_eq!((status, bad["field"].as_str()), (422, Some("outcome")), "{bad}");
    let body = json!({"outcome": "referred_to_hospital", "note": "SpO2 90 %、救急搬送を依頼", "version": 3});
    let (status, closed) = post(&app, &close, &a, body).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!((closed["status"].as_str(), closed["outcome"].as_str()), (Some("closed"), Some("referred_to_hospital")));
    assert_eq!(closed["closed_by"], "nurse-a");
    let (status, again) = post(&app, &close, &b, json!({"outcome": "visited", "note": ""})).await;
    assert_eq!(status, 409);
    assert!(again["message"].as_str().unwrap().starts_with("this item was closed by nurse-a at "), "{again}");

    let (_, active) = get(&app, "/api/v1/followups", &a).await;
    assert!(active["items"].as_array().unwrap().is_empty(), "nothing left in the queue: {active}");
    let (_, done) = get(&app, "/api/v1/followups?status=closed", &a).await;
    assert_eq!(done["items"][0]["note"], "SpO2 90 %、救急搬送を依頼");

    // The patient's record and calls, with their answers and alerts.
    let (status, patient) = get(&app, "/api/v1/patients/P001", &b).await;
    assert_eq!((status, patient["phone"].as_str()), (200, Some(MOBILE)), "{patient}");
    let (status, calls) = get(&app, "/api/v1/patients/P001/calls", &b).await;
    assert_eq!(status, 200, "{calls}");
    let calls = calls["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["id"], call_id, "newest first");
    assert_eq!(calls[0]["answers"]["spo2"], "91");
    assert_eq!(calls[0]["alerts"], json!(["spo2_low"]));
    let (_, roster) = get(&app, "/api/v1/patients?limit=1", &b).await;
    assert_eq!((roster["patients"][0]["patient_id"].as_str(), roster["next_offset"].as_i64()), (Some("P001"), Some(1)));
    let (_, rest) = get(&app, "/api/v1/patients?limit=1&offset=1", &b).await;
    assert_eq!(rest["patients"][0]["patient_id"], "P002");

    // Every read and action is in the audit log, refusals included.
    let audit = app.store.users().audit_rows(1000).await.unwrap();
    let rows: Vec<(&str, &str, &str)> =
        audit.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    let target = |s: &str| s.to_string();
    for (who, what, on) in [
        ("api:nurse-a", "claim_followup", target(&format!("followup {id}"))),
        ("api:nurse-b", "refused_followup", format!("followup {id}: this item is claimed by nurse-a since {since}")),
        ("api:nurse-a", "close_followup", format!("followup {id}: referred_to_hospital")),
        ("api:nurse-b", "view_patient", target("P001")),
        ("api:nurse-b", "view_patient_calls", target("P001")),
        ("api:nurse-b", "view_roster", target("limit 1 offset 0")),
        ("api:nurse-a", "view_followups", target("status active area * limit 50 offset 0")),
    ] {
        let row = (who, what, on.as_str());
        assert!(rows.contains(&row), "{row:?} in {rows:?}");
        assert!(audit.iter().all(|e| e.address == "127.0.0.1"), "the client's address is kept");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_the_scopes_read_and_change_nothing_of_the_queue() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    app.call(MOBILE, &LOW_SPO2).await;
    let verify = app.add_token("contact-app", "verify").await;
    let read = app.add_token("viewer", "read").await;
    let audit = app.store.users().audit_rows(1000).await.unwrap().len();
    for path in ["/api/v1/followups", "/api/v1/patients", "/api/v1/patients/P001", "/api/v1/patients/P001/calls"] {
        let (status, body) = get(&app, path, &verify).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("forbidden")),
            "{path}: a verify token reads no health data"
        );
        assert_eq!(get(&app, path, &read).await.0, 200, "{path}");
    }
    let (_, queue) = get(&app, "/api/v1/followups", &read).await;
    let id = queue["items"][0]["id"].as_i64().unwrap();
    for action in ["claim", "release"] {
        let (status, body) = post(&app, &format!("/api/v1/followups/{id}/{action}"), &read, json!({})).await;
        assert_eq!(status, 403, "{action}: {body}");
        assert!(body["message"].as_str().unwrap().contains("'followup'"), "{body}");
    }
    let (status, _) =
        post(&app, &format!("/api/v1/followups/{id}/close"), &read, json!({"outcome": "visited", "note": ""})).await;
    assert_eq!(status, 403);
    let item = app.store.followups().get(id).await.unwrap().unwrap();
    assert_eq!((item.status.as_str(), item.version), ("open", 1), "refused actions changed nothing");
    assert_eq!(
        app.store.users().audit_rows(1000).await.unwrap().len(),
        audit + 5,
        "only the five reads let through are audited"
    );
    app.stop().await;
}
