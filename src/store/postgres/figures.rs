//! The ministry's figures on PostgreSQL: one statement per span, through the indexes of
//! migration 0016 (`answers_figures`, `patients_care_start`, `processing_numbers_issued`).

use sqlx::Row;

use super::PgStore;
use crate::store::figures::{APP_ANSWER, CONSENT_ANSWER, Counted, Figures, Span, SpanFigures, YES, assemble};
use crate::store::{Fut, StoreError, fut};

/// As on SQLite (`sqlite::figures::FIGURES_SQL`): per area, (kind, a, b, c).
pub(crate) const FIGURES_SQL: &str = "
    select p.area, 'new' as kind, count(*) as a, 0::bigint as b, 0::bigint as c
      from patients p where p.care_start >= $1 and p.care_start <= $2
      group by p.area
    union all
    select p.area, 'answers', count(*) filter (where a.asked), count(*) filter (where a.app_user),
           count(*) filter (where a.consent)
      from (select patient_id, bool_or(name = $5) as asked, bool_or(name = $5 and value_text = $7) as app_user,
                   bool_or(name = $6 and value_text = $7) as consent
              from answers
             where name in ($5, $6) and created_at >= $3 and created_at < $4 and patient_id is not null
             group by patient_id) a
      join patients p on p.patient_id = a.patient_id
      group by p.area
    union all
    select p.area, n.consent_channel, count(*),
           count(*) filter (where n.used_at is not null
               or exists (select 1 from processing_numbers r where r.reissue_of = n.number_id and r.used_at is not null)),
           0
      from processing_numbers n join patients p on p.patient_id = n.patient_id
     where n.issued_at >= $3 and n.issued_at < $4 and n.reissue_of is null
     group by p.area, n.consent_channel";

impl PgStore {
    async fn span_figures(&self, span: &Span) -> Result<SpanFigures, StoreError> {
        let rows = sqlx::query(FIGURES_SQL)
            .bind(span.first.to_string())
            .bind(span.last.to_string())
            .bind(span.from)
            .bind(span.until)
            .bind(APP_ANSWER)
            .bind(CONSENT_ANSWER)
            .bind(YES)
            .fetch_all(&self.pool)
            .await?;
        let mut counted = Vec::with_capacity(rows.len());
        for r in rows {
            let area: Option<String> = r.try_get(0)?;
            let kind: String = r.try_get(1)?;
            let (a, b, c): (i64, i64, i64) = (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
            counted.push((
                area,
                match kind.as_str() {
                    "new" => Counted::New(a),
                    "answers" => Counted::Answers { asked: a, app_users: b, consents: c },
                    _ => Counted::Issued { origin: kind, issued: a, verified: b },
                },
            ));
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
