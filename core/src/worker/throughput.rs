//! Counts the attempts this worker ends, per queue, and adds them to storage's
//! per-minute throughput ([`crate::Storage::record_throughput`]) every interval.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use foldhash::HashMap;
use tokio_util::sync::CancellationToken;

use crate::{JobEventKind, Storage, ThroughputSample, worker::storage_errors};

/// Completed and failed attempts of one queue since the last flush.
#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
}

/// The counters of every queue the worker serves: fixed at start, so counting an
/// attempt takes no lock.
pub(crate) struct ThroughputTally {
    queues: HashMap<String, Counters>,
}

impl ThroughputTally {
    pub(crate) fn new(queues: &[String]) -> Self {
        Self { queues: queues.iter().map(|queue| (queue.clone(), Counters::default())).collect() }
    }

    /// Counts how one attempt of a job from `queue` ended.
    pub(crate) fn count(&self, queue: &str, ending: &JobEventKind) {
        let Some(counters) = self.queues.get(queue) else { return };
        let counter = match ending {
            JobEventKind::Completed { .. } => &counters.completed,
            JobEventKind::Failed { .. } | JobEventKind::TimedOut { .. } | JobEventKind::Discarded { .. } => {
                &counters.failed
            }
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts so far (resetting them) as samples of the minute holding now;
    /// queues with nothing counted are left out.
    fn take(&self) -> Vec<ThroughputSample> {
        let now = chrono::Utc::now();
        self.queues
            .iter()
            .filter_map(|(queue, counters)| {
                let completed = counters.completed.swap(0, Ordering::Relaxed);
                let failed = counters.failed.swap(0, Ordering::Relaxed);
                (completed > 0 || failed > 0).then(|| ThroughputSample::new(queue.clone(), now, completed, failed))
            })
            .collect()
    }

    /// Puts samples whose write failed back, to be written with the next ones (they
    /// are then counted in a later minute).
    fn restore(&self, samples: &[ThroughputSample]) {
        for sample in samples {
            if let Some(counters) = self.queues.get(&sample.queue) {
                counters.completed.fetch_add(sample.completed, Ordering::Relaxed);
                counters.failed.fetch_add(sample.failed, Ordering::Relaxed);
            }
        }
    }
}

/// Writes the tally to storage every interval, and once more when stopped.
pub(crate) struct ThroughputRecorder {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) tally: Arc<ThroughputTally>,
    pub(crate) interval: Duration,
    /// How long the write at stop may take.
    pub(crate) final_timeout: Duration,
}

impl ThroughputRecorder {
    pub(crate) async fn run(self, stop: CancellationToken) {
        if self.interval.is_zero() {
            return;
        }
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            // A storage that hangs holds back neither the next interval nor shutdown.
            let samples = self.tally.take();
            match tokio::time::timeout(self.interval, self.write(&samples)).await {
                Ok(true) => {}
                Ok(false) => self.tally.restore(&samples),
                Err(_) => tracing::warn!("recording throughput timed out; this interval's counts are lost"),
            }
        }
        let samples = self.tally.take();
        if !matches!(tokio::time::timeout(self.final_timeout, self.write(&samples)).await, Ok(true)) {
            tracing::warn!("recording throughput at stop failed; the last interval's counts are lost");
        }
    }

    /// Writes `samples`; returns whether storage took them (an empty list is taken).
    /// A failure is logged and counted.
    async fn write(&self, samples: &[ThroughputSample]) -> bool {
        if samples.is_empty() {
            return true;
        }
        match self.storage.record_throughput(samples.to_vec(), None).await {
            Ok(()) => true,
            Err(error) => {
                storage_errors::count("record_throughput");
                tracing::warn!(%error, "recording throughput failed; its counts are added to the next interval's");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_completed_and_failed_endings_of_served_queues_only() {
        let tally = ThroughputTally::new(&["mail".to_owned()]);
        tally.count("mail", &JobEventKind::Completed { duration: Duration::ZERO });
        tally.count("mail", &JobEventKind::Cancelled);
        tally.count("other", &JobEventKind::Completed { duration: Duration::ZERO });
        let samples = tally.take();
        assert_eq!(samples.len(), 1);
        assert_eq!((samples[0].completed, samples[0].failed), (1, 0));
        assert!(tally.take().is_empty(), "take resets the counts");
        tally.restore(&samples);
        assert_eq!(tally.take()[0].completed, 1);
    }
}
