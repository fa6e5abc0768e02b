//! The staff pages as a person uses them, in Chromium.

use chrono::{Duration, Utc};
use fantoccini::Locator;
use ivr::scheduler::clock::Clock;
use ivr::types::Role;

use crate::common::app::{TestApp, settings, spawn_app_at, sqlite_url};
use crate::common::browser::Browser;
use crate::common::staff::{PASSWORD, add_user};

/// A server reached over plain HTTP on 127.0.0.1 (so its cookies are not `Secure`), on a
/// clock of the test's.
async fn app() -> (TestApp, Clock) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.server.public_url = None;
    let clock = Clock::manual(Utc::now());
    let app = spawn_app_at(s, dir, clock.clone()).await;
    add_user(&app.store, "abe", Role::Admin).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    add_user(&app.store, "ito", Role::Viewer).await;
    (app, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_several_are_throttled_and_the_right_one_signs_in_and_out() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let (app, _) = app().await;
    b.sign_in(&app.addr, "sato", "not the password").await;
    assert_eq!(b.path().await, "/ui/login");
    let alert = b.client.find(Locator::Css("[role=alert]")).await.unwrap().text().await.unwrap();
    assert_eq!(alert, "ユーザー名またはパスワードが正しくありません。");
    let invalid = b.client.find(Locator::Id("password")).await.unwrap().attr("aria-invalid").await.unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    b.sign_in(&app.addr, "sato", PASSWORD).await;
    assert_eq!(b.path().await, "/ui/");
    assert!(b.client.title().await.unwrap().starts_with("要フォロー"));
    assert!(b.main_text().await.contains("現在、対応が必要な患者さんはいません。"));
    b.click("form[action='/ui/logout'] button").await;
    assert_eq!(b.path().await, "/ui/login?bye=1&lang=ja");
    assert!(b.main_text().await.contains("ログアウトしました。"));
    b.goto(&format!("{}/ui/", app.addr)).await;
    assert_eq!(b.path().await, "/ui/login", "signed out: back to the sign-in page");

    for _ in 0..4 {
        b.sign_in(&app.addr, "ito", "wrong wrong wrong").await;
    }
    b.sign_in(&app.addr, "ito", PASSWORD).await;
    assert_eq!(b.path().await, "/ui/", "five attempts are allowed: {}", b.main_text().await);
    b.click("form[action='/ui/logout'] button").await;
    b.sign_in(&app.addr, "ito", PASSWORD).await;
    assert_eq!(b.path().await, "/ui/login", "the sixth waits");
    let alert = b.client.find(Locator::Css("[role=alert]")).await.unwrap().text().await.unwrap();
    assert!(alert.starts_with("ログインの試行が多すぎます"), "{alert}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_refused_and_sends_the_browser_to_sign_in_again() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let (app, clock) = app().await;
    b.sign_in(&app.addr, "sato", PASSWORD).await;
    assert_eq!(b.path().await, "/ui/");
    clock.advance(Duration::minutes(31));
    b.goto(&format!("{}/ui/", app.addr)).await;
    assert_eq!(b.path().await, "/ui/login?expired=1");
    assert!(b.main_text().await.contains("一定時間操作がなかったため、ログアウトしました。"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_with_a_missing_or_forged_token_is_refused_and_changes_nothing() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let (app, _) = app().await;
    b.sign_in(&app.addr, "abe", PASSWORD).await;
    for token in [None, Some("forged0123456789forged0123456789")] {
        b.goto(&format!("{}/ui/users", app.addr)).await;
        let field = b.client.find(Locator::Css("form[action='/ui/users'] input[name=csrf]")).await.unwrap();
        // As a page from elsewhere would post it: the token gone, or made up.
        let script = match token {
            None => "arguments[0].remove()".to_owned(),
            Some(t) => format!("arguments[0].value = '{t}'"),
        };
        b.client.execute(&script, vec![serde_json::to_value(&field).unwrap()]).await.unwrap();
        b.fill("new-name", "mallory").await;
        b.fill("new-password", "mallory's password").await;
        b.click("form[action='/ui/users'] button[type=submit]").await;
        assert!(b.main_text().await.contains("フォームの有効期限が切れました"), "{token:?}");
        assert!(app.store.users().user("mallory").await.unwrap().is_none(), "nothing added");
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_cannot_reach_an_admin_page() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let (app, _) = app().await;
    b.sign_in(&app.addr, "ito", PASSWORD).await;
    let nav = b.client.find(Locator::Css("nav.main")).await.unwrap().text().await.unwrap();
    assert!(!nav.contains("ユーザー管理") && !nav.contains("監査ログ"), "{nav}");
    for path in ["/ui/users", "/ui/audit"] {
        b.goto(&format!("{}{path}", app.addr)).await;
        assert!(b.main_text().await.contains("権限がありません"), "{path}");
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_user_who_signs_in_in_english_and_the_audit_log_has_the_rows() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let (app, _) = app().await;
    b.sign_in(&app.addr, "abe", PASSWORD).await;
    b.click("nav.main a[href='/ui/users']").await;
    assert_eq!(b.path().await, "/ui/users");
    // A mistake first: the error is next to its field, and what was typed stays.
    b.fill("new-name", "tanaka").await;
    b.fill("new-password", "short").await;
    b.click("form[action='/ui/users'] button[type=submit]").await;
    let error = b.client.find(Locator::Id("new-password-error")).await.unwrap().text().await.unwrap();
    assert_eq!(error, "パスワードは12文字以上にしてください。");
    let kept = b.client.find(Locator::Id("new-name")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("tanaka"));
    b.client.find(Locator::Id("new-role")).await.unwrap().select_by_value("viewer").await.unwrap();
    b.client.find(Locator::Id("new-language")).await.unwrap().select_by_value("en").await.unwrap();
    b.fill("new-password", "tanaka's password").await;
    b.click("form[action='/ui/users'] button[type=submit]").await;
    assert_eq!(b.path().await, "/ui/users?done=added");
    assert!(b.main_text().await.contains("ユーザーを追加しました"));
    let table = b.client.find(Locator::Css("table")).await.unwrap().text().await.unwrap();
    assert!(table.contains("tanaka") && table.contains("閲覧者"), "{table}");
    b.click("nav.main a[href='/ui/audit']").await;
    let audit = b.main_text().await;
    for row in ["add_user", "tanaka", "login", "127.0.0.1"] {
        assert!(audit.contains(row), "{row} in {audit}");
    }
    b.click("form[action='/ui/logout'] button").await;

    b.sign_in(&app.addr, "tanaka", "tanaka's password").await;
    assert_eq!(b.path().await, "/ui/");
    assert!(b.client.title().await.unwrap().starts_with("Needs follow-up"));
    assert!(b.main_text().await.contains("No patient needs a person right now."));
    // The language switch is a button; the page comes back in Japanese.
    b.click("form[action='/ui/language'] button").await;
    assert!(b.main_text().await.contains("現在、対応が必要な患者さんはいません。"));
    let rows = app.store.users().audit_rows(100).await.unwrap();
    assert!(rows.iter().any(|r| r.actor == "abe" && r.action == "add_user" && r.target == "tanaka"));
    assert!(rows.iter().any(|r| r.actor == "tanaka" && r.action == "set_language" && r.target == "ja"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_usable_by_keyboard_with_labelled_fields() {
    let Some(b) = Browser::start(390, 844).await else { return };
    let (app, _) = app().await;
    b.goto(&format!("{}/ui/login", app.addr)).await;
    // Every input but the hidden ones has a label.
    let unlabelled = b
        .client
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select')].filter(i => i.labels.length === 0).length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, serde_json::json!(0));
    // The skip link comes first in the tab order; Enter in the password field signs in.
    let first = b
        .client
        .execute("return document.querySelector('a[href], button, input:not([type=hidden]), select').className", vec![])
        .await
        .unwrap();
    assert_eq!(first, serde_json::json!("skip"));
    b.fill("name", "sato").await;
    b.fill("password", PASSWORD).await;
    b.client.execute("window.__ivr_previous_page = true", vec![]).await.unwrap();
    // Enter in the password field submits the form.
    b.client.find(Locator::Id("password")).await.unwrap().send_keys("\u{E007}").await.unwrap();
    b.client.wait().for_url(&url::Url::parse(&format!("{}/ui/", app.addr)).unwrap()).await.unwrap();
    assert_eq!(b.path().await, "/ui/");
    b.close().await;
}
