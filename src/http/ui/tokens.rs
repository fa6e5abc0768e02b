//! API tokens for administrators (`/ui/tokens`): the list (name, scopes, created, last used,
//! revoked), a new token with its scopes (shown once: the store keeps a hash), and revoking
//! one. The same store functions as `ivr tokens`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde::Deserialize;

use super::i18n::{self, Text};
use super::pages::{Frame, html};
use super::{PageError, Staff, StaffForm};
use crate::http::AppState;
use crate::store::{Revoke, StoreError};
use crate::types::{Role, Scope, Scopes};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/ui/tokens", get(tokens).post(add)).route("/ui/tokens/{name}/revoke", post(revoke))
}

#[derive(Template)]
#[template(path = "ui/tokens.html")]
struct Tokens {
    t: &'static Text,
    frame: Frame,
    rows: Vec<Row>,
    scopes: Vec<(&'static str, &'static str)>,
    name: String,
    name_error: Option<&'static str>,
    scope_error: Option<&'static str>,
    created: Option<(String, String)>,
    notice: Option<&'static str>,
}

struct Row {
    name: String,
    scopes: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

fn scope_words(t: &Text, s: Scope) -> &'static str {
    match s.as_str() {
        "verify" => t.say(
            "verify（連絡アプリのサーバー: 番号の確認のみ）",
            "verify (the contact app's server: checks numbers only)",
        ),
        "issue" => t.say("issue（処理番号の発行）", "issue (issue processing numbers)"),
        "import" => t.say("import（名簿の取り込み）", "import (roster import)"),
        "read" => t.say("read（患者・通話・要フォローの閲覧）", "read (patients, calls, the queue)"),
        _ => t.say("followup（要フォローの対応）", "followup (work the queue)"),
    }
}

async fn page(state: &AppState, staff: &Staff, mut form: Tokens) -> Result<Tokens, PageError> {
    let language = staff.user.language;
    let tz = state.turns.issuer.tz;
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".to_string(), |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
    };
    let list = state.store.numbers().tokens().await.map_err(|e| PageError::internal(language, e))?;
    form.rows = list
        .into_iter()
        .map(|k| Row {
            name: k.name,
            scopes: k.scopes.to_string(),
            created: time(Some(k.created_at)),
            last_used: time(k.last_used_at),
            revoked: k.revoked_at.map(|r| time(Some(r))),
        })
        .collect();
    Ok(form)
}

fn empty(staff: &Staff) -> Tokens {
    let t = i18n::text(staff.user.language);
    Tokens {
        t,
        frame: Frame::of(staff, "/ui/tokens"),
        rows: Vec::new(),
        scopes: Scope::ALL.iter().map(|s| (s.as_str(), scope_words(t, *s))).collect(),
        name: String::new(),
        name_error: None,
        scope_error: None,
        created: None,
        notice: None,
    }
}

#[derive(Deserialize)]
struct TokensQuery {
    done: Option<String>,
}

async fn tokens(
    State(state): State<AppState>,
    staff: Staff,
    axum::extract::Query(q): axum::extract::Query<TokensQuery>,
) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    staff.audit(&state, "view_tokens", "").await?;
    let mut form = empty(&staff);
    if q.done.as_deref() == Some("revoked") {
        form.notice = Some(form.t.say("トークンを失効させました。", "The token was revoked."));
    }
    Ok(html(&page(&state, &staff, form).await?))
}

async fn add(
    State(state): State<AppState>,
    StaffForm(staff, fields): StaffForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    let language = staff.user.language;
    let mut form = empty(&staff);
    let t = form.t;
    form.name = fields.iter().find(|(k, _)| k == "name").map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    let chosen: Vec<Scope> =
        fields.iter().filter(|(k, _)| k == "scope").filter_map(|(_, v)| Scope::parse(v).ok()).collect();
    if form.name.is_empty() || form.name.chars().count() > 100 || form.name.chars().any(char::is_control) {
        form.name_error =
            Some(t.say("名前を入力してください（100文字まで）。", "Give it a name (up to 100 characters)."));
    }
    let scopes = Scopes::of(&chosen);
    if scopes.is_none() {
        form.scope_error = Some(t.say("権限を1つ以上選んでください。", "Choose at least one scope."));
    }
    if let (Some(scopes), None) = (scopes, form.name_error) {
        let bytes: [u8; 24] = rand::rng().random();
        let token = format!("ivr_{}", hex::encode(bytes));
        match state.store.numbers().add_token(&form.name, &crate::http::api::token_hash(&token), scopes).await {
            Ok(()) => {
                staff.audit(&state, "add_token", &format!("{} {scopes}", form.name)).await?;
                form.created = Some((form.name.clone(), token));
                form.name.clear();
                return Ok(html(&page(&state, &staff, form).await?));
            }
            Err(StoreError::Duplicate(_)) => {
                form.name_error = Some(t.say("この名前はすでに使われています。", "This name is taken."));
            }
            Err(e) => return Err(PageError::internal(language, e)),
        }
    }
    let page = page(&state, &staff, form).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
}

#[derive(Deserialize)]
struct NoFields {}

async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    StaffForm(staff, NoFields {}): StaffForm<NoFields>,
) -> Result<Response, PageError> {
    staff.require(Role::can_manage)?;
    let language = staff.user.language;
    let now = state.campaign.clock.now();
    match state.store.numbers().revoke_token(&name, now).await.map_err(|e| PageError::internal(language, e))? {
        Revoke::Revoked | Revoke::AlreadyRevoked => {
            staff.audit(&state, "revoke_token", &name).await?;
            Ok(Redirect::to("/ui/tokens?done=revoked").into_response())
        }
        Revoke::Unknown => Err(PageError::BadRequest(language)),
    }
}
