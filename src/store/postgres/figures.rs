//! The ministry's figures on PostgreSQL: one statement per span, each part a range of one
//! index: `patients_care_start`, the milestones of migration 0024 (`patients_app_asked`,
//! `patients_app_user`, `patients_consent`) and `processing_numbers_issued`.

use sqlx::Row;

use super::PgStore;
use crate::store::figures::{Counted, Figures, Span, SpanFigures, assemble};
use crate::store::{Fut, StoreError, fut};

/// As on SQLite (`sqlite::figures::FIGURES_SQL`): per area, (kind, a, b, c).
pub(crate) const FIGURES_SQL: &str = "
    select p.area, 'new' as kind, count(*) as a, 0::bigint as b, 0::bigint as c
      from patients p where p.care_start >= $1 and p.care_start <= $2
      group by p.area
    union all
    select p.area, 'asked', count(*), 0, 0 from patients p where p.app_asked_at >= $3 and p.app_asked_at < $4
      group by p.area
    union all
    select p.area, 'app_user', 0, count(*), 0 from patients p where p.app_user_at >= $3 and p.app_user_at < $4
      group by p.area
    union all
    select p.area, 'consent', 0, 0, count(*) from patients p where p.consent_at >= $3 and p.consent_at < $4
      group by p.area
    union all
    select n.area, n.consent_channel, count(*),
           count(*) filter (where n.used_at is not null
               or exists (select 1 from processing_numbers r where r.reissue_of = n.number_id and r.used_at is not null)),
           0
      from processing_numbers n
     where n.issued_at >= $3 and n.issued_at < $4 and n.reissue_of is null
     group by n.area, n.consent_channel";

impl PgStore {
    async fn span_figures(&self, span: &Span) -> Result<SpanFigures, StoreError> {
        let rows = sqlx::query(FIGURES_SQL)
            .bind(span.first.to_string())
            .bind(span.last.to_string())
            .bind(span.from)
            .bind(span.until)
            .fetch_all(&self.pool)
            .await?;
        let mut counted = Vec::with_capacity(rows.len());
        for r in rows {
            let area: Option<String> = r.try_get(0)?;
            let kind: String = r.try_get(1)?;
            let (a, b, c): (i64, i64, i64) = (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
            counted.push((area, Counted::of(kind, a, b, c)));
        }
        assemble(*span, counted)
    }
}

impl Figures for PgStore {
    fn figures<'a>(&'a self, spans: &'a [Span]) -> Fut<'a, Vec<SpanFigures>> {
        fut(async move {
            let mut out = Vec::with_capacity(spans.len());
            for s in spans {
                out.push(self.span_figures(s).await?);
            }
            Ok(out)
        })
    }
}
