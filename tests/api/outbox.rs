//! The outbox dispatcher against a local server that answers like Twilio's Messages API does
//! on a bad day: 429, 500, a slow answer, and permanent errors. Time is injected: a whole
//! series of retries runs in a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use ivr::carrier::twilio::{RetryPolicy, Sender, TwilioClient};
use ivr::issuer::{IssuerKey, ProcessingNumber};
use ivr::notify::outbox::{Dispatcher, Policy, Reissue, SmsGateway};
use ivr::store::{Consent, NewMessage, NewNumber, Store};

use crate::common::patients::{PatientBuilder, patient};

type Hits = Arc<Mutex<HashMap<String, usize>>>;

/// Answers by recipient: …0429 is rate-limited once, …0500 always fails, …1211 is an invalid
/// number, …1614 a landline, …0999 answers too late; anything else is accepted.
async fn messages(State(hits): State<Hits>, Form(form): Form<HashMap<String, String>>) -> Response {
    let to = form.get("To").cloned().unwrap_or_default();
    let n = {
        let mut h = hits.lock().unwrap();
        let n = h.entry(to.clone()).or_default();
        *n += 1;
        *n
    };
    let error = |status: StatusCode, code: u32| {
        (
            status,
            axum::Json(
                serde_json::json!({"code": code, "message": "error", "more_info": "", "status": status.as_u16()}),
            ),
        )
            .into_response()
    };
    match &to[to.len() - 4..] {
        "0429" if n == 1 => error(StatusCode::TOO_MANY_REQUESTS, 20429),
        "0500" => error(StatusCode::INTERNAL_SERVER_ERROR, 20500),
        "1211" => error(StatusCode::BAD_REQUEST, 21211),
        "1614" => error(StatusCode::BAD_REQUEST, 21614),
        "0999" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            error(StatusCode::INTERNAL_SERVER_ERROR, 20500)
        }
        _ => (StatusCode::CREATED, axum::Json(serde_json::json!({"sid": format!("SM{n:032}"), "status": "queued"})))
            .into_response(),
    }
}

async fn mock_twilio() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let app =
        axum::Router::new().route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages)).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

async fn setup(phones: &[&str]) -> (Dispatcher, Hits, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("ivr.db").display()), false).await.unwrap();
    store.migrate().await.unwrap();
    let key = IssuerKey::new("outbox test key");
    let key_for_reissue = key.clone();
    for (i, phone) in phones.iter().enumerate() {
        let id = format!("P{i}");
        let p = patient(&id, phone).no_birthday();
        store.patients().upsert(&p).await.unwrap();
        let n = ProcessingNumber::generate(8);
        let now = Utc::now();
        store
            .numbers()
            .issue(&NewNumber {
                patient_id: p.patient_id.clone(),
                number_hash: key.hash(&n),
                sealed: Some(key.seal(n.expose())),
                issued_at: now,
                expires_at: now + chrono::Duration::hours(24),
                consent: Consent::Staff { name: "test".into() },
                delivery: ivr::types::NumberDelivery::Sms,
                message: Some(NewMessage {
                    channel: ivr::types::Channel::Sms,
                    recipient: phone.to_string(),
                    body_sealed: key.seal(&format!("処理番号は {} です。", n.expose())),
                }),
            })
            .await
            .unwrap();
    }
    let (base, hits) = mock_twilio().await;
    let client = TwilioClient::new(&base, &ivr::carrier::simulator::account_sid(), "token")
        .unwrap()
        .with_retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() })
        .with_timeout(Duration::from_millis(500));
    let policy = Policy {
        max_attempts: 3,
        base: Duration::from_secs(30),
        max: Duration::from_secs(300),
        lease: Duration::from_secs(60),
        uncertain_grace: Duration::from_secs(600),
    };
    let d = Dispatcher {
        store: store.clone(),
        key,
        sms: SmsGateway::Twilio { client, sender: Sender::From("+815000000000".into()) },
        email: None,
        policy,
        public_url: "https://ivr.example.jp".into(),
        wake: Arc::default(),
        reissue: Some(reissue_context(key_for_reissue)),
    };
    (d, hits, store, dir)
}

/// What the dispatcher needs to replace a number: the shipped flows and prompts, and an issuer.
fn reissue_context(key: IssuerKey) -> Reissue {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let flows = ivr::flow::registry::Registry::load(root.join("call-flows"), root.join("prompts")).expect("flows load");
    Reissue {
        flows: Arc::new(flows),
        issuer: Arc::new(ivr::issuer::Issuer {
            key,
            digits: 8,
            valid_for: chrono::Duration::hours(24),
            link: None,
            tz: chrono_tz::Asia::Tokyo,
        }),
    }
}

fn status(store_msgs: &[(String, String, String, i64)]) -> (&str, i64) {
    (store_msgs[0].2.as_str(), store_msgs[0].3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_and_alerts_follow_the_carriers_answers() {
    let phones = ["+819011110429", "+819011110500", "+819011111211", "+819011111614", "+819011110001"];
    let (d, hits, store, _dir) = setup(&phones).await;
    let mut now = Utc::now();
    for _ in 0..6 {
        d.tick(now).await.unwrap();
        now += chrono::Duration::minutes(6); // past any backoff of this policy
    }
    let hit = |p: &str| hits.lock().unwrap().get(p).copied().unwrap_or(0);
    // Rate-limited once, then sent.
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("sent", 2));
    assert_eq!(hit(phones[0]), 2);
    // A server error every time: tried max_attempts times, then dead, and the centre is told.
    assert_eq!(status(&store.outbox().for_patient("P1").await.unwrap()), ("dead", 3));
    assert_eq!(hit(phones[1]), 3);
    assert!(store.calls().patient_alerts("P1").await.unwrap()[0].starts_with("message_dead"));
    // Invalid and landline numbers: one try, final, alerted.
    for (i, p) in [(2, phones[2]), (3, phones[3])] {
        assert_eq!(status(&store.outbox().for_patient(&format!("P{i}")).await.unwrap()), ("failed", 1), "{p}");
        assert_eq!(hit(p), 1);
        assert!(store.calls().patient_alerts(&format!("P{i}")).await.unwrap()[0].starts_with("message_failed"));
    }
    // The landline (21614) without an e-mail address: its number is read on the next call.
    let alerts = store.calls().patient_alerts("P3").await.unwrap();
    assert!(alerts[0].ends_with("number will be read on the next call"), "{alerts:?}");
    assert!(store.numbers().valid("P3", now).await.unwrap().unwrap().read_pending);
    assert!(
        !store.numbers().valid("P2", now).await.unwrap().unwrap().read_pending,
        "an invalid number is not a landline"
    );
    assert_eq!(status(&store.outbox().for_patient("P4").await.unwrap()), ("sent", 1));
    assert!(store.calls().patient_alerts("P0").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_with_an_unknown_outcome_is_not_repeated_before_the_callback_could_arrive() {
    let (d, hits, store, _dir) = setup(&["+819011110999"]).await;
    let now = Utc::now();
    d.tick(now).await.unwrap();
    // Minutes later the message is still waiting: the carrier may have it.
    for m in [1, 5, 9] {
        d.tick(now + chrono::Duration::minutes(m)).await.unwrap();
    }
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 1);
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("pending", 1));
    // A status callback that proves it arrived settles it for good.
    store
        .outbox()
        .finish(1, &ivr::store::SendResult::Sent { provider_id: "SMabc".into(), status: "sent".into() }, now)
        .await
        .unwrap();
    d.tick(now + chrono::Duration::minutes(20)).await.unwrap();
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 1);
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()).0, "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_died_mid_send_is_resent_only_if_no_callback_says_it_went_out() {
    let (d, hits, store, _dir) = setup(&["+819011110001"]).await;
    let now = Utc::now();
    // Claimed (and committed) by a sender that then died before recording anything.
    let claimed = store.outbox().claim(now, now + chrono::Duration::seconds(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    d.tick(now + chrono::Duration::seconds(30)).await.unwrap();
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 0, "the lease still holds");
    d.tick(now + chrono::Duration::minutes(2)).await.unwrap();
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 0, "it may have gone out: wait for the callback");
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()).0, "pending");
    // No callback came within the grace period: it never went out, so it is sent now.
    d.tick(now + chrono::Duration::minutes(13)).await.unwrap();
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 1, "lost none");
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("sent", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_that_expired_before_its_sms_went_out_is_replaced_by_one_fresh_number() {
    let (d, hits, store, _dir) = setup(&["+819011110001"]).await;
    let old = store.numbers().valid("P0", Utc::now()).await.unwrap().unwrap();
    // Long retries kept the message back until after its number expired.
    let late = Utc::now() + chrono::Duration::hours(25);
    d.tick(late).await.unwrap();
    d.tick(late + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 1, "one SMS, with the fresh number");
    let msgs = store.outbox().for_patient("P0").await.unwrap();
    let statuses: Vec<&str> = msgs.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(statuses, ["cancelled", "sent"]);
    let fresh = store.numbers().valid("P0", late).await.unwrap().expect("a fresh number");
    assert_ne!(fresh.number_id, old.number_id);
    assert!(fresh.expires_at > late);
    assert_eq!(store.numbers().valid_count().await.unwrap(), 1);
    assert_eq!(store.calls().patient_alerts("P0").await.unwrap(), vec![ivr::store::REISSUED_ALERT.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_number_that_expires_unsent_too_is_dead_and_not_replaced_again() {
    // Every send fails with an outcome that waits for a callback that never comes.
    let (d, hits, store, _dir) = setup(&["+819011110500"]).await;
    let late = Utc::now() + chrono::Duration::hours(25);
    d.tick(late).await.unwrap();
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 1, "the fresh number's SMS was tried");
    let later = late + chrono::Duration::hours(25);
    d.tick(later).await.unwrap();
    d.tick(later + chrono::Duration::hours(1)).await.unwrap();
    assert_eq!(hits.lock().unwrap().values().sum::<usize>(), 1, "nothing sent with an expired number");
    let statuses: Vec<String> = store.outbox().for_patient("P0").await.unwrap().into_iter().map(|m| m.2).collect();
    assert_eq!(statuses, ["cancelled", "dead"], "no third number");
    assert_eq!(store.numbers().valid_count().await.unwrap(), 0);
    assert_eq!(
        store.calls().patient_alerts("P0").await.unwrap(),
        vec![ivr::store::REISSUED_ALERT.to_string(), ivr::store::LATE_DEAD_ALERT.to_string()]
    );
}
