//! The patient's web self-report over HTTP (`/r/{token}`): a report filled page by page and
//! sent, with errors beside their fields; a double submit (two tabs, a replayed request) stores
//! one report and issues one number; a forged, revoked or expired link gets a page saying so in
//! the patient's language and changes nothing.

use chrono::{Duration, Utc};
use ivr::store::{LinkToken, TOKEN_CHARS};
use ivr::types::{Direction, PatientId};

use crate::common::app::{TestApp, spawn_app};
use crate::common::patients::{PatientBuilder, patient};
use crate::common::staff::{PASSWORD, Page, add_user};

const MOBILE: &str = "+819012345678";

async fn link(app: &TestApp, id: &str) -> String {
    let now = Utc::now();
    let new = app.store.links().create(&PatientId::parse(id).unwrap(), now + Duration::days(10), now).await.unwrap();
    format!("/r/{}", new.token.expose())
}

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    app.get(path).await
}

async fn post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let resp = reqwest::Client::new().post(format!("{}{path}", app.addr)).form(form).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value of the form's hidden field `name`.
fn hidden(body: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = body.find(&key).unwrap_or_else(|| panic!("no {name} in {body}")) + key.len();
    body[at..].split('"').next().unwrap().to_string()
}

/// The whole report of a patient who feels worse and wants a number, page by page.
const ANSWERS: [(&str, &str); 10] = [
    ("q.identity", "0412"),
    ("q.temperature", "37.8"),
    ("q.oximeter", "1"),
    ("q.spo2", "96"),
    ("q.breathless", "2"),
    ("q.cough", "1"),
    ("q.fatigue", "2"),
    ("q.taste_smell", "2"),
    ("q.trend", "3"),
    ("q.app_use", "1"),
];

/// Fills every page of the form with [`ANSWERS`] and consent, up to the review step; returns
/// the review page's form (every answer, its round).
async fn fill(app: &TestApp, path: &str) -> Vec<(String, String)> {
    let (status, page) = get(app, path).await;
    assert_eq!(status, 200, "{page}");
    let round = hidden(&page, "round");
    let mut form: Vec<(String, String)> = vec![("round".into(), round)];
    let mut all: Vec<(&str, &str)> = ANSWERS.to_vec();
    all.push(("q.consent", "1"));
    let mut body = page;
    for _ in 0..10 {
        if body.contains("name=\"step\" value=\"send\"") {
            return form;
        }
        let page = hidden(&body, "page");
        for (k, v) in &all {
            if body.contains(&format!("name=\"{k}\"")) && !form.iter().any(|(f, _)| f == k) {
                form.push((k.to_string(), v.to_string()));
            }
        }
        let mut sent: Vec<(String, String)> = form.clone();
        sent.push(("page".into(), page));
        sent.push(("step".into(), "next".into()));
        let pairs: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, next) = post(app, path, &pairs).await;
        assert_eq!(status, 200, "{next}");
        body = next;
    }
    panic!("the review step never came: {body}");
}

async fn send(app: &TestApp, path: &str, form: &[(String, String)]) -> (u16, String) {
    let mut pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("step", "send"));
    post(app, path, &pairs).await
}

fn number_on(page: &str) -> String {
    let at = page.find("class=\"digits\"").unwrap_or_else(|| panic!("no number on {page}"));
    let rest = &page[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find("</p>").unwrap();
    rest[start..end].replace(' ', "")
}

#[tokio::test]
async fn a_report_filled_page_by_page_is_stored_once_as_a_web_call_with_its_alert_and_number() {
    let app = spawn_app().await;
    app.add(patient("p1", MOBILE)).await;
    let path = link(&app, "p1").await;
    let form = fill(&app, &path).await;
    assert!(app.store.calls().of_patient("p1", 10).await.unwrap().is_empty(), "nothing stored before sending");

    let (status, done) = send(&app, &path, &form).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("送信しました"), "{done}");
    let number = number_on(&done);
    assert_eq!(number.len(), 8, "{number}");
    assert!(done.contains("ショートメッセージでもお送りしました"), "{done}");

    let calls = app.store.calls().of_patient("p1", 10).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].direction, calls[0].ended), (Direction::Web, true));
    let answers = app.store.calls().answers(calls[0].call_id).await.unwrap();
    let get = |n: &str| answers.iter().find(|a| a.name == n).map(|a| a.value.to_string());
    assert_eq!(get("temperature").as_deref(), Some("37.8"));
    assert_eq!(get("trend").as_deref(), Some("worse"));
    assert_eq!(get("app_use").as_deref(), Some("yes"));
    assert_eq!(get("identity").as_deref(), Some("confirmed"));
    assert_eq!(app.store.calls().alerts(calls[0].call_id).await.unwrap().len(), 1, "feeling worse");
    let valid = app.store.numbers().valid("p1", Utc::now()).await.unwrap();
    assert!(valid.is_some(), "the number is issued");
    let now = Utc::now();
    let reported = app.store.campaign().reported_patients(now - Duration::hours(1), now + Duration::hours(1)).await;
    assert_eq!(reported.unwrap(), ["p1"]);

    // The same form sent again (a replayed request): the same page, nothing new.
    let (status, again) = send(&app, &path, &form).await;
    assert_eq!(status, 200);
    assert_eq!(number_on(&again), number, "the stored page, with the same number");
    assert_eq!(app.store.calls().of_patient("p1", 10).await.unwrap().len(), 1, "one report");
    assert!(app.store.numbers().valid("p1", Utc::now()).await.unwrap().is_some());
}

#[tokio::test]
async fn two_tabs_sending_the_same_days_form_store_one_report_and_issue_one_number() {
    let app = spawn_app().await;
    app.add(patient("p1", MOBILE).email("p1@example.jp")).await;
    let path = link(&app, "p1").await;
    let first = fill(&app, &path).await;
    let second = fill(&app, &path).await;
    assert_eq!(first[0], second[0], "both tabs carry the same report key");
    let (a, b) = tokio::join!(send(&app, &path, &first), send(&app, &path, &second));
    assert_eq!((a.0, b.0), (200, 200), "{}\n{}", a.1, b.1);
    assert_eq!(number_on(&a.1), number_on(&b.1));
    assert_eq!(app.store.calls().of_patient("p1", 10).await.unwrap().len(), 1);
    // The next form shown is a new report (a second check-in that day).
    let (_, page) = get(&app, &path).await;
    assert_ne!(hidden(&page, "round"), hidden_round(&first));
}

fn hidden_round(form: &[(String, String)]) -> String {
    form.iter().find(|(k, _)| k == "round").unwrap().1.clone()
}

#[tokio::test]
async fn out_of_range_answers_are_shown_beside_their_field_in_the_patients_language_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.add(patient("p1", MOBILE)).await;
    app.add(patient("p2", "+819087654321").language("en-US")).await;
    for (p, expect) in
        [("p1", "34.0℃から42.0℃までの数字で入力してください。"), ("p2", "Please enter a number from 34.0 to 42.0 °C.")]
    {
        let path = link(&app, p).await;
        let (_, page) = get(&app, &path).await;
        let round = hidden(&page, "round");
        let (status, body) = post(
            &app,
            &path,
            &[
                ("round", &round),
                ("page", "0"),
                ("step", "next"),
                ("q.identity", "0412"),
                ("q.temperature", "45"),
                ("q.oximeter", "2"),
            ],
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains(expect), "{p}: {body}");
        assert!(body.contains("aria-invalid=\"true\""));
        assert!(body.contains("value=\"45\""), "the value typed is kept");
        // Sending a form with the error is refused just the same.
        let (status, _) = post(
            &app,
            &path,
            &[
                ("round", &round),
                ("step", "send"),
                ("q.identity", "0412"),
                ("q.temperature", "45"),
                ("q.oximeter", "2"),
            ],
        )
        .await;
        assert_eq!(status, 200, "the form again, not a report");
        assert!(app.store.calls().of_patient(p, 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_forged_revoked_or_ended_link_gets_a_page_saying_so_and_changes_nothing() {
    let app = spawn_app().await;
    app.add(patient("p1", MOBILE)).await;
    app.add(patient("p2", "+819087654321").language("en-US")).await;
    let forged = format!("/r/{}", "A".repeat(TOKEN_CHARS));
    for path in [forged.as_str(), "/r/short", "/r/..%2F..%2Fetc"] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("このリンクは使えません") && body.contains("This link cannot be used"), "{body}");
        let (status, _) = post(&app, path, &[("step", "send"), ("round", "20260101-0")]).await;
        assert_eq!(status, 404);
    }
    // Revoked: p1's page in Japanese.
    let path = link(&app, "p1").await;
    let form = fill(&app, &path).await;
    let id = PatientId::parse("p1").unwrap();
    app.store.links().revoke(&id, "nurse1", Utc::now()).await.unwrap();
    let (status, body) = get(&app, &path).await;
    assert_eq!(status, 410);
    assert!(body.contains("このリンクは無効になりました"), "{body}");
    let (status, _) = send(&app, &path, &form).await;
    assert_eq!(status, 410);
    // Ended with the care period: p2's page in English.
    let now = Utc::now();
    let p2 = PatientId::parse("p2").unwrap();
    let ended = app.store.links().create(&p2, now - Duration::minutes(1), now - Duration::days(3)).await.unwrap();
    let (status, body) = get(&app, &format!("/r/{}", ended.token.expose())).await;
    assert_eq!(status, 410);
    assert!(body.contains("Your home-care period has ended"), "{body}");
    assert!(body.contains("lang=\"en\""));
    for p in ["p1", "p2"] {
        assert!(app.store.calls().of_patient(p, 10).await.unwrap().is_empty(), "{p}");
        assert!(app.store.numbers().valid(p, Utc::now()).await.unwrap().is_none());
    }
    let _ = LinkToken::generate();
}

#[tokio::test]
async fn three_wrong_birth_dates_in_a_day_close_the_link_and_alert_the_health_centre_as_a_call_does() {
    let app = spawn_app().await;
    app.add(patient("p1", MOBILE)).await;
    let path = link(&app, "p1").await;
    let (_, page) = get(&app, &path).await;
    let round = hidden(&page, "round");
    let wrong = |date: &'static str| {
        [("round", round.clone()), ("page", "0".into()), ("step", "next".into()), ("q.identity", date.into())]
    };
    for date in ["0101", "1231"] {
        let (status, body) = post(&app, &path, &wrong(date).each_ref().map(|(k, v)| (*k, v.as_str()))).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("生年月日"), "the error beside the field: {body}");
    }
    assert!(app.store.followups().open_for("p1").await.unwrap().is_none(), "two tries: nobody is told yet");
    // A right date between does not reset the day's count; the third wrong one closes the link.
    let right = [("round", round.as_str()), ("page", "0"), ("step", "next"), ("q.identity", "0412")];
    let (status, body) =
        post(&app, &path, &[&right[..], &[("q.temperature", "36.5"), ("q.oximeter", "1")]].concat()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&app, &path, &wrong("0229").each_ref().map(|(k, v)| (*k, v.as_str()))).await;
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("生年月日を確認できなかったため"), "{body}");
    let item = app.store.followups().open_for("p1").await.unwrap().expect("a follow-up item opens");
    assert_eq!(item.reasons.len(), 1);
    assert_eq!(item.reasons[0].reason, "identity_not_confirmed");
    let latest = app.store.links().latest(&PatientId::parse("p1").unwrap()).await.unwrap().unwrap();
    assert_eq!(latest.revoked_by.as_deref(), Some(ivr::store::IDENTITY_CHECK));
    // The link stays closed, saying why; no report was stored, so the check-in's call still comes.
    let (status, body) = get(&app, &path).await;
    assert_eq!(status, 410);
    assert!(body.contains("保健所からご連絡します"), "{body}");
    let (status, _) = post(&app, &path, &right).await;
    assert_eq!(status, 410);
    assert!(app.store.calls().of_patient("p1", 10).await.unwrap().is_empty());
    assert_eq!(app.store.followups().open_for("p1").await.unwrap().unwrap().reasons.len(), 1, "one alert");
    // The patient's page tells the nurse why the link no longer works.
    add_user(&app.store, "sato", ivr::types::Role::Nurse).await;
    let mut nurse = Page::new(&app.addr);
    nurse.sign_in("sato", PASSWORD).await;
    let page = nurse.get("/ui/patients/p1").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("生年月日が一致せず"), "{}", page.body);
}

async fn wait_for_sms(app: &TestApp, n: usize) -> Vec<ivr::carrier::simulator::SimulatedSms> {
    let sim = app.state.simulator.clone().expect("the simulator carrier");
    for _ in 0..200 {
        if sim.messages().len() >= n {
            return sim.messages();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    sim.messages()
}

async fn api(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> (u16, serde_json::Value) {
    let resp =
        reqwest::Client::new().request(method, format!("{}{path}", app.addr)).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn staff_send_a_link_by_sms_whose_text_the_outbox_empties_once_the_carrier_took_it() {
    let app = spawn_app().await;
    app.add(patient("p1", MOBILE)).await;
    app.add(patient("p2", "+81312345678")).await;
    let token = app.add_token("desk", "followup").await;
    let reader = app.add_token("reader", "read").await;

    let (status, _) = api(&app, reqwest::Method::POST, "/api/v1/patients/p1/report-link", &reader).await;
    assert_eq!(status, 403, "a read token sends nothing");
    let (status, body) = api(&app, reqwest::Method::POST, "/api/v1/patients/p1/report-link", &token).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["channel"], "sms");
    assert!(body.to_string().len() < 400 && !body.to_string().contains("/r/"), "no token in the answer: {body}");
    let sms = wait_for_sms(&app, 1).await;
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].to, MOBILE);
    let url = sms[0]
        .body
        .split_whitespace()
        .find(|w| w.contains("/r/"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_'));
    let url = url.unwrap_or_else(|| sms[0].body.as_str());
    let at = url.find("/r/").unwrap_or_else(|| panic!("no link in {}", sms[0].body));
    let path: String = url[at..].chars().take(3 + TOKEN_CHARS).collect();
    let (status, page) = get(&app, &path).await;
    assert_eq!(status, 200, "the link opens the patient's page: {page}");

    // Once the carrier took it, the outbox keeps no working link.
    let db = app.sqlite_path();
    let mut emptied = false;
    for _ in 0..100 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let body: String = conn
            .query_row("select body_sealed from outbox where link_id is not null and status <> 'pending' and status <> 'sending'", [], |r| r.get(0))
            .unwrap_or_else(|_| "x".into());
        if body.is_empty() {
            emptied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(emptied, "the sent link's text is emptied");

    // A new link revokes the first; DELETE revokes the new one.
    let (status, _) = api(&app, reqwest::Method::POST, "/api/v1/patients/p1/report-link", &token).await;
    assert_eq!(status, 201);
    let (status, page) = get(&app, &path).await;
    assert_eq!(status, 410, "{page}");
    let (status, body) = api(&app, reqwest::Method::DELETE, "/api/v1/patients/p1/report-link", &token).await;
    assert_eq!((status, body["revoked"].as_i64()), (200, Some(1)));
    // A landline without e-mail cannot get one; an unknown patient is a 404.
    let (status, body) = api(&app, reqwest::Method::POST, "/api/v1/patients/p2/report-link", &token).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("no_channel")));
    let (status, _) = api(&app, reqwest::Method::POST, "/api/v1/patients/nobody/report-link", &token).await;
    assert_eq!(status, 404);
    let audit = app.store.users().audit_rows(20).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "send_report_link" && a.target == "p1"));
    assert!(audit.iter().any(|a| a.action == "revoke_report_link" && a.target == "p1"));
}
