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
}

/// Timestamps as SQLite stores them: ISO 8601 in UTC with milliseconds, which sort as text.
pub fn sqlite_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn parse_sqlite_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}
