//! Flow versions on SQLite.

use rusqlite::{Connection, params};

use super::SqliteStore;
use super::parse_sqlite_time;
use crate::store::StoreError;
use crate::store::versions::{IN_USE, Row, StoredFlow, USAGE, VersionUse};
use crate::store::versions::{catalogs_json, from_row};
use crate::store::{Flows, Fut};

pub(super) fn save_flow_version(conn: &Connection, f: &StoredFlow, catalogs: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "insert into flow_versions (version, flow, source_name, source, catalogs) values (?1, ?2, ?3, ?4, ?5)
             on conflict (version) do nothing",
    )?
    .execute(params![f.version, f.flow, f.source_name, f.source, catalogs])?;
    Ok(())
}

pub(super) fn flow_versions_in_use(conn: &mut Connection) -> Result<Vec<Row>, StoreError> {
    let mut st = conn.prepare_cached(IN_USE)?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Flows for SqliteStore {
    fn save<'a>(&'a self, f: &'a StoredFlow) -> Fut<'a, ()> {
        let catalogs = match catalogs_json(f) {
            Ok(c) => c,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let f = f.clone();
        self.write(move |c| save_flow_version(c, &f, &catalogs))
    }

    fn in_use(&self) -> Fut<'_, Vec<StoredFlow>> {
        self.read(|c| flow_versions_in_use(c)?.into_iter().map(from_row).collect())
    }

    fn usage(&self) -> Fut<'_, Vec<VersionUse>> {
        self.read(|c| {
            let mut st = c.prepare_cached(USAGE)?;
            let rows = st.query_map([], |r| {
                Ok(VersionUse {
                    flow: r.get(0)?,
                    version: r.get(1)?,
                    first_used: parse_sqlite_time(&r.get::<_, String>(2)?),
                    calls: r.get(3)?,
                    last_call: r.get::<_, Option<String>>(4)?.as_deref().map(parse_sqlite_time),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
