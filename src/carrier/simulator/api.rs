//! Twilio's REST API as the simulator serves it: basic auth, form validation with Twilio's
//! error codes and JSON error body, and the Call and Message resources as JSON.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use serde_json::{Value as Json, json};

use super::play::{CallPlan, deliver, play};
use super::{ACCOUNT_SID, SimulatedCall, SimulatedSms, Simulator, lock};
use crate::carrier::twilio::{CallEvent, CallStatus, MachineDetection};
use crate::carrier::webhook::new_call_sid;
use crate::telemetry::mask_phone;
use crate::types::{E164, MessageSid};

pub(super) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/2010-04-01/Accounts/{account}/Calls.json", post(create_call).get(list_calls))
        .route("/2010-04-01/Accounts/{account}/Calls/{sid}", get(fetch_call))
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(create_message).get(list_messages))
        .with_state(sim)
}

/// A refusal in Twilio's shape: `{code, message, more_info, status}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

fn refuse(status: u16, code: u32, message: impl Into<String>) -> ApiError {
    ApiError { status: StatusCode::from_u16(status).expect("a valid status"), code, message: message.into() }
}

fn bad(code: u32, message: impl Into<String>) -> ApiError {
    refuse(400, code, message)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("a header value"));
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = r#"Basic realm="Twilio API""#.parse().expect("a header value");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// HTTP basic auth with the account sid and the auth token, for the account in the path.
fn authorize(sim: &Simulator, account: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = || refuse(401, 20003, "Authenticate");
    let encoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .ok_or_else(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| unauthorized())?;
    let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
    let (user, password) = decoded.split_once(':').ok_or_else(unauthorized)?;
    if user != ACCOUNT_SID || !sim.shared.auth_token.matches(password) {
        return Err(unauthorized());
    }
    if account != ACCOUNT_SID {
        return Err(refuse(404, 20404, format!("The requested resource /2010-04-01/Accounts/{account} was not found")));
    }
    Ok(())
}

/// A form body, repeated names kept (`StatusCallbackEvent` comes once per event).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).flat_map(|(_, v)| v.split(' ')).filter(|v| !v.is_empty())
    }
}

fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn to_number(form: &Form) -> Result<String, ApiError> {
    let to = form.get("To").ok_or_else(|| bad(21201, "No 'To' number is specified"))?;
    if !is_e164(to) {
        return Err(bad(21211, format!("The 'To' number {to} is not a valid phone number.")));
    }
    Ok(to.to_string())
}

fn method(form: &Form, name: &str) -> Result<(), ApiError> {
    match form.get(name) {
        None | Some("POST") => Ok(()),
        Some(other) => Err(bad(21220, format!("{name} '{other}' is not supported here: only POST"))),
    }
}

/// `POST …/Calls.json`: validates like Twilio, keeps and logs the call, starts playing it.
async fn create_call(
    State(sim): State<Simulator>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&sim, &account, &headers)?;
    let plan = call_plan(&Form::parse(&body))?;
    let persona = sim.persona(&plan.to);
    let call = SimulatedCall {
        sid: new_call_sid(),
        from: plan.from.clone(),
        to: plan.to.clone(),
        url: plan.url.clone(),
        status_callback: plan.status_callback.clone(),
        persona,
        status: CallStatus::Queued,
        answered_by: None,
        at: Utc::now(),
        answered_at: None,
        ended_at: None,
        duration: None,
        reported: Vec::new(),
        heard: Vec::new(),
    };
    sim.log_line(json!({
        "kind": "call", "sid": call.sid, "to": mask_phone(&call.to), "persona": persona.as_str(),
        "url": call.url, "at": call.at.to_rfc3339(),
    }))
    .map_err(|e| log_failed(&e))?;
    lock(&sim.shared.calls).push(call.clone());
    tracing::info!(call_sid = %call.sid, to = %mask_phone(&call.to), persona = persona.as_str(), "simulator: call placed");
    tokio::spawn(play(sim.clone(), call.sid.clone(), plan, persona));
    Ok((StatusCode::CREATED, axum::Json(call_json(&call))).into_response())
}

fn call_plan(form: &Form) -> Result<CallPlan, ApiError> {
    let to = to_number(form)?;
    let from = form.get("From").ok_or_else(|| bad(21213, "No 'From' number is specified"))?;
    if !is_e164(from) {
        return Err(bad(21212, format!("The 'From' number {from} is not a valid phone number.")));
    }
    let url = form.get("Url").ok_or_else(|| bad(21205, "Url parameter is required."))?;
    if !is_url(url) {
        return Err(bad(21205, format!("Url is not a valid URL: {url}")));
    }
    method(form, "Method")?;
    method(form, "StatusCallbackMethod")?;
    let status_callback = form.get("StatusCallback").map(str::to_string);
    if let Some(cb) = &status_callback {
        if !is_url(cb) {
            return Err(bad(21609, format!("Invalid StatusCallback url: {cb}")));
        }
    }
    let mut events = Vec::new();
    for name in form.all("StatusCallbackEvent") {
        match CallEvent::ALL.iter().find(|e| e.as_str() == name) {
            Some(e) => events.push(*e),
            None => return Err(bad(21626, format!("Invalid StatusCallbackEvent '{name}'"))),
        }
    }
    if events.is_empty() {
        // Twilio reports only the end of a call unless asked for more.
        events.push(CallEvent::Completed);
    }
    let timeout = match form.get("Timeout") {
        None => 60,
        Some(t) => match t.parse::<u32>() {
            Ok(n) if (1..=600).contains(&n) => n,
            _ => return Err(bad(21208, format!("Invalid Timeout '{t}': a whole number of seconds, 1 to 600"))),
        },
    };
    let machine_detection = match form.get("MachineDetection") {
        None => None,
        Some("Enable") => Some(MachineDetection::Enable),
        Some("DetectMessageEnd") => Some(MachineDetection::DetectMessageEnd),
        Some(other) => return Err(bad(21234, format!("Invalid MachineDetection '{other}'"))),
    };
    let async_amd = match (form.get("AsyncAmd"), form.get("AsyncAmdStatusCallback")) {
        (Some("true"), Some(cb)) if is_url(cb) => Some(cb.to_string()),
        (Some("true"), Some(cb)) => return Err(bad(21609, format!("Invalid AsyncAmdStatusCallback url: {cb}"))),
        _ => None,
    };
    Ok(CallPlan {
        to,
        from: from.to_string(),
        url: url.to_string(),
        status_callback,
        events,
        timeout,
        machine_detection,
        async_amd,
    })
}

/// `GET …/Calls/{Sid}.json`: the call as it stands.
async fn fetch_call(
    State(sim): State<Simulator>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&sim, &account, &headers)?;
    let not_found = || {
        refuse(404, 20404, format!("The requested resource /2010-04-01/Accounts/{account}/Calls/{file} was not found"))
    };
    let sid = file.strip_suffix(".json").ok_or_else(not_found)?;
    let call = sim.call(sid).ok_or_else(not_found)?;
    Ok(axum::Json(call_json(&call)).into_response())
}

/// `GET …/Calls.json`: the calls placed, newest first, filtered as Twilio does by `To`, `From`
/// and `Status` when given, `PageSize` at a time (50 unless asked, at most 1,000); one page.
/// (Twilio's `StartTime` filters are not served: they would leave out the calls not yet
/// answered, and the product does not send them.)
async fn list_calls(
    State(sim): State<Simulator>,
    Path(account): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (form, page_size) = list_request(&sim, &account, &headers, query)?;
    let calls = sim
        .calls()
        .into_iter()
        .filter(|c| addressed(&form, &c.to, &c.from))
        .filter(|c| form.get("Status").is_none_or(|status| c.status.as_str() == status));
    Ok(page("Calls", "calls", calls, page_size, call_json))
}

/// A list request, authorized: its query string as a form, and its `PageSize`.
fn list_request(
    sim: &Simulator,
    account: &str,
    headers: &HeaderMap,
    query: Option<String>,
) -> Result<(Form, usize), ApiError> {
    authorize(sim, account, headers)?;
    let form = Form::parse(query.unwrap_or_default().as_bytes());
    let page_size = page_size(&form)?;
    Ok((form, page_size))
}

/// Whether a call or message matches the list's `To` and `From` filters (each when given).
fn addressed(form: &Form, to: &str, from: &str) -> bool {
    form.get("To").is_none_or(|t| t == to) && form.get("From").is_none_or(|f| f == from)
}

/// The first page of a list resource (`Calls`, `Messages`) as Twilio writes it: of `items`
/// (kept oldest first), the newest `page_size`, newest first, under `key`.
fn page<T>(
    resource: &str,
    key: &str,
    items: impl Iterator<Item = T>,
    page_size: usize,
    to_json: fn(&T) -> Json,
) -> Response {
    let mut items: Vec<T> = items.collect();
    items.reverse();
    items.truncate(page_size);
    let uri = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/{resource}.json?PageSize={page_size}&Page=0");
    let mut page = json!({
        "page": 0,
        "page_size": page_size,
        "start": 0,
        "end": items.len().saturating_sub(1),
        "uri": uri,
        "first_page_uri": uri,
        "next_page_uri": null,
        "previous_page_uri": null,
    });
    page[key] = Json::Array(items.iter().map(to_json).collect());
    axum::Json(page).into_response()
}

/// `PageSize` of a list: 50 unless asked, 1 to 1,000.
fn page_size(form: &Form) -> Result<usize, ApiError> {
    match form.get("PageSize") {
        None => Ok(50),
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(bad(20001, format!("Invalid PageSize '{n}'"))),
        },
    }
}

/// The Call resource as Twilio writes it (counts as strings, times in RFC 2822).
pub(super) fn call_json(call: &SimulatedCall) -> Json {
    json!({
        "account_sid": ACCOUNT_SID,
        "sid": call.sid,
        "to": call.to,
        "from": call.from,
        "direction": "outbound-api",
        "status": call.status.as_str(),
        "duration": call.duration.map(|d| d.to_string()),
        "answered_by": call.answered_by.map(|a| a.as_str()),
        "date_created": call.at.to_rfc2822(),
        "start_time": call.answered_at.map(|t| t.to_rfc2822()),
        "end_time": call.ended_at.map(|t| t.to_rfc2822()),
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{}.json", call.sid),
    })
}

/// `POST …/Messages.json`: refuses what Twilio refuses (a landline is 21614), keeps and logs
/// the message, then reports its delivery to its status callback.
async fn create_message(
    State(sim): State<Simulator>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&sim, &account, &headers)?;
    let form = Form::parse(&body);
    let to = to_number(&form)?;
    let from = match (form.get("From"), form.get("MessagingServiceSid")) {
        (Some(from), _) => from.to_string(),
        (None, Some(service)) => service.to_string(),
        (None, None) => return Err(bad(21603, "A 'From' phone number is required.")),
    };
    let text = form.get("Body").ok_or_else(|| bad(21602, "Message body is required."))?;
    if text.chars().count() > 1600 {
        return Err(bad(21617, "The concatenated message body exceeds the 1600 character limit."));
    }
    let status_callback = form.get("StatusCallback").map(str::to_string);
    if status_callback.as_deref().is_some_and(|cb| !is_url(cb)) {
        return Err(bad(21609, "Invalid StatusCallback url"));
    }
    if !E164::parse(&to).is_ok_and(|n| n.is_mobile()) {
        return Err(bad(21614, format!("'To' number {to} is not a valid mobile number")));
    }
    let persona = sim.persona(&to);
    let sms = SimulatedSms {
        sid: MessageSid::parse(&format!("SM{}", &new_call_sid().as_str()[2..]))
            .expect("SM and 32 hex digits is a message id"),
        to,
        from,
        body: text.to_string(),
        status: "queued".into(),
        at: Utc::now(),
    };
    sim.log_line(json!({
        "kind": "sms", "sid": sms.sid, "to": mask_phone(&sms.to), "persona": persona.as_str(),
        "segments": crate::issuer::sms_segments(&sms.body), "at": sms.at.to_rfc3339(),
    }))
    .map_err(|e| log_failed(&e))?;
    lock(&sim.shared.messages).push(sms.clone());
    tracing::info!(sid = %sms.sid, to = %mask_phone(&sms.to), persona = persona.as_str(), "simulator: SMS accepted");
    let answer = message_json(&sms);
    tokio::spawn(deliver(sim.clone(), sms, status_callback, persona));
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// The Message resource as Twilio writes it (counts as strings, times in RFC 2822).
fn message_json(sms: &SimulatedSms) -> Json {
    let error_code = (sms.status == "undelivered").then_some(crate::carrier::twilio::codes::UNKNOWN_DESTINATION);
    json!({
        "account_sid": ACCOUNT_SID,
        "sid": sms.sid,
        "to": sms.to,
        "from": sms.from,
        "body": sms.body,
        "status": sms.status,
        "error_code": error_code,
        "error_message": error_code.map(|_| "Unknown destination handset"),
        "num_segments": crate::issuer::sms_segments(&sms.body).to_string(),
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": sms.at.to_rfc2822(),
        "date_sent": (sms.status != "queued").then(|| sms.at.to_rfc2822()),
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{}.json", sms.sid),
    })
}

/// `GET …/Messages.json`: the messages accepted, newest first, filtered as Twilio does by
/// `To`, `From` and `DateSent>=` (a date, or a time) when given, `PageSize` at a time (50
/// unless asked, at most 1,000); one page.
async fn list_messages(
    State(sim): State<Simulator>,
    Path(account): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (form, page_size) = list_request(&sim, &account, &headers, query)?;
    let since = match form.get("DateSent>") {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
                })
                .map_err(|_| bad(20001, format!("Invalid DateSent '{t}'")))?,
        ),
    };
    let messages = sim
        .messages()
        .into_iter()
        .filter(|m| addressed(&form, &m.to, &m.from))
        .filter(|m| since.is_none_or(|t| m.at >= t));
    Ok(page("Messages", "messages", messages, page_size, message_json))
}

/// The record could not be written: refuse rather than act unrecorded (the client may retry).
fn log_failed(e: &std::io::Error) -> ApiError {
    tracing::error!(error = %e, "simulator: the log file could not be written");
    refuse(503, 20503, "Service unavailable")
}
