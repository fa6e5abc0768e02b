//! A flow as a web form (the patient's self-report page): which questions a page shows, in
//! which wording, and whether the answers given so far are accepted. Pure, like the engine,
//! whose [`step`] judges every answer exactly as on the phone.
//!
//! The form follows the flow's path: say states become notes above the next question, a menu
//! becomes radio buttons (labelled by `[web] choice.…`), a number a field with its range and
//! unit, a read-back confirmation is left to the review step before sending, a branch is taken
//! on the answers given, an action with one outcome is passed over (its effect happens when the
//! page is sent). A page ([`Walk::group`]) holds the questions whose turn does not depend on one
//! another's answers: a menu whose options lead to different states, or a branch on an answer of
//! the page, starts the next page. The walk stops before an action the flow waits on (issuing a
//! number): sending the form is what runs it.

use std::collections::BTreeMap;

use super::engine::{CallState, Input, Phase, step};
use super::prompts::{Format, read_aloud};
use super::{Action, Flow, Kind, NumberFormat, NumberSpec, Value, Vars};
use crate::types::Digits;

/// The answers of a form as sent: the raw text of each question's field, by state name.
pub type Posted = BTreeMap<String, String>;

/// How a question is answered on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Radio buttons: each option's key (what is sent) and label.
    Choice { options: Vec<(String, String)> },
    /// A decimal number: its bounds as shown (`34.0`), the decimals it takes and its unit.
    Number { min: Option<String>, max: Option<String>, scale: u8, unit: Option<String> },
    /// A month and day, four digits (`0412`).
    MonthDay,
    /// A string of digits (a phone number), `min` to `max` of them.
    Digits { min: u32, max: u32 },
}

/// Why an answer is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing was given.
    Missing,
    /// Not a value the question takes (out of range, not a number, not an option).
    Invalid,
    /// A well-formed value that differs from the one on file (the identity check), with the
    /// flow's own words for it.
    Mismatch(String),
}

/// One question of the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The state's name: the field's name in the form.
    pub state: String,
    /// The question in the page's wording.
    pub label: String,
    /// What the flow says before this question (its say states, in the web wording).
    pub notes: Vec<String>,
    pub control: Control,
    /// The text sent for it ("" when none).
    pub value: String,
    /// The accepted answer as the review step shows it (`36.5 ℃`, `はい`).
    pub shown: Option<String>,
    pub problem: Option<Problem>,
    /// The page it is on, from 0.
    pub group: usize,
}

/// Where the walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every question on the path is answered: the form can be reviewed and sent.
    Complete,
    /// A question on page `group` is unanswered or refused.
    Open { group: usize },
}

/// The form for the answers given so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub fields: Vec<Field>,
    pub end: End,
    /// What the flow says after the last question, up to the action it waits on or its end.
    pub after: Vec<String>,
}

impl Walk {
    /// The page to show: the one with the first unanswered or refused question.
    pub fn group(&self) -> Option<usize> {
        match self.end {
            End::Open { group } => Some(group),
            End::Complete => None,
        }
    }
}

/// How many states the walk passes before it gives up (validation rules out loops that ask
/// nothing; a loop through questions is cut here).
const MAX_HOPS: usize = 512;

/// Walks `flow` in `lang` for a patient with `vars` (their variables, as a call starts with
/// them), taking the answers in `posted`. `outcomes` gives the outcome of an action the flow
/// waits on, by its state's name (after the form was sent); without one the walk stops there.
pub fn walk(flow: &Flow, lang: &str, vars: &Vars, posted: &Posted, outcomes: &BTreeMap<String, String>) -> Walk {
    let catalog = flow.catalog(lang);
    let mut vars = vars.clone();
    let mut fields: Vec<Field> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut group = 0;
    // Variables answered on the current page: a branch on one of them starts the next page.
    let mut page_vars: Vec<String> = Vec::new();
    let mut open: Option<usize> = None;
    let mut idx = flow.start;
    // Past an action the form's sending ran: a question now is one the page never asks (the
    // phone's read-back of a number), and ends the walk.
    let mut acted = false;
    for _ in 0..MAX_HOPS {
        let state = &flow.states[idx];
        match &state.kind {
            Kind::Say { prompt, next } => {
                notes.extend(prompt.iter().map(|p| catalog.web_text(&p.value, &vars)));
                idx = next.idx;
            }
            Kind::Hangup { prompt } => {
                notes.extend(prompt.iter().map(|p| catalog.web_text(&p.value, &vars)));
                break;
            }
            Kind::Branch { rules, default } => {
                let reads_page = rules.iter().any(|r| page_vars.contains(&r.var.value));
                if reads_page {
                    if open.is_some() {
                        break;
                    }
                    group += 1;
                    page_vars.clear();
                }
                idx = rules.iter().find(|r| r.matches(&vars)).map_or(default.idx, |r| r.next.idx);
            }
            Kind::Action { action, outcomes: outs } => {
                if let Action::RecordAnswer { set, .. } = action {
                    for (k, v) in set {
                        vars.insert(k.clone(), v.clone());
                    }
                }
                if outs.len() == 1 {
                    idx = outs[0].1.idx;
                    continue;
                }
                match (open, outcomes.get(&state.name)) {
                    (None, Some(name)) => {
                        let to =
                            outs.iter().find(|(o, _)| o == name).or_else(|| outs.iter().find(|(o, _)| o == "failed"));
                        idx = to.unwrap_or(&outs[0]).1.idx;
                        acted = true;
                    }
                    _ => break,
                }
            }
            Kind::Confirm { next, .. } => idx = next.idx,
            Kind::Menu { question, var, choices } => {
                if acted {
                    break;
                }
                let prompt = question.prompt.first().map_or("", |p| p.value.as_str());
                let options: Vec<(String, String)> = choices
                    .iter()
                    .map(|c| {
                        let value = c.value.to_string();
                        let label = catalog.choice_label(prompt, &value, &vars).unwrap_or_else(|| value.clone());
                        (c.key.value.to_string(), label)
                    })
                    .collect();
                let same_next = choices.windows(2).all(|w| w[0].next.idx == w[1].next.idx);
                let mut field = field(
                    state.name.clone(),
                    question_label(catalog, &question.prompt, &vars),
                    &mut notes,
                    group,
                    posted,
                );
                field.control = Control::Choice { options: options.clone() };
                let chosen = choices.iter().find(|c| c.key.value.to_string() == field.value);
                page_vars.extend(var.clone());
                match (open, chosen) {
                    (None, Some(c)) => {
                        if let Some(v) = var {
                            vars.insert(v.clone(), c.value.clone());
                        }
                        field.shown = options.iter().find(|(k, _)| *k == field.value).map(|(_, l)| l.clone());
                        fields.push(field);
                        idx = c.next.idx;
                        if !same_next {
                            group += 1;
                            page_vars.clear();
                        }
                    }
                    (_, chosen) => {
                        if chosen.is_none() {
                            field.problem =
                                Some(if field.value.is_empty() { Problem::Missing } else { Problem::Invalid });
                        }
                        open.get_or_insert(group);
                        fields.push(field);
                        if !same_next || choices.is_empty() {
                            break;
                        }
                        idx = choices[0].next.idx;
                    }
                }
            }
            Kind::Number(n) => {
                if acted {
                    break;
                }
                let mut field = field(
                    state.name.clone(),
                    question_label(catalog, &n.question.prompt, &vars),
                    &mut notes,
                    group,
                    posted,
                );
                field.control = control(n, catalog.unit(&n.var));
                let judged = judge(flow, state.name.as_str(), n, &field.value, &vars);
                page_vars.push(n.var.clone());
                match (open, judged) {
                    (None, Ok(value)) => {
                        field.shown =
                            Some(shown(n, &field.value, &value, &field.control, catalog.lang.starts_with("ja")));
                        vars.insert(n.var.clone(), value);
                    }
                    (_, judged) => {
                        if let Err(p) = judged {
                            field.problem = Some(p);
                        }
                        open.get_or_insert(group);
                    }
                }
                fields.push(field);
                idx = n.next.idx;
            }
        }
    }
    let end = match open {
        Some(group) => End::Open { group },
        None => End::Complete,
    };
    Walk { fields, end, after: notes }
}

fn field(state: String, label: String, notes: &mut Vec<String>, group: usize, posted: &Posted) -> Field {
    Field {
        value: posted.get(&state).map(|v| v.trim().to_string()).unwrap_or_default(),
        state,
        label,
        notes: std::mem::take(notes),
        control: Control::Choice { options: vec![] },
        shown: None,
        problem: None,
        group,
    }
}

fn question_label(catalog: &super::prompts::Catalog, prompts: &[super::PromptRef], vars: &Vars) -> String {
    prompts.iter().map(|p| catalog.web_text(&p.value, vars)).collect::<Vec<_>>().join(" ")
}

fn control(n: &NumberSpec, unit: Option<String>) -> Control {
    let bound = |b: Option<i64>| b.map(|raw| Value::Number { raw, scale: n.scale }.to_string());
    match n.format {
        NumberFormat::Number => Control::Number { min: bound(n.min), max: bound(n.max), scale: n.scale, unit },
        NumberFormat::MonthDay => Control::MonthDay,
        NumberFormat::Digits => Control::Digits { min: n.min_digits, max: n.max_digits },
    }
}

fn shown(n: &NumberSpec, typed: &str, value: &Value, control: &Control, ja: bool) -> String {
    match (n.format, control) {
        (NumberFormat::Number, Control::Number { unit: Some(u), .. }) => format!("{value} {u}"),
        (NumberFormat::Number, _) => value.to_string(),
        (NumberFormat::MonthDay, _) => {
            let keys = to_keys(n, typed).unwrap_or_default();
            read_aloud(&Value::text(keys), Format::MonthDay, ja)
        }
        (NumberFormat::Digits, _) => to_keys(n, typed).unwrap_or_default(),
    }
}

/// Full-width digits and signs (as a Japanese keyboard types them) as ASCII, spaces dropped.
fn ascii(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            '．' | '。' => '.',
            '－' | 'ー' | '‐' | '―' => '-',
            '／' => '/',
            c => c,
        })
        .collect()
}

/// The keys a phone would press for a field's text: `36.5` → `365` (at the question's
/// scale), `4/12` or `0412` → `0412`, `090-1234-5678` → `09012345678`. `None` when the text is
/// no such value.
pub fn to_keys(n: &NumberSpec, text: &str) -> Option<String> {
    let t = ascii(text);
    if t.is_empty() {
        return None;
    }
    match n.format {
        NumberFormat::Number => {
            let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(whole) || (!frac.is_empty() && !digits(frac)) || frac.len() > usize::from(n.scale) {
                return None;
            }
            let whole: i64 = whole.parse().ok()?;
            let frac_raw: i64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
            let pad = 10i64.checked_pow(u32::from(n.scale) - frac.len() as u32)?;
            let raw = whole.checked_mul(10i64.checked_pow(u32::from(n.scale))?)?.checked_add(frac_raw * pad)?;
            Some(raw.to_string())
        }
        NumberFormat::MonthDay => {
            let parts: Vec<&str> = t.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).collect();
            match parts.as_slice() {
                [md] if md.len() == 4 => Some(md.to_string()),
                [md] if md.len() == 3 => Some(format!("0{md}")),
                [m, d] if m.len() <= 2 && d.len() <= 2 => Some(format!("{:0>2}{:0>2}", m, d)),
                _ => None,
            }
        }
        NumberFormat::Digits => {
            let d: String = t.chars().filter(|c| *c != '-').collect();
            d.bytes().all(|b| b.is_ascii_digit()).then_some(d)
        }
    }
}

/// The engine's verdict on a number typed at state `state`: the value it stores, or why not.
fn judge(flow: &Flow, state: &str, n: &NumberSpec, text: &str, vars: &Vars) -> Result<Value, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::Missing);
    }
    let keys = to_keys(n, text).ok_or(Problem::Invalid)?;
    let mut vars = vars.clone();
    vars.remove(&n.var);
    let answer = keys_at(flow, state, &keys, &vars).ok_or(Problem::Invalid)?;
    if let Some(v) = answer.get(&n.var) {
        return Ok(v.clone());
    }
    // Refused: a well-formed value that is not the one on file is a mismatch.
    let Some(expect) = &n.expect else { return Err(Problem::Invalid) };
    let len = keys.len() as u32;
    let well_formed = len >= n.min_digits
        && len <= n.max_digits
        && (n.format != NumberFormat::MonthDay || month_day(&keys).is_some());
    if well_formed && vars.contains_key(&expect.value) {
        let catalog = flow.catalog(&vars.get("call.lang").map(|v| v.to_string()).unwrap_or_default());
        let words = n.mismatch.iter().map(|p| catalog.web_text(&p.value, &vars)).collect::<Vec<_>>().join(" ");
        return Err(Problem::Mismatch(words));
    }
    Err(Problem::Invalid)
}

fn month_day(keys: &str) -> Option<chrono::NaiveDate> {
    let (m, d) = (keys.get(..2)?.parse().ok()?, keys.get(2..)?.parse().ok()?);
    chrono::NaiveDate::from_ymd_opt(2000, m, d)
}

/// Steps the engine once at question `state` with `keys`; the variables after the step, or
/// `None` when the keys are not an answer at all (the key that asks for a person).
fn keys_at(flow: &Flow, state: &str, keys: &str, vars: &Vars) -> Option<Vars> {
    let digits = Digits::parse(keys).ok()?;
    let call = CallState {
        flow: flow.name.clone(),
        version: flow.version.clone(),
        lang: vars.get("call.lang").map(|v| v.to_string()).unwrap_or_default(),
        state: state.to_string(),
        phase: Phase::Asking,
        tries: 0,
        vars: vars.clone(),
    };
    let s = step(flow, &call, Input::Digits(digits));
    (s.state.phase != Phase::Transfer).then_some(s.state.vars)
}

/// The keys the engine is given at a question of a sent form, by state name: a menu's chosen
/// key, a number's digits and `#`, a confirmation's "correct" key (the review step confirmed
/// every answer). `None` when the form has no answer for it.
pub fn keys_for(flow: &Flow, state: &str, posted: &Posted) -> Option<Digits> {
    let s = flow.state(state)?;
    let keys = match &s.kind {
        Kind::Menu { .. } => posted.get(state)?.trim().to_string(),
        Kind::Number(n) => format!("{}#", to_keys(n, posted.get(state)?)?),
        Kind::Confirm { yes_key, .. } => yes_key.to_string(),
        _ => return None,
    };
    Digits::parse(&keys).ok()
}

/// A value typed that is well formed but not the one on file (the identity check's birth date):
/// the question's state, its tries (on the web, a day's), and the alert the flow raises when
/// the caller gives up on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatched {
    pub state: String,
    pub tries: u32,
    /// The first `alert_health_center` on the question's give-up path (through actions and
    /// branches' defaults), as `(reason, severity)`.
    pub alert: Option<(String, crate::types::Severity)>,
}

/// The first question of the walk refused as a mismatch, if any.
pub fn mismatched(flow: &Flow, walk: &Walk) -> Option<Mismatched> {
    let field = walk.fields.iter().find(|f| matches!(f.problem, Some(Problem::Mismatch(_))))?;
    let question = flow.state(&field.state)?.kind.question()?;
    let mut at = question.give_up.idx;
    let mut alert = None;
    for _ in 0..flow.states.len() {
        match &flow.states[at].kind {
            Kind::Action { action: Action::AlertHealthCenter { reason, severity }, .. } => {
                alert = Some((reason.clone(), *severity));
                break;
            }
            Kind::Action { outcomes, .. } if !outcomes.is_empty() => at = outcomes[0].1.idx,
            Kind::Say { next, .. } => at = next.idx,
            Kind::Branch { default, .. } => at = default.idx,
            _ => break,
        }
    }
    Some(Mismatched { state: field.state.clone(), tries: question.tries, alert })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Library;

    fn flow() -> Flow {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (lib, _) = Library::load_dirs(&root.join("call-flows"), &root.join("prompts")).unwrap();
        (*lib.flow("daily-health-check").unwrap().clone()).clone()
    }

    fn patient(lang: &str) -> Vars {
        let mut v = Vars::new();
        v.insert("call.lang".into(), Value::text(lang));
        v.insert("patient.id".into(), Value::text("p1"));
        v.insert("patient.birth_md".into(), Value::text("0412"));
        v.insert("patient.phone".into(), Value::text("+819012345678"));
        v.insert("patient.phone_kind".into(), Value::text("mobile"));
        v.insert("patient.number_issued".into(), Value::Bool(false));
        v.insert("patient.number_to_read".into(), Value::Bool(false));
        v
    }

    fn posted(pairs: &[(&str, &str)]) -> Posted {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn names(w: &Walk, group: usize) -> Vec<&str> {
        w.fields.iter().filter(|f| f.group == group).map(|f| f.state.as_str()).collect()
    }

    #[test]
    fn the_first_page_asks_up_to_the_first_question_whose_answer_decides_the_way() {
        let f = flow();
        let w = walk(&f, "ja-JP", &patient("ja-JP"), &Posted::new(), &BTreeMap::new());
        assert_eq!(w.end, End::Open { group: 0 });
        assert_eq!(names(&w, 0), ["identity", "temperature", "oximeter"]);
        assert_eq!(w.fields[0].notes, ["保健所の健康観察です。本日の体調をお知らせください。"]);
        assert_eq!(w.fields[1].label, "本日の体温");
        assert_eq!(
            w.fields[1].control,
            Control::Number { min: Some("34.0".into()), max: Some("42.0".into()), scale: 1, unit: Some("℃".into()) }
        );
        assert_eq!(
            w.fields[2].control,
            Control::Choice {
                options: vec![("1".into(), "持っている".into()), ("2".into(), "持っていない".into())]
            }
        );
        assert!(w.fields.iter().all(|f| f.problem == Some(Problem::Missing)));
    }

    #[test]
    fn answers_out_of_range_or_not_on_file_are_refused_beside_their_field() {
        let f = flow();
        let p = posted(&[("identity", "0101"), ("temperature", "45"), ("oximeter", "1")]);
        let w = walk(&f, "en-US", &patient("en-US"), &p, &BTreeMap::new());
        assert_eq!(w.end, End::Open { group: 0 });
        assert_eq!(w.fields[0].problem, Some(Problem::Mismatch("This birth date does not match ours.".into())));
        assert_eq!(w.fields[1].problem, Some(Problem::Invalid));
        assert_eq!(w.fields[2].problem, None);
        // The birth date's tries and the alert of its give-up path, as a call would raise it.
        let m = mismatched(&f, &w).expect("a mismatch");
        let alert = Some(("identity_not_confirmed".to_string(), crate::types::Severity::Normal));
        assert_eq!(m, Mismatched { state: "identity".into(), tries: 3, alert });
        let p = posted(&[("identity", "４/１２"), ("temperature", "３６．５"), ("oximeter", "1")]);
        let w = walk(&f, "ja-JP", &patient("ja-JP"), &p, &BTreeMap::new());
        assert_eq!(mismatched(&f, &w), None);
        assert_eq!(w.fields[0].problem, None, "full-width digits and 4/12 are a birth date");
        assert_eq!(w.fields[1].shown.as_deref(), Some("36.5 ℃"));
        assert_eq!(names(&w, 1), ["spo2", "breathless", "cough", "fatigue", "taste_smell", "trend"]);
        assert_eq!(w.end, End::Open { group: 1 });
    }

    #[test]
    fn a_whole_report_ends_before_the_number_is_issued_and_the_way_follows_the_answers() {
        let f = flow();
        let mut answers = vec![
            ("identity", "0412"),
            ("temperature", "37"),
            ("oximeter", "2"),
            ("breathless", "2"),
            ("cough", "1"),
            ("fatigue", "2"),
            ("taste_smell", "2"),
            ("trend", "3"),
        ];
        let w = walk(&f, "ja-JP", &patient("ja-JP"), &posted(&answers), &BTreeMap::new());
        assert_eq!(w.fields[1].shown.as_deref(), Some("37.0 ℃"));
        assert_eq!(w.end, End::Open { group: 2 });
        let app = w.fields.last().unwrap();
        assert_eq!((app.state.as_str(), app.label.as_str()), ("app_use", "接触確認アプリの利用有無"));
        assert!(app.notes[0].starts_with("保健所から、折り返しお電話いたします。"), "feeling worse: {:?}", app.notes);
        assert_eq!(
            app.control,
            Control::Choice { options: vec![("1".into(), "あり".into()), ("2".into(), "なし".into())] }
        );
        answers.extend([("app_use", "1"), ("consent", "1")]);
        let w = walk(&f, "ja-JP", &patient("ja-JP"), &posted(&answers), &BTreeMap::new());
        assert_eq!(w.end, End::Complete);
        assert!(w.fields.iter().all(|f| f.problem.is_none()));
        let sent: BTreeMap<String, String> = [("issue".to_string(), "sms".to_string())].into();
        let done = walk(&f, "ja-JP", &patient("ja-JP"), &posted(&answers), &sent);
        assert_eq!(
            done.after.first().map(String::as_str),
            Some(
                "処理番号をショートメッセージでもお送りしました。接触確認アプリに入力して、陽性登録をお願いいたします。"
            )
        );
    }

    #[test]
    fn a_form_gives_the_engine_the_keys_a_phone_would_press() {
        let f = flow();
        let p = posted(&[("temperature", "36.5"), ("oximeter", "1"), ("identity", "4月12日")]);
        assert_eq!(keys_for(&f, "temperature", &p).unwrap().as_str(), "365#");
        assert_eq!(keys_for(&f, "oximeter", &p).unwrap().as_str(), "1");
        assert_eq!(keys_for(&f, "identity", &p).unwrap().as_str(), "0412#");
        assert_eq!(keys_for(&f, "temperature_confirm", &p).unwrap().as_str(), "1");
        assert_eq!(keys_for(&f, "spo2", &p), None);
        assert_eq!(keys_for(&f, "temperature", &posted(&[("temperature", "36.55")])), None);
    }
}
