//! Processing numbers, API tokens and the audit log, as the store sees them.

use chrono::{DateTime, Utc};

use super::Fut;
use crate::types::{Alert, AlertKind, Channel, NumberDelivery, NumberOrigin, PatientId, Scopes};

/// Who consented to a number being issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    /// In a call, at this turn (the call is the one being served).
    Call { seq: i64 },
    /// A staff member, by name (the manual path).
    Staff { name: String },
}

/// A number to record, with the message that delivers it.
#[derive(Debug, Clone)]
pub struct NewNumber {
    pub patient_id: PatientId,
    pub number_hash: String,
    /// The number sealed, kept while it may be said or sent again.
    pub sealed: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub consent: Consent,
    pub delivery: NumberDelivery,
    pub message: Option<NewMessage>,
}

/// A message for the outbox.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub channel: Channel,
    pub recipient: String,
    pub body_sealed: String,
}

impl NewNumber {
    /// A number read aloud on the call that issued it waits to be read until the call says the
    /// read-back finished (the flow records [`NUMBER_READ_ANSWER`]): a call that drops first
    /// leaves it for the next call, or for the follow-up alert.
    pub fn waits_to_be_read(&self) -> bool {
        self.delivery == NumberDelivery::ReadAloud && self.sealed.is_some()
    }
}

/// A number recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub number_id: i64,
    pub message_id: Option<i64>,
}

/// What the store knows about a number presented for verification. The API answers all but
/// `Valid` alike; the precise reason goes to the audit log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid { number_id: i64, patient_id: PatientId, issued_at: DateTime<Utc> },
    Unknown,
    Used,
    Expired,
    Revoked,
}

impl Verdict {
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "valid",
            Verdict::Unknown => "unknown",
            Verdict::Used => "used",
            Verdict::Expired => "expired",
            Verdict::Revoked => "revoked",
        }
    }
}

/// A patient's number that is still valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidNumber {
    pub number_id: i64,
    pub expires_at: DateTime<Utc>,
    pub sealed: Option<String>,
    /// Its SMS could not reach the phone: it is to be read aloud on the patient's next call.
    pub read_pending: bool,
}

/// The answer a flow records when it reads a number held for the next call
/// (`record_answer` with `set = { number_read_aloud = true }`): the pending delivery is done.
pub const NUMBER_READ_ANSWER: &str = crate::flow::NUMBER_READ;

/// How a consent is stored: (consent_seq, consent_staff, consent_channel), and the actor named
/// in the audit log. `consent_channel` is the number's origin ([`NumberOrigin`]), which the
/// ministry's figures count numbers by.
pub fn consent_columns(c: &Consent) -> (Option<i64>, Option<&str>, &'static str) {
    match c {
        Consent::Call { seq } => (Some(*seq), None, NumberOrigin::Call.as_str()),
        Consent::Staff { name } => (None, Some(name.as_str()), NumberOrigin::Staff.as_str()),
    }
}

/// Who the audit log names for an issue: the call, or the staff member.
pub fn consent_actor(c: &Consent) -> &str {
    match c {
        Consent::Call { .. } => "call",
        Consent::Staff { name } => name,
    }
}

/// The consent of a stored number, back from its columns (a number replacing it keeps it).
pub fn stored_consent(call_id: Option<i64>, seq: Option<i64>, staff: Option<String>) -> Consent {
    match (call_id, seq) {
        (Some(_), Some(seq)) => Consent::Call { seq },
        _ => Consent::Staff { name: staff.unwrap_or_default() },
    }
}

/// Which rule of the database refused a new number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberClash {
    /// A valid number has the same hash: draw another.
    Hash,
    /// This consent (turn of a call) already has its number.
    Consent,
    /// The expired number already has its replacement.
    Reissue,
    /// The patient row is missing.
    Patient,
}

/// The error a refused number becomes.
pub fn clash_error(
    clash: NumberClash,
    n: &NewNumber,
    call_id: Option<i64>,
    reissue_of: Option<i64>,
) -> crate::store::StoreError {
    use crate::store::StoreError;
    match clash {
        NumberClash::Hash => StoreError::Conflict,
        NumberClash::Consent => {
            let seq = consent_columns(&n.consent).0;
            StoreError::Duplicate(format!(
                "processing number for turn {} of call {}",
                seq.unwrap_or_default(),
                call_id.unwrap_or_default()
            ))
        }
        NumberClash::Reissue => {
            StoreError::Duplicate(format!("replacement for number {}", reissue_of.unwrap_or_default()))
        }
        NumberClash::Patient => StoreError::UnknownPatient(n.patient_id.to_string()),
    }
}

/// A patient's number as the staff's page tells its story (never the number itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberStory {
    /// `valid`, `used`, `revoked` or `expired`.
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `call`, or `staff` with the staff member's name.
    pub consent: String,
    pub consent_staff: Option<String>,
    /// `sms`, `email`, `read_aloud` or `none`.
    pub delivery: String,
    /// When the contact app's server verified it, and which token.
    pub used_at: Option<DateTime<Utc>>,
    pub used_by: Option<String>,
}

/// A number as found by its hash, for [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundNumber {
    pub number_id: i64,
    pub patient_id: PatientId,
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What a number presented at `now` is worth. A valid number whose time is up is expired,
/// whatever its stored status says.
pub fn judge(found: Option<FoundNumber>, now: DateTime<Utc>) -> Verdict {
    let Some(n) = found else { return Verdict::Unknown };
    match n.status.as_str() {
        "used" => Verdict::Used,
        "revoked" => Verdict::Revoked,
        "expired" => Verdict::Expired,
        _ if n.expires_at <= now => Verdict::Expired,
        _ => Verdict::Valid { number_id: n.number_id, patient_id: n.patient_id, issued_at: n.issued_at },
    }
}

/// A live API token, as a request presenting it is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub scopes: Scopes,
    /// When it was last used, to the minute ([`TOKEN_USE_PRECISION`]).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// How often a token's `last_used_at` is written: at most once in this time, so that a busy
/// client costs the database no write per request.
pub const TOKEN_USE_PRECISION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl ApiToken {
    /// Its use at `now` is worth recording (the last one recorded is older than the precision).
    pub fn use_is_news(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at.is_none_or(|t| now - t >= TOKEN_USE_PRECISION)
    }
}

/// An API token as `ivr tokens list` shows it: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What revoking a token by name did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke {
    /// It was live; it is refused from now on.
    Revoked,
    /// It had been revoked before (nothing changed).
    AlreadyRevoked,
    /// No token has this name.
    Unknown,
}

/// Scopes as stored (`verify,issue`), back into their type.
pub fn stored_scopes(text: &str) -> Result<Scopes, crate::store::StoreError> {
    Scopes::parse(text).map_err(|e| crate::store::StoreError::Turn(format!("api_tokens.scopes '{text}': {e}")))
}

/// The processing numbers' operations (`store.numbers()`), with API tokens and the audit log.
pub trait Numbers {
    /// Issues a number outside a call (the manual path), with its message, in one transaction.
    fn issue<'a>(&'a self, n: &'a NewNumber) -> Fut<'a, Issued>;
    /// The patient's number that is still valid at `now`.
    fn valid<'a>(&'a self, patient_id: &'a str, now: DateTime<Utc>) -> Fut<'a, Option<ValidNumber>>;
    /// Looks a number up by its keyed hash ([`judge`]); with `consume`, a valid number is used
    /// up (exactly once under concurrent calls). Every attempt goes to the audit log.
    fn verify<'a>(&'a self, hash: &'a str, now: DateTime<Utc>, actor: &'a str, consume: bool) -> Fut<'a, Verdict>;
    /// Stores an API token's hash and scopes under a unique name (a revoked token keeps its
    /// name: the audit log names tokens).
    fn add_token<'a>(&'a self, name: &'a str, token_hash: &'a str, scopes: Scopes) -> Fut<'a, ()>;
    /// The live (not revoked) API token with this hash.
    fn token<'a>(&'a self, token_hash: &'a str) -> Fut<'a, Option<ApiToken>>;
    /// Records that the token was used at `at` (kept only if later than what is stored).
    fn token_used<'a>(&'a self, name: &'a str, at: DateTime<Utc>) -> Fut<'a, ()>;
    /// Every API token, revoked ones too, by name.
    fn tokens(&self) -> Fut<'_, Vec<TokenInfo>>;
    /// Revokes the token with this name at `at`: from then on it is refused like an unknown one.
    fn revoke_token<'a>(&'a self, name: &'a str, at: DateTime<Utc>) -> Fut<'a, Revoke>;
    /// (actor, action, detail) of the processing-number audit log, oldest first.
    fn audit_log(&self) -> Fut<'_, Vec<(String, String, String)>>;
    /// How many numbers are valid (not used, revoked or expired by status).
    fn valid_count(&self) -> Fut<'_, i64>;
    /// A patient's numbers, oldest first, for the staff's page.
    fn story<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<NumberStory>>;
    /// The follow-up of numbers no channel delivered: each number still waiting to be read
    /// aloud (neither used nor replaced) that began waiting before `waiting_since_before`, or
    /// whose time is up at `now`, raises [`unread_alert`] for its patient, once. Returns how
    /// many were alerted.
    fn alert_unread(&self, waiting_since_before: DateTime<Utc>, now: DateTime<Utc>) -> Fut<'_, usize>;
}

/// The alert for a number that no call read aloud in time and no message delivered.
pub fn unread_alert() -> Alert {
    Alert::new(
        AlertKind::NumberUnread,
        "a processing number was issued but never delivered (no call read it to the end); call the patient back",
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::store::StoreError;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 1, h, 0, 0).unwrap()
    }

    fn found(status: &str) -> FoundNumber {
        FoundNumber {
            number_id: 7,
            patient_id: PatientId::parse("p1").unwrap(),
            status: status.into(),
            issued_at: at(9),
            expires_at: at(12),
        }
    }

    #[test]
    fn a_number_is_valid_until_its_time_is_up_and_then_expired() {
        assert_eq!(judge(None, at(10)), Verdict::Unknown);
        assert_eq!(
            judge(Some(found("valid")), at(10)),
            Verdict::Valid { number_id: 7, patient_id: PatientId::parse("p1").unwrap(), issued_at: at(9) }
        );
        assert_eq!(judge(Some(found("valid")), at(12)), Verdict::Expired);
        assert_eq!(judge(Some(found("used")), at(10)), Verdict::Used);
        assert_eq!(judge(Some(found("revoked")), at(10)), Verdict::Revoked);
        assert_eq!(judge(Some(found("expired")), at(10)), Verdict::Expired);
    }

    #[test]
    fn a_replacement_keeps_the_consent_of_the_number_it_replaces() {
        assert_eq!(stored_consent(Some(3), Some(2), None), Consent::Call { seq: 2 });
        assert_eq!(stored_consent(None, None, Some("sato".into())), Consent::Staff { name: "sato".into() });
        assert_eq!(stored_consent(None, Some(2), None), Consent::Staff { name: String::new() });
        let staff = Consent::Staff { name: "sato".into() };
        assert_eq!(consent_columns(&staff), (None, Some("sato"), "staff"));
        assert_eq!(consent_actor(&staff), "sato");
        assert_eq!(consent_columns(&Consent::Call { seq: 4 }), (Some(4), None, "call"));
    }

    #[test]
    fn a_refused_number_names_what_refused_it() {
        let n = NewNumber {
            patient_id: PatientId::parse("p1").unwrap(),
            number_hash: "h".into(),
            sealed: None,
            issued_at: at(9),
            expires_at: at(12),
            consent: Consent::Call { seq: 2 },
            delivery: NumberDelivery::Sms,
            message: None,
        };
        assert!(matches!(clash_error(NumberClash::Hash, &n, Some(5), None), StoreError::Conflict));
        let e = clash_error(NumberClash::Consent, &n, Some(5), None).to_string();
        assert!(e.contains("turn 2 of call 5"), "{e}");
        let e = clash_error(NumberClash::Reissue, &n, None, Some(9)).to_string();
        assert!(e.contains("replacement for number 9"), "{e}");
        assert!(
            matches!(clash_error(NumberClash::Patient, &n, None, None), StoreError::UnknownPatient(p) if p == "p1")
        );
    }
}
