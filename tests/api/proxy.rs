//! Requests signed by Twilio's official helper library (PyPI `twilio`) reach the server as the
//! carrier sends them: a public URL with a non-default port, Japanese text, empty and repeated
//! parameters; and behind a TLS proxy, with the URL rebuilt from X-Forwarded-* when trusted.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::app::*;

const MOBILE: &str = "+819012345678";

/// Signatures computed by the official library for `(url, params)`, or `None` (skipped)
/// when it is not installed outside CI.
fn official_signatures(cases: &[(&str, Vec<(&str, &str)>)]) -> Option<Vec<String>> {
    if !crate::common::peers::python_module("twilio", "PyPI twilio not installed") {
        return None;
    }
    let json: Vec<serde_json::Value> =
        cases.iter().map(|(url, params)| serde_json::json!({"token": TOKEN, "url": url, "params": params})).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/twilio-sign.py");
    let mut child = Command::new("python3").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(serde_json::to_string(&json).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    Some(v.iter().map(|c| c["signature"].as_str().unwrap().to_string()).collect())
}

fn form(params: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(params).unwrap()
}

#[tokio::test]
async fn requests_signed_by_the_official_library_are_accepted_and_tampered_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&format!("sqlite://{}", dir.path().join("ivr.db").display()));
    s.server.public_url = Some("https://ivr.example.jp:8443/".into());
    let app = spawn_app_with(s, dir).await;
    app.add_patient("P001", MOBILE).await;
    let sid = "CA55555555555555555555555555555555";
    let voice = vec![("CallSid", sid), ("From", MOBILE), ("CallerName", "山田 花子"), ("Empty", "")];
    let step =
        vec![("CallSid", sid), ("Digits", "0412"), ("Tag", "b"), ("Tag", "a"), ("Tag", "b"), ("Note", "体温 36.5度")];
    let step_url = format!("https://ivr.example.jp:8443/twilio/voice/step?call={sid}&seq=1");
    let Some(sigs) =
        official_signatures(&[("https://ivr.example.jp:8443/twilio/voice", voice.clone()), (&step_url, step.clone())])
    else {
        return;
    };
    let ct = "application/x-www-form-urlencoded";
    let (status, body) = app.raw("/twilio/voice", ct, form(&voice), Some(&sigs[0])).await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/twilio/voice/step?call={sid}&seq=1");
    let mut tampered = step.clone();
    tampered[1] = ("Digits", "0413");
    assert_eq!(app.raw(&path, ct, form(&tampered), Some(&sigs[1])).await.0, 403);
    let (status, body) = app.raw(&path, ct, form(&step), Some(&sigs[1])).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("本日の体温を、数字で押して"), "{body}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_signed_url_is_rebuilt_from_forwarded_headers() {
    let sid = "CA66666666666666666666666666666666";
    let params = [("CallSid", sid), ("From", MOBILE)];
    let sig = ivr::carrier::signature::sign(
        &ivr::carrier::signature::AuthToken::new(TOKEN),
        "https://public.example.jp/twilio/voice",
        &params,
    );
    let send = |addr: String, sig: String| async move {
        reqwest::Client::new()
            .post(format!("{addr}/twilio/voice"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "public.example.jp")
            .header("X-Twilio-Signature", sig)
            .body(form(&params))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    for trust in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(&format!("sqlite://{}", dir.path().join("ivr.db").display()));
        s.server.public_url = None;
        s.server.trust_forwarded_headers = trust;
        let app = spawn_app_with(s, dir).await;
        app.add_patient("P001", MOBILE).await;
        let status = send(app.addr.clone(), sig.clone()).await;
        assert_eq!(status, if trust { 200 } else { 403 }, "trust_forwarded_headers = {trust}");
    }
}
