//! Issuing processing numbers: how many per second each store records when several tasks issue
//! at once (as staff members and calls do), each number revoking its patient's previous one.
//!
//! ```text
//! cargo run --release --example bench_issue -- [--tasks 8] [--numbers 20000] [--patients 1000]
//! ```
//!
//! SQLite runs on a file in a temporary directory (synchronous NORMAL, the default, and FULL);
//! PostgreSQL on a database created for the run at the server `--pg` names (default
//! `IVR_TEST_PG_URL`, else `postgres://postgres@127.0.0.1:5432/test`) and dropped after it.
//! `--only sqlite` or `--only postgres` measures one back end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use ivr::issuer::{IssuerKey, ProcessingNumber};
use ivr::store::{Consent, NewNumber, Patient, Store, StoreError};
use sqlx::{Connection, PgConnection};

#[derive(Parser)]
#[command(about = "Processing numbers issued per second on each store")]
struct Args {
    /// Tasks issuing at once.
    #[arg(long, default_value_t = 8)]
    tasks: usize,
    /// Numbers to issue on each store.
    #[arg(long, default_value_t = 20_000)]
    numbers: usize,
    /// Patients the numbers are issued for (each holds one valid number at a time).
    #[arg(long, default_value_t = 1000)]
    patients: usize,
    /// The PostgreSQL server (a database is created on it for the run).
    #[arg(long, env = "IVR_TEST_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg: String,
    /// Only this back end: sqlite or postgres.
    #[arg(long)]
    only: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    println!(
        "{} numbers for {} patients from {} tasks ({} cores)",
        args.numbers,
        args.patients,
        args.tasks,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let wanted = |b: &str| args.only.as_deref().is_none_or(|o| o == b);
    if wanted("sqlite") {
        for full in [false, true] {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("ivr.db").display());
            let store = Store::open(&url, full).await?;
            let label = if full { "sqlite (synchronous FULL)" } else { "sqlite (synchronous NORMAL)" };
            run(label, &store, &args).await?;
        }
    }
    if wanted("postgres") {
        let mut admin = PgConnection::connect(&args.pg).await?;
        let name = format!("ivr_bench_{:016x}", rand::random::<u64>());
        sqlx::raw_sql(&format!("create database {name}")).execute(&mut admin).await?;
        let mut url = url::Url::parse(&args.pg)?;
        url.set_path(&format!("/{name}"));
        let result = async {
            let store = Store::open(url.as_str(), false).await?;
            run("postgres", &store, &args).await
        }
        .await;
        sqlx::raw_sql(&format!("drop database if exists {name} with (force)")).execute(&mut admin).await?;
        result?;
    }
    Ok(())
}

/// Migrates, creates the patients, then issues and prints the rate.
async fn run(label: &str, store: &Store, args: &Args) -> Result<(), StoreError> {
    store.migrate().await?;
    for i in 0..args.patients {
        store.patients().upsert(&patient(i)).await?;
    }
    let key = Arc::new(IssuerKey::new("bench"));
    let collisions = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.tasks)
        .map(|t| {
            let (store, key, collisions) = (store.clone(), key.clone(), collisions.clone());
            let (tasks, numbers, patients) = (args.tasks, args.numbers, args.patients);
            tokio::spawn(async move {
                for k in (t..numbers).step_by(tasks) {
                    let p = if k < patients { k } else { rand::random_range(0..patients) };
                    loop {
                        let now = Utc::now();
                        let n = NewNumber {
                            patient_id: ivr::types::PatientId::parse(&patient_id(p)).unwrap(),
                            number_hash: key.hash(&ProcessingNumber::generate(8)),
                            sealed: None,
                            issued_at: now,
                            expires_at: now + chrono::Duration::hours(24),
                            consent: Consent::Staff { name: "bench".into() },
                            delivery: ivr::types::NumberDelivery::None,
                            message: None,
                        };
                        match store.numbers().issue(&n).await {
                            Ok(_) => break,
                            Err(StoreError::Conflict) => drop(collisions.fetch_add(1, Ordering::Relaxed)),
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| StoreError::Turn(e.to_string()))??;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{label:28} {:>8.0} numbers/s  ({} in {took:.1} s, {} collisions drawn again, {} valid)",
        args.numbers as f64 / took,
        args.numbers,
        collisions.load(Ordering::Relaxed),
        store.numbers().valid_count().await?
    );
    Ok(())
}

fn patient_id(i: usize) -> String {
    format!("p{i:06}")
}

fn patient(i: usize) -> Patient {
    Patient {
        patient_id: patient_id(i).parse().expect("a patient id"),
        name: format!("Patient {i}"),
        phone: format!("+8190{i:08}").parse().expect("a phone number"),
        birth_md: None,
        language: "ja-JP".into(),
        email: None,
        area: None,
        care_start: None,
        care_end: None,
        call_slot: None,
    }
}
