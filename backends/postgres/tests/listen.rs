//! The LISTEN connection that wakes workers, when its server goes away and comes back:
//! it is replaced with a backoff, not retried in a loop, and wake-ups resume.
//!
//! The listener reaches the test server through a proxy the test controls, which either
//! forwards connections or closes each one as soon as it is accepted (the client reads
//! an end of file: an I/O error other than a refused connection).

mod common;

use std::{
    str::FromStr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use haul_core::{EnqueueParams, NewJob, Storage};
use haul_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::timeout,
};

use common::GENEROUS;

/// A TCP proxy in front of the test server.
struct Proxy {
    port: u16,
    forwarding: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept_loop: JoinHandle<()>,
}

impl Proxy {
    async fn start(server: (String, u16)) -> Self {
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = socket.local_addr().expect("the proxy's address").port();
        let forwarding = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(AtomicUsize::new(0));
        let links = Arc::new(Mutex::new(Vec::new()));
        let accept_loop = tokio::spawn({
            let (forwarding, accepted, links) = (forwarding.clone(), accepted.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = socket.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if !forwarding.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let server = server.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(server).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                    links.lock().unwrap_or_else(PoisonError::into_inner).push(link);
                }
            }
        });
        Self { port, forwarding, accepted, links, accept_loop }
    }

    /// Cuts every forwarded connection and closes every new one on arrival.
    fn go_away(&self) {
        self.forwarding.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            link.abort();
        }
    }

    fn come_back(&self) {
        self.forwarding.store(true, Ordering::SeqCst);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.go_away();
        self.accept_loop.abort();
    }
}

/// Enqueues a job on `queue` every 100 ms until `wakeups` hears of the queue.
async fn woken_by_enqueues(storage: &PostgresStorage, wakeups: &mut haul_core::Wakeups, queue: &str) {
    let queues = [queue.to_owned()];
    timeout(GENEROUS, async {
        loop {
            let job = NewJob::new("test_job", json!({})).queue(queue);
            storage.enqueue(EnqueueParams::new(vec![job])).await.expect("enqueue");
            if timeout(Duration::from_millis(100), wakeups.wait_for(&queues)).await.is_ok() {
                return;
            }
        }
    })
    .await
    .expect("a wake-up for the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listen_connection_is_replaced_with_a_backoff_and_wake_ups_resume() {
    let (direct, _guard) = common::storage().await;
    let server = PgConnectOptions::from_str(&common::url()).expect("the test server's URL");
    let proxy = Proxy::start((server.get_host().to_owned(), server.get_port())).await;
    let through_proxy = server.host("127.0.0.1").port(proxy.port).ssl_mode(PgSslMode::Disable);
    let pool = PgPoolOptions::new().max_connections(2).connect_lazy_with(through_proxy);
    let proxied =
        PostgresStorage::from_pool_with(pool, PostgresConfig::new().schema(direct.schema())).expect("a valid schema");

    let mut wakeups = proxied.subscribe().await.expect("the LISTEN connection, through the proxy");
    woken_by_enqueues(&direct, &mut wakeups, "mail").await;

    let before = proxy.accepted();
    proxy.go_away();
    // A window of one second: the replacement waits 100 ms, then 200, 400 and 800 ms
    // after each failure, so it connects about four times. A reconnect retried without
    // a pause connects hundreds of times. A slow machine only connects less often.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = proxy.accepted() - before;
    assert!(attempts <= 8, "{attempts} connections in one second while the server was away");

    proxy.come_back();
    woken_by_enqueues(&direct, &mut wakeups, "mail").await;
}
