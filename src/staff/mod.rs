//! The health centre's staff: accounts, passwords, sessions and the audit of what they do.
//!
//! - Passwords are hashed with argon2id at OWASP's parameters ([`hash_password`]); a new one is
//!   checked for length first ([`check_new_password`]).
//! - A session id is 256 random bits, given to the browser once and stored only as its SHA-256
//!   ([`session_hash`]). A session ends after [`SessionRules::idle`] unused, and
//!   [`SessionRules::lifetime`] after sign-in whatever happens; disabling an account or
//!   changing its password ends its sessions (the store does it in the same transaction).
//! - [`sign_in`] answers the same for an unknown name, a disabled account and a wrong password,
//!   and spends as long on each (a hash is checked in every case); [`LoginThrottle`] refuses a
//!   burst of attempts per account and per client address.
//! - Each form of a session carries its synchronizer token ([`csrf_matches`]).
//!
//! Nothing here logs a password or a session id.

use std::num::NonZeroU32;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Duration, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::store::{AuditEntry, NewUser, Session, Store, StoreError, User};
use crate::types::{Role, UiLanguage, UserName};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest (a bound on the hashing work one request can ask for).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Why a new password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is too short: at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password is too long: at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
}

/// Checks a new password's length (in characters, so a Japanese passphrase counts as written).
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    match password.chars().count() {
        n if n < MIN_PASSWORD_CHARS => Err(PasswordError::TooShort),
        n if n > MAX_PASSWORD_CHARS => Err(PasswordError::TooLong),
        _ => Ok(()),
    }
}

/// argon2id with OWASP's first recommended parameters: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id hash of `password` with a fresh salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&rand::rng().random::<[u8; 16]>()).expect("16 bytes make a valid salt");
    argon2().hash_password(password.as_bytes(), &salt).expect("argon2 hashes any password").to_string()
}

/// Whether `password` matches the stored `hash` (false for a hash that cannot be read).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash nobody's password matches, checked for unknown names so that they take as long.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| hash_password(&hex::encode(rand::rng().random::<[u8; 16]>())));

/// A new session id: 256 random bits, hex. Only the browser keeps it.
pub fn new_session_id() -> SecretString {
    SecretString::from(hex::encode(rand::rng().random::<[u8; 32]>()))
}

/// How a session id is stored and looked up: its SHA-256, hex.
pub fn session_hash(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}

/// A new synchronizer token for a session's forms: 128 random bits, hex.
fn new_csrf_token() -> String {
    hex::encode(rand::rng().random::<[u8; 16]>())
}

/// Whether a form's token is its session's, compared in constant time.
pub fn csrf_matches(session: &Session, sent: Option<&str>) -> bool {
    let Some(sent) = sent else { return false };
    let (a, b) = (session.csrf_token.as_bytes(), sent.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a session lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRules {
    /// Unused this long, it ends (`staff.session_idle`).
    pub idle: Duration,
    /// This long after sign-in, it ends however busy (`staff.session_lifetime`).
    pub lifetime: Duration,
}

impl Default for SessionRules {
    fn default() -> Self {
        SessionRules { idle: Duration::minutes(30), lifetime: Duration::hours(12) }
    }
}

impl SessionRules {
    /// Whether the session may still be used at `now`.
    pub fn live(&self, s: &Session, now: DateTime<Utc>) -> bool {
        now < s.last_seen_at + self.idle && now < s.created_at + self.lifetime
    }
}

/// Sign-in attempts refused before the password is even checked: per account and per client
/// address, a burst, then one attempt per interval.
pub struct LoginThrottle {
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<String>,
}

/// Attempts on one account before it waits: then one a minute.
pub const ACCOUNT_BURST: u32 = 5;
/// Attempts from one address before it waits: then one every 6 seconds.
pub const ADDRESS_BURST: u32 = 20;

impl Default for LoginThrottle {
    fn default() -> Self {
        let quota = |burst: u32, per_minute: u32| {
            Quota::per_minute(NonZeroU32::new(per_minute).expect("non-zero"))
                .allow_burst(NonZeroU32::new(burst).expect("non-zero"))
        };
        LoginThrottle {
            accounts: RateLimiter::keyed(quota(ACCOUNT_BURST, 1)),
            addresses: RateLimiter::keyed(quota(ADDRESS_BURST, 10)),
        }
    }
}

impl LoginThrottle {
    /// Counts an attempt; `false` when the account or the address has to wait.
    pub fn allow(&self, name: &str, address: &str) -> bool {
        // Both are counted, so an address spreading its guesses over accounts waits too.
        let account = self.accounts.check_key(&name.to_owned()).is_ok();
        let address = self.addresses.check_key(&address.to_owned()).is_ok();
        account && address
    }
}

/// Why a sign-in failed. The pages say the same for every [`SignInError::Refused`].
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown name, disabled account or wrong password: not told apart.
    #[error("wrong name or password")]
    Refused,
    #[error("too many attempts; wait a minute")]
    Throttled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A session just opened: the id for the browser's cookie (shown nowhere else), and the row.
pub struct SignedIn {
    pub session_id: SecretString,
    pub session: Session,
    pub user: User,
}

/// Checks a name and password and opens a session. Every outcome leaves an audit row.
pub async fn sign_in(
    store: &Store,
    throttle: &LoginThrottle,
    rules: &SessionRules,
    name: &str,
    password: &SecretString,
    address: &str,
    now: DateTime<Utc>,
) -> Result<SignedIn, SignInError> {
    // A name that could not exist is not looked up, but is still counted and audited (as
    // typed, cut short: it is not a password field).
    let shown: String = name.chars().take(64).collect();
    let audit = |action: &str| AuditEntry {
        at: now,
        actor: shown.clone(),
        action: action.into(),
        target: String::new(),
        address: address.into(),
    };
    if !throttle.allow(&shown, address) {
        store.users().audit(&audit("login_throttled")).await?;
        return Err(SignInError::Throttled);
    }
    let user = match UserName::parse(name) {
        Ok(n) => store.users().user(n.as_str()).await?,
        Err(_) => None,
    };
    let password = password.expose_secret().to_owned();
    let hash = user.as_ref().map_or_else(|| DECOY_HASH.clone(), |u| u.password_hash.clone());
    // Hashing takes tens of milliseconds of CPU: off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password)).await.unwrap_or(false);
    let user = match user {
        Some(u) if matches && !u.disabled => u,
        _ => {
            store.users().audit(&audit("login_failed")).await?;
            return Err(SignInError::Refused);
        }
    };
    let session_id = new_session_id();
    let session = Session {
        session_hash: session_hash(session_id.expose_secret()),
        user_id: user.user_id,
        csrf_token: new_csrf_token(),
        created_at: now,
        last_seen_at: now,
    };
    store.users().add_session(&session).await?;
    // Sessions nobody will use again (their browsers never came back) go now.
    store.users().end_stale_sessions(now - rules.idle, now - rules.lifetime).await?;
    store.users().audit(&audit("login")).await?;
    Ok(SignedIn { session_id, session, user })
}

/// The live session with this id (from the cookie), and its account; an expired session is
/// ended, and a disabled account's refused. A live one is marked used now.
pub async fn session(
    store: &Store,
    rules: &SessionRules,
    session_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Session, User)>, StoreError> {
    let hash = session_hash(session_id);
    let Some((session, user)) = store.users().session(&hash).await? else { return Ok(None) };
    if !rules.live(&session, now) || user.disabled {
        store.users().end_session(&hash).await?;
        return Ok(None);
    }
    store.users().touch_session(&hash, now).await?;
    Ok(Some((session, user)))
}

/// Why an account could not be added or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("a user named '{0}' already exists")]
    Exists(String),
    #[error("no user named '{0}'")]
    Unknown(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        AccountError::Store(e)
    }
}

/// Adds an account (the command line and the users page).
pub async fn add_user(
    store: &Store,
    name: &UserName,
    role: Role,
    language: UiLanguage,
    password: &SecretString,
) -> Result<i64, AccountError> {
    check_new_password(password.expose_secret())?;
    let password = password.expose_secret().to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| StoreError::Turn(format!("hashing: {e}")))?;
    let user = NewUser { name, role, language, password_hash: &hash };
    match store.users().add_user(&user).await {
        Err(StoreError::Duplicate(_)) => Err(AccountError::Exists(name.to_string())),
        r => Ok(r?),
    }
}

/// Sets a new password and ends the account's sessions.
pub async fn set_password(store: &Store, name: &UserName, password: &SecretString) -> Result<(), AccountError> {
    check_new_password(password.expose_secret())?;
    let password = password.expose_secret().to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| StoreError::Turn(format!("hashing: {e}")))?;
    if store.users().set_password(name.as_str(), &hash).await? {
        Ok(())
    } else {
        Err(AccountError::Unknown(name.to_string()))
    }
}

/// Disables an account and ends its sessions.
pub async fn disable_user(store: &Store, name: &UserName) -> Result<(), AccountError> {
    if store.users().disable_user(name.as_str()).await? { Ok(()) } else { Err(AccountError::Unknown(name.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_hashed_with_argon2id_and_verified() {
        let hash = hash_password("correct horse battery");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_ne!(hash, hash_password("correct horse battery"), "a fresh salt each time");
    }

    #[test]
    fn new_passwords_have_at_least_twelve_characters_counted_as_written() {
        assert_eq!(check_new_password("short"), Err(PasswordError::TooShort));
        assert_eq!(check_new_password("12345678901"), Err(PasswordError::TooShort));
        assert_eq!(check_new_password("123456789012"), Ok(()));
        assert_eq!(check_new_password("あいうえおかきくけこさし"), Ok(()));
        assert_eq!(check_new_password(&"x".repeat(257)), Err(PasswordError::TooLong));
    }

    #[test]
    fn a_session_ends_when_idle_or_too_old() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-07T09:00:00Z").unwrap().with_timezone(&Utc);
        let rules = SessionRules::default();
        let mut s = Session {
            session_hash: session_hash("x"),
            user_id: 1,
            csrf_token: "t".into(),
            created_at: t0,
            last_seen_at: t0,
        };
        assert!(rules.live(&s, t0 + Duration::minutes(29)));
        assert!(!rules.live(&s, t0 + Duration::minutes(30)));
        s.last_seen_at = t0 + Duration::hours(11) + Duration::minutes(50);
        assert!(rules.live(&s, t0 + Duration::hours(11) + Duration::minutes(59)));
        assert!(!rules.live(&s, t0 + Duration::hours(12)), "the lifetime ends a busy session too");
    }

    #[test]
    fn session_ids_are_long_random_and_stored_as_hashes() {
        let a = new_session_id();
        let b = new_session_id();
        assert_eq!(a.expose_secret().len(), 64);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(session_hash(a.expose_secret()).len(), 64);
        assert_ne!(session_hash(a.expose_secret()), a.expose_secret());
    }

    #[test]
    fn the_csrf_token_must_be_the_sessions_own() {
        let s = Session {
            session_hash: "h".into(),
            user_id: 1,
            csrf_token: new_csrf_token(),
            created_at: Utc::now(),
            last_seen_at: Utc::now(),
        };
        let own = s.csrf_token.clone();
        assert!(csrf_matches(&s, Some(&own)));
        assert!(!csrf_matches(&s, None));
        assert!(!csrf_matches(&s, Some("")));
        assert!(!csrf_matches(&s, Some(&new_csrf_token())));
    }

    #[test]
    fn logins_wait_after_a_burst_per_account_and_per_address() {
        let t = LoginThrottle::default();
        for _ in 0..ACCOUNT_BURST {
            assert!(t.allow("sato", "10.0.0.1"));
        }
        assert!(!t.allow("sato", "10.0.0.2"), "the account waits, from any address");
        assert!(t.allow("suzuki", "10.0.0.3"), "another account does not");
        let t = LoginThrottle::default();
        for i in 0..ADDRESS_BURST {
            assert!(t.allow(&format!("user{i}"), "10.0.0.9"));
        }
        assert!(!t.allow("another", "10.0.0.9"), "the address waits, for any account");
    }
}
