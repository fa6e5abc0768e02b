//! The SQLite back end: one connection in WAL mode behind a mutex (SQLite has one writer at a
//! time anyway), statements prepared once and cached. Turns go to a thread of their own that
//! commits every turn waiting in one `BEGIN IMMEDIATE` transaction ([`super::sqlite_writer`]).

use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::sqlite_writer::Writer;
use super::{Answer, CallRecord, ImportCount, Job, NewCall, Patient, StoreError, TurnFn, TurnResult, TurnWrite};
use super::{answer_columns, answer_value};

/// Numbered migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "calls", include_str!("../../migrations/sqlite/0001_calls.sql")),
    (2, "processing_numbers", include_str!("../../migrations/sqlite/0002_processing_numbers.sql")),
    (3, "number_lookup", include_str!("../../migrations/sqlite/0003_number_lookup.sql")),
    (4, "roster", include_str!("../../migrations/sqlite/0004_roster.sql")),
    (5, "campaigns", include_str!("../../migrations/sqlite/0005_campaigns.sql")),
    (6, "delivery_fallback", include_str!("../../migrations/sqlite/0006_delivery_fallback.sql")),
    (7, "flow_versions", include_str!("../../migrations/sqlite/0007_flow_versions.sql")),
];

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The thread that takes the turns, every turn waiting in one transaction. Dropping it
    /// lets the thread finish the turns queued and joins it.
    writer: Writer,
    /// Checkpoints the WAL of a database file; `None` for `:memory:`.
    _checkpointer: Option<Checkpointer>,
    /// The dialer's lock file beside the database; `None` for `:memory:`.
    pub(super) lock_path: Option<std::path::PathBuf>,
}

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// WAL frames after which the store's own connection checkpoints after a commit (SQLite's
/// default is 1,000). Under a steady stream of turns the checkpointer never finds the WAL
/// fully copied (a turn commits while it copies), so the WAL could not start over; this bound
/// lets it, about every 1,500 turns, at the cost of one short checkpoint on the turn path.
const WAL_AUTOCHECKPOINT: i64 = 10_000;

/// A thread with a connection of its own that checkpoints the WAL (`PASSIVE`: it never
/// blocks a turn) every [`CHECKPOINT_EVERY`]. The copy and its two `fsync`s were the turn's
/// largest cost when SQLite ran them inside a turn's commit every 1,000 frames (about every
/// 150 turns), with the store's lock held. Stops when the store is dropped.
struct Checkpointer {
    stop: std::sync::Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &str) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let stop = std::sync::Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    stopped = wake.wait_timeout(stopped, CHECKPOINT_EVERY).unwrap_or_else(|e| e.into_inner()).0;
                    if let Err(e) = conn.query_row("pragma wal_checkpoint(passive)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "sqlite checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|e| StoreError::Turn(format!("checkpoint thread: {e}")))?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const CALL_COLUMNS: &str = "call_id, call_sid, patient_id, job_id, direction, flow, flow_version, state, seq, ended, incomplete, status, duration";

fn call_row(r: &Row<'_>) -> rusqlite::Result<(CallRecord, String)> {
    let state: String = r.get(7)?;
    let call = CallRecord {
        call_id: r.get(0)?,
        call_sid: r.get(1)?,
        patient_id: r.get(2)?,
        job_id: r.get(3)?,
        direction: r.get(4)?,
        flow: r.get(5)?,
        flow_version: r.get(6)?,
        state: Default::default(), // parsed by the caller, outside the row closure
        seq: r.get(8)?,
        ended: r.get(9)?,
        incomplete: r.get(10)?,
        status: r.get(11)?,
        duration: r.get(12)?,
    };
    Ok((call, state))
}

fn patient_row(r: &Row<'_>) -> rusqlite::Result<Patient> {
    Ok(Patient {
        patient_id: r.get(0)?,
        name: r.get(1)?,
        phone: r.get(2)?,
        birth_md: r.get(3)?,
        language: r.get(4)?,
        email: r.get(5)?,
        area: r.get(6)?,
        care_start: r.get(7)?,
        care_end: r.get(8)?,
        call_slot: r.get(9)?,
    })
}

const PATIENT_COLUMNS: &str =
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

fn patient_params(p: &Patient) -> [&dyn rusqlite::ToSql; 10] {
    [
        &p.patient_id,
        &p.name,
        &p.phone,
        &p.birth_md,
        &p.language,
        &p.email,
        &p.area,
        &p.care_start,
        &p.care_end,
        &p.call_slot,
    ]
}

impl SqliteStore {
    /// Opens (creating) the database file; `:memory:` for a private in-memory database.
    pub fn open(path: &str, synchronous_full: bool) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        // NORMAL in WAL mode: a commit survives a crash of the process; FULL also a power loss.
        conn.pragma_update(None, "synchronous", if synchronous_full { "full" } else { "normal" })?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        conn.set_prepared_statement_cache_capacity(64);
        let in_memory = path.is_empty() || path == ":memory:" || path.starts_with("file::memory:");
        let checkpointer = if in_memory {
            None
        } else {
            conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
            Some(Checkpointer::start(path)?)
        };
        let conn = Arc::new(Mutex::new(conn));
        let writer = Writer::start(conn.clone())?;
        Ok(SqliteStore { conn, writer, _checkpointer: checkpointer, lock_path: super::leader::lock_path(path) })
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        conn.execute_batch(
            "create table if not exists schema_migrations (version integer primary key, name text not null, applied_at text not null)",
        )?;
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let done: bool =
                tx.query_row("select exists(select 1 from schema_migrations where version = ?1)", [version], |r| {
                    r.get(0)
                })?;
            if !done {
                tx.execute_batch(sql)?;
                tx.execute(
                    &format!("insert into schema_migrations (version, name, applied_at) values (?1, ?2, {NOW})"),
                    params![version, name],
                )?;
                applied += 1;
            }
            tx.commit()?;
        }
        Ok(applied)
    }

    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn().query_row("select 1", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn upsert_patient(&self, p: &Patient) -> Result<(), StoreError> {
        self.conn().prepare_cached(&upsert_sql(false))?.execute(&patient_params(p)[..])?;
        Ok(())
    }

    pub fn import_patients(&self, patients: &[Patient]) -> Result<ImportCount, StoreError> {
        let mut conn = self.conn();
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
                changed += st.execute(&patient_params(p)[..])?;
            }
        }
        let inserted = usize::try_from(count(&tx)? - before).unwrap_or(0);
        tx.commit()?;
        Ok(ImportCount { inserted, updated: changed - inserted, unchanged: patients.len() - changed })
    }

    pub fn patients(&self) -> Result<Vec<Patient>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!("select {PATIENT_COLUMNS} from patients order by patient_id"))?;
        let rows = st.query_map([], patient_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn patient(&self, id: &str) -> Result<Option<Patient>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!("select {PATIENT_COLUMNS} from patients where patient_id = ?1"))?;
        Ok(st.query_row([id], patient_row).optional()?)
    }

    pub fn patient_by_phone(&self, phone: &str) -> Result<Option<Patient>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "select {PATIENT_COLUMNS} from patients where phone = ?1 order by patient_id limit 1"
        ))?;
        Ok(st.query_row([phone], patient_row).optional()?)
    }

    pub fn create_job(&self, patient_id: &str, flow: &str) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.prepare_cached("insert into jobs (patient_id, flow) values (?1, ?2)")?.execute([patient_id, flow])?;
        Ok(conn.last_insert_rowid())
    }

    pub fn job(&self, job_id: i64) -> Result<Option<Job>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("select job_id, patient_id, flow, status from jobs where job_id = ?1")?;
        Ok(st
            .query_row([job_id], |r| {
                Ok(Job { job_id: r.get(0)?, patient_id: r.get(1)?, flow: r.get(2)?, status: r.get(3)? })
            })
            .optional()?)
    }

    pub fn call(&self, sid: &str) -> Result<Option<CallRecord>, StoreError> {
        let conn = self.conn();
        load_call(&conn, sid)
    }

    /// One turn, committed with the other turns waiting (see [`super::Store::turn`]).
    pub async fn turn(
        &self,
        sid: &str,
        seq: i64,
        create: Option<NewCall>,
        f: TurnFn,
    ) -> Result<TurnResult, StoreError> {
        self.writer.turn(sid, seq, create, f).await
    }

    pub fn record_status(&self, sid: &str, status: &str, rank: i32, duration: Option<i64>) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .prepare_cached(&format!(
                "update calls set status = ?2, status_rank = ?3, duration = coalesce(?4, duration),
                   incomplete = case when ?3 = 3 and ended = 0 then 1 else incomplete end, updated_at = {NOW}
                 where call_sid = ?1 and status_rank < ?3"
            ))?
            .execute(params![sid, status, rank, duration])?;
        Ok(n > 0)
    }

    pub fn answers(&self, call_id: i64) -> Result<Vec<Answer>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "select name, kind, value_text, value_raw, value_scale from answers where call_id = ?1 order by name",
        )?;
        let rows = st.query_map([call_id], |r| {
            Ok(Answer {
                name: r.get(0)?,
                value: answer_value(&r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn alerts(&self, call_id: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("select reason from alerts where call_id = ?1 order by alert_id")?;
        let rows = st.query_map([call_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn event_count(&self, call_id: i64) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("select count(*) from call_events where call_id = ?1", [call_id], |r| r.get(0))?)
    }
}

/// The connection, locked. A panic while holding the lock leaves no half-written transaction
/// (it rolls back on drop), so the connection is still good.
pub(super) fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// One turn inside an open transaction: load (or create) the call, check the turn's sequence
/// number, step the engine, write. On an error the caller rolls back what the turn wrote.
pub(super) fn turn_in(
    tx: &Connection,
    sid: &str,
    seq: i64,
    create: Option<NewCall>,
    f: &mut TurnFn,
) -> Result<TurnResult, StoreError> {
    let call = match load_call(tx, sid)? {
        Some(c) => c,
        None => match create {
            Some(new) => {
                insert_call(tx, &new)?;
                load_call(tx, sid)?.ok_or_else(|| StoreError::UnknownCall(sid.into()))?
            }
            None => return Err(StoreError::UnknownCall(sid.into())),
        },
    };
    if seq != call.seq + 1 {
        // A replay (or a request from the future): the stored answer, no effect.
        let wanted = seq.min(call.seq);
        let response: Option<String> = tx
            .prepare_cached("select response from call_events where call_id = ?1 and seq = ?2")?
            .query_row(params![call.call_id, wanted], |r| r.get(0))
            .optional()?;
        return match response {
            Some(response) => Ok(TurnResult { response, replay: true, queued: false }),
            None => Err(StoreError::Turn(format!("turn {seq} of call {sid} is not stored"))),
        };
    }
    let mut collisions = 0;
    let w = loop {
        let w = f(&call).map_err(StoreError::Turn)?;
        match write_turn(tx, &call, seq, &w) {
            // Nothing was written before the number: step again with another one.
            Err(StoreError::Conflict) if collisions < 5 => collisions += 1,
            r => break r.map(|()| w)?,
        }
    };
    Ok(TurnResult { queued: w.queues_messages(), response: w.response, replay: false })
}

fn load_call(conn: &Connection, sid: &str) -> Result<Option<CallRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!("select {CALL_COLUMNS} from calls where call_sid = ?1"))?;
    match st.query_row([sid], call_row).optional()? {
        Some((mut call, state)) => {
            call.state = serde_json::from_str(&state)?;
            Ok(Some(call))
        }
        None => Ok(None),
    }
}

fn insert_call(tx: &Connection, new: &NewCall) -> Result<(), StoreError> {
    tx.prepare_cached(
        "insert into calls (call_sid, patient_id, job_id, direction, flow, flow_version, state)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        new.call_sid,
        new.patient_id,
        new.job_id,
        new.direction,
        new.state.flow,
        new.state.version,
        serde_json::to_string(&new.state)?
    ])?;
    Ok(())
}

fn write_turn(tx: &Connection, call: &CallRecord, seq: i64, w: &TurnWrite) -> Result<(), StoreError> {
    // The number first, in a savepoint: a collision rolls back what the number wrote before it
    // (the patient's previous number revoked), nothing else is written yet, and the turn can
    // step again.
    if let Some(n) = &w.issue {
        tx.execute_batch("savepoint issue")?;
        match insert_number(tx, Some(call.call_id), n, None) {
            Ok(_) => tx.execute_batch("release issue")?,
            Err(e) => {
                tx.execute_batch("rollback to issue; release issue")?;
                return Err(e);
            }
        }
    }
    let state = match &w.state {
        Some(s) => serde_json::to_string(s)?,
        None => serde_json::to_string(&call.state)?,
    };
    tx.prepare_cached(&format!(
        "update calls set state = ?2, seq = ?3, ended = ended or ?4, updated_at = {NOW} where call_id = ?1"
    ))?
    .execute(params![call.call_id, state, seq, w.ended])?;
    tx.prepare_cached("insert into call_events (call_id, seq, state, input, response) values (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![
            call.call_id,
            seq,
            w.event_state,
            w.event_input,
            w.stored_response.as_ref().unwrap_or(&w.response)
        ])?;
    if !w.answers.is_empty() {
        let mut st = tx.prepare_cached(&format!(
            "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             on conflict (call_id, name) do update set kind = excluded.kind, value_text = excluded.value_text,
               value_raw = excluded.value_raw, value_scale = excluded.value_scale, created_at = {NOW}"
        ))?;
        for (name, v) in &w.answers {
            let (kind, text, raw, scale) = answer_columns(v);
            st.execute(params![call.call_id, call.patient_id, name, kind, text, raw, scale])?;
        }
    }
    for m in &w.messages {
        tx.prepare_cached(
            "insert into outbox (patient_id, channel, recipient, body_sealed, next_attempt_at)
             values (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        )?
        .execute(params![call.patient_id, m.channel, m.recipient, m.body_sealed])?;
    }
    if w.number_read {
        let read: Option<i64> = tx
            .prepare_cached(
                "update processing_numbers set read_pending = 0 where patient_id = ?1 and read_pending = 1
                 returning number_id",
            )?
            .query_row([&call.patient_id], |r| r.get(0))
            .optional()?;
        if read.is_some() {
            audit(tx, "call", "read", read, "read aloud on the next call")?;
        }
    }
    for reason in &w.alerts {
        tx.prepare_cached("insert into alerts (patient_id, call_id, reason) values (?1, ?2, ?3)")?.execute(params![
            call.patient_id,
            call.call_id,
            reason
        ])?;
    }
    Ok(())
}

// ---- processing numbers, tokens and the outbox ----

/// (number_id, patient_id, consent_call_id, consent_seq, consent_staff) of a late message's number.
type LateRow = (i64, String, Option<i64>, Option<i64>, Option<String>);

use chrono::{DateTime, Utc};

use super::{Consent, Fallback, Issued, LateMessage, NewNumber, OutboxMessage, SendResult, ValidNumber, Verdict};
use super::{LATE_DEAD_ALERT, REISSUED_ALERT};
use super::{parse_sqlite_time, sqlite_time};

/// Records a number (and its message): expires numbers whose time is up, revokes the
/// patient's previous number, inserts. A hash equal to a valid number's is a [`StoreError::Conflict`].
fn insert_number(
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
    let (seq, staff) = match &n.consent {
        Consent::Call { seq } => (Some(*seq), None),
        Consent::Staff { name } => (None, Some(name.as_str())),
    };
    let channel = if staff.is_some() { "staff" } else { "call" };
    let inserted = tx
        .prepare_cached(
            "insert into processing_numbers (patient_id, number_hash, sealed, issued_at, expires_at,
               consent_channel, consent_call_id, consent_seq, consent_staff, delivery, reissue_of)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            reissue_of
        ]);
    match inserted {
        Err(rusqlite::Error::SqliteFailure(e, Some(msg)))
            if e.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains("number_hash") =>
        {
            return Err(StoreError::Conflict);
        }
        Err(rusqlite::Error::SqliteFailure(e, Some(msg)))
            if e.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains("consent_call_id") =>
        {
            // This consent already has its number.
            return Err(StoreError::Duplicate(format!(
                "processing number for turn {} of call {}",
                seq.unwrap_or_default(),
                call_id.unwrap_or_default()
            )));
        }
        Err(rusqlite::Error::SqliteFailure(e, Some(msg)))
            if e.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains("reissue_of") =>
        {
            return Err(StoreError::Duplicate(format!("replacement for number {}", reissue_of.unwrap_or_default())));
        }
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            // The patient row is missing.
            return Err(StoreError::UnknownPatient(n.patient_id.clone()));
        }
        r => r?,
    };
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
    audit(tx, channel_actor(&n.consent), "issue", Some(number_id), &format!("delivery {}", n.delivery))?;
    Ok(Issued { number_id, message_id })
}

fn channel_actor(c: &Consent) -> &str {
    match c {
        Consent::Call { .. } => "call",
        Consent::Staff { name } => name,
    }
}

fn audit(tx: &Connection, actor: &str, action: &str, number_id: Option<i64>, detail: &str) -> Result<(), StoreError> {
    tx.prepare_cached("insert into audit_log (actor, action, number_id, detail) values (?1, ?2, ?3, ?4)")?
        .execute(params![actor, action, number_id, detail])?;
    Ok(())
}

impl SqliteStore {
    /// Issues a number outside a call (the manual path), in one transaction.
    pub fn issue_number(&self, n: &NewNumber) -> Result<Issued, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let issued = insert_number(&tx, None, n, None)?;
        tx.commit()?;
        Ok(issued)
    }

    /// The patient's number that is still valid at `now`.
    pub fn valid_number(&self, patient_id: &str, now: DateTime<Utc>) -> Result<Option<ValidNumber>, StoreError> {
        let conn = self.conn();
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
    pub fn verify_number(
        &self,
        hash: &str,
        now: DateTime<Utc>,
        actor: &str,
        consume: bool,
    ) -> Result<Verdict, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(i64, String, String, String, String)> = tx
            .prepare_cached(
                "select number_id, patient_id, status, issued_at, expires_at from processing_numbers
                 where number_hash = ?1 order by (status = 'valid') desc, number_id desc limit 1",
            )?
            .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .optional()?;
        let verdict = match row {
            None => Verdict::Unknown,
            Some((id, patient_id, status, issued, expires)) => match status.as_str() {
                "used" => Verdict::Used,
                "revoked" => Verdict::Revoked,
                "expired" => Verdict::Expired,
                _ if parse_sqlite_time(&expires) <= now => Verdict::Expired,
                _ => {
                    if consume {
                        tx.prepare_cached(
                            "update processing_numbers set status = 'used', used_at = ?2, used_by = ?3, sealed = null
                             where number_id = ?1",
                        )?
                        .execute(params![id, sqlite_time(now), actor])?;
                    }
                    Verdict::Valid { number_id: id, patient_id, issued_at: parse_sqlite_time(&issued) }
                }
            },
        };
        let number_id = match &verdict {
            Verdict::Valid { number_id, .. } => Some(*number_id),
            _ => None,
        };
        let action = if consume { "verify" } else { "check" };
        audit(&tx, actor, action, number_id, verdict.reason())?;
        tx.commit()?;
        Ok(verdict)
    }

    pub fn add_token(&self, name: &str, token_hash: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        match conn
            .prepare_cached("insert into api_tokens (name, token_hash) values (?1, ?2)")?
            .execute([name, token_hash])
        {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Duplicate(format!("token '{name}'")))
            }
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    /// The name of the live token with this hash.
    pub fn token_name(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("select name from api_tokens where token_hash = ?1 and revoked_at is null")?;
        Ok(st.query_row([token_hash], |r| r.get(0)).optional()?)
    }

    /// Claims up to `limit` messages due at `now` for `lease_until`, and commits: a sender that
    /// dies leaves its lease to run out, it never holds a transaction while sending.
    pub fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut conn = self.conn();
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
            let mut st = tx.prepare_cached(
                "update outbox set status = 'sending', lease_until = ?2, attempts = attempts + 1, updated_at = ?1
                 where message_id in (
                   select message_id from outbox where status = 'pending' and next_attempt_at <= ?1
                     and (number_id is null or number_id not in (
                       select number_id from processing_numbers where expires_at <= ?1))
                   order by next_attempt_at limit ?3)
                 returning message_id, patient_id, number_id, channel, recipient, body_sealed, attempts - 1",
            )?;
            let rows = st.query_map(params![sqlite_time(now), sqlite_time(lease_until), limit], |r| {
                Ok(OutboxMessage {
                    message_id: r.get(0)?,
                    patient_id: r.get(1)?,
                    number_id: r.get(2)?,
                    channel: r.get(3)?,
                    recipient: r.get(4)?,
                    body_sealed: r.get(5)?,
                    attempts: r.get(6)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        Ok(claimed)
    }

    /// Records how a send ended. A dead message raises an alert for the health centre.
    pub fn finish_message(
        &self,
        message_id: i64,
        result: &SendResult,
        now: DateTime<Utc>,
    ) -> Result<Option<Fallback>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let t = sqlite_time(now);
        let mut fallback = None;
        match result {
            SendResult::Undeliverable { error, email } => {
                fallback = fall_back(&tx, message_id, error, *email, &t)?;
            }
            SendResult::Sent { provider_id, status } => {
                tx.prepare_cached(
                    // Only a message still in hand: a delivery callback that came first (and
                    // perhaps said `failed`) is not overwritten by the sender's late record.
                    "update outbox set status = 'sent', provider_id = ?2, last_error = ?3, lease_until = null, updated_at = ?4
                     where message_id = ?1 and status in ('sending', 'pending')",
                )?
                .execute(params![message_id, provider_id, status, t])?;
            }
            SendResult::Retry { error, at } => {
                tx.prepare_cached(
                    "update outbox set status = 'pending', next_attempt_at = ?2, last_error = ?3, lease_until = null, updated_at = ?4
                     where message_id = ?1",
                )?
                .execute(params![message_id, sqlite_time(*at), error, t])?;
            }
            SendResult::Failed { error, dead } => {
                let status = if *dead { "dead" } else { "failed" };
                tx.prepare_cached(
                    "update outbox set status = ?2, last_error = ?3, lease_until = null, body_sealed = '', updated_at = ?4
                     where message_id = ?1",
                )?
                .execute(params![message_id, status, error, t])?;
                tx.prepare_cached(
                    "insert into alerts (patient_id, reason) select patient_id, ?2 from outbox where message_id = ?1",
                )?
                .execute(params![message_id, format!("message_{status}: {error}")])?;
            }
        }
        tx.commit()?;
        Ok(fallback)
    }

    /// Pending messages due at `now` whose number expired before they could be sent.
    pub fn late_messages(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<LateMessage>, StoreError> {
        let conn = self.conn();
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
    pub fn replace_late(
        &self,
        message_id: i64,
        fresh: Option<&NewNumber>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
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
        let (status, reason) = if fresh.is_some() { ("cancelled", REISSUED_ALERT) } else { ("dead", LATE_DEAD_ALERT) };
        tx.prepare_cached(
            "update outbox set status = ?2, body_sealed = '', last_error = 'expired before delivery',
               lease_until = null, updated_at = ?3
             where message_id = ?1",
        )?
        .execute(params![message_id, status, t])?;
        match fresh {
            Some(n) => {
                let consent = match (seq, staff) {
                    (Some(seq), _) if call_id.is_some() => Consent::Call { seq },
                    (_, staff) => Consent::Staff { name: staff.unwrap_or_default() },
                };
                let n = NewNumber { patient_id: patient_id.clone(), consent, ..n.clone() };
                let issued = insert_number(&tx, call_id, &n, Some(number_id))?;
                audit(&tx, "outbox", "reissue", Some(issued.number_id), "expired before delivery")?;
            }
            None => {
                tx.prepare_cached("update processing_numbers set status = 'expired' where number_id = ?1")?
                    .execute([number_id])?;
            }
        }
        tx.prepare_cached("insert into alerts (patient_id, reason) values (?1, ?2)")?
            .execute(params![patient_id, reason])?;
        tx.commit()?;
        Ok(true)
    }

    /// Messages whose sender's lease ran out: back to pending (the dispatcher decides).
    pub fn release_expired_leases(&self, now: DateTime<Utc>, resend_at: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "update outbox set status = 'pending', next_attempt_at = ?2, lease_until = null,
                   last_error = 'sender stopped mid-send', updated_at = ?1
                 where status = 'sending' and lease_until <= ?1",
            )?
            .execute([sqlite_time(now), sqlite_time(resend_at)])?)
    }

    /// A delivery status from the provider's callback, by the provider's message id.
    pub fn message_status(
        &self,
        provider_id: &str,
        status: &str,
        error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        conn.prepare_cached(&format!(
            "update outbox set status = ?2, last_error = coalesce(?3, last_error), updated_at = {NOW}
             where provider_id = ?1 and status not in ('delivered') and fallback is null"
        ))?
        .execute(params![provider_id, status, error_code])?;
        // Known: some message carries this provider id (even if a later status stood).
        Ok(conn
            .prepare_cached("select exists(select 1 from outbox where provider_id = ?1)")?
            .query_row([provider_id], |r| r.get(0))?)
    }

    /// (channel, recipient, status, attempts) of a patient's messages, oldest first.
    pub fn messages(&self, patient_id: &str) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "select channel, recipient, status, attempts from outbox where patient_id = ?1 order by message_id",
        )?;
        let rows = st.query_map([patient_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (action, detail) of the audit log for a number, or all numbers when `None`.
    pub fn audit_log(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("select actor, action, detail from audit_log order by audit_id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Alert reasons for a patient.
    pub fn patient_alerts(&self, patient_id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("select reason from alerts where patient_id = ?1 order by alert_id")?;
        let rows = st.query_map([patient_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many numbers are valid now (for tests and metrics).
    pub fn valid_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("select count(*) from processing_numbers where status = 'valid'", [], |r| r.get(0))?)
    }
}

/// The fallback for an SMS that cannot reach the phone, once per message (see
/// [`SendResult::Undeliverable`]). `None` when the message had already fallen back.
fn fall_back(
    tx: &Connection,
    message_id: i64,
    error: &str,
    email_ok: bool,
    t: &str,
) -> Result<Option<Fallback>, StoreError> {
    let row: Option<(Option<String>, Option<i64>, String)> = tx
        .prepare_cached(
            "select patient_id, number_id, body_sealed from outbox where message_id = ?1 and fallback is null",
        )?
        .query_row([message_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((patient_id, number_id, body)) = row else { return Ok(None) };
    // The number, while still valid: whether a copy is kept to read, and where to e-mail it.
    let number: Option<(bool, Option<String>)> = tx
        .prepare_cached(
            "select n.sealed is not null, p.email from processing_numbers n join patients p on p.patient_id = n.patient_id
             where n.number_id = ?1 and n.status = 'valid' and n.expires_at > ?2",
        )?
        .query_row(params![number_id, t], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let fallback = match number {
        Some((_, Some(address))) if email_ok && address.contains('@') && !body.is_empty() => {
            tx.prepare_cached(
                "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, next_attempt_at)
                 values (?1, ?2, 'email', ?3, ?4, ?5)",
            )?
            .execute(params![patient_id, number_id, address, body, t])?;
            tx.prepare_cached("update processing_numbers set delivery = 'email' where number_id = ?1")?
                .execute([number_id])?;
            Fallback::Email
        }
        Some((true, _)) => {
            tx.prepare_cached(
                "update processing_numbers set read_pending = 1, delivery = 'read_aloud' where number_id = ?1",
            )?
            .execute([number_id])?;
            Fallback::ReadAloud
        }
        _ => Fallback::None,
    };
    tx.prepare_cached(
        "update outbox set status = 'failed', fallback = ?2, last_error = ?3, lease_until = null, body_sealed = '',
           updated_at = ?4
         where message_id = ?1",
    )?
    .execute(params![message_id, fallback.name(), error, t])?;
    if fallback != Fallback::None {
        audit(tx, "outbox", "fallback", number_id, &format!("delivery {}", fallback.name()))?;
    }
    tx.prepare_cached("insert into alerts (patient_id, reason) values (?1, ?2)")?
        .execute(params![patient_id, fallback.alert(error)])?;
    Ok(Some(fallback))
}
