//! `ivr`: an IVR engine for public health centres.
//!
//! Layout:
//! - [`flow`]: call-flow files (model, loading with `file:line:col` errors, validation), and the
//!   pure engine `flow::step`.
//! - [`prompts`]: prompt catalogues per language, placeholders and how values are read aloud.
//! - [`response`]: what the engine wants the phone to do, independent of any carrier.
//! - [`twiml`]: that response as TwiML, and TwiML read back; [`phone`] plays it like a caller.
//! - [`signature`]: Twilio webhook signatures, checked as Twilio's helper libraries do.
//! - [`cli`]: the `ivr` commands.
//! - [`notify`]: processing numbers sent outside the call (e-mail over SMTP).

pub mod calls;
pub mod carrier;
pub mod cli;
pub mod config;
pub mod flow;
pub mod http;
pub mod issuer;
pub mod notify;
pub mod numbers;
pub mod outbox;
pub mod phone;
pub mod prompts;
pub mod response;
pub mod server;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod twiml;

/// Japanese mobile numbers start +8170, +8180 or +8190 (and +8160 for new mobile blocks);
/// anything else is taken as a landline, which cannot receive SMS.
pub fn phone_kind(e164: &str) -> &'static str {
    if ["+8160", "+8170", "+8180", "+8190"].iter().any(|p| e164.starts_with(p)) { "mobile" } else { "landline" }
}
