//! Errors the backend reports: each a kind a caller can match, never a panic.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use haul_core::{EnqueueParams, Error, ErrorKind, NewJob, PeriodicUpdate, Storage};
use haul_redis::{RedisConfig, RedisStorage};
use redis::AsyncCommands;
use serde_json::json;

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_a_connection_error() {
    // Port 1 on the loopback interface: nothing listens there.
    let error = RedisStorage::connect("redis://127.0.0.1:1").await.unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Connection), "{error:?}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn an_invalid_prefix_is_refused_before_connecting() {
    for bad in ["", "Upper", "1st", "with space", "a{b}", "a:b"] {
        let error =
            RedisStorage::connect_with("redis://127.0.0.1:1", RedisConfig::new().prefix(bad)).await.unwrap_err();
        assert!(matches!(error, Error::InvalidName { what: "namespace", .. }), "{bad:?}: {error:?}");
    }
}

#[tokio::test]
async fn a_url_that_is_not_a_redis_url_is_refused() {
    let error = RedisStorage::connect("postgres://localhost/db").await.unwrap_err();
    assert!(matches!(error, Error::Backend { backend: "redis", kind: ErrorKind::Other, .. }), "{error:?}");
}

#[tokio::test]
async fn a_stored_job_that_was_tampered_with_is_corrupt_data_or_unreadable_arguments() {
    let (storage, guard) = common::storage().await;
    let ids = storage
        .enqueue(EnqueueParams::new(vec![
            NewJob::new("plain", json!({})).queue("q"),
            NewJob::new("plain", json!({})).queue("q"),
        ]))
        .await
        .unwrap()
        .ids;
    let mut conn = common::raw().await;
    let key = |id| format!("haul:{{{}:q}}:job:{id}", guard.prefix);
    let _: () = conn.hset(key(ids[0]), "args", "{not json").await.unwrap();
    let _: () = conn.hset(key(ids[1]), "state", "sleeping").await.unwrap();

    // Arguments that cannot be read fail that job alone: the record comes back, saying why.
    let unreadable = storage.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(unreadable.args, serde_json::Value::Null);
    assert!(unreadable.unreadable_args.is_some(), "{unreadable:?}");
    // A field haul itself writes that is not in its form is corrupt data.
    let error = storage.get(ids[1]).await.unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::CorruptData), "{error:?}");
    assert!(!error.is_transient());
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_tls_url_is_understood_and_an_unreachable_tls_server_is_a_connection_error() {
    let error = RedisStorage::connect("rediss://127.0.0.1:1").await.unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Connection), "{error:?}");
}

#[tokio::test]
async fn a_periodic_record_written_by_hand_is_left_out_then_replaced() {
    let (storage, guard) = common::storage().await;
    let at = |seconds: i64| chrono::DateTime::from_timestamp(1_900_000_000 + seconds, 0).unwrap();
    storage.save_periodic(PeriodicUpdate::new("kept", "every 1s").last_tick(at(0)).now(at(0))).await.unwrap();
    let mut conn = common::raw().await;
    let key = format!("haul:{{{}}}:periodic", guard.prefix);
    let _: () = conn.hset(&key, "mangled", "not a record").await.unwrap();

    // One bad field does not hide the others (nor stop their schedules).
    let names: Vec<String> = storage.list_periodic().await.unwrap().into_iter().map(|record| record.name).collect();
    assert_eq!(names, ["kept"]);
    // The next save of that schedule replaces it.
    storage.save_periodic(PeriodicUpdate::new("mangled", "every 1s").last_tick(at(5)).now(at(5))).await.unwrap();
    let records = storage.list_periodic().await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].name, "kept");
    assert_eq!((records[1].name.as_str(), records[1].last_tick), ("mangled", Some(at(5))));
}
