//! Wake-ups through pub/sub: they name the queue, survive a dropped subscription, and
//! end with the storage.
//!
//! The cases kill pub/sub connections on the test server, so they run one at a time.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::{collections::HashSet, time::Duration};

use haul_core::{EnqueueParams, NewJob, Storage};
use haul_redis::RedisStorage;
use serde_json::json;
use tokio::sync::Mutex;

/// How long a case waits for an event before failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// One case at a time: a case kills the pub/sub connections that appear while it runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn pubsub_client_ids() -> HashSet<String> {
    let mut conn = common::raw().await;
    let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut conn).await.unwrap();
    list.lines().filter_map(|line| line.strip_prefix("id=")?.split(' ').next().map(str::to_owned)).collect()
}

async fn subscribers(prefix: &str) -> i64 {
    let mut conn = common::raw().await;
    let channel = format!("haul:{{{prefix}}}:wakeup");
    let (_, count): (String, i64) =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut conn).await.unwrap();
    count
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn enqueue(storage: &RedisStorage, queue: &str) {
    storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({})).queue(queue)])).await.unwrap();
}

/// Subscribes and kills the subscription's connection; returns the receiver.
async fn subscribe_then_kill(storage: &RedisStorage) -> haul_core::Wakeups {
    let before = pubsub_client_ids().await;
    let wakeups = storage.subscribe().await.unwrap();
    let mine: Vec<String> = pubsub_client_ids().await.difference(&before).cloned().collect();
    assert_eq!(mine.len(), 1, "one subscription per storage");
    let mut conn = common::raw().await;
    let _: redis::Value =
        redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&mine[0]).query_async(&mut conn).await.unwrap();
    wakeups
}

#[tokio::test]
async fn a_wake_up_names_the_queue_that_got_work() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (storage, _guard) = common::storage().await;
    let mut wakeups = storage.subscribe().await.unwrap();
    enqueue(&storage, "other").await;
    enqueue(&storage, "mail").await;
    let woken = tokio::time::timeout(PATIENCE, wakeups.wait_for(&["mail".to_owned()])).await;
    assert_eq!(woken, Ok(true));
}

#[tokio::test]
async fn the_subscription_is_made_again_after_its_connection_drops() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (storage, guard) = common::storage().await;
    let mut wakeups = subscribe_then_kill(&storage).await;
    eventually("the storage to subscribe again", async || subscribers(&guard.prefix).await == 1).await;

    enqueue(&storage, "mail").await;
    let woken = tokio::time::timeout(PATIENCE, wakeups.wait_for(&["mail".to_owned()])).await;
    assert_eq!(woken, Ok(true));
}

#[tokio::test]
async fn work_that_arrived_while_the_subscription_was_down_still_wakes() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (storage, _guard) = common::storage().await;
    let mut wakeups = subscribe_then_kill(&storage).await;
    // Most likely published while nobody listens; the storage then wakes every queue
    // once it has subscribed again.
    enqueue(&storage, "mail").await;
    let woken = tokio::time::timeout(PATIENCE, wakeups.wait_for(&["mail".to_owned()])).await;
    assert_eq!(woken, Ok(true));
}

#[tokio::test]
async fn dropping_the_storage_ends_its_subscription() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (storage, guard) = common::storage().await;
    let mut wakeups = storage.subscribe().await.unwrap();
    let _again = storage.subscribe().await.unwrap();
    assert_eq!(subscribers(&guard.prefix).await, 1, "one subscription however many receivers");
    drop(storage);
    eventually("the subscription to end", async || subscribers(&guard.prefix).await == 0).await;
    let woken = tokio::time::timeout(PATIENCE, wakeups.wait_for(&["mail".to_owned()])).await;
    assert_eq!(woken, Ok(false), "no wake-up will ever come");
}
