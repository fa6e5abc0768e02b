//! Settings: defaults that need no file, then `ivr.toml` (or `--config FILE`), then
//! `IVR_SECTION__KEY` environment variables (`IVR_DATABASE__URL=postgres://…`).
//! Secrets are [`SecretString`]s: they never appear in `Debug` output or logs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::scheduler::DialPolicy;
use crate::scheduler::hours::{BlockedDay, CallingHours, DailySpan, DayTime, HoursError, OpeningHours, Slot};
use serde::Deserialize;

/// Every setting of `ivr serve` and the commands that share its database.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: Server,
    pub database: Database,
    pub carrier: crate::carrier::CarrierSettings,
    pub flows: Flows,
    pub issuer: Issuer,
    pub outbox: crate::notify::outbox::OutboxSettings,
    pub scheduler: Scheduler,
    pub api: Api,
    /// SMTP, for patients who get their number by e-mail.
    pub email: Option<crate::notify::email::EmailSettings>,
    pub centre: Centre,
    /// How long the personal data of calls is kept.
    pub retention: crate::scheduler::upkeep::Retention,
    /// The staff pages under `/ui/`: sessions.
    pub staff: Staff,
    /// Who is told of urgent follow-up items, and when it escalates.
    pub alerts: Alerts,
    /// The patients' web self-report.
    pub web: Web,
}

/// The `[web]` settings: the patients' web self-report (`/r/{token}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Web {
    /// Send each patient a personal link when their care period begins (on the daily plan and
    /// on `ivr patients import`). Off: links go only when staff send them.
    pub send_links: bool,
}

/// The `[alerts]` settings: the on-duty contact lists urgent items are sent to, in order.
#[derive(Debug, Clone, Deserialize)]
pub struct Alerts {
    /// `[[alerts.on_duty]]` tables, in the order notices escalate through them. Not in the
    /// defaults (an array there would be merged).
    #[serde(default)]
    pub on_duty: Vec<OnDuty>,
    /// A duration like `15m`: an urgent item nobody claimed this long after its last notice
    /// goes to the next list on duty.
    pub escalate_after: String,
}

/// One `[[alerts.on_duty]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDuty {
    pub name: String,
    /// Mobile numbers (E.164 or domestic) told by SMS.
    #[serde(default)]
    pub sms: Vec<String>,
    /// Addresses told by e-mail (needs `[email]`).
    #[serde(default)]
    pub email: Vec<String>,
    /// An `https://` URL (or `http://127.0.0.1…`) the notice is posted to as JSON `{"text": …}`.
    #[serde(default)]
    pub webhook: Option<String>,
    /// `HH:MM-HH:MM` in the health centre's zone; none: on duty at every hour.
    #[serde(default)]
    pub hours: Option<String>,
    /// The days the list is on duty: weekdays (`mon`), dates and ranges, as
    /// `scheduler.blocked_days`; none: every day.
    #[serde(default)]
    pub days: Vec<String>,
}

/// The staff pages' sessions.
#[derive(Debug, Clone, Deserialize)]
pub struct Staff {
    /// A duration like `30m`: a session unused this long ends (the staff member signs in again).
    pub session_idle: String,
    /// A duration like `12h`: a session ends this long after sign-in, however busy.
    pub session_lifetime: String,
}

/// The health centre itself, as patients hear of it.
#[derive(Debug, Clone, Deserialize)]
pub struct Centre {
    /// The number patients call back, said in calls (`{health_center.phone}`) and left on
    /// answering machines.
    pub phone: String,
    /// The number a caller who asks for a person (the flow's `[transfer]` key) is put through
    /// to; `centre.phone` when not set.
    #[serde(default)]
    pub transfer_to: Option<String>,
    /// When someone answers that number, `HH:MM-HH:MM` in the health centre's zone.
    pub hours: String,
    /// Days nobody answers: weekdays (`sat`), dates and ranges, as `scheduler.blocked_days`.
    /// Not in the defaults (a list there would be merged): `None` means Saturday and Sunday;
    /// `[]` open every day. From the environment, one string separated by commas.
    #[serde(default, deserialize_with = "some_list_or_commas")]
    pub closed_days: Option<Vec<String>>,
}

/// The centre's closed days when `centre.closed_days` is not set.
pub const DEFAULT_CLOSED_DAYS: [&str; 2] = ["sat", "sun"];

/// The shipped `centre.phone`: fine with the simulator, refused with a real carrier.
pub const PLACEHOLDER_PHONE: &str = "03-1234-5678";

#[derive(Debug, Clone, Deserialize)]
pub struct Api {
    /// Verification attempts one API client may make per minute.
    pub verify_per_minute: u32,
    /// Numbers one API client may issue per minute.
    pub issue_per_minute: u32,
    /// Numbers the API may issue for one patient per hour, whichever client asks.
    pub issue_per_patient_per_hour: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Scheduler {
    /// The health centre's time zone: calling hours, days and expiry times are in it.
    pub timezone: String,
    /// Named call slots in local time, `name = "HH:MM-HH:MM"`. Not in the defaults (a table
    /// there would be merged with the file's, not replaced): `None` means [`DEFAULT_SLOTS`].
    #[serde(default)]
    pub slots: Option<BTreeMap<String, String>>,
    /// `HH:MM-HH:MM`, may cross midnight: no call is ever placed in it.
    pub quiet_hours: String,
    /// `YYYY-MM-DD`, `YYYY-MM-DD..YYYY-MM-DD` or `sun`..`sat`; a list, or (from the
    /// environment) one string separated by commas.
    #[serde(default, deserialize_with = "list_or_commas")]
    pub blocked_days: Vec<String>,
    /// Area name → the most patients of that area called per day.
    #[serde(default)]
    pub area_capacity: BTreeMap<String, u32>,
    pub calls_per_second: f64,
    pub max_concurrent_calls: u32,
    /// A duration like `30m`.
    pub retry_after: String,
    pub max_attempts: u32,
    /// A duration like `45s`, at most 600s (Twilio's limit).
    pub ring_timeout: String,
    pub machine_detection: bool,
    /// A duration like `20m`: the last resort for an attempt without a call id that the carrier
    /// could not be asked about for this long: it counts as lost (never dialled again for the
    /// same attempt). Also the longest a call goes unreconciled.
    pub call_lease: String,
    /// A duration like `1m`: a call with no news (no status callback, no answer from a lookup)
    /// for this long is looked up at the carrier, and freed if it ended. At most `call_lease`.
    pub call_check_after: String,
    /// `HH:MM`: when the server plans the day by itself.
    pub plan_at: String,
    /// The day's check-ins, `HH:MM` local time in order (`["09:00", "15:00"]`): each has its own
    /// calls, from its time to the next one's. `None`: one, at `00:00` (the whole day).
    #[serde(default, deserialize_with = "some_list_or_commas")]
    pub checks: Option<Vec<String>>,
    /// A duration like `60m`: how long a patient with a personal link has, from a check-in's
    /// web request, to report on the web before the call.
    pub web_grace: String,
    /// Whether the server plans and dials daily by itself.
    pub autostart: bool,
}

/// The slots used when `scheduler.slots` is not set.
pub const DEFAULT_SLOTS: [(&str, &str); 2] = [("morning", "09:00-11:00"), ("afternoon", "14:00-16:00")];

/// [`list_or_commas`], for a setting whose absence means its own default.
fn some_list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    list_or_commas(d).map(Some)
}

/// A list of strings, or one string whose items are separated by commas (an environment
/// variable cannot hold a list).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCommas {
        List(Vec<String>),
        Commas(String),
    }
    Ok(match ListOrCommas::deserialize(d)? {
        ListOrCommas::List(l) => l,
        ListOrCommas::Commas(s) => s.split(',').map(str::trim).filter(|i| !i.is_empty()).map(String::from).collect(),
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issuer {
    /// Digits of a processing number (the contact app takes exactly 8).
    pub digits: usize,
    /// How long a number stays valid, e.g. `24h`, `90m`.
    pub valid_for: String,
    /// The secret that keys the stored hashes and seals numbers awaiting delivery. Keep it
    /// stable: numbers issued under another key cannot be verified.
    pub key: Option<SecretString>,
    /// A link for apps that take the number from a link, e.g. `https://app.example/?pn={number}`.
    pub link: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL the carrier calls, e.g. `https://ivr.example.jp`: webhook signatures are
    /// computed over it. Defaults to `http://` + `listen`.
    pub public_url: Option<String>,
    /// Rebuild the public URL from `X-Forwarded-Proto` / `X-Forwarded-Host` (only behind a
    /// proxy you trust to set them).
    pub trust_forwarded_headers: bool,
    /// Largest webhook body accepted, in bytes.
    pub body_limit: usize,
    /// A duration like `10s`: a connection that has not sent a whole request head (request line
    /// and headers) for this long is closed; so is a keep-alive connection idle for as long.
    pub header_read_timeout: String,
    /// A duration like `30s`: a request whose whole body has not arrived this long after its
    /// head is answered with an error and its connection closed.
    pub body_read_timeout: String,
    /// Open client connections at most (also kept below the process's file limit); further
    /// ones wait in the listen backlog until one closes.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Database {
    /// `sqlite://ivr.db` (one instance) or `postgres://user@host/db` (several instances).
    pub url: SecretString,
    /// SQLite durability: `normal` (safe against a process crash, the default with WAL) or
    /// `full` (also against power loss).
    pub sqlite_synchronous: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Flows {
    pub dir: PathBuf,
    pub prompts_dir: PathBuf,
    /// The flow an inbound call from a known patient runs.
    pub inbound: String,
}

/// A setting that cannot be used, with the key that names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// A key in the settings file, or an `IVR_…` variable, that no setting has.
    #[error("{source_name}: unknown {what} {name}{}", suggestion(.nearest))]
    Unknown { source_name: String, what: &'static str, name: String, nearest: Option<String> },
}

fn suggestion(nearest: &Option<String>) -> String {
    nearest.as_ref().map(|n| format!(" (did you mean {n}?)")).unwrap_or_default()
}

/// Every key a settings file may hold, `section.key`. A key ending in `.*` is a table whose
/// entries are named by the operator (`scheduler.slots.morning`). docs/configuration.md has one
/// table row per key (a test keeps the two in step).
pub const KNOWN_KEYS: &[&str] = &[
    "server.listen",
    "server.public_url",
    "server.trust_forwarded_headers",
    "server.body_limit",
    "server.header_read_timeout",
    "server.body_read_timeout",
    "server.max_connections",
    "database.url",
    "database.sqlite_synchronous",
    "carrier.kind",
    "carrier.account_sid",
    "carrier.auth_token",
    "carrier.from",
    "carrier.api_base",
    "carrier.simulator_speed",
    "carrier.simulator_log",
    "issuer.digits",
    "issuer.valid_for",
    "issuer.key",
    "issuer.link",
    "scheduler.timezone",
    "scheduler.slots.*",
    "scheduler.quiet_hours",
    "scheduler.blocked_days",
    "scheduler.area_capacity.*",
    "scheduler.calls_per_second",
    "scheduler.max_concurrent_calls",
    "scheduler.retry_after",
    "scheduler.max_attempts",
    "scheduler.ring_timeout",
    "scheduler.machine_detection",
    "scheduler.call_lease",
    "scheduler.call_check_after",
    "scheduler.plan_at",
    "scheduler.checks",
    "scheduler.web_grace",
    "scheduler.autostart",
    "api.verify_per_minute",
    "api.issue_per_minute",
    "api.issue_per_patient_per_hour",
    "outbox.max_attempts",
    "outbox.retry_base_secs",
    "outbox.retry_max_secs",
    "outbox.lease_secs",
    "email.host",
    "email.port",
    "email.from",
    "email.username",
    "email.password",
    "email.tls",
    "flows.dir",
    "flows.prompts_dir",
    "flows.inbound",
    "centre.phone",
    "retention.calls_after_care_days",
    "retention.staff_audit_days",
    "retention.urgent_notices_days",
    "staff.session_idle",
    "staff.session_lifetime",
    "centre.transfer_to",
    "centre.hours",
    "centre.closed_days",
    "alerts.on_duty",
    "alerts.escalate_after",
    "web.send_links",
];

/// `IVR_…` variables the program reads that are not settings: the log format, and knobs of
/// the test suite (`IVR_TEST_…`, `IVR_BULK_NUMBERS`).
const OTHER_VARIABLES: &[&str] = &["log_format", "bulk_numbers"];

/// Whether `key` (`section.key`, or `section.table.entry`) names a setting.
fn is_known(key: &str) -> bool {
    KNOWN_KEYS.iter().any(|k| match k.strip_suffix(".*") {
        Some(table) => key.strip_prefix(table).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')),
        None => *k == key,
    })
}

/// The known key closest to `key` by edit distance, if it is close enough to be a slip.
fn nearest_key(key: &str) -> Option<String> {
    let (best, distance) = KNOWN_KEYS
        .iter()
        .map(|k| match k.strip_suffix(".*") {
            // A table entry is compared with the same entry under the table.
            Some(table) => {
                let entry: Vec<&str> = key.split('.').skip(table.split('.').count()).collect();
                if entry.is_empty() { table.to_string() } else { format!("{table}.{}", entry.join(".")) }
            }
            None => k.to_string(),
        })
        .map(|k| {
            let d = edit_distance(key, &k);
            (k, d)
        })
        .min_by_key(|(_, d)| *d)?;
    (distance <= 3.max(key.chars().count() / 4)).then_some(best)
}

/// An e-mail address as staff lists hold them: `local@domain.tld`, no spaces, no angle
/// brackets or commas (one address, not a header).
fn is_email_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    let plain = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || "<>,;\"@()[]".contains(c));
    plain(local) && plain(domain) && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Every leaf key of a TOML table, dotted. A table under a table key (`scheduler.slots`) is one
/// leaf per entry. An empty section that settings live in (`[issuer]` with every key commented
/// out, as in the packaged file) holds no key; an empty one of another name is a leaf.
fn toml_keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) if !t.is_empty() => toml_keys(&key, t, out),
            toml::Value::Table(_) if KNOWN_KEYS.iter().any(|known| known.starts_with(&format!("{key}."))) => {}
            _ => out.push(key),
        }
    }
}

/// Refuses a key of the settings file that no setting has.
fn check_file_keys(name: &str, text: &str) -> Result<(), ConfigError> {
    // Syntax errors are reported by the loader, with their position.
    let Ok(table) = text.parse::<toml::Table>() else { return Ok(()) };
    let mut keys = Vec::new();
    toml_keys("", &table, &mut keys);
    match keys.into_iter().find(|k| !is_known(k)) {
        Some(key) => Err(ConfigError::Unknown {
            source_name: name.to_string(),
            what: "key",
            nearest: nearest_key(&key),
            name: key,
        }),
        None => Ok(()),
    }
}

/// Refuses an `IVR_…` variable that names no setting (a misspelt key, or one underscore where
/// two separate the section from the key).
fn check_variables<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), ConfigError> {
    let mut names: Vec<&str> = vars.into_iter().map(|(k, _)| k).collect();
    names.sort();
    for var in names {
        let lower = var.to_lowercase();
        let Some(rest) = lower.strip_prefix("ivr_") else { continue };
        if OTHER_VARIABLES.contains(&rest) || rest.starts_with("test_") {
            continue;
        }
        let key = rest.replace("__", ".");
        let table = KNOWN_KEYS.iter().any(|k| k.strip_suffix(".*").is_some_and(|t| key.starts_with(t)));
        if is_known(&key) && !table {
            continue;
        }
        let nearest = nearest_key(&key).filter(|k| KNOWN_KEYS.contains(&k.as_str()));
        return Err(ConfigError::Unknown {
            source_name: "environment".into(),
            what: "variable",
            name: var.to_string(),
            nearest: nearest.map(|k| format!("IVR_{}", k.replace('.', "__").to_uppercase())),
        });
    }
    Ok(())
}

const DEFAULTS: &str = r#"
[server]
listen = "127.0.0.1:8080"
trust_forwarded_headers = false
body_limit = 65536
header_read_timeout = "10s"
body_read_timeout = "30s"
max_connections = 1024

[database]
url = "sqlite://ivr.db"
sqlite_synchronous = "normal"

[carrier]
api_base = "https://api.twilio.com"
simulator_speed = 1.0

[issuer]
digits = 8
valid_for = "24h"

[scheduler]
timezone = "Asia/Tokyo"
quiet_hours = "20:00-09:00"
calls_per_second = 1.0
max_concurrent_calls = 10
retry_after = "30m"
max_attempts = 3
ring_timeout = "45s"
call_lease = "20m"
call_check_after = "1m"
machine_detection = true
plan_at = "08:00"
autostart = true
web_grace = "60m"

[api]
verify_per_minute = 60
issue_per_minute = 20
issue_per_patient_per_hour = 3

[outbox]
max_attempts = 5
retry_base_secs = 30
retry_max_secs = 1800
lease_secs = 60

[centre]
phone = "03-1234-5678"
hours = "08:30-17:15"

[retention]
calls_after_care_days = 90
staff_audit_days = 1825
urgent_notices_days = 365

[alerts]
escalate_after = "15m"

[staff]
session_idle = "30m"
session_lifetime = "12h"

[web]
send_links = false

[flows]
dir = "call-flows"
prompts_dir = "prompts"
inbound = "daily-health-check"
"#;

impl Settings {
    /// Loads settings: defaults, then `file` (`ivr.toml` if present when `None`), then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_with_env(file, None)
    }

    /// [`Settings::load`] with the environment variables given (`None`: the process's).
    fn load_with_env(file: Option<&Path>, env: Option<config::Map<String, String>>) -> Result<Settings, ConfigError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        b = match file {
            Some(f) => b.add_source(config::File::from(f).required(true)),
            None => b.add_source(config::File::with_name("ivr.toml").required(false)),
        };
        let file_name = file.unwrap_or(Path::new("ivr.toml"));
        if file_name.extension().is_some_and(|e| e == "toml") {
            if let Ok(text) = std::fs::read_to_string(file_name) {
                check_file_keys(&file_name.display().to_string(), &text)?;
            }
        }
        match &env {
            Some(vars) => check_variables(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))?,
            None => {
                let vars: Vec<(String, String)> = std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
                    .collect();
                check_variables(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))?
            }
        }
        b = b.add_source(config::Environment::with_prefix("IVR").prefix_separator("_").separator("__").source(env));
        let built = b.build()?;
        // Checked here, where the key can be named; the field's own parse would not say which.
        if let Ok(sid) = built.get_string("carrier.account_sid") {
            if let Err(e) = crate::types::AccountSid::parse(&sid) {
                let message = format!("'{sid}' is not {}", e.expected());
                return Err(ConfigError::Invalid { key: "carrier.account_sid", message });
            }
        }
        let s: Settings = built.try_deserialize()?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                key: "database.url",
                message: "must start with sqlite:, postgres:// or postgresql://".into(),
            });
        }
        if !matches!(self.database.sqlite_synchronous.as_str(), "normal" | "full") {
            return Err(ConfigError::Invalid {
                key: "database.sqlite_synchronous",
                message: "must be normal or full".into(),
            });
        }
        if let Some(u) = &self.server.public_url {
            if url::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                return Err(ConfigError::Invalid {
                    key: "server.public_url",
                    message: format!("'{u}' is not an http(s) URL"),
                });
            }
        }
        for (key, value) in [
            ("server.header_read_timeout", &self.server.header_read_timeout),
            ("server.body_read_timeout", &self.server.body_read_timeout),
        ] {
            if parse_duration(value).is_none() {
                return Err(ConfigError::Invalid { key, message: format!("'{value}' is not a duration like 10s") });
            }
        }
        for (key, value) in
            [("staff.session_idle", &self.staff.session_idle), ("staff.session_lifetime", &self.staff.session_lifetime)]
        {
            if parse_duration(value).is_none() {
                return Err(ConfigError::Invalid { key, message: format!("'{value}' is not a duration like 30m") });
            }
        }
        if self.server.max_connections == 0 {
            return Err(ConfigError::Invalid { key: "server.max_connections", message: "must be at least 1".into() });
        }
        if !(self.carrier.simulator_speed.is_finite() && self.carrier.simulator_speed >= 0.0) {
            return Err(ConfigError::Invalid {
                key: "carrier.simulator_speed",
                message: "must be a number, 0 or more (0: no delays)".into(),
            });
        }
        if self.scheduler.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::Invalid {
                key: "scheduler.timezone",
                message: format!("'{}' is not a time zone like Asia/Tokyo", self.scheduler.timezone),
            });
        }
        self.validate_scheduler()?;
        if !(4..=16).contains(&self.issuer.digits) {
            return Err(ConfigError::Invalid { key: "issuer.digits", message: "must be from 4 to 16".into() });
        }
        if parse_duration(&self.issuer.valid_for).is_none() {
            return Err(ConfigError::Invalid {
                key: "issuer.valid_for",
                message: format!("'{}' is not a duration like 24h, 90m or 3600s", self.issuer.valid_for),
            });
        }
        if let Some(l) = &self.issuer.link {
            if !l.contains("{number}") {
                return Err(ConfigError::Invalid { key: "issuer.link", message: "must contain {number}".into() });
            }
        }
        if self.carrier_kind() == "twilio" && self.issuer.key.is_none() {
            return Err(ConfigError::Invalid {
                key: "issuer.key",
                message: "a secret is needed with a real carrier (numbers are stored as hashes keyed with it)".into(),
            });
        }
        if self.carrier_kind() == "twilio" && self.carrier.from.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::Invalid {
                key: "carrier.from",
                message: "twilio needs the caller id (E.164) calls and SMS come from".into(),
            });
        }
        let phone = crate::types::E164::parse(&self.centre.phone).ok();
        if phone.is_none() {
            return Err(ConfigError::Invalid {
                key: "centre.phone",
                message: format!("'{}' is not a phone number like 03-1234-5678", self.centre.phone),
            });
        }
        if self.carrier_kind() == "twilio" && phone == crate::types::E164::parse(PLACEHOLDER_PHONE).ok() {
            return Err(ConfigError::Invalid {
                key: "centre.phone",
                message: format!(
                    "{PLACEHOLDER_PHONE} is the shipped placeholder: set the number patients call back (IVR_CENTRE__PHONE)"
                ),
            });
        }
        self.validate_transfer()?;
        self.try_duty()?;
        match self.carrier_kind() {
            "twilio" if self.carrier.account_sid.is_none() || self.carrier.auth_token.is_none() => {
                Err(ConfigError::Invalid {
                    key: "carrier.kind",
                    message: "twilio needs carrier.account_sid and carrier.auth_token".into(),
                })
            }
            "twilio" | "simulator" => Ok(()),
            other => Err(ConfigError::Invalid {
                key: "carrier.kind",
                message: format!("'{other}' is not twilio or simulator"),
            }),
        }
    }

    /// `centre.transfer_to` (a phone number, not the placeholder with a real carrier),
    /// `centre.hours` and `centre.closed_days`.
    fn validate_transfer(&self) -> Result<(), ConfigError> {
        if let Some(to) = &self.centre.transfer_to {
            let phone = crate::types::E164::parse(to).map_err(|_| ConfigError::Invalid {
                key: "centre.transfer_to",
                message: format!("'{to}' is not a phone number like 03-1234-5678"),
            })?;
            if self.carrier_kind() == "twilio" && crate::types::E164::parse(PLACEHOLDER_PHONE).ok() == Some(phone) {
                return Err(ConfigError::Invalid {
                    key: "centre.transfer_to",
                    message: format!(
                        "{PLACEHOLDER_PHONE} is the shipped placeholder: set the number callers are put through to (IVR_CENTRE__TRANSFER_TO)"
                    ),
                });
            }
        }
        self.try_opening_hours().map(|_| ())
    }

    fn try_opening_hours(&self) -> Result<OpeningHours, ConfigError> {
        let span = DailySpan::parse(&self.centre.hours)
            .map_err(|e| ConfigError::Invalid { key: "centre.hours", message: e.to_string() })?;
        let closed = match &self.centre.closed_days {
            Some(days) => days.iter().map(String::as_str).map(BlockedDay::parse).collect::<Result<Vec<_>, _>>(),
            None => DEFAULT_CLOSED_DAYS.iter().copied().map(BlockedDay::parse).collect(),
        }
        .map_err(|e| ConfigError::Invalid { key: "centre.closed_days", message: e.to_string() })?;
        let tz = self.scheduler.timezone.parse().map_err(|_| ConfigError::Invalid {
            key: "scheduler.timezone",
            message: format!("'{}' is not a time zone like Asia/Tokyo", self.scheduler.timezone),
        })?;
        Ok(OpeningHours { tz, span, closed })
    }

    /// The `[alerts]` settings, each part checked and named by its key: names present and
    /// distinct, mobile numbers, e-mail addresses (and `[email]` set when one is given), hours,
    /// days, and `escalate_after`.
    fn try_duty(&self) -> Result<crate::scheduler::urgent::Duty, ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid { key, message };
        let escalate_after =
            parse_duration(&self.alerts.escalate_after).filter(|d| *d > chrono::Duration::zero()).ok_or_else(|| {
                invalid("alerts.escalate_after", format!("'{}' is not a duration like 15m", self.alerts.escalate_after))
            })?;
        let tz: chrono_tz::Tz = self.scheduler.timezone.parse().map_err(|_| {
            invalid("scheduler.timezone", format!("'{}' is not a time zone like Asia/Tokyo", self.scheduler.timezone))
        })?;
        let mut lists: Vec<crate::scheduler::urgent::DutyList> = Vec::new();
        for (i, l) in self.alerts.on_duty.iter().enumerate() {
            let at = |m: String| invalid("alerts.on_duty", format!("list {} ({}): {m}", i + 1, l.name));
            if l.name.trim().is_empty() {
                return Err(invalid("alerts.on_duty", format!("list {} has no name", i + 1)));
            }
            if lists.iter().any(|o| o.name == l.name) {
                return Err(at("a second list of this name".into()));
            }
            if l.sms.is_empty() && l.email.is_empty() && l.webhook.is_none() {
                return Err(at("no sms number, email address or webhook: nobody would be told".into()));
            }
            if let Some(w) = &l.webhook {
                let ok = url::Url::parse(w).is_ok_and(|u| {
                    u.scheme() == "https" || (u.scheme() == "http" && u.host_str() == Some("127.0.0.1"))
                });
                if !ok {
                    return Err(at(format!("webhook '{w}' is not an https:// URL (http:// only to 127.0.0.1)")));
                }
            }
            let mut sms = Vec::new();
            for n in &l.sms {
                let phone = crate::types::E164::parse(n)
                    .map_err(|_| at(format!("sms '{n}' is not a phone number like 090-1234-5678")))?;
                if !phone.is_mobile() {
                    return Err(at(format!("sms '{n}' is not a mobile number (070, 080, 090): it cannot take SMS")));
                }
                sms.push(phone);
            }
            for a in &l.email {
                if !is_email_address(a) {
                    return Err(at(format!("email '{a}' is not an address like nurse@example.jp")));
                }
            }
            if !l.email.is_empty() && self.email.is_none() {
                return Err(at("email addresses need the [email] settings (SMTP)".into()));
            }
            let hours = match &l.hours {
                Some(h) => Some(DailySpan::parse(h).map_err(|e| at(format!("hours: {e}")))?),
                None => None,
            };
            let days = l.days.iter().map(|d| BlockedDay::parse(d)).collect::<Result<Vec<_>, _>>();
            let days = days.map_err(|e| at(format!("days: {e}")))?;
            lists.push(crate::scheduler::urgent::DutyList {
                name: l.name.clone(),
                sms,
                email: l.email.clone(),
                webhook: l.webhook.clone(),
                hours,
                days,
            });
        }
        Ok(crate::scheduler::urgent::Duty { tz, lists, escalate_after })
    }

    /// Who is told of urgent follow-up items, and when it escalates.
    pub fn duty(&self) -> crate::scheduler::urgent::Duty {
        self.try_duty().expect("validated at load")
    }

    /// When the centre answers the phone a caller asks to be put through to.
    pub fn opening_hours(&self) -> OpeningHours {
        self.try_opening_hours().expect("validated at load")
    }

    /// What sends the patients' personal links: `server.public_url` (or the listen address),
    /// the issuer's key, the health centre's time zone.
    pub fn link_sender(&self) -> crate::notify::links::LinkSender {
        let issuer = self.issuer();
        let public_url = match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.server.listen),
        };
        crate::notify::links::LinkSender { public_url, key: std::sync::Arc::new(issuer.key), tz: issuer.tz }
    }

    /// The number a caller who asks for a person is put through to (E.164).
    pub fn transfer_to(&self) -> crate::types::E164 {
        let number = self.centre.transfer_to.as_deref().unwrap_or(&self.centre.phone);
        crate::types::E164::parse(number).expect("validated at load")
    }

    fn validate_scheduler(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        self.try_calling_hours()?;
        let s = &self.scheduler;
        if !(s.calls_per_second.is_finite() && s.calls_per_second > 0.0) {
            return invalid("scheduler.calls_per_second", format!("{} must be a number above 0", s.calls_per_second));
        }
        if s.max_concurrent_calls == 0 {
            return invalid("scheduler.max_concurrent_calls", "must be at least 1".into());
        }
        if s.max_attempts == 0 {
            return invalid("scheduler.max_attempts", "must be at least 1".into());
        }
        if parse_duration(&s.retry_after).is_none() {
            return invalid("scheduler.retry_after", format!("'{}' is not a duration like 30m", s.retry_after));
        }
        match parse_duration(&s.ring_timeout) {
            None => {
                return invalid("scheduler.ring_timeout", format!("'{}' is not a duration like 45s", s.ring_timeout));
            }
            Some(d) if d > chrono::Duration::seconds(600) => {
                return invalid("scheduler.ring_timeout", "must be at most 600s (Twilio's limit)".into());
            }
            Some(_) => {}
        }
        if parse_duration(&s.call_lease).is_none() {
            return invalid("scheduler.call_lease", format!("'{}' is not a duration like 20m", s.call_lease));
        }
        if parse_duration(&s.call_check_after).is_none() {
            return invalid(
                "scheduler.call_check_after",
                format!("'{}' is not a duration like 1m", s.call_check_after),
            );
        }
        if parse_duration(&s.web_grace).is_none_or(|d| d < chrono::Duration::zero()) {
            return invalid("scheduler.web_grace", format!("'{}' is not a duration like 60m", s.web_grace));
        }
        if DayTime::parse(&s.plan_at).map_or(true, |t| t == DayTime::END_OF_DAY) {
            return invalid("scheduler.plan_at", format!("'{}' is not a time of day like 08:00", s.plan_at));
        }
        if let Some((area, _)) = s.area_capacity.iter().find(|(a, _)| a.trim().is_empty()) {
            return invalid("scheduler.area_capacity", format!("'{area}' is not an area name"));
        }
        Ok(())
    }

    /// The calling hours, each part checked and named by its key.
    fn try_calling_hours(&self) -> Result<CallingHours, ConfigError> {
        let s = &self.scheduler;
        let invalid = |key| move |e: HoursError| ConfigError::Invalid { key, message: e.to_string() };
        let slot = |(name, span): (&str, &str)| {
            Slot::parse(name, span)
                .map_err(|e| ConfigError::Invalid { key: "scheduler.slots", message: format!("slot {name}: {e}") })
        };
        let slots = match &s.slots {
            Some(t) => t.iter().map(|(n, span)| slot((n, span))).collect::<Result<Vec<_>, _>>()?,
            None => DEFAULT_SLOTS.into_iter().map(slot).collect::<Result<Vec<_>, _>>()?,
        };
        let quiet = match s.quiet_hours.trim() {
            "none" => None,
            q => Some(DailySpan::parse(q).map_err(invalid("scheduler.quiet_hours"))?),
        };
        let blocked = s.blocked_days.iter().map(|d| BlockedDay::parse(d)).collect::<Result<Vec<_>, _>>();
        let blocked = blocked.map_err(invalid("scheduler.blocked_days"))?;
        let tz = s.timezone.parse().map_err(|_| ConfigError::Invalid {
            key: "scheduler.timezone",
            message: format!("'{}' is not a time zone like Asia/Tokyo", s.timezone),
        })?;
        let hours = CallingHours::new(tz, slots, quiet, blocked).map_err(|e| {
            let key = if e == HoursError::NoSlots { "scheduler.slots" } else { "scheduler.quiet_hours" };
            ConfigError::Invalid { key, message: e.to_string() }
        })?;
        let checks = match &s.checks {
            None => return Ok(hours),
            Some(c) => c.iter().map(|t| DayTime::parse(t)).collect::<Result<Vec<_>, _>>(),
        };
        let checks = checks.map_err(invalid("scheduler.checks"))?;
        hours.with_checks(checks).map_err(invalid("scheduler.checks"))
    }

    /// Slots, quiet hours and blocked days in the health centre's zone.
    pub fn calling_hours(&self) -> CallingHours {
        self.try_calling_hours().expect("validated at load")
    }

    /// How long a client may take to send a request head.
    pub fn server_header_read_timeout(&self) -> std::time::Duration {
        parse_duration(&self.server.header_read_timeout).expect("validated at load").to_std().unwrap_or_default()
    }

    /// How long a client may take to send a request body.
    pub fn server_body_read_timeout(&self) -> std::time::Duration {
        parse_duration(&self.server.body_read_timeout).expect("validated at load").to_std().unwrap_or_default()
    }

    /// How long a staff session lasts: unused, and at most.
    pub fn session_rules(&self) -> crate::staff::SessionRules {
        crate::staff::SessionRules {
            idle: parse_duration(&self.staff.session_idle).expect("validated at load"),
            lifetime: parse_duration(&self.staff.session_lifetime).expect("validated at load"),
        }
    }

    /// Rates, retries and ringing for the dialer.
    pub fn dial_policy(&self) -> DialPolicy {
        let s = &self.scheduler;
        DialPolicy {
            calls_per_second: s.calls_per_second,
            max_concurrent_calls: s.max_concurrent_calls,
            retry_after: parse_duration(&s.retry_after).expect("validated at load"),
            max_attempts: s.max_attempts,
            ring_timeout: parse_duration(&s.ring_timeout).expect("validated at load"),
            machine_detection: s.machine_detection,
            call_lease: parse_duration(&s.call_lease).expect("validated at load"),
            call_check_after: parse_duration(&s.call_check_after).expect("validated at load"),
        }
    }

    /// Area name → the most patients of that area called per day.
    pub fn area_capacity(&self) -> HashMap<String, u32> {
        self.scheduler.area_capacity.iter().map(|(a, n)| (a.clone(), *n)).collect()
    }

    /// How long a patient with a personal link has to report on the web before the call.
    pub fn web_grace(&self) -> chrono::Duration {
        parse_duration(&self.scheduler.web_grace).expect("validated at load")
    }

    /// When the server plans the day by itself (local time).
    pub fn plan_at(&self) -> DayTime {
        DayTime::parse(&self.scheduler.plan_at).expect("validated at load")
    }

    /// `twilio` when credentials are set and no kind is given, else `simulator`.
    pub fn carrier_kind(&self) -> &str {
        match &self.carrier.kind {
            Some(k) => k,
            None if self.carrier.account_sid.is_some() && self.carrier.auth_token.is_some() => "twilio",
            None => "simulator",
        }
    }

    pub fn timezone(&self) -> chrono_tz::Tz {
        self.scheduler.timezone.parse().expect("validated at load")
    }

    /// The issuer as configured. Without `issuer.key` (allowed only with the simulator) a
    /// fixed development key is used, and a warning says so.
    pub fn issuer(&self) -> crate::issuer::Issuer {
        let key = match &self.issuer.key {
            Some(k) => crate::issuer::IssuerKey::new(k.expose_secret()),
            None => {
                tracing::warn!(
                    "no issuer.key: processing numbers are hashed with a development key; set one in production"
                );
                crate::issuer::IssuerKey::new("ivr development key (not for production)")
            }
        };
        crate::issuer::Issuer {
            key,
            digits: self.issuer.digits,
            valid_for: self.valid_for(),
            link: self.issuer.link.clone(),
            tz: self.timezone(),
        }
    }

    /// How long a processing number stays valid.
    pub fn valid_for(&self) -> chrono::Duration {
        parse_duration(&self.issuer.valid_for).expect("validated at load")
    }

    /// The base of the URLs the carrier calls, without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = self.server.public_url.clone().unwrap_or_else(|| format!("http://{}", self.server.listen));
        url.trim_end_matches('/').to_string()
    }
}

/// `24h`, `90m`, `3600s`, `1d` → a duration.
pub fn parse_duration(s: &str) -> Option<chrono::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = s[..split].parse().ok().filter(|n| *n > 0)?;
    Some(match &s[split..] {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("24h"), Some(chrono::Duration::hours(24)));
        assert_eq!(parse_duration("90m"), Some(chrono::Duration::minutes(90)));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("24"), None);
        assert_eq!(parse_duration("1 hour"), None);
    }

    use super::*;

    #[test]
    fn defaults_need_no_file_and_secrets_never_print() {
        let s = Settings::load(Some(Path::new("/dev/null"))).unwrap_or_else(|_| Settings::load(None).unwrap());
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url.expose_secret(), "sqlite://ivr.db");
        assert_eq!(s.carrier_kind(), "simulator");
        assert_eq!((s.carrier.simulator_speed, s.carrier.simulator_log.as_deref()), (1.0, None));
        assert_eq!(s.public_url(), "http://127.0.0.1:8080");
        let mut with_secret = s.clone();
        with_secret.carrier.auth_token = Some(SecretString::from("s3cret-token"));
        assert!(!format!("{with_secret:?}").contains("s3cret"));
    }

    /// Settings from a file's text and some environment variables (and nothing of the process's).
    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ivr.toml");
        std::fs::write(&file, toml).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load_with_env(Some(&file), Some(env))
    }

    fn invalid_key(toml: &str, env: &[(&str, &str)]) -> (&'static str, String) {
        match load(toml, env) {
            Err(ConfigError::Invalid { key, message }) => (key, message),
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn scheduler_defaults_call_mornings_and_afternoons_outside_quiet_hours() {
        let s = load("", &[]).unwrap();
        let hours = s.calling_hours();
        assert_eq!(hours.slot_names(), ["morning", "afternoon"]);
        assert_eq!(hours.checks(), [DayTime::MIDNIGHT], "one check-in, the whole day");
        let day = chrono::NaiveDate::from_ymd_opt(2025, 6, 2).unwrap();
        let (start, end) = hours.slot_window(day, None).unwrap();
        assert_eq!(
            (start.to_rfc3339(), end.to_rfc3339()),
            ("2025-06-02T00:00:00+00:00".into(), "2025-06-02T02:00:00+00:00".into())
        );
        assert!(!hours.is_blocked(day));
        assert_eq!(
            s.dial_policy(),
            DialPolicy {
                calls_per_second: 1.0,
                max_concurrent_calls: 10,
                retry_after: chrono::Duration::minutes(30),
                max_attempts: 3,
                ring_timeout: chrono::Duration::seconds(45),
                machine_detection: true,
                call_lease: chrono::Duration::minutes(20),
                call_check_after: chrono::Duration::minutes(1),
            }
        );
        assert!(s.area_capacity().is_empty());
        assert_eq!(s.plan_at().to_string(), "08:00");
        assert!(s.scheduler.autostart);
    }

    #[test]
    fn slots_in_a_file_replace_the_default_slots_and_area_names_keep_their_case() {
        let s = load(
            r#"
            [scheduler]
            slots = { evening = "17:00-19:00", noon = "12:00-13:00" }
            blocked_days = ["2025-12-29..2026-01-03", "sun"]
            checks = ["09:00", "16:30"]
            area_capacity = { "Kita-ku" = 300, "南区" = 200 }
            "#,
            &[],
        )
        .unwrap();
        let hours = s.calling_hours();
        assert_eq!(hours.slot_names(), ["noon", "evening"]);
        assert_eq!(hours.checks().iter().map(ToString::to_string).collect::<Vec<_>>(), ["09:00", "16:30"]);
        assert!(hours.is_blocked(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()));
        assert!(hours.is_blocked(chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()));
        assert_eq!(s.area_capacity(), HashMap::from([("Kita-ku".into(), 300), ("南区".into(), 200)]));
    }

    #[test]
    fn scalar_scheduler_keys_are_overridden_by_the_environment() {
        let env = [
            ("IVR_SCHEDULER__QUIET_HOURS", "21:00-08:00"),
            ("IVR_SCHEDULER__BLOCKED_DAYS", "2025-06-02, sat"),
            ("IVR_SCHEDULER__CALLS_PER_SECOND", "2.5"),
            ("IVR_SCHEDULER__MAX_CONCURRENT_CALLS", "4"),
            ("IVR_SCHEDULER__RETRY_AFTER", "1h"),
            ("IVR_SCHEDULER__MAX_ATTEMPTS", "5"),
            ("IVR_SCHEDULER__RING_TIMEOUT", "600s"),
            ("IVR_SCHEDULER__MACHINE_DETECTION", "false"),
            ("IVR_SCHEDULER__PLAN_AT", "7:30"),
            ("IVR_SCHEDULER__AUTOSTART", "no"),
        ];
        let s = load("[scheduler]\nblocked_days = [\"sun\"]\n", &env).unwrap();
        let p = s.dial_policy();
        assert_eq!((p.calls_per_second, p.max_concurrent_calls, p.max_attempts), (2.5, 4, 5));
        assert_eq!((p.retry_after, p.ring_timeout), (chrono::Duration::hours(1), chrono::Duration::seconds(600)));
        assert!(!p.machine_detection && !s.scheduler.autostart);
        assert_eq!(s.plan_at().to_string(), "07:30");
        assert_eq!(s.scheduler.blocked_days, ["2025-06-02", "sat"]);
        // 08:30 is no longer in the quiet hours.
        let hours = s.calling_hours();
        let at = "2025-06-02T23:30:00Z".parse().unwrap();
        assert_eq!(hours.next_allowed_time(chrono::NaiveDate::from_ymd_opt(2025, 6, 3).unwrap(), at), Some(at));
        assert!(hours.is_blocked(chrono::NaiveDate::from_ymd_opt(2025, 6, 7).unwrap()));
        assert!(!hours.is_blocked(chrono::NaiveDate::from_ymd_opt(2025, 6, 8).unwrap()));
    }

    #[test]
    fn a_bad_scheduler_value_is_refused_with_its_key() {
        // (file, environment, the key named, part of the message)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 15] = [
            (
                "[scheduler]\nslots = { morning = \"9-11\" }",
                &[],
                "scheduler.slots",
                "slot morning: '9' is not a time of day",
            ),
            ("[scheduler]\nslots = { night = \"22:00-02:00\" }", &[], "scheduler.slots", "cannot cross midnight"),
            ("[scheduler]\nslots = {}", &[], "scheduler.slots", "at least one slot"),
            ("", &[("IVR_SCHEDULER__QUIET_HOURS", "10:00-10:30")], "scheduler.quiet_hours", "split slot"),
            ("", &[("IVR_SCHEDULER__QUIET_HOURS", "08:00-12:00")], "scheduler.quiet_hours", "morning lies entirely"),
            ("", &[("IVR_SCHEDULER__BLOCKED_DAYS", "sunday")], "scheduler.blocked_days", "'sunday' is not"),
            ("", &[("IVR_SCHEDULER__CALLS_PER_SECOND", "0")], "scheduler.calls_per_second", "above 0"),
            ("", &[("IVR_SCHEDULER__MAX_CONCURRENT_CALLS", "0")], "scheduler.max_concurrent_calls", "at least 1"),
            ("", &[("IVR_SCHEDULER__RETRY_AFTER", "soon")], "scheduler.retry_after", "'soon' is not a duration"),
            ("", &[("IVR_SCHEDULER__RING_TIMEOUT", "11m")], "scheduler.ring_timeout", "at most 600s"),
            ("", &[("IVR_SCHEDULER__PLAN_AT", "24:00")], "scheduler.plan_at", "'24:00' is not a time"),
            ("", &[("IVR_SCHEDULER__MAX_ATTEMPTS", "0")], "scheduler.max_attempts", "at least 1"),
            ("[scheduler]\nchecks = [\"15:00\", \"09:00\"]", &[], "scheduler.checks", "'09:00' is not after"),
            ("", &[("IVR_SCHEDULER__CHECKS", "9h")], "scheduler.checks", "'9h' is not a time of day"),
            ("[scheduler]\nchecks = []", &[], "scheduler.checks", "at least one check-in"),
        ];
        for (toml, env, key, message) in cases {
            let (k, m) = invalid_key(toml, env);
            assert_eq!(k, key, "{toml} {env:?}: {m}");
            assert!(m.contains(message), "{key}: {m}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_nearest_known_one() {
        let err = load("[scheduler]\ncall_per_second = 2\n", &[]).unwrap_err().to_string();
        assert!(
            err.ends_with("ivr.toml: unknown key scheduler.call_per_second (did you mean scheduler.calls_per_second?)"),
            "{err}"
        );
        let err = load("[server]\nlistne = \"127.0.0.1:9000\"\n", &[]).unwrap_err().to_string();
        assert!(err.ends_with("unknown key server.listne (did you mean server.listen?)"), "{err}");
        let err = load("[scheduler]\nrate = 2\n", &[]).unwrap_err().to_string();
        assert!(err.ends_with("unknown key scheduler.rate"), "{err}");
        let err = load("[sheduler.slots]\nmorning = \"09:00-10:00\"\n", &[]).unwrap_err().to_string();
        assert!(err.ends_with("unknown key sheduler.slots.morning (did you mean scheduler.slots.morning?)"), "{err}");
        // Table entries are the operator's names.
        load("[scheduler.slots]\nnoon = \"12:00-13:00\"\n[scheduler.area_capacity]\n", &[]).unwrap();
        // A section whose keys are all commented out is empty, not unknown; a misspelt one is.
        load("[issuer]\n#key = \"x\"\n[api]\n", &[]).unwrap();
        let err = load("[isuer]\n", &[]).unwrap_err().to_string();
        assert!(err.ends_with("unknown key isuer"), "{err}");
    }

    #[test]
    fn an_unknown_variable_is_refused_with_the_nearest_known_one() {
        let cases = [
            ("IVR_SERVER_LISTEN", "unknown variable IVR_SERVER_LISTEN (did you mean IVR_SERVER__LISTEN?)"),
            ("IVR_SCHEDULER__CALL_PER_SECOND", "(did you mean IVR_SCHEDULER__CALLS_PER_SECOND?)"),
            ("ivr_database__ulr", "unknown variable ivr_database__ulr (did you mean IVR_DATABASE__URL?)"),
            ("IVR_SCHEDULER__SLOTS__MORNING", "unknown variable IVR_SCHEDULER__SLOTS__MORNING"),
            ("IVR_WHATEVER", "unknown variable IVR_WHATEVER"),
        ];
        for (var, message) in cases {
            let err = load("", &[(var, "1")]).unwrap_err().to_string();
            assert!(err.starts_with("environment: ") && err.ends_with(message), "{var}: {err}");
        }
        // Read by the program, not settings.
        load("", &[("IVR_LOG_FORMAT", "json"), ("IVR_TEST_PG_URL", "x"), ("IVR_BULK_NUMBERS", "9")]).unwrap();
        load("", &[("IVR_SERVER__LISTEN", "127.0.0.1:9000"), ("PATH", "/bin"), ("IVRX", "1")]).unwrap();
    }

    #[test]
    fn the_complete_example_in_the_configuration_guide_loads() {
        let doc = include_str!("../docs/configuration.md");
        let start = doc.find("## 12. A complete `ivr.toml`").unwrap();
        let block = &doc[start..];
        let block = &block[block.find("```toml\n").unwrap() + 8..];
        let block = &block[..block.find("```").unwrap()];
        load(block, &[]).unwrap();
    }

    #[test]
    fn on_duty_lists_are_checked_at_start_and_named_by_their_place() {
        let list = |body: &str| format!("[[alerts.on_duty]]\nname = \"日勤\"\n{body}\n");
        let s = load(&list("sms = [\"090-1234-5678\"]\nhours = \"08:30-17:15\"\ndays = [\"mon\"]"), &[]).unwrap();
        let duty = s.duty();
        assert_eq!(duty.lists[0].sms[0].as_str(), "+819012345678");
        assert_eq!(duty.escalate_after, chrono::Duration::minutes(15), "the default");
        assert!(load("", &[]).unwrap().duty().lists.is_empty(), "no list by default");
        for (body, key, says) in [
            ("sms = [\"03-1234-5678\"]", "alerts.on_duty", "list 1 (日勤): sms '03-1234-5678' is not a mobile number"),
            ("sms = [\"123\"]", "alerts.on_duty", "is not a phone number"),
            ("email = [\"hoken\"]", "alerts.on_duty", "email 'hoken' is not an address"),
            ("email = [\"a@b.jp\"]", "alerts.on_duty", "need the [email] settings"),
            ("", "alerts.on_duty", "nobody would be told"),
            ("sms = [\"090-1234-5678\"]\nhours = \"9-17\"", "alerts.on_duty", "hours:"),
            ("sms = [\"090-1234-5678\"]\ndays = [\"weekdays\"]", "alerts.on_duty", "days:"),
        ] {
            match load(&list(body), &[]) {
                Err(ConfigError::Invalid { key: k, message }) => {
                    assert_eq!(k, key, "{body}");
                    assert!(message.contains(says), "{body}: {message}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let webhook = load(&list("webhook = \"https://chat.example.jp/hooks/x\""), &[]).unwrap();
        assert_eq!(webhook.duty().lists[0].webhook.as_deref(), Some("https://chat.example.jp/hooks/x"));
        assert!(load(&list("webhook = \"http://127.0.0.1:9/x\""), &[]).is_ok(), "plain http to this host");
        for w in ["http://chat.example.jp/x", "ftp://x.jp", "chat"] {
            let (key, message) = invalid_key(&list(&format!("webhook = \"{w}\"")), &[]);
            assert_eq!(key, "alerts.on_duty");
            assert!(message.contains("is not an https:// URL"), "{message}");
        }
        let unknown = load(&list("sms = [\"090-1234-5678\"]\nphone = \"x\""), &[]).unwrap_err();
        assert!(unknown.to_string().contains("phone"), "{unknown}");
        let err = load("", &[("IVR_ALERTS__ESCALATE_AFTER", "later")]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "alerts.escalate_after", .. }), "{err}");
    }

    #[test]
    fn every_known_key_has_a_row_in_the_configuration_guide() {
        let doc = include_str!("../docs/configuration.md");
        let mut documented = Vec::new();
        let mut section = None;
        for line in doc.lines() {
            if line.starts_with("## ") || line.starts_with("### ") {
                section = line.split_once("`[").and_then(|(_, s)| s.split_once("]`")).map(|(s, _)| s.to_string());
            } else if let (Some(section), Some(row)) = (&section, line.strip_prefix("| `")) {
                let (key, rest) = row.split_once('`').unwrap();
                let table = rest.trim_start_matches(" |").trim_start().starts_with("table");
                documented.push(format!("{section}.{key}{}", if table { ".*" } else { "" }));
            }
        }
        let known: Vec<String> = KNOWN_KEYS.iter().map(|k| k.to_string()).collect();
        documented.sort();
        let mut sorted = known.clone();
        sorted.sort();
        assert_eq!(documented, sorted);
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("体温", "体温"), 0);
    }

    #[test]
    fn the_transfer_number_and_the_centre_hours_are_checked() {
        let twilio = [
            ("IVR_CARRIER__ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("IVR_CARRIER__AUTH_TOKEN", "secret"),
            ("IVR_CARRIER__FROM", "+815012345678"),
            ("IVR_ISSUER__KEY", "k"),
            ("IVR_CENTRE__PHONE", "03-5321-0000"),
        ];
        let s = load("", &[]).unwrap();
        assert_eq!(s.transfer_to().as_str(), "+81312345678", "centre.phone when not set");
        assert_eq!(s.opening_hours().span.to_string(), "08:30-17:15");
        assert_eq!(s.opening_hours().closed.len(), 2);
        let s = load("[centre]\ntransfer_to = \"03-5321-1111\"\nhours = \"09:00-17:00\"\nclosed_days = [\"sun\", \"2026-12-31\"]\n", &[]).unwrap();
        assert_eq!(s.transfer_to().as_str(), "+81353211111");
        assert_eq!(s.opening_hours().closed.len(), 2);
        assert_eq!(invalid_key("[centre]\ntransfer_to = \"call us\"\n", &[]).0, "centre.transfer_to");
        assert_eq!(invalid_key("[centre]\ntransfer_to = \"03-1234-5678\"\n", &twilio).0, "centre.transfer_to");
        assert_eq!(invalid_key("[centre]\nhours = \"9-17\"\n", &[]).0, "centre.hours");
        assert_eq!(invalid_key("[centre]\nclosed_days = [\"weekend\"]\n", &[]).0, "centre.closed_days");
        let s = load("", &[("IVR_CENTRE__CLOSED_DAYS", "sun,2026-12-31")]).unwrap();
        assert_eq!(s.centre.closed_days.as_deref(), Some(&["sun".to_string(), "2026-12-31".to_string()][..]));
        assert!(load("[centre]\nclosed_days = []\n", &[]).unwrap().opening_hours().closed.is_empty());
    }

    #[test]
    fn the_placeholder_centre_phone_is_refused_with_a_real_carrier_only() {
        let twilio = [
            ("IVR_CARRIER__ACCOUNT_SID", "AC1"),
            ("IVR_CARRIER__AUTH_TOKEN", "token"),
            ("IVR_CARRIER__FROM", "+815000000000"),
            ("IVR_ISSUER__KEY", "key"),
        ];
        assert_eq!(load("", &[]).unwrap().centre.phone, PLACEHOLDER_PHONE);
        assert_eq!(invalid_key("", &twilio).0, "centre.phone");
        let s = load("[centre]\nphone = \"03-5321-0000\"\n", &twilio).unwrap();
        assert_eq!(s.centre.phone, "03-5321-0000");
        assert_eq!(invalid_key("", &[("IVR_CENTRE__PHONE", "call us")]).0, "centre.phone");
    }

    #[test]
    fn an_account_sid_that_is_not_a_carrier_id_is_refused_by_name() {
        let (key, message) = invalid_key("[carrier]\naccount_sid = \"AC 123/x\"\n", &[]);
        assert_eq!(key, "carrier.account_sid");
        assert!(message.contains("an account id"), "{message}");
        assert_eq!(invalid_key("", &[("IVR_CARRIER__ACCOUNT_SID", "A")]).0, "carrier.account_sid");
        let sid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let s = load(&format!("[carrier]\naccount_sid = \"{sid}\"\n"), &[]).unwrap();
        assert_eq!(s.carrier.account_sid.unwrap(), sid);
    }
}
