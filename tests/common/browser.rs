//! A real headless Chromium, driven over WebDriver (fantoccini) through Debian's chromedriver,
//! which the test starts on a free port and stops. Without chromium or chromedriver the test
//! prints a SKIP line (a failure under `CI=true`, see `peers`).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::peers;

const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// Chromium's flags: headless, and nothing that reaches outside the test.
const FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A browser window and the chromedriver behind it.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

/// Ends chromedriver's process group (chromedriver and its Chromium): after a test's panic,
/// nothing is left running.
fn end_group(driver: &mut Child) {
    let group = format!("-{}", driver.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        end_group(&mut self.driver);
    }
}

fn found(program: &str) -> Option<String> {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Browser {
    /// A new browser with a window of `width`×`height` CSS pixels, or `None` (after a SKIP
    /// line) when Chromium or chromedriver is not installed.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        let chromium = found("chromium").or_else(|| found("chromium-browser"));
        let (Some(chromium), Some(driver)) = (chromium, found("chromedriver")) else {
            peers::missing("chromium and chromedriver", INSTALL);
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // A process group of its own: a test that fails before `close` still ends chromedriver
        // and the Chromium it started (see `Drop`).
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser_args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        browser_args.push(format!("--window-size={width},{height}"));
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({ "binary": chromium, "args": browser_args }));
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let mut driver = child;
        let client = loop {
            match ClientBuilder::new(HttpConnector::new()).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    end_group(&mut driver);
                    panic!("chromedriver did not answer: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        client.set_window_size(width, height).await.expect("window size");
        Some(Browser { client, driver })
    }

    /// Ends the session (Chromium quits), then chromedriver (on drop).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// The visible text of the page's `<main>`.
    pub async fn main_text(&self) -> String {
        self.client.find(Locator::Css("main")).await.unwrap().text().await.unwrap()
    }

    /// Types `value` into the field labelled by the element with id `id`.
    pub async fn fill(&self, id: &str, value: &str) {
        let field = self.client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks the element `css` (a link or a submit button) and waits for the next page.
    pub async fn click(&self, css: &str) {
        self.client.execute("window.__ivr_previous_page = true", vec![]).await.unwrap();
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
        let started = Instant::now();
        loop {
            let loaded = self
                .client
                .execute("return !window.__ivr_previous_page && document.readyState === 'complete'", vec![])
                .await;
            if matches!(loaded, Ok(serde_json::Value::Bool(true))) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no page came after clicking {css}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The path of the current page.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Signs in on the sign-in page at `base`.
    pub async fn sign_in(&self, base: &str, name: &str, password: &str) {
        self.goto(&format!("{base}/ui/login")).await;
        self.fill("name", name).await;
        self.fill("password", password).await;
        self.click("form.stack button[type=submit]").await;
    }
}
