//! Notifications to patients outside the phone call: the processing number sent where the
//! patient asked for it.
//!
//! - [`email`]: plain-text e-mail over SMTP.
//! - [`outbox`]: the dispatcher that sends the messages written with processing numbers, by SMS
//!   or e-mail, with retries and fallbacks.

pub mod email;
pub mod outbox;
