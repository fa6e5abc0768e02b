//! The carrier's webhooks. Each voice request is one turn of a call: load the call, step the
//! engine, apply its effects and save, all in one transaction ([`Store::turn`]), then answer
//! TwiML. A request the server already answered gets the same TwiML again and repeats nothing.
//! Whatever fails inside, the caller hears an apology in valid TwiML, never a bare error.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tracing::{Instrument, field};

use super::AppState;
use super::verify::{TwilioParams, bad_request};
use crate::flow::driver::{Actions, Outcome, run_turn};
use crate::flow::{CallState, Effect, Input, Phase, Value, Vars};
use crate::response::{Response as Speech, Speech as Say};
use crate::store::{CallRecord, NewCall, Patient, StoreError, TurnFn, TurnWrite};
use crate::telemetry::{mask_digits, mask_phone};
use crate::twiml;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/voice/step", post(step))
        .route("/twilio/status", post(status))
}

fn twiml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// A call id as carriers send them (Twilio: `CA` and 32 hex digits).
fn valid_sid(sid: &str) -> bool {
    (2..=64).contains(&sid.len()) && sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, Deserialize)]
pub struct VoiceQuery {
    /// An outbound call placed for this job.
    job: Option<i64>,
    /// For an inbound call: the flow to run instead of `flows.inbound`.
    flow: Option<String>,
}

/// A call is answered: outbound for a job, or inbound from a patient's number.
async fn voice(State(app): State<AppState>, Query(q): Query<VoiceQuery>, form: TwilioParams) -> Response {
    let sid = match form.require("CallSid") {
        Ok(s) if valid_sid(s) => s.to_string(),
        Ok(_) => return bad_request("CallSid is not a call id"),
        Err(r) => return r.into_response(),
    };
    let from = form.get("From").unwrap_or("").to_string();
    let span = tracing::info_span!("call", call_sid = %sid, flow = field::Empty, state = field::Empty);
    async move {
        // The call may exist already: a replayed first request answers from the store.
        let patient = match (q.job, app.store.call(&sid).await) {
            (_, Ok(Some(_))) => None,
            (Some(job), Ok(None)) => match app.store.job(job).await {
                Ok(Some(j)) => match app.store.patient(&j.patient_id).await {
                    Ok(Some(p)) => Some((p, j.flow, Some(job), "outbound")),
                    other => return failure("the job's patient is not in the roster", other.err()),
                },
                other => return failure("unknown job", other.err()),
            },
            (None, Ok(None)) => match app.store.patient_by_phone(&from).await {
                Ok(Some(p)) => {
                    let flow = q.flow.clone().unwrap_or_else(|| app.inbound_flow.to_string());
                    Some((p, flow, None, "inbound"))
                }
                Ok(None) => {
                    tracing::info!(from = %mask_phone(&from), "inbound call from an unknown number");
                    return twiml_response(twiml::render(&unknown_caller().to_twiml("")));
                }
                Err(e) => return failure("patient lookup", Some(e)),
            },
            (_, Err(e)) => return failure("call lookup", Some(e)),
        };
        let create = match patient {
            None => None,
            Some((p, flow_name, job_id, direction)) => {
                let Some(flow) = app.flows.current(&flow_name) else {
                    return failure(&format!("no flow named {flow_name}"), None);
                };
                let state = CallState::new(&flow, &p.language, patient_vars(&p));
                Some(NewCall {
                    call_sid: sid.clone(),
                    patient_id: Some(p.patient_id),
                    job_id,
                    direction: direction.into(),
                    state,
                })
            }
        };
        take_turn(&app, &sid, 0, create, Input::Start).await
    }
    .instrument(span)
    .await
}

#[derive(Debug, Deserialize)]
pub struct StepQuery {
    call: String,
    seq: i64,
}

/// The answer to a question (`Digits`, empty when the caller said nothing).
async fn step(State(app): State<AppState>, Query(q): Query<StepQuery>, form: TwilioParams) -> Response {
    let sid = match form.require("CallSid") {
        Ok(s) if s == q.call && valid_sid(s) => s.to_string(),
        Ok(_) => return bad_request("CallSid does not match the call in the URL"),
        Err(r) => return r.into_response(),
    };
    if q.seq < 1 {
        return bad_request("seq must be 1 or more");
    }
    let digits = form.get("Digits").unwrap_or("").trim();
    let input = if digits.is_empty() { Input::NoInput } else { Input::Digits(digits.to_string()) };
    let span = tracing::info_span!("call", call_sid = %sid, flow = field::Empty, state = field::Empty);
    take_turn(&app, &sid, q.seq, None, input).instrument(span).await
}

/// A carrier status callback: the call's progress and how it ended.
async fn status(State(app): State<AppState>, form: TwilioParams) -> Response {
    let (sid, status) = match (form.require("CallSid"), form.require("CallStatus")) {
        (Ok(s), Ok(st)) => (s.to_string(), st.to_string()),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let duration = form.get("CallDuration").and_then(|d| d.parse::<i64>().ok());
    match app.store.record_status(&sid, &status, duration).await {
        Ok(changed) => {
            if changed {
                metrics::counter!("ivr_calls_total", "status" => status.clone()).increment(1);
            }
            tracing::info!(call_sid = %sid, status, changed, "call status");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::error!(call_sid = %sid, error = %e, "call status not recorded");
            metrics::counter!("ivr_errors_total", "route" => "status").increment(1);
            // 5xx: the carrier retries the callback later.
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Runs one turn through the store and answers its TwiML (an apology if anything fails).
async fn take_turn(app: &AppState, sid: &str, seq: i64, create: Option<NewCall>, input: Input) -> Response {
    let f = turn_fn(app, sid, seq, input);
    match app.store.turn(sid, seq, create, f).await {
        Ok(r) => {
            metrics::counter!("ivr_steps_total", "replay" => if r.replay { "true" } else { "false" }).increment(1);
            tracing::info!(seq, replay = r.replay, "turn");
            twiml_response(r.response)
        }
        Err(e) => failure("turn failed", Some(e)),
    }
}

/// Logs a failure once, in the call's span, and gives the caller an apology.
fn failure(what: &str, err: Option<StoreError>) -> Response {
    match err {
        Some(e) => tracing::error!(error = %e, "{what}"),
        None => tracing::error!("{what}"),
    }
    metrics::counter!("ivr_errors_total", "route" => "voice").increment(1);
    twiml_response(twiml::render(&Speech::apology("ja-JP").to_twiml("")))
}

/// The engine's step, run inside the store's transaction.
fn turn_fn(app: &AppState, sid: &str, seq: i64, input: Input) -> TurnFn {
    let flows = app.flows.clone();
    let action = format!("{}/twilio/voice/step?call={}&seq={}", app.public_url, sid, seq + 1);
    let event_input = match &input {
        Input::Start => "(start)".to_string(),
        Input::Digits(d) => mask_digits(d),
        Input::NoInput => "(no input)".to_string(),
        Input::Hangup => "(hang-up)".to_string(),
        Input::Outcome { name, .. } => name.clone(),
    };
    let span = tracing::Span::current();
    Box::new(move |call: &CallRecord| {
        let flow =
            flows.version(&call.flow, &call.flow_version).ok_or_else(|| format!("flow {} is not loaded", call.flow))?;
        span.record("flow", call.flow.as_str());
        let mut fx = TurnEffects::default();
        let before = call.state.answers();
        let Ok(turn) = run_turn(&flow, &call.state, input, &mut fx);
        span.record("state", turn.state.state.as_str());
        let mut answers: Vec<(String, Value)> =
            turn.state.answers().into_iter().filter(|a| !before.contains(a)).collect();
        for a in fx.answers {
            if !answers.iter().any(|(k, _)| *k == a.0) {
                answers.push(a);
            }
        }
        let ended = turn.state.phase == Phase::Ended;
        Ok(TurnWrite {
            response: twiml::render(&turn.response.to_twiml(&action)),
            event_state: turn.state.state.clone(),
            event_input,
            answers,
            alerts: fx.alerts,
            ended,
            state: Some(turn.state),
        })
    })
}

/// The effects of a webhook turn, written by the store in the turn's transaction.
#[derive(Default)]
struct TurnEffects {
    answers: Vec<(String, Value)>,
    alerts: Vec<String>,
}

impl Actions for TurnEffects {
    type Error = std::convert::Infallible;

    fn perform(&mut self, effect: &Effect, _: &CallState, _waited: bool) -> Result<Option<Outcome>, Self::Error> {
        Ok(match effect {
            Effect::RecordAnswers { answers } => {
                self.answers.extend(answers.iter().cloned());
                None
            }
            Effect::AlertHealthCenter { reason } => {
                self.alerts.push(reason.clone());
                None
            }
            Effect::EndCallSummary { .. } => None,
            // Issuing numbers and sending messages need the issuer and the outbox; until a
            // deployment has them, the flow takes its `failed` path (and alerts the centre).
            Effect::IssueProcessingNumber | Effect::SendSms { .. } => Some(Outcome::named("failed")),
        })
    }
}

/// The variables a flow reads about its patient.
pub fn patient_vars(p: &Patient) -> Vars {
    let mut v = Vars::new();
    v.insert("patient.id".into(), Value::text(&p.patient_id));
    v.insert("patient.name".into(), Value::text(&p.name));
    v.insert("patient.phone".into(), Value::text(&p.phone));
    v.insert("patient.phone_kind".into(), Value::text(crate::cli::call::phone_kind(&p.phone)));
    v.insert("patient.number_issued".into(), Value::Bool(false));
    if let Some(md) = &p.birth_md {
        v.insert("patient.birth_md".into(), Value::text(md));
    }
    v
}

/// What a caller from an unknown number hears.
fn unknown_caller() -> Speech {
    let say = |text: &str, language: &str| Say::Say { text: text.into(), language: language.into(), voice: None };
    Speech {
        speech: vec![
            say(
                "お電話ありがとうございます。このお電話番号は登録されていません。お手数ですが、保健所に直接お問い合わせください。",
                "ja-JP",
            ),
            say(
                "This number is not registered with the health check service. Please contact your health centre.",
                "en-US",
            ),
        ],
        gather: None,
    }
}
