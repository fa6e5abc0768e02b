//! Calls, their turns, answers and alerts on PostgreSQL.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::PgStore;
use super::followups::raise_in;
use super::numbers::{audit, insert_number, valid_number};
use super::patients::{PATIENT_COLUMNS, patient_row, patient_row_at};
use super::versions::save_flow_version;
use crate::store::versions::catalogs_json;
use crate::store::{AfterWrite, TurnStep, after_write, answer_columns, answer_value, fut, last_answers, turn_step};
use crate::store::{Answer, CallDetails, CallRecord, NewCall, PatientCall, StoreError, TurnFn, TurnResult, TurnWrite};
use crate::store::{Caller, Create, FirstTurn, Found, Job};
use crate::store::{Calls, Fut};
use crate::types::{CallStatus, PatientId};

const CALL_COLUMNS: &str = "c.call_id, c.call_sid, c.patient_id, c.job_id, c.direction, c.flow, c.flow_version, c.state, c.seq, c.ended, c.incomplete, c.status, c.duration";
const CALL_COLUMN_COUNT: usize = 13;
/// [`PATIENT_COLUMNS`] of the joined patient `p`.
const PATIENT_JOINED: &str =
    "p.patient_id, p.name, p.phone, p.birth_md, p.language, p.email, p.area, p.care_start, p.care_end, p.call_slot";

impl PgStore {
    pub(super) async fn turn(
        &self,
        sid: &str,
        seq: i64,
        create: Option<Create>,
        mut f: TurnFn,
    ) -> Result<TurnResult, StoreError> {
        // Dropped without a commit (any early return or error below), the transaction rolls back.
        let mut tx = self.pool.begin().await?;
        let call = match lock_call(&mut tx, sid).await? {
            Some(c) => c,
            None => match create {
                Some(create) => {
                    let new = match create {
                        Create::Call(new) => *new,
                        Create::Find(first) => start_call(&mut tx, first).await?,
                    };
                    if let Some(v) = &new.flow_version {
                        save_flow_version(&mut *tx, v, &catalogs_json(v)?).await?;
                    }
                    // Two instances may receive the same first webhook at once. The second insert
                    // waits for the first transaction and then does nothing; the second turn then
                    // locks the call the first one committed and replays its response.
                    insert_call(&mut tx, &new).await?;
                    lock_call(&mut tx, sid).await?.ok_or_else(|| StoreError::UnknownCall(sid.into()))?
                }
                None => return Err(StoreError::UnknownCall(sid.into())),
            },
        };
        if let TurnStep::Replay { seq: wanted } = turn_step(call.seq, seq) {
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
                Ok(()) => break w,
                // The number's savepoint was rolled back and nothing else was written: step
                // again, drawing another number.
                Err(e) if after_write(&e, collisions) == AfterWrite::StepAgain => collisions += 1,
                Err(e) => return Err(e),
            }
        };
        tx.commit().await?;
        Ok(TurnResult { queued: w.queues_messages(), response: w.response, replay: false })
    }

    pub(super) async fn record_status(
        &self,
        sid: &str,
        status: CallStatus,
        duration: Option<i64>,
    ) -> Result<bool, StoreError> {
        let rank = status.rank();
        let mut tx = self.pool.begin().await?;
        // The row locked first: of two callbacks at once, one sees the other's `incomplete`.
        let before: Option<(i64, Option<String>, bool)> =
            sqlx::query_as("select call_id, patient_id, incomplete from calls where call_sid = $1 for update")
                .bind(sid)
                .fetch_optional(&mut *tx)
                .await?;
        let after: Option<bool> = sqlx::query_scalar(
            "update calls set status = $2, status_rank = $3, duration = coalesce($4, duration),
               incomplete = case when $3 = 3 and not ended then true else incomplete end, updated_at = now()
             where call_sid = $1 and status_rank < $3 returning incomplete",
        )
        .bind(sid)
        .bind(status)
        .bind(rank)
        .bind(duration)
        .fetch_optional(&mut *tx)
        .await?;
        if let (Some(true), Some((call_id, patient_id, false))) = (after, &before) {
            let alert = crate::store::NewAlert::engine(&crate::store::hung_up());
            raise_in(&mut tx, patient_id.as_deref(), Some(*call_id), &alert, chrono::Utc::now()).await?;
        }
        tx.commit().await?;
        Ok(after.is_some())
    }
}

/// A new call's patient (through its job, or by the calling number) and valid number, read in
/// the turn's transaction, and the call built from them.
async fn start_call(tx: &mut PgConnection, first: FirstTurn) -> Result<NewCall, StoreError> {
    let (patient_id, job) = match &first.caller {
        Caller::Job(id) => {
            let row: Option<(i64, PatientId, String, String)> =
                sqlx::query_as("select job_id, patient_id, flow, status from jobs where job_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let (job_id, patient_id, flow, status) = row.ok_or_else(|| StoreError::Turn(format!("no job {id}")))?;
            (Some(patient_id.clone()), Some(Job { job_id, patient_id, flow, status, window_to: None }))
        }
        Caller::Phone(_) => (None, None),
        Caller::Patient(id) => (Some(id.clone()), None),
    };
    let row = match (&first.caller, &patient_id) {
        (_, Some(id)) => {
            sqlx::query(&format!("select {PATIENT_COLUMNS} from patients where patient_id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
        }
        (Caller::Phone(phone), None) => {
            sqlx::query(&format!(
                "select {PATIENT_COLUMNS} from patients where phone = $1 order by patient_id collate \"C\" limit 1"
            ))
            .bind(phone)
            .fetch_optional(&mut *tx)
            .await?
        }
        (Caller::Job(_) | Caller::Patient(_), None) => None,
    };
    let patient = match (row, patient_id) {
        (Some(r), _) => patient_row(&r)?,
        (None, Some(id)) => return Err(StoreError::UnknownPatient(id.to_string())),
        (None, None) => return Err(StoreError::UnknownCaller),
    };
    let number = valid_number(&mut *tx, patient.patient_id.as_str(), first.now).await?;
    let found = Found { patient: &patient, job: job.as_ref(), number: number.as_ref() };
    (first.start)(found).map_err(StoreError::Turn)
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
        patient: None, // read by the caller
    })
}

/// The call, its row locked until the transaction ends.
async fn lock_call(tx: &mut PgConnection, sid: &str) -> Result<Option<CallRecord>, StoreError> {
    // The patient comes with the call, in the same round trip: a turn reads them from the
    // roster rather than from the call's state.
    let row = sqlx::query(&format!(
        "select {CALL_COLUMNS}, {PATIENT_JOINED} from calls c left join patients p on p.patient_id = c.patient_id
         where c.call_sid = $1 for update of c"
    ))
    .bind(sid)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let mut call = call_row(&r)?;
    let joined: Option<PatientId> = r.try_get(CALL_COLUMN_COUNT)?;
    call.patient = joined.map(|_| patient_row_at(&r, CALL_COLUMN_COUNT)).transpose()?;
    Ok(Some(call))
}

/// The call's patient as the roster has them now.
async fn read_patient(
    conn: &mut PgConnection,
    patient_id: Option<&PatientId>,
) -> Result<Option<crate::store::Patient>, StoreError> {
    let Some(id) = patient_id else { return Ok(None) };
    let row = sqlx::query(&format!("select {PATIENT_COLUMNS} from patients where patient_id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| patient_row(&r)).transpose()?)
}

async fn insert_call(tx: &mut PgConnection, new: &NewCall) -> Result<(), StoreError> {
    sqlx::query(
        "insert into calls (call_sid, patient_id, job_id, direction, flow, flow_version, state, status, status_rank,
           created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()))
         on conflict (call_sid) do nothing",
    )
    .bind(&new.call_sid)
    .bind(&new.patient_id)
    .bind(new.job_id)
    .bind(new.direction)
    .bind(&new.state.flow)
    .bind(&new.state.version)
    .bind(serde_json::to_string(&new.state)?)
    .bind(crate::store::initial_status(new.direction))
    .bind(crate::store::initial_status(new.direction).rank())
    .bind(new.started_at)
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
    for (name, v) in last_answers(&w.answers) {
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
        .bind(m.channel)
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
    let now = chrono::Utc::now();
    for alert in &w.alerts {
        raise_in(tx, call.patient_id.as_ref().map(|p| p.as_str()), Some(call.call_id), alert, now).await?;
    }
    Ok(())
}

impl Calls for PgStore {
    fn turn<'a>(&'a self, sid: &'a str, seq: i64, create: Option<Create>, f: TurnFn) -> Fut<'a, TurnResult> {
        Box::pin(self.turn(sid, seq, create, f))
    }

    fn get<'a>(&'a self, sid: &'a str) -> Fut<'a, Option<CallRecord>> {
        fut(async move {
            let mut conn = self.pool.acquire().await?;
            let row = sqlx::query(&format!("select {CALL_COLUMNS} from calls c where c.call_sid = $1"))
                .bind(sid)
                .fetch_optional(&mut *conn)
                .await?;
            let Some(mut call) = row.map(|r| call_row(&r)).transpose()? else { return Ok(None) };
            call.patient = read_patient(&mut conn, call.patient_id.as_ref()).await?;
            Ok(Some(call))
        })
    }

    fn of_patient<'a>(&'a self, patient_id: &'a str, limit: i64) -> Fut<'a, Vec<PatientCall>> {
        fut(async move {
            let rows = sqlx::query(
                "select call_id, call_sid, direction, flow, status, ended, incomplete, duration, created_at from calls
                 where patient_id = $1 order by created_at desc, call_id desc limit $2",
            )
            .bind(patient_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            let call = |r: &PgRow| -> Result<PatientCall, sqlx::Error> {
                Ok(PatientCall {
                    call_id: r.try_get(0)?,
                    call_sid: r.try_get(1)?,
                    direction: r.try_get(2)?,
                    flow: r.try_get(3)?,
                    status: r.try_get(4)?,
                    ended: r.try_get(5)?,
                    incomplete: r.try_get(6)?,
                    duration: r.try_get(7)?,
                    started_at: r.try_get(8)?,
                })
            };
            Ok(rows.iter().map(call).collect::<Result<_, _>>()?)
        })
    }

    fn record_status<'a>(&'a self, sid: &'a str, status: CallStatus, duration: Option<i64>) -> Fut<'a, bool> {
        Box::pin(self.record_status(sid, status, duration))
    }

    fn answers(&self, call_id: i64) -> Fut<'_, Vec<Answer>> {
        fut(async move {
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
        })
    }

    fn alerts(&self, call_id: i64) -> Fut<'_, Vec<String>> {
        fut(async move {
            Ok(sqlx::query_scalar("select reason from alerts where call_id = $1 order by alert_id")
                .bind(call_id)
                .fetch_all(&self.pool)
                .await?)
        })
    }

    /// Alert reasons for a patient.
    fn patient_alerts<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<String>> {
        fut(async move {
            Ok(sqlx::query_scalar("select reason from alerts where patient_id = $1 order by alert_id")
                .bind(patient_id)
                .fetch_all(&self.pool)
                .await?)
        })
    }

    fn event_count(&self, call_id: i64) -> Fut<'_, i64> {
        fut(async move {
            Ok(sqlx::query_scalar("select count(*) from call_events where call_id = $1")
                .bind(call_id)
                .fetch_one(&self.pool)
                .await?)
        })
    }

    fn details<'a>(&'a self, call_ids: &'a [i64], steps: bool) -> Fut<'a, HashMap<i64, CallDetails>> {
        fut(async move {
            let mut out: HashMap<i64, CallDetails> = HashMap::new();
            if call_ids.is_empty() {
                return Ok(out);
            }
            let rows = sqlx::query(
                "select call_id, name, kind, value_text, value_raw, value_scale from answers where call_id = any($1)
                 order by call_id, name collate \"C\"",
            )
            .bind(call_ids)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                let kind: String = r.try_get(2)?;
                let scale = r.try_get::<Option<i32>, _>(5)?.map(i64::from);
                let value = answer_value(&kind, r.try_get(3)?, r.try_get(4)?, scale);
                out.entry(r.try_get(0)?).or_default().answers.push(Answer { name: r.try_get(1)?, value });
            }
            let alerts: Vec<(i64, String)> =
                sqlx::query_as("select call_id, reason from alerts where call_id = any($1) order by call_id, alert_id")
                    .bind(call_ids)
                    .fetch_all(&self.pool)
                    .await?;
            for (id, reason) in alerts {
                out.entry(id).or_default().alerts.push(reason);
            }
            if steps {
                let turns: Vec<(i64, String, String)> = sqlx::query_as(
                    "select call_id, state, response from call_events where call_id = any($1) order by call_id, seq",
                )
                .bind(call_ids)
                .fetch_all(&self.pool)
                .await?;
                for (id, state, response) in turns {
                    out.entry(id).or_default().steps.push((state, response));
                }
            }
            Ok(out)
        })
    }

    fn steps(&self, call_id: i64) -> Fut<'_, Vec<(String, String)>> {
        fut(async move {
            Ok(sqlx::query_as("select state, response from call_events where call_id = $1 order by seq")
                .bind(call_id)
                .fetch_all(&self.pool)
                .await?)
        })
    }
}
