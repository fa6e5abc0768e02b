//! Peers written by others that some tests talk to (PostgreSQL, Twilio's helper library,
//! aiosmtpd, Prism). Without one, a test prints `SKIP: …` with the command that installs it,
//! where a person running the tests sees it, and passes; under `CI=true`, where `.ci/run`
//! installs every peer, a missing one fails the test instead. No test installs a peer itself.

use std::io::Write;
use std::process::{Command, Stdio};

/// Reports a missing peer: `SKIP: {test}: {what} (install: {install})` on the process's
/// stderr, or a panic under `CI=true`. Returns `false`, for `ok || missing(…)`.
pub fn missing(what: &str, install: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("missing peer: {what}; CI=true does not allow skipping (install: {install})");
    }
    skip(&format!("{what} (install: {install})"));
    false
}

/// Prints `SKIP: {test}: {why}` where it shows even for a passing test: the harness captures
/// what `print!` and `eprint!` write, but not a write to the stderr handle itself.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr().lock(), "SKIP: {test}: {why}");
}

/// Whether `python3 -c "import MODULE"` works; if not, [`missing`].
#[allow(dead_code)] // not every test binary talks to a Python peer
pub fn python_module(module: &str, what: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || missing(what, "python3 -m pip install -r scripts/requirements.txt")
}
