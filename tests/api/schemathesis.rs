//! docs/openapi.json against a live `ivr serve`, by Schemathesis with every check
//! (`scripts/schemathesis.sh`): answers of the documented statuses, content types, bodies and
//! headers; data the description allows accepted, data it forbids refused; no 5xx. The checks
//! in tests/api/openapi.rs are ours; these are written by others, and generate the requests.
//!
//! Needs the pinned Schemathesis (`bash scripts/schemathesis.sh install`, with pip); the test
//! never installs it: without it the test prints `SKIP: …` with that command and passes, except
//! in CI (`CI=true`, where `.ci/run` installs it), where it fails.

use crate::common::peers;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far above the ~10 s a run takes, for a machine busy with other builds.
const DEADLINE: Duration = Duration::from_secs(300);

#[test]
fn schemathesis_with_every_check_finds_nothing_the_description_does_not_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/schemathesis.sh");
    let installed = Command::new("bash").arg(&script).arg("installed").status().is_ok_and(|s| s.success());
    if !installed {
        peers::missing("Schemathesis (the pinned version) not installed", "bash scripts/schemathesis.sh install");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("schemathesis.log");
    let out = std::fs::File::create(&log).unwrap();
    // A process group of its own: on a timeout the script, Schemathesis and the server stop together.
    let mut child = Command::new("bash")
        .arg(&script)
        .arg("run")
        .env("IVR", env!("CARGO_BIN_EXE_ivr"))
        .env("SCHEMATHESIS_MAX_EXAMPLES", "50")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("Schemathesis found disagreements ({s}):\n{output}"),
        None => panic!("Schemathesis did not finish within {DEADLINE:?}:\n{output}"),
    }
}
