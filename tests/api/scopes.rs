//! API tokens with scopes: every route refuses a token without the scope it documents (403,
//! nothing changed), a revoked token is refused like an unknown one, and issuing is rate limited
//! per token and per patient.

use std::collections::BTreeSet;

use ivr::types::Scope;
use serde_json::{Value, json};

use crate::common::app::*;

const SPEC: &str = include_str!("../../docs/openapi.json");
const MOBILE: &str = "+819012345678";

/// One documented operation: its path (with `{id}` as P001), the scope it needs, and its
/// documented request (the first example of its body).
struct Route {
    method: String,
    path: String,
    scope: Scope,
    content_type: String,
    body: Vec<u8>,
}

/// Every operation of docs/openapi.json behind a token (which tests/api/openapi.rs holds to the
/// router), with the one scope its `security` names; the operations routes need none.
fn routes() -> Vec<Route> {
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["security"].as_array().is_some_and(Vec::is_empty) {
                continue;
            }
            assert!(
                ["post", "get", "delete"].contains(&method.as_str()),
                "{path}: the requests below are POSTs, GETs and DELETEs"
            );
            let scopes = op["security"][0]["bearer"].as_array().unwrap_or_else(|| panic!("{path}: no scope named"));
            assert_eq!(scopes.len(), 1, "{path}: one scope per route");
            let scope = Scope::parse(scopes[0].as_str().unwrap()).unwrap();
            let (content_type, body) = match op["requestBody"]["content"].as_object() {
                Some(content) => {
                    let (content_type, media) = content.iter().next().unwrap();
                    let example = &media["examples"].as_object().unwrap().values().next().unwrap()["value"];
                    let body = match example {
                        Value::String(text) => text.as_bytes().to_vec(),
                        v => v.to_string().into_bytes(),
                    };
                    (content_type.clone(), body)
                }
                None => (String::new(), vec![]),
            };
            // A patient's id, or the first follow-up item's.
            let id = if path.starts_with("/api/v1/followups/") { "1" } else { "P001" };
            routes.push(Route { method: method.clone(), path: path.replace("{id}", id), scope, content_type, body });
        }
    }
    routes
}

async fn request(app: &TestApp, route: &Route, token: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let req = match route.method.as_str() {
        "get" => client.get(format!("{}{}", app.addr, route.path)),
        "delete" => client.delete(format!("{}{}", app.addr, route.path)),
        _ => client
            .post(format!("{}{}", app.addr, route.path))
            .header("content-type", &route.content_type)
            .body(route.body.clone()),
    };
    let resp = req.bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    patients: Vec<ivr::store::Patient>,
    valid_numbers: i64,
    audit: Vec<(String, String, String)>,
    outbox: Vec<(String, String, String, i64)>,
    tokens: Vec<ivr::store::TokenInfo>,
    followups: Vec<ivr::store::Followup>,
}

async fn snapshot(app: &TestApp) -> Snapshot {
    Snapshot {
        patients: app.store.patients().all().await.unwrap(),
        valid_numbers: app.store.numbers().valid_count().await.unwrap(),
        audit: app.store.numbers().audit_log().await.unwrap(),
        outbox: app.store.outbox().for_patient("P001").await.unwrap(),
        tokens: app.store.numbers().tokens().await.unwrap(),
        followups: app
            .store
            .followups()
            .list(&ivr::store::ListQuery { status: ivr::store::StatusFilter::All, ..Default::default() })
            .await
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_routes_scope_is_refused_on_every_route_and_changes_nothing() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    // Follow-up item 1, for the routes that act on it.
    let alert = ivr::store::NewAlert::flow("health_check", ivr::types::Severity::Urgent);
    app.store.followups().raise("P001", &alert, chrono::Utc::now()).await.unwrap();
    let routes = routes();
    let needed: BTreeSet<&str> = routes.iter().map(|r| r.scope.as_str()).collect();
    assert_eq!(needed, BTreeSet::from(["followup", "import", "issue", "read", "verify"]), "the routes documented");

    // For each route, a token with every scope but the one it needs.
    for route in &routes {
        let others: Vec<&str> = Scope::ALL.iter().filter(|s| **s != route.scope).map(|s| s.as_str()).collect();
        let name = format!("without-{}-{}-{}", route.scope, route.method, route.path);
        let token = app.add_token(&name, &others.join(",")).await;
        let before = snapshot(&app).await;
        let (status, body) = request(&app, route, &token).await;
        assert_eq!(status, 403, "{}: {body}", route.path);
        assert_eq!(body["error"], "forbidden", "{}: {body}", route.path);
        assert_eq!(body["field"], "authorization", "{}: {body}", route.path);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&format!("'{}'", route.scope)), "{}: the scope is named: {message}", route.path);
        assert_eq!(snapshot(&app).await, before, "{}: a refused request changes nothing", route.path);
    }
    // A token with only the `read` scope on every route but the reads, and one made for the
    // contact app on all: it reads no health data.
    let read = app.add_token("read-only", "read").await;
    let verify = app.add_token("contact-app", "verify").await;
    let before = snapshot(&app).await;
    for route in &routes {
        if route.scope != Scope::Read {
            assert_eq!(request(&app, route, &read).await.0, 403, "{}", route.path);
        }
        if route.scope != Scope::Verify {
            assert_eq!(request(&app, route, &verify).await.0, 403, "{}: a verify token", route.path);
        }
    }
    assert_eq!(snapshot(&app).await, before, "nothing changed, the tokens' last use included");
    let sim = app.state.simulator.clone().expect("the simulator carrier");
    assert!(sim.messages().is_empty(), "no SMS");

    // The refusals are counted.
    let metrics = reqwest::get(format!("{}/metrics", app.addr)).await.unwrap().text().await.unwrap();
    for scope in ["verify", "issue", "import", "read", "followup"] {
        assert!(metrics.contains(&format!("ivr_api_forbidden_total{{scope=\"{scope}\"}}")), "{scope}: {metrics}");
    }

    // With the scope, each route does its work.
    let staff = app.add_token("staff", "staff").await;
    for route in routes.iter().filter(|r| r.scope != Scope::Verify) {
        let (status, body) = request(&app, route, &staff).await;
        // Claim, then close, then release: the item closed refuses the release (409).
        let released_closed = route.path.ends_with("/release") && status == 409;
        assert!(status == 200 || status == 201 || released_closed, "{}: {status} {body}", route.path);
    }
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 1, "the issue route issued");
    let verify_route = routes.iter().find(|r| r.scope == Scope::Verify).unwrap();
    let (status, body) = request(&app, verify_route, &verify).await;
    assert_eq!(status, 404, "checked (an unknown number), not refused: {body}");
    let used: Vec<_> =
        app.store.numbers().tokens().await.unwrap().into_iter().filter(|t| t.last_used_at.is_some()).collect();
    let used: BTreeSet<&str> = used.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(used, BTreeSet::from(["contact-app", "staff"]), "only tokens let through are marked used");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_like_an_unknown_one() {
    let app = spawn_app().await;
    let token = app.add_token("contact-app", "verify").await;
    let verify = routes().into_iter().find(|r| r.scope == Scope::Verify).unwrap();
    assert_eq!(request(&app, &verify, &token).await.0, 404, "live: the number is checked");
    let lower = reqwest::Client::new()
        .post(format!("{}{}", app.addr, verify.path))
        .header("content-type", &verify.content_type)
        .header("authorization", format!("bearer {token}"))
        .body(verify.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status().as_u16(), 404, "the scheme's name in any case");
    let at = chrono::Utc::now();
    assert_eq!(app.store.numbers().revoke_token("contact-app", at).await.unwrap(), ivr::store::Revoke::Revoked);
    let revoked = request(&app, &verify, &token).await;
    let unknown = request(&app, &verify, "ivr_never_made").await;
    assert_eq!(revoked.0, 401, "{}", revoked.1);
    assert_eq!(revoked, unknown, "the same answer as for a token never made");
    let audit = app.store.numbers().audit_log().await.unwrap();
    assert_eq!(audit.len(), 2, "only the checks made while the token was live: {audit:?}");
    app.stop().await;
}

async fn issue(app: &TestApp, token: &str, id: &str) -> (u16, Option<u64>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/patients/{id}/processing-number", app.addr))
        .bearer_auth(token)
        .json(&json!({"consent": true, "send": "none"}))
        .send()
        .await
        .unwrap();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (resp.status().as_u16(), retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_issues_from_one_token_is_cut_off_at_the_default_limit() {
    let app = spawn_app().await;
    let limit = app.settings.api.issue_per_minute as usize;
    assert!((1..100).contains(&limit), "a limit well under the burst of 100 once accepted: {limit}");
    for i in 0..=limit {
        app.add_patient(&format!("P{i:03}"), &format!("+8190{:08}", 10_000_000 + i)).await;
    }
    let staff = app.add_token("staff", "issue").await;
    let mut statuses = Vec::new();
    for i in 0..=limit {
        statuses.push(issue(&app, &staff, &format!("P{i:03}")).await);
    }
    assert!(statuses[..limit].iter().all(|(s, _, _)| *s == 201), "{statuses:?}");
    let (status, retry, body) = &statuses[limit];
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(body["message"].as_str().unwrap().contains("client"), "{body}");
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "Retry-After: {retry:?}");
    assert_eq!(app.store.numbers().valid_count().await.unwrap(), limit as i64, "nothing issued past the limit");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuing_is_limited_per_patient_whichever_token_asks_and_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.api.issue_per_minute = 3;
    s.api.issue_per_patient_per_hour = 2;
    let app = spawn_app_with(s, dir).await;
    app.add_patient("P001", MOBILE).await;
    app.add_patient("P002", "+819012345679").await;
    let (a, b) = (app.add_token("nurse-a", "issue").await, app.add_token("nurse-b", "issue").await);

    // A request the patient cannot be served by (no e-mail address) costs the patient nothing.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/patients/P001/processing-number", app.addr))
        .bearer_auth(&b)
        .json(&json!({"consent": true, "send": "email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(issue(&app, &a, "P001").await.0, 201);
    assert_eq!(issue(&app, &a, "P001").await.0, 201);
    let audit = app.store.numbers().audit_log().await.unwrap().len();
    let (status, retry, body) = issue(&app, &a, "P001").await;
    assert_eq!(status, 429, "the patient's third in an hour: {body}");
    assert!(body["message"].as_str().unwrap().contains("patient"), "{body}");
    // Two an hour: one refills every 30 minutes.
    assert!(retry.is_some_and(|s| (1..=1800).contains(&s)), "Retry-After: {retry:?}");
    let (status, _, body) = issue(&app, &b, "P001").await;
    assert_eq!(status, 429, "another token, the same patient: {body}");

    // Token a has made three requests this minute: its fourth is refused, whatever the patient.
    let (status, retry, body) = issue(&app, &a, "P002").await;
    assert_eq!(status, 429, "{body}");
    assert!(body["message"].as_str().unwrap().contains("client"), "{body}");
    assert!(retry.is_some_and(|s| (1..=20).contains(&s)), "Retry-After: {retry:?}");
    assert_eq!(issue(&app, &b, "P002").await.0, 201, "another token is not slowed (its third request)");

    assert_eq!(app.store.numbers().valid_count().await.unwrap(), 2, "P001's second number and P002's");
    assert_eq!(app.store.numbers().audit_log().await.unwrap().len(), audit + 1, "refusals leave no audit row");
    app.stop().await;
}
