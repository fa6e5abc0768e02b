//! Slow clients are cut off: connections that send half a request head, or a request body that
//! trickles in, are closed by the server after `server.header_read_timeout` and
//! `server.body_read_timeout`, while `/healthz` and signed webhooks keep answering.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::app::{TestApp, settings, spawn_app_with};

const SLOW: usize = 200;

async fn spawn_strict() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&format!("sqlite://{}", dir.path().join("ivr.db").display()));
    s.server.header_read_timeout = "2s".into();
    s.server.body_read_timeout = "2s".into();
    spawn_app_with(s, dir).await
}

/// Reads until the server closes the connection (end of file or reset), or `deadline`;
/// whether it closed, and what it sent.
async fn closed_by_server(stream: &mut TcpStream, deadline: Instant) -> (bool, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_stall_in_their_headers_are_closed_while_health_and_webhooks_answer() {
    let app = spawn_strict().await;
    let addr = app.addr.trim_start_matches("http://").to_string();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /twilio/status HT").await.unwrap();
        slow.push(s);
    }

    // Meanwhile the server answers as usual.
    assert_eq!(app.get("/healthz").await.0, 200);
    let sid = "CA55555555555555555555555555555555";
    let (status, body) = app.post("/twilio/voice", &[("CallSid", sid), ("From", "+819099999999")]).await;
    assert!(status == 200 && body.contains("<Hangup/>"), "{status} {body}");

    // Every slow connection is closed by the server, after the timeout (2 s) and a margin.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut open = 0;
    for s in &mut slow {
        let (closed, _) = closed_by_server(s, deadline).await;
        open += usize::from(!closed);
    }
    assert_eq!(open, 0, "{open} of {SLOW} stalled connections still open");
    assert_eq!(app.get("/healthz").await.0, 200);
    app.server.unwrap().stop().await;
}

#[tokio::test]
async fn a_request_whose_body_trickles_in_is_answered_408_and_closed() {
    let app = spawn_strict().await;
    let addr = app.addr.trim_start_matches("http://").to_string();
    let s = TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = s.into_split();
    let head = "POST /twilio/status HTTP/1.1\r\nhost: ivr.example.jp\r\n\
                content-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\n";
    write.write_all(head.as_bytes()).await.unwrap();
    // A byte at a time, each well within the timeout, never the whole body.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if write.write_all(b"C").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    trickle.abort();
    let answer = String::from_utf8_lossy(&got);
    assert!(closed, "the connection is still open: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.get("/healthz").await.0, 200);
}
