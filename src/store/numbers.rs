//! Processing numbers, the outbox and API tokens, as the store sees them.

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

/// A message claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub message_id: i64,
    pub patient_id: Option<String>,
    pub number_id: Option<i64>,
    pub channel: String,
    pub recipient: String,
    pub body_sealed: String,
    /// Sends tried before this one.
    pub attempts: i64,
}

/// How a send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// Accepted by the provider.
    Sent { provider_id: String, status: String },
    /// Try again at this time.
    Retry { error: String, at: DateTime<Utc> },
    /// Never again: a permanent error, or the last attempt failed.
    Failed { error: String, dead: bool },
    /// The SMS cannot reach this phone (a landline: Twilio's 21614 or 30006). Final for SMS; the
    /// number it carries, while still valid, falls back once: to e-mail when the patient has an
    /// address and `email` (e-mail is configured) is true, else to being read aloud on the
    /// patient's next call. The health centre is alerted either way.
    Undeliverable { error: String, email: bool },
}

/// What a message that could not be delivered fell back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    Email,
    ReadAloud,
    /// Nothing: the number is no longer valid, or no copy of it was kept.
    None,
}

impl Fallback {
    /// The name stored in `outbox.fallback`.
    pub fn name(self) -> &'static str {
        match self {
            Fallback::Email => "email",
            Fallback::ReadAloud => "read_aloud",
            Fallback::None => "none",
        }
    }

    /// The alert raised for the health centre.
    pub fn alert(self, error: &str) -> String {
        match self {
            Fallback::Email => format!("message_failed: SMS failed: landline ({error}); sent by e-mail instead"),
            Fallback::ReadAloud => {
                format!("message_failed: SMS failed: landline ({error}); number will be read on the next call")
            }
            Fallback::None => format!("message_failed: SMS failed: landline ({error}); no other way to deliver it"),
        }
    }
}

/// A message due for sending whose number expired before it could be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateMessage {
    pub message_id: i64,
    pub patient_id: String,
    pub number_id: i64,
    pub channel: String,
    pub recipient: String,
    /// Its number was itself issued to replace an expired one: it is not replaced again.
    pub reissued: bool,
}

/// The alert raised when a number is replaced because it expired before delivery.
pub const REISSUED_ALERT: &str = "message_reissued: re-issued: expired before delivery";
/// The alert raised when a replacement number also expired before delivery.
pub const LATE_DEAD_ALERT: &str = "message_dead: expired before delivery, after a re-issue; no further number";
/// The answer a flow records when it reads a number held for the next call
/// (`record_answer` with `set = { number_read_aloud = true }`): the pending delivery is done.
pub const NUMBER_READ_ANSWER: &str = "number_read_aloud";

/// Timestamps as SQLite stores them: ISO 8601 in UTC with milliseconds, which sort as text.
pub fn sqlite_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn parse_sqlite_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}
