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
        b = b.add_source(
            config::Environment::with_prefix("IVR").prefix_separator("_").separator("__").try_parsing(true),
        );
        let s: Settings = b.build()?.try_deserialize()?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                key: "database.url",
                message: "must start with sqlite:// or postgres://".into(),
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

    /// The base of the URLs the carrier calls, without a trailing slash.
    pub fn public_url(&self) -> String {
        let url = self.server.public_url.clone().unwrap_or_else(|| format!("http://{}", self.server.listen));
        url.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file_and_secrets_never_print() {
        let s = Settings::load(Some(Path::new("/dev/null"))).unwrap_or_else(|_| Settings::load(None).unwrap());
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url.expose_secret(), "sqlite://ivr.db");
        assert_eq!(s.carrier_kind(), "simulator");
        assert_eq!(s.public_url(), "http://127.0.0.1:8080");
        let mut with_secret = s.clone();
        with_secret.carrier.auth_token = Some(SecretString::from("s3cret-token"));
        assert!(!format!("{with_secret:?}").contains("s3cret"));
    }
}
