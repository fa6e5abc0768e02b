//! The carrier simulator: a stand-in for Twilio that plays the phone network and the patients,
//! so the whole system runs (and is tested) without a telephone line.
//!
//! It is a real HTTP peer. [`Simulator::router`] serves Twilio's REST paths (`Calls.json`,
//! `Calls/{Sid}.json`, `Messages.json`) with Twilio's authentication, validation and error
//! bodies, so our own [`TwilioClient`](super::twilio::TwilioClient) talks to it as to
//! api.twilio.com. A placed call is played in a background task ([`play`]): status callbacks,
//! the answer webhook, then the TwiML followed through the interpreter with a [`Persona`]
//! pressing the keys, every webhook signed with the server's auth token. An accepted SMS gets
//! its delivery callbacks the same way.
//!
//! Everything placed or sent is kept ([`Simulator::calls`], [`Simulator::messages`]) and, with
//! a log file, appended to it as JSON lines before the API answers, so a count survives a kill.

mod api;
mod persona;
mod play;
pub mod web;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use persona::{Patient, Persona, Question, Reply, recognise};

use super::twilio::{AnsweredBy, CallStatus};
use super::webhook::WebhookClient;
use crate::carrier::signature::AuthToken;
use crate::telemetry::mask_phone;
use crate::types::{AccountSid, CallSid, E164, MessageSid};

/// The account the simulator serves: `AC` and 32 zeros.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

/// [`ACCOUNT_SID`], typed.
pub fn account_sid() -> AccountSid {
    AccountSid::parse(ACCOUNT_SID).expect("AC and 32 hex digits is an account id")
}

/// Birth month-day a patient unknown to [`People`] gives.
pub const DEFAULT_BIRTH_MD: &str = "0101";

/// Finds a patient's birth month and day (`MMDD`) by phone number, E.164; `None` if unknown.
pub type People = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync>;

/// A lookup that knows nobody (everyone gives [`DEFAULT_BIRTH_MD`]).
pub fn nobody() -> People {
    Arc::new(|_| Box::pin(async { None }))
}

/// How the simulator is set up.
pub struct Options {
    /// Checks the API's basic auth and signs every webhook.
    pub auth_token: AuthToken,
    /// Sends the webhooks (sign with the same token; behind a proxy when the public URL is not
    /// the listen address).
    pub webhooks: WebhookClient,
    /// Birth dates, for the identity question.
    pub people: People,
    /// Pace: 1.0 is human-ish (ringing 1–4 s, 0.3–1.5 s per answer), 0 has no delays at all.
    pub speed: f64,
    /// Where to append a JSON line per call placed and per SMS accepted.
    pub log: Option<PathBuf>,
}

/// A call placed through the simulator, as it stands. `Debug` masks the number and shows only
/// how much was heard.
#[derive(Clone)]
pub struct SimulatedCall {
    pub sid: CallSid,
    pub from: String,
    pub to: String,
    /// The webhook asked for when the call is answered.
    pub url: String,
    pub status_callback: Option<String>,
    pub persona: Persona,
    pub status: CallStatus,
    /// With machine detection: who picked up.
    pub answered_by: Option<AnsweredBy>,
    /// When the call was placed.
    pub at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds, once it is over.
    pub duration: Option<u32>,
    /// The `CallStatus` values the status callback accepted (a 2xx), in order.
    pub reported: Vec<String>,
    /// Everything the patient heard, once the call is over. Holds processing numbers read
    /// aloud: never log it.
    pub heard: Vec<String>,
}

/// An SMS accepted by the simulator. The body holds a processing number: never log it (`Debug`
/// shows its length and the number masked).
#[derive(Clone, PartialEq, Eq)]
pub struct SimulatedSms {
    pub sid: MessageSid,
    pub to: String,
    pub from: String,
    pub body: String,
    /// `queued`, then `sent`, then `delivered` or `undelivered`.
    pub status: String,
    pub at: DateTime<Utc>,
}

impl fmt::Debug for SimulatedCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedCall")
            .field("sid", &self.sid)
            .field("to", &mask_phone(&self.to))
            .field("url", &self.url)
            .field("persona", &self.persona)
            .field("status", &self.status)
            .field("answered_by", &self.answered_by)
            .field("at", &self.at)
            .field("duration", &self.duration)
            .field("reported", &self.reported)
            .field("heard", &format_args!("<{} prompts>", self.heard.len()))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SimulatedSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedSms")
            .field("sid", &self.sid)
            .field("to", &mask_phone(&self.to))
            .field("body", &format_args!("<{} characters>", self.body.chars().count()))
            .field("status", &self.status)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// The simulator. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

struct Shared {
    auth_token: AuthToken,
    webhooks: WebhookClient,
    people: People,
    speed: f64,
    log: Option<Mutex<std::fs::File>>,
    calls: Mutex<Vec<SimulatedCall>>,
    messages: Mutex<Vec<SimulatedSms>>,
    personas: Mutex<HashMap<String, Persona>>,
}

impl Simulator {
    /// A simulator; fails only when the log file cannot be opened for appending.
    pub fn new(options: Options) -> std::io::Result<Simulator> {
        let log = match &options.log {
            Some(path) => Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)),
            None => None,
        };
        let speed = if options.speed.is_finite() && options.speed > 0.0 { options.speed } else { 0.0 };
        Ok(Simulator {
            shared: Arc::new(Shared {
                auth_token: options.auth_token,
                webhooks: options.webhooks,
                people: options.people,
                speed,
                log,
                calls: Mutex::default(),
                messages: Mutex::default(),
                personas: Mutex::default(),
            }),
        })
    }

    /// Twilio's REST API for [`ACCOUNT_SID`]; the server nests it under `/simulator`.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Makes `phone` (E.164) answer as `persona` from now on, whatever its number says.
    pub fn set_persona(&self, phone: &str, persona: Persona) {
        lock(&self.shared.personas).insert(phone.to_string(), persona);
    }

    /// Who answers `phone`: the persona set for it, else the one its number chooses (what is
    /// not a phone number answers as a landline would).
    pub fn persona(&self, phone: &str) -> Persona {
        lock(&self.shared.personas)
            .get(phone)
            .copied()
            .unwrap_or_else(|| E164::parse(phone).map_or(Persona::LandlineAppUser, |n| Persona::for_number(&n)))
    }

    /// Every call placed, oldest first.
    pub fn calls(&self) -> Vec<SimulatedCall> {
        lock(&self.shared.calls).clone()
    }

    /// One call by its sid.
    pub fn call(&self, sid: &str) -> Option<SimulatedCall> {
        lock(&self.shared.calls).iter().find(|c| c.sid == sid).cloned()
    }

    /// Every SMS accepted, oldest first.
    pub fn messages(&self) -> Vec<SimulatedSms> {
        lock(&self.shared.messages).clone()
    }

    fn update_call(&self, sid: &str, change: impl FnOnce(&mut SimulatedCall)) {
        if let Some(call) = lock(&self.shared.calls).iter_mut().find(|c| c.sid == sid) {
            change(call);
        }
    }

    fn update_message(&self, sid: &str, status: &str) {
        if let Some(m) = lock(&self.shared.messages).iter_mut().find(|m| m.sid == sid) {
            m.status = status.to_string();
        }
    }

    /// Appends one JSON line to the log and flushes it to the operating system, so it is
    /// there even if the process is killed the next instant.
    fn log_line(&self, line: serde_json::Value) -> std::io::Result<()> {
        let Some(file) = &self.shared.log else { return Ok(()) };
        let mut file = lock(file);
        let mut text = line.to_string();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.flush()
    }

    /// `secs` of simulated time as real time at this simulator's speed.
    fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs * self.shared.speed).max(0.0))
    }

    /// A random wait between `low` and `high` seconds, scaled.
    fn pause(&self, low: f64, high: f64) -> Duration {
        use rand::Rng;
        if self.shared.speed == 0.0 {
            return Duration::ZERO;
        }
        self.scaled(rand::rng().random_range(low..=high))
    }
}

/// A poisoned lock still holds usable records: a panicking task must not stop the others.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
