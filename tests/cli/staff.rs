//! `ivr serve` signing staff in, as an operator runs it with debug logs: neither a password
//! (right or wrong) nor a session id is ever in its output.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::staff::Page;

const PASSWORD: &str = "a password nobody logs";
const WRONG: &str = "a wrong password nobody logs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_a_password_nor_a_session_id_is_ever_in_the_servers_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ivr.db").display());
    let root = env!("CARGO_MANIFEST_DIR");
    let mut add = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["users", "add", "sato", "--role", "admin", "--password-stdin"])
        .env("IVR_DATABASE__URL", &db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(add.wait().unwrap().success());

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("serve")
        .env("IVR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("IVR_DATABASE__URL", &db)
        .env("IVR_SCHEDULER__AUTOSTART", "false")
        .env("IVR_FLOWS__DIR", format!("{root}/call-flows"))
        .env("IVR_FLOWS__PROMPTS_DIR", format!("{root}/prompts"))
        .env("RUST_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("ivr serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut page = Page::new(&base);
    let wrong = if up { page.sign_in("sato", WRONG).await.status } else { 0 };
    let right = if up { page.sign_in("sato", PASSWORD).await.status } else { 0 };
    let home = if up { page.get("/ui/users").await.status } else { 0 };
    let _ = server.kill();
    let _ = server.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(up, "the server did not become ready: {text}");
    assert_eq!((wrong, right, home), (401, 303, 200));
    assert!(text.contains("/ui/login"), "the requests are logged: {text}");
    let id = page.session.unwrap();
    for secret in [PASSWORD, WRONG, &id] {
        assert!(!text.contains(secret), "{secret} in the log");
    }
}
