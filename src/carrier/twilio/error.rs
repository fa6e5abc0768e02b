//! What can go wrong talking to Twilio's REST API, and what the caller may do about it.
//!
//! Two questions decide what happens after a failure:
//! - [`TwilioError::is_retryable`]: could the same request succeed later? (429, 5xx, network)
//! - [`TwilioError::is_safe_to_resend`]: is it certain that Twilio did not act on it? Only then
//!   may a call or a message be sent again without risking a second call or a second SMS.

use std::time::Duration;

use crate::telemetry::mask_phone;

/// Twilio error codes the product acts on. Codes from 21xxx come back as API errors when a
/// request is refused; codes from 30xxx never do: they describe a message that was accepted and
/// then not delivered, and arrive in the message's status callback (`ErrorCode`) or in a fetched
/// Message resource (`error_code`). See [`DeliveryError`].
pub mod codes {
    /// Too many requests for this account: slow down and try again.
    pub const TOO_MANY_REQUESTS: u32 = 20429;
    /// The `To` number is not a valid phone number.
    pub const INVALID_TO_NUMBER: u32 = 21211;
    /// The recipient replied STOP: Twilio refuses to send them SMS until they reply START.
    pub const UNSUBSCRIBED: u32 = 21610;
    /// The `To` number cannot receive SMS (a landline): read the message aloud instead.
    pub const NOT_A_MOBILE_NUMBER: u32 = 21614;
    /// Delivery: the handset was unreachable (off, out of coverage).
    pub const UNREACHABLE: u32 = 30003;
    /// Delivery: unknown destination handset (the number no longer exists).
    pub const UNKNOWN_DESTINATION: u32 = 30005;
    /// Delivery: a landline, or a carrier that does not take SMS.
    pub const LANDLINE_OR_UNREACHABLE_CARRIER: u32 = 30006;
    /// Delivery: filtered by the carrier (spam filter, content rules).
    pub const CARRIER_VIOLATION: u32 = 30007;
    /// Delivery: unknown error from the carrier.
    pub const UNKNOWN_ERROR: u32 = 30008;
}

/// A failed request to Twilio's REST API.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio (or something in front of it) answered with an error status. `message` has phone
    /// numbers masked: Twilio quotes the number it refused, and errors end up in logs.
    #[error("Twilio answered {status}{}: {message}", code.map(|c| format!(" (error {c})")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code (`21211`, …), when the body was Twilio's JSON error.
        code: Option<u32>,
        /// Twilio's explanation, numbers masked.
        message: String,
        /// Twilio's link to the error's documentation.
        more_info: Option<String>,
        /// How long Twilio asked us to wait (`Retry-After`, in seconds), when it said.
        retry_after: Option<Duration>,
    },
    /// The request never reached Twilio: name resolution, a refused connection, or a failed TLS
    /// handshake. Nothing was sent, so anything may be resent.
    #[error("could not connect to Twilio: {0}")]
    Connect(#[source] reqwest::Error),
    /// No complete answer in time. The request may have reached Twilio and been carried out.
    #[error("no answer from Twilio in time: {0}")]
    Timeout(#[source] reqwest::Error),
    /// The connection failed after the request was sent (reset, closed mid-answer). As with a
    /// timeout, Twilio may have carried it out.
    #[error("connection to Twilio failed: {0}")]
    Network(#[source] reqwest::Error),
    /// Twilio said yes, but the resource in its answer could not be read. The request was carried
    /// out: never resend it.
    #[error("Twilio's answer ({status}) could not be read: {detail}")]
    Decode {
        /// The HTTP status (2xx).
        status: u16,
        /// What did not parse, numbers masked.
        detail: String,
    },
    /// The client was set up wrongly (bad `api_base`, missing credentials).
    #[error("Twilio client: {0}")]
    Config(String),
}

impl TwilioError {
    /// Could the same request succeed if tried later: 429 (or Twilio's 20429), any 5xx, a network
    /// error or a timeout. A 4xx other than 429 is a refusal that will not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            TwilioError::Api { status, code, .. } => {
                *status == 429 || *code == Some(codes::TOO_MANY_REQUESTS) || *status >= 500
            }
            TwilioError::Connect(_) | TwilioError::Timeout(_) | TwilioError::Network(_) => true,
            TwilioError::Decode { .. } | TwilioError::Config(_) => false,
        }
    }

    /// Retryable, and certain that Twilio did not act on the request: the connection was never
    /// made, or Twilio answered 429 (rate limited, refused before any work) or 503 (not taking
    /// requests). A timeout, a connection lost mid-request or a 500 leave it unknown whether a
    /// call was placed or an SMS queued, so those are not safe: resending could call a patient
    /// twice. The caller reconciles instead (status callbacks carry our own ids in their URLs).
    pub fn is_safe_to_resend(&self) -> bool {
        match self {
            TwilioError::Connect(_) => true,
            TwilioError::Api { status, code, .. } => {
                *status == 429 || *status == 503 || *code == Some(codes::TOO_MANY_REQUESTS)
            }
            _ => false,
        }
    }

    /// Twilio's error code, when Twilio answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            TwilioError::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            TwilioError::Api { status, .. } | TwilioError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long Twilio asked us to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TwilioError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// 21211: the number is not a valid phone number; fix the patient's record, do not retry.
    pub fn is_invalid_number(&self) -> bool {
        self.code() == Some(codes::INVALID_TO_NUMBER)
    }

    /// 21610: the patient replied STOP; no SMS until they reply START.
    pub fn is_unsubscribed(&self) -> bool {
        self.code() == Some(codes::UNSUBSCRIBED)
    }

    /// 21614: the number cannot receive SMS; give the processing number by voice instead.
    pub fn is_not_a_mobile_number(&self) -> bool {
        self.code() == Some(codes::NOT_A_MOBILE_NUMBER)
    }

    /// From a non-2xx answer: Twilio's JSON error if the body is one, else the status and the
    /// start of the body (a proxy's HTML page, say).
    pub(crate) fn from_answer(status: u16, retry_after: Option<Duration>, body: &str) -> TwilioError {
        #[derive(serde::Deserialize)]
        struct Body {
            code: Option<u32>,
            message: Option<String>,
            more_info: Option<String>,
        }
        let parsed: Option<Body> = serde_json::from_str(body).ok();
        let (code, message, more_info) = match parsed {
            Some(b) => (b.code, b.message, b.more_info),
            None => (None, None, None),
        };
        let message = message.unwrap_or_else(|| body.chars().take(200).collect::<String>().trim().to_string());
        TwilioError::Api { status, code, message: mask_numbers(&message), more_info, retry_after }
    }
}

/// Why an accepted message was not delivered, from the 30xxx code in a status callback or a
/// fetched Message resource. These never come back as [`TwilioError`]s: sending succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryError {
    /// 30003: the handset was off or out of coverage; worth sending again later.
    Unreachable,
    /// 30005: the number does not exist (any more).
    UnknownDestination,
    /// 30006: a landline or a carrier without SMS; read the message aloud instead.
    LandlineOrUnreachableCarrier,
    /// 30007: the carrier filtered the message.
    CarrierViolation,
    /// 30008: the carrier gave no reason.
    Unknown,
}

impl DeliveryError {
    /// The delivery error for a 30xxx code the product handles; `None` for any other code.
    pub fn from_code(code: u32) -> Option<DeliveryError> {
        Some(match code {
            codes::UNREACHABLE => DeliveryError::Unreachable,
            codes::UNKNOWN_DESTINATION => DeliveryError::UnknownDestination,
            codes::LANDLINE_OR_UNREACHABLE_CARRIER => DeliveryError::LandlineOrUnreachableCarrier,
            codes::CARRIER_VIOLATION => DeliveryError::CarrierViolation,
            codes::UNKNOWN_ERROR => DeliveryError::Unknown,
            _ => return None,
        })
    }
}

/// Masks every run of eight or more digits (with an optional leading `+`) as
/// [`mask_phone`] does, so text quoted from Twilio can be logged.
pub(crate) fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c == '+' || c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let digits_from = usize::from(run.starts_with('+'));
        let len = digits_from + run[digits_from..].bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = run.split_at(len.max(1));
        if number.len() - digits_from >= 8 {
            out.push_str(&mask_phone(number))
        } else {
            out.push_str(number)
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_error_bodies_are_parsed_and_numbers_masked() {
        let body = r#"{"code": 21211, "message": "The 'To' number +819012345678 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
        let e = TwilioError::from_answer(400, None, body);
        assert_eq!(e.code(), Some(21211));
        assert!(e.is_invalid_number() && !e.is_retryable() && !e.is_safe_to_resend());
        let TwilioError::Api { message, more_info, .. } = &e else { panic!("{e:?}") };
        assert_eq!(message, "The 'To' number +8190****5678 is not a valid phone number.");
        assert_eq!(more_info.as_deref(), Some("https://www.twilio.com/docs/errors/21211"));
        assert!(!e.to_string().contains("12345678"), "{e}");
    }

    #[test]
    fn rate_limits_and_server_errors_are_retryable_but_only_some_are_safe_to_resend() {
        let api = |status, code| TwilioError::Api {
            status,
            code,
            message: String::new(),
            more_info: None,
            retry_after: None,
        };
        for (status, code, retryable, safe) in [
            (429, None, true, true),
            (400, Some(codes::TOO_MANY_REQUESTS), true, true),
            (503, None, true, true),
            (500, None, true, false),
            (502, None, true, false),
            (404, Some(20404), false, false),
            (400, Some(codes::UNSUBSCRIBED), false, false),
        ] {
            let e = api(status, code);
            assert_eq!((e.is_retryable(), e.is_safe_to_resend()), (retryable, safe), "{status} {code:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_twilio_json_is_kept_short() {
        let e = TwilioError::from_answer(502, None, &format!("<html>Bad Gateway{}</html>", " ".repeat(500)));
        assert_eq!(e.code(), None);
        assert!(e.to_string().starts_with("Twilio answered 502: <html>Bad Gateway"), "{e}");
        assert!(e.to_string().len() < 240);
    }

    #[test]
    fn only_long_digit_runs_are_masked() {
        assert_eq!(
            mask_numbers("call +819012345678 or 0312345678, error 21211"),
            "call +8190****5678 or 03123*5678, error 21211"
        );
        assert_eq!(mask_numbers("a + b = 3"), "a + b = 3");
        assert_eq!(DeliveryError::from_code(30006), Some(DeliveryError::LandlineOrUnreachableCarrier));
        assert_eq!(DeliveryError::from_code(21211), None);
    }
}
