//! The follow-up queue on SQLite. [`raise_in`] is the one writer of alerts: every alert goes
//! through it, in its caller's transaction, with the item it opens or joins.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{SqliteStore, parse_sqlite_time, sqlite_time};
use crate::store::followups::{ENGINE, item};
use crate::store::{
    Act, Acted, Change, ChangeKind, Followup, Followups, Fut, ListQuery, NewAlert, Notice, NoticeMessage,
    NoticesPurged, Reason, StatusFilter, StoreError,
};
use crate::types::Severity;

/// Writes an alert, and opens the patient's follow-up item or joins the one still open, in the
/// caller's transaction. An alert with no patient, or one that opens no item, is only written.
pub(super) fn raise_in(
    tx: &Connection,
    patient_id: Option<&str>,
    call_id: Option<i64>,
    alert: &NewAlert,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let t = sqlite_time(at);
    let alert_id: i64 = tx
        .prepare_cached(
            "insert into alerts (patient_id, call_id, reason, created_at) values (?1, ?2, ?3, ?4) returning alert_id",
        )?
        .query_row(params![patient_id, call_id, alert.text, t], |r| r.get(0))?;
    let (Some(patient_id), Some(severity)) = (patient_id, alert.opens) else { return Ok(()) };
    let followup_id: i64 = tx
        .prepare_cached(
            "insert into followups (patient_id, status, urgency, opened_at, version, change, changed_by, changed_at)
             values (?1, 'open', ?2, ?3, 1, 'opened', ?4, ?3)
             on conflict (patient_id) where status <> 'closed' do update set
               urgency = max(urgency, excluded.urgency), version = version + 1,
               change = 'joined', changed_by = excluded.changed_by, changed_at = excluded.changed_at
             returning followup_id",
        )?
        .query_row(params![patient_id, severity.rank(), t, ENGINE], |r| r.get(0))?;
    tx.prepare_cached(
        "insert into followup_reasons (followup_id, alert_id, kind, reason, urgency, call_id, created_at)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![followup_id, alert_id, alert.kind, alert.reason, severity.rank(), call_id, t])?;
    Ok(())
}

const COLUMNS: &str = "f.followup_id, f.patient_id, f.status, f.urgency, f.opened_at, f.claimed_by, f.claimed_at,
    f.closed_by, f.closed_at, f.outcome, f.note, f.version, f.change, f.changed_by, f.changed_at, coalesce(p.name, '')";

fn row(r: &Row<'_>) -> rusqlite::Result<Followup> {
    let time = |i: usize| -> rusqlite::Result<DateTime<Utc>> { Ok(parse_sqlite_time(&r.get::<_, String>(i)?)) };
    let opt_time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(r.get::<_, Option<String>>(i)?.map(|s| parse_sqlite_time(&s)))
    };
    Ok(item(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        time(4)?,
        (r.get(5)?, opt_time(6)?),
        (r.get(7)?, opt_time(8)?, r.get(9)?, r.get(10)?),
        r.get(11)?,
        Change { what: ChangeKind::parse(&r.get::<_, String>(12)?), by: r.get(13)?, at: time(14)? },
        r.get(15)?,
    ))
}

fn with_reasons(conn: &Connection, mut f: Followup) -> Result<Followup, StoreError> {
    let mut st = conn.prepare_cached(
        "select alert_id, kind, reason, urgency, call_id, created_at from followup_reasons
         where followup_id = ?1 order by created_at, rowid",
    )?;
    let rows = st.query_map([f.followup_id], |r| {
        Ok(Reason {
            alert_id: r.get(0)?,
            kind: r.get(1)?,
            reason: r.get(2)?,
            severity: Severity::of_rank(r.get(3)?),
            call_id: r.get(4)?,
            at: parse_sqlite_time(&r.get::<_, String>(5)?),
        })
    })?;
    f.reasons = rows.collect::<Result<_, _>>()?;
    Ok(f)
}

fn get(conn: &Connection, followup_id: i64) -> Result<Option<Followup>, StoreError> {
    let f = conn
        .prepare_cached(&format!("select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id where f.followup_id = ?1"))?
        .query_row([followup_id], row)
        .optional()?;
    f.map(|f| with_reasons(conn, f)).transpose()
}

fn open_for(conn: &Connection, patient_id: &str) -> Result<Option<Followup>, StoreError> {
    let f = conn
        .prepare_cached(&format!("select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id where f.patient_id = ?1 and f.status <> 'closed'"))?
        .query_row([patient_id], row)
        .optional()?;
    f.map(|f| with_reasons(conn, f)).transpose()
}

fn list(conn: &Connection, q: &ListQuery) -> Result<Vec<Followup>, StoreError> {
    // The active queue is written as the partial index `followups_active` says (`status <>
    // 'closed'`), so the index gives its order and the page stops after `limit` rows; a
    // patient's items are found on `followups_patient` (a `?4 is null or …` would scan).
    let active = matches!(q.status, StatusFilter::Active);
    let statuses: &[&str] = if active { &[] } else { q.status.statuses() };
    let placeholders: Vec<String> = (0..statuses.len()).map(|i| format!("?{}", i + 5)).collect();
    let status =
        if active { "f.status <> 'closed'".to_string() } else { format!("f.status in ({})", placeholders.join(", ")) };
    let patient = if q.patient.is_some() { "f.patient_id = ?4" } else { "?4 is null" };
    let sql = format!(
        "select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id
         where {status} and (?1 is null or p.area = ?1) and {patient}
         order by f.urgency desc, f.opened_at, f.followup_id limit ?2 offset ?3"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&q.area, &q.limit, &q.offset, &q.patient];
    for s in statuses {
        args.push(s);
    }
    let items: Vec<Followup> = st.query_map(args.as_slice(), row)?.collect::<Result<_, _>>()?;
    items.into_iter().map(|f| with_reasons(conn, f)).collect()
}

fn act(conn: &mut Connection, followup_id: i64, act: &Act) -> Result<Acted, StoreError> {
    // The writer thread serialises SQLite's writes; the version check in the update is the same
    // compare-and-set as on PostgreSQL.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(item) = get(&tx, followup_id)? else { return Ok(Acted::Unknown) };
    let next = match crate::store::followups::decide(&item, act) {
        Err(refusal) => return Ok(Acted::Refused(refusal)),
        Ok(None) => return Ok(Acted::Done(item)),
        Ok(Some(next)) => next,
    };
    let n = tx
        .prepare_cached(
            "update followups set status = ?3, claimed_by = ?4, claimed_at = ?5, closed_by = ?6, closed_at = ?7,
               outcome = ?8, note = ?9, version = ?10, change = ?11, changed_by = ?12, changed_at = ?13
             where followup_id = ?1 and version = ?2",
        )?
        .execute(params![
            followup_id,
            item.version,
            next.status,
            next.claimed_by,
            next.claimed_at.map(sqlite_time),
            next.closed_by,
            next.closed_at.map(sqlite_time),
            next.outcome,
            next.note,
            next.version,
            next.last.what.as_str(),
            next.last.by,
            sqlite_time(next.last.at),
        ])?;
    if n != 1 {
        return Err(StoreError::Turn("a follow-up item changed inside its own transaction".into()));
    }
    tx.commit()?;
    Ok(Acted::Done(next))
}

fn raise(conn: &mut Connection, patient_id: &str, alert: &NewAlert, at: DateTime<Utc>) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    raise_in(&tx, Some(patient_id), None, alert, at)?;
    tx.commit()?;
    Ok(())
}

fn notice_row(r: &Row<'_>) -> rusqlite::Result<Notice> {
    Ok(Notice {
        followup_id: r.get(0)?,
        step: r.get(1)?,
        list_index: r.get(2)?,
        list_name: r.get(3)?,
        sent_at: parse_sqlite_time(&r.get::<_, String>(4)?),
    })
}

fn notices(conn: &Connection, followup_id: i64) -> Result<Vec<Notice>, StoreError> {
    let mut st = conn.prepare_cached(
        "select followup_id, step, list_index, list_name, sent_at from urgent_notices where followup_id = ?1
         order by step",
    )?;
    let rows = st.query_map([followup_id], notice_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn urgent_open(conn: &Connection, limit: i64) -> Result<Vec<(Followup, Option<Notice>)>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id where f.status = 'open' and f.urgency >= ?1
         order by f.opened_at, f.followup_id limit ?2"
    ))?;
    let items: Vec<Followup> = st.query_map(params![Severity::Urgent.rank(), limit], row)?.collect::<Result<_, _>>()?;
    items
        .into_iter()
        .map(|f| {
            let last = notices(conn, f.followup_id)?.pop();
            Ok((with_reasons(conn, f)?, last))
        })
        .collect()
}

fn notify_urgent(conn: &mut Connection, n: &Notice, messages: &[NoticeMessage]) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let open: bool = tx
        .prepare_cached("select count(*) from followups where followup_id = ?1 and status = 'open' and urgency >= ?2")?
        .query_row(params![n.followup_id, Severity::Urgent.rank()], |r| r.get::<_, i64>(0))?
        > 0;
    if !open {
        return Ok(false);
    }
    let written = tx
        .prepare_cached(
            "insert into urgent_notices (followup_id, step, list_index, list_name, messages, sent_at)
             values (?1, ?2, ?3, ?4, ?5, ?6) on conflict do nothing",
        )?
        .execute(params![
            n.followup_id,
            n.step,
            n.list_index,
            n.list_name,
            messages.len() as i64,
            sqlite_time(n.sent_at)
        ])?;
    if written == 0 {
        return Ok(false);
    }
    for m in messages {
        tx.prepare_cached(
            "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
             values (null, null, ?1, ?2, ?3, ?4)",
        )?
        .execute(params![m.channel, m.recipient, m.body_sealed, sqlite_time(m.due)])?;
    }
    tx.commit()?;
    Ok(true)
}

/// The notices of closed items sent before the cut-off.
const OLD_NOTICES: &str = "from urgent_notices where sent_at < ?1
     and followup_id in (select followup_id from followups where status = 'closed')";
/// The notices' messages (no patient, no number) made before the cut-off and out of hand.
const OLD_NOTICE_MESSAGES: &str = "from outbox where patient_id is null and number_id is null
     and created_at < ?1 and status not in ('pending', 'sending')";

fn purge_notices(conn: &mut Connection, before: DateTime<Utc>, dry_run: bool) -> Result<NoticesPurged, StoreError> {
    let cut = sqlite_time(before);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let count = |from: &str| -> Result<u64, StoreError> {
        Ok(tx.query_row(&format!("select count(*) {from}"), [&cut], |r| r.get::<_, i64>(0))? as u64)
    };
    let purged = if dry_run {
        NoticesPurged { notices: count(OLD_NOTICES)?, messages: count(OLD_NOTICE_MESSAGES)? }
    } else {
        NoticesPurged {
            notices: tx.execute(&format!("delete {OLD_NOTICES}"), [&cut])? as u64,
            messages: tx.execute(&format!("delete {OLD_NOTICE_MESSAGES}"), [&cut])? as u64,
        }
    };
    tx.commit()?;
    Ok(purged)
}

impl Followups for SqliteStore {
    fn list<'a>(&'a self, q: &'a ListQuery) -> Fut<'a, Vec<Followup>> {
        let q = q.clone();
        self.read(move |c| list(c, &q))
    }

    fn get(&self, followup_id: i64) -> Fut<'_, Option<Followup>> {
        self.read(move |c| get(c, followup_id))
    }

    fn open_for<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Option<Followup>> {
        let patient_id = patient_id.to_owned();
        self.read(move |c| open_for(c, &patient_id))
    }

    fn act<'a>(&'a self, followup_id: i64, a: &'a Act) -> Fut<'a, Acted> {
        let a = a.clone();
        self.write(move |c| act(c, followup_id, &a))
    }

    fn raise<'a>(&'a self, patient_id: &'a str, alert: &'a NewAlert, at: DateTime<Utc>) -> Fut<'a, ()> {
        let (patient_id, alert) = (patient_id.to_owned(), alert.clone());
        self.write(move |c| raise(c, &patient_id, &alert, at))
    }

    fn urgent_open(&self, limit: i64) -> Fut<'_, Vec<(Followup, Option<Notice>)>> {
        self.read(move |c| urgent_open(c, limit))
    }

    fn notify_urgent<'a>(&'a self, notice: &'a Notice, messages: &'a [NoticeMessage]) -> Fut<'a, bool> {
        let (notice, messages) = (notice.clone(), messages.to_vec());
        self.write(move |c| notify_urgent(c, &notice, &messages))
    }

    fn notices(&self, followup_id: i64) -> Fut<'_, Vec<Notice>> {
        self.read(move |c| notices(c, followup_id))
    }

    fn purge_notices(&self, before: DateTime<Utc>, dry_run: bool) -> Fut<'_, NoticesPurged> {
        self.write(move |c| purge_notices(c, before, dry_run))
    }
}
