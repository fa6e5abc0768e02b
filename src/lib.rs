//! `ivr`: an IVR engine for public health centres.
//!
//! Layout:
//! - [`flow`]: call-flow files (model, loading with `file:line:col` errors, validation), and the
//!   pure engine `flow::step`.
//! - [`prompts`]: prompt catalogues per language, placeholders and how values are read aloud.
//! - [`response`]: what the engine wants the phone to do, independent of any carrier.
//! - [`twiml`]: that response as TwiML, and TwiML read back; [`phone`] plays it like a caller.
//! - [`signature`]: Twilio webhook signatures, checked as Twilio's helper libraries do.
//! - [`cli`]: the `ivr` commands.
//! - [`notify`]: processing numbers sent outside the call (e-mail over SMTP).
//! - [`roster`]: the patient roster, read from CSV with every mistake at its `file:row:col`.

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

/// Japanese mobile numbers start +8170, +8180 or +8190 (and +8160 for new mobile blocks);
/// anything else is taken as a landline, which cannot receive SMS.
pub fn phone_kind(e164: &str) -> &'static str {
    if ["+8160", "+8170", "+8180", "+8190"].iter().any(|p| e164.starts_with(p)) { "mobile" } else { "landline" }
}

/// A phone number as people write it in Japan (`090-1234-5678`, `03 1234 5678`) or in E.164
/// (`+819012345678`), as E.164; `None` if it is neither.
pub fn normalize_phone(s: &str) -> Option<String> {
    let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let (plus, digits) = compact.strip_prefix('+').map_or((false, compact.as_str()), |d| (true, d));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if plus {
        return (8..=15).contains(&digits.len()).then(|| format!("+{digits}"));
    }
    // Domestic: a trunk 0, then 9 (landline) or 10 (mobile) digits.
    let national = digits.strip_prefix('0').filter(|n| !n.starts_with('0'))?;
    (9..=10).contains(&national.len()).then(|| format!("+81{national}"))
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
