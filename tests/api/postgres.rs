//! The server on PostgreSQL: the same walk as on SQLite, and two instances sharing one
//! database, serving the turns of the same call alternately.

use ivr::carrier::signature::AuthToken;
use ivr::carrier::webhook::WebhookClient;
use ivr::flow::Value;

use crate::common::app::*;
use crate::common::db::{Backend, TestDb};

const MOBILE: &str = "+819012345678";
const KEYS: [&str; 12] = ["0412", "365", "1", "1", "91", "1", "2", "2", "2", "2", "2", "2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daily_call_is_stored_on_postgresql() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let app = spawn_app_with(settings(db.url()), tempfile::tempdir().unwrap()).await;
    app.add_patient("P001", MOBILE).await;
    let (sid, _) = app.call(MOBILE, &KEYS).await;
    let call = app.store.calls().get(&sid).await.unwrap().unwrap();
    assert!(call.ended && !call.incomplete && call.status.as_str() == "completed");
    let answers = app.store.calls().answers(call.call_id).await.unwrap();
    assert!(answers.iter().any(|a| a.name == "spo2" && a.value == Value::int(91)));
    assert_eq!(app.store.calls().alerts(call.call_id).await.unwrap(), ["spo2_low"]);
    app.server.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_serve_the_same_call_alternately_without_loss_or_doubles() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let a = spawn_app_with(settings(db.url()), tempfile::tempdir().unwrap()).await;
    let b = spawn_app_with(settings(db.url()), tempfile::tempdir().unwrap()).await;
    a.add_patient("P001", MOBILE).await;
    let clients = [a.client.clone(), WebhookClient::new(AuthToken::new(TOKEN)).behind_proxy(PUBLIC, &b.addr)];
    let sid = "CA77777777777777777777777777777777";
    let params = |digits: Option<&str>| {
        let mut p = vec![("CallSid".to_string(), sid.to_string()), ("From".to_string(), MOBILE.to_string())];
        if let Some(d) = digits {
            p.push(("Digits".into(), d.into()));
        }
        p
    };
    let first = clients[0].post(&format!("{PUBLIC}/twilio/voice"), &params(None)).await.unwrap();
    assert!(first.contains("生年月日"));
    for (i, keys) in KEYS.iter().enumerate() {
        let seq = i + 1;
        let url = format!("{PUBLIC}/twilio/voice/step?call={sid}&seq={seq}");
        // Every turn is sent to both instances at once, twice: one takes it, the others replay.
        let mut set = tokio::task::JoinSet::new();
        for c in clients.iter().chain(clients.iter()) {
            let (c, url, p) = (c.clone(), url.clone(), params(Some(keys)));
            set.spawn(async move { c.post(&url, &p).await.unwrap() });
        }
        let answers = set.join_all().await;
        assert!(answers.iter().all(|x| x == &answers[0]), "turn {seq}: instances disagree");
    }
    let call = a.store.calls().get(sid).await.unwrap().unwrap();
    assert!(call.ended, "the flow reached its end");
    assert_eq!(a.store.calls().event_count(call.call_id).await.unwrap(), KEYS.len() as i64 + 1);
    assert_eq!(a.store.calls().alerts(call.call_id).await.unwrap(), ["spo2_low"], "one alert, not four");
    let answers = b.store.calls().answers(call.call_id).await.unwrap();
    assert_eq!(answers.iter().filter(|a| a.name == "temperature").count(), 1);
    a.server.unwrap().stop().await;
    b.server.unwrap().stop().await;
}
