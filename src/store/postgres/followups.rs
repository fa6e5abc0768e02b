//! The follow-up queue on PostgreSQL. [`raise_in`] is the one writer of alerts: every alert
//! goes through it, in its caller's transaction, with the item it opens or joins. An action is
//! a compare-and-set on the item's version, so instances acting at once on one item never both
//! succeed: the loser reads the item again and is refused with what the winner did.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::store::followups::{ENGINE, decide, item};
use crate::store::fut;
use crate::store::{
    Act, Acted, Change, ChangeKind, Followup, Followups, Fut, ListQuery, NewAlert, Notice, NoticeMessage,
    NoticesPurged, Reason, StatusFilter, StoreError,
};
use crate::types::Severity;

/// Writes an alert, and opens the patient's follow-up item or joins the one still open, in the
/// caller's transaction. An alert with no patient, or one that opens no item, is only written.
/// Two transactions opening an item for one patient at once: the unique index makes the second
/// wait for the first, then join its item.
pub(super) async fn raise_in(
    tx: &mut PgConnection,
    patient_id: Option<&str>,
    call_id: Option<i64>,
    alert: &NewAlert,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let alert_id: i64 = sqlx::query_scalar(
        "insert into alerts (patient_id, call_id, reason, created_at) values ($1, $2, $3, $4) returning alert_id",
    )
    .bind(patient_id)
    .bind(call_id)
    .bind(&alert.text)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    let (Some(patient_id), Some(severity)) = (patient_id, alert.opens) else { return Ok(()) };
    let urgency = severity.rank() as i32;
    let followup_id: i64 = sqlx::query_scalar(
        "insert into followups (patient_id, status, urgency, opened_at, version, change, changed_by, changed_at)
         values ($1, 'open', $2, $3, 1, 'opened', $4, $3)
         on conflict (patient_id) where status <> 'closed' do update set
           urgency = greatest(followups.urgency, excluded.urgency), version = followups.version + 1,
           change = 'joined', changed_by = excluded.changed_by, changed_at = excluded.changed_at
         returning followup_id",
    )
    .bind(patient_id)
    .bind(urgency)
    .bind(at)
    .bind(ENGINE)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "insert into followup_reasons (followup_id, alert_id, kind, reason, urgency, call_id, created_at)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(followup_id)
    .bind(alert_id)
    .bind(alert.kind)
    .bind(&alert.reason)
    .bind(urgency)
    .bind(call_id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

const COLUMNS: &str = "f.followup_id, f.patient_id, f.status, f.urgency, f.opened_at, f.claimed_by, f.claimed_at,
    f.closed_by, f.closed_at, f.outcome, f.note, f.version, f.change, f.changed_by, f.changed_at, coalesce(p.name, '')";

fn row(r: &PgRow) -> Result<Followup, StoreError> {
    Ok(item(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        i64::from(r.try_get::<i32, _>(3)?),
        r.try_get(4)?,
        (r.try_get(5)?, r.try_get(6)?),
        (r.try_get(7)?, r.try_get(8)?, r.try_get(9)?, r.try_get(10)?),
        r.try_get(11)?,
        Change { what: ChangeKind::parse(r.try_get(12)?), by: r.try_get(13)?, at: r.try_get(14)? },
        r.try_get(15)?,
    ))
}

async fn with_reasons(conn: &mut PgConnection, mut items: Vec<Followup>) -> Result<Vec<Followup>, StoreError> {
    let ids: Vec<i64> = items.iter().map(|f| f.followup_id).collect();
    let rows = sqlx::query(
        "select followup_id, alert_id, kind, reason, urgency, call_id, created_at from followup_reasons
         where followup_id = any($1) order by created_at, ctid",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let reason = Reason {
            alert_id: r.try_get(1)?,
            kind: r.try_get(2)?,
            reason: r.try_get(3)?,
            severity: Severity::of_rank(i64::from(r.try_get::<i32, _>(4)?)),
            call_id: r.try_get(5)?,
            at: r.try_get(6)?,
        };
        if let Some(f) = items.iter_mut().find(|f| f.followup_id == id) {
            f.reasons.push(reason);
        }
    }
    Ok(items)
}

async fn one(conn: &mut PgConnection, sql: &str, key: Key<'_>) -> Result<Option<Followup>, StoreError> {
    let q = sqlx::query(sql);
    let q = match key {
        Key::Id(id) => q.bind(id),
        Key::Patient(p) => q.bind(p.to_owned()),
    };
    let Some(r) = q.fetch_optional(&mut *conn).await? else { return Ok(None) };
    Ok(with_reasons(conn, vec![row(&r)?]).await?.pop())
}

enum Key<'a> {
    Id(i64),
    Patient(&'a str),
}

async fn notices(conn: &mut PgConnection, followup_id: i64) -> Result<Vec<Notice>, StoreError> {
    let rows = sqlx::query(
        "select followup_id, step, list_index, list_name, sent_at from urgent_notices where followup_id = $1
         order by step",
    )
    .bind(followup_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Notice {
                followup_id: r.try_get(0)?,
                step: i64::from(r.try_get::<i32, _>(1)?),
                list_index: i64::from(r.try_get::<i32, _>(2)?),
                list_name: r.try_get(3)?,
                sent_at: r.try_get(4)?,
            })
        })
        .collect()
}

/// The notices of closed items sent before the cut-off.
const OLD_NOTICES: &str = "from urgent_notices where sent_at < $1
     and followup_id in (select followup_id from followups where status = 'closed')";
/// The notices' messages (no patient, no number) made before the cut-off and out of hand.
const OLD_NOTICE_MESSAGES: &str = "from outbox where patient_id is null and number_id is null
     and created_at < $1 and status not in ('pending', 'sending')";

fn by_id() -> String {
    format!(
        "select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id where f.followup_id = $1"
    )
}

impl Followups for PgStore {
    fn list<'a>(&'a self, q: &'a ListQuery) -> Fut<'a, Vec<Followup>> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            // As on SQLite: the active queue in the words of the partial index `followups_active`,
            // a patient's items by `followups_patient`; each parameter only where it is used, so
            // a cached statement's generic plan keeps using them.
            let active = matches!(q.status, StatusFilter::Active);
            let mut next = 4;
            let status = if active {
                "f.status <> 'closed'".to_string()
            } else {
                next += 1;
                "f.status = any($4)".to_string()
            };
            let patient = if q.patient.is_some() { format!("f.patient_id = ${next}") } else { "true".to_string() };
            let sql = format!(
                "select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id
                 where {status} and ($1::text is null or p.area = $1) and {patient}
                 order by f.urgency desc, f.opened_at, f.followup_id limit $2 offset $3"
            );
            let mut query = sqlx::query(&sql).bind(&q.area).bind(q.limit).bind(q.offset);
            if !active {
                query = query.bind(q.status.statuses().to_vec());
            }
            if let Some(patient) = &q.patient {
                query = query.bind(patient);
            }
            let rows = query.fetch_all(&mut *conn).await?;
            let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
            with_reasons(&mut conn, items).await
        })
    }

    fn get(&self, followup_id: i64) -> Fut<'_, Option<Followup>> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            one(&mut conn, &by_id(), Key::Id(followup_id)).await
        })
    }

    fn open_for<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Option<Followup>> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            let sql = format!(
                "select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id where f.patient_id = $1 and f.status <> 'closed'"
            );
            one(&mut conn, &sql, Key::Patient(patient_id)).await
        })
    }

    fn act<'a>(&'a self, followup_id: i64, act: &'a Act) -> Fut<'a, Acted> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            // Read, decide, compare-and-set; another instance's change in between makes the
            // update miss, and the action is decided again on the item as it now is.
            loop {
                let Some(item) = one(&mut conn, &by_id(), Key::Id(followup_id)).await? else {
                    return Ok(Acted::Unknown);
                };
                let next = match decide(&item, act) {
                    Err(refusal) => return Ok(Acted::Refused(refusal)),
                    Ok(None) => return Ok(Acted::Done(item)),
                    Ok(Some(next)) => next,
                };
                let done = sqlx::query(
                    "update followups set status = $3, claimed_by = $4, claimed_at = $5, closed_by = $6,
                       closed_at = $7, outcome = $8, note = $9, version = $10, change = $11, changed_by = $12,
                       changed_at = $13
                     where followup_id = $1 and version = $2",
                )
                .bind(followup_id)
                .bind(item.version)
                .bind(next.status)
                .bind(&next.claimed_by)
                .bind(next.claimed_at)
                .bind(&next.closed_by)
                .bind(next.closed_at)
                .bind(next.outcome)
                .bind(&next.note)
                .bind(next.version)
                .bind(next.last.what.as_str())
                .bind(&next.last.by)
                .bind(next.last.at)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(Acted::Done(next));
                }
            }
        })
    }

    fn raise<'a>(&'a self, patient_id: &'a str, alert: &'a NewAlert, at: DateTime<Utc>) -> Fut<'a, ()> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            raise_in(&mut tx, Some(patient_id), None, alert, at).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn urgent_open(&self, limit: i64) -> Fut<'_, Vec<(Followup, Option<Notice>)>> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query(&format!(
                "select {COLUMNS} from followups f left join patients p on p.patient_id = f.patient_id where f.status = 'open' and f.urgency >= $1
                 order by f.opened_at, f.followup_id limit $2"
            ))
            .bind(Severity::Urgent.rank() as i32)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
            let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
            let items = with_reasons(&mut conn, items).await?;
            let mut out = Vec::with_capacity(items.len());
            for f in items {
                let last = notices(&mut conn, f.followup_id).await?.pop();
                out.push((f, last));
            }
            Ok(out)
        })
    }

    fn notify_urgent<'a>(&'a self, n: &'a Notice, messages: &'a [NoticeMessage]) -> Fut<'a, bool> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            // The item's row is locked while the notice is written: a claim waits for it, and a
            // notice of an item claimed meanwhile is not written.
            let open: Option<i64> = sqlx::query_scalar(
                "select followup_id from followups where followup_id = $1 and status = 'open' and urgency >= $2
                 for update",
            )
            .bind(n.followup_id)
            .bind(Severity::Urgent.rank() as i32)
            .fetch_optional(&mut *tx)
            .await?;
            if open.is_none() {
                return Ok(false);
            }
            let written = sqlx::query(
                "insert into urgent_notices (followup_id, step, list_index, list_name, messages, sent_at)
                 values ($1, $2, $3, $4, $5, $6) on conflict do nothing",
            )
            .bind(n.followup_id)
            .bind(n.step as i32)
            .bind(n.list_index as i32)
            .bind(&n.list_name)
            .bind(messages.len() as i32)
            .bind(n.sent_at)
            .execute(&mut *tx)
            .await?;
            if written.rows_affected() == 0 {
                return Ok(false);
            }
            for m in messages {
                sqlx::query(
                    "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
                     values (null, null, $1, $2, $3, $4)",
                )
                .bind(m.channel)
                .bind(&m.recipient)
                .bind(&m.body_sealed)
                .bind(m.due)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    fn notices(&self, followup_id: i64) -> Fut<'_, Vec<Notice>> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            notices(&mut conn, followup_id).await
        })
    }

    fn purge_notices(&self, before: DateTime<Utc>, dry_run: bool) -> Fut<'_, NoticesPurged> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let purged = if dry_run {
                let count = |from: &'static str| format!("select count(*) {from}");
                let notices: i64 = sqlx::query_scalar(&count(OLD_NOTICES)).bind(before).fetch_one(&mut *tx).await?;
                let messages: i64 =
                    sqlx::query_scalar(&count(OLD_NOTICE_MESSAGES)).bind(before).fetch_one(&mut *tx).await?;
                NoticesPurged { notices: notices as u64, messages: messages as u64 }
            } else {
                let delete = |from: &'static str| format!("delete {from}");
                let notices = sqlx::query(&delete(OLD_NOTICES)).bind(before).execute(&mut *tx).await?;
                let messages = sqlx::query(&delete(OLD_NOTICE_MESSAGES)).bind(before).execute(&mut *tx).await?;
                NoticesPurged { notices: notices.rows_affected(), messages: messages.rows_affected() }
            };
            tx.commit().await?;
            Ok(purged)
        })
    }
}
