//! Charts drawn on the server as inline SVG (no script, nothing fetched): a sparkline of a
//! reading's last days for the patients table, and a reading's chart over a patient's whole care
//! period with the flow's alert thresholds. Each carries its text alternative (`aria-label`
//! and `<title>`; the pages also show the values as a table). Coordinates are rounded to 0.1
//! and written in the SVG's own units, so tests read them back.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::flow::{Cond, Flow, Kind, NumberFormat, Value};
use crate::types::Severity;

/// A sparkline's size in CSS pixels.
pub const SPARK_W: f64 = 120.0;
pub const SPARK_H: f64 = 32.0;
const SPARK_PAD: f64 = 4.0;

/// A chart's size and margins (SVG units; it scales to the page's width).
pub const CHART_W: f64 = 640.0;
pub const CHART_H: f64 = 260.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// Escapes text for SVG/HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Where `at` falls between `from` and `to`, from 0 to 1 (0.5 when they are the same).
fn share(at: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let span = (to - from).num_seconds() as f64;
    if span <= 0.0 { 0.5 } else { ((at - from).num_seconds() as f64 / span).clamp(0.0, 1.0) }
}

/// A sparkline of `values` (time, value) between `from` and `to`: its points and its SVG.
/// The lowest value is at the bottom, the highest at the top (one value alone in the middle).
#[derive(Debug, Clone, PartialEq)]
pub struct Sparkline {
    pub points: Vec<(f64, f64)>,
    pub svg: String,
}

pub fn sparkline(values: &[(DateTime<Utc>, f64)], from: DateTime<Utc>, to: DateTime<Utc>, alt: &str) -> Sparkline {
    let lo = values.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
    let hi = values.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max);
    let inner_h = SPARK_H - 2.0 * SPARK_PAD;
    let points: Vec<(f64, f64)> = values
        .iter()
        .map(|&(at, v)| {
            let x = SPARK_PAD + share(at, from, to) * (SPARK_W - 2.0 * SPARK_PAD);
            let y = if hi > lo { SPARK_PAD + (hi - v) / (hi - lo) * inner_h } else { SPARK_H / 2.0 };
            (round1(x), round1(y))
        })
        .collect();
    let mut svg = format!(
        "<svg class=\"spark\" width=\"{SPARK_W}\" height=\"{SPARK_H}\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" role=\"img\" aria-label=\"{a}\"><title>{a}</title>",
        a = escape(alt)
    );
    let list: Vec<String> = points.iter().map(|(x, y)| format!("{x},{y}")).collect();
    if points.len() > 1 {
        let _ = write!(svg, "<polyline points=\"{}\"/>", list.join(" "));
    }
    if let Some((x, y)) = points.last() {
        let _ = write!(svg, "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\"/>");
    }
    svg.push_str("</svg>");
    Sparkline { points, svg }
}

/// An alert threshold of a reading, from a branch rule of the flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub value: f64,
    /// The rule alerts at and below the value (`max`), else at and above it (`min`) or at it.
    pub below: bool,
    pub equals: bool,
    /// The severity of the alert the rule leads to, when it leads straight to one.
    pub severity: Option<Severity>,
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number { raw, scale } => Some(*raw as f64 / 10f64.powi(i32::from(*scale))),
        _ => None,
    }
}

/// The variables of the flow's `number` questions that hold a measure (not a date or typed
/// digits), in file order: e.g. `temperature`, `spo2`.
pub fn readings_of(flow: &Flow) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &flow.states {
        if let Kind::Number(n) = &s.kind
            && n.format == NumberFormat::Number
            && !out.contains(&n.var)
        {
            out.push(n.var.clone());
        }
    }
    out
}

/// The flow's alert thresholds for `var`: the bounds of its branch rules on it.
pub fn thresholds_of(flow: &Flow, var: &str) -> Vec<Threshold> {
    let mut out = Vec::new();
    for s in &flow.states {
        let Kind::Branch { rules, .. } = &s.kind else { continue };
        for r in rules.iter().filter(|r| r.var.value == var) {
            let severity = match &flow.states[r.next.idx].kind {
                Kind::Action { action: crate::flow::Action::AlertHealthCenter { severity, .. }, .. } => Some(*severity),
                _ => None,
            };
            let mut add = |v: &Value, below: bool, equals: bool| {
                if let Some(value) = number(v) {
                    out.push(Threshold { value, below, equals, severity });
                }
            };
            match &r.cond {
                Cond::Range { min, max } => {
                    if let Some(m) = max {
                        add(m, true, false);
                    }
                    if let Some(m) = min {
                        add(m, false, false);
                    }
                }
                Cond::Equals(v) => add(v, false, true),
                Cond::Missing(_) => {}
            }
        }
    }
    out
}

/// A point of a chart: a call at `at` with its reading, or without one (`None`: answered but
/// not this question, or `missed`: the day's call never reached the patient).
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPoint {
    pub at: DateTime<Utc>,
    pub value: Option<f64>,
    pub missed: bool,
    /// The value as the page shows it (36.5), and the time as the page shows it.
    pub text: String,
    pub when: String,
}

/// What a chart shows, in the page's words.
pub struct ChartSpec<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: &'a [ChartPoint],
    pub thresholds: &'a [Threshold],
    /// Labels of the time axis: (time, text).
    pub ticks: &'a [(DateTime<Utc>, String)],
    /// Words: a threshold ("alert at or below"), a missed call, an answered call without it.
    pub words: ChartWords<'a>,
}

pub struct ChartWords<'a> {
    pub at_or_below: &'a str,
    pub at_or_above: &'a str,
    pub equals: &'a str,
    pub missed: &'a str,
    pub no_reading: &'a str,
}

/// The value axis: from `lo` to `hi` in steps of `step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub step: f64,
}

/// A value axis that holds every value and threshold, with about four to six steps.
pub fn axis(values: impl Iterator<Item = f64>) -> Axis {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return Axis { lo: 0.0, hi: 1.0, step: 0.2 };
    }
    if hi - lo < 1e-9 {
        lo -= 1.0;
        hi += 1.0;
    }
    let step = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        .into_iter()
        .find(|s| (hi - lo) / s <= 5.0)
        .unwrap_or(100.0);
    // A step's margin below and above, so no point sits on the frame.
    let lo = ((lo / step).floor() - if (lo / step).fract().abs() < 1e-9 { 1.0 } else { 0.0 }) * step;
    let hi = ((hi / step).ceil() + if (hi / step).fract().abs() < 1e-9 { 1.0 } else { 0.0 }) * step;
    Axis { lo: (lo * 100.0).round() / 100.0, hi: (hi * 100.0).round() / 100.0, step }
}

impl Axis {
    /// The y of `v` in a chart.
    pub fn y(&self, v: f64) -> f64 {
        let inner = CHART_H - TOP - BOTTOM;
        round1(TOP + (self.hi - v) / (self.hi - self.lo) * inner)
    }
}

/// The x of `at` in a chart from `from` to `to`.
pub fn chart_x(at: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    round1(LEFT + share(at, from, to) * (CHART_W - LEFT - RIGHT))
}

fn decimals(step: f64) -> usize {
    if step < 1.0 { 1 } else { 0 }
}

/// A reading's chart: its points over time joined by a line, each threshold a dashed line with
/// its words, missed calls and calls without this reading marked on the time axis.
pub fn chart(spec: &ChartSpec<'_>) -> String {
    let values = spec.points.iter().filter_map(|p| p.value).chain(spec.thresholds.iter().map(|t| t.value));
    let ax = axis(values);
    let (w, h) = (CHART_W, CHART_H);
    let bottom = h - BOTTOM;
    let mut svg = format!(
        "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"{id}-title\" data-lo=\"{lo}\" data-hi=\"{hi}\"><title id=\"{id}-title\">{title}</title>",
        id = escape(spec.id),
        lo = ax.lo,
        hi = ax.hi,
        title = escape(spec.title)
    );
    // Grid and value labels.
    let digits = decimals(ax.step);
    let mut v = ax.lo;
    while v <= ax.hi + 1e-9 {
        let y = ax.y(v);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\"/><text class=\"tick\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{v:.digits$}</text>",
            x2 = w - RIGHT,
            tx = LEFT - 6.0,
            ty = y + 5.0
        );
        v += ax.step;
    }
    for (at, label) in spec.ticks {
        let x = chart_x(*at, spec.from, spec.to);
        // A label at either end stays inside the drawing.
        let anchor = if x > w - RIGHT - 24.0 {
            "end"
        } else if x < LEFT + 24.0 {
            "start"
        } else {
            "middle"
        };
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{bottom}\"/><text class=\"tick\" x=\"{x}\" y=\"{ty}\" text-anchor=\"{anchor}\">{}</text>",
            escape(label),
            ty = h - 14.0
        );
    }
    let _ = write!(
        svg,
        "<rect class=\"frame\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\"/>",
        w - LEFT - RIGHT,
        bottom - TOP
    );
    for t in spec.thresholds {
        let y = ax.y(t.value);
        let words = if t.equals {
            spec.words.equals
        } else if t.below {
            spec.words.at_or_below
        } else {
            spec.words.at_or_above
        };
        let label = format!("{words} {}", trim_number(t.value));
        let sev = t.severity.map_or_else(String::new, |s| format!(" sev-{s}"));
        let _ = write!(
            svg,
            "<g class=\"threshold{sev}\" data-value=\"{value}\"><line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\"/><text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text></g>",
            value = t.value,
            x2 = w - RIGHT,
            tx = w - RIGHT - 4.0,
            ty = if t.below { y + 16.0 } else { y - 6.0 },
            label = escape(&label)
        );
    }
    let line: Vec<String> = spec
        .points
        .iter()
        .filter_map(|p| p.value.map(|v| format!("{},{}", chart_x(p.at, spec.from, spec.to), ax.y(v))))
        .collect();
    if line.len() > 1 {
        let _ = write!(svg, "<polyline class=\"line\" points=\"{}\"/>", line.join(" "));
    }
    for p in spec.points {
        let x = chart_x(p.at, spec.from, spec.to);
        match p.value {
            Some(v) => {
                let alert = spec.thresholds.iter().any(|t| {
                    if t.equals {
                        (v - t.value).abs() < 1e-9
                    } else if t.below {
                        v <= t.value
                    } else {
                        v >= t.value
                    }
                });
                let _ = write!(
                    svg,
                    "<circle class=\"pt{a}\" cx=\"{x}\" cy=\"{y}\" r=\"5\" data-value=\"{v}\" data-at=\"{at}\"><title>{when}: {text}</title></circle>",
                    a = if alert { " alert" } else { "" },
                    y = ax.y(v),
                    at = p.at.to_rfc3339(),
                    when = escape(&p.when),
                    text = escape(&p.text)
                );
            }
            None => {
                let (class, words) =
                    if p.missed { ("missed", spec.words.missed) } else { ("none", spec.words.no_reading) };
                let y = bottom - 8.0;
                let _ = write!(
                    svg,
                    "<g class=\"{class}\" data-at=\"{at}\"><path d=\"M{x0},{y0} L{x1},{y1} M{x0},{y1} L{x1},{y0}\"/><title>{when}: {words}</title></g>",
                    at = p.at.to_rfc3339(),
                    x0 = round1(x - 5.0),
                    x1 = round1(x + 5.0),
                    y0 = round1(y - 5.0),
                    y1 = round1(y + 5.0),
                    when = escape(&p.when),
                    words = escape(words)
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

/// 93 for 93.0, 37.5 for 37.5.
pub fn trim_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{v:.1}") }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::flow::Library;

    fn t(day: i64, hour: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::days(day) + Duration::hours(hour)
    }

    fn shipped() -> std::sync::Arc<Flow> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (lib, _) = Library::load_dirs(&root.join("call-flows"), &root.join("prompts")).unwrap();
        lib.flow("daily-health-check").unwrap().clone()
    }

    #[test]
    fn a_sparkline_puts_the_first_value_left_the_last_right_the_highest_on_top() {
        let values = [(t(0, 0), 36.0), (t(3, 12), 38.0), (t(7, 0), 37.0)];
        let s = sparkline(&values, t(0, 0), t(7, 0), "体温: 36.0, 38.0, 37.0");
        assert_eq!(s.points, vec![(4.0, 28.0), (60.0, 4.0), (116.0, 16.0)]);
        assert!(s.svg.contains("points=\"4,28 60,4 116,16\""), "{}", s.svg);
        assert!(s.svg.contains("aria-label=\"体温: 36.0, 38.0, 37.0\""));
        assert!(s.svg.contains("<circle cx=\"116\" cy=\"16\""), "the latest value is marked");
    }

    #[test]
    fn a_sparkline_of_one_value_or_equal_values_is_drawn_in_the_middle() {
        let s = sparkline(&[(t(1, 0), 97.0), (t(2, 0), 97.0)], t(0, 0), t(4, 0), "SpO2");
        assert_eq!(s.points, vec![(32.0, 16.0), (60.0, 16.0)]);
        let one = sparkline(&[(t(1, 0), 97.0)], t(0, 0), t(4, 0), "SpO2");
        assert!(!one.svg.contains("polyline") && one.svg.contains("<circle"));
        let none = sparkline(&[], t(0, 0), t(4, 0), "<none>");
        assert!(none.points.is_empty() && none.svg.contains("&lt;none&gt;"));
    }

    #[test]
    fn the_shipped_flow_has_temperature_and_spo2_and_alerts_at_spo2_93_or_below_urgently() {
        let flow = shipped();
        assert_eq!(readings_of(&flow), vec!["temperature".to_string(), "spo2".to_string()]);
        assert_eq!(
            thresholds_of(&flow, "spo2"),
            vec![Threshold { value: 93.0, below: true, equals: false, severity: Some(Severity::Urgent) }]
        );
        assert!(thresholds_of(&flow, "temperature").is_empty(), "the shipped flow has no temperature rule");
    }

    #[test]
    fn the_axis_holds_every_value_and_threshold_with_a_margin() {
        let a = axis([96.0, 91.0, 93.0].into_iter());
        assert_eq!((a.lo, a.hi, a.step), (90.0, 97.0, 1.0));
        let b = axis([36.5, 38.2].into_iter());
        assert_eq!((b.lo, b.hi, b.step), (36.0, 38.5, 0.5));
        assert_eq!(b.y(b.hi), TOP);
        assert_eq!(b.y(b.lo), CHART_H - BOTTOM);
    }

    #[test]
    fn a_chart_draws_each_point_where_its_time_and_value_are_and_the_threshold_where_the_flow_says() {
        let flow = shipped();
        let thresholds = thresholds_of(&flow, "spo2");
        let point = |at, v: Option<f64>, missed| ChartPoint {
            at,
            value: v,
            missed,
            text: v.map(trim_number).unwrap_or_default(),
            when: at.format("%m/%d %H:%M").to_string(),
        };
        let points = [point(t(0, 0), Some(97.0), false), point(t(1, 0), None, true), point(t(2, 0), Some(92.0), false)];
        let words =
            ChartWords {
                at_or_below: "≤", at_or_above: "≥", equals: "=", missed: "不通", no_reading: "回答なし"
            };
        let svg = chart(&ChartSpec {
            id: "chart-spo2",
            title: "SpO2",
            from: t(0, 0),
            to: t(2, 0),
            points: &points,
            thresholds: &thresholds,
            ticks: &[(t(1, 0), "12/02".into())],
            words,
        });
        let ax = axis([97.0, 92.0, 93.0].into_iter());
        assert_eq!((ax.lo, ax.hi), (91.0, 98.0));
        // x: the care period from 52 to 624; y: 98 at 16, 91 at 216.
        assert!(svg.contains(&format!("cx=\"52\" cy=\"{}\" r=\"5\" data-value=\"97\"", ax.y(97.0))), "{svg}");
        assert!(svg.contains(&format!("class=\"pt alert\" cx=\"624\" cy=\"{}\"", ax.y(92.0))), "{svg}");
        assert_eq!(ax.y(93.0), 158.9, "16 + (98 - 93) / 7 × 200");
        assert!(
            svg.contains("<g class=\"threshold sev-urgent\" data-value=\"93\"><line x1=\"52\" y1=\"158.9\" x2=\"624\" y2=\"158.9\"/>"),
            "{svg}"
        );
        assert!(svg.contains("<g class=\"missed\" data-at=\"2026-12-02T00:00:00+00:00\"><path d=\"M333,203"), "{svg}");
        assert!(svg.contains("<title>12/02 00:00: 不通</title>"));
    }
}
