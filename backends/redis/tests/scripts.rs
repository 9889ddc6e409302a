//! The Lua scripts: a server that forgot them (restart, `SCRIPT FLUSH`) gets them
//! again on `NOSCRIPT`, whatever the call.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use std::time::Duration;

use haul_core::{
    ClaimParams, EnqueueParams, HeartbeatParams, JobOutcome, JobState, LeadershipParams, NewJob, PeriodicUpdate,
    PruneParams, Report, ReportParams, Retention, Storage, ThroughputSample, WorkerBeat,
};
use serde_json::json;

async fn flush_scripts() {
    let mut conn = common::raw().await;
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
}

#[tokio::test]
async fn every_call_works_after_the_server_forgot_its_scripts() {
    let (storage, _guard) = common::storage().await;
    let job = || NewJob::new("plain", json!({})).queue("q");

    flush_scripts().await;
    let ids = storage.enqueue(EnqueueParams::new(vec![job(), job(), job()])).await.unwrap().ids;
    flush_scripts().await;
    let claimed = storage.claim(ClaimParams::new(["q"], 2)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let claims: Vec<_> = claimed.iter().map(|job| job.claim().unwrap()).collect();
    flush_scripts().await;
    let beat = storage.heartbeat(HeartbeatParams::new(claims.clone(), Duration::from_secs(30))).await.unwrap();
    assert_eq!(beat.extended.len(), 2);
    flush_scripts().await;
    let reports = claims.iter().map(|claim| Report { claim: *claim, outcome: JobOutcome::Completed }).collect();
    assert_eq!(storage.report(ReportParams::new(reports)).await.unwrap().applied.len(), 2);
    flush_scripts().await;
    assert_eq!(storage.cancel(ids[2], None).await.unwrap().state, JobState::Cancelled);
    flush_scripts().await;
    assert_eq!(storage.retry(ids[2], None).await.unwrap().state, JobState::Available);
    flush_scripts().await;
    storage.promote_due(None).await.unwrap();
    flush_scripts().await;
    storage.rescue_expired(None).await.unwrap();
    flush_scripts().await;
    assert_eq!(storage.prune(PruneParams::new(Retention::all(Duration::ZERO))).await.unwrap(), 2);
    flush_scripts().await;
    storage.pause_queue("q").await.unwrap();
    flush_scripts().await;
    storage.resume_queue("q").await.unwrap();
    assert!(storage.counts().await.unwrap().iter().all(|queue| !queue.paused));

    // The cluster layer's scripts.
    flush_scripts().await;
    storage.beat_worker(WorkerBeat::new("w", chrono::Utc::now(), Duration::from_secs(30))).await.unwrap();
    flush_scripts().await;
    assert_eq!(storage.list_workers(None).await.unwrap().len(), 1);
    flush_scripts().await;
    storage.remove_worker("w").await.unwrap();
    flush_scripts().await;
    let held = storage.acquire_leadership(LeadershipParams::new("w", Duration::from_secs(30))).await.unwrap().unwrap();
    flush_scripts().await;
    assert_eq!(storage.leader(None).await.unwrap(), Some(held.clone()));
    flush_scripts().await;
    storage.release_leadership("w", held.term).await.unwrap();
    assert_eq!(storage.leader(None).await.unwrap(), None);
    flush_scripts().await;
    storage.save_periodic(PeriodicUpdate::new("nightly", "every 1s").last_tick(chrono::Utc::now())).await.unwrap();
    assert_eq!(storage.list_periodic().await.unwrap().len(), 1);
    flush_scripts().await;
    let now = chrono::Utc::now();
    storage.record_throughput(vec![ThroughputSample::new("q", now, 2, 1)], None).await.unwrap();
    flush_scripts().await;
    assert_eq!(storage.throughput(now).await.unwrap(), vec![ThroughputSample::new("q", now, 2, 1)]);
}
