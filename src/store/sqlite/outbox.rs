//! The outbox on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::followups::raise_in;
use super::numbers::{audit, insert_number};
use super::{NOW, SqliteStore, parse_sqlite_time, sqlite_time};
use crate::store::{Fallback, FallbackChoice, Finish, LateMessage, LateSettle, NewNumber, NumberOnFile, OutboxMessage};
use crate::store::{Fut, NewAlert, Outbox};
use crate::store::{SendResult, StoreError, choose_fallback, finish_plan, stored_consent, takes_callback};
use crate::types::{DeliveryStatus, PatientId};

/// (number_id, patient_id, consent_call_id, consent_seq, consent_staff) of a late message's number.
type LateRow = (i64, PatientId, Option<i64>, Option<i64>, Option<String>);

/// The columns of a claimed message, in [`message_row`]'s order.
const CLAIMED: &str = "message_id, patient_id, number_id, channel, recipient, body_sealed, attempts, handed_at";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxMessage> {
    Ok(OutboxMessage {
        message_id: r.get(0)?,
        patient_id: r.get(1)?,
        number_id: r.get(2)?,
        channel: r.get(3)?,
        recipient: r.get(4)?,
        body_sealed: r.get(5)?,
        attempts: r.get(6)?,
        handed_at: r.get::<_, Option<String>>(7)?.map(|t| parse_sqlite_time(&t)),
    })
}

/// Claims up to `limit` messages due at `now` for `owner` until `lease_until`, and commits: a
/// sender that dies leaves its claim to be settled, it never holds a transaction while sending.
pub(super) fn claim_messages(
    conn: &mut Connection,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // A number used, revoked or expired since its message was written is not sent.
    tx.prepare_cached(
        "update outbox set status = 'cancelled', body_sealed = '', last_error = 'number no longer valid', updated_at = ?1
         where status = 'pending' and number_id in (
           select number_id from processing_numbers where status <> 'valid')",
    )?
    .execute([sqlite_time(now)])?;
    // A number that expired before its message went out is replaced first (`replace_late`).
    let claimed = {
        let mut st = tx.prepare_cached(&format!(
            "update outbox set status = 'sending', lease_until = ?2, claimed_by = ?4,
               claimed_at = ?1, updated_at = ?1
             where message_id in (
               select message_id from outbox where status = 'pending' and next_attempt_at <= ?1
                 and (number_id is null or number_id not in (
                   select number_id from processing_numbers where expires_at <= ?1))
               order by next_attempt_at limit ?3)
             returning {CLAIMED}"
        ))?;
        let rows = st.query_map(params![sqlite_time(now), sqlite_time(lease_until), limit, owner], message_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(claimed)
}

/// Takes over the claims left unfinished; see [`Outbox::unfinished`].
pub(super) fn unfinished(
    conn: &mut Connection,
    owner: &str,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let taken = {
        let mut st = tx.prepare_cached(&format!(
            "update outbox set lease_until = ?3, claimed_by = ?1, claimed_at = ?4, updated_at = ?4
             where message_id in (
               select message_id from outbox where status = 'sending'
                 and ((claimed_by = ?1 and claimed_at < ?2) or lease_until <= ?4)
               order by message_id limit ?5)
             returning {CLAIMED}"
        ))?;
        let rows = st.query_map(
            params![owner, sqlite_time(started), sqlite_time(lease_until), sqlite_time(now), limit],
            message_row,
        )?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.commit()?;
    Ok(taken)
}

/// Marks a claimed message as handed to the provider (the first such time is kept).
pub(super) fn hand(conn: &mut Connection, message_id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "update outbox set handed_at = coalesce(handed_at, ?2), attempts = attempts + 1 where message_id = ?1 and status = 'sending'",
    )?
    .execute(params![message_id, sqlite_time(now)])?;
    Ok(())
}

/// Records how a send ended. A dead message raises an alert for the health centre.
pub(super) fn finish_message(
    conn: &mut Connection,
    message_id: i64,
    result: &SendResult,
    now: DateTime<Utc>,
) -> Result<Option<Fallback>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let t = sqlite_time(now);
    let mut fallback = None;
    match finish_plan(result) {
        Finish::FallBack { error, email } => {
            fallback = fall_back(&tx, message_id, error, email, now)?;
        }
        Finish::Sent { provider_id, status: _ } => {
            tx.prepare_cached(
                // Only a message still in hand: a delivery callback that came first (and
                // perhaps said `failed`) is not overwritten by the sender's late record.
                "update outbox set status = 'sent', provider_id = ?2, last_error = null, lease_until = null,
                   handed_at = null, updated_at = ?3,
                   body_sealed = case when link_id is null then body_sealed else '' end
                 where message_id = ?1 and status in ('sending', 'pending')",
            )?
            .execute(params![message_id, provider_id, t])?;
        }
        Finish::Retry { error, at, unsure } => {
            tx.prepare_cached(
                // Final states stay: a late failure callback sends nothing again.
                "update outbox set status = 'pending', next_attempt_at = ?2, last_error = ?3, lease_until = null,
                   handed_at = case when ?5 then handed_at end, updated_at = ?4
                 where message_id = ?1 and status not in ('delivered', 'dead', 'cancelled')",
            )?
            .execute(params![message_id, sqlite_time(at), error, t, unsure])?;
        }
        Finish::Close { status, error, alert } => {
            let closed = tx
                .prepare_cached(
                    "update outbox set status = ?2, last_error = ?3, lease_until = null, body_sealed = '', handed_at = null,
                       updated_at = ?4
                     where message_id = ?1 and status not in ('delivered', 'dead', 'cancelled')",
                )?
                .execute(params![message_id, status, error, t])?;
            if closed > 0 {
                let patient: Option<String> = tx
                    .prepare_cached("select patient_id from outbox where message_id = ?1")?
                    .query_row([message_id], |r| r.get(0))?;
                raise_in(&tx, patient.as_deref(), None, &NewAlert::engine(&alert), now)?;
            }
        }
    }
    tx.commit()?;
    Ok(fallback)
}

/// Pending messages due at `now` whose number expired before they could be sent.
pub(super) fn late_messages(
    conn: &mut Connection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<LateMessage>, StoreError> {
    let mut st = conn.prepare_cached(
        "select o.message_id, n.patient_id, n.number_id, o.channel, o.recipient, n.reissue_of is not null
         from outbox o join processing_numbers n on n.number_id = o.number_id
         where o.status = 'pending' and o.next_attempt_at <= ?1 and n.status = 'valid' and n.expires_at <= ?1
         order by o.next_attempt_at limit ?2",
    )?;
    let rows = st.query_map(params![sqlite_time(now), limit], |r| {
        Ok(LateMessage {
            message_id: r.get(0)?,
            patient_id: r.get(1)?,
            number_id: r.get(2)?,
            channel: r.get(3)?,
            recipient: r.get(4)?,
            reissued: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces a late message's number with `fresh`, or dead-letters it; see [`super::Store::replace_late`].
pub(super) fn replace_late(
    conn: &mut Connection,
    message_id: i64,
    fresh: Option<&NewNumber>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let t = sqlite_time(now);
    let late: Option<LateRow> = tx
        .prepare_cached(
            "select n.number_id, n.patient_id, n.consent_call_id, n.consent_seq, n.consent_staff
             from outbox o join processing_numbers n on n.number_id = o.number_id
             where o.message_id = ?1 and o.status = 'pending' and n.status = 'valid' and n.expires_at <= ?2",
        )?
        .query_row(params![message_id, t], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let Some((number_id, patient_id, call_id, seq, staff)) = late else { return Ok(false) };
    let settle = LateSettle::of(fresh.is_some());
    tx.prepare_cached(
        "update outbox set status = ?2, body_sealed = '', last_error = 'expired before delivery',
           lease_until = null, updated_at = ?3
         where message_id = ?1",
    )?
    .execute(params![message_id, settle.status(), t])?;
    match fresh {
        Some(n) => {
            let consent = stored_consent(call_id, seq, staff);
            let n = NewNumber { patient_id: patient_id.clone(), consent, ..n.clone() };
            let issued = insert_number(&tx, call_id, &n, Some(number_id))?;
            audit(&tx, "outbox", "reissue", Some(issued.number_id), "expired before delivery")?;
        }
        None => {
            tx.prepare_cached("update processing_numbers set status = 'expired' where number_id = ?1")?
                .execute([number_id])?;
        }
    }
    raise_in(&tx, Some(patient_id.as_str()), None, &NewAlert::engine(&settle.alert()), now)?;
    tx.commit()?;
    Ok(true)
}

/// A delivery status from the provider's callback, by the provider's message id.
pub(super) fn message_status(
    conn: &mut Connection,
    provider_id: &str,
    status: &str,
    error_code: Option<&str>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let messages = tx
        .prepare_cached("select message_id, status, fallback is not null from outbox where provider_id = ?1")?
        .query_map([provider_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (message_id, current, fell_back) in &messages {
        if takes_callback(DeliveryStatus::parse(current).ok(), *fell_back) {
            tx.prepare_cached(&format!(
                "update outbox set status = ?2,
                   last_error = case when ?2 = 'delivered' then null else coalesce(?3, last_error) end,
                   updated_at = {NOW}
                 where message_id = ?1"
            ))?
            .execute(params![message_id, status, error_code])?;
        }
    }
    tx.commit()?;
    // Known: some message carries this provider id (even if a later status stood).
    Ok(!messages.is_empty())
}

/// (channel, recipient, status, attempts) of a patient's messages, oldest first.
pub(super) fn messages(
    conn: &mut Connection,
    patient_id: &str,
) -> Result<Vec<(String, String, String, i64)>, StoreError> {
    let mut st = conn.prepare_cached(
        "select channel, recipient, status, attempts from outbox where patient_id = ?1 order by message_id",
    )?;
    let rows = st.query_map([patient_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The fallback for an SMS that cannot reach the phone, once per message (see
/// [`SendResult::Undeliverable`]). `None` when the message had already fallen back.
fn fall_back(
    tx: &Connection,
    message_id: i64,
    error: &str,
    email_ok: bool,
    now: DateTime<Utc>,
) -> Result<Option<Fallback>, StoreError> {
    let t = &sqlite_time(now);
    let row: Option<(Option<String>, Option<i64>, String)> = tx
        .prepare_cached(
            "select patient_id, number_id, body_sealed from outbox where message_id = ?1 and fallback is null",
        )?
        .query_row([message_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((patient_id, number_id, body)) = row else { return Ok(None) };
    // The number, while still valid: whether a copy is kept to read, and where to e-mail it.
    let number = tx
        .prepare_cached(
            "select n.sealed is not null, p.email from processing_numbers n join patients p on p.patient_id = n.patient_id
             where n.number_id = ?1 and n.status = 'valid' and n.expires_at > ?2",
        )?
        .query_row(params![number_id, t], |r| Ok(NumberOnFile { sealed_kept: r.get(0)?, email: r.get(1)? }))
        .optional()?;
    let choice = choose_fallback(number, email_ok, &body);
    match &choice {
        FallbackChoice::Email { address } => {
            tx.prepare_cached(
                "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
                 values (?1, ?2, 'email', ?3, ?4, ?5)",
            )?
            .execute(params![patient_id, number_id, address, body, t])?;
            tx.prepare_cached("update processing_numbers set delivery = 'email' where number_id = ?1")?
                .execute([number_id])?;
        }
        FallbackChoice::ReadAloud => {
            tx.prepare_cached(
                "update processing_numbers set read_pending = 1, read_pending_since = ?2, delivery = 'read_aloud'
                 where number_id = ?1",
            )?
            .execute(params![number_id, t])?;
        }
        FallbackChoice::None => {}
    }
    let fallback = choice.fallback();
    tx.prepare_cached(
        "update outbox set status = 'failed', fallback = ?2, last_error = ?3, lease_until = null, body_sealed = '',
           updated_at = ?4
         where message_id = ?1",
    )?
    .execute(params![message_id, fallback.name(), error, t])?;
    if fallback != Fallback::None {
        audit(tx, "outbox", "fallback", number_id, &format!("delivery {}", fallback.name()))?;
    }
    raise_in(tx, patient_id.as_deref(), None, &fallback.new_alert(error), now)?;
    Ok(Some(fallback))
}

impl Outbox for SqliteStore {
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Fut<'a, Vec<OutboxMessage>> {
        let owner = owner.to_owned();
        self.write(move |c| claim_messages(c, &owner, now, lease_until, limit))
    }

    fn unfinished<'a>(
        &'a self,
        owner: &'a str,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Fut<'a, Vec<OutboxMessage>> {
        let owner = owner.to_owned();
        self.write(move |c| unfinished(c, &owner, started, now, lease_until, limit))
    }

    fn hand(&self, message_id: i64, now: DateTime<Utc>) -> Fut<'_, ()> {
        self.write(move |c| hand(c, message_id, now))
    }

    fn attempts(&self, message_id: i64) -> Fut<'_, Option<i64>> {
        self.read(move |c| {
            Ok(c.prepare_cached("select attempts from outbox where message_id = ?1")?
                .query_row([message_id], |r| r.get(0))
                .optional()?)
        })
    }

    fn finish<'a>(&'a self, message_id: i64, result: &'a SendResult, now: DateTime<Utc>) -> Fut<'a, Option<Fallback>> {
        let result = result.clone();
        self.write(move |c| finish_message(c, message_id, &result, now))
    }

    fn late(&self, now: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<LateMessage>> {
        self.read(move |c| late_messages(c, now, limit))
    }

    fn replace_late<'a>(&'a self, message_id: i64, fresh: Option<&'a NewNumber>, now: DateTime<Utc>) -> Fut<'a, bool> {
        let fresh = fresh.cloned();
        self.write(move |c| replace_late(c, message_id, fresh.as_ref(), now))
    }

    fn status<'a>(&'a self, provider_id: &'a str, status: &'a str, error_code: Option<&'a str>) -> Fut<'a, bool> {
        let (provider_id, status, error_code) =
            (provider_id.to_owned(), status.to_owned(), error_code.map(str::to_owned));
        self.write(move |c| message_status(c, &provider_id, &status, error_code.as_deref()))
    }

    fn for_patient<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<(String, String, String, i64)>> {
        let patient_id = patient_id.to_owned();
        self.read(move |c| messages(c, &patient_id))
    }
}
