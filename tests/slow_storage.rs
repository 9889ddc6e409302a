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
    storage::{
        ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, Leadership, LeadershipParams,
        PeriodicRecord, PeriodicUpdate, PruneParams, QueueCounts, ReportOutcome, ReportParams, RescueOutcome,
        Timestamp, Wakeups, WorkerBeat, WorkerRecord,
    },
};
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
    fn new(writes_open: bool, counts_take: Duration) -> Self {
        Self {
            inner: MemoryStorage::new(),
            writes_open: watch::Sender::new(writes_open),
            report_panics: Arc::new(AtomicBool::new(false)),
            claimed: Arc::new(AtomicUsize::new(0)),
            counts_take,
            counts_calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait]
impl Storage for SlowStorage {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    async fn enqueue(&self, params: EnqueueParams) -> haul::Result<EnqueueOutcome> {
        self.inner.enqueue(params).await
    }
    async fn claim(&self, params: ClaimParams) -> haul::Result<Vec<JobRecord>> {
        let jobs = self.inner.claim(params).await?;
        self.claimed.fetch_add(jobs.len(), Ordering::SeqCst);
        Ok(jobs)
    }
    async fn report(&self, params: ReportParams) -> haul::Result<ReportOutcome> {
        self.writes_open.subscribe().wait_for(|open| *open).await.unwrap();
        assert!(!self.report_panics.load(Ordering::SeqCst), "a storage whose outcome writes panic");
        self.inner.report(params).await
    }
    async fn heartbeat(&self, params: HeartbeatParams) -> haul::Result<HeartbeatOutcome> {
        self.inner.heartbeat(params).await
    }
    async fn promote_due(&self, now: Option<Timestamp>) -> haul::Result<u64> {
        self.inner.promote_due(now).await
    }
    async fn rescue_expired(&self, now: Option<Timestamp>) -> haul::Result<RescueOutcome> {
        self.inner.rescue_expired(now).await
    }
    async fn prune(&self, params: PruneParams) -> haul::Result<u64> {
        self.inner.prune(params).await
    }
    async fn subscribe(&self) -> haul::Result<Wakeups> {
        self.inner.subscribe().await
    }
    async fn beat_worker(&self, beat: WorkerBeat) -> haul::Result<()> {
        self.inner.beat_worker(beat).await
    }
    async fn remove_worker(&self, id: &str) -> haul::Result<()> {
        self.inner.remove_worker(id).await
    }
    async fn acquire_leadership(&self, params: LeadershipParams) -> haul::Result<Option<Leadership>> {
        self.inner.acquire_leadership(params).await
    }
    async fn release_leadership(&self, worker_id: &str, term: u64) -> haul::Result<()> {
        self.inner.release_leadership(worker_id, term).await
    }
    async fn save_periodic(&self, update: PeriodicUpdate) -> haul::Result<()> {
        self.inner.save_periodic(update).await
    }
    async fn record_throughput(
        &self,
        samples: Vec<haul::ThroughputSample>,
        now: Option<Timestamp>,
    ) -> haul::Result<()> {
        self.inner.record_throughput(samples, now).await
    }
    async fn migrate(&self) -> haul::Result<()> {
        self.inner.migrate().await
    }
    async fn check_ready(&self) -> haul::Result<()> {
        self.inner.check_ready().await
    }
}

#[async_trait]
impl Admin for SlowStorage {
    async fn counts(&self) -> haul::Result<Vec<QueueCounts>> {
        self.counts_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.counts_take).await;
        self.inner.counts().await
    }
    async fn get(&self, id: JobId) -> haul::Result<Option<JobRecord>> {
        self.inner.get(id).await
    }
    async fn list(&self, params: ListParams) -> haul::Result<Vec<JobRecord>> {
        self.inner.list(params).await
    }
    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> haul::Result<JobRecord> {
        self.inner.cancel(id, now).await
    }
    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> haul::Result<JobRecord> {
        self.inner.retry(id, now).await
    }
    async fn delete(&self, id: JobId) -> haul::Result<()> {
        self.inner.delete(id).await
    }
    async fn pause_queue(&self, queue: &str) -> haul::Result<()> {
        self.inner.pause_queue(queue).await
    }
    async fn resume_queue(&self, queue: &str) -> haul::Result<()> {
        self.inner.resume_queue(queue).await
    }
    async fn set_queue_limits(&self, queue: &str, limits: haul::QueueLimits) -> haul::Result<()> {
        self.inner.set_queue_limits(queue, limits).await
    }
    async fn queue_limits(&self) -> haul::Result<Vec<haul::QueueLimitsRecord>> {
        self.inner.queue_limits().await
    }
    async fn list_workers(&self, now: Option<Timestamp>) -> haul::Result<Vec<WorkerRecord>> {
        self.inner.list_workers(now).await
    }
    async fn leader(&self, now: Option<Timestamp>) -> haul::Result<Option<Leadership>> {
        self.inner.leader(now).await
    }
    async fn list_periodic(&self) -> haul::Result<Vec<PeriodicRecord>> {
        self.inner.list_periodic().await
    }
    async fn delete_periodic(&self, name: &str) -> haul::Result<bool> {
        self.inner.delete_periodic(name).await
    }
    async fn throughput(&self, since: Timestamp) -> haul::Result<Vec<haul::ThroughputSample>> {
        self.inner.throughput(since).await
    }
}

#[job(queue = "stalled")]
async fn no_op() -> Result<(), JobError> {
    Ok(())
}

/// How many jobs of the queue are in `state`.
async fn jobs_in(storage: &SlowStorage, state: JobState) -> u64 {
    let counts = storage.inner.counts().await.unwrap();
    counts.iter().find(|queue| queue.queue == "stalled").map_or(0, |queue| queue.get(state))
}

/// A worker of 8 slots on `storage`, started on `jobs` no-op jobs, and what stops it.
async fn start_worker(
    storage: &SlowStorage,
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
async fn assert_claims_stopped_at_the_limit(storage: &SlowStorage) {
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
async fn outcomes_a_dead_flusher_held_no_longer_hold_the_claims_back() {
    let storage = SlowStorage::new(false, Duration::ZERO);
    let jobs = 3 * UNWRITTEN_LIMIT;
    let (stop, running) = start_worker(&storage, jobs).await;
    assert_claims_stopped_at_the_limit(&storage).await;

    // The next outcome write panics and ends the flusher: the outcomes it held are lost
    // (their jobs are rescued after their leases), and claiming goes on.
    storage.report_panics.store(true, Ordering::SeqCst);
    storage.writes_open.send_replace(true);
    wait_until("claiming every job", async || storage.claimed.load(Ordering::SeqCst) == jobs).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
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
