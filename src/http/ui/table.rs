//! The patients table (`/ui/patients`): every patient in care with the latest value of each
//! reading the flow asks for (its `number` questions: temperature and SpO2 in the shipped flow)
//! and a 7-day sparkline of it, the open follow-up item and the last call's outcome; sorted by
//! any of those columns, filtered by area, alert, language and slot, searched by id, name or
//! phone, a page of [`PAGE_SIZE`] at a time. Every view is in the audit log.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::Deserialize;

use super::charts::{self, sparkline};
use super::i18n::{self, Text};
use super::pages::{Frame, html};
use super::patient::answer_name;
use super::queue::severity;
use super::{PageError, Staff};
use crate::http::AppState;
use crate::store::{AlertFilter, LastCall, SortKey, TableQuery, TableRow};
use crate::types::Severity;

/// Patients per page.
pub const PAGE_SIZE: i64 = 50;
/// Days a sparkline covers, today included.
pub const SPARK_DAYS: i64 = 7;

/// The query string as sent; each field is checked in [`Filters::parse`].
#[derive(Deserialize, Default, Clone)]
pub(super) struct Params {
    q: Option<String>,
    area: Option<String>,
    alert: Option<String>,
    language: Option<String>,
    slot: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
}

/// The filters, checked: what was sent for each field (shown back in the form) and the
/// query they make; a field sent wrong is left out of the query with its error.
struct Filters {
    q: String,
    area: String,
    alert: String,
    language: String,
    slot: String,
    sort: String,
    desc: bool,
    page: i64,
    errors: Vec<(&'static str, &'static str)>,
}

fn text_field(v: Option<&String>) -> String {
    v.map(|s| s.trim().chars().take(100).collect()).unwrap_or_default()
}

impl Filters {
    fn parse(t: &Text, p: &Params, languages: &[String], slots: &[String], readings: &[String]) -> Filters {
        let mut errors = Vec::new();
        let mut alert = text_field(p.alert.as_ref());
        if !["", "open", "none", "urgent", "high", "normal"].contains(&alert.as_str()) {
            errors.push(("alert", t.say("アラートの条件が正しくありません。", "Not an alert filter.")));
            alert.clear();
        }
        let mut language = text_field(p.language.as_ref());
        if !language.is_empty() && !languages.contains(&language) {
            errors.push(("language", t.say("この言語はありません。", "No such language.")));
            language.clear();
        }
        let mut slot = text_field(p.slot.as_ref());
        if !slot.is_empty() && slot != "default" && !slots.contains(&slot) {
            errors.push(("slot", t.say("この時間帯はありません。", "No such call slot.")));
            slot.clear();
        }
        let mut sort = text_field(p.sort.as_ref());
        let known =
            ["", "id", "name", "area", "followup", "last_call"].contains(&sort.as_str()) || readings.contains(&sort);
        if !known {
            errors.push(("sort", t.say("この列では並べ替えできません。", "Cannot sort by that column.")));
            sort.clear();
        }
        let desc = match p.dir.as_deref().unwrap_or("") {
            "" | "asc" => false,
            "desc" => true,
            _ => {
                errors.push(("sort", t.say("並び順は asc か desc です。", "The order is asc or desc.")));
                false
            }
        };
        let page = match p.page.as_deref().map(str::trim).unwrap_or("") {
            "" => 1,
            n => match n.parse::<i64>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    errors.push(("page", t.say("ページ番号が正しくありません。", "Not a page number.")));
                    1
                }
            },
        };
        Filters {
            q: text_field(p.q.as_ref()),
            area: text_field(p.area.as_ref()),
            alert,
            language,
            slot,
            sort,
            desc,
            page,
            errors,
        }
    }

    fn query(&self, today: chrono::NaiveDate) -> TableQuery {
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        TableQuery {
            today,
            search: some(&self.q),
            area: some(&self.area),
            language: some(&self.language),
            slot: match self.slot.as_str() {
                "" => None,
                "default" => Some(String::new()),
                s => Some(s.to_string()),
            },
            alert: match self.alert.as_str() {
                "open" => AlertFilter::Open,
                "none" => AlertFilter::NoneOpen,
                "urgent" => AlertFilter::Severity(Severity::Urgent),
                "high" => AlertFilter::Severity(Severity::High),
                "normal" => AlertFilter::Severity(Severity::Normal),
                _ => AlertFilter::Any,
            },
            sort: match self.sort.as_str() {
                "" | "id" => SortKey::Id,
                "name" => SortKey::Name,
                "area" => SortKey::Area,
                "followup" => SortKey::Followup,
                "last_call" => SortKey::LastCall,
                reading => SortKey::Reading(reading.to_string()),
            },
            desc: self.desc,
            limit: PAGE_SIZE,
            offset: (self.page - 1) * PAGE_SIZE,
        }
    }

    /// The page's address with these filters, `sort`/`dir`/`page` as given.
    fn href(&self, sort: &str, desc: bool, page: i64) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("q", &self.q),
            ("area", &self.area),
            ("alert", &self.alert),
            ("language", &self.language),
            ("slot", &self.slot),
        ] {
            if !v.is_empty() {
                pairs.push((k, v.clone()));
            }
        }
        if !sort.is_empty() && sort != "id" {
            pairs.push(("sort", sort.to_string()));
        }
        if desc {
            pairs.push(("dir", "desc".into()));
        }
        if page > 1 {
            pairs.push(("page", page.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() { "/ui/patients".into() } else { format!("/ui/patients?{query}") }
    }

    fn error(&self, field: &str) -> Option<&'static str> {
        self.errors.iter().find(|(f, _)| *f == field).map(|(_, e)| *e)
    }
}

/// A column header: its words, the link that sorts by it (the other way when it is the sort
/// now), and its `aria-sort`.
pub(super) struct Header {
    pub(super) key: String,
    pub(super) words: String,
    pub(super) href: String,
    pub(super) sort: &'static str,
}

/// A reading's cell: the latest value, when it was taken, the sparkline and its words.
pub(super) struct Cell {
    pub(super) latest: String,
    pub(super) at: String,
    pub(super) svg: String,
}

pub(super) struct RowView {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) area: String,
    pub(super) cells: Vec<Cell>,
    /// (class, words) of the open item, e.g. ("sev-urgent", "緊急 · 対応中: sato").
    pub(super) followup: Option<(String, String)>,
    pub(super) last_call: String,
    pub(super) last_call_bad: bool,
}

#[derive(Template)]
#[template(path = "ui/patients.html")]
struct TablePage {
    t: &'static Text,
    frame: Frame,
    q: String,
    area: String,
    alert: String,
    language: String,
    slot: String,
    desc: bool,
    languages: Vec<String>,
    slots: Vec<String>,
    errors: Vec<(&'static str, &'static str)>,
    alert_error: Option<&'static str>,
    language_error: Option<&'static str>,
    slot_error: Option<&'static str>,
    headers: Vec<Header>,
    rows: Vec<RowView>,
    total: i64,
    first: i64,
    last: i64,
    prev: Option<String>,
    next: Option<String>,
}

/// A job's outcome in words, and whether it needs a person's eye.
fn last_call_words(t: &Text, job: &LastCall) -> (String, bool) {
    let status = match job.status.as_str() {
        "planned" => t.say("発信予定", "Planned"),
        "dialing" => t.say("発信中", "Dialling"),
        "retry" => t.say("再発信待ち", "To retry"),
        "done" => t.say("完了", "Done"),
        "unreachable" => t.say("不通", "Unreachable"),
        "failed" => t.say("発信できず", "Could not dial"),
        other => return (other.to_string(), false),
    };
    let outcome = job.outcome.as_deref().map(|o| match o {
        "completed" => t.say("通話完了", "completed"),
        "incomplete" => t.say("途中で終了", "ended early"),
        "machine" => t.say("留守番電話", "answering machine"),
        "busy" => t.say("話し中", "busy"),
        "no-answer" => t.say("応答なし", "no answer"),
        "refused" => t.say("番号が拒否された", "number refused"),
        _ => t.say("失敗", "failed"),
    });
    let day = job.day.map(|d| d.format("%m/%d").to_string()).unwrap_or_default();
    let words = match outcome {
        Some(o) if job.status != "done" || o != t.say("通話完了", "completed") => format!("{day} {status}（{o}）"),
        _ => format!("{day} {status}"),
    };
    (words.trim().to_string(), matches!(job.status.as_str(), "unreachable" | "failed"))
}

/// The readings the flow asks for: its `number` questions' variables.
pub(super) fn flow_readings(state: &AppState) -> Vec<String> {
    state.flows.current(&state.inbound_flow).map(|f| charts::readings_of(&f)).unwrap_or_default()
}

pub(super) async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(params): Query<Params>,
) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let languages = state.flows.languages();
    let slots: Vec<String> = state.campaign.hours.slot_names().iter().map(|s| s.to_string()).collect();
    let readings = flow_readings(&state);
    let f = Filters::parse(t, &params, &languages, &slots, &readings);
    let now = state.campaign.clock.now();
    let tz = state.turns.issuer.tz;
    let today = now.with_timezone(&tz).date_naive();
    let since_day = today - Duration::days(SPARK_DAYS - 1);
    let since: DateTime<Utc> = since_day
        .and_time(NaiveTime::MIN)
        .and_local_timezone(tz)
        .earliest()
        .map_or(now - Duration::days(SPARK_DAYS), |d| d.with_timezone(&Utc));
    let query = f.query(today);
    staff.audit(&state, "view_patients", &f.href(&f.sort, f.desc, f.page)["/ui/patients".len()..]).await?;
    let page =
        state.store.trends().table(&query, &readings, since).await.map_err(|e| PageError::internal(language, e))?;

    let mut headers = vec![
        ("id".to_string(), t.say("患者ID・氏名", "Patient").to_string()),
        ("area".to_string(), t.say("地区", "Area").to_string()),
    ];
    headers.extend(readings.iter().map(|r| (r.clone(), answer_name(t, r))));
    headers.push(("followup".into(), t.say("要フォロー", "Follow-up").into()));
    headers.push(("last_call".into(), t.say("最後の通話", "Last call").into()));
    let current = if f.sort.is_empty() { "id" } else { f.sort.as_str() };
    let headers = headers
        .into_iter()
        .map(|(key, words)| {
            let on = key == current;
            Header {
                href: f.href(&key, on && !f.desc, 1),
                sort: match (on, f.desc) {
                    (false, _) => "none",
                    (true, false) => "ascending",
                    (true, true) => "descending",
                },
                key,
                words,
            }
        })
        .collect();
    let rows = page.rows.iter().map(|r| row_view(t, r, &readings, since, now, tz)).collect();
    let first = if page.total == 0 { 0 } else { query.offset + 1 };
    let last = (query.offset + PAGE_SIZE).min(page.total);
    let status = if f.errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let view = TablePage {
        t,
        frame: Frame::of(&staff, "/ui/patients"),
        alert_error: f.error("alert"),
        language_error: f.error("language"),
        slot_error: f.error("slot"),
        errors: f.errors.clone(),
        prev: (f.page > 1).then(|| f.href(&f.sort, f.desc, f.page - 1)),
        next: (last < page.total).then(|| f.href(&f.sort, f.desc, f.page + 1)),
        q: f.q,
        area: f.area,
        alert: f.alert,
        language: f.language,
        slot: f.slot,
        desc: f.desc,
        languages,
        slots,
        headers,
        rows,
        total: page.total,
        first,
        last,
    };
    Ok((status, html(&view)).into_response())
}

fn row_view(
    t: &Text,
    r: &TableRow,
    readings: &[String],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> RowView {
    let local = |at: DateTime<Utc>| at.with_timezone(&tz).format("%m/%d %H:%M").to_string();
    let cells = readings
        .iter()
        .map(|name| {
            let latest = r.latest.iter().find(|(n, _)| n == name).map(|(_, v)| v);
            let values: Vec<(DateTime<Utc>, f64)> =
                r.recent.iter().filter(|(n, _)| n == name).map(|(_, v)| (v.at, v.number())).collect();
            let listed: Vec<String> = r
                .recent
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| format!("{} {}", v.at.with_timezone(&tz).format("%m/%d"), v.value))
                .collect();
            let words = if listed.is_empty() {
                format!("{}: {}", t.say("直近7日間", "Last 7 days"), t.say("記録なし", "no readings"))
            } else {
                format!("{}: {}", t.say("直近7日間", "Last 7 days"), listed.join(", "))
            };
            let label = format!("{} {words}", answer_name(t, name));
            Cell {
                latest: latest.map(|v| v.value.to_string()).unwrap_or_else(|| "—".into()),
                at: latest.map(|v| local(v.at)).unwrap_or_default(),
                svg: sparkline(&values, since, now, &label).svg,
            }
        })
        .collect();
    let followup = r.followup.as_ref().map(|i| {
        let mut words = severity(t, i.severity).to_string();
        if let Some(by) = &i.claimed_by {
            words = format!("{words} · {}: {by}", t.say("対応中", "In progress"));
        }
        (format!("sev-{}", i.severity), words)
    });
    let (last_call, last_call_bad) = r
        .last_call
        .as_ref()
        .map_or_else(|| (t.say("通話なし", "No call yet").to_string(), false), |j| last_call_words(t, j));
    RowView {
        id: r.patient.patient_id.to_string(),
        name: r.patient.name.clone(),
        area: r.patient.area.clone().unwrap_or_default(),
        cells,
        followup,
        last_call,
        last_call_bad,
    }
}
