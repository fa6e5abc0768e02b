//! The phone network's side: [`webhook`] plays calls against our server as a carrier would
//! (signed webhooks, TwiML answered through the interpreter). Used by `ivr call --url`, the
//! tests, and the carrier simulator.

pub mod webhook;
