//! Messages waiting to be sent (SMS and e-mail), and how a send ended.

use chrono::{DateTime, Utc};

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
