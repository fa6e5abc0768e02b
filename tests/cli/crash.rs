//! The real `ivr serve` killed (SIGKILL) while the SMS with a new processing number is in
//! flight to the carrier, then started again: the patient gets exactly one SMS, the number is
//! issued once, and the outbox learns from the carrier's status callback that it went out.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::routing::post;
use ivr::carrier::signature::AuthToken;
use ivr::carrier::webhook::WebhookClient;
use ivr::store::Store;

use crate::common::patients::patient;

const TOKEN: &str = "crash-test-token";
const MOBILE: &str = "+819012345678";

#[derive(Default)]
struct Carrier {
    messages: Vec<HashMap<String, String>>,
}

/// A Messages API that takes a while to answer, then reports delivery to the status callback
/// (again and again until it is taken, as a carrier retries).
async fn messages(
    State(c): State<Arc<Mutex<Carrier>>>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    let n = {
        let mut c = c.lock().unwrap();
        c.messages.push(form.clone());
        c.messages.len()
    };
    let sid = format!("SM{n:032}");
    if let Some(cb) = form.get("StatusCallback").cloned() {
        let sid = sid.clone();
        tokio::spawn(async move {
            let client = WebhookClient::new(AuthToken::new(TOKEN));
            let params = vec![("MessageSid".to_string(), sid), ("MessageStatus".to_string(), "delivered".to_string())];
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if client.post(&cb, &params).await.is_ok() {
                    break;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (axum::http::StatusCode::CREATED, axum::Json(serde_json::json!({"sid": sid, "status": "queued"}))).into_response()
}

use axum::response::IntoResponse;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(port: u16, db: &str, api_base: &str) -> Child {
    let root = env!("CARGO_MANIFEST_DIR");
    Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("serve")
        .env("IVR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("IVR_DATABASE__URL", db)
        .env("IVR_CARRIER__KIND", "twilio")
        .env("IVR_CARRIER__ACCOUNT_SID", "AC00000000000000000000000000000000")
        .env("IVR_CARRIER__AUTH_TOKEN", TOKEN)
        .env("IVR_CARRIER__FROM", "+815000000000")
        .env("IVR_CARRIER__API_BASE", api_base)
        .env("IVR_ISSUER__KEY", "crash-test-issuer-key")
        .env("IVR_CENTRE__PHONE", "03-5555-0100")
        .env("IVR_OUTBOX__LEASE_SECS", "1")
        .env("IVR_FLOWS__DIR", format!("{root}/call-flows"))
        .env("IVR_FLOWS__PROMPTS_DIR", format!("{root}/prompts"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ivr serve starts")
}

async fn ready(port: u16) {
    for _ in 0..100 {
        if reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_the_sms_is_in_flight_sends_it_once_and_records_it() {
    let carrier: Arc<Mutex<Carrier>> = Arc::default();
    let mock = axum::Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages))
        .with_state(carrier.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, mock).await });

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ivr.db").display());
    let port = free_port();
    let mut server = serve(port, &db, &api_base);
    ready(port).await;
    let store = Store::open(&db, false).await.unwrap();
    let patient = patient("P001", MOBILE);
    store.patients().upsert(&patient).await.unwrap();

    let base = format!("http://127.0.0.1:{port}");
    let client = WebhookClient::new(AuthToken::new(TOKEN));
    let sid = "CA99999999999999999999999999999999";
    let p = |d: Option<&str>| {
        let mut v = vec![("CallSid".to_string(), sid.to_string()), ("From".to_string(), MOBILE.to_string())];
        v.extend(d.map(|d| ("Digits".to_string(), d.to_string())));
        v
    };
    client.post(&format!("{base}/twilio/voice"), &p(None)).await.unwrap();
    let keys = ["0412", "365", "1", "2", "2", "2", "2", "2", "2", "1", "1"];
    for (i, k) in keys.iter().enumerate() {
        client.post(&format!("{base}/twilio/voice/step?call={sid}&seq={}", i + 1), &p(Some(k))).await.unwrap();
    }
    // The consent turn is committed; the dispatcher is now waiting on the carrier. Kill it.
    for _ in 0..50 {
        if !carrier.lock().unwrap().messages.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(carrier.lock().unwrap().messages.len(), 1, "the send had started");
    server.kill().unwrap();
    server.wait().unwrap();

    let mut server = serve(port, &db, &api_base);
    ready(port).await;
    let mut status = String::new();
    for _ in 0..100 {
        status = store.outbox().for_patient("P001").await.unwrap().first().map(|m| m.2.clone()).unwrap_or_default();
        if status == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().unwrap();
    let _ = server.wait();
    assert_eq!(status, "delivered", "the status callback settled the message");
    assert_eq!(carrier.lock().unwrap().messages.len(), 1, "exactly one SMS");
    assert_eq!(store.numbers().valid_count().await.unwrap(), 1, "one number");
    let body = &carrier.lock().unwrap().messages[0]["Body"];
    assert!(body.contains("処理番号は "), "{body}");
}
