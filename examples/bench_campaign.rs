//! The campaign benchmark (`scripts/bench-campaign.sh`): a simulated day of N patients dialled
//! by the real `ivr serve` (release build) on SQLite, with the built-in carrier simulator.
//!
//! 1. Writes `ivr.toml` and a roster of N mobile numbers in a fresh directory; the persona of
//!    each is chosen by the number's last digit (`i % 10`), so all ten are mixed evenly as in
//!    `examples/patients.csv`. Slots `00:00-23:59`, `quiet_hours = "none"`: it runs at any hour;
//!    `max_attempts = 1`: the campaign ends.
//! 2. `ivr patients import`, `ivr serve`, then `ivr dial --now`.
//! 3. Every second until every job is finished: dials started (`ivr_dials_total` on /metrics),
//!    calls in progress (jobs `dialing` or `in-progress`, read from the database as the
//!    dialer counts them), the server's CPU time and VmRSS/VmHWM.
//! 4. Reports the call rate (from the simulator's log: when each call was accepted), the peak
//!    of concurrent calls, webhook latency quantiles from the server's
//!    `ivr_webhook_duration_seconds` histogram, CPU, memory, duration and outcomes.
//!
//! With `--floor`, it then starts a fresh server and sends the same number of `create_call`
//! requests straight to its `/simulator` API, paced at the same rate with no dialer and no
//! database: the rate the dialer can at best reach on this machine.
//!
//! With `--web` (`BENCH_WEB=true`) it runs instead two days of two check-ins each (`00:00`,
//! and one `--checkin-gap` minutes from now, Asia/Tokyo): one where half the patients (every
//! other one) have a personal link and report on the web at each check-in, the bench filling
//! the form over HTTP as soon as the web request's SMS reaches the simulator
//! (`carrier::simulator::web`), and a calls-only day with the same roster and check-ins. It
//! reports the calls placed, the web requests sent, the web reports stored, the calls saved,
//! the form's latency, CPU and memory for each.
//!
//! ```sh
//! cargo run --release --example bench_campaign -- --ivr target/release/ivr --patients 1000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use governor::{Quota, RateLimiter};
use ivr::carrier::simulator::account_sid;
use ivr::carrier::twilio::{CallRequest, MachineDetection, TwilioClient};

const TOKEN: &str = "bench-campaign-auth-token-0123456789";

#[derive(Debug, Parser)]
#[command(about = "A simulated daily campaign through ivr serve")]
struct Args {
    /// The `ivr` binary (a release build).
    #[arg(long, default_value = "target/release/ivr")]
    ivr: PathBuf,
    #[arg(long, env = "BENCH_PATIENTS", default_value_t = 10_000)]
    patients: usize,
    #[arg(long, env = "BENCH_CPS", default_value_t = 50.0)]
    calls_per_second: f64,
    #[arg(long, env = "BENCH_CONCURRENT", default_value_t = 500)]
    max_concurrent_calls: u32,
    /// `carrier.simulator_speed`: 1.0 is human-like; see docs/performance.md for the choice.
    #[arg(long, env = "BENCH_SPEED", default_value_t = 0.66)]
    speed: f64,
    /// `scheduler.ring_timeout`: how long the patient who never answers rings (times speed).
    #[arg(long, env = "BENCH_RING_TIMEOUT", default_value = "45s")]
    ring_timeout: String,
    /// Also measure the floor: the same `create_call` requests at the same rate, no dialer.
    #[arg(long, env = "BENCH_FLOOR")]
    floor: bool,
    #[arg(long, env = "BENCH_PORT", default_value_t = 18090)]
    port: u16,
    /// Keep the working directory (database, logs) and print where it is.
    #[arg(long)]
    keep: bool,
    /// Two check-ins a day, half the patients reporting on the web, next to a calls-only day.
    #[arg(long, env = "BENCH_WEB")]
    web: bool,
    /// Minutes from now to the second check-in (`--web`).
    #[arg(long, env = "BENCH_CHECKIN_GAP", default_value_t = 3)]
    checkin_gap: i64,
    /// `scheduler.web_grace` (`--web`).
    #[arg(long, env = "BENCH_WEB_GRACE", default_value = "60s")]
    web_grace: String,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::Builder::new().prefix("bench-campaign-").tempdir()?;
    let dir = work.path().to_path_buf();
    let roster = roster(&dir, args.patients)?;
    if args.web {
        for web in [true, false] {
            let mut day = checkin_day(&args, &dir.join(if web { "web" } else { "calls" }), &roster, web).await?;
            day.print(&args, web);
        }
        if args.keep {
            eprintln!("kept {}", work.keep().display());
        }
        return Ok(());
    }
    let campaign_dir = dir.join("campaign");
    std::fs::create_dir_all(&campaign_dir)?;
    let config = write_config(&campaign_dir, &args)?;
    run_ok(ivr(&args, &["patients", "import"], &config).arg(&roster))?;

    let mut server = Server::start(&args, &config).await?;
    let run = campaign(&args, &campaign_dir, &config, &server).await;
    server.stop();
    let run = run?;
    run.print(&args);

    if args.floor {
        let floor_dir = dir.join("floor");
        std::fs::create_dir_all(&floor_dir)?;
        let floor_config = write_config(&floor_dir, &args)?;
        let mut server = Server::start(&args, &floor_config).await?;
        let floor = floor(&args, &floor_dir).await;
        server.stop();
        floor?.print(&args);
    }
    if args.keep {
        eprintln!("kept {}", work.keep().display());
    }
    Ok(())
}

/// The roster: mobile numbers whose last digit is `i % 10` (the persona), born 1960-04-12.
fn roster(dir: &Path, n: usize) -> Result<PathBuf> {
    let mut csv = String::from("patient_id,name,phone,birth_date,language,call_slot\n");
    for i in 0..n {
        let prefix = ["090", "080", "070"][(i / 10) % 3];
        let slot = if i % 2 == 0 { "morning" } else { "afternoon" };
        csv.push_str(&format!(
            "B{i:06},患者 {i},{prefix}-{:04}-{:04},1960-04-12,ja-JP,{slot}\n",
            i / 10_000,
            i % 10_000
        ));
    }
    let file = dir.join("patients.csv");
    std::fs::write(&file, csv)?;
    Ok(file)
}

/// `ivr.toml` for a run in `dir`: SQLite, the simulator with its log, the limits under test.
fn write_config(dir: &Path, args: &Args) -> Result<PathBuf> {
    write_config_with(dir, args, "")
}

/// [`write_config`], with more `[scheduler]` lines.
fn write_config_with(dir: &Path, args: &Args, scheduler: &str) -> Result<PathBuf> {
    let root = env!("CARGO_MANIFEST_DIR");
    let file = dir.join("ivr.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[carrier]
auth_token = "{TOKEN}"
simulator_speed = {speed}
simulator_log = "{log}"

[issuer]
key = "bench-campaign-issuer-key"

[scheduler]
slots = {{ morning = "00:00-23:59", afternoon = "00:00-23:59" }}
quiet_hours = "none"
calls_per_second = {cps}
max_concurrent_calls = {max}
ring_timeout = "{ring}"
max_attempts = 1
autostart = false
{scheduler}

[flows]
dir = "{root}/call-flows"
prompts_dir = "{root}/prompts"
"#,
            port = args.port,
            db = dir.join("ivr.db").display(),
            speed = args.speed,
            log = dir.join("carrier.jsonl").display(),
            cps = args.calls_per_second,
            max = args.max_concurrent_calls,
            ring = args.ring_timeout,
            scheduler = scheduler,
        ),
    )?;
    Ok(file)
}

fn ivr(args: &Args, command: &[&str], config: &Path) -> Command {
    let mut c = Command::new(&args.ivr);
    c.args(command).arg("--config").arg(config).env("RUST_LOG", "warn").env_remove("IVR_DATABASE__URL");
    c
}

fn run_ok(c: &mut Command) -> Result<String> {
    let out = c.output()?;
    if !out.status.success() {
        return Err(format!("{c:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `ivr serve`, its log in `server.log` next to the config.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(args: &Args, config: &Path) -> Result<Server> {
        let log = std::fs::File::create(config.with_file_name("server.log"))?;
        let child = ivr(args, &["serve"], config).stdout(Stdio::null()).stderr(log).spawn()?;
        let server = Server { child, base: format!("http://127.0.0.1:{}", args.port) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::get(format!("{}/readyz", server.base)).await.is_ok_and(|r| r.status().is_success()) {
            if Instant::now() > deadline {
                return Err(format!(
                    "the server did not become ready; see {}",
                    config.with_file_name("server.log").display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.base)).await?.text().await?)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the server process used: CPU seconds, memory in KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    cpu_secs: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // USER_HZ is 100 on every Linux architecture tokio runs on.
    let cpu_secs = (ticks(11) + ticks(12)) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.trim_start_matches(':').split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Usage { cpu_secs, rss_kib: kib("VmRSS"), hwm_kib: kib("VmHWM") }
}

/// One sample a second.
#[derive(Debug, Clone)]
struct Sample {
    secs: f64,
    dials: u64,
    active: i64,
    finished: i64,
    usage: Usage,
}

/// What a campaign run measured.
struct Run {
    samples: Vec<Sample>,
    took: Duration,
    dial_times: Vec<DateTime<Utc>>,
    cpu_secs: f64,
    usage: Usage,
    latency: BTreeMap<String, Histogram>,
    outcomes: Vec<(String, String, i64)>,
    mean_hold_secs: f64,
    total: i64,
}

async fn campaign(args: &Args, dir: &Path, config: &Path, server: &Server) -> Result<Run> {
    let db = rusqlite::Connection::open_with_flags(dir.join("ivr.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    db.busy_timeout(Duration::from_secs(5))?;
    let before = usage(server.pid());
    let start = Instant::now();
    let planned = run_ok(&mut ivr(args, &["dial", "--now"], config))?;
    eprintln!("{}", planned.lines().next().unwrap_or(""));
    let mut samples = Vec::new();
    let mut next = start;
    loop {
        let counts = job_counts(&db)?;
        let total: i64 = counts.values().sum();
        let count = |s: &str| counts.get(s).copied().unwrap_or(0);
        let finished = count("done") + count("unreachable") + count("failed");
        let metrics = server.metrics().await?;
        let sample = Sample {
            secs: start.elapsed().as_secs_f64(),
            dials: counter(&metrics, "ivr_dials_total") as u64,
            active: count("dialing") + count("in-progress"),
            finished,
            usage: usage(server.pid()),
        };
        if samples.len() % 10 == 0 {
            eprintln!(
                "[{:>4.0}s] dials {:>6} · in progress {:>4} · finished {:>6}/{total} · RSS {} MiB",
                sample.secs,
                sample.dials,
                sample.active,
                sample.finished,
                sample.usage.rss_kib / 1024
            );
        }
        samples.push(sample);
        if total > 0 && finished == total {
            break;
        }
        next += Duration::from_secs(1);
        tokio::time::sleep_until(next.into()).await;
    }
    let took = start.elapsed();
    let after = usage(server.pid());
    let metrics = server.metrics().await?;
    let mut outcomes = Vec::new();
    let mut q =
        db.prepare("select status, coalesce(outcome, '-'), count(*) from jobs group by 1, 2 order by 3 desc")?;
    for row in q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        outcomes.push(row?);
    }
    let mut q = db.prepare("select started_at, ended_at from job_attempts where ended_at is not null")?;
    let holds: Vec<f64> = q
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .filter_map(|r| r.ok())
        .filter_map(|(a, b)| Some((time(&b)? - time(&a)?).as_seconds_f64()))
        .collect();
    Ok(Run {
        total: samples.last().map_or(0, |s| s.finished),
        samples,
        took,
        dial_times: dial_times(&dir.join("carrier.jsonl")),
        cpu_secs: after.cpu_secs - before.cpu_secs,
        usage: after,
        latency: histograms(&metrics, "ivr_webhook_duration_seconds"),
        outcomes,
        mean_hold_secs: holds.iter().sum::<f64>() / holds.len().max(1) as f64,
    })
}

fn job_counts(db: &rusqlite::Connection) -> Result<BTreeMap<String, i64>> {
    let mut q = db.prepare_cached("select status, count(*) from jobs group by status")?;
    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// When the simulator accepted each call, from its log, in order.
fn dial_times(log: &Path) -> Vec<DateTime<Utc>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut times: Vec<DateTime<Utc>> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "call")
        .filter_map(|v| time(v["at"].as_str()?))
        .collect();
    times.sort();
    times
}

/// The rate over the steady part (first dial to last) and the most dials in any 1 s window.
fn rate(times: &[DateTime<Utc>]) -> (f64, usize, f64) {
    let (Some(first), Some(last)) = (times.first(), times.last()) else { return (0.0, 0, 0.0) };
    let span = (*last - *first).as_seconds_f64();
    let steady = if span > 0.0 { (times.len() - 1) as f64 / span } else { 0.0 };
    let mut most = 0;
    let mut j = 0;
    for (i, t) in times.iter().enumerate() {
        while j < times.len() && times[j] < *t + chrono::Duration::seconds(1) {
            j += 1;
        }
        most = most.max(j - i);
    }
    (steady, most, span)
}

/// A Prometheus counter or gauge without labels (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// A histogram's cumulative buckets: (upper bound, count), the last one +Inf.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    fn add(&mut self, other: &Histogram) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else {
            for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
                a.1 += b.1;
            }
        }
    }

    /// The q-quantile in seconds, interpolated linearly inside its bucket (as Prometheus's
    /// `histogram_quantile`); infinite when it falls in the last, unbounded bucket.
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.count();
        let mut lower = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return f64::INFINITY;
                }
                let inside = if n > lower.1 { (rank - lower.1) / (n - lower.1) } else { 1.0 };
                return lower.0 + (le - lower.0) * inside;
            }
            lower = (le, n);
        }
        f64::NAN
    }
}

/// `NAME_bucket{route="…",le="…"} N` lines by route.
fn histograms(metrics: &str, name: &str) -> BTreeMap<String, Histogram> {
    let mut by_route: BTreeMap<String, Histogram> = BTreeMap::new();
    let prefix = format!("{name}_bucket{{");
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let label = |key: &str| {
            let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
            Some(labels[start..].split('"').next()?.to_string())
        };
        let (Some(route), Some(le), Ok(n)) = (label("route"), label("le"), value.trim().parse::<f64>()) else {
            continue;
        };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
        by_route.entry(route).or_default().buckets.push((le, n));
    }
    for h in by_route.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    by_route
}

fn ms(secs: f64) -> String {
    if secs.is_infinite() { "> 2500".into() } else { format!("{:.1}", secs * 1000.0) }
}

impl Run {
    fn print(&self, args: &Args) {
        let (steady, most, span) = rate(&self.dial_times);
        let peak = self.samples.iter().map(|s| s.active).max().unwrap_or(0);
        let at_peak = self.samples.iter().filter(|s| s.active as f64 >= 0.95 * f64::from(args.max_concurrent_calls));
        let hwm = self.samples.iter().map(|s| s.usage.hwm_kib).max().unwrap_or(0).max(self.usage.hwm_kib);
        let mut voice = Histogram::default();
        for (route, h) in &self.latency {
            if route.starts_with("/twilio/voice") {
                voice.add(h);
            }
        }
        println!();
        println!(
            "## campaign: {} patients, calls_per_second {}, max_concurrent_calls {}",
            args.patients, args.calls_per_second, args.max_concurrent_calls
        );
        println!("simulator_speed {}, ring_timeout {}, max_attempts 1, SQLite", args.speed, args.ring_timeout);
        println!("| what | figure |");
        println!("| --- | --- |");
        println!("| dials | {} in {span:.1} s (first to last) |", self.dial_times.len());
        println!("| call rate, first dial to last | {steady:.2}/s (configured {}) |", args.calls_per_second);
        println!("| most dials in any 1 s window | {most} (configured {} + burst 1) |", args.calls_per_second);
        println!(
            "| peak of calls in progress | {peak} of {} (≥ 95% of it in {} of {} samples) |",
            args.max_concurrent_calls,
            at_peak.count(),
            self.samples.len()
        );
        println!(
            "| mean time a call holds a place (claimed to ended) | {:.1} s: the limit of {} allows {:.1} calls/s |",
            self.mean_hold_secs,
            args.max_concurrent_calls,
            f64::from(args.max_concurrent_calls) / self.mean_hold_secs.max(1e-9)
        );
        println!(
            "| webhook latency, voice routes ({} requests) | p50 {} ms, p99 {} ms |",
            voice.count(),
            ms(voice.quantile(0.5)),
            ms(voice.quantile(0.99))
        );
        for (route, h) in &self.latency {
            if !route.starts_with("/twilio/voice") && h.count() > 0.0 {
                println!(
                    "| latency `{route}` ({} requests) | p50 {} ms, p99 {} ms |",
                    h.count(),
                    ms(h.quantile(0.5)),
                    ms(h.quantile(0.99))
                );
            }
        }
        println!(
            "| server CPU during the campaign | {:.0} s ({:.2} cores on average) |",
            self.cpu_secs,
            self.cpu_secs / self.took.as_secs_f64()
        );
        println!("| server memory | VmRSS {} MiB at the end, VmHWM {} MiB |", self.usage.rss_kib / 1024, hwm / 1024);
        println!("| total duration (dial --now to every job finished) | {:.0} s |", self.took.as_secs_f64());
        let outcomes: Vec<String> = self.outcomes.iter().map(|(s, o, n)| format!("{s}/{o} {n}")).collect();
        println!("| jobs by status/outcome ({} finished) | {} |", self.total, outcomes.join(", "));
        println!();
    }
}

/// What the floor measured.
struct Floor {
    dial_times: Vec<DateTime<Utc>>,
    errors: usize,
    latency: Vec<f64>,
}

/// The same number of calls placed straight through the simulator's API at the same rate.
async fn floor(args: &Args, dir: &Path) -> Result<Floor> {
    let client = TwilioClient::new(&format!("http://127.0.0.1:{}/simulator", args.port), &account_sid(), TOKEN)?;
    let limiter = Arc::new(RateLimiter::direct(
        Quota::per_second(std::num::NonZeroU32::new(args.calls_per_second.round().max(1.0) as u32).expect("positive"))
            .allow_burst(std::num::NonZeroU32::MIN),
    ));
    let public = format!("http://127.0.0.1:{}", args.port);
    let mut placing = tokio::task::JoinSet::new();
    for i in 0..args.patients {
        limiter.until_ready().await;
        let client = client.clone();
        let prefix = ["90", "80", "70"][(i / 10) % 3];
        let mut req = CallRequest::new(
            format!("+81{prefix}{:04}{:04}", i / 10_000, i % 10_000),
            "+815000000000",
            format!("{public}/twilio/voice"),
        );
        req.timeout_secs = Some(45);
        req.machine_detection = Some(MachineDetection::DetectMessageEnd);
        placing.spawn(async move {
            let t = Instant::now();
            let r = client.create_call(&req).await;
            (r.is_ok(), t.elapsed().as_secs_f64())
        });
    }
    let mut floor = Floor { dial_times: Vec::new(), errors: 0, latency: Vec::new() };
    while let Some(r) = placing.join_next().await {
        let (ok, secs) = r?;
        floor.errors += usize::from(!ok);
        floor.latency.push(secs);
    }
    floor.dial_times = dial_times(&dir.join("carrier.jsonl"));
    Ok(floor)
}

impl Floor {
    fn print(&mut self, args: &Args) {
        let (steady, most, span) = rate(&self.dial_times);
        self.latency.sort_by(f64::total_cmp);
        let q = |q: f64| {
            self.latency.get(((self.latency.len() as f64 * q) as usize).min(self.latency.len().saturating_sub(1)))
        };
        println!("## floor: {} create_call requests at {}/s, no dialer", args.patients, args.calls_per_second);
        println!("| what | figure |");
        println!("| --- | --- |");
        println!("| calls accepted | {} in {span:.1} s, {} errors |", self.dial_times.len(), self.errors);
        println!("| call rate, first to last | {steady:.2}/s |");
        println!("| most in any 1 s window | {most} |");
        println!(
            "| create_call latency | p50 {} ms, p99 {} ms |",
            ms(q(0.5).copied().unwrap_or(f64::NAN)),
            ms(q(0.99).copied().unwrap_or(f64::NAN))
        );
        println!();
    }
}

/// What a day of two check-ins measured.
struct CheckinDay {
    took: Duration,
    checkins: [String; 2],
    /// (check-in, status, outcome, jobs).
    jobs: Vec<(String, String, String, i64)>,
    calls: i64,
    web_requests: i64,
    web_reports: i64,
    /// Seconds each web report took the bench, first page to sent.
    report_secs: Vec<f64>,
    report_errors: usize,
    cpu_secs: f64,
    hwm_kib: u64,
}

/// A day of two check-ins through `ivr serve`: `00:00` (started with `ivr dial --now`) and one
/// `checkin_gap` minutes ahead, whose calls are spread over the four minutes after it (the slots
/// end then); with `web`, every other patient has a link and reports on the web.
async fn checkin_day(args: &Args, dir: &Path, roster: &Path, web: bool) -> Result<CheckinDay> {
    use chrono::Timelike;
    std::fs::create_dir_all(dir)?;
    let tokyo = Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
    let at = tokyo + chrono::Duration::minutes(args.checkin_gap) + chrono::Duration::seconds(59);
    if at.date_naive() != tokyo.date_naive() {
        return Err("the second check-in would fall after midnight in Asia/Tokyo: run it later".into());
    }
    // The slots end a few minutes after the second check-in: its calls are spread over them.
    let end = at + chrono::Duration::minutes(4);
    if end.date_naive() != tokyo.date_naive() {
        return Err("the second check-in would end after midnight in Asia/Tokyo: run it later".into());
    }
    let second = format!("{:02}:{:02}", at.hour(), at.minute());
    let end = format!("{:02}:{:02}", end.hour(), end.minute());
    let extra = format!("checks = [\"00:00\", \"{second}\"]\nweb_grace = \"{}\"", args.web_grace);
    let config = write_config_with(dir, args, &extra)?;
    let text = std::fs::read_to_string(&config)?.replace("-23:59\"", &format!("-{end}\""));
    std::fs::write(&config, text)?;
    run_ok(ivr(args, &["patients", "import"], &config).arg(roster))?;
    let mut web_patients = std::collections::HashMap::new();
    if web {
        let store = ivr::store::Store::open(&format!("sqlite://{}", dir.join("ivr.db").display()), false).await?;
        let now = Utc::now();
        for p in store.patients().all().await?.into_iter().step_by(2) {
            store.links().create(&p.patient_id, now + chrono::Duration::days(14), now).await?;
            web_patients.insert(p.phone.as_str().to_string(), ivr::carrier::simulator::Persona::for_number(&p.phone));
        }
    }
    let mut server = Server::start(args, &config).await?;
    let result = run_checkin_day(args, dir, &config, &server, web_patients, [String::from("00:00"), second]).await;
    server.stop();
    result
}

async fn run_checkin_day(
    args: &Args,
    dir: &Path,
    config: &Path,
    server: &Server,
    web_patients: std::collections::HashMap<String, ivr::carrier::simulator::Persona>,
    checkins: [String; 2],
) -> Result<CheckinDay> {
    let db = rusqlite::Connection::open_with_flags(dir.join("ivr.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    db.busy_timeout(Duration::from_secs(5))?;
    let before = usage(server.pid());
    let start = Instant::now();
    let planned = run_ok(&mut ivr(args, &["dial", "--now"], config))?;
    eprintln!("{}", planned.lines().take(3).collect::<Vec<_>>().join("\n"));
    // The web patients: each web request's SMS is read from the simulator and its form filled.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<std::result::Result<f64, String>>();
    let player = tokio::spawn(play_web(server.base.clone(), web_patients, done_tx));
    let mut report_secs = Vec::new();
    let mut report_errors = 0;
    let mut hwm = 0;
    loop {
        while let Ok(r) = done_rx.try_recv() {
            match r {
                Ok(secs) => report_secs.push(secs),
                Err(e) => {
                    report_errors += 1;
                    eprintln!("a web report failed: {e}");
                }
            }
        }
        let counts = job_counts(&db)?;
        let total: i64 = counts.values().sum();
        let count = |s: &str| counts.get(s).copied().unwrap_or(0);
        let finished = count("done") + count("unreachable") + count("failed") + count("reported");
        let u = usage(server.pid());
        hwm = hwm.max(u.hwm_kib);
        if start.elapsed().as_secs() % 10 == 0 {
            eprintln!(
                "[{:>4.0}s] jobs {total} · finished {finished} · reported first {} · web reports {} · RSS {} MiB",
                start.elapsed().as_secs_f64(),
                count("reported"),
                report_secs.len(),
                u.rss_kib / 1024
            );
        }
        if total as usize >= 2 * args.patients && finished == total {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    player.abort();
    let took = start.elapsed();
    let after = usage(server.pid());
    let mut jobs = Vec::new();
    let mut q = db.prepare(
        "select checkin, status, coalesce(outcome, '-'), count(*) from jobs group by 1, 2, 3 order by 1, 4 desc",
    )?;
    for row in q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))? {
        jobs.push(row?);
    }
    let one = |sql: &str| -> Result<i64> { Ok(db.query_row(sql, [], |r| r.get(0))?) };
    Ok(CheckinDay {
        took,
        checkins,
        jobs,
        calls: one("select count(*) from job_attempts")?,
        web_requests: one("select count(*) from jobs where web_sent_at is not null")?,
        web_reports: one("select count(*) from calls where direction = 'web' and ended = 1")?,
        report_secs,
        report_errors,
        cpu_secs: after.cpu_secs - before.cpu_secs,
        hwm_kib: hwm.max(after.hwm_kib),
    })
}

/// Reads the SMS the simulator accepted (its Messages list, newest first) every 200 ms and, for
/// each web request to a web patient, fills and sends the report.
async fn play_web(
    base: String,
    patients: std::collections::HashMap<String, ivr::carrier::simulator::Persona>,
    done: tokio::sync::mpsc::UnboundedSender<std::result::Result<f64, String>>,
) {
    let client = reqwest::Client::new();
    let list = format!("{base}/simulator/2010-04-01/Accounts/{}/Messages.json", account_sid());
    let mut seen = std::collections::HashSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    loop {
        let page = client.get(&list).basic_auth(account_sid(), Some(TOKEN)).query(&[("PageSize", "1000")]).send().await;
        let page: serde_json::Value = match page {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        for m in page["messages"].as_array().into_iter().flatten() {
            let (Some(sid), Some(to), Some(body)) = (m["sid"].as_str(), m["to"].as_str(), m["body"].as_str()) else {
                continue;
            };
            let Some(&persona) = patients.get(to) else { continue };
            let Some(url) = body.split_whitespace().find(|w| w.contains("/r/")) else { continue };
            if !seen.insert(sid.to_string()) {
                continue;
            }
            let (client, url, done, limit) = (client.clone(), url.to_string(), done.clone(), limit.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire().await;
                let t = Instant::now();
                let r = ivr::carrier::simulator::web::report(&client, &url, persona, "0412").await;
                let _ = done.send(r.map(|()| t.elapsed().as_secs_f64()));
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl CheckinDay {
    fn print(&mut self, args: &Args, web: bool) {
        self.report_secs.sort_by(f64::total_cmp);
        let q = |q: f64| {
            self.report_secs
                .get(((self.report_secs.len() as f64 * q) as usize).min(self.report_secs.len().saturating_sub(1)))
                .map_or("-".to_string(), |s| ms(*s))
        };
        let what = if web { "half the patients reporting on the web" } else { "calls only" };
        println!();
        println!(
            "## two check-ins ({} and {}), {} patients, {what}",
            self.checkins[0], self.checkins[1], args.patients
        );
        println!(
            "calls_per_second {}, max_concurrent_calls {}, simulator_speed {}, web_grace {}, max_attempts 1, SQLite",
            args.calls_per_second, args.max_concurrent_calls, args.speed, args.web_grace
        );
        println!("| what | figure |");
        println!("| --- | --- |");
        println!("| calls placed | {} |", self.calls);
        println!("| web requests sent | {} |", self.web_requests);
        println!("| web reports stored | {} ({} failed in the bench) |", self.web_reports, self.report_errors);
        let saved: i64 = self.jobs.iter().filter(|j| j.1 == "reported").map(|j| j.3).sum();
        println!("| calls saved (reported first) | {saved} |");
        println!("| a web report, first page to sent (the bench's side) | p50 {} ms, p99 {} ms |", q(0.5), q(0.99));
        println!(
            "| server CPU | {:.0} s in {:.0} s ({:.2} cores) |",
            self.cpu_secs,
            self.took.as_secs_f64(),
            self.cpu_secs / self.took.as_secs_f64()
        );
        println!("| server memory (VmHWM) | {} MiB |", self.hwm_kib / 1024);
        let jobs: Vec<String> = self.jobs.iter().map(|(c, s, o, n)| format!("{c} {s}/{o} {n}")).collect();
        println!("| jobs by check-in, status/outcome | {} |", jobs.join(", "));
        println!();
    }
}
