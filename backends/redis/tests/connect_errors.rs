//! Connecting fails fast and says why: a refused port, a server that is not Redis
//! (with what it replied), and a server that answers nothing within the connection
//! timeout. Each test runs its own listener on a free port; none needs a Redis server.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::{Duration, Instant};

use haul_core::{Error, ErrorKind};
use haul_redis::RedisStorage;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A port on the loopback interface where nothing listens (bound, then freed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A listener on a free port that hands each connection to `serve`, in a task.
async fn listener<F, Fut>(serve: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    port
}

fn assert_connection_error(error: &Error) {
    assert!(matches!(error, Error::Backend { backend: "redis", kind: ErrorKind::Connection, .. }), "{error:?}");
}

#[tokio::test]
async fn a_refused_port_says_refused_at_once() {
    let port = free_port();
    let started = Instant::now();
    let error = RedisStorage::connect(&format!("redis://127.0.0.1:{port}")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_connection_error(&error);
    let message = error.to_string();
    assert!(message.contains("refused"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "the message names the server: {message}");
    // The connection timeout (5 s by default) bounds it; a few quick retries take less.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test]
async fn a_server_that_is_not_redis_is_named_with_what_it_replied() {
    // An HTTP server: whatever it is sent, it answers with an HTTP error and hangs up.
    let port = listener(|mut socket| async move {
        let mut request = [0_u8; 1024];
        let _ = socket.read(&mut request).await;
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        let _ = socket.shutdown().await;
    })
    .await;
    let error = RedisStorage::connect(&format!("redis://127.0.0.1:{port}")).await.unwrap_err();
    assert_connection_error(&error);
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port} did not answer as a Redis server")), "{message}");
    assert!(message.contains("HTTP/1.1 400 Bad Request"), "the message shows the reply: {message}");
}

#[tokio::test]
async fn a_server_that_answers_nothing_fails_within_the_connection_timeout() {
    // Accepts connections and keeps them open without a byte.
    let port = listener(|socket| async move {
        let mut socket = socket;
        let mut sink = [0_u8; 1024];
        while matches!(socket.read(&mut sink).await, Ok(read) if read > 0) {}
    })
    .await;
    let started = Instant::now();
    let error = RedisStorage::connect(&format!("redis://127.0.0.1:{port}/?connection_timeout=1s")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_connection_error(&error);
    let message = error.to_string();
    assert!(message.contains("did not answer as a Redis server"), "{message}");
    assert!(message.contains("no Redis reply came within 1s"), "{message}");
    // One connection timeout, not one per retry (four retries took over 5 s).
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test]
async fn a_bad_parameter_is_refused_before_connecting() {
    // Nothing listens on the port: a connection attempt would be a connection error.
    let port = free_port();
    for url in [
        format!("redis://127.0.0.1:{port}/?prefixx=a"),
        format!("redis://127.0.0.1:{port}/?connection_timeout=soon"),
        format!("redis+cluster://127.0.0.1:{port}/?allow_eviction=maybe"),
    ] {
        let error = RedisStorage::connect(&url).await.unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{url}: {error:?}");
    }
}

#[tokio::test]
async fn the_node_urls_of_a_cluster_take_none_of_hauls_parameters() {
    let port = free_port();
    let nodes = [format!("redis://127.0.0.1:{port}/?prefix=a")];
    let error = RedisStorage::connect_cluster(nodes, haul_redis::RedisConfig::new()).await.unwrap_err();
    assert!(matches!(&error, Error::InvalidArgument(message) if message.contains("RedisConfig")), "{error:?}");
}

#[tokio::test]
async fn a_cluster_url_whose_nodes_refuse_says_refused() {
    let (first, second) = (free_port(), free_port());
    let error = RedisStorage::connect(&format!("redis+cluster://127.0.0.1:{first},127.0.0.1:{second}/?prefix=a"))
        .await
        .unwrap_err();
    assert_connection_error(&error);
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{first}, 127.0.0.1:{second} (Redis Cluster)")), "{message}");
}
