//! Scheduling: jobs wait for their time, are promoted when it comes, and never run early.

use haul::JobState;

use super::*;

/// A scheduled job is neither promoted nor claimed a second before it is due.
pub async fn never_claims_a_scheduled_job_before_it_is_due(storage: TestStorage) {
    let id = enqueue_one(&storage, job_at("q", at(60)), at(0)).await;
    assert_eq!(storage.promote_due(Some(at(59))).await.expect("promote succeeds"), 0);
    assert!(claim(&storage, &["q"], 10, at(59)).await.is_empty());
    assert_eq!(state_of(&storage, id).await, JobState::Scheduled);
}

/// Promotion moves exactly the scheduled jobs that are due (the due time included).
pub async fn promotes_only_scheduled_jobs_that_are_due(storage: TestStorage) {
    let soon = enqueue_one(&storage, job_at("q", at(60)), at(0)).await;
    let later = enqueue_one(&storage, job_at("q", at(120)), at(0)).await;

    assert_eq!(storage.promote_due(Some(at(60))).await.expect("promote succeeds"), 1);
    assert_eq!(state_of(&storage, soon).await, JobState::Available);
    assert_eq!(state_of(&storage, later).await, JobState::Scheduled);

    assert_eq!(storage.promote_due(Some(at(60))).await.expect("promote succeeds"), 0, "nothing more is due");
    assert_eq!(storage.promote_due(Some(at(500))).await.expect("promote succeeds"), 1);
    assert_eq!(state_of(&storage, later).await, JobState::Available);
}

/// Once promoted, a scheduled job is claimed with its original `run_at`.
pub async fn claims_a_scheduled_job_once_it_is_due(storage: TestStorage) {
    let id = enqueue_one(&storage, job_at("q", at(60)), at(0)).await;
    storage.promote_due(Some(at(61))).await.expect("promote succeeds");
    let claimed = claim_only(&storage, "q", id, at(61)).await;
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.run_at, at(60));
    assert_eq!(claimed.attempted_at, Some(at(61)));
}

/// A retryable job waits for its backoff, then is promoted like a scheduled one.
pub async fn promotes_retryable_jobs_when_their_backoff_ends(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), failed("boom", secs(30)), at(10)).await;

    assert_eq!(storage.promote_due(Some(at(39))).await.expect("promote succeeds"), 0);
    assert!(claim(&storage, &["q"], 10, at(39)).await.is_empty());
    assert_eq!(state_of(&storage, record.id).await, JobState::Retryable);

    assert_eq!(storage.promote_due(Some(at(40))).await.expect("promote succeeds"), 1);
    let again = claim_only(&storage, "q", record.id, at(40)).await;
    assert_eq!(again.attempt, 2);
}

/// Jobs that became due are claimed in `run_at` order, not in enqueue (id) order.
pub async fn promoted_jobs_are_claimed_in_run_at_order(storage: TestStorage) {
    let ids = ordered_ids(3);
    let jobs = vec![job_at("q", at(30)).id(ids[0]), job_at("q", at(10)).id(ids[1]), job_at("q", at(20)).id(ids[2])];
    enqueue(&storage, jobs, at(0)).await;
    assert_eq!(storage.promote_due(Some(at(30))).await.expect("promote succeeds"), 3);

    let mut order = Vec::new();
    for _ in 0..3 {
        order.extend(ids_of(&claim(&storage, &["q"], 1, at(30)).await));
    }
    assert_eq!(order, vec![ids[1], ids[2], ids[0]]);
}

/// Promotion leaves every state other than scheduled and retryable alone.
pub async fn promotion_touches_no_other_state(storage: TestStorage) {
    let running = running_job(&storage, job("q"), at(0)).await;
    let available = enqueue_one(&storage, job("q"), at(0)).await;
    let cancelled = enqueue_one(&storage, job_at("q", at(10)), at(0)).await;
    storage.cancel(cancelled, Some(at(1))).await.expect("cancel succeeds");

    assert_eq!(storage.promote_due(Some(at(1000))).await.expect("promote succeeds"), 0);
    assert_eq!(state_of(&storage, running.id).await, JobState::Running);
    assert_eq!(state_of(&storage, available).await, JobState::Available);
    assert_eq!(state_of(&storage, cancelled).await, JobState::Cancelled);
}
