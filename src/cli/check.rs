//! `ivr check [PATH…]`: every problem in the operator's files, each at its `file:line:col`.

use std::path::{Path, PathBuf};

use crate::flow::library::{Files, Library};

/// Prints diagnostics to stdout and a summary to stderr; returns the exit code. The settings
/// (`config`, else `ivr.toml` if present, and the environment) are checked too, as `ivr serve`
/// would check them.
/// Without paths, the folders the settings name (`flows.dir`, `flows.prompts_dir`: by default
/// `call-flows/` and `prompts/`) are checked, the ones `ivr serve` would load.
pub fn run(paths: &[PathBuf], config: Option<&Path>) -> i32 {
    let settings = crate::config::Settings::load(config);
    let paths: Vec<PathBuf> = match (paths.is_empty(), &settings) {
        (false, _) => paths.to_vec(),
        (true, Ok(s)) => vec![s.flows.dir.clone(), s.flows.prompts_dir.clone()],
        (true, Err(_)) if Path::new("call-flows").is_dir() => vec!["call-flows".into(), "prompts".into()],
        (true, Err(e)) => {
            println!("error: {e}");
            eprintln!("the settings have an error, so the flows and prompts they name were not checked");
            return 1;
        }
    };
    let mut files = match Files::from_paths(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    // Flows given alone are checked against the prompts beside them.
    if files.prompts.is_empty() && !files.flows.is_empty() {
        let dir = files.flows[0].parent().unwrap_or(Path::new("."));
        let beside =
            [Some(dir.join("prompts")), dir.parent().map(|p| p.join("prompts")), Some(PathBuf::from("prompts"))];
        for dir in beside.into_iter().flatten() {
            if let Ok(found) = Files::from_paths(&[dir]) {
                files.prompts = found.prompts;
                break;
            }
        }
    }
    let (_, diags) = Library::load(&files);
    let settings_error = settings.err();
    let errors = diags.error_count() + usize::from(settings_error.is_some());
    if let Some(e) = settings_error {
        println!("error: {e}");
    }
    let warnings = diags.items.len() - diags.error_count();
    for d in diags.sorted() {
        println!("{d}");
    }
    eprintln!(
        "checked {} flow file(s) and {} prompt file(s): {errors} error(s), {warnings} warning(s)",
        files.flows.len(),
        files.prompts.len()
    );
    i32::from(errors > 0)
}
