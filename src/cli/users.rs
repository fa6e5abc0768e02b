//! `ivr users add|passwd|disable|list`: the staff accounts of the pages under `/ui/`.
//! A password is read from the terminal twice (not echoed), or once from standard input when
//! it is not a terminal or with `--password-stdin`; it is never an argument, which other users
//! of the machine could read in the process list.

use std::io::{BufRead, IsTerminal};

use chrono::Utc;
use secrecy::SecretString;

use super::UsersCommand;
use super::numbers::{Result, open};
use crate::staff::{self, AccountError};
use crate::store::{AuditEntry, Store};
use crate::types::{UiLanguage, UserName};

pub async fn users(cmd: &UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::Add { name, role, language, password_stdin, config } => {
            let name = parse_name(name)?;
            let (_, store) = open(config.as_deref()).await?;
            if store.users().user(name.as_str()).await?.is_some() {
                return Err(format!("a user named '{name}' already exists; choose another name").into());
            }
            let password = read_password(*password_stdin)?;
            let language = UiLanguage::parse(language).map_err(|e| format!("--language: {e}"))?;
            staff::add_user(&store, &name, *role, language, &password).await.map_err(account_error)?;
            audit(&store, "add_user", &name).await?;
            println!("user '{name}' added ({role}); they sign in at /ui/login");
            Ok(())
        }
        UsersCommand::Passwd { name, password_stdin, config } => {
            let name = parse_name(name)?;
            let (_, store) = open(config.as_deref()).await?;
            if store.users().user(name.as_str()).await?.is_none() {
                return Err(format!("no user named '{name}'").into());
            }
            let password = read_password(*password_stdin)?;
            staff::set_password(&store, &name, &password).await.map_err(account_error)?;
            audit(&store, "reset_password", &name).await?;
            println!("password of '{name}' changed; their sessions have ended");
            Ok(())
        }
        UsersCommand::Disable { name, config } => {
            let name = parse_name(name)?;
            let (_, store) = open(config.as_deref()).await?;
            staff::disable_user(&store, &name).await.map_err(account_error)?;
            audit(&store, "disable_user", &name).await?;
            println!("user '{name}' disabled; their sessions have ended");
            Ok(())
        }
        UsersCommand::List { config } => {
            let (_, store) = open(config.as_deref()).await?;
            println!("{:<24} {:<8} {:<4} state", "name", "role", "lang");
            for u in store.users().list_users().await? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{:<24} {:<8} {:<4} {state}", u.name, u.role, u.language);
            }
            Ok(())
        }
    }
}

fn parse_name(name: &str) -> Result<UserName> {
    Ok(UserName::parse(name).map_err(|e| format!("'{name}' is not {e}"))?)
}

fn account_error(e: AccountError) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

/// Records a change made from the command line in the staff audit log.
async fn audit(store: &Store, action: &str, name: &UserName) -> Result<()> {
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_default());
    let entry =
        AuditEntry { at: Utc::now(), actor, action: action.into(), target: name.to_string(), address: String::new() };
    store.users().audit(&entry).await?;
    Ok(())
}

/// The new password: twice from the terminal, or one line of standard input.
fn read_password(from_stdin: bool) -> Result<SecretString> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("new password: ")?;
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            return Err("the two passwords differ; nothing was changed".into());
        }
        first
    };
    staff::check_new_password(&password)?;
    Ok(SecretString::from(password))
}
