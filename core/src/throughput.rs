//! Per-queue throughput: how many attempts ended per minute, as workers counted them.
//!
//! Each worker counts the attempts it ends ([`ThroughputSample::completed`] and
//! [`ThroughputSample::failed`]) per queue and adds them to storage every few seconds
//! ([`crate::WorkerBuilder::throughput_interval`]) with one
//! [`Storage::record_throughput`](crate::Storage::record_throughput) call, off the
//! claim and report path. Operators read them back with [`crate::Admin::throughput`]:
//! the dashboard's chart and `haul stats` show the last hour.

use std::time::Duration;

use crate::{Result, Timestamp, validate_queue_name};

/// How long backends keep throughput samples at least, counted back from the `now`
/// of the newest [`Storage::record_throughput`](crate::Storage::record_throughput)
/// call. Older samples may be dropped.
pub const THROUGHPUT_RETENTION: Duration = Duration::from_secs(2 * 60 * 60);

/// The attempts of one queue that ended in one minute.
///
/// # Example
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use haul_core::ThroughputSample;
///
/// let at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 42).unwrap();
/// let sample = ThroughputSample::new("mail", at, 10, 2);
/// assert_eq!(sample.minute, Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThroughputSample {
    /// The queue.
    pub queue: String,
    /// The start of the minute (whole seconds, zero seconds).
    pub minute: Timestamp,
    /// Attempts that completed.
    pub completed: u64,
    /// Attempts that failed: errors (whether retried or not), timeouts and discards.
    /// Snoozes, cancellations and hand-backs count in neither field.
    pub failed: u64,
}

impl ThroughputSample {
    /// `completed` and `failed` attempts of `queue` in the minute holding `at`.
    pub fn new(queue: impl Into<String>, at: Timestamp, completed: u64, failed: u64) -> Self {
        Self { queue: queue.into(), minute: minute_of(at), completed, failed }
    }

    /// Checks the queue name; a backend calls this on every sample it is given.
    pub fn validate(&self) -> Result<()> {
        validate_queue_name(&self.queue)
    }
}

/// The start of the minute holding `at` (whole seconds, floored: before 1970 too).
pub fn minute_of(at: Timestamp) -> Timestamp {
    let minute_start = at.timestamp().div_euclid(60) * 60;
    // A whole minute at or before a valid instant is valid, but for the first minute of
    // chrono's range: keep `at` there.
    chrono::DateTime::from_timestamp(minute_start, 0).unwrap_or(at)
}

/// Adds samples of the same queue and minute together, and orders the result by queue
/// then minute: the shape [`crate::Admin::throughput`] returns.
pub fn merge_samples(samples: impl IntoIterator<Item = ThroughputSample>) -> Vec<ThroughputSample> {
    let mut merged: std::collections::BTreeMap<(String, Timestamp), (u64, u64)> = std::collections::BTreeMap::new();
    for sample in samples {
        let entry = merged.entry((sample.queue, minute_of(sample.minute))).or_default();
        entry.0 = entry.0.saturating_add(sample.completed);
        entry.1 = entry.1.saturating_add(sample.failed);
    }
    merged
        .into_iter()
        .map(|((queue, minute), (completed, failed))| ThroughputSample { queue, minute, completed, failed })
        .collect()
}
