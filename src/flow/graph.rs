//! A flow as a Mermaid diagram (`ivr graph FLOW`), for docs and review.

use std::fmt::Write;

use super::{Flow, Kind};

/// Mermaid `flowchart TD` text: one node per state (shape by kind), one edge per transition.
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
    for (i, s) in flow.states.iter().enumerate() {
        for (label, t) in s.kind.edges() {
            let label = label.replace('"', "'");
            if label.is_empty() {
                let _ = writeln!(out, "    {} --> {}", id(i), id(t.idx));
            } else if label == "give up" {
                let _ = writeln!(out, "    {} -.->|\"{label}\"| {}", id(i), id(t.idx));
            } else {
                let _ = writeln!(out, "    {} -->|\"{label}\"| {}", id(i), id(t.idx));
            }
        }
    }
    out
}
