//! Flow versions kept with the calls: the texts a version was loaded from, stored when a call
//! starts on it, so a server restarted after the files changed can rebuild the version and let
//! the calls in progress finish on it.

use chrono::{DateTime, Utc};

use super::{Fut, StoreError};

/// A stored flow version and how much it was used (the flows page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionUse {
    pub flow: String,
    pub version: String,
    /// When the first call on it began (the version was stored then).
    pub first_used: DateTime<Utc>,
    /// Calls run on it.
    pub calls: i64,
    /// When the last call on it began.
    pub last_call: Option<DateTime<Utc>>,
}

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

/// The flow versions' operations (`store.flows()`).
pub trait Flows {
    /// Stores a flow version unless it is stored already.
    fn save<'a>(&'a self, f: &'a StoredFlow) -> Fut<'a, ()>;
    /// The versions that calls not yet ended started on.
    fn in_use(&self) -> Fut<'_, Vec<StoredFlow>>;
    /// Every stored version with its calls, by flow, the newest version first.
    fn usage(&self) -> Fut<'_, Vec<VersionUse>>;
}

/// Every stored version with its calls (counted through `calls_flow_version`).
pub(super) const USAGE: &str = "select v.flow, v.version, v.created_at, count(c.call_id), max(c.created_at)
     from flow_versions v left join calls c on c.flow_version = v.version
     group by v.flow, v.version, v.created_at
     order by v.flow, v.created_at desc, v.version";

/// The catalogues as stored: one JSON text.
pub(super) fn catalogs_json(f: &StoredFlow) -> Result<String, StoreError> {
    Ok(serde_json::to_string(&f.catalogs)?)
}

/// A stored row back into a version.
pub(super) fn from_row((version, flow, source_name, source, catalogs): Row) -> Result<StoredFlow, StoreError> {
    Ok(StoredFlow { version, flow, source_name, source, catalogs: serde_json::from_str(&catalogs)? })
}

/// (version, flow, source_name, source, catalogs as JSON).
pub(super) type Row = (String, String, String, String, String);

/// The versions that calls not yet ended started on.
pub(super) const IN_USE: &str = "select version, flow, source_name, source, catalogs from flow_versions
     where version in (select distinct flow_version from calls where not ended and status_rank < 3)
     order by version";
