//! The engine on the shipped daily flow, key by key, through the pure `step` and the driver.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::flow::driver::{Actions, Outcome, run_turn};
use crate::flow::response::Dial;
use crate::flow::{
    CallState, Effect, Flow, Input, Library, Phase, TRANSFER_CALLER_ID, TRANSFER_TO, Value, Vars, Wait, step,
};
use crate::types::{Digits, Severity};
use proptest::prelude::*;

/// Keys pressed, as a keypad sends them.
fn pressed(k: &str) -> Digits {
    Digits::parse(k).unwrap()
}

fn daily() -> Arc<Flow> {
    static LIB: OnceLock<Library> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Library::load_dirs(&root.join("call-flows"), &root.join("prompts")).unwrap_or_else(|d| panic!("{d}")).0
    });
    lib.flow("daily-health-check").unwrap().clone()
}

/// Actions for tests: issues "12345678" and delivers it by `channel`; the centre is open
/// (`dial`) or `closed` for a caller who asks for a person.
struct Recorder {
    channel: &'static str,
    centre: &'static str,
    effects: Vec<Effect>,
}

impl Actions for Recorder {
    type Error = ();
    fn perform(&mut self, e: &Effect, _: &CallState, waited: bool) -> Result<Option<Outcome>, ()> {
        self.effects.push(e.clone());
        if !waited {
            return Ok(None);
        }
        if *e == Effect::TransferToCentre {
            let mut o = Outcome::named(self.centre);
            o.vars.insert(TRANSFER_TO.into(), Value::text("+81312345678"));
            o.vars.insert(TRANSFER_CALLER_ID.into(), Value::text("+815012345678"));
            return Ok(Some(o));
        }
        let mut o = Outcome::named(self.channel);
        o.vars.insert("processing_number".into(), Value::text("12345678"));
        o.vars.insert("processing_number.expires".into(), Value::text("2026-11-26T14:00"));
        Ok(Some(o))
    }
}

fn patient() -> Vars {
    let mut v = Vars::new();
    v.insert("patient.birth_md".into(), Value::text("0412"));
    v.insert("patient.number_issued".into(), Value::Bool(false));
    v
}

struct Walk {
    call: CallState,
    effects: Vec<Effect>,
    heard: Vec<String>,
}

impl Walk {
    fn heard(&self, s: &str) -> bool {
        self.heard.iter().any(|h| h.contains(s))
    }
    fn alerts(&self) -> Vec<&str> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::AlertHealthCenter { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }
    fn var(&self, k: &str) -> Option<String> {
        self.call.vars.get(k).map(ToString::to_string)
    }
}

/// Walks the daily flow with `keys` ("" is silence); stops when the call ends or keys run out.
fn walk_with(lang: &str, vars: Vars, channel: &'static str, keys: &[&str]) -> Walk {
    walk_centre(lang, vars, channel, "dial", keys)
}

/// [`walk_with`], the centre open (`dial`) or `closed`. Where the call is put through, the
/// next "key" is how the dial ended (`completed`, `no-answer`…).
fn walk_centre(lang: &str, vars: Vars, channel: &'static str, centre: &'static str, keys: &[&str]) -> Walk {
    let flow = daily();
    let mut actions = Recorder { channel, centre, effects: vec![] };
    let mut call = CallState::new(&flow, lang, vars);
    let mut heard = Vec::new();
    let mut turn = run_turn(&flow, &call, Input::Start, &mut actions).unwrap();
    for k in keys {
        heard.extend(turn.response.transcript());
        call = turn.state.clone();
        if turn.ended() {
            break;
        }
        let input = match *k {
            _ if turn.response.dial.is_some() => Input::Outcome { name: k.to_string(), vars: Vars::new() },
            "" => Input::NoInput,
            _ => Input::Digits(pressed(k)),
        };
        turn = run_turn(&flow, &call, input, &mut actions).unwrap();
    }
    heard.extend(turn.response.transcript());
    Walk { call: turn.state, effects: actions.effects, heard }
}

fn walk(keys: &[&str]) -> Walk {
    walk_with("ja-JP", patient(), "sms", keys)
}

const HEALTHY: [&str; 11] = ["0412", "365", "1", "1", "97", "1", "2", "2", "2", "2", "2"];

fn then<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    HEALTHY.iter().copied().chain(rest.iter().copied()).collect()
}

/// The dial a walk stopped at, if it did.
fn dialled(keys: &[&str]) -> (Walk, Option<Dial>) {
    let flow = daily();
    let mut actions = Recorder { channel: "sms", centre: "dial", effects: vec![] };
    let mut turn = run_turn(&flow, &CallState::new(&flow, "ja-JP", patient()), Input::Start, &mut actions).unwrap();
    let mut heard = turn.response.transcript();
    for k in keys {
        turn = run_turn(&flow, &turn.state, Input::Digits(pressed(k)), &mut actions).unwrap();
        heard.extend(turn.response.transcript());
    }
    let dial = turn.response.dial.clone();
    (Walk { call: turn.state, effects: actions.effects, heard }, dial)
}

#[test]
fn zero_at_a_question_puts_the_caller_through_to_the_centre_when_it_is_open() {
    let (w, dial) = dialled(&["0412", "365", "1", "0"]);
    let dial = dial.expect("the call is put through");
    assert_eq!(dial, Dial { to: "+81312345678".into(), caller_id: Some("+815012345678".into()), timeout: 20 });
    assert_eq!(w.call.phase, Phase::Transfer);
    assert_eq!(w.call.state, "oximeter", "the question asked when 0 was pressed");
    assert!(w.heard("担当者におつなぎします"));
    assert_eq!(w.var("temperature").as_deref(), Some("36.5"), "the answers so far are kept");
    assert!(w.alerts().is_empty());
    assert!(!w.call.vars.contains_key(TRANSFER_TO), "the number is not kept in the call");
}

#[test]
fn after_speaking_with_the_centre_the_call_ends_politely() {
    let w = walk(&["0412", "0", "completed"]);
    assert_eq!(w.call.phase, Phase::Ended);
    assert_eq!(w.var("transfer").as_deref(), Some("completed"));
    assert_eq!(w.var("identity").as_deref(), Some("confirmed"));
    assert!(w.heard("お電話ありがとうございました"));
    assert!(w.alerts().is_empty());
}

#[test]
fn when_nobody_answers_the_caller_hears_the_hours_and_119_and_the_question_again() {
    for status in ["no-answer", "busy", "failed", "canceled"] {
        let w = walk(&["0412", "0", status]);
        assert_eq!(w.call.phase, Phase::Asking, "{status}");
        assert_eq!(w.call.state, "temperature");
        assert_eq!(w.call.tries, 0, "asking for a person costs no try");
        assert!(w.heard("担当者が電話に出ることができません") && w.heard("119番"), "{:?}", w.heard);
        assert!(w.heard("質問を続けます"));
        assert_eq!(w.var("transfer").as_deref(), Some("no_answer"));
        assert_eq!(
            w.alerts(),
            vec![format!("asked_for_person: asked for a person; nobody answered at the centre ({status})").as_str()]
        );
    }
    // And the call goes on to its end, the transfer among its answers.
    let w = walk(&["0412", "0", "no-answer", "365", "1", "1", "97", "1", "2", "2", "2", "2", "2", "2"]);
    assert_eq!(w.call.state, "goodbye");
    assert!(
        matches!(w.effects.last(), Some(Effect::EndCallSummary { answers }) if answers.iter().any(|(k, _)| k == "transfer"))
    );
}

#[test]
fn outside_the_centres_hours_nothing_is_dialled() {
    let w = walk_centre("en-US", patient(), "sms", "closed", &["0412", "365", "0"]);
    assert_eq!(w.call.phase, Phase::Asking);
    assert_eq!(w.call.state, "temperature_confirm");
    assert!(w.heard("The health centre is closed now") && w.heard("call 119"), "{:?}", w.heard);
    assert_eq!(w.var("transfer").as_deref(), Some("closed"));
    assert_eq!(w.alerts(), vec!["asked_for_person: asked for a person outside the centre's hours"]);
    assert!(w.effects.contains(&Effect::TransferToCentre));
}

#[test]
fn zero_as_part_of_an_answer_is_an_answer() {
    // A birthday in April starts with 0; "0#" alone at a number question asks for a person.
    let w = walk(&["0412", "0#", "no-answer"]);
    assert_eq!(w.var("identity").as_deref(), Some("confirmed"));
    assert_eq!(w.var("transfer").as_deref(), Some("no_answer"));
    assert_eq!(w.call.state, "temperature");
}

#[test]
fn a_consenting_app_user_gets_a_processing_number_by_sms() {
    let w = walk(&then(&["1", "1"]));
    assert_eq!(w.call.phase, Phase::Ended);
    assert_eq!(w.call.state, "goodbye");
    assert!(w.effects.contains(&Effect::IssueProcessingNumber));
    assert!(w.heard("処理番号をショートメッセージでお送りしました"));
    assert_eq!(w.var("temperature").as_deref(), Some("36.5"));
    assert_eq!(w.var("spo2").as_deref(), Some("97"));
    assert!(w.alerts().is_empty());
    assert!(matches!(w.effects.last(), Some(Effect::EndCallSummary { answers }) if answers.len() == 11));
}

#[test]
fn the_app_question_uses_the_seeds_words_and_is_skipped_once_a_number_was_issued() {
    let w = walk(&then(&["2"]));
    assert!(w.heard("接触確認アプリをご利用の方は１を、ご利用でない方は２を押して下さい。"));
    assert!(!w.effects.contains(&Effect::IssueProcessingNumber));
    let mut vars = patient();
    vars.insert("patient.number_issued".into(), Value::Bool(true));
    let w = walk_with("ja-JP", vars, "sms", &HEALTHY);
    assert!(!w.heard("接触確認アプリをご利用"));
    assert_eq!(w.call.state, "goodbye");
}

#[test]
fn declining_consent_issues_nothing() {
    let w = walk(&then(&["1", "2"]));
    assert_eq!(w.var("consent").as_deref(), Some("no"));
    assert!(!w.effects.contains(&Effect::IssueProcessingNumber));
    assert_eq!(w.call.state, "goodbye");
}

#[test]
fn low_spo2_breathlessness_or_feeling_worse_alert_the_health_centre_each_with_its_own_reason() {
    let low = walk(&["0412", "365", "1", "1", "93", "1", "2", "2", "2", "2", "2", "2"]);
    assert_eq!(low.alerts(), ["spo2_low"]);
    assert!(low.heard("119番"));
    let ok = walk(&["0412", "365", "1", "1", "94", "1", "2", "2", "2", "2", "2", "2"]);
    assert!(ok.alerts().is_empty());
    let breathless = walk(&["0412", "365", "1", "1", "97", "1", "1", "2", "2", "2", "2", "2"]);
    assert_eq!(breathless.alerts(), ["breathless"]);
    let worse = walk(&["0412", "365", "1", "2", "2", "2", "2", "2", "3", "2"]);
    assert_eq!(worse.alerts(), ["feeling_worse"]);
    assert_eq!(worse.var("spo2"), None);
    // Every condition the patient has is its own alert, and the notice is heard once.
    let all = walk(&["0412", "365", "1", "1", "90", "1", "1", "2", "2", "2", "3", "2"]);
    assert_eq!(all.alerts(), ["spo2_low", "breathless", "feeling_worse"]);
    assert_eq!(all.heard.iter().filter(|h| h.contains("119番")).count(), 1);
    let severities: Vec<Severity> = all
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::AlertHealthCenter { severity, .. } => Some(*severity),
            _ => None,
        })
        .collect();
    assert_eq!(severities, [Severity::Urgent, Severity::Urgent, Severity::High]);
}

#[test]
fn silence_at_every_try_gives_up_politely_and_alerts() {
    let w = walk(&["0412", "", "", ""]);
    assert_eq!(w.call.state, "no_response_goodbye");
    assert_eq!(w.alerts(), ["no_response"]);
    assert_eq!(w.heard.iter().filter(|h| h.contains("入力が確認できませんでした。")).count(), 2);
    assert!(
        w.effects
            .iter()
            .any(|e| matches!(e, Effect::RecordAnswers { answers } if answers.iter().any(|(k, v)| k == "identity" && *v == Value::text("confirmed"))))
    );
}

#[test]
fn a_wrong_birthday_three_times_ends_the_call_and_is_recorded() {
    let w = walk(&["0101", "1231", "0229"]);
    assert_eq!(w.call.state, "identity_goodbye");
    assert_eq!(w.call.phase, Phase::Ended);
    assert_eq!(w.heard.iter().filter(|h| h.contains("生年月日が確認できませんでした")).count(), 2);
    let recorded = Effect::RecordAnswers { answers: vec![("identity".into(), Value::text("failed"))] };
    assert!(w.effects.contains(&recorded), "{:?}", w.effects);
    assert!(w.var("temperature").is_none());
}

#[test]
fn a_wrong_birthday_then_the_right_one_goes_on() {
    let w = walk(&["0101", "0412", "365"]);
    assert_eq!(w.call.state, "temperature_confirm");
}

#[test]
fn an_impossible_date_or_an_out_of_range_value_is_a_wrong_answer() {
    let w = walk(&["1332"]);
    assert!(w.heard("入力が正しくありません。"));
    let w = walk(&["0412", "450"]);
    assert_eq!(w.call.state, "temperature");
    assert_eq!(w.call.tries, 1);
}

#[test]
fn temperatures_are_read_back_and_can_be_entered_again() {
    let w = walk(&["0412", "385", "2", "368", "1"]);
    assert!(w.heard("38.5度ですね"));
    assert!(w.heard("36.8度ですね"));
    assert_eq!(w.var("temperature").as_deref(), Some("36.8"));
    assert_eq!(w.call.state, "oximeter");
}

#[test]
fn a_whole_degree_typed_alone_reads_as_that_temperature() {
    let w = walk(&["0412", "37"]);
    assert!(w.heard("37.0度ですね"));
}

#[test]
fn star_repeats_the_question_without_using_a_try() {
    let w = walk(&["0412", "*", "*", "*", "365"]);
    assert_eq!(w.call.state, "temperature_confirm");
    assert_eq!(w.heard.iter().filter(|h| h.starts_with("本日の体温を、数字で押して")).count(), 4);
}

#[test]
fn a_landline_hears_the_number_twice_and_may_hear_it_again() {
    let w = walk_with("ja-JP", patient(), "read_aloud", &then(&["1", "1", "1", "2"]));
    let readings = w.heard.iter().filter(|h| h.contains("1 2 3 4、5 6 7 8")).count();
    assert_eq!(readings, 2, "read twice per turn, two turns");
    assert!(w.heard("有効期限は11月26日 14時です"));
    assert_eq!(w.call.state, "goodbye");
}

#[test]
fn the_call_speaks_english_when_asked() {
    let w = walk_with("en-US", patient(), "sms", &["0412", "365"]);
    assert!(w.heard("36.5 degrees. If that is correct, press 1."));
    assert_eq!(w.call.lang, "en-US");
    let w = walk_with("fr-FR", patient(), "sms", &[]);
    assert_eq!(w.call.lang, "ja-JP", "an unknown language falls back to the flow's first");
}

#[test]
fn a_hang_up_mid_call_keeps_the_answers_and_ends() {
    let flow = daily();
    let mut a = Recorder { channel: "sms", centre: "dial", effects: vec![] };
    let mut call = CallState::new(&flow, "ja-JP", patient());
    for input in [Input::Start, Input::Digits(pressed("0412")), Input::Digits(pressed("365"))] {
        call = run_turn(&flow, &call, input, &mut a).unwrap().state;
    }
    let s = step(&flow, &call, Input::Hangup);
    assert_eq!(s.wait, Wait::End);
    assert_eq!(s.state.phase, Phase::Ended);
    assert_eq!(
        s.state.answers(),
        vec![
            ("identity".into(), Value::text("confirmed")),
            ("temperature".into(), Value::Number { raw: 365, scale: 1 })
        ]
    );
    // Anything after the end is a no-op.
    let again = step(&flow, &s.state, Input::Digits(pressed("1")));
    assert_eq!((again.wait, again.effects.len(), again.state), (Wait::End, 0, s.state));
}

#[test]
fn an_unknown_outcome_takes_the_failed_path() {
    let flow = daily();
    let mut call = CallState::new(&flow, "ja-JP", patient());
    call.state = "issue".into();
    call.phase = Phase::Acting;
    let s = step(&flow, &call, Input::Outcome { name: "carrier_exploded".into(), vars: Vars::new() });
    assert!(s.effects.contains(&Effect::AlertHealthCenter {
        reason: "processing_number_failed".into(),
        severity: crate::types::Severity::Normal
    }));
}

#[test]
fn a_stray_request_hears_the_current_question_again() {
    let flow = daily();
    let first = step(&flow, &CallState::new(&flow, "ja-JP", patient()), Input::Start);
    let again = step(&flow, &first.state, Input::Start);
    assert_eq!(again.state, first.state);
    assert_eq!(again.response.gather, first.response.gather);
}

#[test]
fn a_call_keeps_the_version_it_started_with() {
    let flow = daily();
    let call = CallState::new(&flow, "ja-JP", patient());
    assert_eq!(call.version, flow.version);
    assert_eq!(flow.version.len(), 16);
}

#[test]
fn step_is_deterministic() {
    let flow = daily();
    let call = CallState::new(&flow, "ja-JP", patient());
    assert_eq!(step(&flow, &call, Input::Start), step(&flow, &call, Input::Start));
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => "[0-9*#]{1,5}".prop_map(|d| Input::Digits(pressed(&d))),
        2 => Just(Input::NoInput),
        1 => Just(Input::Start),
        1 => "[a-z_]{1,12}".prop_map(|name| Input::Outcome { name, vars: Vars::new() }),
        1 => Just(Input::Hangup),
    ]
}

proptest! {
    /// Random keys never panic the engine, and every step ends or waits for the caller within
    /// a bounded number of action outcomes.
    #[test]
    fn random_keys_always_end_or_wait_for_input(inputs in prop::collection::vec(input(), 1..80), landline in any::<bool>()) {
        let flow = daily();
        let mut call = CallState::new(&flow, if landline { "en-US" } else { "ja-JP" }, patient());
        let mut s = step(&flow, &call, Input::Start);
        for i in inputs {
            let mut outcomes = 0;
            while let Wait::Outcome(_) = s.wait {
                outcomes += 1;
                prop_assert!(outcomes <= 4, "too many actions in a row");
                s = step(&flow, &s.state, Input::Outcome { name: if landline { "read_aloud".into() } else { "sms".into() }, vars: Vars::new() });
            }
            match s.wait {
                Wait::Keys => prop_assert!(s.response.gather.is_some() && s.state.phase == Phase::Asking),
                Wait::End => { prop_assert_eq!(s.state.phase, Phase::Ended); prop_assert!(s.response.gather.is_none()); }
                Wait::Dial => prop_assert!(s.response.dial.is_some() && s.state.phase == Phase::Transfer),
                Wait::Outcome(_) => unreachable!(),
            }
            call = s.state.clone();
            s = step(&flow, &call, i);
        }
    }
}

#[test]
fn a_number_waiting_to_be_read_is_read_once_the_patient_is_known_then_the_check_goes_on() {
    let mut vars = patient();
    vars.insert("patient.number_issued".into(), Value::Bool(true));
    vars.insert("patient.number_to_read".into(), Value::Bool(true));
    vars.insert("processing_number".into(), Value::text("12345678"));
    vars.insert("processing_number.expires".into(), Value::text("2026-11-26T14:00"));
    let read_done = |w: &Walk| {
        w.effects.iter().any(|e| {
            matches!(e, Effect::RecordAnswers { answers }
                if answers.iter().any(|(k, v)| k == "number_read_aloud" && *v == Value::Bool(true)))
        })
    };
    // Not before the identity check: whoever answers first hears no number.
    let w = walk_with("ja-JP", vars.clone(), "sms", &[]);
    assert!(!w.heard("1 2 3 4"), "{:?}", w.heard);
    // Right after it, then the health check goes on; the delivery is recorded once the caller
    // answered the menu after the number.
    let w = walk_with("ja-JP", vars.clone(), "sms", &["0412"]);
    assert!(w.heard("以前のお電話で発行した、処理番号をお伝えします。"), "{:?}", w.heard);
    assert!(w.heard("1 2 3 4"), "{:?}", w.heard);
    assert!(!read_done(&w), "a call that drops while the number is read leaves it waiting");
    let keys: Vec<&str> = ["0412", "1", "2"].into_iter().chain(HEALTHY[1..].iter().copied()).collect();
    let w = walk_with("ja-JP", vars, "sms", &keys);
    assert!(read_done(&w));
    assert_eq!(w.var("temperature").as_deref(), Some("36.5"));
    assert!(!w.heard("接触確認アプリをご利用"));
    assert_eq!(w.call.state, "goodbye");
}
