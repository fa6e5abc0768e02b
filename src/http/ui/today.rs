//! 今日 (Today): the day's campaign per area and in total, for a screen left on in the health
//! centre. Every staff role reads it; it shows counts only (no patient), so it leaves no audit
//! row.
//!
//! It updates by itself: a small script built into the binary (`/ui/today.js`) listens to
//! `/ui/today/events` (server-sent events) and swaps in the figures the server renders every
//! [`PUSH_EVERY`], the same HTML the page was served with. Nothing moves on the screen but the
//! numbers: no reload, no flash, the scroll position and the focus stay. Each push checks the
//! session again, so a sign-out (or an account disabled, or the session's lifetime over) ends
//! the stream and the page goes to the sign-in page. Without script, the page reloads itself
//! each minute (`<noscript>` refresh, which browsers do keeping the scroll position) and has
//! a refresh link.

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use super::i18n::{self, Text};
use super::pages::{Frame, html};
use super::{PageError, SESSION_COOKIE, Staff, cookie};
use crate::http::AppState;
use crate::store::{AreaDay, DayFigures, StoreError};
use crate::types::UiLanguage;

/// How often the open page gets the figures again.
pub const PUSH_EVERY: Duration = Duration::from_secs(10);

/// The Today page's policy: its own script and its event stream, nothing else.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/today", get(page))
        .route("/ui/today/events", get(events))
        .route("/ui/today.js", get(script))
}

/// The day's figures as the store reads them, with the day and the time they were read.
pub struct Today {
    pub day: NaiveDate,
    pub as_of: DateTime<Utc>,
    pub figures: DayFigures,
}

/// Reads today's figures (the day in the scheduler's time zone).
pub async fn read(state: &AppState) -> Result<Today, StoreError> {
    let now = state.campaign.clock.now();
    let day = state.campaign.hours.day_of(now);
    let (from, to) = state.campaign.hours.day_bounds(day);
    let figures = state.store.campaign().day_figures(day, from, to).await?;
    Ok(Today { day, as_of: now, figures })
}

/// One figure: its key (the API's field, the cell's `data-what`), and its words.
pub(super) struct Column {
    pub what: &'static str,
    pub label: &'static str,
}

/// The figures in the order the page shows them, with their values for an area.
fn columns(t: &Text) -> Vec<Column> {
    let c = |what, ja, en| Column { what, label: t.say(ja, en) };
    vec![
        c("planned", "予定", "Planned"),
        c("waiting", "未発信", "Not dialled yet"),
        c("ringing", "呼び出し中", "Ringing"),
        c("in_call", "通話中", "In call"),
        c("completed", "完了", "Completed"),
        c("retry", "再発信待ち", "To retry"),
        c("unreachable", "不通", "Unreachable"),
        c("failed", "発信できず", "Could not dial"),
        c("attempts", "発信回数", "Dial attempts"),
        c("numbers_issued", "処理番号の発行", "Numbers issued"),
        c("sms_delivered", "SMS 配達済み", "SMS delivered"),
        c("sms_failed", "SMS 不達", "SMS failed"),
        c("followups_open", "要フォロー（未完了）", "Open follow-ups"),
    ]
}

/// An area's value of a figure (`what` as in [`columns`] and the API).
pub fn value(a: &AreaDay, what: &str) -> i64 {
    match what {
        "planned" => a.planned(),
        "waiting" => a.count("planned"),
        "ringing" => a.count("dialing"),
        "in_call" => a.count("in-progress"),
        "completed" => a.count("done"),
        "retry" => a.count("retry"),
        "unreachable" => a.count("unreachable"),
        "failed" => a.count("failed"),
        "attempts" => a.attempts,
        "calls" => a.calls,
        "hung_up" => a.hung_up,
        "numbers_issued" => a.numbers_issued,
        "sms_delivered" => a.sms_delivered,
        "sms_failed" => a.sms_failed,
        "followups_open" => a.followups_open,
        _ => 0,
    }
}

/// Every figure the API answers, in its order.
pub const API_FIELDS: [&str; 15] = [
    "planned",
    "waiting",
    "ringing",
    "in_call",
    "completed",
    "retry",
    "unreachable",
    "failed",
    "attempts",
    "calls",
    "hung_up",
    "numbers_issued",
    "sms_delivered",
    "sms_failed",
    "followups_open",
];

/// A whole number with thousands separators: 12,345.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub(super) struct Cell {
    what: &'static str,
    label: &'static str,
    value: String,
}

pub(super) struct Row {
    /// The area as stored (`""`: no area), for tests and scripts.
    key: String,
    name: String,
    cells: Vec<Cell>,
}

pub(super) struct Tile {
    what: &'static str,
    label: &'static str,
    value: String,
    /// `done`, `warn` or `` (how it is coloured; the words say the same).
    tone: &'static str,
}

/// The figures' part of the page: what the event stream sends again.
#[derive(Template)]
#[template(path = "ui/today_figures.html")]
pub(super) struct Figures {
    t: &'static Text,
    as_of: String,
    as_of_iso: String,
    tiles: Vec<Tile>,
    columns: Vec<Column>,
    rows: Vec<Row>,
    total: Row,
    progress: i64,
    nothing_planned: bool,
}

fn figures(t: &'static Text, tz: chrono_tz::Tz, today: &Today) -> Figures {
    let cols = columns(t);
    let row = |a: &AreaDay, name: String| Row {
        key: a.area.clone(),
        name,
        cells: cols.iter().map(|c| Cell { what: c.what, label: c.label, value: grouped(value(a, c.what)) }).collect(),
    };
    let total = today.figures.total();
    let rows = today
        .figures
        .areas
        .iter()
        .map(|a| {
            row(a, if a.area.is_empty() { t.say("（地区なし）", "(no area)").to_string() } else { a.area.clone() })
        })
        .collect();
    let tile = |what: &'static str, ja: &'static str, en: &'static str, tone: &'static str| Tile {
        what,
        label: t.say(ja, en),
        value: grouped(value(&total, what)),
        tone,
    };
    let planned = total.planned();
    let finished = value(&total, "completed") + value(&total, "unreachable") + value(&total, "failed");
    let warn = |what: &str| if value(&total, what) > 0 { "warn" } else { "" };
    Figures {
        t,
        as_of: today.as_of.with_timezone(&tz).format("%H:%M:%S").to_string(),
        as_of_iso: today.as_of.to_rfc3339_opts(SecondsFormat::Secs, true),
        tiles: vec![
            tile("planned", "予定", "Planned", ""),
            tile("completed", "完了", "Completed", "done"),
            tile("ringing", "呼び出し中", "Ringing", ""),
            tile("in_call", "通話中", "In call", ""),
            tile("retry", "再発信待ち", "To retry", ""),
            tile("unreachable", "不通", "Unreachable", warn("unreachable")),
            tile("numbers_issued", "処理番号の発行", "Numbers issued", ""),
            tile("sms_failed", "SMS 不達", "SMS failed", warn("sms_failed")),
            tile("followups_open", "要フォロー", "Open follow-ups", warn("followups_open")),
        ],
        columns: cols.iter().map(|c| Column { what: c.what, label: c.label }).collect(),
        rows,
        total: row(&total, t.say("合計", "Total").to_string()),
        progress: if planned > 0 { finished * 100 / planned } else { 0 },
        nothing_planned: planned == 0,
    }
}

#[derive(Template)]
#[template(path = "ui/today.html")]
struct Page {
    t: &'static Text,
    frame: Frame,
    day: String,
    figures: String,
    every: u64,
}

async fn page(State(state): State<AppState>, staff: Staff) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let today = read(&state).await.map_err(|e| PageError::internal(language, e))?;
    let tz = state.campaign.hours.tz();
    let part = figures(t, tz, &today).render().map_err(|e| PageError::internal(language, e))?;
    let day = if language == UiLanguage::Ja {
        today.day.format("%Y年%-m月%-d日").to_string()
    } else {
        today.day.format("%A %-d %B %Y").to_string()
    };
    let page = Page { t, frame: Frame::of(&staff, "/ui/today"), day, figures: part, every: PUSH_EVERY.as_secs() };
    let mut resp = html(&page);
    resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    Ok(resp)
}

/// What the stream carries from one push to the next.
struct Pushing {
    state: AppState,
    session_id: String,
    language: UiLanguage,
    first: bool,
    ended: bool,
}

async fn push(mut p: Pushing) -> Option<(Result<Event, std::convert::Infallible>, Pushing)> {
    if p.ended {
        return None;
    }
    if !p.first {
        tokio::time::sleep(PUSH_EVERY).await;
    }
    p.first = false;
    let now = p.state.campaign.clock.now();
    let live = crate::staff::session(&p.state.store, &p.state.staff.rules, &p.session_id, now).await;
    if !matches!(live, Ok(Some(_))) {
        p.ended = true;
        return Some((Ok(Event::default().event("ended").data("signed out")), p));
    }
    let t = i18n::text(p.language);
    let rendered = match read(&p.state).await {
        Ok(today) => figures(t, p.state.campaign.hours.tz(), &today).render().map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let event = match rendered {
        Ok(part) => Event::default().event("figures").data(part),
        Err(e) => {
            tracing::error!(error = %e, "today's figures could not be read");
            Event::default().comment("the figures could not be read; trying again")
        }
    };
    Some((Ok(event), p))
}

async fn events(State(state): State<AppState>, staff: Staff, headers: HeaderMap) -> Result<Response, PageError> {
    let session_id = cookie(&headers, SESSION_COOKIE).unwrap_or_default().to_string();
    let start = Pushing { state, session_id, language: staff.user.language, first: true, ended: false };
    let stream = futures_util::stream::unfold(start, push);
    let mut resp = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    // Proxies (nginx) pass the events on at once rather than buffering them.
    resp.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../../templates/ui/today.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(100_000), "100,000");
        assert_eq!(grouped(-1_234_567), "-1,234,567");
    }

    #[test]
    fn each_figure_of_the_page_is_one_of_the_api() {
        for c in columns(i18n::text(UiLanguage::En)) {
            assert!(API_FIELDS.contains(&c.what), "{}", c.what);
        }
    }
}
