//! The ministry's figures over HTTP: the staff page (its table and its bubbles against the
//! known history of `common::figures`, the date fields checked with the error beside each), the
//! CSV export read back with its Japanese intact and audited, the JSON API, and a real call
//! whose app question and consent the figures count.

use ivr::types::{Role, UiLanguage};
use serde_json::Value;

use crate::common::app::*;
use crate::common::figures::{history_sql, roster};
use crate::common::patients::{PatientBuilder, patient};
use crate::common::staff::{PASSWORD, Page, add_user};

const WEEK: &str = "from=2026-12-01&to=2026-12-07";

/// A server with the known roster and history, and a viewer `ito` reading Japanese.
async fn app_with_history() -> TestApp {
    let app = spawn_app().await;
    app.store.patients().import(&roster()).await.unwrap();
    rusqlite::Connection::open(app.sqlite_path()).unwrap().execute_batch(&history_sql()).unwrap();
    add_user(&app.store, "ito", Role::Viewer).await;
    app
}

async fn signed_in(app: &TestApp, name: &str) -> Page {
    let mut page = Page::new(&app.addr);
    assert_eq!(page.sign_in(name, PASSWORD).await.status, 303);
    page
}

/// The text of each cell of the table row headed `area` in the table with id `table`.
fn row(body: &str, table: &str, area: &str) -> Vec<String> {
    let start = body.find(&format!("id=\"{table}\"")).unwrap_or_else(|| panic!("no table {table}"));
    let table = &body[start..start + body[start..].find("</table>").unwrap()];
    let head = format!("\">{area}</th>");
    let at = table.find(&head).unwrap_or_else(|| panic!("no row {area} in {table}"));
    let line = &table[at..at + table[at..].find("</tr>").unwrap()];
    line.split("<td").skip(1).map(|c| c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_figures_page_shows_each_areas_figures_and_bubbles_of_a_known_week() {
    let app = app_with_history().await;
    let ito = signed_in(&app, "ito").await;
    let page = ito.get(&format!("/ui/figures?{WEEK}&by=week")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let b = &page.body;
    assert!(b.contains("href=\"/ui/figures\" aria-current=\"page\""), "in the navigation");
    // Columns: new, asked, users, consents, calls, staff, web, issued, verified, rates.
    let expect = |v: [&str; 11]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        row(b, "period-table", "north"),
        expect(["4", "4", "3", "2", "2", "1", "0", "3", "3", "75.0%", "100.0%"])
    );
    assert_eq!(
        row(b, "period-table", "south"),
        expect(["2", "1", "1", "1", "1", "0", "1", "2", "1", "100.0%", "50.0%"])
    );
    assert_eq!(
        row(b, "period-table", "地区未設定"),
        expect(["0", "0", "0", "0", "0", "1", "0", "1", "0", "—", "0.0%"])
    );
    assert_eq!(
        row(b, "period-table", "合計"),
        expect(["6", "5", "4", "3", "3", "2", "1", "6", "4", "100.0%", "66.7%"])
    );
    // By week: Tuesday to Sunday, then Monday with nothing.
    assert!(b.contains(">2026-12-01</span> – <span class=\"nowrap\">2026-12-06</span></td>"), "{b}");
    assert!(b.contains(">2026-12-07</span></td>"), "{b}");
    // One bubble per area with both rates; the area with no new patient is named beside the chart.
    assert_eq!(b.matches("<circle ").count(), 2);
    assert!(b.contains("data-area=\"north\" data-issued=\"3\" data-issuance=\"75.0%\" data-registration=\"100.0%\""));
    assert!(b.contains("data-area=\"south\" data-issued=\"2\" data-issuance=\"100.0%\" data-registration=\"50.0%\""));
    assert!(b.contains("表にだけあります：地区未設定"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dates_are_told_beside_their_fields_and_nothing_is_counted() {
    let app = app_with_history().await;
    let ito = signed_in(&app, "ito").await;
    let page = ito.get("/ui/figures?from=2026-13-01&to=&by=month").await;
    assert_eq!(page.status, 422);
    let b = &page.body;
    assert!(b.contains("id=\"from-error\">日付は 年-月-日 の形で入力してください"), "{b}");
    assert!(b.contains("id=\"to-error\">日付を入力してください"), "{b}");
    assert!(b.contains("id=\"by-error\">集計の単位を選んでください"), "{b}");
    assert!(b.contains("value=\"2026-13-01\" aria-describedby=\"from-hint from-error\" aria-invalid=\"true\""), "{b}");
    assert!(!b.contains("period-table"));
    let page = ito.get("/ui/figures?from=2026-12-07&to=2026-12-01&by=day").await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("id=\"to-error\">終了日は開始日と同じか、それより後にしてください"));
    // No choice at all: the last seven days by day.
    let page = ito.get("/ui/figures").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<option value=\"day\" selected>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_export_reads_back_with_its_japanese_and_is_audited() {
    let app = app_with_history().await;
    let ito = signed_in(&app, "ito").await;
    let resp = ito
        .client
        .get(format!("{}/ui/figures.csv?{WEEK}&by=period", app.addr))
        .header("cookie", format!("ivr_session={}", ito.session.as_deref().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "a byte-order mark, so a spreadsheet reads UTF-8");
    let mut r = csv::Reader::from_reader(&bytes[3..]);
    let head: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(head[..4], ["開始日", "終了日", "地区", "新規陽性者数"]);
    assert_eq!(head[13], "陽性登録率");
    let rows: Vec<Vec<String>> = r.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    let areas: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(areas, ["north", "south", "地区未設定", "合計"]);
    assert_eq!(
        rows[3],
        ["2026-12-01", "2026-12-07", "合計", "6", "5", "4", "3", "3", "2", "1", "6", "4", "100.0%", "66.7%"]
    );
    let audit = app.store.users().audit_rows(100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.actor == "ito" && e.action == "export_figures" && e.target == "2026-12-01 2026-12-07 period")
    );

    // In English for a user who reads English, a row per day.
    app.store.users().set_language("ito", UiLanguage::En).await.unwrap();
    let csv = ito.get(&format!("/ui/figures.csv?{WEEK}&by=day")).await.body;
    let csv = csv.trim_start_matches('\u{feff}');
    assert!(csv.starts_with("First day,Last day,Area,New patients,Asked about the app,"), "{csv}");
    assert!(csv.contains("\n2026-12-01,2026-12-01,north,4,3,2,2,2,0,0,2,2,50.0%,100.0%\n"), "{csv}");
    assert!(csv.contains("\n2026-12-03,2026-12-03,south,2,1,1,1,1,0,0,1,0,50.0%,0.0%\n"), "{csv}");
    assert!(csv.contains("No area"), "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_gives_the_figures_per_span_and_names_a_bad_field() {
    let app = app_with_history().await;
    let read = app.add_token("reader", "read").await;
    let verify = app.add_token("app", "verify").await;
    let get = |url: String, token: String| async move {
        let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    let (status, v) = get(format!("{}/api/v1/figures?{WEEK}&by=week", app.addr), read.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["by"].as_str(), v["timezone"].as_str()), (Some("week"), Some("Asia/Tokyo")));
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let total = &spans[0]["total"];
    assert_eq!(total["issued"], serde_json::json!({"call": 3, "staff": 2, "web": 1, "total": 6}));
    assert_eq!((total["issuance_rate"].as_f64(), total["registration_rate"].as_f64()), (Some(1.0), Some(0.6667)));
    let none = &spans[0]["areas"][2];
    assert_eq!((none["area"].is_null(), none["issuance_rate"].is_null()), (true, true));
    assert_eq!(spans[1]["total"]["registration_rate"], Value::Null);

    let (status, v) = get(format!("{}/api/v1/figures?from=2026-12-01&to=12/07", app.addr), read.clone()).await;
    assert_eq!((status, v["field"].as_str(), v["error"].as_str()), (422, Some("to"), Some("invalid_field")));
    // Without days: the last seven, today's included.
    let (status, v) = get(format!("{}/api/v1/figures", app.addr), read.clone()).await;
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    assert_eq!((status, v["to"].as_str(), v["by"].as_str()), (200, Some(today.to_string().as_str()), Some("period")));
    let (status, v) = get(format!("{}/api/v1/figures?{WEEK}&by=month", app.addr), read.clone()).await;
    assert_eq!((status, v["field"].as_str()), (422, Some("by")));
    let (status, _) = get(format!("{}/api/v1/figures?{WEEK}", app.addr), verify).await;
    assert_eq!(status, 403, "a verify token reads no figures");
    let audit = app.store.users().audit_rows(100).await.unwrap();
    assert!(audit.iter().any(|e| e.actor == "api:reader" && e.action == "view_figures"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_answering_the_app_question_and_consenting_is_counted_as_the_flow_records_it() {
    let app = spawn_app().await;
    let mobile = "+819012345678";
    app.add(patient("P001", mobile).area("east")).await;
    let consenting = ["0412", "365", "1", "2", "2", "2", "2", "2", "2", "1", "1", "", ""];
    app.call(mobile, &consenting).await;
    let read = app.add_token("reader", "read").await;
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
    let url = format!("{}/api/v1/figures?from={today}&to={today}", app.addr);
    let v: Value = reqwest::Client::new().get(url).bearer_auth(read).send().await.unwrap().json().await.unwrap();
    let east = &v["spans"][0]["areas"][0];
    assert_eq!(east["area"], "east", "{v}");
    assert_eq!(
        (east["asked"].as_i64(), east["app_users"].as_i64(), east["consents"].as_i64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!((east["issued"]["call"].as_i64(), east["verified"].as_i64()), (Some(1), Some(0)));
}
