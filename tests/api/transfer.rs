//! A person on request: 0 at a question puts the caller through to the health centre with
//! `<Dial>` during its hours; the Dial's action tells how that ended. Outside the hours, or
//! when nobody answers, the caller hears the hours and 119 and the centre gets a follow-up.

use ivr::flow::Value;
use ivr::twiml::{self, Verb};

use crate::common::app::*;

const MOBILE: &str = "+819012345678";
const SID: &str = "CA0123456789abcdef0123456789abcdef";

/// A server whose centre is open all day, every day (`open`), or never.
async fn app(open: bool) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.centre.transfer_to = Some("03-5321-0001".into());
    s.centre.hours = "00:00-24:00".into();
    let every_day = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    s.centre.closed_days = Some(if open { vec![] } else { every_day.iter().map(|d| d.to_string()).collect() });
    let app = spawn_app_with(s, dir).await;
    app.add_patient("P001", MOBILE).await;
    app
}

/// Turn `seq` of the call with these extra form fields.
async fn turn(app: &TestApp, seq: i64, extra: &[(&str, &str)]) -> String {
    let mut params = vec![("CallSid", SID), ("From", MOBILE), ("To", "+81300000000")];
    params.extend_from_slice(extra);
    let path = if seq == 0 { "/twilio/voice".to_string() } else { format!("/twilio/voice/step?call={SID}&seq={seq}") };
    let (status, body) = app.post(&path, &params).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Answers the birthday, then presses 0 at the temperature question: the TwiML of that turn.
async fn press_zero(app: &TestApp) -> String {
    turn(app, 0, &[]).await;
    turn(app, 1, &[("Digits", "0412")]).await;
    turn(app, 2, &[("Digits", "0")]).await
}

fn spoken(verbs: &[Verb]) -> String {
    twiml::phone::listen(verbs).speech.concat()
}

#[tokio::test]
async fn zero_during_the_centres_hours_dials_the_centre_keeping_the_answers() {
    let app = app(true).await;
    let xml = press_zero(&app).await;
    let verbs = twiml::parse(&xml).unwrap();
    let Some(Verb::Dial(dial)) = verbs.last() else { panic!("no <Dial> last: {xml}") };
    assert_eq!(dial.number, "+81353210001");
    assert_eq!(dial.timeout, 20);
    assert_eq!(dial.action, format!("{PUBLIC}/twilio/voice/step?call={SID}&seq=3"));
    assert!(dial.caller_id.as_deref().is_some_and(|c| c.starts_with('+')), "{xml}");
    assert!(spoken(&verbs).contains("担当者におつなぎします"));
    let call = app.store.calls().get(SID).await.unwrap().unwrap();
    assert!(!call.ended);
    let answers = app.store.calls().answers(call.call_id).await.unwrap();
    assert!(answers.iter().any(|a| a.name == "identity" && a.value == Value::text("confirmed")));
    assert!(app.store.calls().alerts(call.call_id).await.unwrap().is_empty());

    // The centre answered and the two spoke: the call ends politely.
    let done = turn(&app, 3, &[("DialCallStatus", "completed"), ("DialCallDuration", "95")]).await;
    let verbs = twiml::parse(&done).unwrap();
    assert_eq!(verbs.last(), Some(&Verb::Hangup));
    assert!(spoken(&verbs).contains("お電話ありがとうございました"));
    let call = app.store.calls().get(SID).await.unwrap().unwrap();
    assert!(call.ended);
    let answers = app.store.calls().answers(call.call_id).await.unwrap();
    assert!(answers.iter().any(|a| a.name == "transfer" && a.value == Value::text("completed")));
    assert!(app.store.calls().alerts(call.call_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn nobody_answering_at_the_centre_gives_the_hours_and_119_and_a_follow_up() {
    let app = app(true).await;
    press_zero(&app).await;
    let xml = turn(&app, 3, &[("DialCallStatus", "no-answer")]).await;
    // A replay of the Dial's callback repeats nothing.
    assert_eq!(turn(&app, 3, &[("DialCallStatus", "no-answer")]).await, xml);
    let verbs = twiml::parse(&xml).unwrap();
    let said = spoken(&verbs);
    assert!(said.contains("担当者が電話に出ることができません") && said.contains("119番"), "{said}");
    assert!(said.contains("0:00から、24:00まで"), "the hours: {said}");
    assert!(said.contains("本日の体温"), "the question again: {said}");
    assert!(matches!(verbs.first(), Some(Verb::Gather(_))), "{xml}");
    let call = app.store.calls().get(SID).await.unwrap().unwrap();
    assert_eq!(
        app.store.calls().alerts(call.call_id).await.unwrap(),
        ["asked_for_person: asked for a person; nobody answered at the centre (no-answer)"]
    );
    // The call goes on: the next answer is a temperature.
    let next = turn(&app, 4, &[("Digits", "365")]).await;
    assert!(next.contains("36.5度ですね"), "{next}");
}

#[tokio::test]
async fn outside_the_centres_hours_nothing_is_dialled_and_the_centre_gets_a_follow_up() {
    let app = app(false).await;
    let xml = press_zero(&app).await;
    assert!(!xml.contains("<Dial"), "{xml}");
    let said = spoken(&twiml::parse(&xml).unwrap());
    assert!(said.contains("受付時間外です") && said.contains("119番"), "{said}");
    let call = app.store.calls().get(SID).await.unwrap().unwrap();
    assert_eq!(
        app.store.calls().alerts(call.call_id).await.unwrap(),
        ["asked_for_person: asked for a person outside the centre's hours"]
    );
    let answers = app.store.calls().answers(call.call_id).await.unwrap();
    assert!(answers.iter().any(|a| a.name == "transfer" && a.value == Value::text("closed")));
    // The follow-up: an item for the patient, high, naming what the caller asked for.
    let patient = call.patient_id.as_ref().expect("a known caller");
    let item = app.store.followups().open_for(patient.as_str()).await.unwrap().expect("an item is open");
    assert_eq!(item.severity, ivr::types::Severity::High);
    let reasons: Vec<_> = item.reasons.iter().map(|r| (r.kind, r.reason.as_str(), r.call_id)).collect();
    assert_eq!(
        reasons,
        [(ivr::types::AlertKind::AskedForPerson, "asked for a person outside the centre's hours", Some(call.call_id))]
    );
}

#[tokio::test]
async fn an_unknown_dial_status_is_never_taken_for_a_person_reached() {
    let app = app(true).await;
    press_zero(&app).await;
    let xml = turn(&app, 3, &[("DialCallStatus", "talked-a-lot")]).await;
    assert!(xml.contains("119"), "{xml}");
    let call = app.store.calls().get(SID).await.unwrap().unwrap();
    assert_eq!(
        app.store.calls().alerts(call.call_id).await.unwrap(),
        ["asked_for_person: asked for a person; nobody answered at the centre (failed)"]
    );
}

#[tokio::test]
async fn an_inbound_caller_who_presses_zero_is_dialled_through_and_finishes_the_call() {
    let app = app(true).await;
    // The test phone's centre does not answer (the carrier posts no-answer to the Dial's action).
    let keys = ["0412", "0", "365#", "1", "1", "97#", "1", "2", "2", "2", "2", "2", "2"];
    let (sid, heard) = app.call(MOBILE, &keys).await;
    assert!(heard.iter().any(|h| h.contains("担当者におつなぎします")), "{heard:?}");
    assert!(heard.iter().any(|h| h.contains("119番")));
    let call = app.store.calls().get(&sid).await.unwrap().unwrap();
    assert!(call.ended && !call.incomplete);
    let answers = app.store.calls().answers(call.call_id).await.unwrap();
    assert!(answers.iter().any(|a| a.name == "spo2"));
    assert_eq!(app.store.calls().alerts(call.call_id).await.unwrap().len(), 1);
}
