//! PostgreSQL over TLS, as deployment.md sets it up: `sslmode=verify-full` with the server's
//! certificate authority in `sslrootcert` connects, encrypted; without it the same URL is
//! refused, since the server's certificate is then unverifiable.

use sqlx::{Connection, PgConnection};

use crate::common::db::{Backend, TestDb};
use crate::common::peers;
use ivr::store::Store;

#[tokio::test]
async fn postgres_with_sslmode_verify_full_checks_the_servers_certificate() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    let ssl: String = sqlx::query_scalar("show ssl").fetch_one(&mut conn).await.unwrap();
    let cert: String = sqlx::query_scalar("show ssl_cert_file").fetch_one(&mut conn).await.unwrap();
    let _ = conn.close().await;
    let mut url = url::Url::parse(db.url()).unwrap();
    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "::1"));
    // The server's own certificate (self-signed, as Debian's ssl-cert makes it, for the name
    // localhost) stands for the certificate authority: readable only on the server's machine.
    if ssl != "on" || !local || std::fs::metadata(&cert).is_err() {
        peers::skip(&format!("PostgreSQL at {} has no TLS certificate readable here (ssl={ssl})", db.url()));
        return;
    }
    url.set_host(Some("localhost")).unwrap();
    url.query_pairs_mut().append_pair("sslmode", "verify-full");
    let unverifiable = url.to_string();
    url.query_pairs_mut().append_pair("sslrootcert", &cert);
    let verified = url.to_string();

    let store = Store::open(&verified, false).await.expect("verify-full with the server's certificate");
    store.migrate().await.unwrap();
    let mut conn = PgConnection::connect(&verified).await.unwrap();
    let encrypted: bool = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    assert!(encrypted, "the connection is not encrypted");

    let refused = PgConnection::connect(&unverifiable).await;
    assert!(refused.is_err(), "verify-full accepted a certificate no trusted authority signed");
}
