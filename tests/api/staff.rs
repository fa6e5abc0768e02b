//! The staff pages' security rules over plain HTTP: no page or action without a session, a
//! session cookie that scripts and other sites cannot use, a synchronizer token on every form,
//! roles, idle expiry, sign-in throttling, nothing secret stored in clear, and the audit log.

use std::process::{Command, Stdio};

use chrono::{Duration, Utc};
use ivr::scheduler::clock::Clock;
use ivr::types::Role;
use sha2::{Digest, Sha256};

use crate::common::app::*;
use crate::common::staff::{PASSWORD, Page, add_user, csrf_of};

/// Every page and every action of `/ui/` but the sign-in page and the stylesheet.
const PAGES: [&str; 5] = ["/ui/", "/ui/users", "/ui/audit", "/ui/audit.csv", "/ui/users?done=added"];
const ACTIONS: [&str; 5] =
    ["/ui/logout", "/ui/language", "/ui/users", "/ui/users/sato/disable", "/ui/users/sato/password"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_action_refuses_an_anonymous_request() {
    let app = spawn_app().await;
    add_user(&app.store, "sato", Role::Nurse).await;
    let page = Page::new(&app.addr);
    for path in PAGES {
        let a = page.get(path).await;
        // Signing in leads back to the page asked for (the queue needs no `next`).
        let back: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        let to = if path == "/ui/" { "/ui/login".to_string() } else { format!("/ui/login?next={back}") };
        assert_eq!((a.status, a.location.as_deref()), (303, Some(to.as_str())), "GET {path}");
    }
    for path in ACTIONS {
        let a = page.post(path, &[("csrf", "x"), ("password", "a new password 123"), ("language", "en")]).await;
        assert_eq!(a.status, 403, "POST {path}");
        assert!(a.body.contains("lang=\"ja\"") && a.body.contains("ログインしていないか"), "{}", a.body);
    }
    // A made-up session id is no session either.
    let mut forged = Page::new(&app.addr);
    forged.session = Some("00".repeat(32));
    assert_eq!(forged.get("/ui/").await.status, 303);
    assert_eq!(forged.post("/ui/logout", &[]).await.status, 403);
    assert!(!app.store.users().user("sato").await.unwrap().unwrap().disabled);
    assert_eq!(page.get("/ui/login").await.status, 200);
    let css = page.get("/ui/style.css").await;
    assert!(css.status == 200 && css.body.contains(":focus-visible"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_http_only_strict_under_ui_secure_and_stored_only_as_a_hash() {
    let app = spawn_app().await; // its public URL is https
    add_user(&app.store, "sato", Role::Nurse).await;
    let mut page = Page::new(&app.addr);
    let a = page.sign_in("sato", PASSWORD).await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/ui/")));
    let cookie = a.cookies.iter().find(|c| c.starts_with("ivr_session=")).unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    let id = page.session.clone().unwrap();
    assert!(id.len() >= 32, "at least 128 bits");
    assert!(app.store.users().session(&id).await.unwrap().is_none(), "the id is not a key");
    let hash = hex::encode(Sha256::digest(id.as_bytes()));
    assert!(app.store.users().session(&hash).await.unwrap().is_some());
    let home = page.get("/ui/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("要フォロー") && home.body.contains("sato"));
    for h in ["content-security-policy", "x-frame-options"] {
        let resp = reqwest::get(format!("{}/ui/login", app.addr)).await.unwrap();
        assert!(resp.headers().contains_key(h), "{h}");
    }
    // Neither the password nor the session id is anywhere in the database's files.
    for file in ["ivr.db", "ivr.db-wal"] {
        let bytes = std::fs::read(app._dir.path().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(PASSWORD), "the password in {file}");
        assert!(!text.contains(&id), "the session id in {file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_forged_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    add_user(&app.store, "abe", Role::Admin).await;
    let mut page = Page::new(&app.addr);
    page.sign_in("abe", PASSWORD).await;
    let form = [("name", "mallory"), ("role", "admin"), ("language", "ja"), ("password", "a long password 1")];
    let missing = page.post("/ui/users", &form).await;
    assert_eq!(missing.status, 403);
    assert!(missing.body.contains("フォームの有効期限が切れました"), "{}", missing.body);
    let mut forged = vec![("csrf", "0123456789abcdef0123456789abcdef")];
    forged.extend_from_slice(&form);
    assert_eq!(page.post("/ui/users", &forged).await.status, 403);
    // Another session's token is not this one's.
    let mut other = Page::new(&app.addr);
    other.sign_in("abe", PASSWORD).await;
    let theirs = csrf_of(&other.get("/ui/users").await.body);
    let mut stolen = vec![("csrf", theirs.as_str())];
    stolen.extend_from_slice(&form);
    assert_eq!(page.post("/ui/users", &stolen).await.status, 403);
    assert_eq!(page.post("/ui/logout", &[]).await.status, 403);
    assert!(app.store.users().user("mallory").await.unwrap().is_none(), "nothing was added");
    assert_eq!(page.get("/ui/").await.status, 200, "still signed in");
    // With its own token, the same form is accepted.
    let ok = page.submit("/ui/users", "/ui/users", &form).await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/ui/users?done=added")));
    assert!(app.store.users().user("mallory").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_or_a_nurse_cannot_reach_the_admin_pages_or_actions() {
    let app = spawn_app().await;
    add_user(&app.store, "ito", Role::Viewer).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    for name in ["ito", "sato"] {
        let mut page = Page::new(&app.addr);
        page.sign_in(name, PASSWORD).await;
        assert_eq!(page.get("/ui/").await.status, 200);
        for path in ["/ui/users", "/ui/audit", "/ui/audit.csv"] {
            let a = page.get(path).await;
            assert_eq!(a.status, 403, "{name}: GET {path}");
            assert!(a.body.contains("権限がありません"), "{}", a.body);
        }
        let home = page.get("/ui/").await.body;
        assert!(!home.contains("/ui/users"), "no link to a page {name} cannot open");
        let add = [("name", "eve"), ("role", "admin"), ("language", "ja"), ("password", "a long password 1")];
        assert_eq!(page.submit("/ui/", "/ui/users", &add).await.status, 403);
        assert_eq!(
            page.submit("/ui/", &format!("/ui/users/{name}/password"), &[("password", "x".repeat(20).as_str())])
                .await
                .status,
            403
        );
    }
    assert!(app.store.users().user("eve").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_so_does_a_disabled_users() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(Utc::now());
    let app = spawn_app_at(settings(&sqlite_url(dir.path())), dir, clock.clone()).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    add_user(&app.store, "abe", Role::Admin).await;
    let mut page = Page::new(&app.addr);
    page.sign_in("sato", PASSWORD).await;
    clock.advance(Duration::minutes(29));
    assert_eq!(page.get("/ui/").await.status, 200, "used within 30 minutes");
    clock.advance(Duration::minutes(29));
    assert_eq!(page.get("/ui/").await.status, 200, "each use starts the 30 minutes again");
    let token = csrf_of(&page.get("/ui/").await.body);
    clock.advance(Duration::minutes(31));
    let a = page.get("/ui/").await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/ui/login?expired=1")));
    assert_eq!(page.post("/ui/logout", &[("csrf", &token)]).await.status, 403);
    let login = page.get("/ui/login?expired=1").await.body;
    assert!(login.contains("一定時間操作がなかったため"), "{login}");

    page.sign_in("sato", PASSWORD).await;
    assert_eq!(page.get("/ui/").await.status, 200);
    let mut admin = Page::new(&app.addr);
    admin.sign_in("abe", PASSWORD).await;
    let a = admin.submit("/ui/users", "/ui/users/sato/disable", &[]).await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/ui/users?done=disabled")));
    assert_eq!(page.get("/ui/").await.status, 303, "disabling ends the session");
    assert_eq!(page.sign_in("sato", PASSWORD).await.status, 401, "and a disabled user cannot sign in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer_and_several_are_throttled() {
    let app = spawn_app().await;
    add_user(&app.store, "sato", Role::Nurse).await;
    let mut page = Page::new(&app.addr);
    let wrong = page.sign_in("sato", "not the password!").await;
    let unknown = page.sign_in("nobody", "not the password!").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    let message = "ユーザー名またはパスワードが正しくありません。";
    assert!(wrong.body.contains(message) && unknown.body.contains(message));
    assert!(page.session.is_none());
    for _ in 0..4 {
        assert_eq!(page.sign_in("sato", "still not it!!").await.status, 401);
    }
    // Five attempts on the account: the sixth waits, even with the right password.
    let throttled = page.sign_in("sato", PASSWORD).await;
    assert_eq!(throttled.status, 429);
    assert!(throttled.body.contains("ログインの試行が多すぎます"), "{}", throttled.body);
    assert!(page.session.is_none());
    // A sign-in form without its cookie's token is refused before any password is checked.
    let bare = page.post("/ui/login", &[("csrf", "x"), ("name", "sato"), ("password", PASSWORD)]).await;
    assert_eq!(bare.status, 403);
    let rows = app.store.users().audit_rows(100).await.unwrap();
    let failed = rows.iter().filter(|r| r.action == "login_failed").count();
    assert_eq!(failed, 6);
    assert!(rows.iter().any(|r| r.action == "login_throttled" && r.actor == "sato" && r.address == "127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_leaves_an_audit_row_that_an_admin_reads_and_exports() {
    let app = spawn_app().await;
    add_user(&app.store, "abe", Role::Admin).await;
    let mut page = Page::new(&app.addr);
    page.sign_in("abe", PASSWORD).await;
    let add = [("name", "tanaka"), ("role", "viewer"), ("language", "en"), ("password", "tanaka's password")];
    assert_eq!(page.submit("/ui/users", "/ui/users", &add).await.status, 303);
    let short =
        page.submit("/ui/users", "/ui/users", &[("name", "Bad Name"), ("role", "nurse"), ("password", "short")]).await;
    assert_eq!(short.status, 422);
    assert!(
        short.body.contains("パスワードは12文字以上にしてください。")
            && short.body.contains("ユーザー名は半角英小文字")
    );
    let taken = page.submit("/ui/users", "/ui/users", &add).await;
    assert!(taken.status == 422 && taken.body.contains("このユーザー名はすでに使われています。"));
    let reset = [("password", "a brand new password")];
    assert_eq!(page.submit("/ui/users", "/ui/users/tanaka/password", &reset).await.status, 303);
    assert_eq!(page.submit("/ui/users", "/ui/users/tanaka/disable", &[]).await.status, 303);
    assert_eq!(
        page.submit("/ui/", "/ui/language", &[("language", "en"), ("back", "/ui/users")]).await.location.as_deref(),
        Some("/ui/users")
    );
    let own = page.submit("/ui/users", "/ui/users/abe/disable", &[]).await;
    assert!(own.status == 409 && own.body.contains("You cannot disable your own account"), "{}", own.body);
    assert!(!app.store.users().user("abe").await.unwrap().unwrap().disabled);
    let audit = page.get("/ui/audit").await;
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains("Audit log") && audit.body.contains("lang=\"en\""), "now in English");
    let csv = page.get("/ui/audit.csv").await;
    assert_eq!(csv.status, 200);
    let mut lines = csv.body.lines();
    assert_eq!(lines.next(), Some("at,actor,action,target,address"));
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    let actions: Vec<(&str, &str, &str)> =
        rows.iter().rev().map(|r| (r[1].as_str(), r[2].as_str(), r[3].as_str())).collect();
    assert_eq!(
        actions,
        [
            ("abe", "login", ""),
            ("abe", "add_user", "tanaka"),
            ("abe", "reset_password", "tanaka"),
            ("abe", "disable_user", "tanaka"),
            ("abe", "view_queue", "active"),
            ("abe", "set_language", "en"),
            ("abe", "view_audit", ""),
            ("abe", "export_audit", ""),
        ]
    );
    assert!(rows.iter().all(|r| r[4] == "127.0.0.1"), "{rows:?}");
    let user = app.store.users().user("tanaka").await.unwrap().unwrap();
    assert!(user.disabled && ivr::staff::verify_password(&user.password_hash, "a brand new password"));
}

/// `ivr users …` with the password on standard input.
fn ivr_users(db: &str, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("users")
        .args(args)
        .env("IVR_DATABASE__URL", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused before it reads the password has closed its input already.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_users_adds_lists_resets_and_disables_accounts_that_sign_in() {
    let app = spawn_app().await;
    let db = sqlite_url(app._dir.path());
    let (ok, out) = ivr_users(&db, &["add", "sato", "--role", "nurse"], "a password long enough\n");
    assert!(ok, "{out}");
    let (ok, out) = ivr_users(&db, &["add", "sato", "--role", "admin", "--password-stdin"], "another long password\n");
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = ivr_users(&db, &["add", "suzuki", "--role", "viewer"], "short\n");
    assert!(!ok && out.contains("at least 12"), "{out}");
    let (ok, out) = ivr_users(&db, &["add", "Suzuki", "--role", "viewer"], "a password long enough\n");
    assert!(!ok && out.contains("not a user name"), "{out}");
    let (ok, out) = ivr_users(&db, &["add", "suzuki", "--role", "boss"], "a password long enough\n");
    assert!(!ok && out.contains("invalid value 'boss'"), "{out}");
    let mut page = Page::new(&app.addr);
    assert_eq!(page.sign_in("sato", "a password long enough").await.status, 303);
    let (ok, out) = ivr_users(&db, &["passwd", "sato"], "the second password\n");
    assert!(ok, "{out}");
    assert_eq!(page.get("/ui/").await.status, 303, "a new password ends the sessions");
    let mut page = Page::new(&app.addr);
    assert_eq!(page.sign_in("sato", "the second password").await.status, 303);
    let (ok, out) = ivr_users(&db, &["list"], "");
    assert!(ok && out.contains("sato") && out.contains("nurse") && out.contains("active"), "{out}");
    let (ok, out) = ivr_users(&db, &["disable", "sato"], "");
    assert!(ok, "{out}");
    assert_eq!(page.get("/ui/").await.status, 303);
    let (_, out) = ivr_users(&db, &["list"], "");
    assert!(out.contains("disabled"), "{out}");
    let rows = app.store.users().audit_rows(100).await.unwrap();
    assert!(rows.iter().any(|r| r.action == "add_user" && r.actor.starts_with("cli") && r.target == "sato"));
}
