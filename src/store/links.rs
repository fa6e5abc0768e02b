//! The patients' personal links to the web self-report (`/r/{token}`).
//!
//! A link's token is random ([`TOKEN_BYTES`] bytes, URL-safe base64) and shown once: the store
//! keeps only its SHA-256, so the database alone opens no patient's page. A link belongs to one
//! patient, ends with the patient's care period (`expires_at`) and can be revoked; a new link
//! revokes the patient's earlier ones, so a patient has at most one live link.
//!
//! A submitted web report is not a record of its own: it is a call with direction `web`
//! (answers, alerts, follow-ups and a processing number as a call's), so every reader of calls
//! sees it, and [`super::Campaign::reported_patients`] counts it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::Fut;
use super::followups::NewAlert;
use super::numbers::NewMessage;
use super::patients::Patient;
use crate::types::{Channel, PatientId};

/// The random bytes of a token: 192 bits.
pub const TOKEN_BYTES: usize = 24;

/// The length of a token as written in a URL (URL-safe base64, no padding).
pub const TOKEN_CHARS: usize = TOKEN_BYTES * 4 / 3;

/// A link's token, as the patient has it in the URL. `Debug` and `Display` hide it: it is the
/// key to the patient's page.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl LinkToken {
    /// A new random token.
    pub fn generate() -> LinkToken {
        let bytes: [u8; TOKEN_BYTES] = rand::rng().random();
        LinkToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A token from a URL: exactly [`TOKEN_CHARS`] of URL-safe base64. Anything else is no
    /// link's token (and is looked up nowhere).
    pub fn parse(s: &str) -> Option<LinkToken> {
        let ok = s.len() == TOKEN_CHARS && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| LinkToken(s.to_owned()))
    }

    /// The token itself, for the one message that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps: the token's SHA-256, in hex.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

/// A personal link as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub link_id: i64,
    pub patient_id: PatientId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it: a user's name, `cli`, or [`REPLACED`].
    pub revoked_by: Option<String>,
}

/// Who revoked a link replaced by a newer one.
pub const REPLACED: &str = "new link";

/// Who revoked a link whose page was given a birth date that did not match too often in a day.
pub const IDENTITY_CHECK: &str = "identity check";

/// Whether a link opens its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Live,
    /// The care period ended.
    Expired,
    Revoked,
}

impl Link {
    /// The link's state at `now`: revoked first (a revoked link says so even after its end).
    pub fn state(&self, now: DateTime<Utc>) -> LinkState {
        match self.revoked_at {
            Some(t) if t <= now => LinkState::Revoked,
            _ if self.expires_at <= now => LinkState::Expired,
            _ => LinkState::Live,
        }
    }
}

/// A new link: the link as stored and its token, which nothing gives again.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub link: Link,
    pub token: LinkToken,
}

/// Writes the message that carries a new link to its patient (the text sealed, the token in it):
/// given the patient as stored and the new token, inside the link's transaction.
pub type Compose = Box<dyn FnOnce(&Patient, &LinkToken) -> Result<NewMessage, String> + Send>;

/// A link made and its message written to the outbox.
#[derive(Debug, Clone)]
pub struct SentLink {
    pub link: Link,
    pub channel: Channel,
}

/// The personal links' operations (`store.links()`).
pub trait Links {
    /// A new link for the patient, live from `now` until `expires_at`; the patient's earlier
    /// live links are revoked ([`REPLACED`]) in the same transaction. Returns the token, once.
    /// [`StoreError::UnknownPatient`](super::StoreError::UnknownPatient) when there is no such
    /// patient.
    fn create<'a>(
        &'a self,
        patient_id: &'a PatientId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Fut<'a, NewLink>;
    /// As [`Links::create`], and the message `compose` writes (carrying the token) goes to the
    /// outbox in the same transaction, marked as a link's: once the provider took it (or it failed
    /// for good) its text is emptied. A `compose` error fails it with
    /// [`StoreError::Turn`](super::StoreError::Turn), and nothing is written.
    fn send<'a>(
        &'a self,
        patient_id: &'a PatientId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        compose: Compose,
    ) -> Fut<'a, SentLink>;
    /// The link whose token this is (live, expired or revoked), if any.
    fn find<'a>(&'a self, token: &'a LinkToken) -> Fut<'a, Option<Link>>;
    /// The patient's newest link, if any (whatever its state).
    fn latest<'a>(&'a self, patient_id: &'a PatientId) -> Fut<'a, Option<Link>>;
    /// Revokes the patient's live links at `now`, recording `by`; returns how many.
    fn revoke<'a>(&'a self, patient_id: &'a PatientId, by: &'a str, now: DateTime<Utc>) -> Fut<'a, usize>;
    /// The patients with a link live at some moment of `[from, to)` (created before `to`, ending
    /// after `from`, not revoked), by id: those the web request of a check-in goes to.
    fn live_patients(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<PatientId>>;
    /// Counts a birth date that did not match on the live link's page on local day `day`. The
    /// `tries`-th of a day revokes the link ([`IDENTITY_CHECK`]) and raises `alert` for its
    /// patient, in one transaction. Returns the tries left that day (0: the link was revoked
    /// now), or `None` when the link was not live (nothing is counted).
    fn identity_miss<'a>(
        &'a self,
        link_id: i64,
        day: NaiveDate,
        tries: u32,
        alert: &'a NewAlert,
        now: DateTime<Utc>,
    ) -> Fut<'a, Option<u32>>;
    /// The patients in care on `today` (their care period has begun and not ended) who never
    /// had a link, by id: those a roster import or the day's plan sends one to.
    fn unlinked_in_care(&self, today: NaiveDate) -> Fut<'_, Vec<Patient>>;
    /// How many web reports (calls with direction `web`) the patient sent in `[from, to)`.
    fn web_reports<'a>(&'a self, patient_id: &'a PatientId, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'a, i64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_has_192_random_bits_in_32_url_safe_characters_and_hides_itself() {
        let a = LinkToken::generate();
        let b = LinkToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), TOKEN_CHARS);
        assert_eq!(TOKEN_CHARS, 32);
        assert_eq!(LinkToken::parse(a.expose()), Some(a.clone()));
        assert_eq!(format!("{a:?}"), "LinkToken(***)");
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn only_32_url_safe_characters_are_a_token() {
        for bad in ["", "abc", &"a".repeat(31), &"a".repeat(33), &format!("{}/", "a".repeat(31)), &"あ".repeat(8)] {
            assert_eq!(LinkToken::parse(bad), None, "{bad}");
        }
        assert!(LinkToken::parse(&"A-_z".repeat(8)).is_some());
    }

    #[test]
    fn a_revoked_link_says_so_even_after_it_ended() {
        let t = |h: i64| DateTime::<Utc>::from_timestamp(h * 3600, 0).unwrap();
        let mut link = Link {
            link_id: 1,
            patient_id: PatientId::parse("p1").unwrap(),
            created_at: t(0),
            expires_at: t(10),
            revoked_at: None,
            revoked_by: None,
        };
        assert_eq!(link.state(t(5)), LinkState::Live);
        assert_eq!(link.state(t(10)), LinkState::Expired);
        link.revoked_at = Some(t(6));
        assert_eq!(link.state(t(5)), LinkState::Live);
        assert_eq!(link.state(t(6)), LinkState::Revoked);
        assert_eq!(link.state(t(11)), LinkState::Revoked);
    }
}
