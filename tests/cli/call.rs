//! `ivr call` as an operator runs it: the real binary, the shipped flow, keys given on the
//! command line or on standard input. Each walk goes engine → TwiML → interpreter.

use std::io::Write;
use std::process::{Command, Stdio};

fn call(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("call")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_whole_call_reaches_the_processing_number_by_sms() {
    let out = call(&["daily-health-check", "--lang", "ja-JP", "--digits", "0412,365#,1,1,97#,1,2,2,2,2,2,1,1"]);
    assert!(out.contains("caller: 365"), "# ends the number: {out}");
    assert!(out.contains("ivr:    36.5度ですね。"), "{out}");
    assert!(out.contains("接触確認アプリをご利用の方は１を、ご利用でない方は２を押して下さい。"), "{out}");
    assert!(out.contains("issue processing number → sms"), "{out}");
    assert!(out.contains("  temperature = 36.5\n"), "{out}");
    assert!(out.contains("  consent = yes\n"), "{out}");
    assert!(out.trim_end().ends_with("end-of-call summary (11 answers)"), "{out}");
}

#[test]
fn low_spo2_reaches_the_alert() {
    let out = call(&["daily-health-check", "--digits", "0412,365#,1,1,92#,1,2,2,2,2,2,2"]);
    assert!(out.contains("alert health centre (urgent): spo2_low"), "{out}");
    assert!(out.contains("119番"), "{out}");
}

#[test]
fn silence_reaches_the_no_input_give_up() {
    let out = call(&["daily-health-check", "--digits", "0412,,-,"]);
    assert_eq!(out.matches("caller: (silence)").count(), 3, "{out}");
    assert!(out.contains("alert health centre: no_response"), "{out}");
    assert!(
        out.contains("ボタンの操作が確認できませんでした。保健所から改めてご連絡いたします。失礼いたします。"),
        "{out}"
    );
}

#[test]
fn a_wrong_birthday_reaches_the_identity_failure() {
    let out = call(&["daily-health-check", "--digits", "0101,0102,0103"]);
    assert!(out.contains("record answers: identity=failed"), "{out}");
    assert!(out.contains("ご本人確認ができませんでした"), "{out}");
}

#[test]
fn a_landline_hears_the_number_read_aloud() {
    let out = call(&[
        "daily-health-check",
        "--lang",
        "en-US",
        "--from",
        "+81312345678",
        "--digits",
        "0412,365,1,2,2,2,2,2,2,1,1,2",
    ]);
    assert!(out.contains("issue processing number → read_aloud"), "{out}");
    assert!(out.contains("Your processing number is "), "{out}");
}

#[test]
fn running_out_of_keys_hangs_up_and_keeps_the_answers() {
    let out = call(&["daily-health-check", "--digits", "0412,365"]);
    assert!(out.contains("caller: (hangs up)"), "{out}");
    assert!(out.contains("  temperature = 36.5\n"), "{out}");
}

#[test]
fn keys_can_come_from_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["call", "daily-health-check", "--var", "patient.number_issued=true"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"0412\n365#\n1\n2\n2\n2\n2\n2\n2\n").unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    assert!(!out.contains("接触確認アプリをご利用"), "a number was already issued: {out}");
    assert!(out.contains("ご回答ありがとうございました"), "{out}");
}

#[test]
fn an_unknown_flow_names_the_flows_there_are() {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["call", "nope", "--digits", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("daily-health-check"));
}

#[test]
fn graph_prints_a_mermaid_flowchart() {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["graph", "daily-health-check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("flowchart TD\n"));
    assert!(text.contains("|\"key 1\"|"));
    assert!(text.contains("-.->|\"give up\"|"));
    // The [transfer] key: a node, reached from every question (the identity question, s1, too)
    // and never from a say or an action, with where it leads.
    assert!(
        text.contains("    transfer{{\"transfer<br/><i>key 0 at any question: the centre's phone rings 20 s</i>\"}}\n")
    );
    assert!(text.contains("    s1 -.->|\"key 0\"| transfer\n"), "{text}");
    assert!(!text.contains("    s0 -.->|\"key 0\"| transfer\n"), "the greeting is no question");
    let questions = text.lines().filter(|l| l.ends_with("-.->|\"key 0\"| transfer")).count();
    assert_eq!(questions, text.lines().filter(|l| l.contains("\"/]")).count(), "one edge per question");
    assert!(text.contains("    transfer -->|\"answered\"| transfer_done\n"));
    assert!(text.contains("    transfer -->|\"closed or no answer\"| transfer_back\n"));
}

#[test]
fn times_are_told_in_the_centres_zone_not_the_computers() {
    let run = |zone: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr"));
        cmd.args(["call", "daily-health-check", "--digits", "0412,365#,1,1,97#,1,2,2,2,2,2,1,1"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("TZ", "UTC");
        if let Some(z) = zone {
            cmd.env("IVR_SCHEDULER__TIMEZONE", z);
        }
        let before = chrono::Utc::now() + chrono::Duration::hours(24);
        let out = String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned();
        let after = chrono::Utc::now() + chrono::Duration::hours(24);
        (out, before, after)
    };
    for (zone, tz) in [(None, chrono_tz::Asia::Tokyo), (Some("America/New_York"), chrono_tz::America::New_York)] {
        let (out, before, after) = run(zone);
        let told = |t: chrono::DateTime<chrono::Utc>| {
            format!("valid until {} {tz})", t.with_timezone(&tz).format("%Y-%m-%d %H:%M"))
        };
        assert!(out.contains(&told(before)) || out.contains(&told(after)), "{zone:?}: {out}");
    }
}

/// `ivr serve --demo` started where there is no source tree, its output read through a pipe.
#[test]
fn the_demo_runs_from_any_directory_with_its_built_in_files_and_no_colour() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["serve", "--demo"])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .env("IVR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("IVR_CARRIER__SIMULATOR_SPEED", "0")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let calling = line.starts_with('[') && !line.contains("ringing 0 · in call 0 · completed 0");
        seen.push(line);
        if calling {
            break;
        }
    }
    let copies = dir.path().join(format!("ivr-demo-{}", child.id()));
    assert!(copies.join("flows/daily-health-check.toml").exists(), "{seen:?}");
    // Ctrl-C stops it and takes the copies away.
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = seen.join("\n");
    assert!(text.contains("ivr demo: 50 patients, "), "{text}\n{stderr}");
    assert!(
        text.contains(
            "flows: built into ivr (no call-flows/ here); prompts: built into ivr (no prompts/ here); roster: built into ivr"
        ),
        "{text}"
    );
    assert!(!text.contains('\x1b') && !stderr.contains('\x1b'), "colour codes on a pipe:\n{text}\n{stderr}");
    assert!(!copies.exists(), "the copies are left in {}:\n{text}\n{stderr}", copies.display());
}

#[test]
fn the_give_up_line_says_whether_keys_were_pressed() {
    let wrong = call(&["daily-health-check", "--digits", "0412,9,,9"]);
    assert!(wrong.contains("ivr:    押されたボタンでは、お答えを確認できませんでした。"), "{wrong}");
    let silent = call(&["daily-health-check", "--digits", "0412,,,"]);
    assert!(silent.contains("ivr:    ボタンの操作が確認できませんでした。保健所から"), "{silent}");
    let english = call(&["daily-health-check", "--lang", "en-US", "--digits", "0412,9,9,9"]);
    assert!(english.contains("The keys you pressed did not give us an answer"), "{english}");
}

#[test]
fn a_typed_mobile_number_is_read_back_as_it_is_said() {
    let keys = "0412,365#,1,1,97#,1,2,2,2,2,2,1,1,3,09011112222#,1";
    let out = call(&["daily-health-check", "--from", "+81312345678", "--digits", keys]);
    assert!(out.contains("ivr:    0 9 0、1 1 1 1、2 2 2 2、ですね。"), "{out}");
}

#[test]
fn zero_shows_the_transfer_to_the_centre_and_how_it_ended() {
    let out = call(&["daily-health-check", "--digits", "0412,0", "--centre", "completed"]);
    assert!(out.contains("→ transferred to 03-1234-5678 (rings up to 20 s)"), "{out}");
    assert!(out.contains("centre: (answers; the caller speaks with the health centre)"), "{out}");
    assert!(out.contains("  transfer = completed\n"), "{out}");
    assert!(out.contains("  identity = confirmed\n"), "the answers so far are kept: {out}");

    let out = call(&["daily-health-check", "--digits", "0412,0,365#", "--centre", "busy"]);
    assert!(out.contains("centre: (busy)"), "{out}");
    assert!(out.contains("119番"), "{out}");
    assert!(
        out.contains(
            "alert health centre (high): asked_for_person: asked for a person; nobody answered at the centre (busy)"
        ),
        "{out}"
    );
    assert!(out.contains("ivr:    36.5度ですね。"), "the call goes on: {out}");

    let out = call(&["daily-health-check", "--lang", "en-US", "--digits", "0", "--centre", "closed"]);
    assert!(!out.contains("transferred to"), "{out}");
    assert!(out.contains("The health centre is closed now. Its hours are 8:30 to 17:15."), "{out}");
    assert!(
        out.contains("alert health centre (high): asked_for_person: asked for a person outside the centre's hours"),
        "{out}"
    );
}
