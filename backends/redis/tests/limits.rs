//! Queue limits on Redis: where they are stored, and the wake-ups around them (a slot
//! freed on a full queue wakes it; a claim its limit holds back does not).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use futures_util::StreamExt as _;
use haul_core::{
    Admin, ClaimParams, EnqueueParams, JobOutcome, JobRecord, NewJob, QueueLimits, Report, ReportParams, RunAt,
    Storage, Timestamp,
};
use haul_redis::RedisStorage;
use redis::AsyncCommands;
use serde_json::json;

/// How long a case waits for a wake-up before failing.
const PATIENCE: Duration = Duration::from_secs(10);

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
}

async fn enqueue(storage: &RedisStorage, jobs: Vec<NewJob>, now: Timestamp) {
    storage.enqueue(EnqueueParams::new(jobs).now(now)).await.unwrap();
}

fn jobs(queue: &str, n: usize) -> Vec<NewJob> {
    (0..n).map(|_| NewJob::new("plain", json!({})).queue(queue)).collect()
}

async fn claim(storage: &RedisStorage, queue: &str, limit: usize, now: Timestamp) -> Vec<JobRecord> {
    storage.claim(ClaimParams::new([queue], limit).lease(Duration::from_secs(1)).now(now)).await.unwrap()
}

async fn set_limit(storage: &RedisStorage, queue: &str, concurrency: u32) {
    storage.set_queue_limits(queue, QueueLimits::new().concurrency(concurrency)).await.unwrap();
}

/// The wake-ups sent on a prefix's channel, heard on a connection of their own.
struct Listener(std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>);

impl Listener {
    async fn start(prefix: &str) -> Self {
        let mut pubsub = redis::Client::open(common::url()).unwrap().get_async_pubsub().await.unwrap();
        pubsub.subscribe(format!("haul:{{{prefix}}}:wakeup")).await.unwrap();
        Self(Box::pin(pubsub.into_on_message()))
    }

    /// The next wake-up's payload.
    async fn next(&mut self) -> String {
        let message = tokio::time::timeout(PATIENCE, self.0.next()).await.expect("a wake-up comes in time");
        message.unwrap().get_payload().unwrap()
    }

    /// The wake-ups before the one for `marker` (sent by the caller after what it
    /// looks at, so that everything sent before has arrived).
    async fn before(&mut self, marker: &str) -> Vec<String> {
        let mut heard = Vec::new();
        loop {
            let payload = self.next().await;
            if payload == marker {
                return heard;
            }
            heard.push(payload);
        }
    }
}

/// Sends a wake-up for `marker` (setting limits on it does).
async fn mark(storage: &RedisStorage, marker: &str) {
    set_limit(storage, marker, 1).await;
}

#[tokio::test]
async fn a_queue_s_limit_lives_in_its_slot_and_the_index_in_the_prefix_s() {
    let (storage, guard) = common::storage().await;
    let p = &guard.prefix;
    set_limit(&storage, "mail", 3).await;
    let mut raw = common::raw().await;
    let stored: Option<String> = raw.hget(format!("haul:{{{p}:mail}}:limits"), "concurrency").await.unwrap();
    assert_eq!(stored.as_deref(), Some("3"));
    let index: Vec<String> = raw.zrange(format!("haul:{{{p}}}:limits"), 0, -1).await.unwrap();
    assert_eq!(index, ["mail"]);

    storage.set_queue_limits("mail", QueueLimits::new()).await.unwrap();
    assert_eq!(common::keys_of(p).await, Vec::<String>::new(), "removing limits leaves no key");
}

#[tokio::test]
async fn a_name_left_in_the_index_without_limits_is_not_listed() {
    let (storage, guard) = common::storage().await;
    set_limit(&storage, "a", 2).await;
    set_limit(&storage, "b", 5).await;
    // What a cluster's index holds for a moment while limits are removed.
    let _: u64 = common::raw().await.del(format!("haul:{{{}:a}}:limits", guard.prefix)).await.unwrap();
    let listed = storage.queue_limits().await.unwrap();
    assert_eq!(listed, vec![haul_core::QueueLimitsRecord::new("b", QueueLimits::new().concurrency(5))]);
}

#[tokio::test]
async fn purging_deletes_the_limits_of_a_queue_that_never_had_jobs() {
    let (storage, guard) = common::storage().await;
    set_limit(&storage, "quiet", 2).await;
    assert_eq!(common::keys_of(&guard.prefix).await.len(), 2, "the queue's limits and the index");
    storage.purge().await.unwrap();
    assert_eq!(common::keys_of(&guard.prefix).await, Vec::<String>::new());
}

#[tokio::test]
async fn setting_limits_wakes_the_queue() {
    let (storage, guard) = common::storage().await;
    let mut listener = Listener::start(&guard.prefix).await;
    set_limit(&storage, "lim", 2).await;
    assert_eq!(listener.next().await, "lim");
    storage.set_queue_limits("lim", QueueLimits::new()).await.unwrap();
    assert_eq!(listener.next().await, "lim", "a removed limit may free jobs too");
}

#[tokio::test]
async fn a_report_that_frees_a_slot_of_a_full_queue_wakes_it() {
    let (storage, guard) = common::storage().await;
    set_limit(&storage, "lim", 1).await;
    enqueue(&storage, jobs("lim", 3), at(0)).await;
    let running = claim(&storage, "lim", 5, at(1)).await;
    assert_eq!(running.len(), 1);
    let mut listener = Listener::start(&guard.prefix).await;
    let report = Report { claim: running[0].claim().unwrap(), outcome: JobOutcome::Completed };
    storage.report(ReportParams::new(vec![report]).now(at(2))).await.unwrap();
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, ["lim"]);

    // Not full any more: the next report frees nothing claims were waiting for.
    let running = claim(&storage, "lim", 5, at(3)).await;
    set_limit(&storage, "lim", 2).await;
    assert_eq!(listener.next().await, "lim", "setting the limit");
    let report = Report { claim: running[0].claim().unwrap(), outcome: JobOutcome::Completed };
    storage.report(ReportParams::new(vec![report]).now(at(4))).await.unwrap();
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_rescue_that_frees_a_slot_of_a_full_queue_wakes_it() {
    let (storage, guard) = common::storage().await;
    set_limit(&storage, "lim", 1).await;
    // One attempt each: the rescued job is discarded, so nothing else wakes the queue.
    enqueue(&storage, jobs("lim", 2).into_iter().map(|job| job.max_attempts(1)).collect(), at(0)).await;
    assert_eq!(claim(&storage, "lim", 5, at(1)).await.len(), 1);
    let mut listener = Listener::start(&guard.prefix).await;
    let rescued = storage.rescue_expired(Some(at(10))).await.unwrap();
    assert_eq!(rescued.discarded, 1);
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, ["lim"]);
}

#[tokio::test]
async fn a_claim_its_limit_holds_back_sends_no_wake_up() {
    let (storage, guard) = common::storage().await;
    set_limit(&storage, "lim", 1).await;
    let due = |queue: &str| jobs(queue, 3).into_iter().map(|job| job.run_at(RunAt::At(at(5)))).collect();
    enqueue(&storage, due("lim"), at(0)).await;
    enqueue(&storage, due("free"), at(0)).await;
    let mut listener = Listener::start(&guard.prefix).await;
    // Each claim promotes its queue's three due jobs and takes one.
    assert_eq!(claim(&storage, "lim", 1, at(10)).await.len(), 1);
    assert_eq!(claim(&storage, "free", 1, at(10)).await.len(), 1);
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, ["free"], "the limited queue's waiting jobs wake no one");
}

/// The nodes of the Redis Cluster in `HAUL_TEST_REDIS_CLUSTER_URLS` (comma-separated).
fn cluster_nodes() -> Vec<String> {
    let urls = std::env::var("HAUL_TEST_REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| panic!("set HAUL_TEST_REDIS_CLUSTER_URLS to the nodes of a Redis Cluster"));
    urls.split(',').map(str::to_owned).collect()
}

/// On a cluster the index of limited queues is written after each queue's limits, in
/// another slot; a claim across slots shares its limit out within each queue's free
/// slots; purge finds the limits of a queue that never had jobs. Run with
/// `HAUL_TEST_REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,… cargo test -p haul-redis
/// --test limits -- --ignored on_a_cluster`.
#[tokio::test]
#[ignore = "needs a Redis Cluster: HAUL_TEST_REDIS_CLUSTER_URLS"]
async fn on_a_cluster_limits_are_listed_obeyed_and_purged() {
    let prefix = common::fresh_prefix();
    let config = haul_redis::RedisConfig::new().prefix(&prefix);
    let storage = RedisStorage::connect_cluster(cluster_nodes(), config).await.unwrap();
    assert!(storage.is_cluster());
    let mut raw = redis::cluster::ClusterClient::new(cluster_nodes()).unwrap().get_async_connection().await.unwrap();

    set_limit(&storage, "lim", 2).await;
    set_limit(&storage, "quiet", 1).await;
    set_limit(&storage, "gone", 1).await;
    storage.set_queue_limits("gone", QueueLimits::new()).await.unwrap();
    let index: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:limits"), 0, -1).await.unwrap();
    assert_eq!(index, ["lim", "quiet"]);
    let listed: Vec<String> = storage.queue_limits().await.unwrap().into_iter().map(|record| record.queue).collect();
    assert_eq!(listed, ["lim", "quiet"]);

    // Queues in different slots: the limited one gives two, the others fill the rest.
    let queues = ["lim", "a", "b"];
    for (n, queue) in queues.iter().enumerate() {
        let n = i64::try_from(n).unwrap();
        enqueue(&storage, jobs(queue, 4), at(n)).await;
    }
    let claimed = storage.claim(ClaimParams::new(queues, 7).now(at(10))).await.unwrap();
    let from = |queue: &str| claimed.iter().filter(|job| job.queue == queue).count();
    assert_eq!((from("lim"), from("a"), from("b")), (2, 4, 1), "{claimed:?}");
    assert!(storage.claim(ClaimParams::new(["lim"], 5).now(at(10))).await.unwrap().is_empty());

    storage.purge().await.unwrap();
    for key in [format!("haul:{{{prefix}}}:limits"), format!("haul:{{{prefix}:quiet}}:limits")] {
        let exists: bool = raw.exists(&key).await.unwrap();
        assert!(!exists, "{key} is purged");
    }
}
