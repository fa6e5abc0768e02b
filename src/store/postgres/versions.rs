//! Flow versions on PostgreSQL.

use super::PgStore;
use crate::store::StoreError;
use crate::store::versions::{IN_USE, Row, StoredFlow};
use crate::store::versions::{catalogs_json, from_row};
use crate::store::{Flows, Fut};

impl PgStore {
    pub(super) async fn save_flow_version(&self, f: &StoredFlow, catalogs: &str) -> Result<(), StoreError> {
        sqlx::query(
            "insert into flow_versions (version, flow, source_name, source, catalogs) values ($1, $2, $3, $4, $5)
             on conflict (version) do nothing",
        )
        .bind(&f.version)
        .bind(&f.flow)
        .bind(&f.source_name)
        .bind(&f.source)
        .bind(catalogs)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn flow_versions_in_use(&self) -> Result<Vec<Row>, StoreError> {
        Ok(sqlx::query_as(IN_USE).fetch_all(&self.pool).await?)
    }
}

impl Flows for PgStore {
    fn save<'a>(&'a self, f: &'a StoredFlow) -> Fut<'a, ()> {
        Box::pin(async move { self.save_flow_version(f, &catalogs_json(f)?).await })
    }

    fn in_use(&self) -> Fut<'_, Vec<StoredFlow>> {
        Box::pin(async move { self.flow_versions_in_use().await?.into_iter().map(from_row).collect() })
    }
}
