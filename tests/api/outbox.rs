//! The outbox dispatcher against a local server that answers like Twilio's Messages API does
//! on a bad day: 429, 500, a slow answer, and permanent errors. Time is injected: a whole
//! series of retries runs in a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use ivr::carrier::twilio::{RetryPolicy, Sender, TwilioClient};
use ivr::issuer::{IssuerKey, ProcessingNumber};
use ivr::notify::outbox::{Dispatcher, Policy, Reissue, SmsGateway};
use ivr::store::{Consent, NewMessage, NewNumber, Store};

use crate::common::patients::{PatientBuilder, patient};

/// Sends asked for, by recipient; and the messages the mock carrier has (to, body, sid).
#[derive(Clone, Default)]
struct Carrier {
    hits: Arc<Mutex<HashMap<String, usize>>>,
    kept: Arc<Mutex<Vec<(String, String, String)>>>,
}
type Hits = Arc<Mutex<HashMap<String, usize>>>;

/// Answers by recipient: …0429 is rate-limited once, …0500 always fails, …1211 is an invalid
/// number, …1614 a landline, …0999 answers too late (and never had the message), …0777 takes
/// the message but answers too late; anything else is accepted.
async fn messages(State(carrier): State<Carrier>, Form(form): Form<HashMap<String, String>>) -> Response {
    let to = form.get("To").cloned().unwrap_or_default();
    let n = {
        let mut h = carrier.hits.lock().unwrap();
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
    let sid = format!("SM{:030}{n:02}", to[1..].parse::<u64>().unwrap_or(0) % 1_000_000);
    let keep =
        || carrier.kept.lock().unwrap().push((to.clone(), form.get("Body").cloned().unwrap_or_default(), sid.clone()));
    match &to[to.len() - 4..] {
        "0429" if n == 1 => error(StatusCode::TOO_MANY_REQUESTS, 20429),
        "0500" => error(StatusCode::INTERNAL_SERVER_ERROR, 20500),
        "1211" => error(StatusCode::BAD_REQUEST, 21211),
        "1614" => error(StatusCode::BAD_REQUEST, 21614),
        "0999" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            error(StatusCode::INTERNAL_SERVER_ERROR, 20500)
        }
        "0777" => {
            keep();
            tokio::time::sleep(Duration::from_secs(3)).await;
            error(StatusCode::INTERNAL_SERVER_ERROR, 20500)
        }
        _ => {
            keep();
            (StatusCode::CREATED, axum::Json(serde_json::json!({"sid": sid, "status": "queued"}))).into_response()
        }
    }
}

/// The Messages list: what the mock carrier has for `To`, newest first.
async fn list(State(carrier): State<Carrier>, Query(q): Query<HashMap<String, String>>) -> Response {
    let to = q.get("To").cloned().unwrap_or_default();
    let kept = carrier.kept.lock().unwrap().clone();
    let messages: Vec<_> = kept
        .iter()
        .rev()
        .filter(|(t, _, _)| *t == to)
        .map(|(t, body, sid)| {
            serde_json::json!({"sid": sid, "status": "sent", "to": t, "body": body, "date_created": Utc::now().to_rfc2822()})
        })
        .collect();
    axum::Json(serde_json::json!({"messages": messages, "page": 0})).into_response()
}

async fn mock_twilio() -> (String, Carrier) {
    let carrier = Carrier::default();
    let app = axum::Router::new()
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(messages).get(list))
        .with_state(carrier.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), carrier)
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
    let (base, carrier) = mock_twilio().await;
    let hits = carrier.hits.clone();
    let client = TwilioClient::new(&base, &ivr::carrier::simulator::account_sid(), "token")
        .unwrap()
        .with_retry(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() })
        .with_timeout(Duration::from_millis(500));
    let policy = Policy {
        max_attempts: 3,
        base: Duration::from_secs(30),
        max: Duration::from_secs(300),
        lease: Duration::from_secs(60),
        uncertain_grace: Duration::from_secs(60),
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
        owner: "test-host/127.0.0.1:8080".into(),
        started: Utc::now(),
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
    // A server error every time (the carrier may have it: looked up before each resend): sent
    // max_attempts times, then dead, and the centre is told.
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
async fn a_send_with_an_unknown_outcome_is_looked_up_at_the_carrier_before_any_resend() {
    // Both answers come too late: the carrier took one of the two messages.
    let phones = ["+819011110777", "+819011110999"];
    let (d, hits, store, _dir) = setup(&phones).await;
    let hit = |p: &str| hits.lock().unwrap().get(p).copied().unwrap_or(0);
    let now = Utc::now();
    d.tick(now).await.unwrap();
    d.tick(now + chrono::Duration::seconds(30)).await.unwrap();
    assert_eq!((hit(phones[0]), hit(phones[1])), (1, 1), "nothing sent again before it is looked up");
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("pending", 1));
    d.tick(now + chrono::Duration::minutes(2)).await.unwrap();
    // Found at the carrier, by its text: recorded as sent, not sent again.
    assert_eq!(hit(phones[0]), 1, "found at the carrier: not sent twice");
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("sent", 1));
    // Not there: sent again.
    assert_eq!(hit(phones[1]), 2, "not at the carrier: sent again");
}

/// A process claimed two messages, handed one to the carrier (which took it) and died before it
/// recorded the answer. Started again (the same instance), it settles both at once, long
/// before their lease runs out: the one the carrier has is recorded, the other is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_left_by_a_dead_process_are_settled_at_once_when_it_starts_again() {
    let phones = ["+819011110001", "+819011110002"];
    let (mut d, hits, store, _dir) = setup(&phones).await;
    let hit = |p: &str| hits.lock().unwrap().get(p).copied().unwrap_or(0);
    let now = Utc::now();
    let claimed = store.outbox().claim(&d.owner, now, now + chrono::Duration::seconds(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store.outbox().hand(claimed[0].message_id, now).await.unwrap();
    let SmsGateway::Twilio { client, sender } = d.sms.clone();
    let body = d.key.open(&claimed[0].body_sealed).unwrap();
    let request = ivr::carrier::twilio::MessageRequest { to: phones[0].into(), sender, body, status_callback: None };
    client.send_message(&request).await.unwrap();
    // The process died here. Another instance would wait for the lease…
    let other = Dispatcher { owner: "other-host/127.0.0.1:8080".into(), ..clone_of(&d) };
    other.tick(now + chrono::Duration::seconds(2)).await.unwrap();
    assert_eq!((hit(phones[0]), hit(phones[1])), (1, 0), "another instance waits for the lease");
    // …the same instance, started again, does not.
    d.started = now + chrono::Duration::seconds(1);
    d.tick(now + chrono::Duration::seconds(2)).await.unwrap();
    assert_eq!(hit(phones[0]), 1, "the carrier had it: not sent twice");
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("sent", 1));
    assert_eq!(hit(phones[1]), 1, "never handed over: sent now");
    assert_eq!(status(&store.outbox().for_patient("P1").await.unwrap()), ("sent", 1), "one attempt, not two");
}

/// A copy of a dispatcher's parts.
fn clone_of(d: &Dispatcher) -> Dispatcher {
    Dispatcher {
        store: d.store.clone(),
        key: d.key.clone(),
        sms: d.sms.clone(),
        email: None,
        policy: d.policy.clone(),
        public_url: d.public_url.clone(),
        wake: Arc::default(),
        reissue: None,
        owner: d.owner.clone(),
        started: d.started,
    }
}

/// The carrier reports a handset off (30003) after each send: the message is sent again after
/// a backoff, `max_attempts` times in all, then dead with an alert; never sent for ever. One that
/// is delivered keeps no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_the_carrier_cannot_deliver_for_now_is_retried_a_bounded_number_of_times() {
    let phones = ["+819011110001", "+819011110002"];
    let (d, hits, store, dir) = setup(&phones).await;
    let hit = |p: &str| hits.lock().unwrap().get(p).copied().unwrap_or(0);
    let mut now = Utc::now();
    let provider_id = |message_id: i64| {
        let conn = rusqlite::Connection::open(dir.path().join("ivr.db")).unwrap();
        conn.query_row("select provider_id, last_error from outbox where message_id = ?1", [message_id], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .unwrap()
    };
    let mut sids = Vec::new();
    for round in 1..=5 {
        d.tick(now).await.unwrap();
        if let (Some(sid), _) = provider_id(1) {
            if status(&store.outbox().for_patient("P0").await.unwrap()).0 == "sent" {
                sids.push(sid.clone());
                ivr::notify::outbox::record_delivery(
                    &store,
                    &d.policy,
                    false,
                    Some(1),
                    &sid,
                    "undelivered",
                    Some("30003"),
                    now,
                )
                .await
                .unwrap();
            }
        }
        if round == 1 {
            let (sid, error) = provider_id(2);
            ivr::notify::outbox::record_delivery(
                &store,
                &d.policy,
                false,
                Some(2),
                &sid.unwrap(),
                "delivered",
                None,
                now,
            )
            .await
            .unwrap();
            assert_eq!(error, None, "accepted: no error");
        }
        now += chrono::Duration::hours(1); // past any backoff of this policy
    }
    assert_eq!(hit(phones[0]), 3, "max_attempts sends, no more");
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("dead", 3));
    assert_eq!(provider_id(1).1.as_deref(), Some("undelivered 30003; gave up after 3 attempts"));
    assert_eq!(
        store.calls().patient_alerts("P0").await.unwrap(),
        vec!["message_dead: undelivered 30003; gave up after 3 attempts".to_string()]
    );
    // Late or repeated reports, on any of its sends, neither revive it nor alert again.
    assert_eq!(sids.len(), 3);
    for sid in &sids {
        for report in ["undelivered", "sent", "delivered"] {
            let code = (report == "undelivered").then_some("30003");
            ivr::notify::outbox::record_delivery(&store, &d.policy, false, Some(1), sid, report, code, now)
                .await
                .unwrap();
        }
    }
    d.tick(now + chrono::Duration::hours(5)).await.unwrap();
    assert_eq!(hit(phones[0]), 3);
    assert_eq!(status(&store.outbox().for_patient("P0").await.unwrap()), ("dead", 3));
    assert_eq!(store.calls().patient_alerts("P0").await.unwrap().len(), 1);
    assert_eq!(hit(phones[1]), 1);
    assert_eq!(status(&store.outbox().for_patient("P1").await.unwrap()), ("delivered", 1));
    assert_eq!(provider_id(2).1, None, "a delivered message has no last_error");
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
