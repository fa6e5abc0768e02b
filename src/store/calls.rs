//! Calls, their turns, answers and alerts; jobs created by hand.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::flow::{CallState, Value};
use crate::types::{Alert, AlertKind, CallSid, CallStatus, Direction, E164, PatientId};

use super::campaign::Job;
use super::numbers::{NewMessage, NewNumber, ValidNumber};
use super::patients::Patient;
use super::versions::StoredFlow;
use super::{Fut, StoreError};

/// A call as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub call_id: i64,
    pub call_sid: CallSid,
    pub patient_id: Option<PatientId>,
    pub job_id: Option<i64>,
    pub direction: Direction,
    pub flow: String,
    pub flow_version: String,
    pub state: CallState,
    /// The last turn taken (-1 before the first).
    pub seq: i64,
    pub ended: bool,
    pub incomplete: bool,
    pub status: CallStatus,
    pub duration: Option<i64>,
    /// The call's patient as the roster has them now, read with the call: a turn takes their
    /// name, phone, e-mail and birth date from here, never from the stored state.
    pub patient: Option<Patient>,
}

/// A call to create on its first turn.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub call_sid: CallSid,
    pub patient_id: Option<PatientId>,
    pub job_id: Option<i64>,
    pub direction: Direction,
    pub state: CallState,
    /// The texts of the flow version the call starts on, when this process has not stored
    /// them yet: written (once per version, `on conflict do nothing`) in the same transaction
    /// as the call.
    pub flow_version: Option<StoredFlow>,
    /// When the call started (`created_at`); `None`: the database's time now.
    pub started_at: Option<DateTime<Utc>>,
}

/// How the first turn of a call creates it when the call does not exist yet.
pub enum Create {
    /// The call as given.
    Call(Box<NewCall>),
    /// The call of a patient found in the turn's transaction, with what a first turn reads
    /// about them: a replayed or concurrent first request never sees a half-made call, and the
    /// lookups cost no transaction of their own.
    Find(FirstTurn),
}

impl From<NewCall> for Create {
    fn from(call: NewCall) -> Create {
        Create::Call(Box::new(call))
    }
}

/// Who is on a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An outbound call placed for this job: its patient.
    Job(i64),
    /// An inbound call: the patient with this number.
    Phone(E164),
    /// A web report through the patient's personal link: this patient.
    Patient(PatientId),
}

/// What the turn's transaction found for a new call.
pub struct Found<'a> {
    pub patient: &'a Patient,
    /// The job that placed an outbound call.
    pub job: Option<&'a Job>,
    /// The patient's processing number still valid now.
    pub number: Option<&'a ValidNumber>,
}

/// Builds the call from what was found (the flow's start state, the patient's variables).
pub type StartFn = Box<dyn FnOnce(Found<'_>) -> Result<NewCall, String> + Send>;

/// A first turn whose call the store creates from what it finds: the patient (through the job,
/// or by the calling number) and the patient's valid number. An unknown number fails the turn
/// with [`StoreError::UnknownCaller`], an unknown job or a job whose patient is gone with
/// [`StoreError::Turn`]; nothing is written.
pub struct FirstTurn {
    pub caller: Caller,
    /// When the number must still be valid.
    pub now: DateTime<Utc>,
    pub start: StartFn,
}

/// What one turn writes, built by the engine inside the transaction.
#[derive(Debug, Clone, Default)]
pub struct TurnWrite {
    pub state: Option<CallState>,
    /// The TwiML answered; stored for replays.
    pub response: String,
    /// What to store instead of `response` when it holds a processing number (sealed).
    pub stored_response: Option<String>,
    /// A processing number issued in this turn, with its message.
    pub issue: Option<NewNumber>,
    /// Other messages written in this turn (e.g. the number by SMS to a mobile number the
    /// caller typed), for the outbox.
    pub messages: Vec<NewMessage>,
    /// The state the turn left and its input, masked.
    pub event_state: String,
    pub event_input: String,
    /// Answers given or recorded in this turn (upserted by name).
    pub answers: Vec<(String, Value)>,
    /// Alerts raised for the health centre, each opening or joining the patient's follow-up
    /// item in the turn's transaction.
    pub alerts: Vec<super::followups::NewAlert>,
    /// The flow reached a hang-up.
    pub ended: bool,
    /// The call read the patient's number held for it (after a failed SMS): that pending
    /// delivery is done.
    pub number_read: bool,
}

impl TurnWrite {
    /// The turn writes messages for the outbox (its own, or the one carrying a new number).
    pub fn queues_messages(&self) -> bool {
        !self.messages.is_empty() || self.issue.as_ref().is_some_and(|n| n.message.is_some())
    }
}

/// The outcome of [`Store::turn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnResult {
    pub response: String,
    /// The request was for a turn already taken: the stored response, nothing changed.
    pub replay: bool,
    /// The turn wrote messages for the outbox (never on a replay): the dispatcher has work.
    pub queued: bool,
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub value: Value,
}

/// The engine step run inside a turn's transaction.
/// It may run more than once in a turn: when a newly issued number collides with a valid one,
/// the turn is stepped again (drawing another number) before anything is written.
pub type TurnFn = Box<dyn FnMut(&CallRecord) -> Result<TurnWrite, String> + Send>;

/// Splits a value into the answer columns: kind, text, raw, scale.
pub(crate) fn answer_columns(v: &Value) -> (&'static str, String, Option<i64>, Option<i64>) {
    match v {
        Value::Number { raw, scale } => ("number", v.to_string(), Some(*raw), Some(i64::from(*scale))),
        Value::Bool(_) => ("bool", v.to_string(), None, None),
        Value::Text(_) => ("text", v.to_string(), None, None),
    }
}

/// The answer columns back into a value.
pub(crate) fn answer_value(kind: &str, text: String, raw: Option<i64>, scale: Option<i64>) -> Value {
    match (kind, raw, scale) {
        ("number", Some(raw), Some(scale)) => Value::Number { raw, scale: scale as u8 },
        ("bool", _, _) => Value::Bool(text == "true"),
        _ => Value::Text(text),
    }
}

/// The status a new call is stored with: a web report is whole when it is stored (its one
/// turn is the submitted page), a phone call is in progress until the carrier says otherwise.
pub fn initial_status(direction: Direction) -> CallStatus {
    match direction {
        Direction::Web => CallStatus::Completed,
        Direction::Inbound | Direction::Outbound => CallStatus::InProgress,
    }
}

/// What a turn request does, from its number and the number of the call's last turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStep {
    /// The next turn: step the engine and write.
    Take,
    /// A turn already taken (a carrier's retry), or one from the future: answer the stored
    /// response of turn `seq` and change nothing.
    Replay { seq: i64 },
}

/// The turn `seq` of a call whose last turn is `last` (-1 before the first).
pub fn turn_step(last: i64, seq: i64) -> TurnStep {
    if seq == last + 1 { TurnStep::Take } else { TurnStep::Replay { seq: seq.min(last) } }
}

/// The alert for a patient who hung up before the call's flow ended (its follow-up item opens
/// with it).
pub fn hung_up() -> Alert {
    Alert::new(AlertKind::HungUp, "the call ended before its flow did")
}

/// How many times a turn is stepped again after its new number collided with a valid one.
pub const MAX_COLLISIONS: u32 = 5;

/// What a turn does after its write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWrite {
    /// The number collided and nothing else was written: step again, drawing another number.
    StepAgain,
    /// The turn fails with the error.
    Fail,
}

/// After the `collisions`-th failed write of a turn (counting from 0), with this error.
pub fn after_write(error: &StoreError, collisions: u32) -> AfterWrite {
    match error {
        StoreError::Conflict if collisions < MAX_COLLISIONS => AfterWrite::StepAgain,
        _ => AfterWrite::Fail,
    }
}

/// The answers a turn writes, each name once: the last value given for a name wins.
pub fn last_answers(answers: &[(String, Value)]) -> impl Iterator<Item = &(String, Value)> {
    answers
        .iter()
        .enumerate()
        .filter(|(i, (name, _))| !answers[i + 1..].iter().any(|(later, _)| later == name))
        .map(|(_, a)| a)
}

/// A call of a patient, as staff see it in a list (no state: it may hold a sealed number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientCall {
    pub call_id: i64,
    pub call_sid: CallSid,
    pub direction: Direction,
    pub flow: String,
    pub status: CallStatus,
    pub ended: bool,
    pub incomplete: bool,
    pub duration: Option<i64>,
    pub started_at: DateTime<Utc>,
}

/// The calls' operations (`store.calls()`).
pub trait Calls {
    /// One turn of a call, in one transaction. `seq` is the turn's number (0 for the first,
    /// which creates the call from `create`, looking its patient up in the same transaction
    /// when asked to: [`Create::Find`]). A turn already taken returns its stored response; a
    /// turn from the future returns the latest one; neither runs `f` ([`turn_step`]), nor
    /// `create`.
    fn turn<'a>(&'a self, sid: &'a str, seq: i64, create: Option<Create>, f: TurnFn) -> Fut<'a, TurnResult>;
    fn get<'a>(&'a self, sid: &'a str) -> Fut<'a, Option<CallRecord>>;
    /// Records a carrier status callback. A status never replaces a later one (`completed`
    /// stays `completed` when `in-progress` arrives late, [`CallStatus::rank`]); a call that ends
    /// before its flow did is marked incomplete, and its patient gets a `hung_up` alert with a
    /// follow-up item, in the same transaction. Returns whether anything changed.
    fn record_status<'a>(&'a self, sid: &'a str, status: CallStatus, duration: Option<i64>) -> Fut<'a, bool>;
    fn answers(&self, call_id: i64) -> Fut<'_, Vec<Answer>>;
    /// Alert reasons raised for a call.
    fn alerts(&self, call_id: i64) -> Fut<'_, Vec<String>>;
    /// Alert reasons raised for a patient (by calls, the outbox or the dialer).
    fn patient_alerts<'a>(&'a self, patient_id: &'a str) -> Fut<'a, Vec<String>>;
    /// A patient's calls, newest first, at most `limit`.
    fn of_patient<'a>(&'a self, patient_id: &'a str, limit: i64) -> Fut<'a, Vec<PatientCall>>;
    /// The number of turns stored for a call.
    fn event_count(&self, call_id: i64) -> Fut<'_, i64>;
    /// The call's turns in order: (state, response as stored: TwiML, or sealed when the turn
    /// held a processing number).
    fn steps(&self, call_id: i64) -> Fut<'_, Vec<(String, String)>>;
    /// The answers, alerts and (with `steps`) turns of several calls at once, as [`answers`],
    /// [`alerts`] and [`steps`] give each call's: a patient's page and the staff API read all
    /// of a patient's calls in a fixed number of queries, however many calls. A call with none
    /// of them is absent.
    ///
    /// [`answers`]: Calls::answers
    /// [`alerts`]: Calls::alerts
    /// [`steps`]: Calls::steps
    fn details<'a>(&'a self, call_ids: &'a [i64], steps: bool) -> Fut<'a, HashMap<i64, CallDetails>>;
}

/// What [`Calls::details`] reads of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallDetails {
    /// By name.
    pub answers: Vec<Answer>,
    /// The alerts' reasons as stored, in the order raised.
    pub alerts: Vec<String>,
    /// The turns in order: (state, response as stored).
    pub steps: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_turn_is_taken_and_any_other_replays_the_nearest_stored_one() {
        assert_eq!(turn_step(-1, 0), TurnStep::Take);
        assert_eq!(turn_step(3, 4), TurnStep::Take);
        assert_eq!(turn_step(3, 3), TurnStep::Replay { seq: 3 });
        assert_eq!(turn_step(3, 1), TurnStep::Replay { seq: 1 });
        assert_eq!(turn_step(3, 9), TurnStep::Replay { seq: 3 }, "a turn from the future gets the latest");
    }

    #[test]
    fn a_collision_steps_again_five_times_then_fails() {
        for n in 0..MAX_COLLISIONS {
            assert_eq!(after_write(&StoreError::Conflict, n), AfterWrite::StepAgain);
        }
        assert_eq!(after_write(&StoreError::Conflict, MAX_COLLISIONS), AfterWrite::Fail);
        assert_eq!(after_write(&StoreError::UnknownCall("CA1".into()), 0), AfterWrite::Fail);
    }

    #[test]
    fn an_answer_named_twice_counts_once_with_its_last_value() {
        let answers = vec![
            ("a".to_string(), Value::Bool(true)),
            ("b".to_string(), Value::Text("x".into())),
            ("a".to_string(), Value::Bool(false)),
        ];
        let kept: Vec<_> = last_answers(&answers).cloned().collect();
        assert_eq!(kept, vec![answers[1].clone(), answers[2].clone()]);
    }
}
