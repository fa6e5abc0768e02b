//! The patients' personal links on SQLite.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::followups::raise_in;
use super::patients::{PATIENT_COLUMNS, patient, patient_row};
use super::{SqliteStore, parse_sqlite_time, sqlite_time};
use crate::store::{
    Compose, Fut, IDENTITY_CHECK, Link, LinkToken, Links, NewAlert, NewLink, Patient, REPLACED, SentLink, StoreError,
};
use crate::types::PatientId;

const LINK_COLUMNS: &str = "link_id, patient_id, created_at, expires_at, revoked_at, revoked_by";

fn link_row(r: &Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        link_id: r.get(0)?,
        patient_id: r.get(1)?,
        created_at: parse_sqlite_time(&r.get::<_, String>(2)?),
        expires_at: parse_sqlite_time(&r.get::<_, String>(3)?),
        revoked_at: r.get::<_, Option<String>>(4)?.map(|t| parse_sqlite_time(&t)),
        revoked_by: r.get(5)?,
    })
}

fn create(
    conn: &mut Connection,
    patient_id: &PatientId,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<NewLink, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let known: bool =
        tx.query_row("select exists(select 1 from patients where patient_id = ?1)", [patient_id], |r| r.get(0))?;
    if !known {
        return Err(StoreError::UnknownPatient(patient_id.to_string()));
    }
    revoke_in(&tx, patient_id, REPLACED, now)?;
    let token = LinkToken::generate();
    let link = tx
        .prepare_cached(&format!(
            "insert into report_links (patient_id, token_hash, created_at, expires_at) values (?1, ?2, ?3, ?4)
             returning {LINK_COLUMNS}"
        ))?
        .query_row(params![patient_id, token.hash(), sqlite_time(now), sqlite_time(expires_at)], link_row)?;
    tx.commit()?;
    Ok(NewLink { link, token })
}

fn send(
    conn: &mut Connection,
    patient_id: &PatientId,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    compose: Compose,
) -> Result<SentLink, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let p = patient(&tx, patient_id.as_str())?.ok_or_else(|| StoreError::UnknownPatient(patient_id.to_string()))?;
    revoke_in(&tx, patient_id, REPLACED, now)?;
    let token = LinkToken::generate();
    let m = compose(&p, &token).map_err(StoreError::Turn)?;
    let link = tx
        .prepare_cached(&format!(
            "insert into report_links (patient_id, token_hash, created_at, expires_at) values (?1, ?2, ?3, ?4)
             returning {LINK_COLUMNS}"
        ))?
        .query_row(params![patient_id, token.hash(), sqlite_time(now), sqlite_time(expires_at)], link_row)?;
    tx.prepare_cached(
        "insert into outbox (patient_id, channel, recipient, body_sealed, next_attempt_at, link_id)
         values (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![patient_id, m.channel, m.recipient, m.body_sealed, sqlite_time(now), link.link_id])?;
    tx.commit()?;
    Ok(SentLink { link, channel: m.channel })
}

fn revoke_in(tx: &Connection, patient_id: &PatientId, by: &str, now: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached(
            "update report_links set revoked_at = ?2, revoked_by = ?3
             where patient_id = ?1 and revoked_at is null and expires_at > ?2",
        )?
        .execute(params![patient_id, sqlite_time(now), by])?)
}

fn identity_miss(
    conn: &mut Connection,
    link_id: i64,
    day: NaiveDate,
    tries: u32,
    alert: &NewAlert,
    now: DateTime<Utc>,
) -> Result<Option<u32>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let t = sqlite_time(now);
    let counted: Option<(String, u32)> = tx
        .prepare_cached(
            "update report_links
                set identity_misses = case when identity_missed_on = ?2 then identity_misses + 1 else 1 end,
                    identity_missed_on = ?2
              where link_id = ?1 and revoked_at is null and expires_at > ?3
             returning patient_id, identity_misses",
        )?
        .query_row(params![link_id, day.to_string(), t], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((patient_id, misses)) = counted else { return Ok(None) };
    let left = tries.saturating_sub(misses);
    if left == 0 {
        tx.prepare_cached("update report_links set revoked_at = ?2, revoked_by = ?3 where link_id = ?1")?
            .execute(params![link_id, t, IDENTITY_CHECK])?;
        raise_in(&tx, Some(&patient_id), None, alert, now)?;
    }
    tx.commit()?;
    Ok(Some(left))
}

fn find(conn: &mut Connection, hash: &str) -> Result<Option<Link>, StoreError> {
    let mut st = conn.prepare_cached(&format!("select {LINK_COLUMNS} from report_links where token_hash = ?1"))?;
    Ok(st.query_row([hash], link_row).optional()?)
}

fn latest(conn: &mut Connection, patient_id: &PatientId) -> Result<Option<Link>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "select {LINK_COLUMNS} from report_links where patient_id = ?1 order by created_at desc, link_id desc limit 1"
    ))?;
    Ok(st.query_row([patient_id], link_row).optional()?)
}

fn live_patients(conn: &mut Connection, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<PatientId>, StoreError> {
    let mut st = conn.prepare_cached(
        "select distinct patient_id from report_links
         where revoked_at is null and created_at < ?2 and expires_at > ?1 order by patient_id",
    )?;
    let rows = st.query_map([sqlite_time(from), sqlite_time(to)], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn web_reports(
    conn: &mut Connection,
    patient_id: &PatientId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(conn.prepare_cached(
        "select count(*) from calls where patient_id = ?1 and direction = 'web' and created_at >= ?2 and created_at < ?3",
    )?
    .query_row(params![patient_id, sqlite_time(from), sqlite_time(to)], |r| r.get(0))?)
}

impl Links for SqliteStore {
    fn create<'a>(
        &'a self,
        patient_id: &'a PatientId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Fut<'a, NewLink> {
        let patient_id = patient_id.clone();
        self.write(move |c| create(c, &patient_id, expires_at, now))
    }

    fn send<'a>(
        &'a self,
        patient_id: &'a PatientId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        compose: Compose,
    ) -> Fut<'a, SentLink> {
        let patient_id = patient_id.clone();
        self.write(move |c| send(c, &patient_id, expires_at, now, compose))
    }

    fn find<'a>(&'a self, token: &'a LinkToken) -> Fut<'a, Option<Link>> {
        let hash = token.hash();
        self.read(move |c| find(c, &hash))
    }

    fn latest<'a>(&'a self, patient_id: &'a PatientId) -> Fut<'a, Option<Link>> {
        let patient_id = patient_id.clone();
        self.read(move |c| latest(c, &patient_id))
    }

    fn revoke<'a>(&'a self, patient_id: &'a PatientId, by: &'a str, now: DateTime<Utc>) -> Fut<'a, usize> {
        let (patient_id, by) = (patient_id.clone(), by.to_owned());
        self.write(move |c| revoke_in(c, &patient_id, &by, now))
    }

    fn live_patients(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<PatientId>> {
        self.read(move |c| live_patients(c, from, to))
    }

    fn identity_miss<'a>(
        &'a self,
        link_id: i64,
        day: NaiveDate,
        tries: u32,
        alert: &'a NewAlert,
        now: DateTime<Utc>,
    ) -> Fut<'a, Option<u32>> {
        let alert = alert.clone();
        self.write(move |c| identity_miss(c, link_id, day, tries, &alert, now))
    }

    fn unlinked_in_care(&self, today: NaiveDate) -> Fut<'_, Vec<Patient>> {
        self.read(move |c| {
            // Care dates are `YYYY-MM-DD` text.
            let mut st = c.prepare_cached(&format!(
                "select {PATIENT_COLUMNS} from patients p
                  where p.care_start <= ?1 and (p.care_end is null or p.care_end >= ?1)
                    and not exists (select 1 from report_links l where l.patient_id = p.patient_id)
                  order by p.patient_id"
            ))?;
            Ok(st.query_map([today.to_string()], patient_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn web_reports<'a>(&'a self, patient_id: &'a PatientId, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'a, i64> {
        let patient_id = patient_id.clone();
        self.read(move |c| web_reports(c, &patient_id, from, to))
    }
}
