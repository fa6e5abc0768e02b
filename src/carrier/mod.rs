//! The phone network's side: [`webhook`] plays calls against our server as a carrier would
//! (signed webhooks, TwiML answered through the interpreter). Used by `ivr call --url`, the
//! tests, and the carrier simulator. [`twilio`] is Twilio's REST API: sending SMS and placing
//! calls. [`simulator`] serves that same API and plays the network and the patients.
//! [`signature`] signs and checks webhooks as Twilio does.

pub mod signature;
pub mod simulator;
pub mod twilio;
pub mod webhook;
