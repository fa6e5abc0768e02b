//! Every `/twilio/*` request is checked before a handler sees it: a form body (415 otherwise)
//! within the size limit (413), parsed (400), and signed with our auth token over the URL the
//! carrier called (403). Nothing is read or written for a request that fails. A method the route
//! does not take is a 405 (with `Allow`) before any of these.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, Error};
use crate::carrier::signature::{self, SIGNATURE_HEADER};

/// The form parameters of a verified carrier request, in the order sent.
#[derive(Debug, Clone)]
pub struct TwilioParams(pub Arc<Vec<(String, String)>>);

impl TwilioParams {
    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A parameter the request cannot do without.
    pub fn require(&self, name: &'static str) -> Result<&str, Error> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| Error::missing(name))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TwilioParams {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Only a route behind the signature check has them.
        parts
            .extensions
            .get::<TwilioParams>()
            .cloned()
            .ok_or_else(|| Error::internal("a carrier route without the signature check"))
    }
}

/// The signature check, as middleware for the carrier's routes.
pub async fn twilio_signature(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let form = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form {
        let message = "expected application/x-www-form-urlencoded";
        return Error::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_body", Some("content-type"), message)
            .into_response();
    }
    let bytes = match axum::body::to_bytes(body, app.body_limit).await {
        Ok(b) => b,
        Err(e) if super::deadline::timed_out(&e) => {
            let message = "the body did not arrive in time";
            return Error::new(StatusCode::REQUEST_TIMEOUT, "invalid_body", None, message).into_response();
        }
        Err(_) => {
            return Error::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_body", None, "body too large").into_response();
        }
    };
    let params: Vec<(String, String)> = match serde_urlencoded::from_bytes(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return Error::new(StatusCode::BAD_REQUEST, "invalid_body", None, format!("unreadable form: {e}"))
                .into_response();
        }
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = signed_url(&app, &parts.headers, path_and_query);
    let sig = parts.headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if sig.is_empty() || !signature::validate(&app.token, &url, &params, sig) {
        metrics::counter!("ivr_signature_failures_total").increment(1);
        tracing::warn!(
            url = %url,
            signature_present = !sig.is_empty(),
            "webhook refused: X-Twilio-Signature does not match this URL and body; check server.public_url \
             (or server.trust_forwarded_headers behind a proxy) and the auth token"
        );
        return (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": "invalid signature"}))).into_response();
    }
    parts.extensions.insert(TwilioParams(Arc::new(params)));
    next.run(Request::from_parts(parts, Body::empty())).await
}

/// The URL the carrier signed: the configured public URL, or the one a trusted proxy reports.
fn signed_url(app: &AppState, headers: &HeaderMap, path_and_query: &str) -> String {
    if app.trust_forwarded_headers {
        let h = |name: &str| {
            headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.rsplit(',').next().unwrap_or("").trim())
        };
        if let (Some(proto), Some(host)) = (h("x-forwarded-proto"), h("x-forwarded-host").or_else(|| h("host"))) {
            if matches!(proto, "http" | "https") && !host.is_empty() {
                return signature::public_url(&format!("{proto}://{host}"), path_and_query);
            }
        }
    }
    signature::public_url(&app.public_url, path_and_query)
}
