//! `POST /api/v1/patients/import`: the roster through the staff API of a running server.

use ivr::http::api::token_hash;
use ivr::types::Scopes;
use serde_json::{Value as Json, json};

use crate::common::app::*;

const ROSTER: &str = "patient_id,name,phone,birth_date,call_slot\n\
                      P001,山田 花子,090-1234-5670,1950-04-12,morning\n\
                      P002,佐藤 太郎,03-1234-5678,1941-01-31,\n";

async fn import(app: &TestApp, token: Option<&str>, content_type: &str, body: &str) -> (u16, Json) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/patients/import", app.addr))
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Json::Null))
}

async fn staff_token(app: &TestApp) -> String {
    let t = "ivr_test_token_roster".to_string();
    app.store.numbers().add_token("roster", &token_hash(&t), Scopes::parse("import").unwrap()).await.unwrap();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_posted_as_csv_is_imported_then_updated_in_place() {
    let app = spawn_app().await;
    let t = staff_token(&app).await;
    let (status, body) = import(&app, Some(&t), "text/csv", ROSTER).await;
    assert_eq!((status, body), (200, json!({"inserted": 2, "updated": 0, "unchanged": 0})));
    let p = app.store.patients().get("P001").await.unwrap().expect("P001 imported");
    assert_eq!((p.phone.as_str(), p.call_slot.as_deref()), ("+819012345670", Some("morning")));

    let changed = ROSTER.replace("1941-01-31,", "1941-01-31,afternoon");
    let (status, body) = import(&app, Some(&t), "text/csv; charset=utf-8", &changed).await;
    assert_eq!((status, body), (200, json!({"inserted": 0, "updated": 1, "unchanged": 1})));
    assert_eq!(app.store.patients().get("P002").await.unwrap().unwrap().call_slot.as_deref(), Some("afternoon"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_roster_gets_every_error_with_its_field_and_changes_nothing() {
    let app = spawn_app().await;
    let t = staff_token(&app).await;
    let bad = format!("{ROSTER}P003,鈴木 一郎,12345,1950-01-01,\nP004,高橋 幸子,090-1234-5674,1960-13-01,night\n");
    let (status, body) = import(&app, Some(&t), "text/csv", &bad).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid_roster");
    assert_eq!(
        body["errors"],
        json!([
            {"row": 4, "col": 3, "column": "phone",
             "message": "'12345' is not a phone number like 090-1234-5678, 03-1234-5678 or +819012345678"},
            {"row": 5, "col": 4, "column": "birth_date", "message": "'1960-13-01' is not a date written YYYY-MM-DD"},
            {"row": 5, "col": 5, "column": "call_slot",
             "message": "unknown call slot 'night' (the slots are morning, afternoon)"},
        ])
    );
    assert_eq!(app.store.patients().all().await.unwrap(), vec![], "not even the good rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_needs_a_token_and_the_csv_content_type() {
    let app = spawn_app().await;
    let t = staff_token(&app).await;
    let (status, body) = import(&app, None, "text/csv", ROSTER).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    let (status, _) = import(&app, Some("ivr_not_a_token"), "text/csv", ROSTER).await;
    assert_eq!(status, 401);
    for wrong in ["application/json", "text/plain", "text/csv; charset=shift_jis"] {
        let (status, body) = import(&app, Some(&t), wrong, ROSTER).await;
        assert_eq!((status, body["error"].as_str()), (415, Some("invalid_body")), "{wrong}");
    }
    assert_eq!(app.store.patients().all().await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_send_links_an_imported_patient_in_care_gets_a_personal_link_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.web.send_links = true;
    let app = spawn_app_with(s, dir).await;
    let t = staff_token(&app).await;
    let today = chrono::Utc::now().date_naive();
    let (begun, later) = (today - chrono::Duration::days(1), today + chrono::Duration::days(3));
    let roster = format!(
        "patient_id,name,phone,birth_date,care_start,care_end\n\
         P001,山田 花子,090-1234-5670,1950-04-12,{begun},{later}\n\
         P002,佐藤 太郎,03-1234-5678,1941-01-31,{begun},{later}\n\
         P003,鈴木 一郎,090-1234-5673,1962-08-30,{later},\n"
    );
    let (status, body) = import(&app, Some(&t), "text/csv", &roster).await;
    assert_eq!(status, 200, "{body}");
    // P001 is in care and has a mobile; P002 has only a landline and no e-mail; P003's care
    // has not begun.
    assert_eq!(body, json!({"inserted": 3, "updated": 0, "unchanged": 0, "report_links_sent": 1}));
    let has_link = async |id: &str| app.store.links().latest(&id.parse().unwrap()).await.unwrap().is_some();
    assert!(has_link("P001").await);
    assert!(!has_link("P002").await && !has_link("P003").await);

    let (status, body) = import(&app, Some(&t), "text/csv", &roster).await;
    assert_eq!((status, body), (200, json!({"inserted": 0, "updated": 0, "unchanged": 3, "report_links_sent": 0})));
}
