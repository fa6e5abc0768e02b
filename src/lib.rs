//! `ivr`: an IVR engine for public health centres.
//!
//! Layout, in the layers of `docs/architecture.md` (a module imports only its own layer and
//! those below it):
//! - wiring: `main` (the command line), [`cli`] (the `ivr` commands), [`server`] (`ivr serve`:
//!   store, flows, carrier, dispatcher and scheduler put together) and [`demo`]
//!   (`ivr serve --demo`).
//! - [`config`]: the settings, composed of the settings types each module owns.
//! - [`http`]: the router, the carrier's webhooks, the JSON API and its one error type.
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
pub mod store;
pub mod telemetry;
pub mod twiml;
pub mod types;

/// Japanese mobile numbers start +8170, +8180 or +8190 (and +8160 for new mobile blocks);
/// anything else is taken as a landline, which cannot receive SMS.
pub fn phone_kind(e164: &str) -> &'static str {
    types::E164::parse(e164).map_or("landline", |n| n.kind().as_str())
}

/// A phone number as people write it in Japan (`090-1234-5678`, `03 1234 5678`) or in E.164
/// (`+819012345678`), as E.164; `None` if it is neither.
pub fn normalize_phone(s: &str) -> Option<String> {
    types::E164::parse(s).ok().map(|n| n.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn japanese_numbers_become_e164() {
        assert_eq!(super::normalize_phone("090-1234-5678").as_deref(), Some("+819012345678"));
        assert_eq!(super::normalize_phone("03 1234 5678").as_deref(), Some("+81312345678"));
        assert_eq!(super::normalize_phone("+819012345678").as_deref(), Some("+819012345678"));
        assert_eq!(super::normalize_phone("09012345"), None);
        assert_eq!(super::normalize_phone("0012345678901"), None);
        assert_eq!(super::normalize_phone("abc"), None);
        assert_eq!(super::phone_kind("+819012345678"), "mobile");
        assert_eq!(super::phone_kind("+81312345678"), "landline");
    }
}
