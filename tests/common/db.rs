//! Fresh databases for the tests: SQLite in a temporary directory, PostgreSQL in a
//! database created for one test and dropped after it (even when the test fails).
//!
//! PostgreSQL is found at `IVR_TEST_PG_URL`, else at `postgres://postgres@127.0.0.1:5432/test`
//! or `postgres://root@127.0.0.1:5432/test`. When none answers, each PostgreSQL test prints
//! `SKIP: …` (the first with where it looked) and passes — unless `CI=true`, where they fail.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use ivr::store::{PgStore, SqliteStore, Store};
use sqlx::{Connection, PgConnection};

const ADMIN_URLS: [&str; 2] = ["postgres://postgres@127.0.0.1:5432/test", "postgres://root@127.0.0.1:5432/test"];

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An empty database of its own for one test; removed when dropped.
pub struct TestDb {
    url: String,
    place: Place,
}

enum Place {
    Sqlite { path: PathBuf, _dir: tempfile::TempDir },
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database, or `None` when PostgreSQL is wanted but not reachable (outside CI).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let path = dir.path().join("ivr.db");
                Some(TestDb { url: format!("sqlite://{}", path.display()), place: Place::Sqlite { path, _dir: dir } })
            }
            Backend::Postgres => {
                let (admin_url, mut admin) = match admin().await {
                    Ok(found) => found,
                    Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
                        panic!("PostgreSQL not reachable at {why} (CI=true: the PostgreSQL tests must run)")
                    }
                    Err(why) => {
                        static TOLD: std::sync::Once = std::sync::Once::new();
                        let mut said = false;
                        TOLD.call_once(|| {
                            super::peers::skip(&format!(
                                "PostgreSQL not reachable at {why}; set IVR_TEST_PG_URL to a server \
                                 whose user may create databases"
                            ));
                            said = true;
                        });
                        if !said {
                            super::peers::skip("PostgreSQL not reachable");
                        }
                        return None;
                    }
                };
                let name = format!("ivr_test_{:016x}", rand::random::<u64>());
                // A linguistic collation, as production databases usually have, even when the
                // test cluster's is C: an ordering that depends on it then differs from SQLite's
                // and fails a test. Servers without ICU (before 15, or built without) get their
                // default.
                let icu = format!("create database {name} template template0 locale_provider icu icu_locale 'en-US'");
                if sqlx::raw_sql(&icu).execute(&mut admin).await.is_err() {
                    sqlx::raw_sql(&format!("create database {name}"))
                        .execute(&mut admin)
                        .await
                        .expect("create database");
                }
                let _ = admin.close().await;
                let mut url = url::Url::parse(&admin_url).expect("a database url");
                url.set_path(&format!("/{name}"));
                Some(TestDb { url: url.to_string(), place: Place::Postgres { admin_url, name } })
            }
        }
    }

    /// The database's URL, for a server to open.
    #[allow(dead_code)] // the server tests use it, the store suite does not
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on this database with its migrations applied, as the server opens it.
    pub async fn open(&self) -> Store {
        let store = Store::open(&self.url, false).await.expect("open the store");
        store.migrate().await.expect("migrate");
        store
    }

    /// The one integer `sql` returns, read straight from the database: for checks over all
    /// rows that the store does not offer.
    #[allow(dead_code)] // not every suite using these helpers needs it
    pub async fn scalar(&self, sql: &str) -> i64 {
        match &self.place {
            Place::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open SQLite");
                conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Place::Postgres { .. } => {
                let mut conn = PgConnection::connect(&self.url).await.expect("connect");
                let v = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.close().await;
                v
            }
        }
    }

    /// Runs statements straight on the database (e.g. to break it on purpose).
    #[allow(dead_code)] // not every suite using these helpers needs it
    pub async fn execute(&self, sql: &str) {
        match &self.place {
            Place::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open SQLite");
                conn.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Place::Postgres { .. } => {
                let mut conn = PgConnection::connect(&self.url).await.expect("connect");
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.close().await;
            }
        }
    }

    /// Which back end this database is.
    #[allow(dead_code)] // not every suite using these helpers needs it
    pub fn is_sqlite(&self) -> bool {
        matches!(self.place, Place::Sqlite { .. })
    }

    /// A store on this database, migrations not applied.
    pub async fn open_unmigrated(&self) -> Store {
        match &self.place {
            Place::Sqlite { path, .. } => {
                Store::new(SqliteStore::open(path.to_str().expect("a UTF-8 path"), false).expect("open SQLite"))
            }
            Place::Postgres { .. } => Store::new(PgStore::connect(&self.url).await.expect("connect")),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Place::Postgres { admin_url, name } = &self.place else { return };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        let sql = format!("drop database if exists {name} with (force)");
        // Drop may run inside the test's runtime (or while a failed test unwinds), where one
        // cannot block on a future: the database is dropped from a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                // `with (force)` ends the connections the test's pool may still hold.
                sqlx::raw_sql(&sql).execute(&mut admin).await?;
                admin.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {name}: {e}");
        }
    }
}

/// A connection to the PostgreSQL server, with its URL; or where it was looked for, and why
/// it did not answer.
async fn admin() -> Result<(String, PgConnection), String> {
    let urls = match std::env::var("IVR_TEST_PG_URL") {
        Ok(url) => vec![url],
        Err(_) => ADMIN_URLS.iter().map(|u| u.to_string()).collect(),
    };
    let mut failures = Vec::new();
    for url in urls {
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
            Ok(Ok(conn)) => return Ok((url, conn)),
            Ok(Err(e)) => failures.push(format!("{url} ({e})")),
            Err(_) => failures.push(format!("{url} (no answer in 5 s)")),
        }
    }
    Err(failures.join(", "))
}

/// Runs a test on a migrated store of a fresh database.
pub async fn with_store<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::new(backend).await else { return };
    test(db.open().await).await;
}

/// Runs a test that opens stores itself (several instances on one database, migrations).
pub async fn with_db<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::new(backend).await else { return };
    test(db).await;
}

/// Generates, for each test, one `#[tokio::test]` per back end: `sqlite::NAME` and
/// `postgres::NAME`. Each line is `with_store: NAME;` or `with_db: NAME;`.
#[macro_export]
macro_rules! on_both_backends {
    ($($runner:ident: $name:ident;)*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::support::$runner(super::support::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::support::$runner(super::support::Backend::Postgres, super::$name).await;
                }
            )*
        }
    };
}
