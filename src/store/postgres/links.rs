//! The patients' personal links on PostgreSQL.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PgStore;
use super::followups::raise_in;
use super::patients::{PATIENT_COLUMNS, patient_row};
use crate::store::{
    Compose, Fut, IDENTITY_CHECK, Link, LinkToken, Links, NewAlert, NewLink, Patient, REPLACED, SentLink, StoreError,
    fut,
};
use crate::types::PatientId;

const LINK_COLUMNS: &str = "link_id, patient_id, created_at, expires_at, revoked_at, revoked_by";

fn link_row(r: &PgRow) -> Result<Link, sqlx::Error> {
    Ok(Link {
        link_id: r.try_get(0)?,
        patient_id: r.try_get(1)?,
        created_at: r.try_get(2)?,
        expires_at: r.try_get(3)?,
        revoked_at: r.try_get(4)?,
        revoked_by: r.try_get(5)?,
    })
}

async fn revoke_in(
    tx: &mut PgConnection,
    patient_id: &PatientId,
    by: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let r = sqlx::query(
        "update report_links set revoked_at = $2, revoked_by = $3
         where patient_id = $1 and revoked_at is null and expires_at > $2",
    )
    .bind(patient_id)
    .bind(now)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected() as usize)
}

impl Links for PgStore {
    fn create<'a>(
        &'a self,
        patient_id: &'a PatientId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Fut<'a, NewLink> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            // Locks the patient's row: two links made at once for one patient take turns, and
            // the second revokes the first.
            let known: Option<String> =
                sqlx::query_scalar("select patient_id from patients where patient_id = $1 for update")
                    .bind(patient_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                return Err(StoreError::UnknownPatient(patient_id.to_string()));
            }
            revoke_in(&mut tx, patient_id, REPLACED, now).await?;
            let token = LinkToken::generate();
            let row = sqlx::query(&format!(
                "insert into report_links (patient_id, token_hash, created_at, expires_at) values ($1, $2, $3, $4)
                 returning {LINK_COLUMNS}"
            ))
            .bind(patient_id)
            .bind(token.hash())
            .bind(now)
            .bind(expires_at)
            .fetch_one(&mut *tx)
            .await?;
            let link = link_row(&row)?;
            tx.commit().await?;
            Ok(NewLink { link, token })
        })
    }

    fn send<'a>(
        &'a self,
        patient_id: &'a PatientId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        compose: Compose,
    ) -> Fut<'a, SentLink> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(&format!("select {PATIENT_COLUMNS} from patients where patient_id = $1 for update"))
                .bind(patient_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { return Err(StoreError::UnknownPatient(patient_id.to_string())) };
            let p = patient_row(&row)?;
            revoke_in(&mut tx, patient_id, REPLACED, now).await?;
            let token = LinkToken::generate();
            let m = compose(&p, &token).map_err(StoreError::Turn)?;
            let row = sqlx::query(&format!(
                "insert into report_links (patient_id, token_hash, created_at, expires_at) values ($1, $2, $3, $4)
                 returning {LINK_COLUMNS}"
            ))
            .bind(patient_id)
            .bind(token.hash())
            .bind(now)
            .bind(expires_at)
            .fetch_one(&mut *tx)
            .await?;
            let link = link_row(&row)?;
            sqlx::query(
                "insert into outbox (patient_id, channel, recipient, body_sealed, next_attempt_at, link_id)
                 values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(patient_id)
            .bind(m.channel)
            .bind(&m.recipient)
            .bind(&m.body_sealed)
            .bind(now)
            .bind(link.link_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(SentLink { link, channel: m.channel })
        })
    }

    fn find<'a>(&'a self, token: &'a LinkToken) -> Fut<'a, Option<Link>> {
        fut(async move {
            let row = sqlx::query(&format!("select {LINK_COLUMNS} from report_links where token_hash = $1"))
                .bind(token.hash())
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.as_ref().map(link_row).transpose()?)
        })
    }

    fn latest<'a>(&'a self, patient_id: &'a PatientId) -> Fut<'a, Option<Link>> {
        fut(async move {
            let row = sqlx::query(&format!(
                "select {LINK_COLUMNS} from report_links where patient_id = $1
                 order by created_at desc, link_id desc limit 1"
            ))
            .bind(patient_id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(link_row).transpose()?)
        })
    }

    fn revoke<'a>(&'a self, patient_id: &'a PatientId, by: &'a str, now: DateTime<Utc>) -> Fut<'a, usize> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            revoke_in(&mut conn, patient_id, by, now).await
        })
    }

    fn live_patients(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<PatientId>> {
        fut(async move {
            Ok(sqlx::query_scalar(
                "select distinct patient_id collate \"C\" from report_links
                 where revoked_at is null and created_at < $2 and expires_at > $1 order by 1",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn identity_miss<'a>(
        &'a self,
        link_id: i64,
        day: NaiveDate,
        tries: u32,
        alert: &'a NewAlert,
        now: DateTime<Utc>,
    ) -> Fut<'a, Option<u32>> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let counted: Option<(String, i32)> = sqlx::query_as(
                "update report_links
                    set identity_misses = case when identity_missed_on = $2 then identity_misses + 1 else 1 end,
                        identity_missed_on = $2
                  where link_id = $1 and revoked_at is null and expires_at > $3
                 returning patient_id, identity_misses",
            )
            .bind(link_id)
            .bind(day)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((patient_id, misses)) = counted else { return Ok(None) };
            let left = tries.saturating_sub(u32::try_from(misses).unwrap_or(u32::MAX));
            if left == 0 {
                sqlx::query("update report_links set revoked_at = $2, revoked_by = $3 where link_id = $1")
                    .bind(link_id)
                    .bind(now)
                    .bind(IDENTITY_CHECK)
                    .execute(&mut *tx)
                    .await?;
                raise_in(&mut tx, Some(&patient_id), None, alert, now).await?;
            }
            tx.commit().await?;
            Ok(Some(left))
        })
    }

    fn unlinked_in_care(&self, today: NaiveDate) -> Fut<'_, Vec<Patient>> {
        fut(async move {
            // Care dates are `YYYY-MM-DD` text.
            let rows = sqlx::query(&format!(
                "select {PATIENT_COLUMNS} from patients p
                  where p.care_start <= $1 and (p.care_end is null or p.care_end >= $1)
                    and not exists (select 1 from report_links l where l.patient_id = p.patient_id)
                  order by p.patient_id collate \"C\""
            ))
            .bind(today.to_string())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(patient_row).collect::<Result<_, _>>()?)
        })
    }

    fn web_reports<'a>(&'a self, patient_id: &'a PatientId, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'a, i64> {
        fut(async move {
            Ok(sqlx::query_scalar(
                "select count(*) from calls where patient_id = $1 and direction = 'web' and created_at >= $2
                   and created_at < $3",
            )
            .bind(patient_id)
            .bind(from)
            .bind(to)
            .fetch_one(&self.pool)
            .await?)
        })
    }
}
