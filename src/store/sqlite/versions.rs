//! Flow versions on SQLite.

use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::versions::{IN_USE, Row, StoredFlow};

impl SqliteStore {
    pub(in crate::store) fn save_flow_version(&self, f: &StoredFlow, catalogs: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "insert into flow_versions (version, flow, source_name, source, catalogs) values (?1, ?2, ?3, ?4, ?5)
                 on conflict (version) do nothing",
            )?
            .execute(params![f.version, f.flow, f.source_name, f.source, catalogs])?;
        Ok(())
    }

    pub(in crate::store) fn flow_versions_in_use(&self) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(IN_USE)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
