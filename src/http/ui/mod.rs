//! The staff pages under `/ui/`: server-rendered HTML (askama templates built into the binary,
//! checked at compile time), one stylesheet, and no script but the Today page's own, which
//! only swaps in new figures ([`today`]); every page works without it. Japanese by default,
//! English per user ([`i18n`]).
//!
//! Access: every page but the sign-in page needs a live session ([`Staff`]): without one, a
//! `GET` is sent to `/ui/login` and anything else is refused with a 403 page. Every `POST`
//! carries its session's synchronizer token, checked before the form is even read
//! ([`StaffForm`]); the sign-in form carries one too, paired with a cookie of its own. A page
//! for a role above the user's is a 403 ([`Staff::require`]). The session cookie is
//! `HttpOnly`, `SameSite=Strict`, `Path=/ui`, and `Secure` when `server.public_url` is https.
//!
//! Every action, and every view of personal data, leaves a row in the staff audit log
//! ([`Staff::audit`]).

mod charts;
mod figures;
mod flows;
pub mod i18n;
mod pages;
mod patient;
mod queue;
mod table;
pub mod today;
mod tokens;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::staff::{self, LoginThrottle, SessionRules};
use crate::store::{AuditEntry, Session, User};
use crate::types::{Role, UiLanguage};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ivr_session";
/// The sign-in form's own token cookie (there is no session yet to hold it).
pub const LOGIN_COOKIE: &str = "ivr_login";
/// The largest form accepted on these pages.
const FORM_LIMIT: usize = 16 * 1024;

/// What the staff pages share: session rules, the sign-in throttle, and whether cookies are
/// `Secure`.
pub struct StaffContext {
    pub rules: SessionRules,
    pub throttle: LoginThrottle,
    pub secure_cookies: bool,
}

impl StaffContext {
    /// The context for a server whose public URL is `public_url`.
    pub fn new(rules: SessionRules, public_url: &str) -> StaffContext {
        StaffContext { rules, throttle: LoginThrottle::default(), secure_cookies: public_url.starts_with("https://") }
    }

    /// A `Set-Cookie` value for `name` under `/ui`, or its removal when `value` is `None`.
    fn cookie(&self, name: &str, value: Option<&str>) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let text = match value {
            Some(v) => format!("{name}={v}; Path=/ui; HttpOnly; SameSite=Strict{secure}"),
            None => format!("{name}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        };
        HeaderValue::from_str(&text).expect("cookie values are hex")
    }
}

pub fn router() -> Router<AppState> {
    pages::routes()
        .merge(queue::routes())
        .merge(patient::routes())
        .merge(tokens::routes())
        .merge(figures::routes())
        .merge(today::routes())
        .merge(flows::routes())
        .layer(middleware::from_fn(page_headers))
}

/// Headers on every staff page: nothing from elsewhere, nothing cached, never framed.
async fn page_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // A page that runs its own script (Today) sets a policy allowing it; every other has none.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// `path` when it is one of these pages (a path under `/ui/`, not another site's address): the
/// only places a form's or a link's `back`/`next` may send the browser.
pub(super) fn local_page(path: &str) -> Option<&str> {
    (path.starts_with("/ui/") && !path.contains("//") && !path.contains('\\')).then_some(path)
}

/// The value of cookie `name` in the request, if any.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The client's address: the connection's peer, or with `server.trust_forwarded_headers` the
/// last address the proxy added to `X-Forwarded-For`.
pub(crate) fn client_address(parts: &Parts, state: &AppState) -> String {
    if state.trust_forwarded_headers {
        let forwarded = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        if let Some(last) = forwarded.and_then(|v| v.rsplit(',').next()).map(str::trim).filter(|v| !v.is_empty()) {
            return last.chars().take(64).collect();
        }
    }
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or_else(String::new, |c| c.0.ip().to_string())
}

/// A signed-in staff member, from the session cookie.
pub struct Staff {
    pub user: User,
    pub session: Session,
    /// The client's address, for the audit log.
    pub address: String,
}

impl Staff {
    /// Refuses the request unless the user's role passes `allowed` (`Role::can_act`,
    /// `Role::can_manage`).
    pub fn require(&self, allowed: fn(Role) -> bool) -> Result<(), PageError> {
        if allowed(self.user.role) { Ok(()) } else { Err(PageError::Forbidden(self.user.language)) }
    }

    /// Writes an audit row: this user did `action` to `target` (empty for nothing).
    pub async fn audit(&self, state: &AppState, action: &str, target: &str) -> Result<(), PageError> {
        let entry = AuditEntry {
            at: state.campaign.clock.now(),
            actor: self.user.name.to_string(),
            action: action.into(),
            target: target.into(),
            address: self.address.clone(),
        };
        state.store.users().audit(&entry).await.map_err(|e| PageError::internal(self.user.language, e))
    }

    fn language(&self) -> UiLanguage {
        self.user.language
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let reading = parts.method == Method::GET || parts.method == Method::HEAD;
        let id = cookie(&parts.headers, SESSION_COOKIE);
        // A page read without a session comes back to itself after signing in (the link of an
        // urgent notice to a patient's page); the queue is where signing in leads anyway.
        let back = parts.uri.path_and_query().map(|p| p.as_str()).filter(|p| *p != "/ui/").and_then(local_page);
        let back = back.map(str::to_string);
        let refused = |expired: bool| {
            if reading { PageError::SignIn { expired, back: back.clone() } } else { PageError::Anonymous }
        };
        let Some(id) = id else { return Err(refused(false)) };
        let now = state.campaign.clock.now();
        match staff::session(&state.store, &state.staff.rules, id, now).await {
            Ok(Some((session, user))) => Ok(Staff { user, session, address: client_address(parts, state) }),
            Ok(None) => Err(refused(true)),
            Err(e) => Err(PageError::internal(UiLanguage::Ja, e)),
        }
    }
}

/// A signed-in staff member's form, whose synchronizer token (field `csrf`) was checked
/// before anything else was read from it. A missing or wrong token is a 403 and changes
/// nothing.
pub struct StaffForm<T>(pub Staff, pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for StaffForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        let language = staff.language();
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| PageError::BadRequest(language))?;
        if !staff::csrf_matches(&staff.session, csrf_field(&bytes).as_deref()) {
            staff.audit(state, "csrf_refused", parts.uri.path()).await?;
            return Err(PageError::Csrf(language));
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::BadRequest(language))?;
        Ok(StaffForm(staff, form))
    }
}

/// The `csrf` field of a form body.
fn csrf_field(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == "csrf").then_some(v))
}

/// Why a staff page was not served.
#[derive(Debug)]
pub enum PageError {
    /// A page read without a live session: to the sign-in page (saying why if it expired).
    SignIn { expired: bool, back: Option<String> },
    /// An action without a live session.
    Anonymous,
    /// A role below what the page or action needs.
    Forbidden(UiLanguage),
    /// A form whose synchronizer token is missing or not its session's.
    Csrf(UiLanguage),
    /// A form that could not be read.
    BadRequest(UiLanguage),
    /// Logged once; the page shows nothing of it.
    Internal(UiLanguage),
}

impl PageError {
    pub(super) fn internal(language: UiLanguage, e: impl std::fmt::Display) -> PageError {
        tracing::error!(error = %e, "staff page failed");
        PageError::Internal(language)
    }
}

/// Whether an error page is shown to someone signed in.
enum Kind {
    Anonymous,
    Other,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let self_kind = if matches!(self, PageError::Anonymous) { Kind::Anonymous } else { Kind::Other };
        let (status, language, heading, body) = match self {
            PageError::SignIn { expired, back } => {
                let mut to = String::from(if expired { "/ui/login?expired=1" } else { "/ui/login" });
                if let Some(back) = back {
                    let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
                    to.push_str(if expired { "&next=" } else { "?next=" });
                    to.push_str(&next);
                }
                return Redirect::to(&to).into_response();
            }
            PageError::Anonymous => (StatusCode::FORBIDDEN, UiLanguage::Ja, "forbidden", "sign_in"),
            PageError::Forbidden(l) => (StatusCode::FORBIDDEN, l, "forbidden", "forbidden"),
            PageError::Csrf(l) => (StatusCode::FORBIDDEN, l, "csrf", "csrf"),
            PageError::BadRequest(l) => (StatusCode::BAD_REQUEST, l, "error", "error"),
            PageError::Internal(l) => (StatusCode::INTERNAL_SERVER_ERROR, l, "error", "error"),
        };
        let t = i18n::text(language);
        let pick = |k: &str| match k {
            "forbidden" => (t.forbidden_title, t.forbidden_body),
            "csrf" => (t.csrf_title, t.csrf_body),
            "sign_in" => (t.forbidden_title, t.sign_in_needed),
            _ => (t.error_title, t.error_body),
        };
        let signed_in = !matches!(self_kind, Kind::Anonymous);
        let page = pages::Message {
            t,
            frame: pages::Frame::anonymous(),
            heading: pick(heading).0,
            body: pick(body).1,
            signed_in,
        };
        (status, pages::html(&page)).into_response()
    }
}
