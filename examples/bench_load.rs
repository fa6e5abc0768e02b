//! Load generator for the webhook benchmark (`scripts/bench-webhooks.sh`).
//!
//! `run`: N keep-alive HTTP/1.1 connections, each a virtual caller that walks whole calls of the
//! daily health check one after the other, every request signed as the carrier signs them.
//!
//! - `--target ivr`: `POST /twilio/voice` (a new `CallSid`, `From` = a patient's phone), then
//!   each gather's `action`, read from the TwiML answer (`ivr::twiml::parse`,
//!   `ivr::twiml::phone::listen`), with the keys of a complete call, until the server hangs up.
//! - `--target floor`: the same requests (form, signature, URLs) to a `bench_floor` server,
//!   which answers a constant document; the client makes the action URLs itself.
//!
//! Requests are timed after a warm-up, for a fixed time. A non-2xx answer, a transport
//! error, a timeout, or (for `ivr`) a call that does not reach its last question is an error.
//! Prints one line of `key=value`: target, connections, turns/s, p50, p99, errors, and with
//! `--pid` the server's CPU time per turn and its memory (VmRSS, VmHWM).
//!
//! `seed`: creates the roster in a fresh database through the library (`Store::open`, `migrate`,
//! `upsert_patient`): patients `P00000`… with phones `+8190` and eight digits, born on 04-12.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use ivr::carrier::signature::{self, AuthToken, SIGNATURE_HEADER};
use ivr::store::{Patient, Store};
use ivr::twiml::phone::{self, Next};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(about = "Signed webhook load for ivr serve and its floors")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the load and prints one line of results.
    Run(RunArgs),
    /// Creates the patients in a database (SQLite file or PostgreSQL database).
    Seed {
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 1000)]
        patients: usize,
    },
    /// Reads the lines of `run` (several rounds; each with `round=N` appended) and prints a
    /// markdown table: medians over rounds, and each target's throughput as a fraction of the
    /// floors measured in the same round.
    Report {
        file: std::path::PathBuf,
        /// The floors to divide by, as `NAME=TARGET` (e.g. `bare=bare`).
        #[arg(long = "floor")]
        floors: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Ivr,
    Floor,
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    target: Target,
    /// The name printed for this run.
    #[arg(long)]
    label: Option<String>,
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// The base URL signatures are computed over (the server's `server.public_url`).
    #[arg(long)]
    public_url: Option<String>,
    #[arg(long, env = "IVR_CARRIER__AUTH_TOKEN", default_value = "bench-auth-token-0123456789abcdef")]
    token: String,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Patients in the roster (`From` numbers are drawn among them).
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// The server's process id: its CPU time and memory are reported.
    #[arg(long)]
    pid: Option<u32>,
    /// Client runtime threads (1 leaves the other core to the server on a 2-core machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The keys of a complete daily call: birthday, temperature, confirm, oximeter, SpO2, confirm,
/// five symptoms, the app question and consent.
// Every answer of the daily call; "2" at the app question (not an app user), so no call issues
// a processing number and every call of the same patient takes the same path.
const KEYS: &[&str] = &["0412", "365#", "1", "1", "97#", "1", "2", "2", "2", "2", "2", "2"];

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn phone_of(i: usize) -> String {
    format!("+8190{i:08}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    match cli.command {
        Command::Seed { db, patients } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(seed(&db, patients))
        }
        Command::Report { file, floors } => report(&file, &floors),
        Command::Run(args) => {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
            rt.block_on(run(args))
        }
    }
}

async fn seed(db: &str, patients: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(db, false).await?;
    store.migrate().await?;
    for i in 0..patients {
        store
            .patients()
            .upsert(&Patient {
                patient_id: format!("P{i:05}").parse()?,
                name: format!("患者 {i}"),
                phone: phone_of(i).parse()?,
                birth_md: Some("0412".into()),
                language: "ja-JP".into(),
                email: None,
                area: None,
                care_start: None,
                care_end: None,
                call_slot: None,
            })
            .await?;
    }
    Ok(())
}

/// What one virtual caller measured.
#[derive(Default)]
struct Tally {
    /// Microseconds per request completed inside the measured window.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    calls: u64,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

struct Shared {
    args: RunArgs,
    token: AuthToken,
    public_url: String,
    host: String,
    measure_from: Instant,
    measure_until: Instant,
    nonce: u64,
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let public_url =
        args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.addr)).trim_end_matches('/').to_string();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_until = measure_from + Duration::from_secs_f64(args.seconds);
    let shared = Arc::new(Shared {
        token: AuthToken::new(args.token.clone()),
        host: args.addr.to_string(),
        public_url,
        measure_from,
        measure_until,
        nonce: rand::random::<u32>() as u64,
        args: args.clone(),
    });
    let tasks: Vec<_> = (0..args.connections).map(|i| tokio::spawn(caller(shared.clone(), i as u64))).collect();

    // CPU time and memory of the server and of this client, over the measured window only.
    tokio::time::sleep_until(measure_from.into()).await;
    let server_cpu0 = args.pid.and_then(|p| cpu_ticks(&format!("/proc/{p}/stat")));
    let client_cpu0 = cpu_ticks("/proc/self/stat");
    tokio::time::sleep_until(measure_until.into()).await;
    let server_cpu1 = args.pid.and_then(|p| cpu_ticks(&format!("/proc/{p}/stat")));
    let client_cpu1 = cpu_ticks("/proc/self/stat");

    let mut all = Tally::default();
    // Every caller stops at the end of the window, after its request in flight (30 s at most).
    for t in tasks {
        match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), t).await {
            Ok(Ok(t)) => {
                all.latencies.extend(t.latencies);
                all.errors += t.errors;
                all.calls += t.calls;
                if all.first_error.is_none() {
                    all.first_error = t.first_error;
                }
            }
            _ => all.error("a caller did not stop".into()),
        }
    }
    let mut lat = all.latencies;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[i]) / 1000.0
    };
    let turns = lat.len() as f64;
    let rate = turns / args.seconds;
    let label = args.label.clone().unwrap_or_else(|| format!("{:?}", args.target).to_lowercase());
    let mut line = format!(
        "target={label} connections={} turns_per_s={rate:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.1} errors={} calls={}",
        args.connections,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        all.errors,
        all.calls
    );
    let tick_us = 1e6 / clock_ticks_per_second();
    if let (Some(a), Some(b)) = (server_cpu0, server_cpu1) {
        let cpu_us = (b - a) as f64 * tick_us;
        line += &format!(
            " server_cpu={:.2} server_cpu_us_per_turn={:.0}",
            cpu_us / 1e6 / args.seconds,
            cpu_us / turns.max(1.0)
        );
    }
    if let (Some(a), Some(b)) = (client_cpu0, client_cpu1) {
        line += &format!(" client_cpu={:.2}", (b - a) as f64 * tick_us / 1e6 / args.seconds);
    }
    if let Some(pid) = args.pid {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for key in ["VmRSS", "VmHWM"] {
                let kb = status
                    .lines()
                    .find_map(|l| l.strip_prefix(key).and_then(|r| r.trim_start_matches(':').split_whitespace().next()))
                    .unwrap_or("?");
                line += &format!(" {}_kb={kb}", key.to_lowercase());
            }
        }
    }
    println!("{line}");
    if let Some(e) = all.first_error {
        eprintln!("{label}: first error: {e}");
    }
    Ok(())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture tokio runs on.
    100.0
}

/// A keep-alive connection: reconnects after an error.
struct Conn {
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn sender(&mut self, addr: SocketAddr) -> Result<&mut http1::SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let s = self.sender.as_mut().expect("connected");
        s.ready().await.map_err(|e| format!("connection: {e}"))?;
        Ok(s)
    }

    /// A signed form post; the body of a 2xx answer.
    async fn post(&mut self, sh: &Shared, url: &str, params: &[(&str, &str)]) -> Result<String, String> {
        let Some(path) = url.strip_prefix(sh.public_url.as_str()) else {
            return Err(format!("{url} is not under {}", sh.public_url));
        };
        let sig = signature::sign(&sh.token, url, params);
        let body = serde_urlencoded::to_string(params).map_err(|e| e.to_string())?;
        let req = Request::post(path)
            .header(header::HOST, &sh.host)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(SIGNATURE_HEADER, sig)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self.sender(sh.args.addr).await?.send_request(req).await.map_err(|e| format!("request: {e}"))?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            if status.is_success() { Ok(body) } else { Err(format!("{path}: {status}: {body}")) }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("{path}: no answer in {REQUEST_TIMEOUT:?}"))
            }
        }
    }
}

/// One virtual caller on one connection: whole calls, one after the other, until the window
/// closes.
async fn caller(sh: Arc<Shared>, id: u64) -> Tally {
    let mut tally = Tally::default();
    let mut conn = Conn { sender: None };
    let mut n: u64 = 0;
    while Instant::now() < sh.measure_until {
        n += 1;
        let sid = format!("CA{:016x}{:08x}{:08x}", sh.nonce, id, n);
        let from = phone_of(((id * 7919 + n * 104_729) as usize) % sh.args.patients.max(1));
        if let Err(e) = call(&sh, &mut conn, &sid, &from, &mut tally).await {
            tally.error(e);
            // Do not spin on a failing server.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

/// One call; every request answered inside the window is counted.
async fn call(sh: &Shared, conn: &mut Conn, sid: &str, from: &str, tally: &mut Tally) -> Result<(), String> {
    let base = [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("CallSid", sid),
        ("From", from),
        ("To", "+81300000000"),
        ("Direction", "inbound"),
        ("CallStatus", "in-progress"),
        ("ApiVersion", "2010-04-01"),
    ];
    let mut url = format!("{}/twilio/voice", sh.public_url);
    let mut digits: Option<String> = None;
    // One request more than there are keys (the first answers the call), so a plain index.
    #[allow(clippy::needless_range_loop)]
    for turn in 0..=KEYS.len() {
        let mut params: Vec<(&str, &str)> = base.to_vec();
        if let Some(d) = &digits {
            params.push(("Digits", d));
        }
        let t0 = Instant::now();
        let doc = conn.post(sh, &url, &params).await?;
        let done = Instant::now();
        if t0 >= sh.measure_from && done <= sh.measure_until {
            tally.latencies.push((done - t0).as_micros().min(u32::MAX as u128) as u32);
        }
        if done > sh.measure_until {
            return Ok(());
        }
        if turn == KEYS.len() {
            break;
        }
        match sh.args.target {
            Target::Floor => {
                url = format!("{}/twilio/voice/step?call={sid}&seq={}", sh.public_url, turn + 1);
                digits = Some(KEYS[turn].trim_end_matches('#').to_string());
            }
            Target::Ivr => {
                let verbs = ivr::twiml::parse(&doc).map_err(|e| format!("turn {turn}: TwiML: {e}"))?;
                match phone::listen(&verbs).next {
                    Next::Gather { gather, .. } => {
                        digits = Some(phone::press(&gather, KEYS[turn]));
                        url = gather.action;
                    }
                    other => return Err(format!("turn {turn}: expected a question, the call went {other:?}: {doc}")),
                }
            }
        }
    }
    tally.calls += 1;
    Ok(())
}

/// One line of `run` output, as `key=value` pairs.
type Line = std::collections::BTreeMap<String, String>;

fn report(file: &std::path::Path, floors: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(file)?;
    let lines: Vec<Line> = text
        .lines()
        .filter(|l| l.starts_with("target="))
        .map(|l| l.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
        .collect();
    let floors: Vec<(&str, &str)> = floors.iter().filter_map(|f| f.split_once('=')).collect();
    let num = |l: &Line, k: &str| l.get(k).and_then(|v| v.parse::<f64>().ok());
    let median = |mut v: Vec<f64>| -> Option<f64> {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        Some(if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 })
    };
    let fmt = |x: Option<f64>, digits: usize| x.map_or("n/a".to_string(), |x| format!("{x:.digits$}"));
    // Targets and connection counts in the order first seen.
    let mut keys: Vec<(String, String)> = Vec::new();
    for l in &lines {
        let k = (l["target"].clone(), l["connections"].clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let rounds = lines.iter().filter_map(|l| l.get("round")).collect::<std::collections::BTreeSet<_>>().len();
    let mut header =
        "| target | connections | turns/s | p50 ms | p99 ms | errors | server CPU µs/turn | VmRSS / VmHWM MB |"
            .to_string();
    let mut rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |".to_string();
    for (name, _) in &floors {
        header += &format!(" ÷ {name} |");
        rule += " ---: |";
    }
    println!("{header}\n{rule}");
    for (target, conns) in &keys {
        let runs: Vec<&Line> = lines.iter().filter(|l| &l["target"] == target && &l["connections"] == conns).collect();
        let col = |k: &str| median(runs.iter().filter_map(|l| num(l, k)).collect());
        let max = |k: &str| {
            runs.iter().filter_map(|l| num(l, k)).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        let errors = runs.iter().filter_map(|l| num(l, "errors")).fold(0.0, |a, b| a + b);
        let failed = runs.iter().filter(|l| l.contains_key("failed")).count();
        if failed == runs.len() {
            println!("| {target} | {conns} | did not run | | | | | |{}", " |".repeat(floors.len()));
            continue;
        }
        let mut row = format!(
            "| {target} | {conns} | {} | {} | {} | {errors}{} | {} | {} / {} |",
            fmt(col("turns_per_s"), 0),
            fmt(col("p50_ms"), 1),
            fmt(col("p99_ms"), 1),
            if failed > 0 { format!(" ({failed} run(s) failed)") } else { String::new() },
            fmt(col("server_cpu_us_per_turn"), 0),
            fmt(max("vmrss_kb").map(|k| k / 1024.0), 1),
            fmt(max("vmhwm_kb").map(|k| k / 1024.0), 1),
        );
        for (_, floor) in &floors {
            // Per round: this target over the floor measured next to it; then the median.
            let ratios = runs
                .iter()
                .filter_map(|l| {
                    let f = lines.iter().find(|f| {
                        f["target"] == *floor && f["connections"] == *conns && f.get("round") == l.get("round")
                    })?;
                    Some(num(l, "turns_per_s")? / num(f, "turns_per_s")?)
                })
                .collect();
            row += &format!(" {} |", fmt(median(ratios), 2));
        }
        println!("{row}");
    }
    println!("\n{rounds} round(s); medians over rounds (ratios: per round, then the median); memory: the largest.");
    Ok(())
}
