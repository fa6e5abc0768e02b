//! The JSON API, behind bearer tokens (`ivr tokens add NAME`, stored as SHA-256 hashes):
//! - `POST /api/v1/processing-numbers/verify` for the contact app's server: a valid number is
//!   consumed once; used, expired, revoked and unknown numbers all get the same 404, so the
//!   API tells a guesser nothing (the audit log and metrics keep the reason). Per-client rate
//!   limits slow guessing.
//! - `POST /api/v1/patients/{id}/processing-number` for staff: the manual issue button.
//! - `POST /api/v1/patients/import` for staff: the roster as CSV (`text/csv`), imported whole
//!   or not at all; a bad file gets every mistake with its row and column.
//!
//! Bad input is a 4xx with a JSON body naming the field, and changes nothing; every error is a
//! [`super::Error`].

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::{Error, Json, Path};
use crate::issuer::numbers::{self, IssueError, SendBy, VerifyError};
use crate::store::Verdict;
use crate::types::{PatientId, StaffName};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/processing-numbers/verify", post(verify))
        .route("/api/v1/patients/{id}/processing-number", post(issue))
        // A roster of tens of thousands of patients, where the other routes take a line of JSON.
        .merge(Router::new().route("/api/v1/patients/import", post(import)).layer(DefaultBodyLimit::max(ROSTER_LIMIT)))
}

/// The largest roster accepted through the API, in bytes (some 30,000 patients).
pub const ROSTER_LIMIT: usize = 4 << 20;

/// Verification attempts allowed per client and minute (a guesser needs millions).
pub fn limiter(per_minute: u32) -> Arc<DefaultKeyedRateLimiter<String>> {
    let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("non-zero"));
    Arc::new(RateLimiter::keyed(quota))
}

/// The client a bearer token belongs to.
pub struct Client(pub String);

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl FromRequestParts<AppState> for Client {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            metrics::counter!("ivr_api_unauthorized_total").increment(1);
            Error::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                Some("authorization"),
                "a valid bearer token is required",
            )
        };
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // The scheme is case-insensitive (RFC 9110).
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty());
        let Some(token) = token else { return Err(unauthorized()) };
        match app.store.numbers().token_name(&token_hash(token)).await {
            Ok(Some(name)) => Ok(Client(name)),
            Ok(None) => Err(unauthorized()),
            Err(e) => Err(Error::internal(e)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    number: String,
}

async fn verify(
    State(app): State<AppState>,
    client: Client,
    Json(req): Json<VerifyRequest>,
) -> Result<Response, Error> {
    if let Err(not_until) = app.verify_limiter.check_key(&client.0) {
        metrics::counter!("ivr_number_verifications_total", "result" => "rate_limited").increment(1);
        tracing::warn!(client = %client.0, "verification rate limit reached");
        // When the next attempt is allowed, in whole seconds (at least 1).
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response =
            Error::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None, "too many attempts; try again later")
                .into_response();
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
        return Ok(response);
    }
    let issuer = &app.turns.issuer;
    match numbers::verify(&app.store, issuer, &req.number, &client.0, true, Utc::now()).await {
        Ok(Verdict::Valid { issued_at, .. }) => Ok((
            StatusCode::OK,
            axum::Json(json!({ "valid": true, "issued_at": issued_at.with_timezone(&issuer.tz).to_rfc3339() })),
        )
            .into_response()),
        // One answer for used, expired, revoked and unknown: the same words the app's own
        // service used.
        Ok(_) => Err(Error::new(
            StatusCode::NOT_FOUND,
            "invalid_or_expired",
            Some("number"),
            "処理番号が正しくないか、有効期限が切れています。 The number is wrong or has expired.",
        )),
        Err(VerifyError::Malformed(e)) => {
            Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "malformed", Some("number"), e.to_string()))
        }
        Err(VerifyError::Store(e)) => Err(Error::internal(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    /// The staff member's word that the patient consented to registering as positive.
    consent: Option<bool>,
    #[serde(default = "default_send", deserialize_with = "send_by")]
    send: SendBy,
    /// Who pressed the button (defaults to the token's name). Optional, but not `null`: a
    /// client that sends the key means to name someone.
    #[serde(default, deserialize_with = "present")]
    staff: Option<StaffName>,
}

fn default_send() -> SendBy {
    SendBy::Sms
}

/// `send` read from a string: serde_json reads an enum from anything else (`null`, `5`) as a
/// syntax error, which would be answered 400 "not JSON" without naming the key.
fn send_by<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SendBy, D::Error> {
    const NAMES: &[&str] = &["sms", "email", "none"];
    let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
    match name.as_ref() {
        "sms" => Ok(SendBy::Sms),
        "email" => Ok(SendBy::Email),
        "none" => Ok(SendBy::None),
        other => Err(serde::de::Error::unknown_variant(other, NAMES)),
    }
}

/// An optional key that, when present, must hold a value (`null` is refused, not read as absent).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

async fn issue(
    State(app): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    Json(req): Json<IssueRequest>,
) -> Result<Response, Error> {
    // No roster id has another shape: say so rather than look it up.
    if let Err(e) = PatientId::parse(&id) {
        return Err(Error::new(StatusCode::BAD_REQUEST, "invalid_path", Some("id"), format!("expected {e}")));
    }
    if req.consent != Some(true) {
        return Err(Error::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_consent",
            Some("consent"),
            "a number is issued only with the patient's consent: send \"consent\": true",
        ));
    }
    let staff = req.staff.map_or_else(|| client.0.clone(), |s| s.as_str().to_string());
    let patient = app.store.patients().get(&id).await.map_err(Error::internal)?;
    let catalog = patient.as_ref().and_then(|p| app.flows.catalog(&p.language));
    let issued =
        numbers::issue_by_staff(&app.store, &app.turns.issuer, catalog.as_deref(), &id, req.send, &staff, Utc::now())
            .await;
    match issued {
        Ok(m) => {
            app.outbox_wake.notify_one();
            Ok((
                StatusCode::CREATED,
                axum::Json(json!({
                    "number": m.number.expose(),
                    "expires_at": m.expires_at.with_timezone(&app.turns.issuer.tz).to_rfc3339(),
                    "send": req.send,
                })),
            )
                .into_response())
        }
        Err(IssueError::UnknownPatient(_)) => {
            Err(Error::new(StatusCode::NOT_FOUND, "unknown_patient", Some("id"), format!("no patient {id}")))
        }
        Err(e @ (IssueError::NoEmail(_) | IssueError::NotMobile(_))) => {
            Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_send", Some("send"), e.to_string()))
        }
        Err(IssueError::Store(e)) => Err(Error::internal(e)),
    }
}

/// A `text/csv` body (any other type is a 415), at most [`ROSTER_LIMIT`] bytes (413).
pub struct CsvBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let mut parts = content_type.unwrap_or("").split(';').map(str::trim);
        let is_csv = parts.next().is_some_and(|t| t.eq_ignore_ascii_case("text/csv"));
        // A roster is read as UTF-8; a file in another encoding would come out garbled.
        let utf8 = parts.all(|p| {
            p.split_once('=').is_none_or(|(k, v)| {
                !k.trim().eq_ignore_ascii_case("charset") || v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
        });
        if !(is_csv && utf8) {
            return Err(Error::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_body",
                None,
                "Expected request with `Content-Type: text/csv` (UTF-8)",
            ));
        }
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(CsvBody(bytes)),
            Err(e) => Err(Error::new(e.status(), "invalid_body", None, e.body_text())),
        }
    }
}

async fn import(State(app): State<AppState>, client: Client, CsvBody(csv): CsvBody) -> Result<Response, Error> {
    let patients = match app.parse_roster("request", &csv) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(client = %client.0, errors = e.errors.len(), "roster refused");
            let message = format!("{} error(s) in the roster; nothing was imported", e.errors.len());
            return Err(
                Error::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_roster", None, message).with("errors", e.errors)
            );
        }
    };
    let count = app.store.patients().import(&patients).await.map_err(Error::internal)?;
    tracing::info!(
        client = %client.0,
        inserted = count.inserted,
        updated = count.updated,
        unchanged = count.unchanged,
        "roster imported"
    );
    Ok((StatusCode::OK, axum::Json(count)).into_response())
}
