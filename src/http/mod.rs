//! The HTTP side: one router, one shared [`AppState`], one module per group of routes.
//!
//! - [`twilio`]: voice webhooks (a turn of a call each) and status callbacks, behind
//!   [`verify`]'s signature check.
//! - [`api`]: the JSON API, behind bearer tokens.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`ui`]: the staff pages under `/ui/`, behind staff sessions.
//! - [`report`]: the patient's web self-report, `/r/{token}`, behind the personal link.
//! - [`deadline`]: a deadline on each request body, for clients that send theirs slowly.
//! - [`error`]: the one error type of the JSON face, [`Error`]; voice routes answer TwiML.

pub mod api;
pub mod deadline;
pub mod error;
pub mod figures;
pub mod followups;
pub mod links;
pub mod ops;
pub mod report;
pub mod twilio;
pub mod ui;
pub mod verify;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::Error;

use crate::carrier::signature::AuthToken;
use crate::flow::registry::Registry;
use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub flows: Arc<Registry>,
    pub token: Arc<AuthToken>,
    /// The base URL the carrier calls (no trailing slash).
    pub public_url: Arc<str>,
    pub trust_forwarded_headers: bool,
    pub body_limit: usize,
    /// The flow an inbound call runs.
    pub inbound_flow: Arc<str>,
    /// What a turn needs: flows, the issuer, the public URL.
    pub turns: crate::calls::TurnContext,
    /// Verification attempts per API client.
    pub verify_limiter: Arc<governor::DefaultKeyedRateLimiter<String>>,
    /// Numbers issued through the API, per client and per patient.
    pub issue_limits: Arc<api::IssueLimits>,
    /// Wakes the outbox dispatcher when a message is written.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// The built-in carrier simulator (with `carrier.kind = "simulator"`): the calls it
    /// placed and the SMS it accepted, and personas to set for tests.
    pub simulator: Option<Arc<crate::carrier::simulator::Simulator>>,
    /// The rules that follow a dialled call: retries, calling hours, limits.
    pub campaign: Arc<crate::scheduler::dialer::Campaign>,
    /// Wakes the dialer (a call ended: room for the next).
    pub dialer_wake: Arc<tokio::sync::Notify>,
    /// E-mail can be sent (`[email]` is set): an SMS that cannot reach a landline falls back to it.
    pub email_configured: bool,
    /// `web.send_links`: a roster import sends each patient whose care began their personal link.
    pub send_links: bool,
    /// The outbox's retry rules: a delivery failure the carrier reports is retried by them.
    pub outbox: crate::notify::outbox::Policy,
    pub metrics: PrometheusHandle,
    /// The staff pages' sessions and sign-in throttle.
    pub staff: Arc<ui::StaffContext>,
}

/// The whole router. With the simulator, its Twilio API is under `/simulator`, outside the
/// webhook signature check (it authenticates as Twilio does, with basic auth).
pub fn router(state: AppState) -> Router {
    let twilio = twilio::router(&state);
    let mut app = Router::new()
        .merge(twilio)
        .merge(ops::router())
        .merge(api::router())
        .merge(ui::router())
        .merge(report::router())
        .with_state(state.clone());
    if let Some(simulator) = &state.simulator {
        app = app.nest("/simulator", simulator.router());
    }
    app.layer(middleware::from_fn(track)).layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |r: &Request| {
            // The path only: query strings carry call ids, never shown to every log reader.
            tracing::info_span!("http", method = %r.method(), path = %r.uri().path())
        },
    ))
}

impl AppState {
    /// Reads a roster against what this server serves: its prompt languages and call slots.
    pub fn parse_roster(
        &self,
        label: &str,
        csv: &[u8],
    ) -> Result<Vec<crate::store::Patient>, crate::roster::RosterErrors> {
        let languages = self.flows.languages();
        let languages: Vec<&str> = languages.iter().map(String::as_str).collect();
        crate::roster::parse_roster(label, csv, &self.campaign.hours.slot_names(), &languages)
    }
}

/// Latency by route and status, for `/metrics`.
async fn track(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("ivr_webhook_duration_seconds", "route" => route.clone()).record(start.elapsed().as_secs_f64());
    metrics::counter!("ivr_http_requests_total", "route" => route, "status" => status).increment(1);
    resp
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), &buckets)
                .expect("valid buckets")
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone()
}

/// Shared state from a handler, for the few that need all of it.
pub type AppStateRef = State<AppState>;
