//! The Today page and the call-flow pages in Chromium, in Japanese and in English, checked
//! against the data: the figures after a campaign the simulator played (each area's row and
//! the total against the store's figures, the tiles against the total), a new figure swapped
//! in by the page's event stream without a reload; the flows' list against the versions the
//! calls ran on, and the diagram's boxes and the text alternative against the flow's states.
//! With `IVR_TEST_SCREENSHOTS=DIR`, screenshots of each page in both languages, at a phone's
//! width and a desk's.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use fantoccini::Locator;
use ivr::http::ui::today::value;
use ivr::scheduler::clock::Clock;
use ivr::store::{AreaDay, DayFigures, NewAlert, Store};
use ivr::types::{Role, Severity, UiLanguage};
use secrecy::SecretString;

use crate::common::app::{TestApp, settings, spawn_app_at, sqlite_url};
use crate::common::browser::Browser;
use crate::common::patients::patient;
use crate::common::staff::{PASSWORD, add_user};

/// A server whose simulator has played today's campaign to its end: ten patients in two areas
/// and one without, each a persona (app user, no answer, busy, hang-up, undeliverable SMS, low
/// SpO2 …), dialled at most twice.
async fn after_a_campaign() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut s = ivr::demo::demo_settings(settings(&url));
    s.database.url = SecretString::from(url);
    s.server.public_url = None;
    s.carrier.simulator_speed = 0.0;
    s.scheduler.calls_per_second = 50.0;
    s.scheduler.retry_after = "1s".into();
    let app = spawn_app_at(s, dir, Clock::System).await;
    add_user(&app.store, "ito", Role::Viewer).await;
    // The last digit picks the persona: 0 app user, 1 not an app user, 4 hangs up, 5 no
    // answer, 6 busy, 8 SMS undeliverable, 9 low SpO2.
    for (i, last) in [0, 1, 4, 5, 6, 8, 9, 0, 1, 9].into_iter().enumerate() {
        let area = match i {
            9 => None,
            i if i % 2 == 0 => Some("北区"),
            _ => Some("南区"),
        };
        let mut p = patient(&format!("P{i:03}"), &format!("+81901234{i:03}{last}"));
        p.area = area.map(str::to_string);
        app.store.patients().upsert(&p).await.unwrap();
    }
    let planner = ivr::server::planner(&app.settings);
    let plan = planner.plan(&app.store, Utc::now(), true).await.unwrap();
    assert_eq!(plan.jobs, 10);
    app.state.dialer_wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !finished(&app.store, plan.day).await {
        assert!(Instant::now() < deadline, "the campaign did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app
}

/// Every job final and every message's fate known.
async fn finished(store: &Store, day: chrono::NaiveDate) -> bool {
    let jobs = store.campaign().jobs_for_day(day).await.unwrap();
    if !jobs.iter().all(|j| ["done", "unreachable", "failed"].contains(&j.status.as_str())) {
        return false;
    }
    for j in &jobs {
        let messages = store.outbox().for_patient(j.patient_id.as_str()).await.unwrap();
        if messages.iter().any(|(_, _, status, _)| !["delivered", "failed", "dead"].contains(&status.as_str())) {
            return false;
        }
    }
    true
}

async fn figures(app: &TestApp) -> DayFigures {
    let hours = &app.state.campaign.hours;
    let day = hours.day_of(Utc::now());
    let (from, to) = hours.day_bounds(day);
    app.store.campaign().day_figures(day, from, to).await.unwrap()
}

/// The numbers of one row of the page's table: `data-what` → value.
async fn row(b: &Browser, area: &str) -> Vec<(String, i64)> {
    let css = format!("#figures tr[data-area='{area}'] td");
    let mut out = Vec::new();
    for cell in b.client.find_all(Locator::Css(&css)).await.unwrap() {
        let what = cell.attr("data-what").await.unwrap().unwrap();
        let text = cell.text().await.unwrap();
        let n = text.replace(',', "").trim().parse::<i64>().unwrap_or_else(|e| panic!("{what}: {text:?}: {e}"));
        out.push((what, n));
    }
    assert!(!out.is_empty(), "no row for {area}");
    out
}

fn expected(a: &AreaDay, shown: &[(String, i64)]) -> Vec<(String, i64)> {
    shown.iter().map(|(what, _)| (what.clone(), value(a, what))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_today_page_shows_the_campaign_per_area_and_swaps_in_new_figures_by_itself() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let app = after_a_campaign().await;
    let f = figures(&app).await;
    let total = f.total();
    assert_eq!(total.planned(), 10);
    assert!(total.count("done") > 0 && total.count("unreachable") > 0, "{total:?}");
    assert!(total.numbers_issued > 0 && total.sms_delivered > 0 && total.sms_failed > 0, "{total:?}");
    assert!(total.followups_open > 0, "{total:?}");
    b.sign_in(&app.addr, "ito", PASSWORD).await;
    assert!(b.client.find(Locator::Css("nav.main a[href='/ui/today']")).await.is_ok(), "in the navigation");
    b.click("nav.main a[href='/ui/today']").await;
    assert_eq!(b.path().await, "/ui/today");
    for lang in ["ja", "en"] {
        app.store.users().set_language("ito", UiLanguage::parse(lang).unwrap()).await.unwrap();
        b.goto(&format!("{}/ui/today", app.addr)).await;
        let heading = b.client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
        assert!(heading.contains(if lang == "ja" { "今日の架電状況" } else { "Today's calls" }), "{heading}");
        let areas: Vec<String> = {
            let mut v = Vec::new();
            for r in b.client.find_all(Locator::Css("#figures tbody tr")).await.unwrap() {
                v.push(r.attr("data-area").await.unwrap().unwrap());
            }
            v
        };
        assert_eq!(areas, ["北区", "南区", ""], "each area, the patients without one last");
        for a in &f.areas {
            let shown = row(&b, &a.area).await;
            assert_eq!(shown, expected(a, &shown), "{lang}: area {:?}", a.area);
        }
        let shown = row(&b, "*").await;
        assert_eq!(shown, expected(&total, &shown), "{lang}: the total");
        assert_eq!(shown.len(), 13);
        for tile in b.client.find_all(Locator::Css("#figures li.tile")).await.unwrap() {
            let what = tile.attr("data-what").await.unwrap().unwrap();
            let text = tile.find(Locator::Css(".tile-value")).await.unwrap().text().await.unwrap();
            assert_eq!(text.replace(',', "").parse::<i64>().unwrap(), value(&total, &what), "{lang}: tile {what}");
        }
        let unnamed = b.client.find(Locator::Css("#figures tr[data-area=''] th")).await.unwrap().text().await.unwrap();
        assert_eq!(unnamed, if lang == "ja" { "（地区なし）" } else { "(no area)" });
    }

    // The event stream: a new follow-up item shows within a few pushes, with no reload.
    let before = value(&total, "followups_open");
    let live = b.client.find(Locator::Id("live")).await.unwrap();
    let started = Instant::now();
    while live.attr("hidden").await.unwrap().is_some() {
        assert!(started.elapsed() < Duration::from_secs(30), "the page's script never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.client.execute("window.__same_page = true", vec![]).await.unwrap();
    let quiet = app.store.patients().all().await.unwrap().into_iter().find(|p| p.area.is_none()).unwrap();
    let opened = app.store.followups().open_for(quiet.patient_id.as_str()).await.unwrap().is_none();
    app.store
        .followups()
        .raise(quiet.patient_id.as_str(), &NewAlert::flow("health_check", Severity::Normal), Utc::now())
        .await
        .unwrap();
    let want = before + i64::from(opened);
    let started = Instant::now();
    loop {
        let shown = row(&b, "*").await;
        let open = shown.iter().find(|(w, _)| w == "followups_open").unwrap().1;
        if open == want {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still {open}, not {want}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let same = b.client.execute("return window.__same_page === true", vec![]).await.unwrap();
    assert_eq!(same, serde_json::Value::Bool(true), "swapped in, not reloaded");

    // The API answers the same figures.
    let token = "ivr_today_read_token";
    app.store
        .numbers()
        .add_token("wall", &ivr::http::api::token_hash(token), ivr::types::Scopes::parse("read").unwrap())
        .await
        .unwrap();
    let api: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/today", app.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = figures(&app).await.total();
    for what in ivr::http::ui::today::API_FIELDS {
        assert_eq!(api["total"][what].as_i64(), Some(value(&now, what)), "api {what}");
    }
    b.close().await;
    screenshots(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_pages_list_the_versions_the_calls_ran_on_and_draw_every_state() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let app = after_a_campaign().await;
    let usage = app.store.flows().usage().await.unwrap();
    let flow = app.state.flows.current("daily-health-check").unwrap();
    let mine: Vec<_> = usage.iter().filter(|u| u.flow == flow.name).collect();
    assert_eq!(mine.len(), 1, "{usage:?}");
    assert_eq!((mine[0].version.as_str(), mine[0].calls > 0), (flow.version.as_str(), true));
    b.sign_in(&app.addr, "ito", PASSWORD).await;
    for lang in ["ja", "en"] {
        app.store.users().set_language("ito", UiLanguage::parse(lang).unwrap()).await.unwrap();
        b.goto(&format!("{}/ui/flows", app.addr)).await;
        let listed =
            b.client.find(Locator::Css("tr[data-flow='daily-health-check']")).await.unwrap().text().await.unwrap();
        assert!(listed.contains(&flow.version[..12]) && listed.contains(&mine[0].calls.to_string()), "{listed}");
        b.click("tr[data-flow='daily-health-check'] a").await;
        assert_eq!(b.path().await, "/ui/flows/daily-health-check");
        let version = b.client.find(Locator::Css(&format!("tr[data-version='{}']", flow.version))).await.unwrap();
        let calls = version.find(Locator::Css("td[data-what='calls']")).await.unwrap().text().await.unwrap();
        assert_eq!(calls, mine[0].calls.to_string());
        assert!(version.text().await.unwrap().contains(if lang == "ja" { "使用中" } else { "Served now" }));
        // The diagram: one box per state, a transfer arrow at each question.
        let mut boxes = BTreeSet::new();
        for g in b.client.find_all(Locator::Css("svg.flow-diagram g.state")).await.unwrap() {
            boxes.insert(g.attr("data-state").await.unwrap().unwrap());
        }
        let states: BTreeSet<String> = flow.states.iter().map(|s| s.name.clone()).collect();
        assert_eq!(boxes, states, "{lang}: a box for each of the flow's states");
        let questions = flow.states.iter().filter(|s| s.kind.question().is_some()).count();
        let transfers = b.client.find_all(Locator::Css("svg.flow-diagram path.edge.transfer")).await.unwrap().len();
        assert_eq!(transfers, questions, "{lang}: the transfer key's arrow at each question");
        let start = b.client.find(Locator::Css("svg.flow-diagram g.state.start")).await.unwrap();
        assert_eq!(start.attr("data-state").await.unwrap().unwrap(), flow.states[flow.start].name);
        let edges = b.client.find_all(Locator::Css("svg.flow-diagram path.edge")).await.unwrap().len();
        assert!(edges >= flow.states.len() - 1, "{edges} arrows");
        // The same as a list.
        let mut listed = BTreeSet::new();
        for li in b.client.find_all(Locator::Css("ol.states > li")).await.unwrap() {
            listed.insert(li.attr("data-state").await.unwrap().unwrap());
        }
        assert_eq!(listed, states, "{lang}: the text alternative lists every state");
        let first = b.client.find(Locator::Css("ol.states > li")).await.unwrap().text().await.unwrap();
        assert!(first.contains(if lang == "ja" { "次へ" } else { "next" }), "{first}");
    }
    b.goto(&format!("{}/ui/flows/no-such-flow", app.addr)).await;
    assert!(b.main_text().await.contains("No such flow"));
    b.close().await;
}

/// With `IVR_TEST_SCREENSHOTS`, the pages after the campaign in both languages and sizes.
async fn screenshots(app: &TestApp) {
    let Ok(out) = std::env::var("IVR_TEST_SCREENSHOTS") else { return };
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(out);
    std::fs::create_dir_all(&out).unwrap();
    for (size, width, height) in crate::screenshots::SIZES {
        let Some(b) = Browser::start(width, height).await else { return };
        b.sign_in(&app.addr, "ito", PASSWORD).await;
        for lang in ["ja", "en"] {
            app.store.users().set_language("ito", UiLanguage::parse(lang).unwrap()).await.unwrap();
            for (page, path) in
                [("today", "/ui/today"), ("flows", "/ui/flows"), ("flow", "/ui/flows/daily-health-check")]
            {
                b.goto(&format!("{}{path}", app.addr)).await;
                crate::screenshots::shot(&b, &out, &format!("{page}-{lang}-{size}"), width, height).await;
            }
        }
        b.close().await;
    }
}
