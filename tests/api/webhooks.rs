use ivr::carrier::signature::{AuthToken, sign};
use ivr::flow::Value;

use crate::common::app::*;
use crate::common::db::{Backend, TestDb};

const MOBILE: &str = "+819012345678";
/// Every question answered, no alert, no to the app question.
const HEALTHY: [&str; 12] = ["0412", "365#", "1", "1", "97#", "1", "2", "2", "2", "2", "2", "2"];

fn value(answers: &[ivr::store::Answer], name: &str) -> Option<Value> {
    answers.iter().find(|a| a.name == name).map(|a| a.value.clone())
}

#[tokio::test]
async fn the_daily_call_is_walked_through_signed_webhooks_and_every_answer_is_stored() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let (sid, heard) = app.call(MOBILE, &HEALTHY).await;
    assert!(heard.iter().any(|h| h.contains("36.5度ですね")), "{heard:?}");
    assert!(heard.last().unwrap().contains("失礼いたします"));
    let call = app.store.calls().get(&sid).await.unwrap().unwrap();
    assert!(call.ended && !call.incomplete);
    assert_eq!(call.status.as_str(), "completed");
    assert_eq!(call.patient_id.as_ref().map(|p| p.as_str()), Some("P001"));
    let answers = app.store.calls().answers(call.call_id).await.unwrap();
    assert_eq!(value(&answers, "temperature"), Some(Value::Number { raw: 365, scale: 1 }));
    assert_eq!(value(&answers, "spo2"), Some(Value::Number { raw: 97, scale: 0 }));
    assert_eq!(value(&answers, "app_use"), Some(Value::text("no")));
    assert_eq!(value(&answers, "identity"), Some(Value::text("confirmed")), "the typed birth date is not kept");
    assert!(answers.iter().all(|a| a.value != Value::text("0412")), "{answers:?}");
    assert!(app.store.calls().alerts(call.call_id).await.unwrap().is_empty());
    assert_eq!(app.store.calls().event_count(call.call_id).await.unwrap(), 13);
}

#[tokio::test]
async fn low_spo2_raises_an_alert_stored_with_the_call() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let (sid, heard) = app.call(MOBILE, &["0412", "365", "1", "1", "91", "1", "2", "2", "2", "2", "2", "2"]).await;
    assert!(heard.iter().any(|h| h.contains("119番")));
    let call = app.store.calls().get(&sid).await.unwrap().unwrap();
    assert_eq!(app.store.calls().alerts(call.call_id).await.unwrap(), ["spo2_low"]);
}

#[tokio::test]
async fn a_replayed_turn_returns_the_same_twiml_and_repeats_nothing() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let sid = "CA0123456789abcdef0123456789abcdef";
    let base = [("CallSid", sid), ("From", MOBILE), ("To", "+81300000000")];
    let (s0, first) = app.post("/twilio/voice", &base).await;
    assert_eq!(s0, 200);
    let (_, again) = app.post("/twilio/voice", &base).await;
    assert_eq!(first, again, "a replayed first request is answered from the store");
    let step = format!("/twilio/voice/step?call={sid}&seq=1");
    let with = |d: &'static str| [("CallSid", sid), ("From", MOBILE), ("To", "+81300000000"), ("Digits", d)];
    let (_, t1) = app.post(&step, &with("0412")).await;
    // The same turn, twice more and with other keys: the stored answer, no new effect.
    let (_, t1b) = app.post(&step, &with("0412")).await;
    let (_, t1c) = app.post(&step, &with("9999")).await;
    assert_eq!((&t1, &t1), (&t1b, &t1c));
    let call = app.store.calls().get(sid).await.unwrap().unwrap();
    assert_eq!((call.seq, app.store.calls().event_count(call.call_id).await.unwrap()), (1, 2));
    // Ten copies of the next turn at once: one is taken, all get the same answer.
    let step2 = format!("/twilio/voice/step?call={sid}&seq=2");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (client, url) = (app.client.clone(), format!("{PUBLIC}{step2}"));
        let params: Vec<(String, String)> = with("365").iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        set.spawn(async move { client.post(&url, &params).await.unwrap() });
    }
    let bodies = set.join_all().await;
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    assert!(bodies[0].contains("36.5度ですね"));
    let call = app.store.calls().get(sid).await.unwrap().unwrap();
    assert_eq!((call.seq, app.store.calls().event_count(call.call_id).await.unwrap()), (2, 3));
    // A request from the future hears the current question.
    let (_, future) = app.post(&format!("/twilio/voice/step?call={sid}&seq=9"), &with("1")).await;
    assert_eq!(future, bodies[0]);
}

#[tokio::test]
async fn a_caller_who_hangs_up_mid_call_keeps_the_answers_given_marked_incomplete() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let (sid, _) = app.call(MOBILE, &["0412", "372#", "1"]).await;
    let call = app.store.calls().get(&sid).await.unwrap().unwrap();
    assert!(!call.ended && call.incomplete);
    assert_eq!(call.status.as_str(), "completed");
    let answers = app.store.calls().answers(call.call_id).await.unwrap();
    assert_eq!(value(&answers, "temperature"), Some(Value::Number { raw: 372, scale: 1 }));
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_call_goes_on_where_it_was() {
    let mut app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let sid = "CAfeedfacefeedfacefeedfacefeedface";
    let p = |d: &'static str| [("CallSid", sid), ("From", MOBILE), ("Digits", d)];
    app.post("/twilio/voice", &[("CallSid", sid), ("From", MOBILE)]).await;
    app.post(&format!("/twilio/voice/step?call={sid}&seq=1"), &p("0412")).await;
    app.restart().await;
    let (status, body) = app.post(&format!("/twilio/voice/step?call={sid}&seq=2"), &p("368")).await;
    assert_eq!(status, 200);
    assert!(body.contains("36.8度ですね"), "{body}");
}

#[tokio::test]
async fn status_callbacks_late_twice_or_out_of_order_never_undo_a_final_status() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let sid = "CA11111111111111111111111111111111";
    app.post("/twilio/voice", &[("CallSid", sid), ("From", MOBILE)]).await;
    let status = |s: &'static str| [("CallSid", sid), ("CallStatus", s), ("CallDuration", "42")];
    assert_eq!(app.post("/twilio/status", &status("completed")).await.0, 200, "2xx");
    assert_eq!(app.post("/twilio/status", &status("in-progress")).await.0, 200, "2xx");
    assert_eq!(app.post("/twilio/status", &status("completed")).await.0, 200, "2xx");
    assert_eq!(app.post("/twilio/status", &status("ringing")).await.0, 200, "2xx");
    let call = app.store.calls().get(sid).await.unwrap().unwrap();
    assert_eq!((call.status.as_str(), call.duration), ("completed", Some(42)));
    assert!(call.incomplete, "it ended before the flow did");
}

#[tokio::test]
async fn an_unknown_caller_hears_a_polite_message_and_nothing_is_stored() {
    let app = spawn_app().await;
    let sid = "CA22222222222222222222222222222222";
    let (status, body) = app.post("/twilio/voice", &[("CallSid", sid), ("From", "+819099999999")]).await;
    assert_eq!(status, 200);
    assert!(body.contains("登録されていません") && body.contains("<Hangup/>"), "{body}");
    assert!(app.store.calls().get(sid).await.unwrap().is_none());
}

#[tokio::test]
async fn forged_tampered_or_unsigned_requests_get_403_and_change_nothing() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let sid = "CA33333333333333333333333333333333";
    let form = format!("CallSid={sid}&From=%2B819012345678");
    let url = format!("{PUBLIC}/twilio/voice");
    let good = sign(&AuthToken::new(TOKEN), &url, &[("CallSid", sid), ("From", MOBILE)]);
    let forged = sign(&AuthToken::new("not-the-token"), &url, &[("CallSid", sid), ("From", MOBILE)]);
    let ct = "application/x-www-form-urlencoded";
    assert_eq!(app.raw("/twilio/voice", ct, form.clone(), None).await.0, 403);
    assert_eq!(app.raw("/twilio/voice", ct, form.clone(), Some(&forged)).await.0, 403);
    let tampered = format!("CallSid={sid}&From=%2B819012345679");
    assert_eq!(app.raw("/twilio/voice", ct, tampered, Some(&good)).await.0, 403);
    assert_eq!(app.raw("/twilio/voice?job=1", ct, form.clone(), Some(&good)).await.0, 403, "the query is signed too");
    assert!(app.store.calls().get(sid).await.unwrap().is_none());
    // The same request, correctly signed, is accepted.
    assert_eq!(app.raw("/twilio/voice", ct, form, Some(&good)).await.0, 200);
    assert!(app.store.calls().get(sid).await.unwrap().is_some());
    let (_, metrics) = app.get("/metrics").await;
    assert!(metrics.contains("ivr_signature_failures_total"), "{metrics}");
}

#[tokio::test]
async fn bad_requests_are_refused_cleanly() {
    let app = spawn_app().await;
    let (s, _) = app.raw("/twilio/voice", "application/json", "{}".into(), None).await;
    assert_eq!(s, 415);
    let big = format!("CallSid=CA1&Body={}", "x".repeat(100_000));
    let (s, _) = app.raw("/twilio/voice", "application/x-www-form-urlencoded", big, None).await;
    assert_eq!(s, 413);
    // A status callback without its call: a JSON 400 naming the field.
    let (s, body) = app.post("/twilio/status", &[("CallStatus", "completed")]).await;
    assert_eq!(s, 400);
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["field"], "CallSid", "{body}");
    let (s, body) = app.post("/twilio/status?job=x", &[("CallSid", "CA1"), ("CallStatus", "completed")]).await;
    assert_eq!(s, 400);
    assert!(body.contains(r#""field":"job""#), "{body}");
    // A status no carrier sends, or a call id that is none, is refused at the edge.
    let (s, body) = app.post("/twilio/status", &[("CallSid", "CA1"), ("CallStatus", "on-hold")]).await;
    assert_eq!((s, body.contains(r#""field":"CallStatus""#)), (400, true), "{body}");
    let (s, body) = app.post("/twilio/status", &[("CallSid", "CA/../1"), ("CallStatus", "completed")]).await;
    assert_eq!((s, body.contains(r#""field":"CallSid""#)), (400, true), "{body}");
    // A call id that is not one (it could not be a carrier's): refused, naming the field.
    let (s, body) = app.post("/twilio/status", &[("CallSid", "CA/../1"), ("CallStatus", "completed")]).await;
    assert_eq!(s, 400);
    assert!(body.contains(r#""error":"invalid_field","field":"CallSid""#), "{body}");
    let (s, body) = app.post("/twilio/message-status", &[("MessageSid", "SM 1"), ("MessageStatus", "sent")]).await;
    assert_eq!(s, 400);
    assert!(body.contains(r#""error":"invalid_field","field":"MessageSid""#), "{body}");
    // On a voice route the phone still gets TwiML: an apology, and the call ends.
    for (path, form) in [
        ("/twilio/voice", vec![("From", MOBILE)]),
        ("/twilio/voice/step?call=CA1&seq=1", vec![("CallSid", "CA2")]),
        ("/twilio/voice/step?call=CA1&seq=0", vec![("CallSid", "CA1")]),
        // Keys no keypad has.
        ("/twilio/voice/step?call=CA1&seq=1", vec![("CallSid", "CA1"), ("Digits", "1A")]),
        ("/twilio/voice", vec![("CallSid", "CA 1"), ("From", MOBILE)]),
    ] {
        let (s, body) = app.post(path, &form).await;
        assert_eq!(s, 200, "{path}: {body}");
        assert_apology(&body, "申し訳ありません");
    }
}

/// A valid TwiML document that apologises (in words containing `words`) and hangs up.
fn assert_apology(body: &str, words: &str) {
    let verbs = ivr::twiml::parse(body).unwrap_or_else(|e| panic!("not TwiML ({e}): {body}"));
    assert!(matches!(verbs.last(), Some(ivr::twiml::Verb::Hangup)), "{body}");
    assert!(body.contains(words), "{body}");
}

#[tokio::test]
async fn a_get_on_the_voice_webhook_is_405_allowing_post() {
    let app = spawn_app().await;
    for path in ["/twilio/voice", "/twilio/voice/step"] {
        let resp = reqwest::get(format!("{}{path}", app.addr)).await.unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{path}");
        let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(allow.split(',').any(|m| m.trim() == "POST"), "{path}: Allow: {allow}");
    }
}

#[tokio::test]
async fn a_bad_query_string_on_a_voice_route_answers_the_apology_as_twiml() {
    let app = spawn_app().await;
    app.add_patient("P001", MOBILE).await;
    let sid = "CA55555555555555555555555555555555";
    let (s, body) = app.post("/twilio/voice?job=not-a-number&attempt=1", &[("CallSid", sid), ("From", MOBILE)]).await;
    assert_eq!(s, 200, "{body}");
    assert_apology(&body, "申し訳ありません");
    let (s, body) = app.post(&format!("/twilio/voice/step?call={sid}"), &[("CallSid", sid), ("Digits", "1")]).await;
    assert_eq!(s, 200, "{body}");
    assert_apology(&body, "申し訳ありません");
    assert!(app.store.calls().get(sid).await.unwrap().is_none(), "nothing was stored");
}

#[tokio::test]
async fn an_english_speaking_caller_hears_the_apology_in_english() {
    english_apology(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_english_speaking_caller_hears_the_apology_in_english_on_postgresql() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    english_apology(spawn_app_with(settings(db.url()), tempfile::tempdir().unwrap()).await).await;
}

async fn english_apology(app: TestApp) {
    let mut patient = app.add_patient("P001", MOBILE).await;
    patient.language = "en-US".into();
    app.store.patients().upsert(&patient).await.unwrap();
    // Before the call exists: the caller's language comes from the roster.
    let sid = "CA66666666666666666666666666666666";
    let (s, body) = app.post("/twilio/voice?flow=no-such-flow", &[("CallSid", sid), ("From", MOBILE)]).await;
    assert_eq!(s, 200, "{body}");
    assert_apology(&body, "We are sorry");
    // During the call: from the call's own state.
    let (s, body) = app.post("/twilio/voice", &[("CallSid", sid), ("From", MOBILE)]).await;
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains("We are sorry"), "the call starts: {body}");
    let (s, body) = app.post(&format!("/twilio/voice/step?call={sid}&seq=0"), &[("CallSid", sid)]).await;
    assert_eq!(s, 200, "{body}");
    assert_apology(&body, "We are sorry");
    assert!(!body.contains("申し訳"), "{body}");
    app.server.unwrap().stop().await;
}

#[tokio::test]
async fn a_turn_that_fails_inside_still_answers_valid_twiml() {
    let app = spawn_app().await;
    // A step for a call the server never saw: an apology, as TwiML, not a bare 500.
    let (status, body) = app.post("/twilio/voice/step?call=CA44&seq=1", &[("CallSid", "CA44"), ("Digits", "1")]).await;
    assert_eq!(status, 200);
    let verbs = ivr::twiml::parse(&body).expect("valid TwiML");
    assert!(matches!(verbs.last(), Some(ivr::twiml::Verb::Hangup)));
    assert!(body.contains("申し訳ありません"));
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let (s, body) = app.get("/readyz").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("sqlite") && body.contains("flow"));
    app.add_patient("P001", MOBILE).await;
    app.call(MOBILE, &HEALTHY).await;
    let (_, m) = app.get("/metrics").await;
    for name in ["ivr_webhook_duration_seconds_bucket", "ivr_steps_total", "ivr_calls_total", "ivr_http_requests_total"]
    {
        assert!(m.contains(name), "{name} missing from\n{m}");
    }
}
