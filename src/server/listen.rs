//! Accepting connections, with the limits that keep slow or idle clients from holding the
//! server: `axum::serve` has no header-read timeout, so connections are served here with
//! hyper's HTTP/1.1 connection builder, over a loop on the listener.
//!
//! - **Header-read timeout.** A connection that has not sent a whole request head within
//!   `server.header_read_timeout` is closed. The clock starts when the server waits for a
//!   request, so it also closes keep-alive connections idle for as long.
//! - **Open connections.** At most `server.max_connections` at once (and never more than the
//!   process's file limit leaves room for, with [`RESERVED_FILES`] kept for the database, the
//!   carrier's client and the logs). When all are taken, the server stops accepting: new
//!   connections wait in the kernel's listen backlog and are served as others close, instead
//!   of being refused; a webhook then arrives late rather than not at all.
//!
//! The body-read timeout is a middleware on the router (`server.body_read_timeout`,
//! [`crate::http::deadline`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// File descriptors kept free of client connections: the database pool, the dialer lock, the
/// carrier's and SMTP clients, the flow watcher and the logs.
pub const RESERVED_FILES: u64 = 64;

/// What a client may take of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a request head (the request line and headers).
    pub header_read_timeout: Duration,
    /// Open client connections at most.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets the
/// requests in flight finish, closes idle connections, and returns.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let max = connection_cap(limits.max_connections, open_files_limit());
    let permits = Arc::new(Semaphore::new(max));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    let mut warned: Option<std::time::Instant> = None;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Once a minute at most: a flood of slow clients must not flood the log too.
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(max, "all connections are taken: new ones wait until others close");
                    warned = Some(std::time::Instant::now());
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        // The client's address, for the handlers that log or throttle by it (staff logins).
        let service = tower::ServiceExt::map_request(app.clone(), move |mut req: axum::extract::Request<_>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that went away or was too slow: nothing to answer, nobody to tell.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: one that the client aborted is nothing; anything else (the file limit
/// reached) is logged and waited out, as the connection waits in the backlog meanwhile.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; trying again in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The connections allowed at once: `configured`, less if the file limit leaves less room.
fn connection_cap(configured: usize, files: Option<u64>) -> usize {
    let Some(files) = files else { return configured.max(1) };
    let room = files.saturating_sub(RESERVED_FILES).max(1);
    if (configured as u64) > room {
        tracing::warn!(
            max_connections = configured,
            open_files_limit = files,
            "server.max_connections is above what the file limit allows: at most {room} connections"
        );
        room as usize
    } else {
        configured.max(1)
    }
}

/// The process's soft limit on open files, where the system says (Linux).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_limit_caps_the_connections() {
        assert_eq!(connection_cap(1024, None), 1024);
        assert_eq!(connection_cap(1024, Some(1_048_576)), 1024);
        assert_eq!(connection_cap(1024, Some(256)), 192);
        assert_eq!(connection_cap(1024, Some(10)), 1);
    }

    #[test]
    fn the_file_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
