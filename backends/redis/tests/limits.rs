//! Queue limits on Redis: where they are stored, and the wake-ups around them (a slot
//! freed on a full queue wakes it; a claim its limit holds back does not); limit keys:
//! the job's `limit_key` field, the running jobs per key (`key_running`), limits per
//! key in claims, racing claimers and their wake-ups.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

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

fn keyed(queue: &str, keys: &[&str]) -> Vec<NewJob> {
    keys.iter().map(|key| NewJob::new("plain", json!({})).queue(queue).limit_key(*key)).collect()
}

async fn set_key_limit(storage: &RedisStorage, queue: &str, key_concurrency: u32) {
    storage.set_queue_limits(queue, QueueLimits::new().key_concurrency(key_concurrency)).await.unwrap();
}

/// The limit keys of `jobs`, in order (`-` for none).
fn keys_of(jobs: &[JobRecord]) -> Vec<String> {
    jobs.iter().map(|job| job.limit_key.clone().unwrap_or_else(|| "-".to_owned())).collect()
}

async fn complete(storage: &RedisStorage, jobs: &[JobRecord], now: Timestamp) {
    let reports = jobs.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed });
    storage.report(ReportParams::new(reports.collect()).now(now)).await.unwrap();
}

/// The running jobs per limit key of `queue`, as stored.
async fn key_running(prefix: &str, queue: &str) -> HashMap<String, i64> {
    common::raw().await.hgetall(format!("haul:{{{prefix}:{queue}}}:key_running")).await.unwrap()
}

fn counts(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
    pairs.iter().map(|(key, n)| ((*key).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_limit_key_is_a_field_of_the_job_and_reads_back() {
    let (storage, guard) = common::storage().await;
    let mut jobs = keyed("keys", &["customer-é|42"]);
    jobs.extend(self::jobs("keys", 1));
    let ids = storage.enqueue(EnqueueParams::new(jobs).now(at(0))).await.unwrap().ids;
    let mut raw = common::raw().await;
    let field = |id| format!("haul:{{{}:keys}}:job:{id}", guard.prefix);
    let stored: Option<String> = raw.hget(field(ids[0]), "limit_key").await.unwrap();
    assert_eq!(stored.as_deref(), Some("customer-é|42"));
    let absent: Option<String> = raw.hget(field(ids[1]), "limit_key").await.unwrap();
    assert_eq!(absent, None, "no field for a job without a limit key");

    assert_eq!(storage.get(ids[0]).await.unwrap().unwrap().limit_key.as_deref(), Some("customer-é|42"));
    assert_eq!(storage.get(ids[1]).await.unwrap().unwrap().limit_key, None);
    let claimed = claim(&storage, "keys", 5, at(1)).await;
    assert_eq!(keys_of(&claimed), ["customer-é|42", "-"]);
}

#[tokio::test]
async fn a_key_limit_lives_in_the_limits_hash_and_alone_makes_a_limited_queue() {
    let (storage, guard) = common::storage().await;
    let p = &guard.prefix;
    set_key_limit(&storage, "per_key", 2).await;
    storage.set_queue_limits("both", QueueLimits::new().concurrency(5).key_concurrency(1)).await.unwrap();
    let mut raw = common::raw().await;
    let stored: HashMap<String, String> = raw.hgetall(format!("haul:{{{p}:per_key}}:limits")).await.unwrap();
    assert_eq!(stored, HashMap::from([("key_concurrency".to_owned(), "2".to_owned())]));
    let index: Vec<String> = raw.zrange(format!("haul:{{{p}}}:limits"), 0, -1).await.unwrap();
    assert_eq!(index, ["both", "per_key"]);
    let listed = storage.queue_limits().await.unwrap();
    assert_eq!(
        listed,
        vec![
            haul_core::QueueLimitsRecord::new("both", QueueLimits::new().concurrency(5).key_concurrency(1)),
            haul_core::QueueLimitsRecord::new("per_key", QueueLimits::new().key_concurrency(2)),
        ]
    );

    // Replacing the limits drops the field a new call leaves out.
    set_limit(&storage, "both", 3).await;
    let stored: HashMap<String, String> = raw.hgetall(format!("haul:{{{p}:both}}:limits")).await.unwrap();
    assert_eq!(stored, HashMap::from([("concurrency".to_owned(), "3".to_owned())]));
    for queue in ["both", "per_key"] {
        storage.set_queue_limits(queue, QueueLimits::new()).await.unwrap();
    }
    assert_eq!(common::keys_of(p).await, Vec::<String>::new(), "removing limits leaves no key");
}

#[tokio::test]
async fn the_running_jobs_per_key_count_up_on_claim_and_are_gone_once_they_end() {
    let (storage, guard) = common::storage().await;
    let p = &guard.prefix;
    // No limit: the counts are kept anyway, for a limit set later.
    let mut jobs = keyed("counted", &["a", "a", "b", "c"]);
    jobs.extend(self::jobs("counted", 1));
    enqueue(&storage, jobs.into_iter().map(|job| job.max_attempts(1)).collect(), at(0)).await;
    let running = claim(&storage, "counted", 10, at(1)).await;
    assert_eq!(keys_of(&running), ["a", "a", "b", "c", "-"]);
    assert_eq!(key_running(p, "counted").await, counts(&[("a", 2), ("b", 1), ("c", 1)]));

    complete(&storage, &running[..1], at(2)).await;
    let outcome = JobOutcome::Failed { error: "boom".to_owned(), retry_in: Duration::ZERO };
    let failed = Report { claim: running[2].claim().unwrap(), outcome };
    storage.report(ReportParams::new(vec![failed]).now(at(2))).await.unwrap();
    assert_eq!(key_running(p, "counted").await, counts(&[("a", 1), ("c", 1)]), "a key at 0 has no field");
    complete(&storage, &running[4..], at(2)).await;
    assert_eq!(key_running(p, "counted").await, counts(&[("a", 1), ("c", 1)]), "a job without a key counts nowhere");

    // The leases (1 s) of the other two expire.
    let rescued = storage.rescue_expired(Some(at(10))).await.unwrap();
    assert_eq!(rescued.discarded, 2);
    let exists: bool = common::raw().await.exists(format!("haul:{{{p}:counted}}:key_running")).await.unwrap();
    assert!(!exists, "no running job with a key: no hash");
    complete(&storage, &running[1..2], at(11)).await;
    assert!(key_running(p, "counted").await.is_empty(), "a rejected report gives nothing back");
}

#[tokio::test]
async fn a_claim_takes_a_key_s_jobs_only_while_the_key_has_room() {
    let (storage, guard) = common::storage().await;
    enqueue(&storage, keyed("per_key", &["a"]), at(0)).await;
    let early = claim(&storage, "per_key", 1, at(1)).await;
    // Set after a job of `a` started: it counts.
    set_key_limit(&storage, "per_key", 2).await;
    let mut jobs = keyed("per_key", &["a", "a", "b", "b", "b"]);
    jobs.extend(self::jobs("per_key", 2));
    enqueue(&storage, jobs, at(2)).await;
    let claimed = claim(&storage, "per_key", 10, at(3)).await;
    assert_eq!(keys_of(&claimed), ["a", "b", "b", "-", "-"]);
    assert!(claim(&storage, "per_key", 10, at(3)).await.is_empty());
    complete(&storage, &early, at(4)).await;
    assert_eq!(keys_of(&claim(&storage, "per_key", 10, at(5)).await), ["a"]);
    assert_eq!(key_running(&guard.prefix, "per_key").await, counts(&[("a", 2), ("b", 2)]));

    // Both limits: the queue's caps what the keys leave.
    storage.set_queue_limits("both", QueueLimits::new().concurrency(2).key_concurrency(1)).await.unwrap();
    enqueue(&storage, keyed("both", &["x", "x", "y", "z"]), at(6)).await;
    assert_eq!(keys_of(&claim(&storage, "both", 10, at(7)).await), ["x", "y"]);
}

#[tokio::test]
async fn a_claim_looks_at_no_more_than_the_scan_limit_of_a_key_limited_queue() {
    let (storage, _guard) = common::storage().await;
    set_key_limit(&storage, "deep", 1).await;
    let scan = haul_core::KEY_LIMIT_SCAN;
    let mut keys = vec!["hot"; scan + 1];
    keys.push("cold");
    enqueue(&storage, keyed("deep", &keys), at(0)).await;
    assert_eq!(keys_of(&claim(&storage, "deep", 5, at(1)).await), ["hot"]);
    // `cold` is the first job past those a claim looks at.
    assert!(claim(&storage, "deep", 5, at(1)).await.is_empty());
    let ahead: Vec<NewJob> = keyed("deep", &["early"]).into_iter().map(|job| job.priority(-1)).collect();
    enqueue(&storage, ahead, at(2)).await;
    assert_eq!(keys_of(&claim(&storage, "deep", 5, at(3)).await), ["early"]);
}

#[tokio::test]
async fn racing_claimers_never_run_more_of_a_key_than_its_limit() {
    const LIMIT: i64 = 2;
    const JOBS: usize = 120;
    let (storage, guard) = common::storage().await;
    set_key_limit(&storage, "race", 2).await;
    let keys: Vec<String> = (0..JOBS).map(|n| format!("k{}", n % 3)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    enqueue(&storage, keyed("race", &keys), at(0)).await;
    // What the claimers hold, per key: counted after a claim returns and until its
    // report is sent, so never more than storage counts.
    let held: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let claimers = (0..6).map(|_| {
        let (storage, held, done) = (storage.clone(), Arc::clone(&held), Arc::clone(&done));
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < JOBS {
                assert!(tokio::time::Instant::now() < deadline, "the jobs ran in time");
                let jobs = claim(&storage, "race", 3, at(1)).await;
                for job in &jobs {
                    let mut held = held.lock().unwrap();
                    let count = held.entry(job.limit_key.clone().unwrap()).or_default();
                    *count += 1;
                    assert!(*count <= LIMIT, "{count} jobs of one key run at once");
                }
                tokio::task::yield_now().await;
                for job in &jobs {
                    *held.lock().unwrap().get_mut(job.limit_key.as_deref().unwrap()).unwrap() -= 1;
                }
                complete(&storage, &jobs, at(2)).await;
                done.fetch_add(jobs.len(), Ordering::SeqCst);
            }
        })
    });
    for claimer in claimers.collect::<Vec<_>>() {
        claimer.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), JOBS, "every job ran once");
    assert!(key_running(&guard.prefix, "race").await.is_empty());
}

#[tokio::test]
async fn a_report_that_frees_a_full_key_wakes_the_queue() {
    let (storage, guard) = common::storage().await;
    set_key_limit(&storage, "per_key", 2).await;
    let mut jobs = keyed("per_key", &["a", "a", "a", "b"]);
    jobs.extend(self::jobs("per_key", 1));
    enqueue(&storage, jobs, at(0)).await;
    let running = claim(&storage, "per_key", 5, at(1)).await;
    assert_eq!(keys_of(&running), ["a", "a", "b", "-"]);
    let mut listener = Listener::start(&guard.prefix).await;
    complete(&storage, &running[2..], at(2)).await;
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, Vec::<String>::new(), "neither b nor no key was full");
    complete(&storage, &running[..1], at(2)).await;
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, ["per_key"], "a's next job may start");
}

#[tokio::test]
async fn a_rescue_that_frees_a_full_key_wakes_the_queue() {
    let (storage, guard) = common::storage().await;
    set_key_limit(&storage, "per_key", 1).await;
    // One attempt each: the rescued job is discarded, so nothing else wakes the queue.
    let jobs = keyed("per_key", &["a", "a"]).into_iter().map(|job| job.max_attempts(1)).collect();
    enqueue(&storage, jobs, at(0)).await;
    assert_eq!(claim(&storage, "per_key", 5, at(1)).await.len(), 1);
    let mut listener = Listener::start(&guard.prefix).await;
    assert_eq!(storage.rescue_expired(Some(at(10))).await.unwrap().discarded, 1);
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, ["per_key"]);
}

#[tokio::test]
async fn a_claim_whose_keys_hold_jobs_back_sends_no_wake_up() {
    let (storage, guard) = common::storage().await;
    set_key_limit(&storage, "per_key", 1).await;
    let due = |queue: &str| keyed(queue, &["a", "a", "a"]).into_iter().map(|job| job.run_at(RunAt::At(at(5))));
    enqueue(&storage, due("per_key").collect(), at(0)).await;
    enqueue(&storage, due("free").collect(), at(0)).await;
    let mut listener = Listener::start(&guard.prefix).await;
    // Each claim promotes its queue's three due jobs and takes one: the key-limited
    // queue's claim could take more, so it knows that the jobs left wait for the key.
    assert_eq!(claim(&storage, "per_key", 5, at(10)).await.len(), 1);
    assert_eq!(claim(&storage, "free", 1, at(10)).await.len(), 1);
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, ["free"], "the key-limited queue's waiting jobs wake no one");
}

#[tokio::test]
async fn a_claim_whose_other_queues_take_the_key_limited_queue_s_jobs_places_wakes_it() {
    let (storage, guard) = common::storage().await;
    set_key_limit(&storage, "per_key", 1).await;
    // Keys a, a, a: the claim may take one of them, fewer than its limit of 2.
    let due = keyed("per_key", &["a", "a", "a"]).into_iter().map(|job| job.run_at(RunAt::At(at(5))).priority(5));
    enqueue(&storage, due.collect(), at(0)).await;
    enqueue(&storage, jobs("first", 2).into_iter().map(|job| job.priority(0)).collect(), at(0)).await;
    let mut listener = Listener::start(&guard.prefix).await;
    // The claim promotes per_key's jobs, but `first` fills both places: per_key's first
    // job is still claimable, so the promotion's wake-up stands.
    let claimed = storage
        .claim(ClaimParams::new(["per_key", "first"], 2).lease(Duration::from_secs(1)).now(at(10)))
        .await
        .unwrap();
    assert!(claimed.iter().all(|job| job.queue == "first"), "{claimed:?}");
    mark(&storage, "marker").await;
    assert_eq!(listener.before("marker").await, ["per_key"], "jobs left by the merge, not by the keys, wake the queue");
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
    let storage = RedisStorage::connect_cluster(common::cluster_nodes(), config).await.unwrap();
    assert!(storage.is_cluster());
    let mut raw =
        redis::cluster::ClusterClient::new(common::cluster_nodes()).unwrap().get_async_connection().await.unwrap();

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

/// On a cluster a queue with only a limit per key is in the index; a claim across slots
/// gives what each queue's keys leave and fills the rest from the other queues; the
/// running jobs per key live in each queue's slot. Run as the case above.
#[tokio::test]
#[ignore = "needs a Redis Cluster: HAUL_TEST_REDIS_CLUSTER_URLS"]
async fn on_a_cluster_key_limits_are_listed_and_obeyed() {
    let prefix = common::fresh_prefix();
    let config = haul_redis::RedisConfig::new().prefix(&prefix);
    let storage = RedisStorage::connect_cluster(common::cluster_nodes(), config).await.unwrap();
    let mut raw =
        redis::cluster::ClusterClient::new(common::cluster_nodes()).unwrap().get_async_connection().await.unwrap();

    set_key_limit(&storage, "keyed", 1).await;
    let index: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:limits"), 0, -1).await.unwrap();
    assert_eq!(index, ["keyed"]);
    let listed = storage.queue_limits().await.unwrap();
    assert_eq!(listed, vec![haul_core::QueueLimitsRecord::new("keyed", QueueLimits::new().key_concurrency(1))]);

    // The key-limited queue's jobs come first in claim order, but one key gives one.
    enqueue(&storage, keyed("keyed", &["k", "k", "k", "k"]), at(0)).await;
    enqueue(&storage, jobs("a", 4), at(1)).await;
    enqueue(&storage, jobs("b", 4), at(2)).await;
    let claimed = storage.claim(ClaimParams::new(["keyed", "a", "b"], 7).now(at(10))).await.unwrap();
    let from = |queue: &str| claimed.iter().filter(|job| job.queue == queue).count();
    assert_eq!((from("keyed"), from("a"), from("b")), (1, 4, 2), "{claimed:?}");
    let counts: HashMap<String, i64> = raw.hgetall(format!("haul:{{{prefix}:keyed}}:key_running")).await.unwrap();
    assert_eq!(counts, self::counts(&[("k", 1)]));
    assert!(storage.claim(ClaimParams::new(["keyed", "a"], 5).now(at(10))).await.unwrap().is_empty());

    let keyed_job: Vec<JobRecord> = claimed.into_iter().filter(|job| job.queue == "keyed").collect();
    complete(&storage, &keyed_job, at(11)).await;
    let exists: bool = raw.exists(format!("haul:{{{prefix}:keyed}}:key_running")).await.unwrap();
    assert!(!exists, "the count is gone with the job");
    let next = storage.claim(ClaimParams::new(["keyed", "a", "b"], 7).now(at(12))).await.unwrap();
    assert_eq!(keys_of(&next), ["k", "-", "-"], "the key's next job, then b's");

    storage.set_queue_limits("keyed", QueueLimits::new()).await.unwrap();
    let index: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:limits"), 0, -1).await.unwrap();
    assert!(index.is_empty());
    storage.purge().await.unwrap();
    let exists: bool = raw.exists(format!("haul:{{{prefix}:keyed}}:key_running")).await.unwrap();
    assert!(!exists, "purged");
}
