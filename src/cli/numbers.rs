//! `ivr numbers issue|verify` and `ivr tokens add|list|revoke`: the health centre's manual path,
//! through the same issuer and store as the call, and the API's bearer tokens.

use std::path::Path;

use chrono::Utc;
use secrecy::ExposeSecret;

use super::{NumbersCommand, TokensCommand};
use crate::config::Settings;
use crate::flow::Library;
use crate::issuer::numbers::{self, SendBy};
use crate::store::{Revoke, Store, StoreError, Verdict};
use crate::types::{SCOPES_EXPECTED, Scopes};

pub(super) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub(super) async fn open(config: Option<&Path>) -> Result<(Settings, Store)> {
    let settings = Settings::load(config)?;
    let store =
        Store::open(settings.database.url.expose_secret(), settings.database.sqlite_synchronous == "full").await?;
    store.migrate().await?;
    Ok((settings, store))
}

pub async fn numbers(cmd: &NumbersCommand) -> Result<()> {
    match cmd {
        NumbersCommand::Issue { patient, send, staff, config } => {
            let (settings, store) = open(config.as_deref()).await?;
            let issuer = settings.issuer();
            let p = store.patients().get(patient).await?.ok_or_else(|| format!("no patient {patient}"))?;
            let (lib, _) =
                Library::load_dirs(&settings.flows.dir, &settings.flows.prompts_dir).map_err(|d| d.to_string())?;
            let catalog = lib.catalogs.get(&p.language).or_else(|| lib.catalogs.values().next()).cloned();
            let m = numbers::issue_by_staff(
                &store,
                &issuer,
                catalog.as_deref(),
                patient,
                *send,
                staff.as_str(),
                Utc::now(),
            )
            .await?;
            let digits = m.number.expose();
            println!(
                "processing number for {patient}: {} {}",
                &digits[..digits.len() / 2],
                &digits[digits.len() / 2..]
            );
            println!("valid until {} ({})", m.expires_local.replace('T', " "), issuer.tz);
            match send {
                SendBy::None => println!("nothing is sent: tell the patient this number"),
                SendBy::Sms => println!("queued for delivery by SMS; `ivr serve` sends it"),
                SendBy::Email => println!("queued for delivery by e-mail; `ivr serve` sends it"),
            }
            Ok(())
        }
        NumbersCommand::Verify { number, consume, config } => {
            let (settings, store) = open(config.as_deref()).await?;
            let who = std::env::var("USER").unwrap_or_else(|_| "staff".into());
            let verdict = numbers::verify(&store, &settings.issuer(), number, &who, *consume, Utc::now()).await?;
            match verdict {
                Verdict::Valid { patient_id, issued_at, .. } => {
                    let issued = issued_at.with_timezone(&settings.timezone()).format("%Y-%m-%d %H:%M");
                    let used = if *consume { " (now used)" } else { "" };
                    println!("valid{used}: issued {issued} for patient {patient_id}");
                    Ok(())
                }
                other => Err(format!("not valid: {}", other.reason()).into()),
            }
        }
    }
}

/// What `ivr tokens add` says when no scope is given.
const NO_SCOPE: &str = "a token needs at least one scope: --scope verify for the contact app's server, \
     --scope staff for staff tools (issue, import, read, followup), or any of verify, issue, import, read, followup";

pub async fn tokens(cmd: &TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Add { name, scopes, config } => {
            if scopes.is_empty() {
                return Err(NO_SCOPE.into());
            }
            let scopes = Scopes::parse(&scopes.join(",")).map_err(|_| format!("--scope: {SCOPES_EXPECTED}"))?;
            let name = name.trim();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err("a token's name must be a non-empty printable name".into());
            }
            let (_, store) = open(config.as_deref()).await?;
            use rand::Rng;
            let bytes: [u8; 24] = rand::rng().random();
            let token = format!("ivr_{}", hex::encode(bytes));
            match store.numbers().add_token(name, &crate::http::api::token_hash(&token), scopes).await {
                Err(StoreError::Duplicate(what)) => Err(format!("{what} already exists; choose another name").into()),
                Err(e) => Err(e.into()),
                Ok(()) => {
                    println!("{token}");
                    eprintln!(
                        "token '{name}' created with scope(s) {scopes}; it is shown only this once (the database keeps a hash)"
                    );
                    Ok(())
                }
            }
        }
        TokensCommand::List { config } => {
            let (settings, store) = open(config.as_deref()).await?;
            let tokens = store.numbers().tokens().await?;
            if tokens.is_empty() {
                eprintln!("no API tokens yet; make one with `ivr tokens add NAME --scope …`");
                return Ok(());
            }
            let tz = settings.timezone();
            let time = |t: Option<chrono::DateTime<Utc>>| {
                t.map_or_else(|| "-".to_string(), |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            };
            let rows: Vec<[String; 5]> = tokens
                .iter()
                .map(|t| {
                    [
                        t.name.clone(),
                        t.scopes.to_string(),
                        time(Some(t.created_at)),
                        time(t.last_used_at),
                        time(t.revoked_at),
                    ]
                })
                .collect();
            let header = ["NAME", "SCOPES", "CREATED", "LAST USED", "REVOKED"].map(String::from);
            let widths: Vec<usize> =
                (0..5).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
            for row in [&header].into_iter().chain(&rows) {
                let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = w)).collect();
                println!("{}", cells.join("  ").trim_end());
            }
            eprintln!("times in {tz}");
            Ok(())
        }
        TokensCommand::Revoke { name, config } => {
            let (_, store) = open(config.as_deref()).await?;
            match store.numbers().revoke_token(name, Utc::now()).await? {
                Revoke::Revoked => {
                    println!("token '{name}' revoked: the API refuses it from now on");
                    Ok(())
                }
                Revoke::AlreadyRevoked => {
                    println!("token '{name}' was already revoked");
                    Ok(())
                }
                Revoke::Unknown => Err(format!("no token '{name}' (`ivr tokens list` shows them)").into()),
            }
        }
    }
}
