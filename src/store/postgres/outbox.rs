//! The outbox on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PgStore;
use super::followups::raise_in;
use super::numbers::{audit, insert_number};
use crate::store::{
    Fallback, FallbackChoice, Finish, LateMessage, LateSettle, NewNumber, NumberOnFile, OutboxMessage, fut,
};
use crate::store::{Fut, NewAlert, Outbox};
use crate::store::{SendResult, StoreError, choose_fallback, finish_plan, stored_consent, takes_callback};
use crate::types::{Channel, DeliveryStatus, PatientId};

/// (number_id, patient_id, consent_call_id, consent_seq, consent_staff) of a late message's number.
type LateRow = (i64, PatientId, Option<i64>, Option<i64>, Option<String>);

/// The fallback for an SMS that cannot reach the phone, once per message (see
/// [`SendResult::Undeliverable`]). `None` when the message had already fallen back. The
/// message row is locked, so a replayed callback waits and then finds the fallback taken.
async fn fall_back(
    tx: &mut PgConnection,
    message_id: i64,
    error: &str,
    email_ok: bool,
    now: DateTime<Utc>,
) -> Result<Option<Fallback>, StoreError> {
    let row: Option<(Option<String>, Option<i64>, String)> = sqlx::query_as(
        "select patient_id, number_id, body_sealed from outbox where message_id = $1 and fallback is null for update",
    )
    .bind(message_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((patient_id, number_id, body)) = row else { return Ok(None) };
    // The number, while still valid: whether a copy is kept to read, and where to e-mail it.
    let number: Option<(bool, Option<String>)> = sqlx::query_as(
        "select n.sealed is not null, p.email from processing_numbers n join patients p on p.patient_id = n.patient_id
         where n.number_id = $1 and n.status = 'valid' and n.expires_at > $2",
    )
    .bind(number_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let number = number.map(|(sealed_kept, email)| NumberOnFile { sealed_kept, email });
    let choice = choose_fallback(number, email_ok, &body);
    match &choice {
        FallbackChoice::Email { address } => {
            sqlx::query(
                "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
                 values ($1, $2, 'email', $3, $4, $5)",
            )
            .bind(&patient_id)
            .bind(number_id)
            .bind(address)
            .bind(&body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("update processing_numbers set delivery = 'email' where number_id = $1")
                .bind(number_id)
                .execute(&mut *tx)
                .await?;
        }
        FallbackChoice::ReadAloud => {
            sqlx::query(
                "update processing_numbers set read_pending = true, read_pending_since = $2, delivery = 'read_aloud'
                 where number_id = $1",
            )
            .bind(number_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        FallbackChoice::None => {}
    }
    let fallback = choice.fallback();
    sqlx::query(
        "update outbox set status = 'failed', fallback = $2, last_error = $3, lease_until = null, body_sealed = '',
           updated_at = $4
         where message_id = $1",
    )
    .bind(message_id)
    .bind(fallback.name())
    .bind(error)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if fallback != Fallback::None {
        audit(tx, "outbox", "fallback", number_id, &format!("delivery {}", fallback.name())).await?;
    }
    raise_in(tx, patient_id.as_deref(), None, &fallback.new_alert(error), now).await?;
    Ok(Some(fallback))
}

/// A claimed message from its row: id, patient, number, channel, recipient, body, attempts
/// before this one, `handed_at`.
fn message_row(r: &PgRow) -> Result<OutboxMessage, sqlx::Error> {
    Ok(OutboxMessage {
        message_id: r.try_get(0)?,
        patient_id: r.try_get(1)?,
        number_id: r.try_get(2)?,
        channel: r.try_get(3)?,
        recipient: r.try_get(4)?,
        body_sealed: r.try_get(5)?,
        attempts: r.try_get(6)?,
        handed_at: r.try_get(7)?,
    })
}

impl Outbox for PgStore {
    /// Claims up to `limit` messages due at `now` for `owner` until `lease_until`, and commits:
    /// a sender that dies leaves its claim to be settled, it never holds a transaction while
    /// sending. Rows another sender is claiming are skipped, not waited for, and never claimed
    /// twice.
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Fut<'a, Vec<OutboxMessage>> {
        fut(async move {
            // A number used, revoked or expired since its message was written is not sent.
            sqlx::query(
                "update outbox set status = 'cancelled', body_sealed = '', last_error = 'number no longer valid', updated_at = $1
                 where status = 'pending' and number_id in (
                   select number_id from processing_numbers where status <> 'valid')",
            )
            .bind(now)
            .execute(&self.pool)
            .await?;
            let rows = sqlx::query(
                "with due as (
                   select message_id from outbox where status = 'pending' and next_attempt_at <= $1
                     and (number_id is null or number_id not in (
                       select number_id from processing_numbers where expires_at <= $1))
                   order by next_attempt_at, message_id limit $3
                   for update skip locked
                 ), claimed as (
                   update outbox o set status = 'sending', lease_until = $2, claimed_by = $4, claimed_at = $1, updated_at = $1
                   from due where o.message_id = due.message_id
                   returning o.message_id, o.patient_id, o.number_id, o.channel, o.recipient, o.body_sealed,
                     o.attempts, o.handed_at, o.next_attempt_at
                 )
                 select message_id, patient_id, number_id, channel, recipient, body_sealed, attempts::bigint, handed_at
                 from claimed order by next_attempt_at, message_id",
            )
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(message_row).collect::<Result<_, _>>()?)
        })
    }

    /// Takes over the claims left unfinished; see [`Outbox::unfinished`]. Rows being taken
    /// by another instance are skipped.
    fn unfinished<'a>(
        &'a self,
        owner: &'a str,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Fut<'a, Vec<OutboxMessage>> {
        fut(async move {
            let rows = sqlx::query(
                "with left_over as (
                   select message_id from outbox where status = 'sending'
                     and ((claimed_by = $1 and claimed_at < $2) or lease_until <= $4)
                   order by message_id limit $5
                   for update skip locked
                 )
                 update outbox o set lease_until = $3, claimed_by = $1, claimed_at = $4, updated_at = $4
                 from left_over where o.message_id = left_over.message_id
                 returning o.message_id, o.patient_id, o.number_id, o.channel, o.recipient, o.body_sealed,
                   o.attempts::bigint, o.handed_at",
            )
            .bind(owner)
            .bind(started)
            .bind(lease_until)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(message_row).collect::<Result<_, _>>()?)
        })
    }

    /// Marks a claimed message as handed to the provider (the first such time is kept).
    fn hand(&self, message_id: i64, now: DateTime<Utc>) -> Fut<'_, ()> {
        fut(async move {
            sqlx::query(
                "update outbox set handed_at = coalesce(handed_at, $2), attempts = attempts + 1 where message_id = $1 and status = 'sending'",
            )
            .bind(message_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn attempts(&self, message_id: i64) -> Fut<'_, Option<i64>> {
        fut(async move {
            let row: Option<(i32,)> = sqlx::query_as("select attempts from outbox where message_id = $1")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|(n,)| i64::from(n)))
        })
    }

    /// Records how a send ended. A failed or dead message raises an alert for the health centre.
    fn finish<'a>(&'a self, message_id: i64, result: &'a SendResult, now: DateTime<Utc>) -> Fut<'a, Option<Fallback>> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let mut fallback = None;
            match finish_plan(result) {
                Finish::FallBack { error, email } => {
                    fallback = fall_back(&mut tx, message_id, error, email, now).await?;
                }
                Finish::Sent { provider_id, status: _ } => {
                    sqlx::query(
                        // Only a message still in hand: a delivery callback that came first (and
                        // perhaps said `failed`) is not overwritten by the sender's late record.
                        "update outbox set status = 'sent', provider_id = $2, last_error = null, lease_until = null,
                           handed_at = null, updated_at = $3,
                           body_sealed = case when link_id is null then body_sealed else '' end
                         where message_id = $1 and status in ('sending', 'pending')",
                    )
                    .bind(message_id)
                    .bind(provider_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Finish::Retry { error, at, unsure } => {
                    sqlx::query(
                        // Final states stay: a late failure callback sends nothing again.
                        "update outbox set status = 'pending', next_attempt_at = $2, last_error = $3, lease_until = null,
                           handed_at = case when $5 then handed_at end, updated_at = $4
                         where message_id = $1 and status not in ('delivered', 'dead', 'cancelled')",
                    )
                    .bind(message_id)
                    .bind(at)
                    .bind(error)
                    .bind(now)
                    .bind(unsure)
                    .execute(&mut *tx)
                    .await?;
                }
                Finish::Close { status, error, alert } => {
                    let closed = sqlx::query(
                        "update outbox set status = $2, last_error = $3, lease_until = null, body_sealed = '',
                           handed_at = null, updated_at = $4
                         where message_id = $1 and status not in ('delivered', 'dead', 'cancelled')",
                    )
                    .bind(message_id)
                    .bind(status)
                    .bind(error)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if closed.rows_affected() > 0 {
                        let patient: Option<String> =
                            sqlx::query_scalar("select patient_id from outbox where message_id = $1")
                                .bind(message_id)
                                .fetch_one(&mut *tx)
                                .await?;
                        raise_in(&mut tx, patient.as_deref(), None, &NewAlert::engine(&alert), now).await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(fallback)
        })
    }

    /// Pending messages due at `now` whose number expired before they could be sent.
    fn late(&self, now: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<LateMessage>> {
        fut(async move {
            let rows: Vec<(i64, PatientId, i64, Channel, String, bool)> = sqlx::query_as(
                "select o.message_id, n.patient_id, n.number_id, o.channel, o.recipient, n.reissue_of is not null
                 from outbox o join processing_numbers n on n.number_id = o.number_id
                 where o.status = 'pending' and o.next_attempt_at <= $1 and n.status = 'valid' and n.expires_at <= $1
                 order by o.next_attempt_at, o.message_id limit $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(message_id, patient_id, number_id, channel, recipient, reissued)| LateMessage {
                    message_id,
                    patient_id,
                    number_id,
                    channel,
                    recipient,
                    reissued,
                })
                .collect())
        })
    }

    /// Replaces a late message's number with `fresh`, or dead-letters it; see
    /// [`super::Store::replace_late`]. The message row is locked: a second sender waits, then
    /// finds it no longer pending.
    fn replace_late<'a>(&'a self, message_id: i64, fresh: Option<&'a NewNumber>, now: DateTime<Utc>) -> Fut<'a, bool> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let late: Option<LateRow> = sqlx::query_as(
                "select n.number_id, n.patient_id, n.consent_call_id, n.consent_seq, n.consent_staff
                 from outbox o join processing_numbers n on n.number_id = o.number_id
                 where o.message_id = $1 and o.status = 'pending' and n.status = 'valid' and n.expires_at <= $2
                 for update of o",
            )
            .bind(message_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((number_id, patient_id, call_id, seq, staff)) = late else { return Ok(false) };
            let settle = LateSettle::of(fresh.is_some());
            sqlx::query(
                "update outbox set status = $2, body_sealed = '', last_error = 'expired before delivery',
                   lease_until = null, updated_at = $3
                 where message_id = $1",
            )
            .bind(message_id)
            .bind(settle.status())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            match fresh {
                Some(n) => {
                    let consent = stored_consent(call_id, seq, staff);
                    let n = NewNumber { patient_id: patient_id.clone(), consent, ..n.clone() };
                    let issued = insert_number(&mut tx, call_id, &n, Some(number_id)).await?;
                    audit(&mut tx, "outbox", "reissue", Some(issued.number_id), "expired before delivery").await?;
                }
                None => {
                    sqlx::query("update processing_numbers set status = 'expired' where number_id = $1")
                        .bind(number_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            raise_in(&mut tx, Some(patient_id.as_str()), None, &NewAlert::engine(&settle.alert()), now).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// A delivery status from the provider's callback, by the provider's message id.
    fn status<'a>(&'a self, provider_id: &'a str, status: &'a str, error_code: Option<&'a str>) -> Fut<'a, bool> {
        fut(async move {
            // The rows locked: a callback for the same message waits, then sees this one's status.
            let mut tx = self.pool.begin().await?;
            let messages: Vec<(i64, String, bool)> = sqlx::query_as(
                "select message_id, status, fallback is not null from outbox where provider_id = $1 for update",
            )
            .bind(provider_id)
            .fetch_all(&mut *tx)
            .await?;
            for (message_id, current, fell_back) in &messages {
                if takes_callback(DeliveryStatus::parse(current).ok(), *fell_back) {
                    sqlx::query(
                        "update outbox set status = $2,
                           last_error = case when $2 = 'delivered' then null else coalesce($3, last_error) end,
                           updated_at = now()
                         where message_id = $1",
                    )
                    .bind(message_id)
                    .bind(status)
                    .bind(error_code)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            // Known: some message carries this provider id (even if a later status stood).
            Ok(!messages.is_empty())
        })
    }

    /// (channel, recipient, status, attempts) of a patient's messages, oldest first.
    fn for_patient<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<(String, String, String, i64)>> {
        fut(async move {
            Ok(sqlx::query_as(
                "select channel, recipient, status, attempts::bigint from outbox where patient_id = $1
                 order by message_id",
            )
            .bind(patient_id)
            .fetch_all(&self.pool)
            .await?)
        })
    }
}
