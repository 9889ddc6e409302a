//! Claim: order, limit, queue selection, paused queues, and what a claim records.

use haul::{JobOutcome, JobState, storage::CLAIM_ORDER_LAG};

use super::*;

/// Jobs are claimed lowest priority first, then earliest `run_at`, then lowest id,
/// whatever order they were enqueued in.
pub async fn orders_by_priority_then_run_at_then_id(storage: TestStorage) {
    let ids = ordered_ids(6);
    // (id, priority, run_at); the expected claim order is the order of this list.
    let expected = [
        (ids[3], -1, at(-10)),
        (ids[5], 0, at(-30)),
        (ids[1], 0, at(-20)),
        (ids[0], 0, at(-10)),
        (ids[2], 0, at(-10)),
        (ids[4], 2, at(-50)),
    ];
    let mut jobs: Vec<_> =
        expected.iter().map(|(id, priority, run_at)| job_at("q", *run_at).id(*id).priority(*priority)).collect();
    jobs.reverse();
    jobs.swap(0, 3);
    enqueue(&storage, jobs, at(0)).await;

    let mut order = Vec::new();
    for _ in 0..expected.len() {
        let claimed = claim(&storage, &["q"], 1, at(0)).await;
        assert_eq!(claimed.len(), 1, "one job per claim of limit 1");
        order.push(claimed[0].id);
    }
    let expected: Vec<_> = expected.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(order, expected);
    assert!(claim(&storage, &["q"], 1, at(0)).await.is_empty());
}

/// A job that becomes available between claims may be passed over by the next claims
/// (PostgreSQL does while it resumes its walks of a queue from its last claimed job),
/// but a claim made [`CLAIM_ORDER_LAG`] after the job became available takes it before
/// any job that sorts after it. Each job is claimed once either way.
pub async fn a_job_is_passed_over_for_at_most_the_order_lag(storage: TestStorage) {
    passes_over_a_new_job_for_at_most_the_order_lag(&storage).await;
}

/// The case [`a_job_is_passed_over_for_at_most_the_order_lag`]; says whether the claim
/// right after the new job passed it over (a backend test that makes claims resume
/// checks that it did, so the bound is tested where it bites).
pub async fn passes_over_a_new_job_for_at_most_the_order_lag(storage: &TestStorage) -> bool {
    let ids = ordered_ids(4);
    let jobs = ids.iter().zip(-10..).map(|(id, second)| job_at("q", at(second)).id(*id)).collect();
    enqueue(storage, jobs, at(0)).await;
    assert_eq!(ids_of(&claim(storage, &["q"], 1, at(0)).await), [ids[0]]);
    assert_eq!(ids_of(&claim(storage, &["q"], 1, at(0)).await), [ids[1]]);

    // A job that sorts before every other becomes available.
    let early = enqueue_one(storage, job_at("q", at(-60)), at(0)).await;
    let soon = ids_of(&claim(storage, &["q"], 1, at(0) + chrono::Duration::milliseconds(1)).await);
    let passed_over = soon == [ids[2]];
    assert!(
        passed_over || soon == [early],
        "the claim takes the new job, or passes it over for the next one: {soon:?}"
    );

    let lag = chrono::Duration::from_std(CLAIM_ORDER_LAG).expect("the lag fits a clock interval");
    let after_lag = ids_of(&claim(storage, &["q"], 1, at(0) + lag).await);
    let expected = if passed_over { early } else { ids[2] };
    assert_eq!(after_lag, [expected], "a job available for the order lag is claimed before any that sorts after it");
    assert_eq!(ids_of(&claim(storage, &["q"], 10, at(0) + lag).await), [ids[3]], "every job is claimed once");
    passed_over
}

/// A job passed over is never left behind by a claim that would come back empty: with
/// every other job claimed, the next claim takes it at once, whatever the lag allows.
pub async fn a_claim_that_finds_nothing_else_takes_a_passed_over_job(storage: TestStorage) {
    let ids = ordered_ids(2);
    let jobs = ids.iter().zip(-10..).map(|(id, second)| job_at("q", at(second)).id(*id)).collect();
    enqueue(&storage, jobs, at(0)).await;
    assert_eq!(ids_of(&claim(&storage, &["q"], 1, at(0)).await), [ids[0]]);
    assert_eq!(ids_of(&claim(&storage, &["q"], 1, at(0)).await), [ids[1]]);

    let early = enqueue_one(&storage, job_at("q", at(-60)), at(0)).await;
    let soon = at(0) + chrono::Duration::milliseconds(1);
    assert_eq!(ids_of(&claim(&storage, &["q"], 1, soon).await), [early], "the only available job is claimed");
    assert!(claim(&storage, &["q"], 1, soon).await.is_empty());
}

/// A claim of several jobs takes the best ones in claim order and leaves the rest.
pub async fn claims_at_most_the_limit_taking_the_first_in_order(storage: TestStorage) {
    let ids = ordered_ids(5);
    let jobs = ids.iter().rev().map(|id| job("q").id(*id)).collect();
    enqueue(&storage, jobs, at(0)).await;

    let first = claim(&storage, &["q"], 3, at(0)).await;
    assert_eq!(sorted_ids_of(&first), ids[..3].to_vec());
    let rest = claim(&storage, &["q"], 3, at(0)).await;
    assert_eq!(sorted_ids_of(&rest), ids[3..].to_vec());
    assert!(claim(&storage, &["q"], 3, at(0)).await.is_empty());
}

/// A claim with a limit of zero takes nothing.
pub async fn a_limit_of_zero_claims_nothing(storage: TestStorage) {
    let id = enqueue_one(&storage, job("q"), at(0)).await;
    assert!(claim(&storage, &["q"], 0, at(0)).await.is_empty());
    assert_eq!(state_of(&storage, id).await, JobState::Available);
}

/// Only the requested queues are claimed from; priority is compared across them.
pub async fn claims_only_from_the_requested_queues(storage: TestStorage) {
    let a = enqueue_one(&storage, job("a").priority(5), at(0)).await;
    let b = enqueue_one(&storage, job("b").priority(-5), at(0)).await;
    let c = enqueue_one(&storage, job("c").priority(1), at(0)).await;

    let first = claim(&storage, &["a", "c"], 1, at(0)).await;
    assert_eq!(ids_of(&first), vec![c], "the better priority of the requested queues wins");
    let second = claim(&storage, &["a", "c"], 10, at(0)).await;
    assert_eq!(ids_of(&second), vec![a]);
    assert_eq!(state_of(&storage, b).await, JobState::Available, "the other queue's job is untouched");
    assert!(claim(&storage, &["nothing-here"], 10, at(0)).await.is_empty());
}

/// A claimed job is `running` with its attempt counted, a lease of the asked length
/// from now, the claimer's id and the attempt's start time.
pub async fn records_attempt_lease_and_holder(storage: TestStorage) {
    let id = enqueue_one(&storage, job("q"), at(0)).await;
    let params = haul::storage::ClaimParams::new(["q"], 1).lease(secs(45)).worker_id("host-a/7").now(at(5));
    let claimed = storage.claim(params).await.expect("claim succeeds");
    assert_eq!(ids_of(&claimed), vec![id]);

    for record in [claimed[0].clone(), get(&storage, id).await] {
        assert_eq!(record.state, JobState::Running);
        assert_eq!(record.attempt, 1);
        assert_eq!(record.attempted_at, Some(at(5)));
        assert_eq!(record.lease_expires_at, Some(at(50)));
        assert_eq!(record.claimed_by.as_deref(), Some("host-a/7"));
        assert!(record.lease_token.is_some());
        assert_eq!(record.finished_at, None);
    }
    assert_eq!(claimed[0].lease_token, get(&storage, id).await.lease_token, "get shows the claim's token");
}

/// Every claim of a job gets a new lease token.
pub async fn every_claim_gets_a_fresh_lease_token(storage: TestStorage) {
    let first = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&first), JobOutcome::Snoozed { delay: secs(0) }, at(1)).await;
    let second = claim_only(&storage, "q", first.id, at(2)).await;
    assert_ne!(first.lease_token, second.lease_token);
    assert_eq!(second.attempt, 1, "the snoozed attempt was not spent");
}

/// Jobs that are running or finished are never claimed.
pub async fn never_claims_running_or_finished_jobs(storage: TestStorage) {
    let running = running_job(&storage, job("q"), at(0)).await;
    let done = running_job(&storage, job("q"), at(0)).await;
    report_applied(&storage, claim_of(&done), JobOutcome::Completed, at(1)).await;
    assert!(claim(&storage, &["q"], 10, at(2)).await.is_empty());
    assert_eq!(state_of(&storage, running.id).await, JobState::Running);
    assert_eq!(state_of(&storage, done.id).await, JobState::Completed);
}

/// A paused queue is skipped by claims that also name other queues, until it is resumed.
pub async fn skips_paused_queues(storage: TestStorage) {
    let paused = enqueue_one(&storage, job("paused").priority(-10), at(0)).await;
    let open = enqueue_one(&storage, job("open"), at(0)).await;
    storage.pause_queue("paused").await.expect("pause succeeds");

    let claimed = claim(&storage, &["paused", "open"], 10, at(1)).await;
    assert_eq!(ids_of(&claimed), vec![open]);
    assert_eq!(state_of(&storage, paused).await, JobState::Available);

    storage.resume_queue("paused").await.expect("resume succeeds");
    let claimed = claim(&storage, &["paused", "open"], 10, at(2)).await;
    assert_eq!(ids_of(&claimed), vec![paused]);
}
