//! A patient's page (`/ui/patients/{id}`): the roster's details, each call with its answers,
//! the alerts and follow-up items, the processing number's messages (never the number); and
//! the patients list with a search by id or name. Each view is in the audit log.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::i18n::{self, Text};
use super::pages::{Frame, html};
use super::queue::{ItemView, item_view};
use super::{PageError, Staff};
use crate::http::AppState;
use crate::store::{ListQuery, StatusFilter};
use crate::telemetry::mask_phone;

/// The calls a patient's page shows, newest first.
const CALLS_SHOWN: i64 = 60;
/// The most patients the list shows.
const LIST_MAX: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ui/patients", get(list)).route("/ui/patients/{id}", get(patient))
}

/// An answer's name in words (the shipped flow's questions), or the name as the flow has it.
fn answer_name(t: &Text, name: &str) -> String {
    let words = match name {
        "temperature" => t.say("体温", "Temperature"),
        "spo2" => t.say("SpO2（酸素飽和度）", "SpO2 (oxygen saturation)"),
        "breathless" | "breathlessness" => t.say("息苦しさ", "Breathlessness"),
        "feeling" | "condition" => t.say("体調", "How they feel"),
        "worse" | "feeling_worse" => t.say("体調の悪化", "Feeling worse"),
        "identity" => t.say("本人確認", "Identity check"),
        "symptoms" => t.say("症状", "Symptoms"),
        other => return other.replace('_', " "),
    };
    words.to_string()
}

fn answer_value(t: &Text, value: &str) -> String {
    match value {
        "true" => t.say("はい", "yes").to_string(),
        "false" => t.say("いいえ", "no").to_string(),
        other => other.to_string(),
    }
}

struct CallView {
    at: String,
    status: String,
    direction: String,
    incomplete: bool,
    answers: Vec<(String, String)>,
    alerts: Vec<String>,
}

#[derive(Template)]
#[template(path = "ui/patient.html")]
struct PatientPage {
    t: &'static Text,
    frame: Frame,
    id: String,
    name: String,
    facts: Vec<(&'static str, String)>,
    calls: Vec<CallView>,
    items: Vec<ItemView>,
    messages: Vec<(String, String, String, i64)>,
    number: Option<String>,
}

async fn patient(State(state): State<AppState>, staff: Staff, Path(id): Path<String>) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let fail = |e: crate::store::StoreError| PageError::internal(language, e);
    let store = &state.store;
    let Some(p) = store.patients().get(&id).await.map_err(fail)? else {
        return Ok((StatusCode::NOT_FOUND, "no such patient").into_response());
    };
    staff.audit(&state, "view_patient", &id).await?;
    let tz = state.turns.issuer.tz;
    let local = |at: chrono::DateTime<chrono::Utc>| at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let none = || t.say("（なし）", "(none)").to_string();
    let facts = vec![
        (t.say("電話番号", "Phone"), p.phone.to_string()),
        (t.say("メール", "E-mail"), p.email.clone().unwrap_or_else(none)),
        (t.say("通話の言語", "Call language"), p.language.clone()),
        (
            t.say("発信の時間帯", "Call slot"),
            p.call_slot.clone().unwrap_or_else(|| t.say("既定", "default").to_string()),
        ),
        (t.say("地区", "Area"), p.area.clone().unwrap_or_else(none)),
        (
            t.say("療養期間", "Care period"),
            format!(
                "{} 〜 {}",
                p.care_start.map(|d| d.to_string()).unwrap_or_default(),
                p.care_end.map(|d| d.to_string()).unwrap_or_default()
            ),
        ),
    ];
    let mut calls = Vec::new();
    for c in store.calls().of_patient(&id, CALLS_SHOWN).await.map_err(fail)? {
        let answers = store.calls().answers(c.call_id).await.map_err(fail)?;
        let alerts = store.calls().alerts(c.call_id).await.map_err(fail)?;
        calls.push(CallView {
            at: local(c.started_at),
            status: c.status.to_string(),
            direction: c.direction.to_string(),
            incomplete: c.incomplete,
            answers: answers
                .into_iter()
                .map(|a| (answer_name(t, &a.name), answer_value(t, &a.value.to_string())))
                .collect(),
            alerts,
        });
    }
    let mut items = Vec::new();
    let all = ListQuery { status: StatusFilter::All, area: None, limit: 10_000, offset: 0 };
    for f in store.followups().list(&all).await.map_err(fail)?.iter().filter(|f| f.patient_id.as_str() == id) {
        items.push(item_view(&state, &staff, f).await?);
    }
    let messages = store
        .outbox()
        .for_patient(&id)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|(channel, recipient, status, attempts)| {
            let shown = if recipient.contains('@') {
                crate::notify::email::mask_email(&recipient)
            } else {
                mask_phone(&recipient)
            };
            (channel, shown, status, attempts)
        })
        .collect();
    let now = state.campaign.clock.now();
    let number = store.numbers().valid(&id, now).await.map_err(fail)?.map(|v| {
        let until = local(v.expires_at);
        if v.read_pending {
            format!(
                "{} {until}（{}）",
                t.say("有効期限", "valid until"),
                t.say("通話での読み上げ待ち", "waiting to be read out on a call")
            )
        } else {
            format!("{} {until}", t.say("有効期限", "valid until"))
        }
    });
    let page = PatientPage {
        t,
        frame: Frame::of(&staff, "/ui/patients"),
        id: p.patient_id.to_string(),
        name: p.name,
        facts,
        calls,
        items,
        messages,
        number,
    };
    Ok(html(&page))
}

#[derive(Template)]
#[template(path = "ui/patients.html")]
struct PatientsPage {
    t: &'static Text,
    frame: Frame,
    q: String,
    rows: Vec<(String, String, String)>,
}

#[derive(Deserialize)]
struct ListQueryParams {
    q: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(params): Query<ListQueryParams>,
) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let q: String = params.q.unwrap_or_default().trim().chars().take(100).collect();
    staff.audit(&state, "view_patients", &q).await?;
    let all = state.store.patients().all().await.map_err(|e| PageError::internal(language, e))?;
    let needle = q.to_lowercase();
    let rows = all
        .into_iter()
        .filter(|p| {
            needle.is_empty()
                || p.patient_id.as_str().to_lowercase().contains(&needle)
                || p.name.to_lowercase().contains(&needle)
        })
        .take(LIST_MAX)
        .map(|p| (p.patient_id.to_string(), p.name, p.area.unwrap_or_default()))
        .collect();
    Ok(html(&PatientsPage { t, frame: Frame::of(&staff, "/ui/patients"), q, rows }))
}
