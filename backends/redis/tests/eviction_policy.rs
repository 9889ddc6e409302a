//! A server whose `maxmemory-policy` may evict keys is refused: at connect (reading the
//! policy with `CONFIG GET`, else from `INFO memory`), on every master of a cluster, and
//! by the first call after a reconnect; `RedisConfig::allow_eviction` lets it through.
//! During an outage the calls share one check, and on a cluster a master out of reach
//! holds back neither the check nor the calls to the other masters.
//!
//! Each test runs `redis-server` processes of its own on free ports (`redis-server` and,
//! for the cluster, `redis-cli` must be on `PATH`), since it changes their configuration,
//! kills their connections or restarts them.

#![allow(clippy::unwrap_used)] // tests may unwrap

use haul_core::Admin as _;
use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::future::join_all;
use haul_core::{EnqueueParams, Error, ErrorKind, JobId, NewJob, Storage};
use haul_redis::{EvictionPolicyError, RedisConfig, RedisStorage};
use serde_json::json;
use tokio::time::Instant;

/// How long a server may take to start, and a storage to meet the refusal.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `redis-server` of the test's own, without persistence, in a temporary directory.
/// Dropping it kills it and removes the directory.
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    process: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server with the extra command-line `options`.
    async fn start(options: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("haul-eviction-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self { port, dir, process: None };
        server.start_again(options).await;
        server
    }

    /// Starts the (killed) server again on the same port, with `options`.
    async fn start_again(&mut self, options: &[&str]) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "server.log"])
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("redis-server is needed for these tests (install redis-server): {error}"));
        self.process = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !self.answers_ping().await {
            assert!(Instant::now() < deadline, "the private redis-server on port {} did not start", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers_ping(&self) -> bool {
        let Ok(mut conn) = redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing, as a
    /// server stuck or cut off by the network would.
    fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("the server runs").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The node's name in an [`EvictionPolicyError`].
    fn node(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A plain connection for setting the server up.
    async fn admin(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    async fn set_policy(&self, policy: &str) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query_async(&mut self.admin().await)
            .await
            .unwrap();
    }

    /// Closes every normal client connection but the caller's; returns how many.
    async fn kill_clients(&self) -> u64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query_async(&mut self.admin().await)
            .await
            .unwrap()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            // A frozen server is let go first, so that a failed test leaves none behind.
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The eviction-policy refusal `error` is, if it is one: a backend error of kind
/// `Other` whose source is an [`EvictionPolicyError`].
fn refusal_of(error: &Error) -> Option<&EvictionPolicyError> {
    if !matches!(error, Error::Backend { backend: "redis", kind: ErrorKind::Other, .. }) {
        return None;
    }
    std::error::Error::source(error)?.downcast_ref::<EvictionPolicyError>()
}

/// The refusal of a failed connect.
fn refused(connected: haul_core::Result<RedisStorage>) -> EvictionPolicyError {
    let error = connected.expect_err("the server is refused");
    refusal_of(&error).unwrap_or_else(|| panic!("an eviction-policy refusal: {error:?}")).clone()
}

fn config() -> RedisConfig {
    RedisConfig::new().prefix("eviction")
}

fn one_job() -> EnqueueParams {
    one_job_in("q")
}

fn one_job_in(queue: &str) -> EnqueueParams {
    EnqueueParams::new(vec![NewJob::new("plain", json!({})).queue(queue)])
}

/// The response (and connection) timeout of the outage tests.
const SHORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Calls `get(id)` until it succeeds (a server just let go may take a moment).
async fn get_until_it_succeeds(storage: &RedisStorage, id: JobId) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match storage.get(id).await {
            Ok(found) => break assert!(found.is_some(), "the job is still there"),
            Err(error) => {
                assert!(error.is_transient(), "only a transient error while the server comes back: {error:?}");
                assert!(Instant::now() < deadline, "calls did not go on after the outage: {error:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Calls the storage until a call is refused for the eviction policy, and returns the
/// refusal. Every call before it must fail with a transient error: none may succeed on
/// a connection whose policy was not checked.
async fn first_refusal(storage: &RedisStorage) -> EvictionPolicyError {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match storage.counts().await {
            Ok(_) => panic!("a call succeeded after the reconnect without the policy being checked"),
            Err(error) => {
                if let Some(refusal) = refusal_of(&error) {
                    return refusal.clone();
                }
                assert!(error.is_transient(), "only a transient error may come before the refusal: {error:?}");
                assert!(Instant::now() < deadline, "no call was refused: {error:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_server_that_evicts_keys_is_refused_at_connect() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "allkeys-lru"]).await;
    let refusal = refused(RedisStorage::connect_with(&server.url(), config()).await);
    assert_eq!(refusal.policy(), Some("allkeys-lru"));
    assert_eq!(refusal.node(), server.node());
}

#[tokio::test]
async fn a_server_that_evicts_only_keys_with_a_ttl_is_refused_too() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "volatile-lru"]).await;
    let refusal = refused(RedisStorage::connect_with(&server.url(), config()).await);
    assert_eq!(refusal.policy(), Some("volatile-lru"));
}

#[tokio::test]
async fn with_the_opt_in_a_server_that_evicts_keys_is_accepted() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "allkeys-lru"]).await;
    let storage = RedisStorage::connect_with(&server.url(), config().allow_eviction(true)).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();
    assert_eq!(storage.counts().await.unwrap()[0].get(haul_core::JobState::Available), 1);
}

#[tokio::test]
async fn a_server_with_noeviction_is_accepted() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "noeviction"]).await;
    let storage = RedisStorage::connect_with(&server.url(), config()).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();
    assert_eq!(storage.counts().await.unwrap()[0].get(haul_core::JobState::Available), 1);
}

#[tokio::test]
async fn the_policy_is_read_from_info_memory_when_config_is_renamed() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "allkeys-lfu", "--rename-command", "CONFIG", ""]).await;
    let refusal = refused(RedisStorage::connect_with(&server.url(), config()).await);
    assert_eq!(refusal.policy(), Some("allkeys-lfu"), "read from INFO memory");
}

#[tokio::test]
async fn the_policy_is_read_from_info_memory_when_config_is_denied() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "noeviction"]).await;
    let _: () = redis::cmd("ACL")
        .arg(vec!["SETUSER", "worker", "on", ">secret", "~*", "&*", "+@all", "-config"])
        .query_async(&mut server.admin().await)
        .await
        .unwrap();
    let url = format!("redis://worker:secret@127.0.0.1:{}", server.port);
    RedisStorage::connect_with(&url, config()).await.unwrap();

    server.set_policy("allkeys-random").await;
    let refusal = refused(RedisStorage::connect_with(&url, config()).await);
    assert_eq!(refusal.policy(), Some("allkeys-random"), "read from INFO memory");
}

#[tokio::test]
async fn a_server_whose_policy_cannot_be_read_is_refused_unless_opted_in() {
    let options =
        ["--maxmemory-policy", "noeviction", "--rename-command", "CONFIG", "", "--rename-command", "INFO", ""];
    let server = PrivateRedis::start(&options).await;
    let refusal = refused(RedisStorage::connect_with(&server.url(), config()).await);
    assert_eq!(refusal.policy(), None);
    assert_eq!(refusal.node(), server.node());

    let storage = RedisStorage::connect_with(&server.url(), config().allow_eviction(true)).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();
}

#[tokio::test]
async fn a_policy_changed_before_a_reconnect_is_refused_by_the_next_call() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "noeviction"]).await;
    let storage = RedisStorage::connect_with(&server.url(), config()).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();

    server.set_policy("allkeys-lru").await;
    assert!(server.kill_clients().await > 0, "the storage's connection was killed");
    let refusal = first_refusal(&storage).await;
    assert_eq!(refusal.policy(), Some("allkeys-lru"));
    assert_eq!(refusal.node(), server.node());
    // Refused calls keep checking: once the policy is fixed, calls succeed again.
    assert!(refusal_of(&storage.counts().await.unwrap_err()).is_some(), "still refused");
    server.set_policy("noeviction").await;
    assert_eq!(storage.counts().await.unwrap()[0].get(haul_core::JobState::Available), 1);
}

#[tokio::test]
async fn a_policy_changed_before_a_reconnect_is_refused_by_the_next_call_over_resp3() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "noeviction"]).await;
    let url = format!("{}/?protocol=resp3", server.url());
    let storage = RedisStorage::connect_with(&url, config()).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();

    server.set_policy("allkeys-lru").await;
    assert!(server.kill_clients().await > 0, "the storage's connection was killed");
    assert_eq!(first_refusal(&storage).await.policy(), Some("allkeys-lru"));
}

#[tokio::test]
async fn a_server_restarted_with_an_evicting_policy_is_refused_by_the_next_call() {
    let mut server = PrivateRedis::start(&["--maxmemory-policy", "noeviction"]).await;
    let storage = RedisStorage::connect_with(&server.url(), config()).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();

    server.kill();
    server.start_again(&["--maxmemory-policy", "volatile-ttl"]).await;
    let refusal = first_refusal(&storage).await;
    assert_eq!(refusal.policy(), Some("volatile-ttl"));
}

#[tokio::test]
async fn with_the_opt_in_calls_go_on_after_a_reconnect_to_a_server_that_evicts_keys() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "noeviction"]).await;
    let storage = RedisStorage::connect_with(&server.url(), config().allow_eviction(true)).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();

    server.set_policy("allkeys-lru").await;
    assert!(server.kill_clients().await > 0, "the storage's connection was killed");
    let deadline = Instant::now() + PATIENCE;
    loop {
        match storage.counts().await {
            Ok(counts) => break assert_eq!(counts[0].get(haul_core::JobState::Available), 1),
            Err(error) => {
                assert!(error.is_transient(), "only the dropped connection may fail a call: {error:?}");
                assert!(Instant::now() < deadline, "calls did not go on: {error:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// During an outage every call that needs the policy checked waits for the one check
/// in progress and shares its error, instead of each running its own check after the
/// one before failed (six calls then took 1, 2, … 6 timeouts).
#[tokio::test]
async fn during_an_outage_concurrent_calls_share_one_failed_check() {
    let server = PrivateRedis::start(&["--maxmemory-policy", "noeviction"]).await;
    let config = config().response_timeout(SHORT_TIMEOUT).connection_timeout(SHORT_TIMEOUT);
    let storage = RedisStorage::connect_with(&server.url(), config).await.unwrap();
    let id = storage.enqueue(one_job()).await.unwrap().ids[0];

    server.freeze();
    // A call that times out: the connection may be made again, so the next calls check
    // the policy before their commands.
    let error = tokio::time::timeout(PATIENCE, storage.get(id)).await.unwrap().unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    const CALLS: u32 = 6;
    let started = Instant::now();
    let calls = join_all((0..CALLS).map(|_| async {
        let outcome = storage.get(id).await;
        (outcome, started.elapsed())
    }));
    let outcomes = tokio::time::timeout(PATIENCE, calls).await.expect("the calls returned");
    for (outcome, elapsed) in outcomes {
        let error = outcome.unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        assert!(refusal_of(&error).is_none(), "a server out of reach is not refused: {error:?}");
        // Each call waits for about one (shared) check: far less than the
        // `CALLS` timeouts that checks run one after another would take.
        assert!(elapsed < SHORT_TIMEOUT * (CALLS / 2), "a call returned after {elapsed:?}");
    }

    server.thaw();
    get_until_it_succeeds(&storage, id).await;
}

/// Three masters, each with `--maxmemory-policy` from `policies`, sharing the slots.
async fn private_cluster(policies: [&str; 3]) -> Vec<PrivateRedis> {
    let mut nodes = Vec::new();
    for policy in policies {
        let options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--maxmemory-policy", policy];
        nodes.push(PrivateRedis::start(&options).await);
    }
    let output = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(nodes.iter().map(PrivateRedis::node))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("redis-cli is needed for the cluster test (install redis-tools): {error}"));
    assert!(output.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&output.stdout));
    let deadline = Instant::now() + PATIENCE;
    for node in &nodes {
        loop {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut node.admin().await).await.unwrap();
            if info.lines().any(|line| line.trim_end() == "cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "the private cluster did not come up: {info}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    nodes
}

#[tokio::test]
async fn every_master_of_a_cluster_is_checked_at_connect() {
    let nodes = private_cluster(["noeviction", "noeviction", "allkeys-lru"]).await;
    // Connected through the first node; the third is the one that evicts.
    let refusal = refused(RedisStorage::connect_cluster([nodes[0].url()], config()).await);
    assert_eq!(refusal.policy(), Some("allkeys-lru"));
    assert_eq!(refusal.node(), nodes[2].node());

    RedisStorage::connect_cluster([nodes[0].url()], config().allow_eviction(true)).await.unwrap();
    nodes[2].set_policy("noeviction").await;
    let storage = RedisStorage::connect_cluster([nodes[0].url()], config()).await.unwrap();
    storage.enqueue(one_job()).await.unwrap();
}

/// Which of `nodes` holds the slot of `key` (the others answer `MOVED`).
async fn owner_of(nodes: &[PrivateRedis], key: &str) -> usize {
    for (at, node) in nodes.iter().enumerate() {
        let owned: redis::RedisResult<i64> = redis::cmd("EXISTS").arg(key).query_async(&mut node.admin().await).await;
        if owned.is_ok() {
            return at;
        }
    }
    panic!("no node holds the slot of {key}");
}

/// One master out of reach neither fails the policy check nor holds back the calls to
/// the queues of the other masters; calls to its own queues fail on their own, and go
/// on once it is back.
#[tokio::test]
async fn a_cluster_master_out_of_reach_does_not_stop_the_queues_of_the_others() {
    let nodes = private_cluster(["noeviction", "noeviction", "noeviction"]).await;
    // The storage's own keys share the tag `{eviction}`; a queue's, `{eviction:<queue>}`.
    let global = owner_of(&nodes, "haul:{eviction}:probe").await;
    let frozen = (0..nodes.len()).find(|&at| at != global).unwrap();
    let mut healthy_queue = None;
    let mut frozen_queue = None;
    for n in 0..200 {
        let queue = format!("q{n}");
        let owner = owner_of(&nodes, &format!("haul:{{eviction:{queue}}}:probe")).await;
        if owner == frozen {
            frozen_queue.get_or_insert(queue);
        } else {
            healthy_queue.get_or_insert(queue);
        }
        if healthy_queue.is_some() && frozen_queue.is_some() {
            break;
        }
    }
    let (healthy_queue, frozen_queue) = (healthy_queue.unwrap(), frozen_queue.unwrap());

    let config = config().response_timeout(SHORT_TIMEOUT).connection_timeout(SHORT_TIMEOUT);
    let storage = RedisStorage::connect_cluster([nodes[global].url()], config).await.unwrap();
    let healthy_job = storage.enqueue(one_job_in(&healthy_queue)).await.unwrap().ids[0];
    let frozen_job = storage.enqueue(one_job_in(&frozen_queue)).await.unwrap().ids[0];

    nodes[frozen].freeze();
    for _ in 0..3 {
        // A call to the frozen master's queue fails (and makes the next call check)…
        let error = tokio::time::timeout(PATIENCE, storage.get(frozen_job)).await.unwrap().unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        // …and calls to the other queues go on.
        let found = tokio::time::timeout(PATIENCE, storage.get(healthy_job)).await.unwrap();
        assert!(found.unwrap().is_some(), "the job of the healthy queue is found");
        tokio::time::timeout(PATIENCE, storage.enqueue(one_job_in(&healthy_queue))).await.unwrap().unwrap();
    }

    nodes[frozen].thaw();
    get_until_it_succeeds(&storage, frozen_job).await;
}
