//! The tricky parts of the memory backend's semantics, each with the clock moved by
//! hand. The cross-backend conformance suite covers the rest.

#![allow(clippy::unwrap_used)] // tests may unwrap

use haul_core::Admin as _;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use haul_core::{
    ClaimParams, EnqueueParams, Error, HeartbeatParams, JobId, JobOutcome, JobRecord, JobState, ListParams, NewJob,
    PruneParams, Report, ReportParams, Retention, RunAt, Storage, Timestamp,
};
use haul_memory::MemoryStorage;
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

fn job(queue: &str) -> NewJob {
    NewJob::new("work", json!({})).queue(queue)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

async fn enqueue(storage: &MemoryStorage, jobs: Vec<NewJob>, now: Timestamp) -> Vec<JobId> {
    storage.enqueue(EnqueueParams::new(jobs).now(now)).await.unwrap().ids
}

async fn claim(storage: &MemoryStorage, queues: &[&str], limit: usize, now: Timestamp) -> Vec<JobRecord> {
    storage.claim(ClaimParams::new(queues.iter().copied(), limit).lease(LEASE).now(now)).await.unwrap()
}

async fn report(storage: &MemoryStorage, job: &JobRecord, outcome: JobOutcome, now: Timestamp) -> bool {
    let report = Report { claim: job.claim().unwrap(), outcome };
    let outcome = storage.report(ReportParams::new(vec![report]).now(now)).await.unwrap();
    assert_eq!(outcome.applied.len() + outcome.rejected.len(), 1);
    outcome.applied == [job.claim().unwrap()]
}

async fn get(storage: &MemoryStorage, id: JobId) -> JobRecord {
    storage.get(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_stale_claim_is_rejected_after_its_job_was_rescued_and_claimed_again() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let [id] = enqueue(&storage, vec![job("q")], t0).await[..] else { panic!() };
    let first = claim(&storage, &["q"], 1, t0).await.remove(0);

    // The lease runs out exactly at its deadline.
    let deadline = t0 + secs(30);
    assert_eq!(storage.rescue_expired(Some(deadline - secs(1))).await.unwrap().rescued, 0);
    assert_eq!(storage.rescue_expired(Some(deadline)).await.unwrap().rescued, 1);
    let second = claim(&storage, &["q"], 1, deadline).await.remove(0);
    assert_eq!((second.id, second.attempt), (id, 2));
    assert_ne!(second.lease_token, first.lease_token);

    assert!(!report(&storage, &first, JobOutcome::Completed, deadline).await, "the stale claim must be fenced");
    let heartbeat = storage.heartbeat(HeartbeatParams::new(vec![first.claim().unwrap()], LEASE)).await.unwrap();
    assert_eq!(heartbeat.lost, [first.claim().unwrap()]);
    assert_eq!(get(&storage, id).await.state, JobState::Running);

    assert!(report(&storage, &second, JobOutcome::Completed, deadline).await);
    let done = get(&storage, id).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.errors.len(), 1, "the rescue is recorded as a failed attempt");
    assert_eq!(done.errors[0].attempt, 1);
    assert!(done.errors[0].message.starts_with("lease expired"));
    assert_eq!((done.lease_token, done.lease_expires_at, done.claimed_by), (None, None, None));
    assert_eq!(done.attempted_at, Some(deadline));
}

#[tokio::test]
async fn a_snooze_gives_the_attempt_back_and_runs_again_after_its_delay() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let [id] = enqueue(&storage, vec![job("q").max_attempts(1)], t0).await[..] else { panic!() };
    let held = claim(&storage, &["q"], 1, t0).await.remove(0);
    assert!(report(&storage, &held, JobOutcome::Snoozed { delay: Duration::from_secs(60) }, t0).await);

    let snoozed = get(&storage, id).await;
    assert_eq!((snoozed.state, snoozed.attempt, snoozed.run_at), (JobState::Scheduled, 0, t0 + secs(60)));
    assert!(claim(&storage, &["q"], 1, t0 + secs(59)).await.is_empty());
    assert_eq!(storage.promote_due(Some(t0 + secs(59))).await.unwrap(), 0);
    assert_eq!(storage.promote_due(Some(t0 + secs(60))).await.unwrap(), 1);

    // The only attempt is still there to spend; a zero snooze makes it available at once.
    let again = claim(&storage, &["q"], 1, t0 + secs(60)).await.remove(0);
    assert_eq!(again.attempt, 1);
    assert!(report(&storage, &again, JobOutcome::Snoozed { delay: Duration::ZERO }, t0 + secs(61)).await);
    assert_eq!(get(&storage, id).await.state, JobState::Available);
    let last = claim(&storage, &["q"], 1, t0 + secs(61)).await.remove(0);
    let failed = JobOutcome::Failed { error: "boom".into(), retry_in: Duration::from_secs(1) };
    assert!(report(&storage, &last, failed, t0 + secs(62)).await);
    let discarded = get(&storage, id).await;
    assert_eq!((discarded.state, discarded.finished_at), (JobState::Discarded, Some(t0 + secs(62))));
}

#[tokio::test]
async fn cancelling_a_running_job_reaches_its_holder_through_the_heartbeat() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let [id] = enqueue(&storage, vec![job("q")], t0).await[..] else { panic!() };
    let held = claim(&storage, &["q"], 1, t0).await.remove(0);

    let requested = storage.cancel(id, Some(t0 + secs(1))).await.unwrap();
    assert_eq!((requested.state, requested.cancel_requested_at), (JobState::Running, Some(t0 + secs(1))));

    let beat =
        storage.heartbeat(HeartbeatParams::new(vec![held.claim().unwrap()], LEASE).now(t0 + secs(2))).await.unwrap();
    assert_eq!(
        (beat.extended, beat.cancelled, beat.lost),
        (vec![held.claim().unwrap()], vec![held.claim().unwrap()], vec![])
    );
    assert_eq!(get(&storage, id).await.lease_expires_at, Some(t0 + secs(32)));

    assert!(report(&storage, &held, JobOutcome::Cancelled, t0 + secs(3)).await);
    let cancelled = get(&storage, id).await;
    assert_eq!((cancelled.state, cancelled.finished_at), (JobState::Cancelled, Some(t0 + secs(3))));
    assert!(matches!(
        storage.cancel(id, None).await,
        Err(Error::InvalidState { state: JobState::Cancelled, operation: "cancel", .. })
    ));
}

#[tokio::test]
async fn a_requested_cancel_wins_over_a_retry_or_a_snooze_and_over_a_rescue() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let ids = enqueue(&storage, vec![job("q"), job("q"), job("q")], t0).await;
    let held = claim(&storage, &["q"], 3, t0).await;
    for &id in &ids {
        storage.cancel(id, Some(t0)).await.unwrap();
    }

    let failed = JobOutcome::Failed { error: "boom".into(), retry_in: Duration::ZERO };
    assert!(report(&storage, &held[0], failed, t0 + secs(1)).await);
    assert!(report(&storage, &held[1], JobOutcome::Snoozed { delay: Duration::ZERO }, t0 + secs(1)).await);
    let rescue = storage.rescue_expired(Some(t0 + secs(30))).await.unwrap();
    assert_eq!((rescue.rescued, rescue.discarded, rescue.cancelled), (0, 0, 1));

    for id in ids {
        assert_eq!(get(&storage, id).await.state, JobState::Cancelled);
    }
    let failed = get(&storage, held[0].id).await;
    assert_eq!(failed.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["boom"]);
    assert_eq!(get(&storage, held[1].id).await.attempt, 1, "a cancelled snooze keeps its attempt");
}

#[tokio::test]
async fn claims_follow_priority_then_run_at_then_id_across_queues_and_skip_paused_ones() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let at = |n| RunAt::At(t0 - secs(n));
    let ids = enqueue(
        &storage,
        vec![
            job("a").priority(1).run_at(at(50)),                // 0: low priority, oldest
            job("b").run_at(at(10)),                            // 1
            job("a").run_at(at(10)),                            // 2: ties with 1, created later
            job("b").run_at(at(20)),                            // 3
            job("a").priority(-1),                              // 4: highest priority, newest
            job("paused").priority(-5),                         // 5: would go first
            job("a").run_at(RunAt::In(Duration::from_secs(1))), // 6: not due yet
        ],
        t0,
    )
    .await;
    storage.pause_queue("paused").await.unwrap();

    let claimed: Vec<JobId> =
        claim(&storage, &["a", "b", "paused", "a"], 10, t0).await.into_iter().map(|job| job.id).collect();
    assert_eq!(claimed, [ids[4], ids[3], ids[1], ids[2], ids[0]]);

    storage.resume_queue("paused").await.unwrap();
    let claimed: Vec<JobId> = claim(&storage, &["paused", "a"], 10, t0).await.into_iter().map(|j| j.id).collect();
    assert_eq!(claimed, [ids[5]]);
}

#[tokio::test]
async fn retry_revives_a_discarded_job_with_one_more_attempt_and_its_history() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let [id] = enqueue(&storage, vec![job("q").max_attempts(2)], t0).await[..] else { panic!() };

    let first = claim(&storage, &["q"], 1, t0).await.remove(0);
    let failed = JobOutcome::Failed { error: "first".into(), retry_in: Duration::from_secs(5) };
    assert!(report(&storage, &first, failed, t0).await);
    let retryable = get(&storage, id).await;
    assert_eq!((retryable.state, retryable.run_at), (JobState::Retryable, t0 + secs(5)));

    storage.promote_due(Some(t0 + secs(5))).await.unwrap();
    claim(&storage, &["q"], 1, t0 + secs(5)).await.remove(0);
    let rescue = storage.rescue_expired(Some(t0 + secs(35))).await.unwrap();
    assert_eq!((rescue.rescued, rescue.discarded), (0, 1), "no attempt was left");

    let retried = storage.retry(id, Some(t0 + secs(40))).await.unwrap();
    assert_eq!((retried.state, retried.attempt, retried.max_attempts), (JobState::Available, 2, 3));
    assert_eq!((retried.run_at, retried.finished_at), (t0 + secs(40), None));
    assert_eq!(retried.errors.len(), 2);
    let third = claim(&storage, &["q"], 1, t0 + secs(40)).await.remove(0);
    assert_eq!(third.attempt, 3);
    assert!(matches!(storage.retry(id, None).await, Err(Error::InvalidState { state: JobState::Running, .. })));
    assert!(matches!(storage.retry(JobId::new(), None).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn prune_keeps_each_terminal_state_for_its_retention_and_respects_its_limit() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let ids = enqueue(&storage, (0..4).map(|_| job("q")).collect(), t0).await;
    let held = claim(&storage, &["q"], 3, t0).await;
    assert!(report(&storage, &held[0], JobOutcome::Completed, t0).await);
    assert!(report(&storage, &held[1], JobOutcome::Completed, t0 + secs(1)).await);
    assert!(report(&storage, &held[2], JobOutcome::Discarded { reason: "no".into() }, t0).await);

    let retention = Retention::all(Duration::from_secs(100)).completed(Duration::from_secs(10));
    let prune = |limit, at| storage.prune(PruneParams::new(retention).limit(limit).now(at));
    assert_eq!(prune(10, t0 + secs(9)).await.unwrap(), 0);
    assert_eq!(prune(1, t0 + secs(11)).await.unwrap(), 1, "the limit holds, oldest first");
    assert!(storage.get(ids[0]).await.unwrap().is_none());
    assert_eq!(prune(10, t0 + secs(11)).await.unwrap(), 1);
    assert_eq!(prune(10, t0 + secs(99)).await.unwrap(), 0);
    assert_eq!(prune(10, t0 + secs(1000)).await.unwrap(), 1);
    let left: Vec<JobId> = storage.list(ListParams::new()).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(left, [ids[3]], "an unfinished job is never pruned");
}

#[tokio::test]
async fn a_batch_with_one_bad_job_stores_nothing() {
    let storage = MemoryStorage::new();
    let now = Utc::now();
    let stored = job("q");
    enqueue(&storage, vec![stored.clone()], now).await;

    let bad_batches = [
        vec![job("q"), job("bad queue")],
        vec![job("q"), NewJob::new("bad kind", json!({}))],
        vec![job("q"), job("q").max_attempts(0)],
        vec![job("q"), NewJob::new("work", json!([1, 2]))],
        vec![job("q"), stored.clone()],
        {
            let twin = job("q");
            vec![twin.clone(), twin]
        },
    ];
    for batch in bad_batches {
        assert!(storage.enqueue(EnqueueParams::new(batch)).await.is_err());
    }
    assert_eq!(storage.list(ListParams::new()).await.unwrap().len(), 1);
    assert_eq!(storage.counts().await.unwrap()[0].get(JobState::Available), 1);
}

#[tokio::test]
async fn counts_and_list_report_queues_states_and_pages() {
    let storage = MemoryStorage::new();
    let t0 = Utc::now();
    let later = RunAt::In(Duration::from_secs(60));
    let ids = enqueue(&storage, vec![job("b"), job("a"), job("a").run_at(later), job("b")], t0).await;
    storage.pause_queue("idle").await.unwrap();
    claim(&storage, &["b"], 1, t0).await;

    let counts = storage.counts().await.unwrap();
    let summary: Vec<_> = counts.iter().map(|c| (c.queue.as_str(), c.paused, c.states.len())).collect();
    assert_eq!(summary, [("a", false, 2), ("b", false, 2), ("idle", true, 0)]);
    assert_eq!((counts[1].get(JobState::Running), counts[1].get(JobState::Available)), (1, 1));

    let page = storage.list(ListParams::new().limit(2)).await.unwrap();
    let next = storage.list(ListParams::new().after(page[1].id)).await.unwrap();
    let all: Vec<JobId> = page.iter().chain(&next).map(|job| job.id).collect();
    assert_eq!(all, ids);
    let waiting = ListParams::new().queue("a").state(JobState::Scheduled).state(JobState::Available);
    assert_eq!(storage.list(waiting).await.unwrap().len(), 2);
    assert!(storage.list(ListParams::new().kind("other")).await.unwrap().is_empty());

    storage.resume_queue("idle").await.unwrap();
    assert_eq!(storage.counts().await.unwrap().len(), 2, "a resumed queue without jobs is forgotten");
}

#[tokio::test]
async fn work_that_becomes_available_wakes_subscribers() {
    let storage = MemoryStorage::new();
    let mut wakeups = storage.subscribe().await.unwrap();
    let waiter = tokio::spawn(async move { wakeups.wait_for(&["mail".to_owned()]).await });
    enqueue(&storage, vec![job("other"), job("mail")], Utc::now()).await;
    let woken = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    assert!(woken.unwrap().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_job() {
    let storage = MemoryStorage::new();
    let now = Utc::now();
    enqueue(&storage, (0..2_000).map(|_| job("q")).collect(), now).await;
    let claimers = (0..8).map(|_| {
        let storage = storage.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = storage.claim(ClaimParams::new(["q"], 7)).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|job| job.id));
                tokio::task::yield_now().await;
            }
        })
    });
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let total = claimed.len();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!((total, claimed.len()), (2_000, 2_000));
}
