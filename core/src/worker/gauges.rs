//! Queue gauges, sampled by the leader only: `haul_queue_jobs{queue,state}`,
//! `haul_queue_paused{queue}` and `haul_queue_next_available_age_seconds{queue}`, from
//! one [`crate::Admin::counts`] call per interval, so the cost does not grow with the number
//! of workers.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    JobState, QueueCounts, Storage,
    worker::{cluster::Leader, storage_errors},
};

/// After a sample that took `t`, the next waits at least this many times `t` (see
/// [`crate::WorkerBuilder::queue_gauge_interval`]).
pub(crate) const SAMPLE_COST_FACTOR: u32 = 10;

pub(crate) struct QueueGauges {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) leader: Arc<Leader>,
    pub(crate) interval: Duration,
}

impl QueueGauges {
    /// Samples every interval while this worker leads, or [`SAMPLE_COST_FACTOR`] times
    /// as long as the last sample took when that is longer, and when it begins to lead
    /// (at once, or as soon as the last sample's cost allows). A worker that stops
    /// leading stops sampling: the gauges keep the last values it set. A stop ends a
    /// sample in progress.
    pub(crate) async fn run(self, stop: CancellationToken) {
        if self.interval.is_zero() {
            return;
        }
        let mut began = self.leader.subscribe();
        // The queues the last sample reported: one gone from the counts (no job left, not
        // paused) is set to zero once, not left at its last values.
        let mut shown = BTreeSet::new();
        // When the next sample is due, and the earliest the last one's cost allows.
        let mut due = Instant::now();
        let mut earliest = due;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(due) => {}
                // The sender lives in `self.leader`: this never fails.
                _ = began.changed() => {
                    due = Instant::now().max(earliest);
                    continue;
                }
            }
            if !self.leader.is_leading() {
                due = Instant::now() + self.interval;
                continue;
            }
            let started = Instant::now();
            let counted = tokio::select! {
                () = stop.cancelled() => return,
                counted = self.storage.counts() => counted,
            };
            match counted {
                Ok(counts) => shown = set_gauges(&counts, &shown),
                Err(error) => {
                    storage_errors::count("counts");
                    tracing::warn!(%error, "sampling the queue counts failed; retrying at the next interval");
                }
            }
            let ended = Instant::now();
            earliest = ended + (ended - started).saturating_mul(SAMPLE_COST_FACTOR);
            due = earliest.max(ended + self.interval);
        }
    }
}

/// Sets the gauges of every queue in `counts`, every state included (zero for a state
/// with no job), and zeroes those of the queues in `shown` that `counts` lacks. Returns
/// the queues it reported.
fn set_gauges(counts: &[QueueCounts], shown: &BTreeSet<String>) -> BTreeSet<String> {
    let reported: BTreeSet<String> = counts.iter().map(|queue| queue.queue.clone()).collect();
    let now = chrono::Utc::now();
    for queue in counts {
        // How long the head of the queue has waited since its run_at (0 when no job is
        // available, or when clocks disagree and its run_at looks ahead).
        let age = queue.next_available_at.map_or(0.0, |at| (now - at).to_std().unwrap_or_default().as_secs_f64());
        set_queue(&queue.queue, queue.paused, age, |state| queue.get(state));
    }
    for gone in shown.difference(&reported) {
        set_queue(gone, false, 0.0, |_| 0);
    }
    reported
}

fn set_queue(queue: &str, paused: bool, next_available_age: f64, jobs: impl Fn(JobState) -> u64) {
    for state in JobState::ALL {
        // Exact up to 2^53 jobs.
        let jobs = jobs(state) as f64;
        metrics::gauge!("haul_queue_jobs", "queue" => queue.to_owned(), "state" => state.as_str()).set(jobs);
    }
    metrics::gauge!("haul_queue_paused", "queue" => queue.to_owned()).set(if paused { 1.0 } else { 0.0 });
    metrics::gauge!("haul_queue_next_available_age_seconds", "queue" => queue.to_owned()).set(next_available_age);
}
