//! `ivr numbers issue|verify` and `ivr tokens add`: the health centre's manual path, through the
//! same issuer and store as the call.

use std::path::Path;

use chrono::Utc;
use secrecy::ExposeSecret;

use super::{NumbersCommand, TokensCommand};
use crate::config::Settings;
use crate::flow::Library;
use crate::issuer::numbers::{self, SendBy};
use crate::store::{Store, StoreError, Verdict};

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

pub async fn tokens(cmd: &TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Add { name, config } => {
            let (_, store) = open(config.as_deref()).await?;
            use rand::Rng;
            let bytes: [u8; 24] = rand::rng().random();
            let token = format!("ivr_{}", hex::encode(bytes));
            match store.numbers().add_token(name, &crate::http::api::token_hash(&token)).await {
                Err(StoreError::Duplicate(what)) => Err(format!("{what} already exists; choose another name").into()),
                Err(e) => Err(e.into()),
                Ok(()) => {
                    println!("{token}");
                    eprintln!("token '{name}' created; it is shown only this once (the database keeps a hash)");
                    Ok(())
                }
            }
        }
    }
}
