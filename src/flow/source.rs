//! Reading operator files with positions: every problem becomes a [`Diagnostic`] that points
//! at `file:line:col`, and a file is read to the end so that all its problems show at once.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// How bad a diagnostic is: errors refuse the file, warnings only inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in an operator's file, printed as `file:line:col: error: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {level}: {}", self.file, self.line, self.col, self.message)
    }
}

/// A file's text and name, to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source { name: name.into(), text: text.into() }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The diagnostics gathered while reading one or more files.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, src: &Source, at: usize, severity: Severity, message: impl Into<String>) {
        let (line, col) = src.line_col(at);
        self.items.push(Diagnostic { file: src.name.clone(), line, col, severity, message: message.into() });
    }

    pub fn error(&mut self, src: &Source, at: usize, message: impl Into<String>) {
        self.push(src, at, Severity::Error, message);
    }

    pub fn warning(&mut self, src: &Source, at: usize, message: impl Into<String>) {
        self.push(src, at, Severity::Warning, message);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Sorted by file and position, so output reads top to bottom.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        self.items.dedup();
        self.items
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.clone().sorted() {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Parses a TOML document, reporting every syntax error it can recover from.
pub fn parse_toml<'a>(src: &'a Source, diags: &mut Diagnostics) -> Option<Spanned<DeTable<'a>>> {
    let (table, errors) = DeTable::parse_recoverable(&src.text);
    let failed = !errors.is_empty();
    for e in errors {
        let at = e.span().map_or(0, |s| s.start);
        let msg = e.message().trim().replace('\n', " ");
        // Unquoted text is the most common slip; the parser's words for it vary with its first letter.
        let hint = if ["invalid float", "invalid boolean", "invalid integer", "must be quoted", "invalid string"]
            .iter()
            .any(|m| msg.contains(m))
        {
            " (text must be in double quotes: prompt = \"greeting\")"
        } else {
            ""
        };
        diags.error(src, at, format!("TOML syntax: {msg}{hint}"));
    }
    (!failed).then_some(table)
}

/// A value with the byte offset where it starts in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub at: usize,
}

impl<T> At<T> {
    pub fn new(value: T, at: usize) -> Self {
        At { value, at }
    }
}

/// Reads one TOML table field by field; [`Fields::finish`] reports the fields nobody read,
/// so a misspelt field is an error rather than silently ignored.
pub struct Fields<'t, 'a> {
    src: &'a Source,
    what: String,
    table: &'t DeTable<'a>,
    at: usize,
    used: Vec<&'t str>,
}

/// The TOML type names operators see in messages.
pub fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a whole number",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "true or false",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

impl<'t, 'a> Fields<'t, 'a> {
    /// `what` names the table in messages, e.g. `state 'greeting'`.
    pub fn new(
        src: &'a Source,
        what: impl Into<String>,
        table: &'t Spanned<DeValue<'a>>,
        diags: &mut Diagnostics,
    ) -> Option<Self> {
        match table.get_ref() {
            DeValue::Table(t) => {
                Some(Fields { src, what: what.into(), table: t, at: table.span().start, used: Vec::new() })
            }
            other => {
                diags.error(
                    src,
                    table.span().start,
                    format!("{} must be a table, not {}", what.into(), type_name(other)),
                );
                None
            }
        }
    }

    pub fn of_table(src: &'a Source, what: impl Into<String>, table: &'t DeTable<'a>, at: usize) -> Self {
        Fields { src, what: what.into(), table, at, used: Vec::new() }
    }

    pub fn src(&self) -> &'a Source {
        self.src
    }

    /// Where the table starts.
    pub fn at(&self) -> usize {
        self.at
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The raw value of a field, marked as read.
    pub fn raw(&mut self, key: &str) -> Option<&'t Spanned<DeValue<'a>>> {
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.get_ref().as_ref());
        Some(v)
    }

    /// Position of a field's key (for "this field is not allowed here").
    pub fn key_at(&self, key: &str) -> Option<usize> {
        self.table.get_key_value(key).map(|(k, _)| k.span().start)
    }

    pub fn str(&mut self, key: &str, diags: &mut Diagnostics) -> Option<At<String>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(At::new(s.to_string(), v.span().start)),
            other => {
                self.wrong_type(key, v, "a string", other, diags);
                None
            }
        }
    }

    pub fn int(&mut self, key: &str, diags: &mut Diagnostics) -> Option<At<i64>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(At::new(n, v.span().start)),
                Err(_) => {
                    diags.error(self.src, v.span().start, format!("{key} is too large"));
                    None
                }
            },
            other => {
                self.wrong_type(key, v, "a whole number", other, diags);
                None
            }
        }
    }

    /// A whole number that must be at least `min`.
    pub fn count(&mut self, key: &str, min: i64, diags: &mut Diagnostics) -> Option<At<u32>> {
        let n = self.int(key, diags)?;
        if n.value < min || n.value > i64::from(u16::MAX) {
            diags.error(self.src, n.at, format!("{key} must be from {min} to {}, not {}", u16::MAX, n.value));
            return None;
        }
        Some(At::new(n.value as u32, n.at))
    }

    pub fn bool(&mut self, key: &str, diags: &mut Diagnostics) -> Option<At<bool>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(At::new(*b, v.span().start)),
            other => {
                self.wrong_type(key, v, "true or false", other, diags);
                None
            }
        }
    }

    /// A string or a list of strings (e.g. one prompt or several).
    pub fn strings(&mut self, key: &str, diags: &mut Diagnostics) -> Option<Vec<At<String>>> {
        let v = self.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(vec![At::new(s.to_string(), v.span().start)]),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(At::new(s.to_string(), item.span().start)),
                        other => diags.error(
                            self.src,
                            item.span().start,
                            format!("{key} must list strings, not {}", type_name(other)),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.wrong_type(key, v, "a string or a list of strings", other, diags);
                None
            }
        }
    }

    fn wrong_type(&self, key: &str, v: &Spanned<DeValue<'_>>, want: &str, got: &DeValue<'_>, diags: &mut Diagnostics) {
        diags.error(self.src, v.span().start, format!("{key} must be {want}, not {}", type_name(got)));
    }

    /// Reports every field that was not read, naming the ones that are allowed.
    pub fn finish(self, allowed: &[&str], diags: &mut Diagnostics) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref().as_ref();
            // An allowed field left unread was skipped after another error: not unknown.
            if !self.used.contains(&name) && !allowed.contains(&name) {
                let hint = match closest(name, allowed.iter().copied()) {
                    Some(s) => format!("; did you mean '{s}'?"),
                    None => format!("; allowed: {}", allowed.join(", ")),
                };
                diags.error(self.src, k.span().start, format!("unknown field '{name}' in {}{hint}", self.what));
            }
        }
    }
}

/// Span of a value, for callers holding a raw value.
pub fn span_of(v: &Spanned<DeValue<'_>>) -> Range<usize> {
    v.span()
}

/// The candidate nearest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.chars().count() / 4) && *d < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        let src = Source::new("f.toml", "a = 1\nb = \"体温\" x\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        let x = src.text.find('x').unwrap();
        assert_eq!(src.line_col(x), (2, 10));
    }

    #[test]
    fn closest_suggests_typos_only() {
        let names = ["temperature", "spo2", "greeting"];
        assert_eq!(closest("temprature", names), Some("temperature"));
        assert_eq!(closest("xyz", names), None);
    }

    #[test]
    fn syntax_errors_point_into_the_file() {
        let src = Source::new("f.toml", "[flow]\nname = \n");
        let mut d = Diagnostics::default();
        assert!(parse_toml(&src, &mut d).is_none());
        let first = &d.items[0];
        assert_eq!((first.line, first.col > 0), (2, true));
        assert!(first.to_string().starts_with("f.toml:2:"));
    }
}
