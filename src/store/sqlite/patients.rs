//! Patients on SQLite.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::{NOW, SqliteStore};
use crate::store::patients::{date_text, text_date};
use crate::store::{Anonymised, Fut, ImportCount, Patient, Patients, StoreError, unique_ids};

pub(super) fn patient_row(r: &Row<'_>) -> rusqlite::Result<Patient> {
    let date = |i: usize| {
        text_date(r.get(i)?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    };
    Ok(Patient {
        patient_id: r.get(0)?,
        name: r.get(1)?,
        phone: r.get(2)?,
        birth_md: r.get(3)?,
        language: r.get(4)?,
        email: r.get(5)?,
        area: r.get(6)?,
        care_start: date(7)?,
        care_end: date(8)?,
        call_slot: r.get(9)?,
    })
}

pub(super) const PATIENT_COLUMNS: &str =
    "patient_id, name, phone, birth_md, language, email, area, care_start, care_end, call_slot";

/// Inserts a patient, or updates every field of the one with its id.
fn upsert_sql(only_if_changed: bool) -> String {
    // `is not` compares nulls as values: a field going from null to a value is a change.
    let condition = if only_if_changed {
        "where name is not excluded.name or phone is not excluded.phone or birth_md is not excluded.birth_md
           or language is not excluded.language or email is not excluded.email or area is not excluded.area
           or care_start is not excluded.care_start or care_end is not excluded.care_end
           or call_slot is not excluded.call_slot"
    } else {
        ""
    };
    format!(
        "insert into patients ({PATIENT_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         on conflict (patient_id) do update set name = excluded.name, phone = excluded.phone,
           birth_md = excluded.birth_md, language = excluded.language, email = excluded.email,
           area = excluded.area, care_start = excluded.care_start, care_end = excluded.care_end,
           call_slot = excluded.call_slot, updated_at = {NOW}
         {condition}"
    )
}

/// The care dates as stored, for [`patient_params`].
fn care_text(p: &Patient) -> [Option<String>; 2] {
    [date_text(p.care_start), date_text(p.care_end)]
}

fn patient_params<'a>(p: &'a Patient, care: &'a [Option<String>; 2]) -> [&'a dyn rusqlite::ToSql; 10] {
    [&p.patient_id, &p.name, &p.phone, &p.birth_md, &p.language, &p.email, &p.area, &care[0], &care[1], &p.call_slot]
}

pub(super) fn upsert_patient(conn: &mut Connection, p: &Patient) -> Result<(), StoreError> {
    conn.prepare_cached(&upsert_sql(false))?.execute(&patient_params(p, &care_text(p))[..])?;
    Ok(())
}

pub(super) fn import_patients(conn: &mut Connection, patients: &[Patient]) -> Result<ImportCount, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let count = |tx: &Transaction<'_>| -> rusqlite::Result<i64> {
        tx.query_row("select count(*) from patients", [], |r| r.get(0))
    };
    let before = count(&tx)?;
    let mut changed = 0;
    {
        // One statement, prepared once; an unchanged patient matches the conflict but not
        // the `where`, and counts no change.
        let mut st = tx.prepare_cached(&upsert_sql(true))?;
        for p in patients {
            changed += st.execute(&patient_params(p, &care_text(p))[..])?;
        }
    }
    let inserted = usize::try_from(count(&tx)? - before).unwrap_or(0);
    tx.commit()?;
    Ok(ImportCount { inserted, updated: changed - inserted, unchanged: patients.len() - changed })
}

pub(super) fn patients(conn: &mut Connection) -> Result<Vec<Patient>, StoreError> {
    let mut st = conn.prepare_cached(&format!("select {PATIENT_COLUMNS} from patients order by patient_id"))?;
    let rows = st.query_map([], patient_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(super) fn patient(conn: &Connection, id: &str) -> Result<Option<Patient>, StoreError> {
    let mut st = conn.prepare_cached(&format!("select {PATIENT_COLUMNS} from patients where patient_id = ?1"))?;
    Ok(st.query_row([id], patient_row).optional()?)
}

pub(super) fn patient_by_phone(conn: &Connection, phone: &str) -> Result<Option<Patient>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "select {PATIENT_COLUMNS} from patients where phone = ?1 order by patient_id limit 1"
    ))?;
    Ok(st.query_row([phone], patient_row).optional()?)
}

/// Patients whose care ended before `?1`.
const ENDED: &str = "select patient_id from patients where care_end is not null and care_end < ?1";

/// Retention ([`Patients::anonymise_ended_care`]): written, then rolled back for a dry run.
fn anonymise_ended_care(
    conn: &mut Connection,
    before: chrono::NaiveDate,
    dry_run: bool,
) -> Result<Anonymised, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let cut = before.to_string();
    let calls = format!("select call_id from calls where anonymised_at is null and patient_id in ({ENDED})");
    let patients: i64 = tx.query_row(
        &format!(
            "select count(*) from ({ENDED}) e where exists
               (select 1 from calls c where c.patient_id = e.patient_id and c.anonymised_at is null)
             or exists (select 1 from outbox o where o.patient_id = e.patient_id
               and o.status not in ('pending', 'sending') and (o.recipient <> '' or o.body_sealed <> ''))
             or exists (select 1 from processing_numbers n where n.patient_id = e.patient_id and n.sealed is not null)"
        ),
        [&cut],
        |r| r.get(0),
    )?;
    let answers = tx.execute(
        &format!(
            "delete from answers where call_id in ({calls}) and kind = 'text' and value_text <> ''
               and value_text not glob '*[^0-9]*'"
        ),
        [&cut],
    )?;
    tx.execute(&format!("update call_events set response = '' where call_id in ({calls})"), [&cut])?;
    let calls = tx.execute(
        &format!(
            "update calls set state = json_set(state, '$.vars', json('{{}}')), anonymised_at = {NOW}, updated_at = {NOW}
             where call_id in ({calls})"
        ),
        [&cut],
    )?;
    let messages = tx.execute(
        &format!(
            "update outbox set recipient = '', body_sealed = '', updated_at = {NOW}
             where patient_id in ({ENDED}) and status not in ('pending', 'sending')
               and (recipient <> '' or body_sealed <> '')"
        ),
        [&cut],
    )?;
    let numbers = tx.execute(
        &format!("update processing_numbers set sealed = null where patient_id in ({ENDED}) and sealed is not null"),
        [&cut],
    )?;
    if dry_run {
        tx.rollback()?;
    } else {
        tx.commit()?;
    }
    Ok(Anonymised { patients: patients as usize, calls, answers, messages, numbers })
}

impl Patients for SqliteStore {
    fn upsert<'a>(&'a self, p: &'a Patient) -> Fut<'a, ()> {
        let p = p.clone();
        self.write(move |c| upsert_patient(c, &p))
    }

    fn import<'a>(&'a self, patients: &'a [Patient]) -> Fut<'a, ImportCount> {
        let patients = unique_ids(patients).into_owned();
        self.write(move |c| import_patients(c, &patients))
    }

    fn all(&self) -> Fut<'_, Vec<Patient>> {
        self.read(patients)
    }

    fn page(&self, limit: i64, offset: i64) -> Fut<'_, Vec<Patient>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "select {PATIENT_COLUMNS} from patients order by patient_id limit ?1 offset ?2"
            ))?;
            let rows = st.query_map([limit, offset], patient_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> Fut<'a, Option<Patient>> {
        let id = id.to_owned();
        self.read(move |c| patient(c, &id))
    }

    fn by_phone<'a>(&'a self, phone: &'a str) -> Fut<'a, Option<Patient>> {
        let phone = phone.to_owned();
        self.read(move |c| patient_by_phone(c, &phone))
    }

    fn anonymise_ended_care(&self, care_ended_before: chrono::NaiveDate, dry_run: bool) -> Fut<'_, Anonymised> {
        self.write(move |c| anonymise_ended_care(c, care_ended_before, dry_run))
    }
}
