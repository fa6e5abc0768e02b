//! Processing numbers, API tokens and the audit log, as the store sees them.

use chrono::{DateTime, Utc};

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
    pub patient_id: String,
    pub number_hash: String,
    /// The number sealed, kept while it may be said or sent again.
    pub sealed: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub consent: Consent,
    /// sms | email | read_aloud | none
    pub delivery: String,
    pub message: Option<NewMessage>,
}

/// A message for the outbox.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// sms | email
    pub channel: String,
    pub recipient: String,
    pub body_sealed: String,
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
    Valid { number_id: i64, patient_id: String, issued_at: DateTime<Utc> },
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
pub const NUMBER_READ_ANSWER: &str = "number_read_aloud";
