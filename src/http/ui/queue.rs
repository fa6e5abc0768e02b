//! 要FOLLOW: the follow-up queue as the staff's front page, and its actions (claim, release,
//! close with an outcome). A viewer reads it; a nurse or an admin acts. An action on an item
//! that changed meanwhile is refused with who did what and when, and changes nothing.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::i18n::{self, Text};
use super::pages::{Frame, html};
use super::{PageError, Staff, StaffForm};
use crate::http::AppState;
use crate::store::{Act, Acted, Action, ChangeKind, Followup, ListQuery, NOTE_MAX, StatusFilter};
use crate::types::{Alert, AlertKind, FollowupOutcome, FollowupStatus, Role, Severity, alert_words};

/// The most items the page lists at once.
const PAGE_ITEMS: i64 = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/", get(queue))
        .route("/ui/followups/{id}/claim", post(claim))
        .route("/ui/followups/{id}/release", post(release))
        .route("/ui/followups/{id}/close", post(close))
}

/// A severity in words.
pub(super) fn severity(t: &Text, s: Severity) -> &'static str {
    match s {
        Severity::Urgent => t.say("緊急", "Urgent"),
        Severity::High => t.say("高", "High"),
        Severity::Normal => t.say("通常", "Normal"),
    }
}

/// An outcome in words.
pub(super) fn outcome(t: &Text, o: FollowupOutcome) -> &'static str {
    match o {
        FollowupOutcome::ReachedByPhone => t.say("電話で確認", "Reached by phone"),
        FollowupOutcome::Visited => t.say("訪問", "Visited"),
        FollowupOutcome::ReferredToHospital => t.say("受診・入院調整", "Referred to hospital"),
        FollowupOutcome::NoActionNeeded => t.say("対応不要", "No action needed"),
        FollowupOutcome::CouldNotReach => t.say("連絡つかず", "Could not reach"),
    }
}

/// Why an item is open, in words: the alert's kind, or the flow's reason.
pub(super) fn reason(t: &Text, kind: AlertKind, reason: &str) -> String {
    match alert_words(kind, reason) {
        Some((ja, en)) => t.say(ja, en).to_string(),
        None => reason.to_string(),
    }
}

/// An alert as the `alerts` table keeps it (`spo2_low`, `unreachable: 3 attempt(s) today`), in
/// words, with the engine's detail after it.
pub(super) fn stored_alert(t: &Text, text: &str) -> String {
    let alert = Alert::from_stored(text);
    let words = reason(t, alert.kind, &alert.detail);
    match alert.kind {
        AlertKind::Flow => words,
        _ if alert.detail.is_empty() => words,
        _ => format!("{words} ({})", alert.detail),
    }
}

/// A past change in words: "claimed by sato at 10:02".
pub(super) fn change(t: &Text, what: ChangeKind, by: &str, at: String) -> String {
    let verb = match what {
        ChangeKind::Claimed => t.say("対応中にしました", "claimed it"),
        ChangeKind::Released => t.say("対応中を解除しました", "released it"),
        ChangeKind::Closed => t.say("完了にしました", "closed it"),
        _ => t.say("更新しました", "changed it"),
    };
    if t.html_lang == "ja" { format!("{at} に {by} さんが{verb}。") } else { format!("{by} {verb} at {at}.") }
}

/// A waiting time in words.
pub(super) fn waited(t: &Text, since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (now - since).num_minutes().max(0);
    let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (t.html_lang == "ja", d, h) {
        (true, 0, 0) => format!("{m}分"),
        (true, 0, _) => format!("{h}時間{m}分"),
        (true, _, _) => format!("{d}日{h}時間"),
        (false, 0, 0) => format!("{m} min"),
        (false, 0, _) => format!("{h} h {m} min"),
        (false, _, _) => format!("{d} d {h} h"),
    }
}

#[derive(Template)]
#[template(path = "ui/queue.html")]
struct Queue {
    t: &'static Text,
    frame: Frame,
    items: Vec<ItemView>,
    can_act: bool,
    status: &'static str,
    severity: String,
    severities: Vec<(&'static str, &'static str)>,
    outcomes: Vec<(&'static str, &'static str)>,
    notice: Option<String>,
    refusal: Option<String>,
    /// A close form's error, next to its field: the item and what is wrong.
    close_error: Option<(i64, &'static str)>,
    note_max: usize,
}

pub(super) struct ItemView {
    pub id: i64,
    pub patient_id: String,
    pub name: String,
    pub severity: &'static str,
    pub severity_code: &'static str,
    pub reasons: Vec<(String, String)>,
    pub waited: String,
    pub opened: String,
    pub claimed_by: Option<String>,
    pub mine: bool,
    pub closed: Option<String>,
    pub note: String,
    pub version: i64,
}

/// An item as the pages show it.
pub(super) async fn item_view(state: &AppState, staff: &Staff, f: &Followup) -> Result<ItemView, PageError> {
    let t = i18n::text(staff.user.language);
    let tz = state.turns.issuer.tz;
    let local = |at: DateTime<Utc>| at.with_timezone(&tz).format("%m/%d %H:%M").to_string();
    let now = state.campaign.clock.now();
    let name = f.patient_name.clone();
    let closed = match (f.status, f.outcome) {
        (FollowupStatus::Closed, Some(o)) => Some(format!(
            "{} — {} {}",
            outcome(t, o),
            f.closed_by.as_deref().unwrap_or(""),
            f.closed_at.map(local).unwrap_or_default()
        )),
        _ => None,
    };
    Ok(ItemView {
        id: f.followup_id,
        patient_id: f.patient_id.to_string(),
        name,
        severity: severity(t, f.severity),
        severity_code: f.severity.as_str(),
        reasons: f.reasons.iter().map(|r| (reason(t, r.kind, &r.reason), local(r.at))).collect(),
        waited: waited(t, f.opened_at, f.closed_at.unwrap_or(now)),
        opened: local(f.opened_at),
        claimed_by: f.claimed_by.clone().filter(|_| f.status == FollowupStatus::Claimed),
        mine: f.claimed_by.as_deref() == Some(staff.user.name.as_str()),
        closed,
        note: f.note.clone().unwrap_or_default(),
        version: f.version,
    })
}

#[derive(Deserialize, Default)]
struct QueueQuery {
    status: Option<String>,
    severity: Option<String>,
    done: Option<String>,
}

async fn queue_page(
    state: &AppState,
    staff: &Staff,
    q: QueueQuery,
    refusal: Option<String>,
) -> Result<Queue, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let closed = q.status.as_deref() == Some("closed");
    let filter = if closed { StatusFilter::Only(FollowupStatus::Closed) } else { StatusFilter::Active };
    let wanted = q.severity.as_deref().and_then(|s| Severity::parse(s).ok());
    staff.audit(state, "view_queue", if closed { "closed" } else { "active" }).await?;
    let lq = ListQuery { status: filter, area: None, limit: PAGE_ITEMS, offset: 0, patient: None };
    let found = state.store.followups().list(&lq).await.map_err(|e| PageError::internal(language, e))?;
    let mut items = Vec::new();
    for f in found.iter().filter(|f| wanted.is_none_or(|s| f.severity == s)) {
        items.push(item_view(state, staff, f).await?);
    }
    let notice = match q.done.as_deref() {
        Some("claimed") => Some(t.say("対応中にしました。", "Claimed: it is yours now.")),
        Some("released") => Some(t.say("対応中を解除しました。", "Released: it is back in the queue.")),
        Some("closed") => Some(t.say("完了にしました。", "Closed with its outcome.")),
        _ => None,
    };
    Ok(Queue {
        t,
        frame: Frame::of(staff, "/ui/"),
        items,
        can_act: staff.user.role.can_act(),
        status: if closed { "closed" } else { "active" },
        severity: wanted.map(|s| s.as_str().to_string()).unwrap_or_default(),
        severities: Severity::ALL.iter().map(|s| (s.as_str(), severity(t, *s))).collect(),
        outcomes: FollowupOutcome::ALL.iter().map(|o| (o.as_str(), outcome(t, *o))).collect(),
        notice: notice.map(str::to_string),
        refusal,
        close_error: None,
        note_max: NOTE_MAX,
    })
}

async fn queue(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<QueueQuery>,
) -> Result<Response, PageError> {
    Ok(html(&queue_page(&state, &staff, q, None).await?))
}

#[derive(Deserialize)]
struct ActFields {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    note: String,
    /// The page to go back to (`patient`: the patient's page).
    #[serde(default)]
    back: String,
}

async fn act(state: AppState, staff: Staff, id: String, action: Action, f: ActFields) -> Result<Response, PageError> {
    staff.require(Role::can_act)?;
    let language = staff.user.language;
    let t = i18n::text(language);
    let followup_id = id.parse::<i64>().map_err(|_| PageError::BadRequest(language))?;
    let name = action.name();
    let a = Act { action, by: staff.user.name.to_string(), version: f.version, at: state.campaign.clock.now() };
    let acted = state.store.followups().act(followup_id, &a).await.map_err(|e| PageError::internal(language, e))?;
    match acted {
        Acted::Done(item) => {
            staff
                .audit(
                    &state,
                    &format!("followup_{name}"),
                    &format!("followup {followup_id} patient {}", item.patient_id),
                )
                .await?;
            let done = match name {
                "claim" => "claimed",
                "release" => "released",
                _ => "closed",
            };
            let to = if f.back == "patient" {
                format!("/ui/patients/{}?done={done}", item.patient_id)
            } else {
                format!("/ui/?done={done}")
            };
            Ok(Redirect::to(&to).into_response())
        }
        Acted::Refused(r) => {
            staff.audit(&state, "followup_refused", &format!("followup {followup_id}: {}", r.message)).await?;
            let tz = state.turns.issuer.tz;
            let at = r.last.at.with_timezone(&tz).format("%m/%d %H:%M").to_string();
            let text = format!(
                "{} {}",
                t.say("この操作は行われませんでした（変更はありません）。", "This was not done (nothing was changed)."),
                change(t, r.last.what, &r.last.by, at)
            );
            let page = queue_page(&state, &staff, QueueQuery::default(), Some(text)).await?;
            Ok((StatusCode::CONFLICT, html(&page)).into_response())
        }
        Acted::Unknown => Err(PageError::BadRequest(language)),
    }
}

async fn claim(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, f): StaffForm<ActFields>,
) -> Result<Response, PageError> {
    act(state, staff, id, Action::Claim, f).await
}

async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, f): StaffForm<ActFields>,
) -> Result<Response, PageError> {
    act(state, staff, id, Action::Release, f).await
}

async fn close(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, f): StaffForm<ActFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_act)?;
    let language = staff.user.language;
    let t = i18n::text(language);
    let outcome = FollowupOutcome::parse(&f.outcome);
    let problem = if outcome.is_err() {
        Some(t.say("結果を選んでください。", "Choose an outcome."))
    } else if f.note.chars().count() > NOTE_MAX {
        Some(t.say("メモは2000文字までです。", "The note is at most 2000 characters."))
    } else {
        None
    };
    if let (Ok(o), None) = (outcome, problem) {
        let note = f.note.trim().to_string();
        return act(state, staff, id, Action::Close { outcome: o, note }, f).await;
    }
    let mut page = queue_page(&state, &staff, QueueQuery::default(), None).await?;
    page.close_error = id.parse::<i64>().ok().zip(problem);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
}
