//! Flow versions kept with the calls: the texts a version was loaded from, stored when a call
//! starts on it, so a server restarted after the files changed can rebuild the version and let
//! the calls in progress finish on it.

use super::{Store, StoreError};

/// A flow version as stored: the flow file's name and text, and each catalogue's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFlow {
    pub version: String,
    pub flow: String,
    pub source_name: String,
    pub source: String,
    /// (language, file name, text).
    pub catalogs: Vec<(String, String, String)>,
}

impl Store {
    /// Stores a flow version unless it is stored already.
    pub async fn save_flow_version(&self, f: &StoredFlow) -> Result<(), StoreError> {
        let catalogs = serde_json::to_string(&f.catalogs)?;
        match self {
            Store::Sqlite(s) => s.save_flow_version(f, &catalogs),
            Store::Postgres(s) => s.save_flow_version(f, &catalogs).await,
        }
    }

    /// The versions that calls not yet ended started on.
    pub async fn flow_versions_in_use(&self) -> Result<Vec<StoredFlow>, StoreError> {
        let rows = match self {
            Store::Sqlite(s) => s.flow_versions_in_use()?,
            Store::Postgres(s) => s.flow_versions_in_use().await?,
        };
        rows.into_iter()
            .map(|(version, flow, source_name, source, catalogs)| {
                Ok(StoredFlow { version, flow, source_name, source, catalogs: serde_json::from_str(&catalogs)? })
            })
            .collect()
    }
}

/// (version, flow, source_name, source, catalogs as JSON).
pub(super) type Row = (String, String, String, String, String);

/// The versions that calls not yet ended started on.
pub(super) const IN_USE: &str = "select version, flow, source_name, source, catalogs from flow_versions
     where version in (select distinct flow_version from calls where not ended and status_rank < 3)
     order by version";
