//! Fixtures shared by the CLI's tests: jobs put in a storage in the state a test needs,
//! through the storage's own calls.

#![allow(dead_code, unreachable_pub)] // each test binary uses its own part of these fixtures

use std::{sync::Arc, time::Duration};

use haul::{
    JobId, JobOutcome, JobRecord, NewJob, Storage,
    storage::{ClaimParams, EnqueueParams, Report, ReportParams, Timestamp},
};
use serde_json::json;

/// The kind of the jobs the fixtures enqueue.
pub const KIND: &str = "mail.send";

/// The worker id the fixtures claim as.
pub const WORKER: &str = "worker-7";

/// A job of [`KIND`] on `queue`, with one attempt.
pub fn job(queue: &str) -> NewJob {
    NewJob::new(KIND, json!({ "to": "ada@example.com", "n": 1 })).queue(queue).max_attempts(1)
}

/// Enqueues `job` and returns its id.
pub async fn enqueue(storage: &Arc<dyn Storage>, job: NewJob) -> JobId {
    storage.enqueue(EnqueueParams::new(vec![job])).await.expect("enqueue succeeds").ids[0]
}

/// Claims every available job of `queue` as [`WORKER`]: they become running.
pub async fn claim(storage: &Arc<dyn Storage>, queue: &str) -> Vec<JobRecord> {
    let params = ClaimParams::new([queue], 100).worker_id(WORKER);
    storage.claim(params).await.expect("claim succeeds")
}

/// Reports `outcome` for every job of `claimed`, at `now` (`None`: the storage's clock).
pub async fn report(storage: &Arc<dyn Storage>, claimed: &[JobRecord], outcome: JobOutcome, now: Option<Timestamp>) {
    let reports = claimed
        .iter()
        .map(|job| Report { claim: job.claim().expect("a claimed job has a lease"), outcome: outcome.clone() })
        .collect();
    let mut params = ReportParams::new(reports);
    if let Some(now) = now {
        params = params.now(now);
    }
    let outcome = storage.report(params).await.expect("report succeeds");
    assert!(outcome.rejected.is_empty(), "every outcome applies: {outcome:?}");
}

/// Enqueues `count` jobs on `queue` and makes them fail their only attempt with
/// `error`: they are discarded. Returns their ids in id order.
pub async fn discarded(storage: &Arc<dyn Storage>, queue: &str, count: usize, error: &str) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(enqueue(storage, job(queue)).await);
    }
    let claimed = claim(storage, queue).await;
    assert_eq!(claimed.len(), count, "the jobs just enqueued are the queue's only available ones");
    let failed = JobOutcome::Failed { error: error.to_owned(), retry_in: Duration::from_secs(1) };
    report(storage, &claimed, failed, None).await;
    ids.sort();
    ids
}

/// Enqueues one job on `queue` and claims it: it is running.
pub async fn running(storage: &Arc<dyn Storage>, queue: &str) -> JobId {
    let id = enqueue(storage, job(queue)).await;
    let claimed = claim(storage, queue).await;
    assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), vec![id]);
    id
}

/// The stored job `id`, which must exist.
pub async fn get(storage: &Arc<dyn Storage>, id: JobId) -> JobRecord {
    storage.get(id).await.expect("get succeeds").unwrap_or_else(|| panic!("job {id} exists"))
}

/// Every line of `text` parsed as a JSON object.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            assert!(value.is_object(), "one object per line: {line}");
            value
        })
        .collect()
}
