//! Every staff page and every action, one table for all: each refuses an anonymous request, a
//! session that expired, a missing or forged synchronizer token, and a role below its own,
//! and a refused action changes nothing. Passwords and session ids never reach the logs of
//! `ivr serve`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use chrono::{Duration, Utc};
use ivr::scheduler::clock::Clock;
use ivr::store::NewAlert;
use ivr::types::{Role, Severity};

use crate::common::app::*;
use crate::common::patients::patient;
use crate::common::staff::{PASSWORD, Page, add_user, csrf_of};

/// The pages: path, and the least role that reads it.
fn pages() -> Vec<(String, Role)> {
    [
        ("/ui/", Role::Viewer),
        ("/ui/patients", Role::Viewer),
        ("/ui/patients/P001", Role::Viewer),
        ("/ui/users", Role::Admin),
        ("/ui/audit", Role::Admin),
        ("/ui/audit.csv", Role::Admin),
        ("/ui/tokens", Role::Admin),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_string(), r))
    .collect()
}

/// A form's fields.
type Fields = Vec<(&'static str, &'static str)>;

/// The actions: path, a form that would succeed with a valid token, and the least role.
fn actions(item: i64) -> Vec<(String, Fields, Role)> {
    vec![
        (format!("/ui/followups/{item}/claim"), vec![], Role::Nurse),
        (format!("/ui/followups/{item}/release"), vec![], Role::Nurse),
        (format!("/ui/followups/{item}/close"), vec![("outcome", "visited"), ("note", "訪問")], Role::Nurse),
        ("/ui/patients/P001/issue".into(), vec![("send", "sms"), ("consent", "yes")], Role::Nurse),
        ("/ui/patients/P001/call".into(), vec![], Role::Nurse),
        (
            "/ui/patients/P001/edit".into(),
            vec![("phone", "+819011112222"), ("email", ""), ("language", "ja-JP"), ("slot", "")],
            Role::Nurse,
        ),
        (
            "/ui/users".into(),
            vec![("name", "mallory"), ("role", "admin"), ("language", "ja"), ("password", "a long password 1")],
            Role::Admin,
        ),
        ("/ui/users/kato/disable".into(), vec![], Role::Admin),
        ("/ui/users/kato/password".into(), vec![("password", "another long password")], Role::Admin),
        ("/ui/tokens".into(), vec![("name", "tool"), ("scope", "read")], Role::Admin),
        ("/ui/tokens/contact-app/revoke".into(), vec![], Role::Admin),
        ("/ui/language".into(), vec![("language", "en")], Role::Viewer),
        ("/ui/logout".into(), vec![], Role::Viewer),
    ]
}

/// Everything a refused action could have changed.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// Name, disabled, password hash.
    users: Vec<(String, bool, String)>,
    tokens: Vec<(String, bool)>,
    item: (ivr::types::FollowupStatus, Option<String>, i64),
    phone: String,
    number: bool,
    jobs: i64,
}

async fn snapshot(app: &TestApp, item: i64) -> Snapshot {
    let users = app.store.users().list_users().await.unwrap();
    let tokens = app.store.numbers().tokens().await.unwrap();
    let f = app.store.followups().get(item).await.unwrap().unwrap();
    let p = app.store.patients().get("P001").await.unwrap().unwrap();
    let number = app.store.numbers().valid("P001", Utc::now()).await.unwrap().is_some();
    let jobs = app.store.campaign().active_jobs().await.unwrap();
    Snapshot {
        users: users.into_iter().map(|u| (u.name.to_string(), u.disabled, u.password_hash)).collect(),
        tokens: tokens.iter().map(|t| (t.name.clone(), t.revoked_at.is_some())).collect(),
        item: (f.status, f.claimed_by, f.version),
        phone: p.phone.to_string(),
        number,
        jobs,
    }
}

/// A server with an admin, two nurses, a viewer, patient P001 with an urgent item, and a token.
async fn app(clock: Clock) -> (TestApp, i64) {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_at(settings(&sqlite_url(dir.path())), dir, clock).await;
    add_user(&app.store, "abe", Role::Admin).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    add_user(&app.store, "kato", Role::Nurse).await;
    add_user(&app.store, "ito", Role::Viewer).await;
    let mut p = patient("P001", "+819012345678");
    p.name = "山田 花子".into();
    app.store.patients().upsert(&p).await.unwrap();
    app.store.followups().raise("P001", &NewAlert::flow("spo2_low", Severity::Urgent), Utc::now()).await.unwrap();
    let id = app.store.followups().open_for("P001").await.unwrap().unwrap().followup_id;
    app.add_token("contact-app", "verify").await;
    (app, id)
}

async fn signed_in(app: &TestApp, name: &str) -> Page {
    let mut page = Page::new(&app.addr);
    assert_eq!(page.sign_in(name, PASSWORD).await.status, 303, "{name} signs in");
    page
}

fn allowed(role: Role, least: Role) -> bool {
    match least {
        Role::Viewer => true,
        Role::Nurse => role != Role::Viewer,
        Role::Admin => role == Role::Admin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_action_refuses_an_anonymous_request_and_changes_nothing() {
    let (app, item) = app(Clock::System).await;
    let before = snapshot(&app, item).await;
    let anonymous = Page::new(&app.addr);
    for (path, _) in pages() {
        let a = anonymous.get(&path).await;
        assert_eq!(a.status, 303, "GET {path}");
        let to = a.location.unwrap_or_default();
        assert!(to == "/ui/login" || to.starts_with("/ui/login?next="), "GET {path}: {to}");
    }
    for (path, form, _) in actions(item) {
        let mut fields = vec![("csrf", "0123456789abcdef0123456789abcdef")];
        fields.extend(form);
        assert_eq!(anonymous.post(&path, &fields).await.status, 403, "POST {path}");
    }
    assert_eq!(snapshot(&app, item).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_action_refuses_an_expired_session_even_with_its_own_token() {
    let clock = Clock::manual(Utc::now());
    let (app, item) = app(clock.clone()).await;
    let before = snapshot(&app, item).await;
    let abe = signed_in(&app, "abe").await;
    let token = csrf_of(&abe.get("/ui/users").await.body);
    clock.advance(Duration::minutes(31));
    for (path, form, _) in actions(item) {
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend(form);
        assert_eq!(abe.post(&path, &fields).await.status, 403, "POST {path}");
    }
    for (path, _) in pages() {
        let a = abe.get(&path).await;
        let to = a.location.unwrap_or_default();
        assert!(a.status == 303 && to.starts_with("/ui/login?expired=1"), "GET {path}: {} {to}", a.status);
    }
    assert_eq!(snapshot(&app, item).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_refuses_a_missing_or_forged_token_and_changes_nothing() {
    let (app, item) = app(Clock::System).await;
    let before = snapshot(&app, item).await;
    let abe = signed_in(&app, "abe").await;
    let other = signed_in(&app, "abe").await;
    let theirs = csrf_of(&other.get("/ui/users").await.body);
    for (path, form, _) in actions(item) {
        assert_eq!(abe.post(&path, &form).await.status, 403, "POST {path} without a token");
        for forged in ["0123456789abcdef0123456789abcdef", "", theirs.as_str()] {
            let mut fields = vec![("csrf", forged)];
            fields.extend(form.iter().copied());
            assert_eq!(abe.post(&path, &fields).await.status, 403, "POST {path} with token {forged:?}");
        }
    }
    assert_eq!(snapshot(&app, item).await, before);
    assert_eq!(abe.get("/ui/").await.status, 200, "still signed in");
    let refused = app.store.users().audit_rows(1000).await.unwrap();
    assert!(refused.iter().filter(|r| r.action == "csrf_refused").count() >= actions(item).len() * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_action_above_a_role_is_refused_to_it_and_changes_nothing() {
    let (app, item) = app(Clock::System).await;
    let before = snapshot(&app, item).await;
    for (name, role) in [("ito", Role::Viewer), ("sato", Role::Nurse)] {
        let page = signed_in(&app, name).await;
        for (path, least) in pages() {
            let status = page.get(&path).await.status;
            if allowed(role, least) {
                assert_eq!(status, 200, "{name}: GET {path}");
            } else {
                assert_eq!(status, 403, "{name}: GET {path}");
            }
        }
        for (path, form, least) in actions(item) {
            if allowed(role, least) {
                continue;
            }
            let a = page.submit("/ui/", &path, &form).await;
            assert_eq!(a.status, 403, "{name}: POST {path}");
            assert!(a.body.contains("権限がありません"), "{name}: POST {path}: {}", a.body);
        }
    }
    assert_eq!(snapshot(&app, item).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_asked_for_before_signing_in_is_where_signing_in_leads_and_never_another_site() {
    let (app, _) = app(Clock::System).await;
    let page = Page::new(&app.addr);
    let a = page.get("/ui/patients/P001").await;
    assert_eq!(a.location.as_deref(), Some("/ui/login?next=%2Fui%2Fpatients%2FP001"));
    let form = page.get("/ui/login?next=%2Fui%2Fpatients%2FP001").await;
    assert!(form.body.contains(r#"name="next" value="/ui/patients/P001""#), "{}", form.body);
    let token = csrf_of(&form.body);
    let cookie = form.cookies.iter().find(|c| c.starts_with("ivr_login=")).unwrap().split(';').next().unwrap();
    let fields = [("csrf", token.as_str()), ("name", "sato"), ("password", PASSWORD), ("next", "/ui/patients/P001")];
    let resp = page.client.post(format!("{}/ui/login", app.addr)).header("cookie", cookie).form(&fields).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/ui/patients/P001");
    // Another site's address, or a path outside the pages, leads to the queue.
    for next in ["https://evil.example/ui/", "//evil.example/ui/", "/ui//evil.example", "/twilio/voice"] {
        let form = page.get("/ui/login").await;
        let token = csrf_of(&form.body);
        let cookie = form.cookies.iter().find(|c| c.starts_with("ivr_login=")).unwrap().split(';').next().unwrap();
        let fields = [("csrf", token.as_str()), ("name", "sato"), ("password", PASSWORD), ("next", next)];
        let resp = page.client.post(format!("{}/ui/login", app.addr)).header("cookie", cookie).form(&fields).send();
        let resp = resp.await.unwrap();
        assert_eq!(resp.headers()["location"], "/ui/", "next = {next}");
    }
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_session_ids_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let ivr = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr"));
        cmd.args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("IVR_DATABASE__URL", &db)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1");
        cmd
    };
    let mut add = ivr(&["users", "add", "sato", "--role", "nurse", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let port = free_port();
    let mut serve = ivr(&["serve"])
        .env("IVR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("IVR_SCHEDULER__AUTOSTART", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut page = Page::new(&base);
    assert_eq!(page.sign_in("sato", "a wrong password!").await.status, 401);
    assert_eq!(page.sign_in("sato", PASSWORD).await.status, 303);
    let session = page.session.clone().expect("a session");
    assert_eq!(page.get("/ui/").await.status, 200);
    assert_eq!(page.submit("/ui/", "/ui/language", &[("language", "en")]).await.status, 303);
    assert_eq!(page.submit("/ui/", "/ui/logout", &[]).await.status, 303);
    let _ = Command::new("kill").arg("-TERM").arg(serve.id().to_string()).status();
    let mut logs = String::new();
    serve.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    serve.stdout.take().unwrap().read_to_string(&mut logs).unwrap();
    let _ = serve.wait();
    assert!(logs.contains("listening"), "the server's log was read: {logs}");
    for secret in [PASSWORD, "a wrong password!", session.as_str()] {
        assert!(!logs.contains(secret), "{secret:?} is in the log");
    }
    let added = format!("{}{}", String::from_utf8_lossy(&added.stdout), String::from_utf8_lossy(&added.stderr));
    assert!(!added.contains(PASSWORD), "ivr users add printed the password");
}

/// The name an action's audit row has.
type Action = &'static str;

/// A form's fields, some read from a page.
type Form<'a> = Vec<(&'a str, &'a str)>;

/// The newest row of the audit log: (actor, action, target).
async fn last_row(app: &TestApp) -> (String, String, String) {
    let row = app.store.users().audit_rows(1).await.unwrap().remove(0);
    (row.actor, row.action, row.target)
}

/// The `seen` field of a patient's edit form.
fn seen_of(body: &str) -> String {
    let at = body.find("name=\"seen\" value=\"").expect("an edit form");
    let rest = &body[at + "name=\"seen\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].replace("&#34;", "\"").replace("&quot;", "\"").replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_view_of_a_patient_and_each_action_leaves_its_audit_row() {
    // 10:30 in Tokyo on a Monday: inside the calling hours, so "call now" plans a call.
    let clock = Clock::manual("2026-12-07T01:30:00Z".parse().unwrap());
    let (app, item) = app(clock.clone()).await;
    let abe = signed_in(&app, "abe").await;
    for (path, action, target) in [
        ("/ui/", "view_queue", "active"),
        ("/ui/patients", "view_patients", ""),
        ("/ui/patients/P001", "view_patient", "P001"),
        ("/ui/tokens", "view_tokens", ""),
        ("/ui/audit", "view_audit", ""),
        ("/ui/audit.csv", "export_audit", ""),
    ] {
        assert_eq!(abe.get(path).await.status, 200, "GET {path}");
        let (actor, done, on) = last_row(&app).await;
        assert_eq!((actor.as_str(), done.as_str()), ("abe", action), "GET {path}");
        assert!(on.starts_with(target), "GET {path}: {on}");
    }
    let edit_seen = seen_of(&abe.get("/ui/patients/P001").await.body);
    // Path, form, the action's row and its target.
    let steps: Vec<(String, Form<'_>, Action, &str)> = vec![
        (format!("/ui/followups/{item}/claim"), vec![], "followup_claim", "followup"),
        (format!("/ui/followups/{item}/release"), vec![], "followup_release", "followup"),
        (
            format!("/ui/followups/{item}/close"),
            vec![("outcome", "visited"), ("note", "訪問")],
            "followup_close",
            "followup",
        ),
        (format!("/ui/followups/{item}/claim"), vec![], "followup_refused", "followup"),
        ("/ui/patients/P001/issue".into(), vec![("send", "none"), ("consent", "yes")], "issue_number", "P001"),
        ("/ui/patients/P001/call".into(), vec![], "call_now", "P001"),
        (
            "/ui/patients/P001/edit".into(),
            vec![("phone", "+819011112222"), ("email", ""), ("language", "ja-JP"), ("slot", ""), ("seen", &edit_seen)],
            "edit_patient",
            "P001",
        ),
        (
            "/ui/users".into(),
            vec![("name", "tanaka"), ("role", "viewer"), ("language", "ja"), ("password", "a long password 1")],
            "add_user",
            "tanaka",
        ),
        ("/ui/users/kato/password".into(), vec![("password", "another long password")], "reset_password", "kato"),
        ("/ui/users/kato/disable".into(), vec![], "disable_user", "kato"),
        ("/ui/tokens".into(), vec![("name", "tool"), ("scope", "read")], "add_token", "tool"),
        ("/ui/tokens/tool/revoke".into(), vec![], "revoke_token", "tool"),
        ("/ui/language".into(), vec![("language", "en")], "set_language", "en"),
        ("/ui/logout".into(), vec![], "logout", ""),
    ];
    for (path, form, action, target) in steps {
        let before = app.store.users().audit_rows(10_000).await.unwrap().len();
        let a = abe.submit("/ui/patients/P001", &path, &form).await;
        assert!(matches!(a.status, 200 | 303 | 409), "POST {path}: {} {}", a.status, a.body);
        let rows = app.store.users().audit_rows(10_000).await.unwrap();
        let new = &rows[..rows.len() - before];
        let found = new
            .iter()
            .any(|r| r.action == action && r.actor == "abe" && r.target.contains(target) && r.address == "127.0.0.1");
        assert!(found, "POST {path}: no {action} row in {new:?}");
    }
}
