//! Floors for the webhook benchmark (`scripts/bench-webhooks.sh`): the least a server can do
//! per signed webhook, to compare `ivr serve` with.
//!
//! - `--mode bare`: hyper 1 over HTTP/1.1, every POST answered with one constant TwiML document
//!   (about the size of a real turn's). The floor of the HTTP stack.
//! - `--mode durable`: the same, plus what every durable turn must do: parse the form, check the
//!   Twilio signature (`ivr::carrier::signature::validate`) and run one SQLite transaction (rusqlite,
//!   WAL, `synchronous=NORMAL`): insert the turn's row and read the call's latest row back. The
//!   transaction runs on the server's own worker thread, behind one mutex.
//! - `--mode durable-spawn-blocking`: `durable` with the transaction handed to tokio's blocking
//!   pool, as `ivr serve` did it (to measure the hand-off on its own).
//! - `--mode durable-postgres`: `durable` on PostgreSQL (`--db postgres://…`): the same two
//!   statements in one sqlx transaction at READ COMMITTED, from a pool of 16 connections (as
//!   `ivr serve`'s), committed with the server's defaults (`synchronous_commit = on`).
//!
//! `GET /readyz` answers 200. Any other POST path is a turn: `seq` comes from the query string
//! (0 without one).
//!
//! ```sh
//! cargo run --release --example bench_floor -- --mode durable --listen 127.0.0.1:18081 \
//!     --db /tmp/floor.db --public-url http://127.0.0.1:18081 --token bench-token
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use ivr::carrier::signature::{self, AuthToken, SIGNATURE_HEADER};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Bare,
    Durable,
    DurableSpawnBlocking,
    DurablePostgres,
}

#[derive(Debug, Parser)]
#[command(about = "A floor server for the webhook benchmark")]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// SQLite file for the durable modes (created, or reused as it is); a `postgres://` URL
    /// for `durable-postgres` (its table `floor_turns` is created, or emptied).
    #[arg(long, default_value = "bench-floor.db")]
    db: String,
    /// The URL signatures are computed over (default: http:// + listen).
    #[arg(long)]
    public_url: Option<String>,
    #[arg(long, env = "IVR_CARRIER__AUTH_TOKEN", default_value = "bench-auth-token-0123456789abcdef")]
    token: String,
}

/// A turn's answer: a gather with a question read aloud, as `ivr serve` answers mid-call
/// (about 700 bytes).
const TWIML: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
    r#"<Gather input="dtmf" action="http://127.0.0.1:18080/twilio/voice/step?call=CA000000000000000000000000000000&amp;seq=3" "#,
    r#"method="POST" timeout="8" numDigits="1" finishOnKey="" actionOnEmptyResult="true">"#,
    r#"<Say language="ja-JP">パルスオキシメーターをお持ちの方は１を、お持ちでない方は２を押して下さい。</Say>"#,
    r#"<Say language="ja-JP">もう一度お聞きになる場合は、米印を押して下さい。</Say>"#,
    r#"</Gather><Redirect method="POST">http://127.0.0.1:18080/twilio/voice/step?call=CA000000000000000000000000000000&amp;seq=3</Redirect>"#,
    r#"</Response>"#
);

struct Durable {
    conn: Mutex<Connection>,
}

impl Durable {
    fn open(path: &str) -> rusqlite::Result<Durable> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "normal")?;
        conn.set_prepared_statement_cache_capacity(16);
        conn.execute_batch(
            "create table if not exists turns (
                call_sid text not null,
                seq      integer not null,
                digits   text not null,
                at       text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                primary key (call_sid, seq))",
        )?;
        Ok(Durable { conn: Mutex::new(conn) })
    }

    /// One transaction: the turn's row in, the call's latest row back.
    fn turn(&self, sid: &str, seq: i64, digits: &str) -> rusqlite::Result<(i64, String)> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("insert into turns (call_sid, seq, digits) values (?1, ?2, ?3)")?
            .execute(params![sid, seq, digits])?;
        let latest = tx
            .prepare_cached("select seq, digits from turns where call_sid = ?1 order by seq desc limit 1")?
            .query_row([sid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        tx.commit()?;
        Ok(latest)
    }
}

/// The PostgreSQL floor: the same turn, one sqlx transaction.
struct DurablePg {
    pool: sqlx::PgPool,
}

impl DurablePg {
    async fn open(url: &str) -> Result<DurablePg, sqlx::Error> {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(url).await?;
        sqlx::query(
            "create table if not exists floor_turns (
                call_sid text not null,
                seq      bigint not null,
                digits   text not null,
                at       timestamptz not null default now(),
                primary key (call_sid, seq))",
        )
        .execute(&pool)
        .await?;
        sqlx::query("truncate floor_turns").execute(&pool).await?;
        Ok(DurablePg { pool })
    }

    /// One transaction: the turn's row in, the call's latest row back.
    async fn turn(&self, sid: &str, seq: i64, digits: &str) -> Result<(i64, String), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("insert into floor_turns (call_sid, seq, digits) values ($1, $2, $3)")
            .bind(sid)
            .bind(seq)
            .bind(digits)
            .execute(&mut *tx)
            .await?;
        let latest: (i64, String) =
            sqlx::query_as("select seq, digits from floor_turns where call_sid = $1 order by seq desc limit 1")
                .bind(sid)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(latest)
    }
}

struct App {
    mode: Mode,
    public_url: String,
    token: AuthToken,
    db: Option<Arc<Durable>>,
    pg: Option<DurablePg>,
}

fn reply(status: StatusCode, content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a valid response")
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::GET {
        return Ok(match req.uri().path() {
            "/readyz" | "/healthz" => reply(StatusCode::OK, "text/plain", "ready\n"),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        });
    }
    if app.mode == Mode::Bare {
        // Read the body, as any server must, and answer.
        let _ = req.into_body().collect().await;
        return Ok(reply(StatusCode::OK, "text/xml; charset=utf-8", TWIML));
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", "unreadable body\n"));
    };
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) else {
        return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", "unreadable form\n"));
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = signature::public_url(&app.public_url, path_and_query);
    let sig = parts.headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if sig.is_empty() || !signature::validate(&app.token, &url, &params, sig) {
        return Ok(reply(StatusCode::FORBIDDEN, "text/plain", "invalid signature\n"));
    }
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let sid = get("CallSid");
    let digits = get("Digits");
    let seq: i64 = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("seq=")))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(pg) = &app.pg {
        return Ok(match pg.turn(&sid, seq, &digits).await {
            Ok(_) => reply(StatusCode::OK, "text/xml; charset=utf-8", TWIML),
            Err(e) => {
                eprintln!("turn failed: {e}");
                reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "turn failed\n")
            }
        });
    }
    let db = app.db.clone().expect("durable modes open a database");
    let done = match app.mode {
        Mode::DurableSpawnBlocking => {
            tokio::task::spawn_blocking(move || db.turn(&sid, seq, &digits).map(|_| ())).await.expect("no panic")
        }
        _ => db.turn(&sid, seq, &digits).map(|_| ()),
    };
    Ok(match done {
        Ok(()) => reply(StatusCode::OK, "text/xml; charset=utf-8", TWIML),
        Err(e) => {
            eprintln!("turn failed: {e}");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "turn failed\n")
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let db = match args.mode {
        Mode::Bare | Mode::DurablePostgres => None,
        Mode::Durable | Mode::DurableSpawnBlocking => Some(Arc::new(Durable::open(&args.db)?)),
    };
    let pg = match args.mode {
        Mode::DurablePostgres => Some(DurablePg::open(&args.db).await?),
        _ => None,
    };
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen));
    let app = Arc::new(App {
        mode: args.mode,
        public_url: public_url.trim_end_matches('/').to_string(),
        token: AuthToken::new(args.token),
        db,
        pg,
    });
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("bench_floor {:?} listening on {}", args.mode, listener.local_addr()?);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(app.clone(), req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
