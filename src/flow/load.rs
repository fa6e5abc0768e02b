//! A flow file into a [`Flow`]. The file is read to the end whatever it holds, so an operator
//! sees every problem at once, each at its `file:line:col`.

use std::collections::{BTreeMap, HashMap};

use toml::Spanned;
use toml::de::DeValue;

use crate::types::Severity as Urgency;

use super::source::{At, Diagnostics, Fields, Source, closest, parse_toml, type_name};
use super::{
    Action, BUILTIN_VARS, Choice, Cond, Flow, Kind, NumberFormat, NumberSpec, PromptRef, Question, Rule, State, Target,
    Transfer, TransferPrompts, Value,
};

const QUESTION_FIELDS: [&str; 7] = ["prompt", "timeout", "tries", "no_input", "no_match", "give_up", "repeat_key"];
const KINDS: [&str; 7] = ["say", "menu", "number", "confirm", "action", "branch", "hangup"];
const VALID_KEYS: &str = "0123456789*#";

/// Question settings from `[defaults]`, used where a state does not set its own.
struct Defaults {
    timeout: u32,
    tries: u32,
    no_input: Vec<PromptRef>,
    no_match: Vec<PromptRef>,
    give_up: Option<At<String>>,
    repeat_key: Option<char>,
}

/// Parses a flow file. `None` when it has errors (all of them are in `diags`); the returned
/// flow has no catalogues yet ([`super::Library`] attaches them and validates across files).
pub fn parse(name: &str, src: Source, diags: &mut Diagnostics) -> Option<Flow> {
    let before = diags.error_count();
    let doc = parse_toml(&src, diags)?;
    let mut top = Fields::of_table(&src, "the flow file", doc.get_ref(), 0);

    let mut title = name.to_string();
    let mut languages = Vec::new();
    let mut start = None;
    match top.raw("flow") {
        Some(v) => {
            if let Some(mut f) = Fields::new(&src, "[flow]", v, diags) {
                if let Some(n) = f.str("name", diags) {
                    if n.value != name {
                        diags.error(
                            &src,
                            n.at,
                            format!(
                                "name '{}' differs from the file name '{name}': a flow is known by its file name",
                                n.value
                            ),
                        );
                    }
                }
                title = f.str("title", diags).map_or(title, |t| t.value);
                match f.strings("languages", diags) {
                    Some(l) if !l.is_empty() => languages = l,
                    Some(_) => diags.error(
                        &src,
                        f.key_at("languages").unwrap_or(0),
                        "languages must name at least one language, e.g. [\"ja-JP\"]",
                    ),
                    None => diags.error(&src, f.at(), "[flow] needs languages = [\"ja-JP\", …]"),
                }
                start = f.str("start", diags);
                if !f.has("start") {
                    diags.error(&src, f.at(), "no start state: [flow] needs start = \"first state\"");
                }
                f.finish(&["name", "title", "languages", "start"], diags);
            }
        }
        None => diags.error(&src, 0, "no [flow] table: a flow file begins with [flow] (name, languages, start)"),
    }
    for l in &languages {
        if !is_language_tag(&l.value) {
            diags.error(&src, l.at, format!("'{}' is not a language tag like ja-JP or en-US", l.value));
        }
    }

    let defaults = match top.raw("defaults") {
        Some(v) => read_defaults(&src, v, diags),
        None => {
            Defaults { timeout: 8, tries: 3, no_input: vec![], no_match: vec![], give_up: None, repeat_key: Some('*') }
        }
    };

    let mut states = Vec::new();
    match top.raw("states") {
        Some(v) => match v.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let sname = k.get_ref().to_string();
                    if !is_name(&sname) {
                        diags.error(
                            &src,
                            k.span().start,
                            format!("state name '{sname}' may use only letters, digits, '_' and '-'"),
                        );
                    }
                    // A state with errors still takes its name, so transitions to it resolve
                    // and the operator is not told twice about one mistake.
                    let mut keep = false;
                    let kind = read_state(&src, &sname, v, &defaults, &mut keep, diags)
                        .unwrap_or(Kind::Hangup { prompt: vec![] });
                    states.push(State { name: sname, at: k.span().start, kind, keep });
                }
            }
            other => diags.error(
                &src,
                v.span().start,
                format!("states must be tables ([states.name]), not {}", type_name(other)),
            ),
        },
        None => diags.error(&src, 0, "no states: add [states.NAME] tables"),
    }
    let transfer = top.raw("transfer").and_then(|v| read_transfer(&src, v, diags));
    top.finish(&["flow", "defaults", "states", "transfer"], diags);
    if let Some(t) = &transfer {
        check_transfer_key(&src, t, &states, diags);
    }

    let index: HashMap<String, usize> = states.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    let names: Vec<String> = states.iter().map(|s| s.name.clone()).collect();
    let resolve = |t: &mut Target, diags: &mut Diagnostics| match index.get(&t.name) {
        Some(&i) => t.idx = i,
        // A missing or mistyped transition field is reported where it is read.
        None if t.name.is_empty() => {}
        None => {
            let hint = closest(&t.name, names.iter().map(String::as_str))
                .map_or(String::new(), |s| format!("; did you mean '{s}'?"));
            diags.error(&src, t.at, format!("no state named '{}'{hint}", t.name));
        }
    };
    let mut start_idx = 0;
    if let Some(s) = &start {
        let mut t = Target { name: s.value.clone(), at: s.at, idx: 0 };
        resolve(&mut t, diags);
        start_idx = t.idx;
    }
    for state in &mut states {
        for t in targets_mut(&mut state.kind) {
            resolve(t, diags);
        }
    }
    if diags.error_count() > before {
        return None;
    }
    Some(Flow {
        name: name.to_string(),
        title,
        language_at: languages.iter().map(|l| l.at).collect(),
        languages: languages.into_iter().map(|l| l.value).collect(),
        start: start_idx,
        states,
        index,
        version: String::new(),
        catalogs: BTreeMap::new(),
        broken_catalogs: Vec::new(),
        source: src,
        transfer,
    })
}

/// Seconds a transfer rings the centre when the flow does not say.
const TRANSFER_TIMEOUT: u32 = 20;

/// `[transfer]`: `key` (default `"0"`), `enabled` (default true), `timeout` in seconds
/// (default 20, 5 to 120). `None` when it is turned off or has errors.
fn read_transfer(src: &Source, v: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Option<Transfer> {
    let mut f = Fields::new(src, "[transfer]", v, diags)?;
    let at = f.at();
    let key = match f.str("key", diags) {
        Some(k) => {
            let c = read_key(src, &k, diags);
            if c == Some('#') {
                diags.error(src, k.at, "# ends the caller's numbers and cannot ask for a person; use 0");
            }
            c.filter(|&c| c != '#').map(|c| At::new(c, k.at))
        }
        None if f.has("key") => None,
        None => Some(At::new('0', at)),
    };
    let enabled = f.bool("enabled", diags).is_none_or(|e| e.value);
    let timeout = match f.count("timeout", 5, diags) {
        Some(t) if t.value > 120 => {
            diags.error(src, t.at, "timeout is at most 120 seconds: the caller waits while it rings");
            TRANSFER_TIMEOUT
        }
        Some(t) => t.value,
        None => TRANSFER_TIMEOUT,
    };
    f.finish(&["key", "enabled", "timeout"], diags);
    let key = key?;
    enabled.then(|| Transfer { key, timeout, prompts: TransferPrompts::at(at) })
}

/// The transfer key must not be an answer at any question: not a menu's or a confirmation's
/// key, not the key that repeats a question, and not a whole answer to a number question.
fn check_transfer_key(src: &Source, t: &Transfer, states: &[State], diags: &mut Diagnostics) {
    let k = t.key.value;
    let taken = |what: String| {
        format!(
            "{what}, but [transfer] key = \"{k}\" asks for a person at every question; use another key here, or change or turn off [transfer]"
        )
    };
    for s in states {
        let Some(q) = s.kind.question() else { continue };
        if q.repeat_key == Some(k) {
            diags.error(src, s.at, taken(format!("state '{}' repeats its question on key {k}", s.name)));
        }
        match &s.kind {
            Kind::Menu { choices, .. } => {
                for c in choices.iter().filter(|c| c.key.value == k) {
                    diags.error(src, c.key.at, taken(format!("key {k} is a choice of state '{}'", s.name)));
                }
            }
            Kind::Confirm { yes_key, no_key, .. } if *yes_key == k || *no_key == k => {
                diags.error(src, s.at, taken(format!("state '{}' confirms with key {k}", s.name)));
            }
            Kind::Number(n) if number_takes(n, k) => {
                let what = format!(
                    "state '{}' takes the single key {k} as an answer (set min_digits = 2 or a min above it)",
                    s.name
                );
                diags.error(src, s.at, taken(what));
            }
            _ => {}
        }
    }
}

/// Whether a number question accepts the key alone as its answer.
fn number_takes(n: &NumberSpec, k: char) -> bool {
    let Some(d) = k.to_digit(10) else { return false };
    if n.min_digits > 1 {
        return false;
    }
    match n.format {
        NumberFormat::Digits => true,
        NumberFormat::MonthDay => false,
        NumberFormat::Number => {
            let in_range = |r: i64| n.min.is_none_or(|m| r >= m) && n.max.is_none_or(|m| r <= m);
            let d = i64::from(d);
            in_range(d) || (n.scale > 0 && in_range(d * 10i64.pow(u32::from(n.scale))))
        }
    }
}

fn targets_mut(kind: &mut Kind) -> Vec<&mut Target> {
    let mut out: Vec<&mut Target> = Vec::new();
    match kind {
        Kind::Say { next, .. } => out.push(next),
        Kind::Menu { question, choices, .. } => {
            out.push(&mut question.give_up);
            out.extend(choices.iter_mut().map(|c| &mut c.next));
        }
        Kind::Number(n) => {
            out.push(&mut n.question.give_up);
            out.push(&mut n.next);
        }
        Kind::Confirm { question, next, retry, .. } => {
            out.push(&mut question.give_up);
            out.push(next);
            out.push(retry);
        }
        Kind::Action { outcomes, .. } => out.extend(outcomes.iter_mut().map(|(_, t)| t)),
        Kind::Branch { rules, default } => {
            out.extend(rules.iter_mut().map(|r| &mut r.next));
            out.push(default);
        }
        Kind::Hangup { .. } => {}
    }
    out
}

fn read_defaults(src: &Source, v: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Defaults {
    let mut d =
        Defaults { timeout: 8, tries: 3, no_input: vec![], no_match: vec![], give_up: None, repeat_key: Some('*') };
    let Some(mut f) = Fields::new(src, "[defaults]", v, diags) else {
        return d;
    };
    d.timeout = f.count("timeout", 1, diags).map_or(d.timeout, |t| t.value);
    d.tries = f.count("tries", 1, diags).map_or(d.tries, |t| t.value);
    d.no_input = f.strings("no_input", diags).unwrap_or_default();
    d.no_match = f.strings("no_match", diags).unwrap_or_default();
    d.give_up = f.str("give_up", diags);
    if let Some(k) = f.str("repeat_key", diags) {
        d.repeat_key = read_optional_key(src, &k, diags);
    }
    f.finish(&["timeout", "tries", "no_input", "no_match", "give_up", "repeat_key"], diags);
    d
}

fn read_optional_key(src: &Source, k: &At<String>, diags: &mut Diagnostics) -> Option<char> {
    if k.value.is_empty() {
        return None;
    }
    read_key(src, k, diags)
}

fn read_key(src: &Source, k: &At<String>, diags: &mut Diagnostics) -> Option<char> {
    let mut chars = k.value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if VALID_KEYS.contains(c) => Some(c),
        _ => {
            diags.error(src, k.at, format!("'{}' is not a key: a key is one of 0-9, * or #", k.value));
            None
        }
    }
}

fn target(t: At<String>) -> Target {
    Target { name: t.value, at: t.at, idx: usize::MAX }
}

/// A required transition field.
fn need_target(f: &mut Fields<'_, '_>, key: &str, what: &str, diags: &mut Diagnostics) -> Target {
    match f.str(key, diags) {
        Some(t) => target(t),
        None => {
            if !f.has(key) {
                diags.error(f.src(), f.at(), format!("{what} needs {key} = \"state\""));
            }
            Target { name: String::new(), at: f.at(), idx: usize::MAX }
        }
    }
}

fn read_state(
    src: &Source,
    name: &str,
    v: &Spanned<DeValue<'_>>,
    defaults: &Defaults,
    keep: &mut bool,
    diags: &mut Diagnostics,
) -> Option<Kind> {
    let what = format!("state '{name}'");
    let mut f = Fields::new(src, &what, v, diags)?;
    if let Some(why) = f.str("keep", diags) {
        if why.value.trim().is_empty() {
            diags.error(src, why.at, format!("{what}: keep says why the state is kept though nothing leads to it"));
        }
        *keep = true;
    }
    let Some(kind) = f.str("kind", diags) else {
        if !f.has("kind") {
            diags.error(src, f.at(), format!("{what} needs kind = one of {}", KINDS.join(", ")));
        }
        return None;
    };
    let (state, allowed): (Option<Kind>, Vec<&str>) = match kind.value.as_str() {
        "say" => {
            let prompt = need_prompt(&mut f, &what, diags);
            let next = need_target(&mut f, "next", &what, diags);
            (Some(Kind::Say { prompt, next }), vec!["prompt", "next"])
        }
        "hangup" => (Some(Kind::Hangup { prompt: f.strings("prompt", diags).unwrap_or_default() }), vec!["prompt"]),
        "menu" => {
            let question = read_question(&mut f, &what, defaults, diags);
            let var = f.str("var", diags).map(|v| check_var_name(src, v, diags));
            let choices = read_choices(&mut f, &what, question.repeat_key, diags);
            (Some(Kind::Menu { question, var, choices }), with_question(&["var", "choices"]))
        }
        "number" => (
            read_number(&mut f, &what, defaults, diags),
            with_question(&[
                "var",
                "digits",
                "min_digits",
                "max_digits",
                "scale",
                "min",
                "max",
                "format",
                "expect",
                "mismatch",
                "next",
            ]),
        ),
        "confirm" => {
            let question = read_question(&mut f, &what, defaults, diags);
            let yes_key = f.str("yes_key", diags).and_then(|k| read_key(src, &k, diags)).unwrap_or('1');
            let no_key = f.str("no_key", diags).and_then(|k| read_key(src, &k, diags)).unwrap_or('2');
            if yes_key == no_key || Some(yes_key) == question.repeat_key || Some(no_key) == question.repeat_key {
                diags.error(src, f.at(), format!("{what}: yes_key, no_key and repeat_key must be different keys"));
            }
            let next = need_target(&mut f, "next", &what, diags);
            let retry = need_target(&mut f, "retry", &what, diags);
            (
                Some(Kind::Confirm { question, yes_key, no_key, next, retry }),
                with_question(&["yes_key", "no_key", "next", "retry"]),
            )
        }
        "action" => (
            read_action(&mut f, &what, diags),
            vec!["action", "next", "on", "vars", "set", "message", "to", "reason", "severity"],
        ),
        "branch" => (read_branch(&mut f, &what, diags), vec!["rules", "default"]),
        other => {
            let hint = closest(other, KINDS)
                .map_or_else(|| format!("; kinds: {}", KINDS.join(", ")), |s| format!("; did you mean '{s}'?"));
            diags.error(src, kind.at, format!("unknown state kind '{other}'{hint}"));
            return None;
        }
    };
    let mut allowed = allowed;
    allowed.extend(["kind", "keep"]);
    f.finish(&allowed, diags);
    state
}

fn with_question(extra: &[&'static str]) -> Vec<&'static str> {
    QUESTION_FIELDS.iter().chain(extra).copied().collect()
}

fn need_prompt(f: &mut Fields<'_, '_>, what: &str, diags: &mut Diagnostics) -> Vec<PromptRef> {
    match f.strings("prompt", diags) {
        Some(p) if !p.is_empty() => p,
        Some(_) => {
            diags.error(f.src(), f.key_at("prompt").unwrap_or(f.at()), format!("{what}: prompt lists no prompt"));
            vec![]
        }
        None => {
            if !f.has("prompt") {
                diags.error(f.src(), f.at(), format!("{what} needs prompt = \"prompt id\""));
            }
            vec![]
        }
    }
}

fn read_question(f: &mut Fields<'_, '_>, what: &str, d: &Defaults, diags: &mut Diagnostics) -> Question {
    let src = f.src();
    let prompt = need_prompt(f, what, diags);
    let timeout = f.count("timeout", 1, diags).map_or(d.timeout, |t| t.value);
    let tries = f.count("tries", 1, diags).map_or(d.tries, |t| t.value);
    let no_input = f.strings("no_input", diags).unwrap_or_else(|| d.no_input.clone());
    let no_match = f.strings("no_match", diags).unwrap_or_else(|| d.no_match.clone());
    let repeat_key = match f.str("repeat_key", diags) {
        Some(k) => read_optional_key(src, &k, diags),
        None => d.repeat_key,
    };
    let give_up = match f.str("give_up", diags).or_else(|| d.give_up.clone()) {
        Some(t) => target(t),
        None => {
            diags.error(
                src,
                f.at(),
                format!("{what} needs give_up = \"state\" (or [defaults] give_up) for a caller who never answers"),
            );
            Target { name: String::new(), at: f.at(), idx: usize::MAX }
        }
    };
    Question { prompt, timeout, tries, no_input, no_match, give_up, repeat_key }
}

fn check_var_name(src: &Source, v: At<String>, diags: &mut Diagnostics) -> String {
    if v.value.is_empty() || !v.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        diags.error(src, v.at, format!("variable name '{}' may use only letters, digits and '_'", v.value));
    } else if BUILTIN_VARS.iter().any(|(b, _)| *b == v.value) {
        diags.error(src, v.at, format!("'{}' is a built-in name; answers need a name of their own", v.value));
    }
    v.value
}

fn read_choices(f: &mut Fields<'_, '_>, what: &str, repeat: Option<char>, diags: &mut Diagnostics) -> Vec<Choice> {
    let src = f.src();
    let Some(raw) = f.raw("choices") else {
        diags.error(src, f.at(), format!("{what} needs choices = [{{ key = \"1\", next = \"state\" }}, …]"));
        return vec![];
    };
    let DeValue::Array(items) = raw.get_ref() else {
        diags.error(
            src,
            raw.span().start,
            format!("choices must be a list of {{ key, value, next }}, not {}", type_name(raw.get_ref())),
        );
        return vec![];
    };
    let mut out: Vec<Choice> = Vec::new();
    for item in items.iter() {
        let Some(mut c) = Fields::new(src, "a choice", item, diags) else {
            continue;
        };
        let key = c.str("key", diags);
        let value = read_literal(&mut c, "value", diags);
        let next = need_target(&mut c, "next", "a choice", diags);
        c.finish(&["key", "value", "next"], diags);
        let Some(key) = key else {
            diags.error(src, item.span().start, "a choice needs key = \"1\"");
            continue;
        };
        // A bad key keeps its choice, so the choice's transition is checked too.
        let k = read_key(src, &key, diags).unwrap_or('?');
        if k == '?' {
        } else if Some(k) == repeat {
            diags.error(
                src,
                key.at,
                format!("key {k} repeats the question; set repeat_key = \"\" on this state to use it as a choice"),
            );
        } else if out.iter().any(|c| c.key.value == k) {
            diags.error(src, key.at, format!("key {k} is used twice in {what}"));
        }
        let value = value.map_or_else(|| Value::text(k.to_string()), |v| v.value);
        out.push(Choice { key: At::new(k, key.at), value, next });
    }
    if out.is_empty() && !items.is_empty() {
        return out;
    }
    if items.is_empty() {
        diags.error(src, raw.span().start, format!("{what} has no choices"));
    }
    out
}

/// A literal for `value` or `equals`: string, number or boolean.
fn read_literal(f: &mut Fields<'_, '_>, key: &str, diags: &mut Diagnostics) -> Option<At<Value>> {
    let v = f.raw(key)?;
    let at = v.span().start;
    let value = match v.get_ref() {
        DeValue::String(s) => Value::text(s.to_string()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Integer(i) => Value::parse_literal(i.as_str()),
        DeValue::Float(x) => Value::parse_literal(x.as_str()),
        other => {
            diags.error(
                f.src(),
                at,
                format!("{key} must be a string, a number or true/false, not {}", type_name(other)),
            );
            return None;
        }
    };
    Some(At::new(value, at))
}

/// A bound (`min`, `max`) as a raw value at `scale`.
fn read_bound(f: &mut Fields<'_, '_>, key: &str, scale: u8, diags: &mut Diagnostics) -> Option<At<i64>> {
    let lit = read_literal(f, key, diags)?;
    match lit.value {
        Value::Number { raw, scale: s } if s <= scale => Some(At::new(raw * 10i64.pow(u32::from(scale - s)), lit.at)),
        Value::Number { .. } => {
            diags.error(f.src(), lit.at, format!("{key} has more decimal places than scale = {scale} allows"));
            None
        }
        _ => {
            diags.error(f.src(), lit.at, format!("{key} must be a number"));
            None
        }
    }
}

fn read_number(f: &mut Fields<'_, '_>, what: &str, defaults: &Defaults, diags: &mut Diagnostics) -> Option<Kind> {
    let src = f.src();
    let question = read_question(f, what, defaults, diags);
    let var = match f.str("var", diags) {
        Some(v) => check_var_name(src, v, diags),
        None => {
            diags.error(src, f.at(), format!("{what} needs var = \"name\" to keep the answer"));
            String::new()
        }
    };
    let mut bad_format = false;
    let format = match f.str("format", diags) {
        None => NumberFormat::Number,
        Some(s) => match s.value.as_str() {
            "number" => NumberFormat::Number,
            "month_day" => NumberFormat::MonthDay,
            "digits" => NumberFormat::Digits,
            other => {
                diags.error(src, s.at, format!("unknown format '{other}'; formats: number, month_day, digits"));
                bad_format = true;
                NumberFormat::Number
            }
        },
    };
    let digits = f.count("digits", 1, diags);
    let min_digits = f.count("min_digits", 1, diags);
    let max_digits = f.count("max_digits", 1, diags);
    if digits.is_some() && (min_digits.is_some() || max_digits.is_some()) {
        diags.error(
            src,
            digits.as_ref().map_or(f.at(), |d| d.at),
            "give either digits or min_digits/max_digits, not both",
        );
    }
    let default_max = if format == NumberFormat::MonthDay { 4 } else { 0 };
    let max = digits.as_ref().or(max_digits.as_ref()).map_or(default_max, |d| d.value);
    let min =
        digits.as_ref().or(min_digits.as_ref()).map_or(if default_max > 0 { default_max } else { 1 }, |d| d.value);
    let digits_at = digits.as_ref().or(max_digits.as_ref()).map_or(f.at(), |d| d.at);
    if max == 0 {
        // With an unknown format the digits cannot be judged; that error is enough.
        if !bad_format {
            diags.error(src, f.at(), format!("{what} needs max_digits (or digits): how many keys the answer may have"));
        }
    } else if max > 18 {
        diags.error(src, digits_at, "at most 18 digits can be typed as one number");
    } else if min > max {
        diags.error(src, digits_at, format!("min_digits {min} is more than max_digits {max}"));
    }
    if format == NumberFormat::MonthDay && (min, max) != (4, 4) {
        diags.error(src, digits_at, "a month_day answer has exactly 4 digits (0412 is April 12)");
    }
    let scale = match f.int("scale", diags) {
        Some(s) if (0..=3).contains(&s.value) => s.value as u8,
        Some(s) => {
            diags.error(src, s.at, "scale is the number of decimal places typed, from 0 to 3");
            0
        }
        None => 0,
    };
    let lo = read_bound(f, "min", scale, diags);
    let hi = read_bound(f, "max", scale, diags);
    if format != NumberFormat::Number {
        if let Some(at) = lo.as_ref().or(hi.as_ref()).map(|b| b.at) {
            diags.error(src, at, "min and max apply only to format = \"number\"");
        }
        if scale != 0 {
            diags.error(src, f.key_at("scale").unwrap_or(f.at()), "scale applies only to format = \"number\"");
        }
    }
    if format == NumberFormat::Number && !bad_format && (lo.is_none() || hi.is_none()) {
        let missing = match (&lo, &hi) {
            (None, None) => "min and max",
            (None, Some(_)) => "min",
            _ => "max",
        };
        diags.error(
            src,
            f.at(),
            format!("{what} needs {missing}: without a range any number typed is taken (99.9 for a temperature)"),
        );
    }
    if let (Some(a), Some(b)) = (&lo, &hi) {
        if a.value > b.value {
            diags.error(
                src,
                a.at,
                format!("the range is empty: min {} is more than max {}", show(a.value, scale), show(b.value, scale)),
            );
        }
    }
    if (1..=18).contains(&max) {
        let typable = 10i64.pow(max) - 1;
        if let Some(a) = lo.as_ref().filter(|a| a.value > typable) {
            diags.error(
                src,
                a.at,
                format!(
                    "no answer of {max} digits reaches min {}: the most that can be typed is {}",
                    show(a.value, scale),
                    show(typable, scale)
                ),
            );
        }
    }
    let expect = f.str("expect", diags);
    let mismatch = f.strings("mismatch", diags).unwrap_or_default();
    if expect.is_none() && !mismatch.is_empty() {
        diags.error(
            src,
            f.key_at("mismatch").unwrap_or(f.at()),
            "mismatch is said when the answer differs from expect; set expect too",
        );
    }
    let next = need_target(f, "next", what, diags);
    Some(Kind::Number(Box::new(NumberSpec {
        question,
        var,
        min_digits: min,
        max_digits: max,
        scale,
        min: lo.map(|a| a.value),
        max: hi.map(|b| b.value),
        format,
        expect,
        mismatch,
        next,
    })))
}

fn show(raw: i64, scale: u8) -> String {
    Value::Number { raw, scale }.to_string()
}

fn read_action(f: &mut Fields<'_, '_>, what: &str, diags: &mut Diagnostics) -> Option<Kind> {
    let src = f.src();
    let Some(name) = f.str("action", diags) else {
        diags.error(src, f.at(), format!("{what} needs action = one of {}", Action::NAMES.join(", ")));
        return None;
    };
    let vars = f.strings("vars", diags).unwrap_or_default();
    let set = f.raw("set");
    let message = f.str("message", diags);
    let to = f.str("to", diags);
    let reason = f.str("reason", diags);
    let severity = f.str("severity", diags);
    let only = |field: &str, for_action: &str, diags: &mut Diagnostics| {
        if name.value != for_action {
            if let Some(at) = f.key_at(field) {
                diags.error(src, at, format!("{field} is not an argument of {}", name.value));
            }
        }
    };
    only("vars", "record_answer", diags);
    only("set", "record_answer", diags);
    only("message", "send_sms", diags);
    only("to", "send_sms", diags);
    only("reason", "alert_health_center", diags);
    only("severity", "alert_health_center", diags);
    let action = match name.value.as_str() {
        "record_answer" => Action::RecordAnswer { vars, set: read_set(src, set, diags) },
        "issue_processing_number" => Action::IssueProcessingNumber,
        "send_sms" => match message {
            Some(m) => Action::SendSms { message: m, to },
            None => {
                diags.error(src, f.at(), "send_sms needs message = \"prompt id\" (the SMS text)");
                return None;
            }
        },
        "alert_health_center" => {
            let severity = match severity {
                None => Urgency::Normal,
                Some(s) => Urgency::parse(&s.value).unwrap_or_else(|_| {
                    let names: Vec<&str> = Urgency::ALL.iter().map(|s| s.as_str()).collect();
                    diags.error(src, s.at, format!("unknown severity '{}'; severities: {}", s.value, names.join(", ")));
                    Urgency::Normal
                }),
            };
            Action::AlertHealthCenter { reason: reason.map_or_else(|| "alert".into(), |r| r.value), severity }
        }
        "end_call_summary" => Action::EndCallSummary,
        other => {
            let hint = closest(other, Action::NAMES).map_or_else(
                || format!("; actions: {}", Action::NAMES.join(", ")),
                |s| format!("; did you mean '{s}'?"),
            );
            diags.error(src, name.at, format!("unknown action '{other}'{hint}"));
            return None;
        }
    };
    let known = action.outcomes();
    let mut map: Vec<(String, Target)> = Vec::new();
    if let Some(on) = f.raw("on") {
        match on.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let outcome = k.get_ref().to_string();
                    if !known.contains(&outcome.as_str()) {
                        diags.error(
                            src,
                            k.span().start,
                            format!("{} has no outcome '{outcome}'; its outcomes: {}", action.name(), known.join(", ")),
                        );
                        continue;
                    }
                    match v.get_ref() {
                        DeValue::String(s) => map.push((outcome, target(At::new(s.to_string(), v.span().start)))),
                        other => diags.error(
                            src,
                            v.span().start,
                            format!("on.{outcome} must name a state, not {}", type_name(other)),
                        ),
                    }
                }
            }
            other => diags.error(
                src,
                on.span().start,
                format!("on must be a table of outcome = \"state\", not {}", type_name(other)),
            ),
        }
    }
    let on_names: Vec<&str> = f
        .raw("on")
        .and_then(|on| on.get_ref().as_table())
        .map(|t| t.iter().map(|(k, _)| k.get_ref().as_ref()).collect())
        .unwrap_or_default();
    let next = f.str("next", diags);
    let mut outcomes = Vec::new();
    for o in known {
        match map.iter().position(|(k, _)| k == o) {
            Some(i) => outcomes.push(map.swap_remove(i)),
            None => match &next {
                Some(n) => outcomes.push((o.to_string(), target(n.clone()))),
                // Named in `on`, but not as a state: already reported.
                None if on_names.contains(o) => {}
                None => diags.error(
                    src,
                    f.at(),
                    format!(
                        "{what}: outcome '{o}' of {} has no transition; add on.{o} = \"state\" or next = \"state\"",
                        action.name()
                    ),
                ),
            },
        }
    }
    Some(Kind::Action { action, outcomes })
}

fn read_set(src: &Source, set: Option<&Spanned<DeValue<'_>>>, diags: &mut Diagnostics) -> Vec<(String, Value)> {
    let Some(set) = set else { return vec![] };
    let DeValue::Table(t) = set.get_ref() else {
        diags.error(src, set.span().start, "set must be a table of name = value");
        return vec![];
    };
    let mut f = Fields::of_table(src, "set", t, set.span().start);
    let mut out = Vec::new();
    for (k, _) in t.iter() {
        let name = k.get_ref().to_string();
        if let Some(v) = read_literal(&mut f, &name, diags) {
            out.push((check_var_name(src, At::new(name, k.span().start), diags), v.value));
        }
    }
    out
}

fn read_branch(f: &mut Fields<'_, '_>, what: &str, diags: &mut Diagnostics) -> Option<Kind> {
    let src = f.src();
    let default = need_target(f, "default", what, diags);
    let mut rules = Vec::new();
    match f.raw("rules") {
        None => diags.error(
            src,
            f.at(),
            format!("{what} needs rules = [{{ var = \"name\", equals = …, next = \"state\" }}, …]"),
        ),
        Some(raw) => match raw.get_ref() {
            DeValue::Array(items) => {
                for item in items.iter() {
                    if let Some(rule) = read_rule(src, item, diags) {
                        rules.push(rule);
                    }
                }
            }
            other => diags.error(src, raw.span().start, format!("rules must be a list, not {}", type_name(other))),
        },
    }
    Some(Kind::Branch { rules, default })
}

fn read_rule(src: &Source, item: &Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Option<Rule> {
    let before = diags.error_count();
    let mut r = Fields::new(src, "a rule", item, diags)?;
    let var = r.str("var", diags);
    let equals = read_literal(&mut r, "equals", diags);
    let min = read_literal(&mut r, "min", diags);
    let max = read_literal(&mut r, "max", diags);
    let missing = r.bool("missing", diags);
    let next = need_target(&mut r, "next", "a rule", diags);
    r.finish(&["var", "equals", "min", "max", "missing", "next"], diags);
    let Some(var) = var else {
        diags.error(src, item.span().start, "a rule needs var = \"name\"");
        return None;
    };
    let kinds =
        usize::from(equals.is_some()) + usize::from(min.is_some() || max.is_some()) + usize::from(missing.is_some());
    if kinds != 1 {
        if diags.error_count() > before {
            return None; // a misspelt or mistyped condition, already reported
        }
        diags.error(src, item.span().start, "a rule has exactly one condition: equals, min/max (a range), or missing");
        return None;
    }
    for b in [&min, &max].into_iter().flatten() {
        if !matches!(b.value, Value::Number { .. }) {
            diags.error(src, b.at, "min and max must be numbers");
        }
    }
    if let (Some(a), Some(b)) = (&min, &max) {
        if a.value.compare(&b.value).is_some_and(|o| o.is_gt()) {
            diags.error(src, a.at, format!("the range is empty: min {} is more than max {}", a.value, b.value));
        }
    }
    let cond = match (equals, missing) {
        (Some(e), _) => Cond::Equals(e.value),
        (_, Some(m)) => Cond::Missing(m.value),
        _ => Cond::Range { min: min.map(|m| m.value), max: max.map(|m| m.value) },
    };
    Some(Rule { var, cond, next })
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `ja-JP`, `en-US`, `en`.
pub fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or("");
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}
