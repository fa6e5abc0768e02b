//! The ministry's figures on SQLite: one statement per span, through the indexes of migration
//! 0016 (`answers_figures`, `patients_care_start`, `processing_numbers_issued`).

use rusqlite::{Connection, params};

use super::{SqliteStore, sqlite_time};
use crate::store::figures::{APP_ANSWER, CONSENT_ANSWER, Counted, Figures, Span, SpanFigures, YES, assemble};
use crate::store::{Fut, StoreError};

/// Per area: (kind, a, b, c). `new`: patients whose care started in the span. `answers`: of the
/// patients who answered the app question or the consent in the span, those asked, those who
/// use the app, those who consented. Otherwise the origin of numbers issued in the span (a
/// replacement is not a new issue), and how many the app verified, itself or its replacement.
/// The answers and the numbers are read through their time indexes whatever the statistics say
/// (`indexed by`): with `ANALYZE`d statistics of 100,000 patients, SQLite 3.46 preferred to read
/// every answer in patient order (`answers_patient`, to skip a sort) and took seconds; without
/// statistics it may read every patient and look up their numbers.
pub(crate) const FIGURES_SQL: &str = "
    select p.area, 'new', count(*), 0, 0
      from patients p where p.care_start >= ?1 and p.care_start <= ?2
      group by p.area
    union all
    select p.area, 'answers', sum(a.asked), sum(a.app_user), sum(a.consent)
      from (select patient_id, max(name = ?5) as asked, max(name = ?5 and value_text = ?7) as app_user,
                   max(name = ?6 and value_text = ?7) as consent
              from answers indexed by answers_figures
             where name in (?5, ?6) and created_at >= ?3 and created_at < ?4 and patient_id is not null
             group by patient_id) a
      join patients p on p.patient_id = a.patient_id
      group by p.area
    union all
    select p.area, n.consent_channel, count(*),
           sum(n.used_at is not null
               or exists (select 1 from processing_numbers r where r.reissue_of = n.number_id and r.used_at is not null)),
           0
      from processing_numbers n indexed by processing_numbers_issued join patients p on p.patient_id = n.patient_id
     where n.issued_at >= ?3 and n.issued_at < ?4 and n.reissue_of is null
     group by p.area, n.consent_channel";

fn span_figures(c: &Connection, span: &Span) -> Result<SpanFigures, StoreError> {
    let mut st = c.prepare_cached(FIGURES_SQL)?;
    let p = params![
        span.first.to_string(),
        span.last.to_string(),
        sqlite_time(span.from),
        sqlite_time(span.until),
        APP_ANSWER,
        CONSENT_ANSWER,
        YES
    ];
    let rows = st.query_map(p, |r| {
        let area: Option<String> = r.get(0)?;
        let kind: String = r.get(1)?;
        let (a, b, c): (i64, i64, i64) = (r.get(2)?, r.get(3)?, r.get(4)?);
        let counted = match kind.as_str() {
            "new" => Counted::New(a),
            "answers" => Counted::Answers { asked: a, app_users: b, consents: c },
            _ => Counted::Issued { origin: kind, issued: a, verified: b },
        };
        Ok((area, counted))
    })?;
    assemble(*span, rows.collect::<Result<_, _>>()?)
}

impl Figures for SqliteStore {
    fn figures<'a>(&'a self, spans: &'a [Span]) -> Fut<'a, Vec<SpanFigures>> {
        let spans = spans.to_vec();
        self.read(move |c| spans.iter().map(|s| span_figures(c, s)).collect())
    }
}
