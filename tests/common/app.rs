//! A test server: `ivr serve`'s [`Server`] started for real on 127.0.0.1 port 0 with the shipped
//! flows, driven by signed webhooks as the carrier sends them, through a TLS proxy at [`PUBLIC`].
//! Every server a test starts is a [`TestApp`] from [`spawn_app`] (or [`spawn_app_with`] its own
//! settings, [`spawn_app_at`] a clock of its own).

use std::ops::Deref;
use std::path::{Path, PathBuf};

use ivr::carrier::signature::AuthToken;
use ivr::carrier::webhook::{CallInfo, WebhookClient, new_call_sid, play_call};
use ivr::config::Settings;
use ivr::scheduler::clock::Clock;
use ivr::server::Server;
use ivr::store::{Patient, Store};
use ivr::twiml::phone::{Heard, Next};
use secrecy::SecretString;

use super::patients::patient;

pub const TOKEN: &str = "test-auth-token-0123456789abcdef";
/// The URL the carrier calls; the tests reach the server through it as through a TLS proxy.
pub const PUBLIC: &str = "https://ivr.example.jp";

pub struct TestApp {
    pub server: Option<Server>,
    pub addr: String,
    pub store: Store,
    pub client: WebhookClient,
    pub settings: Settings,
    pub _dir: tempfile::TempDir,
}

/// The settings of a test server on the database at `db_url`.
pub fn settings(db_url: &str) -> Settings {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = Settings::load(None).expect("default settings");
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.server.public_url = Some(PUBLIC.into());
    s.database.url = SecretString::from(db_url);
    s.carrier.auth_token = Some(SecretString::from(TOKEN));
    s.flows.dir = root.join("call-flows");
    s.flows.prompts_dir = root.join("prompts");
    // Tests plan and dial their own campaigns.
    s.scheduler.autostart = false;
    s
}

/// The URL of the SQLite database `ivr.db` in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("ivr.db").display())
}

/// A server with the test settings on a fresh SQLite database.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_app_with(settings(&sqlite_url(dir.path())), dir).await
}

/// A server with `settings`; `dir` (its files, e.g. the SQLite database) lives as long as it.
pub async fn spawn_app_with(settings: Settings, dir: tempfile::TempDir) -> TestApp {
    spawn_app_at(settings, dir, Clock::System).await
}

/// [`spawn_app_with`] on a clock of the test's (a whole day of calls on a manual one).
pub async fn spawn_app_at(settings: Settings, dir: tempfile::TempDir, clock: Clock) -> TestApp {
    let server = Server::start_with_clock(&settings, clock).await.expect("server starts");
    let addr = format!("http://{}", server.addr);
    let store = server.state.store.clone();
    let client = WebhookClient::new(AuthToken::new(TOKEN)).behind_proxy(PUBLIC, &addr);
    TestApp { server: Some(server), addr, store, client, settings, _dir: dir }
}

/// The running server (its state, its address).
impl Deref for TestApp {
    type Target = Server;
    fn deref(&self) -> &Server {
        self.server.as_ref().expect("the server is running")
    }
}

impl TestApp {
    /// Stops the server and starts another on the same database (a restart).
    pub async fn restart(&mut self) {
        self.server.take().unwrap().stop().await;
        let server = Server::start(&self.settings).await.expect("server restarts");
        self.addr = format!("http://{}", server.addr);
        self.client = WebhookClient::new(AuthToken::new(TOKEN)).behind_proxy(PUBLIC, &self.addr);
        self.store = server.state.store.clone();
        self.server = Some(server);
    }

    /// Stops the server (its background workers too).
    pub async fn stop(mut self) {
        self.server.take().unwrap().stop().await;
    }

    /// The file of the SQLite database of an app from [`spawn_app`].
    pub fn sqlite_path(&self) -> PathBuf {
        self._dir.path().join("ivr.db")
    }

    /// Makes an API token with these scopes (`verify`, `staff`, `verify,issue`…), as
    /// `ivr tokens add NAME --scope SCOPES` does; returns the token.
    #[allow(dead_code)] // not every suite using these helpers needs it
    pub async fn add_token(&self, name: &str, scopes: &str) -> String {
        let token = format!("ivr_test_{name}");
        let scopes = ivr::types::Scopes::parse(scopes).expect("scopes");
        self.store.numbers().add_token(name, &ivr::http::api::token_hash(&token), scopes).await.unwrap();
        token
    }

    /// Stores [`patient`]`(id, phone)`.
    pub async fn add_patient(&self, id: &str, phone: &str) -> Patient {
        self.add(patient(id, phone)).await
    }

    /// Stores `p` (new or changed).
    pub async fn add(&self, p: Patient) -> Patient {
        self.store.patients().upsert(&p).await.unwrap();
        p
    }

    pub fn voice_url(&self) -> String {
        format!("{PUBLIC}/twilio/voice")
    }

    pub fn status_url(&self) -> String {
        format!("{PUBLIC}/twilio/status")
    }

    /// An inbound call from `from`, answering each gather from `keys` in turn.
    pub async fn call(&self, from: &str, keys: &[&str]) -> (String, Vec<String>) {
        let info = CallInfo {
            call_sid: new_call_sid(),
            from: from.into(),
            to: "+81300000000".into(),
            direction: "inbound".into(),
        };
        let mut keys = keys.iter().map(|k| k.to_string());
        let mut heard = Vec::new();
        play_call(&self.client, &self.voice_url(), &self.status_url(), &info, |h: &Heard| {
            heard.extend(h.speech.clone());
            match h.next {
                Next::Gather { .. } => keys.next(),
                _ => None,
            }
        })
        .await
        .expect("call plays");
        (info.call_sid.into(), heard)
    }

    /// A signed form post to a path under the public URL: (status, body), 200 for any 2xx.
    pub async fn post(&self, path_and_query: &str, params: &[(&str, &str)]) -> (u16, String) {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match self.client.post(&format!("{PUBLIC}{path_and_query}"), &params).await {
            Ok(body) => (200, body),
            Err(ivr::carrier::webhook::WebhookError::Status { status, body, .. }) => (status, body),
            Err(e) => panic!("{e}"),
        }
    }

    /// An unsigned (or custom-signed) raw request to the server.
    pub async fn raw(
        &self,
        path_and_query: &str,
        content_type: &str,
        body: String,
        signature: Option<&str>,
    ) -> (u16, String) {
        let mut req = reqwest::Client::new()
            .post(format!("{}{path_and_query}", self.addr))
            .header("content-type", content_type)
            .body(body);
        if let Some(s) = signature {
            req = req.header("X-Twilio-Signature", s);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("{}{path}", self.addr)).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}
