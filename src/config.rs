//! Settings: defaults that need no file, then `ivr.toml` (or `--config FILE`), then
//! `IVR_SECTION__KEY` environment variables (`IVR_DATABASE__URL=postgres://…`).
//! Secrets are [`SecretString`]s: they never appear in `Debug` output or logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Every setting of `ivr serve` and the commands that share its database.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: Server,
    pub database: Database,
    pub carrier: Carrier,
    pub flows: Flows,
    pub issuer: Issuer,
    pub outbox: Outbox,
    pub scheduler: Scheduler,
    pub api: Api,
    /// SMTP, for patients who get their number by e-mail.
    pub email: Option<crate::notify::email::EmailSettings>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Api {
    /// Verification attempts one API client may make per minute.
    pub verify_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Scheduler {
    /// The health centre's time zone: calling hours, days and expiry times are in it.
    pub timezone: String,
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
pub struct Outbox {
    /// Send attempts before a message is dead-lettered (and the health centre alerted).
    pub max_attempts: u32,
    /// First retry delay in seconds; doubled each attempt, with jitter.
    pub retry_base_secs: u64,
    /// Longest retry delay in seconds.
    pub retry_max_secs: u64,
    /// How long a claimed message is leased to one sender, in seconds.
    pub lease_secs: u64,
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
pub struct Carrier {
    /// `twilio` or `simulator` (the default without Twilio credentials).
    pub kind: Option<String>,
    pub account_sid: Option<String>,
    /// Signs webhooks. Without one, `ivr serve` makes a random token for its built-in simulator.
    pub auth_token: Option<SecretString>,
    /// The caller id for outbound calls and SMS, E.164.
    pub from: Option<String>,
    /// Twilio's REST API base, configurable for tests and compatible providers.
    pub api_base: String,
    /// With the simulator: a file that gets one JSON line per call placed and per SMS
    /// accepted (numbers masked), written before the API answers.
    pub simulator_log: Option<PathBuf>,
    /// With the simulator: how fast simulated time runs. 1.0 rings and answers at a human
    /// pace; 2.0 twice as fast; 0 has no delays at all (tests).
    pub simulator_speed: f64,
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
}

const DEFAULTS: &str = r#"
[server]
listen = "127.0.0.1:8080"
trust_forwarded_headers = false
body_limit = 65536

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

[api]
verify_per_minute = 60

[outbox]
max_attempts = 5
retry_base_secs = 30
retry_max_secs = 1800
lease_secs = 60

[flows]
dir = "call-flows"
prompts_dir = "prompts"
inbound = "daily-health-check"
"#;

impl Settings {
    /// Loads settings: defaults, then `file` (`ivr.toml` if present when `None`), then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        b = match file {
            Some(f) => b.add_source(config::File::from(f).required(true)),
            None => b.add_source(config::File::with_name("ivr.toml").required(false)),
        };
        b = b.add_source(config::Environment::with_prefix("IVR").prefix_separator("_").separator("__"));
        let s: Settings = b.build()?.try_deserialize()?;
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
}
