//! Unique jobs: the unique index in the prefix's slot, under concurrency, and its
//! cleanup by prune and purge.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use std::{collections::HashMap, time::Duration};

use haul_core::{
    ClaimParams, EnqueueParams, JobOutcome, NewJob, PruneParams, Report, ReportParams, Retention, Storage, Unique,
};
use redis::AsyncCommands;
use serde_json::json;

fn unique_job(key: &str) -> NewJob {
    NewJob::new("report", json!({})).unique(Unique::new(key))
}

/// The members of the prefix's unique index.
async fn unique_index(prefix: &str) -> Vec<String> {
    common::raw().await.zrange(format!("haul:{{{prefix}}}:unique"), 0, -1).await.unwrap()
}

#[tokio::test]
async fn eight_concurrent_enqueues_of_one_key_store_one_job() {
    let (storage, guard) = common::storage().await;
    let enqueues = (0..8).map(|_| {
        let storage = storage.clone();
        tokio::spawn(async move { storage.enqueue(EnqueueParams::new(vec![unique_job("invoice:7")])).await })
    });
    let outcomes: Vec<_> =
        futures_util::future::join_all(enqueues).await.into_iter().map(|r| r.unwrap().unwrap()).collect();

    let stored = outcomes[0].ids[0];
    assert!(outcomes.iter().all(|outcome| outcome.ids == vec![stored]), "every enqueue names the one stored job");
    assert_eq!(outcomes.iter().filter(|outcome| outcome.duplicates.is_empty()).count(), 1, "one enqueue stored it");
    let total: u64 = storage.counts().await.unwrap().iter().flat_map(|counts| counts.states.values()).sum();
    assert_eq!(total, 1);
    assert_eq!(unique_index(&guard.prefix).await.len(), 1);
}

#[tokio::test]
async fn a_key_that_starts_with_another_key_is_a_different_key() {
    let (storage, _guard) = common::storage().await;
    let outcome =
        storage.enqueue(EnqueueParams::new(vec![unique_job("a"), unique_job("a:"), unique_job("a:b")])).await.unwrap();
    assert!(outcome.duplicates.is_empty(), "{outcome:?}");
    let again = storage.enqueue(EnqueueParams::new(vec![unique_job("a:b")])).await.unwrap();
    assert_eq!(again.duplicates, vec![outcome.ids[2]]);
}

#[tokio::test]
async fn pruning_a_unique_job_removes_it_from_the_unique_index() {
    let (storage, guard) = common::storage().await;
    let id = storage.enqueue(EnqueueParams::new(vec![unique_job("k")])).await.unwrap().ids[0];
    assert_eq!(unique_index(&guard.prefix).await.len(), 1);
    let claimed = storage.claim(ClaimParams::new(["default"], 1)).await.unwrap();
    assert_eq!(claimed[0].id, id);
    let report = Report { claim: claimed[0].claim().unwrap(), outcome: JobOutcome::Completed };
    storage.report(ReportParams::new(vec![report])).await.unwrap();
    assert_eq!(storage.prune(PruneParams::new(Retention::all(Duration::ZERO))).await.unwrap(), 1);
    assert_eq!(unique_index(&guard.prefix).await, Vec::<String>::new());
}

#[tokio::test]
async fn purging_a_prefix_leaves_no_unique_key_behind() {
    let (storage, guard) = common::storage().await;
    storage.enqueue(EnqueueParams::new(vec![unique_job("a"), unique_job("b").queue("other")])).await.unwrap();
    assert_eq!(unique_index(&guard.prefix).await.len(), 2);
    storage.purge().await.unwrap();
    assert_eq!(common::keys_of(&guard.prefix).await, Vec::<String>::new());
}

/// The SHA-256 of `key` in hex, as the unique index holds it.
fn digest(key: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn the_unique_index_holds_the_digest_of_the_key_and_the_job_hash_the_key_itself() {
    let (storage, guard) = common::storage().await;
    let key = "x".repeat(8 * 1024);
    let id = storage.enqueue(EnqueueParams::new(vec![unique_job(&key)])).await.unwrap().ids[0];
    assert_eq!(unique_index(&guard.prefix).await, vec![format!("{}:{id}:default", digest(&key))]);
    let fields: HashMap<String, String> =
        common::raw().await.hgetall(format!("haul:{{{}:default}}:job:{id}", guard.prefix)).await.unwrap();
    assert_eq!(fields["unique_key"], key, "the key stays readable");
    assert_eq!(fields["unique_digest"], digest(&key));
}

/// A job stored before keys were digested (no `unique_digest` field, a member
/// `<len>:<key>:<id>:<queue>`) still leaves the unique index when it is pruned.
#[tokio::test]
async fn pruning_a_job_indexed_by_its_key_text_removes_its_member() {
    let (storage, guard) = common::storage().await;
    let id = storage.enqueue(EnqueueParams::new(vec![unique_job("k")])).await.unwrap().ids[0];
    let claimed = storage.claim(ClaimParams::new(["default"], 1)).await.unwrap();
    let report = Report { claim: claimed[0].claim().unwrap(), outcome: JobOutcome::Completed };
    storage.report(ReportParams::new(vec![report])).await.unwrap();
    let mut raw = common::raw().await;
    let index = format!("haul:{{{}}}:unique", guard.prefix);
    let _: () = raw.hdel(format!("haul:{{{}:default}}:job:{id}", guard.prefix), "unique_digest").await.unwrap();
    let _: () = raw.del(&index).await.unwrap();
    let _: () = raw.zadd(&index, format!("1:k:{id}:default"), 0).await.unwrap();
    assert_eq!(storage.prune(PruneParams::new(Retention::all(Duration::ZERO))).await.unwrap(), 1);
    assert_eq!(unique_index(&guard.prefix).await, Vec::<String>::new());
}
