//! The phone network's side: [`webhook`] plays calls against our server as a carrier would
//! (signed webhooks, TwiML answered through the interpreter). Used by `ivr call --url`, the
//! tests, and the carrier simulator. [`twilio`] is Twilio's REST API: sending SMS and placing
//! calls. [`simulator`] serves that same API and plays the network and the patients.
//! [`signature`] signs and checks webhooks as Twilio does.

use std::path::PathBuf;

use secrecy::SecretString;

/// The `[carrier]` settings.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CarrierSettings {
    /// `twilio` or `simulator` (the default without Twilio credentials).
    pub kind: Option<String>,
    /// Checked when the settings load (an error names `carrier.account_sid`).
    pub account_sid: Option<crate::types::AccountSid>,
    /// Signs webhooks. Without one, `ivr serve` makes a random token for its built-in simulator.
    pub auth_token: Option<SecretString>,
    /// The caller id for outbound calls and SMS, E.164.
    pub from: Option<String>,
    /// Twilio's REST API base, configurable for tests and compatible providers.
    pub api_base: String,
    /// With the simulator: a file that gets one JSON line per call placed and per SMS
    /// accepted (numbers masked), written before the API answers.
    pub simulator_log: Option<PathBuf>,
    /// With the simulator: how fast simulated time runs. 1.0 rings and answers at a human
    /// pace; 2.0 twice as fast; 0 has no delays at all (tests).
    pub simulator_speed: f64,
}
pub mod signature;
pub mod simulator;
pub mod twilio;
pub mod webhook;
