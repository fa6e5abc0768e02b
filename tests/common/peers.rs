//! Peers written by others that some tests talk to (Twilio's helper library, aiosmtpd, Prism).
//! Without one, a test says `SKIP: …` where a person running the tests sees it and passes;
//! under `CI=true`, where `.ci/run` installs every peer, a missing one fails the test instead.

use std::io::Write;
use std::process::{Command, Stdio};

/// Reports a missing peer: `SKIP: {what}` on stderr, or a panic under `CI=true`.
pub fn missing(what: &str, install: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("SKIP: {what}: CI=true does not allow skipping ({install})");
    }
    // Straight to the process's stderr: the harness swallows `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
    false
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
