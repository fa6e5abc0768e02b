//! What we ask Twilio for (a message, a call) and what it answers (the Message and Call
//! resources, reduced to the fields the product reads).
//!
//! Requests hold patients' numbers and, for SMS, processing numbers: their `Debug` output masks
//! both, so a request can be logged whole.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::DeliveryError;
use crate::telemetry::mask_phone;
pub use crate::types::CallStatus;

/// Who an SMS is sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// One of our Twilio numbers, E.164 (`From`).
    From(String),
    /// A Messaging Service, `MG…`, which picks the number (`MessagingServiceSid`).
    MessagingService(String),
}

/// An SMS to send.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageRequest {
    /// The patient's mobile number, E.164.
    pub to: String,
    /// Our number or Messaging Service.
    pub sender: Sender,
    /// The text, up to 1,600 characters.
    pub body: String,
    /// Where Twilio posts the message's delivery status (with 30xxx codes on failure).
    pub status_callback: Option<String>,
}

impl MessageRequest {
    /// The form Twilio's Messages endpoint takes.
    pub(crate) fn form(&self) -> Vec<(&'static str, &str)> {
        let mut form = vec![("To", self.to.as_str())];
        form.push(match &self.sender {
            Sender::From(number) => ("From", number.as_str()),
            Sender::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        });
        form.push(("Body", &self.body));
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback", url));
        }
        form
    }
}

impl fmt::Debug for MessageRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRequest")
            .field("to", &mask_phone(&self.to))
            .field("sender", &self.sender)
            .field("body", &format_args!("<{} characters>", self.body.chars().count()))
            .field("status_callback", &self.status_callback)
            .finish()
    }
}

/// A call progress event Twilio reports to the status callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// Twilio started dialling.
    Initiated,
    /// The phone is ringing.
    Ringing,
    /// Someone (or a machine) picked up.
    Answered,
    /// The call ended, whichever way (the callback's `CallStatus` says how).
    Completed,
}

impl CallEvent {
    /// Every event, in the order they happen.
    pub const ALL: [CallEvent; 4] =
        [CallEvent::Initiated, CallEvent::Ringing, CallEvent::Answered, CallEvent::Completed];

    /// The name Twilio uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CallEvent::Initiated => "initiated",
            CallEvent::Ringing => "ringing",
            CallEvent::Answered => "answered",
            CallEvent::Completed => "completed",
        }
    }
}

/// Answering machine detection (`MachineDetection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineDetection {
    /// Tell as soon as it is known whether a person or a machine answered.
    Enable,
    /// For a machine, wait for the end of its greeting (the beep) so a message can be left.
    DetectMessageEnd,
}

impl MachineDetection {
    /// The name Twilio uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineDetection::Enable => "Enable",
            MachineDetection::DetectMessageEnd => "DetectMessageEnd",
        }
    }
}

/// An outbound call to place.
#[derive(Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// The patient's number, E.164.
    pub to: String,
    /// Our Twilio number, E.164.
    pub from: String,
    /// Our TwiML webhook for the call, requested with POST when the call connects.
    pub url: String,
    /// Where Twilio posts the call's progress, with POST.
    pub status_callback: Option<String>,
    /// Which events are posted to `status_callback` (sent as one `StatusCallbackEvent` each).
    pub status_callback_events: Vec<CallEvent>,
    /// Seconds to let the phone ring before giving up (Twilio's default is 60).
    pub timeout_secs: Option<u32>,
    /// Answering machine detection, off when `None`.
    pub machine_detection: Option<MachineDetection>,
    /// With machine detection: run it in the background (`AsyncAmd=true`), the call's TwiML
    /// starting at once, and post its result to this URL.
    pub async_amd_status_callback: Option<String>,
}

impl CallRequest {
    /// A call from `from` to `to` running the TwiML at `url`, reporting nothing, with Twilio's
    /// defaults for the rest.
    pub fn new(to: impl Into<String>, from: impl Into<String>, url: impl Into<String>) -> Self {
        CallRequest {
            to: to.into(),
            from: from.into(),
            url: url.into(),
            status_callback: None,
            status_callback_events: Vec::new(),
            timeout_secs: None,
            machine_detection: None,
            async_amd_status_callback: None,
        }
    }

    /// Reports every progress event (initiated, ringing, answered, completed) to `url`.
    pub fn with_status_callback(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self.status_callback_events = CallEvent::ALL.to_vec();
        self
    }

    /// The form Twilio's Calls endpoint takes. A list is the same name repeated, as Twilio
    /// expects (`StatusCallbackEvent=initiated&StatusCallbackEvent=ringing…`).
    pub(crate) fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("To", self.to.clone()),
            ("From", self.from.clone()),
            ("Url", self.url.clone()),
            ("Method", "POST".into()),
        ];
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback", url.clone()));
            form.push(("StatusCallbackMethod", "POST".into()));
            form.extend(self.status_callback_events.iter().map(|e| ("StatusCallbackEvent", e.as_str().into())));
        }
        if let Some(secs) = self.timeout_secs {
            form.push(("Timeout", secs.to_string()));
        }
        if let Some(amd) = self.machine_detection {
            form.push(("MachineDetection", amd.as_str().into()));
        }
        if let Some(url) = &self.async_amd_status_callback {
            form.push(("AsyncAmd", "true".into()));
            form.push(("AsyncAmdStatusCallback", url.clone()));
            form.push(("AsyncAmdStatusCallbackMethod", "POST".into()));
        }
        form
    }
}

impl fmt::Debug for CallRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallRequest")
            .field("to", &mask_phone(&self.to))
            .field("from", &self.from)
            .field("url", &self.url)
            .field("status_callback", &self.status_callback)
            .field("status_callback_events", &self.status_callback_events)
            .field("timeout_secs", &self.timeout_secs)
            .field("machine_detection", &self.machine_detection)
            .field("async_amd_status_callback", &self.async_amd_status_callback)
            .finish()
    }
}

/// Where a message is. `Failed` and `Undelivered` come with an `error_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Accepted,
    Scheduled,
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Canceled,
    Receiving,
    Received,
    Read,
    PartiallyDelivered,
    /// A status this client does not know yet.
    #[serde(other)]
    Other,
}

/// A Message resource, as created or fetched.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageResource {
    /// `SM…` (or `MM…` for MMS) at Twilio.
    pub sid: crate::types::MessageSid,
    /// Where the message is.
    pub status: MessageStatus,
    /// Why it failed or was not delivered (30xxx), once it has.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub error_code: Option<u32>,
    /// Twilio's words for `error_code`.
    pub error_message: Option<String>,
    /// How many SMS segments the body took (what is billed).
    #[serde(default, deserialize_with = "lenient_u32")]
    pub num_segments: Option<u32>,
    /// The text as sent (in a list or a fetch; the outbox matches an unrecorded send by it).
    #[serde(default)]
    pub body: Option<String>,
    /// The recipient, E.164.
    #[serde(default)]
    pub to: Option<String>,
    /// When Twilio created it, in RFC 2822 (`Mon, 07 Dec 2026 09:00:00 +0000`).
    #[serde(default)]
    pub date_created: Option<String>,
}

/// A page of the Messages list (`GET …/Messages.json`), newest first.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagePage {
    #[serde(default)]
    pub messages: Vec<MessageResource>,
}

impl MessageResource {
    /// The delivery failure the product handles, from `error_code`.
    pub fn delivery_error(&self) -> Option<DeliveryError> {
        self.error_code.and_then(DeliveryError::from_code)
    }

    /// `date_created`, when present and readable.
    pub fn created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        rfc2822_time(self.date_created.as_deref()?)
    }
}

/// Who picked up, when answering machine detection ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    MachineStart,
    MachineEndBeep,
    MachineEndSilence,
    MachineEndOther,
    Fax,
    /// Detection could not tell.
    Unknown,
    /// A value this client does not know yet.
    #[serde(other)]
    Other,
}

impl AnsweredBy {
    /// The name Twilio uses (`machine_end_beep`…).
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::MachineStart => "machine_start",
            AnsweredBy::MachineEndBeep => "machine_end_beep",
            AnsweredBy::MachineEndSilence => "machine_end_silence",
            AnsweredBy::MachineEndOther => "machine_end_other",
            AnsweredBy::Fax => "fax",
            AnsweredBy::Unknown => "unknown",
            AnsweredBy::Other => "other",
        }
    }
}

/// A Call resource, as created or fetched.
#[derive(Debug, Clone, Deserialize)]
pub struct CallResource {
    /// `CA…` at Twilio.
    pub sid: crate::types::CallSid,
    /// Where the call is; `None` for a status this client does not know yet.
    #[serde(deserialize_with = "lenient_status")]
    pub status: Option<CallStatus>,
    /// Seconds the call lasted, once it is over and was answered.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub duration: Option<u32>,
    /// Who picked up, with machine detection.
    #[serde(default)]
    pub answered_by: Option<AnsweredBy>,
    /// When it was answered (RFC 2822, UTC), if it was.
    #[serde(default)]
    pub start_time: Option<String>,
    /// When it ended (RFC 2822, UTC), if it has.
    #[serde(default)]
    pub end_time: Option<String>,
    /// The number called, E.164 (in a list or a fetch; the dialer matches a call whose id it
    /// never recorded by it).
    #[serde(default)]
    pub to: Option<String>,
    /// When Twilio created it (RFC 2822, UTC): as soon as it took the request, before any ringing.
    #[serde(default)]
    pub date_created: Option<String>,
}

impl CallResource {
    /// `date_created`, when present and readable.
    pub fn created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        rfc2822_time(self.date_created.as_deref()?)
    }
}

/// A page of the Calls list (`GET …/Calls.json`), newest first.
#[derive(Debug, Clone, Deserialize)]
pub struct CallPage {
    #[serde(default)]
    pub calls: Vec<CallResource>,
}

/// A time as Twilio writes it (RFC 2822), or RFC 3339.
fn rfc2822_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc2822(text)
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// A call status, or `None` for one Twilio added after this client was written: the call
/// was created all the same.
fn lenient_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CallStatus>, D::Error> {
    Ok(CallStatus::parse(&String::deserialize(d)?).ok())
}

/// Twilio sends counts as strings (`"duration": "15"`) and codes as numbers. An empty or
/// unreadable one (the description allows any integer, negative too) is `None`, rather than
/// failing to read the resource of a call or message that was created all the same.
fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u32),
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::Number(n)) => Some(n),
        Some(Raw::Text(s)) => s.trim().parse().ok(),
        Some(Raw::Other(_)) | None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_never_print_whole_numbers_or_message_text() {
        let sms = MessageRequest {
            to: "+819012345678".into(),
            sender: Sender::From("+815012345678".into()),
            body: "処理番号 123456789012".into(),
            status_callback: None,
        };
        let call = CallRequest::new("+819012345678", "+815012345678", "https://ivr.example.jp/twilio/voice");
        for shown in [format!("{sms:?}"), format!("{call:?}")] {
            assert!(shown.contains("+8190****5678") && !shown.contains("9012345678"), "{shown}");
            assert!(!shown.contains("123456789012"), "{shown}");
        }
    }

    #[test]
    fn resources_read_twilio_strings_and_unknown_values() {
        let call: CallResource = serde_json::from_value(serde_json::json!({
            "sid": "CA0123456789abcdef0123456789abcdef", "status": "no-answer", "duration": "0",
            "answered_by": "machine_end_beep", "start_time": null
        }))
        .unwrap();
        assert_eq!(
            (call.status, call.duration, call.answered_by),
            (Some(CallStatus::NoAnswer), Some(0), Some(AnsweredBy::MachineEndBeep))
        );
        assert!(call.status.is_some_and(CallStatus::is_final));
        let call: CallResource =
            serde_json::from_value(serde_json::json!({"sid": "CA1", "status": "teleported", "duration": ""})).unwrap();
        assert_eq!((call.status, call.duration, call.answered_by), (None, None, None));
        let sms: MessageResource = serde_json::from_value(serde_json::json!({
            "sid": "SM1", "status": "undelivered", "error_code": 30003, "error_message": "Unreachable", "num_segments": "2"
        }))
        .unwrap();
        assert_eq!((sms.status, sms.num_segments), (MessageStatus::Undelivered, Some(2)));
        assert_eq!(sms.delivery_error(), Some(DeliveryError::Unreachable));
        let odd: MessageResource =
            serde_json::from_value(serde_json::json!({"sid": "SM1", "status": "sent", "error_code": -7})).unwrap();
        assert_eq!((odd.error_code, odd.num_segments), (None, None));
    }
}
