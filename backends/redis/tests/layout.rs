//! The stored form: plain hashes an operator can read with `redis-cli`, keys that share
//! their queue's hash tag, and nothing left once a prefix is purged.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use std::{collections::HashMap, time::Duration};

use haul_core::{ClaimParams, EnqueueParams, JobOutcome, NewJob, Report, ReportParams, RunAt, Storage};
use redis::AsyncCommands;
use serde_json::json;

/// The hash tag of a key: what is between its first `{` and the next `}`.
fn hash_tag(key: &str) -> &str {
    let open = key.find('{').unwrap();
    let close = key[open..].find('}').unwrap() + open;
    &key[open + 1..close]
}

#[tokio::test]
async fn a_stored_job_is_a_plain_hash_an_operator_can_read() {
    let (storage, guard) = common::storage().await;
    let args = json!({ "to": "ada@example.com", "n": 3 });
    let job = NewJob::new("mail.send", args.clone()).queue("mail").priority(-2).max_attempts(4);
    let id = storage.enqueue(EnqueueParams::new(vec![job])).await.unwrap().ids[0];

    let key = format!("haul:{{{}:mail}}:job:{id}", guard.prefix);
    let fields: HashMap<String, String> = common::raw().await.hgetall(&key).await.unwrap();
    assert_eq!(fields["id"], id.to_string());
    assert_eq!(fields["kind"], "mail.send");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&fields["args"]).unwrap(), args);
    assert_eq!(fields["queue"], "mail");
    assert_eq!(fields["priority"], "-2");
    assert_eq!(fields["state"], "available");
    assert_eq!(fields["attempt"], "0");
    assert_eq!(fields["max_attempts"], "4");
    let created_at: i64 = fields["created_at"].parse().unwrap();
    assert_eq!(fields["run_at"], fields["created_at"]);
    let record = storage.get(id).await.unwrap().unwrap();
    assert_eq!(record.created_at.timestamp_micros(), created_at, "instants are µs since the epoch");
    assert!(!fields.contains_key("lease_token") && !fields.contains_key("finished_at"), "no empty fields");
}

#[tokio::test]
async fn metadata_is_a_json_field_written_only_when_a_job_has_some() {
    let (storage, guard) = common::storage().await;
    let with = NewJob::new("plain", json!({})).queue("meta").metadata("tenant", "acme").metadata("note", "a\"b");
    let without = NewJob::new("plain", json!({})).queue("meta");
    let ids = storage.enqueue(EnqueueParams::new(vec![with, without])).await.unwrap().ids;

    let mut raw = common::raw().await;
    let key = |id| format!("haul:{{{}:meta}}:job:{id}", guard.prefix);
    let stored: Option<String> = raw.hget(key(ids[0]), "metadata").await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored.unwrap()).unwrap();
    assert_eq!(stored, json!({ "tenant": "acme", "note": "a\"b" }));
    let absent: Option<String> = raw.hget(key(ids[1]), "metadata").await.unwrap();
    assert_eq!(absent, None, "no field for a job without metadata");
}

#[tokio::test]
async fn every_key_of_a_queue_shares_its_hash_tag() {
    let (storage, guard) = common::storage().await;
    let jobs = vec![
        NewJob::new("plain", json!({})).queue("a"),
        NewJob::new("plain", json!({})).queue("b.c"),
        NewJob::new("plain", json!({})).queue("b.c").run_at(RunAt::In(Duration::from_secs(3600))),
    ];
    storage.enqueue(EnqueueParams::new(jobs)).await.unwrap();
    let claimed = storage.claim(ClaimParams::new(["a"], 1)).await.unwrap();
    let report = Report { claim: claimed[0].claim().unwrap(), outcome: JobOutcome::Completed };
    storage.report(ReportParams::new(vec![report])).await.unwrap();
    storage.pause_queue("d").await.unwrap();

    let keys = common::keys_of(&guard.prefix).await;
    assert!(!keys.is_empty());
    let prefix = guard.prefix.as_str();
    let tags = [prefix.to_owned(), format!("{prefix}:a"), format!("{prefix}:b.c"), format!("{prefix}:d")];
    for key in &keys {
        let tag = hash_tag(key);
        assert!(tags.iter().any(|allowed| allowed == tag), "{key} has the hash tag {tag}");
        if tag == prefix {
            assert!(key.ends_with(":jobs") || key.ends_with(":queues"), "{key} is one of the global keys");
        } else {
            assert!(key.starts_with(&format!("haul:{{{tag}}}:")), "{key} is named after its queue");
        }
    }
}

#[tokio::test]
async fn purging_a_prefix_leaves_no_key_behind_and_spares_other_prefixes() {
    let (storage, guard) = common::storage().await;
    let (other, other_guard) = common::storage().await;
    let job = || NewJob::new("plain", json!({})).queue("q");
    storage.enqueue(EnqueueParams::new(vec![job(), job()])).await.unwrap();
    storage.claim(ClaimParams::new(["q"], 1)).await.unwrap();
    storage.pause_queue("paused").await.unwrap();
    other.enqueue(EnqueueParams::new(vec![job()])).await.unwrap();

    assert!(storage.purge().await.unwrap() > 0);
    assert_eq!(common::keys_of(&guard.prefix).await, Vec::<String>::new());
    assert!(storage.counts().await.unwrap().is_empty());
    assert_eq!(other.counts().await.unwrap().len(), 1, "the other prefix keeps its job");
    drop(other_guard);
    assert_eq!(common::keys_of(&guard.prefix).await, Vec::<String>::new());
}
