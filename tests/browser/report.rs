//! The patient's web self-report in a real headless Chromium, without JavaScript: the daily
//! report filled in Japanese and in English, a temperature out of range refused beside its
//! field, the processing number reached; with `IVR_TEST_SCREENSHOTS=DIR`, screenshots of each
//! step at a phone's width (docs/web-report.md).

use chrono::{Duration, Utc};
use fantoccini::Locator;
use ivr::types::PatientId;

use crate::common::app::{settings, spawn_app, spawn_app_at, sqlite_url};
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

    // Three birth dates that do not match close the link, and the patient is told why.
    let fresh = app.store.links().create(&p1, now + Duration::days(7), now).await.unwrap();
    b.goto(&format!("{}/r/{}", app.addr, fresh.token.expose())).await;
    for (i, date) in ["0101", "1231", "0229"].into_iter().enumerate() {
        b.fill("q.identity", date).await;
        next(&b).await;
        let text = b.main_text().await;
        if i < 2 {
            assert!(text.contains("生年月日"), "{text}");
        } else {
            assert!(text.contains("生年月日を確認できなかったため"), "{text}");
        }
    }
    shot(&b, "report-identity-ja").await;
    let item = app.store.followups().open_for("P001").await.unwrap().expect("the health centre is alerted");
    assert!(item.reasons.iter().any(|r| r.reason == "identity_not_confirmed"), "{:?}", item.reasons);
    b.close().await;
}

/// Today at `h:m` in Tokyo.
fn tokyo(h: u32, m: u32) -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    let tz = chrono_tz::Asia::Tokyo;
    let day = Utc::now().with_timezone(&tz).date_naive();
    tz.from_local_datetime(&day.and_hms_opt(h, m, 0).unwrap()).unwrap().with_timezone(&Utc)
}

/// Two check-ins a day: the patient with a link gets the morning's web request (a new link by
/// SMS), reports through it in the browser, and the scheduler does not call them for that
/// check-in (the plan says `reported_web`), while the afternoon's still asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_who_reports_through_the_check_ins_web_request_is_not_called_for_that_check_in() {
    use ivr::scheduler::clock::Clock;
    use ivr::scheduler::plan::Reason;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.scheduler.checks = Some(vec!["09:00".into(), "15:00".into()]);
    s.scheduler.slots =
        Some([("morning", "09:00-12:00"), ("afternoon", "15:00-18:00")].map(|(n, s)| (n.into(), s.into())).into());
    s.scheduler.web_grace = "60m".into();
    let clock = Clock::manual(tokyo(8, 0));
    let app = spawn_app_at(s.clone(), dir, clock.clone()).await;
    let Some(b) = Browser::start(WIDTH, HEIGHT).await else { return };
    let today = tokyo(12, 0).with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let mut p = patient("P001", "+819011000001").slot("morning");
    p.care_start = Some(today - Duration::days(2));
    p.care_end = Some(today + Duration::days(7));
    app.add(p).await;
    let id = PatientId::parse("P001").unwrap();
    app.store.links().create(&id, tokyo(23, 0) + Duration::days(7), clock.now()).await.unwrap();

    let planner = ivr::server::planner(&s);
    let reason = |plan: &ivr::scheduler::daily::Planned, k: usize| plan.checkins[k].reasons[0];
    let plan = planner.plan(&app.store, clock.now(), false).await.unwrap();
    assert_eq!((reason(&plan, 0), reason(&plan, 1)), (Reason::WebFirst, Reason::WebFirst));

    // 09:00: the web request goes out with a new link.
    clock.set(tokyo(9, 0));
    let sim = app.state.simulator.clone().unwrap();
    let mut request = None;
    for _ in 0..400 {
        app.state.dialer_wake.notify_one();
        if let Some(m) = sim.messages().into_iter().find(|m| m.body.contains("/r/")) {
            request = Some(m.body);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let request = request.expect("the morning's web request by SMS");
    let at = request.find("/r/").unwrap();
    let path: String = request[at..].chars().take(3 + ivr::store::TOKEN_CHARS).collect();

    // 09:20: the patient reports through it.
    clock.set(tokyo(9, 20));
    b.goto(&format!("{}{path}", app.addr)).await;
    b.fill("q.identity", "0412").await;
    b.fill("q.temperature", "36.6").await;
    choose(&b, "oximeter", "2").await;
    next(&b).await;
    for q in ["breathless", "cough", "fatigue", "taste_smell"] {
        choose(&b, q, "2").await;
    }
    choose(&b, "trend", "1").await;
    next(&b).await;
    choose(&b, "app_use", "2").await;
    next(&b).await;
    b.click(r#"button[value="send"]"#).await;
    assert!(b.main_text().await.contains("送信しました"));

    // The plan, made again, does not call P001 for the morning; the afternoon still asks.
    let again = planner.plan(&app.store, clock.now(), false).await.unwrap();
    assert_eq!((reason(&again, 0), reason(&again, 1)), (Reason::ReportedWeb, Reason::WebFirst));
    // Past the grace, the morning's job is settled without a call.
    clock.set(tokyo(10, 30));
    let mut settled = None;
    for _ in 0..400 {
        app.state.dialer_wake.notify_one();
        let jobs = app.store.campaign().jobs_for_day(today).await.unwrap();
        let morning = jobs.into_iter().find(|j| j.patient_id == id && j.checkin == "09:00").unwrap();
        if morning.status != "planned" {
            settled = Some(morning);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let morning = settled.expect("the morning's job moved on");
    assert_eq!((morning.status.as_str(), morning.attempt), ("reported", 0), "{morning:?}");
    assert!(sim.calls().is_empty(), "nobody was called");
    b.close().await;
}
