//! Everything durable: patients, calls and their turns, numbers, the outbox, campaigns and
//! flow versions. One [`Store`] with two back ends: SQLite (default; rusqlite on the store's own
//! threads) and PostgreSQL (sqlx, for several instances). Both pass the same test suite
//! (`tests/store/`).
//!
//! ## Layout
//! One module per record: `patients`, `calls` (calls, their turns, answers, alerts), `numbers`
//! (processing numbers, API tokens, the audit log), `outbox`, `campaign` (jobs and attempts),
//! `versions` (flow versions), `users` (staff accounts, their sessions, the staff audit log),
//! `followups` (the follow-up queue, opened by every alert), `figures` (the ministry's figures,
//! read only), `trends` (the patients table and a patient's charts, read only), `links` (the
//! patients' personal links to the web self-report; a web report is a call with direction
//! `web`). Each holds the record's types, its rules as pure functions with
//! their unit tests (a turn's sequence and replay, a number's collision and verdict, a message's
//! fallback and states, a late number's replacement), and the trait of its operations. Each
//! back end (`sqlite/`, `postgres/`) holds, per record, only its SQL and the trait's
//! implementation, calling those rules.
//!
//! ## Handles
//! `store.patients()`, `store.calls()`, `store.numbers()`, `store.outbox()`, `store.campaign()`,
//! `store.flows()`, `store.users()`, `store.followups()`, `store.figures()`, `store.trends()`, `store.links()` each return the record's trait object (`&dyn Patients`, …), whose methods
//! are called as on any value (`store.patients().get(id).await`). The dispatch to a back end is
//! confined to one place: [`Store`] holds an `Arc<dyn Backend>`, and [`Backend`] is every
//! record trait together, implemented by [`SqliteStore`] and [`PgStore`]. Each method returns a
//! boxed future ([`Fut`]), which is what makes the traits usable as objects. Adding an
//! operation is a method in the record's trait and its SQL once per back end; adding a record
//! (follow-ups, say) is one more module with its trait, one more supertrait
//! of [`Backend`] and one more handle here, touching no other record.
//!
//! ## Turns
//! A webhook turn is one transaction ([`Calls::turn`]): lock the call, check the turn's
//! sequence number, run the engine (a closure), write state, event, answers and alerts, commit.
//! A call's first turn creates the call in that transaction, finding its patient (through the
//! job, or by the calling number) and their valid number there too ([`Create::Find`]).
//! A turn already taken returns its stored response and changes nothing. On SQLite, the turns
//! waiting share one transaction, each in a savepoint of its own, and are answered only once
//! it committed.

mod calls;
mod campaign;
pub mod figures;
mod followups;
mod leader;
mod links;
mod numbers;
mod outbox;
mod patients;
mod postgres;
mod sqlite;
mod trends;
mod users;
mod versions;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use calls::*;
pub use campaign::*;
pub use figures::{Counts, Figures, Span, SpanFigures};
pub use followups::{
    Act, Acted, Action, Change, ChangeKind, Followup, Followups, ListQuery, NOTE_MAX, NewAlert, Notice, NoticeMessage,
    NoticesPurged, Reason, Refusal, StatusFilter,
};
pub use leader::DialerLock;
pub use links::{
    Compose, IDENTITY_CHECK, Link, LinkState, LinkToken, Links, NewLink, REPLACED, SentLink, TOKEN_BYTES, TOKEN_CHARS,
};
pub use numbers::*;
pub use outbox::*;
pub use patients::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use trends::{
    AlertFilter, CallPoint, Dialect, LastCall, OpenItem, PageSql, Param, Reading, SortKey, TablePage, TableQuery,
    TableRow, Trends, page_sql,
};
pub use users::{AuditEntry, NewUser, Session, User, Users};
pub use versions::{Flows, StoredFlow, VersionUse};

/// What every store operation returns: a boxed future of its result.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// How many numbered migrations each back end has (`migrations/sqlite`, `migrations/postgres`).
pub const MIGRATION_COUNT: usize = 24;

/// A store failure. Details go to the log; callers hear an apology.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("stored call state is unreadable: {0}")]
    State(#[from] serde_json::Error),
    #[error("no call {0}")]
    UnknownCall(String),
    #[error("a new processing number collided with a valid one")]
    Conflict,
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("no patient {0}")]
    UnknownPatient(String),
    #[error("no patient has the calling number")]
    UnknownCaller,
    #[error("{0}")]
    Turn(String),
    #[error("database url: {0}")]
    Url(String),
}

/// A back end: every record's operations, and the database's own.
pub trait Backend:
    Patients + Calls + Numbers + Outbox + Campaign + Flows + Users + Followups + Figures + Trends + Links + Send + Sync
{
    /// `sqlite` or `postgres`.
    fn name(&self) -> &'static str;
    /// Applies the migrations not yet applied; returns how many ran.
    fn migrate(&self) -> Fut<'_, usize>;
    /// The database answers.
    fn ping(&self) -> Fut<'_, ()>;
    /// The dialer lock of this database, not taken yet.
    fn dialer_lock(&self) -> DialerLock;
}

/// The store: a handle per record over one back end. Cloning it is cheap (one `Arc`).
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// Opens the database at `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`).
    /// [`Store::migrate`] brings its schema up to date.
    pub async fn open(url: &str, sqlite_synchronous_full: bool) -> Result<Store, StoreError> {
        let store = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            // Opening runs SQLite (pragmas, the WAL's recovery): off the async workers.
            let path = path.to_owned();
            let open = tokio::task::spawn_blocking(move || SqliteStore::open(&path, sqlite_synchronous_full));
            Store::new(open.await.map_err(|e| StoreError::Turn(format!("opening SQLite: {e}")))??)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::new(PgStore::connect(url).await?)
        } else {
            // The URL may hold a password: name only its scheme.
            let scheme = url.split(':').next().unwrap_or("");
            return Err(StoreError::Url(format!("'{scheme}:' is neither sqlite: nor postgres://")));
        };
        Ok(store)
    }

    /// A store on this back end.
    pub fn new(backend: impl Backend + 'static) -> Store {
        Store(Arc::new(backend))
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.0.name()
    }

    /// Applies the migrations not yet applied; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        self.0.migrate().await
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }

    /// The dialer lock of this database, not taken yet (see [`DialerLock`]).
    pub fn dialer_lock(&self) -> DialerLock {
        self.0.dialer_lock()
    }

    /// The roster.
    pub fn patients(&self) -> &dyn Patients {
        &*self.0
    }

    /// Calls, their turns, answers and alerts.
    pub fn calls(&self) -> &dyn Calls {
        &*self.0
    }

    /// Processing numbers, API tokens and the audit log.
    pub fn numbers(&self) -> &dyn Numbers {
        &*self.0
    }

    /// Messages to send.
    pub fn outbox(&self) -> &dyn Outbox {
        &*self.0
    }

    /// Daily campaigns: jobs and their attempts.
    pub fn campaign(&self) -> &dyn Campaign {
        &*self.0
    }

    /// Flow versions kept with the calls.
    pub fn flows(&self) -> &dyn Flows {
        &*self.0
    }

    /// Staff accounts, their sessions and the staff audit log.
    pub fn users(&self) -> &dyn Users {
        &*self.0
    }

    /// The follow-up queue: an item per patient who needs a person.
    pub fn followups(&self) -> &dyn Followups {
        &*self.0
    }

    /// The ministry's figures: new patients, the app question, numbers issued and verified.
    pub fn figures(&self) -> &dyn Figures {
        &*self.0
    }

    /// The patients table and a patient's charts: readings, open items, last calls.
    pub fn trends(&self) -> &dyn Trends {
        &*self.0
    }

    /// The patients' personal links to the web self-report.
    pub fn links(&self) -> &dyn Links {
        &*self.0
    }
}

/// A store operation's future, boxed (its output type fixed, so `?` in the block converts
/// errors to [`StoreError`]).
pub(crate) fn fut<'a, T>(f: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Fut<'a, T> {
    Box::pin(f)
}
