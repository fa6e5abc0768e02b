//! The engine: [`step`] takes a flow, a call's state and one input, and returns the next state,
//! the effects to apply and what the phone must do. It is pure: no I/O, no clock, no randomness.

use serde::{Deserialize, Serialize};

use super::{
    Action, Effect, Flow, Kind, NumberFormat, NumberSpec, PromptRef, Question, TRANSFER_ANSWER, TRANSFER_CALLER_ID,
    TRANSFER_CLOSED, TRANSFER_DIAL, TRANSFER_TO, Value, Vars,
};
use crate::flow::response::{Dial, Gather, Response};
use crate::types::{Alert, AlertKind, Digits, Severity};

/// Transitions followed in one step before the engine gives up (validation rules out loops
/// that ask nothing, so a valid flow never comes near it).
const MAX_HOPS: usize = 256;

/// Where a call is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started.
    #[default]
    New,
    /// Waiting for keys at a question.
    Asking,
    /// Waiting for the outcome of an action.
    Acting,
    /// The caller asked for a person at the current question: waiting to hear whether the
    /// centre is open, then how the call put through to it ended.
    Transfer,
    /// Hung up, by the flow or by the caller.
    Ended,
}

/// Everything the engine needs to know about a call between two steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallState {
    pub flow: String,
    /// The flow version the call started on, which it keeps to the end.
    pub version: String,
    pub lang: String,
    /// The current state ("" before the start).
    pub state: String,
    pub phase: Phase,
    /// Failed tries (silence or a wrong answer) at the current question.
    pub tries: u32,
    pub vars: Vars,
}

impl CallState {
    /// A new call on `flow` in `lang` (or the flow's default language), with the patient's
    /// variables.
    pub fn new(flow: &Flow, lang: &str, mut vars: Vars) -> CallState {
        let lang = flow.language(lang).to_string();
        vars.insert("call.lang".into(), Value::text(lang.clone()));
        CallState {
            flow: flow.name.clone(),
            version: flow.version.clone(),
            lang,
            state: String::new(),
            phase: Phase::New,
            tries: 0,
            vars,
        }
    }

    /// The answers given so far: every variable that is not built in.
    pub fn answers(&self) -> Vec<(String, Value)> {
        self.vars
            .iter()
            .filter(|(k, _)| !k.contains('.') && !k.starts_with("processing_number"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// One input from the phone or from an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The call was answered.
    Start,
    /// Keys pressed at a question (`*` repeats it).
    Digits(Digits),
    /// The question timed out with no key.
    NoInput,
    /// The caller hung up.
    Hangup,
    /// The outcome of the action the flow waits on, with variables it sets.
    Outcome { name: String, vars: Vars },
}

/// What the engine waits for after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Keys from the caller: the response has a gather.
    Keys,
    /// The outcome of this effect, fed back as [`Input::Outcome`].
    Outcome(Effect),
    /// How the call put through ended (the response has a dial), fed back as
    /// [`Input::Outcome`] with the carrier's status (`completed`, `no-answer`, `busy`…).
    Dial,
    /// Nothing: the call is over.
    End,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: CallState,
    /// Effects to apply, in order (the effect waited on is in [`Wait::Outcome`]).
    pub effects: Vec<Effect>,
    pub response: Response,
    pub wait: Wait,
}

/// Advances a call by one input.
///
/// ```
/// use std::path::Path;
/// use ivr::flow::{CallState, Input, Library, Wait, step};
///
/// let (lib, _) = Library::load_dirs(Path::new("call-flows"), Path::new("prompts")).unwrap();
/// let flow = lib.flow("daily-health-check").unwrap();
/// let call = CallState::new(flow, "ja-JP", Default::default());
/// let first = step(flow, &call, Input::Start);
/// assert_eq!(first.wait, Wait::Keys); // the greeting, then the birthday question
/// assert_eq!(first.state.state, "identity");
/// ```
///
/// Total: any input in any state gives a sensible step (a stray
/// or repeated request hears the current question again).
pub fn step(flow: &Flow, call: &CallState, input: Input) -> Step {
    let mut m = Machine { flow, call: call.clone(), effects: Vec::new(), response: Response::default() };
    let wait = match (call.phase, input) {
        (Phase::Ended, _) => Wait::End,
        (_, Input::Hangup) => {
            m.call.phase = Phase::Ended;
            Wait::End
        }
        (Phase::New, _) => m.enter(flow.start),
        (Phase::Asking, Input::Digits(d)) => m.answer(Some(d.as_str())),
        (Phase::Asking, Input::NoInput) => m.answer(None),
        (Phase::Acting, Input::Outcome { name, vars }) => m.outcome(&name, vars),
        (Phase::Transfer, Input::Outcome { name, vars }) => m.transfer(&name, &vars),
        _ => m.resume(),
    };
    Step { state: m.call, effects: m.effects, response: m.response, wait }
}

struct Machine<'f> {
    flow: &'f Flow,
    call: CallState,
    effects: Vec<Effect>,
    response: Response,
}

/// Set when a question fails a try: `no_match` once keys were pressed at it (wrong ones),
/// `no_input` while nothing was; the give-up states can say which.
pub const GAVE_UP: &str = "call.gave_up";

/// The value a `number` state with `expect` sets its variable to once the answer matches: the
/// digits typed (personal data equal to the roster's) are never kept.
pub const CONFIRMED: &str = "confirmed";

/// Why an answer was refused.
enum Refusal {
    NoInput,
    NoMatch,
    /// A well-formed answer that differs from the expected one (identity check).
    Mismatch,
}

impl<'f> Machine<'f> {
    fn current(&self) -> Option<(usize, &'f Kind)> {
        let flow = self.flow;
        flow.index.get(&self.call.state).map(|&i| (i, &flow.states[i].kind))
    }

    fn say(&mut self, prompts: &[PromptRef]) {
        let catalog = self.flow.catalog(&self.call.lang);
        for p in prompts {
            self.response.speech.push(catalog.speech(&p.value, &self.call.vars));
        }
    }

    /// Follows transitions from `idx` until a question, an action that needs an outcome, or a
    /// hang-up.
    fn enter(&mut self, mut idx: usize) -> Wait {
        let flow = self.flow;
        for _ in 0..MAX_HOPS {
            let state = &flow.states[idx];
            self.call.state.clone_from(&state.name);
            self.call.tries = 0;
            match &state.kind {
                Kind::Say { prompt, next } => {
                    self.say(prompt);
                    idx = next.idx;
                }
                Kind::Hangup { prompt } => {
                    self.say(prompt);
                    self.call.phase = Phase::Ended;
                    return Wait::End;
                }
                Kind::Branch { rules, default } => {
                    idx = rules.iter().find(|r| r.matches(&self.call.vars)).map_or(default.idx, |r| r.next.idx);
                }
                Kind::Action { action, outcomes } => {
                    let effect = self.effect(action);
                    if outcomes.len() == 1 {
                        self.effects.push(effect);
                        idx = outcomes[0].1.idx;
                    } else {
                        self.call.phase = Phase::Acting;
                        return Wait::Outcome(effect);
                    }
                }
                kind => {
                    let q = kind.question().expect("the other kinds are questions");
                    self.call.vars.remove(GAVE_UP);
                    self.ask(kind, q);
                    return Wait::Keys;
                }
            }
        }
        self.fail()
    }

    /// The apology for a flow that went wrong at run time; validation makes it unreachable.
    fn fail(&mut self) -> Wait {
        self.response = Response::apology(&self.flow.catalog(&self.call.lang).language);
        self.call.phase = Phase::Ended;
        Wait::End
    }

    fn effect(&mut self, action: &Action) -> Effect {
        match action {
            Action::RecordAnswer { vars, set } => {
                for (k, v) in set {
                    self.call.vars.insert(k.clone(), v.clone());
                }
                let answers = if vars.is_empty() {
                    self.call.answers()
                } else {
                    vars.iter()
                        .map(|v| &v.value)
                        .chain(set.iter().map(|(k, _)| k))
                        .filter_map(|k| self.call.vars.get(k).map(|v| (k.clone(), v.clone())))
                        .collect()
                };
                Effect::RecordAnswers { answers }
            }
            Action::IssueProcessingNumber => Effect::IssueProcessingNumber,
            Action::SendSms { message, to } => Effect::SendSms {
                text: self.flow.catalog(&self.call.lang).text(&message.value, &self.call.vars),
                to: to.as_ref().and_then(|v| self.call.vars.get(&v.value)).map(ToString::to_string),
            },
            Action::AlertHealthCenter { reason, severity } => {
                Effect::AlertHealthCenter { reason: reason.clone(), severity: *severity }
            }
            Action::EndCallSummary => Effect::EndCallSummary { answers: self.call.answers() },
        }
    }

    fn ask(&mut self, kind: &Kind, q: &Question) {
        self.say(&q.prompt);
        let (num_digits, finish_on_key) = match kind {
            Kind::Number(n) => (n.max_digits, "#".to_string()),
            _ => (1, String::new()),
        };
        self.response.gather = Some(Gather { timeout: q.timeout, num_digits, finish_on_key });
        self.call.phase = Phase::Asking;
    }

    /// The current question again, or the pending action again, after a stray request.
    fn resume(&mut self) -> Wait {
        match self.current() {
            Some((_, Kind::Action { action, .. })) if self.call.phase == Phase::Acting => {
                Wait::Outcome(self.effect(action))
            }
            Some((_, kind)) if kind.question().is_some() => {
                self.ask(kind, kind.question().expect("checked"));
                Wait::Keys
            }
            Some((idx, _)) => self.enter(idx),
            None => self.fail(),
        }
    }

    fn answer(&mut self, digits: Option<&str>) -> Wait {
        let Some((_, kind)) = self.current() else {
            return self.fail();
        };
        let Some(q) = kind.question() else {
            return self.resume();
        };
        let digits = digits.map(|d| d.trim()).filter(|d| !d.is_empty());
        let Some(d) = digits else {
            return self.retry(kind, q, Refusal::NoInput);
        };
        if let Some(t) = &self.flow.transfer {
            // The key alone (a number question's `#` aside) asks for a person; validation keeps
            // it from being an answer anywhere.
            if d.trim_end_matches('#') == t.key.value.to_string() {
                self.call.phase = Phase::Transfer;
                return Wait::Outcome(Effect::TransferToCentre);
            }
        }
        if q.repeat_key.is_some_and(|k| d.contains(k)) {
            self.ask(kind, q);
            return Wait::Keys;
        }
        match kind {
            Kind::Menu { var, choices, .. } => {
                let key = d.chars().next();
                match choices.iter().find(|c| Some(c.key.value) == key) {
                    Some(c) => {
                        if let Some(var) = var {
                            self.call.vars.insert(var.clone(), c.value.clone());
                        }
                        self.enter(c.next.idx)
                    }
                    None => self.retry(kind, q, Refusal::NoMatch),
                }
            }
            Kind::Number(n) => match accept(n, d, &self.call.vars) {
                Ok(v) => {
                    self.call.vars.insert(n.var.clone(), v);
                    self.enter(n.next.idx)
                }
                Err(r) => self.retry(kind, q, r),
            },
            Kind::Confirm { yes_key, no_key, next, retry, .. } => match d.chars().next() {
                Some(k) if k == *yes_key => self.enter(next.idx),
                Some(k) if k == *no_key => self.enter(retry.idx),
                _ => self.retry(kind, q, Refusal::NoMatch),
            },
            _ => self.resume(),
        }
    }

    /// Counts a failed try: says why and asks again, or gives up after the last try.
    fn retry(&mut self, kind: &Kind, q: &Question, why: Refusal) -> Wait {
        // What the give-up line can tell: keys were pressed at some try, or never.
        let pressed = !matches!(why, Refusal::NoInput)
            || self.call.vars.get(GAVE_UP).is_some_and(|v| v.to_string() == "no_match");
        self.call.vars.insert(GAVE_UP.into(), Value::text(if pressed { "no_match" } else { "no_input" }));
        self.call.tries += 1;
        if self.call.tries >= q.tries {
            return self.enter(q.give_up.idx);
        }
        let tries = self.call.tries;
        match (why, kind) {
            (Refusal::NoInput, _) => self.say(&q.no_input),
            (Refusal::Mismatch, Kind::Number(n)) if !n.mismatch.is_empty() => self.say(&n.mismatch),
            _ => self.say(&q.no_match),
        }
        self.ask(kind, q);
        self.call.tries = tries;
        Wait::Keys
    }

    /// The caller asked for a person: `dial` puts the call through (the centre is open);
    /// `completed` or `answered` (the carrier's `DialCallStatus`) means they spoke with the
    /// centre, and the call ends politely; anything else (closed, no-answer, busy, failed…) gets
    /// the hours and the emergency number, a follow-up for the centre, and the question again.
    fn transfer(&mut self, name: &str, vars: &Vars) -> Wait {
        let (Some(t), Some((_, kind))) = (&self.flow.transfer, self.current()) else {
            return self.resume();
        };
        let Some(q) = kind.question() else {
            return self.resume();
        };
        let p = &t.prompts;
        let to = vars.get(TRANSFER_TO).map(ToString::to_string).filter(|n| !n.is_empty());
        match (name, to) {
            (TRANSFER_DIAL, Some(to)) => {
                self.say(std::slice::from_ref(&p.connecting));
                let caller_id = vars.get(TRANSFER_CALLER_ID).map(ToString::to_string);
                self.response.dial = Some(Dial { to, caller_id, timeout: t.timeout });
                Wait::Dial
            }
            ("completed" | "answered", _) => {
                self.call.vars.insert(TRANSFER_ANSWER.into(), Value::text("completed"));
                self.say(std::slice::from_ref(&p.goodbye));
                self.call.phase = Phase::Ended;
                Wait::End
            }
            (other, _) => {
                let (answer, prompt, detail) = if other == TRANSFER_CLOSED || other == TRANSFER_DIAL {
                    ("closed", &p.closed, "asked for a person outside the centre's hours".to_string())
                } else {
                    ("no_answer", &p.no_answer, format!("asked for a person; nobody answered at the centre ({other})"))
                };
                self.call.vars.insert(TRANSFER_ANSWER.into(), Value::text(answer));
                // As urgent as the engine's own `asked_for_person` alerts (store::followups::opening).
                let reason = Alert::new(AlertKind::AskedForPerson, detail).to_string();
                self.effects.push(Effect::AlertHealthCenter { reason, severity: Severity::High });
                self.say(std::slice::from_ref(prompt));
                self.say(std::slice::from_ref(&p.back));
                self.call.vars.remove(GAVE_UP);
                self.call.tries = 0;
                self.ask(kind, q);
                Wait::Keys
            }
        }
    }

    fn outcome(&mut self, name: &str, vars: Vars) -> Wait {
        let Some((_, Kind::Action { outcomes, .. })) = self.current() else {
            return self.resume();
        };
        self.call.vars.extend(vars);
        // An outcome the flow does not know is treated as a failure, never as a success.
        let target = outcomes
            .iter()
            .find(|(o, _)| o == name)
            .or_else(|| outcomes.iter().find(|(o, _)| o == "failed"))
            .unwrap_or(&outcomes[0]);
        self.enter(target.1.idx)
    }
}

/// Reads the keys typed at a `number` state into a value, or says why not.
fn accept(n: &NumberSpec, digits: &str, vars: &Vars) -> Result<Value, Refusal> {
    let d = digits.trim_end_matches('#');
    let len = d.chars().count() as u32;
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) || len < n.min_digits || len > n.max_digits {
        return Err(Refusal::NoMatch);
    }
    let value = match n.format {
        NumberFormat::Digits => Value::text(d),
        NumberFormat::MonthDay => {
            let (m, day) = (d[..2].parse::<u32>().unwrap_or(0), d[2..].parse::<u32>().unwrap_or(0));
            if chrono::NaiveDate::from_ymd_opt(2000, m, day).is_none() {
                return Err(Refusal::NoMatch);
            }
            Value::text(d)
        }
        NumberFormat::Number => {
            let raw: i64 = d.parse().map_err(|_| Refusal::NoMatch)?;
            let in_range = |r: i64| n.min.is_none_or(|m| r >= m) && n.max.is_none_or(|m| r <= m);
            // "37" for a temperature typed as 365 means 37.0: take the whole-number reading
            // when only it is in range (the read-back confirms it with the caller).
            let whole = raw.checked_mul(10i64.pow(u32::from(n.scale)));
            let raw = match whole {
                Some(w) if n.scale > 0 && !in_range(raw) && in_range(w) => w,
                _ => raw,
            };
            if !in_range(raw) {
                return Err(Refusal::NoMatch);
            }
            Value::Number { raw, scale: n.scale }
        }
    };
    if let Some(expect) = &n.expect {
        if !vars.get(&expect.value).is_some_and(|e| e.same_as(&value)) {
            return Err(Refusal::Mismatch);
        }
        // What was typed equals what the roster holds (a birth date): only the fact is kept.
        return Ok(Value::text(CONFIRMED));
    }
    Ok(value)
}
