//! The dialer lock: one instance at a time dials for the carrier account, so its
//! calls-per-second limit holds for the account however many instances share the database.
//!
//! - PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a connection
//!   of its own, outside the pool. A process that dies drops its connection, and the database
//!   releases the lock with it; the connection asks the server to probe a silent client
//!   (keepalives, `tcp_user_timeout`), so a leader cut off from the database loses the lock
//!   within about ten seconds.
//! - SQLite: an exclusive transaction held open on a lock file beside the database
//!   (`ivr.db-dialer`, which stays empty). The operating system releases the file lock when
//!   the process ends, however it ends. An in-memory database belongs to one process: that
//!   process always holds the lock.

use std::path::PathBuf;

use rusqlite::{Connection, ErrorCode};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};

use super::StoreError;

/// The advisory lock of the dialer (a key unlikely to collide with other users of advisory
/// locks in the same database).
const DIALER_LOCK: i64 = i64::from_be_bytes(*b"ivr-dial");

/// How the database probes the lock connection of a client that went silent: the lock is
/// released about 10 s after the client stopped answering.
const KEEPALIVE: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "4"),
    ("tcp_keepalives_interval", "2"),
    ("tcp_keepalives_count", "3"),
    ("tcp_user_timeout", "10000"),
];

/// The lock a dialer holds while it dials; see the module's documentation.
pub struct DialerLock {
    inner: Inner,
}

enum Inner {
    /// An in-memory SQLite database: this process is the only one.
    Alone,
    /// The lock file, and the connection holding its exclusive transaction while held.
    Sqlite { path: PathBuf, conn: Option<Connection> },
    /// The lock's own connection, and whether the lock is held on it.
    Postgres { options: Box<PgConnectOptions>, conn: Option<PgConnection>, held: bool },
}

/// The lock file of a SQLite database at `path` (as given to `Connection::open`), or `None` for
/// an in-memory database.
pub(super) fn lock_path(path: &str) -> Option<PathBuf> {
    if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") || path.contains("mode=memory") {
        return None;
    }
    let file = path.strip_prefix("file:").map_or(path, |p| p.split('?').next().unwrap_or(p));
    Some(PathBuf::from(format!("{file}-dialer")))
}

impl DialerLock {
    /// The lock of a SQLite database whose lock file is at `path` (`None`: in memory).
    pub(super) fn sqlite(path: Option<PathBuf>) -> DialerLock {
        let inner = match path {
            Some(path) => Inner::Sqlite { path, conn: None },
            None => Inner::Alone,
        };
        DialerLock { inner }
    }

    /// The lock of a PostgreSQL database, on a connection of its own made with `options`.
    pub(super) fn postgres(options: &PgConnectOptions) -> DialerLock {
        DialerLock {
            inner: Inner::Postgres { options: Box::new(options.clone().options(KEEPALIVE)), conn: None, held: false },
        }
    }
}

impl DialerLock {
    /// Takes the lock if it is free, or checks that it is still held: `Ok(true)` while this
    /// instance holds it. After an error the lock's connection is dropped (and the lock with
    /// it); the next call connects again.
    pub async fn hold(&mut self) -> Result<bool, StoreError> {
        match &mut self.inner {
            Inner::Alone => Ok(true),
            // Nothing takes a file lock from a living process.
            Inner::Sqlite { conn: Some(_), .. } => Ok(true),
            Inner::Sqlite { path, conn } => {
                let path = path.clone();
                let taken = tokio::task::spawn_blocking(move || take_file_lock(&path))
                    .await
                    .map_err(|e| StoreError::Turn(format!("dialer lock: {e}")))??;
                let held = taken.is_some();
                *conn = taken;
                Ok(held)
            }
            Inner::Postgres { options, conn, held } => {
                if conn.is_none() {
                    *held = false;
                    *conn = Some(PgConnection::connect_with(options).await?);
                }
                let c = conn.as_mut().expect("connected above");
                let answer = if *held {
                    sqlx::query("select 1").execute(&mut *c).await.map(|_| true)
                } else {
                    sqlx::query_scalar("select pg_try_advisory_lock($1)").bind(DIALER_LOCK).fetch_one(&mut *c).await
                };
                match answer {
                    Ok(now_held) => {
                        *held = now_held;
                        Ok(now_held)
                    }
                    Err(e) => {
                        self.reset();
                        Err(e.into())
                    }
                }
            }
        }
    }

    /// Lets the lock go at once, dropping its connection (a check that did not answer in time
    /// leaves the connection in an unknown state).
    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::Alone => {}
            Inner::Sqlite { conn, .. } => *conn = None,
            Inner::Postgres { conn, held, .. } => {
                *conn = None;
                *held = false;
            }
        }
    }

    /// Releases the lock and closes its connection cleanly (at shutdown).
    pub async fn release(mut self) {
        if let Inner::Postgres { conn, held, .. } = &mut self.inner {
            if let Some(mut c) = conn.take() {
                // Unlocked first: closing ends the session and its lock too, but the server
                // notices that only after this returns, and another instance may ask at once.
                if *held {
                    let _ = sqlx::query("select pg_advisory_unlock($1)").bind(DIALER_LOCK).execute(&mut c).await;
                }
                let _ = c.close().await;
            }
        }
        self.reset();
    }
}

/// Opens the lock file and takes its exclusive lock without waiting: the connection holding
/// it, or `None` when another process holds it.
fn take_file_lock(path: &std::path::Path) -> Result<Option<Connection>, StoreError> {
    let conn = Connection::open(path)?;
    // Never wait for the lock: the caller tries again later.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    // Nothing is ever written: no journal file beside the lock file.
    let taken = conn.pragma_update(None, "journal_mode", "memory").and_then(|()| conn.execute_batch("begin exclusive"));
    match taken {
        Ok(()) => Ok(Some(conn)),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::DatabaseBusy => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_database() {
        assert_eq!(lock_path("/var/lib/ivr/ivr.db"), Some(PathBuf::from("/var/lib/ivr/ivr.db-dialer")));
        assert_eq!(lock_path("file:/data/ivr.db?mode=rwc"), Some(PathBuf::from("/data/ivr.db-dialer")));
        assert_eq!(lock_path(":memory:"), None);
        assert_eq!(lock_path(""), None);
        assert_eq!(lock_path("file::memory:?cache=shared"), None);
    }

    #[tokio::test]
    async fn one_process_holds_the_file_lock_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ivr.db-dialer");
        let mut a = DialerLock { inner: Inner::Sqlite { path: path.clone(), conn: None } };
        let mut b = DialerLock { inner: Inner::Sqlite { path, conn: None } };
        assert!(a.hold().await.unwrap());
        assert!(!b.hold().await.unwrap());
        assert!(a.hold().await.unwrap(), "still held");
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, ["ivr.db-dialer"], "an empty lock file, no journal");
        assert_eq!(std::fs::metadata(dir.path().join("ivr.db-dialer")).unwrap().len(), 0);
        a.release().await;
        assert!(b.hold().await.unwrap(), "taken once let go");
    }
}
