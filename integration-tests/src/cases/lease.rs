//! Leases: expiry and rescue, heartbeats, and fencing of outcomes by the claim.

use haul::{Claim, JobOutcome, JobState, storage::HeartbeatParams, storage::Report};

use super::*;

/// An outcome reported with the current claim finishes the job: `completed`, with its
/// finish time, and the claim cleared.
pub async fn completing_with_the_current_claim_finishes_the_job(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), JobOutcome::Completed, at(7)).await;

    let done = get(&storage, record.id).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.finished_at, Some(at(7)));
    assert_eq!(done.attempt, 1);
    assert!(done.errors.is_empty());
    assert_eq!(done.lease_token, None, "a finished job holds no lease");
    assert_eq!(done.lease_expires_at, None);
}

/// A lease is not rescued before it expires; once expired the job is `available`
/// again, its attempt still counted and the lost attempt recorded, and the next claim
/// is the next attempt.
pub async fn rescues_an_expired_lease_and_counts_the_attempt(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    assert_eq!(record.lease_expires_at, Some(at(30)));

    let early = storage.rescue_expired(Some(at(29))).await.expect("rescue succeeds");
    assert_eq!((early.rescued, early.discarded, early.cancelled), (0, 0, 0));
    assert_eq!(state_of(&storage, record.id).await, JobState::Running);

    let rescued = storage.rescue_expired(Some(at(30))).await.expect("rescue succeeds");
    assert_eq!((rescued.rescued, rescued.discarded, rescued.cancelled), (1, 0, 0));
    let back = get(&storage, record.id).await;
    assert_eq!(back.state, JobState::Available);
    assert_eq!(back.attempt, 1, "the lost attempt stays counted");
    assert_eq!(back.errors.len(), 1, "the lost attempt is recorded");
    assert_eq!(back.errors[0].attempt, 1);
    assert_eq!(back.lease_token, None);
    assert_eq!(back.finished_at, None);

    let again = claim_only(&storage, "q", record.id, at(31)).await;
    assert_eq!(again.attempt, 2);
    assert_ne!(again.lease_token, record.lease_token);
}

/// An expired lease on the last attempt discards the job, keeping its history.
pub async fn rescue_discards_a_job_with_no_attempt_left(storage: TestStorage) {
    let record = running_job(&storage, job("q").max_attempts(1), at(0)).await;
    let outcome = storage.rescue_expired(Some(at(30))).await.expect("rescue succeeds");
    assert_eq!((outcome.rescued, outcome.discarded, outcome.cancelled), (0, 1, 0));

    let gone = get(&storage, record.id).await;
    assert_eq!(gone.state, JobState::Discarded);
    assert_eq!(gone.finished_at, Some(at(30)));
    assert_eq!(gone.errors.len(), 1);
    assert_eq!(gone.errors[0].attempt, 1);
    assert!(claim(&storage, &["q"], 10, at(31)).await.is_empty());
}

/// An expired lease of a job whose cancel was requested ends it `cancelled`.
pub async fn rescue_cancels_a_job_whose_cancel_was_requested(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    storage.cancel(record.id, Some(at(5))).await.expect("cancel succeeds");
    let outcome = storage.rescue_expired(Some(at(30))).await.expect("rescue succeeds");
    assert_eq!((outcome.rescued, outcome.discarded, outcome.cancelled), (0, 0, 1));

    let gone = get(&storage, record.id).await;
    assert_eq!(gone.state, JobState::Cancelled);
    assert_eq!(gone.finished_at, Some(at(30)));
    assert!(claim(&storage, &["q"], 10, at(31)).await.is_empty());
}

/// A heartbeat extends the lease from its own now, so the job is not rescued at the
/// first deadline but is at the new one.
pub async fn heartbeat_keeps_a_lease_alive(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&record)], secs(30)).now(at(20)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.extended, vec![claim_of(&record)]);
    assert!(beat.cancelled.is_empty() && beat.lost.is_empty(), "{beat:?}");
    assert_eq!(get(&storage, record.id).await.lease_expires_at, Some(at(50)));

    let outcome = storage.rescue_expired(Some(at(40))).await.expect("rescue succeeds");
    assert_eq!(outcome.rescued, 0, "the extended lease has not expired");
    let still = get(&storage, record.id).await;
    assert_eq!(still.state, JobState::Running);
    assert_eq!(still.lease_token, record.lease_token, "a heartbeat keeps the claim's token");

    let outcome = storage.rescue_expired(Some(at(50))).await.expect("rescue succeeds");
    assert_eq!(outcome.rescued, 1);
}

/// A heartbeat for a claim that was rescued (and re-claimed by someone else) reports it
/// lost and leaves the new holder's lease alone.
pub async fn heartbeat_reports_a_rescued_claim_as_lost(storage: TestStorage) {
    let stale = running_job(&storage, job("q"), at(0)).await;
    storage.rescue_expired(Some(at(30))).await.expect("rescue succeeds");
    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&stale)], secs(30)).now(at(31)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.lost, vec![claim_of(&stale)]);
    assert!(beat.extended.is_empty() && beat.cancelled.is_empty(), "{beat:?}");

    let current = claim_only(&storage, "q", stale.id, at(32)).await;
    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&stale)], secs(300)).now(at(33)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.lost, vec![claim_of(&stale)]);
    let record = get(&storage, stale.id).await;
    assert_eq!(record.lease_token, current.lease_token);
    assert_eq!(record.lease_expires_at, Some(at(62)), "the stale heartbeat did not extend the new lease");
}

/// A heartbeat for a job that already finished reports it lost.
pub async fn heartbeat_reports_a_finished_job_as_lost(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), JobOutcome::Completed, at(1)).await;
    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&record)], secs(30)).now(at(2)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.lost, vec![claim_of(&record)]);
    assert!(beat.extended.is_empty());
    assert_eq!(state_of(&storage, record.id).await, JobState::Completed);
}

/// A heartbeat of several claims sorts each into extended or lost.
pub async fn heartbeat_sorts_a_batch_into_extended_and_lost(storage: TestStorage) {
    let held = running_job(&storage, job("q"), at(0)).await;
    let finished = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&finished), JobOutcome::Completed, at(1)).await;
    let unknown = Claim { id: haul::JobId::new(), token: haul::storage::LeaseToken::new() };

    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&held), claim_of(&finished), unknown], secs(30)).now(at(2)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.extended, vec![claim_of(&held)]);
    let mut lost: Vec<_> = beat.lost.iter().map(|claim| claim.id).collect();
    lost.sort();
    let mut expected = vec![finished.id, unknown.id];
    expected.sort();
    assert_eq!(lost, expected);
}

/// A heartbeat of more claims than one statement carries (on PostgreSQL, a thousand
/// claims go as several) extends every held claim and reports every other one lost.
pub async fn a_large_heartbeat_sorts_every_claim(storage: TestStorage) {
    const JOBS: usize = 1_000;
    enqueue(&storage, (0..JOBS).map(|_| job("q")).collect(), at(0)).await;
    let claimed = claim(&storage, &["q"], JOBS, at(0)).await;
    assert_eq!(claimed.len(), JOBS);
    // Every tenth job finished, and every tenth claim is one nobody holds.
    let mut claims = Vec::with_capacity(JOBS + JOBS / 10);
    let (mut held, mut lost) = (Vec::new(), Vec::new());
    for (index, record) in claimed.iter().enumerate() {
        if index % 10 == 3 {
            report_applied(&storage, claim_of(record), JobOutcome::Completed, at(1)).await;
            lost.push(claim_of(record));
        } else {
            held.push(claim_of(record));
        }
        claims.push(claim_of(record));
        if index % 10 == 7 {
            let unknown = Claim { id: haul::JobId::new(), token: haul::storage::LeaseToken::new() };
            lost.push(unknown);
            claims.push(unknown);
        }
    }

    let beat = storage.heartbeat(HeartbeatParams::new(claims, secs(30)).now(at(2))).await.expect("heartbeat succeeds");
    let sorted = |mut claims: Vec<Claim>| {
        claims.sort_by_key(|claim| (claim.id, claim.token.0));
        claims
    };
    assert_eq!(sorted(beat.extended), sorted(held.clone()), "every held claim is extended");
    assert_eq!(sorted(beat.lost), sorted(lost), "every other claim is lost");
    for claim in [held[0], held[held.len() / 2], held[held.len() - 1]] {
        assert_eq!(get(&storage, claim.id).await.lease_expires_at, Some(at(32)), "the lease runs from the beat");
    }
}

/// A holder whose lease expired cannot complete the job once someone else holds it:
/// the outcome is rejected and the new holder's claim is untouched.
pub async fn a_stale_holder_cannot_complete_a_job_someone_else_holds(storage: TestStorage) {
    let stale = running_job(&storage, job("q"), at(0)).await;
    storage.rescue_expired(Some(at(30))).await.expect("rescue succeeds");
    let current = claim_only(&storage, "q", stale.id, at(31)).await;

    let outcome = report(&storage, claim_of(&stale), JobOutcome::Completed, at(32)).await;
    assert_eq!(outcome.rejected, vec![claim_of(&stale)]);
    assert!(outcome.applied.is_empty());
    let record = get(&storage, stale.id).await;
    assert_eq!(record.state, JobState::Running);
    assert_eq!(record.attempt, 2);
    assert_eq!(record.lease_token, current.lease_token);

    report_applied(&storage, claim_of(&current), JobOutcome::Completed, at(33)).await;
    assert_eq!(state_of(&storage, stale.id).await, JobState::Completed);
}

/// A holder whose lease expired cannot fail the job either: its error is not recorded.
pub async fn a_stale_holder_cannot_fail_a_job(storage: TestStorage) {
    let stale = running_job(&storage, job("q"), at(0)).await;
    storage.rescue_expired(Some(at(30))).await.expect("rescue succeeds");
    let before = get(&storage, stale.id).await;

    let outcome = report(&storage, claim_of(&stale), failed("too late", secs(1)), at(31)).await;
    assert_eq!(outcome.rejected, vec![claim_of(&stale)]);
    let after = get(&storage, stale.id).await;
    assert_eq!(after.state, JobState::Available, "a rescued job stays available");
    assert_eq!(after.errors, before.errors, "the stale failure is not recorded");
    assert_eq!(after.attempt, 1);
}

/// An outcome whose token does not belong to the job, or for a job that does not
/// exist, is rejected.
pub async fn an_outcome_with_a_foreign_token_is_rejected(storage: TestStorage) {
    let first = running_job(&storage, job("q"), at(0)).await;
    let second = running_job(&storage, job("q"), at(0)).await;
    let borrowed = Claim { id: first.id, token: claim_of(&second).token };
    let unknown = Claim { id: haul::JobId::new(), token: haul::storage::LeaseToken::new() };

    let outcome = report_all(
        &storage,
        vec![
            Report { claim: borrowed, outcome: JobOutcome::Completed },
            Report { claim: unknown, outcome: JobOutcome::Completed },
        ],
        at(1),
    )
    .await;
    assert!(outcome.applied.is_empty(), "{outcome:?}");
    let mut rejected: Vec<_> = outcome.rejected.iter().map(|claim| claim.id).collect();
    rejected.sort();
    let mut expected = vec![first.id, unknown.id];
    expected.sort();
    assert_eq!(rejected, expected);
    assert_eq!(state_of(&storage, first.id).await, JobState::Running);
    assert_eq!(state_of(&storage, second.id).await, JobState::Running);
}

/// The same outcome reported twice is applied once: the second finds no running claim.
pub async fn an_outcome_reported_twice_is_applied_once(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&record), failed("first", secs(60)), at(1)).await;
    let again = report(&storage, claim_of(&record), failed("second", secs(60)), at(2)).await;
    assert_eq!(again.rejected, vec![claim_of(&record)]);

    let stored = get(&storage, record.id).await;
    assert_eq!(stored.errors.len(), 1);
    assert_eq!(stored.errors[0].message, "first");
    assert_eq!(stored.run_at, at(61));
}

/// One report batch applies the outcomes of held jobs and rejects the others.
pub async fn a_report_batch_applies_held_outcomes_and_rejects_the_rest(storage: TestStorage) {
    let a = running_job(&storage, job("q"), at(0)).await;
    let b = running_job(&storage, job("q"), at(0)).await;
    let stale = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&stale), JobOutcome::Completed, at(1)).await;

    let outcome = report_all(
        &storage,
        vec![
            Report { claim: claim_of(&a), outcome: JobOutcome::Completed },
            Report { claim: claim_of(&stale), outcome: failed("late", secs(1)) },
            Report { claim: claim_of(&b), outcome: JobOutcome::Discarded { reason: "no".to_owned() } },
        ],
        at(2),
    )
    .await;
    let mut applied: Vec<_> = outcome.applied.iter().map(|claim| claim.id).collect();
    applied.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(applied, expected);
    assert_eq!(outcome.rejected, vec![claim_of(&stale)]);
    assert_eq!(state_of(&storage, a.id).await, JobState::Completed);
    assert_eq!(state_of(&storage, b.id).await, JobState::Discarded);
    let stale = get(&storage, stale.id).await;
    assert_eq!(stale.state, JobState::Completed);
    assert!(stale.errors.is_empty());
}

/// A batch of a thousand outcomes of every kind, with error messages (more than a
/// backend may send in one request), is applied whole, each outcome to its own job;
/// the one stale claim among them is rejected.
pub async fn a_large_report_batch_applies_every_outcome(storage: TestStorage) {
    const JOBS: usize = 1_000;
    enqueue(&storage, (0..JOBS).map(|_| job("q")).collect(), at(0)).await;
    let claimed = claim(&storage, &["q"], JOBS, at(1)).await;
    assert_eq!(claimed.len(), JOBS);
    let message = "the handler said no ".repeat(10);
    let outcome_of = |index: usize| match index % 4 {
        0 => JobOutcome::Completed,
        1 => failed(&message, secs(60)),
        2 => JobOutcome::Discarded { reason: message.clone() },
        _ => JobOutcome::Snoozed { delay: secs(60) },
    };
    let stale = Claim { id: claimed[JOBS / 2].id, token: haul::storage::LeaseToken::new() };
    let mut reports: Vec<Report> = claimed
        .iter()
        .enumerate()
        .map(|(index, record)| Report { claim: claim_of(record), outcome: outcome_of(index) })
        .collect();
    reports.insert(JOBS / 3, Report { claim: stale, outcome: JobOutcome::Completed });

    let outcome = report_all(&storage, reports, at(2)).await;
    assert_eq!(outcome.applied.len(), JOBS);
    assert_eq!(outcome.rejected, vec![stale]);
    let expected = [JobState::Completed, JobState::Retryable, JobState::Discarded, JobState::Scheduled];
    for (index, record) in claimed.iter().enumerate() {
        let stored = get(&storage, record.id).await;
        assert_eq!(stored.state, expected[index % 4], "job {index}");
        assert_eq!(stored.lease_token, None, "job {index} holds no lease");
        if matches!(index % 4, 1 | 2) {
            assert_eq!(stored.errors.len(), 1, "job {index}");
            assert_eq!(stored.errors[0].message, message, "job {index}");
        }
    }
}

/// A report batch and a heartbeat that carry an old (rescued) and a new claim of one
/// job judge each by its own token, in either order: the new claim's outcome applies and
/// its lease is extended; the old claim is rejected and lost.
pub async fn each_claim_of_one_job_is_judged_by_its_own_token(storage: TestStorage) {
    for old_first in [true, false] {
        let (id, old, new) = old_and_current_claims(&storage, "q").await;
        let claims = if old_first { vec![old, new] } else { vec![new, old] };

        let beat = storage
            .heartbeat(HeartbeatParams::new(claims.clone(), secs(30)).now(at(32)))
            .await
            .expect("heartbeat succeeds");
        assert_eq!((beat.extended, beat.lost), (vec![new], vec![old]), "old claim first: {old_first}");

        let reports = claims
            .into_iter()
            .map(|claim| Report {
                claim,
                outcome: if claim == new { JobOutcome::Completed } else { failed("stale", secs(1)) },
            })
            .collect();
        let outcome = report_all(&storage, reports, at(33)).await;
        assert_eq!((outcome.applied, outcome.rejected), (vec![new], vec![old]), "old claim first: {old_first}");
        let record = get(&storage, id).await;
        assert_eq!((record.state, record.attempt), (JobState::Completed, 2));
        assert!(
            record.errors.iter().all(|error| error.message != "stale"),
            "the stale failure is not recorded: {:?}",
            record.errors
        );
    }
}
