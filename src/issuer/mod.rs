//! Processing numbers (処理番号): what the contact-confirmation app asks a patient for before
//! they register as positive. A number is `digits` decimal digits from the operating system's
//! CSPRNG, valid for a while, and stored only as a keyed hash, so a copy of the database does
//! not reveal it. Where the number must be kept to be said or sent again (a landline caller who
//! presses 1 to hear it again, a message waiting in the outbox), it is sealed (encrypted and
//! authenticated) with a key derived from the same secret.
//!
//! [`numbers`] holds the health centre's operations on them, shared by the command line and the
//! JSON API: issue by hand, and verify.

pub mod numbers;

use std::fmt;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::Sha256;

use crate::types::{E164, NumberDelivery};

/// A processing number. Its `Debug` and `Display` show only the last two digits, so it never
/// reaches a log whole; [`ProcessingNumber::expose`] gives the digits where they must go (the
/// caller's ear, the patient's SMS).
#[derive(Clone, PartialEq, Eq)]
pub struct ProcessingNumber(String);

/// Why a string is not a processing number (7 or 9 digits, letters, full-width digits…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("a processing number has exactly {0} digits")]
    Length(usize),
    #[error("a processing number has only the digits 0-9")]
    NotDigits,
}

impl ProcessingNumber {
    /// Parses what a person typed: spaces and hyphens between groups are allowed; anything but
    /// ASCII digits (including full-width ０-９) is refused, as the app refuses it.
    pub fn parse(s: &str, digits: usize) -> Result<ProcessingNumber, NumberError> {
        let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !compact.chars().all(|c| c.is_ascii_digit()) {
            return Err(NumberError::NotDigits);
        }
        if compact.len() != digits {
            return Err(NumberError::Length(digits));
        }
        Ok(ProcessingNumber(compact))
    }

    /// A new number from the OS's CSPRNG: uniform over all `digits`-digit strings (leading
    /// zeros included), so numbers are never sequential or guessable from one another.
    pub fn generate(digits: usize) -> ProcessingNumber {
        let mut rng = rand::rngs::OsRng;
        let s = (0..digits)
            .map(|_| {
                loop {
                    // Rejection sampling keeps each digit uniform (256 is not a multiple of 10).
                    let b = (rng.try_next_u32().expect("the OS random source") & 0xff) as u8;
                    if b < 250 {
                        break char::from(b'0' + b % 10);
                    }
                }
            })
            .collect();
        ProcessingNumber(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last two digits, for people who need to tell numbers apart (`******78`).
    pub fn masked(&self) -> String {
        let n = self.0.len();
        format!("{}{}", "*".repeat(n.saturating_sub(2)), &self.0[n.saturating_sub(2)..])
    }
}

impl fmt::Debug for ProcessingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessingNumber({})", self.masked())
    }
}

impl fmt::Display for ProcessingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The issuer's secret: keys the stored hashes and seals numbers kept for delivery.
#[derive(Clone)]
pub struct IssuerKey {
    hash_key: [u8; 32],
    seal: XChaCha20Poly1305,
}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuerKey(***)")
    }
}

const SEALED: &str = "sealed:v1:";

impl IssuerKey {
    /// Derives the hash and sealing keys from the configured secret.
    pub fn new(secret: &str) -> IssuerKey {
        let derive = |label: &[u8]| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
            m.update(label);
            let out: [u8; 32] = m.finalize().into_bytes().into();
            out
        };
        let seal_key = derive(b"ivr processing number seal v1");
        IssuerKey { hash_key: derive(b"ivr processing number hash v1"), seal: XChaCha20Poly1305::new(&seal_key.into()) }
    }

    /// The keyed hash stored for a number (hex of HMAC-SHA256).
    pub fn hash(&self, n: &ProcessingNumber) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key).expect("32-byte key");
        m.update(n.expose().as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// Encrypts and authenticates `plain` (a number, or a message holding one) for storage.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.try_fill_bytes(&mut nonce).expect("the OS random source");
        let ct = self.seal.encrypt(XNonce::from_slice(&nonce), plain.as_bytes()).expect("encryption of a short text");
        let mut out = nonce.to_vec();
        out.extend(ct);
        format!("{SEALED}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out))
    }

    /// Opens what [`IssuerKey::seal`] made; `None` for anything else or a wrong key.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sealed.strip_prefix(SEALED)?).ok()?;
        if raw.len() < 24 {
            return None;
        }
        let plain = self.seal.decrypt(XNonce::from_slice(&raw[..24]), &raw[24..]).ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Whether a stored text is sealed.
pub fn is_sealed(s: &str) -> bool {
    s.starts_with(SEALED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_parsed_as_the_app_takes_them() {
        assert_eq!(ProcessingNumber::parse("1234 5678", 8).unwrap().expose(), "12345678");
        assert_eq!(ProcessingNumber::parse("1234-5678", 8).unwrap().expose(), "12345678");
        assert_eq!(ProcessingNumber::parse("1234567", 8), Err(NumberError::Length(8)));
        assert_eq!(ProcessingNumber::parse("123456789", 8), Err(NumberError::Length(8)));
        assert_eq!(ProcessingNumber::parse("1234567a", 8), Err(NumberError::NotDigits));
        assert_eq!(ProcessingNumber::parse("１２３４５６７８", 8), Err(NumberError::NotDigits));
    }

    #[test]
    fn generated_numbers_have_the_digits_asked_and_are_spread_out() {
        let numbers: Vec<ProcessingNumber> = (0..2000).map(|_| ProcessingNumber::generate(8)).collect();
        assert!(numbers.iter().all(|n| n.expose().len() == 8 && n.expose().bytes().all(|b| b.is_ascii_digit())));
        let distinct: std::collections::HashSet<_> = numbers.iter().map(|n| n.expose().to_string()).collect();
        assert!(distinct.len() > 1990);
        // Every digit shows up in every position.
        for pos in 0..8 {
            let seen: std::collections::HashSet<u8> = numbers.iter().map(|n| n.expose().as_bytes()[pos]).collect();
            assert_eq!(seen.len(), 10, "position {pos}");
        }
    }

    #[test]
    fn numbers_never_print_whole() {
        let n = ProcessingNumber::parse("12345678", 8).unwrap();
        assert_eq!(format!("{n} {n:?}"), "******78 ProcessingNumber(******78)");
    }

    #[test]
    fn hashes_are_keyed_and_seals_open_only_with_their_key() {
        let n = ProcessingNumber::parse("12345678", 8).unwrap();
        let (a, b) = (IssuerKey::new("secret-a"), IssuerKey::new("secret-b"));
        assert_eq!(a.hash(&n), a.hash(&n));
        assert_ne!(a.hash(&n), b.hash(&n));
        assert!(!a.hash(&n).contains("12345678"));
        let sealed = a.seal("処理番号は 1234 5678 です");
        assert!(is_sealed(&sealed) && !sealed.contains("1234"));
        assert_ne!(sealed, a.seal("処理番号は 1234 5678 です"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).as_deref(), Some("処理番号は 1234 5678 です"));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open("12345678"), None);
        assert_eq!(format!("{a:?}"), "IssuerKey(***)");
    }
}

/// Issues processing numbers: draws them, decides how they reach the patient, writes the
/// message that carries them. The store records them (in the call's transaction, or the staff
/// member's); this holds the policy.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub key: IssuerKey,
    pub digits: usize,
    pub valid_for: chrono::Duration,
    pub link: Option<String>,
    /// The time zone expiry times are told in.
    pub tz: chrono_tz::Tz,
}

/// A number just drawn, with what the store keeps of it.
#[derive(Debug, Clone)]
pub struct Drawn {
    pub number: ProcessingNumber,
    pub hash: String,
    pub sealed: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Expiry in the issuer's time zone, `2026-11-26T14:00`, for prompts and messages.
    pub expires_local: String,
}

/// How a number reaches a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sms,
    Email,
    ReadAloud,
}

impl Delivery {
    /// How the number is recorded as delivered.
    pub fn number_delivery(self) -> NumberDelivery {
        match self {
            Delivery::Sms => NumberDelivery::Sms,
            Delivery::Email => NumberDelivery::Email,
            Delivery::ReadAloud => NumberDelivery::ReadAloud,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Delivery::Sms => "sms",
            Delivery::Email => "email",
            Delivery::ReadAloud => "read_aloud",
        }
    }

    /// SMS to a mobile number; e-mail for a patient without one who gave an address; else
    /// the number is read aloud on the call.
    pub fn choose(phone: Option<&E164>, email: Option<&str>) -> Delivery {
        if phone.is_some_and(E164::is_mobile) {
            Delivery::Sms
        } else if email.is_some_and(|e| e.contains('@')) {
            Delivery::Email
        } else {
            Delivery::ReadAloud
        }
    }
}

impl Issuer {
    pub fn draw(&self, now: chrono::DateTime<chrono::Utc>) -> Drawn {
        let number = ProcessingNumber::generate(self.digits);
        let expires_at = now + self.valid_for;
        Drawn {
            hash: self.key.hash(&number),
            sealed: self.key.seal(number.expose()),
            expires_local: self.local_time(expires_at),
            expires_at,
            number,
        }
    }

    /// A time in the issuer's time zone, `2026-11-26T14:00`, as prompts and messages take it.
    pub fn local_time(&self, t: chrono::DateTime<chrono::Utc>) -> String {
        t.with_timezone(&self.tz).format("%Y-%m-%dT%H:%M").to_string()
    }

    /// The message that carries a number: the `number.sms` prompt of the patient's language,
    /// and the link when the app takes the number from one.
    pub fn message(
        &self,
        catalog: &crate::flow::prompts::Catalog,
        vars: &crate::flow::Vars,
        number: &ProcessingNumber,
    ) -> String {
        let mut text = catalog.text("number.sms", vars);
        if let Some(link) = &self.link {
            text.push(' ');
            text.push_str(&link.replace("{number}", number.expose()));
        }
        text
    }
}

/// SMS segments a text takes: GSM-7 text 160 characters alone or 153 a part; anything else
/// (Japanese) UCS-2, 70 characters alone or 67 a part.
pub fn sms_segments(text: &str) -> usize {
    let gsm = text.chars().all(|c| c.is_ascii() && !c.is_ascii_control() || c == '\n');
    let n = if gsm { text.chars().count() } else { text.encode_utf16().count() };
    let (single, part) = if gsm { (160, 153) } else { (70, 67) };
    if n <= single { 1 } else { n.div_ceil(part) }
}
