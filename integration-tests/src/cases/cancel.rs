//! Cancellation: a waiting job never runs; a running job's holder learns of it.

use haul::{Error, JobOutcome, JobState, storage::HeartbeatParams};

use super::*;

/// A cancelled available job is `cancelled` at once and never claimed.
pub async fn an_available_job_cancelled_never_runs(storage: TestStorage) {
    let id = enqueue_one(&storage, job("q"), at(0)).await;
    let cancelled = storage.cancel(id, Some(at(3))).await.expect("cancel succeeds");
    for stored in [cancelled, get(&storage, id).await] {
        assert_eq!(stored.state, JobState::Cancelled);
        assert_eq!(stored.finished_at, Some(at(3)));
        assert_eq!(stored.attempt, 0);
    }
    assert!(claim(&storage, &["q"], 10, at(4)).await.is_empty());
}

/// A cancelled scheduled job is never promoted nor claimed, even once due.
pub async fn a_scheduled_job_cancelled_never_runs(storage: TestStorage) {
    let id = enqueue_one(&storage, job_at("q", at(60)), at(0)).await;
    storage.cancel(id, Some(at(1))).await.expect("cancel succeeds");
    assert_eq!(storage.promote_due(Some(at(61))).await.expect("promote succeeds"), 0);
    assert!(claim(&storage, &["q"], 10, at(61)).await.is_empty());
    assert_eq!(state_of(&storage, id).await, JobState::Cancelled);
}

/// A cancelled retryable job never runs again.
pub async fn a_retryable_job_cancelled_never_runs_again(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), failed("boom", secs(10)), at(1)).await;
    storage.cancel(record.id, Some(at(2))).await.expect("cancel succeeds");
    assert_eq!(storage.promote_due(Some(at(100))).await.expect("promote succeeds"), 0);
    assert!(claim(&storage, &["q"], 10, at(100)).await.is_empty());
    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Cancelled);
    assert_eq!(stored.errors.len(), 1, "the earlier failure stays recorded");
}

/// Cancelling a running job only records the request; its holder learns of it at the
/// next heartbeat (which still extends the lease) and then reports it cancelled.
pub async fn a_running_job_cancelled_is_learned_through_heartbeat(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    let requested = storage.cancel(record.id, Some(at(5))).await.expect("cancel succeeds");
    assert_eq!(requested.state, JobState::Running, "a running job keeps running");
    assert_eq!(requested.cancel_requested_at, Some(at(5)));
    assert_eq!(requested.finished_at, None);

    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&record)], secs(30)).now(at(10)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.cancelled, vec![claim_of(&record)]);
    assert_eq!(beat.extended, vec![claim_of(&record)], "the lease is extended so the holder can report");
    assert!(beat.lost.is_empty());
    assert_eq!(get(&storage, record.id).await.lease_expires_at, Some(at(40)));

    report_applied(&storage, claim_of(&record), JobOutcome::Cancelled, at(11)).await;
    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Cancelled);
    assert_eq!(stored.finished_at, Some(at(11)));
}

/// A heartbeat tells only the jobs whose cancel was requested.
pub async fn heartbeat_tells_only_the_cancelled_jobs(storage: TestStorage) {
    let kept = running_job(&storage, job("q"), at(0)).await;
    let cancelled = running_job(&storage, job("q"), at(0)).await;
    storage.cancel(cancelled.id, Some(at(1))).await.expect("cancel succeeds");
    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&kept), claim_of(&cancelled)], secs(30)).now(at(2)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.cancelled, vec![claim_of(&cancelled)]);
    let mut extended: Vec<_> = beat.extended.iter().map(|claim| claim.id).collect();
    extended.sort();
    let mut expected = vec![kept.id, cancelled.id];
    expected.sort();
    assert_eq!(extended, expected);
}

/// A running job whose cancel was requested but which completes anyway is `completed`.
pub async fn a_running_job_that_completes_despite_a_cancel_request_is_completed(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    storage.cancel(record.id, Some(at(1))).await.expect("cancel succeeds");
    report_applied(&storage, claim_of(&record), JobOutcome::Completed, at(2)).await;
    assert_eq!(state_of(&storage, record.id).await, JobState::Completed);
}

/// Cancelling a finished job is an invalid-state error and changes nothing.
pub async fn cancelling_a_finished_job_is_an_invalid_state(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), JobOutcome::Completed, at(1)).await;
    let error = storage.cancel(record.id, Some(at(2))).await.expect_err("cancelling a finished job fails");
    assert!(
        matches!(error, Error::InvalidState { id, state: JobState::Completed, .. } if id == record.id),
        "{error:?}"
    );
    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Completed);
    assert_eq!(stored.finished_at, Some(at(1)));
}

/// Cancelling a job that does not exist is a not-found error.
pub async fn cancelling_a_missing_job_is_not_found(storage: TestStorage) {
    let missing = haul::JobId::new();
    let error = storage.cancel(missing, Some(at(0))).await.expect_err("cancelling a missing job fails");
    assert!(matches!(error, Error::NotFound(id) if id == missing), "{error:?}");
}

/// A cancelled job can be retried by hand, and then runs.
pub async fn a_cancelled_job_can_be_retried_by_hand(storage: TestStorage) {
    let id = enqueue_one(&storage, job("q"), at(0)).await;
    storage.cancel(id, Some(at(1))).await.expect("cancel succeeds");
    let retried = storage.retry(id, Some(at(2))).await.expect("retry succeeds");
    assert_eq!(retried.state, JobState::Available);
    assert_eq!(retried.finished_at, None);
    let claimed = claim_only(&storage, "q", id, at(3)).await;
    assert_eq!(claimed.attempt, 1);
}
