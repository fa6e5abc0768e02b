//! The staff pages under a full queue: how long `/ui/` (the queue's first page) and a patient's
//! page (`/ui/patients/{id}`) take to answer, on each store; and the patients table
//! (`/ui/patients`: its first page, a filtered page, pages sorted by a reading and by the last
//! call, a search) and a patient's page with its charts, under `--patients` patients with
//! `--days` days of answers each.
//!
//! ```text
//! cargo run --release --example bench_pages -- [--scenario queue|trends|all] [--items 10000]
//!     [--patients 100000] [--days 30] [--requests 50]
//! ```
//!
//! The trends scenario: every patient in care, one call a day at 09:00 (Tokyo) give or take two
//! hours, each with a temperature and an SpO2, and that day's job (done); one day in 17 the job
//! was unreachable and there is no call; a tenth of the patients have an open item. Its rows
//! are written by SQL inside each database, the readings' summary (`latest_answers`) and each
//! patient's last call's rank (`patients.last_job_rank`) by their migrations' own queries on
//! PostgreSQL and by their triggers on SQLite.
//!
//! Each store gets `--items` patients with one open follow-up item each (one reason, severities
//! mixed: a tenth urgent, three tenths high, the rest normal), and the first patient 30 days of
//! daily calls, two a day, each with its answers. The real server (`ivr serve`'s [`Server`])
//! runs on 127.0.0.1 port 0; a staff account signs in through `/ui/login` as a browser does and
//! the client asks for each page `--requests` times, one at a time, after one warm-up request.
//! SQLite runs on a file in a temporary directory; PostgreSQL on a database created for the run
//! at the server `--pg` names (default `IVR_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped after it. `--only sqlite` or
//! `--only postgres` measures one back end.

#[path = "bench_pages/trends.rs"]
mod trends;

#[path = "common/mod.rs"]
mod common;

use common::{PASSWORD, USER, sign_in};
use std::path::Path;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use clap::Parser;
use ivr::config::Settings;
use ivr::server::Server;
use ivr::types::{Role, UiLanguage, UserName};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};

/// The patient with 30 days of calls.
const PATIENT: &str = "P000001";

#[derive(Parser)]
#[command(about = "Response times of the staff pages on each store")]
struct Args {
    /// queue (the follow-up queue), trends (the patients table) or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Patients in care for the patients table.
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
    /// Days of daily calls for each of them.
    #[arg(long, default_value_t = 30)]
    days: usize,
    /// Patients, each with one open follow-up item.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Requests timed per page.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    #[command(flatten)]
    stores: common::Stores,
}

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    if args.scenario == "queue" || args.scenario == "all" {
        queue_scenario(&args).await?;
    }
    if args.scenario == "trends" || args.scenario == "all" {
        trends::scenario(&args).await?;
    }
    Ok(())
}

async fn queue_scenario(args: &Args) -> Result<(), Error> {
    println!(
        "{} open items, {} requests per page ({} cores, {} build)",
        args.items,
        args.requests,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!("| store | page | median ms | p95 ms | max ms |");
    println!("| --- | --- | ---: | ---: | ---: |");
    if args.stores.wanted("sqlite") {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ivr.db");
        let url = format!("sqlite://{}", path.display());
        // The server migrates; the rows are then written straight into the file.
        let server = Server::start(&settings(&url)).await?;
        let conn = rusqlite::Connection::open(&path)?;
        for sql in fill(args.items, true) {
            conn.execute_batch(&sql)?;
        }
        for (what, patient) in [("queue", None), ("a patient's items", Some(PATIENT))] {
            println!("sqlite: EXPLAIN QUERY PLAN, {what}:");
            let statuses: &[&str] = if patient.is_some() { &["open", "claimed", "closed"] } else { &[] };
            let sql = match patient {
                Some(_) => list_sql("f.status in (?5, ?6, ?7)", "?1", "f.patient_id = ?4"),
                None => list_sql("f.status <> 'closed'", "?1", "?4 is null"),
            };
            let sql = format!("explain query plan {sql}");
            let mut st = conn.prepare(&sql)?;
            let (area, limit, offset): (Option<&str>, i64, i64) = (None, 200, 0);
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&area, &limit, &offset, &patient];
            for status in statuses {
                args.push(status);
            }
            let rows = st.query_map(args.as_slice(), |r| r.get::<_, String>(3))?;
            for r in rows {
                println!("    {}", r?);
            }
        }
        drop(conn);
        measure("sqlite", server, args).await?;
    }
    if args.stores.wanted("postgres") {
        let mut admin = PgConnection::connect(&args.stores.pg).await?;
        let (name, url) = common::create_database(&mut admin, &args.stores.pg).await?;
        let result: Result<(), Error> = async {
            let server = Server::start(&settings(url.as_str())).await?;
            let mut conn = PgConnection::connect(url.as_str()).await?;
            for sql in fill(args.items, false) {
                sqlx::raw_sql(&sql).execute(&mut conn).await?;
            }
            sqlx::raw_sql("analyze").execute(&mut conn).await?;
            for (what, patient) in [("queue", None), ("a patient's items", Some(PATIENT))] {
                println!("postgres: EXPLAIN, {what}:");
                let sql = match patient {
                    Some(_) => list_sql("f.status = any($4)", "$1::text", "f.patient_id = $5"),
                    None => list_sql("f.status <> 'closed'", "$1::text", "true"),
                };
                let sql = format!("explain {}", sql.replace("?2", "$2").replace("?3", "$3"));
                let mut query = sqlx::query_as(&sql).bind(None::<String>).bind(200_i64).bind(0_i64);
                if let Some(patient) = patient {
                    query = query.bind(vec!["open", "claimed", "closed"]).bind(patient);
                }
                let rows: Vec<(String,)> = query.fetch_all(&mut conn).await?;
                for (line,) in rows {
                    println!("    {line}");
                }
            }
            conn.close().await?;
            measure("postgres", server, args).await
        }
        .await;
        sqlx::raw_sql(&format!("drop database if exists {name} with (force)")).execute(&mut admin).await?;
        result?;
    }
    Ok(())
}

/// The server's settings: the shipped flows, no campaign of its own.
fn settings(db_url: &str) -> Settings {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = Settings::load(None).expect("default settings");
    s.server.listen = "127.0.0.1:0".parse().unwrap();
    s.server.public_url = Some("https://ivr.example.jp".into());
    s.database.url = SecretString::from(db_url);
    s.carrier.auth_token = Some(SecretString::from("bench-auth-token-0123456789abcdef"));
    s.flows.dir = root.join("call-flows");
    s.flows.prompts_dir = root.join("prompts");
    s.scheduler.autostart = false;
    s
}

/// The rows, as SQL both back ends read (timestamps as RFC 3339 text), in batches.
fn fill(items: usize, sqlite: bool) -> Vec<String> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let time = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut batches = Vec::new();
    let ids: Vec<String> = (1..=items).map(|i| format!("P{i:06}")).collect();
    for chunk in ids.chunks(1000) {
        let patients: Vec<String> = chunk
            .iter()
            .map(|id| format!("('{id}', '患者 {id}', '+8190{}', 'ja-JP')", &id[1..].repeat(2)[..8]))
            .collect();
        let items: Vec<String> = chunk
            .iter()
            .map(|id| {
                let n: i64 = id[1..].parse().unwrap();
                let urgency = match n % 10 {
                    0 => 3,
                    1..=3 => 2,
                    _ => 1,
                };
                let at = time(t0 + Duration::minutes(n));
                format!("('{id}', 'open', {urgency}, '{at}', 'ivr', '{at}')")
            })
            .collect();
        batches.push(format!(
            "begin;
             insert into patients (patient_id, name, phone, language) values {};
             insert into followups (patient_id, status, urgency, opened_at, changed_by, changed_at) values {};
             commit;",
            patients.join(", "),
            items.join(", ")
        ));
    }
    batches.push(
        "insert into followup_reasons (followup_id, kind, reason, urgency, created_at)
         select followup_id, 'flow', 'spo2_low', urgency, opened_at from followups"
            .into(),
    );
    let mut calls = vec!["begin;".to_string()];
    for day in 0..30 {
        for (k, hour) in [9, 15].into_iter().enumerate() {
            let sid = format!("CA{day:02}{k}");
            let at = time(t0 + Duration::days(day) + Duration::hours(hour));
            calls.push(format!(
                "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, status, created_at, updated_at)
                 values ('{sid}', '{PATIENT}', 'outbound', 'daily-health-check', 'bench', 'end', 'completed', '{at}', '{at}');"
            ));
            for (name, text, raw, scale) in
                [("temperature", "36.5", 365, 1), ("spo2", "97", 97, 0), ("pulse", "72", 72, 0)]
            {
                calls.push(format!(
                    "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
                     select call_id, '{PATIENT}', '{name}', 'number', '{text}', {raw}, {scale}, '{at}' from calls where call_sid = '{sid}';"
                ));
            }
        }
    }
    calls.push("commit;".into());
    batches.push(calls.join("\n"));
    if sqlite {
        batches.push("analyze;".into());
    }
    batches
}

/// The store's list query (`Followups::list`, as both back ends write it): the status condition,
/// the area's placeholder and the patient condition, limit `?2`, offset `?3`.
fn list_sql(statuses: &str, area: &str, patient: &str) -> String {
    format!(
        "select f.followup_id, f.patient_id, f.status, f.urgency, f.opened_at, f.claimed_by, f.claimed_at,
           f.closed_by, f.closed_at, f.outcome, f.note, f.version, f.change, f.changed_by, f.changed_at,
           coalesce(p.name, '')
         from followups f left join patients p on p.patient_id = f.patient_id
         where {statuses} and ({area} is null or p.area = {area}) and {patient}
         order by f.urgency desc, f.opened_at, f.followup_id limit ?2 offset ?3"
    )
}

/// Signs in, asks for each page, prints its row, stops the server.
async fn measure(store: &str, server: Server, args: &Args) -> Result<(), Error> {
    // Each page, and a text it must show (a patient's name from the roster; an answer).
    let pages = [
        ("queue `/ui/`".to_string(), "/ui/".to_string(), "患者 P".to_string()),
        ("patient `/ui/patients/{id}`".to_string(), format!("/ui/patients/{PATIENT}"), "36.5".to_string()),
    ];
    measure_pages(store, server, args, &pages).await
}

/// Signs in, asks for each page (label, path, a text it must show), prints its row, stops the
/// server.
async fn measure_pages(
    store: &str,
    server: Server,
    args: &Args,
    pages: &[(String, String, String)],
) -> Result<(), Error> {
    ivr::staff::add_user(
        &server.state.store,
        &UserName::parse(USER)?,
        Role::Nurse,
        UiLanguage::Ja,
        &SecretString::from(PASSWORD),
    )
    .await?;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let session = sign_in(&client, &base).await?;
    for (label, path, shows) in pages {
        let mut times = Vec::with_capacity(args.requests);
        for i in 0..=args.requests {
            let started = Instant::now();
            let resp =
                client.get(format!("{base}{path}")).header("cookie", format!("ivr_session={session}")).send().await?;
            let status = resp.status();
            let body = resp.text().await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() || !body.contains(shows.as_str()) {
                return Err(format!("{path}: {status}: {body}").into());
            }
            if i > 0 {
                times.push(ms);
            }
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!("| {store} | {label} | {:.1} | {:.1} | {:.1} |", at(0.5), at(0.95), at(1.0));
    }
    server.stop().await;
    Ok(())
}
