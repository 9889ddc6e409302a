//! The metrics recorded for every attempt (its wait, its duration, how it ended), with
//! their keys built once per queue and kind instead of once per job.
//!
//! The `metrics` macros build a key from owned labels on every call: for a job that is
//! two copies each of its queue and kind and a label list per metric, three times per
//! attempt. The keys here are built the first time a worker runs a job of a queue and
//! kind, and passed by reference to whichever recorder is installed when the sample is
//! taken (a recorder installed after the worker started is still used).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use metrics::{Key, Label, Level, Metadata};

/// Seconds from a job's `run_at` to its handler's start.
const WAIT: &str = "haul_job_wait_seconds";
/// Seconds a handler (with its middleware) ran.
const DURATION: &str = "haul_job_duration_seconds";
/// Attempts ended, by outcome.
const FINISHED: &str = "haul_jobs_finished_total";

/// Every outcome label an attempt can end with ([`crate::JobEventKind::label`], but for
/// `started`).
const ENDINGS: [&str; 8] =
    ["completed", "failed", "timed_out", "discarded", "snoozed", "cancelled", "handed_back", "lease_lost"];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The metric keys of the jobs of one queue and kind.
pub(crate) struct JobMetrics {
    wait: Key,
    duration: Key,
    /// One key per label of [`ENDINGS`], in its order.
    finished: Vec<Key>,
}

impl JobMetrics {
    /// Builds the keys of `queue` and `kind` (for a caller that runs a job now and then;
    /// a worker shares them through [`JobMetricsByKind`]).
    pub(crate) fn new(queue: &str, kind: &str) -> Self {
        let labels = |extra: Option<&'static str>| {
            let mut labels = vec![Label::new("queue", queue.to_owned()), Label::new("kind", kind.to_owned())];
            labels.extend(extra.map(|outcome| Label::new("outcome", outcome)));
            labels
        };
        Self {
            wait: Key::from_parts(WAIT, labels(None)),
            duration: Key::from_parts(DURATION, labels(None)),
            finished: ENDINGS.iter().map(|ending| Key::from_parts(FINISHED, labels(Some(ending)))).collect(),
        }
    }

    /// Records how long a job waited for its start after its `run_at`.
    pub(crate) fn record_wait(&self, seconds: f64) {
        metrics::with_recorder(|recorder| recorder.register_histogram(&self.wait, &METADATA).record(seconds));
    }

    /// Records how long a handler ran.
    pub(crate) fn record_duration(&self, seconds: f64) {
        metrics::with_recorder(|recorder| recorder.register_histogram(&self.duration, &METADATA).record(seconds));
    }

    /// Counts an attempt that ended as `outcome` (a [`crate::JobEventKind::label`]).
    pub(crate) fn count_ending(&self, outcome: &str) {
        let Some(key) = ENDINGS.iter().position(|ending| *ending == outcome).and_then(|at| self.finished.get(at))
        else {
            tracing::error!(outcome, "an attempt ended with an outcome that has no metric key; not counted");
            return;
        };
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }
}

/// The metric keys of every queue and kind a worker ran, shared by its executors.
#[derive(Default)]
pub(crate) struct JobMetricsByKind {
    /// Queue, then kind.
    keys: Mutex<HashMap<String, HashMap<String, Arc<JobMetrics>>>>,
}

impl JobMetricsByKind {
    /// The keys of `queue` and `kind`, built on their first use.
    pub(crate) fn of(&self, queue: &str, kind: &str) -> Arc<JobMetrics> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = keys.get(queue).and_then(|kinds| kinds.get(kind)) {
            return Arc::clone(found);
        }
        let built = Arc::new(JobMetrics::new(queue, kind));
        keys.entry(queue.to_owned()).or_default().insert(kind.to_owned(), Arc::clone(&built));
        built
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobEventKind;

    /// Stops compiling when `JobEventKind` gains a variant: give its label a key in
    /// `ENDINGS` and a line in the test below.
    fn _every_variant_is_listed(kind: &JobEventKind) {
        match kind {
            JobEventKind::Started
            | JobEventKind::Completed { .. }
            | JobEventKind::Failed { .. }
            | JobEventKind::TimedOut { .. }
            | JobEventKind::Discarded { .. }
            | JobEventKind::Snoozed { .. }
            | JobEventKind::Cancelled
            | JobEventKind::HandedBack
            | JobEventKind::LeaseLost => {}
        }
    }

    #[test]
    fn every_ending_has_a_key() {
        let endings = [
            JobEventKind::Completed { duration: std::time::Duration::ZERO },
            JobEventKind::Failed { error: String::new(), retry_at: chrono::Utc::now() },
            JobEventKind::TimedOut { timeout: std::time::Duration::ZERO, retry_at: chrono::Utc::now() },
            JobEventKind::Discarded { reason: String::new() },
            JobEventKind::Snoozed { until: chrono::Utc::now() },
            JobEventKind::Cancelled,
            JobEventKind::HandedBack,
            JobEventKind::LeaseLost,
        ];
        let labels: Vec<&str> = endings.iter().map(JobEventKind::label).collect();
        assert_eq!(labels, ENDINGS);
    }

    #[test]
    fn the_keys_of_a_queue_and_kind_are_built_once() {
        let by_kind = JobMetricsByKind::default();
        let first = by_kind.of("emails", "send");
        assert!(Arc::ptr_eq(&first, &by_kind.of("emails", "send")));
        assert!(!Arc::ptr_eq(&first, &by_kind.of("emails", "bounce")));
        assert!(!Arc::ptr_eq(&first, &by_kind.of("reports", "send")));
        let labels: Vec<(&str, &str)> = first.finished[0].labels().map(|label| (label.key(), label.value())).collect();
        assert_eq!(labels, [("queue", "emails"), ("kind", "send"), ("outcome", "completed")]);
    }
}
