//! Processing numbers, API tokens and the audit log on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::{PgStore, violation};
use crate::store::{ApiToken, Revoke, TokenInfo, stored_scopes};
use crate::store::{FoundNumber, Issued, NewNumber, NumberClash, NumberStory, StoreError, ValidNumber, Verdict, fut};
use crate::store::{Fut, Numbers};
use crate::store::{clash_error, consent_actor, consent_columns, judge, unread_alert};
use crate::types::{PatientId, Scopes};

/// The unique index that keeps one replacement per expired number.
const REISSUE_INDEX: &str = "processing_numbers_reissue";

/// The unique index that keeps one valid number per hash.
const VALID_HASH_INDEX: &str = "processing_numbers_valid";
/// The unique index that keeps one number per consent in a call.
const CONSENT_INDEX: &str = "processing_numbers_consent";

/// The patient's number that is still valid at `now`.
pub(super) async fn valid_number(
    conn: impl sqlx::PgExecutor<'_>,
    patient_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<ValidNumber>, StoreError> {
    let row: Option<(i64, DateTime<Utc>, Option<String>, bool)> = sqlx::query_as(
        "select number_id, expires_at, sealed, read_pending from processing_numbers
         where patient_id = $1 and status = 'valid' and expires_at > $2 order by number_id desc limit 1",
    )
    .bind(patient_id)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(number_id, expires_at, sealed, read_pending)| ValidNumber {
        number_id,
        expires_at,
        sealed,
        read_pending,
    }))
}

/// Records a number (and its message): expires numbers whose time is up, revokes the
/// patient's previous number, inserts. A hash equal to a valid number's is a
/// [`StoreError::Conflict`]; the caller rolls back (a savepoint in a turn), since a failed
/// statement aborts a PostgreSQL transaction.
pub(super) async fn insert_number(
    tx: &mut PgConnection,
    call_id: Option<i64>,
    n: &NewNumber,
    reissue_of: Option<i64>,
) -> Result<Issued, StoreError> {
    // Issues for one patient take turns: at READ COMMITTED, two transactions revoking the
    // patient's number at once would each miss the other's new one and leave two valid. The
    // lock (which foreign keys to the patient do not wait for) is held until commit; the next
    // issue's statements, taken after it, see the number this one inserted.
    let found: Option<i32> = sqlx::query_scalar("select 1 from patients where patient_id = $1 for no key update")
        .bind(&n.patient_id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(clash_error(NumberClash::Patient, n, call_id, reissue_of));
    }
    // Numbers whose time is up (the patient's, or an old holder of this hash) become expired;
    // the patient's number still running is revoked, and its sealed copy dropped.
    sqlx::query(
        "update processing_numbers
         set status = case when expires_at <= $1 then 'expired' else 'revoked' end,
             revoked_at = case when expires_at <= $1 then revoked_at else $1 end,
             sealed = case when expires_at <= $1 then sealed end
         where status = 'valid' and (patient_id = $3 or (number_hash = $2 and expires_at <= $1))",
    )
    .bind(n.issued_at)
    .bind(&n.number_hash)
    .bind(&n.patient_id)
    .execute(&mut *tx)
    .await?;
    let (seq, staff, channel) = consent_columns(&n.consent);
    let inserted = sqlx::query_scalar(
        "insert into processing_numbers (patient_id, number_hash, sealed, issued_at, expires_at,
           consent_channel, consent_call_id, consent_seq, consent_staff, delivery, reissue_of,
           read_pending, read_pending_since)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, case when $12 then $4 end)
         returning number_id",
    )
    .bind(&n.patient_id)
    .bind(&n.number_hash)
    .bind(&n.sealed)
    .bind(n.issued_at)
    .bind(n.expires_at)
    .bind(channel)
    .bind(call_id)
    .bind(seq)
    .bind(staff)
    .bind(n.delivery)
    .bind(reissue_of)
    .bind(n.waits_to_be_read())
    .fetch_one(&mut *tx)
    .await;
    let number_id: i64 = match inserted {
        Ok(id) => id,
        Err(e) => {
            let clash = match violation(&e) {
                Some((code, Some(c))) if code == "23505" && c == VALID_HASH_INDEX => NumberClash::Hash,
                Some((code, Some(c))) if code == "23505" && c == CONSENT_INDEX => NumberClash::Consent,
                Some((code, Some(c))) if code == "23505" && c == REISSUE_INDEX => NumberClash::Reissue,
                _ => return Err(e.into()),
            };
            return Err(clash_error(clash, n, call_id, reissue_of));
        }
    };
    let message_id = match &n.message {
        Some(m) => Some(
            sqlx::query_scalar(
                "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
                 values ($1, $2, $3, $4, $5, $6)
                 returning message_id",
            )
            .bind(&n.patient_id)
            .bind(number_id)
            .bind(m.channel)
            .bind(&m.recipient)
            .bind(&m.body_sealed)
            .bind(n.issued_at)
            .fetch_one(&mut *tx)
            .await?,
        ),
        None => None,
    };
    audit(tx, consent_actor(&n.consent), "issue", Some(number_id), &format!("delivery {}", n.delivery)).await?;
    Ok(Issued { number_id, message_id })
}

pub(super) async fn audit(
    tx: &mut PgConnection,
    actor: &str,
    action: &str,
    number_id: Option<i64>,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query("insert into audit_log (actor, action, number_id, detail) values ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(number_id)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Numbers for PgStore {
    /// Issues a number outside a call (the manual path), in one transaction.
    fn issue<'a>(&'a self, n: &'a NewNumber) -> Fut<'a, Issued> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let issued = insert_number(&mut tx, None, n, None).await?;
            tx.commit().await?;
            Ok(issued)
        })
    }

    /// The patient's number that is still valid at `now`.
    fn valid<'a>(&'a self, patient_id: &'a str, now: DateTime<Utc>) -> Fut<'a, Option<ValidNumber>> {
        fut(valid_number(&self.pool, patient_id, now))
    }

    /// Looks a number up by its hash; with `consume`, a valid number becomes used. The row is
    /// locked: concurrent attempts wait, then read the status the first one wrote (`used`), so
    /// a number is consumed exactly once. Every attempt is in the audit log.
    fn verify<'a>(&'a self, hash: &'a str, now: DateTime<Utc>, actor: &'a str, consume: bool) -> Fut<'a, Verdict> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let lookup = "select number_id, patient_id, status, issued_at, expires_at from processing_numbers
                 where number_hash = $1 order by (status = 'valid') desc, number_id desc limit 1";
            let sql = if consume { format!("{lookup} for update") } else { lookup.to_string() };
            let row = sqlx::query(&sql).bind(hash).fetch_optional(&mut *tx).await?;
            let found = match row {
                Some(r) => Some(FoundNumber {
                    number_id: r.try_get(0)?,
                    patient_id: r.try_get(1)?,
                    status: r.try_get(2)?,
                    issued_at: r.try_get(3)?,
                    expires_at: r.try_get(4)?,
                }),
                None => None,
            };
            let verdict = judge(found, now);
            if let (Verdict::Valid { number_id, .. }, true) = (&verdict, consume) {
                sqlx::query(
                    "update processing_numbers set status = 'used', used_at = $2, used_by = $3, sealed = null
                     where number_id = $1",
                )
                .bind(number_id)
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
            }
            let number_id = match &verdict {
                Verdict::Valid { number_id, .. } => Some(*number_id),
                _ => None,
            };
            let action = if consume { "verify" } else { "check" };
            audit(&mut tx, actor, action, number_id, verdict.reason()).await?;
            tx.commit().await?;
            Ok(verdict)
        })
    }

    fn add_token<'a>(&'a self, name: &'a str, token_hash: &'a str, scopes: Scopes) -> Fut<'a, ()> {
        fut(async move {
            let added = sqlx::query("insert into api_tokens (name, token_hash, scopes) values ($1, $2, $3)")
                .bind(name)
                .bind(token_hash)
                .bind(scopes.to_string())
                .execute(&self.pool)
                .await;
            match added {
                Ok(_) => Ok(()),
                Err(e) if violation(&e).is_some_and(|(code, _)| code == "23505") => {
                    Err(StoreError::Duplicate(format!("token '{name}'")))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// The live token with this hash.
    fn token<'a>(&'a self, token_hash: &'a str) -> Fut<'a, Option<ApiToken>> {
        fut(async move {
            let row: Option<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
                "select name, scopes, last_used_at from api_tokens where token_hash = $1 and revoked_at is null",
            )
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
            row.map(|(name, scopes, last_used_at)| Ok(ApiToken { name, scopes: stored_scopes(&scopes)?, last_used_at }))
                .transpose()
        })
    }

    fn token_used<'a>(&'a self, name: &'a str, at: DateTime<Utc>) -> Fut<'a, ()> {
        fut(async move {
            sqlx::query(
                "update api_tokens set last_used_at = $2
                 where name = $1 and (last_used_at is null or last_used_at < $2)",
            )
            .bind(name)
            .bind(at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn tokens(&self) -> Fut<'_, Vec<TokenInfo>> {
        fut(async move {
            type Row = (String, String, DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
            let rows: Vec<Row> = sqlx::query_as(
                "select name, scopes, created_at, last_used_at, revoked_at from api_tokens order by name",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(name, scopes, created_at, last_used_at, revoked_at)| {
                    Ok(TokenInfo { name, scopes: stored_scopes(&scopes)?, created_at, last_used_at, revoked_at })
                })
                .collect()
        })
    }

    fn revoke_token<'a>(&'a self, name: &'a str, at: DateTime<Utc>) -> Fut<'a, Revoke> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let revoked: Option<Option<DateTime<Utc>>> =
                sqlx::query_scalar("select revoked_at from api_tokens where name = $1 for update")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let outcome = match revoked {
                None => Revoke::Unknown,
                Some(Some(_)) => Revoke::AlreadyRevoked,
                Some(None) => {
                    sqlx::query("update api_tokens set revoked_at = $2 where name = $1")
                        .bind(name)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    Revoke::Revoked
                }
            };
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// (actor, action, detail) of the audit log, oldest first.
    fn audit_log(&self) -> Fut<'_, Vec<(String, String, String)>> {
        fut(async move {
            Ok(sqlx::query_as("select actor, action, detail from audit_log order by audit_id")
                .fetch_all(&self.pool)
                .await?)
        })
    }

    /// How many numbers are valid now (for tests and metrics).
    fn valid_count(&self) -> Fut<'_, i64> {
        fut(async move {
            Ok(sqlx::query_scalar("select count(*) from processing_numbers where status = 'valid'")
                .fetch_one(&self.pool)
                .await?)
        })
    }

    fn story<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<NumberStory>> {
        fut(async move {
            type Row = (
                String,
                DateTime<Utc>,
                DateTime<Utc>,
                String,
                Option<String>,
                String,
                Option<DateTime<Utc>>,
                Option<String>,
            );
            let rows: Vec<Row> = sqlx::query_as(
                "select status, issued_at, expires_at, consent_channel, consent_staff, delivery, used_at, used_by
                 from processing_numbers where patient_id = $1 order by number_id",
            )
            .bind(patient_id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| NumberStory {
                    status: r.0,
                    issued_at: r.1,
                    expires_at: r.2,
                    consent: r.3,
                    consent_staff: r.4,
                    delivery: r.5,
                    used_at: r.6,
                    used_by: r.7,
                })
                .collect())
        })
    }

    fn alert_unread(&self, waiting_since_before: DateTime<Utc>, now: DateTime<Utc>) -> Fut<'_, usize> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let due: Vec<(i64, PatientId, Option<i64>)> = sqlx::query_as(
                "update processing_numbers set unread_alerted_at = $2
                 where read_pending and status = 'valid' and unread_alerted_at is null
                   and (read_pending_since < $1 or expires_at <= $2)
                 returning number_id, patient_id, consent_call_id",
            )
            .bind(waiting_since_before)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (number_id, patient_id, call_id) in &due {
                let alert = crate::store::NewAlert::engine(&unread_alert());
                super::followups::raise_in(&mut tx, Some(patient_id.as_str()), *call_id, &alert, now).await?;
                audit(&mut tx, "upkeep", "unread", Some(*number_id), "not read aloud in time: alerted").await?;
            }
            tx.commit().await?;
            Ok(due.len())
        })
    }
}
