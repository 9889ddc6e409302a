//! `rediss://` connects over TLS: to a `redis-server` of the test's own that listens
//! only on a TLS port, with a self-signed certificate made by `openssl`
//! (`redis-server` built with TLS and `openssl` must be on `PATH`).

#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // tests may unwrap

use haul_core::Admin as _;
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use haul_core::{EnqueueParams, JobState, NewJob, Storage};
use haul_redis::RedisStorage;
use serde_json::json;
use tokio::time::Instant;

/// How long the server may take to start.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `redis-server` that speaks only TLS, in a temporary directory holding its
/// self-signed certificate. Dropping it kills it and removes the directory.
struct TlsRedis {
    port: u16,
    dir: PathBuf,
    process: Child,
}

impl TlsRedis {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("haul-tls-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        self_signed_certificate(&dir);
        let process = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", "cert.pem", "--tls-key-file", "key.pem", "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--logfile", "server.log"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("redis-server is needed for this test (install redis-server): {error}"));
        let server = Self { port, dir, process };
        let deadline = Instant::now() + PATIENCE;
        while !server.answers_ping().await {
            assert!(
                Instant::now() < deadline,
                "the TLS redis-server on port {port} did not start (was it built with TLS?); its log: {}",
                std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// The server's URL with `query`, not verifying its (self-signed) certificate.
    fn insecure_url(&self, query: &str) -> String {
        format!("rediss://127.0.0.1:{}/{query}#insecure", self.port)
    }

    async fn answers_ping(&self) -> bool {
        let client = redis::Client::open(self.insecure_url("")).unwrap();
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return false };
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `cert.pem` and `key.pem` into `dir`: a P-256 certificate for 127.0.0.1.
fn self_signed_certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("openssl is needed for this test (install openssl): {error}"));
    assert!(status.success(), "openssl could not make a certificate");
}

#[tokio::test]
async fn a_rediss_url_stores_jobs_over_tls() {
    let server = TlsRedis::start().await;
    let prefix = format!("haul_tls_{}", &uuid::Uuid::now_v7().simple().to_string()[16..]);
    let storage = RedisStorage::connect(&server.insecure_url(&format!("?prefix={prefix}"))).await.unwrap();
    assert_eq!(storage.prefix(), prefix);
    storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({})).queue("q")])).await.unwrap();
    let counts = storage.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].get(JobState::Available), 1);
    // The server speaks nothing but TLS: the same address over plain TCP is refused.
    let plain = RedisStorage::connect(&format!("redis://127.0.0.1:{}/?connection_timeout=2s", server.port)).await;
    assert!(plain.is_err(), "a plain connection to a TLS-only port must fail");
}

#[tokio::test]
async fn a_rediss_url_verifies_the_certificate_unless_told_otherwise() {
    let server = TlsRedis::start().await;
    let error =
        RedisStorage::connect(&format!("rediss://127.0.0.1:{}/?connection_timeout=5s", server.port)).await.unwrap_err();
    let message = error.to_string();
    assert!(message.to_lowercase().contains("certificate"), "a self-signed certificate is refused: {message}");
}
