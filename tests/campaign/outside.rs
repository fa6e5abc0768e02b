//! What the tests with the carrier outside the server share: a real `ivr serve` process (killed
//! when dropped), the carrier simulator on a port of the test's own, the `ivr.toml` that joins
//! them, and the `ivr` commands that import a roster and start a campaign.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The carrier's auth token: the simulator checks it, and signs every webhook with it.
pub const TOKEN: &str = "campaign-auth-token-0123456789abcdef";

/// A real `ivr serve`, killed when dropped (a failing test leaves no process behind).
pub struct Instance {
    pub child: std::process::Child,
    pub port: u16,
}

impl Instance {
    /// `ivr serve` on a free port.
    pub fn start(config: &Path, log: &Path) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Instance::start_at(config, log, port)
    }

    /// `ivr serve` on `port`: a server started again on its port is the same instance (the
    /// webhooks of its calls and SMS reach it, and it settles its own unfinished work).
    pub fn start_at(config: &Path, log: &Path, port: u16) -> Instance {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ivr"))
            .args(["serve", "--config"])
            .arg(config)
            .env("IVR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn,ivr::scheduler=info,ivr::notify=info")
            .env_remove("IVR_DATABASE__URL")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("ivr serve starts");
        Instance { child, port }
    }

    /// Whether it answers `/metrics` with `ivr_dialer_leader 1`; `None` while it does not answer.
    pub async fn leads(&self) -> Option<bool> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port)).await.ok()?.text().await.ok()?;
        Some(text.lines().any(|l| l.trim() == "ivr_dialer_leader 1"))
    }

    /// Waits until `/readyz` answers 200 (at most `within`).
    pub async fn ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        while !reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "ivr serve on port {} did not become ready", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The carrier simulator on a port of its own, outside every `ivr serve` of the test (its
/// callers answer `0412` to the birth date and every question): the simulator and its API base.
pub async fn carrier_outside(speed: f64) -> (ivr::carrier::simulator::Simulator, String) {
    carrier_outside_with(speed, Duration::ZERO, Duration::ZERO).await
}

/// [`carrier_outside`] whose Messages API answers a send `sms_answer_delay` after it took the
/// SMS, and whose Calls API answers `call_answer_delay` after it placed the call: a server
/// killed in that time has handed the SMS or the call over without learning its id.
pub async fn carrier_outside_with(
    speed: f64,
    sms_answer_delay: Duration,
    call_answer_delay: Duration,
) -> (ivr::carrier::simulator::Simulator, String) {
    use ivr::carrier::signature::AuthToken;
    use ivr::carrier::simulator::{self as sim, Simulator};
    let carrier = Simulator::new(sim::Options {
        auth_token: AuthToken::new(TOKEN),
        webhooks: ivr::carrier::webhook::WebhookClient::new(AuthToken::new(TOKEN)),
        people: std::sync::Arc::new(|_| Box::pin(async { Some("0412".to_string()) })),
        speed,
        log: None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_base = format!("http://{}", listener.local_addr().unwrap());
    let router = carrier.router().layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let post = request.method() == axum::http::Method::POST;
            let path = request.uri().path();
            let delay = match () {
                _ if post && path.ends_with("/Messages.json") => sms_answer_delay,
                _ if post && path.ends_with("/Calls.json") => call_answer_delay,
                _ => Duration::ZERO,
            };
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        },
    ));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (carrier, api_base)
}

/// `ivr.toml` for an `ivr serve` process on `db` that dials through the carrier at
/// `api_base` at any hour, with `scheduler` lines of the test's own (rate, slots, leases).
pub fn outside_config(dir: &Path, db: &str, api_base: &str, issuer_key: &str, scheduler: &str) -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let account = ivr::carrier::simulator::ACCOUNT_SID;
    let config = dir.join("ivr.toml");
    let toml = format!(
        r#"
[database]
url = "{db}"
[centre]
phone = "03-5555-0100"

[carrier]
kind = "twilio"
account_sid = "{account}"
auth_token = "{TOKEN}"
from = "+815000000000"
api_base = "{api_base}"
[issuer]
key = "{issuer_key}"
[scheduler]
slots = {{ all = "00:00-23:59" }}
quiet_hours = "none"
autostart = false
{scheduler}
[flows]
dir = "{root}/call-flows"
prompts_dir = "{root}/prompts"
"#
    );
    std::fs::write(&config, toml).unwrap();
    config
}

/// Imports `count` patients with ids `PREFIX000…` through `ivr patients import`, each on a
/// mobile number `090-BLOCK??-???1` (ending in 1: a cooperative non-app user, no SMS).
pub fn import(dir: &Path, config: &Path, prefix: &str, block: u32, count: usize) {
    let phones: Vec<(String, String)> =
        (0..count).map(|i| (format!("{prefix}{i:03}"), format!("090-{block}{i:02}-{i:03}1"))).collect();
    import_phones(dir, config, &phones);
}

/// Imports patients `(id, phone)` (born 1960-04-12, as the simulated callers say) through
/// `ivr patients import`.
pub fn import_phones(dir: &Path, config: &Path, patients: &[(String, String)]) {
    let mut csv = String::from("patient_id,name,phone,birth_date\n");
    for (i, (id, phone)) in patients.iter().enumerate() {
        csv.push_str(&format!("{id},患者 {i},{phone},1960-04-12\n"));
    }
    let file = dir.join("patients.csv");
    std::fs::write(&file, csv).unwrap();
    run_ivr(config, &["patients", "import", file.to_str().unwrap()]);
}

/// Runs an `ivr` command on `config` and checks it succeeded.
pub fn run_ivr(config: &Path, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("IVR_DATABASE__URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "ivr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
