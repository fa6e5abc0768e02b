//! The ministry's figures on SQLite: one statement per span, each part a range of one index
//! that holds what it counts: `patients_care_start`, the milestones of migration 0024
//! (`patients_app_asked`, `patients_app_user`, `patients_consent`) and
//! `processing_numbers_issued` (with the area a number was issued in, migration 0021).

use rusqlite::{Connection, params};

use super::{SqliteStore, sqlite_time};
use crate::store::figures::{Counted, Figures, Span, SpanFigures, assemble};
use crate::store::{Fut, StoreError};

/// Per area: (kind, a, b, c). `new`: patients whose care started in the span. `asked`,
/// `app_user`, `consent`: patients first asked the app question, first saying they use the app,
/// first consenting in the span. Otherwise the origin of numbers issued in the span (a
/// replacement is not a new issue), and how many the app verified, itself or its replacement.
/// The numbers are read through their time index whatever the statistics say (`indexed by`):
/// without statistics SQLite may read every patient and look up their numbers.
pub(crate) const FIGURES_SQL: &str = "
    select p.area, 'new', count(*), 0, 0
      from patients p where p.care_start >= ?1 and p.care_start <= ?2
      group by p.area
    union all
    select p.area, 'asked', count(*), 0, 0
      from patients p indexed by patients_app_asked where p.app_asked_at >= ?3 and p.app_asked_at < ?4
      group by p.area
    union all
    select p.area, 'app_user', 0, count(*), 0
      from patients p indexed by patients_app_user where p.app_user_at >= ?3 and p.app_user_at < ?4
      group by p.area
    union all
    select p.area, 'consent', 0, 0, count(*)
      from patients p indexed by patients_consent where p.consent_at >= ?3 and p.consent_at < ?4
      group by p.area
    union all
    select n.area, n.consent_channel, count(*),
           sum(n.used_at is not null
               or exists (select 1 from processing_numbers r where r.reissue_of = n.number_id and r.used_at is not null)),
           0
      from processing_numbers n indexed by processing_numbers_issued
     where n.issued_at >= ?3 and n.issued_at < ?4 and n.reissue_of is null
     group by n.area, n.consent_channel";

fn span_figures(c: &Connection, span: &Span) -> Result<SpanFigures, StoreError> {
    let mut st = c.prepare_cached(FIGURES_SQL)?;
    let p = params![span.first.to_string(), span.last.to_string(), sqlite_time(span.from), sqlite_time(span.until)];
    let rows = st.query_map(p, |r| {
        let area: Option<String> = r.get(0)?;
        let kind: String = r.get(1)?;
        let (a, b, c): (i64, i64, i64) = (r.get(2)?, r.get(3)?, r.get(4)?);
        Ok((area, Counted::of(kind, a, b, c)))
    })?;
    assemble(*span, rows.collect::<Result<_, _>>()?)
}

impl Figures for SqliteStore {
    fn figures<'a>(&'a self, spans: &'a [Span]) -> Fut<'a, Vec<SpanFigures>> {
        let spans = spans.to_vec();
        self.read(move |c| spans.iter().map(|s| span_figures(c, s)).collect())
    }
}
