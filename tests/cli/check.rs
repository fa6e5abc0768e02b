//! `ivr check` on the shipped files and on one broken fixture per kind of mistake. Each fixture
//! says what it expects in `# expect: [FILE:]LINE:COL: severity: message` lines.

use std::path::Path;
use std::process::Command;

fn ivr(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_ivr")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_shipped_flows_and_prompts_pass_with_no_warning() {
    let (code, stdout, stderr) = ivr(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("0 error(s), 0 warning(s)"), "{stderr}");
}

#[test]
fn each_broken_fixture_is_reported_at_its_line_and_column() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 17, "fixtures: {fixtures:?}");
    for path in fixtures {
        let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let expects: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| if e.starts_with("tests/") { e.to_string() } else { format!("{rel}:{e}") })
            .collect();
        assert!(!expects.is_empty(), "{rel} has no # expect: line");
        let (code, stdout, _) = ivr(&["check", &rel, "tests/fixtures/check/prompts"]);
        let errors = expects.iter().any(|e| e.contains(": error: "));
        assert_eq!(code, i32::from(errors), "{rel}: exit code\n{stdout}");
        for e in &expects {
            assert!(
                stdout.lines().any(|l| l.starts_with(e.as_str())),
                "{rel}: expected a line starting with\n  {e}\ngot:\n{stdout}"
            );
        }
        // One mistake, one message: nothing else is reported.
        assert_eq!(stdout.lines().count(), expects.len(), "{rel}: unexpected extra lines:\n{stdout}");
    }
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("many.toml");
    std::fs::write(
        &flow,
        r#"[flow]
languages = ["ja-JP"]
start = "ask"

[states.ask]
kind = "menu"
prompt = "question"
give_up = "bye"
colour = "red"
choices = [{ key = "A", next = "nowhere" }]

[states.bye]
kind = "hangupp"
"#,
    )
    .unwrap();
    let (code, stdout, _) = ivr(&["check", flow.to_str().unwrap(), "tests/fixtures/check/prompts"]);
    assert_eq!(code, 1);
    for part in [
        ":9:1: error: unknown field 'colour'",
        ":10:20: error: 'A' is not a key",
        ":10:32: error: no state named 'nowhere'",
        ":13:8: error: unknown state kind 'hangupp'",
    ] {
        assert!(stdout.contains(part), "missing {part} in\n{stdout}");
    }
}

#[test]
fn a_missing_path_is_an_error_not_a_pass() {
    let (code, _, stderr) = ivr(&["check", "no/such/dir"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no/such/dir"), "{stderr}");
}

#[test]
fn with_a_real_carrier_the_placeholder_phone_number_is_refused() {
    let twilio = [
        ("IVR_CARRIER__KIND", "twilio"),
        ("IVR_CARRIER__ACCOUNT_SID", "AC00000000000000000000000000000000"),
        ("IVR_CARRIER__AUTH_TOKEN", "token"),
        ("IVR_CARRIER__FROM", "+815000000000"),
        ("IVR_ISSUER__KEY", "key"),
    ];
    let run = |phone: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr"));
        cmd.arg("check").current_dir(env!("CARGO_MANIFEST_DIR")).envs(twilio);
        if let Some(p) = phone {
            cmd.env("IVR_CENTRE__PHONE", p);
        }
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, stdout) = run(None);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("error: configuration: centre.phone: 03-1234-5678 is the shipped placeholder"), "{stdout}");
    assert_eq!(run(Some("+81312345678")).0, Some(1), "the placeholder written another way");
    assert_eq!(run(Some("03-5321-0000")), (Some(0), String::new()));
}

#[test]
fn a_misspelt_setting_is_named_with_the_one_meant() {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("check")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("IVR_SCHEDULER__CALL_PER_SECOND", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout,
        "error: environment: unknown variable IVR_SCHEDULER__CALL_PER_SECOND (did you mean IVR_SCHEDULER__CALLS_PER_SECOND?)\n"
    );
}

#[test]
fn the_transfer_number_and_the_centre_hours_are_checked_with_the_settings() {
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
            .arg("check")
            .envs(env.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = check(&[("IVR_CENTRE__TRANSFER_TO", "the desk")]);
    assert_eq!(
        (code, out.trim()),
        (1, "error: configuration: centre.transfer_to: 'the desk' is not a phone number like 03-1234-5678")
    );
    let (code, out) = check(&[("IVR_CENTRE__HOURS", "9-17")]);
    assert_eq!((code, out.trim()), (1, "error: configuration: centre.hours: '9' is not a time of day like 09:00"));
    let twilio = [
        ("IVR_CARRIER__ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
        ("IVR_CARRIER__AUTH_TOKEN", "token"),
        ("IVR_CARRIER__FROM", "+815012345678"),
        ("IVR_ISSUER__KEY", "key"),
        ("IVR_CENTRE__PHONE", "03-5321-0000"),
        ("IVR_CENTRE__TRANSFER_TO", "03-1234-5678"),
    ];
    let (code, out) = check(&twilio);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("error: configuration: centre.transfer_to: 03-1234-5678 is the shipped placeholder"),
        "{out}"
    );
    let (code, out) = check(&twilio[..5]);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn the_on_duty_contact_lists_are_checked_with_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let check = |lists: &str| {
        let file = dir.path().join("ivr.toml");
        std::fs::write(&file, lists).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
            .args(["check", "--config"])
            .arg(&file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let good = "[[alerts.on_duty]]\nname = \"日勤\"\nsms = [\"090-1234-5678\"]\nhours = \"08:30-17:15\"\n\
                days = [\"mon\", \"fri\"]\nwebhook = \"https://chat.example.jp/hooks/x\"\n";
    assert_eq!(check(good), (0, String::new()));
    let (code, out) = check("[[alerts.on_duty]]\nname = \"日勤\"\nsms = [\"03-1234-5678\"]\n");
    assert_eq!(
        (code, out.trim()),
        (
            1,
            "error: configuration: alerts.on_duty: list 1 (日勤): sms '03-1234-5678' is not a mobile number (070, 080, 090): it cannot take SMS"
        )
    );
    let (code, out) = check("[alerts]\nescalate_after = \"later\"\n");
    assert_eq!(
        (code, out.trim()),
        (1, "error: configuration: alerts.escalate_after: 'later' is not a duration like 15m")
    );
}
