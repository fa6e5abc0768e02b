//! The ministry's figures (`/ui/figures`, 集計): per area and in total, for a chosen period
//! grouped by day, by week or as a whole; the ministry's bubble chart of the period (x the
//! issuance rate, y the registration rate, a bubble's area the numbers issued), drawn on the
//! server as SVG, with the table as its text alternative; and the same table as CSV
//! (`/ui/figures.csv`, UTF-8 with a byte-order mark so spreadsheets read the Japanese; the
//! export is audited). The days and grouping are checked as the API checks them
//! ([`crate::http::figures::check`]); a field at fault gets its error beside it.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Days;
use serde::Deserialize;

use super::i18n::{self, Text};
use super::pages::{Frame, html};
use super::{PageError, Staff};
use crate::http::AppState;
use crate::http::figures::{Choice, Field, Problem, check};
use crate::store::figures::percent;
use crate::store::{Counts, SpanFigures};
use crate::types::FiguresBy;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ui/figures", get(page)).route("/ui/figures.csv", get(csv_export))
}

#[derive(Deserialize)]
struct FiguresQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/figures.html")]
struct FiguresPage {
    t: &'static Text,
    frame: Frame,
    from: String,
    to: String,
    by: &'static str,
    bys: Vec<(&'static str, &'static str)>,
    from_error: Option<&'static str>,
    to_error: Option<&'static str>,
    by_error: Option<&'static str>,
    shown: Option<Shown>,
}

/// The figures of a valid choice.
struct Shown {
    /// `2026-12-01 – 2026-12-07`.
    period: String,
    headers: Vec<&'static str>,
    /// The whole period: each area, then the total.
    rows: Vec<Row>,
    chart: Chart,
    /// Per day or week (empty for the whole period), with its heading.
    breakdown: Vec<Row>,
    breakdown_title: &'static str,
    csv_href: String,
}

/// A row of a figures table: its span, its area (or the total), and its cells by column.
struct Row {
    /// The span's first day, and its last when it is another.
    first: String,
    last: Option<String>,
    area: String,
    total: bool,
    cells: Vec<(&'static str, String)>,
}

/// The bubble chart, in SVG user units.
struct Chart {
    width: u32,
    height: u32,
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
    bottom: f64,
    right: f64,
    x_max: u32,
    x_ticks: Vec<(String, String)>,
    y_ticks: Vec<(String, String)>,
    bubbles: Vec<Bubble>,
    /// Areas without a bubble (no new patients, or no number issued): in the table only.
    unplaced: Vec<String>,
}

struct Bubble {
    area: String,
    issued: i64,
    issuance: String,
    registration: String,
    cx: String,
    cy: String,
    r: String,
    label_x: String,
    label_y: String,
    /// `middle`, `start` or `end`: how the label hangs from its point.
    anchor: &'static str,
    colour: &'static str,
}

/// The labels' font size, in SVG user units.
const LABEL_SIZE: f64 = 15.0;

/// The box a label takes (x0, y0, x1, y1) with its baseline at `y`: a Latin letter or digit is
/// taken as 0.6 of the font size wide, any other character (kana, kanji) as a whole one.
fn label_box(text: &str, x: f64, y: f64, anchor: &str) -> [f64; 4] {
    let w: f64 = text.chars().map(|c| if c.is_ascii() { 0.6 } else { 1.0 }).sum::<f64>() * LABEL_SIZE;
    let x0 = match anchor {
        "start" => x,
        "end" => x - w,
        _ => x - w / 2.0,
    };
    [x0, y - LABEL_SIZE, x0 + w, y + 0.3 * LABEL_SIZE]
}

/// Where a bubble's label goes: above it, below, to its right or to its left, whichever
/// covers the fewest other bubbles and labels and stays inside the plot (the first of equals).
fn place_label(
    text: &str,
    (cx, cy, r): (f64, f64, f64),
    circles: &[(f64, f64, f64)],
    taken: &[[f64; 4]],
    (left, top, right, bottom): (f64, f64, f64, f64),
) -> (f64, f64, &'static str) {
    let candidates = [
        (cx, cy - r - 6.0, "middle"),
        (cx, cy + r + LABEL_SIZE + 2.0, "middle"),
        (cx + r + 5.0, cy + 5.0, "start"),
        (cx - r - 5.0, cy + 5.0, "end"),
    ];
    let cost = |&(x, y, anchor): &(f64, f64, &str)| {
        let b = label_box(text, x, y, anchor);
        let hits_circle = |&(ox, oy, or): &(f64, f64, f64)| {
            let nx = ox.clamp(b[0], b[2]);
            let ny = oy.clamp(b[1], b[3]);
            (nx - ox).powi(2) + (ny - oy).powi(2) < or * or
        };
        let others = circles.iter().filter(|c| **c != (cx, cy, r) && hits_circle(c)).count();
        let labels = taken.iter().filter(|t| b[0] < t[2] && t[0] < b[2] && b[1] < t[3] && t[1] < b[3]).count();
        let outside = b[0] < left || b[2] > right || b[1] < top || b[3] > bottom;
        others * 2 + labels * 2 + usize::from(outside) * 3
    };
    let best = candidates.iter().enumerate().min_by_key(|(i, c)| (cost(c), *i)).map(|(_, c)| *c);
    best.unwrap_or(candidates[0])
}

/// The areas' colours, in turn: distinguishable, and dark enough for their labels' outline.
const PALETTE: [&str; 6] = ["#0b5fa5", "#b35c00", "#1b6e3a", "#7b2d8e", "#a4161a", "#00707a"];

fn area_name(t: &Text, area: Option<&str>) -> String {
    area.map_or_else(|| t.say("地区未設定", "No area").to_string(), str::to_owned)
}

/// The column headers, in the order of [`cells`].
fn headers(t: &Text) -> Vec<&'static str> {
    vec![
        t.say("新規陽性者数", "New patients"),
        t.say("アプリ利用を質問", "Asked about the app"),
        t.say("アプリ利用あり", "App users"),
        t.say("登録に同意", "Consents"),
        t.say("発行（自動架電）", "Issued in calls"),
        t.say("発行（保健所）", "Issued by staff"),
        t.say("発行（Web）", "Issued on the web"),
        t.say("処理番号発行数", "Numbers issued"),
        t.say("陽性登録数", "Registered in the app"),
        t.say("処理番号発行率", "Issuance rate"),
        t.say("陽性登録率", "Registration rate"),
    ]
}

fn cells(t: &Text, c: &Counts) -> Vec<(&'static str, String)> {
    let values = [
        c.new_patients.to_string(),
        c.asked.to_string(),
        c.app_users.to_string(),
        c.consents.to_string(),
        c.issued_call.to_string(),
        c.issued_staff.to_string(),
        c.issued_web.to_string(),
        c.issued().to_string(),
        c.verified.to_string(),
        percent(c.issuance_rate()),
        percent(c.registration_rate()),
    ];
    headers(t).into_iter().zip(values).collect()
}

fn span_label(s: &SpanFigures) -> String {
    if s.span.first == s.span.last { s.span.first.to_string() } else { format!("{} – {}", s.span.first, s.span.last) }
}

/// Each area's row of a span, then its total's.
fn rows(t: &Text, s: &SpanFigures) -> Vec<Row> {
    let first = s.span.first.to_string();
    let last = (s.span.last != s.span.first).then(|| s.span.last.to_string());
    let row = |area: String, total: bool, c: &Counts| Row {
        first: first.clone(),
        last: last.clone(),
        area,
        total,
        cells: cells(t, c),
    };
    let mut out: Vec<Row> = s.areas.iter().map(|a| row(area_name(t, a.area.as_deref()), false, &a.counts)).collect();
    out.push(row(t.say("合計", "Total").to_string(), true, &s.total));
    out
}

/// The bubble chart of one span: a bubble per area with a rate on both axes.
fn chart(t: &Text, s: &SpanFigures) -> Chart {
    let (width, height) = (720u32, 440u32);
    let (left, top, right, bottom) = (78.0, 24.0, 700.0, 380.0);
    let (plot_w, plot_h) = (right - left, bottom - top);
    let placed: Vec<_> =
        s.areas.iter().filter_map(|a| Some((a, a.counts.issuance_rate()?, a.counts.registration_rate()?))).collect();
    // The x axis reaches 100 %, or the largest rate rounded up to a quarter.
    let widest = placed.iter().map(|(_, x, _)| *x).fold(1.0_f64, f64::max);
    let x_max = ((widest * 4.0).ceil() * 25.0).max(100.0) as u32;
    let most = placed.iter().map(|(a, _, _)| a.counts.issued()).max().unwrap_or(1).max(1);
    let circles: Vec<(f64, f64, f64)> = placed
        .iter()
        .map(|(a, x, y)| {
            let cx = left + plot_w * (x * 100.0 / f64::from(x_max));
            let cy = bottom - plot_h * y.min(1.0);
            // The bubble's area is proportional to the numbers issued.
            let r = 44.0 * (a.counts.issued() as f64 / most as f64).sqrt();
            (cx, cy, r)
        })
        .collect();
    let mut taken: Vec<[f64; 4]> = Vec::new();
    let mut bubbles = Vec::with_capacity(placed.len());
    for (i, ((a, x, y), (cx, cy, r))) in placed.iter().zip(&circles).enumerate() {
        let area = area_name(t, a.area.as_deref());
        let text = format!("{area} ({})", a.counts.issued());
        let (label_x, label_y, anchor) =
            place_label(&text, (*cx, *cy, *r), &circles, &taken, (left, top, right, bottom));
        taken.push(label_box(&text, label_x, label_y, anchor));
        bubbles.push(Bubble {
            area,
            issued: a.counts.issued(),
            issuance: percent(Some(*x)),
            registration: percent(Some(*y)),
            cx: format!("{cx:.1}"),
            cy: format!("{cy:.1}"),
            r: format!("{r:.1}"),
            label_x: format!("{label_x:.1}"),
            label_y: format!("{label_y:.1}"),
            anchor,
            colour: PALETTE[i % PALETTE.len()],
        });
    }
    let unplaced = s
        .areas
        .iter()
        .filter(|a| a.counts.issuance_rate().is_none() || a.counts.registration_rate().is_none())
        .map(|a| area_name(t, a.area.as_deref()))
        .collect();
    let x_ticks = (0..=4)
        .map(|i| {
            let v = x_max * i / 4;
            (format!("{:.1}", left + plot_w * f64::from(i) / 4.0), format!("{v}%"))
        })
        .collect();
    let y_ticks =
        (0..=4).map(|i| (format!("{:.1}", bottom - plot_h * f64::from(i) / 4.0), format!("{}%", 25 * i))).collect();
    Chart { width, height, left, top, plot_w, plot_h, bottom, right, x_max, x_ticks, y_ticks, bubbles, unplaced }
}

/// The choice's fields as typed, today's week by day when none is given.
fn fields(state: &AppState, q: &FiguresQuery) -> (String, String, String) {
    if q.from.is_none() && q.to.is_none() && q.by.is_none() {
        let today = state.campaign.clock.now().with_timezone(&state.turns.issuer.tz).date_naive();
        let week_ago = today - Days::new(6);
        return (week_ago.to_string(), today.to_string(), "day".into());
    }
    let s = |v: &Option<String>| v.as_deref().unwrap_or("").trim().chars().take(32).collect::<String>();
    (s(&q.from), s(&q.to), s(&q.by))
}

fn problem_text(t: &Text, p: Problem) -> &'static str {
    match p {
        Problem::Missing => t.say("日付を入力してください（例 2026-12-01）。", "Enter a date (e.g. 2026-12-01)."),
        Problem::NotADate => t.say(
            "日付は 年-月-日 の形で入力してください（例 2026-12-01）。",
            "Enter the date as year-month-day (e.g. 2026-12-01).",
        ),
        Problem::BeforeFrom => {
            t.say("終了日は開始日と同じか、それより後にしてください。", "The last day cannot be before the first.")
        }
        Problem::TooLong => t.say("期間は366日までです。", "The period is at most 366 days."),
        Problem::UnknownBy => t.say("集計の単位を選んでください。", "Choose how to group the figures."),
    }
}

async fn page(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<FiguresQuery>,
) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let (from, to, by) = fields(&state, &q);
    let checked = check(Some(&from), Some(&to), Some(&by), FiguresBy::Day);
    let bys = vec![
        ("day", t.say("日ごと", "By day")),
        ("week", t.say("週ごと（月曜から日曜）", "By week (Monday to Sunday)")),
        ("period", t.say("期間全体", "Whole period")),
    ];
    let by_value = FiguresBy::parse(&by).map_or("day", FiguresBy::as_str);
    let mut page = FiguresPage {
        t,
        frame: Frame::of(&staff, "/ui/figures"),
        from: from.clone(),
        to: to.clone(),
        by: by_value,
        bys,
        from_error: None,
        to_error: None,
        by_error: None,
        shown: None,
    };
    let choice = match checked {
        Ok(c) => c,
        Err(errors) => {
            for (field, problem) in errors {
                let slot = match field {
                    Field::From => &mut page.from_error,
                    Field::To => &mut page.to_error,
                    Field::By => &mut page.by_error,
                };
                slot.get_or_insert(problem_text(t, problem));
            }
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response());
        }
    };
    page.shown = Some(shown(&state, t, &choice).await.map_err(|e| PageError::internal(language, e))?);
    Ok(html(&page))
}

async fn shown(state: &AppState, t: &'static Text, choice: &Choice) -> Result<Shown, crate::store::StoreError> {
    let tz = state.turns.issuer.tz;
    let whole = Choice { by: FiguresBy::Period, ..*choice };
    let mut spans = whole.spans(tz);
    if choice.by != FiguresBy::Period {
        spans.extend(choice.spans(tz));
    }
    let figures = state.store.figures().figures(&spans).await?;
    let (period, parts) = figures.split_first().expect("the whole period is always counted");
    let breakdown = parts.iter().flat_map(|s| rows(t, s)).collect();
    let breakdown_title = match choice.by {
        FiguresBy::Day => t.say("日ごと", "By day"),
        FiguresBy::Week => t.say("週ごと", "By week"),
        FiguresBy::Period => "",
    };
    Ok(Shown {
        period: span_label(period),
        headers: headers(t),
        rows: rows(t, period),
        chart: chart(t, period),
        breakdown,
        breakdown_title,
        csv_href: format!("/ui/figures.csv?from={}&to={}&by={}", choice.first, choice.last, choice.by),
    })
}

/// The table as CSV: a row per area and span, and each span's total; the headers in the
/// reader's language; UTF-8 with a byte-order mark.
pub fn figures_csv(t: &Text, figures: &[SpanFigures]) -> csv::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    let mut head = vec![t.say("開始日", "First day"), t.say("終了日", "Last day"), t.say("地区", "Area")];
    head.extend(headers(t));
    out.write_record(&head)?;
    for s in figures {
        let mut write = |area: String, c: &Counts| {
            let mut row = vec![s.span.first.to_string(), s.span.last.to_string(), area];
            row.extend(cells(t, c).into_iter().map(|(_, v)| v));
            out.write_record(&row)
        };
        for a in &s.areas {
            // A name a spreadsheet would run as a formula is kept as text.
            let name = area_name(t, a.area.as_deref());
            let name = if name.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{name}") } else { name };
            write(name, &a.counts)?;
        }
        write(t.say("合計", "Total").to_string(), &s.total)?;
    }
    out.flush()?;
    out.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

async fn csv_export(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<FiguresQuery>,
) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let (from, to, by) = fields(&state, &q);
    let Ok(choice) = check(Some(&from), Some(&to), Some(&by), FiguresBy::Day) else {
        return Err(PageError::BadRequest(language));
    };
    staff.audit(&state, "export_figures", &format!("{} {} {}", choice.first, choice.last, choice.by)).await?;
    let figures = state
        .store
        .figures()
        .figures(&choice.spans(state.turns.issuer.tz))
        .await
        .map_err(|e| PageError::internal(language, e))?;
    let body = figures_csv(t, &figures).map_err(|e| PageError::internal(language, e))?;
    let name = format!("attachment; filename=\"ivr-figures-{}-{}-{}.csv\"", choice.first, choice.last, choice.by);
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, name)], body)
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLOT: (f64, f64, f64, f64) = (78.0, 24.0, 700.0, 380.0);

    #[test]
    fn a_label_goes_above_its_bubble_unless_that_covers_another() {
        let alone = (300.0, 200.0, 20.0);
        assert_eq!(place_label("北区 (10)", alone, &[alone], &[], PLOT), (300.0, 174.0, "middle"));
        // A bubble just above: the label goes below.
        let above = (300.0, 150.0, 30.0);
        let (_, y, anchor) = place_label("北区 (10)", alone, &[alone, above], &[], PLOT);
        assert_eq!((y, anchor), (237.0, "middle"));
        // At the top of the plot: not above it.
        let high = (300.0, 30.0, 20.0);
        assert_ne!(place_label("x", high, &[high], &[], PLOT).1, 4.0);
    }
}
