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

pub mod carrier;
pub mod cli;
pub mod config;
pub mod flow;
pub mod http;
pub mod issuer;
pub mod notify;
pub mod phone;
pub mod prompts;
pub mod response;
pub mod server;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod twiml;
