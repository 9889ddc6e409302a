//! A dropped connection is made again: the calls after it succeed.
//!
//! Alone in its test binary, since it kills connections on the test server.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use std::{collections::HashSet, time::Duration};

use haul_core::{EnqueueParams, NewJob, Storage};
use haul_redis::{RedisConfig, RedisStorage};
use serde_json::json;

/// The ids of the server's clients of `kind` (`normal`, `pubsub`).
async fn client_ids(kind: &str) -> HashSet<String> {
    let mut conn = common::raw().await;
    let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg(kind).query_async(&mut conn).await.unwrap();
    list.lines().filter_map(|line| line.strip_prefix("id=")?.split(' ').next().map(str::to_owned)).collect()
}

#[tokio::test]
async fn calls_succeed_again_after_the_connection_was_killed() {
    let guard = common::KeysGuard { prefix: common::fresh_prefix() };
    let before = client_ids("normal").await;
    let config = RedisConfig::new().prefix(&guard.prefix);
    let storage = RedisStorage::connect_with(&common::url(), config).await.unwrap();
    storage.counts().await.unwrap();
    let mine: Vec<String> = client_ids("normal").await.difference(&before).cloned().collect();
    assert!(!mine.is_empty(), "the storage has a connection of its own");

    let mut conn = common::raw().await;
    for id in &mine {
        let _: redis::Value = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut conn).await.unwrap();
    }

    // The call that meets the dead connection may fail, with a transient error; the
    // connection is then made again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({})).queue("q")])).await {
            Ok(_) => break,
            Err(error) => {
                assert!(error.is_transient(), "a dropped connection is a transient error: {error:?}");
                assert!(tokio::time::Instant::now() < deadline, "the connection was not made again: {error:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(storage.counts().await.unwrap()[0].get(haul_core::JobState::Available), 1);
}
