//! Contract: the Twilio client's requests checked against Twilio's own OpenAPI description of
//! its REST API, served by Prism (`scripts/prism-twilio.sh`) with request validation on. Prism
//! answers a request the description allows with the description's example resource, and one
//! it does not allow with 422, so a wrong field name, a list sent the wrong way, a bad SID or a
//! missing credential fails here rather than against the real API.
//!
//! Needs Prism in `.cache/prism` (`bash scripts/prism-twilio.sh install`, with npm); the test
//! never installs it: without it the test prints `SKIP: … Prism not available` with that command
//! and passes, except in CI (`CI=true`, where `.ci/run` installs it), where it fails.

use crate::common::peers;

use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ivr::carrier::twilio::{
    CallRequest, MachineDetection, MessageRequest, RetryPolicy, Sender, TwilioClient, TwilioError,
};
use ivr::types::{AccountSid, CallSid};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const PATIENT: &str = "+819012345678";
const OURS: &str = "+815012345678";

/// Prism and whatever it started, in a process group of their own, stopped when dropped.
struct Prism {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Prism {
    /// The value, or a failure that quotes what Prism found wrong with the request.
    fn expect<T>(&self, what: &str, result: Result<T, TwilioError>) -> T {
        result.unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let violations: Vec<&str> = log.lines().filter(|l| l.contains("[VALIDATOR] ✖")).collect();
            panic!("{what}: {e}\nPrism's validation errors so far:\n{}", violations.join("\n"))
        })
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Skips (or, in CI, fails) when Prism cannot be had.
fn unavailable(why: &str) {
    peers::missing(&format!("Prism not available: {why}"), "bash scripts/prism-twilio.sh install");
}

/// Starts the installed Prism on a free port; `Err` says why it could not.
async fn start_prism(log: &Path) -> Result<Prism, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prism-twilio.sh");
    let installed = Command::new("bash").arg(&script).arg("installed").status().map_err(|e| format!("bash: {e}"))?;
    if !installed.success() {
        return Err("not installed in .cache/prism".into());
    }
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let child = Command::new("bash")
        .arg(&script)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting Prism: {e}"))?;
    let mut prism = Prism { child, base: format!("http://127.0.0.1:{port}"), log: log.to_path_buf() };

    // Prism reads the 2 MB description before it listens: up to ~15 s on a busy machine.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if http.get(&prism.base).send().await.is_ok() {
            return Ok(prism);
        }
        let exited = prism.child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("Prism did not start ({exited:?}): {}", log.trim()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn requests_match_twilios_openapi_description() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let prism = match start_prism(&dir.path().join("prism.log")).await {
        Ok(prism) => prism,
        Err(why) => return unavailable(&why),
    };
    let ready = started.elapsed();
    // Any refusal must surface at once: Prism's 422s are not retryable anyway, but a 5xx from a
    // broken mock should fail the test rather than be retried.
    let twilio = TwilioClient::new(&prism.base, &AccountSid::parse(ACCOUNT).unwrap(), "contract-test-token")
        .unwrap()
        .with_retry(RetryPolicy::never());

    // A call with every option we use, events as a repeated name.
    let mut call = CallRequest::new(PATIENT, OURS, "https://ivr.example.jp/twilio/voice?attempt=7")
        .with_status_callback("https://ivr.example.jp/twilio/status?attempt=7");
    call.timeout_secs = Some(30);
    call.machine_detection = Some(MachineDetection::DetectMessageEnd);
    call.async_amd_status_callback = Some("https://ivr.example.jp/twilio/amd".into());
    let created = prism.expect("create_call", twilio.create_call(&call).await);
    assert!(created.sid.as_str().starts_with("CA") && created.sid.as_str().len() == 34, "{created:?}");
    let fetched = prism.expect("fetch_call", twilio.fetch_call(&created.sid).await);
    assert_eq!(fetched.sid, created.sid);
    // The Calls list for one number, read to find a call whose id was lost in a crash. The
    // description's example is an old call: none is that recent.
    let long_ago = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let listed = prism.expect("list_calls", twilio.list_calls(PATIENT, long_ago).await);
    assert!(!listed.is_empty() && listed.iter().all(|c| c.sid.as_str().starts_with("CA")), "{listed:?}");
    assert!(listed.iter().any(|c| c.to.is_some() && c.created().is_some()), "to and date_created are read: {listed:?}");
    assert!(prism.expect("list_calls, recent", twilio.list_calls(PATIENT, chrono::Utc::now()).await).is_empty());

    // SMS from our number, and through a Messaging Service.
    let sms = MessageRequest {
        to: PATIENT.into(),
        sender: Sender::From(OURS.into()),
        body: "処理番号: 1234-5678".into(),
        status_callback: Some("https://ivr.example.jp/twilio/sms-status?id=42".into()),
    };
    let sent = prism.expect("send_message", twilio.send_message(&sms).await);
    assert!(sent.sid.as_str().starts_with("SM") || sent.sid.as_str().starts_with("MM"), "{sent:?}");
    let service =
        MessageRequest { sender: Sender::MessagingService("MG0123456789abcdef0123456789abcdef".into()), ..sms.clone() };
    prism.expect("send_message via a service", twilio.send_message(&service).await);
    // The Messages list for one number, read to learn whether a send whose answer was lost went
    // out. The description's example is an old message: none is that recent.
    let listed = prism.expect("list_messages", twilio.list_messages(PATIENT, long_ago).await);
    assert!(listed.iter().all(|m| m.sid.as_str().starts_with("SM") || m.sid.as_str().starts_with("MM")), "{listed:?}");
    assert!(
        listed.iter().any(|m| m.body.is_some() && m.created().is_some()),
        "body and date_created are read: {listed:?}"
    );
    assert!(prism.expect("list_messages, recent", twilio.list_messages(PATIENT, chrono::Utc::now()).await).is_empty());

    // What the description forbids is refused, and the client reads the refusal as final.
    let bad_service = MessageRequest { sender: Sender::MessagingService("MG123".into()), ..sms };
    let e = twilio.send_message(&bad_service).await.unwrap_err();
    assert_eq!(e.status(), Some(422), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(twilio.fetch_call(&CallSid::parse("CA123").unwrap()).await.unwrap_err().status(), Some(422));

    // Prism does check: no `To`, or no credentials, is refused.
    let http = reqwest::Client::new();
    let calls = format!("{}/2010-04-01/Accounts/{ACCOUNT}/Calls.json", prism.base);
    let no_to = [("From", OURS), ("Url", "https://ivr.example.jp/twilio/voice")];
    let answer = http.post(&calls).basic_auth(ACCOUNT, Some("t")).form(&no_to).send().await.unwrap();
    assert_eq!(answer.status(), 422, "{}", answer.text().await.unwrap());
    let answer = http.post(&calls).form(&[("To", PATIENT), no_to[0], no_to[1]]).send().await.unwrap();
    assert_eq!(answer.status(), 401);

    // Resources made up from the schema rather than the examples: any value the description
    // allows must parse (statuses this client does not know, empty durations, odd error codes).
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("prefer", "dynamic=true".parse().unwrap());
    let dynamic = twilio.clone().with_http_client(reqwest::Client::builder().default_headers(headers).build().unwrap());
    for _ in 0..20 {
        prism.expect("create_call, generated answer", dynamic.create_call(&call).await);
        prism.expect("fetch_call, generated answer", dynamic.fetch_call(&created.sid).await);
        prism.expect("list_calls, generated answer", dynamic.list_calls(PATIENT, long_ago).await);
        prism.expect("send_message, generated answer", dynamic.send_message(&service).await);
        prism.expect("list_messages, generated answer", dynamic.list_messages(PATIENT, long_ago).await);
    }

    drop(prism);
    let _ =
        writeln!(std::io::stderr(), "contract: Prism up in {ready:.1?}, all checks done in {:.1?}", started.elapsed());
}
