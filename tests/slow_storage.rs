//! A worker on a slow storage keeps its load on it bounded:
//! - one whose outcomes cannot be written stops claiming once two report batches of them
//!   wait (2,000 outcomes), instead of holding ever more finished jobs whose leases its
//!   heartbeats must extend; once writes go through again, it finishes the rest;
//! - a leader whose queue counts take long samples the gauges less often (the next sample
//!   waits ten times as long as the last took), and a stop does not wait for one.
//!
//! The clock is paused (`start_paused`): a sleep of a test ends only once every other
//! task of the runtime is idle, and the storage's slow calls take virtual time.

#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use async_trait::async_trait;
use haul::{
    prelude::*,
    storage::{ClaimParams, PacedClaim, QueueCounts, ReportOutcome, ReportParams},
};
use haul_test_support::{Hooked, StorageHooks};
use tokio::sync::watch;

/// Outcomes wait to be written beyond this many before the worker stops claiming.
const UNWRITTEN_LIMIT: usize = 2_000;

/// A memory storage whose outcome writes wait while `writes_open` is false (and then
/// panic if `report_panics` is set), whose
/// queue counts take `counts_take` (on the runtime's clock), and which counts the jobs it
/// hands out to claims and the `counts` calls made.
#[derive(Clone)]
struct SlowStorage {
    inner: MemoryStorage,
    writes_open: watch::Sender<bool>,
    /// Outcome writes panic (once they may go through) while set.
    report_panics: Arc<AtomicBool>,
    claimed: Arc<AtomicUsize>,
    counts_take: Duration,
    counts_calls: Arc<AtomicUsize>,
}

impl SlowStorage {
    fn new(writes_open: bool, counts_take: Duration) -> Hooked<Self> {
        Hooked::new(Self {
            inner: MemoryStorage::new(),
            writes_open: watch::Sender::new(writes_open),
            report_panics: Arc::new(AtomicBool::new(false)),
            claimed: Arc::new(AtomicUsize::new(0)),
            counts_take,
            counts_calls: Arc::new(AtomicUsize::new(0)),
        })
    }
}

#[async_trait]
impl StorageHooks for SlowStorage {
    type Inner = MemoryStorage;
    fn inner(&self) -> &MemoryStorage {
        &self.inner
    }
    async fn claim_paced(&self, params: ClaimParams) -> haul::Result<PacedClaim> {
        let claim = self.inner.claim_paced(params).await?;
        self.claimed.fetch_add(claim.jobs.len(), Ordering::SeqCst);
        Ok(claim)
    }
    async fn report(&self, params: ReportParams) -> haul::Result<ReportOutcome> {
        self.writes_open.subscribe().wait_for(|open| *open).await.unwrap();
        assert!(!self.report_panics.load(Ordering::SeqCst), "a storage whose outcome writes panic");
        self.inner.report(params).await
    }
    async fn counts(&self) -> haul::Result<Vec<QueueCounts>> {
        self.counts_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.counts_take).await;
        self.inner.counts().await
    }
}

#[job(queue = "stalled")]
async fn no_op() -> Result<(), JobError> {
    Ok(())
}

/// How many jobs of the queue are in `state`.
async fn jobs_in(storage: &Hooked<SlowStorage>, state: JobState) -> u64 {
    let counts = storage.inner.counts().await.unwrap();
    counts.iter().find(|queue| queue.queue == "stalled").map_or(0, |queue| queue.get(state))
}

/// A worker of 8 slots on `storage`, started on `jobs` no-op jobs, and what stops it.
async fn start_worker(
    storage: &Hooked<SlowStorage>,
    jobs: usize,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<haul::Result<()>>) {
    Queue::new(storage.clone()).enqueue_many((0..jobs).map(|_| NoOp::new())).await.unwrap();
    let worker = Worker::builder(storage.clone()).queues(["stalled"]).concurrency(CONCURRENCY).build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    (stop, running)
}

const CONCURRENCY: usize = 8;

/// Waits (on the paused clock) until `done` holds, failing after a virtual minute.
async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} did not happen within a minute");
}

/// Asserts that the worker claimed up to the limit and then stopped: once the test's
/// sleep ends, the worker has claimed all that it ever would while no outcome is written.
async fn assert_claims_stopped_at_the_limit(storage: &Hooked<SlowStorage>) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let claimed = storage.claimed.load(Ordering::SeqCst);
    // At the check before its last claim at most 2,000 outcomes waited; that claim takes
    // at most the slots' held limit (the running slots and the automatic prefetch's 256).
    let most = UNWRITTEN_LIMIT + CONCURRENCY + 256;
    assert!(claimed > UNWRITTEN_LIMIT, "the worker claimed until the limit: {claimed}");
    assert!(claimed <= most, "the worker claimed {claimed} jobs while no outcome could be written (at most {most})");
    assert_eq!(jobs_in(storage, JobState::Completed).await, 0, "no outcome was written");
}

#[tokio::test(start_paused = true)]
async fn a_worker_stops_claiming_while_two_batches_of_outcomes_wait() {
    let storage = SlowStorage::new(false, Duration::ZERO);
    let jobs = 3 * UNWRITTEN_LIMIT;
    let (stop, running) = start_worker(&storage, jobs).await;
    assert_claims_stopped_at_the_limit(&storage).await;

    storage.writes_open.send_replace(true);
    wait_until("every job's completion", async || jobs_in(&storage, JobState::Completed).await == jobs as u64).await;
    assert_eq!(storage.claimed.load(Ordering::SeqCst), jobs, "every job was claimed once");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_flusher_that_panics_stops_the_worker_instead_of_claiming_on() {
    let storage = SlowStorage::new(false, Duration::ZERO);
    let jobs = 3 * UNWRITTEN_LIMIT;
    let (_stop, running) = start_worker(&storage, jobs).await;
    assert_claims_stopped_at_the_limit(&storage).await;

    // The next outcome write panics and ends the flusher: no outcome can be written any
    // more (the jobs it held are rescued after their leases), so the worker stops
    // rather than run jobs whose outcomes would be lost, and the panic comes out.
    storage.report_panics.store(true, Ordering::SeqCst);
    storage.writes_open.send_replace(true);
    let ended = tokio::time::timeout(Duration::from_secs(120), running).await.expect("the worker stops");
    assert!(ended.as_ref().is_err_and(tokio::task::JoinError::is_panic), "the panic comes out: {ended:?}");
    assert!(storage.claimed.load(Ordering::SeqCst) < jobs, "claiming did not go on");
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_counts_take_long_samples_the_gauges_less_often() {
    // Counts take 3 s: after each, the next sample waits 30 s, not the interval's 1 s.
    let storage = SlowStorage::new(true, Duration::from_secs(3));
    let worker =
        Worker::builder(storage.clone()).queues(["stalled"]).queue_gauge_interval(Duration::from_secs(1)).build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(120)).await;
    let samples = storage.counts_calls.load(Ordering::SeqCst);
    // Samples start at 0, 33, 66 and 99 s (the first once the worker leads); one every
    // 4 s (120 / (3 + 1) = 30) without the rule.
    assert!((3..=5).contains(&samples), "{samples} samples in 120 s");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stop_does_not_wait_for_a_sample_in_progress() {
    // Counts take 1,000 s; the leader's first sample starts as it begins to lead.
    let storage = SlowStorage::new(true, Duration::from_secs(1_000));
    let worker = Worker::builder(storage.clone()).queues(["stalled"]).build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    wait_until("a sample", async || storage.counts_calls.load(Ordering::SeqCst) == 1).await;
    let stopping = tokio::time::Instant::now();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(100), "the worker stopped {took:?} after it was asked");
}
