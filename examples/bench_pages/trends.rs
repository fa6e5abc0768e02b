//! The patients table and a patient's charts under `--patients` patients with `--days` days of
//! answers each, on each store: the fill, the plans of the table's queries, the response times.

use chrono::{Duration, NaiveTime, TimeZone, Utc};
use ivr::server::Server;
use ivr::store::{AlertFilter, Dialect, Param, SortKey, TableQuery, page_sql};
use ivr::types::Severity;
use sqlx::{Connection, PgConnection};

use super::{Args, Error, measure_pages, settings};

const TZ: chrono_tz::Tz = chrono_tz::Asia::Tokyo;

/// The first day of calls (local), so that the last is today.
fn first_day(days: usize) -> chrono::NaiveDate {
    Utc::now().with_timezone(&TZ).date_naive() - Duration::days(days as i64 - 1)
}

/// 09:00 in Tokyo on the first day, as UTC text (RFC 3339) and as a day.
fn t0(days: usize) -> String {
    let at = TZ.from_local_datetime(&first_day(days).and_hms_opt(9, 0, 0).unwrap()).unwrap().with_timezone(&Utc);
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The table's queries the pages below make: (what, query).
fn queries(days: usize) -> Vec<(&'static str, TableQuery)> {
    let today = Utc::now().with_timezone(&TZ).date_naive();
    let base = TableQuery {
        today,
        search: None,
        area: None,
        language: None,
        slot: None,
        alert: AlertFilter::Any,
        sort: SortKey::Id,
        desc: false,
        limit: 50,
        offset: 0,
    };
    let _ = days;
    vec![
        ("first page", base.clone()),
        (
            "filtered: area3, urgent",
            TableQuery { area: Some("area3".into()), alert: AlertFilter::Severity(Severity::Urgent), ..base.clone() },
        ),
        ("sorted by SpO2", TableQuery { sort: SortKey::Reading("spo2".into()), ..base.clone() }),
        ("sorted by last call", TableQuery { sort: SortKey::LastCall, ..base.clone() }),
        ("search 'P09999'", TableQuery { search: Some("p09999".into()), ..base }),
    ]
}

/// The pages timed: (label, path, a text it must show).
fn pages() -> Vec<(String, String, String)> {
    let p = |label: &str, path: &str, shows: &str| (label.to_string(), path.to_string(), shows.to_string());
    vec![
        p("patients table, first page `/ui/patients`", "/ui/patients", "患者 P000001"),
        p("filtered `?area=area3&alert=urgent`", "/ui/patients?area=area3&alert=urgent", "id=\"row-P"),
        p("sorted by SpO2 `?sort=spo2`", "/ui/patients?sort=spo2", "svg class=\"spark\""),
        p("sorted by last call `?sort=last_call`", "/ui/patients?sort=last_call", "不通"),
        p("search `?q=P09999`", "/ui/patients?q=P09999", "患者 P099990"),
        p("patient with charts `/ui/patients/P000001`", "/ui/patients/P000001", "chart-spo2"),
    ]
}

/// SQLite: the rows, generated inside the database.
fn sqlite_fill(patients: usize, days: usize) -> Vec<String> {
    let start = first_day(days);
    let end = start + Duration::days(days as i64 + 7);
    let t0 = t0(days);
    vec![
        format!(
            "with recursive n(i) as (select 1 union all select i + 1 from n where i < {patients})
             insert into patients (patient_id, name, phone, language, area, call_slot, care_start, care_end)
             select printf('P%06d', i), '患者 ' || printf('P%06d', i), '+8190' || printf('%08d', i),
               case when i % 10 = 0 then 'en-US' else 'ja-JP' end, 'area' || (i % 20),
               case i % 3 when 0 then null when 1 then 'morning' else 'afternoon' end, '{start}', '{end}'
             from n"
        ),
        format!(
            "with recursive n(i) as (select 1 union all select i + 1 from n where i < {patients}),
               d(d) as (select 0 union all select d + 1 from d where d < {days} - 1)
             insert into calls (call_sid, patient_id, direction, flow, flow_version, state, status, ended, created_at, updated_at)
             select 'CA' || d || '_' || i, printf('P%06d', i), 'outbound', 'daily-health-check', 'bench', '{{}}',
               'completed', 1, ts, ts
             from (select d, i, strftime('%Y-%m-%dT%H:%M:%fZ', '{t0}', '+' || d || ' days', '+' || (i % 7200) || ' seconds') as ts
                   from d, n where (i + d) % 17 <> 0 order by d, i)"
        ),
        // Temperature 36.0–38.4, SpO2 90–99: each the answer of its call, as a turn writes it.
        "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
         select call_id, patient_id, 'temperature', 'number', printf('%.1f', (360 + (call_id * 7) % 25) / 10.0),
           360 + (call_id * 7) % 25, 1, created_at from calls order by call_id"
            .into(),
        "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
         select call_id, patient_id, 'spo2', 'number', 90 + (call_id * 11) % 10, 90 + (call_id * 11) % 10, 0, created_at
         from calls order by call_id"
            .into(),
        format!(
            "with recursive n(i) as (select 1 union all select i + 1 from n where i < {patients}),
               d(d) as (select 0 union all select d + 1 from d where d < {days} - 1)
             insert into jobs (patient_id, flow, status, day, due_at, attempt, outcome, updated_at, created_at)
             select printf('P%06d', i), 'daily-health-check', case when (i + d) % 17 = 0 then 'unreachable' else 'done' end,
               date('{start}', '+' || d || ' days'), ts, case when (i + d) % 17 = 0 then 3 else 1 end,
               case when (i + d) % 17 = 0 then 'no-answer' else 'completed' end, ts, ts
             from (select d, i, strftime('%Y-%m-%dT%H:%M:%fZ', '{t0}', '+' || d || ' days', '+' || (i % 7200) || ' seconds') as ts
                   from d, n order by d, i)"
        ),
        format!(
            "with recursive n(i) as (select 3 union all select i + 10 from n where i + 10 <= {patients})
             insert into followups (patient_id, status, urgency, opened_at, changed_by, changed_at)
             select printf('P%06d', i), 'open', 1 + (i / 10) % 3, '{t0}', 'ivr', '{t0}' from n"
        ),
        "insert into followup_reasons (followup_id, kind, reason, urgency, created_at)
         select followup_id, 'flow', 'health_check', urgency, opened_at from followups"
            .into(),
        "analyze".into(),
    ]
}

/// PostgreSQL: the same rows; the readings' summary and the last calls' ranks by their
/// migrations' queries, their triggers off for the bulk inserts (`session_replication_role`).
fn pg_fill(patients: usize, days: usize) -> Vec<String> {
    let start = first_day(days);
    let end = start + Duration::days(days as i64 + 7);
    let t0 = t0(days);
    let ts = format!("timestamptz '{t0}' + d * interval '1 day' + (i % 7200) * interval '1 second'");
    vec![
        format!(
            "insert into patients (patient_id, name, phone, language, area, call_slot, care_start, care_end)
             select 'P' || lpad(i::text, 6, '0'), '患者 P' || lpad(i::text, 6, '0'), '+8190' || lpad(i::text, 8, '0'),
               case when i % 10 = 0 then 'en-US' else 'ja-JP' end, 'area' || (i % 20),
               case i % 3 when 0 then null when 1 then 'morning' else 'afternoon' end, '{start}', '{end}'
             from generate_series(1, {patients}) i"
        ),
        format!(
            "insert into calls (call_sid, patient_id, direction, flow, flow_version, state, status, ended, created_at, updated_at)
             select 'CA' || d || '_' || i, 'P' || lpad(i::text, 6, '0'), 'outbound', 'daily-health-check', 'bench', '{{}}',
               'completed', true, {ts}, {ts}
             from generate_series(0, {days} - 1) d, generate_series(1, {patients}) i where (i + d) % 17 <> 0 order by d, i"
        ),
        "set session_replication_role = replica".into(),
        "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
         select call_id, patient_id, 'temperature', 'number', to_char((360 + (call_id * 7) % 25) / 10.0, 'FM99.0'),
           360 + (call_id * 7) % 25, 1, created_at from calls order by call_id"
            .into(),
        "insert into answers (call_id, patient_id, name, kind, value_text, value_raw, value_scale, created_at)
         select call_id, patient_id, 'spo2', 'number', (90 + (call_id * 11) % 10)::text, 90 + (call_id * 11) % 10, 0, created_at
         from calls order by call_id"
            .into(),
        "set session_replication_role = origin".into(),
        "insert into latest_answers (patient_id, name, value_raw, value_scale, value_text, call_id, created_at)
         select distinct on (patient_id, name) patient_id, name, value_raw, coalesce(value_scale, 0), value_text, call_id, created_at
         from answers where kind = 'number' and patient_id is not null and value_raw is not null
         order by patient_id, name, call_id desc"
            .into(),
        "set session_replication_role = replica".into(),
        format!(
            "insert into jobs (patient_id, area, flow, status, day, due_at, attempt, outcome, updated_at, created_at)
             select 'P' || lpad(i::text, 6, '0'), 'area' || (i % 20), 'daily-health-check',
               case when (i + d) % 17 = 0 then 'unreachable' else 'done' end, date '{start}' + d, {ts},
               case when (i + d) % 17 = 0 then 3 else 1 end,
               case when (i + d) % 17 = 0 then 'no-answer' else 'completed' end, {ts}, {ts}
             from generate_series(0, {days} - 1) d, generate_series(1, {patients}) i order by d, i"
        ),
        "set session_replication_role = origin".into(),
        // The patients' last call's rank, by migration 22's own query.
        "update patients p set last_job_rank = job_rank(l.status)
           from (select distinct on (patient_id) patient_id, status from jobs order by patient_id, job_id desc) l
          where l.patient_id = p.patient_id"
            .into(),
        format!(
            "insert into followups (patient_id, status, urgency, opened_at, changed_by, changed_at)
             select 'P' || lpad(i::text, 6, '0'), 'open', 1 + (i / 10) % 3, timestamptz '{t0}', 'ivr', timestamptz '{t0}'
             from generate_series(3, {patients}, 10) i"
        ),
        "insert into followup_reasons (followup_id, kind, reason, urgency, created_at)
         select followup_id, 'flow', 'health_check', urgency, opened_at from followups"
            .into(),
        "vacuum analyze".into(),
    ]
}

/// The sparklines' readings of a page of patients (as `Trends::table` reads them).
const RECENT_SQLITE: &str =
    "select patient_id, name, call_id, created_at, value_raw, coalesce(value_scale, 0) from answers
     where patient_id in (select value from json_each(?1)) and name in (select value from json_each(?2))
       and kind = 'number' and value_raw is not null and created_at >= ?3";
const RECENT_PG: &str = "select patient_id, name, call_id, created_at, value_raw, coalesce(value_scale, 0) from answers
     where patient_id = any($1) and name = any($2)
       and kind = 'number' and value_raw is not null and created_at >= $3";
/// A patient's chart points (as `Trends::points` reads them).
const POINTS_SQLITE: &str =
    "select c.call_id, c.created_at, c.status, a.name, a.kind, a.value_text, a.value_raw, a.value_scale
     from calls c left join answers a on a.call_id = c.call_id and a.kind = 'number'
       and a.name in (select value from json_each(?2))
     where c.patient_id = ?1 order by c.created_at, c.call_id";
const POINTS_PG: &str =
    "select c.call_id, c.created_at, c.status, a.name, a.kind, a.value_text, a.value_raw, a.value_scale
     from calls c left join answers a on a.call_id = c.call_id and a.kind = 'number' and a.name = any($2)
     where c.patient_id = $1 order by c.created_at, c.call_id";

fn since() -> chrono::DateTime<Utc> {
    let today = Utc::now().with_timezone(&TZ).date_naive();
    TZ.from_local_datetime(&(today - Duration::days(6)).and_time(NaiveTime::MIN)).unwrap().with_timezone(&Utc)
}

pub async fn scenario(args: &Args) -> Result<(), Error> {
    println!(
        "patients table: {} patients in care, {} days of answers ({} cores, {} build)",
        args.patients,
        args.days,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    let mut rows = Vec::new();
    if args.stores.wanted("sqlite") {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ivr.db");
        let url = format!("sqlite://{}", path.display());
        let server = Server::start(&settings(&url)).await?;
        let conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        // The fill's inserts land all over the indexes (by day, indexed by patient): a cache that
        // holds them makes it minutes rather than an hour. The server's own connections keep
        // their settings.
        conn.execute_batch("pragma cache_size = -1500000")?;
        let filled = std::time::Instant::now();
        for sql in sqlite_fill(args.patients, args.days) {
            conn.execute_batch(&format!("begin; {sql}; commit;"))?;
        }
        let size =
            std::fs::metadata(&path)?.len() + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
        println!("sqlite: filled in {:.0} s, {} MB", filled.elapsed().as_secs_f64(), size / 1_000_000);
        for (what, q) in queries(args.days) {
            let sql = page_sql(Dialect::Sqlite, &q);
            let params: Vec<Box<dyn rusqlite::ToSql>> = sql
                .params
                .iter()
                .map(|p| -> Box<dyn rusqlite::ToSql> {
                    match p {
                        Param::Text(t) => Box::new(t.clone()),
                        Param::Int(i) => Box::new(*i),
                    }
                })
                .collect();
            let refs: Vec<&dyn rusqlite::ToSql> = params.iter().map(|b| b.as_ref()).collect();
            for (label, text, n) in [("page", &sql.ids, refs.len()), ("count", &sql.count, sql.count_params)] {
                println!("sqlite: EXPLAIN QUERY PLAN, {what}, {label}:");
                let mut st = conn.prepare(&format!("explain query plan {text}"))?;
                for r in st.query_map(&refs[..n], |r| r.get::<_, String>(3))? {
                    println!("    {}", r?);
                }
            }
        }
        let ids = serde_json::to_string(&(1..=50).map(|i| format!("P{i:06}")).collect::<Vec<_>>())?;
        let names = r#"["temperature","spo2"]"#;
        let since = since().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        for (what, sql, args) in [
            ("a page's sparkline readings", RECENT_SQLITE, vec![ids.clone(), names.to_string(), since]),
            ("a patient's chart points", POINTS_SQLITE, vec!["P000001".to_string(), names.to_string()]),
        ] {
            println!("sqlite: EXPLAIN QUERY PLAN, {what}:");
            let mut st = conn.prepare(&format!("explain query plan {sql}"))?;
            for r in st.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(3))? {
                println!("    {}", r?);
            }
        }
        drop(conn);
        println!("| store | page | median ms | p95 ms | max ms |");
        println!("| --- | --- | ---: | ---: | ---: |");
        rows.push(measure_pages("sqlite", server, args, &pages()).await);
    }
    if args.stores.wanted("postgres") {
        let mut admin = PgConnection::connect(&args.stores.pg).await?;
        let (name, url) = super::common::create_database(&mut admin, &args.stores.pg).await?;
        let result: Result<(), Error> = async {
            let server = Server::start(&settings(url.as_str())).await?;
            let mut conn = PgConnection::connect(url.as_str()).await?;
            let filled = std::time::Instant::now();
            for sql in pg_fill(args.patients, args.days) {
                sqlx::raw_sql(&sql).execute(&mut conn).await?;
            }
            let size: i64 =
                sqlx::query_scalar("select pg_database_size(current_database())").fetch_one(&mut conn).await?;
            println!("postgres: filled in {:.0} s, {} MB", filled.elapsed().as_secs_f64(), size / 1_000_000);
            for (what, q) in queries(args.days) {
                let sql = page_sql(Dialect::Postgres, &q);
                for (label, text, n) in [("page", &sql.ids, sql.params.len()), ("count", &sql.count, sql.count_params)]
                {
                    println!("postgres: EXPLAIN, {what}, {label}:");
                    let text = format!("explain {text}");
                    let mut query = sqlx::query_as::<_, (String,)>(&text);
                    for p in &sql.params[..n] {
                        query = match p {
                            Param::Text(t) => query.bind(t.clone()),
                            Param::Int(i) => query.bind(*i),
                        };
                    }
                    for (line,) in query.fetch_all(&mut conn).await? {
                        println!("    {line}");
                    }
                }
            }
            let ids: Vec<String> = (1..=50).map(|i| format!("P{i:06}")).collect();
            let names = vec!["temperature".to_string(), "spo2".to_string()];
            println!("postgres: EXPLAIN, a page's sparkline readings:");
            let text = format!("explain {RECENT_PG}");
            let plan: Vec<(String,)> =
                sqlx::query_as(&text).bind(&ids).bind(&names).bind(since()).fetch_all(&mut conn).await?;
            for (line,) in plan {
                println!("    {line}");
            }
            println!("postgres: EXPLAIN, a patient's chart points:");
            let text = format!("explain {POINTS_PG}");
            let plan: Vec<(String,)> = sqlx::query_as(&text).bind("P000001").bind(&names).fetch_all(&mut conn).await?;
            for (line,) in plan {
                println!("    {line}");
            }
            conn.close().await?;
            println!("| store | page | median ms | p95 ms | max ms |");
            println!("| --- | --- | ---: | ---: | ---: |");
            measure_pages("postgres", server, args, &pages()).await
        }
        .await;
        sqlx::raw_sql(&format!("drop database if exists {name} with (force)")).execute(&mut admin).await?;
        rows.push(result);
    }
    for r in rows {
        r?;
    }
    Ok(())
}
