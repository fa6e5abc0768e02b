//! 通話フロー (Call flows): each flow served, with its versions as the calls used them (first
//! used, calls run on each, the one served now), and a flow's diagram drawn here as inline SVG
//! from [`crate::flow::graph::layout`], with the same states and transitions as a list for
//! those who do not see it. Every staff role reads them; they show no patient data.

use std::collections::BTreeMap;
use std::fmt::Write;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};

use super::i18n::{self, Text};
use super::pages::{Frame, Message, html};
use super::{PageError, Staff};
use crate::flow::graph::{self, EdgeKind, Layout, Node};
use crate::flow::{Flow, Kind};
use crate::http::AppState;
use crate::store::VersionUse;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ui/flows", get(list)).route("/ui/flows/{name}", get(one))
}

/// A version as the pages show it.
pub(super) struct VersionView {
    flow: String,
    /// The first 12 characters of its hash.
    short: String,
    version: String,
    first_used: String,
    calls: String,
    last_call: String,
    serving: bool,
}

pub(super) struct FlowRow {
    name: String,
    title: String,
    short: String,
    states: usize,
    versions: usize,
    calls: i64,
}

#[derive(Template)]
#[template(path = "ui/flows.html")]
struct List {
    t: &'static Text,
    frame: Frame,
    flows: Vec<FlowRow>,
    /// Versions of flows no longer served (their calls stay on the record).
    versions: Vec<VersionView>,
    /// The versions' table names their flow.
    show_flow: bool,
}

#[derive(Template)]
#[template(path = "ui/flow.html")]
struct One {
    t: &'static Text,
    frame: Frame,
    name: String,
    title: String,
    short: String,
    versions: Vec<VersionView>,
    show_flow: bool,
    svg: String,
    states: Vec<StateView>,
    transfer_key: Option<char>,
}

pub(super) struct StateView {
    name: String,
    kind: &'static str,
    start: bool,
    /// (label, target state's name; empty for the transfer).
    edges: Vec<(String, String)>,
}

fn local(state: &AppState, at: DateTime<Utc>) -> String {
    at.with_timezone(&state.campaign.hours.tz()).format("%Y-%m-%d %H:%M").to_string()
}

fn version_views(state: &AppState, usage: &[VersionUse], serving: &BTreeMap<String, String>) -> Vec<VersionView> {
    usage
        .iter()
        .map(|u| VersionView {
            flow: u.flow.clone(),
            short: u.version.chars().take(12).collect(),
            version: u.version.clone(),
            first_used: local(state, u.first_used),
            calls: u.calls.to_string(),
            last_call: u.last_call.map(|t| local(state, t)).unwrap_or_default(),
            serving: serving.get(&u.flow) == Some(&u.version),
        })
        .collect()
}

async fn list(State(state): State<AppState>, staff: Staff) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let usage = state.store.flows().usage().await.map_err(|e| PageError::internal(language, e))?;
    let current = state.flows.current_flows();
    let serving: BTreeMap<String, String> = current.iter().map(|f| (f.name.clone(), f.version.clone())).collect();
    let flows = current
        .iter()
        .map(|f| {
            let mine = usage.iter().filter(|u| u.flow == f.name);
            FlowRow {
                name: f.name.clone(),
                title: f.title.clone(),
                short: f.version.chars().take(12).collect(),
                states: f.states.len(),
                versions: mine.clone().count(),
                calls: mine.map(|u| u.calls).sum(),
            }
        })
        .collect();
    let retired: Vec<VersionUse> = usage.into_iter().filter(|u| !serving.contains_key(&u.flow)).collect();
    let page = List {
        t,
        frame: Frame::of(&staff, "/ui/flows"),
        flows,
        versions: version_views(&state, &retired, &serving),
        show_flow: true,
    };
    Ok(html(&page))
}

async fn one(State(state): State<AppState>, staff: Staff, Path(name): Path<String>) -> Result<Response, PageError> {
    let language = staff.user.language;
    let t = i18n::text(language);
    let Some(flow) = state.flows.current(&name) else {
        let page = Message {
            t,
            frame: Frame::of(&staff, "/ui/flows"),
            heading: t.say("フローが見つかりません", "No such flow"),
            body: t.say("この名前のフローは今は使われていません。", "No flow of that name is served now."),
            signed_in: true,
        };
        return Ok((StatusCode::NOT_FOUND, html(&page)).into_response());
    };
    let usage = state.store.flows().usage().await.map_err(|e| PageError::internal(language, e))?;
    let usage: Vec<VersionUse> = usage.into_iter().filter(|u| u.flow == flow.name).collect();
    let serving = BTreeMap::from([(flow.name.clone(), flow.version.clone())]);
    let layout = graph::layout(&flow, |n| box_lines(t, &flow, n));
    let states = flow
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| StateView {
            name: s.name.clone(),
            kind: kind_words(t, &s.kind),
            start: i == flow.start,
            edges: layout
                .edges
                .iter()
                .filter(|e| e.from == i)
                .map(|e| {
                    let to = match e.to {
                        Node::State(j) => flow.states[j].name.clone(),
                        Node::Transfer => String::new(),
                    };
                    (edge_words(t, &e.label), to)
                })
                .collect(),
        })
        .collect();
    let page = One {
        t,
        frame: Frame::of(&staff, "/ui/flows"),
        name: flow.name.clone(),
        title: flow.title.clone(),
        short: flow.version.chars().take(12).collect(),
        versions: version_views(&state, &usage, &serving),
        show_flow: false,
        svg: svg(t, &flow, &layout),
        states,
        transfer_key: flow.transfer.as_ref().map(|tr| tr.key.value),
    };
    Ok(html(&page))
}

/// A state's kind in words.
fn kind_words(t: &Text, kind: &Kind) -> &'static str {
    match kind {
        Kind::Say { .. } => t.say("案内", "say"),
        Kind::Menu { .. } => t.say("選択", "menu"),
        Kind::Number(_) => t.say("数値入力", "number"),
        Kind::Confirm { .. } => t.say("確認", "confirm"),
        Kind::Action { .. } => t.say("処理", "action"),
        Kind::Branch { .. } => t.say("分岐", "branch"),
        Kind::Hangup { .. } => t.say("終了", "hang up"),
    }
}

/// A transition's label in words: keys, give-up and the default of a branch translated; a
/// rule or an action's outcome as the file writes it.
fn edge_words(t: &Text, label: &str) -> String {
    if let Some(key) = label.strip_prefix("key ") {
        return format!("{} {key}", t.say("キー", "key"));
    }
    match label {
        "give up" => t.say("あきらめ（無応答・誤入力）", "give up").to_string(),
        "otherwise" => t.say("それ以外", "otherwise").to_string(),
        "answer" => t.say("回答", "answer").to_string(),
        "" => t.say("次へ", "next").to_string(),
        other => other.to_string(),
    }
}

/// A box's two lines: the state's name and its kind (or the transfer's words).
fn box_lines(t: &Text, flow: &Flow, node: Node) -> (String, String) {
    match node {
        Node::State(i) => (flow.states[i].name.clone(), kind_words(t, &flow.states[i].kind).to_string()),
        Node::Transfer => {
            (t.say("職員へ転送", "Transfer").to_string(), t.say("保健所の電話", "the centre's phone").to_string())
        }
    }
}

/// An edge's label, placed.
struct Label {
    x: f64,
    y: f64,
    w: f64,
    text: String,
    class: &'static str,
}

/// Escapes text for SVG (XML).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The diagram as inline SVG: a box per state (its kind as a class), a path per transition
/// (transitions between the same two states share one, their labels joined), the start marked.
/// Styled by the stylesheet's classes only (the pages' policy allows no inline style).
fn svg(t: &Text, flow: &Flow, l: &Layout) -> String {
    let mut out = String::new();
    let title = format!("{} {}", flow.name, t.say("の図", "diagram"));
    let _ = write!(
        out,
        r#"<svg class="flow-diagram" xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="diagram-title" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}"><title id="diagram-title">{title}</title>"#,
        w = l.width,
        h = l.height,
        title = esc(&title)
    );
    out.push_str(
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrow-head"/></marker></defs>"#,
    );
    // Transitions between the same two states: one path, the labels joined.
    let mut drawn: Vec<(usize, Node, Vec<String>, usize)> = Vec::new(); // (from, to, labels, route)
    for (ri, r) in l.routes.iter().enumerate() {
        let e = &l.edges[r.edge];
        let words = match e.kind {
            EdgeKind::Transfer => format!("{} → {}", edge_words(t, &e.label), t.say("職員", "staff")),
            _ => edge_words(t, &e.label),
        };
        match drawn.iter_mut().find(|d| d.0 == e.from && d.1 == e.to) {
            Some(d) => d.2.push(words),
            None => drawn.push((e.from, e.to, vec![words], ri)),
        }
    }
    let mut labels: Vec<Label> = Vec::new();
    for (_, _, words, ri) in &drawn {
        let r = &l.routes[*ri];
        let e = &l.edges[r.edge];
        let class = match e.kind {
            EdgeKind::Next => "next",
            EdgeKind::Key => "key",
            EdgeKind::Rule => "rule",
            EdgeKind::GiveUp => "give-up",
            EdgeKind::Transfer => "transfer",
        };
        let mut d = String::new();
        for (i, (x, y)) in r.points.iter().enumerate() {
            let _ = write!(d, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
        }
        let back = if r.back { " back" } else { "" };
        let _ = write!(out, r#"<path class="edge {class}{back}" d="{}" marker-end="url(#arrow)"/>"#, d.trim_end());
        let text: Vec<&String> = words.iter().filter(|s| !s.is_empty()).collect();
        // The "next" of a say state goes without a label: the arrow says it.
        if e.kind != EdgeKind::Next || !e.label.is_empty() {
            let text = text.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" / ");
            let w = graph::text_width(&text, 12.0) + 8.0;
            let looped = e.to == Node::State(e.from);
            let x = if looped { r.label_at.0 + w / 2.0 } else { r.label_at.0 };
            labels.push(Label { x, y: r.label_at.1, w, text, class });
        }
    }
    // A label that would cover one placed before it (left to right) moves right of it, with a
    // gap a little wider than the test for covering, so rounding cannot find it covering again.
    labels.sort_by(|a, b| a.x.total_cmp(&b.x));
    let mut placed: Vec<Label> = Vec::with_capacity(labels.len());
    for mut l in labels {
        while let Some(p) =
            placed.iter().find(|p| (p.y - l.y).abs() < 18.0 && (p.x - l.x).abs() < (p.w + l.w) / 2.0 + 3.5)
        {
            l.x = p.x + (p.w + l.w) / 2.0 + 4.0;
        }
        placed.push(l);
    }
    for l in &placed {
        let _ = write!(
            out,
            r#"<g class="edge-label {}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="18" rx="3"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"#,
            l.class,
            l.x - l.w / 2.0,
            l.y - 9.0,
            l.w,
            l.x,
            l.y + 4.0,
            esc(&l.text)
        );
    }
    for b in &l.boxes {
        let (name, kind, class, state) = match b.node {
            Node::State(i) => {
                let s = &flow.states[i];
                (s.name.clone(), kind_words(t, &s.kind).to_string(), s.kind.name(), s.name.clone())
            }
            Node::Transfer => {
                let (a, b) = box_lines(t, flow, Node::Transfer);
                (a, b, "transfer", String::new())
            }
        };
        let start = matches!(b.node, Node::State(i) if i == flow.start);
        let _ = write!(
            out,
            r#"<g class="state kind-{class}{}" data-state="{}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6"/><text x="{:.1}" y="{:.1}" text-anchor="middle" class="name">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" class="kind">{}</text></g>"#,
            if start { " start" } else { "" },
            esc(&state),
            b.x,
            b.y,
            b.w,
            b.h,
            b.center_x(),
            b.y + 20.0,
            esc(&name),
            b.center_x(),
            b.y + 37.0,
            esc(&kind),
        );
    }
    out.push_str("</svg>");
    out
}
