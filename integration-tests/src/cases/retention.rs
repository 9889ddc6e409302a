//! Retention: pruning removes finished jobs older than the policy, and nothing else.

use haul::{JobId, JobOutcome, JobState, Retention, storage::PruneParams};

use super::*;

const HOUR: u64 = 3600;

async fn prune(storage: &TestStorage, retention: Retention, limit: usize, now: Timestamp) -> u64 {
    storage.prune(PruneParams::new(retention).limit(limit).now(now)).await.expect("prune succeeds")
}

async fn exists(storage: &TestStorage, id: JobId) -> bool {
    storage.get(id).await.expect("get succeeds").is_some()
}

/// A completed job, a discarded one and a cancelled one, all finished at `at(0)`.
async fn finished_jobs(storage: &TestStorage) -> [JobId; 3] {
    let completed = running_job(storage, job("q"), at(0)).await;
    report_applied(storage, claim_of(&completed), JobOutcome::Completed, at(0)).await;
    let discarded = running_job(storage, job("q"), at(0)).await;
    report_applied(storage, claim_of(&discarded), JobOutcome::Discarded { reason: "no".to_owned() }, at(0)).await;
    let cancelled = enqueue_one(storage, job("q"), at(0)).await;
    storage.cancel(cancelled, Some(at(0))).await.expect("cancel succeeds");
    [completed.id, discarded.id, cancelled]
}

/// Each terminal state is kept for its own retention (measured from `finished_at`,
/// the boundary included) and then pruned.
pub async fn prunes_each_finished_state_after_its_own_retention(storage: TestStorage) {
    let [completed, discarded, cancelled] = finished_jobs(&storage).await;
    let mut retention = Retention::all(secs(3 * HOUR)).completed(secs(HOUR));
    retention.discarded = secs(2 * HOUR);
    let hours = |n: i64| at(n * 3600);

    assert_eq!(prune(&storage, retention, 100, at(3599)).await, 0, "nothing is old enough yet");
    assert_eq!(prune(&storage, retention, 100, hours(1)).await, 1);
    assert!(!exists(&storage, completed).await);
    assert!(exists(&storage, discarded).await && exists(&storage, cancelled).await);

    assert_eq!(prune(&storage, retention, 100, hours(2)).await, 1);
    assert!(!exists(&storage, discarded).await);
    assert!(exists(&storage, cancelled).await);

    assert_eq!(prune(&storage, retention, 100, hours(3)).await, 1);
    assert!(!exists(&storage, cancelled).await);
    assert_eq!(prune(&storage, retention, 100, hours(1000)).await, 0);
}

/// Pruning never removes a job that has not finished, however old.
pub async fn prune_never_removes_unfinished_jobs(storage: TestStorage) {
    let long_ago = at(-30 * 24 * 3600);
    let available = enqueue_one(&storage, job("q"), long_ago).await;
    let scheduled = enqueue_one(&storage, job_at("s", at(60)), long_ago).await;
    let running = running_job(&storage, job("r"), long_ago).await;
    let retryable = running_job(&storage, job("f"), long_ago).await;
    report_applied(&storage, claim_of(&retryable), failed("boom", secs(HOUR * 24 * 60)), long_ago).await;

    assert_eq!(prune(&storage, Retention::all(secs(0)), 100, at(0)).await, 0);
    for id in [available, scheduled, running.id, retryable.id] {
        assert!(exists(&storage, id).await, "unfinished job {id} is kept");
    }
    assert_eq!(state_of(&storage, retryable.id).await, JobState::Retryable);
}

/// One prune call removes at most its limit; further calls remove the rest.
pub async fn prune_removes_at_most_its_limit(storage: TestStorage) {
    let ids = enqueue(&storage, (0..5).map(|_| job("q")).collect(), at(0)).await;
    for id in &ids {
        storage.cancel(*id, Some(at(0))).await.expect("cancel succeeds");
    }
    let retention = Retention::all(secs(60));
    assert_eq!(prune(&storage, retention, 2, at(60)).await, 2);
    assert_eq!(prune(&storage, retention, 2, at(60)).await, 2);
    assert_eq!(prune(&storage, retention, 2, at(60)).await, 1);
    assert_eq!(prune(&storage, retention, 2, at(60)).await, 0);
    assert!(storage.counts().await.expect("counts succeed").is_empty(), "every pruned job is gone");
}

/// Retention counts from when a job finished, not from when it was enqueued.
pub async fn retention_counts_from_the_finish_time(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(-10 * 3600)).await;
    report_applied(&storage, claim_of(&record), JobOutcome::Completed, at(0)).await;
    let retention = Retention::all(secs(HOUR));
    assert_eq!(prune(&storage, retention, 100, at(1800)).await, 0, "finished half an hour ago");
    assert!(exists(&storage, record.id).await);
    assert_eq!(prune(&storage, retention, 100, at(3600)).await, 1);
}
