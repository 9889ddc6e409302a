//! Throughput on Redis (`haul:{<p>}:throughput` and its index
//! `haul:{<p>}:throughput:minutes`): concurrent calls add up, old minutes are dropped
//! relative to the call's `now` (or the server's clock), a bad sample records nothing,
//! and `purge` deletes the keys.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use chrono::{TimeDelta, TimeZone, Utc};
use haul_core::{Admin as _, Storage, THROUGHPUT_RETENTION, ThroughputSample, Timestamp};
use redis::AsyncCommands;

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).single().unwrap()
}

fn at(seconds: i64) -> Timestamp {
    t0() + TimeDelta::seconds(seconds)
}

fn sample(queue: &str, at: Timestamp, completed: u64, failed: u64) -> ThroughputSample {
    ThroughputSample::new(queue, at, completed, failed)
}

/// The retention in seconds.
fn retention() -> i64 {
    i64::try_from(THROUGHPUT_RETENTION.as_secs()).unwrap()
}

/// Field and member counts of the two keys.
async fn stored(prefix: &str) -> (usize, usize) {
    let mut conn = common::raw().await;
    let fields: usize = conn.hlen(format!("haul:{{{prefix}}}:throughput")).await.unwrap();
    let members: usize = conn.zcard(format!("haul:{{{prefix}}}:throughput:minutes")).await.unwrap();
    (fields, members)
}

#[tokio::test]
async fn concurrent_calls_add_up_per_queue_and_minute() {
    let (storage, guard) = common::storage().await;
    let calls = (0..40u64).map(|call| {
        let storage = storage.clone();
        // Two samples of one minute of `mail` in each call (merged before sending),
        // seconds apart, and one of `reports` every other call.
        let mut samples = vec![sample("mail", at(5), 1, 0), sample("mail", at(59), 0, 2)];
        if call % 2 == 0 {
            samples.push(sample("reports", at(60), 3, 1));
        }
        tokio::spawn(async move { storage.record_throughput(samples, Some(at(90))).await })
    });
    for result in futures_util::future::join_all(calls).await {
        result.unwrap().unwrap();
    }
    // Another connection counts into the same fields.
    let other =
        haul_redis::RedisStorage::connect_with(&common::url(), haul_redis::RedisConfig::new().prefix(&guard.prefix))
            .await
            .unwrap();
    let (first, second) = tokio::join!(
        storage.record_throughput(vec![sample("mail", at(0), 10, 0)], Some(at(90))),
        other.record_throughput(vec![sample("mail", at(1), 0, 10)], Some(at(90))),
    );
    first.unwrap();
    second.unwrap();

    assert_eq!(
        storage.throughput(at(0)).await.unwrap(),
        vec![sample("mail", at(0), 50, 90), sample("reports", at(60), 60, 20)]
    );
    assert_eq!(stored(&guard.prefix).await, (4, 2), "two fields per queue and minute, one index member");
}

#[tokio::test]
async fn reads_start_at_the_minute_holding_since_and_order_by_queue_then_minute() {
    let (storage, _guard) = common::storage().await;
    let samples = vec![
        sample("zeta", at(0), 1, 0),
        sample("alpha", at(120), 2, 0),
        sample("alpha", at(-60), 4, 0),
        sample("alpha", at(0), 3, 0),
        sample("idle", at(60), 0, 0),
    ];
    storage.record_throughput(samples, Some(at(120))).await.unwrap();

    let all = storage.throughput(at(-60)).await.unwrap();
    assert_eq!(
        all,
        vec![
            sample("alpha", at(-60), 4, 0),
            sample("alpha", at(0), 3, 0),
            sample("alpha", at(120), 2, 0),
            sample("idle", at(60), 0, 0),
            sample("zeta", at(0), 1, 0),
        ]
    );
    // `since` in the middle of a minute includes that minute.
    let since = storage.throughput(at(59)).await.unwrap();
    assert_eq!(
        since,
        vec![
            sample("alpha", at(0), 3, 0),
            sample("alpha", at(120), 2, 0),
            sample("idle", at(60), 0, 0),
            sample("zeta", at(0), 1, 0)
        ]
    );
    assert!(storage.throughput(at(180)).await.unwrap().is_empty());
}

#[tokio::test]
async fn minutes_older_than_the_retention_before_the_calls_now_are_dropped() {
    let (storage, guard) = common::storage().await;
    let kept_from = at(-retention()); // the minute holding now - retention, with now = t0
    let samples = vec![
        sample("mail", kept_from - TimeDelta::minutes(1), 1, 0),
        sample("mail", kept_from, 2, 0),
        sample("mail", at(0), 3, 0),
        sample("other", kept_from - TimeDelta::minutes(30), 0, 1),
    ];
    // With an earlier `now`, every minute is within the retention.
    storage.record_throughput(samples, Some(at(-3600))).await.unwrap();
    assert_eq!(storage.throughput(at(-4 * 3600)).await.unwrap().len(), 4);
    assert_eq!(stored(&guard.prefix).await, (8, 4));

    // A call at t0 (30 s into the minute: the cut is at the minute holding now - retention)
    // drops the minutes before that one, whatever their queue, fields and members alike.
    storage.record_throughput(vec![sample("mail", at(30), 1, 1)], Some(at(30))).await.unwrap();
    assert_eq!(
        storage.throughput(at(-4 * 3600)).await.unwrap(),
        vec![sample("mail", kept_from, 2, 0), sample("mail", at(0), 4, 1)]
    );
    assert_eq!(stored(&guard.prefix).await, (4, 2));

    // A sample already older than the retention is dropped by its own call.
    storage.record_throughput(vec![sample("late", at(-3 * 3600), 9, 9)], Some(at(30))).await.unwrap();
    assert!(storage.throughput(at(-4 * 3600)).await.unwrap().iter().all(|sample| sample.queue != "late"));
    assert_eq!(stored(&guard.prefix).await, (4, 2));
}

#[tokio::test]
async fn without_now_the_servers_clock_decides_what_is_dropped() {
    let (storage, _guard) = common::storage().await;
    let now = Utc::now();
    let old = now - TimeDelta::seconds(retention() + 600);
    storage.record_throughput(vec![sample("mail", old, 1, 0), sample("mail", now, 2, 0)], None).await.unwrap();
    assert_eq!(storage.throughput(old).await.unwrap(), vec![sample("mail", now, 2, 0)]);
}

#[tokio::test]
async fn an_invalid_queue_records_nothing_and_no_samples_write_nothing() {
    let (storage, guard) = common::storage().await;
    let samples = vec![sample("mail", at(0), 1, 0), sample("bad queue", at(0), 1, 0)];
    let error = storage.record_throughput(samples, Some(at(0))).await.unwrap_err();
    assert!(matches!(error, haul_core::Error::InvalidName { .. }), "{error}");
    storage.record_throughput(Vec::new(), Some(at(0))).await.unwrap();
    assert!(storage.throughput(at(-3600)).await.unwrap().is_empty());
    assert!(common::keys_of(&guard.prefix).await.is_empty());
}

#[tokio::test]
async fn purge_deletes_the_counts_and_their_index() {
    let (storage, guard) = common::storage().await;
    storage.record_throughput(vec![sample("mail", at(0), 1, 0)], Some(at(0))).await.unwrap();
    let prefix = &guard.prefix;
    assert_eq!(
        common::keys_of(prefix).await,
        vec![format!("haul:{{{prefix}}}:throughput"), format!("haul:{{{prefix}}}:throughput:minutes")]
    );
    assert_eq!(storage.purge().await.unwrap(), 2);
    assert!(storage.throughput(at(-3600)).await.unwrap().is_empty());
}

#[tokio::test]
async fn counts_saturate_at_the_largest_redis_integer() {
    let (storage, _guard) = common::storage().await;
    for _ in 0..2 {
        storage.record_throughput(vec![sample("mail", at(0), u64::MAX, 1)], Some(at(0))).await.unwrap();
    }
    let largest = u64::try_from(i64::MAX).unwrap();
    assert_eq!(storage.throughput(at(0)).await.unwrap(), vec![sample("mail", at(0), largest, 2)]);
}

/// On a cluster both keys are in the prefix's slot: concurrent calls add up, old
/// minutes are dropped and `purge` finds both keys. Run with
/// `HAUL_TEST_REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,… cargo test -p haul-redis
/// --test throughput -- --ignored on_a_cluster`.
#[tokio::test]
#[ignore = "needs a Redis Cluster: HAUL_TEST_REDIS_CLUSTER_URLS"]
async fn on_a_cluster_calls_add_up_and_old_minutes_are_dropped() {
    let nodes: Vec<String> = std::env::var("HAUL_TEST_REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| panic!("set HAUL_TEST_REDIS_CLUSTER_URLS to the nodes of a Redis Cluster"))
        .split(',')
        .map(str::to_owned)
        .collect();
    let prefix = common::fresh_prefix();
    let storage =
        haul_redis::RedisStorage::connect_cluster(nodes, haul_redis::RedisConfig::new().prefix(&prefix)).await.unwrap();
    assert!(storage.is_cluster());

    let old = at(-retention() - 60);
    storage.record_throughput(vec![sample("a", old, 1, 0)], Some(at(-3600))).await.unwrap();
    let calls = (0..20).map(|_| {
        let storage = storage.clone();
        let samples = vec![sample("a", at(0), 1, 0), sample("b", at(0), 0, 1), sample("c", at(60), 2, 2)];
        tokio::spawn(async move { storage.record_throughput(samples, Some(at(60))).await })
    });
    for result in futures_util::future::join_all(calls).await {
        result.unwrap().unwrap();
    }
    assert_eq!(
        storage.throughput(old).await.unwrap(),
        vec![sample("a", at(0), 20, 0), sample("b", at(0), 0, 20), sample("c", at(60), 40, 40)]
    );
    assert_eq!(storage.purge().await.unwrap(), 2, "the counts and their index");
    assert!(storage.throughput(old).await.unwrap().is_empty());
}
