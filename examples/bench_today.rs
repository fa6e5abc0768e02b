//! The Today page with 100,000 patients planned for the day: how long `/ui/today` and
//! `GET /api/v1/today` take to answer, on each store, and the figures query's plan.
//!
//! ```text
//! cargo run --release --example bench_today -- [--patients 100000] [--days 7] [--requests 30]
//! ```
//!
//! Each store gets `--patients` patients in 20 areas, each with a job for today (the day in
//! `scheduler.timezone`) and for each of the `--days` - 1 days before: today's jobs in every
//! status (four in ten done, one in ten waiting to be retried, a third not dialled yet …),
//! their attempts, the calls of the jobs answered, a processing number for one done job in
//! four with its SMS (delivered, failed, given up or awaiting its report), and a follow-up item
//! for each unreachable patient. The days before are history the query must not read. The real
//! server (`ivr serve`'s [`Server`]) runs on 127.0.0.1 port 0; a viewer signs in through
//! `/ui/login` as a browser does, and each page is asked for `--requests` times, one at a time,
//! after one warm-up request. SQLite runs on a file in a temporary directory; PostgreSQL on a
//! database created for the run at the server `--pg` names (default `IVR_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped after it. `--only sqlite` or
//! `--only postgres` measures one back end.

#[path = "common/mod.rs"]
mod common;

use common::{PASSWORD, USER, sign_in};
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use clap::Parser;
use ivr::config::Settings;
use ivr::server::Server;
use ivr::types::{Role, Scopes, UiLanguage, UserName};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};

const TOKEN: &str = "ivr_bench_read_token";

#[derive(Parser)]
#[command(about = "Response times of the Today page on each store")]
struct Args {
    /// Patients, each with a job planned for today.
    #[arg(long, default_value_t = 100_000)]
    patients: u32,
    /// Days of jobs, today included.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Requests timed per page.
    #[arg(long, default_value_t = 30)]
    requests: usize,
    #[command(flatten)]
    stores: common::Stores,
}

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    println!(
        "{} patients planned today, {} days of jobs, {} requests per page ({} cores, {} build)",
        args.patients,
        args.days,
        args.requests,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    let mut table =
        vec!["| store | page | median ms | p95 ms | max ms |".to_string(), "| --- | --- | ---: | ---: | ---: |".into()];
    if args.stores.wanted("sqlite") {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ivr.db");
        let url = format!("sqlite://{}", path.display());
        let server = Server::start(&settings(&url)).await?;
        let (day, from, to) = today(&server);
        let started = Instant::now();
        let conn = rusqlite::Connection::open(&path)?;
        for sql in fill(&Dialect::Sqlite, &args, day) {
            conn.execute_batch(&sql)?;
        }
        println!("sqlite: filled in {:.1} s", started.elapsed().as_secs_f64());
        println!("sqlite: EXPLAIN QUERY PLAN of the figures query:");
        let sql = format!("explain query plan {}", ivr::store::figures_sql("?1", "?2", "?3", "c.incomplete"));
        let t = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut st = conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params![day.to_string(), t(from), t(to)], |r| r.get::<_, String>(3))?;
        for r in rows {
            println!("    {}", r?);
        }
        drop(st);
        drop(conn);
        measure("sqlite", server, &args, &mut table).await?;
    }
    if args.stores.wanted("postgres") {
        let mut admin = PgConnection::connect(&args.stores.pg).await?;
        let (name, url) = common::create_database(&mut admin, &args.stores.pg).await?;
        let result: Result<(), Error> = async {
            let server = Server::start(&settings(url.as_str())).await?;
            let (day, from, to) = today(&server);
            let started = Instant::now();
            let mut conn = PgConnection::connect(url.as_str()).await?;
            for sql in fill(&Dialect::Postgres, &args, day) {
                sqlx::raw_sql(&sql).execute(&mut conn).await?;
            }
            println!("postgres: filled in {:.1} s", started.elapsed().as_secs_f64());
            println!("postgres: EXPLAIN of the figures query:");
            let sql = format!(
                "explain {}",
                ivr::store::figures_sql("$1", "$2", "$3", "case when c.incomplete then '1' else '0' end")
            );
            let rows: Vec<(String,)> = sqlx::query_as(&sql).bind(day).bind(from).bind(to).fetch_all(&mut conn).await?;
            for (line,) in rows {
                println!("    {line}");
            }
            conn.close().await?;
            measure("postgres", server, &args, &mut table).await
        }
        .await;
        sqlx::raw_sql(&format!("drop database if exists {name} with (force)")).execute(&mut admin).await?;
        result?;
    }
    println!("{}", table.join("\n"));
    Ok(())
}

/// Today for the server (its time zone), and the day's bounds.
fn today(server: &Server) -> (NaiveDate, DateTime<Utc>, DateTime<Utc>) {
    let hours = &server.state.campaign.hours;
    let day = hours.day_of(Utc::now());
    let (from, to) = hours.day_bounds(day);
    (day, from, to)
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

/// What differs between the two back ends' SQL here.
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Rows `i` = 1..=n: the `from` part of a select.
    fn series(&self, n: u32) -> String {
        match self {
            Dialect::Sqlite => {
                format!(
                    "(with recursive s(i) as (select 1 union all select i + 1 from s where i < {n}) select i from s) s"
                )
            }
            Dialect::Postgres => format!("generate_series(1, {n}) as s(i)"),
        }
    }

    fn pad(&self, expr: &str, width: u32) -> String {
        match self {
            Dialect::Sqlite => format!("printf('%0{width}d', {expr})"),
            Dialect::Postgres => format!("lpad(({expr})::text, {width}, '0')"),
        }
    }

    fn day(&self, d: NaiveDate) -> String {
        match self {
            Dialect::Sqlite => format!("'{d}'"),
            Dialect::Postgres => format!("date '{d}'"),
        }
    }

    /// Seconds after 01:00 UTC of day `d` (10:00 in Tokyo), as the store keeps a time.
    fn time(&self, d: NaiveDate, seconds: &str) -> String {
        match self {
            Dialect::Sqlite => {
                format!("strftime('%Y-%m-%dT%H:%M:%fZ', '{d} 01:00:00', '+' || ({seconds}) || ' seconds')")
            }
            Dialect::Postgres => format!("(timestamptz '{d} 01:00:00+00' + ({seconds}) * interval '1 second')"),
        }
    }

    fn boolean(&self, b: bool) -> &'static str {
        match (self, b) {
            (Dialect::Sqlite, true) => "1",
            (Dialect::Sqlite, false) => "0",
            (Dialect::Postgres, true) => "true",
            (Dialect::Postgres, false) => "false",
        }
    }
}

/// The rows, in statements of one kind each.
fn fill(d: &Dialect, args: &Args, today: NaiveDate) -> Vec<String> {
    let n = args.patients;
    let mut out = vec![format!(
        "insert into patients (patient_id, name, phone, language, area)
         select 'P' || {id}, '患者 ' || i, '+8190' || {phone}, 'ja-JP', 'area-' || {area} from {series}",
        id = d.pad("i", 6),
        phone = d.pad("i", 8),
        area = d.pad("i % 20", 2),
        series = d.series(n),
    )];
    for back in (0..args.days).rev() {
        let day = today - chrono::Duration::days(i64::from(back));
        // Today's jobs in every status; the days before all finished.
        let status = if back == 0 {
            "case when i % 100 < 40 then 'done' when i % 100 < 45 then 'in-progress' when i % 100 < 50 then 'dialing'
                  when i % 100 < 60 then 'retry' when i % 100 < 65 then 'unreachable' when i % 100 < 66 then 'failed'
                  else 'planned' end"
        } else {
            "case when i % 100 < 85 then 'done' when i % 100 < 95 then 'unreachable' else 'failed' end"
        };
        out.push(format!(
            "insert into jobs (patient_id, flow, day, due_at, status, attempt, updated_at)
             select 'P' || {id}, 'daily-health-check', {dday}, {due}, {status}, 0, {due} from {series}",
            id = d.pad("i", 6),
            dday = d.day(day),
            due = d.time(day, "i % 36000"),
            series = d.series(n),
        ));
    }
    out.push(
        "insert into job_attempts (job_id, attempt, call_sid, status, started_at, ended_at)
         select job_id, 1, 'CA' || job_id,
                case status when 'done' then 'completed' when 'in-progress' then 'in-progress' when 'dialing' then 'ringing'
                            when 'failed' then 'refused' else 'no-answer' end,
                due_at, case when status in ('dialing', 'in-progress') then null else due_at end
         from jobs where status <> 'planned'"
            .into(),
    );
    out.push(
        "insert into job_attempts (job_id, attempt, call_sid, status, started_at, ended_at)
         select job_id, 2, 'CB' || job_id, 'busy', due_at, due_at from jobs where status in ('retry', 'unreachable')"
            .into(),
    );
    out.push("update jobs set attempt = (select count(*) from job_attempts a where a.job_id = jobs.job_id)".into());
    out.push(format!(
        "insert into calls (call_sid, patient_id, job_id, direction, flow, flow_version, state, ended, incomplete, status, created_at, updated_at)
         select 'CA' || job_id, patient_id, job_id, 'outbound', flow, 'bench', '{{}}', {yes}, {no}, 'completed', due_at, due_at
         from jobs where status in ('done', 'in-progress')",
        yes = d.boolean(true),
        no = d.boolean(false),
    ));
    out.push(
        "insert into processing_numbers (patient_id, number_hash, status, issued_at, expires_at, consent_channel, delivery)
         select patient_id, 'hash-' || job_id, 'used', due_at, due_at, 'call', 'sms' from jobs
         where status = 'done' and job_id % 4 = 0"
            .into(),
    );
    out.push(
        "insert into outbox (patient_id, number_id, channel, recipient, body_sealed, status, next_attempt_at, created_at, updated_at)
         select patient_id, number_id, 'sms', '+819000000000', 'sealed',
                case number_id % 10 when 0 then 'failed' when 1 then 'dead' when 2 then 'sent' else 'delivered' end,
                issued_at, issued_at, issued_at
         from processing_numbers"
            .into(),
    );
    out.push(format!(
        "insert into followups (patient_id, status, urgency, opened_at, changed_by, changed_at)
         select patient_id, 'open', 2, due_at, 'ivr', due_at from jobs where day = {} and status = 'unreachable'",
        d.day(today)
    ));
    out.push("analyze".into());
    out
}

/// Signs in, asks for each page, adds its rows to `table`, stops the server.
async fn measure(store: &str, server: Server, args: &Args, table: &mut Vec<String>) -> Result<(), Error> {
    let state = &server.state;
    ivr::staff::add_user(
        &state.store,
        &UserName::parse(USER)?,
        Role::Viewer,
        UiLanguage::Ja,
        &SecretString::from(PASSWORD),
    )
    .await?;
    state.store.numbers().add_token("bench", &ivr::http::api::token_hash(TOKEN), Scopes::parse("read")?).await?;
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let session = sign_in(&client, &base).await?;
    let planned = grouped(args.patients);
    let pages = [
        ("Today `/ui/today`", "/ui/today", format!("ivr_session={session}"), String::new(), planned.clone()),
        (
            "`GET /api/v1/today`",
            "/api/v1/today",
            String::new(),
            format!("Bearer {TOKEN}"),
            format!("\"planned\":{}", args.patients),
        ),
    ];
    for (label, path, cookie, bearer, shows) in pages {
        let mut times = Vec::with_capacity(args.requests);
        for i in 0..=args.requests {
            let started = Instant::now();
            let mut req = client.get(format!("{base}{path}"));
            if !cookie.is_empty() {
                req = req.header("cookie", &cookie);
            }
            if !bearer.is_empty() {
                req = req.header("authorization", &bearer);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let body = resp.text().await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() || !body.contains(&shows) {
                return Err(format!("{path}: {status}: wanted {shows}: {}", &body[..body.len().min(2000)]).into());
            }
            if i > 0 {
                times.push(ms);
            }
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        let row = format!("| {store} | {label} | {:.1} | {:.1} | {:.1} |", at(0.5), at(0.95), at(1.0));
        println!("{row}");
        table.push(row);
    }
    server.stop().await;
    Ok(())
}

fn grouped(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
