//! The SQLite back end: one connection in WAL mode behind a mutex (SQLite has one writer at a
//! time anyway), statements prepared once and cached, one `BEGIN IMMEDIATE` transaction per turn.

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{Answer, CallRecord, Job, NewCall, Patient, StoreError, TurnFn, TurnResult, TurnWrite};
use super::{answer_columns, answer_value};

/// Numbered migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "calls", include_str!("../../migrations/sqlite/0001_calls.sql")),
    (2, "processing_numbers", include_str!("../../migrations/sqlite/0002_processing_numbers.sql")),
];

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

pub struct SqliteStore {
    conn: Mutex<Connection>,
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
    })
}

const PATIENT_COLUMNS: &str = "patient_id, name, phone, birth_md, language, email, area, care_start, care_end";

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
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-written transaction (it rolls back on
        // drop), so the connection is still good.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
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
        self.conn()
            .prepare_cached(&format!(
                "insert into patients ({PATIENT_COLUMNS}) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             on conflict (patient_id) do update set name = excluded.name, phone = excluded.phone,
               birth_md = excluded.birth_md, language = excluded.language, email = excluded.email,
               area = excluded.area, care_start = excluded.care_start, care_end = excluded.care_end,
               updated_at = {NOW}"
            ))?
            .execute(params![
                p.patient_id,
                p.name,
                p.phone,
                p.birth_md,
                p.language,
                p.email,
                p.area,
                p.care_start,
                p.care_end
            ])?;
        Ok(())
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

    pub fn turn(&self, sid: &str, seq: i64, create: Option<NewCall>, f: TurnFn) -> Result<TurnResult, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let call = match load_call(&tx, sid)? {
            Some(c) => c,
            None => match create {
                Some(new) => {
                    insert_call(&tx, &new)?;
                    load_call(&tx, sid)?.ok_or_else(|| StoreError::UnknownCall(sid.into()))?
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
                Some(response) => Ok(TurnResult { response, replay: true }),
                None => Err(StoreError::Turn(format!("turn {seq} of call {sid} is not stored"))),
            };
        }
        let w = f(&call).map_err(StoreError::Turn)?;
        write_turn(&tx, &call, seq, &w)?;
        tx.commit()?;
        Ok(TurnResult { response: w.response, replay: false })
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

fn insert_call(tx: &Transaction<'_>, new: &NewCall) -> Result<(), StoreError> {
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

fn write_turn(tx: &Transaction<'_>, call: &CallRecord, seq: i64, w: &TurnWrite) -> Result<(), StoreError> {
    let state = match &w.state {
        Some(s) => serde_json::to_string(s)?,
        None => serde_json::to_string(&call.state)?,
    };
    tx.prepare_cached(&format!(
        "update calls set state = ?2, seq = ?3, ended = ended or ?4, updated_at = {NOW} where call_id = ?1"
    ))?
    .execute(params![call.call_id, state, seq, w.ended])?;
    tx.prepare_cached("insert into call_events (call_id, seq, state, input, response) values (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![call.call_id, seq, w.event_state, w.event_input, w.response])?;
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
    for reason in &w.alerts {
        tx.prepare_cached("insert into alerts (patient_id, call_id, reason) values (?1, ?2, ?3)")?.execute(params![
            call.patient_id,
            call.call_id,
            reason
        ])?;
    }
    Ok(())
}
