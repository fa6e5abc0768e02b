//! The README's command table and the binary's `--help` name the same commands: a command added,
//! renamed or removed in one and not the other fails here, naming it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The subcommands listed under `Commands:` in `ivr ARGS… --help`, without `help`.
fn subcommands(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr")).args(args).arg("--help").output().expect("ivr runs");
    assert!(out.status.success(), "ivr {} --help failed", args.join(" "));
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command of the binary: `serve`, …, and for a command with subcommands each of them
/// (`numbers issue`, `numbers verify`, …).
fn commands_of_the_binary() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for top in subcommands(&[]) {
        let under = subcommands(&[&top]);
        if under.is_empty() {
            all.insert(top);
        } else {
            all.extend(under.into_iter().map(|sub| format!("{top} {sub}")));
        }
    }
    all
}

/// Every command the README's `## Commands` table names in its first column (`` `ivr X …` ``),
/// as `X`, or `X Y` where `X` has subcommands.
fn commands_of_the_readme(groups: &BTreeSet<String>) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
    let mut all = BTreeSet::new();
    let table = readme.lines().skip_while(|l| l.trim() != "## Commands").skip(1).take_while(|l| !l.starts_with("## "));
    for row in table.filter(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for span in first.split('`').skip(1).step_by(2) {
            let mut words = span.split_whitespace();
            if words.next() != Some("ivr") {
                continue;
            }
            let Some(top) = words.next() else { continue };
            match words.next() {
                Some(sub) if groups.contains(top) => all.insert(format!("{top} {sub}")),
                _ => all.insert(top.to_string()),
            };
        }
    }
    all
}

#[test]
fn the_readme_lists_every_command_of_ivr_help_and_no_other() {
    let binary = commands_of_the_binary();
    let groups: BTreeSet<String> =
        binary.iter().filter_map(|c| c.split_once(' ').map(|(top, _)| top.to_string())).collect();
    let readme = commands_of_the_readme(&groups);
    let missing: Vec<_> = binary.difference(&readme).collect();
    let extra: Vec<_> = readme.difference(&binary).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README.md's command table and `ivr --help` differ:\n  in ivr --help, not in the README: {missing:?}\n  in the README, not in ivr --help: {extra:?}"
    );
    assert!(binary.contains("serve") && binary.contains("numbers issue"), "the help was read: {binary:?}");
}
