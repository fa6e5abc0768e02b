//! Everything durable: patients, calls and their turns, answers, alerts. One interface,
//! [`Store`], with two back ends: SQLite (default; rusqlite on the server's own threads) and
//! PostgreSQL (sqlx, for several instances). Both pass the same test suite (`tests/store/`).
//!
//! A webhook turn is one transaction ([`Store::turn`]): lock the call, check the turn's
//! sequence number, run the engine (a closure), write state, event, answers and alerts, commit.
//! A turn already taken returns its stored response and changes nothing. On SQLite, the turns
//! waiting share one transaction, each in a savepoint of its own, and are answered only once
//! it committed.

mod campaign;
mod numbers;
mod postgres;
mod postgres_campaign;
mod sqlite;
mod sqlite_campaign;
mod sqlite_writer;
mod versions;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::flow::{CallState, Value};

pub use campaign::*;
pub use numbers::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use versions::StoredFlow;

/// How many numbered migrations each back end has (`migrations/sqlite`, `migrations/postgres`).
pub const MIGRATION_COUNT: usize = 7;

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
    #[error("{0}")]
    Turn(String),
    #[error("database url: {0}")]
    Url(String),
}

/// A patient of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    /// The health centre's id, `[A-Za-z0-9_-]{1,64}`.
    pub patient_id: String,
    pub name: String,
    /// E.164.
    pub phone: String,
    /// Birth month and day, `MMDD` (asked back on the phone to confirm who answers).
    pub birth_md: Option<String>,
    /// The prompt catalogue the calls use, e.g. `ja-JP`.
    pub language: String,
    pub email: Option<String>,
    /// A free grouping for the health centre, e.g. `north`.
    pub area: Option<String>,
    /// The home-care period, `YYYY-MM-DD` (both ends included).
    pub care_start: Option<String>,
    pub care_end: Option<String>,
    /// The preferred call slot's name; `None` for the first configured slot.
    pub call_slot: Option<String>,
}

/// What an import did: patients added, patients changed, and patients already as in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCount {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// A call to be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: i64,
    pub patient_id: String,
    pub flow: String,
    pub status: String,
}

/// A call as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub call_id: i64,
    pub call_sid: String,
    pub patient_id: Option<String>,
    pub job_id: Option<i64>,
    pub direction: String,
    pub flow: String,
    pub flow_version: String,
    pub state: CallState,
    /// The last turn taken (-1 before the first).
    pub seq: i64,
    pub ended: bool,
    pub incomplete: bool,
    pub status: String,
    pub duration: Option<i64>,
}

/// A call to create on its first turn.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub call_sid: String,
    pub patient_id: Option<String>,
    pub job_id: Option<i64>,
    pub direction: String,
    pub state: CallState,
}

/// What one turn writes, built by the engine inside the transaction.
#[derive(Debug, Clone, Default)]
pub struct TurnWrite {
    pub state: Option<CallState>,
    /// The TwiML answered; stored for replays.
    pub response: String,
    /// What to store instead of `response` when it holds a processing number (sealed).
    pub stored_response: Option<String>,
    /// A processing number issued in this turn, with its message.
    pub issue: Option<NewNumber>,
    /// Other messages written in this turn (e.g. the number by SMS to a mobile number the
    /// caller typed), for the outbox.
    pub messages: Vec<NewMessage>,
    /// The state the turn left and its input, masked.
    pub event_state: String,
    pub event_input: String,
    /// Answers given or recorded in this turn (upserted by name).
    pub answers: Vec<(String, Value)>,
    /// Alerts raised for the health centre (reasons).
    pub alerts: Vec<String>,
    /// The flow reached a hang-up.
    pub ended: bool,
    /// The call read the patient's number held for it (after a failed SMS): that pending
    /// delivery is done.
    pub number_read: bool,
}

impl TurnWrite {
    /// The turn writes messages for the outbox (its own, or the one carrying a new number).
    pub fn queues_messages(&self) -> bool {
        !self.messages.is_empty() || self.issue.as_ref().is_some_and(|n| n.message.is_some())
    }
}

/// The outcome of [`Store::turn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnResult {
    pub response: String,
    /// The request was for a turn already taken: the stored response, nothing changed.
    pub replay: bool,
    /// The turn wrote messages for the outbox (never on a replay): the dispatcher has work.
    pub queued: bool,
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub value: Value,
}

/// The rank of the statuses that end a call (completed, busy, no-answer, failed, canceled).
pub const FINAL_RANK: i32 = 3;

/// Call statuses by how far a call got; a status never replaces a later one.
pub fn status_rank(status: &str) -> Option<i32> {
    Some(match status {
        "queued" | "initiated" => 0,
        "ringing" => 1,
        "in-progress" | "answered" => 2,
        "completed" | "busy" | "no-answer" | "failed" | "canceled" => FINAL_RANK,
        _ => return None,
    })
}

/// The engine step run inside a turn's transaction.
/// It may run more than once in a turn: when a newly issued number collides with a valid one,
/// the turn is stepped again (drawing another number) before anything is written.
pub type TurnFn = Box<dyn FnMut(&CallRecord) -> Result<TurnWrite, String> + Send>;

/// The store: SQLite or PostgreSQL.
#[derive(Clone)]
pub enum Store {
    Sqlite(Arc<SqliteStore>),
    Postgres(PgStore),
}

impl Store {
    /// Opens the database at `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`).
    /// [`Store::migrate`] brings its schema up to date.
    pub async fn open(url: &str, sqlite_synchronous_full: bool) -> Result<Store, StoreError> {
        let store = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Store::Sqlite(Arc::new(SqliteStore::open(path, sqlite_synchronous_full)?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::Postgres(PgStore::connect(url).await?)
        } else {
            // The URL may hold a password: name only its scheme.
            let scheme = url.split(':').next().unwrap_or("");
            return Err(StoreError::Url(format!("'{scheme}:' is neither sqlite: nor postgres://")));
        };
        Ok(store)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies the migrations not yet applied; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.migrate(),
            Store::Postgres(s) => s.migrate().await,
        }
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.ping(),
            Store::Postgres(s) => s.ping().await,
        }
    }

    /// Inserts or updates a patient (by id).
    pub async fn upsert_patient(&self, p: &Patient) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.upsert_patient(p),
            Store::Postgres(s) => s.upsert_patient(p).await,
        }
    }

    /// Inserts or updates each patient (by id) in one transaction: all or nothing. A patient
    /// whose every field is as stored keeps its `updated_at`.
    /// An id given twice counts once, and its last row wins.
    pub async fn import_patients(&self, patients: &[Patient]) -> Result<ImportCount, StoreError> {
        let unique;
        let patients = if has_duplicate_ids(patients) {
            unique = last_of_each_id(patients);
            &unique[..]
        } else {
            patients
        };
        match self {
            Store::Sqlite(s) => {
                let (s, patients) = (s.clone(), patients.to_vec());
                // Thousands of rows: off the async workers, as a turn.
                tokio::task::spawn_blocking(move || s.import_patients(&patients))
                    .await
                    .map_err(|e| StoreError::Turn(e.to_string()))?
            }
            Store::Postgres(s) => s.import_patients(patients).await,
        }
    }

    /// Every patient, by id (byte order).
    pub async fn patients(&self) -> Result<Vec<Patient>, StoreError> {
        match self {
            Store::Sqlite(s) => s.patients(),
            Store::Postgres(s) => s.patients().await,
        }
    }

    pub async fn patient(&self, id: &str) -> Result<Option<Patient>, StoreError> {
        match self {
            Store::Sqlite(s) => s.patient(id),
            Store::Postgres(s) => s.patient(id).await,
        }
    }

    /// The patient with this phone number (E.164), for inbound calls.
    pub async fn patient_by_phone(&self, phone: &str) -> Result<Option<Patient>, StoreError> {
        match self {
            Store::Sqlite(s) => s.patient_by_phone(phone),
            Store::Postgres(s) => s.patient_by_phone(phone).await,
        }
    }

    pub async fn create_job(&self, patient_id: &str, flow: &str) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.create_job(patient_id, flow),
            Store::Postgres(s) => s.create_job(patient_id, flow).await,
        }
    }

    pub async fn job(&self, job_id: i64) -> Result<Option<Job>, StoreError> {
        match self {
            Store::Sqlite(s) => s.job(job_id),
            Store::Postgres(s) => s.job(job_id).await,
        }
    }

    /// One turn of a call, in one transaction. `seq` is the turn's number (0 for the first,
    /// which creates the call from `create`). A turn already taken returns its stored response;
    /// a turn from the future returns the latest one; neither runs `f`.
    pub async fn turn(
        &self,
        sid: &str,
        seq: i64,
        create: Option<NewCall>,
        f: TurnFn,
    ) -> Result<TurnResult, StoreError> {
        match self {
            Store::Sqlite(s) => s.turn(sid, seq, create, f).await,
            Store::Postgres(s) => s.turn(sid, seq, create, f).await,
        }
    }

    pub async fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.call(sid),
            Store::Postgres(s) => s.call(sid).await,
        }
    }

    /// Records a carrier status callback. A status never replaces a later one (`completed`
    /// stays `completed` when `in-progress` arrives late); a call that ends before its flow did
    /// is marked incomplete. Returns whether anything changed.
    pub async fn record_status(&self, sid: &str, status: &str, duration: Option<i64>) -> Result<bool, StoreError> {
        let Some(rank) = status_rank(status) else { return Ok(false) };
        match self {
            Store::Sqlite(s) => s.record_status(sid, status, rank, duration),
            Store::Postgres(s) => s.record_status(sid, status, rank, duration).await,
        }
    }

    pub async fn answers(&self, call_id: i64) -> Result<Vec<Answer>, StoreError> {
        match self {
            Store::Sqlite(s) => s.answers(call_id),
            Store::Postgres(s) => s.answers(call_id).await,
        }
    }

    /// Alert reasons raised for a call.
    pub async fn alerts(&self, call_id: i64) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.alerts(call_id),
            Store::Postgres(s) => s.alerts(call_id).await,
        }
    }

    /// Issues a number outside a call (the manual path), with its message, in one transaction.
    pub async fn issue_number(&self, n: &NewNumber) -> Result<Issued, StoreError> {
        match self {
            Store::Sqlite(s) => s.issue_number(n),
            Store::Postgres(s) => s.issue_number(n).await,
        }
    }

    /// The patient's number that is still valid at `now`.
    pub async fn valid_number(
        &self,
        patient_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<ValidNumber>, StoreError> {
        match self {
            Store::Sqlite(s) => s.valid_number(patient_id, now),
            Store::Postgres(s) => s.valid_number(patient_id, now).await,
        }
    }

    /// Looks a number up by its keyed hash; with `consume`, a valid number is used up (exactly once under concurrent calls). Every attempt goes to the audit log.
    pub async fn verify_number(
        &self,
        hash: &str,
        now: chrono::DateTime<chrono::Utc>,
        actor: &str,
        consume: bool,
    ) -> Result<Verdict, StoreError> {
        match self {
            Store::Sqlite(s) => s.verify_number(hash, now, actor, consume),
            Store::Postgres(s) => s.verify_number(hash, now, actor, consume).await,
        }
    }

    /// Stores an API token's hash under a unique name.
    pub async fn add_token(&self, name: &str, token_hash: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.add_token(name, token_hash),
            Store::Postgres(s) => s.add_token(name, token_hash).await,
        }
    }

    /// The name of the live API token with this hash.
    pub async fn token_name(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.token_name(token_hash),
            Store::Postgres(s) => s.token_name(token_hash).await,
        }
    }

    /// Claims due messages with a lease, and commits before anything is sent.
    pub async fn claim_messages(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_messages(now, lease_until, limit),
            Store::Postgres(s) => s.claim_messages(now, lease_until, limit).await,
        }
    }

    /// Records how a send ended; a failed or dead message alerts the health centre. For
    /// [`SendResult::Undeliverable`], returns the fallback taken, or `None` when the message
    /// had already fallen back (a replayed status callback): nothing is done twice.
    pub async fn finish_message(
        &self,
        message_id: i64,
        result: &SendResult,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Fallback>, StoreError> {
        match self {
            Store::Sqlite(s) => s.finish_message(message_id, result, now),
            Store::Postgres(s) => s.finish_message(message_id, result, now).await,
        }
    }

    /// Pending messages due at `now` whose number expired before they could be sent, for
    /// [`Store::replace_late`].
    pub async fn late_messages(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<LateMessage>, StoreError> {
        match self {
            Store::Sqlite(s) => s.late_messages(now, limit),
            Store::Postgres(s) => s.late_messages(now, limit).await,
        }
    }

    /// Settles a late message in one transaction: with `fresh`, the message is cancelled and
    /// `fresh` (a new number for the same patient and consent, with its message) is issued in
    /// its place, once per number; without, the message is dead. The health centre is alerted.
    /// Returns false when the message was no longer late (settled by another sender, or sent).
    /// `fresh.consent` is ignored: the old number's consent is copied.
    pub async fn replace_late(
        &self,
        message_id: i64,
        fresh: Option<&NewNumber>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.replace_late(message_id, fresh, now),
            Store::Postgres(s) => s.replace_late(message_id, fresh, now).await,
        }
    }

    /// Messages whose sender died mid-send: they may have gone out, so they wait until `resend_at` for a status callback to say so, and are sent again only if none came.
    pub async fn release_expired_leases(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        resend_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.release_expired_leases(now, resend_at),
            Store::Postgres(s) => s.release_expired_leases(now, resend_at).await,
        }
    }

    /// A delivery status from the provider's callback (never replacing `delivered`). Returns
    /// whether a message with this provider id is known.
    pub async fn message_status(
        &self,
        provider_id: &str,
        status: &str,
        error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.message_status(provider_id, status, error_code),
            Store::Postgres(s) => s.message_status(provider_id, status, error_code).await,
        }
    }

    /// (channel, recipient, status, attempts) of a patient's messages, oldest first.
    pub async fn messages(&self, patient_id: &str) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.messages(patient_id),
            Store::Postgres(s) => s.messages(patient_id).await,
        }
    }

    /// (actor, action, detail) of the processing-number audit log, oldest first.
    pub async fn audit_log(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.audit_log(),
            Store::Postgres(s) => s.audit_log().await,
        }
    }

    /// Alert reasons raised for a patient.
    pub async fn patient_alerts(&self, patient_id: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.patient_alerts(patient_id),
            Store::Postgres(s) => s.patient_alerts(patient_id).await,
        }
    }

    /// How many numbers are valid (not used, revoked or expired by status).
    pub async fn valid_count(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.valid_count(),
            Store::Postgres(s) => s.valid_count().await,
        }
    }

    /// The number of turns stored for a call.
    pub async fn event_count(&self, call_id: i64) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.event_count(call_id),
            Store::Postgres(s) => s.event_count(call_id).await,
        }
    }
}

fn has_duplicate_ids(patients: &[Patient]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(patients.len());
    !patients.iter().all(|p| seen.insert(p.patient_id.as_str()))
}

/// The last row of each patient id, in the order of those rows.
fn last_of_each_id(patients: &[Patient]) -> Vec<Patient> {
    let mut seen = std::collections::HashSet::with_capacity(patients.len());
    let mut kept: Vec<Patient> =
        patients.iter().rev().filter(|p| seen.insert(p.patient_id.as_str())).cloned().collect();
    kept.reverse();
    kept
}

/// Splits a value into the answer columns: kind, text, raw, scale.
pub(crate) fn answer_columns(v: &Value) -> (&'static str, String, Option<i64>, Option<i64>) {
    match v {
        Value::Number { raw, scale } => ("number", v.to_string(), Some(*raw), Some(i64::from(*scale))),
        Value::Bool(_) => ("bool", v.to_string(), None, None),
        Value::Text(_) => ("text", v.to_string(), None, None),
    }
}

/// The answer columns back into a value.
pub(crate) fn answer_value(kind: &str, text: String, raw: Option<i64>, scale: Option<i64>) -> Value {
    match (kind, raw, scale) {
        ("number", Some(raw), Some(scale)) => Value::Number { raw, scale: scale as u8 },
        ("bool", _, _) => Value::Bool(text == "true"),
        _ => Value::Text(text),
    }
}
