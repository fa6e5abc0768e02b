//! Call flows: the model of a flow file, loading and validating it, and the pure engine.
//!
//! - [`source`]: positions and diagnostics (`file:line:col: error: …`).
//! - [`load`]: a flow file into a [`Flow`], every problem reported at once.
//! - [`validate`]: checks across states and files (reachability, loops, prompts).
//! - [`engine`]: [`step`], the pure state machine; [`driver`] runs a turn with real actions.
//! - [`graph`]: a flow as a Mermaid diagram.
//! - [`web`]: a flow as the patient's web form (which questions a page shows, answers judged
//!   by the engine).

pub mod driver;
pub mod engine;
pub mod graph;
pub mod library;
pub mod load;
pub mod prompts;
pub mod registry;
pub mod response;
pub mod source;
pub mod validate;
mod value;
pub mod web;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use engine::{CallState, Input, Phase, Step, Wait, step};
pub use library::Library;
pub use source::{At, Diagnostic, Diagnostics, Severity, Source};
pub use value::{Value, Vars, parse_decimal};

use crate::flow::prompts::Catalog;
use crate::types::Severity as Urgency;

/// A loaded, valid call flow with its prompt catalogues.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The file's stem, e.g. `daily-health-check`.
    pub name: String,
    pub title: String,
    /// Languages in order of preference; the first is the default.
    pub languages: Vec<String>,
    /// Where each language is named, for errors about its catalogue.
    pub language_at: Vec<usize>,
    pub start: usize,
    /// States in file order.
    pub states: Vec<State>,
    pub index: HashMap<String, usize>,
    /// Hash of the flow file and its catalogues: a call keeps the version it started with.
    pub version: String,
    pub catalogs: BTreeMap<String, Arc<Catalog>>,
    /// Languages whose prompt file exists but has errors (for a precise message).
    pub broken_catalogs: Vec<String>,
    pub source: Source,
    /// `[transfer]`: the key that asks for a person at any question; `None` when the flow has
    /// no `[transfer]` table or turns it off.
    pub transfer: Option<Transfer>,
}

/// A person on request: at any question, the caller presses `key` and is put through to the
/// health centre during its hours; otherwise, or when nobody answers there, the caller hears the
/// hours and the emergency number, the centre gets a follow-up, and the question is asked again.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The key, with where the file names it (the table's start when left at its default).
    pub key: At<char>,
    /// Seconds the centre's phone rings before the caller is told nobody could answer.
    pub timeout: u32,
    /// The prompts the transfer says, fixed ids under `transfer.` in every catalogue.
    pub prompts: TransferPrompts,
}

/// The prompts of a transfer, each named where the `[transfer]` table is.
#[derive(Debug, Clone)]
pub struct TransferPrompts {
    /// `transfer.connecting`: before the centre's phone rings.
    pub connecting: PromptRef,
    /// `transfer.closed`: outside the centre's hours (the hours and the emergency number).
    pub closed: PromptRef,
    /// `transfer.no_answer`: nobody answered at the centre (the hours and the emergency number).
    pub no_answer: PromptRef,
    /// `transfer.back`: before the question is asked again.
    pub back: PromptRef,
    /// `transfer.goodbye`: after the caller spoke with the centre.
    pub goodbye: PromptRef,
}

impl TransferPrompts {
    /// The prompts at their fixed ids, named at `at`.
    pub fn at(at: usize) -> TransferPrompts {
        let p = |id: &str| At::new(format!("transfer.{id}"), at);
        TransferPrompts {
            connecting: p("connecting"),
            closed: p("closed"),
            no_answer: p("no_answer"),
            back: p("back"),
            goodbye: p("goodbye"),
        }
    }

    pub fn all(&self) -> [&PromptRef; 5] {
        [&self.connecting, &self.closed, &self.no_answer, &self.back, &self.goodbye]
    }
}

/// The outcome of [`Effect::TransferToCentre`] when the centre is open: the call is dialled
/// through. Its variables ([`TRANSFER_TO`], [`TRANSFER_CALLER_ID`]) say to which number.
pub const TRANSFER_DIAL: &str = "dial";
/// The outcome of [`Effect::TransferToCentre`] outside the centre's hours.
pub const TRANSFER_CLOSED: &str = "closed";
/// The number to dial, an outcome variable of [`TRANSFER_DIAL`] (not kept in the call).
pub const TRANSFER_TO: &str = "transfer.to";
/// The caller id the dialled leg shows (the carrier number), an outcome variable too.
pub const TRANSFER_CALLER_ID: &str = "transfer.caller_id";
/// The answer a transfer leaves: `completed`, `no_answer` or `closed`.
pub const TRANSFER_ANSWER: &str = "transfer";

impl Flow {
    pub fn state(&self, name: &str) -> Option<&State> {
        self.index.get(name).map(|&i| &self.states[i])
    }

    /// The catalogue for a language, or the flow's default language.
    pub fn catalog(&self, lang: &str) -> &Catalog {
        self.catalogs
            .get(lang)
            .or_else(|| self.catalogs.get(&self.languages[0]))
            .expect("a valid flow has a catalogue for each language")
    }

    /// The language a call uses: the one asked for if the flow has it, else the default.
    pub fn language<'a>(&'a self, wanted: &'a str) -> &'a str {
        if self.catalogs.contains_key(wanted) { wanted } else { &self.languages[0] }
    }
}

/// One state of a flow.
#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    /// Where the state's name is in the file.
    pub at: usize,
    pub kind: Kind,
    /// `keep = "why"`: the state is kept though nothing leads to it (no error for that).
    pub keep: bool,
}

/// A transition to another state, resolved to its index when the flow loads.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub at: usize,
    pub idx: usize,
}

/// A prompt id, with where it is named.
pub type PromptRef = At<String>;

/// What every question has: its prompt, how long to wait, what to say on silence or a wrong
/// key, how many tries, and where to go when the caller gives up.
#[derive(Debug, Clone)]
pub struct Question {
    pub prompt: Vec<PromptRef>,
    pub timeout: u32,
    pub tries: u32,
    pub no_input: Vec<PromptRef>,
    pub no_match: Vec<PromptRef>,
    pub give_up: Target,
    /// The key that repeats the question (`*` unless the flow says otherwise).
    pub repeat_key: Option<char>,
}

/// One key of a menu.
#[derive(Debug, Clone)]
pub struct Choice {
    pub key: At<char>,
    /// Stored in the menu's variable; the key itself when not given.
    pub value: Value,
    pub next: Target,
}

/// How the digits of a `number` state are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberFormat {
    /// A decimal with `scale` places: `365` → 36.5.
    Number,
    /// Four digits, month and day: `0412`.
    MonthDay,
    /// A string of digits kept as typed, e.g. a phone number.
    Digits,
}

/// A `number` state.
#[derive(Debug, Clone)]
pub struct NumberSpec {
    pub question: Question,
    pub var: String,
    pub min_digits: u32,
    pub max_digits: u32,
    pub scale: u8,
    /// Bounds as raw values at `scale` (36.5 with scale 1 is 365).
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub format: NumberFormat,
    /// A variable the answer must equal (the identity check), else it counts as a wrong answer.
    pub expect: Option<At<String>>,
    /// Said when the answer does not equal `expect` (defaults to the no-match prompt).
    pub mismatch: Vec<PromptRef>,
    pub next: Target,
}

/// The kinds of state.
#[derive(Debug, Clone)]
pub enum Kind {
    Say { prompt: Vec<PromptRef>, next: Target },
    Menu { question: Question, var: Option<String>, choices: Vec<Choice> },
    Number(Box<NumberSpec>),
    Confirm { question: Question, yes_key: char, no_key: char, next: Target, retry: Target },
    Action { action: Action, outcomes: Vec<(String, Target)> },
    Branch { rules: Vec<Rule>, default: Target },
    Hangup { prompt: Vec<PromptRef> },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Say { .. } => "say",
            Kind::Menu { .. } => "menu",
            Kind::Number(_) => "number",
            Kind::Confirm { .. } => "confirm",
            Kind::Action { .. } => "action",
            Kind::Branch { .. } => "branch",
            Kind::Hangup { .. } => "hangup",
        }
    }

    pub fn question(&self) -> Option<&Question> {
        match self {
            Kind::Menu { question, .. } | Kind::Confirm { question, .. } => Some(question),
            Kind::Number(n) => Some(&n.question),
            _ => None,
        }
    }

    /// Every transition out of the state, with a label for diagrams.
    pub fn edges(&self) -> Vec<(String, &Target)> {
        let mut out: Vec<(String, &Target)> = Vec::new();
        match self {
            Kind::Say { next, .. } => out.push((String::new(), next)),
            Kind::Menu { choices, .. } => out.extend(choices.iter().map(|c| (format!("key {}", c.key.value), &c.next))),
            Kind::Number(n) => out.push(("answer".into(), &n.next)),
            Kind::Confirm { yes_key, no_key, next, retry, .. } => {
                out.push((format!("key {yes_key}"), next));
                out.push((format!("key {no_key}"), retry));
            }
            Kind::Action { outcomes, .. } => out.extend(outcomes.iter().map(|(o, t)| (o.clone(), t))),
            Kind::Branch { rules, default } => {
                out.extend(rules.iter().map(|r| (r.label(), &r.next)));
                out.push(("otherwise".into(), default));
            }
            Kind::Hangup { .. } => {}
        }
        if let Some(q) = self.question() {
            out.push(("give up".into(), &q.give_up));
        }
        out
    }
}

/// A built-in action and its arguments.
#[derive(Debug, Clone)]
pub enum Action {
    /// Stores answers (the named variables, or every answer so far) and `set` values.
    RecordAnswer { vars: Vec<At<String>>, set: Vec<(String, Value)> },
    /// Issues a processing number; outcomes say how it reaches the patient.
    IssueProcessingNumber,
    /// Sends the text of a prompt by SMS: to the number in the variable `to` (one the caller
    /// typed), or to the patient's own phone.
    SendSms { message: PromptRef, to: Option<At<String>> },
    /// Tells the health centre to call the patient back: opens a follow-up item as urgent as
    /// `severity` (`normal` when the file says nothing).
    AlertHealthCenter { reason: String, severity: Urgency },
    /// Closes the call's record with a summary of its answers.
    EndCallSummary,
}

impl Action {
    /// The names operators write in `action = "…"`.
    pub const NAMES: [&str; 5] =
        ["record_answer", "issue_processing_number", "send_sms", "alert_health_center", "end_call_summary"];

    pub fn name(&self) -> &'static str {
        match self {
            Action::RecordAnswer { .. } => "record_answer",
            Action::IssueProcessingNumber => "issue_processing_number",
            Action::SendSms { .. } => "send_sms",
            Action::AlertHealthCenter { .. } => "alert_health_center",
            Action::EndCallSummary => "end_call_summary",
        }
    }

    /// The outcomes an action can have; each needs a transition.
    pub fn outcomes_of(name: &str) -> &'static [&'static str] {
        match name {
            "issue_processing_number" => &["sms", "email", "read_aloud", "failed"],
            "send_sms" => &["queued", "failed"],
            _ => &["ok"],
        }
    }

    pub fn outcomes(&self) -> &'static [&'static str] {
        Self::outcomes_of(self.name())
    }
}

/// One rule of a branch: if the variable meets the condition, go to `next`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub var: At<String>,
    pub cond: Cond,
    pub next: Target,
}

/// A branch condition.
#[derive(Debug, Clone)]
pub enum Cond {
    Equals(Value),
    /// Inclusive bounds; a missing variable is never in range.
    Range {
        min: Option<Value>,
        max: Option<Value>,
    },
    /// `missing = true`: the variable is not set; `false`: it is.
    Missing(bool),
}

impl Rule {
    pub fn label(&self) -> String {
        let v = &self.var.value;
        match &self.cond {
            Cond::Equals(x) => format!("{v} = {x}"),
            Cond::Range { min: Some(a), max: Some(b) } => format!("{a} ≤ {v} ≤ {b}"),
            Cond::Range { min: Some(a), .. } => format!("{v} ≥ {a}"),
            Cond::Range { max: Some(b), .. } => format!("{v} ≤ {b}"),
            Cond::Range { .. } => v.clone(),
            Cond::Missing(true) => format!("{v} missing"),
            Cond::Missing(false) => format!("{v} set"),
        }
    }

    pub fn matches(&self, vars: &Vars) -> bool {
        let value = vars.get(&self.var.value);
        match (&self.cond, value) {
            (Cond::Missing(m), v) => *m == v.is_none(),
            (Cond::Equals(x), Some(v)) => v.same_as(x),
            (Cond::Range { min, max }, Some(v)) => {
                let above = min.as_ref().is_none_or(|m| v.compare(m).is_some_and(|o| o.is_ge()));
                let below = max.as_ref().is_none_or(|m| v.compare(m).is_some_and(|o| o.is_le()));
                above && below
            }
            (_, None) => false,
        }
    }
}

/// What the engine asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    RecordAnswers {
        answers: Vec<(String, Value)>,
    },
    IssueProcessingNumber,
    /// `to`: a number typed during the call (digits as typed); `None` for the patient's phone.
    SendSms {
        text: String,
        to: Option<String>,
    },
    AlertHealthCenter {
        reason: String,
        /// Turns stored before severities existed read as `normal`.
        #[serde(default = "normal")]
        severity: Urgency,
    },
    EndCallSummary {
        answers: Vec<(String, Value)>,
    },
    /// The caller asked for a person: the outcome is [`TRANSFER_DIAL`] while the centre is
    /// open, else [`TRANSFER_CLOSED`].
    TransferToCentre,
}

impl Effect {
    /// A one-line description for people ("issue processing number").
    pub fn describe(&self) -> String {
        match self {
            Effect::RecordAnswers { answers } => {
                let list: Vec<String> = answers.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("record answers: {}", list.join(", "))
            }
            Effect::IssueProcessingNumber => "issue processing number".into(),
            Effect::SendSms { text, to: Some(to) } => format!("send SMS to {to}: {text}"),
            Effect::SendSms { text, to: None } => format!("send SMS: {text}"),
            Effect::AlertHealthCenter { reason, severity: Urgency::Normal } => format!("alert health centre: {reason}"),
            Effect::AlertHealthCenter { reason, severity } => format!("alert health centre ({severity}): {reason}"),
            Effect::EndCallSummary { answers } => {
                format!("end-of-call summary ({} answers)", answers.len())
            }
            Effect::TransferToCentre => "transfer to the health centre".into(),
        }
    }
}

/// The answer a flow records (`record_answer` with `set = { number_read_aloud = true }`) once
/// a number it read aloud was heard to the end: the number is then delivered.
pub const NUMBER_READ: &str = "number_read_aloud";

fn normal() -> Urgency {
    Urgency::Normal
}

/// Variables every flow may read without setting them: the patient's roster data, the call,
/// and what actions set.
pub const BUILTIN_VARS: [(&str, &str); 16] = [
    ("patient.id", "the patient's id in the roster"),
    ("patient.name", "the patient's name (read from the roster at each turn, never stored with the call)"),
    ("patient.birth_md", "birth month and day, four digits (0412)"),
    ("patient.phone", "the patient's phone number (E.164)"),
    ("patient.phone_kind", "mobile or landline"),
    ("patient.email", "the patient's e-mail address, when the roster has one"),
    ("patient.number_issued", "true while a processing number issued to the patient is valid"),
    (
        "patient.number_to_read",
        "true when the patient's valid number was delivered by no channel yet (an earlier call ended before its read-back finished, or its SMS could not reach the phone) and is to be read on this call; processing_number then holds it",
    ),
    ("call.lang", "the call's language, e.g. ja-JP"),
    (
        "call.gave_up",
        "after a failed try at a question: no_match once wrong keys were pressed at it, no_input while none were",
    ),
    ("health_center.phone", "the health centre's phone number"),
    ("health_center.opens", "when the health centre opens on its days (centre.hours), e.g. 8:30"),
    ("health_center.closes", "when the health centre closes on its days (centre.hours), e.g. 17:15"),
    (
        "transfer",
        "after the caller pressed the [transfer] key: completed, no_answer (nobody answered at the centre) or closed",
    ),
    ("processing_number", "set by issue_processing_number, or at the start when patient.number_to_read"),
    ("processing_number.expires", "when that number expires, set by issue_processing_number"),
];
