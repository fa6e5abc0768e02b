//! The staff's JSON API over the follow-up queue and the roster (routed in [`super::api`]):
//! - `GET /api/v1/followups` (`read`): the queue, most urgent first, then longest waiting;
//!   filters `status` (`active` by default: open and claimed) and `area`, pages `limit`/`offset`.
//! - `POST /api/v1/followups/{id}/claim|release|close` (`followup`): a person takes an item,
//!   gives it back, or closes it with an outcome and a note. An action on an item that changed
//!   meanwhile (closed, claimed by someone else, joined by a new alert since the `version` sent)
//!   is a 409 naming who did what and when, and changes nothing.
//! - `GET /api/v1/patients`, `GET /api/v1/patients/{id}`, `GET /api/v1/patients/{id}/calls`
//!   (`read`): the roster, a patient's record, their calls with answers and alerts.
//!
//! Every read of a patient's data and every action leaves a row in the audit log ([`audit`]),
//! written before the data is read or the item changed: when the log cannot be written, the
//! request fails (500) and nothing is read or changed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{Client, RequiredScope, scope};
use super::error::{Error, Json, Path, Query};
use crate::store::{Act, Acted, Action, AuditEntry, Followup, ListQuery, NOTE_MAX, Refusal, StatusFilter};
use crate::types::FollowupOutcome;

/// The most items or patients one page holds.
pub const PAGE_MAX: i64 = 200;
/// The calls of a patient answered, newest first.
pub const CALLS_MAX: i64 = 100;

/// Writes who read or did what to the staff audit log (the one the pages write and admins
/// read): `api:TOKEN`, or `NAME (api:TOKEN)` when the request names the staff member.
async fn audit<S: RequiredScope>(
    app: &AppState,
    client: &Client<S>,
    staff: Option<&str>,
    action: &str,
    target: &str,
) -> Result<(), Error> {
    let actor = match staff {
        Some(name) if name != client.name => format!("{name} (api:{})", client.name),
        _ => format!("api:{}", client.name),
    };
    let entry = AuditEntry {
        at: app.campaign.clock.now(),
        actor,
        action: action.into(),
        target: target.into(),
        address: client.address.clone(),
    };
    app.store.users().audit(&entry).await.map_err(Error::internal)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn item_json(f: &Followup) -> Value {
    let reasons: Vec<Value> = f
        .reasons
        .iter()
        .map(|r| {
            json!({
                "kind": r.kind,
                "reason": r.reason,
                "severity": r.severity,
                "call_id": r.call_id,
                "at": time(r.at),
            })
        })
        .collect();
    json!({
        "id": f.followup_id,
        "patient_id": f.patient_id,
        "status": f.status,
        "severity": f.severity,
        "opened_at": time(f.opened_at),
        "claimed_by": f.claimed_by,
        "claimed_at": f.claimed_at.map(time),
        "closed_by": f.closed_by,
        "closed_at": f.closed_at.map(time),
        "outcome": f.outcome,
        "note": f.note,
        "version": f.version,
        "last_change": { "what": f.last.what.as_str(), "by": f.last.by, "at": time(f.last.at) },
        "reasons": reasons,
    })
}

/// A 422 naming the field at fault.
fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field), message)
}

/// A page's `limit` and `offset`, checked.
fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), Error> {
    let limit = limit.unwrap_or(50);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(invalid("limit", format!("limit is from 1 to {PAGE_MAX}")));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(invalid("offset", "offset is 0 or more"));
    }
    Ok((limit, offset))
}

fn next_offset(len: usize, limit: i64, offset: i64) -> Option<i64> {
    (len as i64 == limit).then_some(offset.saturating_add(limit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    status: Option<String>,
    area: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn list(
    State(app): State<AppState>,
    client: Client<scope::Read>,
    Query(p): Query<ListParams>,
) -> Result<Response, Error> {
    let status = match p.status.as_deref() {
        None => StatusFilter::Active,
        Some(s) => StatusFilter::parse(s)
            .ok_or_else(|| invalid("status", "status is one of active, open, claimed, closed, all"))?,
    };
    let (limit, offset) = page(p.limit, p.offset)?;
    let area = p.area.filter(|a| !a.is_empty());
    let detail = format!(
        "status {} area {} limit {limit} offset {offset}",
        p.status.as_deref().unwrap_or("active"),
        area.as_deref().unwrap_or("*")
    );
    audit(&app, &client, None, "view_followups", &detail).await?;
    let q = ListQuery { status, area, limit, offset, patient: None };
    let items = app.store.followups().list(&q).await.map_err(Error::internal)?;
    let next = next_offset(items.len(), limit, offset);
    let items: Vec<Value> = items.iter().map(item_json).collect();
    Ok(axum::Json(json!({ "items": items, "next_offset": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimRequest {
    /// The item's version the person saw; any change since is refused.
    #[serde(default, deserialize_with = "integer")]
    version: Option<i64>,
    /// Who acts (defaults to the token's name).
    staff: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloseRequest {
    outcome: FollowupOutcome,
    note: String,
    #[serde(default, deserialize_with = "integer")]
    version: Option<i64>,
    staff: Option<String>,
}

/// A version: an integer, written as JSON allows one (`3`, or `3.0`, which JSON Schema calls an
/// integer too), from 1 to `i64::MAX`; `null` as absent.
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    let whole = n.as_i64().or_else(|| {
        n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f < 9.223_372_036_854_776e18).map(|f| f as i64)
    });
    match whole {
        Some(v) if v >= 1 => Ok(Some(v)),
        _ => Err(serde::de::Error::custom(format!("{n} is not an integer from 1 to {}", i64::MAX))),
    }
}

/// Who acts: the name sent, checked, or the token's.
fn who(client: &str, staff: Option<String>) -> Result<String, Error> {
    match staff {
        None => Ok(client.to_string()),
        Some(s) if s.trim().is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) => {
            Err(invalid("staff", "staff is a name of 1 to 100 characters"))
        }
        Some(s) => Ok(s.trim().to_string()),
    }
}

fn unknown_item(id: &str) -> Error {
    Error::new(StatusCode::NOT_FOUND, "unknown_followup", Some("id"), format!("no follow-up item {id}"))
}

fn item_id(id: &str) -> Result<i64, Error> {
    id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| unknown_item(id))
}

async fn act(
    app: &AppState,
    client: &Client<scope::Followup>,
    id: &str,
    action: Action,
    by: String,
    version: Option<i64>,
) -> Result<Response, Error> {
    let followup_id = item_id(id)?;
    let name = action.name();
    let target = match &action {
        Action::Close { outcome, .. } => format!("followup {followup_id}: {outcome}"),
        _ => format!("followup {followup_id}"),
    };
    audit(app, client, Some(&by), &format!("{name}_followup"), &target).await?;
    let a = Act { action, by, version, at: app.campaign.clock.now() };
    match app.store.followups().act(followup_id, &a).await.map_err(Error::internal)? {
        Acted::Done(f) => {
            tracing::info!(followup = followup_id, by = %a.by, action = name, "follow-up item changed");
            Ok(axum::Json(item_json(&f)).into_response())
        }
        Acted::Refused(r) => {
            let target = format!("followup {followup_id}: {}", r.message);
            audit(app, client, Some(&a.by), "refused_followup", &target).await?;
            Err(stale(r))
        }
        Acted::Unknown => Err(unknown_item(id)),
    }
}

/// A refused action: 409 with who did what and when, and the item's version now.
fn stale(r: Refusal) -> Error {
    Error::new(StatusCode::CONFLICT, "stale", Some("id"), r.message)
        .with("status", r.status)
        .with("version", r.version)
        .with("last_change", json!({ "what": r.last.what.as_str(), "by": r.last.by, "at": time(r.last.at) }))
}

/// An action of the API on an item: how its body reads, and what it asks for.
pub(super) trait Verb {
    type Body: serde::de::DeserializeOwned + Send;
    /// The action, who acts (as sent) and the version seen, or the field at fault.
    fn action(body: Self::Body) -> Result<(Action, Option<String>, Option<i64>), Error>;
}

/// `claim`: a person takes the item.
pub(super) struct Claim;
/// `release`: the person gives it back.
pub(super) struct Release;
/// `close`: with an outcome and a note.
pub(super) struct Close;

impl Verb for Claim {
    type Body = ClaimRequest;
    fn action(b: ClaimRequest) -> Result<(Action, Option<String>, Option<i64>), Error> {
        Ok((Action::Claim, b.staff, b.version))
    }
}

impl Verb for Release {
    type Body = ClaimRequest;
    fn action(b: ClaimRequest) -> Result<(Action, Option<String>, Option<i64>), Error> {
        Ok((Action::Release, b.staff, b.version))
    }
}

impl Verb for Close {
    type Body = CloseRequest;
    fn action(b: CloseRequest) -> Result<(Action, Option<String>, Option<i64>), Error> {
        if b.note.chars().count() > NOTE_MAX {
            return Err(invalid("note", format!("note is at most {NOTE_MAX} characters")));
        }
        Ok((Action::Close { outcome: b.outcome, note: b.note }, b.staff, b.version))
    }
}

/// `POST /api/v1/followups/{id}/claim|release|close`, one handler per [`Verb`].
pub(super) async fn act_on<V: Verb>(
    State(app): State<AppState>,
    client: Client<scope::Followup>,
    Path(id): Path<String>,
    Json(body): Json<V::Body>,
) -> Result<Response, Error> {
    let (action, staff, version) = V::action(body)?;
    let by = who(&client.name, staff)?;
    act(&app, &client, &id, action, by, version).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn patients(
    State(app): State<AppState>,
    client: Client<scope::Read>,
    Query(p): Query<PageParams>,
) -> Result<Response, Error> {
    let (limit, offset) = page(p.limit, p.offset)?;
    audit(&app, &client, None, "view_roster", &format!("limit {limit} offset {offset}")).await?;
    let list = app.store.patients().page(limit, offset).await.map_err(Error::internal)?;
    let next = next_offset(list.len(), limit, offset);
    Ok(axum::Json(json!({ "patients": list, "next_offset": next })).into_response())
}

pub(super) fn unknown_patient(id: &str) -> Error {
    Error::new(StatusCode::NOT_FOUND, "unknown_patient", Some("id"), format!("no patient {id}"))
}

pub(super) async fn patient(
    State(app): State<AppState>,
    client: Client<scope::Read>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    audit(&app, &client, None, "view_patient", &id).await?;
    let p = app.store.patients().get(&id).await.map_err(Error::internal)?.ok_or_else(|| unknown_patient(&id))?;
    Ok(axum::Json(p).into_response())
}

pub(super) async fn patient_calls(
    State(app): State<AppState>,
    client: Client<scope::Read>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let store = &app.store;
    audit(&app, &client, None, "view_patient_calls", &id).await?;
    if store.patients().get(&id).await.map_err(Error::internal)?.is_none() {
        return Err(unknown_patient(&id));
    }
    let calls = store.calls().of_patient(&id, CALLS_MAX).await.map_err(Error::internal)?;
    let ids: Vec<i64> = calls.iter().map(|c| c.call_id).collect();
    let mut details = store.calls().details(&ids, false).await.map_err(Error::internal)?;
    let mut out = Vec::with_capacity(calls.len());
    for c in calls {
        let d = details.remove(&c.call_id).unwrap_or_default();
        let answers: serde_json::Map<String, Value> =
            d.answers.into_iter().map(|a| (a.name, Value::String(a.value.to_string()))).collect();
        out.push(json!({
            "id": c.call_id,
            "call_sid": c.call_sid.as_str(),
            "direction": c.direction,
            "flow": c.flow,
            "status": c.status,
            "ended": c.ended,
            "incomplete": c.incomplete,
            "duration": c.duration,
            "started_at": time(c.started_at),
            "answers": answers,
            "alerts": d.alerts,
        }));
    }
    Ok(axum::Json(json!({ "patient_id": id, "calls": out })).into_response())
}
