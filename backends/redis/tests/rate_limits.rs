//! Rate limits on Redis: where they are stored, how claims obey them (racing claimers
//! included), what `rate_limited_for` a claim tells, and the start sets the claims
//! keep (`haul:{<prefix>:<queue>}:starts` and `…:starts:<limit key>`), on one server and
//! on a cluster.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use haul_core::{
    Admin, ClaimParams, EnqueueParams, JobRecord, NewJob, PacedClaim, QueueLimits, QueueLimitsRecord, RateLimit,
    Storage, Timestamp,
};
use haul_redis::RedisStorage;
use redis::AsyncCommands;
use serde_json::json;

/// An instant `ms` milliseconds after a fixed origin.
fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
}

fn at(seconds: i64) -> Timestamp {
    at_ms(seconds * 1_000)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn jobs(queue: &str, n: usize) -> Vec<NewJob> {
    (0..n).map(|_| NewJob::new("plain", json!({})).queue(queue)).collect()
}

fn keyed(queue: &str, keys: &[&str]) -> Vec<NewJob> {
    keys.iter()
        .map(|key| {
            let job = NewJob::new("plain", json!({})).queue(queue);
            if *key == "-" { job } else { job.limit_key(*key) }
        })
        .collect()
}

async fn enqueue(storage: &RedisStorage, jobs: Vec<NewJob>, now: Timestamp) {
    storage.enqueue(EnqueueParams::new(jobs).now(now)).await.unwrap();
}

async fn claim(storage: &RedisStorage, queues: &[&str], limit: usize, now: Timestamp) -> PacedClaim {
    let params = ClaimParams::new(queues.iter().copied(), limit).lease(secs(600)).now(now);
    storage.claim_paced(params).await.unwrap()
}

/// The limit keys of `jobs`, in order (`-` for none).
fn keys_of(jobs: &[JobRecord]) -> Vec<String> {
    jobs.iter().map(|job| job.limit_key.clone().unwrap_or_else(|| "-".to_owned())).collect()
}

fn queues_of(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|job| job.queue.as_str()).collect()
}

async fn set(storage: &RedisStorage, queue: &str, limits: QueueLimits) {
    storage.set_queue_limits(queue, limits).await.unwrap();
}

/// The members of a start set and its time to live in ms (-2: no such key).
async fn start_set(key: &str) -> (Vec<(String, i64)>, i64) {
    let mut raw = common::raw().await;
    let members: Vec<(String, i64)> = raw.zrange_withscores(key, 0, -1).await.unwrap();
    let ttl: i64 = raw.pttl(key).await.unwrap();
    (members, ttl)
}

#[tokio::test]
async fn rate_limits_live_in_the_limits_hash_and_read_back() {
    let (storage, guard) = common::storage().await;
    let p = &guard.prefix;
    let both =
        QueueLimits::new().rate(RateLimit::per_minute(100)).key_rate(RateLimit::new(2, Duration::from_millis(1_500)));
    set(&storage, "paced", both).await;
    set(&storage, "keyed", QueueLimits::new().concurrency(3).key_rate(RateLimit::per_hour(7))).await;
    let mut raw = common::raw().await;
    let stored: HashMap<String, String> = raw.hgetall(format!("haul:{{{p}:paced}}:limits")).await.unwrap();
    let expected =
        [("rate_starts", "100"), ("rate_period_ms", "60000"), ("key_rate_starts", "2"), ("key_rate_period_ms", "1500")];
    assert_eq!(stored, expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
    let listed = storage.queue_limits().await.unwrap();
    assert_eq!(
        listed,
        vec![
            QueueLimitsRecord::new("keyed", QueueLimits::new().concurrency(3).key_rate(RateLimit::per_hour(7))),
            QueueLimitsRecord::new("paced", both),
        ]
    );

    // The last call wins: a field it leaves out goes.
    set(&storage, "paced", QueueLimits::new().key_rate(RateLimit::per_second(1))).await;
    let stored: HashMap<String, String> = raw.hgetall(format!("haul:{{{p}:paced}}:limits")).await.unwrap();
    let expected = [("key_rate_starts", "1"), ("key_rate_period_ms", "1000")];
    assert_eq!(stored, expected.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());

    // A half-written rate limit is refused, not read as none.
    let _: () = raw.hdel(format!("haul:{{{p}:paced}}:limits"), "key_rate_period_ms").await.unwrap();
    assert!(storage.queue_limits().await.is_err());
    for queue in ["paced", "keyed"] {
        set(&storage, queue, QueueLimits::new()).await;
    }
    assert_eq!(common::keys_of(p).await, Vec::<String>::new(), "removing limits leaves no key");
}

#[tokio::test]
async fn a_claim_starts_no_more_than_the_rate_in_a_window_and_tells_when_the_next_may_start() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "paced", QueueLimits::new().rate(RateLimit::new(2, secs(10)))).await;
    enqueue(&storage, jobs("paced", 6), at(0)).await;

    let first = claim(&storage, &["paced"], 5, at(100)).await;
    assert_eq!(first.jobs.len(), 2);
    assert_eq!(first.rate_limited_for, Some(secs(10)), "its own two starts fill the window");
    // The contract's example: 3 s later the window is full for 7 s more.
    let later = claim(&storage, &["paced"], 5, at(103)).await;
    assert!(later.jobs.is_empty());
    assert_eq!(later.rate_limited_for, Some(secs(7)));
    let just_before = claim(&storage, &["paced"], 5, at_ms(109_999)).await;
    assert!(just_before.jobs.is_empty());
    assert_eq!(just_before.rate_limited_for, Some(Duration::from_millis(1)));
    // The window is (t - period, t]: the starts at 100 s are out of it at 110 s.
    let next = claim(&storage, &["paced"], 1, at(110)).await;
    assert_eq!(next.jobs.len(), 1);
    assert_eq!(next.rate_limited_for, None, "no room in the claim's limit: nothing was held back");
    let sliding = claim(&storage, &["paced"], 5, at(115)).await;
    assert_eq!(sliding.jobs.len(), 1, "one start left in (105 s, 115 s]");
    assert_eq!(sliding.rate_limited_for, Some(secs(5)), "the start at 110 s leaves the window at 120 s");

    // The last two fill the window, but nothing is left to hold back.
    let rest = claim(&storage, &["paced"], 5, at(130)).await;
    assert_eq!((rest.jobs.len(), rest.rate_limited_for), (2, None));
    assert_eq!(claim(&storage, &["paced"], 5, at(131)).await.rate_limited_for, None);
    // No rate limit: never a wait.
    enqueue(&storage, jobs("free", 3), at(0)).await;
    let free = claim(&storage, &["free"], 2, at(131)).await;
    assert_eq!((free.jobs.len(), free.rate_limited_for), (2, None));
}

#[tokio::test]
async fn every_limit_applies_together() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "both", QueueLimits::new().concurrency(1).rate(RateLimit::new(3, secs(60)))).await;
    enqueue(&storage, jobs("both", 5), at(0)).await;
    let first = claim(&storage, &["both"], 5, at(1)).await;
    assert_eq!(first.jobs.len(), 1);
    assert_eq!(first.rate_limited_for, None, "the concurrency limit held the others back, not the rate");
    let blocked = claim(&storage, &["both"], 5, at(2)).await;
    assert_eq!((blocked.jobs.len(), blocked.rate_limited_for), (0, None));
}

#[tokio::test]
async fn a_key_rate_limits_each_key_and_lets_other_keys_jobs_by() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "per_key", QueueLimits::new().key_rate(RateLimit::new(1, secs(60)))).await;
    enqueue(&storage, keyed("per_key", &["a", "a", "b", "-", "b", "c"]), at(0)).await;

    let first = claim(&storage, &["per_key"], 10, at(1)).await;
    assert_eq!(keys_of(&first.jobs), ["a", "b", "-", "c"]);
    assert_eq!(first.rate_limited_for, Some(secs(60)), "the second a and b wait for their keys");
    let later = claim(&storage, &["per_key"], 10, at(31)).await;
    assert!(later.jobs.is_empty());
    assert_eq!(later.rate_limited_for, Some(secs(30)));
    // A key held back does not hold back the keys behind it.
    enqueue(&storage, keyed("per_key", &["d", "-"]), at(31)).await;
    let others = claim(&storage, &["per_key"], 10, at(32)).await;
    assert_eq!(keys_of(&others.jobs), ["d", "-"]);
    assert_eq!(others.rate_limited_for, Some(secs(29)));
    let next = claim(&storage, &["per_key"], 10, at(61)).await;
    assert_eq!(keys_of(&next.jobs), ["a", "b"]);

    // With a concurrency limit per key as well: a key that is full is not rate-limited.
    set(&storage, "both", QueueLimits::new().key_concurrency(1).key_rate(RateLimit::new(5, secs(60)))).await;
    enqueue(&storage, keyed("both", &["x", "x"]), at(0)).await;
    let both = claim(&storage, &["both"], 10, at(1)).await;
    assert_eq!((keys_of(&both.jobs), both.rate_limited_for), (vec!["x".to_owned()], None));
}

#[tokio::test]
async fn a_queue_and_a_key_rate_both_apply_and_the_sooner_wait_is_told() {
    let (storage, _guard) = common::storage().await;
    let limits = QueueLimits::new().rate(RateLimit::new(3, secs(60))).key_rate(RateLimit::new(1, secs(10)));
    set(&storage, "q", limits).await;
    enqueue(&storage, keyed("q", &["a", "a", "b", "c", "d"]), at(0)).await;
    let first = claim(&storage, &["q"], 10, at(1)).await;
    assert_eq!(keys_of(&first.jobs), ["a", "b", "c"]);
    // The second a waits 10 s for its key, d 60 s for the queue: the sooner.
    assert_eq!(first.rate_limited_for, Some(secs(10)));
    let later = claim(&storage, &["q"], 10, at(12)).await;
    assert!(later.jobs.is_empty(), "a's key has room again, the queue has not");
    assert_eq!(later.rate_limited_for, Some(secs(49)));
}

#[tokio::test]
async fn a_multi_queue_claim_fills_up_from_other_queues_and_tells_the_sooner_wait() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "slow", QueueLimits::new().rate(RateLimit::new(1, secs(10)))).await;
    set(&storage, "slower", QueueLimits::new().rate(RateLimit::new(1, secs(40)))).await;
    enqueue(&storage, jobs("slow", 3), at(0)).await;
    enqueue(&storage, jobs("slower", 3), at(1)).await;
    enqueue(&storage, jobs("free", 3), at(2)).await;
    let queues = ["slow", "slower", "free"];

    let first = claim(&storage, &queues, 4, at(10)).await;
    assert_eq!(queues_of(&first.jobs), ["slow", "slower", "free", "free"]);
    assert_eq!(first.rate_limited_for, Some(secs(10)));
    let second = claim(&storage, &queues, 4, at(13)).await;
    assert_eq!(queues_of(&second.jobs), ["free"]);
    assert_eq!(second.rate_limited_for, Some(secs(7)), "the sooner of 7 s and 37 s");
    // Held back, but past the claim's limit: the claim would not have taken them.
    enqueue(&storage, jobs("free", 2).into_iter().map(|job| job.priority(-1)).collect(), at(14)).await;
    let full = claim(&storage, &queues, 2, at(15)).await;
    assert_eq!(queues_of(&full.jobs), ["free", "free"]);
    assert_eq!(full.rate_limited_for, None);
}

#[tokio::test]
async fn start_sets_keep_the_last_starts_within_the_period_and_expire() {
    let (storage, guard) = common::storage().await;
    let p = &guard.prefix;
    let limits = QueueLimits::new().rate(RateLimit::new(3, secs(60))).key_rate(RateLimit::new(2, secs(30)));
    set(&storage, "q", limits).await;
    enqueue(&storage, keyed("q", &["k", "k", "k", "-", "-", "-", "-", "-"]), at(0)).await;
    let queue_set = format!("haul:{{{p}:q}}:starts");
    let key_set = format!("haul:{{{p}:q}}:starts:k");

    // Three jobs in one ms: three members.
    let first = claim(&storage, &["q"], 10, at(1)).await;
    assert_eq!(keys_of(&first.jobs), ["k", "k", "-"]);
    let (members, ttl) = start_set(&queue_set).await;
    let tokens: Vec<String> = first.jobs.iter().map(|job| job.lease_token.unwrap().to_string()).collect();
    let mut expected: Vec<(String, i64)> = tokens.iter().map(|token| (token.clone(), 1_700_000_001_000)).collect();
    expected.sort();
    assert_eq!(members, expected, "one member per start, its lease token, scored by the claim's ms");
    assert!(ttl > 50_000 && ttl <= 60_000, "expires after the period: {ttl}");
    let (members, ttl) = start_set(&key_set).await;
    assert_eq!(members.len(), 2);
    assert!(ttl > 20_000 && ttl <= 30_000, "the key's set expires after its period: {ttl}");

    // Past the period, older starts go; never more than `starts` are kept.
    let second = claim(&storage, &["q"], 10, at(62)).await;
    assert_eq!(keys_of(&second.jobs), ["k", "-", "-"]);
    let (members, _) = start_set(&queue_set).await;
    assert_eq!(members.iter().map(|(_, at)| *at).collect::<Vec<_>>(), [1_700_000_062_000; 3]);
    let (members, _) = start_set(&key_set).await;
    assert_eq!(members.len(), 1, "the key's starts at 1 s left its window");

    // A lower limit: the set is cut to its last starts.
    set(&storage, "q", QueueLimits::new().rate(RateLimit::new(1, secs(60)))).await;
    set(&storage, "q", QueueLimits::new().rate(RateLimit::new(5, secs(60)))).await;
    let third = claim(&storage, &["q"], 1, at(63)).await;
    assert_eq!(third.jobs.len(), 1);
    set(&storage, "q", QueueLimits::new().rate(RateLimit::new(2, secs(60)))).await;
    assert!(claim(&storage, &["q"], 1, at(64)).await.jobs.is_empty(), "4 starts in the window, 2 allowed");
    set(&storage, "q", QueueLimits::new().rate(RateLimit::new(5, secs(60)))).await;
    assert_eq!(claim(&storage, &["q"], 1, at(64)).await.jobs.len(), 1);
    set(&storage, "q", QueueLimits::new().rate(RateLimit::new(2, secs(60)))).await;
    assert!(claim(&storage, &["q"], 1, at(65)).await.jobs.is_empty());
    let (members, _) = start_set(&queue_set).await;
    assert_eq!(members.len(), 5, "a claim that takes nothing writes nothing");

    // A queue without a rate limit keeps no start set.
    enqueue(&storage, keyed("free", &["k", "-"]), at(0)).await;
    assert_eq!(claim(&storage, &["free"], 5, at(1)).await.jobs.len(), 2);
    let free_keys: Vec<String> =
        common::keys_of(p).await.into_iter().filter(|key| key.contains(":free}:starts")).collect();
    assert!(free_keys.is_empty(), "{free_keys:?}");
}

#[tokio::test]
async fn starts_after_a_claims_time_still_count_when_the_clock_goes_back() {
    let (storage, guard) = common::storage().await;
    let key = format!("haul:{{{}:q}}:starts", guard.prefix);
    set(&storage, "q", QueueLimits::new().rate(RateLimit::new(2, secs(10)))).await;
    enqueue(&storage, jobs("q", 6), at(0)).await;
    assert_eq!(claim(&storage, &["q"], 5, at(100)).await.jobs.len(), 2);
    // A clock behind the last claim's (a server clock stepped back, or an override):
    // the later starts still count, so nothing starts until they leave the window.
    let behind = claim(&storage, &["q"], 5, at(95)).await;
    assert!(behind.jobs.is_empty());
    assert_eq!(behind.rate_limited_for, Some(secs(15)));
    assert!(claim(&storage, &["q"], 5, at(96)).await.jobs.is_empty());
    assert_eq!(claim(&storage, &["q"], 5, at(110)).await.jobs.len(), 2);
    let (members, ttl) = start_set(&key).await;
    assert_eq!(members.iter().map(|(_, at)| *at).collect::<Vec<_>>(), [1_700_000_110_000; 2]);
    assert!(ttl > 0 && ttl <= 10_000, "{ttl}");
}

/// The wake-ups sent on `prefix`'s channel while `work` runs, up to the one for
/// `marker` (which `work` sends last, so that everything before it has arrived).
async fn wake_ups_until(prefix: &str, marker: &str, work: impl std::future::Future<Output = ()>) -> Vec<String> {
    use futures_util::StreamExt as _;
    let mut pubsub = redis::Client::open(common::url()).unwrap().get_async_pubsub().await.unwrap();
    pubsub.subscribe(format!("haul:{{{prefix}}}:wakeup")).await.unwrap();
    let mut messages = pubsub.into_on_message();
    work.await;
    let mut heard = Vec::new();
    loop {
        let message = tokio::time::timeout(secs(10), messages.next()).await.expect("a wake-up comes in time");
        let payload: String = message.unwrap().get_payload().unwrap();
        if payload == marker {
            return heard;
        }
        heard.push(payload);
    }
}

#[tokio::test]
async fn a_claim_its_rate_limit_holds_back_sends_no_wake_up() {
    let (storage, guard) = common::storage().await;
    set(&storage, "paced", QueueLimits::new().rate(RateLimit::new(1, secs(10)))).await;
    let due = |queue: &str| jobs(queue, 3).into_iter().map(|job| job.run_at(haul_core::RunAt::At(at(5)))).collect();
    enqueue(&storage, due("paced"), at(0)).await;
    enqueue(&storage, due("free"), at(0)).await;
    let heard = wake_ups_until(&guard.prefix, "marker", async {
        // Each claim promotes its queue's three due jobs and takes one.
        assert_eq!(claim(&storage, &["paced"], 5, at(10)).await.jobs.len(), 1);
        assert_eq!(claim(&storage, &["free"], 1, at(10)).await.jobs.len(), 1);
        set(&storage, "marker", QueueLimits::new().concurrency(1)).await;
    })
    .await;
    assert_eq!(heard, ["free"], "the rate-limited queue's waiting jobs wake no one: the claim tells when to come back");
}

/// Claims from `claimers` tasks at once at each of `steps` instants `step_ms` apart,
/// and returns the claimed jobs' start times (ms) and keys.
async fn race(storage: &RedisStorage, queue: &str, claimers: usize, steps: i64, step_ms: i64) -> Vec<(i64, String)> {
    let mut starts = Vec::new();
    for step in 0..steps {
        let now = step * step_ms;
        let tasks: Vec<_> = (0..claimers)
            .map(|_| {
                let storage = storage.clone();
                let queue = queue.to_owned();
                tokio::spawn(async move { claim(&storage, &[queue.as_str()], 3, at_ms(now)).await })
            })
            .collect();
        for task in tasks {
            for job in task.await.unwrap().jobs {
                starts.push((now, job.limit_key.unwrap_or_else(|| "-".to_owned())));
            }
        }
    }
    starts
}

/// The most starts in any window `(t - period, t]` of `starts` (sorted times, ms).
fn busiest_window(starts: &[i64], period_ms: i64) -> usize {
    starts.iter().map(|&end| starts.iter().filter(|&&at| at > end - period_ms && at <= end).count()).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claimers_never_start_more_than_the_rate_in_any_window() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "race", QueueLimits::new().rate(RateLimit::new(5, secs(1)))).await;
    enqueue(&storage, jobs("race", 400), at(0)).await;
    let starts = race(&storage, "race", 8, 16, 250).await;
    let times: Vec<i64> = starts.iter().map(|(at, _)| *at).collect();
    assert_eq!(busiest_window(&times, 1_000), 5, "{times:?}");
    // The window slides: 5 at 0 ms, none until 1000 ms, then 5 each second.
    let per_time: BTreeMap<i64, usize> = times.iter().fold(BTreeMap::new(), |mut counts, at| {
        *counts.entry(*at).or_default() += 1;
        counts
    });
    assert_eq!(per_time, [(0, 5), (1_000, 5), (2_000, 5), (3_000, 5)].into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claimers_never_start_more_of_a_key_than_its_rate_in_any_window() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "race", QueueLimits::new().key_rate(RateLimit::new(2, Duration::from_millis(700)))).await;
    let keys: Vec<&str> = (0..300).map(|n| ["k0", "k1", "k2"][n % 3]).collect();
    enqueue(&storage, keyed("race", &keys), at(0)).await;
    let starts = race(&storage, "race", 8, 12, 200).await;
    for key in ["k0", "k1", "k2"] {
        let times: Vec<i64> = starts.iter().filter(|(_, k)| k == key).map(|(at, _)| *at).collect();
        assert_eq!(busiest_window(&times, 700), 2, "{key}: {times:?}");
        assert_eq!(times, [0, 0, 800, 800, 1_600, 1_600], "{key}: 2 at once, then none for 700 ms");
    }
}

/// On a cluster each queue's script enforces its rate limits in its slot (the start
/// sets, per key too, live there), a claim across slots fills up from the other
/// queues, and tells the sooner wait of its queues. Run with
/// `HAUL_TEST_REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,… cargo test -p haul-redis
/// --test rate_limits -- --ignored on_a_cluster`.
#[tokio::test]
#[ignore = "needs a Redis Cluster: HAUL_TEST_REDIS_CLUSTER_URLS"]
async fn on_a_cluster_rate_limits_are_listed_and_obeyed() {
    let prefix = common::fresh_prefix();
    let config = haul_redis::RedisConfig::new().prefix(&prefix);
    let storage = RedisStorage::connect_cluster(common::cluster_nodes(), config).await.unwrap();
    let mut raw =
        redis::cluster::ClusterClient::new(common::cluster_nodes()).unwrap().get_async_connection().await.unwrap();

    set(&storage, "paced", QueueLimits::new().rate(RateLimit::new(2, secs(10)))).await;
    set(&storage, "keyed", QueueLimits::new().key_rate(RateLimit::new(1, secs(4)))).await;
    let listed = storage.queue_limits().await.unwrap();
    assert_eq!(
        listed,
        vec![
            QueueLimitsRecord::new("keyed", QueueLimits::new().key_rate(RateLimit::new(1, secs(4)))),
            QueueLimitsRecord::new("paced", QueueLimits::new().rate(RateLimit::new(2, secs(10)))),
        ]
    );

    enqueue(&storage, jobs("paced", 4), at(0)).await;
    enqueue(&storage, keyed("keyed", &["k", "k", "j"]), at(1)).await;
    enqueue(&storage, jobs("free", 4), at(2)).await;
    let queues = ["paced", "keyed", "free"];
    let first = claim(&storage, &queues, 7, at(10)).await;
    let from = |claimed: &PacedClaim, queue: &str| claimed.jobs.iter().filter(|job| job.queue == queue).count();
    assert_eq!((from(&first, "paced"), from(&first, "keyed"), from(&first, "free")), (2, 2, 3), "{first:?}");
    assert_eq!(first.rate_limited_for, Some(secs(4)), "k's second job waits 4 s, paced's jobs 10 s");
    let starts: Vec<String> = raw.zrange(format!("haul:{{{prefix}:keyed}}:starts:k"), 0, -1).await.unwrap();
    assert_eq!(starts.len(), 1, "the key's start set, in the queue's slot");
    let ttl: i64 = raw.pttl(format!("haul:{{{prefix}:paced}}:starts")).await.unwrap();
    assert!(ttl > 0 && ttl <= 10_000, "{ttl}");

    let second = claim(&storage, &queues, 7, at(12)).await;
    assert_eq!(queues_of(&second.jobs), ["free"]);
    assert_eq!(second.rate_limited_for, Some(secs(2)));
    let third = claim(&storage, &["paced", "keyed"], 7, at(14)).await;
    assert_eq!(keys_of(&third.jobs), ["k"]);
    assert_eq!(third.rate_limited_for, Some(secs(6)));
    let fourth = claim(&storage, &["paced", "keyed"], 7, at(20)).await;
    assert_eq!(queues_of(&fourth.jobs), ["paced", "paced"]);
    assert_eq!(fourth.rate_limited_for, None);

    storage.purge().await.unwrap();
    for key in [format!("haul:{{{prefix}:paced}}:starts"), format!("haul:{{{prefix}:paced}}:limits")] {
        let exists: bool = raw.exists(&key).await.unwrap();
        assert!(!exists, "{key} is purged");
    }
    // The start sets of keys are not reachable from the queue's keys: they expire.
    let _: u64 = raw.del(format!("haul:{{{prefix}:keyed}}:starts:k")).await.unwrap();
    let _: u64 = raw.del(format!("haul:{{{prefix}:keyed}}:starts:j")).await.unwrap();
}
