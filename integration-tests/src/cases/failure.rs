//! Failures: retry at the backoff time, discard with the history kept, manual retry,
//! snooze, and a cancel request winning over a failure.

use haul::{Error, JobOutcome, JobState};

use super::*;

/// A failed attempt makes the job `retryable` at now plus the backoff, with the error
/// recorded against that attempt and the claim cleared.
pub async fn a_failed_attempt_is_retried_at_the_backoff_time(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), failed("smtp refused", secs(40)), at(5)).await;

    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Retryable);
    assert_eq!(stored.run_at, at(45));
    assert_eq!(stored.attempt, 1);
    assert_eq!(stored.finished_at, None);
    assert_eq!(stored.lease_token, None);
    assert_eq!(stored.lease_expires_at, None);
    assert_eq!(stored.errors.len(), 1);
    assert_eq!(stored.errors[0].attempt, 1);
    assert_eq!(stored.errors[0].message, "smtp refused");
    assert_eq!(stored.errors[0].at, at(5));
}

/// The last allowed attempt failing discards the job, with one error per attempt in
/// order.
pub async fn exhausting_max_attempts_discards_the_job_with_its_error_history(storage: TestStorage) {
    let id = enqueue_one(&storage, job("q").max_attempts(3), at(0)).await;
    for attempt in 1..=3_u32 {
        let now = at(i64::from(attempt) * 100);
        storage.promote_due(Some(now)).await.expect("promote succeeds");
        let record = claim_only(&storage, "q", id, now).await;
        assert_eq!(record.attempt, attempt);
        report_applied(&storage, claim_of(&record), failed(&format!("failure {attempt}"), secs(10)), now).await;
    }

    let stored = get(&storage, id).await;
    assert_eq!(stored.state, JobState::Discarded);
    assert_eq!(stored.attempt, 3);
    assert_eq!(stored.finished_at, Some(at(300)));
    let history: Vec<_> = stored.errors.iter().map(|error| (error.attempt, error.message.as_str())).collect();
    assert_eq!(history, vec![(1, "failure 1"), (2, "failure 2"), (3, "failure 3")]);
    storage.promote_due(Some(at(10_000))).await.expect("promote succeeds");
    assert!(claim(&storage, &["q"], 10, at(10_000)).await.is_empty(), "a discarded job never runs again");
}

/// A handler's discard ends the job at once, attempts left or not, its reason recorded.
pub async fn a_discarded_outcome_ends_the_job_with_its_reason(storage: TestStorage) {
    let record = running_job(&storage, job("q").max_attempts(10), at(0)).await;
    let discard = JobOutcome::Discarded { reason: "address does not exist".to_owned() };
    report_applied(&storage, claim_of(&record), discard, at(3)).await;

    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Discarded);
    assert_eq!(stored.finished_at, Some(at(3)));
    assert_eq!(stored.errors.len(), 1);
    assert_eq!(stored.errors[0].attempt, 1);
    assert_eq!(stored.errors[0].message, "address does not exist");
}

/// A discarded job retried by hand is `available` now with one more attempt, its
/// history kept; failing that attempt discards it again.
pub async fn manual_retry_of_a_discarded_job_gives_it_one_more_attempt(storage: TestStorage) {
    let record = running_job(&storage, job("q").max_attempts(1), at(0)).await;
    report_applied(&storage, claim_of(&record), failed("first", secs(10)), at(1)).await;
    assert_eq!(state_of(&storage, record.id).await, JobState::Discarded);

    let retried = storage.retry(record.id, Some(at(100))).await.expect("retry succeeds");
    for stored in [retried, get(&storage, record.id).await] {
        assert_eq!(stored.state, JobState::Available);
        assert_eq!(stored.run_at, at(100));
        assert_eq!(stored.finished_at, None);
        assert_eq!(stored.max_attempts, 2);
        assert_eq!(stored.attempt, 1);
        assert_eq!(stored.errors.len(), 1, "the history is kept");
    }

    let again = claim_only(&storage, "q", record.id, at(101)).await;
    assert_eq!(again.attempt, 2);
    report_applied(&storage, claim_of(&again), failed("second", secs(10)), at(102)).await;
    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Discarded);
    assert_eq!(stored.errors.len(), 2);
}

/// Retrying a job discarded with attempts left keeps its attempt limit.
pub async fn manual_retry_keeps_max_attempts_when_attempts_are_left(storage: TestStorage) {
    let record = running_job(&storage, job("q").max_attempts(5), at(0)).await;
    report_applied(&storage, claim_of(&record), JobOutcome::Discarded { reason: "no".to_owned() }, at(1)).await;
    let retried = storage.retry(record.id, Some(at(2))).await.expect("retry succeeds");
    assert_eq!(retried.state, JobState::Available);
    assert_eq!(retried.max_attempts, 5);
    assert_eq!(retried.attempt, 1);
}

/// Retrying a scheduled or retryable job by hand makes it `available` now.
pub async fn manual_retry_of_a_waiting_job_makes_it_available_now(storage: TestStorage) {
    let scheduled = enqueue_one(&storage, job_at("q", at(3600)), at(0)).await;
    let failing = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&failing), failed("later", secs(3600)), at(1)).await;

    for id in [scheduled, failing.id] {
        let retried = storage.retry(id, Some(at(10))).await.expect("retry succeeds");
        assert_eq!(retried.state, JobState::Available);
        assert_eq!(retried.run_at, at(10));
    }
    let claimed = claim(&storage, &["q"], 10, at(10)).await;
    assert_eq!(claimed.len(), 2);
}

/// Retrying a running job is refused with an invalid-state error, and changes nothing.
pub async fn manual_retry_of_a_running_job_is_an_invalid_state(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    let error = storage.retry(record.id, Some(at(1))).await.expect_err("retrying a running job fails");
    assert!(matches!(error, Error::InvalidState { id, state: JobState::Running, .. } if id == record.id), "{error:?}");
    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Running);
    assert_eq!(stored.lease_token, record.lease_token);
}

/// Retrying a job that does not exist is a not-found error.
pub async fn manual_retry_of_a_missing_job_is_not_found(storage: TestStorage) {
    let missing = haul::JobId::new();
    let error = storage.retry(missing, Some(at(0))).await.expect_err("retrying a missing job fails");
    assert!(matches!(error, Error::NotFound(id) if id == missing), "{error:?}");
}

/// A snooze puts the job back for later without spending the attempt or recording an
/// error.
pub async fn a_snooze_keeps_the_attempt(storage: TestStorage) {
    let record = running_job(&storage, job("q").max_attempts(1), at(0)).await;
    report_applied(&storage, claim_of(&record), JobOutcome::Snoozed { delay: secs(60) }, at(1)).await;

    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Scheduled);
    assert_eq!(stored.run_at, at(61));
    assert_eq!(stored.attempt, 0);
    assert!(stored.errors.is_empty());
    assert_eq!(stored.lease_token, None);

    storage.promote_due(Some(at(61))).await.expect("promote succeeds");
    let again = claim_only(&storage, "q", record.id, at(61)).await;
    assert_eq!(again.attempt, 1, "the only attempt is still there");
}

/// A snooze of zero makes the job `available` at once.
pub async fn a_snooze_of_zero_makes_the_job_available_at_once(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), JobOutcome::Snoozed { delay: secs(0) }, at(4)).await;
    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Available);
    assert_eq!(stored.attempt, 0);
    assert_eq!(stored.run_at, at(4));
}

/// When a cancel was requested, a failure ends the job `cancelled` instead of retrying it.
pub async fn a_cancel_request_wins_over_a_failure(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    storage.cancel(record.id, Some(at(1))).await.expect("cancel succeeds");
    report_applied(&storage, claim_of(&record), failed("interrupted", secs(5)), at(2)).await;

    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Cancelled);
    assert_eq!(stored.finished_at, Some(at(2)));
    storage.promote_due(Some(at(100))).await.expect("promote succeeds");
    assert!(claim(&storage, &["q"], 10, at(100)).await.is_empty());
}

/// When a cancel was requested, a snooze ends the job `cancelled` instead of putting it back.
pub async fn a_cancel_request_wins_over_a_snooze(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    storage.cancel(record.id, Some(at(1))).await.expect("cancel succeeds");
    report_applied(&storage, claim_of(&record), JobOutcome::Snoozed { delay: secs(0) }, at(2)).await;

    assert_eq!(state_of(&storage, record.id).await, JobState::Cancelled);
    assert!(claim(&storage, &["q"], 10, at(3)).await.is_empty());
}
