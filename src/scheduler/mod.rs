//! Placing the daily calls.
//!
//! - [`hours`]: calling hours (slots, quiet hours, blocked days) and when a call may be placed.
//! - [`leader`]: which instance dials, so the carrier account's rate holds across instances.
//! - [`upkeep`]: numbers no call read are followed up; retention empties old calls.
//! - [`urgent`]: urgent follow-up items told to the on-duty contacts, and escalated.
//! - [`plan`]: the plan of each check-in of the day, a pure function of the roster, the
//!   reports, the hours and the time.
//! - [`web`]: a check-in's web request to the patients with a personal link, before their call.
//!
//! `hours` and `plan` are pure: the time is always passed in, so tests never wait for a clock.

pub mod clock;
pub mod daily;
pub mod dialer;
pub mod hours;
pub mod leader;
pub mod plan;
pub mod upkeep;
pub mod urgent;
pub mod web;

/// How calls are dialled: the carrier's rate and concurrency limits, retries, ringing.
#[derive(Debug, Clone, PartialEq)]
pub struct DialPolicy {
    /// Calls started per second at most (a Twilio account starts at 1).
    pub calls_per_second: f64,
    /// Calls in progress at once at most.
    pub max_concurrent_calls: u32,
    /// Wait before calling again a patient who did not answer (or was busy).
    pub retry_after: chrono::Duration,
    /// Calls to a patient per day at most, the first one included.
    pub max_attempts: u32,
    /// How long a call rings before it counts as not answered.
    pub ring_timeout: chrono::Duration,
    /// Whether the carrier is asked to tell an answering machine from a person.
    pub machine_detection: bool,
    /// The last resort for an attempt without a call id: counted lost (never dialled again) once
    /// this long has passed since its claim with the carrier unable to say whether it placed
    /// the call. It is looked for in the carrier's Calls list long before, after
    /// [`dialer::UNRECORDED_CALL_GRACE`]; a call with an id is looked up after `call_check_after`.
    pub call_lease: chrono::Duration,
    /// How long a call may go without news (no status callback) before the dialer asks the
    /// carrier how it stands; also every call open when this instance starts leading is asked
    /// at once. A call that ended frees its slot; one still in progress is asked again after
    /// as long.
    pub call_check_after: chrono::Duration,
}
