//! The follow-up queue's pages and a patient's page over plain HTTP: what each role sees and
//! may do, tokens on every form, stale actions refused with who did what, and the audit rows.

use chrono::Utc;
use ivr::store::NewAlert;
use ivr::types::{Role, Severity};

use crate::common::app::*;
use crate::common::patients::patient;
use crate::common::staff::{PASSWORD, Page, add_user, csrf_of};

const MOBILE: &str = "+819012345678";

/// A server with a nurse, a second nurse, a viewer, and patient P001 with an urgent item.
async fn app_with_item() -> (TestApp, i64) {
    let app = spawn_app().await;
    add_user(&app.store, "sato", Role::Nurse).await;
    add_user(&app.store, "kato", Role::Nurse).await;
    add_user(&app.store, "ito", Role::Viewer).await;
    let mut p = patient("P001", MOBILE);
    p.name = "山田 花子".into();
    app.store.patients().upsert(&p).await.unwrap();
    // As a call's flow writes it: an urgent alert opens the patient's item.
    app.store.followups().raise("P001", &NewAlert::flow("health_check", Severity::Urgent), Utc::now()).await.unwrap();
    let id = app.store.followups().open_for("P001").await.unwrap().unwrap().followup_id;
    (app, id)
}

async fn signed_in(app: &TestApp, name: &str) -> Page {
    let mut page = Page::new(&app.addr);
    assert_eq!(page.sign_in(name, PASSWORD).await.status, 303);
    page
}

async fn audited(app: &TestApp, actor: &str, action: &str) -> bool {
    app.store.users().audit_rows(1000).await.unwrap().iter().any(|e| e.actor == actor && e.action == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_claims_an_item_another_sees_who_and_cannot_close_it_and_the_nurse_closes_it() {
    let (app, id) = app_with_item().await;
    let sato = signed_in(&app, "sato").await;
    let kato = signed_in(&app, "kato").await;
    let queue = sato.get("/ui/").await;
    assert_eq!(queue.status, 200);
    assert!(queue.body.contains("山田 花子") && queue.body.contains("P001"), "{}", queue.body);
    assert!(queue.body.contains("緊急") && queue.body.contains("体調の悪化"), "{}", queue.body);
    assert!(audited(&app, "sato", "view_queue").await);

    let claim = format!("/ui/followups/{id}/claim");
    let a = sato.submit("/ui/", &claim, &[]).await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/ui/?done=claimed")));
    assert!(audited(&app, "sato", "followup_claim").await);
    let seen = kato.get("/ui/").await.body;
    assert!(seen.contains("対応中: sato"), "{seen}");

    // kato, on the page as it was before: refused, told who, nothing changed.
    let close = format!("/ui/followups/{id}/close");
    let a = kato.submit("/ui/", &close, &[("outcome", "visited"), ("note", "")]).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("sato さんが対応中にしました"), "{}", a.body);
    assert!(audited(&app, "kato", "followup_refused").await);
    let item = app.store.followups().get(id).await.unwrap().unwrap();
    assert_eq!(item.claimed_by.as_deref(), Some("sato"));
    assert!(item.closed_at.is_none());

    // An outcome is required.
    let a = sato.submit("/ui/", &close, &[("outcome", ""), ("note", "")]).await;
    assert_eq!(a.status, 422);
    assert!(
        a.body.contains(&format!("id=\"close-error-{id}\"")) && a.body.contains("結果を選んでください"),
        "{}",
        a.body
    );

    let a = sato.submit("/ui/", &close, &[("outcome", "reached_by_phone"), ("note", "SpO2 96 % on the phone")]).await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/ui/?done=closed")));
    assert!(audited(&app, "sato", "followup_close").await);
    let closed = sato.get("/ui/?status=closed").await.body;
    assert!(closed.contains("電話で確認") && closed.contains("SpO2 96 % on the phone"), "{closed}");
    assert!(!sato.get("/ui/").await.body.contains("山田 花子"), "a closed item leaves the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_the_queue_without_buttons_and_a_forged_post_is_refused() {
    let (app, id) = app_with_item().await;
    let ito = signed_in(&app, "ito").await;
    let page = ito.get("/ui/").await.body;
    assert!(page.contains("山田 花子"));
    assert!(!page.contains("/claim\""), "no claim button for a viewer");
    let a = ito.submit("/ui/", &format!("/ui/followups/{id}/claim"), &[]).await;
    assert_eq!(a.status, 403);
    assert!(app.store.followups().get(id).await.unwrap().unwrap().claimed_by.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_actions_refuse_no_session_and_a_missing_or_forged_token() {
    let (app, id) = app_with_item().await;
    let anonymous = Page::new(&app.addr);
    for path in ["/ui/", "/ui/patients", "/ui/patients/P001"] {
        assert_eq!(anonymous.get(path).await.status, 303, "{path}");
    }
    let sato = signed_in(&app, "sato").await;
    for action in ["claim", "release", "close"] {
        let path = format!("/ui/followups/{id}/{action}");
        assert_eq!(anonymous.post(&path, &[("csrf", "x"), ("outcome", "visited")]).await.status, 403, "{path}");
        assert_eq!(sato.post(&path, &[("outcome", "visited")]).await.status, 403, "{path} without a token");
        let forged = "ab".repeat(16);
        assert_eq!(sato.post(&path, &[("csrf", &forged), ("outcome", "visited")]).await.status, 403, "{path} forged");
    }
    assert!(audited(&app, "sato", "csrf_refused").await);
    let item = app.store.followups().get(id).await.unwrap().unwrap();
    assert!(item.claimed_by.is_none() && item.closed_at.is_none(), "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patients_page_shows_the_roster_and_follow_up_and_each_view_is_audited() {
    let (app, _) = app_with_item().await;
    let ito = signed_in(&app, "ito").await;
    let list = ito.get("/ui/patients?q=%E5%B1%B1%E7%94%B0").await;
    assert!(list.body.contains("/ui/patients/P001"), "{}", list.body);
    assert!(!ito.get("/ui/patients?q=nobody").await.body.contains("/ui/patients/P001"));
    let page = ito.get("/ui/patients/P001").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("山田 花子") && page.body.contains("体調の悪化"), "{}", page.body);
    // The title is the patient's name and nothing else; the action forms appear once, in the page.
    assert!(page.body.contains("<title>山田 花子 | 健康観察コール 職員ページ</title>"), "{}", page.body);
    assert!(page.body.matches("id=\"issue\"").count() <= 1, "{}", page.body);
    assert!(audited(&app, "ito", "view_patient").await);
    assert!(audited(&app, "ito", "view_patients").await);
    let _ = csrf_of(&page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_issues_a_number_only_with_consent_and_a_viewer_not_at_all() {
    let (app, _) = app_with_item().await;
    let sato = signed_in(&app, "sato").await;
    let page = "/ui/patients/P001";
    let shown = sato.get(page).await.body;
    assert!(shown.contains("<title>山田 花子 | 健康観察コール 職員ページ</title>"), "{shown}");
    assert_eq!(shown.matches("id=\"consent\"").count(), 1, "the issue form once, in the page: {shown}");
    let a = sato.submit(page, "/ui/patients/P001/issue", &[("send", "none")]).await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("id=\"consent-error\""), "{}", a.body);
    assert!(app.store.numbers().valid("P001", Utc::now()).await.unwrap().is_none(), "nothing issued");
    let a = sato.submit(page, "/ui/patients/P001/issue", &[("send", "email"), ("consent", "yes")]).await;
    assert!(a.status == 422 && a.body.contains("メールアドレスがありません"), "{}", a.body);
    let a = sato.submit(page, "/ui/patients/P001/issue", &[("send", "none"), ("consent", "yes")]).await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("処理番号を発行しました"), "{}", a.body);
    assert!(app.store.numbers().valid("P001", Utc::now()).await.unwrap().is_some());
    assert!(audited(&app, "sato", "issue_number").await);
    let story = sato.get(page).await.body;
    assert!(story.contains("職員による発行: sato") && story.contains("送信なし"), "{story}");
    let ito = signed_in(&app, "ito").await;
    assert!(!ito.get(page).await.body.contains("/issue\""), "no form for a viewer");
    let a = ito.submit(page, "/ui/patients/P001/issue", &[("send", "none"), ("consent", "yes")]).await;
    assert_eq!(a.status, 403);
    for action in ["issue", "call", "edit"] {
        let path = format!("/ui/patients/P001/{action}");
        assert_eq!(sato.post(&path, &[("send", "none"), ("consent", "yes")]).await.status, 403, "{path}");
        assert_eq!(ito.submit(page, &path, &[]).await.status, 403, "{path}");
        assert_eq!(Page::new(&app.addr).post(&path, &[("csrf", "x")]).await.status, 403, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_checked_like_the_roster_and_a_stale_one_is_refused_with_who() {
    let (app, _) = app_with_item().await;
    let sato = signed_in(&app, "sato").await;
    let kato = signed_in(&app, "kato").await;
    let page = "/ui/patients/P001";
    let body = sato.get(page).await.body;
    let seen = {
        let at = body.find("name=\"seen\" value=\"").unwrap() + "name=\"seen\" value=\"".len();
        body[at..at + body[at..].find('"').unwrap()].replace("&#43;", "+").replace("&#124;", "|")
    };
    let bad = [("phone", "12"), ("email", "nope"), ("language", "ja-JP"), ("slot", ""), ("seen", seen.as_str())];
    let a = sato.submit(page, "/ui/patients/P001/edit", &bad).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("id=\"phone-error\"") && a.body.contains("id=\"email-error\""), "{}", a.body);
    let good = [
        ("phone", "080-2222-3333"),
        ("email", "hanako@example.jp"),
        ("language", "ja-JP"),
        ("slot", ""),
        ("seen", &seen),
    ];
    let a = sato.submit(page, "/ui/patients/P001/edit", &good).await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/ui/patients/P001?done=edited")), "{}", a.body);
    assert_eq!(app.store.patients().get("P001").await.unwrap().unwrap().phone.to_string(), "+818022223333");
    assert!(audited(&app, "sato", "edit_patient").await);
    // kato's page was shown before sato's change.
    let stale = [("phone", "080-9999-9999"), ("email", ""), ("language", "ja-JP"), ("slot", ""), ("seen", &seen)];
    let a = kato.submit(page, "/ui/patients/P001/edit", &stale).await;
    assert_eq!(a.status, 409);
    assert!(a.body.contains("sato さんが変更しました"), "{}", a.body);
    assert_eq!(app.store.patients().get("P001").await.unwrap().unwrap().phone.to_string(), "+818022223333");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_token_shown_once_and_revokes_it_and_a_nurse_cannot() {
    let (app, _) = app_with_item().await;
    add_user(&app.store, "abe", Role::Admin).await;
    let abe = signed_in(&app, "abe").await;
    let a = abe.submit("/ui/tokens", "/ui/tokens", &[("name", "app server")]).await;
    assert!(a.status == 422 && a.body.contains("id=\"scope-error\""), "{}", a.body);
    let a = abe.submit("/ui/tokens", "/ui/tokens", &[("name", "app server"), ("scope", "verify")]).await;
    assert_eq!(a.status, 200);
    let at = a.body.find("id=\"token-value\">").unwrap() + "id=\"token-value\">".len();
    let token = &a.body[at..at + a.body[at..].find('<').unwrap()];
    assert!(token.starts_with("ivr_"));
    let listed = abe.get("/ui/tokens").await.body;
    assert!(listed.contains("app server") && !listed.contains(token), "shown once");
    assert!(audited(&app, "abe", "add_token").await && audited(&app, "abe", "view_tokens").await);
    let sato = signed_in(&app, "sato").await;
    assert_eq!(sato.get("/ui/tokens").await.status, 403);
    assert_eq!(sato.submit("/ui/", "/ui/tokens/app%20server/revoke", &[]).await.status, 403);
    assert_eq!(abe.post("/ui/tokens/app%20server/revoke", &[]).await.status, 403, "no token field");
    let a = abe.submit("/ui/tokens", "/ui/tokens/app%20server/revoke", &[]).await;
    assert_eq!(a.location.as_deref(), Some("/ui/tokens?done=revoked"));
    assert!(app.store.numbers().tokens().await.unwrap()[0].revoked_at.is_some());
    assert!(audited(&app, "abe", "revoke_token").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_now_is_refused_in_quiet_hours_and_planned_once_inside_them() {
    use chrono::TimeZone;
    use ivr::scheduler::clock::Clock;
    // 22:00 in Tokyo: no calls.
    let clock = Clock::manual(Utc.with_ymd_and_hms(2026, 12, 6, 13, 0, 0).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_at(settings(&sqlite_url(dir.path())), dir, clock.clone()).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    app.store.patients().upsert(&patient("P001", MOBILE)).await.unwrap();
    let page = "/ui/patients/P001";
    let sato = signed_in(&app, "sato").await;
    let a = sato.submit(page, "/ui/patients/P001/call", &[]).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("id=\"call-error\""), "{}", a.body);
    let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
    assert!(app.store.campaign().jobs_for_day(day(6)).await.unwrap().is_empty(), "nothing planned");
    // 10:00 the next morning: planned now, once.
    clock.advance(chrono::Duration::hours(12));
    let sato = signed_in(&app, "sato").await;
    let a = sato.submit(page, "/ui/patients/P001/call", &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("発信を予定しました"), "{}", a.body);
    let a = sato.submit(page, "/ui/patients/P001/call", &[]).await;
    assert!(a.body.contains("すでに予定されています"), "{}", a.body);
    let jobs = app.store.campaign().jobs_for_day(day(7)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(audited(&app, "sato", "call_now").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_walked_through_the_webhooks_fills_the_queue_and_its_page_shows_answers_and_steps() {
    const LOW_SPO2: [&str; 12] = ["0412", "365", "1", "1", "91", "1", "2", "2", "2", "2", "2", "2"];
    let app = spawn_app().await;
    add_user(&app.store, "sato", Role::Nurse).await;
    app.add_patient("P001", MOBILE).await;
    app.call(MOBILE, &LOW_SPO2).await;
    let sato = signed_in(&app, "sato").await;
    let queue = sato.get("/ui/").await.body;
    assert!(queue.contains("緊急") && queue.contains("P001"), "{queue}");
    let page = sato.get("/ui/patients/P001").await.body;
    assert!(page.contains("SpO2（酸素飽和度）</dt><dd>91"), "{page}");
    assert!(page.contains("体温</dt><dd>36.5"), "{page}");
    assert!(page.contains("本日の体温を、数字で押してください"), "the steps as heard: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patients_tables_filters_refuse_a_value_the_form_does_not_offer_next_to_its_field() {
    let (app, _) = app_with_item().await;
    let ito = signed_in(&app, "ito").await;
    let bad = ito.get("/ui/patients?alert=everything&slot=midnight&sort=password").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("id=\"alert-error\"") && bad.body.contains("aria-invalid=\"true\""), "{}", bad.body);
    assert!(bad.body.contains("id=\"slot-error\"") && bad.body.contains("この列では並べ替えできません。"));
    assert!(bad.body.contains("/ui/patients/P001"), "the rest of the page as without those filters");
    let urgent = ito.get("/ui/patients?alert=urgent&sort=followup&dir=desc").await;
    assert_eq!(urgent.status, 200);
    assert!(urgent.body.contains("/ui/patients/P001") && urgent.body.contains("緊急"), "{}", urgent.body);
    assert!(!ito.get("/ui/patients?alert=none").await.body.contains("/ui/patients/P001"));
    let rows = app.store.users().audit_rows(100).await.unwrap();
    assert!(rows.iter().any(|r| r.action == "view_patients" && r.target == "?alert=urgent&sort=followup&dir=desc"));
}
