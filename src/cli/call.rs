//! `ivr call FLOW`: walks a flow as a phone would. Every turn goes through the same path as a
//! real call: engine → response → TwiML text → TwiML parsed back → what the caller hears.
//! Actions run as a dry run: numbers are made up, nothing is sent.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use rand::Rng;

use super::FlowDirs;
use crate::calls::Desk;
use crate::carrier::signature::AuthToken;
use crate::carrier::webhook::{CallInfo, Ending, WebhookClient, new_call_sid, play_call};
use crate::flow::driver::{Actions, Outcome, run_turn};
use crate::flow::{CallState, Effect, Flow, Input, Library, TRANSFER_CLOSED, Value, Vars};
use crate::scheduler::hours::DailySpan;
use crate::twiml;
use crate::twiml::phone::{self, Heard, Next};
use crate::types::{E164, LineKind};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The flow's name (its file name without .toml).
    pub flow: String,
    /// The call's language.
    #[arg(long, default_value = "ja-JP")]
    pub lang: String,
    /// Keys for each question in turn, e.g. 0412,365#,1; an empty entry or "-" is silence.
    /// Without it, keys are read from the terminal (an empty line is silence).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub digits: Option<Vec<String>>,
    /// A variable of the call, e.g. --var patient.number_issued=true.
    #[arg(long = "var", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// The patient's phone number (a mobile gets SMS, a landline hears the number).
    #[arg(long, default_value = "+819012345678")]
    pub from: String,
    /// Call a running server instead (e.g. http://127.0.0.1:8080): signed webhooks, real
    /// TwiML, real effects. The patient is the one with the --from number in its roster.
    #[arg(long)]
    pub url: Option<String>,
    /// Settings to read the time zone and the centre's phone number from (default: ivr.toml
    /// if present, and IVR_ variables).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// How the health centre answers a caller who asks for a person (the flow's [transfer]
    /// key): completed (someone answers), no-answer, busy, failed, or closed (outside its
    /// hours). Default: closed outside centre.hours, else someone answers.
    #[arg(long, value_parser = ["completed", "no-answer", "busy", "failed", "closed"])]
    pub centre: Option<String>,
    /// The auth token the server checks webhook signatures with.
    #[arg(long, env = "IVR_CARRIER__AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    #[command(flatten)]
    pub dirs: FlowDirs,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("'{s}' is not name=value"))
}

/// The sample patient a dry run calls; `--var` and `--from` override it.
pub fn sample_patient(from: &str) -> Vars {
    let mut vars = Vars::new();
    for (k, v) in [
        ("patient.id", "P0001"),
        ("patient.name", "山田 花子"),
        ("patient.birth_md", "0412"),
        ("patient.number_issued", "false"),
        ("patient.number_to_read", "false"),
    ] {
        vars.insert(k.into(), Value::parse_literal(v));
    }
    vars.insert("patient.phone".into(), Value::text(from));
    let kind = E164::parse(from).map_or(LineKind::Landline, |n| n.kind());
    vars.insert("patient.phone_kind".into(), Value::text(kind.as_str()));
    vars
}

/// Dry-run actions: records what would happen, makes up a processing number whose expiry is
/// told in the health centre's zone.
pub struct DryRun {
    pub log: Vec<String>,
    pub tz: chrono_tz::Tz,
    /// The centre's desk, for a caller who asks for a person.
    pub desk: Desk,
    /// `--centre`: how the centre answers (`None`: by its hours now, then someone answers).
    pub centre: Option<String>,
}

impl Actions for DryRun {
    type Error = std::convert::Infallible;

    fn perform(&mut self, effect: &Effect, call: &CallState, _waited: bool) -> Result<Option<Outcome>, Self::Error> {
        let outcome = match effect {
            Effect::IssueProcessingNumber => {
                let number = format!("{:08}", rand::rng().random_range(0..100_000_000u32));
                let expires = (chrono::Utc::now() + chrono::Duration::hours(24)).with_timezone(&self.tz);
                let expires = expires.format("%Y-%m-%dT%H:%M").to_string();
                let mobile = call.vars.get("patient.phone_kind").is_some_and(|k| k.to_string() == "mobile");
                let mut o = Outcome::named(if mobile { "sms" } else { "read_aloud" });
                self.log.push(format!(
                    "issue processing number → {} ({} {}, valid until {} {})",
                    o.name,
                    &number[..4],
                    &number[4..],
                    expires.replace('T', " "),
                    self.tz
                ));
                o.vars.insert("processing_number".into(), Value::text(number));
                o.vars.insert("processing_number.expires".into(), Value::text(expires));
                Some(o)
            }
            Effect::SendSms { .. } => {
                self.log.push(effect.describe());
                Some(Outcome::named("queued"))
            }
            Effect::TransferToCentre => {
                let mut open = self.desk.clone();
                // Any --centre but closed: open at any time.
                if self.centre.as_deref().is_some_and(|c| c != TRANSFER_CLOSED) {
                    open.hours.closed.clear();
                    open.hours.span = DailySpan::parse("00:00-24:00").expect("the whole day");
                }
                let o = match self.centre.as_deref() {
                    Some(TRANSFER_CLOSED) => Outcome::named(TRANSFER_CLOSED),
                    _ => open.transfer(chrono::Utc::now()),
                };
                self.log.push(format!("{} → {}", effect.describe(), o.name));
                Some(o)
            }
            _ => {
                self.log.push(effect.describe());
                None
            }
        };
        Ok(outcome)
    }
}

/// Keys for each question: a script, or the terminal.
enum Keys {
    Script(std::vec::IntoIter<String>),
    Terminal,
}

impl Keys {
    fn from_args(args: &Args) -> Keys {
        match &args.digits {
            Some(d) => Keys::Script(d.clone().into_iter()),
            None if std::io::stdin().is_terminal() => {
                println!("(type the keys for each question and press Enter; an empty line is silence, q hangs up)");
                Keys::Terminal
            }
            None => Keys::Script(std::io::stdin().lock().lines().map_while(Result::ok).collect::<Vec<_>>().into_iter()),
        }
    }

    /// `None`: the caller hangs up.
    fn next(&mut self) -> Option<String> {
        match self {
            Keys::Script(it) => it.next().map(|k| if k == "-" { String::new() } else { k }),
            Keys::Terminal => {
                print!("keys> ");
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                match std::io::stdin().lock().read_line(&mut line) {
                    Ok(0) | Err(_) => None,
                    Ok(_) if line.trim() == "q" => None,
                    Ok(_) => Some(line.trim().to_string()),
                }
            }
        }
    }
}

pub fn run(args: &Args) -> i32 {
    if let Some(url) = &args.url {
        return run_remote(args, url);
    }
    let (lib, _) = match Library::load_dirs(&args.dirs.flows, &args.dirs.prompts) {
        Ok(l) => l,
        Err(diags) => {
            eprint!("{diags}");
            return 1;
        }
    };
    let Some(flow) = lib.flow(&args.flow).cloned() else {
        eprintln!(
            "error: no flow named '{}' in {}; flows: {}",
            args.flow,
            args.dirs.flows.display(),
            lib.flows.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return 1;
    };
    let settings = match crate::config::Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let mut vars = sample_patient(&args.from);
    vars.insert("health_center.phone".into(), Value::text(&settings.centre.phone));
    let desk =
        Desk { to: settings.transfer_to(), caller_id: settings.carrier.from.clone(), hours: settings.opening_hours() };
    vars.extend(desk.vars());
    for (k, v) in &args.vars {
        vars.insert(k.clone(), Value::parse_literal(v));
    }
    let keys = Keys::from_args(args);
    let mut line = LocalLine {
        flow: flow.clone(),
        call: CallState::new(&flow, &args.lang, vars),
        actions: DryRun { log: Vec::new(), tz: settings.timezone(), desk, centre: args.centre.clone() },
        seq: 0,
    };
    println!("── {} ({}, version {}) ──", flow.name, line.call.lang, flow.version);
    if let Err(e) = walk(&mut line, keys) {
        eprintln!("error: {e}");
        return 1;
    }
    println!("── call ended ──");
    println!("answers:");
    for (k, v) in line.call.answers() {
        println!("  {k} = {v}");
    }
    println!("effects:");
    for e in &line.actions.log {
        println!("  {e}");
    }
    0
}

/// Prints what the caller hears and, at a question, the keys pressed (`None`: hangs up).
fn caller(keys: &mut Keys, heard: &Heard) -> Option<String> {
    for s in &heard.speech {
        println!("ivr:    {s}");
    }
    if let Next::Dial(dial) = &heard.next {
        println!("        → transferred to {} (rings up to {} s)", national(&dial.number), dial.timeout);
        return None;
    }
    let Next::Gather { gather, .. } = &heard.next else { return None };
    let limit = gather.num_digits.map_or(String::new(), |n| format!("up to {n} key(s), "));
    let finish =
        if gather.finish_on_key.is_empty() { String::new() } else { format!("{} ends, ", gather.finish_on_key) };
    println!("        [{limit}{finish}{} s]", gather.timeout);
    let Some(k) = keys.next() else {
        println!("caller: (hangs up)");
        return None;
    };
    let digits = phone::press(gather, &k);
    println!("caller: {}", if digits.is_empty() { "(silence)".to_string() } else { digits });
    Some(k)
}

/// Plays TwiML documents from `line` until the call ends, answering each gather from `keys`.
fn walk(line: &mut LocalLine, mut keys: Keys) -> Result<(), twiml::ParseError> {
    let mut doc = line.post(None, true);
    loop {
        let heard = phone::listen(&twiml::parse(&doc)?);
        let pressed = caller(&mut keys, &heard);
        doc = match heard.next {
            Next::Gather { gather, after } => {
                let Some(k) = pressed else {
                    line.hang_up();
                    return Ok(());
                };
                let digits = phone::press(&gather, &k);
                if digits.is_empty() && !gather.action_on_empty_result {
                    match phone::listen(&after).next {
                        Next::Redirect(_) => line.post(None, false),
                        _ => return Ok(()),
                    }
                } else {
                    line.post(Some(&digits), false)
                }
            }
            Next::Redirect(_) => line.post(None, false),
            Next::Dial(dial) => {
                let status = line.actions.centre.clone().unwrap_or_else(|| "completed".into());
                let status = if status == TRANSFER_CLOSED { "failed".to_string() } else { status };
                line.actions.log.push(format!("transferred to {} → {status}", national(&dial.number)));
                line.dialled(&status)
            }
            Next::Hangup => return Ok(()),
        };
    }
}

/// A call served in-process: what the webhook server does, without HTTP or a database.
struct LocalLine {
    flow: Arc<Flow>,
    call: CallState,
    actions: DryRun,
    seq: u64,
}

impl LocalLine {
    /// One turn: the first (`start`), or keys (`Some`, possibly empty) / silence (`None`).
    fn post(&mut self, digits: Option<&str>, start: bool) -> String {
        let input = match digits {
            _ if start => Input::Start,
            // A keypad sends only its keys (`phone::press` keeps those): anything else is silence.
            Some(d) if !d.is_empty() => crate::types::Digits::parse(d).map_or(Input::NoInput, Input::Digits),
            _ => Input::NoInput,
        };
        self.turn(input)
    }

    fn turn(&mut self, input: Input) -> String {
        let Ok(turn) = run_turn(&self.flow, &self.call, input, &mut self.actions);
        self.call = turn.state;
        self.seq += 1;
        let action = format!("/twilio/voice/step?call=CALOCAL&seq={}", self.seq);
        twiml::render(&twiml::from_response(&turn.response, &action))
    }

    /// How the call put through to the centre ended (`DialCallStatus`).
    fn dialled(&mut self, status: &str) -> String {
        println!(
            "centre: {}",
            match status {
                "completed" => "(answers; the caller speaks with the health centre)",
                "busy" => "(busy)",
                "no-answer" => "(nobody answers)",
                _ => "(the call could not be put through)",
            }
        );
        self.turn(Input::Outcome { name: status.into(), vars: Vars::new() })
    }

    fn hang_up(&mut self) {
        let Ok(turn) = run_turn(&self.flow, &self.call, Input::Hangup, &mut self.actions);
        self.call = turn.state;
    }
}

/// A number as people write it in Japan: `+81312345678` → `03-1234-5678` (others as given).
fn national(e164: &str) -> String {
    match e164.strip_prefix("+81") {
        Some(rest) if rest.len() == 9 => format!("0{}-{}-{}", &rest[..1], &rest[1..5], &rest[5..]),
        Some(rest) if rest.len() == 10 => format!("0{}-{}-{}", &rest[..2], &rest[2..6], &rest[6..]),
        _ => e164.to_string(),
    }
}

/// `ivr call --url`: the same walk as a phone on a live server.
fn run_remote(args: &Args, url: &str) -> i32 {
    let Some(token) = &args.auth_token else {
        eprintln!("error: --url needs the server's auth token: --auth-token or IVR_CARRIER__AUTH_TOKEN");
        return 2;
    };
    let base = url.trim_end_matches('/');
    let client = WebhookClient::new(AuthToken::new(token.as_str()));
    let info = CallInfo {
        call_sid: new_call_sid(),
        from: args.from.clone(),
        to: "+81000000000".into(),
        direction: "inbound".into(),
    };
    let voice = format!("{base}/twilio/voice?flow={}", args.flow);
    let status = format!("{base}/twilio/status");
    let mut keys = Keys::from_args(args);
    println!("── {} via {base} (call {}) ──", args.flow, info.call_sid);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(play_call(&client, &voice, &status, &info, |h| caller(&mut keys, h))) {
        Ok(Ending::Completed | Ending::CallerHungUp) => {
            println!("── call ended ── (answers and effects are in the server's database)");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
