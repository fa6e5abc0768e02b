//! The patient roster as the health centre keeps it: a CSV file with a header line, read into
//! [`Patient`]s. Every row is checked before anything is imported; all the mistakes of a file
//! are reported at once, each at its `FILE:ROW:COL` (the file's line, header = 1, and the
//! field's 1-based column), so a whole file can be fixed in one go.
//!
//! Columns (any order; fields trimmed; UTF-8 with or without a byte-order mark):
//! `patient_id`, `name`, `phone`, `birth_date` (required); `language`, `care_start`,
//! `care_end`, `call_slot`, `email`, `area` (optional, empty = none). `docs/roster.md` is the
//! reference.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::Serialize;

use crate::store::Patient;
use crate::types::{E164, Invalid, PatientId};

/// The call slots when the settings name none: a patient without `call_slot` is called in the
/// first.
pub const DEFAULT_SLOTS: &[&str] = &["morning", "afternoon"];

/// The language of a patient whose row leaves `language` empty.
pub const DEFAULT_LANGUAGE: &str = "ja-JP";

/// The columns a roster must have.
pub const REQUIRED_COLUMNS: [&str; 4] = ["patient_id", "name", "phone", "birth_date"];

/// The columns a roster may have.
pub const OPTIONAL_COLUMNS: [&str; 6] = ["language", "care_start", "care_end", "call_slot", "email", "area"];

/// One mistake in a roster file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterError {
    /// The line in the file where the row starts (the header is line 1).
    pub row: u64,
    /// The field's 1-based column number.
    pub col: usize,
    /// The column's name from the header (empty for a field past the last column).
    pub column: String,
    pub message: String,
}

/// Every mistake in a roster file, sorted by row and column. `Display` prints one
/// `FILE:ROW:COL: error: MESSAGE` line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterErrors {
    pub file: String,
    pub errors: Vec<RosterError>,
}

impl fmt::Display for RosterErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: error: {}", self.file, e.row, e.col, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for RosterErrors {}

/// Reads a roster. `file_label` names the file in the errors; `slots` are the call slots
/// `call_slot` may name, `languages` those with a prompt catalogue. Nothing is returned unless
/// every row is good.
pub fn parse_roster(
    file_label: &str,
    bytes: &[u8],
    slots: &[&str],
    languages: &[&str],
) -> Result<Vec<Patient>, RosterErrors> {
    let mut errors = Vec::new();
    let patients = read(bytes, slots, languages, &mut errors);
    if errors.is_empty() {
        return Ok(patients);
    }
    errors.sort_by_key(|e| (e.row, e.col));
    Err(RosterErrors { file: file_label.to_string(), errors })
}

/// The languages with a prompt catalogue in `dir`: the stems of its `*.toml` files, sorted.
pub fn catalogue_languages(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut langs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                langs.push(stem.to_string());
            }
        }
    }
    langs.sort();
    Ok(langs)
}

/// Where each known column sits in the file (0-based).
struct Columns {
    names: Vec<String>,
    index: HashMap<&'static str, usize>,
}

impl Columns {
    fn get<'r>(&self, record: &'r [String], name: &str) -> Option<(&'r str, usize)> {
        self.index.get(name).map(|&i| (record[i].as_str(), i))
    }
}

fn read(bytes: &[u8], slots: &[&str], languages: &[&str], errors: &mut Vec<RosterError>) -> Vec<Patient> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            errors.push(csv_error(&e));
            return vec![];
        }
        None => {
            errors.push(err(1, 1, "", "the file is empty: the first line must name the columns".into()));
            return vec![];
        }
    };
    let Some(columns) = header_columns(&header, errors) else { return vec![] };

    let mut patients = Vec::new();
    let mut first_line: HashMap<PatientId, u64> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(csv_error(&e));
                break;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let Some(fields) = fields(&record, line, &columns.names, errors) else { continue };
        let before = errors.len();
        let (id, patient) = row(&fields, line, &columns, slots, languages, errors);
        let Some(id) = id else { continue };
        match first_line.get(&id) {
            Some(first) => {
                let (_, i) = columns.get(&fields, "patient_id").expect("a required column");
                errors.push(err(line, i + 1, "patient_id", format!("patient {id} is already on line {first}")));
            }
            None => {
                first_line.insert(id, line);
                if let Some(p) = patient.filter(|_| errors.len() == before) {
                    patients.push(p);
                }
            }
        }
    }
    patients
}

fn err(row: u64, col: usize, column: &str, message: String) -> RosterError {
    RosterError { row, col, column: column.to_string(), message }
}

fn csv_error(e: &csv::Error) -> RosterError {
    let line = e.position().map_or(1, |p| p.line());
    err(line, 1, "", format!("unreadable CSV: {e}"))
}

/// The header's columns, or `None` after reporting what is wrong with it.
fn header_columns(header: &csv::ByteRecord, errors: &mut Vec<RosterError>) -> Option<Columns> {
    let before = errors.len();
    let mut names = Vec::new();
    let mut index = HashMap::new();
    for (i, raw) in header.iter().enumerate() {
        let col = i + 1;
        let Ok(name) = std::str::from_utf8(raw) else {
            errors.push(err(1, col, "", "the column name is not UTF-8 text".into()));
            names.push(String::new());
            continue;
        };
        let name = name.trim();
        names.push(name.to_string());
        match REQUIRED_COLUMNS.iter().chain(&OPTIONAL_COLUMNS).find(|c| **c == name) {
            Some(known) => {
                if index.insert(*known, i).is_some() {
                    errors.push(err(1, col, name, format!("column '{name}' appears twice")));
                }
            }
            None => errors.push(err(
                1,
                col,
                name,
                format!(
                    "unknown column '{name}' (the columns are {}, {})",
                    REQUIRED_COLUMNS.join(", "),
                    OPTIONAL_COLUMNS.join(", ")
                ),
            )),
        }
    }
    for required in REQUIRED_COLUMNS {
        if !index.contains_key(required) {
            errors.push(err(1, 1, required, format!("missing required column '{required}'")));
        }
    }
    (errors.len() == before).then_some(Columns { names, index })
}

/// The row's fields as trimmed text, or `None` after reporting why they cannot be read.
fn fields(record: &csv::ByteRecord, line: u64, names: &[String], errors: &mut Vec<RosterError>) -> Option<Vec<String>> {
    if record.len() != names.len() {
        let col = record.len().min(names.len()) + 1;
        let column = names.get(col - 1).map_or("", String::as_str);
        let message = format!("the row has {} field(s), the header {}", record.len(), names.len());
        errors.push(err(line, col, column, message));
        return None;
    }
    let mut fields = Vec::with_capacity(record.len());
    let mut ok = true;
    for (i, raw) in record.iter().enumerate() {
        match std::str::from_utf8(raw) {
            Ok(s) => fields.push(s.trim().to_string()),
            Err(_) => {
                errors.push(err(line, i + 1, &names[i], "not UTF-8 text (save the file as UTF-8)".into()));
                ok = false;
            }
        }
    }
    ok.then_some(fields)
}

/// One row as a patient; each bad field is reported. The patient id comes back whenever it is
/// good (so a later duplicate can be found), the patient only when it could be built.
fn row(
    fields: &[String],
    line: u64,
    columns: &Columns,
    slots: &[&str],
    languages: &[&str],
    errors: &mut Vec<RosterError>,
) -> (Option<PatientId>, Option<Patient>) {
    fn field<T>(
        (fields, line, columns): (&[String], u64, &Columns),
        errors: &mut Vec<RosterError>,
        name: &'static str,
        f: impl Fn(&str) -> Result<Option<T>, String>,
    ) -> Option<T> {
        let (value, i) = columns.get(fields, name)?;
        match f(value) {
            Ok(v) => v,
            Err(message) => {
                errors.push(err(line, i + 1, name, message));
                None
            }
        }
    }
    let at = (fields, line, columns);
    let patient_id = field(at, errors, "patient_id", |v| required(v).and_then(edge::<PatientId>).map(Some));
    let name = field(at, errors, "name", |v| required(v).and_then(name).map(Some));
    let phone = field(at, errors, "phone", |v| required(v).and_then(edge::<E164>).map(Some));
    let birth_md =
        field(at, errors, "birth_date", |v| required(v).and_then(date).map(|d| Some(d.format("%m%d").to_string())));
    let language =
        field(at, errors, "language", |v| optional(v, |v| one_of(v, languages, "language", "prompts exist for")));
    let care_start = field(at, errors, "care_start", |v| optional(v, date));
    let care_end = field(at, errors, "care_end", |v| optional(v, date));
    let call_slot = field(at, errors, "call_slot", |v| optional(v, |v| one_of(v, slots, "call slot", "the slots are")));
    let email = field(at, errors, "email", |v| optional(v, email));
    let area = field(at, errors, "area", |v| Ok((!v.is_empty()).then(|| v.to_string())));
    if let (Some(start), Some(end)) = (care_start, care_end) {
        if end < start {
            let (_, i) = columns.get(fields, "care_end").expect("care_end was read");
            errors.push(err(line, i + 1, "care_end", format!("care ends ({end}) before it starts ({start})")));
        }
    }
    let patient = patient_id.clone().zip(phone).map(|(patient_id, phone)| Patient {
        patient_id,
        name: name.unwrap_or_default(),
        phone,
        birth_md,
        language: language.unwrap_or_else(|| DEFAULT_LANGUAGE.to_string()),
        email,
        area,
        care_start,
        care_end,
        call_slot,
    });
    (patient_id, patient)
}

fn required(v: &str) -> Result<&str, String> {
    if v.is_empty() { Err("required, but empty".into()) } else { Ok(v) }
}

fn optional<T>(v: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if v.is_empty() { Ok(None) } else { f(v).map(Some) }
}

/// A value checked at the edge; the message repeats it, for whoever fixes the file.
fn edge<T: FromStr<Err = Invalid>>(v: &str) -> Result<T, String> {
    v.parse().map_err(|e: Invalid| format!("'{v}' is not {}", e.expected()))
}

fn name(v: &str) -> Result<String, String> {
    if v.chars().any(char::is_control) {
        Err("the name holds a control character (a line break?)".into())
    } else if v.chars().count() > 100 {
        Err("the name is longer than 100 characters".into())
    } else {
        Ok(v.to_string())
    }
}

fn date(v: &str) -> Result<NaiveDate, String> {
    let shaped = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    shaped
        .then(|| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("'{v}' is not a date written YYYY-MM-DD"))
}

fn one_of(v: &str, allowed: &[&str], what: &str, listed: &str) -> Result<String, String> {
    if allowed.contains(&v) {
        Ok(v.to_string())
    } else {
        Err(format!("unknown {what} '{v}' ({listed} {})", allowed.join(", ")))
    }
}

/// An address as people write it: one `@`, something before it, a domain with a dot after
/// it, and no spaces. Whether it reaches anyone only a message can tell.
pub fn email(v: &str) -> Result<String, String> {
    let looks_right =
        v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        }) && !v.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'));
    if looks_right { Ok(v.to_string()) } else { Err(format!("'{v}' is not an e-mail address")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANGS: &[&str] = &["en-US", "ja-JP"];

    fn parse(text: &str) -> Result<Vec<Patient>, RosterErrors> {
        parse_roster("r.csv", text.as_bytes(), DEFAULT_SLOTS, LANGS)
    }

    fn lines(text: &str) -> Vec<String> {
        parse(text).unwrap_err().to_string().lines().map(String::from).collect()
    }

    #[test]
    fn a_good_row_becomes_a_patient_with_defaults_for_empty_fields() {
        let p = parse(
            "patient_id,name,phone,birth_date,language,call_slot\n P001 , 山田 花子 ,090-1234-5678,1950-04-12,,\n",
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].patient_id, "P001");
        assert_eq!(p[0].name, "山田 花子");
        assert_eq!(p[0].phone, "+819012345678");
        assert_eq!(p[0].birth_md.as_deref(), Some("0412"));
        assert_eq!(p[0].language, "ja-JP");
        assert_eq!((p[0].call_slot.as_ref(), p[0].email.as_ref(), p[0].area.as_ref()), (None, None, None));
    }

    #[test]
    fn fields_are_checked_one_by_one() {
        assert!(edge::<PatientId>("P-001_a").is_ok());
        assert!(edge::<PatientId>(&"x".repeat(65)).is_err());
        assert!(edge::<PatientId>("P 1").is_err());
        assert!(date("2026-02-29").is_err(), "no such day");
        assert!(date("2026-2-01").is_err(), "two-digit months");
        assert!(date("2028-02-29").is_ok());
        assert!(email("a.b@example.jp").is_ok());
        for bad in ["a@b", "@example.jp", "a@@example.jp", "a b@example.jp", "a@example..jp", "a@.jp"] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(edge::<E164>("03-1234-5678").is_ok());
        assert_eq!(
            edge::<E164>("1234").unwrap_err(),
            "'1234' is not a phone number like 090-1234-5678, 03-1234-5678 or +819012345678"
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_its_line_and_column() {
        let text = "patient_id,name,phone,birth_date,care_start,care_end,email\n\
                    P001,A,090-1234-5678,1950-04-12,,,\n\
                    P 2,,12,1950-13-01,2026-12-01,2026-11-01,nope\n";
        assert_eq!(
            lines(text),
            [
                "r.csv:3:1: error: 'P 2' is not a patient id: 1 to 64 letters A-Z a-z, digits, _ or -",
                "r.csv:3:2: error: required, but empty",
                "r.csv:3:3: error: '12' is not a phone number like 090-1234-5678, 03-1234-5678 or +819012345678",
                "r.csv:3:4: error: '1950-13-01' is not a date written YYYY-MM-DD",
                "r.csv:3:6: error: care ends (2026-11-01) before it starts (2026-12-01)",
                "r.csv:3:7: error: 'nope' is not an e-mail address",
            ]
        );
    }

    #[test]
    fn the_header_is_checked_before_any_row() {
        assert_eq!(
            lines("patient_id,name,phone,colour\nP1,A,090-1234-5678,red\n"),
            [
                "r.csv:1:1: error: missing required column 'birth_date'",
                "r.csv:1:4: error: unknown column 'colour' (the columns are patient_id, name, phone, birth_date, \
                 language, care_start, care_end, call_slot, email, area)",
            ]
        );
        assert_eq!(lines(""), ["r.csv:1:1: error: the file is empty: the first line must name the columns"]);
        assert_eq!(lines("patient_id,name,phone,birth_date,name\n"), ["r.csv:1:5: error: column 'name' appears twice"]);
    }

    #[test]
    fn a_short_row_and_text_that_is_not_utf8_are_reported() {
        let mut bytes = b"patient_id,name,phone,birth_date\nP1,A,090-1234-5678\nP2,".to_vec();
        bytes.extend_from_slice(&[0x82, 0xa0]); // Shift_JIS
        bytes.extend_from_slice(b",090-1234-5678,1950-01-01\n");
        let e = parse_roster("r.csv", &bytes, DEFAULT_SLOTS, LANGS).unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.csv:2:4: error: the row has 3 field(s), the header 4\n\
             r.csv:3:2: error: not UTF-8 text (save the file as UTF-8)"
        );
        assert_eq!(e.errors[0].column, "birth_date");
    }

    #[test]
    fn unknown_slots_and_languages_name_the_allowed_ones() {
        assert_eq!(
            lines("patient_id,name,phone,birth_date,call_slot,language\nP1,A,090-1234-5678,1950-01-01,night,fr-FR\n"),
            [
                "r.csv:2:5: error: unknown call slot 'night' (the slots are morning, afternoon)",
                "r.csv:2:6: error: unknown language 'fr-FR' (prompts exist for en-US, ja-JP)",
            ]
        );
    }
}
