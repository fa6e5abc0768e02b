//! The pages: sign-in and sign-out, the follow-up queue's home (要フォロー), users and the
//! audit log for admins, and the language switch.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::i18n::{self, Text};
use super::{LOGIN_COOKIE, PageError, SESSION_COOKIE, Staff, StaffForm, client_address, cookie};
use crate::http::AppState;
use crate::staff::{self, AccountError, PasswordError, SignInError};
use crate::types::{Role, UiLanguage, UserName};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/style.css", get(style))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/language", post(language))
        .route("/ui/users", get(users).post(add_user))
        .route("/ui/users/{name}/disable", post(disable_user))
        .route("/ui/users/{name}/password", post(reset_password))
        .route("/ui/audit", get(audit))
        .route("/ui/audit.csv", get(audit_csv))
}

/// A rendered template, or a 500 page if it could not be (logged).
pub(super) fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a staff page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// What the layout shows around a page: the signed-in user, the token for its forms, and
/// which page this is (for the navigation's `aria-current`).
pub(super) struct Frame {
    pub(super) user: Option<UserView>,
    pub(super) csrf: String,
    pub(super) path: &'static str,
}

pub(super) struct UserView {
    pub(super) name: String,
    pub(super) role: &'static str,
    pub(super) admin: bool,
    /// The language the switch offers.
    pub(super) other_language: &'static str,
}

impl Frame {
    pub(super) fn anonymous() -> Frame {
        Frame { user: None, csrf: String::new(), path: "" }
    }

    pub(super) fn of(staff: &Staff, path: &'static str) -> Frame {
        let t = i18n::text(staff.user.language);
        let other = match staff.user.language {
            UiLanguage::Ja => UiLanguage::En,
            UiLanguage::En => UiLanguage::Ja,
        };
        Frame {
            user: Some(UserView {
                name: staff.user.name.to_string(),
                role: t.role(staff.user.role),
                admin: staff.user.role.can_manage(),
                other_language: other.as_str(),
            }),
            csrf: staff.session.csrf_token.clone(),
            path,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/message.html")]
pub(super) struct Message {
    pub t: &'static Text,
    pub frame: Frame,
    pub heading: &'static str,
    pub body: &'static str,
    pub signed_in: bool,
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../../templates/ui/style.css"),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

#[derive(Template)]
#[template(path = "ui/login.html")]
struct Login {
    t: &'static Text,
    frame: Frame,
    name: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    other_lang: &'static str,
    /// The page to go to once signed in (a page of these), or empty: the queue.
    next: String,
}

#[derive(Deserialize)]
struct LoginQuery {
    lang: Option<String>,
    expired: Option<String>,
    bye: Option<String>,
    next: Option<String>,
}

/// Where signing in leads: the page asked for, if it is one of these, else the queue.
fn after_sign_in(next: Option<&str>) -> &str {
    next.and_then(super::local_page).unwrap_or("/ui/")
}

fn page_language(lang: Option<&str>) -> UiLanguage {
    lang.and_then(|l| UiLanguage::parse(l).ok()).unwrap_or(UiLanguage::Ja)
}

/// The sign-in page with a fresh form token (in the form and in its cookie), and `status`.
fn login_form(
    state: &AppState,
    status: StatusCode,
    language: UiLanguage,
    name: &str,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    next: Option<&str>,
) -> Response {
    let t = i18n::text(language);
    let token = hex::encode(rand::random::<[u8; 16]>());
    let other_lang = if language == UiLanguage::Ja { "en" } else { "ja" };
    let mut frame = Frame::anonymous();
    frame.csrf = token.clone();
    let next = next.and_then(super::local_page).unwrap_or("").to_string();
    let page = Login { t, frame, name: name.chars().take(64).collect(), notice, error, other_lang, next };
    let mut resp = (status, html(&page)).into_response();
    resp.headers_mut().append(header::SET_COOKIE, state.staff.cookie(LOGIN_COOKIE, Some(&token)));
    resp
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    // Already signed in: straight to the queue.
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        let now = state.campaign.clock.now();
        if let Ok(Some(_)) = staff::session(&state.store, &state.staff.rules, id, now).await {
            return Redirect::to(after_sign_in(q.next.as_deref())).into_response();
        }
    }
    let language = page_language(q.lang.as_deref());
    let t = i18n::text(language);
    let notice = if q.expired.is_some() {
        Some(t.login_expired)
    } else if q.bye.is_some() {
        Some(t.logged_out)
    } else {
        None
    };
    login_form(&state, StatusCode::OK, language, "", notice, None, q.next.as_deref())
}

#[derive(Deserialize)]
struct LoginFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    lang: Option<String>,
    next: Option<String>,
}

async fn login(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let address = client_address(&parts, &state);
    let language = UiLanguage::Ja;
    let Ok(bytes) = axum::body::to_bytes(body, super::FORM_LIMIT).await else {
        return PageError::BadRequest(language).into_response();
    };
    let Ok(fields) = serde_urlencoded::from_bytes::<LoginFields>(&bytes) else {
        return PageError::BadRequest(language).into_response();
    };
    let language = page_language(fields.lang.as_deref());
    // The form's token must be the one its page set in the cookie: another site cannot sign a
    // browser in to an account of its choosing.
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), fields.csrf.as_bytes()) {
        return PageError::Csrf(language).into_response();
    }
    let t = i18n::text(language);
    let password = SecretString::from(fields.password);
    let now = state.campaign.clock.now();
    let name = fields.name.trim().to_lowercase();
    match staff::sign_in(&state.store, &state.staff.throttle, &state.staff.rules, &name, &password, &address, now).await
    {
        Ok(signed_in) => {
            let mut resp = Redirect::to(after_sign_in(fields.next.as_deref())).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                state.staff.cookie(SESSION_COOKIE, Some(signed_in.session_id.expose_secret())),
            );
            h.append(header::SET_COOKIE, state.staff.cookie(LOGIN_COOKIE, None));
            resp
        }
        Err(SignInError::Refused) => login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            language,
            &name,
            None,
            Some(t.login_failed),
            fields.next.as_deref(),
        ),
        Err(SignInError::Throttled) => {
            let next = fields.next.as_deref();
            login_form(&state, StatusCode::TOO_MANY_REQUESTS, language, &name, None, Some(t.login_throttled), next)
        }
        Err(SignInError::Store(e)) => PageError::internal(language, e).into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A form with nothing but its token.
#[derive(Deserialize)]
struct NoFields {}

async fn logout(State(state): State<AppState>, StaffForm(staff, NoFields {}): StaffForm<NoFields>) -> Response {
    let ended = state.store.users().end_session(&staff.session.session_hash).await;
    if let Err(e) = ended {
        return PageError::internal(staff.user.language, e).into_response();
    }
    if let Err(e) = staff.audit(&state, "logout", "").await {
        return e.into_response();
    }
    let lang = staff.user.language.as_str();
    let mut resp = Redirect::to(&format!("/ui/login?bye=1&lang={lang}")).into_response();
    resp.headers_mut().append(header::SET_COOKIE, state.staff.cookie(SESSION_COOKIE, None));
    resp
}

#[derive(Deserialize)]
struct LanguageFields {
    language: String,
    back: Option<String>,
}

async fn language(
    State(state): State<AppState>,
    StaffForm(staff, form): StaffForm<LanguageFields>,
) -> Result<Response, PageError> {
    let language = UiLanguage::parse(&form.language).map_err(|_| PageError::BadRequest(staff.user.language))?;
    state
        .store
        .users()
        .set_language(staff.user.name.as_str(), language)
        .await
        .map_err(|e| PageError::internal(staff.user.language, e))?;
    staff.audit(&state, "set_language", language.as_str()).await?;
    // Back to the page it was switched on, if it is one of these pages.
    Ok(Redirect::to(form.back.as_deref().and_then(super::local_page).unwrap_or("/ui/")).into_response())
}

// ---------------------------------------------------------------------------------------------
// The queue's home

// ---------------------------------------------------------------------------------------------
// Users

#[derive(Template)]
#[template(path = "ui/users.html")]
struct Users {
    t: &'static Text,
    frame: Frame,
    users: Vec<UserRow>,
    form: AddForm,
    notice: Option<&'static str>,
    row_error: Option<&'static str>,
    roles: Vec<(&'static str, &'static str)>,
    languages: Vec<(&'static str, &'static str)>,
}

struct UserRow {
    name: String,
    role: &'static str,
    language: &'static str,
    disabled: bool,
    is_me: bool,
}

/// The add-user form as sent, with an error next to each field at fault.
#[derive(Default)]
struct AddForm {
    name: String,
    role: String,
    language: String,
    name_error: Option<&'static str>,
    role_error: Option<&'static str>,
    password_error: Option<&'static str>,
}

#[derive(Deserialize)]
struct UsersQuery {
    done: Option<String>,
}

async fn users_page(
    state: &AppState,
    staff: &Staff,
    form: AddForm,
    notice: Option<&'static str>,
    row_error: Option<&'static str>,
) -> Result<Users, PageError> {
    let t = i18n::text(staff.user.language);
    let all = state.store.users().list_users().await.map_err(|e| PageError::internal(staff.user.language, e))?;
    let users = all
        .into_iter()
        .map(|u| UserRow {
            is_me: u.user_id == staff.user.user_id,
            name: u.name.to_string(),
            role: t.role(u.role),
            language: t.language(u.language),
            disabled: u.disabled,
        })
        .collect();
    let roles = Role::ALL.iter().rev().map(|r| (r.as_str(), t.role(*r))).collect();
    let languages = UiLanguage::ALL.iter().map(|l| (l.as_str(), t.language(*l))).collect();
    Ok(Users { t, frame: Frame::of(staff, "/ui/users"), users, form, notice, row_error, roles, languages })
}

async fn users(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<UsersQuery>,
) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    let t = i18n::text(staff.user.language);
    let notice = match q.done.as_deref() {
        Some("added") => Some(t.user_added),
        Some("disabled") => Some(t.user_disabled),
        Some("password") => Some(t.password_reset),
        _ => None,
    };
    let form = AddForm { role: "nurse".into(), language: "ja".into(), ..AddForm::default() };
    Ok(html(&users_page(&state, &staff, form, notice, None).await?))
}

#[derive(Deserialize)]
struct AddFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    password: String,
}

fn password_error(t: &'static Text, e: &PasswordError) -> &'static str {
    match e {
        PasswordError::TooShort => t.err_password_short,
        PasswordError::TooLong => t.err_password_long,
    }
}

async fn add_user(
    State(state): State<AppState>,
    StaffForm(staff, f): StaffForm<AddFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    let t = i18n::text(staff.user.language);
    let mut form = AddForm { name: f.name.trim().to_owned(), role: f.role, language: f.language, ..AddForm::default() };
    let name = UserName::parse(&form.name);
    let role = Role::parse(&form.role);
    let language = UiLanguage::parse(&form.language).unwrap_or(UiLanguage::Ja);
    form.name_error = name.is_err().then_some(t.err_name);
    form.role_error = role.is_err().then_some(t.err_role);
    form.password_error = staff::check_new_password(&f.password).err().map(|e| password_error(t, &e));
    if let (Ok(name), Ok(role), None) = (&name, role, form.password_error) {
        let password = SecretString::from(f.password);
        match staff::add_user(&state.store, name, role, language, &password).await {
            Ok(_) => {
                staff.audit(&state, "add_user", name.as_str()).await?;
                return Ok(Redirect::to("/ui/users?done=added").into_response());
            }
            Err(AccountError::Exists(_)) => form.name_error = Some(t.err_name_taken),
            Err(AccountError::Password(e)) => form.password_error = Some(password_error(t, &e)),
            Err(e) => return Err(PageError::internal(staff.user.language, e)),
        }
    }
    let page = users_page(&state, &staff, form, None, None).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
}

async fn disable_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    StaffForm(staff, NoFields {}): StaffForm<NoFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    let t = i18n::text(staff.user.language);
    // An admin cannot lock themselves out (the last admin would leave nobody to manage users).
    if name == staff.user.name.as_str() {
        let page = users_page(&state, &staff, AddForm::default(), None, Some(t.err_disable_self)).await?;
        return Ok((StatusCode::CONFLICT, html(&page)).into_response());
    }
    let disabled = match UserName::parse(&name) {
        Ok(n) => staff::disable_user(&state.store, &n).await.map(|()| n),
        Err(_) => Err(AccountError::Unknown(name.clone())),
    };
    match disabled {
        Ok(n) => {
            staff.audit(&state, "disable_user", n.as_str()).await?;
            Ok(Redirect::to("/ui/users?done=disabled").into_response())
        }
        Err(AccountError::Unknown(_)) => {
            let page = users_page(&state, &staff, AddForm::default(), None, Some(t.err_unknown_user)).await?;
            Ok((StatusCode::NOT_FOUND, html(&page)).into_response())
        }
        Err(e) => Err(PageError::internal(staff.user.language, e)),
    }
}

#[derive(Deserialize)]
struct PasswordFields {
    #[serde(default)]
    password: String,
}

async fn reset_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
    StaffForm(staff, f): StaffForm<PasswordFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    let t = i18n::text(staff.user.language);
    let password = SecretString::from(f.password);
    let changed = match UserName::parse(&name) {
        Ok(n) => staff::set_password(&state.store, &n, &password).await.map(|()| n),
        Err(_) => Err(AccountError::Unknown(name.clone())),
    };
    let (status, error) = match changed {
        Ok(n) => {
            staff.audit(&state, "reset_password", n.as_str()).await?;
            return Ok(Redirect::to("/ui/users?done=password").into_response());
        }
        Err(AccountError::Unknown(_)) => (StatusCode::NOT_FOUND, t.err_unknown_user),
        Err(AccountError::Password(e)) => (StatusCode::UNPROCESSABLE_ENTITY, password_error(t, &e)),
        Err(e) => return Err(PageError::internal(staff.user.language, e)),
    };
    let page = users_page(&state, &staff, AddForm::default(), None, Some(error)).await?;
    Ok((status, html(&page)).into_response())
}

// ---------------------------------------------------------------------------------------------
// The audit log

/// Rows the page shows; the CSV export has them all, up to [`EXPORT_ROWS`].
const PAGE_ROWS: usize = 500;
const EXPORT_ROWS: usize = 1_000_000;

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct Audit {
    t: &'static Text,
    frame: Frame,
    rows: Vec<AuditRow>,
}

struct AuditRow {
    at: String,
    action_label: &'static str,
    actor: String,
    action: String,
    target: String,
    address: String,
}

async fn audit(State(state): State<AppState>, staff: Staff) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    staff.audit(&state, "view_audit", "").await?;
    let entries =
        state.store.users().audit_rows(PAGE_ROWS).await.map_err(|e| PageError::internal(staff.user.language, e))?;
    let tz = state.turns.issuer.tz;
    let t = i18n::text(staff.user.language);
    let rows = entries
        .into_iter()
        .map(|e| AuditRow {
            at: e.at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string(),
            action_label: t.action(&e.action),
            actor: e.actor,
            action: e.action,
            target: e.target,
            address: e.address,
        })
        .collect();
    Ok(html(&Audit { t, frame: Frame::of(&staff, "/ui/audit"), rows }))
}

async fn audit_csv(State(state): State<AppState>, staff: Staff) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    staff.audit(&state, "export_audit", "").await?;
    let language = staff.user.language;
    let entries = state.store.users().audit_rows(EXPORT_ROWS).await.map_err(|e| PageError::internal(language, e))?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>| -> csv::Result<()> {
        out.write_record(["at", "actor", "action", "target", "address"])?;
        for e in &entries {
            let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            // A cell a spreadsheet would run as a formula is quoted with a leading apostrophe.
            let cells = [at.as_str(), &e.actor, &e.action, &e.target, &e.address].map(spreadsheet_safe);
            out.write_record(&cells)?;
        }
        out.flush()?;
        Ok(())
    };
    write(&mut out).map_err(|e| PageError::internal(language, e))?;
    let body = out.into_inner().map_err(|e| PageError::internal(language, e))?;
    let name = format!("attachment; filename=\"ivr-audit-{}.csv\"", state.campaign.clock.now().format("%Y%m%d"));
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, name)], body)
        .into_response())
}

/// A cell that starts like a formula (`=`, `+`, `-`, `@`), prefixed with `'` so a spreadsheet
/// shows it as text.
fn spreadsheet_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_a_spreadsheet_would_run_as_a_formula_is_kept_as_text() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+81"), "'+81");
        assert_eq!(spreadsheet_safe("-1"), "'-1");
        assert_eq!(spreadsheet_safe("@sum"), "'@sum");
        assert_eq!(spreadsheet_safe("sato"), "sato");
        assert_eq!(spreadsheet_safe(""), "");
    }

    #[test]
    fn every_audit_action_the_pages_write_has_a_name_in_both_languages() {
        for code in [
            "login",
            "login_failed",
            "login_throttled",
            "logout",
            "add_user",
            "disable_user",
            "reset_password",
            "set_language",
            "view_audit",
            "export_audit",
            "csrf_refused",
            "view_patient",
            "view_patient_calls",
            "view_roster",
            "view_followups",
            "claim_followup",
            "release_followup",
            "close_followup",
            "refused_followup",
            "view_queue",
            "followup_claim",
            "followup_release",
            "followup_close",
            "followup_refused",
            "view_patient",
            "view_patients",
            "issue_number",
            "call_now",
            "edit_patient",
            "edit_patient_refused",
            "view_tokens",
            "add_token",
            "revoke_token",
        ] {
            assert!(!i18n::JA.action(code).is_empty() && !i18n::EN.action(code).is_empty(), "{code}");
        }
    }
}
