//! The PostgreSQL back end (sqlx): the same operations as SQLite; a turn locks its call row
//! with `select … for update`, so instances serving the same call take turns.
//!
//! Every turn runs at READ COMMITTED (forced at connection start-up, whatever the server's
//! default): a turn that waited for another's lock must see, in its next statement, the row and
//! the event that turn committed, and must not fail with a serialization error instead.
//!
//! Orderings name the "C" collation: byte order, as SQLite's default (BINARY) and `str` compare,
//! whatever collation the database was created with (`en_US.UTF-8` puts `p1` before `P2`).
//!
//! Per record, one file implements the record's trait with its SQL (`patients.rs`, `calls.rs`,
//! …), each method an `async` block on the pool; the statements shared inside a transaction
//! (a turn's writes, a number's insert, the audit log) are functions of a connection.

mod calls;
mod campaign;
pub(crate) mod figures;
mod followups;
mod links;
mod numbers;
mod outbox;
mod patients;
mod trends;
mod users;
mod versions;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

use super::{Backend, DialerLock, Fut, StoreError};

/// Numbered migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "calls", include_str!("../../../migrations/postgres/0001_calls.sql")),
    (2, "processing_numbers", include_str!("../../../migrations/postgres/0002_processing_numbers.sql")),
    (3, "number_lookup", include_str!("../../../migrations/postgres/0003_number_lookup.sql")),
    (4, "roster", include_str!("../../../migrations/postgres/0004_roster.sql")),
    (5, "campaigns", include_str!("../../../migrations/postgres/0005_campaigns.sql")),
    (6, "delivery_fallback", include_str!("../../../migrations/postgres/0006_delivery_fallback.sql")),
    (7, "flow_versions", include_str!("../../../migrations/postgres/0007_flow_versions.sql")),
    (8, "token_scopes", include_str!("../../../migrations/postgres/0008_token_scopes.sql")),
    (9, "personal_data", include_str!("../../../migrations/postgres/0009_personal_data.sql")),
    (10, "outbox_claims", include_str!("../../../migrations/postgres/0010_outbox_claims.sql")),
    (11, "staff", include_str!("../../../migrations/postgres/0011_staff.sql")),
    (12, "followups", include_str!("../../../migrations/postgres/0012_followups.sql")),
    (13, "urgent_notices", include_str!("../../../migrations/postgres/0013_urgent_notices.sql")),
    (14, "staff_pages", include_str!("../../../migrations/postgres/0014_staff_pages.sql")),
    (15, "alerts_by_call", include_str!("../../../migrations/postgres/0015_alerts_by_call.sql")),
    (16, "figures", include_str!("../../../migrations/postgres/0016_figures.sql")),
    (17, "day_figures", include_str!("../../../migrations/postgres/0017_day_figures.sql")),
    (18, "trends", include_str!("../../../migrations/postgres/0018_trends.sql")),
    (19, "report_links", include_str!("../../../migrations/postgres/0019_report_links.sql")),
    (20, "checkins", include_str!("../../../migrations/postgres/0020_checkins.sql")),
    (21, "day_areas", include_str!("../../../migrations/postgres/0021_day_areas.sql")),
    (22, "last_call", include_str!("../../../migrations/postgres/0022_last_call.sql")),
    (23, "link_identity", include_str!("../../../migrations/postgres/0023_link_identity.sql")),
    (24, "figures_milestones", include_str!("../../../migrations/postgres/0024_figures_milestones.sql")),
];

/// The advisory lock that instances starting at the same time take in turn to migrate (a key
/// unlikely to collide with other users of advisory locks in the same database).
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"ivr-migr");

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    /// Connects (one connection now, up to 16 as needed).
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        // The backslash keeps the space inside the value of a start-up option.
        let options = PgConnectOptions::from_str(url)?.options([("default_transaction_isolation", "read\\ committed")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A webhook waiting longer than this for a connection gets an apology rather than
            // hanging until the carrier gives up.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }

    async fn migrate(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            // Held until commit: a second instance starting now waits here, then finds the
            // migration recorded.
            sqlx::query("select pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
            // Checked rather than `create table if not exists`, which logs a notice every time.
            let table: bool =
                sqlx::query_scalar("select to_regclass('schema_migrations') is not null").fetch_one(&mut *tx).await?;
            if !table {
                sqlx::query(
                    "create table schema_migrations (version bigint primary key, name text not null,
                       applied_at timestamptz not null default now())",
                )
                .execute(&mut *tx)
                .await?;
            }
            let done: bool = sqlx::query_scalar("select exists(select 1 from schema_migrations where version = $1)")
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
            if !done {
                // Several statements: the simple query protocol, no parameters. Called through
                // `Executor` (a boxed `Send` future): `RawSql::execute`, generic over the executor,
                // makes `migrate`'s future fail the `Send` check that `tokio::spawn` needs.
                tx.execute(sqlx::raw_sql(sql)).await?;
                sqlx::query("insert into schema_migrations (version, name, applied_at) values ($1, $2, now())")
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                applied += 1;
            }
            tx.commit().await?;
        }
        Ok(applied)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The SQLSTATE and constraint of a failed statement, when the database refused it.
pub(super) fn violation(e: &sqlx::Error) -> Option<(String, Option<String>)> {
    match e {
        sqlx::Error::Database(db) => Some((db.code()?.into_owned(), db.constraint().map(str::to_owned))),
        _ => None,
    }
}

impl Backend for PgStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn migrate(&self) -> Fut<'_, usize> {
        Box::pin(self.migrate())
    }

    fn ping(&self) -> Fut<'_, ()> {
        Box::pin(self.ping())
    }

    fn dialer_lock(&self) -> DialerLock {
        DialerLock::postgres(&self.pool.connect_options())
    }
}
