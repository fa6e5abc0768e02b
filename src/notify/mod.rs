//! Notifications to patients outside the phone call: the processing number sent where the
//! patient asked for it.
//!
//! - [`email`]: plain-text e-mail over SMTP.
//! - [`outbox`]: the dispatcher that sends the messages written with processing numbers, by SMS
//!   or e-mail, with retries and fallbacks.
//! - [`links`]: the patient's personal link to the web self-report, sent through the outbox.

pub mod email;
pub mod links;
pub mod outbox;
