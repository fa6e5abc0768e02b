//! The patient's web self-report in a real headless Chromium, without JavaScript: the daily
//! report filled in Japanese and in English, a temperature out of range refused beside its
//! field, the processing number reached; with `IVR_TEST_SCREENSHOTS=DIR`, screenshots of each
//! step at a phone's width (docs/web-report.md).

use chrono::{Duration, Utc};
use fantoccini::Locator;
use ivr::types::PatientId;

use crate::common::app::spawn_app;
use crate::common::browser::Browser;
use crate::common::patients::{PatientBuilder, patient};

const WIDTH: u32 = 390;
const HEIGHT: u32 = 844;

async fn shot(b: &Browser, name: &str) {
    let Ok(out) = std::env::var("IVR_TEST_SCREENSHOTS") else { return };
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(out);
    std::fs::create_dir_all(&out).unwrap();
    let script = "return document.documentElement.scrollHeight + (window.outerHeight - window.innerHeight)";
    let tall = b.client.execute(script, vec![]).await.unwrap().as_u64().unwrap_or(u64::from(HEIGHT)) as u32;
    b.client.set_window_size(WIDTH, tall.max(HEIGHT)).await.unwrap();
    let png = b.client.screenshot().await.unwrap();
    std::fs::write(out.join(format!("{name}.png")), png).unwrap();
    b.client.set_window_size(WIDTH, HEIGHT).await.unwrap();
}

async fn choose(b: &Browser, question: &str, key: &str) {
    let css = format!(r#"input[name="q.{question}"][value="{key}"]"#);
    b.client.find(Locator::Css(&css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn next(b: &Browser) {
    b.click(r#"button[value="next"]"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_fills_the_daily_report_in_japanese_and_english_and_reaches_the_processing_number() {
    let app = spawn_app().await;
    let Some(b) = Browser::start(WIDTH, HEIGHT).await else { return };
    let cases = [
        (
            "ja",
            "P001",
            "+819012345678",
            "ja-JP",
            "34.0℃から42.0℃までの数字で入力してください。",
            "接触確認アプリの処理番号",
        ),
        ("en", "P002", "+819087654321", "en-US", "Please enter a number from 34.0 to 42.0 °C.", "Processing number"),
    ];
    for (lang, id, phone, language, range_error, number_heading) in cases {
        app.add(patient(id, phone).name("山田 花子").language(language)).await;
        let now = Utc::now();
        let link =
            app.store.links().create(&PatientId::parse(id).unwrap(), now + Duration::days(7), now).await.unwrap();
        b.goto(&format!("{}/r/{}", app.addr, link.token.expose())).await;
        let lang_attr = b.client.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap();
        assert_eq!(lang_attr.as_deref(), Some(lang));
        shot(&b, &format!("report-start-{lang}")).await;

        // Page 1: a temperature out of range is refused beside its field, the rest kept.
        b.fill("q.identity", "0412").await;
        b.fill("q.temperature", "45").await;
        choose(&b, "oximeter", "1").await;
        next(&b).await;
        let text = b.main_text().await;
        assert!(text.contains(range_error), "{text}");
        let invalid = b.client.find(Locator::Id("q.temperature")).await.unwrap().attr("aria-invalid").await.unwrap();
        assert_eq!(invalid.as_deref(), Some("true"));
        shot(&b, &format!("report-error-{lang}")).await;
        assert!(app.store.calls().of_patient(id, 5).await.unwrap().is_empty(), "nothing stored");
        b.fill("q.temperature", "37.9").await;
        next(&b).await;

        // Page 2: SpO2 and the symptoms, feeling worse.
        b.fill("q.spo2", "95").await;
        for q in ["breathless", "cough", "fatigue", "taste_smell"] {
            choose(&b, q, "2").await;
        }
        choose(&b, "trend", "3").await;
        next(&b).await;
        // Page 3: the app (あり / なし), then consent.
        choose(&b, "app_use", "1").await;
        next(&b).await;
        choose(&b, "consent", "1").await;
        shot(&b, &format!("report-consent-{lang}")).await;
        next(&b).await;

        // The review step, then the number.
        let text = b.main_text().await;
        assert!(text.contains("37.9"), "{text}");
        shot(&b, &format!("report-review-{lang}")).await;
        b.click(r#"button[value="send"]"#).await;
        let text = b.main_text().await;
        assert!(text.contains(number_heading), "{text}");
        let shown = b.client.find(Locator::Css("p.digits")).await.unwrap().text().await.unwrap();
        assert_eq!(shown.replace(' ', "").len(), 8, "{shown}");
        shot(&b, &format!("report-done-{lang}")).await;
        let calls = app.store.calls().of_patient(id, 5).await.unwrap();
        assert_eq!(calls.len(), 1);
        assert!(app.store.numbers().valid(id, Utc::now()).await.unwrap().is_some());

        // Reloading the sent page (the browser asks to send the form again) stores nothing new.
        b.client.refresh().await.unwrap();
        assert_eq!(app.store.calls().of_patient(id, 5).await.unwrap().len(), 1);
    }
    // A link that no longer works, as the patient sees it.
    let p1 = PatientId::parse("P001").unwrap();
    let now = Utc::now();
    let old = app.store.links().create(&p1, now + Duration::days(7), now).await.unwrap();
    app.store.links().revoke(&p1, "sato", now).await.unwrap();
    b.goto(&format!("{}/r/{}", app.addr, old.token.expose())).await;
    assert!(b.main_text().await.contains("このリンクは使えません"));
    shot(&b, "report-revoked-ja").await;
    b.close().await;
}
