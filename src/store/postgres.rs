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

use super::{Answer, CallRecord, Job, NewCall, Patient, StoreError, TurnFn, TurnResult, TurnWrite};
use super::{answer_columns, answer_value};

/// Numbered migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "calls", include_str!("../../migrations/postgres/0001_calls.sql")),
    (2, "processing_numbers", include_str!("../../migrations/postgres/0002_processing_numbers.sql")),
    (3, "number_lookup", include_str!("../../migrations/postgres/0003_number_lookup.sql")),
];

/// The advisory lock that instances starting at the same time take in turn to migrate (a key
/// unlikely to collide with other users of advisory locks in the same database).
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"ivr-migr");

const CALL_COLUMNS: &str = "call_id, call_sid, patient_id, job_id, direction, flow, flow_version, state, seq, ended, incomplete, status, duration";

const PATIENT_COLUMNS: &str = "patient_id, name, phone, birth_md, language, email, area, care_start, care_end";

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
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
            "insert into patients ({PATIENT_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             on conflict (patient_id) do update set name = excluded.name, phone = excluded.phone,
               birth_md = excluded.birth_md, language = excluded.language, email = excluded.email,
               area = excluded.area, care_start = excluded.care_start, care_end = excluded.care_end,
               updated_at = now()"
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
        .execute(&self.pool)
        .await?;
        Ok(())
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
                Some(response) => Ok(TurnResult { response, replay: true }),
                None => Err(StoreError::Turn(format!("turn {seq} of call {sid} is not stored"))),
            };
        }
        let w = f(&call).map_err(StoreError::Turn)?;
        write_turn(&mut tx, &call, seq, &w).await?;
        tx.commit().await?;
        Ok(TurnResult { response: w.response, replay: false })
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
    let state = match &w.state {
        Some(s) => serde_json::to_string(s)?,
        None => serde_json::to_string(&call.state)?,
    };
    sqlx::query("update calls set state = $2, seq = $3, ended = ended or $4, updated_at = now() where call_id = $1")
        .bind(call.call_id)
        .bind(state)
        .bind(seq)
        .bind(w.ended)
        .execute(&mut *tx)
        .await?;
    sqlx::query("insert into call_events (call_id, seq, state, input, response) values ($1, $2, $3, $4, $5)")
        .bind(call.call_id)
        .bind(seq)
        .bind(&w.event_state)
        .bind(&w.event_input)
        .bind(&w.response)
        .execute(&mut *tx)
        .await?;
    for (name, v) in &w.answers {
        let (kind, text, raw, scale) = answer_columns(v);
        sqlx::query(
            "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (call_id, name) do update set kind = excluded.kind, value_text = excluded.value_text,
               value_raw = excluded.value_raw, value_scale = excluded.value_scale, created_at = now()",
        )
        .bind(call.call_id)
        .bind(&call.patient_id)
        .bind(name)
        .bind(kind)
        .bind(text)
        .bind(raw)
        // `integer` in the schema.
        .bind(scale.map(|s| s as i32))
        .execute(&mut *tx)
        .await?;
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

// ---- processing numbers, tokens and the outbox (PostgreSQL port pending) ----

use chrono::{DateTime, Utc};

use super::{Issued, NewNumber, OutboxMessage, SendResult, ValidNumber, Verdict};

fn pending() -> StoreError {
    StoreError::Turn("processing numbers are not yet available on PostgreSQL".into())
}

impl PgStore {
    pub async fn issue_number(&self, _n: &NewNumber) -> Result<Issued, StoreError> {
        Err(pending())
    }
    pub async fn valid_number(
        &self,
        _patient_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<Option<ValidNumber>, StoreError> {
        Err(pending())
    }
    pub async fn verify_number(
        &self,
        _hash: &str,
        _now: DateTime<Utc>,
        _actor: &str,
        _consume: bool,
    ) -> Result<Verdict, StoreError> {
        Err(pending())
    }
    pub async fn add_token(&self, _name: &str, _token_hash: &str) -> Result<(), StoreError> {
        Err(pending())
    }
    pub async fn token_name(&self, _token_hash: &str) -> Result<Option<String>, StoreError> {
        Err(pending())
    }
    pub async fn claim_messages(
        &self,
        _now: DateTime<Utc>,
        _lease_until: DateTime<Utc>,
        _limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        Err(pending())
    }
    pub async fn finish_message(
        &self,
        _message_id: i64,
        _result: &SendResult,
        _now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Err(pending())
    }
    pub async fn release_expired_leases(&self, _now: DateTime<Utc>) -> Result<usize, StoreError> {
        Err(pending())
    }
    pub async fn message_status(
        &self,
        _provider_id: &str,
        _status: &str,
        _error_code: Option<&str>,
    ) -> Result<bool, StoreError> {
        Err(pending())
    }
    pub async fn messages(&self, _patient_id: &str) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        Err(pending())
    }
    pub async fn audit_log(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Err(pending())
    }
    pub async fn patient_alerts(&self, _patient_id: &str) -> Result<Vec<String>, StoreError> {
        Err(pending())
    }
    pub async fn valid_count(&self) -> Result<i64, StoreError> {
        Err(pending())
    }
}
