//! Retention: pruning removes finished jobs older than the policy, and nothing else.

use std::time::Duration;

use haul::{
    Claim, JobId, JobOutcome, JobState, QueueLimits, Retention, Unique,
    storage::{EnqueueParams, LeaseToken, PruneParams, Report, ReportParams},
};

use super::{
    jobs::{Script, Tracker},
    worker::{RunningWorker, enqueue_scripts},
    *,
};

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

/// A report that deletes completed jobs leaves nothing of a job without a uniqueness
/// key that completed: it is gone from `get` and the counts, and its slot under a
/// concurrency limit is free. A job with a uniqueness key is kept as completed, so a
/// key that blocks finished jobs still blocks (until prune); the batch's other outcomes
/// are stored as usual, and a completion whose claim is stale deletes nothing.
pub async fn a_completion_that_deletes_its_job_leaves_nothing_of_it(storage: TestStorage) {
    storage.set_queue_limits("one", QueueLimits::new().concurrency(1)).await.expect("limits are stored");
    let plain = running_job(&storage, job("one"), at(0)).await;
    let waiting = enqueue_one(&storage, job("one"), at(0)).await;
    assert!(claim(&storage, &["one"], 1, at(0)).await.is_empty(), "queue one is at its limit");
    let once = || Unique::new("welcome:ada").states(JobState::ALL);
    let unique = running_job(&storage, job("q").unique(once()), at(0)).await;
    let failed_job = running_job(&storage, job("q"), at(0)).await;
    let discarded = running_job(&storage, job("q"), at(0)).await;
    let stale = running_job(&storage, job("q"), at(0)).await;
    let stale_claim = Claim { id: stale.id, token: LeaseToken::new() };

    let reports = vec![
        Report { claim: claim_of(&plain), outcome: JobOutcome::Completed },
        Report { claim: claim_of(&unique), outcome: JobOutcome::Completed },
        Report { claim: claim_of(&failed_job), outcome: failed("boom", secs(60)) },
        Report { claim: claim_of(&discarded), outcome: JobOutcome::Discarded { reason: "no".to_owned() } },
        Report { claim: stale_claim, outcome: JobOutcome::Completed },
    ];
    let outcome =
        storage.report(ReportParams::new(reports).now(at(1)).delete_completed(true)).await.expect("report succeeds");
    let applied = [&plain, &unique, &failed_job, &discarded].map(claim_of);
    assert_eq!(sorted(outcome.applied), sorted(applied.to_vec()));
    assert_eq!(outcome.rejected, vec![stale_claim]);

    assert!(!exists(&storage, plain.id).await, "the completed job is deleted");
    assert_eq!(state_of(&storage, unique.id).await, JobState::Completed, "a job with a key is kept");
    assert_eq!(state_of(&storage, failed_job.id).await, JobState::Retryable);
    assert_eq!(state_of(&storage, discarded.id).await, JobState::Discarded);
    assert_eq!(state_of(&storage, stale.id).await, JobState::Running, "a stale claim deletes nothing");
    let counts = storage.counts().await.expect("counts succeed");
    let of = |queue: &str, state| counts.iter().find(|c| c.queue == queue).map_or(0, |c| c.get(state));
    assert_eq!((of("one", JobState::Completed), of("one", JobState::Available)), (0, 1));
    assert_eq!((of("q", JobState::Completed), of("q", JobState::Running)), (1, 1));
    assert_eq!(total_jobs(&storage).await, 5);

    let again =
        storage.enqueue(EnqueueParams::new(vec![job("q").unique(once())]).now(at(2))).await.expect("enqueue succeeds");
    assert_eq!(again.duplicates, vec![unique.id], "the kept job's key still blocks");
    assert_eq!(ids_of(&claim(&storage, &["one"], 1, at(2)).await), vec![waiting], "the deleted job's slot is free");
}

/// A batch that deletes completed jobs applies only the first outcome of a claim: a
/// repeat (the same completion, or a failure or a snooze after it) finds the claim
/// spent and is rejected, and leaves nothing of the deleted job behind, no entry that a
/// later claim could take.
pub async fn an_outcome_repeated_in_a_deleting_batch_is_applied_once(storage: TestStorage) {
    let twice = running_job(&storage, job("q"), at(0)).await;
    let then_failed = running_job(&storage, job("q"), at(0)).await;
    let then_snoozed = running_job(&storage, job("q"), at(0)).await;
    let reports = vec![
        Report { claim: claim_of(&twice), outcome: JobOutcome::Completed },
        Report { claim: claim_of(&then_failed), outcome: JobOutcome::Completed },
        Report { claim: claim_of(&then_snoozed), outcome: JobOutcome::Completed },
        Report { claim: claim_of(&twice), outcome: JobOutcome::Completed },
        Report { claim: claim_of(&then_failed), outcome: failed("late", secs(0)) },
        Report { claim: claim_of(&then_snoozed), outcome: JobOutcome::Snoozed { delay: Duration::ZERO } },
    ];
    let outcome =
        storage.report(ReportParams::new(reports).now(at(1)).delete_completed(true)).await.expect("report succeeds");
    let claims = [&twice, &then_failed, &then_snoozed].map(claim_of).to_vec();
    assert_eq!(sorted(outcome.applied), sorted(claims.clone()), "each claim's first outcome applies");
    assert_eq!(sorted(outcome.rejected), sorted(claims), "each repeat is rejected");

    assert_eq!(total_jobs(&storage).await, 0, "every job is deleted");
    for record in [&twice, &then_failed, &then_snoozed] {
        assert!(!exists(&storage, record.id).await, "job {} is deleted", record.id);
    }
    assert!(claim(&storage, &["q"], 10, at(2)).await.is_empty(), "no claim finds a deleted job");
    assert_eq!(total_jobs(&storage).await, 0, "nor brings one back");
}

/// A batch that deletes completed jobs judges each claim of a job by its own token, in
/// either order: the completion under the job's current claim deletes it, and that of an
/// old (rescued) claim is rejected and deletes nothing, before or after it.
pub async fn a_deleting_batch_deletes_a_job_only_under_its_current_claim(storage: TestStorage) {
    for old_first in [true, false] {
        let (id, old, new) = old_and_current_claims(&storage, "q").await;
        let claims = if old_first { vec![old, new] } else { vec![new, old] };
        let reports = claims.into_iter().map(|claim| Report { claim, outcome: JobOutcome::Completed }).collect();
        let outcome = storage
            .report(ReportParams::new(reports).now(at(32)).delete_completed(true))
            .await
            .expect("report succeeds");
        assert_eq!((outcome.applied, outcome.rejected), (vec![new], vec![old]), "old claim first: {old_first}");
        assert!(!exists(&storage, id).await, "old claim first: {old_first}: the job is deleted");
        assert_eq!(total_jobs(&storage).await, 0, "old claim first: {old_first}: nothing is left");
    }
}

/// A completion that deletes a job with a limit key gives its key's slot back: the
/// key's next job, held back while the deleted one ran, is claimed at once.
pub async fn a_deleted_job_gives_back_its_limit_key_slot(storage: TestStorage) {
    storage.set_queue_limits("keyed", QueueLimits::new().key_concurrency(1)).await.expect("limits are stored");
    let first = running_job(&storage, job("keyed").limit_key("k"), at(0)).await;
    let next = enqueue_one(&storage, job("keyed").limit_key("k"), at(0)).await;
    assert!(claim(&storage, &["keyed"], 10, at(0)).await.is_empty(), "key k is at its limit");
    let completed = Report { claim: claim_of(&first), outcome: JobOutcome::Completed };
    let outcome = storage
        .report(ReportParams::new(vec![completed]).now(at(1)).delete_completed(true))
        .await
        .expect("report succeeds");
    assert_eq!(outcome.applied, vec![claim_of(&first)], "the completion applies");
    assert!(outcome.rejected.is_empty(), "nothing is rejected: {outcome:?}");
    assert!(!exists(&storage, first.id).await, "the completed job is deleted");
    assert_eq!(ids_of(&claim(&storage, &["keyed"], 10, at(2)).await), vec![next], "key k's slot is free");
}

/// A worker that keeps completed jobs for no time deletes each job it completes: its
/// jobs run once each, and none is left stored, with nothing to prune.
pub async fn a_worker_that_keeps_no_completed_jobs_deletes_them(storage: TestStorage) {
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, "r.none", vec![Script::Complete; 20]).await;
    let keep_none = Retention::default().completed(Duration::ZERO);
    // A worker that never leads never prunes: only its completions can delete the jobs.
    let worker = RunningWorker::start(&storage, "r.none", &tracker, |builder| {
        builder.retention(keep_none, Duration::from_secs(24 * 3600)).leader_eligible(false)
    });
    eventually("every job to be deleted", || {
        let storage = storage.clone();
        async move { (total_jobs(&storage).await == 0).then_some(()) }
    })
    .await;
    worker.stop().await;
    for id in ids {
        assert_eq!(tracker.runs(id), vec![1], "job {id} ran exactly once");
    }
}

fn sorted(mut claims: Vec<Claim>) -> Vec<Claim> {
    claims.sort_by_key(|claim| claim.id);
    claims
}
