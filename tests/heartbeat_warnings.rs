//! A heartbeat that crosses a job's completion does not report the finished job as a
//! lost lease: under normal load that warning was false (thousands per benchmark run).

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    io::Write,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use haul::{
    Claim,
    prelude::*,
    storage::{
        ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, Leadership, LeadershipParams,
        PeriodicUpdate, PruneParams, ReportOutcome, ReportParams, RescueOutcome, Timestamp, Wakeups, WorkerBeat,
    },
};
use tracing_subscriber::util::SubscriberInitExt;

/// A memory storage whose heartbeats wait until every claim they carry has been
/// reported: each heartbeat then reaches storage after the jobs it names finished.
#[derive(Clone, Default)]
struct HeartbeatsAfterReports {
    inner: MemoryStorage,
    reported: Arc<Mutex<HashSet<Claim>>>,
    report_written: Arc<tokio::sync::Notify>,
    /// Heartbeats of at least one claim that reached storage.
    beats: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl Storage for HeartbeatsAfterReports {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    async fn enqueue(&self, params: EnqueueParams) -> haul::Result<EnqueueOutcome> {
        self.inner.enqueue(params).await
    }
    async fn claim(&self, params: ClaimParams) -> haul::Result<Vec<JobRecord>> {
        self.inner.claim(params).await
    }
    async fn report(&self, params: ReportParams) -> haul::Result<ReportOutcome> {
        let outcome = self.inner.report(params).await?;
        self.reported.lock().unwrap().extend(outcome.applied.iter().copied());
        self.report_written.notify_waiters();
        Ok(outcome)
    }
    async fn heartbeat(&self, params: HeartbeatParams) -> haul::Result<HeartbeatOutcome> {
        loop {
            let written = self.report_written.notified();
            if params.claims.iter().all(|claim| self.reported.lock().unwrap().contains(claim)) {
                break;
            }
            written.await;
        }
        let outcome = self.inner.heartbeat(params).await;
        self.beats.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        outcome
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
        now: Option<haul::storage::Timestamp>,
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

haul::forward_admin!(HeartbeatsAfterReports, inner);

/// Everything the worker logs, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[job(queue = "beats")]
async fn short_sleep() -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(150)).await;
    Ok(())
}

// One thread, so the log capture sees every task of the worker.
#[tokio::test(flavor = "current_thread")]
async fn a_heartbeat_crossing_a_completion_is_not_a_lost_lease() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _logging = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).set_default();

    let storage = HeartbeatsAfterReports::default();
    let queue = Queue::new(storage.clone());
    let ids = queue.enqueue_many((0..5).map(|_| ShortSleep::new())).await.unwrap();
    // Heartbeats every 100 ms, while each job runs for 150 ms: the first beat names
    // running jobs and reaches storage only after they completed.
    let worker =
        Worker::builder(storage.clone()).queues(["beats"]).concurrency(5).lease(Duration::from_millis(300)).build();
    let done = {
        let queue = queue.clone();
        let ids = ids.clone();
        async move {
            loop {
                let mut finished = 0;
                for id in &ids {
                    finished += usize::from(queue.get(*id).await.unwrap().unwrap().state == JobState::Completed);
                }
                if finished == ids.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A heartbeat that waited for these completions has its answer: the worker's
            // heartbeat task handles it before it sees the stop.
            while storage.beats.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    worker.run_until(done).await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("worker stopped"), "the log was captured: {log}");
    assert!(!log.contains("lease lost"), "a finished job was reported as a lost lease:\n{log}");
}
