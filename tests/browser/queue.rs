//! The follow-up queue and a patient's page in Chromium: claimed in one browser, seen claimed
//! in another, closed with an outcome; a number issued by hand (consent box required); a phone
//! number edited.

use chrono::Utc;
use fantoccini::Locator;
use ivr::scheduler::clock::Clock;
use ivr::store::NewAlert;
use ivr::types::{Role, Severity};

use crate::common::app::{TestApp, settings, spawn_app_at, sqlite_url};
use crate::common::browser::Browser;
use crate::common::patients::patient;
use crate::common::staff::{PASSWORD, add_user};

/// A server with two nurses and patient P001 whose call raised an urgent alert.
pub async fn app_with_queue(clock: Clock) -> (TestApp, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.server.public_url = None;
    let app = spawn_app_at(s, dir, clock).await;
    add_user(&app.store, "abe", Role::Admin).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    add_user(&app.store, "kato", Role::Nurse).await;
    add_user(&app.store, "ito", Role::Viewer).await;
    let mut p = patient("P001", "+819012345678");
    p.name = "山田 花子".into();
    app.store.patients().upsert(&p).await.unwrap();
    let mut q = patient("P002", "+819087654321");
    q.name = "鈴木 一郎".into();
    app.store.patients().upsert(&q).await.unwrap();
    let followups = app.store.followups();
    followups.raise("P002", &NewAlert::flow("no_response", Severity::Normal), Utc::now()).await.unwrap();
    followups.raise("P001", &NewAlert::flow("health_check", Severity::Urgent), Utc::now()).await.unwrap();
    let id = followups.open_for("P001").await.unwrap().unwrap().followup_id;
    (app, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_claims_an_item_a_second_browser_sees_it_claimed_and_it_is_closed_with_an_outcome() {
    let Some(one) = Browser::start(1280, 900).await else { return };
    let Some(two) = Browser::start(390, 844).await else { return };
    let (app, id) = app_with_queue(Clock::System).await;
    one.sign_in(&app.addr, "sato", PASSWORD).await;
    two.sign_in(&app.addr, "kato", PASSWORD).await;
    let first = one.client.find(Locator::Css("ol.queue li")).await.unwrap().text().await.unwrap();
    assert!(first.contains("山田 花子") && first.contains("緊急"), "most urgent first: {first}");
    one.click(&format!("#item-{id} form[action$='/claim'] button")).await;
    assert!(one.main_text().await.contains("対応中にしました。"));
    two.goto(&format!("{}/ui/", app.addr)).await;
    let seen = two.client.find(Locator::Id(&format!("item-{id}"))).await.unwrap().text().await.unwrap();
    assert!(seen.contains("対応中: sato"), "{seen}");
    assert!(two.client.find(Locator::Css(&format!("#item-{id} form"))).await.is_err(), "no buttons on another's item");

    one.client
        .find(Locator::Id(&format!("outcome-{id}")))
        .await
        .unwrap()
        .select_by_value("reached_by_phone")
        .await
        .unwrap();
    one.fill(&format!("note-{id}"), "電話で SpO2 96%、様子見").await;
    one.click(&format!("#item-{id} form.close button")).await;
    assert!(one.main_text().await.contains("完了にしました。"));
    assert!(!one.main_text().await.contains("山田 花子"), "closed: gone from the queue");
    one.goto(&format!("{}/ui/?status=closed", app.addr)).await;
    let closed = one.main_text().await;
    assert!(closed.contains("電話で確認") && closed.contains("SpO2 96%"), "{closed}");
    one.close().await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patients_page_issues_a_number_only_with_consent_and_edits_the_phone() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let (app, _) = app_with_queue(Clock::System).await;
    b.sign_in(&app.addr, "sato", PASSWORD).await;
    b.click("ol.queue li a.who-link").await;
    assert_eq!(b.path().await, "/ui/patients/P001");
    let text = b.main_text().await;
    assert!(text.contains("山田 花子") && text.contains("体調の悪化"), "{text}");

    // The browser itself holds the form back without the consent box; the server refuses it
    // too (the box's `required` removed, as a hand-made form would).
    let consent = b.client.find(Locator::Id("consent")).await.unwrap();
    b.client
        .execute("arguments[0].removeAttribute('required')", vec![serde_json::to_value(&consent).unwrap()])
        .await
        .unwrap();
    b.client.find(Locator::Id("send-none")).await.unwrap().click().await.unwrap();
    b.click("#issue-submit").await;
    let error = b.client.find(Locator::Id("consent-error")).await.unwrap().text().await.unwrap();
    assert!(error.contains("同意"), "{error}");
    assert!(app.store.numbers().valid("P001", Utc::now()).await.unwrap().is_none());
    b.client.find(Locator::Id("send-none")).await.unwrap().click().await.unwrap();
    b.client.find(Locator::Id("consent")).await.unwrap().click().await.unwrap();
    b.click("#issue-submit").await;
    assert!(b.main_text().await.contains("処理番号を発行しました"));
    assert!(app.store.numbers().valid("P001", Utc::now()).await.unwrap().is_some());

    b.goto(&format!("{}/ui/patients/P001", app.addr)).await;
    b.fill("phone", "12345").await;
    b.click("#edit-submit").await;
    assert!(b.client.find(Locator::Id("phone-error")).await.is_ok(), "the error is next to the field");
    b.fill("phone", "080-2222-3333").await;
    b.click("#edit-submit").await;
    assert_eq!(b.path().await, "/ui/patients/P001?done=edited");
    assert!(b.main_text().await.contains("+818022223333"));
    b.close().await;
}
