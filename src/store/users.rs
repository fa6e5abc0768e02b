//! The health centre's staff as the store sees them: accounts (a name, a role, a language, an
//! argon2id hash), their signed-in sessions (known only by the hash of their id), and the
//! staff audit log (who viewed or did what, to what, when, from which address).
//!
//! Hashing, expiry and roles are the domain's (`staff`); the store keeps what it is given.

use chrono::{DateTime, Utc};

use super::Fut;
use crate::types::{Role, UiLanguage, UserName};

/// A staff account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: i64,
    pub name: UserName,
    pub role: Role,
    pub language: UiLanguage,
    /// The argon2id hash, as a PHC string (`$argon2id$v=19$…`).
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub name: &'a UserName,
    pub role: Role,
    pub language: UiLanguage,
    pub password_hash: &'a str,
}

/// A signed-in session, as stored: the id's hash, never the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub session_hash: String,
    pub user_id: i64,
    /// The synchronizer token every form of this session carries.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// One row of the staff audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The user's name, or `cli` for the command line.
    pub actor: String,
    /// What was done: `login`, `login_failed`, `logout`, `view_patient`, `add_user`, …
    pub action: String,
    /// What it was done to: a user's name, a patient's id; empty when nothing.
    pub target: String,
    /// The client's address; empty for the command line.
    pub address: String,
}

/// The staff's operations (`store.users()`).
pub trait Users {
    /// Adds an account; [`StoreError::Duplicate`](super::StoreError::Duplicate) when the name
    /// is taken (disabled accounts keep their name).
    fn add_user<'a>(&'a self, user: &'a NewUser<'a>) -> Fut<'a, i64>;
    fn user<'a>(&'a self, name: &'a str) -> Fut<'a, Option<User>>;
    /// Every account, by name.
    fn list_users(&self) -> Fut<'_, Vec<User>>;
    /// Replaces a password hash and ends the account's sessions; `false` if there is no such
    /// account.
    fn set_password<'a>(&'a self, name: &'a str, password_hash: &'a str) -> Fut<'a, bool>;
    /// The language of the account's pages; `false` if there is no such account.
    fn set_language<'a>(&'a self, name: &'a str, language: UiLanguage) -> Fut<'a, bool>;
    /// Disables an account and ends its sessions, in one transaction; `false` if there is no
    /// such account.
    fn disable_user<'a>(&'a self, name: &'a str) -> Fut<'a, bool>;
    /// Stores a new session.
    fn add_session<'a>(&'a self, session: &'a Session) -> Fut<'a, ()>;
    /// The session with this hash and its account (disabled or not: the caller decides).
    fn session<'a>(&'a self, session_hash: &'a str) -> Fut<'a, Option<(Session, User)>>;
    /// Records that the session was used now.
    fn touch_session<'a>(&'a self, session_hash: &'a str, now: DateTime<Utc>) -> Fut<'a, ()>;
    /// Ends a session (nothing if there is none).
    fn end_session<'a>(&'a self, session_hash: &'a str) -> Fut<'a, ()>;
    /// Ends every session last used before `idle_before` or opened before `opened_before`
    /// (sessions nobody will use again); returns how many.
    fn end_stale_sessions(&self, idle_before: DateTime<Utc>, opened_before: DateTime<Utc>) -> Fut<'_, u64>;
    /// Appends a row to the staff audit log.
    fn audit<'a>(&'a self, entry: &'a AuditEntry) -> Fut<'a, ()>;
    /// The staff audit log, newest first, at most `limit` rows.
    fn audit_rows(&self, limit: usize) -> Fut<'_, Vec<AuditEntry>>;
    /// Retention of the staff audit log: deletes the rows of before `before`; returns how many
    /// (with `dry_run`, counts them and deletes nothing).
    fn purge_audit(&self, before: DateTime<Utc>, dry_run: bool) -> Fut<'_, u64>;
}
