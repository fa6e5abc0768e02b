//! Flow versions on PostgreSQL.

use super::PgStore;
use crate::store::StoreError;
use crate::store::versions::{IN_USE, Row, StoredFlow, USAGE, VersionUse};
use crate::store::versions::{catalogs_json, from_row};
use crate::store::{Flows, Fut};

/// Stores a version once (a second save does nothing).
pub(super) async fn save_flow_version(
    conn: impl sqlx::PgExecutor<'_>,
    f: &StoredFlow,
    catalogs: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into flow_versions (version, flow, source_name, source, catalogs) values ($1, $2, $3, $4, $5)
             on conflict (version) do nothing",
    )
    .bind(&f.version)
    .bind(&f.flow)
    .bind(&f.source_name)
    .bind(&f.source)
    .bind(catalogs)
    .execute(conn)
    .await?;
    Ok(())
}

impl PgStore {
    pub(super) async fn flow_versions_in_use(&self) -> Result<Vec<Row>, StoreError> {
        Ok(sqlx::query_as(IN_USE).fetch_all(&self.pool).await?)
    }
}

impl Flows for PgStore {
    fn save<'a>(&'a self, f: &'a StoredFlow) -> Fut<'a, ()> {
        Box::pin(async move { save_flow_version(&self.pool, f, &catalogs_json(f)?).await })
    }

    fn in_use(&self) -> Fut<'_, Vec<StoredFlow>> {
        Box::pin(async move { self.flow_versions_in_use().await?.into_iter().map(from_row).collect() })
    }

    fn usage(&self) -> Fut<'_, Vec<VersionUse>> {
        Box::pin(async move {
            type UseRow = (String, String, chrono::DateTime<chrono::Utc>, i64, Option<chrono::DateTime<chrono::Utc>>);
            let rows: Vec<UseRow> = sqlx::query_as(USAGE).fetch_all(&self.pool).await?;
            Ok(rows
                .into_iter()
                .map(|(flow, version, first_used, calls, last_call)| VersionUse {
                    flow,
                    version,
                    first_used,
                    calls,
                    last_call,
                })
                .collect())
        })
    }
}
