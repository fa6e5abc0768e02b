//! The carrier's webhooks. Each voice request is one turn of a call: load the call, step the
//! engine, apply its effects and save, all in one transaction ([`Store::turn`]), then answer
//! TwiML. A request the server already answered gets the same TwiML again and repeats nothing.
//! Whatever fails on a voice route (a bad query string or form included), the caller hears an
//! apology in valid TwiML, in the call's language when it is known, never a bare error. The
//! status callbacks answer errors as [`super::Error`]s.

use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Router, middleware};
use serde::Deserialize;
use tracing::{Instrument, field};

use super::error::Query;
use super::verify::TwilioParams;
use super::{AppState, Error};
use chrono::Utc;

use crate::calls::CENTRE_PHONE;
use crate::calls::{first_turn, turn_fn};
use crate::flow::Input;
use crate::flow::response::{Response as Speech, Speech as Say};
use crate::issuer::is_sealed;
use crate::notify::outbox::record_delivery;
use crate::store::{self, Create, StoreError, TurnResult};
use crate::telemetry::mask_phone;
use crate::twiml;
use crate::types::{CallSid, CallStatus, Digits, E164, MessageSid, is_carrier_id};

/// The carrier's routes, each behind the signature check. The check wraps the handlers only, so
/// a method a route does not take gets its `405` with `Allow: POST`.
pub fn router(state: &AppState) -> Router<AppState> {
    let signed = middleware::from_fn_with_state(state.clone(), super::verify::twilio_signature);
    Router::new()
        .route("/twilio/voice", post(voice).route_layer(signed.clone()))
        .route("/twilio/voice/step", post(step).route_layer(signed.clone()))
        .route("/twilio/status", post(status).route_layer(signed.clone()))
        .route("/twilio/message-status", post(message_status).route_layer(signed))
}

fn twiml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

#[derive(Debug, Deserialize)]
pub struct VoiceQuery {
    /// An outbound call placed for this job…
    job: Option<i64>,
    /// …in this attempt.
    attempt: Option<i32>,
    /// Set on the key press that shows a "machine" is a person.
    person: Option<u8>,
    /// For an inbound call: the flow to run instead of `flows.inbound`.
    flow: Option<String>,
}

/// A call is answered: outbound for a job, or inbound from a patient's number.
async fn voice(
    State(app): State<AppState>,
    q: Result<axum::extract::Query<VoiceQuery>, QueryRejection>,
    form: TwilioParams,
) -> Response {
    let q = match q {
        Ok(q) => q.0,
        Err(r) => return failure(&app, &form, Error::from(r), None).await,
    };
    let sid = match form.require("CallSid").map(CallSid::parse) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failure(&app, &form, Error::invalid("CallSid", e.expected()), None).await,
        Err(e) => return failure(&app, &form, e, None).await,
    };
    let from = form.get("From").unwrap_or("").to_string();
    let answered_by = form.get("AnsweredBy").filter(|a| !a.is_empty()).map(str::to_string);
    let span = tracing::info_span!("call", call_sid = %sid, flow = field::Empty, state = field::Empty);
    async move {
        if let (Some(job), Some(attempt)) = (q.job, q.attempt) {
            // The dialer's attempt is noted before, and apart from, the turn: an answering
            // machine gets no turn but its attempt is answered all the same, both updates are
            // idempotent (a replay repeats them harmlessly), and a failure to note them must
            // not stop the call.
            let lease = app.campaign.clock.now() + app.campaign.policy.call_lease;
            let noted = app.store.campaign().attempt_dialed(job, attempt, &sid).await;
            let noted = match noted {
                Ok(()) => {
                    app.store
                        .campaign()
                        .attempt_progress(job, attempt, "in-progress", answered_by.as_deref(), lease)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = noted {
                tracing::warn!(error = %e, job, attempt, "attempt not updated");
            }
            let machine = answered_by.as_deref().is_some_and(crate::scheduler::dialer::is_machine);
            match q.person {
                // Silence after the machine message: it was a machine after all.
                Some(_) if form.get("Digits").unwrap_or("").is_empty() => {
                    return twiml_response(twiml::render(&[twiml::Verb::Hangup]));
                }
                Some(_) => {}
                None if machine => return machine_message(&app, job, attempt).await,
                None => {}
            }
        }
        // Everything the first turn reads (the call, if a replayed request made it already; the
        // job and its patient, or the patient with the calling number; the patient's valid
        // number) is read in the turn's own transaction, with the call's creation.
        let caller = match (q.job, E164::parse(&from)) {
            (Some(job), _) => store::Caller::Job(job),
            (None, Ok(phone)) => store::Caller::Phone(phone),
            // A withheld or foreign caller id: nobody of the roster.
            (None, Err(_)) => return unknown(&from),
        };
        let inbound = q.flow.as_deref().unwrap_or(&app.inbound_flow);
        let now = Utc::now();
        let (first, stored) = first_turn(&app.turns, &sid, caller, inbound, now);
        let f = turn_fn(&app.turns, sid.as_str(), 0, Input::Start, now);
        match app.store.calls().turn(sid.as_str(), 0, Some(Create::Find(first)), f).await {
            Ok(r) => {
                if let Some(version) = stored.get() {
                    app.flows.mark_saved(version);
                }
                answer(&app, sid.as_str(), 0, r).await
            }
            Err(StoreError::UnknownCaller) => unknown(&from),
            Err(e) => failure(&app, &form, "first turn failed", Some(e)).await,
        }
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
async fn step(
    State(app): State<AppState>,
    q: Result<axum::extract::Query<StepQuery>, QueryRejection>,
    form: TwilioParams,
) -> Response {
    let q = match q {
        Ok(q) => q.0,
        Err(r) => return failure(&app, &form, Error::from(r), None).await,
    };
    let sid = match form.require("CallSid").map(CallSid::parse) {
        Ok(Ok(s)) if s.as_str() == q.call => s,
        Ok(_) => {
            let e = Error::invalid("CallSid", "CallSid does not match the call in the URL");
            return failure(&app, &form, e, None).await;
        }
        Err(e) => return failure(&app, &form, e, None).await,
    };
    if q.seq < 1 {
        return failure(&app, &form, Error::invalid("seq", "seq must be 1 or more"), None).await;
    }
    let input = match (form.get("DialCallStatus"), Digits::parse(form.get("Digits").unwrap_or("").trim())) {
        // The action of a `<Dial>`: how the call put through to the centre ended.
        (Some(status), _) => Input::Outcome { name: dial_status(status).into(), vars: Default::default() },
        (None, Ok(d)) if d.is_empty() => Input::NoInput,
        (None, Ok(d)) => Input::Digits(d),
        (None, Err(e)) => return failure(&app, &form, Error::invalid("Digits", e.expected()), None).await,
    };
    let span = tracing::info_span!("call", call_sid = %sid, flow = field::Empty, state = field::Empty);
    take_turn(&app, sid.as_str(), q.seq, input).instrument(span).await
}

/// A `DialCallStatus` as Twilio documents it; anything else counts as `failed`, never as a
/// person reached.
fn dial_status(status: &str) -> &'static str {
    match status.trim().to_ascii_lowercase().as_str() {
        "completed" => "completed",
        "answered" => "answered",
        "busy" => "busy",
        "no-answer" => "no-answer",
        "canceled" => "canceled",
        _ => "failed",
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    /// The job and attempt the dialer placed this call for.
    job: Option<i64>,
    attempt: Option<i32>,
}

/// A carrier status callback: the call's progress and how it ended. For a call the dialer
/// placed, the final status ends its attempt and moves the job on (done, retry, unreachable).
async fn status(State(app): State<AppState>, Query(q): Query<StatusQuery>, form: TwilioParams) -> Response {
    let (sid, status) = match (form.require("CallSid"), form.require("CallStatus")) {
        (Ok(s), Ok(st)) => (s, st),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let (sid, status) = match (CallSid::parse(sid), CallStatus::parse(status)) {
        (Ok(sid), Ok(status)) => (sid, status),
        (Err(e), _) => return Error::invalid("CallSid", e.expected()).into_response(),
        (_, Err(e)) => return Error::invalid("CallStatus", e.expected()).into_response(),
    };
    let duration = form.get("CallDuration").and_then(|d| d.parse::<i64>().ok());
    let answered_by = form.get("AnsweredBy").filter(|a| !a.is_empty());
    let recorded = async {
        let changed = app.store.calls().record_status(sid.as_str(), status, duration).await?;
        if let (Some(job), Some(attempt)) = (q.job, q.attempt) {
            let now = app.campaign.clock.now();
            app.store.campaign().attempt_dialed(job, attempt, &sid).await?;
            if status.is_final() {
                app.campaign
                    .call_ended(&app.store, (job, attempt), Some(&sid), status.as_str(), answered_by, now)
                    .await?;
                app.dialer_wake.notify_one();
            } else {
                let lease = now + app.campaign.policy.call_lease;
                app.store.campaign().attempt_progress(job, attempt, status.as_str(), answered_by, lease).await?;
            }
        }
        Ok::<_, StoreError>(changed)
    };
    match recorded.await {
        Ok(changed) => {
            if changed {
                metrics::counter!("ivr_calls_total", "status" => status.as_str()).increment(1);
            }
            tracing::info!(call_sid = %sid, status = status.as_str(), changed, "call status");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            metrics::counter!("ivr_errors_total", "route" => "status").increment(1);
            // 5xx: the carrier retries the callback later.
            Error::unavailable(format!("call status of {sid} not recorded: {e}")).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct MessageQuery {
    /// Our outbox message id, set in the callback URL when the message was sent.
    msg: Option<i64>,
}

/// A delivery status for an SMS (queued, sent, delivered, undelivered, failed), recorded by
/// [`record_delivery`]: 30003 (unreachable) and 30008 (unknown) are tried again after a backoff,
/// up to `outbox.max_attempts` sends, then dead with an alert; 30006 (landline) is final for SMS
/// and the number falls back, once, to e-mail or to being read on the next call; others (30005
/// unknown handset, 30007 filtered, 21610 unsubscribed…) are final and alert the centre.
async fn message_status(State(app): State<AppState>, Query(q): Query<MessageQuery>, form: TwilioParams) -> Response {
    let (sid, status) = match (form.require("MessageSid"), form.require("MessageStatus")) {
        (Ok(s), Ok(st)) => match MessageSid::parse(s) {
            Ok(sid) => (sid, st.to_lowercase()),
            Err(_) => return Error::invalid("MessageSid", "MessageSid is not a message id").into_response(),
        },
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let code = form.get("ErrorCode").filter(|c| !c.is_empty()).map(str::to_string);
    // Intermediate states (accepted, scheduled, sending…) change nothing we act on.
    if !matches!(status.as_str(), "queued" | "sent" | "delivered" | "undelivered" | "failed") {
        return StatusCode::NO_CONTENT.into_response();
    }
    let result = async {
        let (store, policy) = (&app.store, &app.outbox);
        record_delivery(store, policy, app.email_configured, q.msg, sid.as_str(), &status, code.as_deref(), Utc::now())
            .await?;
        if matches!(status.as_str(), "failed" | "undelivered") {
            app.outbox_wake.notify_one();
        }
        Ok::<_, StoreError>(true)
    };
    match result.await {
        Ok(_) => {
            metrics::counter!("ivr_message_statuses_total", "status" => status.clone()).increment(1);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => Error::unavailable(format!("message status not recorded: {e}")).into_response(),
    }
}

/// Runs one turn of a stored call through the store and answers its TwiML (an apology if
/// anything fails).
async fn take_turn(app: &AppState, sid: &str, seq: i64, input: Input) -> Response {
    let f = turn_fn(&app.turns, sid, seq, input, Utc::now());
    match app.store.calls().turn(sid, seq, None, f).await {
        Ok(r) => answer(app, sid, seq, r).await,
        Err(e) => failure(app, sid, "turn failed", Some(e)).await,
    }
}

/// The TwiML of a turn taken (or replayed).
async fn answer(app: &AppState, sid: &str, seq: i64, r: TurnResult) -> Response {
    metrics::counter!("ivr_steps_total", "replay" => if r.replay { "true" } else { "false" }).increment(1);
    tracing::info!(seq, replay = r.replay, "turn");
    // Only a turn that wrote messages wakes the dispatcher: a wake costs it two transactions.
    if r.queued {
        app.outbox_wake.notify_one();
    }
    // A stored answer that holds a processing number was sealed.
    let response = if is_sealed(&r.response) { app.turns.issuer.key.open(&r.response) } else { Some(r.response) };
    match response {
        Some(body) => twiml_response(body),
        None => failure(app, sid, "a stored answer could not be opened (was issuer.key changed?)", None).await,
    }
}

/// Who is on a call that failed, as far as the request tells: its call id, and the number
/// that called.
#[derive(Clone, Copy)]
struct Caller<'a> {
    sid: Option<&'a str>,
    from: Option<&'a str>,
}

impl<'a> From<&'a TwilioParams> for Caller<'a> {
    fn from(form: &'a TwilioParams) -> Caller<'a> {
        Caller { sid: form.get("CallSid"), from: form.get("From") }
    }
}

impl<'a> From<&'a str> for Caller<'a> {
    fn from(sid: &'a str) -> Caller<'a> {
        Caller { sid: Some(sid), from: None }
    }
}

/// The language of a call, when the store knows it: the call's own, else that of the patient
/// calling in. Read only after something failed, so it may well fail too (then `None`).
async fn call_language(app: &AppState, caller: Caller<'_>) -> Option<String> {
    if let Some(sid) = caller.sid.filter(|s| is_carrier_id(s)) {
        if let Ok(Some(call)) = app.store.calls().get(sid).await {
            return Some(call.state.lang).filter(|l| !l.is_empty());
        }
    }
    let from = caller.from.filter(|f| !f.is_empty())?;
    app.store.patients().by_phone(from).await.ok().flatten().map(|p| p.language)
}

/// Logs a failure on a voice route once, in the call's span, and gives the caller an apology
/// as TwiML, in the call's language when it is known (Japanese otherwise).
async fn failure<'a>(
    app: &AppState,
    caller: impl Into<Caller<'a>>,
    what: impl std::fmt::Display,
    err: Option<StoreError>,
) -> Response {
    match err {
        Some(e) => tracing::error!(error = %e, "{what}"),
        None => tracing::error!("{what}"),
    }
    metrics::counter!("ivr_errors_total", "route" => "voice").increment(1);
    let language = call_language(app, caller.into()).await.unwrap_or_else(|| "ja-JP".into());
    twiml_response(twiml::render(&twiml::from_response(&Speech::apology(&language), "")))
}

/// What an answering machine hears, once its greeting has ended: a short message with the
/// health centre's number (prompt `machine_message`). Detection is often wrong, so a key
/// pressed during the message starts the call as for a person.
async fn machine_message(app: &AppState, job: i64, attempt: i32) -> Response {
    let language = match app.store.campaign().job(job).await {
        Ok(Some(j)) => app.store.patients().get(j.patient_id.as_str()).await.ok().flatten().map(|p| p.language),
        _ => None,
    }
    .unwrap_or_else(|| "ja-JP".into());
    let speech = match app.flows.catalog(&language) {
        Some(c) if c.get("machine_message").is_some() => {
            let vars = [(CENTRE_PHONE.to_string(), crate::flow::Value::text(&*app.turns.centre_phone))];
            c.speech("machine_message", &vars.into_iter().collect())
        }
        _ => Say::Say {
            text: "こちらは保健所です。健康観察のお電話をいたしました。後ほど改めてお電話します。".into(),
            language: "ja-JP".into(),
            voice: None,
        },
    };
    let message = Speech { speech: vec![speech], gather: None, dial: None };
    let say: Vec<twiml::Verb> =
        twiml::from_response(&message, "").into_iter().filter(|v| *v != twiml::Verb::Hangup).collect();
    let action = format!("{}/twilio/voice?job={job}&attempt={attempt}&person=1", app.public_url);
    let verbs = [
        twiml::Verb::Gather(twiml::Gather {
            action,
            timeout: 3,
            num_digits: Some(1),
            finish_on_key: String::new(),
            action_on_empty_result: false,
            children: say,
        }),
        twiml::Verb::Hangup,
    ];
    twiml_response(twiml::render(&verbs))
}

/// A call from a number not in the roster: told so, and nothing is stored.
fn unknown(from: &str) -> Response {
    tracing::info!(from = %mask_phone(from), "inbound call from an unknown number");
    twiml_response(twiml::render(&twiml::from_response(&unknown_caller(), "")))
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
        dial: None,
    }
}
