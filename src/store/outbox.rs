//! Messages waiting to be sent (SMS and e-mail), and how a send ended.

use chrono::{DateTime, Utc};

use super::{Fut, NewNumber};
use crate::types::{Alert, AlertKind, Channel, DeliveryStatus, PatientId};

use super::followups::NewAlert;

/// A message claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub message_id: i64,
    pub patient_id: Option<PatientId>,
    pub number_id: Option<i64>,
    pub channel: Channel,
    pub recipient: String,
    pub body_sealed: String,
    /// Sends handed to the provider before this claim ([`Outbox::hand`] counts them).
    pub attempts: i64,
    /// When an earlier send whose outcome is not known began (it may have reached the
    /// provider): the message is looked up at the provider from then on before it is sent again.
    pub handed_at: Option<DateTime<Utc>>,
}

/// How a send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// Accepted by the provider. `provider_id` is the SMS's `MessageSid` or the e-mail's
    /// Message-ID (an RFC 5322 `<…@…>`, not a carrier id), so it stays a `String`.
    Sent { provider_id: String, status: String },
    /// Try again at this time: the provider certainly does not have it.
    Retry { error: String, at: DateTime<Utc> },
    /// Try again at this time, but the provider may have it (a time-out after the request
    /// left, a `5xx`, a lookup that could not be made): it is looked up there first.
    Unsure { error: String, at: DateTime<Utc> },
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

    /// The alert as written: a follow-up item only when nothing else will bring the number to
    /// the patient (no fallback).
    pub fn new_alert(self, error: &str) -> NewAlert {
        let alert = NewAlert::engine(&self.alert(error));
        if self == Fallback::None { alert } else { alert.told_only() }
    }

    /// The alert raised for the health centre.
    pub fn alert(self, error: &str) -> Alert {
        let then = match self {
            Fallback::Email => "sent by e-mail instead",
            Fallback::ReadAloud => "number will be read on the next call",
            Fallback::None => "no other way to deliver it",
        };
        Alert::new(AlertKind::MessageFailed, format!("SMS failed: landline ({error}); {then}"))
    }
}

/// A message due for sending whose number expired before it could be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateMessage {
    pub message_id: i64,
    pub patient_id: PatientId,
    pub number_id: i64,
    pub channel: Channel,
    pub recipient: String,
    /// Its number was itself issued to replace an expired one: it is not replaced again.
    pub reissued: bool,
}

/// The alert raised when a number is replaced because it expired before delivery, as stored.
pub const REISSUED_ALERT: &str = "message_reissued: re-issued: expired before delivery";
/// The alert raised when a replacement number also expired before delivery, as stored.
pub const LATE_DEAD_ALERT: &str = "message_dead: expired before delivery, after a re-issue; no further number";

/// The number a message carried, as the fallback sees it: still valid, with or without a copy
/// kept to read aloud, and the patient's e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberOnFile {
    pub sealed_kept: bool,
    pub email: Option<String>,
}

/// Where an undeliverable SMS goes instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackChoice {
    /// A copy of the message by e-mail to this address.
    Email { address: String },
    /// The number is read on the patient's next call.
    ReadAloud,
    /// Nowhere: the number is no longer valid, or no copy of it was kept.
    None,
}

impl FallbackChoice {
    pub fn fallback(&self) -> Fallback {
        match self {
            FallbackChoice::Email { .. } => Fallback::Email,
            FallbackChoice::ReadAloud => Fallback::ReadAloud,
            FallbackChoice::None => Fallback::None,
        }
    }
}

/// The fallback of an SMS that cannot reach the phone: e-mail when it is configured
/// (`email_ok`), the patient has an address and the message a body; else read aloud when a
/// copy of the number is kept; else none. `number` is `None` once the number is not valid.
pub fn choose_fallback(number: Option<NumberOnFile>, email_ok: bool, body: &str) -> FallbackChoice {
    match number {
        Some(NumberOnFile { email: Some(address), .. }) if email_ok && address.contains('@') && !body.is_empty() => {
            FallbackChoice::Email { address }
        }
        Some(NumberOnFile { sealed_kept: true, .. }) => FallbackChoice::ReadAloud,
        _ => FallbackChoice::None,
    }
}

/// What a send's end writes to its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish<'a> {
    /// The SMS cannot reach this phone: fall back, once per message.
    FallBack { error: &'a str, email: bool },
    /// Accepted: `sent`, only while the message is still in hand (a delivery callback that came
    /// first is not overwritten).
    Sent { provider_id: &'a str, status: &'a str },
    /// Back to `pending`, due at `at`; `unsure`: the send may have reached the provider (its
    /// `handed_at` is kept for the lookup before the next send), else `handed_at` is cleared.
    Retry { error: &'a str, at: DateTime<Utc>, unsure: bool },
    /// Closed with `status` (`failed` or `dead`), its body dropped, and the health centre
    /// alerted with `alert`.
    Close { status: DeliveryStatus, error: &'a str, alert: Alert },
}

/// The change a send result makes.
pub fn finish_plan(result: &SendResult) -> Finish<'_> {
    match result {
        SendResult::Undeliverable { error, email } => Finish::FallBack { error, email: *email },
        SendResult::Sent { provider_id, status } => Finish::Sent { provider_id, status },
        SendResult::Retry { error, at } => Finish::Retry { error, at: *at, unsure: false },
        SendResult::Unsure { error, at } => Finish::Retry { error, at: *at, unsure: true },
        SendResult::Failed { error, dead } => {
            let (status, kind) = if *dead {
                (DeliveryStatus::Dead, AlertKind::MessageDead)
            } else {
                (DeliveryStatus::Failed, AlertKind::MessageFailed)
            };
            Finish::Close { status, error, alert: Alert::new(kind, error.as_str()) }
        }
    }
}

/// Whether a provider's delivery callback may set a message's status: states only move
/// forward, `delivered`, `dead` and `cancelled` are final, and a message that fell back keeps
/// its `failed`. `current`
/// is `None` for a provider's interim status the outbox has no name for (`queued`,
/// `accepted`…), which any later one replaces.
pub fn takes_callback(current: Option<DeliveryStatus>, fell_back: bool) -> bool {
    !current.is_some_and(DeliveryStatus::is_final) && !fell_back
}

/// How a late message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateSettle {
    /// A fresh number replaces the expired one: the message is cancelled.
    Replace,
    /// No replacement (one was already issued): the message is dead.
    Dead,
}

impl LateSettle {
    /// A replacement given (`fresh`) or not.
    pub fn of(fresh: bool) -> LateSettle {
        if fresh { LateSettle::Replace } else { LateSettle::Dead }
    }

    /// The message's new status.
    pub fn status(self) -> DeliveryStatus {
        match self {
            LateSettle::Replace => DeliveryStatus::Cancelled,
            LateSettle::Dead => DeliveryStatus::Dead,
        }
    }

    /// The alert raised for the health centre ([`REISSUED_ALERT`], [`LATE_DEAD_ALERT`]).
    pub fn alert(self) -> Alert {
        match self {
            LateSettle::Replace => Alert::new(AlertKind::MessageReissued, "re-issued: expired before delivery"),
            LateSettle::Dead => {
                Alert::new(AlertKind::MessageDead, "expired before delivery, after a re-issue; no further number")
            }
        }
    }
}

/// The outbox's operations (`store.outbox()`).
pub trait Outbox {
    /// Claims due messages for `owner` (an instance: host name and listen address) with a
    /// lease, and commits before anything is sent.
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Fut<'a, Vec<OutboxMessage>>;
    /// Takes over, for `owner`, the claims left unfinished: those `owner` itself made before
    /// `started` (the process that made them is gone: no two live processes share an owner), and
    /// any whose lease ran out by `now`. They are leased again until `lease_until`. Whether a
    /// send had begun is in [`OutboxMessage::handed_at`].
    fn unfinished<'a>(
        &'a self,
        owner: &'a str,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Fut<'a, Vec<OutboxMessage>>;
    /// Records, just before a claimed message is handed to the provider, that its outcome is
    /// not known until it is recorded (`handed_at`; an earlier, still unknown one is kept), and
    /// counts the send in `attempts`.
    fn hand(&self, message_id: i64, now: DateTime<Utc>) -> Fut<'_, ()>;
    /// The sends a message has been given ([`Outbox::hand`]), or `None` for no such message.
    fn attempts(&self, message_id: i64) -> Fut<'_, Option<i64>>;
    /// Records how a send ended ([`finish_plan`]); a failed or dead message alerts the health
    /// centre. For [`SendResult::Undeliverable`], returns the fallback taken
    /// ([`choose_fallback`]), or `None` when the message had already fallen back (a replayed
    /// status callback): nothing is done twice.
    fn finish<'a>(&'a self, message_id: i64, result: &'a SendResult, now: DateTime<Utc>) -> Fut<'a, Option<Fallback>>;
    /// Pending messages due at `now` whose number expired before they could be sent, for
    /// [`Outbox::replace_late`].
    fn late(&self, now: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<LateMessage>>;
    /// Settles a late message in one transaction ([`LateSettle`]): with `fresh`, the message is
    /// cancelled and `fresh` (a new number for the same patient and consent, with its message)
    /// is issued in its place, once per number; without, the message is dead. The health
    /// centre is alerted. Returns false when the message was no longer late (settled by another
    /// sender, or sent). `fresh.consent` is ignored: the old number's consent is copied.
    fn replace_late<'a>(&'a self, message_id: i64, fresh: Option<&'a NewNumber>, now: DateTime<Utc>) -> Fut<'a, bool>;
    /// A delivery status from the provider's callback ([`takes_callback`]: never replacing
    /// `delivered`; a `delivered` message keeps no `last_error`). Returns whether a message with
    /// this provider id is known.
    fn status<'a>(&'a self, provider_id: &'a str, status: &'a str, error_code: Option<&'a str>) -> Fut<'a, bool>;
    /// (channel, recipient, status, attempts) of a patient's messages, oldest first.
    fn for_patient<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<(String, String, String, i64)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_file(sealed_kept: bool, email: Option<&str>) -> Option<NumberOnFile> {
        Some(NumberOnFile { sealed_kept, email: email.map(str::to_owned) })
    }

    #[test]
    fn an_undeliverable_sms_falls_back_to_email_then_to_reading_aloud() {
        let email = FallbackChoice::Email { address: "a@b.jp".into() };
        assert_eq!(choose_fallback(on_file(true, Some("a@b.jp")), true, "body"), email);
        assert_eq!(choose_fallback(on_file(false, Some("a@b.jp")), true, "body"), email);
        assert_eq!(choose_fallback(on_file(true, Some("a@b.jp")), false, "body"), FallbackChoice::ReadAloud);
        assert_eq!(choose_fallback(on_file(true, Some("nobody")), true, "body"), FallbackChoice::ReadAloud);
        assert_eq!(choose_fallback(on_file(true, Some("a@b.jp")), true, ""), FallbackChoice::ReadAloud);
        assert_eq!(choose_fallback(on_file(false, None), true, "body"), FallbackChoice::None);
        assert_eq!(choose_fallback(None, true, "body"), FallbackChoice::None, "the number is no longer valid");
        assert_eq!(email.fallback(), Fallback::Email);
        assert_eq!(
            Fallback::ReadAloud.alert("21614").to_string(),
            "message_failed: SMS failed: landline (21614); number will be read on the next call"
        );
    }

    #[test]
    fn a_failed_send_closes_the_message_with_an_alert_and_a_retry_does_not() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(
            finish_plan(&SendResult::Failed { error: "x".into(), dead: true }),
            Finish::Close { status: DeliveryStatus::Dead, error: "x", alert: Alert::new(AlertKind::MessageDead, "x") }
        );
        assert!(matches!(
            finish_plan(&SendResult::Failed { error: "x".into(), dead: false }),
            Finish::Close { status: DeliveryStatus::Failed, .. }
        ));
        assert_eq!(
            finish_plan(&SendResult::Retry { error: "x".into(), at }),
            Finish::Retry { error: "x", at, unsure: false }
        );
        assert_eq!(
            finish_plan(&SendResult::Unsure { error: "x".into(), at }),
            Finish::Retry { error: "x", at, unsure: true }
        );
        assert_eq!(
            finish_plan(&SendResult::Undeliverable { error: "21614".into(), email: true }),
            Finish::FallBack { error: "21614", email: true }
        );
    }

    #[test]
    fn delivered_is_final_and_a_fallen_back_message_keeps_its_status() {
        assert!(takes_callback(None, false), "a provider's queued");
        assert!(takes_callback(Some(DeliveryStatus::Sent), false));
        assert!(takes_callback(Some(DeliveryStatus::Failed), false), "a later delivered may follow a failed guess");
        assert!(!takes_callback(Some(DeliveryStatus::Delivered), false));
        assert!(!takes_callback(Some(DeliveryStatus::Dead), false), "a late report does not revive a dead message");
        assert!(!takes_callback(Some(DeliveryStatus::Cancelled), false));
        assert!(!takes_callback(Some(DeliveryStatus::Failed), true));
    }

    #[test]
    fn a_late_message_is_cancelled_for_its_replacement_or_else_dead() {
        assert_eq!(LateSettle::of(true).status(), DeliveryStatus::Cancelled);
        assert_eq!(LateSettle::of(true).alert().to_string(), REISSUED_ALERT);
        assert_eq!(LateSettle::of(false).status(), DeliveryStatus::Dead);
        assert_eq!(LateSettle::of(false).alert().to_string(), LATE_DEAD_ALERT);
    }
}
