//! The PostgreSQL back end (sqlx): the same operations as SQLite; a turn locks its call row
//! with `select … for update`, so instances serving the same call take turns.
//!
//! Every turn runs at READ COMMITTED (forced at connection start-up, whatever the server's
//! default): a turn that waited for another's lock must see, in its next statement, the row and
//! the event that turn committed, and must not fail with a serialization error instead.
//!
//! Orderings name the "C" collation: byte order, as SQLite's default (BINARY) and `str` compare,
//! whatever collation the database was created with (`en_US.UTF-8` puts `p1` before `P2`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Executor, PgConnection, PgPool, Row};

use super::{Answer, CallRecord, ImportCount, Job, NewCall, Patient, StoreError, TurnFn, TurnResult, TurnWrite};
use super::{answer_columns, answer_value};

/// Numbered migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "calls", include_str!("../../migrations/postgres/0001_calls.sql")),
    (2, "processing_numbers", include_str!("../../migrations/postgres/0002_processing_numbers.sql")),
    (3, "number_lookup", include_str!("../../migrations/postgres/0003_number_lookup.sql")),
    (4, "roster", include_str!("../../migrations/postgres/0004_roster.sql")),
    (5, "campaigns", include_str!("../../migrations/postgres/0005_campaigns.sql")),
    (6, "delivery_fallback", include_str!("../../migrations/postgres/0006_delivery_fallback.sql")),
    (7, "flow_versions", include_str!("../../migrations/postgres/0007_flow_versions.sql")),
];

/// The advisory lock that instances starting at the same time take in turn to migrate (a key
/// unlikely to collide with other users of advisory locks in the same database).
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"ivr-migr");

const CALL_COLUMNS: &str = "call_id, call_sid, patient_id, job_id, direction, flow, flow_version, state, seq, ended, incomplete, status, duration";

const PATIENT_COLUMNS: &str =
    "patient_id, name, phone, birth_md, language, email, area, care_start, care_end, call_slot";

/// The patient columns a roster import sets (every one but the timestamps).
const PATIENT_UPDATE: &str = "name = excluded.name, phone = excluded.phone, birth_md = excluded.birth_md,
    language = excluded.language, email = excluded.email, area = excluded.area,
    care_start = excluded.care_start, care_end = excluded.care_end, call_slot = excluded.call_slot";

/// Patients written per statement of an import: ten arrays of this many values each.
const IMPORT_BATCH: usize = 5000;

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    /// Connects (one connection now, up to 16 as needed).
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        // The backslash keeps the space inside the value of a start-up option.
        let options = PgConnectOptions::from_str(url)?.options([("default_transaction_isolation", "read\\ committed")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A webhook waiting longer than this for a connection gets an apology rather than
            // hanging until the carrier gives up.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }

    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            // Held until commit: a second instance starting now waits here, then finds the
            // migration recorded.
            sqlx::query("select pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
            // Checked rather than `create table if not exists`, which logs a notice every time.
            let table: bool =
                sqlx::query_scalar("select to_regclass('schema_migrations') is not null").fetch_one(&mut *tx).await?;
            if !table {
                sqlx::query(
                    "create table schema_migrations (version bigint primary key, name text not null,
                       applied_at timestamptz not null default now())",
                )
                .execute(&mut *tx)
                .await?;
            }
            let done: bool = sqlx::query_scalar("select exists(select 1 from schema_migrations where version = $1)")
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
            if !done {
                // Several statements: the simple query protocol, no parameters. Called through
                // `Executor` (a boxed `Send` future): `RawSql::execute`, generic over the executor,
                // makes `migrate`'s future fail the `Send` check that `tokio::spawn` needs.
                tx.execute(sqlx::raw_sql(sql)).await?;
                sqlx::query("insert into schema_migrations (version, name, applied_at) values ($1, $2, now())")
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                applied += 1;
            }
            tx.commit().await?;
        }
        Ok(applied)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn upsert_patient(&self, p: &Patient) -> Result<(), StoreError> {
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
        .bind(&p.care_start)
        .bind(&p.care_end)
        .bind(&p.call_slot)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Each batch is one statement over arrays (`unnest`): a row comes back for each patient
    /// inserted or changed, `xmax = 0` for the inserted ones; an unchanged patient matches the
    /// conflict but not the `where`, and comes back not at all. Patient ids are unique here
    /// (the store's caller keeps the last of each).
    pub async fn import_patients(&self, patients: &[Patient]) -> Result<ImportCount, StoreError> {
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
            let inserted: Vec<bool> = sqlx::query_scalar(&sql)
                .bind(column(|p| Some(&p.patient_id)))
                .bind(column(|p| Some(&p.name)))
                .bind(column(|p| Some(&p.phone)))
                .bind(column(|p| p.birth_md.as_ref()))
                .bind(column(|p| Some(&p.language)))
                .bind(column(|p| p.email.as_ref()))
                .bind(column(|p| p.area.as_ref()))
                .bind(column(|p| p.care_start.as_ref()))
                .bind(column(|p| p.care_end.as_ref()))
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

    pub async fn patients(&self) -> Result<Vec<Patient>, StoreError> {
        let rows = sqlx::query(&format!("select {PATIENT_COLUMNS} from patients order by patient_id collate \"C\""))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(patient_row).collect::<Result<_, _>>()?)
    }

    pub async fn patient(&self, id: &str) -> Result<Option<Patient>, StoreError> {
        let row = sqlx::query(&format!("select {PATIENT_COLUMNS} from patients where patient_id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| patient_row(&r)).transpose()?)
    }

    pub async fn patient_by_phone(&self, phone: &str) -> Result<Option<Patient>, StoreError> {
        let row = sqlx::query(&format!(
            "select {PATIENT_COLUMNS} from patients where phone = $1 order by patient_id collate \"C\" limit 1"
        ))
        .bind(phone)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| patient_row(&r)).transpose()?)
    }

    pub async fn create_job(&self, patient_id: &str, flow: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("insert into jobs (patient_id, flow) values ($1, $2) returning job_id")
            .bind(patient_id)
            .bind(flow)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn job(&self, job_id: i64) -> Result<Option<Job>, StoreError> {
        let row: Option<(i64, String, String, String)> =
            sqlx::query_as("select job_id, patient_id, flow, status from jobs where job_id = $1")
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(job_id, patient_id, flow, status)| Job { job_id, patient_id, flow, status }))
    }

    pub async fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError> {
        let row = sqlx::query(&format!("select {CALL_COLUMNS} from calls where call_sid = $1"))
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| call_row(&r)).transpose()
    }

    pub async fn turn(
        &self,
        sid: &str,
        seq: i64,
        create: Option<NewCall>,
        mut f: TurnFn,
    ) -> Result<TurnResult, StoreError> {
        // Dropped without a commit (any early return or error below), the transaction rolls back.
        let mut tx = self.pool.begin().await?;
        let call = match lock_call(&mut tx, sid).await? {
            Some(c) => c,
            None => match create {
                Some(new) => {
                    // Two instances may receive the same first webhook at once. The second insert
                    // waits for the first transaction and then does nothing; the second turn then
                    // locks the call the first one committed and replays its response.
                    insert_call(&mut tx, &new).await?;
                    lock_call(&mut tx, sid).await?.ok_or_else(|| StoreError::UnknownCall(sid.into()))?
                }
                None => return Err(StoreError::UnknownCall(sid.into())),
            },
        };
        if seq != call.seq + 1 {
            // A replay (or a request from the future): the stored answer, no effect.
            let wanted = seq.min(call.seq);
            let response: Option<String> =
                sqlx::query_scalar("select response from call_events where call_id = $1 and seq = $2")
                    .bind(call.call_id)
                    .bind(wanted)
                    .fetch_optional(&mut *tx)
                    .await?;
            return match response {
                Some(response) => Ok(TurnResult { response, replay: true, queued: false }),
                None => Err(StoreError::Turn(format!("turn {seq} of call {sid} is not stored"))),
            };
        }
        let mut collisions = 0;
        let w = loop {
            let w = f(&call).map_err(StoreError::Turn)?;
            match write_turn(&mut tx, &call, seq, &w).await {
                // The number's savepoint was rolled back and nothing else was written: step
                // again, drawing another number.
                Err(StoreError::Conflict) if collisions < 5 => collisions += 1,
                r => break r.map(|()| w)?,
            }
        };
        tx.commit().await?;
        Ok(TurnResult { queued: w.queues_messages(), response: w.response, replay: false })
    }

    pub async fn record_status(
        &self,
        sid: &str,
        status: &str,
        rank: i32,
        duration: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update calls set status = $2, status_rank = $3, duration = coalesce($4, duration),
               incomplete = case when $3 = 3 and not ended then true else incomplete end, updated_at = now()
             where call_sid = $1 and status_rank < $3",
        )
        .bind(sid)
        .bind(status)
        .bind(rank)
        .bind(duration)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn answers(&self, call_id: i64) -> Result<Vec<Answer>, StoreError> {
        let rows = sqlx::query(
            "select name, kind, value_text, value_raw, value_scale from answers where call_id = $1
             order by name collate \"C\"",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        let answer = |r: &PgRow| -> Result<Answer, sqlx::Error> {
            let kind: String = r.try_get(1)?;
            // `value_scale` is an `integer` in the schema.
            let scale = r.try_get::<Option<i32>, _>(4)?.map(i64::from);
            Ok(Answer { name: r.try_get(0)?, value: answer_value(&kind, r.try_get(2)?, r.try_get(3)?, scale) })
        };
        Ok(rows.iter().map(answer).collect::<Result<_, _>>()?)
    }

    pub async fn alerts(&self, call_id: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("select reason from alerts where call_id = $1 order by alert_id")
            .bind(call_id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn event_count(&self, call_id: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select count(*) from call_events where call_id = $1")
            .bind(call_id)
            .fetch_one(&self.pool)
            .await?)
    }
}

fn patient_row(r: &PgRow) -> Result<Patient, sqlx::Error> {
    Ok(Patient {
        patient_id: r.try_get(0)?,
        name: r.try_get(1)?,
        phone: r.try_get(2)?,
        birth_md: r.try_get(3)?,
        language: r.try_get(4)?,
        email: r.try_get(5)?,
        area: r.try_get(6)?,
        care_start: r.try_get(7)?,
        care_end: r.try_get(8)?,
        call_slot: r.try_get(9)?,
    })
}

fn call_row(r: &PgRow) -> Result<CallRecord, StoreError> {
    let state: String = r.try_get(7)?;
    Ok(CallRecord {
        call_id: r.try_get(0)?,
        call_sid: r.try_get(1)?,
        patient_id: r.try_get(2)?,
        job_id: r.try_get(3)?,
        direction: r.try_get(4)?,
        flow: r.try_get(5)?,
        flow_version: r.try_get(6)?,
        state: serde_json::from_str(&state)?,
        seq: r.try_get(8)?,
        ended: r.try_get(9)?,
        incomplete: r.try_get(10)?,
        status: r.try_get(11)?,
        // `integer` in the schema.
        duration: r.try_get::<Option<i32>, _>(12)?.map(i64::from),
    })
}

/// The call, its row locked until the transaction ends.
async fn lock_call(tx: &mut PgConnection, sid: &str) -> Result<Option<CallRecord>, StoreError> {
    let row = sqlx::query(&format!("select {CALL_COLUMNS} from calls where call_sid = $1 for update"))
        .bind(sid)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| call_row(&r)).transpose()
}

async fn insert_call(tx: &mut PgConnection, new: &NewCall) -> Result<(), StoreError> {
    sqlx::query(
        "insert into calls (call_sid, patient_id, job_id, direction, flow, flow_version, state)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (call_sid) do nothing",
    )
    .bind(&new.call_sid)
    .bind(&new.patient_id)
    .bind(new.job_id)
    .bind(&new.direction)
    .bind(&new.state.flow)
    .bind(&new.state.version)
    .bind(serde_json::to_string(&new.state)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_turn(tx: &mut PgConnection, call: &CallRecord, seq: i64, w: &TurnWrite) -> Result<(), StoreError> {
    // The number first, in a savepoint: a collision rolls back only the number's statements
    // (an error would otherwise abort the whole transaction), and the turn can step again.
    if let Some(n) = &w.issue {
        let mut sp = sqlx::Connection::begin(&mut *tx).await?;
        match insert_number(&mut sp, Some(call.call_id), n, None).await {
            Ok(_) => sp.commit().await?,
            Err(e) => {
                sp.rollback().await?;
                return Err(e);
            }
        }
    }
    let state = match &w.state {
        Some(s) => serde_json::to_string(s)?,
        None => serde_json::to_string(&call.state)?,
    };
    // One statement (one round trip) for the call's state, the turn's event and its answers.
    // An answer named twice counts once, the last one, as upserting them one by one did.
    let (mut names, mut kinds, mut texts, mut raws, mut scales) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, (name, v)) in w.answers.iter().enumerate() {
        if w.answers[i + 1..].iter().any(|(later, _)| later == name) {
            continue;
        }
        let (kind, text, raw, scale) = answer_columns(v);
        names.push(name.as_str());
        kinds.push(kind);
        texts.push(text);
        raws.push(raw);
        // `value_scale` is an `integer` in the schema.
        scales.push(scale.map(|s| s as i32));
    }
    sqlx::query(
        "with turned as (
           update calls set state = $2, seq = $3, ended = ended or $4, updated_at = now() where call_id = $1
         ), event as (
           insert into call_events (call_id, seq, state, input, response) values ($1, $3, $5, $6, $7)
         )
         insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale)
         select $1, $8, a.name, a.kind, a.value_text, a.value_raw, a.value_scale
         from unnest($9::text[], $10::text[], $11::text[], $12::bigint[], $13::integer[])
           with ordinality as a (name, kind, value_text, value_raw, value_scale, n)
         order by a.n
         on conflict (call_id, name) do update set kind = excluded.kind, value_text = excluded.value_text,
           value_raw = excluded.value_raw, value_scale = excluded.value_scale, created_at = now()",
    )
    .bind(call.call_id)
    .bind(state)
    .bind(seq)
    .bind(w.ended)
    .bind(&w.event_state)
    .bind(&w.event_input)
    .bind(w.stored_response.as_ref().unwrap_or(&w.response))
    .bind(&call.patient_id)
    .bind(names)
    .bind(kinds)
    .bind(texts)
    .bind(raws)
    .bind(scales)
    .execute(&mut *tx)
    .await?;
    for m in &w.messages {
        sqlx::query(
            "insert into outbox (patient_id, channel, recipient, body_sealed, next_attempt_at)
             values ($1, $2, $3, $4, now())",
        )
        .bind(&call.patient_id)
        .bind(&m.channel)
        .bind(&m.recipient)
        .bind(&m.body_sealed)
        .execute(&mut *tx)
        .await?;
    }
    if w.number_read {
        let read: Option<i64> = sqlx::query_scalar(
            "update processing_numbers set read_pending = false where patient_id = $1 and read_pending
             returning number_id",
        )
        .bind(&call.patient_id)
        .fetch_optional(&mut *tx)
        .await?;
        if read.is_some() {
            audit(tx, "call", "read", read, "read aloud on the next call").await?;
        }
    }
    for reason in &w.alerts {
        sqlx::query("insert into alerts (patient_id, call_id, reason) values ($1, $2, $3)")
            .bind(&call.patient_id)
            .bind(call.call_id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

// ---- processing numbers, tokens and the outbox ----

/// (number_id, patient_id, consent_call_id, consent_seq, consent_staff) of a late message's number.
type LateRow = (i64, String, Option<i64>, Option<i64>, Option<String>);

use chrono::{DateTime, Utc};

use super::{Consent, Fallback, Issued, LateMessage, NewNumber, OutboxMessage, SendResult, ValidNumber, Verdict};
use super::{LATE_DEAD_ALERT, REISSUED_ALERT};

/// The unique index that keeps one replacement per expired number.
const REISSUE_INDEX: &str = "processing_numbers_reissue";

/// The unique index that keeps one valid number per hash.
const VALID_HASH_INDEX: &str = "processing_numbers_valid";
/// The unique index that keeps one number per consent in a call.
const CONSENT_INDEX: &str = "processing_numbers_consent";

/// The SQLSTATE and constraint of a failed statement, when the database refused it.
fn violation(e: &sqlx::Error) -> Option<(String, Option<String>)> {
    match e {
        sqlx::Error::Database(db) => Some((db.code()?.into_owned(), db.constraint().map(str::to_owned))),
        _ => None,
    }
}

/// Records a number (and its message): expires numbers whose time is up, revokes the
/// patient's previous number, inserts. A hash equal to a valid number's is a
/// [`StoreError::Conflict`]; the caller rolls back (a savepoint in a turn), since a failed
/// statement aborts a PostgreSQL transaction.
async fn insert_number(
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
        return Err(StoreError::UnknownPatient(n.patient_id.clone()));
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
    let (seq, staff) = match &n.consent {
        Consent::Call { seq } => (Some(*seq), None),
        Consent::Staff { name } => (None, Some(name.as_str())),
    };
    let channel = if staff.is_some() { "staff" } else { "call" };
    let inserted = sqlx::query_scalar(
        "insert into processing_numbers (patient_id, number_hash, sealed, issued_at, expires_at,
           consent_channel, consent_call_id, consent_seq, consent_staff, delivery, reissue_of)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
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
    .bind(&n.delivery)
    .bind(reissue_of)
    .fetch_one(&mut *tx)
    .await;
    let number_id: i64 = match inserted {
        Ok(id) => id,
        Err(e) => {
            return Err(match violation(&e) {
                Some((code, Some(c))) if code == "23505" && c == VALID_HASH_INDEX => StoreError::Conflict,
                Some((code, Some(c))) if code == "23505" && c == CONSENT_INDEX => StoreError::Duplicate(format!(
                    "processing number for turn {} of call {}",
                    seq.unwrap_or_default(),
                    call_id.unwrap_or_default()
                )),
                Some((code, Some(c))) if code == "23505" && c == REISSUE_INDEX => {
                    StoreError::Duplicate(format!("replacement for number {}", reissue_of.unwrap_or_default()))
                }
                _ => e.into(),
            });
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
            .bind(&m.channel)
            .bind(&m.recipient)
            .bind(&m.body_sealed)
            .bind(n.issued_at)
            .fetch_one(&mut *tx)
            .await?,
        ),
        None => None,
    };
    audit(tx, channel_actor(&n.consent), "issue", Some(number_id), &format!("delivery {}", n.delivery)).await?;
    Ok(Issued { number_id, message_id })
}

fn channel_actor(c: &Consent) -> &str {
    match c {
        Consent::Call { .. } => "call",
        Consent::Staff { name } => name,
    }
}

async fn audit(
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

impl PgStore {
    /// Issues a number outside a call (the manual path), in one transaction.
    pub async fn issue_number(&self, n: &NewNumber) -> Result<Issued, StoreError> {
        let mut tx = self.pool.begin().await?;
        let issued = insert_number(&mut tx, None, n, None).await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// The patient's number that is still valid at `now`.
    pub async fn valid_number(&self, patient_id: &str, now: DateTime<Utc>) -> Result<Option<ValidNumber>, StoreError> {
        let row: Option<(i64, DateTime<Utc>, Option<String>, bool)> = sqlx::query_as(
            "select number_id, expires_at, sealed, read_pending from processing_numbers
             where patient_id = $1 and status = 'valid' and expires_at > $2 order by number_id desc limit 1",
        )
        .bind(patient_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(number_id, expires_at, sealed, read_pending)| ValidNumber {
            number_id,
            expires_at,
            sealed,
            read_pending,
        }))
    }

    /// Looks a number up by its hash; with `consume`, a valid number becomes used. The row is
    /// locked: concurrent attempts wait, then read the status the first one wrote (`used`), so
    /// a number is consumed exactly once. Every attempt is in the audit log.
    pub async fn verify_number(
        &self,
        hash: &str,
        now: DateTime<Utc>,
        actor: &str,
        consume: bool,
    ) -> Result<Verdict, StoreError> {
        let mut tx = self.pool.begin().await?;
        let lookup = "select number_id, patient_id, status, issued_at, expires_at from processing_numbers
             where number_hash = $1 order by (status = 'valid') desc, number_id desc limit 1";
        let sql = if consume { format!("{lookup} for update") } else { lookup.to_string() };
        let row = sqlx::query(&sql).bind(hash).fetch_optional(&mut *tx).await?;
        let verdict = match row {
            None => Verdict::Unknown,
            Some(r) => match r.try_get::<&str, _>(2)? {
                "used" => Verdict::Used,
                "revoked" => Verdict::Revoked,
                "expired" => Verdict::Expired,
                _ if r.try_get::<DateTime<Utc>, _>(4)? <= now => Verdict::Expired,
                _ => {
                    let id: i64 = r.try_get(0)?;
                    if consume {
                        sqlx::query(
                            "update processing_numbers set status = 'used', used_at = $2, used_by = $3, sealed = null
                             where number_id = $1",
                        )
                        .bind(id)
                        .bind(now)
                        .bind(actor)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Verdict::Valid { number_id: id, patient_id: r.try_get(1)?, issued_at: r.try_get(3)? }
                }
            },
        };
        let number_id = match &verdict {
            Verdict::Valid { number_id, .. } => Some(*number_id),
            _ => None,
        };
        let action = if consume { "verify" } else { "check" };
        audit(&mut tx, actor, action, number_id, verdict.reason()).await?;
        tx.commit().await?;
        Ok(verdict)
    }

    pub async fn add_token(&self, name: &str, token_hash: &str) -> Result<(), StoreError> {
        let added = sqlx::query("insert into api_tokens (name, token_hash) values ($1, $2)")
            .bind(name)
            .bind(token_hash)
            .execute(&self.pool)
            .await;
        match added {
            Ok(_) => Ok(()),
            Err(e) if violation(&e).is_some_and(|(code, _)| code == "23505") => {
                Err(StoreError::Duplicate(format!("token '{name}'")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The name of the live token with this hash.
    pub async fn token_name(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("select name from api_tokens where token_hash = $1 and revoked_at is null")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Claims up to `limit` messages due at `now` for `lease_until`, and commits: a sender that
    /// dies leaves its lease to run out, it never holds a transaction while sending. Rows
    /// another sender is claiming are skipped, not waited for, and never claimed twice.
    pub async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
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
               update outbox o set status = 'sending', lease_until = $2, attempts = o.attempts + 1, updated_at = $1
               from due where o.message_id = due.message_id
               returning o.message_id, o.patient_id, o.number_id, o.channel, o.recipient, o.body_sealed,
                 o.attempts - 1 as attempts, o.next_attempt_at
             )
             select message_id, patient_id, number_id, channel, recipient, body_sealed, attempts::bigint
             from claimed order by next_attempt_at, message_id",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let message = |r: &PgRow| -> Result<OutboxMessage, sqlx::Error> {
            Ok(OutboxMessage {
                message_id: r.try_get(0)?,
                patient_id: r.try_get(1)?,
                number_id: r.try_get(2)?,
                channel: r.try_get(3)?,
                recipient: r.try_get(4)?,
                body_sealed: r.try_get(5)?,
                attempts: r.try_get(6)?,
            })
        };
        Ok(rows.iter().map(message).collect::<Result<_, _>>()?)
    }

    /// Records how a send ended. A failed or dead message raises an alert for the health centre.
    pub async fn finish_message(
        &self,
        message_id: i64,
        result: &SendResult,
        now: DateTime<Utc>,
    ) -> Result<Option<Fallback>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut fallback = None;
        match result {
            SendResult::Undeliverable { error, email } => {
                fallback = fall_back(&mut tx, message_id, error, *email, now).await?;
            }
            SendResult::Sent { provider_id, status } => {
                sqlx::query(
                    // Only a message still in hand: a delivery callback that came first (and
                    // perhaps said `failed`) is not overwritten by the sender's late record.
                    "update outbox set status = 'sent', provider_id = $2, last_error = $3, lease_until = null,
                       updated_at = $4
                     where message_id = $1 and status in ('sending', 'pending')",
                )
                .bind(message_id)
                .bind(provider_id)
                .bind(status)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            SendResult::Retry { error, at } => {
                sqlx::query(
                    "update outbox set status = 'pending', next_attempt_at = $2, last_error = $3, lease_until = null,
                       updated_at = $4
                     where message_id = $1",
                )
                .bind(message_id)
                .bind(at)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            SendResult::Failed { error, dead } => {
                let status = if *dead { "dead" } else { "failed" };
                sqlx::query(
                    "update outbox set status = $2, last_error = $3, lease_until = null, body_sealed = '',
                       updated_at = $4
                     where message_id = $1",
                )
                .bind(message_id)
                .bind(status)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "insert into alerts (patient_id, reason) select patient_id, $2 from outbox where message_id = $1",
                )
                .bind(message_id)
                .bind(format!("message_{status}: {error}"))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(fallback)
    }

    /// Pending messages due at `now` whose number expired before they could be sent.
    pub async fn late_messages(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<LateMessage>, StoreError> {
        let rows: Vec<(i64, String, i64, String, String, bool)> = sqlx::query_as(
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
    }

    /// Replaces a late message's number with `fresh`, or dead-letters it; see
    /// [`super::Store::replace_late`]. The message row is locked: a second sender waits, then
    /// finds it no longer pending.
    pub async fn replace_late(
        &self,
        message_id: i64,
        fresh: Option<&NewNumber>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
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
        let (status, reason) = if fresh.is_some() { ("cancelled", REISSUED_ALERT) } else { ("dead", LATE_DEAD_ALERT) };
        sqlx::query(
            "update outbox set status = $2, body_sealed = '', last_error = 'expired before delivery',
               lease_until = null, updated_at = $3
             where message_id = $1",
        )
        .bind(message_id)
        .bind(status)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        match fresh {
            Some(n) => {
                let consent = match (seq, staff) {
                    (Some(seq), _) if call_id.is_some() => Consent::Call { seq },
                    (_, staff) => Consent::Staff { name: staff.unwrap_or_default() },
                };
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
        sqlx::query("insert into alerts (patient_id, reason) values ($1, $2)")
            .bind(&patient_id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Messages whose sender's lease ran out: they may have gone out, so they wait until
    /// `resend_at` for a status callback, and are sent again only if none came.
    pub async fn release_expired_leases(
        &self,
        now: DateTime<Utc>,
        resend_at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let done = sqlx::query(
            "update outbox set status = 'pending', next_attempt_at = $2, lease_until = null,
               last_error = 'sender stopped mid-send', updated_at = $1
             where status = 'sending' and lease_until <= $1",
        )
        .bind(now)
        .bind(resend_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() as usize)
    }

    /// A delivery status from the provider's callback, by the provider's message id.
    pub async fn message_status(
        &self,
        provider_id: &str,
        status: &str,
        error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "update outbox set status = $2, last_error = coalesce($3, last_error), updated_at = now()
             where provider_id = $1 and status not in ('delivered') and fallback is null",
        )
        .bind(provider_id)
        .bind(status)
        .bind(error_code)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(true);
        }
        // Known: some message carries this provider id (even if a later status stood).
        let known: bool = sqlx::query_scalar("select exists(select 1 from outbox where provider_id = $1)")
            .bind(provider_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(known)
    }

    /// (channel, recipient, status, attempts) of a patient's messages, oldest first.
    pub async fn messages(&self, patient_id: &str) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "select channel, recipient, status, attempts::bigint from outbox where patient_id = $1
             order by message_id",
        )
        .bind(patient_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// (actor, action, detail) of the audit log, oldest first.
    pub async fn audit_log(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(sqlx::query_as("select actor, action, detail from audit_log order by audit_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Alert reasons for a patient.
    pub async fn patient_alerts(&self, patient_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("select reason from alerts where patient_id = $1 order by alert_id")
            .bind(patient_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// How many numbers are valid now (for tests and metrics).
    pub async fn valid_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select count(*) from processing_numbers where status = 'valid'")
            .fetch_one(&self.pool)
            .await?)
    }
}

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
    let fallback = match number {
        Some((_, Some(address))) if email_ok && address.contains('@') && !body.is_empty() => {
            sqlx::query(
                "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
                 values ($1, $2, 'email', $3, $4, $5)",
            )
            .bind(&patient_id)
            .bind(number_id)
            .bind(&address)
            .bind(&body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("update processing_numbers set delivery = 'email' where number_id = $1")
                .bind(number_id)
                .execute(&mut *tx)
                .await?;
            Fallback::Email
        }
        Some((true, _)) => {
            sqlx::query(
                "update processing_numbers set read_pending = true, delivery = 'read_aloud' where number_id = $1",
            )
            .bind(number_id)
            .execute(&mut *tx)
            .await?;
            Fallback::ReadAloud
        }
        _ => Fallback::None,
    };
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
    sqlx::query("insert into alerts (patient_id, reason) values ($1, $2)")
        .bind(&patient_id)
        .bind(fallback.alert(error))
        .execute(&mut *tx)
        .await?;
    Ok(Some(fallback))
}
