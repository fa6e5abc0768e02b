//! Patients of the roster: who is called, in which language, at which slot.

use std::borrow::Cow;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Fut;
use crate::types::{E164, PatientId};

/// A patient of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    pub patient_id: PatientId,
    pub name: String,
    pub phone: E164,
    /// Birth month and day, `MMDD` (asked back on the phone to confirm who answers).
    pub birth_md: Option<String>,
    /// The prompt catalogue the calls use, e.g. `ja-JP`.
    pub language: String,
    pub email: Option<String>,
    /// A free grouping for the health centre, e.g. `north`.
    pub area: Option<String>,
    /// The home-care period, both ends included (`YYYY-MM-DD` on the wire).
    pub care_start: Option<NaiveDate>,
    pub care_end: Option<NaiveDate>,
    /// The preferred call slot's name; `None` for the first configured slot.
    pub call_slot: Option<String>,
}

/// What an import did: patients added, patients changed, and patients already as in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCount {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// A care date as stored: text, `YYYY-MM-DD`.
pub(super) fn date_text(d: Option<NaiveDate>) -> Option<String> {
    d.map(|d| d.to_string())
}

/// A stored care date read back.
pub(super) fn text_date(s: Option<String>) -> Result<Option<NaiveDate>, chrono::ParseError> {
    s.map(|s| s.parse()).transpose()
}

/// Whether some patient id is given twice.
pub(super) fn has_duplicate_ids(patients: &[Patient]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(patients.len());
    !patients.iter().all(|p| seen.insert(p.patient_id.as_str()))
}

/// The last row of each patient id, in the order of those rows.
pub(super) fn last_of_each_id(patients: &[Patient]) -> Vec<Patient> {
    let mut seen = std::collections::HashSet::with_capacity(patients.len());
    let mut kept: Vec<Patient> =
        patients.iter().rev().filter(|p| seen.insert(p.patient_id.as_str())).cloned().collect();
    kept.reverse();
    kept
}

/// The patients' operations (`store.patients()`).
pub trait Patients {
    /// Inserts or updates a patient (by id).
    fn upsert<'a>(&'a self, p: &'a Patient) -> Fut<'a, ()>;
    /// Inserts or updates each patient (by id) in one transaction: all or nothing. A patient
    /// whose every field is as stored keeps its `updated_at`. An id given twice counts once,
    /// and its last row wins ([`unique_ids`]).
    fn import<'a>(&'a self, patients: &'a [Patient]) -> Fut<'a, ImportCount>;
    /// Every patient, by id (byte order).
    fn all(&self) -> Fut<'_, Vec<Patient>>;
    /// A page of the roster, by id (byte order): at most `limit` patients after the first `offset`.
    fn page(&self, limit: i64, offset: i64) -> Fut<'_, Vec<Patient>>;
    fn get<'a>(&'a self, id: &'a str) -> Fut<'a, Option<Patient>>;
    /// The patient with this phone number (E.164), for inbound calls.
    fn by_phone<'a>(&'a self, phone: &'a str) -> Fut<'a, Option<Patient>>;
    /// Retention: empties the calls of every patient whose care ended before `care_ended_before`
    /// of their personal data, in one transaction ([`Anonymised`] says what). Calls already
    /// emptied are left alone; with `dry_run` nothing is written and the counts say what would be.
    fn anonymise_ended_care(&self, care_ended_before: NaiveDate, dry_run: bool) -> Fut<'_, Anonymised>;
}

/// What retention emptied (or, in a dry run, would empty), for patients whose care ended long
/// enough ago. In each call: the state's variables (`{}`), the TwiML of its turns (`''`), and
/// the answers made only of digits (a typed phone number or date); the numbers' sealed copies;
/// the recipient and text of the patient's messages no longer in hand. What stays: the patient
/// id, the call's times and statuses, its health answers (numbers and choices) and alerts, and
/// the roster row itself (the roster file is the health centre's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anonymised {
    /// Patients whose care ended before the cut-off and who had something left to empty.
    pub patients: usize,
    pub calls: usize,
    /// Answers deleted.
    pub answers: usize,
    pub messages: usize,
    pub numbers: usize,
}

/// The patients of an import, each id once: the last row of an id given twice, in its place.
pub fn unique_ids(patients: &[Patient]) -> Cow<'_, [Patient]> {
    if has_duplicate_ids(patients) { Cow::Owned(last_of_each_id(patients)) } else { Cow::Borrowed(patients) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(id: &str, name: &str) -> Patient {
        Patient {
            patient_id: PatientId::parse(id).unwrap(),
            name: name.into(),
            phone: E164::parse("+819012345678").unwrap(),
            birth_md: None,
            language: "ja-JP".into(),
            email: None,
            area: None,
            care_start: None,
            care_end: None,
            call_slot: None,
        }
    }

    #[test]
    fn an_id_given_twice_keeps_its_last_row_in_that_rows_place() {
        let rows = vec![patient("a", "1"), patient("b", "2"), patient("a", "3"), patient("c", "4")];
        assert!(has_duplicate_ids(&rows));
        let kept = last_of_each_id(&rows);
        assert_eq!(kept, vec![patient("b", "2"), patient("a", "3"), patient("c", "4")]);
        assert!(!has_duplicate_ids(&kept));
    }
}
