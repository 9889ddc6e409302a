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
    storage::{HeartbeatOutcome, HeartbeatParams, ReportOutcome, ReportParams},
};
use haul_test_support::{Hooked, StorageHooks};
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
impl StorageHooks for HeartbeatsAfterReports {
    type Inner = MemoryStorage;
    fn inner(&self) -> &MemoryStorage {
        &self.inner
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
}

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

    let storage = Hooked::new(HeartbeatsAfterReports::default());
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
