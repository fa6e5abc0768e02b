//! Flows served live: an edit is picked up without a restart, a bad edit is refused while the
//! last good version keeps serving, and a call in progress finishes on its own version.

use std::path::Path;
use std::time::Duration;

use crate::common::app::*;

const MOBILE: &str = "+819012345678";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Starts a call and returns the TwiML of its first turn.
async fn first_turn(app: &TestApp, sid: &str) -> String {
    app.post("/twilio/voice", &[("CallSid", sid), ("From", MOBILE)]).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_served_live_bad_edits_refused_and_calls_keep_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (flows, prompts) = (dir.path().join("call-flows"), dir.path().join("prompts"));
    copy_dir(&root.join("call-flows"), &flows);
    copy_dir(&root.join("prompts"), &prompts);
    let mut s = settings(&format!("sqlite://{}", dir.path().join("ivr.db").display()));
    s.flows.dir = flows.clone();
    s.flows.prompts_dir = prompts.clone();
    let app = spawn_app_with(s, dir).await;
    app.add_patient("P001", MOBILE).await;

    // A call in progress, at the birthday question.
    let old = "CA00000000000000000000000000000001";
    first_turn(&app, old).await;

    let ja = prompts.join("ja-JP.toml");
    let text = std::fs::read_to_string(&ja).unwrap();
    let edited = text
        .replace("こちらは保健所の自動音声", "【新版】こちらは保健所の自動音声")
        .replace("本日の体温を、数字で押して", "【新版】本日の体温を、数字で押して");
    std::fs::write(&ja, &edited).unwrap();

    // New calls get the edit once it is picked up.
    let mut picked_up = false;
    for i in 0..100 {
        let body = first_turn(&app, &format!("CA1{i:031}")).await;
        if body.contains("【新版】") {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(picked_up, "the edited prompt was not served within 10 s");

    // The call that started before the edit goes on with the version it started with.
    let (_, next) =
        app.post(&format!("/twilio/voice/step?call={old}&seq=1"), &[("CallSid", old), ("Digits", "0412")]).await;
    assert!(next.contains("本日の体温を、数字で押して") && !next.contains("【新版】"), "{next}");

    // A broken edit is refused; the last good version keeps serving.
    std::fs::write(flows.join("daily-health-check.toml"), "[flow]\nstart = \n").unwrap();
    let mut refused = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, metrics) = app.get("/metrics").await;
        if metrics.contains("ivr_flow_reloads_total{result=\"refused\"}") {
            refused = true;
            break;
        }
    }
    assert!(refused, "the broken edit was not seen");
    let body = first_turn(&app, "CA20000000000000000000000000000002").await;
    assert!(body.contains("【新版】こちらは保健所"), "{body}");
    assert_eq!(app.get("/readyz").await.0, 200);
}

/// The files change while the server is down: after the restart, a call that was in progress
/// finishes on the version it started on (stored with the call), and new calls get the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_progress_keeps_its_version_across_a_restart_with_edited_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (flows, prompts) = (dir.path().join("call-flows"), dir.path().join("prompts"));
    copy_dir(&root.join("call-flows"), &flows);
    copy_dir(&root.join("prompts"), &prompts);
    let mut s = settings(&format!("sqlite://{}", dir.path().join("ivr.db").display()));
    s.flows.dir = flows.clone();
    s.flows.prompts_dir = prompts.clone();
    let mut app = spawn_app_with(s, dir).await;
    app.add_patient("P001", MOBILE).await;
    let old = "CA00000000000000000000000000000002";
    first_turn(&app, old).await;
    let started_on = app.store.calls().get(old).await.unwrap().unwrap().flow_version;

    let ja = prompts.join("ja-JP.toml");
    let text = std::fs::read_to_string(&ja).unwrap();
    std::fs::write(&ja, text.replace("本日の体温を、数字で押して", "【新版】本日の体温を、数字で押して")).unwrap();
    // A new process, which never loaded the version the call started on.
    app.restart().await;

    let (_, next) =
        app.post(&format!("/twilio/voice/step?call={old}&seq=1"), &[("CallSid", old), ("Digits", "0412")]).await;
    assert!(next.contains("本日の体温を、数字で押して") && !next.contains("【新版】"), "{next}");
    assert_eq!(app.store.calls().get(old).await.unwrap().unwrap().flow_version, started_on);
    let fresh = "CA00000000000000000000000000000003";
    first_turn(&app, fresh).await;
    let (_, next) =
        app.post(&format!("/twilio/voice/step?call={fresh}&seq=1"), &[("CallSid", fresh), ("Digits", "0412")]).await;
    assert!(next.contains("【新版】本日の体温を、数字で押して"), "{next}");
}
