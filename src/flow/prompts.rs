//! Prompt catalogues: `prompts/<lang>.toml` maps a prompt id to text spoken by the carrier's
//! text-to-speech, or to an audio file. Text may hold placeholders, `{temperature:temperature}`,
//! read aloud by a formatter in the catalogue's language ("36.5度", "1 2 3 4、5 6 7 8").
//!
//! ```toml
//! [voice]
//! voice = "Polly.Mizuki"          # optional; language defaults to the file name (ja-JP)
//!
//! [prompts]
//! greeting = "こちらは保健所の自動音声による健康観察です。"
//! temperature.confirm = "{temperature:temperature}ですね。"
//! chime = { audio = "chime.mp3" }
//!
//! [web]                           # optional: the web self-report's own, shorter wording
//! temperature.ask = "本日の体温"
//! choice.yes = "はい"              # a menu's option labels, by the choice's value …
//! choice."app.use".yes = "あり"    # … or by the menu's prompt and the value
//! unit.temperature = "℃"          # a number question's unit, by its variable
//! ```

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use toml::de::DeValue;

use crate::flow::response::Speech;
use crate::flow::source::{At, Diagnostics, Fields, Source, closest, parse_toml, type_name};
use crate::flow::{Value, Vars};

/// How a placeholder's value is read aloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// As stored: `36.5`, `yes`.
    Plain,
    /// `36.5度` / `36.5 degrees`.
    Temperature,
    /// `97パーセント` / `97 percent`.
    Percent,
    /// Digit by digit in groups of four, for processing and phone numbers read aloud.
    Digits,
    /// Groups of four for the eye (SMS, e-mail): `1234 5678`.
    Groups,
    /// A phone number digit by digit, grouped as Japanese numbers are said: a mobile
    /// `0 9 0、1 1 1 1、2 2 2 2`, Tokyo and Osaka `0 3、1 2 3 4、5 6 7 8`.
    Phone,
    /// `0412` → `4月12日` / `April 12`.
    MonthDay,
    /// `2026-11-25` → `11月25日` / `November 25`.
    Date,
    /// `2026-11-25T14:00` → `11月25日 14時` / `November 25, 14:00`.
    DateTime,
}

impl Format {
    pub const NAMES: [&str; 8] =
        ["temperature", "percent", "digits", "groups", "phone", "month_day", "date", "datetime"];

    fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "" => Format::Plain,
            "temperature" => Format::Temperature,
            "percent" => Format::Percent,
            "digits" => Format::Digits,
            "groups" => Format::Groups,
            "phone" => Format::Phone,
            "month_day" => Format::MonthDay,
            "date" => Format::Date,
            "datetime" => Format::DateTime,
            _ => return None,
        })
    }
}

/// A piece of prompt text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `{var:format}`, with the byte offset of the placeholder in the catalogue file.
    Var {
        name: String,
        format: Format,
        at: usize,
    },
}

/// Prompt text with placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    /// The variables the text reads, with their positions.
    pub fn vars(&self) -> impl Iterator<Item = (&str, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, at, .. } => Some((name.as_str(), *at)),
            Part::Text(_) => None,
        })
    }
}

/// One prompt: text to speak, or a recording (with optional text, e.g. for SMS or terminals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Text(Template),
    Audio { url: String, text: Option<Template> },
}

impl Prompt {
    pub fn template(&self) -> Option<&Template> {
        match self {
            Prompt::Text(t) => Some(t),
            Prompt::Audio { text, .. } => text.as_ref(),
        }
    }
}

/// The prompts of one language.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The file's language tag, e.g. `ja-JP` (its file name).
    pub lang: String,
    /// The `language` attribute for text-to-speech.
    pub language: String,
    pub voice: Option<String>,
    pub prompts: HashMap<String, At<Prompt>>,
    /// `[web]`: the web self-report's wording of prompts (by prompt id), its option labels
    /// (`choice.VALUE`, `choice.PROMPT.VALUE`) and units (`unit.VAR`); a prompt without a web
    /// wording shows its spoken text.
    pub web: HashMap<String, At<Prompt>>,
    pub source: Source,
}

impl Catalog {
    /// Reads a catalogue; `lang` is the file's stem.
    pub fn parse(lang: &str, src: Source, diags: &mut Diagnostics) -> Option<Catalog> {
        let before = diags.error_count();
        let doc = parse_toml(&src, diags)?;
        let mut top = Fields::of_table(&src, "the prompt file", doc.get_ref(), 0);
        let mut language = lang.to_string();
        let mut voice = None;
        let mut audio_base = String::new();
        if let Some(v) = top.raw("voice") {
            if let Some(mut f) = Fields::new(&src, "[voice]", v, diags) {
                language = f.str("language", diags).map_or(language, |s| s.value);
                voice = f.str("voice", diags).map(|s| s.value);
                audio_base = f.str("audio_base", diags).map_or(audio_base, |s| s.value);
                f.finish(&["language", "voice", "audio_base"], diags);
            }
        }
        let mut prompts = HashMap::new();
        match top.raw("prompts") {
            Some(v) => match v.get_ref() {
                DeValue::Table(t) => collect(&src, "", t, &audio_base, &mut prompts, diags),
                other => {
                    diags.error(&src, v.span().start, format!("[prompts] must be a table, not {}", type_name(other)))
                }
            },
            None => diags.error(&src, 0, "no [prompts] table: a prompt file lists its prompts under [prompts]"),
        }
        let mut web = HashMap::new();
        if let Some(v) = top.raw("web") {
            match v.get_ref() {
                DeValue::Table(t) => collect(&src, "", t, &audio_base, &mut web, diags),
                other => diags.error(&src, v.span().start, format!("[web] must be a table, not {}", type_name(other))),
            }
        }
        top.finish(&["voice", "prompts", "web"], diags);
        (diags.error_count() == before).then(|| Catalog {
            lang: lang.to_string(),
            language,
            voice,
            prompts,
            web,
            source: src,
        })
    }

    pub fn get(&self, id: &str) -> Option<&Prompt> {
        self.prompts.get(id).map(|p| &p.value)
    }

    /// The speech for a prompt with the call's variables filled in. A missing prompt or
    /// variable never fails a call: validation rules both out before a flow is served.
    pub fn speech(&self, id: &str, vars: &Vars) -> Speech {
        match self.get(id) {
            Some(Prompt::Audio { url, .. }) => Speech::Play { url: url.clone() },
            Some(Prompt::Text(t)) => self.say(self.fill(t, vars)),
            None => self.say(String::new()),
        }
    }

    /// The text of a prompt (for SMS and transcripts), placeholders filled in.
    pub fn text(&self, id: &str, vars: &Vars) -> String {
        self.get(id).and_then(Prompt::template).map(|t| self.fill(t, vars)).unwrap_or_default()
    }

    /// The web self-report's text of a prompt: its `[web]` wording, else its spoken text.
    pub fn web_text(&self, id: &str, vars: &Vars) -> String {
        match self.web.get(id).and_then(|p| p.value.template()) {
            Some(t) => self.fill(t, vars),
            None => self.text(id, vars),
        }
    }

    /// The label of a menu's option on the web: `choice.PROMPT.VALUE`, else `choice.VALUE`.
    pub fn choice_label(&self, prompt: &str, value: &str, vars: &Vars) -> Option<String> {
        let own = format!("choice.{prompt}.{value}");
        let shared = format!("choice.{value}");
        let t = self.web.get(&own).or_else(|| self.web.get(&shared))?.value.template()?;
        Some(self.fill(t, vars))
    }

    /// The unit shown beside a number question's field (`unit.VAR`).
    pub fn unit(&self, var: &str) -> Option<String> {
        let t = self.web.get(&format!("unit.{var}"))?.value.template()?;
        Some(self.fill(t, &Vars::new()))
    }

    fn say(&self, text: String) -> Speech {
        Speech::Say { text, language: self.language.clone(), voice: self.voice.clone() }
    }

    pub fn fill(&self, t: &Template, vars: &Vars) -> String {
        let mut out = String::new();
        for part in &t.parts {
            match part {
                Part::Text(s) => out.push_str(s),
                Part::Var { name, format, .. } => {
                    if let Some(v) = vars.get(name) {
                        out.push_str(&read_aloud(v, *format, self.japanese()));
                    }
                }
            }
        }
        out
    }

    fn japanese(&self) -> bool {
        self.lang.starts_with("ja")
    }
}

/// Flattens nested tables into dotted ids: `[prompts.temperature] ask = …` is `temperature.ask`.
fn collect(
    src: &Source,
    prefix: &str,
    table: &toml::de::DeTable<'_>,
    audio_base: &str,
    out: &mut HashMap<String, At<Prompt>>,
    diags: &mut Diagnostics,
) {
    for (k, v) in table.iter() {
        let id = if prefix.is_empty() { k.get_ref().to_string() } else { format!("{prefix}.{}", k.get_ref()) };
        let at = v.span().start;
        let prompt = match v.get_ref() {
            DeValue::String(s) => Prompt::Text(parse_template(src, s, string_body_start(src, at), diags)),
            DeValue::Table(t) if t.contains_key("audio") => {
                let mut f = Fields::of_table(src, format!("prompt '{id}'"), t, at);
                let url = f.str("audio", diags).map(|a| join_url(audio_base, &a.value)).unwrap_or_default();
                let text =
                    f.str("text", diags).map(|t| parse_template(src, &t.value, string_body_start(src, t.at), diags));
                f.finish(&["audio", "text"], diags);
                Prompt::Audio { url, text }
            }
            DeValue::Table(t) => {
                collect(src, &id, t, audio_base, out, diags);
                continue;
            }
            other => {
                diags.error(
                    src,
                    at,
                    format!("prompt '{id}' must be text or {{ audio = \"file\" }}, not {}", type_name(other)),
                );
                continue;
            }
        };
        out.insert(id, At::new(prompt, k.span().start));
    }
}

fn join_url(base: &str, file: &str) -> String {
    if base.is_empty() || file.contains("://") {
        file.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), file.trim_start_matches('/'))
    }
}

/// Offset of a basic string's first character, so placeholder positions point at the text.
fn string_body_start(src: &Source, at: usize) -> usize {
    let rest = &src.text[at.min(src.text.len())..];
    at + rest.chars().take_while(|c| *c == '"' || *c == '\'').count()
}

/// Splits text into literal parts and `{name:format}` placeholders; `{{` and `}}` are braces.
/// `at` is where the text starts in the file (positions assume no escapes before a placeholder).
pub fn parse_template(src: &Source, text: &str, at: usize, diags: &mut Diagnostics) -> Template {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find(['{', '}']) {
        lit.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        if rest[i + 1..].starts_with(c as char) {
            lit.push(c as char);
            rest = &rest[i + 2..];
            offset += i + 2;
            continue;
        }
        let here = at + offset + i;
        if c == b'}' {
            diags.error(src, here, "a '}' without '{': write '}}' for a brace");
            rest = &rest[i + 1..];
            offset += i + 1;
            continue;
        }
        let Some(end) = rest[i..].find('}') else {
            diags.error(src, here, "placeholder '{' is never closed with '}'");
            rest = "";
            break;
        };
        let inner = &rest[i + 1..i + end];
        let (name, fmt) = inner.split_once(':').unwrap_or((inner, ""));
        let (name, fmt) = (name.trim(), fmt.trim());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            diags.error(
                src,
                here,
                format!("'{{{inner}}}' is not a placeholder: write {{variable}} or {{variable:format}}"),
            );
        }
        match Format::parse(fmt) {
            Some(format) => {
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var { name: name.to_string(), format, at: here });
            }
            None => {
                let hint = closest(fmt, Format::NAMES).map_or_else(
                    || format!("; formats: {}", Format::NAMES.join(", ")),
                    |s| format!("; did you mean '{s}'?"),
                );
                diags.error(src, here, format!("unknown format '{fmt}' in {{{inner}}}{hint}"));
            }
        }
        rest = &rest[i + end + 1..];
        offset += i + end + 1;
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Text(lit));
    }
    Template { parts }
}

/// How a value is read aloud in Japanese (`ja`) or English.
///
/// ```
/// use ivr::flow::Value;
/// use ivr::flow::prompts::{Format, read_aloud};
///
/// let t = Value::Number { raw: 365, scale: 1 };
/// assert_eq!(read_aloud(&t, Format::Temperature, true), "36.5度");
/// assert_eq!(read_aloud(&Value::text("12345678"), Format::Digits, true), "1 2 3 4、5 6 7 8");
/// ```
pub fn read_aloud(v: &Value, format: Format, ja: bool) -> String {
    let s = v.to_string();
    match format {
        Format::Plain => s,
        Format::Temperature if ja => format!("{s}度"),
        Format::Temperature => format!("{s} degrees"),
        Format::Percent if ja => format!("{s}パーセント"),
        Format::Percent => format!("{s} percent"),
        Format::Digits => {
            let digits: Vec<char> = s.chars().filter(|c| c.is_ascii_digit()).collect();
            let sep = if ja { "、" } else { ", " };
            digits
                .chunks(4)
                .map(|g| g.iter().map(char::to_string).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(sep)
        }
        Format::Groups => {
            let digits: Vec<char> = s.chars().filter(|c| c.is_ascii_digit()).collect();
            digits.chunks(4).map(|g| g.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
        }
        Format::Phone => {
            let national = match s.trim().strip_prefix("+81") {
                Some(rest) => format!("0{rest}"),
                None => s.clone(),
            };
            let digits: Vec<char> = national.chars().filter(|c| c.is_ascii_digit()).collect();
            let sep = if ja { "、" } else { ", " };
            let mut groups = Vec::new();
            let mut rest = &digits[..];
            for size in phone_groups(&digits) {
                let (group, tail) = rest.split_at(size.min(rest.len()));
                groups.push(group.iter().map(char::to_string).collect::<Vec<_>>().join(" "));
                rest = tail;
            }
            groups.retain(|g| !g.is_empty());
            groups.join(sep)
        }
        Format::MonthDay => {
            let md = format!("{s:0>4}");
            match (md[..2].parse::<u32>(), md[2..].parse::<u32>()) {
                (Ok(m), Ok(d)) => month_day(m, d, ja),
                _ => s,
            }
        }
        Format::Date => match NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            Ok(d) => month_day(d.month(), d.day(), ja),
            Err(_) => s,
        },
        Format::DateTime => match parse_datetime(&s) {
            Some(t) if ja => {
                format!("{} {}時{}", month_day(t.month(), t.day(), true), t.hour(), minutes_ja(t.minute()))
            }
            Some(t) => format!("{}, {}:{:02}", month_day(t.month(), t.day(), false), t.hour(), t.minute()),
            None => s,
        },
    }
}

/// How a national number (leading 0) is grouped when said: mobiles and IP phones 3-4-4; Tokyo
/// (03) and Osaka (06) 2-4-4; free dial (0120) 4-3-3; any other ten-digit landline 3-3-4, the
/// shape of most area codes (045, 052, 092…); anything else in fours.
fn phone_groups(d: &[char]) -> Vec<usize> {
    let starts = |p: &str| d.iter().take(p.len()).copied().eq(p.chars());
    match d.len() {
        11 if ["050", "060", "070", "080", "090"].iter().any(|p| starts(p)) => vec![3, 4, 4],
        10 if starts("03") || starts("06") => vec![2, 4, 4],
        10 if starts("0120") => vec![4, 3, 3],
        10 if starts("0") => vec![3, 3, 4],
        n => vec![4; n.div_ceil(4)],
    }
}

fn minutes_ja(m: u32) -> String {
    if m == 0 { String::new() } else { format!("{m}分") }
}

fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.get(..16).unwrap_or(s);
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .ok()
}

fn month_day(m: u32, d: u32, ja: bool) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    if ja {
        format!("{m}月{d}日")
    } else {
        match MONTHS.get(m.wrapping_sub(1) as usize) {
            Some(name) => format!("{name} {d}"),
            None => format!("{m}/{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(lang: &str, text: &str) -> (Option<Catalog>, Diagnostics) {
        let mut d = Diagnostics::default();
        let c = Catalog::parse(lang, Source::new(format!("prompts/{lang}.toml"), text), &mut d);
        (c, d)
    }

    #[test]
    fn values_are_read_aloud_per_language() {
        let t = Value::Number { raw: 365, scale: 1 };
        assert_eq!(read_aloud(&t, Format::Temperature, true), "36.5度");
        assert_eq!(read_aloud(&t, Format::Temperature, false), "36.5 degrees");
        let n = Value::text("12345678");
        assert_eq!(read_aloud(&n, Format::Digits, true), "1 2 3 4、5 6 7 8");
        assert_eq!(read_aloud(&n, Format::Digits, false), "1 2 3 4, 5 6 7 8");
        let phone = |p: &str, ja| read_aloud(&Value::text(p), Format::Phone, ja);
        assert_eq!(phone("09011112222", true), "0 9 0、1 1 1 1、2 2 2 2");
        assert_eq!(phone("+819011112222", false), "0 9 0, 1 1 1 1, 2 2 2 2");
        assert_eq!(phone("0312345678", true), "0 3、1 2 3 4、5 6 7 8");
        assert_eq!(phone("+81612345678", true), "0 6、1 2 3 4、5 6 7 8");
        assert_eq!(phone("0451234567", true), "0 4 5、1 2 3、4 5 6 7");
        assert_eq!(phone("0120123456", true), "0 1 2 0、1 2 3、4 5 6");
        assert_eq!(phone("123456", true), "1 2 3 4、5 6");
        assert_eq!(read_aloud(&n, Format::Groups, true), "1234 5678");
        assert_eq!(read_aloud(&Value::text("0412"), Format::MonthDay, true), "4月12日");
        assert_eq!(read_aloud(&Value::text("0412"), Format::MonthDay, false), "April 12");
        let exp = Value::text("2026-11-25T14:00:00+09:00");
        assert_eq!(read_aloud(&exp, Format::DateTime, true), "11月25日 14時");
        assert_eq!(read_aloud(&Value::text("2026-11-25"), Format::Date, true), "11月25日");
    }

    #[test]
    fn placeholders_are_filled_and_nested_ids_flattened() {
        let (c, d) = catalog(
            "ja-JP",
            "[voice]\nvoice = \"Polly.Mizuki\"\n[prompts]\ntemperature.confirm = \"{temperature:temperature}ですね。{{1}}\"\n",
        );
        assert!(!d.has_errors(), "{d}");
        let c = c.unwrap();
        let mut vars = Vars::new();
        vars.insert("temperature".into(), Value::Number { raw: 365, scale: 1 });
        assert_eq!(c.text("temperature.confirm", &vars), "36.5度ですね。{1}");
        match c.speech("temperature.confirm", &vars) {
            Speech::Say { language, voice, .. } => {
                assert_eq!((language.as_str(), voice.as_deref()), ("ja-JP", Some("Polly.Mizuki")))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_format_points_at_its_placeholder() {
        let (c, d) = catalog("en-US", "[prompts]\nx = \"It is {t:temprature} now\"\n");
        assert!(c.is_none());
        let e = &d.items[0];
        assert_eq!((e.line, e.col), (2, 12));
        assert!(e.message.contains("did you mean 'temperature'"), "{}", e.message);
    }

    #[test]
    fn audio_prompts_join_the_audio_base() {
        let (c, d) = catalog(
            "en-US",
            "[voice]\naudio_base = \"https://cdn.example/a/\"\n[prompts]\nchime = { audio = \"chime.mp3\" }\n",
        );
        assert!(!d.has_errors(), "{d}");
        assert_eq!(
            c.unwrap().speech("chime", &Vars::new()),
            Speech::Play { url: "https://cdn.example/a/chime.mp3".into() }
        );
    }
}
