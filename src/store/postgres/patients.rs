//! Patients on PostgreSQL.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::store::patients::{date_text, text_date};
use crate::store::{Anonymised, ImportCount, Patient, StoreError};
use crate::store::{Fut, Patients, fut, unique_ids};

pub(super) const PATIENT_COLUMNS: &str =
    "patient_id, name, phone, birth_md, language, email, area, care_start, care_end, call_slot";

/// The patient columns a roster import sets (every one but the timestamps).
const PATIENT_UPDATE: &str = "name = excluded.name, phone = excluded.phone, birth_md = excluded.birth_md,
    language = excluded.language, email = excluded.email, area = excluded.area,
    care_start = excluded.care_start, care_end = excluded.care_end, call_slot = excluded.call_slot";

/// Patients written per statement of an import: ten arrays of this many values each.
const IMPORT_BATCH: usize = 5000;

impl PgStore {
    /// Each batch is one statement over arrays (`unnest`): a row comes back for each patient
    /// inserted or changed, `xmax = 0` for the inserted ones; an unchanged patient matches the
    /// conflict but not the `where`, and comes back not at all. Patient ids are unique here
    /// (the store's caller keeps the last of each).
    pub(super) async fn import_patients(&self, patients: &[Patient]) -> Result<ImportCount, StoreError> {
        let sql = format!(
            "insert into patients ({PATIENT_COLUMNS})
             select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::text[])
             on conflict (patient_id) do update set {PATIENT_UPDATE}, updated_at = now()
             where (patients.name, patients.phone, patients.birth_md, patients.language, patients.email,
                    patients.area, patients.care_start, patients.care_end, patients.call_slot)
                   is distinct from
                   (excluded.name, excluded.phone, excluded.birth_md, excluded.language, excluded.email,
                    excluded.area, excluded.care_start, excluded.care_end, excluded.call_slot)
             returning xmax = 0"
        );
        let mut count = ImportCount::default();
        let mut tx = self.pool.begin().await?;
        for batch in patients.chunks(IMPORT_BATCH) {
            let column = |f: fn(&Patient) -> Option<&String>| batch.iter().map(f).collect::<Vec<_>>();
            let date = |f: fn(&Patient) -> Option<chrono::NaiveDate>| {
                batch.iter().map(|p| date_text(f(p))).collect::<Vec<_>>()
            };
            let inserted: Vec<bool> = sqlx::query_scalar(&sql)
                .bind(batch.iter().map(|p| &p.patient_id).collect::<Vec<_>>())
                .bind(column(|p| Some(&p.name)))
                .bind(batch.iter().map(|p| &p.phone).collect::<Vec<_>>())
                .bind(column(|p| p.birth_md.as_ref()))
                .bind(column(|p| Some(&p.language)))
                .bind(column(|p| p.email.as_ref()))
                .bind(column(|p| p.area.as_ref()))
                .bind(date(|p| p.care_start))
                .bind(date(|p| p.care_end))
                .bind(column(|p| p.call_slot.as_ref()))
                .fetch_all(&mut *tx)
                .await?;
            let new = inserted.iter().filter(|i| **i).count();
            count.inserted += new;
            count.updated += inserted.len() - new;
            count.unchanged += batch.len() - inserted.len();
        }
        tx.commit().await?;
        Ok(count)
    }
}

pub(super) fn patient_row(r: &PgRow) -> Result<Patient, sqlx::Error> {
    patient_row_at(r, 0)
}

/// A patient from the row's columns `at..at + 10`, in [`PATIENT_COLUMNS`]' order.
pub(super) fn patient_row_at(r: &PgRow, at: usize) -> Result<Patient, sqlx::Error> {
    let date = |i: usize| text_date(r.try_get(at + i)?).map_err(|e| sqlx::Error::Decode(Box::new(e)));
    Ok(Patient {
        patient_id: r.try_get(at)?,
        name: r.try_get(at + 1)?,
        phone: r.try_get(at + 2)?,
        birth_md: r.try_get(at + 3)?,
        language: r.try_get(at + 4)?,
        email: r.try_get(at + 5)?,
        area: r.try_get(at + 6)?,
        care_start: date(7)?,
        care_end: date(8)?,
        call_slot: r.try_get(at + 9)?,
    })
}

impl Patients for PgStore {
    fn upsert<'a>(&'a self, p: &'a Patient) -> Fut<'a, ()> {
        fut(async move {
            sqlx::query(&format!(
                "insert into patients ({PATIENT_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 on conflict (patient_id) do update set {PATIENT_UPDATE}, updated_at = now()"
            ))
            .bind(&p.patient_id)
            .bind(&p.name)
            .bind(&p.phone)
            .bind(&p.birth_md)
            .bind(&p.language)
            .bind(&p.email)
            .bind(&p.area)
            .bind(date_text(p.care_start))
            .bind(date_text(p.care_end))
            .bind(&p.call_slot)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn import<'a>(&'a self, patients: &'a [Patient]) -> Fut<'a, ImportCount> {
        Box::pin(async move { self.import_patients(&unique_ids(patients)).await })
    }

    fn all(&self) -> Fut<'_, Vec<Patient>> {
        fut(async move {
            let rows =
                sqlx::query(&format!("select {PATIENT_COLUMNS} from patients order by patient_id collate \"C\""))
                    .fetch_all(&self.pool)
                    .await?;
            Ok(rows.iter().map(patient_row).collect::<Result<_, _>>()?)
        })
    }

    fn page(&self, limit: i64, offset: i64) -> Fut<'_, Vec<Patient>> {
        fut(async move {
            let rows = sqlx::query(&format!(
                "select {PATIENT_COLUMNS} from patients order by patient_id collate \"C\" limit $1 offset $2"
            ))
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(patient_row).collect::<Result<_, _>>()?)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> Fut<'a, Option<Patient>> {
        fut(async move {
            let row = sqlx::query(&format!("select {PATIENT_COLUMNS} from patients where patient_id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|r| patient_row(&r)).transpose()?)
        })
    }

    fn by_phone<'a>(&'a self, phone: &'a str) -> Fut<'a, Option<Patient>> {
        fut(async move {
            let row = sqlx::query(&format!(
                "select {PATIENT_COLUMNS} from patients where phone = $1 order by patient_id collate \"C\" limit 1"
            ))
            .bind(phone)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(|r| patient_row(&r)).transpose()?)
        })
    }

    /// Retention: written, then rolled back for a dry run.
    fn anonymise_ended_care(&self, care_ended_before: chrono::NaiveDate, dry_run: bool) -> Fut<'_, Anonymised> {
        fut(async move {
            const ENDED: &str = "select patient_id from patients where care_end is not null and care_end < $1";
            let cut = care_ended_before.to_string();
            let calls = format!("select call_id from calls where anonymised_at is null and patient_id in ({ENDED})");
            let mut tx = self.pool.begin().await?;
            let patients: i64 = sqlx::query_scalar(&format!(
                "select count(*) from ({ENDED}) e where exists
                   (select 1 from calls c where c.patient_id = e.patient_id and c.anonymised_at is null)
                 or exists (select 1 from outbox o where o.patient_id = e.patient_id
                   and o.status not in ('pending', 'sending') and (o.recipient <> '' or o.body_sealed <> ''))
                 or exists (select 1 from processing_numbers n where n.patient_id = e.patient_id and n.sealed is not null)"
            ))
            .bind(&cut)
            .fetch_one(&mut *tx)
            .await?;
            let answers = sqlx::query(&format!(
                "delete from answers where call_id in ({calls}) and kind = 'text' and value_text ~ '^[0-9]+$'"
            ))
            .bind(&cut)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(&format!("update call_events set response = '' where call_id in ({calls})"))
                .bind(&cut)
                .execute(&mut *tx)
                .await?;
            let calls = sqlx::query(&format!(
                "update calls set state = jsonb_set(state::jsonb, '{{vars}}', '{{}}'::jsonb)::text,
                   anonymised_at = now(), updated_at = now()
                 where call_id in ({calls})"
            ))
            .bind(&cut)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let messages = sqlx::query(&format!(
                "update outbox set recipient = '', body_sealed = '', updated_at = now()
                 where patient_id in ({ENDED}) and status not in ('pending', 'sending')
                   and (recipient <> '' or body_sealed <> '')"
            ))
            .bind(&cut)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let numbers = sqlx::query(&format!(
                "update processing_numbers set sealed = null where patient_id in ({ENDED}) and sealed is not null"
            ))
            .bind(&cut)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if dry_run {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            let n = |x: u64| x as usize;
            Ok(Anonymised {
                patients: patients as usize,
                calls: n(calls),
                answers: n(answers),
                messages: n(messages),
                numbers: n(numbers),
            })
        })
    }
}
