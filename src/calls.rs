//! How a turn of a call is served: the engine stepped inside the store's transaction, its
//! effects turned into what the store writes (answers, alerts, a processing number and the
//! message carrying it), and the TwiML answered. A number kept in the call's state or in a
//! stored answer is sealed; nothing in the database reveals it.

pub mod web;

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use crate::flow::driver::{Actions, Outcome, run_turn};
use crate::flow::prompts::Catalog;
use crate::flow::registry::{FlowVersion, Registry};
use crate::flow::{
    CallState, Effect, Input, Phase, TRANSFER_CALLER_ID, TRANSFER_CLOSED, TRANSFER_DIAL, TRANSFER_TO, Value, Vars,
};
use crate::issuer::{Delivery, Issuer, is_sealed};
use crate::scheduler::hours::OpeningHours;
use crate::store::{
    CallRecord, Caller, Consent, FirstTurn, Found, NUMBER_READ_ANSWER, NewAlert, NewCall, NewMessage, NewNumber,
    Patient, StoredFlow, TurnFn, TurnWrite, ValidNumber,
};
use crate::telemetry::mask_digits;
use crate::twiml;
use crate::types::{Alert, AlertKind, CallSid, Channel, Direction, E164, PatientId, Severity};

/// What every turn needs besides the call.
#[derive(Clone)]
pub struct TurnContext {
    pub flows: Arc<Registry>,
    pub issuer: Arc<Issuer>,
    /// The base URL the carrier calls (no trailing slash).
    pub public_url: Arc<str>,
    /// `centre.phone`: the number patients call back, said in calls and on answering machines.
    pub centre_phone: Arc<str>,
    /// Where and when a caller who asks for a person is put through.
    pub desk: Arc<Desk>,
}

/// The health centre's phone desk, for callers who ask for a person: the number they are put
/// through to, the caller id that leg shows (the carrier number), and when someone answers.
#[derive(Debug, Clone)]
pub struct Desk {
    pub to: E164,
    pub caller_id: Option<String>,
    pub hours: OpeningHours,
}

impl Desk {
    /// The outcome of [`Effect::TransferToCentre`] at `now`: dial, or closed.
    pub fn transfer(&self, now: DateTime<Utc>) -> Outcome {
        if !self.hours.is_open(now) {
            return Outcome::named(TRANSFER_CLOSED);
        }
        let mut o = Outcome::named(TRANSFER_DIAL);
        o.vars.insert(TRANSFER_TO.into(), Value::text(self.to.as_str()));
        if let Some(c) = &self.caller_id {
            o.vars.insert(TRANSFER_CALLER_ID.into(), Value::text(c));
        }
        o
    }

    /// The variables a flow says the hours with (`health_center.opens`, `…closes`).
    pub fn vars(&self) -> Vars {
        let time = |t: crate::scheduler::hours::DayTime| {
            let m = t.minutes();
            Value::text(format!("{}:{:02}", m / 60, m % 60))
        };
        let mut v = Vars::new();
        v.insert(CENTRE_OPENS.into(), time(self.hours.span.start));
        v.insert(CENTRE_CLOSES.into(), time(self.hours.span.end));
        v
    }
}

/// The variables a flow reads the centre's hours from.
pub const CENTRE_OPENS: &str = "health_center.opens";
pub const CENTRE_CLOSES: &str = "health_center.closes";

/// A flow version is kept in the database with the calls that run on it.
impl From<&FlowVersion> for StoredFlow {
    fn from(v: &FlowVersion) -> StoredFlow {
        StoredFlow {
            version: v.version.clone(),
            flow: v.flow.clone(),
            source_name: v.source_name.clone(),
            source: v.source.clone(),
            catalogs: v.catalogs.clone(),
        }
    }
}

impl From<StoredFlow> for FlowVersion {
    fn from(s: StoredFlow) -> FlowVersion {
        FlowVersion {
            version: s.version,
            flow: s.flow,
            source_name: s.source_name,
            source: s.source,
            catalogs: s.catalogs,
        }
    }
}

const NUMBER: &str = "processing_number";

/// The variable a flow reads the health centre's number from (`centre.phone`).
pub const CENTRE_PHONE: &str = "health_center.phone";

/// The first turn of call `sid`, not yet stored: the store finds its patient (the job's, the
/// one with the calling number, or the web report's own) and their valid number in the turn's transaction, and the call
/// starts on the current version of its flow (the job's; `inbound_flow` for a call in).
///
/// The version's texts go with the new call when this process has not stored them yet; once
/// the turn committed, the returned cell holds that version, for [`Registry::mark_saved`].
pub fn first_turn(
    ctx: &TurnContext,
    sid: &CallSid,
    caller: Caller,
    inbound_flow: &str,
    now: DateTime<Utc>,
) -> (FirstTurn, Arc<OnceLock<String>>) {
    let stored = Arc::new(OnceLock::new());
    let web = matches!(caller, Caller::Patient(_));
    let (ctx, sid, inbound_flow, cell) = (ctx.clone(), sid.clone(), inbound_flow.to_string(), stored.clone());
    let start = Box::new(move |found: Found<'_>| {
        let (name, direction) = match found.job {
            Some(job) => (job.flow.as_str(), Direction::Outbound),
            None if web => (inbound_flow.as_str(), Direction::Web),
            None => (inbound_flow.as_str(), Direction::Inbound),
        };
        let flow = ctx.flows.current(name).ok_or_else(|| format!("no flow named {name}"))?;
        let flow_version = ctx.flows.unsaved(&flow).map(|v| {
            let _ = cell.set(v.version.clone());
            StoredFlow::from(&v)
        });
        let p = found.patient;
        let mut vars = patient_vars(p, found.number, &ctx.issuer);
        vars.insert(CENTRE_PHONE.into(), Value::text(&*ctx.centre_phone));
        vars.extend(ctx.desk.vars());
        Ok(NewCall {
            call_sid: sid.clone(),
            patient_id: Some(p.patient_id.clone()),
            job_id: found.job.map(|j| j.job_id),
            direction,
            state: CallState::new(&flow, &p.language, vars),
            flow_version,
            // A web report is stamped with the server's clock, as its check-in is; a phone call
            // with the database's.
            started_at: web.then_some(now),
        })
    });
    (FirstTurn { caller, now, start }, stored)
}

/// The engine's step for turn `seq` of call `sid`, to run inside the store's transaction.
pub fn turn_fn(ctx: &TurnContext, sid: &str, seq: i64, input: Input, now: DateTime<Utc>) -> TurnFn {
    let ctx = ctx.clone();
    let action = format!("{}/twilio/voice/step?call={}&seq={}", ctx.public_url, sid, seq + 1);
    let event_input = match &input {
        Input::Start => "(start)".to_string(),
        Input::Digits(d) => mask_digits(d.as_str()),
        Input::NoInput => "(no input)".to_string(),
        Input::Hangup => "(hang-up)".to_string(),
        Input::Outcome { name, .. } => name.clone(),
    };
    let span = tracing::Span::current();
    Box::new(move |call: &CallRecord| {
        let flow = ctx
            .flows
            .version(&call.flow, &call.flow_version)
            .ok_or_else(|| format!("flow {} is not loaded", call.flow))?;
        span.record("flow", call.flow.as_str());
        let mut state = call.state.clone();
        unseal_number(&ctx.issuer, &mut state.vars);
        // The patient's personal data, read with the call, for this turn only.
        if let Some(p) = &call.patient {
            state.vars.extend(personal_vars(p));
        }
        let before = state.answers();
        let catalog = flow.catalog(&state.lang);
        let mut fx = TurnEffects {
            issuer: &ctx.issuer,
            desk: &ctx.desk,
            catalog,
            now,
            seq,
            answers: vec![],
            alerts: vec![],
            issue: None,
            messages: vec![],
        };
        let Ok(turn) = run_turn(&flow, &state, input.clone(), &mut fx);
        span.record("state", turn.state.state.as_str());
        let mut answers: Vec<(String, Value)> =
            turn.state.answers().into_iter().filter(|a| !before.contains(a)).collect();
        for a in fx.answers {
            if !answers.iter().any(|(k, _)| *k == a.0) {
                answers.push(a);
            }
        }
        let number_read = answers.iter().any(|(k, v)| k == NUMBER_READ_ANSWER && *v == Value::Bool(true));
        let response = twiml::render(&twiml::from_response(&turn.response, &action));
        let mut new_state = turn.state;
        for k in PERSONAL_VARS {
            new_state.vars.remove(k);
        }
        // While the call holds a number, what is stored of it is sealed.
        let stored_response = new_state.vars.contains_key(NUMBER).then(|| ctx.issuer.key.seal(&response));
        seal_number(&ctx.issuer, &mut new_state.vars);
        Ok(TurnWrite {
            response,
            stored_response,
            event_state: new_state.state.clone(),
            event_input: event_input.clone(),
            answers,
            alerts: fx.alerts,
            ended: new_state.phase == Phase::Ended,
            issue: fx.issue,
            messages: fx.messages,
            number_read,
            state: Some(new_state),
        })
    })
}

fn unseal_number(issuer: &Issuer, vars: &mut Vars) {
    if let Some(Value::Text(s)) = vars.get(NUMBER) {
        match issuer.key.open(s) {
            Some(plain) => drop(vars.insert(NUMBER.into(), Value::Text(plain))),
            None if is_sealed(s) => drop(vars.remove(NUMBER)),
            None => {}
        }
    }
}

fn seal_number(issuer: &Issuer, vars: &mut Vars) {
    if let Some(Value::Text(s)) = vars.get(NUMBER) {
        if !is_sealed(s) {
            let sealed = issuer.key.seal(s);
            vars.insert(NUMBER.into(), Value::Text(sealed));
        }
    }
}

/// A flow's alert as the store writes it: the engine's own alert for a caller who asked for a
/// person (`asked_for_person: …`, written so by the engine), the flow's otherwise.
fn flow_alert(reason: &str, severity: Severity) -> NewAlert {
    match reason.split_once(": ") {
        Some((kind, detail)) if AlertKind::parse(kind) == Ok(AlertKind::AskedForPerson) => {
            NewAlert { opens: Some(severity), ..NewAlert::engine(&Alert::new(AlertKind::AskedForPerson, detail)) }
        }
        _ => NewAlert::flow(reason, severity),
    }
}

/// The effects of one turn, collected for the store to write in the turn's transaction.
struct TurnEffects<'a> {
    issuer: &'a Issuer,
    desk: &'a Desk,
    /// The call's language: messages are written in it.
    catalog: &'a Catalog,
    now: DateTime<Utc>,
    seq: i64,
    answers: Vec<(String, Value)>,
    alerts: Vec<NewAlert>,
    issue: Option<NewNumber>,
    messages: Vec<NewMessage>,
}

impl Actions for TurnEffects<'_> {
    type Error = std::convert::Infallible;

    fn perform(&mut self, effect: &Effect, call: &CallState, _waited: bool) -> Result<Option<Outcome>, Self::Error> {
        Ok(match effect {
            Effect::RecordAnswers { answers } => {
                self.answers.extend(answers.iter().cloned());
                None
            }
            Effect::AlertHealthCenter { reason, severity } => {
                self.alerts.push(flow_alert(reason, *severity));
                None
            }
            Effect::EndCallSummary { .. } => None,
            Effect::TransferToCentre => Some(self.desk.transfer(self.now)),
            Effect::IssueProcessingNumber => Some(self.issue(call)),
            Effect::SendSms { text, to } => Some(self.send_sms(call, text, to.as_deref())),
        })
    }
}

impl TurnEffects<'_> {
    /// An SMS written to the outbox, sealed (it may hold the number): to a number the caller
    /// typed, which must be a mobile number, or to the patient's own mobile phone.
    fn send_sms(&mut self, call: &CallState, text: &str, to: Option<&str>) -> Outcome {
        let own = call.vars.get("patient.phone").map(ToString::to_string);
        let recipient = to.or(own.as_deref()).and_then(|n| E164::parse(n).ok());
        let Some(recipient) = recipient.filter(E164::is_mobile).map(String::from) else {
            return Outcome::named("failed");
        };
        let body_sealed = self.issuer.key.seal(text);
        self.messages.push(NewMessage { channel: Channel::Sms, recipient, body_sealed });
        Outcome::named("queued")
    }

    /// Draws a number for the call's patient and decides its delivery. The store records it
    /// with this turn as the consent; a replayed turn never gets here.
    fn issue(&mut self, call: &CallState) -> Outcome {
        let var = |k: &str| call.vars.get(k).map(ToString::to_string);
        let patient_id = var("patient.id").and_then(|p| PatientId::parse(&p).ok());
        let (Some(patient_id), Some(phone)) = (patient_id, var("patient.phone")) else {
            return Outcome::named("failed");
        };
        if self.issue.is_some() {
            return Outcome::named("failed"); // one number per turn
        }
        let email = var("patient.email");
        let delivery = Delivery::choose(E164::parse(&phone).ok().as_ref(), email.as_deref());
        let drawn = self.issuer.draw(self.now);
        metrics::counter!("ivr_numbers_issued_total", "channel" => "call").increment(1);
        tracing::info!(patient = %patient_id, number = %drawn.number, delivery = delivery.name(), "processing number issued in the call");
        let mut out = Outcome::named(delivery.name());
        out.vars.insert(NUMBER.into(), Value::text(drawn.number.expose()));
        out.vars.insert("processing_number.expires".into(), Value::text(&drawn.expires_local));
        let message = match delivery {
            Delivery::ReadAloud => None,
            Delivery::Sms | Delivery::Email => {
                let mut vars = call.vars.clone();
                vars.extend(out.vars.clone());
                let text = self.issuer.message(self.catalog, &vars, &drawn.number);
                let (channel, recipient) = match delivery {
                    Delivery::Sms => (Channel::Sms, phone.clone()),
                    _ => (Channel::Email, email.clone().unwrap_or_default()),
                };
                Some(NewMessage { channel, recipient, body_sealed: self.issuer.key.seal(&text) })
            }
        };
        self.issue = Some(NewNumber {
            patient_id,
            number_hash: drawn.hash,
            sealed: Some(drawn.sealed),
            issued_at: self.now,
            expires_at: drawn.expires_at,
            consent: Consent::Call { seq: self.seq },
            delivery: delivery.number_delivery(),
            message,
        });
        out
    }
}

/// The variables a flow reads about its patient that a call's stored state keeps: the id,
/// the kind of phone and where the patient's number stands. `number` is the patient's valid
/// processing number, if any: while it waits to be read aloud (issued on a call to a
/// landline that did not read it to the end, or its SMS could not reach the phone),
/// `patient.number_to_read` is true and the call holds the number (sealed, as the call's state
/// keeps it) and its expiry, for the flow to read them.
pub fn patient_vars(p: &Patient, number: Option<&ValidNumber>, issuer: &Issuer) -> Vars {
    let mut v = Vars::new();
    let number_issued = number.is_some();
    let to_read = number.filter(|n| n.read_pending).and_then(|n| Some((n.sealed.clone()?, n.expires_at)));
    v.insert("patient.number_to_read".into(), Value::Bool(to_read.is_some()));
    if let Some((sealed, expires_at)) = to_read {
        v.insert(NUMBER.into(), Value::Text(sealed));
        v.insert("processing_number.expires".into(), Value::text(issuer.local_time(expires_at)));
    }
    v.insert("patient.id".into(), Value::text(p.patient_id.as_str()));
    v.insert("patient.phone_kind".into(), Value::text(p.phone.kind().as_str()));
    v.insert("patient.number_issued".into(), Value::Bool(number_issued));
    v
}

/// The patient's personal variables: set from the roster at each turn, removed before the
/// call's state is stored, so the database keeps them only in the roster.
pub const PERSONAL_VARS: [&str; 4] = ["patient.name", "patient.phone", "patient.birth_md", "patient.email"];

/// The values of [`PERSONAL_VARS`] for a patient (those the roster has).
pub fn personal_vars(p: &Patient) -> Vars {
    let mut v = Vars::new();
    v.insert("patient.name".into(), Value::text(&p.name));
    v.insert("patient.phone".into(), Value::text(p.phone.as_str()));
    if let Some(md) = &p.birth_md {
        v.insert("patient.birth_md".into(), Value::text(md));
    }
    if let Some(e) = &p.email {
        v.insert("patient.email".into(), Value::text(e));
    }
    v
}
