//! The per-queue, per-minute throughput samples, under the store's lock.

use std::collections::BTreeMap;

use haul_core::{THROUGHPUT_RETENTION, ThroughputSample, Timestamp, minute_of};

/// Completed and failed attempts by queue and minute.
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    counts: BTreeMap<(String, Timestamp), (u64, u64)>,
}

impl Throughput {
    /// Adds `samples` and drops the minutes older than the retention before `now`.
    pub(crate) fn record(&mut self, samples: Vec<ThroughputSample>, now: Timestamp) {
        for sample in samples {
            let entry = self.counts.entry((sample.queue, minute_of(sample.minute))).or_default();
            entry.0 = entry.0.saturating_add(sample.completed);
            entry.1 = entry.1.saturating_add(sample.failed);
        }
        let oldest_kept = chrono::TimeDelta::from_std(THROUGHPUT_RETENTION)
            .ok()
            .and_then(|retention| now.checked_sub_signed(retention))
            .unwrap_or(now);
        self.counts.retain(|(_, minute), _| *minute >= minute_of(oldest_kept));
    }

    /// The samples from the minute holding `since` on, by queue then minute.
    pub(crate) fn since(&self, since: Timestamp) -> Vec<ThroughputSample> {
        let since = minute_of(since);
        self.counts
            .iter()
            .filter(|((_, minute), _)| *minute >= since)
            .map(|((queue, minute), (completed, failed))| {
                ThroughputSample::new(queue.clone(), *minute, *completed, *failed)
            })
            .collect()
    }
}
