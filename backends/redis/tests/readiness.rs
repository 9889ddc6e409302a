//! The layout-version marker: `migrate` sets it, a prefix marked by another version of
//! haul is refused with the ways out in the message, and `purge` removes it.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::{Error, Storage};
use redis::AsyncCommands;

fn marker(prefix: &str) -> String {
    format!("haul:{{{prefix}}}:layout")
}

fn not_ready_reason(result: haul_core::Result<()>) -> String {
    match result {
        Err(Error::StorageNotReady { backend: "redis", reason }) => reason,
        other => panic!("expected StorageNotReady from redis, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_prefix_is_ready_and_migrate_marks_it_with_layout_version_1() {
    let (storage, guard) = common::storage().await;
    storage.check_ready().await.unwrap();
    storage.migrate().await.unwrap();
    let stored: Option<String> = common::raw().await.get(marker(&guard.prefix)).await.unwrap();
    assert_eq!(stored.as_deref(), Some("1"));
    storage.migrate().await.unwrap();
    storage.check_ready().await.unwrap();
}

#[tokio::test]
async fn a_prefix_marked_by_another_layout_version_is_refused_and_left_as_it_is() {
    let (storage, guard) = common::storage().await;
    let _: () = common::raw().await.set(marker(&guard.prefix), "2").await.unwrap();
    for result in [storage.migrate().await, storage.check_ready().await] {
        let reason = not_ready_reason(result);
        let expected = format!("key prefix `{}` holds haul layout version 2; this haul uses version 1:", guard.prefix);
        assert!(reason.starts_with(&expected), "{reason}");
        assert!(reason.contains("use another prefix"), "{reason}");
    }
    let stored: Option<String> = common::raw().await.get(marker(&guard.prefix)).await.unwrap();
    assert_eq!(stored.as_deref(), Some("2"), "migrate does not overwrite another version's marker");

    // Connecting with migrate=true is refused with the same reason; a plain connection
    // still works, so that the prefix can be looked at or purged (the guard does).
    let url = format!("{}/?prefix={}", common::url().trim_end_matches('/'), guard.prefix);
    let refused = haul_redis::RedisStorage::connect(&format!("{url}&migrate=true")).await.map(|_| ());
    assert!(not_ready_reason(refused).contains("holds haul layout version 2"));
    assert!(haul_redis::RedisStorage::connect(&url).await.is_ok());
}

#[tokio::test]
async fn purge_deletes_the_marker() {
    let (storage, guard) = common::storage().await;
    storage.migrate().await.unwrap();
    assert_eq!(common::keys_of(&guard.prefix).await, vec![marker(&guard.prefix)]);
    assert_eq!(storage.purge().await.unwrap(), 1);
    assert!(common::keys_of(&guard.prefix).await.is_empty());
}
