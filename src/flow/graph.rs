//! A flow as a Mermaid diagram (`ivr graph FLOW`), for docs and review.

use std::fmt::Write;

use super::{Flow, Kind};

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
