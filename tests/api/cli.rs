//! `ivr call --url`: an operator walks a deployed flow through the live server.

use std::process::Command;

use crate::common::app::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_call_with_url_walks_the_flow_through_the_live_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&format!("sqlite://{}", dir.path().join("ivr.db").display()));
    s.server.public_url = None; // the server is called directly, as a carrier would without a proxy
    let app = spawn_app_with(s, dir).await;
    app.add_patient("P001", "+819012345678").await;
    let args = [
        "call",
        "daily-health-check",
        "--url",
        &app.addr,
        "--digits",
        "0412,365#,1,2,2,2,2,2,2,2",
        "--from",
        "+819012345678",
    ]
    .map(String::from);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ivr")).args(args).env("IVR_CARRIER__AUTH_TOKEN", TOKEN).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ivr:    36.5度ですね。"), "{stdout}");
    assert!(stdout.contains("ご回答ありがとうございました"), "{stdout}");
    let sid = stdout.split("(call ").nth(1).and_then(|r| r.split(')').next()).unwrap();
    let call = app.store.calls().get(sid).await.unwrap().expect("the call is stored");
    assert!(call.ended);
    assert_eq!(call.status.as_str(), "completed");
}

#[test]
fn ivr_call_with_url_needs_the_auth_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["call", "daily-health-check", "--url", "http://127.0.0.1:9"])
        .env_remove("IVR_CARRIER__AUTH_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth token"));
}
