//! Values checked at the edge. Whatever arrives from outside (a webhook's form, a roster's CSV,
//! an API call, a stored row) becomes one of these through `parse` (or `FromStr`), and past the
//! edge nothing that could be the wrong thing is a bare `String`. Strings remain on the wire and
//! in SQL only: `as_str()` and `Display` give the canonical form back.
//!
//! Values that identify a person print masked in `Debug` (a phone number as `+8190****5678`,
//! keys as `***`), so a `{:?}` in a log line never leaks them; `Display` is the full value, for
//! the wire.
//!
//! This module imports nothing of the crate: every layer may use it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value was refused at the edge. The message names what was expected, never the value
/// (it may be personal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(&'static str);

impl Invalid {
    /// What was expected, e.g. "a phone number like 090-1234-5678, 03-1234-5678 or +819012345678".
    pub fn expected(&self) -> &'static str {
        self.0
    }
}

/// Serde through `FromStr` and `Display`, for the string-shaped types below.
macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
        /// Hashes and compares as its text, so a map keyed by it is looked up with a `&str`.
        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        sql_text!($t);
    };
}

/// Stored as text in both back ends: written with `as_str`, read back through `parse`, so a
/// stored value that is no longer valid is a decoding error, never a wrong value past the edge.
macro_rules! sql_text {
    ($t:ty) => {
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(self.as_str().as_bytes())))
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?.parse().map_err(|e: Invalid| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
        impl sqlx::Type<sqlx::Postgres> for $t {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }
        impl sqlx::postgres::PgHasArrayType for $t {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
        impl sqlx::Encode<'_, sqlx::Postgres> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $t {
            fn decode(v: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&str as sqlx::Decode<sqlx::Postgres>>::decode(v)?.parse()?)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Phone numbers

/// A phone number in E.164 (`+819012345678`). Parsed from E.164 or from a Japanese domestic
/// number as people write it (`090-1234-5678`, `03 1234 5678`, `(03)1234-5678`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

/// What kind of line a number is: a mobile takes SMS, a landline does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    Mobile,
    Landline,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Mobile => "mobile",
            LineKind::Landline => "landline",
        }
    }
}

impl fmt::Display for LineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Japanese mobile blocks (+8170, +8180, +8190, and +8160 opened for mobiles).
const MOBILE_PREFIXES: [&str; 4] = ["+8160", "+8170", "+8180", "+8190"];

impl E164 {
    pub fn parse(s: &str) -> Result<E164, Invalid> {
        const EXPECTED: Invalid = Invalid("a phone number like 090-1234-5678, 03-1234-5678 or +819012345678");
        let compact: String = s.trim().chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
        let (plus, digits) = compact.strip_prefix('+').map_or((false, compact.as_str()), |d| (true, d));
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EXPECTED);
        }
        if plus {
            // E.164: a country code (never 0) and at most 15 digits in all.
            return if (8..=15).contains(&digits.len()) && !digits.starts_with('0') {
                Ok(E164(format!("+{digits}")))
            } else {
                Err(EXPECTED)
            };
        }
        // Domestic: a trunk 0, then 9 (landline) or 10 (mobile) digits.
        let national = digits.strip_prefix('0').filter(|n| !n.starts_with('0')).ok_or(EXPECTED)?;
        if (9..=10).contains(&national.len()) { Ok(E164(format!("+81{national}"))) } else { Err(EXPECTED) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Mobile or landline, from the Japanese prefixes; a number of another country counts as a
    /// landline (no SMS is sent abroad).
    pub fn kind(&self) -> LineKind {
        if MOBILE_PREFIXES.iter().any(|p| self.0.starts_with(p)) { LineKind::Mobile } else { LineKind::Landline }
    }

    pub fn is_mobile(&self) -> bool {
        self.kind() == LineKind::Mobile
    }

    /// For logs: the country and the first two digits, the last four, the rest hidden
    /// (`+8190****5678`).
    pub fn masked(&self) -> String {
        let s = &self.0;
        if s.len() <= 9 {
            return format!("{}****", &s[..s.len().min(3)]);
        }
        format!("{}****{}", &s[..5], &s[s.len() - 4..])
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.masked())
    }
}

impl FromStr for E164 {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}
string_serde!(E164);

// ---------------------------------------------------------------------------------------------
// Carrier identifiers

/// Twilio's resource ids: two letters and 32 lowercase hexadecimal digits.
pub fn is_twilio_sid(s: &str, prefixes: &[&str]) -> bool {
    s.len() == 34
        && prefixes.iter().any(|p| s.starts_with(p))
        && s[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An id as a carrier sends it, checked before it goes into a URL path, a log line or a
/// query: 2 to 64 of A-Z, a-z, 0-9, `_` and `-` (what [`CallSid`], [`MessageSid`] and
/// [`AccountSid`] accept); nothing that passes can change a URL's path.
pub fn is_carrier_id(s: &str) -> bool {
    (2..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

macro_rules! sid_type {
    ($(#[$doc:meta])* $t:ident, $expected:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $t(String);

        impl $t {
            pub fn parse(s: &str) -> Result<$t, Invalid> {
                if is_carrier_id(s) { Ok($t(s.to_owned())) } else { Err(Invalid($expected)) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $t {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $t::parse(s)
            }
        }
        string_serde!($t);
    };
}

// Twilio's ids are two letters and 32 lowercase hexadecimal digits (`is_twilio_sid`); a
// TwiML-compatible provider may use others (UUIDs, say), so the types take any carrier id.
sid_type!(
    /// A call's id at the carrier (Twilio: `CA` + 32 hex digits).
    CallSid, "a call id: 2 to 64 of A-Z, a-z, 0-9, - and _"
);
sid_type!(
    /// A message's id at the carrier (Twilio: `SM`/`MM` + 32 hex digits).
    MessageSid, "a message id: 2 to 64 of A-Z, a-z, 0-9, - and _"
);
sid_type!(
    /// The carrier account's id (Twilio: `AC` + 32 hex digits).
    AccountSid, "an account id: 2 to 64 of A-Z, a-z, 0-9, - and _"
);

// ---------------------------------------------------------------------------------------------
// Keys pressed and patients

/// Keys pressed on a phone: `0`–`9`, `*`, `#`; at most 64 of them. May be empty (no key).
/// `Debug` hides them: they may be a birth date or a phone number.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Digits(String);

impl Digits {
    pub const MAX: usize = 64;

    pub fn parse(s: &str) -> Result<Digits, Invalid> {
        if s.len() <= Self::MAX && s.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#') {
            Ok(Digits(s.to_owned()))
        } else {
            Err(Invalid("keys: 0-9, * and #, at most 64"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Digits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digits({} keys)", self.0.len())
    }
}

impl FromStr for Digits {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digits::parse(s)
    }
}
string_serde!(Digits);

/// The health centre's id for a patient: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatientId(String);

impl PatientId {
    pub fn parse(s: &str) -> Result<PatientId, Invalid> {
        if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            Ok(PatientId(s.to_owned()))
        } else {
            Err(Invalid("a patient id: 1 to 64 letters A-Z a-z, digits, _ or -"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PatientId {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PatientId::parse(s)
    }
}
string_serde!(PatientId);

/// Who issued a number by hand, as the consent and the audit log record it: 1 to 100
/// characters, not all of them white space (a consent must name someone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffName(String);

impl StaffName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<StaffName, Invalid> {
        let n = s.chars().count();
        if (1..=Self::MAX_CHARS).contains(&n) && s.chars().any(|c| !c.is_whitespace()) {
            Ok(StaffName(s.to_owned()))
        } else {
            Err(Invalid("a staff name: 1 to 100 characters, not only spaces"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StaffName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StaffName::parse(s)
    }
}
string_serde!(StaffName);

// ---------------------------------------------------------------------------------------------
// Closed sets of names

/// An enum of names as stored and sent: `as_str`, `parse`, `FromStr`, `Display`, serde.
macro_rules! named_enum {
    ($(#[$doc:meta])* $t:ident, $expected:literal { $($(#[$vdoc:meta])* $v:ident = $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $t {
            $($(#[$vdoc])* $v),+
        }

        impl $t {
            /// Every value, in declaration order.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $name),+
                }
            }

            pub fn parse(s: &str) -> Result<$t, Invalid> {
                match s {
                    $($name => Ok($t::$v),)+
                    _ => Err(Invalid($expected)),
                }
            }
        }

        impl FromStr for $t {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $t::parse(s)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $t::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        sql_text!($t);
    };
}

named_enum!(
    /// A call's status, as the carrier reports it (Twilio's names; `answered` is what the
    /// status callback's `answered` event means).
    CallStatus, "a call status: queued, initiated, ringing, in-progress, answered, completed, busy, no-answer, failed or canceled" {
        Queued = "queued",
        Initiated = "initiated",
        Ringing = "ringing",
        InProgress = "in-progress",
        Answered = "answered",
        Completed = "completed",
        Busy = "busy",
        NoAnswer = "no-answer",
        Failed = "failed",
        Canceled = "canceled",
    }
);

impl CallStatus {
    /// How far a call got: a status never replaces one of a higher rank.
    pub fn rank(self) -> i32 {
        match self {
            CallStatus::Queued | CallStatus::Initiated => 0,
            CallStatus::Ringing => 1,
            CallStatus::InProgress | CallStatus::Answered => 2,
            _ => Self::FINAL_RANK,
        }
    }

    /// The rank of the statuses that end a call.
    pub const FINAL_RANK: i32 = 3;

    /// The call has ended (completed, busy, no-answer, failed, canceled).
    pub fn is_final(self) -> bool {
        self.rank() == Self::FINAL_RANK
    }
}

named_enum!(
    /// Who placed a call; `web` is a report the patient sent from the personal link's page
    /// (stored as a call, so every reader of calls sees it).
    Direction, "a direction: inbound, outbound or web" {
        Inbound = "inbound",
        Outbound = "outbound",
        Web = "web",
    }
);

named_enum!(
    /// How a message reaches the patient (SMS, e-mail), or the staff (also a webhook: an
    /// urgent follow-up notice posted to a chat tool).
    Channel, "a channel: sms, email or webhook" {
        Sms = "sms",
        Email = "email",
        Webhook = "webhook",
    }
);

impl Channel {
    /// How a number sent on this channel is delivered.
    pub fn delivery(self) -> NumberDelivery {
        match self {
            Channel::Sms => NumberDelivery::Sms,
            Channel::Email => NumberDelivery::Email,
            // Never a patient's: no number goes out on it.
            Channel::Webhook => NumberDelivery::None,
        }
    }
}

named_enum!(
    /// How a processing number reaches the patient: a message, read aloud on the call, or not
    /// at all (a number given by other means).
    NumberDelivery, "a delivery: sms, email, read_aloud or none" {
        Sms = "sms",
        Email = "email",
        ReadAloud = "read_aloud",
        None = "none",
    }
);

named_enum!(
    /// A message's state in the outbox. States move only forward; `delivered`, `dead` and
    /// `cancelled` are final.
    DeliveryStatus, "a delivery status: pending, sending, sent, delivered, undelivered, failed, dead or cancelled" {
        /// Waiting to be sent (or to be tried again).
        Pending = "pending",
        /// Claimed by a sender, with a lease.
        Sending = "sending",
        /// Accepted by the provider.
        Sent = "sent",
        /// The provider reports it reached the phone.
        Delivered = "delivered",
        /// The provider could not deliver it.
        Undelivered = "undelivered",
        /// A send failed; it may be tried again.
        Failed = "failed",
        /// Given up: never sent again.
        Dead = "dead",
        /// Replaced (its number expired before it could be sent).
        Cancelled = "cancelled",
    }
);

impl DeliveryStatus {
    /// Nothing moves a message out of this state.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Dead | DeliveryStatus::Cancelled)
    }
}

named_enum!(
    /// The kinds of alert the engine raises by itself; a flow's own alerts carry the reason its
    /// file gives.
    AlertKind, "an alert kind: unreachable, message_failed, message_reissued, message_dead, number_unread, hung_up, asked_for_person, flow" {
        /// The patient could not be reached after every attempt.
        Unreachable = "unreachable",
        /// A message could not be delivered.
        MessageFailed = "message_failed",
        /// A number expired before delivery and was issued again.
        MessageReissued = "message_reissued",
        /// A message was given up.
        MessageDead = "message_dead",
        /// A number waiting to be read aloud was not read by any call in time.
        NumberUnread = "number_unread",
        /// The patient answered and hung up before the flow's end.
        HungUp = "hung_up",
        /// The caller pressed the transfer key and could not speak with the centre (outside
        /// its hours, or nobody answered).
        AskedForPerson = "asked_for_person",
        /// Raised by the call flow (low SpO2, breathlessness, identity not confirmed…).
        Flow = "flow",
    }
);

/// An alert the engine raises by itself, for the health centre: its kind and what happened.
/// Stored and shown as `kind: detail` (`unreachable: 3 attempt(s) today, the last busy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub detail: String,
}

impl Alert {
    pub fn new(kind: AlertKind, detail: impl Into<String>) -> Alert {
        Alert { kind, detail: detail.into() }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl Alert {
    /// An alert as the `alerts` table keeps it, read back: `kind: detail` for the engine's own
    /// alerts, and a flow's reason as it is (`spo2_low`), of kind `flow`.
    pub fn from_stored(text: &str) -> Alert {
        match text.split_once(": ") {
            Some((kind, detail)) => match AlertKind::parse(kind) {
                Ok(kind) if kind != AlertKind::Flow => Alert::new(kind, detail),
                _ => Alert::new(AlertKind::Flow, text),
            },
            None => match AlertKind::parse(text) {
                Ok(kind) if kind != AlertKind::Flow => Alert::new(kind, ""),
                _ => Alert::new(AlertKind::Flow, text),
            },
        }
    }
}

/// An alert in words, Japanese then English, as pages and on-duty notices name it: the
/// engine's own kinds, and the reasons of the shipped flow (`health_check` is the single
/// reason its earlier versions gave for every health answer, kept for old rows). `None`: a
/// flow's reason nobody named here, shown as its file wrote it.
pub fn alert_words(kind: AlertKind, reason: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        AlertKind::Unreachable => ("電話がつながらない", "Could not be reached by phone"),
        AlertKind::MessageFailed => ("SMS・メールが届かない", "SMS or e-mail not delivered"),
        AlertKind::MessageReissued => ("処理番号の再発行", "Processing number issued again"),
        AlertKind::MessageDead => ("SMS・メールの送信を断念", "SMS or e-mail given up"),
        AlertKind::NumberUnread => ("処理番号を伝えられていない", "Processing number not read out"),
        AlertKind::HungUp => ("途中で電話が切れた", "Hung up before the end"),
        AlertKind::AskedForPerson => ("職員との会話を希望", "Asked to speak with a person"),
        AlertKind::Flow => match reason {
            "spo2_low" => ("SpO2 低下", "Low SpO2"),
            "breathless" | "breathlessness" => ("息苦しさ", "Breathlessness"),
            "feeling_worse" => ("体調の悪化", "Feeling worse"),
            "health_check" => ("体調の悪化（回答を確認）", "Health worse (see the answers)"),
            "identity_not_confirmed" => ("本人確認ができない", "Identity not confirmed"),
            "no_response" => ("応答なし", "No response"),
            "processing_number_failed" => ("処理番号を発行できない", "Processing number could not be issued"),
            _ => return None,
        },
    })
}

impl rusqlite::types::ToSql for Alert {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Text(self.to_string())))
    }
}

impl sqlx::Type<sqlx::Postgres> for Alert {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Alert {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<sqlx::Postgres>>::encode(self.to_string(), buf)
    }
}

named_enum!(
    /// How soon a person must look at a follow-up item: the flow's alert definition gives it
    /// (`severity = "urgent"`), the engine's own alerts have theirs.
    Severity, "a severity: urgent, high or normal" {
        /// Today, at once (SpO2 at or under 93 %, breathlessness).
        Urgent = "urgent",
        /// Today.
        High = "high",
        /// When the urgent and high ones are done.
        Normal = "normal",
    }
);

impl Severity {
    /// Higher is more urgent: 3, 2, 1 (stored, so the queue sorts in SQL).
    pub fn rank(self) -> i64 {
        match self {
            Severity::Urgent => 3,
            Severity::High => 2,
            Severity::Normal => 1,
        }
    }

    /// The severity of a stored rank (an unknown rank reads as `normal`).
    pub fn of_rank(rank: i64) -> Severity {
        match rank {
            3.. => Severity::Urgent,
            2 => Severity::High,
            _ => Severity::Normal,
        }
    }
}

named_enum!(
    /// How a follow-up item ended: what the person did. Closing an item needs one.
    FollowupOutcome, "an outcome: reached_by_phone, visited, referred_to_hospital, no_action_needed or could_not_reach" {
        ReachedByPhone = "reached_by_phone",
        Visited = "visited",
        ReferredToHospital = "referred_to_hospital",
        NoActionNeeded = "no_action_needed",
        CouldNotReach = "could_not_reach",
    }
);

named_enum!(
    /// Where a follow-up item stands: waiting for a person, claimed by one (対応中), or closed
    /// with an outcome.
    FollowupStatus, "a status: open, claimed or closed" {
        Open = "open",
        Claimed = "claimed",
        Closed = "closed",
    }
);

named_enum!(
    /// Where a processing number came from, as the store records it (`consent_channel`): a
    /// patient's consent in a call, a staff member's manual issue (consent confirmed on screen),
    /// or the patient's web self-report.
    NumberOrigin, "an origin: call, staff or web" {
        Call = "call",
        Staff = "staff",
        Web = "web",
    }
);

named_enum!(
    /// How the ministry's figures are grouped in time: per day, per week (Monday to Sunday,
    /// cut at the period's ends), or the whole chosen period at once.
    FiguresBy, "by: day, week or period" {
        Day = "day",
        Week = "week",
        Period = "period",
    }
);

// ---------------------------------------------------------------------------------------------
// API token scopes

named_enum!(
    /// What an API token may do. The contact app's server gets `verify` only; staff tools get
    /// the staff scopes (`issue`, `import`, `read`).
    Scope, "a scope: verify, issue, import, read or followup" {
        /// Check and consume a processing number (the contact app's server). Reads no health data.
        Verify = "verify",
        /// Issue a processing number for a patient (the manual path).
        Issue = "issue",
        /// Import the roster.
        Import = "import",
        /// Read staff data (patients, calls, answers, alerts, the follow-up queue).
        Read = "read",
        /// Claim, release and close follow-up items.
        Followup = "followup",
    }
);

/// The staff scopes, which `staff` stands for on the command line.
pub const STAFF_SCOPES: [Scope; 4] = [Scope::Issue, Scope::Import, Scope::Read, Scope::Followup];

/// The scopes of a token: a non-empty set. Written as a comma-separated list in a fixed order
/// (`issue,import,read,followup`); read from one where `staff` stands for the staff scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

/// What [`Scopes::parse`] expects.
pub const SCOPES_EXPECTED: &str = "one or more scopes, comma separated: verify, issue, import, read, followup, or staff (= issue,import,read,followup)";

impl Scopes {
    /// A set of these scopes (`None` when there are none).
    pub fn of(scopes: &[Scope]) -> Option<Scopes> {
        let bits = scopes.iter().fold(0u8, |b, s| b | Scopes::bit(*s));
        (bits != 0).then_some(Scopes(bits))
    }

    fn bit(s: Scope) -> u8 {
        let i = Scope::ALL.iter().position(|x| *x == s).expect("every scope is in ALL");
        1 << i
    }

    /// A comma-separated list (spaces around names ignored); `staff` stands for
    /// [`STAFF_SCOPES`]. An empty list is refused.
    pub fn parse(list: &str) -> Result<Scopes, Invalid> {
        let mut all = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "staff" => all.extend(STAFF_SCOPES),
                _ => all.push(Scope::parse(name).map_err(|_| Invalid(SCOPES_EXPECTED))?),
            }
        }
        Scopes::of(&all).ok_or(Invalid(SCOPES_EXPECTED))
    }

    /// The token may do this.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & Scopes::bit(scope) != 0
    }

    /// The scopes held, in [`Scope::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.iter().copied().filter(move |s| self.allows(*s))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl FromStr for Scopes {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scopes::parse(s)
    }
}
// Staff

/// A staff member's sign-in name: `[a-z0-9._-]{1,64}`, starting with a letter or digit
/// (lower case, so `Sato` and `sato` cannot be two accounts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<UserName, Invalid> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(UserName(s.to_owned()))
        } else {
            Err(Invalid("a user name: 1 to 64 letters a-z, digits, '.', '_' or '-', starting with a letter or digit"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserName::parse(s)
    }
}
string_serde!(UserName);

named_enum!(
    /// What a staff member may do: a viewer reads; a nurse also acts on patients (follow-ups,
    /// numbers, calls); an admin also manages users and tokens.
    Role, "a role: admin, nurse or viewer" {
        Admin = "admin",
        Nurse = "nurse",
        Viewer = "viewer",
    }
);

impl Role {
    /// Acts on patients: a nurse or an admin.
    pub fn can_act(self) -> bool {
        matches!(self, Role::Admin | Role::Nurse)
    }

    /// Manages users, tokens, and reads the audit log: an admin.
    pub fn can_manage(self) -> bool {
        self == Role::Admin
    }
}

named_enum!(
    /// The language of the staff pages, per user.
    UiLanguage, "a language: ja or en" {
        Ja = "ja",
        En = "en",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_numbers_become_e164_and_know_their_line() {
        for (given, e164, kind) in [
            ("090-1234-5678", "+819012345678", LineKind::Mobile),
            ("080 1234 5678", "+818012345678", LineKind::Mobile),
            ("060-1234-5678", "+816012345678", LineKind::Mobile),
            ("03 1234 5678", "+81312345678", LineKind::Landline),
            ("(03)1234-5678", "+81312345678", LineKind::Landline),
            ("+819012345678", "+819012345678", LineKind::Mobile),
            (" +81 3 1234 5678 ", "+81312345678", LineKind::Landline),
            ("+14155550100", "+14155550100", LineKind::Landline),
        ] {
            let n = E164::parse(given).unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(n.as_str(), e164, "{given}");
            assert_eq!(n.kind(), kind, "{given}");
        }
    }

    #[test]
    fn what_is_not_a_phone_number_is_refused_without_repeating_it() {
        for bad in ["", "abc", "09012345", "0012345678901", "+0123456789", "+1234567", "090-1234-5678x", "+"] {
            let e = E164::parse(bad).expect_err(bad);
            assert!(!e.to_string().contains(bad) || bad.is_empty() || bad == "+", "{bad}");
        }
    }

    #[test]
    fn a_phone_number_prints_masked_in_debug_and_whole_on_the_wire() {
        let n = E164::parse("090-1234-5678").unwrap();
        assert_eq!(format!("{n:?}"), "E164(+8190****5678)");
        assert_eq!(n.to_string(), "+819012345678");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+819012345678\"");
        assert_eq!(serde_json::from_str::<E164>("\"03-1234-5678\"").unwrap().as_str(), "+81312345678");
    }

    #[test]
    fn carrier_ids_are_short_plain_tokens_and_twilios_have_their_prefix() {
        let call = format!("CA{}", "0123456789abcdef".repeat(2));
        assert!(is_twilio_sid(&call, &["CA"]));
        assert!(!is_twilio_sid(&call, &["SM", "MM"]) && !is_twilio_sid(&call.to_uppercase(), &["CA"]));
        assert!(!is_twilio_sid(&call[..33], &["CA"]));
        assert_eq!(CallSid::parse(&call).unwrap().as_str(), call);
        // A TwiML-compatible provider's UUID, and the short ids of tests.
        assert!(CallSid::parse("0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        assert!(MessageSid::parse("SM1").is_ok() && AccountSid::parse(&call.replace("CA", "AC")).is_ok());
        for bad in ["C", "AC/../x", "CA 1", "", &"x".repeat(65)] {
            assert!(CallSid::parse(bad).is_err(), "{bad}");
        }
        assert!(is_carrier_id(&call) && is_carrier_id("CA1") && is_carrier_id("test-call_1"));
    }

    #[test]
    fn digits_are_keys_of_a_phone_and_hide_in_debug() {
        assert_eq!(Digits::parse("0915*#").unwrap().as_str(), "0915*#");
        assert!(Digits::parse("").unwrap().is_empty());
        assert!(Digits::parse("12a").is_err());
        assert!(Digits::parse(&"1".repeat(65)).is_err());
        assert_eq!(format!("{:?}", Digits::parse("0915").unwrap()), "Digits(4 keys)");
    }

    #[test]
    fn patient_ids_are_short_and_plain() {
        assert!(PatientId::parse("P-0001_a").is_ok());
        assert!(PatientId::parse("").is_err());
        assert!(PatientId::parse("a b").is_err());
        assert!(PatientId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn scopes_read_from_a_list_with_staff_for_the_staff_scopes_and_write_back_in_order() {
        let s = Scopes::parse("read, issue").unwrap();
        assert!(s.allows(Scope::Read) && s.allows(Scope::Issue) && !s.allows(Scope::Verify));
        assert_eq!(s.to_string(), "issue,read");
        assert_eq!(Scopes::parse("staff").unwrap().to_string(), "issue,import,read,followup");
        assert_eq!(Scopes::parse("verify,staff,issue").unwrap().to_string(), "verify,issue,import,read,followup");
        assert_eq!(Scopes::parse("verify").unwrap().iter().collect::<Vec<_>>(), vec![Scope::Verify]);
        for bad in ["", " , ", "admin", "verify,everything", "VERIFY"] {
            let e = Scopes::parse(bad).unwrap_err();
            assert!(e.expected().contains("verify, issue, import, read, followup, or staff"), "{bad}: {e}");
        }
        for s in Scope::ALL {
            let one = Scopes::of(&[*s]).unwrap();
            assert_eq!(one.to_string().parse::<Scopes>(), Ok(one));
        }
        assert_eq!(Scopes::of(&[]), None);
    }

    #[test]
    fn call_statuses_rank_by_how_far_the_call_got() {
        assert!(CallStatus::Ringing.rank() > CallStatus::Queued.rank());
        assert!(CallStatus::Completed.is_final() && CallStatus::NoAnswer.is_final());
        assert!(!CallStatus::InProgress.is_final());
        for s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Ok(*s));
        }
        assert!(CallStatus::parse("ended").is_err());
    }

    #[test]
    fn every_name_reads_back_as_itself() {
        for d in Direction::ALL {
            assert_eq!(Direction::parse(d.as_str()), Ok(*d));
        }
        for c in Channel::ALL {
            assert_eq!(c.to_string().parse::<Channel>(), Ok(*c));
            if *c != Channel::Webhook {
                assert_eq!(c.delivery().as_str(), c.as_str());
            }
        }
        for d in NumberDelivery::ALL {
            assert_eq!(NumberDelivery::parse(d.as_str()), Ok(*d));
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(serde_json::from_value::<DeliveryStatus>(serde_json::json!(s.as_str())).unwrap(), *s);
        }
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Ok(*k));
        }
        assert_eq!(
            Alert::new(AlertKind::Unreachable, "1 attempt(s) today").to_string(),
            "unreachable: 1 attempt(s) today"
        );
        assert!(DeliveryStatus::Delivered.is_final() && !DeliveryStatus::Undelivered.is_final());
        for s in Severity::ALL {
            assert_eq!(Severity::of_rank(s.rank()), *s);
        }
        assert!(Severity::Urgent.rank() > Severity::High.rank() && Severity::High.rank() > Severity::Normal.rank());
        for o in FollowupOutcome::ALL {
            assert_eq!(FollowupOutcome::parse(o.as_str()), Ok(*o));
        }
    }

    #[test]
    fn a_staff_name_has_1_to_100_characters_not_all_white_space() {
        for ok in ["佐藤", "a", " 佐藤 ", &"x".repeat(100), &"保".repeat(100)] {
            assert_eq!(StaffName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", " ", "\u{3000}", "\t\n", &"x".repeat(101)] {
            assert!(StaffName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_names_are_lower_case_and_plain_and_roles_nest() {
        assert!(UserName::parse("sato.h-01").is_ok());
        for bad in ["", "Sato", ".sato", "sa to", "佐藤", &"a".repeat(65)] {
            assert!(UserName::parse(bad).is_err(), "{bad}");
        }
        assert!(Role::Admin.can_manage() && Role::Admin.can_act());
        assert!(Role::Nurse.can_act() && !Role::Nurse.can_manage());
        assert!(!Role::Viewer.can_act() && !Role::Viewer.can_manage());
        assert_eq!(Role::parse("nurse"), Ok(Role::Nurse));
        assert_eq!(UiLanguage::parse("en"), Ok(UiLanguage::En));
    }
}
