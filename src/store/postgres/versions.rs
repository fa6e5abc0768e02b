//! Flow versions on PostgreSQL.

use super::PgStore;
use crate::store::StoreError;
use crate::store::versions::{IN_USE, Row, StoredFlow};

impl PgStore {
    pub(in crate::store) async fn save_flow_version(&self, f: &StoredFlow, catalogs: &str) -> Result<(), StoreError> {
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

    pub(in crate::store) async fn flow_versions_in_use(&self) -> Result<Vec<Row>, StoreError> {
        Ok(sqlx::query_as(IN_USE).fetch_all(&self.pool).await?)
    }
}
