//! The cluster layer on Redis: the worker registry (`haul:{<p>}:workers` and
//! `haul:{<p>}:workers:expiry`) and the leadership (`haul:{<p>}:leader`), each rule
//! under an explicit clock, then under the server's; and `purge` of those keys with the
//! periodic records (`haul:{<p>}:periodic`).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use haul_core::{Leadership, LeadershipParams, PeriodicUpdate, Storage, Timestamp, WorkerBeat, WorkerRecord};
use haul_redis::{RedisConfig, RedisStorage};
use redis::AsyncCommands;

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().unwrap()
}

fn at(seconds: i64) -> Timestamp {
    t0() + chrono::Duration::seconds(seconds)
}

fn millis(ms: i64) -> Timestamp {
    t0() + chrono::Duration::milliseconds(ms)
}

fn beat(id: &str, ttl_secs: u64) -> WorkerBeat {
    WorkerBeat::new(id, at(-60), Duration::from_secs(ttl_secs))
        .process("host-1", 4242)
        .serving(vec!["mail".to_owned(), "default".to_owned()], 8)
}

fn ids(workers: &[WorkerRecord]) -> Vec<&str> {
    workers.iter().map(|worker| worker.id.as_str()).collect()
}

fn lead(worker: &str, ttl_secs: u64, now: Timestamp) -> LeadershipParams {
    LeadershipParams::new(worker, Duration::from_secs(ttl_secs)).now(now)
}

#[tokio::test]
async fn a_beat_records_the_worker_until_its_ttl_and_the_list_is_in_id_order() {
    let (storage, _guard) = common::storage().await;
    storage.beat_worker(beat("b-worker", 30).held(3).now(at(0))).await.unwrap();
    storage.beat_worker(beat("a-worker", 10).now(at(0))).await.unwrap();

    let listed = storage.list_workers(Some(at(0))).await.unwrap();
    assert_eq!(ids(&listed), ["a-worker", "b-worker"]);
    assert_eq!(listed[1], WorkerRecord::from_beat(&beat("b-worker", 30).held(3), at(0)));
    assert_eq!((listed[1].last_seen_at, listed[1].expires_at), (at(0), at(30)));
    assert_eq!(listed[0].expires_at, at(10));

    assert_eq!(ids(&storage.list_workers(Some(millis(9_999))).await.unwrap()), ["a-worker", "b-worker"]);
    assert_eq!(ids(&storage.list_workers(Some(at(10))).await.unwrap()), ["b-worker"], "ended at 10 s: not listed");
    assert_eq!(ids(&storage.list_workers(Some(at(30))).await.unwrap()), Vec::<&str>::new());
}

#[tokio::test]
async fn a_new_beat_refreshes_the_record() {
    let (storage, _guard) = common::storage().await;
    storage.beat_worker(beat("w", 30).held(1).now(at(0))).await.unwrap();
    storage.beat_worker(beat("w", 30).held(5).now(at(20))).await.unwrap();

    let listed = storage.list_workers(Some(at(40))).await.unwrap();
    assert_eq!(listed.len(), 1, "one record per worker id");
    assert_eq!(listed[0], WorkerRecord::from_beat(&beat("w", 30).held(5), at(20)));
    assert_eq!(listed[0].expires_at, at(50));
    assert!(storage.list_workers(Some(at(50))).await.unwrap().is_empty());
}

#[tokio::test]
async fn remove_worker_deletes_the_record_and_an_unknown_id_is_no_error() {
    let (storage, guard) = common::storage().await;
    storage.beat_worker(beat("w1", 30).now(at(0))).await.unwrap();
    storage.beat_worker(beat("w2", 30).now(at(0))).await.unwrap();
    storage.remove_worker("w1").await.unwrap();
    storage.remove_worker("w1").await.unwrap();
    storage.remove_worker("never-seen").await.unwrap();

    assert_eq!(ids(&storage.list_workers(Some(at(1))).await.unwrap()), ["w2"]);
    let mut raw = common::raw().await;
    let fields: Vec<String> = raw.hkeys(format!("haul:{{{}}}:workers", guard.prefix)).await.unwrap();
    let expiring: Vec<String> = raw.zrange(format!("haul:{{{}}}:workers:expiry", guard.prefix), 0, -1).await.unwrap();
    assert_eq!((fields, expiring), (vec!["w2".to_owned()], vec!["w2".to_owned()]), "gone from both keys");
}

/// How many records the registry of `prefix` holds, and how many its expiry index.
async fn registry_sizes(prefix: &str) -> (u64, u64) {
    let mut raw = common::raw().await;
    let fields: u64 = raw.hlen(format!("haul:{{{prefix}}}:workers")).await.unwrap();
    let members: u64 = raw.zcard(format!("haul:{{{prefix}}}:workers:expiry")).await.unwrap();
    (fields, members)
}

#[tokio::test]
async fn a_beat_deletes_at_most_100_ended_records() {
    let (storage, guard) = common::storage().await;
    for n in 0..150 {
        storage.beat_worker(beat(&format!("short-{n:03}"), 1).now(at(0))).await.unwrap();
    }
    assert_eq!(registry_sizes(&guard.prefix).await, (150, 150));

    // At 1 s the records end: a beat then deletes 100 of them, the next one the rest.
    storage.beat_worker(beat("long", 60).now(at(1))).await.unwrap();
    assert_eq!(registry_sizes(&guard.prefix).await, (51, 51));
    assert_eq!(ids(&storage.list_workers(Some(at(1))).await.unwrap()), ["long"], "ended records are never listed");
    storage.beat_worker(beat("long", 60).now(at(2))).await.unwrap();
    assert_eq!(registry_sizes(&guard.prefix).await, (1, 1));
}

#[tokio::test]
async fn the_server_clock_is_used_without_a_now() {
    let (storage, _guard) = common::storage().await;
    let before = Utc::now() - chrono::Duration::seconds(5);
    storage.beat_worker(WorkerBeat::new("w", before, Duration::from_secs(60))).await.unwrap();
    let listed = storage.list_workers(None).await.unwrap();
    assert_eq!(ids(&listed), ["w"]);
    let seen = listed[0].last_seen_at;
    assert!(seen > before && seen < Utc::now() + chrono::Duration::seconds(5), "{seen}");
    assert_eq!(listed[0].expires_at - seen, chrono::Duration::seconds(60));
    assert!(storage.list_workers(Some(seen + chrono::Duration::seconds(60))).await.unwrap().is_empty());

    let lead = storage.acquire_leadership(LeadershipParams::new("w", Duration::from_secs(15))).await.unwrap().unwrap();
    assert_eq!(lead.term, 1);
    assert!(lead.expires_at > before + chrono::Duration::seconds(15), "{lead:?}");
    assert_eq!(storage.leader(None).await.unwrap(), Some(lead.clone()));
    assert_eq!(storage.leader(Some(lead.expires_at)).await.unwrap(), None);
}

#[tokio::test]
async fn a_lead_is_taken_with_term_1_and_refused_to_others_until_it_lapses() {
    let (storage, _guard) = common::storage().await;
    assert_eq!(storage.leader(Some(at(0))).await.unwrap(), None, "nobody leads a new prefix");

    let first = storage.acquire_leadership(lead("w1", 10, at(0))).await.unwrap();
    assert_eq!(first, Some(Leadership::new("w1", 1, at(10))));
    assert_eq!(storage.acquire_leadership(lead("w2", 10, at(5))).await.unwrap(), None, "w1 leads");
    assert_eq!(storage.acquire_leadership(lead("w2", 10, millis(9_999))).await.unwrap(), None, "w1 still leads");
    assert_eq!(storage.leader(Some(at(5))).await.unwrap(), first);

    // Lapsed at its expires_at: free for anyone, under the next term.
    assert_eq!(storage.leader(Some(at(10))).await.unwrap(), None);
    let second = storage.acquire_leadership(lead("w2", 10, at(10))).await.unwrap();
    assert_eq!(second, Some(Leadership::new("w2", 2, at(20))));
    assert_eq!(storage.acquire_leadership(lead("w1", 10, at(11))).await.unwrap(), None);
    assert_eq!(storage.leader(Some(at(11))).await.unwrap(), second);
}

#[tokio::test]
async fn a_renewal_keeps_the_term_and_moves_the_expiry() {
    let (storage, _guard) = common::storage().await;
    storage.acquire_leadership(lead("w1", 10, at(0))).await.unwrap().unwrap();
    let renewed = storage.acquire_leadership(lead("w1", 10, at(8))).await.unwrap();
    assert_eq!(renewed, Some(Leadership::new("w1", 1, at(18))));
    assert_eq!(storage.acquire_leadership(lead("w2", 10, at(12))).await.unwrap(), None, "renewed past 10 s");
    assert_eq!(storage.leader(Some(at(17))).await.unwrap(), renewed);

    // The same worker after its own lead lapsed takes it again: a new term.
    let again = storage.acquire_leadership(lead("w1", 10, at(18))).await.unwrap();
    assert_eq!(again, Some(Leadership::new("w1", 2, at(28))));
}

#[tokio::test]
async fn a_release_needs_the_holder_and_its_term_and_keeps_the_term_counting() {
    let (storage, guard) = common::storage().await;
    storage.acquire_leadership(lead("w1", 10, at(0))).await.unwrap().unwrap();
    let held = storage.acquire_leadership(lead("w2", 30, at(10))).await.unwrap().unwrap();
    assert_eq!(held.term, 2);

    storage.release_leadership("w1", 1).await.unwrap();
    storage.release_leadership("w1", 2).await.unwrap();
    storage.release_leadership("w2", 1).await.unwrap();
    storage.release_leadership("w2", 3).await.unwrap();
    assert_eq!(storage.leader(Some(at(11))).await.unwrap(), Some(held), "the wrong holder or term does nothing");

    storage.release_leadership("w2", 2).await.unwrap();
    assert_eq!(storage.leader(Some(at(11))).await.unwrap(), None);
    let term: String = common::raw().await.hget(format!("haul:{{{}}}:leader", guard.prefix), "term").await.unwrap();
    assert_eq!(term, "2", "the term outlives the release");

    // Free again: anyone takes it at once (its releaser too), under the next term.
    let next = storage.acquire_leadership(lead("w3", 10, at(12))).await.unwrap();
    assert_eq!(next, Some(Leadership::new("w3", 3, at(22))));
    storage.release_leadership("w3", 3).await.unwrap();
    let back = storage.acquire_leadership(lead("w3", 10, at(13))).await.unwrap();
    assert_eq!(back, Some(Leadership::new("w3", 4, at(23))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_acquires_make_exactly_one_leader() {
    let (_storage, guard) = common::storage().await;
    let mut storages = Vec::new();
    for _ in 0..16 {
        storages
            .push(RedisStorage::connect_with(&common::url(), RedisConfig::new().prefix(&guard.prefix)).await.unwrap());
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let acquires = storages.into_iter().enumerate().map(|(n, storage)| {
        let start = std::sync::Arc::clone(&start);
        tokio::spawn(async move {
            start.wait().await;
            storage.acquire_leadership(LeadershipParams::new(format!("w{n:02}"), Duration::from_secs(30))).await
        })
    });
    let outcomes: Vec<Option<Leadership>> =
        futures_util::future::join_all(acquires).await.into_iter().map(|r| r.unwrap().unwrap()).collect();

    let leaders: Vec<&Leadership> = outcomes.iter().flatten().collect();
    assert_eq!(leaders.len(), 1, "{outcomes:?}");
    assert_eq!(leaders[0].term, 1);
    let observer = RedisStorage::connect_with(&common::url(), RedisConfig::new().prefix(&guard.prefix)).await.unwrap();
    assert_eq!(observer.leader(None).await.unwrap().as_ref(), Some(leaders[0]));
}

#[tokio::test]
async fn purge_deletes_the_registry_the_leadership_and_the_periodic_records() {
    let (storage, guard) = common::storage().await;
    storage.beat_worker(beat("w", 30).now(at(0))).await.unwrap();
    storage.acquire_leadership(lead("w", 30, at(0))).await.unwrap().unwrap();
    storage.save_periodic(PeriodicUpdate::new("nightly", "every 1h").last_tick(at(0)).now(at(0))).await.unwrap();
    let mut keys = common::keys_of(&guard.prefix).await;
    keys.sort();
    let p = &guard.prefix;
    assert_eq!(
        keys,
        [
            format!("haul:{{{p}}}:leader"),
            format!("haul:{{{p}}}:periodic"),
            format!("haul:{{{p}}}:workers"),
            format!("haul:{{{p}}}:workers:expiry"),
        ]
    );
    assert_eq!(storage.purge().await.unwrap(), 4);
    assert!(common::keys_of(&guard.prefix).await.is_empty());
}

#[tokio::test]
async fn a_ttl_too_long_to_store_ends_in_2255() {
    let (storage, _guard) = common::storage().await;
    let forever = Duration::MAX;
    storage.beat_worker(WorkerBeat::new("w", at(0), forever).now(at(0))).await.unwrap();
    let far = Utc.with_ymd_and_hms(2250, 1, 1, 0, 0, 0).single().unwrap();
    let listed = storage.list_workers(Some(far)).await.unwrap();
    assert_eq!(ids(&listed), ["w"]);
    assert_eq!(listed[0].expires_at.timestamp_micros(), (1 << 53) - 1);
    let held = storage.acquire_leadership(LeadershipParams::new("w", forever).now(at(0))).await.unwrap().unwrap();
    assert_eq!(held.expires_at.timestamp_micros(), (1 << 53) - 1);
    assert_eq!(storage.acquire_leadership(lead("other", 10, far)).await.unwrap(), None);
}
