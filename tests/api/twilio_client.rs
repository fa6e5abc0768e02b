//! The Twilio REST client against a local stand-in for api.twilio.com that answers what the
//! test scripts: the form and headers sent, how answers are read, which failures are retried.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ivr::carrier::twilio::{
    AnsweredBy, CallRequest, CallStatus, MachineDetection, MessageRequest, MessageStatus, RetryPolicy, Sender,
    TwilioClient, TwilioError,
};
use ivr::types::{AccountSid, CallSid};
use serde_json::json;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token-0123456789abcdef";
const CALL_SID: &str = "CAfedcba9876543210fedcba9876543210";

fn call_sid() -> CallSid {
    CallSid::parse(CALL_SID).unwrap()
}
const PATIENT: &str = "+819012345678";
const OURS: &str = "+815012345678";

/// One scripted answer.
struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: serde_json::Value) -> Answer {
    Answer { status, retry_after: None, body: body.to_string(), delay: Duration::ZERO }
}

fn twilio_error(status: u16, code: u32, message: &str) -> Answer {
    let more_info = format!("https://www.twilio.com/docs/errors/{code}");
    answer(status, json!({"code": code, "message": message, "more_info": more_info, "status": status}))
}

fn call_json(status: &str) -> serde_json::Value {
    json!({
        "account_sid": ACCOUNT, "sid": CALL_SID, "status": status, "to": PATIENT, "from": OURS,
        "direction": "outbound-api", "duration": null, "answered_by": null, "start_time": null, "end_time": null,
        "api_version": "2010-04-01", "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json")
    })
}

/// A request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    form: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn handle(State(script): State<Script>, method: Method, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    script.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        form: url::form_urlencoded::parse(body.as_bytes()).into_owned().collect(),
    });
    let Some(next) = script.answers.lock().unwrap().pop_front() else {
        return (StatusCode::IM_A_TEAPOT, "no answer scripted").into_response();
    };
    tokio::time::sleep(next.delay).await;
    let mut response = (StatusCode::from_u16(next.status).unwrap(), next.body).into_response();
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    if let Some(secs) = next.retry_after {
        response.headers_mut().insert("retry-after", secs.parse().unwrap());
    }
    response
}

/// Starts the stand-in on 127.0.0.1 with its answers; returns a client for it (short retry
/// waits, 1 s timeout) and what it saw.
async fn fake_twilio(answers: Vec<Answer>) -> (TwilioClient, Arc<Mutex<Vec<Seen>>>) {
    let script = Script { answers: Arc::new(Mutex::new(answers.into())), ..Script::default() };
    let seen = script.seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(handle).with_state(script);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (client(&base), seen)
}

fn client(base: &str) -> TwilioClient {
    let policy =
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(100) };
    TwilioClient::new(base, &AccountSid::parse(ACCOUNT).unwrap(), TOKEN)
        .unwrap()
        .with_retry(policy)
        .with_timeout(Duration::from_secs(1))
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sms() -> MessageRequest {
    MessageRequest {
        to: PATIENT.into(),
        sender: Sender::From(OURS.into()),
        body: "処理番号: 1234-5678".into(),
        status_callback: Some("https://ivr.example.jp/twilio/sms-status?id=42".into()),
    }
}

#[tokio::test]
async fn a_call_is_posted_as_twilio_expects_with_basic_auth() {
    let (twilio, seen) = fake_twilio(vec![answer(201, call_json("queued"))]).await;
    let mut req = CallRequest::new(PATIENT, OURS, "https://ivr.example.jp/twilio/voice?attempt=7")
        .with_status_callback("https://ivr.example.jp/twilio/status?attempt=7");
    req.timeout_secs = Some(30);
    req.machine_detection = Some(MachineDetection::DetectMessageEnd);
    req.async_amd_status_callback = Some("https://ivr.example.jp/twilio/amd".into());

    let call = twilio.create_call(&req).await.unwrap();
    assert_eq!(
        (call.sid.as_str(), call.status, call.duration, call.answered_by),
        (CALL_SID, Some(CallStatus::Queued), None, None)
    );

    let seen = seen.lock().unwrap();
    let [request] = seen.as_slice() else { panic!("{seen:?}") };
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"));
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    assert_eq!(request.authorization, Some(format!("Basic {credentials}")));
    assert_eq!(request.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        request.form,
        pairs(&[
            ("To", PATIENT),
            ("From", OURS),
            ("Url", "https://ivr.example.jp/twilio/voice?attempt=7"),
            ("Method", "POST"),
            ("StatusCallback", "https://ivr.example.jp/twilio/status?attempt=7"),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", "30"),
            ("MachineDetection", "DetectMessageEnd"),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", "https://ivr.example.jp/twilio/amd"),
            ("AsyncAmdStatusCallbackMethod", "POST"),
        ])
    );
}

#[tokio::test]
async fn a_message_is_posted_from_a_number_or_a_messaging_service() {
    let message = |status| {
        json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": status, "to": PATIENT,
        "body": "処理番号: 1234-5678", "num_segments": "1", "error_code": null, "error_message": null})
    };
    let (twilio, seen) = fake_twilio(vec![answer(201, message("queued")), answer(201, message("accepted"))]).await;

    let sent = twilio.send_message(&sms()).await.unwrap();
    assert_eq!(
        (sent.status, sent.num_segments, sent.error_code, sent.delivery_error()),
        (MessageStatus::Queued, Some(1), None, None)
    );
    let service = MessageRequest {
        sender: Sender::MessagingService("MG0123456789abcdef0123456789abcdef".into()),
        status_callback: None,
        ..sms()
    };
    assert_eq!(twilio.send_message(&service).await.unwrap().status, MessageStatus::Accepted);

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].path, format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json"));
    assert_eq!(
        seen[0].form,
        pairs(&[
            ("To", PATIENT),
            ("From", OURS),
            ("Body", "処理番号: 1234-5678"),
            ("StatusCallback", "https://ivr.example.jp/twilio/sms-status?id=42")
        ])
    );
    let expected = pairs(&[
        ("To", PATIENT),
        ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"),
        ("Body", "処理番号: 1234-5678"),
    ]);
    assert_eq!(seen[1].form, expected);
}

#[tokio::test]
async fn a_rate_limited_message_is_sent_again_after_a_short_wait() {
    let mut limited = twilio_error(429, 20429, "Too Many Requests");
    limited.retry_after = Some("0");
    let sent = json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"});
    let (twilio, seen) = fake_twilio(vec![limited, answer(201, sent)]).await;
    assert_eq!(twilio.send_message(&sms()).await.unwrap().status, MessageStatus::Queued);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_policy_allows_is_left_to_the_caller() {
    let mut limited = twilio_error(429, 20429, "Too Many Requests");
    limited.retry_after = Some("30");
    let (twilio, seen) = fake_twilio(vec![limited]).await;
    let started = Instant::now();
    let e = twilio.send_message(&sms()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((e.status(), e.code(), e.retry_after()), (Some(429), Some(20429), Some(Duration::from_secs(30))));
    assert!(e.is_retryable() && e.is_safe_to_resend());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_server_error_does_not_place_the_call_again_but_a_read_is_retried_a_bounded_number_of_times() {
    let errors = || (0..5).map(|_| twilio_error(500, 20500, "Internal Server Error")).collect::<Vec<_>>();
    let (twilio, seen) = fake_twilio(errors()).await;
    let e = twilio.create_call(&CallRequest::new(PATIENT, OURS, "https://ivr.example.jp/v")).await.unwrap_err();
    assert!(e.is_retryable() && !e.is_safe_to_resend(), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1, "a 500 may have placed the call");

    let (twilio, seen) = fake_twilio(errors()).await;
    let e = twilio.fetch_call(&call_sid()).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "max_attempts");
    assert!(seen.iter().all(|s| s.method == Method::GET && s.path.ends_with(&format!("/Calls/{CALL_SID}.json"))));
}

#[tokio::test]
async fn service_unavailable_is_safe_to_place_the_call_again() {
    let busy = answer(503, json!({"code": 20503, "message": "Service Unavailable", "status": 503}));
    let (twilio, seen) = fake_twilio(vec![busy, answer(201, call_json("queued"))]).await;
    let call = twilio.create_call(&CallRequest::new(PATIENT, OURS, "https://ivr.example.jp/v")).await.unwrap();
    assert_eq!(call.sid, CALL_SID);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_invalid_number_is_a_final_refusal_with_the_number_masked() {
    let refusal = twilio_error(400, 21211, &format!("The 'To' number {PATIENT} is not a valid phone number."));
    let (twilio, seen) = fake_twilio(vec![refusal]).await;
    let e = twilio.send_message(&sms()).await.unwrap_err();
    assert!(e.is_invalid_number() && !e.is_unsubscribed() && !e.is_retryable(), "{e}");
    let TwilioError::Api { status: 400, code: Some(21211), message, more_info: Some(more_info), .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(message, "The 'To' number +8190****5678 is not a valid phone number.");
    assert_eq!(more_info, "https://www.twilio.com/docs/errors/21211");
    assert!(!format!("{e} {e:?}").contains("9012345678"));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_call_that_timed_out_is_not_placed_again_but_a_read_is() {
    let slow = || Answer { delay: Duration::from_secs(3), ..answer(201, call_json("queued")) };
    let (twilio, seen) = fake_twilio(vec![slow(), slow()]).await;
    let twilio = twilio.with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let e = twilio.create_call(&CallRequest::new(PATIENT, OURS, "https://ivr.example.jp/v")).await.unwrap_err();
    assert!(matches!(e, TwilioError::Timeout(_)), "{e:?}");
    assert!(e.is_retryable() && !e.is_safe_to_resend());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(seen.lock().unwrap().len(), 1, "the call may have been placed");

    let (twilio, seen) = fake_twilio(vec![slow(), answer(200, call_json("completed"))]).await;
    let twilio = twilio.with_timeout(Duration::from_millis(200));
    assert_eq!(twilio.fetch_call(&call_sid()).await.unwrap().status, Some(CallStatus::Completed));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_safe_to_resend() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let twilio = client(&format!("http://127.0.0.1:{port}"));
    let e = twilio.create_call(&CallRequest::new(PATIENT, OURS, "https://x.example/v")).await.unwrap_err();
    assert!(matches!(e, TwilioError::Connect(_)) && e.is_safe_to_resend(), "{e:?}");
}

#[tokio::test]
async fn a_fetched_call_reports_how_it_ended() {
    let ended = json!({"sid": CALL_SID, "status": "completed", "duration": "47", "answered_by": "human",
        "start_time": "Tue, 25 Nov 2025 01:00:03 +0000", "end_time": "Tue, 25 Nov 2025 01:00:50 +0000"});
    let (twilio, _) = fake_twilio(vec![answer(200, ended)]).await;
    let call = twilio.fetch_call(&call_sid()).await.unwrap();
    assert_eq!(
        (call.status, call.duration, call.answered_by),
        (Some(CallStatus::Completed), Some(47), Some(AnsweredBy::Human))
    );
    assert_eq!(call.end_time.as_deref(), Some("Tue, 25 Nov 2025 01:00:50 +0000"));
    assert!(CallSid::parse("../Messages").is_err(), "a call id cannot leave the Calls path");
}
