//! The JSON API, behind bearer tokens (`ivr tokens add NAME --scope …`, stored as SHA-256
//! hashes). Each route needs one scope ([`Scope`]); a token without it gets 403 and changes
//! nothing, a revoked or unknown token 401.
//! - `POST /api/v1/processing-numbers/verify` (`verify`), for the contact app's server: a valid
//!   number is consumed once; used, expired, revoked and unknown numbers all get the same 404,
//!   so the API tells a guesser nothing (the audit log and metrics keep the reason). Per-client
//!   rate limits slow guessing.
//! - `POST /api/v1/patients/{id}/processing-number` (`issue`), for staff: the manual issue
//!   button, rate limited per token and per patient (each number revokes the patient's last).
//! - `POST /api/v1/patients/import` (`import`), for staff: the roster as CSV (`text/csv`),
//!   imported whole or not at all; a bad file gets every mistake with its row and column.
//!
//! - The follow-up queue and the roster for staff tools (`read`, `followup`): see
//!   [`super::followups`].
//! - `GET /api/v1/figures` (`read`): the ministry's figures per area and span of days: see
//!   [`super::figures`].
//!
//! Bad input is a 4xx with a JSON body naming the field, and changes nothing; every error is a
//! [`super::Error`].

use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::{Error, Json, Path};
use super::{figures, followups};
use crate::issuer::numbers::{self, IssueError, SendBy, VerifyError};
use crate::store::Verdict;
use crate::types::{PatientId, Scope, StaffName};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/processing-numbers/verify", post(verify))
        .route("/api/v1/patients/{id}/processing-number", post(issue))
        .route("/api/v1/followups", get(followups::list))
        .route("/api/v1/followups/{id}/claim", post(followups::act_on::<followups::Claim>))
        .route("/api/v1/followups/{id}/release", post(followups::act_on::<followups::Release>))
        .route("/api/v1/followups/{id}/close", post(followups::act_on::<followups::Close>))
        .route("/api/v1/patients", get(followups::patients))
        .route("/api/v1/patients/{id}", get(followups::patient))
        .route("/api/v1/patients/{id}/calls", get(followups::patient_calls))
        .route("/api/v1/figures", get(figures::figures))
        .route("/api/v1/today", get(today))
        .route("/api/v1/patients/{id}/report-link", post(super::links::send).delete(super::links::revoke))
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

/// How many numbers the API issues: per client and minute, and per patient and hour (each
/// number revokes the patient's previous one, so a burst would leave the patient none that
/// works). Counted in memory by each instance.
pub struct IssueLimits {
    per_client: DefaultKeyedRateLimiter<String>,
    per_patient: DefaultKeyedRateLimiter<String>,
}

impl IssueLimits {
    /// `0` counts as `1`.
    pub fn new(per_minute: u32, per_patient_per_hour: u32) -> Arc<IssueLimits> {
        let n = |x: u32| NonZeroU32::new(x.max(1)).expect("non-zero");
        Arc::new(IssueLimits {
            per_client: RateLimiter::keyed(Quota::per_minute(n(per_minute))),
            per_patient: RateLimiter::keyed(Quota::per_hour(n(per_patient_per_hour))),
        })
    }
}

/// A 429 with the JSON error body and `Retry-After`: when the next attempt is allowed, in whole
/// seconds (at least 1).
fn rate_limited(not_until: &NotUntil<governor::clock::QuantaInstant>, message: &str) -> Response {
    let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = Error::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None, message).into_response();
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
    response
}

/// The scope a route needs, as a type: `Client<scope::Issue>` in a handler's arguments.
pub trait RequiredScope: Send + Sync {
    const SCOPE: Scope;
}

/// Marker types for [`Client`], one per [`Scope`].
pub mod scope {
    use super::{RequiredScope, Scope};

    macro_rules! scopes {
        ($($t:ident),+) => {$(
            #[doc = concat!("The `", stringify!($t), "` scope.")]
            pub struct $t;
            impl RequiredScope for $t {
                const SCOPE: Scope = Scope::$t;
            }
        )+};
    }
    scopes!(Verify, Issue, Import, Read, Followup);
}

/// The client a bearer token belongs to (the token's name), when the token is live and holds
/// the scope `S`. A missing, unknown or revoked token is a 401; a token without the scope, a 403.
/// Both are refused before the body is read, and change nothing.
pub struct Client<S: RequiredScope> {
    pub name: String,
    /// The client's address, for the staff audit log.
    pub address: String,
    scope: PhantomData<S>,
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl<S: RequiredScope> FromRequestParts<AppState> for Client<S> {
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
        let token = match app.store.numbers().token(&token_hash(token)).await {
            Ok(Some(t)) => t,
            Ok(None) => return Err(unauthorized()),
            Err(e) => return Err(Error::internal(e)),
        };
        if !token.scopes.allows(S::SCOPE) {
            metrics::counter!("ivr_api_forbidden_total", "scope" => S::SCOPE.as_str()).increment(1);
            tracing::warn!(client = %token.name, scope = %S::SCOPE, "token without the route's scope refused");
            return Err(Error::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                Some("authorization"),
                format!("this token lacks the '{}' scope this route needs", S::SCOPE),
            ));
        }
        // Last use to the minute: at most one write per token and minute.
        let now = Utc::now();
        if token.use_is_news(now)
            && let Err(e) = app.store.numbers().token_used(&token.name, now).await
        {
            tracing::warn!(client = %token.name, error = %e, "could not record the token's use");
        }
        let address = super::ui::client_address(parts, app);
        Ok(Client { name: token.name, address, scope: PhantomData })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    number: String,
}

async fn verify(
    State(app): State<AppState>,
    client: Client<scope::Verify>,
    Json(req): Json<VerifyRequest>,
) -> Result<Response, Error> {
    if let Err(not_until) = app.verify_limiter.check_key(&client.name) {
        metrics::counter!("ivr_number_verifications_total", "result" => "rate_limited").increment(1);
        tracing::warn!(client = %client.name, "verification rate limit reached");
        return Ok(rate_limited(&not_until, "too many attempts; try again later"));
    }
    let issuer = &app.turns.issuer;
    match numbers::verify(&app.store, issuer, &req.number, &client.name, true, Utc::now()).await {
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
    client: Client<scope::Issue>,
    Path(id): Path<String>,
    Json(req): Json<IssueRequest>,
) -> Result<Response, Error> {
    if let Err(not_until) = app.issue_limits.per_client.check_key(&client.name) {
        metrics::counter!("ivr_number_issues_refused_total", "limit" => "client").increment(1);
        tracing::warn!(client = %client.name, "issue rate limit reached for the client");
        return Ok(rate_limited(&not_until, "too many numbers issued by this client; try again later"));
    }
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
    let staff = req.staff.map_or_else(|| client.name.clone(), |s| s.as_str().to_string());
    let patient = app.store.patients().get(&id).await.map_err(Error::internal)?;
    // Counted only for a patient on the roster who can get the number as asked: unknown ids
    // take no room in the limiter, and a mistaken channel costs the patient no issue.
    if let Some(p) = &patient {
        numbers::recipient(p, req.send).map_err(issue_error)?;
    }
    if patient.is_some()
        && let Err(not_until) = app.issue_limits.per_patient.check_key(&id)
    {
        metrics::counter!("ivr_number_issues_refused_total", "limit" => "patient").increment(1);
        tracing::warn!(client = %client.name, "issue rate limit reached for a patient");
        return Ok(rate_limited(&not_until, "too many numbers issued for this patient; try again later"));
    }
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
        Err(e) => Err(issue_error(e)),
    }
}

/// A refused issue as the API answers it.
fn issue_error(e: IssueError) -> Error {
    match e {
        IssueError::UnknownPatient(id) => {
            Error::new(StatusCode::NOT_FOUND, "unknown_patient", Some("id"), format!("no patient {id}"))
        }
        e @ (IssueError::NoEmail(_) | IssueError::NotMobile(_)) => {
            Error::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot_send", Some("send"), e.to_string())
        }
        IssueError::Store(e) => Error::internal(e),
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

async fn import(
    State(app): State<AppState>,
    client: Client<scope::Import>,
    CsvBody(csv): CsvBody,
) -> Result<Response, Error> {
    let patients = match app.parse_roster("request", &csv) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(client = %client.name, errors = e.errors.len(), "roster refused");
            let message = format!("{} error(s) in the roster; nothing was imported", e.errors.len());
            return Err(
                Error::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_roster", None, message).with("errors", e.errors)
            );
        }
    };
    let count = app.store.patients().import(&patients).await.map_err(Error::internal)?;
    tracing::info!(
        client = %client.name,
        inserted = count.inserted,
        updated = count.updated,
        unchanged = count.unchanged,
        "roster imported"
    );
    let mut answer = serde_json::to_value(count).map_err(Error::internal)?;
    if app.send_links {
        // As `ivr patients import`: patients whose care period has begun get their personal link.
        let (links, now) = (super::links::sender(&app), app.campaign.clock.now());
        let today = now.with_timezone(&links.tz).date_naive();
        let sent = links.send_due(&app.store, today, now).await.map_err(Error::internal)?;
        if sent > 0 {
            app.outbox_wake.notify_one();
        }
        answer["report_links_sent"] = sent.into();
    }
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// `GET /api/v1/today` takes no parameter: any is a 400 naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// `GET /api/v1/today` (`read`): the day's campaign per area and in total, the figures of the
/// Today page. Counts only, no patient: no audit row.
async fn today(
    State(app): State<AppState>,
    _client: Client<scope::Read>,
    super::error::Query(_): super::error::Query<NoParams>,
) -> Result<Response, Error> {
    use super::ui::today::{API_FIELDS, read, value};
    let today = read(&app).await.map_err(Error::internal)?;
    let figures = |a: &crate::store::AreaDay| {
        let mut o = serde_json::Map::new();
        for what in API_FIELDS {
            o.insert(what.to_string(), value(a, what).into());
        }
        o
    };
    let areas: Vec<serde_json::Value> = today
        .figures
        .areas
        .iter()
        .map(|a| {
            let mut o = figures(a);
            let area = if a.area.is_empty() { serde_json::Value::Null } else { a.area.clone().into() };
            o.insert("area".into(), area);
            serde_json::Value::Object(o)
        })
        .collect();
    Ok(axum::Json(json!({
        "day": today.day.format("%Y-%m-%d").to_string(),
        "as_of": today.as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "total": figures(&today.figures.total()),
        "areas": areas,
    }))
    .into_response())
}
