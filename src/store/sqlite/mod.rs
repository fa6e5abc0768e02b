//! The SQLite back end, in WAL mode, statements prepared once and cached per connection.
//! SQLite calls block, so none runs on a tokio worker: every write goes to one thread that owns
//! the write connection ([`writer`]: turns committed in groups, other writes between them),
//! every read to a small pool of threads with read-only connections of their own ([`readers`];
//! on an in-memory database, which one connection holds, reads go to the writer too). Each
//! operation is a closure over a connection, answered over a oneshot channel.
//!
//! Per record, one file holds the SQL as plain functions of a connection (`patients.rs`,
//! `calls.rs`, …) and the record's trait, each method one line sending its function to a
//! thread.

mod calls;
mod campaign;
pub(crate) mod figures;
mod followups;
mod links;
mod numbers;
mod outbox;
mod patients;
mod readers;
mod trends;
mod users;
mod versions;
mod writer;

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{Backend, DialerLock, Fut, StoreError};
use readers::Readers;
use writer::Writer;

/// Numbered migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "calls", include_str!("../../../migrations/sqlite/0001_calls.sql")),
    (2, "processing_numbers", include_str!("../../../migrations/sqlite/0002_processing_numbers.sql")),
    (3, "number_lookup", include_str!("../../../migrations/sqlite/0003_number_lookup.sql")),
    (4, "roster", include_str!("../../../migrations/sqlite/0004_roster.sql")),
    (5, "campaigns", include_str!("../../../migrations/sqlite/0005_campaigns.sql")),
    (6, "delivery_fallback", include_str!("../../../migrations/sqlite/0006_delivery_fallback.sql")),
    (7, "flow_versions", include_str!("../../../migrations/sqlite/0007_flow_versions.sql")),
    (8, "token_scopes", include_str!("../../../migrations/sqlite/0008_token_scopes.sql")),
    (9, "personal_data", include_str!("../../../migrations/sqlite/0009_personal_data.sql")),
    (10, "outbox_claims", include_str!("../../../migrations/sqlite/0010_outbox_claims.sql")),
    (11, "staff", include_str!("../../../migrations/sqlite/0011_staff.sql")),
    (12, "followups", include_str!("../../../migrations/sqlite/0012_followups.sql")),
    (13, "urgent_notices", include_str!("../../../migrations/sqlite/0013_urgent_notices.sql")),
    (14, "staff_pages", include_str!("../../../migrations/sqlite/0014_staff_pages.sql")),
    (15, "alerts_by_call", include_str!("../../../migrations/sqlite/0015_alerts_by_call.sql")),
    (16, "figures", include_str!("../../../migrations/sqlite/0016_figures.sql")),
    (17, "day_figures", include_str!("../../../migrations/sqlite/0017_day_figures.sql")),
    (18, "trends", include_str!("../../../migrations/sqlite/0018_trends.sql")),
    (19, "report_links", include_str!("../../../migrations/sqlite/0019_report_links.sql")),
    (20, "checkins", include_str!("../../../migrations/sqlite/0020_checkins.sql")),
    (21, "day_areas", include_str!("../../../migrations/sqlite/0021_day_areas.sql")),
    (22, "last_call", include_str!("../../../migrations/sqlite/0022_last_call.sql")),
    (23, "link_identity", include_str!("../../../migrations/sqlite/0023_link_identity.sql")),
    (24, "figures_milestones", include_str!("../../../migrations/sqlite/0024_figures_milestones.sql")),
];

pub(super) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

pub struct SqliteStore {
    /// The thread that writes: turns, every turn waiting in one transaction, and the other
    /// writes between them. Dropping it lets the thread finish what is queued and joins it.
    writer: Writer,
    /// The threads that read a database file; `None` for `:memory:` (the writer reads).
    readers: Option<Readers>,
    /// Checkpoints the WAL of a database file; `None` for `:memory:`.
    _checkpointer: Option<Checkpointer>,
    /// The dialer's lock file beside the database; `None` for `:memory:`.
    lock_path: Option<std::path::PathBuf>,
}

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// WAL frames after which the store's own connection checkpoints after a commit (SQLite's
/// default is 1,000). Under a steady stream of turns the checkpointer never finds the WAL
/// fully copied (a turn commits while it copies), so the WAL could not start over; this bound
/// lets it, about every 1,500 turns, at the cost of one short checkpoint on the turn path.
const WAL_AUTOCHECKPOINT: i64 = 10_000;

/// A thread with a connection of its own that checkpoints the WAL (`PASSIVE`: it never
/// blocks a turn) every [`CHECKPOINT_EVERY`]. The copy and its two `fsync`s were the turn's
/// largest cost when SQLite ran them inside a turn's commit every 1,000 frames (about every
/// 150 turns), with the store's lock held. Stops when the store is dropped.
struct Checkpointer {
    stop: std::sync::Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &str) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let stop = std::sync::Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    stopped = wake.wait_timeout(stopped, CHECKPOINT_EVERY).unwrap_or_else(|e| e.into_inner()).0;
                    if let Err(e) = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "sqlite checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|e| StoreError::Turn(format!("checkpoint thread: {e}")))?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating) the database file; `:memory:` for a private in-memory database.
    pub fn open(path: &str, synchronous_full: bool) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        // NORMAL in WAL mode: a commit survives a crash of the process; FULL also a power loss.
        conn.pragma_update(None, "synchronous", if synchronous_full { "full" } else { "normal" })?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        conn.set_prepared_statement_cache_capacity(64);
        let in_memory = path.is_empty() || path == ":memory:" || path.starts_with("file::memory:");
        let (checkpointer, readers) = if in_memory {
            (None, None)
        } else {
            conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
            (Some(Checkpointer::start(path)?), Some(Readers::start(path)?))
        };
        let writer = Writer::start(conn)?;
        Ok(SqliteStore { writer, readers, _checkpointer: checkpointer, lock_path: super::leader::lock_path(path) })
    }

    /// Runs `f` on the writer's thread, after the work queued before it.
    pub(super) fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Fut<'static, T> {
        let (reply, answer) = oneshot::channel();
        let sent = self.writer.send(Box::new(move |c: &mut Connection| {
            let _ = reply.send(f(c));
        }));
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| stopped())?
        })
    }

    /// Runs `f` on a reader's thread (the writer's, in memory). It sees every write committed
    /// before it was called.
    pub(super) fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Fut<'static, T> {
        let Some(readers) = &self.readers else { return self.write(f) };
        let (reply, answer) = oneshot::channel();
        let sent = readers.send(Box::new(move |c: &mut Connection| {
            let _ = reply.send(f(c));
        }));
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| stopped())?
        })
    }
}

fn stopped() -> StoreError {
    StoreError::Turn("the SQLite threads have stopped".into())
}

impl Backend for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&self) -> Fut<'_, usize> {
        self.write(migrate)
    }

    fn ping(&self) -> Fut<'_, ()> {
        self.read(|c| Ok(c.query_row("select 1", [], |_| Ok(()))?))
    }

    fn dialer_lock(&self) -> DialerLock {
        DialerLock::sqlite(self.lock_path.clone())
    }
}

/// Applies the migrations not yet applied; returns how many ran.
fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    {
        conn.execute_batch(
            "create table if not exists schema_migrations (version integer primary key, name text not null, applied_at text not null)",
        )?;
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let done: bool =
                tx.query_row("select exists(select 1 from schema_migrations where version = ?1)", [version], |r| {
                    r.get(0)
                })?;
            if !done {
                tx.execute_batch(sql)?;
                tx.execute(
                    &format!("insert into schema_migrations (version, name, applied_at) values (?1, ?2, {NOW})"),
                    params![version, name],
                )?;
                applied += 1;
            }
            tx.commit()?;
        }
        Ok(applied)
    }
}

/// Timestamps as SQLite stores them: ISO 8601 in UTC with milliseconds, which sort as text.
pub(super) fn sqlite_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(super) fn parse_sqlite_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Patients;

    /// On a runtime of one thread, a read answers while the writer is held by another
    /// operation, and the write queued behind it answers once it is released: nothing waits
    /// for SQLite on the runtime's thread.
    #[tokio::test(flavor = "current_thread")]
    async fn a_read_answers_while_the_writer_is_busy_and_no_worker_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("ivr.db").to_str().unwrap(), false).unwrap();
        Backend::migrate(&store).await.unwrap();
        let (started, running) = oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = store.write(move |_| {
            let _ = started.send(());
            let _ = held.recv();
            Ok(())
        });
        let p1 = crate::store::Patient {
            patient_id: "p1".parse().unwrap(),
            name: "Sato".into(),
            phone: "+819012345678".parse().unwrap(),
            birth_md: None,
            language: "ja-JP".into(),
            email: None,
            area: None,
            care_start: None,
            care_end: None,
            call_slot: None,
        };
        let queued = store.write({
            let p1 = p1.clone();
            move |c| patients::upsert_patient(c, &p1)
        });
        let busy = tokio::spawn(busy);
        let queued = tokio::spawn(queued);
        running.await.unwrap();
        assert_eq!(store.get("p1").await.unwrap(), None, "a reader answers while the writer is busy");
        Backend::ping(&store).await.unwrap();
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        assert_eq!(store.get("p1").await.unwrap(), Some(p1), "a read sees the writes committed before it");
    }

    /// An in-memory database has one connection: its reads are queued on the writer.
    #[tokio::test(flavor = "current_thread")]
    async fn an_in_memory_database_reads_on_its_writer() {
        let store = SqliteStore::open(":memory:", false).unwrap();
        assert_eq!(Backend::migrate(&store).await.unwrap(), MIGRATIONS.len());
        assert_eq!(store.all().await.unwrap(), vec![]);
    }
}
