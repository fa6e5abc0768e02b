//! The carrier simulator end to end: a real server on 127.0.0.1 port 0 with the simulator as
//! its carrier, calls placed through our own Twilio client against the server's `/simulator`,
//! each persona answering the daily health check through signed webhooks and TwiML.

use std::sync::Arc;
use std::time::Duration;

use ivr::carrier::simulator::{Persona, SimulatedCall, Simulator};
use ivr::carrier::twilio::{
    AnsweredBy, CallRequest, CallStatus, MachineDetection, MessageRequest, Sender, TwilioClient, TwilioError,
};
use ivr::config::Settings;
use ivr::flow::Value;
use ivr::store::{CallRecord, Store};
use ivr::types::CallSid;
use secrecy::SecretString;

use crate::common::app::{TestApp, settings, spawn_app_with, sqlite_url};
use crate::common::patients::{PatientBuilder, patient};

const TOKEN: &str = "simulator-test-token-0123456789ab";
const OURS: &str = "+815000000000";

struct App {
    _app: TestApp,
    base: String,
    store: Store,
    sim: Arc<Simulator>,
    twilio: TwilioClient,
}

async fn spawn() -> App {
    spawn_with(|_| {}).await
}

async fn spawn_with(change: impl FnOnce(&mut Settings)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.server.public_url = None;
    s.carrier.auth_token = Some(SecretString::from(TOKEN));
    s.carrier.simulator_speed = 0.0;
    change(&mut s);
    let app = spawn_app_with(s, dir).await;
    let base = app.addr.clone();
    let sim = app.state.simulator.clone().expect("the simulator is the carrier");
    let twilio =
        TwilioClient::new(&format!("{base}/simulator"), &ivr::carrier::simulator::account_sid(), TOKEN.to_string())
            .unwrap();
    App { store: app.store.clone(), _app: app, base, sim, twilio }
}

impl App {
    async fn add_patient(&self, id: &str, phone: &str, language: &str) {
        self.store.patients().upsert(&patient(id, phone).language(language)).await.unwrap();
    }

    /// Places the daily health check to a new patient at `phone`, as the dialer will.
    async fn place(&self, phone: &str, amd: Option<MachineDetection>) -> CallSid {
        self.place_in(phone, amd, "ja-JP").await
    }

    async fn place_in(&self, phone: &str, amd: Option<MachineDetection>, language: &str) -> CallSid {
        let id = format!("P{}", &phone[phone.len() - 4..]);
        self.add_patient(&id, phone, language).await;
        let job = self.store.campaign().create_job(&id, "daily-health-check").await.unwrap();
        let mut req = CallRequest::new(phone, OURS, format!("{}/twilio/voice?job={job}", self.base))
            .with_status_callback(format!("{}/twilio/status", self.base));
        req.machine_detection = amd;
        let created = self.twilio.create_call(&req).await.expect("the simulator places the call");
        assert_eq!(created.status, Some(CallStatus::Queued));
        created.sid
    }

    /// The call once it is over and its last status callback went out.
    async fn ended(&self, sid: &CallSid) -> SimulatedCall {
        for _ in 0..600 {
            match self.sim.call(sid.as_str()) {
                Some(c) if c.status.is_final() => return c,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("call {sid} did not end: {:?}", self.sim.call(sid.as_str()).map(|c| c.status));
    }

    async fn record(&self, sid: &CallSid) -> CallRecord {
        self.store.calls().get(sid.as_str()).await.unwrap().expect("a call record")
    }

    async fn answer(&self, call: &CallRecord, name: &str) -> Option<Value> {
        self.store.calls().answers(call.call_id).await.unwrap().into_iter().find(|a| a.name == name).map(|a| a.value)
    }

    /// The SMS accepted so far, once the outbox had the chance to send any.
    async fn sms_after(&self, outbox_patient: &str) -> Vec<ivr::carrier::simulator::SimulatedSms> {
        for _ in 0..200 {
            let msgs = self.store.outbox().for_patient(outbox_patient).await.unwrap();
            if msgs.iter().all(|(_, _, status, _)| status != "pending" && status != "sending") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.sim.messages()
    }
}

fn mobile(last: u8) -> String {
    format!("+81901234567{last}")
}

fn heard(call: &SimulatedCall, words: &str) -> bool {
    call.heard.iter().any(|h| h.contains(words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_app_user_answers_everything_and_gets_one_number_by_sms() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let path = log.path().to_path_buf();
    let app = spawn_with(|s| s.carrier.simulator_log = Some(path)).await;
    let sid = app.place(&mobile(0), None).await;
    let call = app.ended(&sid).await;
    assert_eq!((call.status, call.persona, call.answered_by), (CallStatus::Completed, Persona::AppUser, None));
    assert_eq!(call.reported, ["initiated", "ringing", "in-progress", "completed"]);
    let record = app.record(&sid).await;
    assert!(record.ended && !record.incomplete, "{record:?}");
    assert_eq!(record.status.as_str(), "completed");
    assert_eq!(app.answer(&record, "temperature").await, Some(Value::Number { raw: 365, scale: 1 }));
    assert_eq!(app.answer(&record, "spo2").await, Some(Value::int(97)));
    assert_eq!(app.answer(&record, "consent").await, Some(Value::text("yes")));
    assert!(app.store.calls().alerts(record.call_id).await.unwrap().is_empty());
    assert!(heard(&call, "ショートメッセージでお送りしました"));

    let sms = app.sms_after("P5670").await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0].to, mobile(0));
    let digits: String = sms[0].body.split("処理番号は ").nth(1).unwrap().chars().take(9).collect();
    assert_eq!(digits.chars().filter(char::is_ascii_digit).count(), 8, "{}", sms[0].body);

    let fetched = app.twilio.fetch_call(&sid).await.unwrap();
    assert_eq!((fetched.status, fetched.answered_by), (Some(CallStatus::Completed), None));
    assert!(fetched.duration.is_some_and(|d| d >= 1));
    // One line per call placed and per SMS accepted, numbers masked, bodies never written.
    let lines = std::fs::read_to_string(log.path()).unwrap();
    let kinds: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["call", "sms"]);
    assert!(!lines.contains(&mobile(0)) && !lines.contains(&digits[..4]), "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personas_understand_the_english_prompts_too() {
    let app = spawn().await;
    let sid = app.place_in("+81312345670", None, "en-US").await;
    let call = app.ended(&sid).await;
    assert!(heard(&call, "Your processing number is"), "{:?}", call.heard);
    let record = app.record(&sid).await;
    assert!(record.ended && !record.incomplete);
    assert_eq!(app.answer(&record, "trend").await, Some(Value::text("same")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_without_the_app_answers_no_and_gets_no_sms() {
    let app = spawn().await;
    let sid = app.place(&mobile(1), None).await;
    assert_eq!(app.ended(&sid).await.status, CallStatus::Completed);
    let record = app.record(&sid).await;
    assert!(record.ended && !record.incomplete);
    assert_eq!(app.answer(&record, "app_use").await, Some(Value::text("no")));
    assert!(app.sms_after("P5671").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_patient_lets_one_question_time_out_and_is_taken_for_a_machine() {
    let app = spawn().await;
    let sid = app.place(&mobile(2), Some(MachineDetection::Enable)).await;
    let call = app.ended(&sid).await;
    assert_eq!(call.answered_by, Some(AnsweredBy::MachineStart));
    assert!(heard(&call, "入力が確認できませんでした。"), "the first question timed out");
    let record = app.record(&sid).await;
    assert!(record.ended && !record.incomplete);
    assert_eq!(app.answer(&record, "spo2").await, Some(Value::int(97)));
    let fetched = app.twilio.fetch_call(&sid).await.unwrap();
    assert_eq!(fetched.answered_by, Some(AnsweredBy::MachineStart));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_then_the_call_completes() {
    let app = spawn().await;
    let sid = app.place(&mobile(3), None).await;
    let call = app.ended(&sid).await;
    assert!(heard(&call, "入力が正しくありません。"));
    let record = app.record(&sid).await;
    assert!(record.ended && !record.incomplete);
    assert_eq!(app.answer(&record, "has_oximeter").await, Some(Value::text("yes")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_who_hangs_up_after_the_spo2_question_leaves_an_incomplete_call() {
    let app = spawn().await;
    let sid = app.place(&mobile(4), None).await;
    assert_eq!(app.ended(&sid).await.status, CallStatus::Completed);
    let record = app.record(&sid).await;
    assert!(!record.ended && record.incomplete, "{record:?}");
    assert_eq!(record.status.as_str(), "completed");
    assert!(app.answer(&record, "temperature").await.is_some());
    assert_eq!(app.answer(&record, "trend").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_and_busy_calls_leave_no_record_and_report_their_status() {
    let app = spawn().await;
    for (last, status, final_word) in [(5, CallStatus::NoAnswer, "no-answer"), (6, CallStatus::Busy, "busy")] {
        let sid = app.place(&mobile(last), None).await;
        let call = app.ended(&sid).await;
        assert_eq!(call.status, status);
        assert_eq!(call.reported.last().map(String::as_str), Some(final_word), "{:?}", call.reported);
        assert!(call.heard.is_empty());
        assert!(app.store.calls().get(sid.as_str()).await.unwrap().is_none(), "no webhook, no call record");
        assert_eq!(app.twilio.fetch_call(&sid).await.unwrap().status, Some(status));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answering_machine_presses_nothing_and_the_centre_is_alerted() {
    let app = spawn().await;
    let sid = app.place(&mobile(7), Some(MachineDetection::DetectMessageEnd)).await;
    let call = app.ended(&sid).await;
    assert_eq!(call.answered_by, Some(AnsweredBy::MachineEndBeep));
    let record = app.record(&sid).await;
    // Silence at the identity question: the flow gives up on it and asks the centre to call.
    assert_eq!(app.store.calls().alerts(record.call_id).await.unwrap(), ["identity_not_confirmed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_sms_is_accepted_then_reported_undelivered() {
    let app = spawn().await;
    let sid = app.place(&mobile(8), None).await;
    app.ended(&sid).await;
    assert_eq!(app.sms_after("P5678").await.len(), 1);
    let mut last = Vec::new();
    for _ in 0..200 {
        last = app.store.outbox().for_patient("P5678").await.unwrap();
        if last.iter().any(|(_, _, status, _)| status == "failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].2, "failed", "{last:?}");
    assert!(app.sim.messages().iter().all(|m| m.status == "undelivered"));
    let alerts = app.store.calls().patient_alerts("P5678").await.unwrap();
    assert!(alerts.iter().any(|a| a.contains("undelivered 30005")), "{alerts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_spo2_raises_an_alert() {
    let app = spawn().await;
    let sid = app.place(&mobile(9), None).await;
    app.ended(&sid).await;
    let record = app.record(&sid).await;
    assert_eq!(app.answer(&record, "spo2").await, Some(Value::int(91)));
    assert_eq!(app.store.calls().alerts(record.call_id).await.unwrap(), ["spo2_low"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landline_hears_the_number_and_gets_no_sms() {
    let app = spawn().await;
    let sid = app.place("+81312345670", None).await;
    let call = app.ended(&sid).await;
    assert_eq!(call.persona, Persona::LandlineAppUser);
    assert!(heard(&call, "処理番号は、"), "the number is read aloud");
    let record = app.record(&sid).await;
    assert!(record.ended && !record.incomplete);
    assert!(app.sms_after("P5670").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persona_set_for_a_number_overrides_its_last_digit() {
    let app = spawn().await;
    app.sim.set_persona(&mobile(0), Persona::Busy);
    let sid = app.place(&mobile(0), None).await;
    assert_eq!(app.ended(&sid).await.status, CallStatus::Busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_webhook_is_down_fails_and_still_reports_it() {
    let app = spawn().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/twilio/voice", closed.local_addr().unwrap());
    drop(closed);
    let req = CallRequest::new(mobile(0), OURS, dead).with_status_callback(format!("{}/twilio/status", app.base));
    let sid = app.twilio.create_call(&req).await.unwrap().sid;
    let call = app.ended(&sid).await;
    assert_eq!(call.status, CallStatus::Failed);
    assert_eq!(call.reported.last().map(String::as_str), Some("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_back_as_twilio_errors_our_client_reads() {
    let app = spawn().await;
    let voice = format!("{}/twilio/voice", app.base);
    let err = app.twilio.create_call(&CallRequest::new("090-1234", OURS, voice.clone())).await.unwrap_err();
    assert!(err.is_invalid_number() && err.status() == Some(400), "{err}");
    let TwilioError::Api { more_info, .. } = &err else { panic!("{err:?}") };
    assert_eq!(more_info.as_deref(), Some("https://www.twilio.com/docs/errors/21211"));
    let mut bad_timeout = CallRequest::new(mobile(0), OURS, voice.clone());
    bad_timeout.timeout_secs = Some(0);
    assert_eq!(app.twilio.create_call(&bad_timeout).await.unwrap_err().code(), Some(21208));

    let sms = |to: &str| MessageRequest {
        to: to.into(),
        sender: Sender::From(OURS.into()),
        body: "test".into(),
        status_callback: None,
    };
    let err = app.twilio.send_message(&sms("+81312345678")).await.unwrap_err();
    assert!(err.is_not_a_mobile_number(), "{err}");
    assert!(!err.to_string().contains("312345678"), "numbers masked: {err}");

    let wrong = TwilioClient::new(
        &format!("{}/simulator", app.base),
        &ivr::carrier::simulator::account_sid(),
        "not-the-token".to_string(),
    )
    .unwrap();
    let err = wrong.send_message(&sms(&mobile(0))).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(401), Some(20003)));
    let err = app.twilio.fetch_call(&CallSid::parse("CA00000000000000000000000000000404").unwrap()).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(404), Some(20404)));
    assert!(app.sim.calls().is_empty() && app.sim.messages().is_empty(), "refusals keep nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_messages_list_gives_what_was_sent_to_a_number_newest_first_with_its_text() {
    let app = spawn().await;
    let start = chrono::Utc::now() - chrono::Duration::seconds(1);
    let sms = |to: &str, body: &str| MessageRequest {
        to: to.into(),
        sender: Sender::From(OURS.into()),
        body: body.into(),
        status_callback: None,
    };
    let (a, b) = (mobile(0), mobile(1));
    let first = app.twilio.send_message(&sms(&a, "一通目")).await.unwrap();
    app.twilio.send_message(&sms(&b, "other")).await.unwrap();
    let second = app.twilio.send_message(&sms(&a, "二通目")).await.unwrap();
    let listed = app.twilio.list_messages(&a, start).await.unwrap();
    let seen: Vec<(String, Option<String>, Option<String>)> =
        listed.iter().map(|m| (m.sid.to_string(), m.body.clone(), m.to.clone())).collect();
    assert_eq!(
        seen,
        vec![
            (second.sid.to_string(), Some("二通目".into()), Some(a.clone())),
            (first.sid.to_string(), Some("一通目".into()), Some(a.clone())),
        ]
    );
    assert!(listed.iter().all(|m| m.created().is_some_and(|t| t >= start - chrono::Duration::seconds(1))));
    let later = chrono::Utc::now() + chrono::Duration::minutes(5);
    assert!(app.twilio.list_messages(&a, later).await.unwrap().is_empty(), "nothing since then");
    let wrong = TwilioClient::new(
        &format!("{}/simulator", app.base),
        &ivr::carrier::simulator::account_sid(),
        "not-the-token".to_string(),
    )
    .unwrap();
    assert_eq!(wrong.list_messages(&a, start).await.unwrap_err().status(), Some(401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_list_gives_the_calls_placed_to_a_number_newest_first() {
    let app = spawn().await;
    let start = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (a, b) = (mobile(6), mobile(5));
    // Busy and unanswered lines: the calls end without a turn.
    let call = |to: &str| CallRequest::new(to, OURS, format!("{}/twilio/voice", app.base));
    let first = app.twilio.create_call(&call(&a)).await.unwrap();
    app.twilio.create_call(&call(&b)).await.unwrap();
    let second = app.twilio.create_call(&call(&a)).await.unwrap();
    let listed = app.twilio.list_calls(&a, start).await.unwrap();
    let seen: Vec<(String, Option<String>)> = listed.iter().map(|c| (c.sid.to_string(), c.to.clone())).collect();
    assert_eq!(seen, vec![(second.sid.to_string(), Some(a.clone())), (first.sid.to_string(), Some(a.clone()))]);
    assert!(listed.iter().all(|c| c.created().is_some_and(|t| t >= start - chrono::Duration::seconds(1))));
    assert!(listed.iter().all(|c| c.status.is_some()), "{listed:?}");
    let later = chrono::Utc::now() + chrono::Duration::minutes(5);
    assert!(app.twilio.list_calls(&a, later).await.unwrap().is_empty(), "nothing since then");
    let wrong = TwilioClient::new(
        &format!("{}/simulator", app.base),
        &ivr::carrier::simulator::account_sid(),
        "not-the-token".to_string(),
    )
    .unwrap();
    assert_eq!(wrong.list_calls(&a, start).await.unwrap_err().status(), Some(401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_who_presses_zero_is_dialled_through_to_the_centre() {
    let app = spawn_with(|s| {
        s.centre.transfer_to = Some("03-5321-0001".into());
        s.centre.hours = "00:00-24:00".into();
        s.centre.closed_days = Some(vec![]);
    })
    .await;
    // The centre answers: the call ends after the conversation, the answers so far kept.
    app.sim.set_persona(&mobile(1), Persona::AsksForPerson);
    let sid = app.place(&mobile(1), None).await;
    let call = app.ended(&sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert!(heard(&call, "担当者におつなぎします"), "{:?}", call.heard);
    assert!(heard(&call, "[dial +8135***0001 → completed]"), "{:?}", call.heard);
    assert!(heard(&call, "お電話ありがとうございました"));
    let record = app.record(&sid).await;
    assert!(record.ended);
    assert_eq!(app.answer(&record, "transfer").await, Some(Value::text("completed")));
    assert_eq!(app.answer(&record, "spo2").await, Some(Value::int(97)));
    assert!(app.store.calls().alerts(record.call_id).await.unwrap().is_empty());

    // Nobody answers: the hours and 119, a follow-up, and the check goes on to its end.
    app.sim.set_persona(&mobile(2), Persona::AsksForPersonUnanswered);
    let sid = app.place(&mobile(2), None).await;
    let call = app.ended(&sid).await;
    assert!(heard(&call, "[dial +8135***0001 → no-answer]"), "{:?}", call.heard);
    assert!(heard(&call, "119番"));
    let record = app.record(&sid).await;
    assert!(record.ended && !record.incomplete, "{record:?}");
    assert_eq!(app.answer(&record, "transfer").await, Some(Value::text("no_answer")));
    assert_eq!(app.answer(&record, "trend").await, Some(Value::text("same")));
    assert_eq!(
        app.store.calls().alerts(record.call_id).await.unwrap(),
        ["asked_for_person: asked for a person; nobody answered at the centre (no-answer)"]
    );
}
