//! Screenshots of each staff page in Japanese and English, at a phone's width and a desk's,
//! for docs/health-centre.md: `IVR_TEST_SCREENSHOTS=docs/screenshots cargo test --test browser
//! screenshots`. Without the variable the test does nothing (it would rewrite the docs).
//!
//! The patient shown had a real call: the dialer's request to the built-in carrier simulator,
//! which plays the patient (low SpO2, uses the contact app) through signed webhooks as a carrier
//! does; the processing number it was sent by SMS is then verified as the contact app's server
//! does. So the patient's page shows the answers, the steps as heard and the number's story.

use std::time::Duration;

use chrono::Utc;
use ivr::carrier::twilio::{CallRequest, TwilioClient};
use ivr::scheduler::clock::Clock;
use ivr::store::{Act, Action, AuditEntry, NewAlert};
use ivr::types::{Role, Scopes, Severity};
use secrecy::SecretString;

use crate::common::app::{TestApp, settings, spawn_app_at, sqlite_url};
use crate::common::browser::Browser;
use crate::common::staff::{PASSWORD, add_user};

pub(crate) const SIZES: [(&str, u32, u32); 2] = [("phone", 390, 844), ("desktop", 1280, 800)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_each_page_in_both_languages() {
    let Ok(out) = std::env::var("IVR_TEST_SCREENSHOTS") else { return };
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(out);
    std::fs::create_dir_all(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    // The server's own address is its public URL: the simulator signs its webhooks for it.
    s.server.public_url = None;
    s.carrier.auth_token = Some(SecretString::from(SIM_TOKEN));
    s.carrier.simulator_speed = 0.0;
    let app = spawn_app_at(s, dir, Clock::System).await;
    add_user(&app.store, "abe", Role::Admin).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    add_user(&app.store, "ito", Role::Viewer).await;
    for (what, address) in [("login", "192.0.2.10"), ("add_user", "192.0.2.10")] {
        let entry = AuditEntry {
            at: Utc::now(),
            actor: "abe".into(),
            action: what.into(),
            target: if what == "add_user" { "sato".into() } else { String::new() },
            address: address.into(),
        };
        app.store.users().audit(&entry).await.unwrap();
    }
    // The queue as a morning's calls leave it: an urgent item claimed by sato, two waiting.
    for (id, name, phone) in [
        // A mobile number ending 9: the simulator answers with SpO2 91 and uses the app.
        ("P001", "山田 花子", "+819012345679"),
        ("P002", "鈴木 一郎", "+819087654321"),
        ("P003", "佐藤 美咲", "+81312345678"),
    ] {
        let mut p = crate::common::patients::patient(id, phone);
        p.name = name.into();
        p.area = Some("north".into());
        if id == "P001" {
            // Ten days of care so far, four to go: the charts' whole period.
            let start = crate::trends::morning(Utc::now(), 9).with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
            p.care_start = Some(start);
            p.care_end = Some(start + chrono::Duration::days(13));
        }
        app.store.patients().upsert(&p).await.unwrap();
    }
    // Their daily answers: P001's fever and low SpO2 with a missed day, P002 well.
    crate::trends::write_days(&app.sqlite_path(), "P001", Utc::now(), &crate::trends::YAMADA);
    crate::trends::write_days(&app.sqlite_path(), "P002", Utc::now(), &crate::trends::SUZUKI);
    let earlier = Utc::now() - chrono::Duration::minutes(95);
    let followups = app.store.followups();
    followups.raise("P003", &NewAlert::flow("no_response", Severity::Normal), earlier).await.unwrap();
    daily_call(&app, "P001").await;
    let hung = ivr::types::Alert::new(ivr::types::AlertKind::HungUp, "hung up");
    followups.raise("P002", &NewAlert::engine(&hung), Utc::now() - chrono::Duration::minutes(20)).await.unwrap();
    let item = followups.open_for("P001").await.unwrap().expect("the call's urgent item").followup_id;
    let claim = Act { action: Action::Claim, by: "sato".into(), version: None, at: Utc::now() };
    followups.act(item, &claim).await.unwrap();
    app.store
        .numbers()
        .add_token("contact-app", &ivr::http::api::token_hash("ivr_example"), Scopes::parse("verify").unwrap())
        .await
        .unwrap();
    for (size, width, height) in SIZES {
        let Some(b) = Browser::start(width, height).await else { return };
        for lang in ["ja", "en"] {
            b.goto(&format!("{}/ui/login?lang={lang}", app.addr)).await;
            shot(&b, &out, &format!("login-{lang}-{size}"), width, height).await;
            // Another account's wrong password: the one signing in next is not throttled.
            b.fill("name", "ito").await;
            b.fill("password", "wrong password").await;
            b.click("form.stack button[type=submit]").await;
            shot(&b, &out, &format!("login-error-{lang}-{size}"), width, height).await;
            b.fill("name", "abe").await;
            b.fill("password", PASSWORD).await;
            b.click("form.stack button[type=submit]").await;
            let want = if lang == "ja" { "ja" } else { "en" };
            app.store.users().set_language("abe", ivr::types::UiLanguage::parse(want).unwrap()).await.unwrap();
            for (page, path) in [
                ("home", "/ui/"),
                ("patient", "/ui/patients/P001"),
                ("patients", "/ui/patients"),
                ("users", "/ui/users"),
                ("tokens", "/ui/tokens"),
                ("audit", "/ui/audit"),
            ] {
                b.goto(&format!("{}{path}", app.addr)).await;
                // The steps of each call as the patient heard them, opened.
                b.client
                    .execute("document.querySelectorAll('details').forEach(d => d.open = true)", vec![])
                    .await
                    .unwrap();
                shot(&b, &out, &format!("{page}-{lang}-{size}"), width, height).await;
            }
            b.click("form[action='/ui/logout'] button").await;
        }
        b.close().await;
    }
}

const SIM_TOKEN: &str = "screenshots-token-0123456789abcdef";

/// The daily health check placed to `patient` as the dialer places it: through the carrier
/// simulator's REST API, which then plays the call against the server with signed webhooks.
/// Waits for the call's end and its SMS's delivery, then verifies the number it carried as the
/// contact app's server does.
async fn daily_call(app: &TestApp, patient: &str) {
    let sim = app.state.simulator.clone().expect("the simulator is the carrier");
    let phone = app.store.patients().get(patient).await.unwrap().expect("the patient").phone.to_string();
    let job = app.store.campaign().create_job(patient, "daily-health-check").await.unwrap();
    let twilio = TwilioClient::new(
        &format!("{}/simulator", app.addr),
        &ivr::carrier::simulator::account_sid(),
        SIM_TOKEN.to_string(),
    )
    .unwrap();
    let req = CallRequest::new(&phone, "+815000000000", format!("{}/twilio/voice?job={job}", app.addr))
        .with_status_callback(format!("{}/twilio/status", app.addr));
    let sid = twilio.create_call(&req).await.expect("the simulator places the call").sid;
    let mut sms = None;
    for _ in 0..600 {
        let ended = sim.call(sid.as_str()).is_some_and(|c| c.status.is_final());
        sms = sim.messages().into_iter().find(|m| m.to == phone && m.status == "delivered");
        if ended && sms.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sms = sms.expect("the processing number was sent by SMS and delivered");
    let number: String = sms
        .body
        .split("処理番号は")
        .nth(1)
        .and_then(|rest| rest.split("です").next())
        .expect("the number in the SMS")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let token = app.add_token("contact-app-server", "verify").await;
    let verified = reqwest::Client::new()
        .post(format!("{}/api/v1/processing-numbers/verify", app.addr))
        .bearer_auth(token)
        .json(&serde_json::json!({ "number": number }))
        .send()
        .await
        .unwrap();
    assert!(verified.status().is_success(), "{}", verified.text().await.unwrap());
}

/// A screenshot of the whole page (the window made as tall as the page), as `NAME.png`.
pub(crate) async fn shot(b: &Browser, out: &std::path::Path, name: &str, width: u32, height: u32) {
    // The window's own bars take some of its height: added, so the page fits whole.
    let script = "return document.documentElement.scrollHeight + (window.outerHeight - window.innerHeight)";
    let tall = b.client.execute(script, vec![]).await.unwrap();
    let tall = tall.as_u64().unwrap_or(u64::from(height)) as u32;
    b.client.set_window_size(width, tall.max(height)).await.unwrap();
    let png = b.client.screenshot().await.unwrap();
    std::fs::write(out.join(format!("{name}.png")), png).unwrap();
    b.client.set_window_size(width, height).await.unwrap();
}
