//! The worker runtime through the facade, as an application uses it.
//!
//! The runtime's behaviour over every backend (retries, panics, timeouts, snooze,
//! discard, cancellation, shutdown) is covered by the conformance suite's `worker`
//! cases; these tests cover what it does not: fencing of a stale worker end to end,
//! `RetryAfter`, a missing `State<T>`, and shutdown beside a handler that never yields.

#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use haul::{
    Claim, JobOutcome,
    prelude::*,
    storage::{ClaimParams, Report, ReportParams},
};

fn worker(storage: &MemoryStorage, queue: &str) -> haul::WorkerBuilder {
    Worker::builder(storage.clone())
        .queues([queue])
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .maintenance_interval(Duration::from_millis(20))
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
    assert_eq!(outcome.applied, vec![new_claim]);
}

/// A job claimed ahead that waits for a slot is handed back at shutdown, even when a
/// slot frees up before it notices the shutdown (one thread, so the order is the
/// test's: the stop signal, then the running handler's return).
#[tokio::test]
async fn a_job_waiting_for_a_slot_at_shutdown_is_handed_back_not_started() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let first = queue.enqueue(Gated::new()).await.unwrap();
    let gate = Arc::new(Gate { blocked: true, ..Gate::default() });
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = worker(&storage, "gated")
        .concurrency(1)
        .prefetch(1)
        .shutdown_grace(Duration::from_secs(30))
        .shared_state(Arc::clone(&gate))
        .build();
    let running = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    job_in_state(&queue, first, JobState::Running).await;
    eventually("the first handler to start", || async { (gate.started.load(Ordering::SeqCst) == 1).then_some(()) })
        .await;
    let waiting = queue.enqueue(Gated::new()).await.unwrap();
    job_in_state(&queue, waiting, JobState::Running).await;

    // The shutdown first, then the slot: the waiting job sees both at once.
    stop.send(()).unwrap();
    gate.release.notify_one();
    running.await.unwrap().unwrap();

    assert_eq!(gate.started.load(Ordering::SeqCst), 1, "the waiting job's handler never started");
    assert_eq!(queue.get(first).await.unwrap().unwrap().state, JobState::Completed);
    let handed_back = queue.get(waiting).await.unwrap().unwrap();
    assert_eq!(handed_back.state, JobState::Available, "the waiting job is handed back");
    assert_eq!(handed_back.attempt, 0, "without spending its attempt");
}

#[job(queue = "cancels_its_token", max_attempts = 2, backoff = RetryPolicy::fixed(Duration::ZERO))]
async fn cancels_its_own_stop_token(ctx: JobContext) -> Result<(), JobError> {
    ctx.stop_token().cancel();
    std::future::pending::<()>().await;
    Ok(())
}

/// A handler that cancels its own stop token (not the worker: no stop reason) spends
/// its attempt, so a job that always does it runs out of attempts instead of being
/// handed back forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_cancels_its_own_stop_token_spends_its_attempts() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(CancelsItsOwnStopToken::new()).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "cancels_its_token").build());
    let job = job_in_state(&queue, id, JobState::Discarded).await;
    running.stop().await.unwrap();
    assert_eq!(job.attempt, 2);
    assert_eq!(job.errors.len(), 2);
    assert!(job.errors[1].message.contains("stop token was cancelled, not by the worker"), "{:?}", job.errors);
}

/// Lets the test decide when a handler that blocks its thread (never awaits) returns.
#[derive(Default)]
struct ThreadGate {
    started: AtomicBool,
    released: AtomicBool,
}

#[job(queue = "blocking")]
async fn blocks_its_thread(gate: State<ThreadGate>) -> Result<(), JobError> {
    gate.started.store(true, Ordering::SeqCst);
    while !gate.released.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// A handler that never yields cannot be stopped; shutdown still returns (after the
/// grace, the wait for stopped handlers and the final flush's timeout) and leaves its
/// job to its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_returns_while_a_handler_blocks_its_thread() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(BlocksItsThread::new()).await.unwrap();
    let gate = Arc::new(ThreadGate::default());
    let running = RunningWorker::start(
        worker(&storage, "blocking").shutdown_grace(Duration::from_millis(50)).shared_state(Arc::clone(&gate)).build(),
    );
    eventually("the handler to start", || async { gate.started.load(Ordering::SeqCst).then_some(()) }).await;

    // About 15 s: the grace, 5 s for stopped handlers to return, the final flush's 10 s.
    let stopped = tokio::time::timeout(Duration::from_secs(60), running.stop()).await;
    gate.released.store(true, Ordering::SeqCst);
    stopped.expect("run_until should return although a handler never yields").unwrap();

    let job = queue.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running, "the job is left to its lease");
    let rescued = storage.rescue_expired(job.lease_expires_at).await.unwrap();
    assert_eq!(rescued.rescued, 1, "the job is rescued once its lease is over");
}

#[job(queue = "retry_after", max_attempts = 3)]
async fn asks_for_a_retry(ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        return Err(RetryAfter(Duration::from_millis(10)).into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_spends_the_attempt_and_runs_again_after_the_delay() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(AsksForARetry::new()).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "retry_after").build());
    let job = job_in_state(&queue, id, JobState::Completed).await;
    running.stop().await.unwrap();
    assert_eq!(job.attempt, 2, "retry-after spends the attempt");
    assert_eq!(job.errors.len(), 1);
    assert_eq!(job.errors[0].attempt, 1);
}

#[job(queue = "stateful")]
async fn needs_state(_missing: State<Gate>) -> Result<(), JobError> {
    Ok(())
}

/// Sent to another queue than its kind's default, so the worker does not know the job
/// when it starts (a worker of the default queue would refuse to start without the state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_state_is_a_recorded_failure_naming_the_type() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(NeedsState::new()).queue("stateful.elsewhere").max_attempts(1).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "stateful.elsewhere").build());
    let job = job_in_state(&queue, id, JobState::Discarded).await;
    running.stop().await.unwrap();
    assert!(job.errors[0].message.contains("Gate"), "{}", job.errors[0].message);
}

// --- helpers ---

use std::{future::Future, time::Duration};

use haul::{JobId, JobRecord, JobState, Queue};
use tokio::{sync::oneshot, task::JoinHandle};

/// A worker running in the background until `stop` is called.
pub(crate) struct RunningWorker {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<haul::Result<()>>,
}

impl RunningWorker {
    pub(crate) fn start(worker: haul::Worker) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    /// Signals shutdown and waits for `run_until` to return.
    pub(crate) async fn stop(self) -> haul::Result<()> {
        let _ = self.stop.send(());
        self.handle.await.expect("worker task panicked")
    }
}

/// Polls `check` until it yields a value, failing the test after 20 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until job `id` is in `state` and returns it.
pub(crate) async fn job_in_state(queue: &Queue, id: JobId, state: JobState) -> JobRecord {
    eventually(&format!("job {id} to be {state}"), || async {
        queue.get(id).await.expect("get").filter(|job| job.state == state)
    })
    .await
}

/// A job type written by hand whose `options` panics: the runtime calls it outside the
/// handler, where no panic is caught as a failed attempt.
#[derive(haul::__private::serde::Serialize, haul::__private::serde::Deserialize)]
#[serde(crate = "haul::__private::serde")]
struct PanicsInOptions {}

const PANICS_IN_OPTIONS: &str = "runtime_tests.panics_in_options";

const _: () = {
    use haul::__private::typetag;

    #[typetag::serde(name = "runtime_tests.panics_in_options")]
    #[haul::__private::async_trait]
    impl haul::Job for PanicsInOptions {
        async fn perform(self: Box<Self>, _: JobContext) -> Result<(), JobError> {
            Ok(())
        }
        fn options(&self) -> haul::JobOptions {
            panic!("options are broken")
        }
    }
};

haul::__private::inventory::submit! {
    haul::__private::JobKind {
        name: PANICS_IN_OPTIONS,
        rust_type: "PanicsInOptions",
        options: haul::JobOptions::new,
        injected: &[],
    }
}

/// A panic in the runtime outside a handler does not leave the job `running` with its
/// lease extended forever: the claim is released, the lease expires, and the job is
/// rescued (here discarded, its only attempt spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_outside_the_handler_releases_the_claim() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let job = haul::NewJob::new(PANICS_IN_OPTIONS, serde_json::json!({})).queue("runtime_panic").max_attempts(1);
    let id = queue.insert(vec![job]).await.unwrap()[0];
    let worker = worker(&storage, "runtime_panic").lease(Duration::from_millis(300)).build();
    let until_visible = {
        let queue = queue.clone();
        async move {
            while queue.get(id).await.unwrap().is_none_or(|job| job.state != JobState::Discarded) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), worker.run_until(until_visible))
        .await
        .expect("the job ends discarded instead of staying running")
        .unwrap();
    let record = queue.get(id).await.unwrap().unwrap();
    assert_eq!((record.state, record.attempt), (JobState::Discarded, 1));
}

/// A worker id that storage could not record (a NUL or another control character would
/// make every claim fail) is refused when the worker starts.
#[tokio::test]
async fn a_worker_id_with_a_control_character_is_refused_at_start() {
    let storage = MemoryStorage::new();
    for bad in ["a\0b", "line\nbreak", ""] {
        let error = worker(&storage, "ids").worker_id(bad).build().run_until(std::future::ready(())).await.unwrap_err();
        assert!(matches!(error, haul::Error::InvalidArgument(_)), "{bad:?}: {error:?}");
    }
}

/// A queue given slots of its own that the worker does not serve, or given no slot, is
/// refused when the worker starts.
#[tokio::test]
async fn a_queue_concurrency_for_an_unserved_queue_or_of_zero_is_refused_at_start() {
    let storage = MemoryStorage::new();
    for (queue, concurrency, expected) in [
        ("elsewhere", 2, "not among the worker's queues"),
        ("slots", 0, "the concurrency of queue \"slots\" must be at least 1"),
    ] {
        let error = worker(&storage, "slots")
            .queue_concurrency(queue, concurrency)
            .build()
            .run_until(std::future::ready(()))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, haul::Error::InvalidArgument(message) if message.contains(expected)),
            "{queue} {concurrency}: {error:?}"
        );
    }
}
