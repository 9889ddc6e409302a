//! The metrics recorded for every attempt (its wait, its duration, how it ended), with
//! their keys built once per queue and kind instead of once per job.
//!
//! The `metrics` macros build a key from owned labels on every call: for a job that is
//! two copies each of its queue and kind and a label list per metric, three times per
//! attempt. The keys here are built the first time a worker runs a job of a queue and
//! kind, and passed by reference to whichever recorder is installed when the sample is
//! taken (a recorder installed after the worker started is still used).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use foldhash::HashMap;
use metrics::{Key, Label, Level, Metadata};

use crate::JobEventKind;

/// Seconds from a job's `run_at` to its handler's start.
const WAIT: &str = "haul_job_wait_seconds";
/// Seconds a handler (with its middleware) ran.
const DURATION: &str = "haul_job_duration_seconds";
/// Attempts ended, by outcome.
const FINISHED: &str = "haul_jobs_finished_total";

/// How many ways an attempt can end: the [`JobEventKind`]s but `Started`.
const ENDINGS: usize = 8;

/// The slot of the finished counter of the attempts that ended as `ending`, `None` for
/// `Started` (not an ending). A new variant does not compile until it gets a slot here.
fn ending_slot(ending: &JobEventKind) -> Option<usize> {
    Some(match ending {
        JobEventKind::Started => return None,
        JobEventKind::Completed { .. } => 0,
        JobEventKind::Failed { .. } => 1,
        JobEventKind::TimedOut { .. } => 2,
        JobEventKind::Discarded { .. } => 3,
        JobEventKind::Snoozed { .. } => 4,
        JobEventKind::Cancelled => 5,
        JobEventKind::HandedBack => 6,
        JobEventKind::LeaseLost => 7,
    })
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The metric keys of the jobs of one queue and kind.
pub(crate) struct JobMetrics {
    wait: Key,
    duration: Key,
    /// The finished counter's key per [`ending_slot`], labelled with the ending's
    /// [`JobEventKind::label`]; built when a job first ends that way.
    finished: [OnceLock<Key>; ENDINGS],
}

impl JobMetrics {
    /// Builds the keys of `queue` and `kind` (shared through [`JobMetricsByKind`]).
    fn new(queue: &str, kind: &str) -> Self {
        let labels = || vec![Label::new("queue", queue.to_owned()), Label::new("kind", kind.to_owned())];
        Self {
            wait: Key::from_parts(WAIT, labels()),
            duration: Key::from_parts(DURATION, labels()),
            finished: Default::default(),
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

    /// Counts an attempt that ended as `ending` (labelled with its
    /// [`JobEventKind::label`]); `Started` is not an ending and is not counted.
    pub(crate) fn count_ending(&self, ending: &JobEventKind) {
        let Some(key) = self.finished_key(ending) else { return };
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }

    /// The finished counter's key of `ending`: the queue and kind labels, then the
    /// outcome.
    fn finished_key(&self, ending: &JobEventKind) -> Option<&Key> {
        let slot = self.finished.get(ending_slot(ending)?)?;
        Some(slot.get_or_init(|| {
            let mut labels: Vec<Label> = self.wait.labels().cloned().collect();
            labels.push(Label::new("outcome", ending.label()));
            Key::from_parts(FINISHED, labels)
        }))
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

    #[test]
    fn every_ending_has_its_own_key_labelled_with_the_ending() {
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
        assert_eq!(endings.len(), ENDINGS);
        let metrics = JobMetrics::new("emails", "send");
        for ending in &endings {
            let key = metrics.finished_key(ending).unwrap_or_else(|| panic!("{ending:?} has no key"));
            let labels: Vec<(&str, &str)> = key.labels().map(|label| (label.key(), label.value())).collect();
            assert_eq!(labels, [("queue", "emails"), ("kind", "send"), ("outcome", ending.label())]);
        }
        assert!(metrics.finished_key(&JobEventKind::Started).is_none());
    }

    #[test]
    fn the_keys_of_a_queue_and_kind_are_built_once() {
        let by_kind = JobMetricsByKind::default();
        let first = by_kind.of("emails", "send");
        assert!(Arc::ptr_eq(&first, &by_kind.of("emails", "send")));
        assert!(!Arc::ptr_eq(&first, &by_kind.of("emails", "bounce")));
        assert!(!Arc::ptr_eq(&first, &by_kind.of("reports", "send")));
        let cancelled = first.finished_key(&JobEventKind::Cancelled).map(std::ptr::from_ref);
        assert_eq!(cancelled, first.finished_key(&JobEventKind::Cancelled).map(std::ptr::from_ref));
    }
}
