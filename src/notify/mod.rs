//! Notifications to patients outside the phone call: the processing number sent where the
//! patient asked for it.
//!
//! - [`email`]: plain-text e-mail over SMTP.

pub mod email;
