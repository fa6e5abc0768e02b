//! The ministry's figures for a month over 100,000 patients and 30 days of answers: how long
//! `GET /api/v1/figures` (the whole month, and each day of it) and the page `/ui/figures`
//! (the month with its weeks and chart) take to answer, on each store, with the plan of the
//! statement that counts one span.
//!
//! ```text
//! cargo run --release --example bench_figures -- [--patients 100000] [--requests 20]
//! ```
//!
//! The month is November 2026 (Asia/Tokyo). Patient `i` is in area `区01`…`区10` (`i % 10`);
//! their care starts on day `i % 39 - 9` of the month (so some started in October: the month
//! has about 77 % of them new) and lasts 10 days, with a call each day of it that falls in the
//! month (about 850,000 calls), answering temperature and SpO2. Three in ten use the app: two of
//! those consent on their first call and get a number from the call (three in four of those the
//! app then verifies; the app question is not asked again), the third says no to the consent on
//! every call; the other seven say they do not use the app, on every call. Every 7th patient who
//! refused gets a number from staff two days in, every 11th of the fourth tenth one on the web.
//! Some 2.3 million answers in all. The rows are written by the database itself (SQL), then
//! `analyze`d.
//!
//! The real server (`ivr serve`'s [`Server`]) runs on 127.0.0.1 port 0; each request is timed
//! `--requests` times, one at a time, after one warm-up. SQLite runs on a file in a temporary
//! directory; PostgreSQL on a database created for the run at `--pg` (default
//! `IVR_TEST_PG_URL`, else `postgres://postgres@127.0.0.1:5432/test`) and dropped after it.
//! `--only sqlite` or `--only postgres` measures one back end.

#[path = "common/mod.rs"]
mod common;

use common::{PASSWORD, USER, sign_in};
use std::path::Path;
use std::time::Instant;

use clap::Parser;
use ivr::config::Settings;
use ivr::server::Server;
use ivr::store::figures::{APP_ANSWER, CONSENT_ANSWER, statement};
use ivr::types::{Role, Scopes, UiLanguage, UserName};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};

const TOKEN: &str = "ivr_bench_figures_token";
const MONTH: &str = "from=2026-11-01&to=2026-11-30";

#[derive(Parser)]
#[command(about = "Response times of the figures for a month on each store")]
struct Args {
    /// Patients on the roster.
    #[arg(long, default_value_t = 100_000)]
    patients: i64,
    /// Requests timed per route.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    #[command(flatten)]
    stores: common::Stores,
}

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    println!(
        "{} patients, {} requests per route ({} cores, {} build)",
        args.patients,
        args.requests,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    let mut table = vec![];
    if args.stores.wanted("sqlite") {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ivr.db");
        let url = format!("sqlite://{}", path.display());
        // The server migrates; the rows are then written straight into the file.
        let server = Server::start(&settings(&url)).await?;
        let conn = rusqlite::Connection::open(&path)?;
        let started = Instant::now();
        conn.execute_batch(&sqlite_fill(args.patients))?;
        let rows: i64 = conn.query_row("select count(*) from answers", [], |r| r.get(0))?;
        println!("sqlite: {rows} answers written in {:.0} s", started.elapsed().as_secs_f64());
        println!("sqlite: EXPLAIN QUERY PLAN of one span:");
        let sql = format!("explain query plan {}", statement("sqlite").unwrap());
        let mut st = conn.prepare(&sql)?;
        let params =
            rusqlite::params!["2026-11-01", "2026-11-30", "2026-10-31T15:00:00.000Z", "2026-11-30T15:00:00.000Z"];
        let plan = st.query_map(params, |r| Ok((r.get::<_, i64>(1)?, r.get::<_, String>(3)?)))?;
        for row in plan {
            let (parent, detail) = row?;
            println!("    {}{detail}", if parent == 0 { "" } else { "  " });
        }
        drop(st);
        drop(conn);
        table.extend(measure("sqlite", server, &args).await?);
    }
    if args.stores.wanted("postgres") {
        let mut admin = PgConnection::connect(&args.stores.pg).await?;
        let (name, url) = common::create_database(&mut admin, &args.stores.pg).await?;
        let result: Result<(), Error> = async {
            let server = Server::start(&settings(url.as_str())).await?;
            let mut conn = PgConnection::connect(url.as_str()).await?;
            let started = Instant::now();
            sqlx::raw_sql(&postgres_fill(args.patients)).execute(&mut conn).await?;
            sqlx::raw_sql("vacuum analyze").execute(&mut conn).await?;
            let rows: i64 = sqlx::query_scalar("select count(*) from answers").fetch_one(&mut conn).await?;
            println!("postgres: {rows} answers written in {:.0} s", started.elapsed().as_secs_f64());
            println!("postgres: EXPLAIN ANALYZE of one span:");
            let sql = format!("explain (analyze, costs off, timing off) {}", statement("postgres").unwrap());
            let tz = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(&sql)
                .bind("2026-11-01")
                .bind("2026-11-30")
                .bind(tz("2026-10-31T15:00:00Z"))
                .bind(tz("2026-11-30T15:00:00Z"))
                .fetch_all(&mut conn)
                .await?;
            for (line,) in rows {
                println!("    {line}");
            }
            conn.close().await?;
            table.extend(measure("postgres", server, &args).await?);
            Ok(())
        }
        .await;
        sqlx::raw_sql(&format!("drop database if exists {name} with (force)")).execute(&mut admin).await?;
        result?;
    }
    println!();
    println!("| store | request | median ms | p95 ms | max ms |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for row in table {
        println!("{row}");
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

/// The month's rows on SQLite: `gen` holds each patient's number, first day (from the month's
/// start) and kind; a call's id is `i * 100 + k` for the `k`-th day of care.
fn sqlite_fill(patients: i64) -> String {
    format!(
        "begin;
        create temp table gen as
          with recursive n(i) as (select 1 union all select i + 1 from n where i < {patients})
          select i, (i % 39) - 9 as start, i % 10 as u from n;
        create temp table k as
          with recursive k(k) as (select 0 union all select k + 1 from k where k < 9) select k from k;
        insert into patients (patient_id, name, phone, language, area, care_start, care_end)
          select printf('P%06d', i), '患者 ' || i, printf('+8190%08d', i), 'ja-JP', printf('区%02d', u + 1),
                 date('2026-11-01', start || ' days'), date('2026-11-01', (start + 9) || ' days')
          from gen;
        create temp table c as
          select g.i, g.u, k.k, g.start + k.k as day, k.k = max(0, -g.start) as first,
                 strftime('%Y-%m-%dT%H:%M:%fZ', '2026-11-01', (g.start + k.k) || ' days', (g.i % 28800) || ' seconds') as at
          from gen g, k where g.start + k.k between 0 and 29;
        insert into calls (call_id, call_sid, patient_id, direction, flow, flow_version, state, ended, status, created_at, updated_at)
          select i * 100 + k, 'CA' || (i * 100 + k), printf('P%06d', i), 'outbound', 'daily-health-check', 'bench',
                 'end', 1, 'completed', at, at from c;
        insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
          select i * 100 + k, printf('P%06d', i), 'temperature', 'number', '36.5', 365, 1, at from c
          union all
          select i * 100 + k, printf('P%06d', i), 'spo2', 'number', '97', 97, 0, at from c
          union all
          select i * 100 + k, printf('P%06d', i), '{APP_ANSWER}', 'text', case when u < 3 then 'yes' else 'no' end, null, null, at
            from c where u >= 2 or first
          union all
          select i * 100 + k, printf('P%06d', i), '{CONSENT_ANSWER}', 'text', case when u < 2 then 'yes' else 'no' end, null, null, at
            from c where u = 2 or (u < 2 and first);
        insert into processing_numbers (patient_id, number_hash, status, issued_at, expires_at, consent_channel, delivery, used_at)
          select printf('P%06d', i), 'h-call-' || i, case when i % 4 = 0 then 'expired' else 'used' end,
                 strftime('%Y-%m-%dT%H:%M:%fZ', at, '+60 seconds'), strftime('%Y-%m-%dT%H:%M:%fZ', at, '+1 day'), 'call', 'sms',
                 case when i % 4 = 0 then null else strftime('%Y-%m-%dT%H:%M:%fZ', at, '+1 hour') end
          from c where u < 2 and first
          union all
          select printf('P%06d', i), 'h-staff-' || i, 'valid', strftime('%Y-%m-%dT%H:%M:%fZ', at, '+2 days'),
                 strftime('%Y-%m-%dT%H:%M:%fZ', at, '+3 days'), 'staff', 'sms', null
          from c where u = 2 and i % 7 = 0 and first and day + 2 <= 29
          union all
          select printf('P%06d', i), 'h-web-' || i, 'used', at, strftime('%Y-%m-%dT%H:%M:%fZ', at, '+1 day'), 'web', 'email',
                 strftime('%Y-%m-%dT%H:%M:%fZ', at, '+2 hours')
          from c where u = 3 and i % 11 = 0 and first;
        commit;
        analyze;"
    )
}

/// The same rows on PostgreSQL.
fn postgres_fill(patients: i64) -> String {
    format!(
        "create temp table gen as
          select i, (i % 39) - 9 as start, i % 10 as u from generate_series(1, {patients}) as i;
        insert into patients (patient_id, name, phone, language, area, care_start, care_end)
          select 'P' || lpad(i::text, 6, '0'), '患者 ' || i, '+8190' || lpad(i::text, 8, '0'), 'ja-JP',
                 '区' || lpad((u + 1)::text, 2, '0'),
                 to_char(date '2026-11-01' + start, 'YYYY-MM-DD'), to_char(date '2026-11-01' + start + 9, 'YYYY-MM-DD')
          from gen;
        create temp table c as
          select g.i, g.u, k, g.start + k as day, k = greatest(0, -g.start) as first,
                 timestamptz '2026-10-31T15:00:00Z' + make_interval(days => g.start + k, secs => 9 * 3600 + g.i % 28800) as at
          from gen g, generate_series(0, 9) as k where g.start + k between 0 and 29;
        insert into calls (call_id, call_sid, patient_id, direction, flow, flow_version, state, ended, status, created_at, updated_at)
          overriding system value
          select i * 100 + k, 'CA' || (i * 100 + k), 'P' || lpad(i::text, 6, '0'), 'outbound', 'daily-health-check',
                 'bench', 'end', true, 'completed', at, at from c;
        insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
          select i * 100 + k, 'P' || lpad(i::text, 6, '0'), 'temperature', 'number', '36.5', 365, 1, at from c
          union all
          select i * 100 + k, 'P' || lpad(i::text, 6, '0'), 'spo2', 'number', '97', 97, 0, at from c
          union all
          select i * 100 + k, 'P' || lpad(i::text, 6, '0'), '{APP_ANSWER}', 'text', case when u < 3 then 'yes' else 'no' end,
                 null, null, at from c where u >= 2 or first
          union all
          select i * 100 + k, 'P' || lpad(i::text, 6, '0'), '{CONSENT_ANSWER}', 'text', case when u < 2 then 'yes' else 'no' end,
                 null, null, at from c where u = 2 or (u < 2 and first);
        insert into processing_numbers (patient_id, number_hash, status, issued_at, expires_at, consent_channel, delivery, used_at)
          select 'P' || lpad(i::text, 6, '0'), 'h-call-' || i, case when i % 4 = 0 then 'expired' else 'used' end,
                 at + interval '60 seconds', at + interval '1 day', 'call', 'sms',
                 case when i % 4 = 0 then null else at + interval '1 hour' end
          from c where u < 2 and first
          union all
          select 'P' || lpad(i::text, 6, '0'), 'h-staff-' || i, 'valid', at + interval '2 days', at + interval '3 days',
                 'staff', 'sms', null
          from c where u = 2 and i % 7 = 0 and first and day + 2 <= 29
          union all
          select 'P' || lpad(i::text, 6, '0'), 'h-web-' || i, 'used', at, at + interval '1 day', 'web', 'email',
                 at + interval '2 hours'
          from c where u = 3 and i % 11 = 0 and first;"
    )
}

/// Signs in, asks for each route, returns its table rows, stops the server.
async fn measure(store: &str, server: Server, args: &Args) -> Result<Vec<String>, Error> {
    let st = &server.state.store;
    ivr::staff::add_user(st, &UserName::parse(USER)?, Role::Viewer, UiLanguage::Ja, &SecretString::from(PASSWORD))
        .await?;
    st.numbers().add_token("bench", &ivr::http::api::token_hash(TOKEN), Scopes::parse("read")?).await?;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let session = sign_in(&client, &base).await?;
    // Each request, how it is authorised, and a text it must show.
    let requests = [
        ("API, the month", format!("/api/v1/figures?{MONTH}&by=period"), false, "\"区10\""),
        ("API, each day of the month", format!("/api/v1/figures?{MONTH}&by=day"), false, "2026-11-30"),
        ("page, the month by week, with its chart", format!("/ui/figures?{MONTH}&by=week"), true, "<circle"),
    ];
    let mut rows = vec![];
    for (label, path, page, shows) in requests {
        let mut times = Vec::with_capacity(args.requests);
        for i in 0..=args.requests {
            let started = Instant::now();
            let req = client.get(format!("{base}{path}"));
            let req =
                if page { req.header("cookie", format!("ivr_session={session}")) } else { req.bearer_auth(TOKEN) };
            let resp = req.send().await?;
            let status = resp.status();
            let body = resp.text().await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() || !body.contains(shows) {
                return Err(format!("{path}: {status}: {}", &body[..body.len().min(2000)]).into());
            }
            if i > 0 {
                times.push(ms);
            }
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        let row = format!("| {store} | {label} | {:.1} | {:.1} | {:.1} |", at(0.5), at(0.95), at(1.0));
        println!("{row}");
        rows.push(row);
    }
    server.stop().await;
    Ok(rows)
}
