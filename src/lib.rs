//! `ivr`: an IVR engine for public health centres.
//!
//! Layout:
//! - [`flow`]: call-flow files (model, loading with `file:line:col` errors, validation), and the
//!   pure engine `flow::step`.
//! - [`prompts`]: prompt catalogues per language, placeholders and how values are read aloud.
//! - [`response`]: what the engine wants the phone to do, independent of any carrier.
//! - [`twiml`]: that response as TwiML, and TwiML read back ([`phone`] plays it like a caller).
//! - [`signature`]: Twilio webhook signatures (`X-Twilio-Signature`), made and checked as
//!   Twilio's own helper library does.

pub mod signature;
pub mod twiml;
