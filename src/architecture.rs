//! The layers of `docs/architecture.md`, held against the code: every `crate::…` path under
//! `src/` (and `ivr::…` in `src/main.rs`) is an arrow from the top-level module of its file to
//! the top-level module it names. The rules are read from the document's tables, so the
//! document and this test cannot say different things.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rules of `docs/architecture.md`.
#[derive(Debug, Default)]
struct Rules {
    /// Layers, top first, each with its modules.
    layers: Vec<(String, Vec<String>)>,
    /// `(from, to)` arrows forbidden whatever the layers say.
    never: BTreeSet<(String, String)>,
    /// `(from, to)` arrows allowed against the layers.
    allowed: BTreeSet<(String, String)>,
}

impl Rules {
    /// Reads the tables whose headers are `layer | modules`, `module | never imports` and
    /// `arrow | why`. Names are those in backticks.
    fn parse(doc: &str) -> Rules {
        let mut rules = Rules::default();
        let mut table = "";
        for line in doc.lines() {
            let Some(row) = line.trim().strip_prefix('|') else {
                table = "";
                continue;
            };
            let cells: Vec<&str> = row.trim_end_matches('|').split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["layer", "modules"] => table = "layers",
                ["module", "never imports"] => table = "never",
                ["arrow", "why"] => table = "allowed",
                [first, ..] if first.starts_with("---") => {}
                [first, second, ..] => match table {
                    "layers" => rules.layers.push((first.to_string(), names(second))),
                    "never" => {
                        for from in names(first) {
                            rules.never.extend(names(second).into_iter().map(|to| (from.clone(), to)));
                        }
                    }
                    "allowed" => {
                        if let [from, to] = names(first).as_slice() {
                            rules.allowed.insert((from.clone(), to.clone()));
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        rules
    }

    /// The index of a module's layer, 0 at the top.
    fn rank(&self, module: &str) -> Option<usize> {
        self.layers.iter().position(|(_, ms)| ms.iter().any(|m| m == module))
    }

    fn modules(&self) -> BTreeSet<String> {
        self.layers.iter().flat_map(|(_, ms)| ms.iter().cloned()).collect()
    }

    /// Why an arrow is forbidden, or `None` if it is allowed.
    fn forbids(&self, from: &str, to: &str) -> Option<String> {
        let arrow = (from.to_string(), to.to_string());
        if self.never.contains(&arrow) {
            return Some(format!("`{from}` never imports `{to}`"));
        }
        match (self.rank(from), self.rank(to)) {
            (Some(f), Some(t)) if t < f && !self.allowed.contains(&arrow) => {
                Some(format!("`{to}` ({}) is a layer above `{from}` ({})", self.layers[t].0, self.layers[f].0))
            }
            _ => None,
        }
    }
}

/// The names in backticks in a table cell.
fn names(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Rust source without its comments, and with the contents of string and character literals
/// blanked; line breaks are kept so positions keep their line numbers.
fn code_only(src: &str) -> String {
    let s: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && (i == 0 || !is_ident(s[i - 1]) || s[i - 1] == 'b') {
            // A raw string: r"…", r#"…"#, br#"…"#.
            let hashes = s[i + 1..].iter().take_while(|&&h| h == '#').count();
            if s.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += hashes + 2;
            out.push('"');
            while i < s.len()
                && !(s[i] == '"' && s[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes)
            {
                out.push(blank(s[i]));
                i += 1;
            }
            out.push('"');
            i += 1 + hashes;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < s.len() {
                    out.push(blank(s[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || s.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\u{..}'); otherwise a lifetime.
            let from = if next == Some('\\') { i + 3 } else { i + 2 };
            let end = s.get(from..).and_then(|r| r.iter().position(|&q| q == '\'')).map_or(s.len(), |p| from + p);
            out.push_str("' '");
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The top-level names that `root::…` paths in `code` reach, each with its line: the first
/// segment of `root::a::b`, and of each item of a group `root::{a, b::{c, d}}`.
fn paths(code: &str, root: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let needle = format!("{root}::");
    let mut from = 0;
    while let Some(p) = code[from..].find(&needle) {
        let at = from + p;
        from = at + needle.len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // The items at the group's top level, up to its closing brace.
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push((first_segment(&item), line));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.push((first_segment(&item), line));
        } else {
            found.push((first_segment(rest), line));
        }
    }
    found.retain(|(name, _)| !name.is_empty() && name != "self");
    found
}

fn first_segment(s: &str) -> String {
    s.trim_start().chars().take_while(|&c| is_ident(c)).collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("src/ is readable").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// An arrow between top-level modules, with where the code makes it (`file:line`).
type Arrows = BTreeMap<(String, String), Vec<String>>;

/// The arrows between top-level modules made by the code under `src`, and the modules found.
fn arrows(src: &Path) -> (Arrows, BTreeSet<String>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let module_of = |f: &Path| -> String {
        let first = f.strip_prefix(src).expect("under src").components().next().expect("a file");
        first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> =
        files.iter().map(|f| module_of(f)).filter(|m| m != "lib" && m != "architecture").collect();
    let mut arrows = Arrows::new();
    for file in &files {
        let from = module_of(file);
        let root = if from == "main" { "ivr" } else { "crate" };
        let code = code_only(&std::fs::read_to_string(file).expect("a source file is readable"));
        let shown = file.strip_prefix(src.parent().expect("src has a parent")).unwrap_or(file).display().to_string();
        for (to, line) in paths(&code, root) {
            if to != from && modules.contains(&to) {
                arrows.entry((from.clone(), to)).or_default().push(format!("{shown}:{line}"));
            }
        }
    }
    (arrows, modules)
}

/// The circles between modules: each strongly connected group of more than one module.
fn circles(arrows: &Arrows) -> Vec<BTreeSet<String>> {
    let reach = |start: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.to_string()];
        while let Some(m) = todo.pop() {
            for (from, to) in arrows.keys() {
                if *from == m && seen.insert(to.clone()) {
                    todo.push(to.clone());
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&String> = arrows.keys().map(|(f, _)| f).collect();
    let reached: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut groups = BTreeSet::new();
    for (n, r) in &reached {
        let group: BTreeSet<String> = r
            .iter()
            .filter(|m| reached.get(m).is_some_and(|back| back.contains(*n)))
            .cloned()
            .chain([n.to_string()])
            .collect();
        if group.len() > 1 {
            groups.insert(group);
        }
    }
    groups.into_iter().collect()
}

#[test]
fn the_code_keeps_the_layers_of_docs_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let rules = Rules::parse(&doc);
    let (arrows, modules) = arrows(&root.join("src"));
    let mut problems = Vec::new();

    let listed = rules.modules();
    for m in modules.difference(&listed) {
        problems.push(format!("module `{m}` is in no layer of docs/architecture.md"));
    }
    for m in listed.difference(&modules) {
        problems.push(format!("docs/architecture.md names `{m}`, which is not a module under src/"));
    }
    for ((from, to), at) in &arrows {
        if let Some(why) = rules.forbids(from, to) {
            problems.push(format!("{from} → {to}: {why}; in {}", at.join(", ")));
        }
    }
    for group in circles(&arrows) {
        let inside: Vec<String> = arrows
            .iter()
            .filter(|((f, t), _)| group.contains(f) && group.contains(t))
            .map(|((f, t), at)| format!("{f} → {t} in {}", at.join(", ")))
            .collect();
        problems.push(format!("circle between {group:?}: {}", inside.join("; ")));
    }
    assert!(problems.is_empty(), "the code breaks docs/architecture.md:\n{}", problems.join("\n"));
}

#[test]
fn the_crate_doc_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let doc: String = lib.lines().filter(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
    let missing: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ").or_else(|| l.strip_prefix("mod ")))
        .filter_map(|l| l.strip_suffix(';'))
        .filter(|m| *m != "architecture" && !doc.contains(&format!("[`{m}`]")))
        .collect();
    assert!(missing.is_empty(), "src/lib.rs's layout list does not name {missing:?}");
}

#[test]
fn paths_are_read_from_code_not_from_comments_or_strings() {
    let src = r##"
use crate::flow::{self, Value};
use crate::{store::{Store, StoreError}, telemetry};
// use crate::http;
/* crate::calls::x /* nested crate::server */ */
let s = "crate::config"; let r = r#"crate::demo"#; let c = '"'; let q = '\''; let l: &'static str = "";
let x = crate::issuer::Issuer::new(); fn f<'a>(v: &'a crate::twiml::Verb) {}
macro_rules! m { () => { $crate::cli::x } }
"##;
    let got: Vec<(String, usize)> = paths(&code_only(src), "crate");
    let got: Vec<(&str, usize)> = got.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    assert_eq!(got, [("flow", 2), ("store", 3), ("telemetry", 3), ("issuer", 7), ("twiml", 7)]);
}

#[test]
fn the_rules_forbid_upward_and_named_arrows_only() {
    let rules = Rules::parse(
        "| layer | modules |\n| --- | --- |\n| top | `a` |\n| mid | `b`, `c` |\n| low | `d` |\n\n\
         | module | never imports |\n| --- | --- |\n| `b` | `c`, `d` |\n\n\
         | arrow | why |\n| --- | --- |\n| `d` → `b` | on purpose |\n",
    );
    assert_eq!(rules.forbids("a", "b"), None);
    assert!(rules.forbids("b", "a").is_some());
    assert!(rules.forbids("b", "c").is_some());
    assert_eq!(rules.forbids("c", "b"), None);
    assert!(rules.forbids("b", "d").is_some());
    assert_eq!(rules.forbids("d", "b"), None);
    assert!(rules.forbids("d", "c").is_some());
}

#[test]
fn a_circle_is_found_with_its_modules() {
    let mut arrows = Arrows::new();
    for (f, t) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        arrows.insert((f.into(), t.into()), vec![]);
    }
    let expected: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(circles(&arrows), vec![expected]);
}
