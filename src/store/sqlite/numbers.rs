//! Processing numbers, API tokens and the audit log on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, parse_sqlite_time, sqlite_time};
use crate::store::{ApiToken, Revoke, TokenInfo, stored_scopes};
use crate::store::{FoundNumber, Issued, NewNumber, NumberClash, NumberStory, StoreError, ValidNumber, Verdict};
use crate::store::{Fut, Numbers};
use crate::store::{clash_error, consent_actor, consent_columns, judge, unread_alert};
use crate::types::Scopes;

/// Records a number (and its message): expires numbers whose time is up, revokes the
/// patient's previous number, inserts. A hash equal to a valid number's is a [`StoreError::Conflict`].
pub(super) fn insert_number(
    tx: &Connection,
    call_id: Option<i64>,
    n: &NewNumber,
    reissue_of: Option<i64>,
) -> Result<Issued, StoreError> {
    let now = sqlite_time(n.issued_at);
    // Two statements, each on its index: with `number_hash = ?2 or patient_id = ?3` in one,
    // SQLite read every valid number for each number issued.
    tx.prepare_cached(
        "update processing_numbers set status = 'expired'
         where number_hash = ?2 and status = 'valid' and expires_at <= ?1",
    )?
    .execute(params![now, n.number_hash])?;
    // The patient's number: expired if its time is up, else revoked (its sealed copy dropped).
    tx.prepare_cached(
        "update processing_numbers
         set status = case when expires_at <= ?2 then 'expired' else 'revoked' end,
             revoked_at = case when expires_at <= ?2 then revoked_at else ?2 end,
             sealed = case when expires_at <= ?2 then sealed end
         where patient_id = ?1 and status = 'valid'",
    )?
    .execute(params![n.patient_id, now])?;
    let (seq, staff, channel) = consent_columns(&n.consent);
    let inserted = tx
        .prepare_cached(
            "insert into processing_numbers (patient_id, number_hash, sealed, issued_at, expires_at,
               consent_channel, consent_call_id, consent_seq, consent_staff, delivery, reissue_of,
               read_pending, read_pending_since)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, case when ?12 then ?4 end)",
        )?
        .execute(params![
            n.patient_id,
            n.number_hash,
            n.sealed,
            now,
            sqlite_time(n.expires_at),
            channel,
            call_id,
            seq,
            staff,
            n.delivery,
            reissue_of,
            n.waits_to_be_read()
        ]);
    if let Err(rusqlite::Error::SqliteFailure(e, msg)) = &inserted
        && e.code == rusqlite::ErrorCode::ConstraintViolation
    {
        // SQLite names the columns of the unique index refused; a foreign key, nothing.
        let msg = msg.as_deref().unwrap_or("");
        let clash = if msg.contains("number_hash") {
            NumberClash::Hash
        } else if msg.contains("consent_call_id") {
            NumberClash::Consent
        } else if msg.contains("reissue_of") {
            NumberClash::Reissue
        } else {
            NumberClash::Patient
        };
        return Err(clash_error(clash, n, call_id, reissue_of));
    }
    inserted?;
    let number_id = tx.last_insert_rowid();
    let message_id = match &n.message {
        Some(m) => {
            tx.prepare_cached(
                "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
                 values (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![n.patient_id, number_id, m.channel, m.recipient, m.body_sealed, now])?;
            Some(tx.last_insert_rowid())
        }
        None => None,
    };
    audit(tx, consent_actor(&n.consent), "issue", Some(number_id), &format!("delivery {}", n.delivery))?;
    Ok(Issued { number_id, message_id })
}

pub(super) fn audit(
    tx: &Connection,
    actor: &str,
    action: &str,
    number_id: Option<i64>,
    detail: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached("insert into audit_log (actor, action, number_id, detail) values (?1, ?2, ?3, ?4)")?
        .execute(params![actor, action, number_id, detail])?;
    Ok(())
}

/// Issues a number outside a call (the manual path), in one transaction.
pub(super) fn issue_number(conn: &mut Connection, n: &NewNumber) -> Result<Issued, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let issued = insert_number(&tx, None, n, None)?;
    tx.commit()?;
    Ok(issued)
}

/// The patient's number that is still valid at `now`.
pub(super) fn valid_number(
    conn: &Connection,
    patient_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<ValidNumber>, StoreError> {
    let mut st = conn.prepare_cached(
        "select number_id, expires_at, sealed, read_pending from processing_numbers
         where patient_id = ?1 and status = 'valid' and expires_at > ?2 order by number_id desc limit 1",
    )?;
    Ok(st
        .query_row(params![patient_id, sqlite_time(now)], |r| {
            Ok(ValidNumber {
                number_id: r.get(0)?,
                expires_at: parse_sqlite_time(&r.get::<_, String>(1)?),
                sealed: r.get(2)?,
                read_pending: r.get(3)?,
            })
        })
        .optional()?)
}

/// Looks a number up by its hash; with `consume`, a valid number becomes used (once: the
/// transaction serialises concurrent attempts). Every attempt is in the audit log.
pub(super) fn verify_number(
    conn: &mut Connection,
    hash: &str,
    now: DateTime<Utc>,
    actor: &str,
    consume: bool,
) -> Result<Verdict, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = tx
        .prepare_cached(
            "select number_id, patient_id, status, issued_at, expires_at from processing_numbers
             where number_hash = ?1 order by (status = 'valid') desc, number_id desc limit 1",
        )?
        .query_row([hash], |r| {
            Ok(FoundNumber {
                number_id: r.get(0)?,
                patient_id: r.get(1)?,
                status: r.get(2)?,
                issued_at: parse_sqlite_time(&r.get::<_, String>(3)?),
                expires_at: parse_sqlite_time(&r.get::<_, String>(4)?),
            })
        })
        .optional()?;
    let verdict = judge(found, now);
    if let (Verdict::Valid { number_id, .. }, true) = (&verdict, consume) {
        tx.prepare_cached(
            "update processing_numbers set status = 'used', used_at = ?2, used_by = ?3, sealed = null
             where number_id = ?1",
        )?
        .execute(params![number_id, sqlite_time(now), actor])?;
    }
    let number_id = match &verdict {
        Verdict::Valid { number_id, .. } => Some(*number_id),
        _ => None,
    };
    let action = if consume { "verify" } else { "check" };
    audit(&tx, actor, action, number_id, verdict.reason())?;
    tx.commit()?;
    Ok(verdict)
}

pub(super) fn add_token(conn: &mut Connection, name: &str, token_hash: &str, scopes: Scopes) -> Result<(), StoreError> {
    let added = conn
        .prepare_cached("insert into api_tokens (name, token_hash, scopes) values (?1, ?2, ?3)")?
        .execute(params![name, token_hash, scopes.to_string()]);
    match added {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::Duplicate(format!("token '{name}'")))
        }
        r => r.map(|_| ()).map_err(Into::into),
    }
}

/// The live token with this hash.
pub(super) fn token(conn: &mut Connection, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
    let mut st = conn.prepare_cached(
        "select name, scopes, last_used_at from api_tokens where token_hash = ?1 and revoked_at is null",
    )?;
    let row: Option<(String, String, Option<String>)> =
        st.query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
    row.map(|(name, scopes, last)| {
        Ok(ApiToken { name, scopes: stored_scopes(&scopes)?, last_used_at: last.as_deref().map(parse_sqlite_time) })
    })
    .transpose()
}

pub(super) fn token_used(conn: &mut Connection, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "update api_tokens set last_used_at = ?2 where name = ?1 and (last_used_at is null or last_used_at < ?2)",
    )?
    .execute(params![name, sqlite_time(at)])?;
    Ok(())
}

pub(super) fn tokens(conn: &mut Connection) -> Result<Vec<TokenInfo>, StoreError> {
    let mut st =
        conn.prepare_cached("select name, scopes, created_at, last_used_at, revoked_at from api_tokens order by name")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let time = |t: Option<String>| t.as_deref().map(parse_sqlite_time);
    rows.map(|row| {
        let (name, scopes, created, last, revoked) = row?;
        Ok(TokenInfo {
            name,
            scopes: stored_scopes(&scopes)?,
            created_at: parse_sqlite_time(&created),
            last_used_at: time(last),
            revoked_at: time(revoked),
        })
    })
    .collect()
}

pub(super) fn revoke_token(conn: &mut Connection, name: &str, at: DateTime<Utc>) -> Result<Revoke, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let revoked: Option<Option<String>> = tx
        .prepare_cached("select revoked_at from api_tokens where name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let outcome = match revoked {
        None => Revoke::Unknown,
        Some(Some(_)) => Revoke::AlreadyRevoked,
        Some(None) => {
            tx.prepare_cached("update api_tokens set revoked_at = ?2 where name = ?1")?
                .execute(params![name, sqlite_time(at)])?;
            Revoke::Revoked
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// (action, detail) of the audit log for a number, or all numbers when `None`.
pub(super) fn audit_log(conn: &mut Connection) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut st = conn.prepare_cached("select actor, action, detail from audit_log order by audit_id")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many numbers are valid now (for tests and metrics).
/// A patient's numbers, oldest first.
pub(super) fn story(conn: &mut Connection, patient_id: &str) -> Result<Vec<NumberStory>, StoreError> {
    let mut st = conn.prepare_cached(
        "select status, issued_at, expires_at, consent_channel, consent_staff, delivery, used_at, used_by
         from processing_numbers where patient_id = ?1 order by number_id",
    )?;
    let rows = st.query_map([patient_id], |r| {
        Ok(NumberStory {
            status: r.get(0)?,
            issued_at: parse_sqlite_time(&r.get::<_, String>(1)?),
            expires_at: parse_sqlite_time(&r.get::<_, String>(2)?),
            consent: r.get(3)?,
            consent_staff: r.get(4)?,
            delivery: r.get(5)?,
            used_at: r.get::<_, Option<String>>(6)?.map(|t| parse_sqlite_time(&t)),
            used_by: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn valid_count(conn: &mut Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("select count(*) from processing_numbers where status = 'valid'", [], |r| r.get(0))?)
}

/// Alerts each number waiting to be read since before `before` (or whose time is up), once.
pub(super) fn alert_unread(
    conn: &mut Connection,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let due: Vec<(i64, String, Option<i64>)> = {
        let mut st = tx.prepare_cached(
            "select number_id, patient_id, consent_call_id from processing_numbers
             where read_pending = 1 and status = 'valid' and unread_alerted_at is null
               and (read_pending_since < ?1 or expires_at <= ?2)
             order by number_id",
        )?;
        let rows =
            st.query_map(params![sqlite_time(before), sqlite_time(now)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (number_id, patient_id, call_id) in &due {
        tx.prepare_cached("update processing_numbers set unread_alerted_at = ?2 where number_id = ?1")?
            .execute(params![number_id, sqlite_time(now)])?;
        let alert = crate::store::NewAlert::engine(&unread_alert());
        super::followups::raise_in(&tx, Some(patient_id.as_str()), *call_id, &alert, now)?;
        audit(&tx, "upkeep", "unread", Some(*number_id), "not read aloud in time: alerted")?;
    }
    tx.commit()?;
    Ok(due.len())
}

impl Numbers for SqliteStore {
    fn issue<'a>(&'a self, n: &'a NewNumber) -> Fut<'a, Issued> {
        let n = n.clone();
        self.write(move |c| issue_number(c, &n))
    }

    fn valid<'a>(&'a self, patient_id: &'a str, now: DateTime<Utc>) -> Fut<'a, Option<ValidNumber>> {
        let patient_id = patient_id.to_owned();
        self.read(move |c| valid_number(c, &patient_id, now))
    }

    fn verify<'a>(&'a self, hash: &'a str, now: DateTime<Utc>, actor: &'a str, consume: bool) -> Fut<'a, Verdict> {
        let (hash, actor) = (hash.to_owned(), actor.to_owned());
        self.write(move |c| verify_number(c, &hash, now, &actor, consume))
    }

    fn add_token<'a>(&'a self, name: &'a str, token_hash: &'a str, scopes: Scopes) -> Fut<'a, ()> {
        let (name, token_hash) = (name.to_owned(), token_hash.to_owned());
        self.write(move |c| add_token(c, &name, &token_hash, scopes))
    }

    fn token<'a>(&'a self, token_hash: &'a str) -> Fut<'a, Option<ApiToken>> {
        let token_hash = token_hash.to_owned();
        self.read(move |c| token(c, &token_hash))
    }

    fn token_used<'a>(&'a self, name: &'a str, at: DateTime<Utc>) -> Fut<'a, ()> {
        let name = name.to_owned();
        self.write(move |c| token_used(c, &name, at))
    }

    fn tokens(&self) -> Fut<'_, Vec<TokenInfo>> {
        self.read(tokens)
    }

    fn revoke_token<'a>(&'a self, name: &'a str, at: DateTime<Utc>) -> Fut<'a, Revoke> {
        let name = name.to_owned();
        self.write(move |c| revoke_token(c, &name, at))
    }

    fn audit_log(&self) -> Fut<'_, Vec<(String, String, String)>> {
        self.read(audit_log)
    }

    fn valid_count(&self) -> Fut<'_, i64> {
        self.read(valid_count)
    }

    fn story<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<NumberStory>> {
        let patient_id = patient_id.to_owned();
        self.read(move |c| story(c, &patient_id))
    }

    fn alert_unread(&self, waiting_since_before: DateTime<Utc>, now: DateTime<Utc>) -> Fut<'_, usize> {
        self.write(move |c| alert_unread(c, waiting_since_before, now))
    }
}
