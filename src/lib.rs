//! `ivr`: an IVR engine for public health centres.
//!
//! Layout, in the layers of `docs/architecture.md` (a module imports only its own layer and
//! those below it):
//! - wiring: `main` (the command line), [`cli`] (the `ivr` commands), [`server`] (`ivr serve`:
//!   store, flows, carrier, dispatcher and scheduler put together) and [`demo`]
//!   (`ivr serve --demo`).
//! - [`config`]: the settings, composed of the settings types each module owns.
//! - [`http`]: the router, the carrier's webhooks, the JSON API and its one error type, and the
//!   staff pages (`http::ui`).
//! - [`calls`]: one turn of a call: load, step the engine, apply its effects, save, render.
//! - the domain:
//!   - [`flow`]: call-flow files (model, loading with `file:line:col` errors, validation), the
//!     pure engine `flow::step`, the prompt catalogues (`flow::prompts`) and what the engine
//!     wants the phone to do in no carrier's words (`flow::response`).
//!   - [`twiml`]: that response as TwiML, TwiML read back, and a phone that plays it like a
//!     caller (`twiml::phone`).
//!   - [`issuer`]: processing numbers, and the staff's operations on them (`issuer::numbers`).
//!   - [`notify`]: processing numbers sent outside the call: e-mail over SMTP, and the outbox
//!     dispatcher (`notify::outbox`).
//!   - [`scheduler`]: calling hours, the daily plan, the dialer.
//!   - [`carrier`]: Twilio's REST API, the carrier simulator, and Twilio's webhook signatures
//!     (`carrier::signature`).
//!   - [`roster`]: the patient roster, read from CSV with every mistake at its `file:row:col`.
//!   - [`staff`]: the health centre's staff: passwords, sessions, sign-in and its throttle.
//! - [`store`]: the database, SQLite or PostgreSQL behind one interface.
//! - [`telemetry`]: logs, and how personal data is masked in them.
//! - [`types`]: values checked at the edge (phone numbers, SIDs, keys, ids, closed sets of names).

#[cfg(test)]
mod architecture;
pub mod calls;
pub mod carrier;
pub mod cli;
pub mod config;
pub mod demo;
pub mod flow;
pub mod http;
pub mod issuer;
pub mod notify;
pub mod roster;
pub mod scheduler;
pub mod server;
pub mod staff;
pub mod store;
pub mod telemetry;
pub mod twiml;
pub mod types;
