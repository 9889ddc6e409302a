//! The worker's metrics, read back from metrics-util's `DebuggingRecorder`: the ending
//! of every attempt by outcome, one wait and one duration sample per attempt, the queue
//! gauges the leader samples, and storage errors by operation.
//!
//! The recorder is global (the worker's tasks run on other threads), so this binary holds
//! one test, and each of its phases has a storage and a queue of its own. A snapshot
//! drains what it reads (counters, gauges and histograms start again from nothing): each
//! phase takes one, at its end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;
use haul::{
    JobEventKind,
    prelude::*,
    storage::{ClaimParams, PacedClaim, QueueCounts},
};
use haul_test_support::{Hooked, StorageHooks};
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};
use tokio::sync::watch;

/// How long a phase may take before the test fails instead of hanging.
const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// A memory storage that can fail its claims, and that publishes what each `counts`
/// call returned and how many claims it failed.
#[derive(Clone)]
struct Observed {
    inner: MemoryStorage,
    /// Claims fail (as if storage could not be reached) while set.
    fail_claims: Arc<AtomicBool>,
    /// Claims failed so far.
    failed_claims: watch::Sender<u64>,
    /// What the last `counts` call returned.
    counted: watch::Sender<Vec<QueueCounts>>,
}

impl Observed {
    fn new(fail_claims: bool) -> Hooked<Self> {
        Hooked::new(Self {
            inner: MemoryStorage::new(),
            fail_claims: Arc::new(AtomicBool::new(fail_claims)),
            failed_claims: watch::Sender::new(0),
            counted: watch::Sender::new(Vec::new()),
        })
    }
}

#[async_trait]
impl StorageHooks for Observed {
    type Inner = MemoryStorage;
    fn inner(&self) -> &MemoryStorage {
        &self.inner
    }
    async fn claim_paced(&self, params: ClaimParams) -> haul::Result<PacedClaim> {
        if self.fail_claims.load(Ordering::SeqCst) {
            self.failed_claims.send_modify(|failed| *failed += 1);
            return Err(haul::Error::backend(self.backend_name(), haul::ErrorKind::Connection, "claims are cut", None));
        }
        self.inner.claim_paced(params).await
    }
    async fn counts(&self) -> haul::Result<Vec<QueueCounts>> {
        let counts = self.inner.counts().await?;
        self.counted.send_replace(counts.clone());
        Ok(counts)
    }
}

#[job(queue = "metrics")]
async fn completes() -> Result<(), JobError> {
    Ok(())
}

#[job(queue = "metrics", max_attempts = 3, backoff = RetryPolicy::fixed(Duration::from_millis(50)))]
async fn fails_once(ctx: JobContext) -> Result<(), String> {
    if ctx.attempt() == 1 { Err("the first attempt fails".to_owned()) } else { Ok(()) }
}

/// Its only attempt fails: storage discards it, so the metrics say `discarded`.
#[job(queue = "metrics", max_attempts = 1)]
async fn fails_on_its_last_attempt() -> Result<(), String> {
    Err("no attempt left after this one".to_owned())
}

#[job(queue = "metrics")]
async fn gives_up() -> Result<(), JobError> {
    Err(Discard("not worth retrying".to_owned()).into())
}

#[job(queue = "metrics")]
async fn snoozes() -> Result<(), JobError> {
    Err(Snooze(Duration::from_secs(3600)).into())
}

/// Times out on its first attempt; its retry is an hour away, after the test.
#[job(queue = "metrics", timeout = "100ms", max_attempts = 2, backoff = RetryPolicy::fixed(Duration::from_secs(3600)))]
async fn times_out() -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

/// Runs until the worker shuts down and hands it back.
#[job(queue = "metrics")]
async fn outlives_shutdown() -> Result<(), JobError> {
    std::future::pending::<()>().await;
    Ok(())
}

/// One snapshot of the recorder.
struct Seen(Vec<(CompositeKey, DebugValue)>);

impl Seen {
    fn take(snapshotter: &Snapshotter) -> Self {
        Self(snapshotter.snapshot().into_vec().into_iter().map(|(key, _, _, value)| (key, value)).collect())
    }

    /// The values of the metrics of `kind` named `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        kind: MetricKind,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a DebugValue> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| {
                key.kind() == kind
                    && key.key().name() == name
                    && labels.iter().all(|(label, value)| {
                        key.key().labels().any(|seen| seen.key() == *label && seen.value() == *value)
                    })
            })
            .map(|(_, value)| value)
    }

    /// The sum of the counters named `name` whose labels include `labels`.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(MetricKind::Counter, name, labels)
            .map(|value| match value {
                DebugValue::Counter(count) => *count,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// How many samples the histograms named `name` whose labels include `labels` hold.
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(MetricKind::Histogram, name, labels)
            .map(|value| match value {
                DebugValue::Histogram(samples) => samples.len(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .sum()
    }

    /// The gauge named `name` with exactly `labels`, if it was set.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let gauges: Vec<f64> = self
            .0
            .iter()
            .filter(|(key, _)| {
                key.kind() == MetricKind::Gauge
                    && key.key().name() == name
                    && key.key().labels().count() == labels.len()
                    && labels.iter().all(|(label, value)| {
                        key.key().labels().any(|seen| seen.key() == *label && seen.value() == *value)
                    })
            })
            .map(|(_, value)| match value {
                DebugValue::Gauge(value) => value.into_inner(),
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .collect();
        assert!(gauges.len() <= 1, "{name}{labels:?} names several gauges: {gauges:?}");
        gauges.first().copied()
    }

    /// Every metric, one per line, for assertion messages.
    fn dump(&self) -> String {
        self.0.iter().map(|(key, value)| format!("{:?} {} {:?}\n", key.kind(), key.key(), value)).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_counts_outcomes_samples_queue_gauges_and_storage_errors() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");

    tokio::time::timeout(PHASE_LIMIT, outcomes_attempts_and_queue_gauges(&snapshotter))
        .await
        .expect("the outcomes phase took too long");
    tokio::time::timeout(PHASE_LIMIT, failing_claims(&snapshotter))
        .await
        .expect("the failing claims phase took too long");
}

/// Phase 1, queue `metrics`: each kind of ending, then the counters, histograms and
/// gauges of the queue.
async fn outcomes_attempts_and_queue_gauges(snapshotter: &Snapshotter) {
    let storage = Observed::new(false);
    let queue = Queue::new(storage.clone());
    for _ in 0..3 {
        queue.enqueue(Completes::new()).await.unwrap();
    }
    queue.enqueue(FailsOnce::new()).await.unwrap();
    queue.enqueue(FailsOnItsLastAttempt::new()).await.unwrap();
    queue.enqueue(GivesUp::new()).await.unwrap();
    queue.enqueue(Snoozes::new()).await.unwrap();
    queue.enqueue(TimesOut::new()).await.unwrap();
    queue.enqueue(OutlivesShutdown::new()).await.unwrap();

    let worker = Worker::builder(storage.clone())
        .queues(["metrics"])
        .concurrency(16)
        .maintenance_interval(Duration::from_millis(20))
        .queue_gauge_interval(Duration::from_millis(20))
        .shutdown_grace(Duration::from_millis(200))
        .build();
    let mut events = worker.subscribe();
    let mut counted = storage.counted.subscribe();
    let until = async move {
        // Every ending but the hand-back (which comes at shutdown), and the start of the
        // job that will be handed back.
        let expected =
            BTreeMap::from([("completed", 4), ("failed", 1), ("discarded", 2), ("snoozed", 1), ("timed_out", 1)]);
        let mut endings: BTreeMap<&str, usize> = BTreeMap::new();
        let mut outliving_started = false;
        while endings != expected || !outliving_started {
            let event = events.recv().await.expect("the worker runs");
            match event.what {
                JobEventKind::Started => outliving_started |= event.kind == "outlives_shutdown",
                ending => *endings.entry(ending.label()).or_default() += 1,
            }
        }
        // The leader's sample once those outcomes are in storage: the finished jobs, the
        // retry an hour away (retryable) and the snoozed job (scheduled).
        counted
            .wait_for(|counts| {
                counts.iter().any(|counts| {
                    counts.queue == "metrics"
                        && counts.get(JobState::Completed) == 4
                        && counts.get(JobState::Discarded) == 2
                        && counts.get(JobState::Retryable) == 1
                        && counts.get(JobState::Scheduled) == 1
                })
            })
            .await
            .expect("the storage lives");
    };
    worker.run_until(until).await.unwrap();

    let seen = Seen::take(snapshotter);
    let dump = seen.dump();
    let finished = |labels: &[(&str, &str)]| seen.counter("haul_jobs_finished_total", labels);
    let metrics = ("queue", "metrics");
    for (outcome, count) in [
        ("completed", 4),
        ("failed", 1),
        ("discarded", 2),
        ("snoozed", 1),
        ("timed_out", 1),
        ("handed_back", 1),
        ("cancelled", 0),
        ("lease_lost", 0),
    ] {
        assert_eq!(finished(&[metrics, ("outcome", outcome)]), count, "outcome {outcome}:\n{dump}");
    }
    assert_eq!(finished(&[metrics]), 10, "one ending per attempt:\n{dump}");
    // A failure on the last attempt is a discard, never a failure.
    let last_attempt = ("kind", "fails_on_its_last_attempt");
    assert_eq!(finished(&[last_attempt, ("outcome", "discarded")]), 1, "{dump}");
    assert_eq!(finished(&[last_attempt, ("outcome", "failed")]), 0, "{dump}");
    assert_eq!(finished(&[("kind", "fails_once"), ("outcome", "failed")]), 1, "{dump}");
    assert_eq!(finished(&[("kind", "fails_once"), ("outcome", "completed")]), 1, "{dump}");

    // One wait and one duration sample per attempt that started: all ten here.
    for histogram in ["haul_job_wait_seconds", "haul_job_duration_seconds"] {
        assert_eq!(seen.samples(histogram, &[metrics]), 10, "{histogram}:\n{dump}");
        for (kind, attempts) in [
            ("completes", 3),
            ("fails_once", 2),
            ("fails_on_its_last_attempt", 1),
            ("gives_up", 1),
            ("snoozes", 1),
            ("times_out", 1),
            ("outlives_shutdown", 1),
        ] {
            assert_eq!(seen.samples(histogram, &[metrics, ("kind", kind)]), attempts, "{histogram} of {kind}:\n{dump}");
        }
    }

    // The gauges of every state, sampled by the worker (it leads alone).
    for state in JobState::ALL {
        assert!(
            seen.gauge("haul_queue_jobs", &[metrics, ("state", state.as_str())]).is_some(),
            "no haul_queue_jobs gauge for state {state}:\n{dump}"
        );
    }
    for (state, jobs) in
        [("completed", 4.0), ("discarded", 2.0), ("retryable", 1.0), ("scheduled", 1.0), ("cancelled", 0.0)]
    {
        assert_eq!(seen.gauge("haul_queue_jobs", &[metrics, ("state", state)]), Some(jobs), "state {state}:\n{dump}");
    }
    assert_eq!(seen.gauge("haul_queue_paused", &[metrics]), Some(0.0), "{dump}");
    assert!(
        seen.gauge("haul_queue_next_available_age_seconds", &[metrics]).is_some_and(|age| age >= 0.0),
        "no haul_queue_next_available_age_seconds gauge:\n{dump}"
    );
    assert_eq!(seen.counter("haul_storage_errors_total", &[]), 0, "no storage call failed:\n{dump}");
}

/// Phase 2, queue `failing-claims`: every claim fails, and each failure is counted.
async fn failing_claims(snapshotter: &Snapshotter) {
    let storage = Observed::new(true);
    let worker = Worker::builder(storage.clone()).queues(["failing-claims"]).build();
    let mut failed = storage.failed_claims.subscribe();
    worker
        .run_until(async move {
            failed.wait_for(|failed| *failed >= 3).await.expect("the storage lives");
        })
        .await
        .unwrap();

    let seen = Seen::take(snapshotter);
    let dump = seen.dump();
    let failed = *storage.failed_claims.borrow();
    assert!(failed >= 3);
    // The claimer finishes its claim in flight before it stops: it saw every failure.
    assert_eq!(seen.counter("haul_storage_errors_total", &[("operation", "claim")]), failed, "{dump}");
    assert_eq!(seen.counter("haul_storage_errors_total", &[]), failed, "only claims failed:\n{dump}");
}
