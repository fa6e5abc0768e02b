//! The patients table and a patient's charts in Chromium, in Japanese and in English: the
//! sparklines' points and the charts' points, thresholds and missed calls checked against the
//! answers written for the test.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use fantoccini::Locator;
use ivr::scheduler::clock::Clock;
use ivr::store::NewAlert;
use ivr::types::{Role, Severity, UiLanguage};

use crate::common::app::{TestApp, settings, spawn_app_at, sqlite_url};
use crate::common::browser::Browser;
use crate::common::patients::{PatientBuilder, patient};
use crate::common::staff::{PASSWORD, add_user};

/// A patient's day: the call's temperature and SpO2, or `None` when the call never reached them.
pub type Day = Option<(f64, i64)>;

/// 山田 花子's ten days from 11/28: a fever, SpO2 down to 92 (below the flow's 93), one missed day.
pub const YAMADA: [Day; 10] = [
    Some((36.6, 98)),
    Some((36.9, 97)),
    Some((37.2, 97)),
    Some((37.8, 96)),
    None,
    Some((38.4, 94)),
    Some((38.0, 93)),
    Some((37.6, 92)),
    Some((37.2, 94)),
    Some((36.9, 96)),
];
/// 鈴木 一郎's last three days: well.
pub const SUZUKI: [Day; 3] = [Some((36.4, 98)), Some((36.5, 99)), Some((36.3, 98))];

fn tokyo() -> chrono_tz::Tz {
    chrono_tz::Asia::Tokyo
}

/// 09:00 in Tokyo `back` days before `now`'s day.
pub fn morning(now: DateTime<Utc>, back: i64) -> DateTime<Utc> {
    let day = now.with_timezone(&tokyo()).date_naive() - Duration::days(back);
    tokyo().from_local_datetime(&day.and_hms_opt(9, 0, 0).unwrap()).unwrap().with_timezone(&Utc)
}

/// Writes a patient's daily calls, the last one on `now`'s day, straight into the database (as
/// the calls would have left them: a call with its answers, or an unreachable job).
pub fn write_days(path: &std::path::Path, patient: &str, now: DateTime<Utc>, days: &[Day]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    for (i, day) in days.iter().enumerate() {
        let at = morning(now, (days.len() - 1 - i) as i64);
        let local_day = at.with_timezone(&tokyo()).date_naive().to_string();
        let t = time(at);
        match day {
            Some((temp, spo2)) => {
                let sid = format!("CA{patient}{i:02}");
                conn.execute(
                    "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, status, ended, created_at, updated_at)
                     values (?1, ?2, 'outbound', 'daily-health-check', 'test', '{}', 'completed', 1, ?3, ?3)",
                    rusqlite::params![sid, patient, t],
                )
                .unwrap();
                let raw = (temp * 10.0).round() as i64;
                for (name, text, raw, scale) in
                    [("temperature", format!("{temp:.1}"), raw, 1), ("spo2", spo2.to_string(), *spo2, 0)]
                {
                    conn.execute(
                        "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
                         select call_id, ?2, ?3, 'number', ?4, ?5, ?6, ?7 from calls where call_sid = ?1",
                        rusqlite::params![sid, patient, name, text, raw, scale, t],
                    )
                    .unwrap();
                }
                conn.execute(
                    "insert into jobs (patient_id, flow, status, day, due_at, attempt, outcome, updated_at, created_at)
                     values (?1, 'daily-health-check', 'done', ?2, ?3, 1, 'completed', ?3, ?3)",
                    rusqlite::params![patient, local_day, t],
                )
                .unwrap();
            }
            None => {
                conn.execute(
                    "insert into jobs (patient_id, flow, status, day, due_at, attempt, outcome, updated_at, created_at)
                     values (?1, 'daily-health-check', 'unreachable', ?2, ?3, 3, 'no-answer', ?3, ?3)",
                    rusqlite::params![patient, local_day, t],
                )
                .unwrap();
            }
        }
    }
}

/// The roster and the days above, P001's SpO2 alert open; `now` is the server's clock.
pub async fn fill(app: &TestApp, now: DateTime<Utc>) {
    let start = morning(now, 9).with_timezone(&tokyo()).date_naive();
    let yamada = patient("P001", "+819012345678")
        .name("山田 花子")
        .area("north")
        .care(&start.to_string(), &(start + Duration::days(13)).to_string());
    let suzuki = patient("P002", "+819087654321").name("鈴木 一郎").area("south").language("en-US").slot("afternoon");
    let sato = patient("P003", "+81312345678").name("佐藤 美咲").area("north");
    for p in [&yamada, &suzuki, &sato] {
        app.store.patients().upsert(p).await.unwrap();
    }
    write_days(&app.sqlite_path(), "P001", now, &YAMADA);
    write_days(&app.sqlite_path(), "P002", now, &SUZUKI);
    app.store.followups().raise("P001", &NewAlert::flow("health_check", Severity::Urgent), now).await.unwrap();
}

/// The sparkline points the page must draw for `days` (the last 7, today's included).
fn expected_spark(now: DateTime<Utc>, days: &[Day], spo2: bool) -> Vec<(f64, f64)> {
    let today = now.with_timezone(&tokyo()).date_naive();
    let since =
        tokyo().from_local_datetime(&(today - Duration::days(6)).and_time(NaiveTime::MIN)).unwrap().with_timezone(&Utc);
    let values: Vec<(DateTime<Utc>, f64)> = days
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            d.map(|(t, s)| (morning(now, (days.len() - 1 - i) as i64), if spo2 { s as f64 } else { t }))
        })
        .filter(|(at, _)| *at >= since)
        .collect();
    let lo = values.iter().map(|v| v.1).fold(f64::INFINITY, f64::min);
    let hi = values.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max);
    let span = (now - since).num_seconds() as f64;
    values
        .iter()
        .map(|(at, v)| (4.0 + (*at - since).num_seconds() as f64 / span * 112.0, 4.0 + (hi - v) / (hi - lo) * 24.0))
        .collect()
}

fn parse_points(s: &str) -> Vec<(f64, f64)> {
    s.split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

fn close(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| (p.0 - q.0).abs() < 0.11 && (p.1 - q.1).abs() < 0.11)
}

async fn attr(b: &Browser, css: &str, name: &str) -> String {
    let e = b.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.attr(name).await.unwrap().unwrap_or_else(|| panic!("{css} has no {name}"))
}

async fn all_attrs(b: &Browser, css: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.attr(name).await.unwrap().unwrap_or_default());
    }
    out
}

async fn row_ids(b: &Browser) -> Vec<String> {
    all_attrs(b, "table.patients tbody tr", "id")
        .await
        .into_iter()
        .map(|id| id.trim_start_matches("row-").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patients_table_and_a_patients_charts_show_the_answers_in_both_languages() {
    let Some(b) = Browser::start(1280, 900).await else { return };
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap(); // 12:00 in Tokyo
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&sqlite_url(dir.path()));
    s.server.public_url = None;
    let app = spawn_app_at(s, dir, Clock::manual(now)).await;
    add_user(&app.store, "sato", Role::Nurse).await;
    fill(&app, now).await;
    b.sign_in(&app.addr, "sato", PASSWORD).await;

    for (lang, words) in [
        ("ja", ["体温", "不通（電話がつながらず）", "緊急", "アラート ≤ 93"]),
        ("en", ["Temperature", "missed (not reached)", "Urgent", "Alert ≤ 93"]),
    ] {
        app.store.users().set_language("sato", UiLanguage::parse(lang).unwrap()).await.unwrap();
        b.goto(&format!("{}/ui/patients", app.addr)).await;
        assert_eq!(row_ids(&b).await, ["P001", "P002", "P003"], "{lang}");
        let row = b.client.find(Locator::Id("row-P001")).await.unwrap().text().await.unwrap();
        // The latest answers, the urgent item, and the last call (today's: done).
        assert!(row.contains("36.9") && row.contains("96") && row.contains(words[2]), "{lang}: {row}");
        assert!(b.main_text().await.contains(words[0]), "{lang}");
        for (n, spo2) in [(0, false), (1, true)] {
            let css = format!("#row-P001 td.reading:nth-of-type({}) svg.spark polyline", 3 + n);
            let drawn = parse_points(&attr(&b, &css, "points").await);
            let want = expected_spark(now, &YAMADA, spo2);
            assert_eq!(want.len(), 6, "7 days back from today: one of them missed");
            assert!(close(&drawn, &want), "{lang} {css}: {drawn:?} against {want:?}");
        }
        let label = attr(&b, "#row-P001 td.reading:nth-of-type(4) svg.spark", "aria-label").await;
        assert!(label.contains("94") && label.contains("92") && label.contains("96"), "the text alternative: {label}");

        // Sorted by SpO2, lowest first; then the other way; then only urgent items.
        b.click("#sort-spo2").await;
        assert_eq!(row_ids(&b).await, ["P001", "P002", "P003"], "96, 98, none");
        assert_eq!(attr(&b, "th[aria-sort=ascending] a", "id").await, "sort-spo2");
        b.click("#sort-spo2").await;
        assert_eq!(row_ids(&b).await, ["P002", "P001", "P003"], "98, 96, none last");
        b.client.find(Locator::Id("alert")).await.unwrap().select_by_value("urgent").await.unwrap();
        b.click("#filter-submit").await;
        assert_eq!(row_ids(&b).await, ["P001"]);
        b.fill("q", "090-8765").await;
        b.client.find(Locator::Id("alert")).await.unwrap().select_by_value("").await.unwrap();
        b.click("#filter-submit").await;
        assert_eq!(row_ids(&b).await, ["P002"], "found by phone");

        // The patient's page: a point per answered call, the missed day marked, the flow's
        // threshold (SpO2 ≤ 93, urgent) where 93 is.
        b.goto(&format!("{}/ui/patients/P001", app.addr)).await;
        let main = b.main_text().await;
        assert!(main.contains(words[3]), "{lang}: {main}");
        let values: Vec<String> = all_attrs(&b, "#chart-spo2 circle.pt", "data-value").await;
        let want: Vec<String> = YAMADA.iter().flatten().map(|(_, s)| s.to_string()).collect();
        assert_eq!(values, want);
        let temps: Vec<f64> = all_attrs(&b, "#chart-temperature circle.pt", "data-value")
            .await
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(temps, YAMADA.iter().flatten().map(|(t, _)| *t).collect::<Vec<_>>());
        let lo: f64 = attr(&b, "#chart-spo2", "data-lo").await.parse().unwrap();
        let hi: f64 = attr(&b, "#chart-spo2", "data-hi").await.parse().unwrap();
        let y = |v: f64| 16.0 + (hi - v) / (hi - lo) * 200.0;
        let ys: Vec<f64> =
            all_attrs(&b, "#chart-spo2 circle.pt", "cy").await.iter().map(|v| v.parse().unwrap()).collect();
        for (drawn, value) in ys.iter().zip(YAMADA.iter().flatten()) {
            assert!((drawn - y(value.1 as f64)).abs() < 0.11, "SpO2 {} at {drawn}", value.1);
        }
        let xs: Vec<f64> =
            all_attrs(&b, "#chart-spo2 circle.pt", "cx").await.iter().map(|v| v.parse().unwrap()).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "in time order: {xs:?}");
        assert_eq!(all_attrs(&b, "#chart-spo2 g.threshold", "data-value").await, ["93"]);
        let line: f64 = attr(&b, "#chart-spo2 g.threshold line", "y1").await.parse().unwrap();
        assert!((line - y(93.0)).abs() < 0.11, "the threshold at 93: {line}");
        assert_eq!(all_attrs(&b, "#chart-spo2 circle.pt.alert", "data-value").await, ["93", "92"], "at or below 93");
        assert!(
            all_attrs(&b, "#chart-temperature g.threshold", "data-value").await.is_empty(),
            "no rule on temperature"
        );
        let missed = all_attrs(&b, "#chart-spo2 g.missed", "data-at").await;
        assert_eq!(missed, [morning(now, 5).to_rfc3339()], "the fifth day");
        // The text alternative: a row per call, the missed one too.
        assert_eq!(b.client.find_all(Locator::Css("#trend-table tbody tr")).await.unwrap().len(), 10);
        let table =
            b.client.find(Locator::Id("trend-table")).await.unwrap().prop("textContent").await.unwrap().unwrap();
        assert!(table.contains("38.4") && table.contains("92") && table.contains(words[1]), "{lang}: {table}");
    }
    b.close().await;
}
