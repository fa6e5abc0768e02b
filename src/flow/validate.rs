//! Checks a parsed flow against its prompt catalogues and as a graph: every prompt exists in
//! every language, every placeholder and branch reads a variable that exists, a hang-up can be
//! reached from every state, and no loop runs without asking the caller something.

use std::collections::{BTreeSet, HashSet};

use super::source::{Diagnostics, closest};
use super::{Action, BUILTIN_VARS, Flow, Kind, NUMBER_READ, PromptRef, Value};

/// Runs every check; errors and warnings go to `diags`.
pub fn check(flow: &Flow, diags: &mut Diagnostics) {
    check_prompts(flow, diags);
    check_web(flow, diags);
    check_vars(flow, diags);
    check_graph(flow, diags);
    check_number_delivery(flow, diags);
}

/// Every prompt the flow names, with where it names it.
pub fn prompt_refs(flow: &Flow) -> Vec<&PromptRef> {
    let mut out = Vec::new();
    for s in &flow.states {
        match &s.kind {
            Kind::Say { prompt, .. } | Kind::Hangup { prompt } => out.extend(prompt),
            Kind::Action { action: Action::SendSms { message, .. }, .. } => out.push(message),
            Kind::Number(n) => out.extend(&n.mismatch),
            _ => {}
        }
        if let Some(q) = s.kind.question() {
            out.extend(q.prompt.iter().chain(&q.no_input).chain(&q.no_match));
        }
    }
    if let Some(t) = &flow.transfer {
        out.extend(t.prompts.all());
    }
    out
}

/// Variables the flow can read: built-ins and those its states set.
pub fn known_vars(flow: &Flow) -> BTreeSet<String> {
    let mut vars: BTreeSet<String> = BUILTIN_VARS.iter().map(|(n, _)| n.to_string()).collect();
    for s in &flow.states {
        match &s.kind {
            Kind::Menu { var: Some(v), .. } => {
                vars.insert(v.clone());
            }
            Kind::Number(n) => {
                vars.insert(n.var.clone());
            }
            Kind::Action { action: Action::RecordAnswer { set, .. }, .. } => {
                vars.extend(set.iter().map(|(k, _)| k.clone()))
            }
            _ => {}
        }
    }
    vars
}

fn check_prompts(flow: &Flow, diags: &mut Diagnostics) {
    let src = &flow.source;
    for (lang, at) in flow.languages.iter().zip(&flow.language_at) {
        if flow.broken_catalogs.contains(lang) {
            diags.error(src, *at, format!("the prompt file for {lang} has errors; fix them first"));
        } else if !flow.catalogs.contains_key(lang) {
            diags.error(src, *at, format!("no prompt file for language {lang}: add prompts/{lang}.toml"));
        }
    }
    let known = known_vars(flow);
    let mut reported = HashSet::new();
    for r in prompt_refs(flow) {
        for (lang, catalog) in &flow.catalogs {
            match catalog.prompts.get(&r.value) {
                None => {
                    let ids = catalog.prompts.keys().map(String::as_str);
                    let hint = closest(&r.value, ids).map_or(String::new(), |s| format!("; did you mean '{s}'?"));
                    diags.error(src, r.at, format!("prompt '{}' is missing in {}{hint}", r.value, catalog.source.name));
                }
                Some(p) => {
                    for (var, at) in p.value.template().into_iter().flat_map(|t| t.vars()) {
                        if !known.contains(var) && reported.insert((lang.clone(), at)) {
                            let hint = closest(var, known.iter().map(String::as_str))
                                .map_or(String::new(), |s| format!("; did you mean '{s}'?"));
                            diags.error(
                                &catalog.source,
                                at,
                                format!("unknown placeholder {{{var}}}: flow '{}' never sets '{var}'{hint}", flow.name),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The `[web]` wording: each entry names a prompt of its file, an option label (`choice.…`) or a
/// unit (`unit.…`), and every language of the flow gives the same entries.
fn check_web(flow: &Flow, diags: &mut Diagnostics) {
    let langs: Vec<&str> =
        flow.languages.iter().map(String::as_str).filter(|l| flow.catalogs.contains_key(*l)).collect();
    for lang in &langs {
        let catalog = &flow.catalogs[*lang];
        let mut ids: Vec<(&String, &crate::flow::source::At<crate::flow::prompts::Prompt>)> =
            catalog.web.iter().collect();
        ids.sort_by_key(|(_, p)| p.at);
        for (id, p) in ids {
            let own = id.starts_with("choice.") || id.starts_with("unit.") || catalog.prompts.contains_key(id);
            if !own {
                let names = catalog.prompts.keys().map(String::as_str);
                let hint = closest(id, names).map_or(String::new(), |s| format!("; did you mean '{s}'?"));
                diags.error(
                    &catalog.source,
                    p.at,
                    format!("web wording '{id}' names no prompt of {}{hint}", catalog.source.name),
                );
            }
            for other in &langs {
                let theirs = &flow.catalogs[*other];
                if other != lang && !theirs.web.contains_key(id) {
                    diags.error(
                        &catalog.source,
                        p.at,
                        format!("web wording '{id}' is missing in {}: give it in every language", theirs.source.name),
                    );
                }
            }
        }
    }
}

fn check_vars(flow: &Flow, diags: &mut Diagnostics) {
    let known = known_vars(flow);
    let unknown = |name: &str, at: usize, diags: &mut Diagnostics| {
        if !known.contains(name) {
            let hint = closest(name, known.iter().map(String::as_str))
                .map_or(String::new(), |s| format!("; did you mean '{s}'?"));
            diags.error(
                &flow.source,
                at,
                format!("unknown variable '{name}': no state sets it and it is not built in{hint}"),
            );
        }
    };
    for s in &flow.states {
        match &s.kind {
            Kind::Branch { rules, .. } => rules.iter().for_each(|r| unknown(&r.var.value, r.var.at, diags)),
            Kind::Number(n) => {
                if let Some(e) = &n.expect {
                    unknown(&e.value, e.at, diags);
                }
            }
            Kind::Action { action: Action::SendSms { to: Some(v), .. }, .. } => unknown(&v.value, v.at, diags),
            Kind::Action { action: Action::RecordAnswer { vars, .. }, .. } => {
                vars.iter().for_each(|v| unknown(&v.value, v.at, diags))
            }
            _ => {}
        }
    }
}

fn check_graph(flow: &Flow, diags: &mut Diagnostics) {
    let n = flow.states.len();
    let edges: Vec<Vec<usize>> =
        flow.states.iter().map(|s| s.kind.edges().iter().map(|(_, t)| t.idx).collect()).collect();

    // Reachable from the start: the rest is a mistake (a transition forgotten or misnamed)
    // unless the state says why it is kept.
    let reach = reachable(&[flow.start], |i| edges[i].clone(), n);
    for (i, s) in flow.states.iter().enumerate() {
        if !reach[i] && !s.keep {
            diags.error(
                &flow.source,
                s.at,
                format!(
                    "state '{}' can never be reached from start; link to it, remove it, or say why it is kept with keep = \"…\"",
                    s.name
                ),
            );
        }
    }

    // Backwards from every hang-up: a state that cannot get there traps the caller.
    let mut back = vec![Vec::new(); n];
    for (i, out) in edges.iter().enumerate() {
        for &j in out {
            back[j].push(i);
        }
    }
    let hangups: Vec<usize> = (0..n).filter(|&i| matches!(flow.states[i].kind, Kind::Hangup { .. })).collect();
    let ends = reachable(&hangups, |i| back[i].clone(), n);
    for (i, s) in flow.states.iter().enumerate() {
        if !ends[i] {
            diags.error(
                &flow.source,
                s.at,
                format!("from state '{}' no hangup can be reached: the call could never end", s.name),
            );
        }
    }

    // A cycle through states that ask nothing would spin without waiting for the caller.
    let silent = |i: usize| flow.states[i].kind.question().is_none();
    for cycle in silent_cycles(&edges, silent) {
        let names: Vec<String> = cycle.iter().map(|&i| format!("'{}'", flow.states[i].name)).collect();
        let first = &flow.states[cycle[0]];
        diags.error(
            &flow.source,
            first.at,
            format!(
                "states {} form a loop that asks nothing: the call would spin forever; put a question in it",
                names.join(", ")
            ),
        );
    }
}

/// A number read aloud counts as delivered only once the call records `number_read_aloud =
/// true` after reading it. Where a flow reads one (the `read_aloud` outcome of
/// `issue_processing_number`, or a branch on `patient.number_to_read`) and no such
/// `record_answer` can follow, the number is never delivered: read again on the next call and
/// alerted. A warning, since the flow still works.
fn check_number_delivery(flow: &Flow, diags: &mut Diagnostics) {
    let n = flow.states.len();
    let edges: Vec<Vec<usize>> =
        flow.states.iter().map(|s| s.kind.edges().iter().map(|(_, t)| t.idx).collect()).collect();
    let records_read = |i: usize| {
        matches!(&flow.states[i].kind, Kind::Action { action: Action::RecordAnswer { set, .. }, .. }
            if set.iter().any(|(k, v)| k == NUMBER_READ && *v == Value::Bool(true)))
    };
    let mut reads: Vec<(usize, usize, &str)> = Vec::new();
    for s in &flow.states {
        match &s.kind {
            Kind::Action { action: Action::IssueProcessingNumber, outcomes } => {
                if let Some((_, t)) = outcomes.iter().find(|(o, _)| o == "read_aloud") {
                    reads.push((s.at, t.idx, "its read_aloud outcome"));
                }
            }
            Kind::Branch { rules, .. } => {
                for r in rules.iter().filter(|r| r.var.value == "patient.number_to_read") {
                    reads.push((r.var.at, r.next.idx, "this rule"));
                }
            }
            _ => {}
        }
    }
    for (at, from, what) in reads {
        let reach = reachable(&[from], |i| edges[i].clone(), n);
        if !(0..n).any(|i| reach[i] && records_read(i)) {
            diags.warning(
                &flow.source,
                at,
                format!(
                    "no record_answer with set = {{ {NUMBER_READ} = true }} follows {what}: a number read aloud is never recorded delivered, so it is read again on the next call and alerted as not delivered"
                ),
            );
        }
    }
}

fn reachable(from: &[usize], next: impl Fn(usize) -> Vec<usize>, n: usize) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut stack: Vec<usize> = from.to_vec();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut seen[i], true) {
            stack.extend(next(i).into_iter().filter(|&j| !seen[j]));
        }
    }
    seen
}

/// One cycle per strongly connected group of silent states (Tarjan's algorithm, iterative
/// enough for flows of a few hundred states).
fn silent_cycles(edges: &[Vec<usize>], silent: impl Fn(usize) -> bool) -> Vec<Vec<usize>> {
    struct Tarjan<'e, F: Fn(usize) -> bool> {
        edges: &'e [Vec<usize>],
        silent: F,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    impl<F: Fn(usize) -> bool> Tarjan<'_, F> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.edges[v] {
                if !(self.silent)(w) {
                    continue;
                }
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                let self_loop = group.len() == 1 && self.edges[v].contains(&v);
                if group.len() > 1 || self_loop {
                    group.sort_unstable();
                    self.out.push(group);
                }
            }
        }
    }
    let n = edges.len();
    let mut t = Tarjan {
        edges,
        silent,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: vec![],
        next: 0,
        out: vec![],
    };
    for v in 0..n {
        if (t.silent)(v) && t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out
}
