//! A patient's page (`/ui/patients/{id}`): the roster's details, each call with its answers,
//! the alerts and follow-up items, the processing number's messages (never the number); and
//! the patients list with a search by id or name. Each view is in the audit log.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::i18n::{self, Text};
use super::pages::{Frame, html};
use super::queue::{ItemView, item_view, stored_alert};
use super::{PageError, Staff, StaffForm};
use crate::http::AppState;
use crate::issuer::numbers::{self, IssueError, SendBy};
use crate::store::NewJob;
use crate::store::{ListQuery, StatusFilter};
use crate::telemetry::mask_phone;
use crate::types::{E164, Role};

/// The calls a patient's page shows, newest first.
const CALLS_SHOWN: i64 = 60;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/patients", get(super::table::list))
        .route("/ui/patients/{id}", get(patient))
        .route("/ui/patients/{id}/issue", post(issue))
        .route("/ui/patients/{id}/call", post(call_now))
        .route("/ui/patients/{id}/edit", post(edit))
        .route("/ui/patients/{id}/report-link", post(send_link))
        .route("/ui/patients/{id}/report-link/revoke", post(revoke_link))
}

/// An answer's name in words (the shipped flow's questions), or the name as the flow has it.
pub(super) fn answer_name(t: &Text, name: &str) -> String {
    let words = match name {
        "temperature" => t.say("体温", "Temperature"),
        "spo2" => t.say("SpO2（酸素飽和度）", "SpO2 (oxygen saturation)"),
        "breathless" | "breathlessness" => t.say("息苦しさ", "Breathlessness"),
        "has_oximeter" => t.say("パルスオキシメーターあり", "Has a pulse oximeter"),
        "cough" => t.say("せき", "Cough"),
        "fatigue" => t.say("だるさ", "Fatigue"),
        "taste_smell" => t.say("味覚・嗅覚の異常", "Loss of taste or smell"),
        "trend" => t.say("前日と比べた体調", "Compared with yesterday"),
        "app_use" => t.say("連絡アプリの利用", "Uses the contact app"),
        "consent" => t.say("処理番号の発行への同意", "Consent to a processing number"),
        "sms_to" => t.say("SMSの送り先", "SMS to"),
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
        "true" | "yes" => t.say("はい", "yes").to_string(),
        "false" | "no" => t.say("いいえ", "no").to_string(),
        "better" => t.say("良くなった", "better").to_string(),
        "same" => t.say("変わらない", "the same").to_string(),
        "worse" => t.say("悪くなった", "worse").to_string(),
        "confirmed" => t.say("確認済み", "confirmed").to_string(),
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
    /// What the patient heard, turn by turn (a turn that held a processing number is hidden).
    steps: Vec<String>,
}

/// The text spoken in a turn's TwiML (`<Say>` elements), or `None` when the turn is sealed.
fn heard(response: &str) -> Option<String> {
    if !response.trim_start().starts_with('<') {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = response;
    while let Some(open) = rest.find("<Say") {
        let after = &rest[open..];
        let Some(start) = after.find('>') else { break };
        let body = &after[start + 1..];
        let Some(end) = body.find("</Say>") else { break };
        out.push(
            body[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &body[end..];
    }
    Some(out.join(" "))
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
    /// Each number's story, oldest first: issued (how, by whose consent), delivery, verified.
    story: Vec<String>,
    /// The patient's personal link to the web self-report: where it stands, and whether it is live.
    link: Option<String>,
    link_live: bool,
    can_act: bool,
    seen: String,
    trends: Trends,
    forms: Forms,
    languages: Vec<String>,
    slots: Vec<String>,
}

/// The action forms as sent, with an error next to each field at fault, and what was done.
#[derive(Default)]
struct Forms {
    notice: Option<String>,
    refusal: Option<String>,
    consent_error: Option<&'static str>,
    send_error: Option<&'static str>,
    call_error: Option<String>,
    link_error: Option<String>,
    phone: String,
    email: String,
    language: String,
    slot: String,
    phone_error: Option<String>,
    email_error: Option<String>,
    language_error: Option<String>,
    slot_error: Option<String>,
}

#[derive(Deserialize)]
struct PatientQuery {
    done: Option<String>,
}

async fn patient(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Query(q): Query<PatientQuery>,
) -> Result<Response, PageError> {
    let t = i18n::text(staff.user.language);
    let notice = match q.done.as_deref() {
        Some("edited") => Some(t.say("登録情報を変更しました。", "The roster details were changed.")),
        Some("claimed") => Some(t.say("対応中にしました。", "Claimed: it is yours now.")),
        Some("closed") => Some(t.say("完了にしました。", "Closed with its outcome.")),
        _ => None,
    };
    let forms = Forms { notice: notice.map(str::to_string), ..Forms::default() };
    patient_response(&state, &staff, &id, forms, StatusCode::OK).await
}

/// The patient's page with `forms`, answered with `status`; a 404 for an unknown patient.
async fn patient_response(
    state: &AppState,
    staff: &Staff,
    id: &str,
    mut forms: Forms,
    status: StatusCode,
) -> Result<Response, PageError> {
    let id = id.to_string();
    let language = staff.user.language;
    let t = i18n::text(language);
    let fail = |e: crate::store::StoreError| PageError::internal(language, e);
    let store = &state.store;
    let Some(p) = store.patients().get(&id).await.map_err(fail)? else {
        return Ok((StatusCode::NOT_FOUND, "no such patient").into_response());
    };
    staff.audit(state, "view_patient", &id).await?;
    if forms.phone.is_empty() && forms.phone_error.is_none() {
        forms.phone = p.phone.to_string();
        forms.email = p.email.clone().unwrap_or_default();
        forms.language = p.language.clone();
        forms.slot = p.call_slot.clone().unwrap_or_default();
    }
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
            match (p.care_start, p.care_end) {
                (None, None) => none(),
                (start, end) => format!(
                    "{} 〜 {}",
                    start.map(|d| d.to_string()).unwrap_or_default(),
                    end.map(|d| d.to_string()).unwrap_or_default()
                ),
            },
        ),
    ];
    let their_calls = store.calls().of_patient(&id, CALLS_SHOWN).await.map_err(fail)?;
    let flow_name = their_calls.first().map_or_else(|| state.inbound_flow.to_string(), |c| c.flow.clone());
    let now = state.campaign.clock.now();
    let trends = care_charts(state, t, &p, &flow_name, now).await.map_err(fail)?;
    let ids: Vec<i64> = their_calls.iter().map(|c| c.call_id).collect();
    let mut details = store.calls().details(&ids, true).await.map_err(fail)?;
    let hidden = t.say("（処理番号を含むため表示しません）", "(holds a processing number: not shown)");
    let mut calls = Vec::with_capacity(their_calls.len());
    for c in their_calls {
        let d = details.remove(&c.call_id).unwrap_or_default();
        let steps = d
            .steps
            .into_iter()
            .map(|(_, response)| heard(&response).unwrap_or_else(|| hidden.to_string()))
            .filter(|text| !text.is_empty())
            .collect();
        calls.push(CallView {
            steps,
            at: local(c.started_at),
            status: c.status.to_string(),
            direction: c.direction.to_string(),
            incomplete: c.incomplete,
            answers: d
                .answers
                .into_iter()
                .map(|a| (answer_name(t, &a.name), answer_value(t, &a.value.to_string())))
                .collect(),
            alerts: d.alerts.iter().map(|a| stored_alert(t, a)).collect(),
        });
    }
    let mut items = Vec::new();
    let theirs =
        ListQuery { status: StatusFilter::All, area: None, limit: 10_000, offset: 0, patient: Some(id.clone()) };
    for f in store.followups().list(&theirs).await.map_err(fail)?.iter() {
        items.push(item_view(state, staff, f).await?);
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
    let story = store
        .numbers()
        .story(&id)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|n| {
            let consent = match n.consent_staff.as_deref() {
                Some(by) if n.consent == "staff" => format!("{} {by}", t.say("職員による発行:", "issued by staff:")),
                _ => t.say("通話での同意により発行", "issued on consent in a call").to_string(),
            };
            let delivery = match n.delivery.as_str() {
                "sms" => t.say("SMSで送信", "sent by SMS"),
                "email" => t.say("メールで送信", "sent by e-mail"),
                "read_aloud" => t.say("通話で読み上げ", "read aloud on a call"),
                _ => t.say("送信なし", "not sent"),
            };
            let state = match (n.status.as_str(), n.used_at) {
                ("used", Some(at)) => format!(
                    "{} {} ({})",
                    t.say("アプリで確認済み", "verified by the app at"),
                    local(at),
                    n.used_by.unwrap_or_default()
                ),
                ("revoked", _) => t.say("取り消し", "revoked").to_string(),
                ("valid", _) if n.expires_at > now => {
                    format!("{} {}", t.say("有効・期限", "valid until"), local(n.expires_at))
                }
                _ => t.say("期限切れ（未使用）", "expired unused").to_string(),
            };
            format!("{} — {consent} — {delivery} — {state}", local(n.issued_at))
        })
        .collect();
    let seen_values = seen(&p);
    let (link, link_live) = link_status(state, t, &p.patient_id, now).await.map_err(fail)?;
    let page = PatientPage {
        link,
        link_live,
        seen: seen_values,
        trends,
        t,
        frame: Frame::of(staff, "/ui/patients"),
        can_act: staff.user.role.can_act(),
        forms,
        languages: state.flows.languages(),
        slots: state.campaign.hours.slot_names().iter().map(|s| s.to_string()).collect(),
        id: p.patient_id.to_string(),
        name: p.name,
        facts,
        calls,
        items,
        messages,
        number,
        story,
    };
    Ok((status, html(&page)).into_response())
}

#[derive(Deserialize)]
struct IssueFields {
    #[serde(default)]
    consent: String,
    #[serde(default)]
    send: String,
}

/// Issues a processing number by hand, once the staff member confirmed the patient's consent
/// on screen; sent as chosen (the same issuer as the API and `ivr numbers issue`).
async fn issue(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, f): StaffForm<IssueFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_act)?;
    let language = staff.user.language;
    let t = i18n::text(language);
    let mut forms = Forms::default();
    let send = match f.send.as_str() {
        "sms" => Some(SendBy::Sms),
        "email" => Some(SendBy::Email),
        "none" => Some(SendBy::None),
        _ => None,
    };
    if f.consent != "yes" {
        forms.consent_error =
            Some(t.say("本人の同意を確認してから発行してください。", "Confirm the patient's consent first."));
    }
    if send.is_none() {
        forms.send_error = Some(t.say("送り方を選んでください。", "Choose how to send it."));
    }
    let (Some(send), None) = (send, forms.consent_error) else {
        return patient_response(&state, &staff, &id, forms, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let patient = state.store.patients().get(&id).await.map_err(|e| PageError::internal(language, e))?;
    let catalog = patient.as_ref().and_then(|p| state.flows.catalog(&p.language));
    let now = state.campaign.clock.now();
    let issued = numbers::issue_by_staff(
        &state.store,
        &state.turns.issuer,
        catalog.as_deref(),
        &id,
        send,
        staff.user.name.as_str(),
        now,
    )
    .await;
    match issued {
        Ok(m) => {
            state.outbox_wake.notify_one();
            staff.audit(&state, "issue_number", &format!("{id} send {}", f.send)).await?;
            forms.notice = Some(match send {
                SendBy::None => format!(
                    "{} {} （{} {}）",
                    t.say("処理番号を発行しました。ご本人に伝えてください:", "Issued. Tell the patient this number:"),
                    m.number.expose(),
                    t.say("有効期限", "valid until"),
                    m.expires_local
                ),
                SendBy::Sms => {
                    t.say("処理番号を発行し、SMSで送ります。", "Issued; it is being sent by SMS.").to_string()
                }
                SendBy::Email => {
                    t.say("処理番号を発行し、メールで送ります。", "Issued; it is being sent by e-mail.").to_string()
                }
            });
            patient_response(&state, &staff, &id, forms, StatusCode::OK).await
        }
        Err(IssueError::UnknownPatient(_)) => Ok((StatusCode::NOT_FOUND, "no such patient").into_response()),
        Err(IssueError::NoEmail(_)) => {
            forms.send_error =
                Some(t.say("この患者さんにはメールアドレスがありません。", "This patient has no e-mail address."));
            patient_response(&state, &staff, &id, forms, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(IssueError::NotMobile(_)) => {
            forms.send_error = Some(
                t.say("携帯電話の番号ではないため、SMSは送れません。", "The phone is not a mobile number: no SMS."),
            );
            patient_response(&state, &staff, &id, forms, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(IssueError::Store(e)) => Err(PageError::internal(language, e)),
    }
}

#[derive(Deserialize)]
struct NoFields {}

/// Plans a call to the patient now, through the campaign's jobs, inside the calling hours;
/// outside them, says when the next call may be placed and plans nothing.
/// Where the patient's link stands, in the staff's language, and whether it is live.
async fn link_status(
    state: &AppState,
    t: &'static Text,
    id: &crate::types::PatientId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Option<String>, bool), crate::store::StoreError> {
    use crate::store::LinkState;
    let Some(link) = state.store.links().latest(id).await? else { return Ok((None, false)) };
    let tz = state.campaign.hours.tz();
    let at = |d: chrono::DateTime<chrono::Utc>| d.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let sent = format!("{} {}", t.say("送信", "Sent"), at(link.created_at));
    let text = match link.state(now) {
        LinkState::Live => format!("{sent}, {} {}", t.say("有効期限", "valid until"), at(link.expires_at)),
        LinkState::Expired => format!("{sent}, {} {}", t.say("期限切れ", "expired"), at(link.expires_at)),
        LinkState::Revoked => {
            let by = match link.revoked_by.as_deref() {
                Some(crate::store::IDENTITY_CHECK) => {
                    t.say("生年月日が一致せず", "the birth date did not match").to_string()
                }
                Some(crate::store::REPLACED) => t.say("新しいリンクを送信", "a new link was sent").to_string(),
                other => other.unwrap_or_default().to_string(),
            };
            format!("{sent}, {} {} ({by})", t.say("無効化", "revoked"), link.revoked_at.map(at).unwrap_or_default())
        }
    };
    Ok((Some(text), link.state(now) == LinkState::Live))
}

/// Sends the patient a new personal link (the earlier one revoked).
async fn send_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, NoFields {}): StaffForm<NoFields>,
) -> Result<Response, PageError> {
    use crate::notify::links::LinkError;
    staff.require(Role::can_act)?;
    let language = staff.user.language;
    let t = i18n::text(language);
    let Ok(pid) = crate::types::PatientId::parse(&id) else {
        return Ok((StatusCode::NOT_FOUND, "no such patient").into_response());
    };
    let now = state.campaign.clock.now();
    let mut forms = Forms::default();
    match crate::http::links::sender(&state).send(&state.store, &pid, now).await {
        Ok(sent) => {
            staff.audit(&state, "send_report_link", &id).await?;
            state.outbox_wake.notify_one();
            let how = match sent.channel {
                crate::types::Channel::Email => t.say("メール", "e-mail"),
                _ => t.say("SMS", "SMS"),
            };
            forms.notice =
                Some(format!("{} ({how})", t.say("報告用リンクを送りました。", "The report link was sent.")));
        }
        Err(LinkError::UnknownPatient(_)) | Err(LinkError::Store(crate::store::StoreError::UnknownPatient(_))) => {
            return Ok((StatusCode::NOT_FOUND, "no such patient").into_response());
        }
        Err(LinkError::CareEnded) => {
            forms.link_error = Some(
                t.say("療養期間が終わっているため送れません。", "The care period has ended: no link sent.").into(),
            );
        }
        Err(LinkError::NoWay) => {
            forms.link_error = Some(
                t.say(
                    "携帯電話の番号もメールアドレスもないため送れません。",
                    "No mobile phone or e-mail address: no link sent.",
                )
                .into(),
            );
        }
        Err(LinkError::Store(e)) => return Err(PageError::internal(language, e)),
    }
    let status = if forms.link_error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    patient_response(&state, &staff, &id, forms, status).await
}

/// Revokes the patient's live link.
async fn revoke_link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, NoFields {}): StaffForm<NoFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_act)?;
    let language = staff.user.language;
    let t = i18n::text(language);
    let Ok(pid) = crate::types::PatientId::parse(&id) else {
        return Ok((StatusCode::NOT_FOUND, "no such patient").into_response());
    };
    let now = state.campaign.clock.now();
    let by = staff.user.name.to_string();
    let n = state.store.links().revoke(&pid, &by, now).await.map_err(|e| PageError::internal(language, e))?;
    staff.audit(&state, "revoke_report_link", &id).await?;
    let forms = Forms {
        notice: Some(if n > 0 {
            t.say("報告用リンクを無効にしました。", "The report link was revoked.").to_string()
        } else {
            t.say("有効なリンクはありませんでした。", "There was no live link.").to_string()
        }),
        ..Forms::default()
    };
    patient_response(&state, &staff, &id, forms, StatusCode::OK).await
}

async fn call_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, NoFields {}): StaffForm<NoFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_act)?;
    let language = staff.user.language;
    let t = i18n::text(language);
    let fail = |e: crate::store::StoreError| PageError::internal(language, e);
    let Some(p) = state.store.patients().get(&id).await.map_err(fail)? else {
        return Ok((StatusCode::NOT_FOUND, "no such patient").into_response());
    };
    let now = state.campaign.clock.now();
    let hours = &state.campaign.hours;
    let tz = hours.tz();
    let mut forms = Forms::default();
    let next = hours.next_call_time(now, p.call_slot.as_deref());
    match next {
        Some(at) if at <= now => {
            // The check-in under way: its window settles the call if the patient reports first.
            let (day, k) = (hours.day_of(now), hours.checkin_at(now));
            let job = NewJob {
                patient_id: p.patient_id.clone(),
                flow: state.inbound_flow.to_string(),
                day,
                checkin: hours.checks()[k].to_string(),
                due_at: now,
                window: Some(hours.checkin_window(day, k)),
                web_at: None,
            };
            let new = state.store.campaign().plan_jobs(std::slice::from_ref(&job)).await.map_err(fail)?;
            staff.audit(&state, "call_now", &id).await?;
            state.dialer_wake.notify_one();
            forms.notice = Some(if new == 1 {
                t.say(
                    "発信を予定しました。まもなく電話がかかります。",
                    "A call is planned now: the phone rings shortly.",
                )
                .to_string()
            } else {
                t.say(
                    "今日の電話はすでに予定されています（新たな発信はしません）。",
                    "Today's call is already planned: no second call was added.",
                )
                .to_string()
            });
            patient_response(&state, &staff, &id, forms, StatusCode::OK).await
        }
        other => {
            staff.audit(&state, "call_now_refused", &id).await?;
            let when = other.map(|at| at.with_timezone(&tz).format("%H:%M").to_string());
            forms.call_error = Some(match when {
                Some(w) => format!(
                    "{} {w}",
                    t.say(
                        "今は発信できる時間外です。次に発信できる時刻:",
                        "Calls cannot be placed now (quiet hours). The next possible time:"
                    )
                ),
                None => t
                    .say(
                        "今日はもう発信できる時間帯がありません。",
                        "No calling hours are left today: no call was placed.",
                    )
                    .to_string(),
            });
            patient_response(&state, &staff, &id, forms, StatusCode::CONFLICT).await
        }
    }
}

#[derive(Deserialize)]
struct EditFields {
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    slot: String,
    /// The values the page showed, to refuse an edit over someone else's.
    #[serde(default)]
    seen: String,
}

/// The values a page shows, as one string its edit form sends back.
fn seen(p: &crate::store::Patient) -> String {
    format!("{}|{}|{}|{}", p.phone, p.email.as_deref().unwrap_or(""), p.language, p.call_slot.as_deref().unwrap_or(""))
}

/// Changes a patient's phone, e-mail, call language and slot, checked as the roster import
/// checks them; refused when the patient changed since the page was shown.
async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm(staff, f): StaffForm<EditFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_act)?;
    let language = staff.user.language;
    let t = i18n::text(language);
    let fail = |e: crate::store::StoreError| PageError::internal(language, e);
    let Some(mut p) = state.store.patients().get(&id).await.map_err(fail)? else {
        return Ok((StatusCode::NOT_FOUND, "no such patient").into_response());
    };
    let mut forms = Forms {
        phone: f.phone.trim().to_string(),
        email: f.email.trim().to_string(),
        language: f.language.trim().to_string(),
        slot: f.slot.trim().to_string(),
        ..Forms::default()
    };
    if f.seen != seen(&p) {
        let last = state
            .store
            .users()
            .audit_rows(10_000)
            .await
            .map_err(fail)?
            .into_iter()
            .find(|e| e.action == "edit_patient" && e.target == id);
        let tz = state.turns.issuer.tz;
        let who = last.map_or_else(String::new, |e| {
            let at = e.at.with_timezone(&tz).format("%m/%d %H:%M").to_string();
            if t.html_lang == "ja" {
                format!("{at} に {} さんが変更しました。", e.actor)
            } else {
                format!("{} changed it at {at}.", e.actor)
            }
        });
        staff.audit(&state, "edit_patient_refused", &id).await?;
        forms = Forms::default();
        forms.refusal = Some(format!(
            "{} {who}",
            t.say(
                "この患者さんの情報は表示後に変更されたため、変更しませんでした。今の内容を確認してください。",
                "This patient changed since the page was shown: nothing was changed. Check the details as they are now."
            )
        ));
        return patient_response(&state, &staff, &id, forms, StatusCode::CONFLICT).await;
    }
    let phone = E164::parse(&forms.phone);
    if phone.is_err() {
        forms.phone_error = Some(
            t.say(
                "電話番号の形式が正しくありません（例: 090-1234-5678）。",
                "Not a phone number (e.g. 090-1234-5678).",
            )
            .to_string(),
        );
    }
    let email = if forms.email.is_empty() { Ok(None) } else { crate::roster::email(&forms.email).map(Some) };
    if email.is_err() {
        forms.email_error =
            Some(t.say("メールアドレスの形式が正しくありません。", "Not an e-mail address.").to_string());
    }
    if !state.flows.languages().contains(&forms.language) {
        forms.language_error = Some(t.say("この言語の音声はありません。", "No prompts in this language.").to_string());
    }
    let slots = state.campaign.hours.slot_names().iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if !forms.slot.is_empty() && !slots.contains(&forms.slot) {
        forms.slot_error = Some(t.say("この時間帯はありません。", "No such call slot.").to_string());
    }
    let (Ok(phone), Ok(email), None, None) = (phone, email, &forms.language_error, &forms.slot_error) else {
        return patient_response(&state, &staff, &id, forms, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    p.phone = phone;
    p.email = email;
    p.language = forms.language.clone();
    p.call_slot = (!forms.slot.is_empty()).then(|| forms.slot.clone());
    state.store.patients().upsert(&p).await.map_err(fail)?;
    staff.audit(&state, "edit_patient", &id).await?;
    Ok(axum::response::Redirect::to(&format!("/ui/patients/{id}?done=edited")).into_response())
}

/// A reading's chart on a patient's page.
struct ChartView {
    id: String,
    heading: String,
    svg: String,
    /// The flow's thresholds in words, e.g. "≤ 93: 緊急".
    thresholds: Vec<String>,
}

/// The charts of a patient's readings over the care period, and their text alternative: a
/// table with a row per call (missed ones included) and a column per reading.
struct Trends {
    charts: Vec<ChartView>,
    columns: Vec<String>,
    rows: Vec<(String, Vec<String>, String)>,
    period: String,
}

/// The charts of the readings `flow_name` asks for (its `number` questions), with its branch
/// rules' thresholds, over the patient's care period (or their calls' when it is not set).
async fn care_charts(
    state: &AppState,
    t: &'static Text,
    p: &crate::store::Patient,
    flow_name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Trends, crate::store::StoreError> {
    use super::charts::{ChartPoint, ChartSpec, ChartWords, chart, readings_of, thresholds_of, trim_number};
    use chrono::{Duration, NaiveTime};
    let tz = state.turns.issuer.tz;
    let flow = state.flows.current(flow_name).or_else(|| state.flows.current(&state.inbound_flow));
    let readings = flow.as_deref().map(readings_of).unwrap_or_default();
    let points = state.store.trends().points(p.patient_id.as_str(), &readings).await?;
    let midnight = |d: chrono::NaiveDate| {
        d.and_time(NaiveTime::MIN).and_local_timezone(tz).earliest().map(|t| t.with_timezone(&chrono::Utc))
    };
    let first = points.first().map(|x| x.at);
    let last = points.last().map(|x| x.at);
    let from = p.care_start.and_then(midnight).or(first).unwrap_or(now);
    let to = p
        .care_end
        .and_then(|d| midnight(d + Duration::days(1)))
        .or(last.map(|l| l.max(from)))
        .unwrap_or(now)
        .max(last.unwrap_or(from));
    let from = from.min(first.unwrap_or(from));
    let days = (to - from).num_days().max(1);
    let every = match days {
        0..=10 => 1,
        11..=21 => 2,
        22..=60 => 7,
        _ => 14,
    };
    let mut ticks = Vec::new();
    let mut day = from.with_timezone(&tz).date_naive();
    while let Some(at) = midnight(day) {
        if at > to {
            break;
        }
        if at >= from {
            ticks.push((at, day.format("%m/%d").to_string()));
        }
        day += Duration::days(every);
    }
    let local = |at: chrono::DateTime<chrono::Utc>| at.with_timezone(&tz).format("%m/%d %H:%M").to_string();
    let severity = |s: Option<crate::types::Severity>| s.map(|s| super::queue::severity(t, s));
    let mut charts = Vec::new();
    for name in &readings {
        let thresholds = flow.as_deref().map(|f| thresholds_of(f, name)).unwrap_or_default();
        let chart_points: Vec<ChartPoint> = points
            .iter()
            .map(|x| {
                let value = x.readings.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                ChartPoint {
                    at: x.at,
                    value: value.and_then(|v| match v {
                        crate::flow::Value::Number { raw, scale } => Some(*raw as f64 / 10f64.powi(i32::from(*scale))),
                        _ => None,
                    }),
                    missed: x.missed,
                    text: value.map(|v| v.to_string()).unwrap_or_default(),
                    when: local(x.at),
                }
            })
            .collect();
        let heading = answer_name(t, name);
        let id = format!("chart-{}", name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
        let words = ChartWords {
            at_or_below: t.say("アラート ≤", "Alert ≤"),
            at_or_above: t.say("アラート ≥", "Alert ≥"),
            equals: t.say("アラート =", "Alert ="),
            missed: t.say("不通（電話がつながらず）", "missed (not reached)"),
            no_reading: t.say("この回答なし", "no answer to this"),
        };
        let title = format!(
            "{heading}{} {} 〜 {}",
            t.say("の推移", " over the care period"),
            from.with_timezone(&tz).format("%m/%d"),
            p.care_end.unwrap_or_else(|| to.with_timezone(&tz).date_naive()).format("%m/%d")
        );
        let svg = chart(&ChartSpec {
            id: &id,
            title: &title,
            from,
            to,
            points: &chart_points,
            thresholds: &thresholds,
            ticks: &ticks,
            words,
        });
        let thresholds = thresholds
            .iter()
            .map(|th| {
                let sign = if th.equals {
                    "="
                } else if th.below {
                    "≤"
                } else {
                    "≥"
                };
                let v = trim_number(th.value);
                match severity(th.severity) {
                    Some(s) => format!("{sign} {v} → {s}{}", t.say("アラート", " alert")),
                    None => format!("{sign} {v} → {}", t.say("フローの分岐", "the flow branches")),
                }
            })
            .collect();
        charts.push(ChartView { id, heading, svg, thresholds });
    }
    let rows = points
        .iter()
        .map(|x| {
            let values = readings
                .iter()
                .map(|name| x.readings.iter().find(|(n, _)| n == name).map_or_else(String::new, |(_, v)| v.to_string()))
                .collect();
            let status = if x.missed {
                t.say("不通（電話がつながらず）", "missed (not reached)").to_string()
            } else {
                x.status.clone()
            };
            (local(x.at), values, status)
        })
        .collect();
    // The last day shown: the care period's last, or the last call's.
    let last_day = p.care_end.unwrap_or_else(|| to.with_timezone(&tz).date_naive());
    let period = format!("{} 〜 {last_day}", from.with_timezone(&tz).format("%Y-%m-%d"));
    Ok(Trends { charts, columns: readings.iter().map(|r| answer_name(t, r)).collect(), rows, period })
}
