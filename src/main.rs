//! `ivr`: wires the command line to the library.

use std::path::Path;

use clap::Parser;
use ivr::cli::{self, Cli, Command};
use ivr::config::Settings;
use secrecy::ExposeSecret;

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Check { paths, config } => cli::check::run(paths, config.as_deref()),
        Command::Call(args) => cli::call::run(args),
        Command::Graph { flow, dirs } => cli::graph::run(flow, dirs),
        Command::Serve { config, demo } => run_async(serve(config.as_deref(), *demo)),
        Command::Dial { flow, now, patients, config } => {
            run_async(cli::dial::dial(flow.as_deref(), *now, *patients, config.as_deref()))
        }
        Command::Migrate { db, config } => run_async(migrate(db.clone(), config.as_deref())),
        Command::Numbers(cmd) => run_async(cli::numbers::numbers(cmd)),
        Command::Patients(cmd) => run_async(cli::patients::patients(cmd)),
        Command::Tokens(cmd) => run_async(cli::numbers::tokens(cmd)),
        Command::Users(cmd) => run_async(cli::users::users(cmd)),
    };
    std::process::exit(code);
}

fn run_async(f: impl Future<Output = Result<(), Box<dyn std::error::Error>>>) -> i32 {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(f) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn serve(config: Option<&Path>, demo: bool) -> Result<(), Box<dyn std::error::Error>> {
    if demo {
        return ivr::demo::run(config).await;
    }
    ivr::telemetry::init();
    let settings = Settings::load(config)?;
    let server = ivr::server::Server::start(&settings).await?;
    server.wait().await?;
    Ok(())
}

async fn migrate(db: Option<String>, config: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
    let url = match db {
        Some(u) => u,
        None => Settings::load(config)?.database.url.expose_secret().to_string(),
    };
    let store = ivr::store::Store::open(&url, false).await?;
    let n = store.migrate().await?;
    println!("{} database is up to date ({n} migration(s) applied now)", store.backend());
    Ok(())
}
