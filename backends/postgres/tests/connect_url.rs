//! Connecting by URL: haul's parameters configure the storage and its pool, sqlx's own
//! parameters reach the connections, `migrate=true` creates the tables, and a server
//! that cannot be reached fails at once, saying why.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};

use haul_core::{EnqueueParams, Error, ErrorKind, NewJob, Storage};
use haul_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;
use sqlx::AssertSqlSafe;

/// The test server's URL with `query` added.
fn url_with(query: &str) -> String {
    let url = common::url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// A port on the loopback interface where nothing listens (bound, then freed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn every_parameter_of_the_url_is_taken() {
    let guard = common::SchemaGuard { schema: common::fresh_schema() };
    let url = url_with(&format!(
        "schema={}&max_connections=3&min_connections=1&acquire_timeout=10s&migrate=true\
         &application_name=haul_url_test&options[lock_timeout]=7s",
        guard.schema
    ));
    let storage = PostgresStorage::connect(&url).await.unwrap();
    assert_eq!(storage.schema(), guard.schema);
    assert_eq!(storage.backend_name(), "postgres");
    let pool_options = storage.pool().options();
    assert_eq!(pool_options.get_max_connections(), 3);
    assert_eq!(pool_options.get_min_connections(), 1);
    assert_eq!(pool_options.get_acquire_timeout(), Duration::from_secs(10));

    // sqlx's own parameters reached the session.
    let (application_name, lock_timeout): (String, String) =
        sqlx::query_as("SELECT current_setting('application_name'), current_setting('lock_timeout')")
            .fetch_one(storage.pool())
            .await
            .unwrap();
    assert_eq!(application_name, "haul_url_test");
    assert_eq!(lock_timeout, "7s");

    // migrate=true made the tables, and the jobs land in the URL's schema.
    storage.check_ready().await.unwrap();
    let id = storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({}))])).await.unwrap().ids[0];
    let stored: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM \"{}\".jobs WHERE id = $1", guard.schema)))
            .bind(id.0)
            .fetch_one(storage.pool())
            .await
            .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn without_migrate_the_schema_is_not_created() {
    let guard = common::SchemaGuard { schema: common::fresh_schema() };
    let storage = PostgresStorage::connect(&url_with(&format!("schema={}", guard.schema))).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)")
            .bind(&guard.schema)
            .fetch_one(storage.pool())
            .await
            .unwrap();
    assert!(!exists, "connecting without migrate=true runs no DDL");
}

#[tokio::test]
async fn the_urls_parameters_take_precedence_over_the_config() {
    let guard = common::SchemaGuard { schema: common::fresh_schema() };
    let config = PostgresConfig::new().schema("from_config").max_connections(7);
    let storage = PostgresStorage::connect_with(&url_with(&format!("schema={}", guard.schema)), config).await.unwrap();
    assert_eq!(storage.schema(), guard.schema);
    assert_eq!(storage.pool().options().get_max_connections(), 7);
}

#[tokio::test]
async fn a_refused_port_says_refused_at_once() {
    let port = free_port();
    let started = Instant::now();
    let error = PostgresStorage::connect(&format!("postgres://postgres@127.0.0.1:{port}/test")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, Error::Backend { backend: "postgres", kind: ErrorKind::Connection, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("refused"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "the message names the server: {message}");
    // The pool alone retried for its whole acquire timeout (30 s) and said "pool timed out".
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn an_unknown_database_says_so_at_once() {
    let url = common::url();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    let started = Instant::now();
    let error = PostgresStorage::connect(&format!("{base}/haul_no_such_database")).await.unwrap_err();
    assert!(error.to_string().contains("haul_no_such_database"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn bad_parameters_are_refused_before_connecting() {
    // Nothing listens on the port: a connection attempt would be a connection error.
    let base = format!("postgres://postgres:secret@127.0.0.1:{}/test", free_port());
    for query in ["search_path=x", "max_connections=many", "acquire_timeout=0", "migrate=yes", "schema=Bad"] {
        let error = PostgresStorage::connect(&format!("{base}?{query}")).await.unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_) | Error::InvalidName { .. }), "{query}: {error:?}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
    let error = PostgresStorage::connect(&format!("{base}?max_connections=2&min_connections=3")).await.unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn sslmode_require_connects_over_tls_when_the_server_offers_it() {
    let plain = PostgresStorage::connect(&common::url()).await.unwrap();
    let server_offers_tls: String = sqlx::query_scalar("SHOW ssl").fetch_one(plain.pool()).await.unwrap();
    let connected = PostgresStorage::connect(&url_with("sslmode=require&max_connections=1")).await;
    if server_offers_tls == "on" {
        let storage = connected.unwrap();
        let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(storage.pool())
            .await
            .unwrap();
        assert!(encrypted, "sslmode=require made a TLS connection");
    } else {
        // The server has TLS off: requiring it must fail, not fall back to plain text.
        let error = connected.unwrap_err();
        assert!(error.to_string().to_lowercase().contains("tls"), "{error}");
    }
}
