//! Calls, their turns, answers and alerts on SQLite.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::campaign::job;
use super::followups::raise_in;
use super::numbers::{audit, insert_number, valid_number};
use super::patients::{patient, patient_by_phone};
use super::versions::save_flow_version;
use super::{NOW, SqliteStore};
use crate::store::versions::catalogs_json;
use crate::store::{AfterWrite, TurnStep, after_write, answer_columns, answer_value, last_answers, turn_step};
use crate::store::{Answer, CallDetails, CallRecord, NewCall, PatientCall, StoreError, TurnFn, TurnResult, TurnWrite};
use crate::store::{Caller, Create, FirstTurn, Found, initial_status};
use crate::store::{Calls, Fut};
use crate::types::CallStatus;

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
        patient: None, // read by the caller
    };
    Ok((call, state))
}

pub(super) fn call(conn: &mut Connection, sid: &str) -> Result<Option<CallRecord>, StoreError> {
    load_call(conn, sid)
}

pub(super) fn record_status(
    conn: &mut Connection,
    sid: &str,
    status: CallStatus,
    duration: Option<i64>,
) -> Result<bool, StoreError> {
    let rank = status.rank();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let before: Option<(i64, Option<String>, bool)> = tx
        .prepare_cached("select call_id, patient_id, incomplete from calls where call_sid = ?1")?
        .query_row([sid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let after: Option<bool> = tx
        .prepare_cached(&format!(
            "update calls set status = ?2, status_rank = ?3, duration = coalesce(?4, duration),
               incomplete = case when ?3 = 3 and ended = 0 then 1 else incomplete end, updated_at = {NOW}
             where call_sid = ?1 and status_rank < ?3 returning incomplete"
        ))?
        .query_row(params![sid, status, rank, duration], |r| r.get(0))
        .optional()?;
    if let (Some(true), Some((call_id, patient_id, false))) = (after, &before) {
        let alert = crate::store::NewAlert::engine(&crate::store::hung_up());
        raise_in(&tx, patient_id.as_deref(), Some(*call_id), &alert, chrono::Utc::now())?;
    }
    tx.commit()?;
    Ok(after.is_some())
}

pub(super) fn answers(conn: &mut Connection, call_id: i64) -> Result<Vec<Answer>, StoreError> {
    let mut st = conn.prepare_cached(
        "select name, kind, value_text, value_raw, value_scale from answers where call_id = ?1 order by name",
    )?;
    let rows = st.query_map([call_id], |r| {
        Ok(Answer { name: r.get(0)?, value: answer_value(&r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?) })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn alerts(conn: &mut Connection, call_id: i64) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached("select reason from alerts where call_id = ?1 order by alert_id")?;
    let rows = st.query_map([call_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn event_count(conn: &mut Connection, call_id: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row("select count(*) from call_events where call_id = ?1", [call_id], |r| r.get(0))?)
}

/// A call's turns in order: (state, stored response).
pub(super) fn steps(conn: &mut Connection, call_id: i64) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = conn.prepare_cached("select state, response from call_events where call_id = ?1 order by seq")?;
    let rows = st.query_map([call_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The answers, alerts and turns of several calls, three queries in all.
pub(super) fn details(
    conn: &mut Connection,
    ids: &[i64],
    with_steps: bool,
) -> Result<HashMap<i64, CallDetails>, StoreError> {
    let mut out: HashMap<i64, CallDetails> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let ids = rusqlite::params_from_iter(ids.iter());
    let mut st = conn.prepare(&format!(
        "select call_id, name, kind, value_text, value_raw, value_scale from answers where call_id in ({marks})
         order by call_id, name"
    ))?;
    let mut rows = st.query(ids.clone())?;
    while let Some(r) = rows.next()? {
        let value = answer_value(&r.get::<_, String>(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
        out.entry(r.get(0)?).or_default().answers.push(Answer { name: r.get(1)?, value });
    }
    let mut st = conn.prepare(&format!(
        "select call_id, reason from alerts where call_id in ({marks}) order by call_id, alert_id"
    ))?;
    let mut rows = st.query(ids.clone())?;
    while let Some(r) = rows.next()? {
        out.entry(r.get(0)?).or_default().alerts.push(r.get(1)?);
    }
    if with_steps {
        let mut st = conn.prepare(&format!(
            "select call_id, state, response from call_events where call_id in ({marks}) order by call_id, seq"
        ))?;
        let mut rows = st.query(ids)?;
        while let Some(r) = rows.next()? {
            out.entry(r.get(0)?).or_default().steps.push((r.get(1)?, r.get(2)?));
        }
    }
    Ok(out)
}

/// Alert reasons for a patient.
pub(super) fn patient_alerts(conn: &mut Connection, patient_id: &str) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached("select reason from alerts where patient_id = ?1 order by alert_id")?;
    let rows = st.query_map([patient_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One turn inside an open transaction: load (or create) the call, check the turn's sequence
/// number, step the engine, write. On an error the caller rolls back what the turn wrote.
pub(super) fn turn_in(
    tx: &Connection,
    sid: &str,
    seq: i64,
    create: Option<Create>,
    f: &mut TurnFn,
) -> Result<TurnResult, StoreError> {
    let call = match load_call(tx, sid)? {
        Some(c) => c,
        None => match create {
            Some(create) => {
                let new = match create {
                    Create::Call(new) => *new,
                    Create::Find(first) => start_call(tx, first)?,
                };
                if let Some(v) = &new.flow_version {
                    save_flow_version(tx, v, &catalogs_json(v)?)?;
                }
                insert_call(tx, &new)?;
                load_call(tx, sid)?.ok_or_else(|| StoreError::UnknownCall(sid.into()))?
            }
            None => return Err(StoreError::UnknownCall(sid.into())),
        },
    };
    if let TurnStep::Replay { seq: wanted } = turn_step(call.seq, seq) {
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
            Ok(()) => break w,
            // Nothing was written before the number: step again with another one.
            Err(e) if after_write(&e, collisions) == AfterWrite::StepAgain => collisions += 1,
            Err(e) => return Err(e),
        }
    };
    Ok(TurnResult { queued: w.queues_messages(), response: w.response, replay: false })
}

/// A new call's patient (through its job, or by the calling number) and valid number, read in
/// the turn's transaction, and the call built from them.
fn start_call(tx: &Connection, first: FirstTurn) -> Result<NewCall, StoreError> {
    let (patient, job) = match &first.caller {
        Caller::Job(id) => {
            let job = job(tx, *id)?.ok_or_else(|| StoreError::Turn(format!("no job {id}")))?;
            let patient = patient(tx, job.patient_id.as_str())?
                .ok_or_else(|| StoreError::UnknownPatient(job.patient_id.to_string()))?;
            (patient, Some(job))
        }
        Caller::Phone(phone) => (patient_by_phone(tx, phone.as_str())?.ok_or(StoreError::UnknownCaller)?, None),
        Caller::Patient(id) => {
            (patient(tx, id.as_str())?.ok_or_else(|| StoreError::UnknownPatient(id.to_string()))?, None)
        }
    };
    let number = valid_number(tx, patient.patient_id.as_str(), first.now)?;
    let found = Found { patient: &patient, job: job.as_ref(), number: number.as_ref() };
    (first.start)(found).map_err(StoreError::Turn)
}

fn load_call(conn: &Connection, sid: &str) -> Result<Option<CallRecord>, StoreError> {
    let mut st = conn.prepare_cached(&format!("select {CALL_COLUMNS} from calls where call_sid = ?1"))?;
    match st.query_row([sid], call_row).optional()? {
        Some((mut call, state)) => {
            call.state = serde_json::from_str(&state)?;
            if let Some(id) = &call.patient_id {
                call.patient = patient(conn, id.as_str())?;
            }
            Ok(Some(call))
        }
        None => Ok(None),
    }
}

fn insert_call(tx: &Connection, new: &NewCall) -> Result<(), StoreError> {
    tx.prepare_cached(
        "insert into calls (call_sid, patient_id, job_id, direction, flow, flow_version, state, status, status_rank,
           created_at)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, coalesce(?10, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
    )?
    .execute(params![
        new.call_sid,
        new.patient_id,
        new.job_id,
        new.direction,
        new.state.flow,
        new.state.version,
        serde_json::to_string(&new.state)?,
        initial_status(new.direction),
        initial_status(new.direction).rank(),
        new.started_at.map(super::sqlite_time)
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
        for (name, v) in last_answers(&w.answers) {
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
    let now = chrono::Utc::now();
    for alert in &w.alerts {
        raise_in(tx, call.patient_id.as_ref().map(|p| p.as_str()), Some(call.call_id), alert, now)?;
    }
    Ok(())
}

fn of_patient(conn: &mut Connection, patient_id: &str, limit: i64) -> Result<Vec<PatientCall>, StoreError> {
    let mut st = conn.prepare_cached(
        "select call_id, call_sid, direction, flow, status, ended, incomplete, duration, created_at from calls
         where patient_id = ?1 order by created_at desc, call_id desc limit ?2",
    )?;
    let rows = st.query_map(params![patient_id, limit], |r| {
        Ok(PatientCall {
            call_id: r.get(0)?,
            call_sid: r.get(1)?,
            direction: r.get(2)?,
            flow: r.get(3)?,
            status: r.get(4)?,
            ended: r.get(5)?,
            incomplete: r.get(6)?,
            duration: r.get(7)?,
            started_at: super::parse_sqlite_time(&r.get::<_, String>(8)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Calls for SqliteStore {
    /// Committed with the other turns waiting ([`super::writer`]).
    fn turn<'a>(&'a self, sid: &'a str, seq: i64, create: Option<Create>, f: TurnFn) -> Fut<'a, TurnResult> {
        Box::pin(self.writer.turn(sid, seq, create, f))
    }

    fn get<'a>(&'a self, sid: &'a str) -> Fut<'a, Option<CallRecord>> {
        let sid = sid.to_owned();
        self.read(move |c| call(c, &sid))
    }

    fn record_status<'a>(&'a self, sid: &'a str, status: CallStatus, duration: Option<i64>) -> Fut<'a, bool> {
        let sid = sid.to_owned();
        self.write(move |c| record_status(c, &sid, status, duration))
    }

    fn answers(&self, call_id: i64) -> Fut<'_, Vec<Answer>> {
        self.read(move |c| answers(c, call_id))
    }

    fn alerts(&self, call_id: i64) -> Fut<'_, Vec<String>> {
        self.read(move |c| alerts(c, call_id))
    }

    fn patient_alerts<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<String>> {
        let patient_id = patient_id.to_owned();
        self.read(move |c| patient_alerts(c, &patient_id))
    }

    fn of_patient<'a>(&'a self, patient_id: &'a str, limit: i64) -> Fut<'a, Vec<PatientCall>> {
        let patient_id = patient_id.to_owned();
        self.read(move |c| of_patient(c, &patient_id, limit))
    }

    fn event_count(&self, call_id: i64) -> Fut<'_, i64> {
        self.read(move |c| event_count(c, call_id))
    }

    fn steps(&self, call_id: i64) -> Fut<'_, Vec<(String, String)>> {
        self.read(move |c| steps(c, call_id))
    }

    fn details<'a>(&'a self, call_ids: &'a [i64], steps: bool) -> Fut<'a, HashMap<i64, CallDetails>> {
        let ids = call_ids.to_vec();
        self.read(move |c| details(c, &ids, steps))
    }
}
