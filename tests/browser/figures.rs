//! The figures page (集計) in Chromium, in Japanese and in English: each bubble of the chart
//! sits where its area's rates in the table put it, with an area proportional to the numbers
//! issued, and every area with both rates has one; a bad date chosen in the form is told beside
//! its field. With `IVR_TEST_SCREENSHOTS=DIR`, screenshots of the page in both languages at a
//! phone's width and a desk's.

use std::collections::BTreeMap;

use fantoccini::Locator;
use ivr::types::{Role, UiLanguage};
use serde_json::Value;

use crate::common::app::{TestApp, settings, spawn_app_with, sqlite_url};
use crate::common::browser::Browser;
use crate::common::patients::{PatientBuilder, patient};
use crate::common::staff::{PASSWORD, add_user};

/// Five areas over two weeks: (area, new patients, asked, app users, consents, numbers issued
/// in calls, by staff, on the web, verified).
type Area = (&'static str, usize, usize, usize, usize, usize, usize, usize, usize);
const AREAS: [Area; 5] = [
    ("中央区", 40, 34, 14, 12, 11, 3, 2, 12),
    ("北区", 25, 20, 9, 8, 8, 1, 1, 5),
    ("南区", 30, 24, 16, 15, 14, 2, 4, 17),
    ("東区", 12, 10, 3, 3, 3, 0, 0, 1),
    ("西区", 18, 12, 8, 7, 6, 4, 1, 9),
];

const PERIOD: &str = "from=2026-11-23&to=2026-12-06&by=week";

/// The roster and history of [`AREAS`], written straight to the server's database.
async fn app_with_areas() -> TestApp {
    // Plain HTTP on 127.0.0.1, so the session cookie is not `Secure`.
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.server.public_url = None;
    let app = spawn_app_with(s, dir).await;
    add_user(&app.store, "ito", Role::Viewer).await;
    let mut patients = Vec::new();
    let mut sql = String::new();
    let mut n = 0;
    for (area, new, asked, users, consents, call, staff, web, verified) in AREAS {
        let mut issued = 0;
        for j in 0..new {
            n += 1;
            let id = format!("P{n:04}");
            let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap() + chrono::Days::new((j % 14) as u64);
            patients.push(patient(&id, &format!("+8190{n:08}")).area(area).care(&day.to_string(), "2026-12-31"));
            let at = format!("{day}T01:{:02}:00.000Z", j % 60);
            if j < asked {
                let answers: Vec<(&str, &str)> = match (j < users, j < consents) {
                    (true, true) => vec![("app_use", "yes"), ("consent", "yes")],
                    (true, false) => vec![("app_use", "yes"), ("consent", "no")],
                    _ => vec![("app_use", "no")],
                };
                sql += &format!(
                    "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, created_at)
                     values ('CA{id}', '{id}', 'outbound', 'daily-health-check', 'v1', '{{}}', '{at}');\n"
                );
                for (name, value) in answers {
                    sql += &format!(
                        "insert into answers (call_id, patient_id, name, kind, value_text, created_at)
                         select call_id, '{id}', '{name}', 'text', '{value}', '{at}' from calls where call_sid = 'CA{id}';\n"
                    );
                }
            }
            // The consenting patients' numbers by the call, then others' by staff and on the web.
            let origin = if j < call {
                Some("call")
            } else if j >= asked && j < asked + staff {
                Some("staff")
            } else if j >= asked + staff && j < asked + staff + web {
                Some("web")
            } else {
                None
            };
            if let Some(origin) = origin {
                let used = if issued < verified { format!("'{at}'") } else { "null".into() };
                issued += 1;
                sql += &format!(
                    "insert into processing_numbers (patient_id, number_hash, status, issued_at, expires_at,
                       consent_channel, delivery, used_at)
                     values ('{id}', 'h{id}', 'used', '{at}', '{at}', '{origin}', 'sms', {used});\n"
                );
            }
        }
        assert_eq!(issued, call + staff + web, "{area}: every number placed");
    }
    app.store.patients().import(&patients).await.unwrap();
    rusqlite::Connection::open(app.sqlite_path()).unwrap().execute_batch(&sql).unwrap();
    app
}

/// The number in a cell such as `75.0%` (`None` for `—`).
fn number(cell: &str) -> Option<f64> {
    cell.trim().trim_end_matches('%').parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bubble_sits_at_its_areas_rates_in_the_table_in_both_languages() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let app = app_with_areas().await;
    for language in [UiLanguage::Ja, UiLanguage::En] {
        app.store.users().set_language("ito", language).await.unwrap();
        b.sign_in(&app.addr, "ito", PASSWORD).await;
        b.goto(&format!("{}/ui/figures?{PERIOD}", app.addr)).await;
        let title = b.client.title().await.unwrap();
        let want = if language == UiLanguage::Ja { "集計" } else { "Figures" };
        assert!(title.starts_with(want), "{title}");
        // The table, as the browser shows it: area → (issued, issuance %, registration %).
        let rows = b
            .client
            .execute(
                "return [...document.querySelectorAll('#period-table tbody tr:not(.total)')].map(r =>
                   [r.querySelector('th').innerText, ...[...r.querySelectorAll('td')].map(c => c.innerText)])",
                vec![],
            )
            .await
            .unwrap();
        let table: BTreeMap<String, (f64, Option<f64>, Option<f64>)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let c: Vec<&str> = r.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                (c[0].to_string(), (number(c[8]).unwrap(), number(c[10]), number(c[11])))
            })
            .collect();
        assert_eq!(table.len(), AREAS.len());
        let chart = b
            .client
            .execute(
                "const s = document.getElementById('bubbles');
                 const plot = ['left', 'top', 'width', 'height', 'xMax'].map(k => Number(s.dataset[k]));
                 const shown = s.getBoundingClientRect().width > 300;
                 return [plot, shown, [...s.querySelectorAll('circle')].map(c =>
                   [c.dataset.area, ...['cx', 'cy', 'r'].map(a => Number(c.getAttribute(a)))])]",
                vec![],
            )
            .await
            .unwrap();
        let plot: Vec<f64> = chart[0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(chart[1], Value::Bool(true), "the chart is drawn at a readable size");
        let (left, top, width, height, x_max) = (plot[0], plot[1], plot[2], plot[3], plot[4]);
        let bubbles = chart[2].as_array().unwrap();
        let with_rates = table.values().filter(|(_, x, y)| x.is_some() && y.is_some()).count();
        assert_eq!(bubbles.len(), with_rates, "a bubble for every area with both rates");
        let most = table.values().map(|(issued, _, _)| *issued).fold(0.0, f64::max);
        for bubble in bubbles {
            let area = bubble[0].as_str().unwrap();
            let (cx, cy, r) = (bubble[1].as_f64().unwrap(), bubble[2].as_f64().unwrap(), bubble[3].as_f64().unwrap());
            let (issued, x, y) = table[area];
            let (x, y) = (x.unwrap(), y.unwrap());
            // The table's rates have one decimal: within a twentieth of a percent of the axis.
            assert!((cx - (left + width * x / x_max)).abs() <= width * 0.0005 / x_max * 100.0 + 0.1, "{area}: x");
            assert!((cy - (top + height * (1.0 - y / 100.0))).abs() <= height * 0.0005 + 0.1, "{area}: y");
            let want_r = 44.0 * (issued / most).sqrt();
            assert!((r - want_r).abs() <= 0.1, "{area}: r {r}, issued {issued} of {most}");
        }
        // 中央区 issued 16 of 40: 40.0 %, 12 of 16 verified: 75.0 %.
        assert_eq!(table["中央区"], (16.0, Some(40.0), Some(75.0)));

        // A last day before the first, chosen in the form: told beside the field.
        b.client.execute("document.getElementById('to').value = '2026-11-01'", vec![]).await.unwrap();
        b.click("form.filters button[type=submit]").await;
        let error = b.client.find(Locator::Id("to-error")).await.unwrap().text().await.unwrap();
        let want = if language == UiLanguage::Ja {
            "終了日は開始日と同じか、それより後にしてください。"
        } else {
            "The last day cannot be before the first."
        };
        assert_eq!(error, want);
        let invalid = b.client.find(Locator::Id("to")).await.unwrap().attr("aria-invalid").await.unwrap();
        assert_eq!(invalid.as_deref(), Some("true"));
        b.click("form[action='/ui/logout'] button").await;
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_figures_page_in_both_languages() {
    let Ok(out) = std::env::var("IVR_TEST_SCREENSHOTS") else { return };
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(out);
    std::fs::create_dir_all(&out).unwrap();
    let app = app_with_areas().await;
    // On a phone each row is a card: the whole period only, without the weeks, keeps it short.
    for (size, width, height, by) in [("phone", 390, 844, "period"), ("desktop", 1280, 800, "week")] {
        let Some(b) = Browser::start(width, height).await else { return };
        for (lang, language) in [("ja", UiLanguage::Ja), ("en", UiLanguage::En)] {
            app.store.users().set_language("ito", language).await.unwrap();
            b.sign_in(&app.addr, "ito", PASSWORD).await;
            b.goto(&format!("{}/ui/figures?from=2026-11-23&to=2026-12-06&by={by}", app.addr)).await;
            crate::screenshots::shot(&b, &out, &format!("figures-{lang}-{size}"), width, height).await;
            b.click("form[action='/ui/logout'] button").await;
        }
        b.close().await;
    }
}
