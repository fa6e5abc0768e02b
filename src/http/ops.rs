//! Operations: liveness, readiness and Prometheus metrics.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The database answers and flows are loaded: ready for calls.
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let flows = app.flows.flow_count();
    match app.store.ping().await {
        Ok(()) if flows > 0 => (StatusCode::OK, format!("ready: {} database, {flows} flow(s)\n", app.store.backend())),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: no flows loaded\n".to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: database unreachable\n".to_string())
        }
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], app.metrics.render())
}
