//! The one way the tests make a patient, and the roster file a list of patients is read from.
//!
//! `patient(id, phone)` has what a call needs (a birthday to confirm, a language); the rest is
//! set with the builder methods:
//! `patient("P001", MOBILE).language("en-US").area("north").care("2026-11-01", "2026-12-31")`.

use ivr::store::Patient;

/// A patient with the birthday 04-12, calls in Japanese, no e-mail, area, care period or slot.
pub fn patient(id: &str, phone: &str) -> Patient {
    Patient {
        patient_id: id.parse().unwrap_or_else(|e| panic!("{id}: {e}")),
        name: format!("患者 {id}"),
        phone: phone.parse().unwrap_or_else(|e| panic!("{phone}: {e}")),
        birth_md: Some("0412".into()),
        language: "ja-JP".into(),
        email: None,
        area: None,
        care_start: None,
        care_end: None,
        call_slot: None,
    }
}

/// The builder methods on [`Patient`]: each sets one thing and gives the patient back.
pub trait PatientBuilder: Sized {
    fn name(self, name: &str) -> Self;
    fn language(self, language: &str) -> Self;
    fn area(self, area: &str) -> Self;
    fn email(self, email: &str) -> Self;
    /// The slot the daily call is placed in (`morning`, `afternoon`).
    fn slot(self, slot: &str) -> Self;
    /// Home care from `start` (`YYYY-MM-DD`), open-ended.
    fn care_from(self, start: &str) -> Self;
    /// Home care from `start` to `end` (`YYYY-MM-DD`, both included).
    fn care(self, start: &str, end: &str) -> Self;
    /// No birthday on file: the call asks none.
    fn no_birthday(self) -> Self;
}

impl PatientBuilder for Patient {
    fn name(self, name: &str) -> Self {
        Patient { name: name.into(), ..self }
    }
    fn language(self, language: &str) -> Self {
        Patient { language: language.into(), ..self }
    }
    fn area(self, area: &str) -> Self {
        Patient { area: Some(area.into()), ..self }
    }
    fn email(self, email: &str) -> Self {
        Patient { email: Some(email.into()), ..self }
    }
    fn slot(self, slot: &str) -> Self {
        Patient { call_slot: Some(slot.into()), ..self }
    }
    fn care_from(self, start: &str) -> Self {
        Patient { care_start: Some(day(start)), care_end: None, ..self }
    }
    fn care(self, start: &str, end: &str) -> Self {
        Patient { care_start: Some(day(start)), care_end: Some(day(end)), ..self }
    }
    fn no_birthday(self) -> Self {
        Patient { birth_md: None, ..self }
    }
}

/// A day written `YYYY-MM-DD`.
pub fn day(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The header of [`roster_csv`]: every column a roster may have.
pub const ROSTER_HEADER: &str = "patient_id,name,phone,birth_date,language,care_start,care_end,call_slot,email,area";

/// The roster file that imports `patients` (a birthday is written as one in 1950).
pub fn roster_csv(patients: &[Patient]) -> String {
    let mut csv = format!("{ROSTER_HEADER}\n");
    for p in patients {
        let birth = p.birth_md.as_deref().map(|md| format!("1950-{}-{}", &md[..2], &md[2..])).unwrap_or_default();
        let day = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let (care_start, care_end) = (day(p.care_start), day(p.care_end));
        let cells = [
            p.patient_id.as_str(),
            &p.name,
            p.phone.as_str(),
            &birth,
            &p.language,
            &care_start,
            &care_end,
            p.call_slot.as_deref().unwrap_or(""),
            p.email.as_deref().unwrap_or(""),
            p.area.as_deref().unwrap_or(""),
        ];
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    csv
}
