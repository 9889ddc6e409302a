//! Pruning keeps up: a worker that completes jobs faster than 167 per second (10,000 a
//! minute, one prune batch per default prune interval) for a minute, with a retention of
//! 2 s, keeps the stored completed jobs bounded.
//!
//! The time is real: the case measures throughput over a minute. Sleeps only pace the
//! producer and the sampling; every outcome is read from storage.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use haul::{JobError, JobState, NewJob, Queue, Retention, Worker};

use super::cases::PATIENCE;
use crate::{TestStorage, cases::eventually_within, cases::worker::RunningWorker};

/// The queue of the case (and the default queue of its kind).
const QUEUE: &str = "faults.prune";
/// How long completed jobs are kept.
const RETENTION: Duration = Duration::from_secs(2);
/// How often the leader prunes.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// Allowance on top of the retention and the prune interval: a pass's own duration, the
/// flushing of completions, a slow sample on a busy machine.
const SLACK: Duration = Duration::from_secs(3);
/// The producer's target rate, in jobs per second.
const RATE: f64 = 500.0;
/// How long the producer runs.
const RUN: Duration = Duration::from_secs(60);
/// The completion rate the case must beat: 10,000 jobs a minute.
const FLOOR_PER_SECOND: f64 = 10_000.0 / 60.0;
/// How often the producer enqueues what is due, in one batch.
const PRODUCER_TICK: Duration = Duration::from_millis(20);
/// How often the stored jobs are counted.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// A job that does nothing.
#[haul::job(name = "haul_faults.pruned", queue = "faults.prune", max_attempts = 3)]
pub async fn pruned() -> Result<(), JobError> {
    Ok(())
}

/// One count of the case's jobs in storage.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Since the producer started.
    at: Duration,
    /// Jobs enqueued by then (read before the count).
    enqueued: u64,
    /// Completed jobs stored.
    completed: u64,
    /// Jobs not finished yet.
    unfinished: u64,
}

impl Sample {
    /// Jobs completed by then, the pruned ones included: every job enqueued but the
    /// unfinished ones (a job enqueued after the read of `enqueued` counts as unfinished,
    /// so this errs low).
    fn ever_completed(&self) -> u64 {
        self.enqueued.saturating_sub(self.unfinished)
    }
}

/// The completed and the unfinished jobs of [`QUEUE`]; panics on any other finished state,
/// which a job that only succeeds never reaches.
async fn count(storage: &TestStorage) -> (u64, u64) {
    let (mut completed, mut unfinished) = (0, 0);
    let counts = storage.counts().await.expect("counts succeed");
    for queue in counts.iter().filter(|counts| counts.queue == QUEUE) {
        for (state, jobs) in &queue.states {
            match state {
                JobState::Completed => completed += jobs,
                state if state.is_finished() => panic!("{jobs} jobs of {QUEUE} ended {state}"),
                _ => unfinished += jobs,
            }
        }
    }
    (completed, unfinished)
}

/// Enqueues no-op jobs at [`RATE`] for [`RUN`], what is due every [`PRODUCER_TICK`] in one
/// batch, counting them in `enqueued`.
async fn produce(storage: &TestStorage, enqueued: &AtomicU64) {
    let producer = Queue::new(storage.clone());
    let mut ticks = tokio::time::interval(PRODUCER_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0_u64;
    while started.elapsed() < RUN {
        ticks.tick().await;
        let due = (started.elapsed().min(RUN).as_secs_f64() * RATE) as u64;
        if due > sent {
            let jobs: Vec<NewJob> = (sent..due)
                .map(|_| producer.prepare(&Pruned::new()).expect("a no-op job is valid").queue(QUEUE))
                .collect();
            producer.insert(jobs).await.expect("enqueue succeeds");
            enqueued.fetch_add(due - sent, Ordering::Relaxed);
            sent = due;
        }
    }
}

/// A worker keeping completed jobs 2 s and pruning every second completes a producer's
/// 500 jobs/s for a minute: more than 167 jobs/s (10,000 a minute) completed, and the
/// completed jobs in storage, counted every 2 s, never above what the retention, the
/// prune interval and 3 s of slack hold at the achieved rate.
pub async fn pruning_keeps_up_with_completions(storage: TestStorage) {
    let worker_id = format!("faults-prune-{}", uuid::Uuid::now_v7().simple());
    let worker = RunningWorker::from_worker(
        Worker::builder(storage.clone())
            .queues([QUEUE])
            .concurrency(16)
            .poll_interval(Duration::from_millis(100))
            .retention(Retention::default().completed(RETENTION), PRUNE_INTERVAL)
            .worker_id(worker_id.clone())
            .build(),
    );
    // Only the leader prunes: the case starts once this worker leads.
    eventually_within(PATIENCE, "the worker to lead", || async {
        let lead = storage.leader(None).await.ok()??;
        (lead.worker_id == worker_id).then_some(())
    })
    .await;

    let enqueued = AtomicU64::new(0);
    let started = Instant::now();
    let sampling = async {
        let mut samples = Vec::new();
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            // The last count is taken after the producer stops.
            if started.elapsed() >= RUN {
                break;
            }
            let before = enqueued.load(Ordering::Relaxed);
            let (completed, unfinished) = count(&storage).await;
            samples.push(Sample { at: started.elapsed(), enqueued: before, completed, unfinished });
        }
        samples
    };
    let ((), mut samples) = tokio::join!(produce(&storage, &enqueued), sampling);
    let produced_for = started.elapsed();
    let total = enqueued.load(Ordering::Relaxed);
    let (completed, unfinished) = count(&storage).await;
    let last = Sample { at: produced_for, enqueued: total, completed, unfinished };
    samples.push(last);
    // The last few running jobs finish; then every job enqueued has completed.
    eventually_within(PATIENCE, "every job to complete", || async { (count(&storage).await.1 == 0).then_some(()) })
        .await;
    worker.stop().await;

    let per_second = last.ever_completed() as f64 / produced_for.as_secs_f64();
    let bound = (per_second.max(RATE) * (RETENTION + PRUNE_INTERVAL + SLACK).as_secs_f64()).ceil() as u64;
    let most = samples.iter().map(|s| s.completed).max().unwrap_or(0);
    let shown: Vec<String> = samples
        .iter()
        .map(|s| {
            format!(
                "{:.0}s: {} stored / {} ever / {} unfinished",
                s.at.as_secs_f64(),
                s.completed,
                s.ever_completed(),
                s.unfinished
            )
        })
        .collect();
    eprintln!(
        "pruning on {}: {total} enqueued in {:.1} s at a target of {RATE}/s; {per_second:.0} completed/s; \
         completed jobs stored at most {most} (bound {bound}); samples (completed stored / completed ever / \
         unfinished):\n  {}",
        storage.backend_name(),
        produced_for.as_secs_f64(),
        shown.join("\n  ")
    );
    assert!(
        per_second > FLOOR_PER_SECOND,
        "the worker completed {per_second:.0} jobs/s, not more than {FLOOR_PER_SECOND:.0}/s"
    );
    let floor = FLOOR_PER_SECOND * RUN.as_secs_f64();
    assert!(
        last.ever_completed() as f64 > floor,
        "{} jobs completed in the minute, not more than {floor:.0}",
        last.ever_completed()
    );
    let over: Vec<&String> =
        samples.iter().zip(&shown).filter(|(s, _)| s.completed > bound).map(|(_, shown)| shown).collect();
    assert!(over.is_empty(), "the stored completed jobs went above {bound}: {over:?}");
}
