//! A flow as a graph: its transitions ([`edges`]), drawn as a Mermaid diagram
//! (`ivr graph FLOW`, for docs and review) or laid out in layers ([`layout`]) for the staff
//! pages' diagram.
//!
//! The layout is the classic layered one (Sugiyama): edges that lead back (a question asked
//! again) are turned round, states get the layer of their longest path from the start, edges
//! that span several layers pass through placeholder points, a few sweeps order each layer to
//! cross fewer edges, and each state is then moved towards its neighbours without overlapping.
//! It is pure arithmetic: no drawing, no text measured but by counting characters.

use std::fmt::Write;

use super::{Flow, Kind};

/// What a transition is, for how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    /// Goes on when the state is done (say, an answer, an action's outcome).
    Next,
    /// A key of a menu or a confirmation.
    Key,
    /// A branch's rule or its `otherwise`.
    Rule,
    /// The question's give-up path (silence or wrong keys, every try used).
    GiveUp,
    /// The flow's transfer key: the caller asks for a person at a question.
    Transfer,
}

/// One transition: from a state to a state (or to [`Node::Transfer`]), with its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: Node,
    pub label: String,
    pub kind: EdgeKind,
}

/// Where a transition leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    State(usize),
    /// The health centre, through the flow's `[transfer]` key.
    Transfer,
}

/// Every transition of the flow, state by state in file order (the walk `ivr graph` draws),
/// then the transfer key's from each question when the flow has one.
pub fn edges(flow: &Flow) -> Vec<Edge> {
    let mut out = Vec::new();
    for (i, s) in flow.states.iter().enumerate() {
        for (label, t) in s.kind.edges() {
            let kind = match (&s.kind, label.as_str()) {
                (_, "give up") => EdgeKind::GiveUp,
                (Kind::Menu { .. } | Kind::Confirm { .. }, _) => EdgeKind::Key,
                (Kind::Branch { .. }, _) => EdgeKind::Rule,
                _ => EdgeKind::Next,
            };
            out.push(Edge { from: i, to: Node::State(t.idx), label, kind });
        }
    }
    if let Some(transfer) = &flow.transfer {
        for (i, s) in flow.states.iter().enumerate() {
            if s.kind.question().is_some() {
                let label = format!("key {}", transfer.key.value);
                out.push(Edge { from: i, to: Node::Transfer, label, kind: EdgeKind::Transfer });
            }
        }
    }
    out
}

/// Mermaid `flowchart TD` text: one node per state (shape by kind), one edge per transition,
/// and the flow's `[transfer]` when it has one: a node for the key, reached (dotted, labelled
/// with the key) from every question, and where it leads: the end of the call once the caller
/// spoke with the centre, or, closed or unanswered, an alert and the same question again.
pub fn mermaid(flow: &Flow) -> String {
    let mut out = String::from("flowchart TD\n");
    let id = |i: usize| format!("s{i}");
    for (i, s) in flow.states.iter().enumerate() {
        let label = format!("{}<br/><i>{}</i>", s.name, s.kind.name());
        let node = match s.kind {
            Kind::Branch { .. } => format!("{{\"{label}\"}}"),
            Kind::Action { .. } => format!("[[\"{label}\"]]"),
            Kind::Hangup { .. } => format!("([\"{label}\"])"),
            Kind::Menu { .. } | Kind::Number(_) | Kind::Confirm { .. } => {
                format!("[/\"{label}\"/]")
            }
            Kind::Say { .. } => format!("[\"{label}\"]"),
        };
        let _ = writeln!(out, "    {}{node}", id(i));
    }
    let _ = writeln!(out, "    start((start)) --> {}", id(flow.start));
    for e in edges(flow) {
        // The transfer key's edges are drawn with its node, below.
        let Node::State(to) = e.to else { continue };
        let label = e.label.replace('"', "'");
        if label.is_empty() {
            let _ = writeln!(out, "    {} --> {}", id(e.from), id(to));
        } else if e.kind == EdgeKind::GiveUp {
            let _ = writeln!(out, "    {} -.->|\"{label}\"| {}", id(e.from), id(to));
        } else {
            let _ = writeln!(out, "    {} -->|\"{label}\"| {}", id(e.from), id(to));
        }
    }
    if let Some(t) = &flow.transfer {
        let key = t.key.value;
        let _ = writeln!(
            out,
            "    transfer{{{{\"transfer<br/><i>key {key} at any question: the centre's phone rings {} s</i>\"}}}}",
            t.timeout
        );
        let _ = writeln!(out, "    transfer_done([\"spoke with the centre<br/><i>hangup</i>\"])");
        let _ = writeln!(
            out,
            "    transfer_back[\"the hours and the emergency number, alert asked_for_person<br/><i>then the same question again</i>\"]"
        );
        for (i, s) in flow.states.iter().enumerate() {
            if s.kind.question().is_some() {
                let _ = writeln!(out, "    {} -.->|\"key {key}\"| transfer", id(i));
            }
        }
        let _ = writeln!(out, "    transfer -->|\"answered\"| transfer_done");
        let _ = writeln!(out, "    transfer -->|\"closed or no answer\"| transfer_back");
    }
    out
}

/// Sizes of the layout, in the diagram's units (CSS pixels at a 14 px font).
pub mod size {
    /// A box's height (two lines: the state's name and its kind).
    pub const BOX_HEIGHT: f64 = 46.0;
    /// Space between two layers (room for an edge's label).
    pub const LAYER_GAP: f64 = 64.0;
    /// Space between two boxes of a layer.
    pub const BOX_GAP: f64 = 28.0;
    /// Around the whole diagram.
    pub const MARGIN: f64 = 16.0;
    /// Width given to a placeholder point of a long edge.
    pub const POINT_WIDTH: f64 = 14.0;
    /// Room right of a question's box for its transfer arrow and label.
    pub const STUB: f64 = 100.0;
}

/// A box in the layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub node: Node,
    /// Its top left corner, width and height.
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub layer: usize,
}

impl Placed {
    pub fn center_x(&self) -> f64 {
        self.x + self.w / 2.0
    }
}

/// An edge as drawn: the points it passes through, from its source to its target, and where
/// its label goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The edge's index in [`edges`].
    pub edge: usize,
    pub points: Vec<(f64, f64)>,
    /// The middle of its label; for a loop on one state, the label's left end.
    pub label_at: (f64, f64),
    /// The edge leads back up (to an earlier layer, or to its own state).
    pub back: bool,
}

/// A flow laid out in layers, the start at the top. The transfer key, which leaves every
/// question for the same place, is a short arrow to the right of each question's box rather
/// than an edge across the whole diagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    /// The states in file order.
    pub boxes: Vec<Placed>,
    pub routes: Vec<Route>,
    pub edges: Vec<Edge>,
}

/// How wide a text is at the diagram's font: 1 for a wide (CJK) character, 0.6 for others.
pub fn text_width(text: &str, font_px: f64) -> f64 {
    text.chars().map(|c| if (c as u32) >= 0x1100 { font_px } else { font_px * 0.6 }).sum()
}

/// Lays the flow out. `label` gives each box's two lines (for their width): the state's name
/// and kind.
pub fn layout(flow: &Flow, label: impl Fn(Node) -> (String, String)) -> Layout {
    let edges = edges(flow);
    let n = flow.states.len();
    let stubbed: Vec<bool> = (0..n).map(|i| edges.iter().any(|e| e.from == i && e.to == Node::Transfer)).collect();
    // Transfer edges are drawn as stubs: `n` stands for their end, outside every layer.
    let index = |node: Node| match node {
        Node::State(i) => i,
        Node::Transfer => n,
    };
    let node_of = Node::State;

    // 1. Edges leading back (found by a depth-first walk from the start, then from every state
    //    not reached) are turned round; self-loops are left out of the layering.
    let mut adjacency: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for (k, e) in edges.iter().enumerate() {
        if e.to != Node::Transfer {
            adjacency[e.from].push((index(e.to), k));
        }
    }
    let mut state = vec![0u8; n]; // 0 new, 1 on the walk's path, 2 done
    let mut back = vec![false; edges.len()];
    let mut order = Vec::with_capacity(n);
    let roots = std::iter::once(flow.start).chain(0..n);
    for root in roots {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        order.push(root);
        while let Some(top) = stack.last_mut() {
            let v = top.0;
            if let Some(&(w, k)) = adjacency[v].get(top.1) {
                top.1 += 1;
                match state[w] {
                    0 => {
                        state[w] = 1;
                        order.push(w);
                        stack.push((w, 0));
                    }
                    1 => back[k] = true,
                    _ => {}
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
    // Edges of the layering, all pointing down: (upper, lower, edge).
    let down: Vec<(usize, usize, usize)> = edges
        .iter()
        .enumerate()
        .filter(|(_, e)| e.to != Node::Transfer && e.from != index(e.to))
        .map(|(k, e)| if back[k] { (index(e.to), e.from, k) } else { (e.from, index(e.to), k) })
        .collect();

    // 2. Longest path from the roots: each state one layer below the lowest of its parents.
    let mut layer = vec![0usize; n];
    let mut indegree = vec![0usize; n];
    for &(_, b, _) in &down {
        indegree[b] += 1;
    }
    let mut ready: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    ready.sort_by_key(|v| std::cmp::Reverse(order.iter().position(|o| o == v)));
    while let Some(v) = ready.pop() {
        for &(a, b, _) in &down {
            if a == v {
                layer[b] = layer[b].max(layer[v] + 1);
                indegree[b] -= 1;
                if indegree[b] == 0 {
                    ready.push(b);
                }
            }
        }
    }
    // The transfer's box sits below every question that leads to it, out of the way.
    let layers = layer.iter().copied().max().unwrap_or(0) + 1;

    // 3. Placeholder points on edges spanning several layers: vertex ids from `n` on.
    let mut vlayer = layer.clone();
    let mut chains: Vec<(usize, Vec<usize>)> = Vec::new(); // (edge, vertices from upper to lower)
    let mut links: Vec<(usize, usize)> = Vec::new();
    for &(a, b, k) in &down {
        let mut chain = vec![a];
        for l in layer[a] + 1..layer[b] {
            vlayer.push(l);
            chain.push(vlayer.len() - 1);
        }
        chain.push(b);
        for w in chain.windows(2) {
            links.push((w[0], w[1]));
        }
        chains.push((k, chain));
    }
    let total = vlayer.len();

    // 4. Order within layers: first met first, then barycentre sweeps down and up.
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    let mut seen = vec![false; total];
    for &v in &order {
        rows[vlayer[v]].push(v);
        seen[v] = true;
    }
    for v in 0..total {
        if !seen[v] {
            rows[vlayer[v]].push(v);
        }
    }
    let mut pos = vec![0.0f64; total];
    let set_pos = |rows: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for row in rows {
            for (i, &v) in row.iter().enumerate() {
                pos[v] = i as f64;
            }
        }
    };
    set_pos(&rows, &mut pos);
    for sweep in 0..8 {
        let downward = sweep % 2 == 0;
        let range: Vec<usize> =
            if downward { (1..layers).collect() } else { (0..layers.saturating_sub(1)).rev().collect() };
        for l in range {
            let mut keyed: Vec<(f64, usize)> = rows[l]
                .iter()
                .map(|&v| {
                    let near: Vec<f64> = links
                        .iter()
                        .filter_map(|&(a, b)| match downward {
                            true if b == v => Some(pos[a]),
                            false if a == v => Some(pos[b]),
                            _ => None,
                        })
                        .collect();
                    let key = if near.is_empty() { pos[v] } else { near.iter().sum::<f64>() / near.len() as f64 };
                    (key, v)
                })
                .collect();
            keyed.sort_by(|x, y| x.0.total_cmp(&y.0));
            rows[l] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in rows[l].iter().enumerate() {
                pos[v] = i as f64;
            }
        }
    }

    // 5. Coordinates: widths from the labels; each layer packed, then each vertex pulled
    //    towards the mean of its neighbours without overlapping, a few times over.
    let box_width: Vec<f64> = (0..n)
        .map(|v| {
            let (a, b) = label(node_of(v));
            text_width(&a, 14.0).max(text_width(&b, 12.0)) + 24.0
        })
        .collect();
    // The room each vertex takes in its layer: its box and its transfer stub, or a point.
    let width: Vec<f64> = (0..total)
        .map(|v| if v < n { box_width[v] + if stubbed[v] { size::STUB } else { 0.0 } } else { size::POINT_WIDTH })
        .collect();
    let mut x = vec![0.0f64; total]; // centres
    for row in &rows {
        let mut at = 0.0;
        for &v in row {
            x[v] = at + width[v] / 2.0;
            at += width[v] + size::BOX_GAP;
        }
    }
    for round in 0..12 {
        let downward = round % 2 == 0;
        for l in 0..layers {
            let l = if downward { l } else { layers - 1 - l };
            let wanted: Vec<f64> = rows[l]
                .iter()
                .map(|&v| {
                    let near: Vec<f64> = links
                        .iter()
                        .filter_map(|&(a, b)| {
                            if b == v {
                                Some(x[a])
                            } else if a == v {
                                Some(x[b])
                            } else {
                                None
                            }
                        })
                        .collect();
                    if near.is_empty() { x[v] } else { near.iter().sum::<f64>() / near.len() as f64 }
                })
                .collect();
            // Left to right, each as near its wish as the one before allows; then right to
            // left the same, and the mean of both.
            let row = &rows[l];
            let mut left = vec![0.0; row.len()];
            for (i, &v) in row.iter().enumerate() {
                let min =
                    if i == 0 { f64::MIN } else { left[i - 1] + (width[row[i - 1]] + width[v]) / 2.0 + size::BOX_GAP };
                left[i] = wanted[i].max(min);
            }
            let mut right = vec![0.0; row.len()];
            for i in (0..row.len()).rev() {
                let v = row[i];
                let max = if i + 1 == row.len() {
                    f64::MAX
                } else {
                    right[i + 1] - (width[row[i + 1]] + width[v]) / 2.0 - size::BOX_GAP
                };
                right[i] = wanted[i].min(max);
            }
            let mut placed = vec![0.0; row.len()];
            for i in 0..row.len() {
                placed[i] = (left[i] + right[i]) / 2.0;
                if i > 0 {
                    let min = placed[i - 1] + (width[row[i - 1]] + width[row[i]]) / 2.0 + size::BOX_GAP;
                    placed[i] = placed[i].max(min);
                }
            }
            for (i, &v) in row.iter().enumerate() {
                x[v] = placed[i];
            }
        }
    }
    let min_x = (0..total).map(|v| x[v] - width[v] / 2.0).fold(f64::MAX, f64::min);
    let shift = size::MARGIN - if min_x.is_finite() { min_x } else { 0.0 };
    for v in x.iter_mut() {
        *v += shift;
    }
    let top = |l: usize| size::MARGIN + l as f64 * (size::BOX_HEIGHT + size::LAYER_GAP);
    let boxes: Vec<Placed> = (0..n)
        .map(|v| Placed {
            node: node_of(v),
            x: x[v] - width[v] / 2.0,
            y: top(vlayer[v]),
            w: box_width[v],
            h: size::BOX_HEIGHT,
            layer: vlayer[v],
        })
        .collect();
    // Where edges meet a vertex: the middle of its box, or the point.
    let mid = |v: usize| if v < n { boxes[v].center_x() } else { x[v] };

    // 6. Routes: from the source's bottom to the target's top through the placeholders; an
    //    edge turned round is drawn from its real source back up; a self-loop beside its box.
    let mut routes = Vec::new();
    for (k, chain) in chains {
        let mut points: Vec<(f64, f64)> = Vec::new();
        for (i, &v) in chain.iter().enumerate() {
            let (cx, y) = (mid(v), top(vlayer[v]));
            if v < n {
                let y = if i == 0 { y + size::BOX_HEIGHT } else { y };
                points.push((cx, y));
            } else {
                // A placeholder: the edge passes down through its layer.
                points.push((cx, y));
                points.push((cx, y + size::BOX_HEIGHT));
            }
        }
        if back[k] {
            points.reverse();
        }
        let (a, b) = (points[0], points[1]);
        let label_at = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
        routes.push(Route { edge: k, points, label_at, back: back[k] });
    }
    for (k, e) in edges.iter().enumerate() {
        if e.to == Node::Transfer {
            let b = &boxes[e.from];
            let (r, y) = (b.x + b.w, b.y + b.h / 2.0);
            let points = vec![(r, y), (r + size::STUB - 12.0, y)];
            routes.push(Route { edge: k, points, label_at: (r + (size::STUB - 12.0) / 2.0, y - 11.0), back: false });
        } else if e.from == index(e.to) {
            // A loop over the box's top right corner, clear of the transfer's stub.
            let b = &boxes[e.from];
            let (r, top) = (b.x + b.w, b.y);
            let points = vec![
                (r - 12.0, top),
                (r - 12.0, top - 16.0),
                (r + 16.0, top - 16.0),
                (r + 16.0, top + 10.0),
                (r, top + 10.0),
            ];
            // Its label starts right of the loop (`label_at` is the label's left end here).
            routes.push(Route { edge: k, points, label_at: (r + 20.0, top - 10.0), back: true });
        }
    }
    routes.sort_by_key(|r| r.edge);
    let right = (0..total).map(|v| x[v] + width[v] / 2.0).fold(0.0, f64::max) + 80.0 + size::MARGIN;
    let height = top(layers.saturating_sub(1)) + size::BOX_HEIGHT + size::MARGIN;
    Layout { width: right, height, boxes, routes, edges }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Library;

    fn shipped() -> std::sync::Arc<Flow> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (lib, _) = Library::load_dirs(&root.join("call-flows"), &root.join("prompts")).unwrap();
        lib.flow("daily-health-check").unwrap().clone()
    }

    fn names(flow: &Flow) -> impl Fn(Node) -> (String, String) + '_ {
        |node| match node {
            Node::State(i) => (flow.states[i].name.clone(), flow.states[i].kind.name().to_string()),
            Node::Transfer => ("transfer".into(), String::new()),
        }
    }

    #[test]
    fn every_state_gets_one_box_and_every_transition_one_route() {
        let flow = shipped();
        let l = layout(&flow, names(&flow));
        assert_eq!(l.boxes.len(), flow.states.len(), "a box per state");
        assert_eq!(l.routes.len(), l.edges.len());
        assert!(l.edges.iter().any(|e| e.kind == EdgeKind::GiveUp));
        assert!(l.edges.iter().any(|e| e.kind == EdgeKind::Transfer));
    }

    #[test]
    fn the_start_is_on_top_and_each_forward_transition_leads_down() {
        let flow = shipped();
        let l = layout(&flow, names(&flow));
        assert_eq!(l.boxes[flow.start].layer, 0);
        for r in l.routes.iter().filter(|r| !r.back) {
            let e = &l.edges[r.edge];
            let Node::State(to) = e.to else { continue };
            assert!(l.boxes[to].layer > l.boxes[e.from].layer, "{} → {:?}", flow.states[e.from].name, e.to);
        }
    }

    #[test]
    fn no_two_boxes_overlap_and_all_fit_in_the_drawing() {
        let flow = shipped();
        let l = layout(&flow, names(&flow));
        for (i, a) in l.boxes.iter().enumerate() {
            assert!(a.x >= 0.0 && a.x + a.w <= l.width && a.y + a.h <= l.height);
            for b in &l.boxes[i + 1..] {
                let apart = a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn wide_characters_count_twice_as_wide_as_narrow_ones_roughly() {
        assert_eq!(text_width("ab", 10.0), 12.0);
        assert_eq!(text_width("転送", 10.0), 20.0);
    }
}
