//! The worker runtime through the facade, as an application uses it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use common::{RunningWorker, count_in_state, eventually, job_in_state};
use haul::{
    Claim, JobOutcome,
    prelude::*,
    storage::{ClaimParams, Report, ReportParams},
};

const QUICK: RetryPolicy = RetryPolicy::fixed(Duration::from_millis(20));

fn worker(storage: &MemoryStorage, queue: &str) -> haul::WorkerBuilder {
    Worker::builder(storage.clone())
        .queues([queue])
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .maintenance_interval(Duration::from_millis(20))
}

#[job(queue = "panics", backoff = QUICK)]
async fn panics_on_first_attempt(ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        panic!("the disk is on fire");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_recorded_as_a_failed_attempt_and_retried() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(PanicsOnFirstAttempt::new()).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "panics").build());

    let job = job_in_state(&queue, id, JobState::Completed).await;
    running.stop().await.unwrap();
    assert_eq!(job.attempt, 2);
    assert_eq!(job.errors.len(), 1);
    assert_eq!(job.errors[0].attempt, 1);
    assert!(job.errors[0].message.contains("panicked"), "{}", job.errors[0].message);
    assert!(job.errors[0].message.contains("the disk is on fire"), "{}", job.errors[0].message);
}

#[job(queue = "timeouts", timeout = "100ms", backoff = QUICK)]
async fn hangs_on_first_attempt(ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_handler_is_stopped_and_retried() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(HangsOnFirstAttempt::new()).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "timeouts").build());

    let job = job_in_state(&queue, id, JobState::Completed).await;
    running.stop().await.unwrap();
    assert_eq!(job.attempt, 2);
    assert_eq!(job.errors.len(), 1);
    assert!(job.errors[0].message.contains("timed out"), "{}", job.errors[0].message);
}

/// Lets the test decide when handlers may finish.
#[derive(Default)]
struct Gate {
    blocked: bool,
    release: tokio::sync::Notify,
    started: AtomicUsize,
    finished: AtomicUsize,
}

#[job(queue = "gated")]
async fn gated(gate: State<Gate>, ctx: JobContext) -> Result<(), JobError> {
    gate.started.fetch_add(1, Ordering::SeqCst);
    if gate.blocked {
        tokio::select! {
            () = ctx.stop_token().cancelled() => return Err(JobError::fail("stopped")),
            () = gate.release.notified() => {}
        }
    }
    gate.finished.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_jobs_in_flight_hands_them_back_and_loses_none() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let ids = queue.enqueue_many((0..20).map(|_| Gated::new())).await.unwrap();

    let blocked = Arc::new(Gate { blocked: true, ..Gate::default() });
    let first = worker(&storage, "gated")
        .concurrency(5)
        .shutdown_grace(Duration::from_millis(100))
        .shared_state(Arc::clone(&blocked))
        .build();
    let running = RunningWorker::start(first);
    count_in_state(&queue, JobState::Running, 5).await;
    running.stop().await.unwrap();

    // The five that were running were handed back without spending their attempt.
    let mut handed_back = 0;
    for id in &ids {
        let job = queue.get(*id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Available, "job {id}");
        assert_eq!(job.attempt, 0, "job {id}");
        if job.attempted_at.is_some() {
            handed_back += 1;
        }
    }
    assert_eq!(handed_back, 5);

    let open = Arc::new(Gate::default());
    let second = worker(&storage, "gated").shared_state(Arc::clone(&open)).build();
    let running = RunningWorker::start(second);
    count_in_state(&queue, JobState::Completed, 20).await;
    running.stop().await.unwrap();
    assert_eq!(open.finished.load(Ordering::SeqCst), 20);
}

#[job(queue = "slow")]
async fn slow(gate: State<Gate>) -> Result<(), JobError> {
    gate.started.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.finished.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_jobs_finish_within_the_grace_period() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    queue.enqueue_many((0..4).map(|_| Slow::new())).await.unwrap();
    let gate = Arc::new(Gate::default());
    let running = RunningWorker::start(
        worker(&storage, "slow")
            .concurrency(4)
            .shutdown_grace(Duration::from_secs(30))
            .shared_state(Arc::clone(&gate))
            .build(),
    );
    eventually("four handlers to start", || async { (gate.started.load(Ordering::SeqCst) == 4).then_some(()) }).await;
    running.stop().await.unwrap();
    count_in_state(&queue, JobState::Completed, 4).await;
    assert_eq!(gate.finished.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_worker_cannot_complete_a_job_it_lost() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(Gated::new()).await.unwrap();
    let blocked = Arc::new(Gate { blocked: true, ..Gate::default() });
    // One slot, held by the blocked handler: the stale worker cannot re-claim the job.
    let stale = RunningWorker::start(
        worker(&storage, "gated")
            .concurrency(1)
            .shutdown_grace(Duration::from_secs(30))
            .shared_state(Arc::clone(&blocked))
            .build(),
    );
    let held = job_in_state(&queue, id, JobState::Running).await;

    // The lease expires (clock moved an hour ahead) and another claimer takes the job.
    let later = held.attempted_at.unwrap() + chrono::Duration::hours(1);
    storage.rescue_expired(Some(later)).await.unwrap();
    let reclaimed = storage.claim(ClaimParams::new(["gated"], 1).now(later)).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    let new_claim: Claim = reclaimed[0].claim().unwrap();
    assert_ne!(Some(new_claim.token), held.lease_token);

    // The stale worker's handler now succeeds: its outcome is rejected and the job
    // stays with the new holder.
    blocked.release.notify_one();
    eventually("the stale handler to finish", || async {
        (blocked.finished.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    stale.stop().await.unwrap();
    let job = queue.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.lease_token, Some(new_claim.token));
    assert_eq!(job.attempt, 2);

    let outcome = storage
        .report(ReportParams::new(vec![Report { claim: new_claim, outcome: JobOutcome::Completed }]))
        .await
        .unwrap();
    assert_eq!(outcome.applied, vec![id]);
}

/// Runs of the snoozing job: a snooze gives the attempt back, so the attempt number
/// cannot tell the second run from the first.
static SNOOZE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[job(queue = "instructions", max_attempts = 3)]
async fn obeys(ctx: JobContext, instruction: String) -> Result<(), JobError> {
    match (instruction.as_str(), ctx.attempt()) {
        ("snooze", _) if SNOOZE_RUNS.fetch_add(1, Ordering::SeqCst) == 0 => {
            Err(Snooze(Duration::from_millis(10)).into())
        }
        ("retry_after", 1) => Err(RetryAfter(Duration::from_millis(10)).into()),
        ("discard", _) => Err(Discard("not worth it".into()).into()),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_instructions_snooze_retry_after_and_discard() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let snooze = queue.enqueue(Obeys::new("snooze")).await.unwrap();
    let retry = queue.enqueue(Obeys::new("retry_after")).await.unwrap();
    let discard = queue.enqueue(Obeys::new("discard")).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "instructions").build());

    let snoozed = job_in_state(&queue, snooze, JobState::Completed).await;
    let retried = job_in_state(&queue, retry, JobState::Completed).await;
    let discarded = job_in_state(&queue, discard, JobState::Discarded).await;
    running.stop().await.unwrap();

    assert_eq!(SNOOZE_RUNS.load(Ordering::SeqCst), 2, "snoozed once, then ran again");
    assert_eq!(snoozed.attempt, 1, "a snooze gives the attempt back");
    assert!(snoozed.errors.is_empty());
    assert_eq!(retried.attempt, 2, "retry-after spends the attempt");
    assert_eq!(retried.errors.len(), 1);
    assert_eq!(discarded.attempt, 1, "discard ends the job with attempts left");
    assert_eq!(discarded.errors.last().map(|e| e.message.as_str()), Some("not worth it"));
}

#[job(queue = "cancellable")]
async fn waits_for_cancel(ctx: JobContext) -> Result<(), JobError> {
    ctx.stop_token().cancelled().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_its_handler_through_the_heartbeat() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(WaitsForCancel::new()).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "cancellable").lease(Duration::from_millis(300)).build());
    job_in_state(&queue, id, JobState::Running).await;

    let requested = queue.cancel(id).await.unwrap();
    assert_eq!(requested.state, JobState::Running);
    assert!(requested.cancel_requested_at.is_some());
    let job = job_in_state(&queue, id, JobState::Cancelled).await;
    running.stop().await.unwrap();
    assert!(job.finished_at.is_some());
}

#[job(queue = "stateful")]
async fn needs_state(_missing: State<Gate>) -> Result<(), JobError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_state_is_a_recorded_failure_naming_the_type() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(NeedsState::new()).max_attempts(1).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "stateful").build());
    let job = job_in_state(&queue, id, JobState::Discarded).await;
    running.stop().await.unwrap();
    assert!(job.errors[0].message.contains("Gate"), "{}", job.errors[0].message);
}
