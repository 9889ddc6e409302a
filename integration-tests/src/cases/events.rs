//! Lifecycle events over the backend: each attempt a worker takes gives `Started`, then
//! exactly one ending event, which says how the attempt ended as storage records it (a
//! failure on the last attempt is `Discarded`), and every subscriber gets every event
//! until the worker stops.
//!
//! Each case subscribes before the worker runs, waits for storage states (or events)
//! with a generous deadline, stops the worker and then reads the subscription to its
//! end, so the events it checks are all the worker sent.

use std::time::Duration;

use haul::{JobError, JobEvent, JobEventKind, JobEvents, JobId, JobOutcome, JobState, Queue, WorkerBuilder};

use super::{
    jobs::{SCRIPTED_BACKOFF, SCRIPTED_KIND, Script, Tracker},
    worker::{RunningWorker, enqueue_script, wait_for_all, wait_for_state},
    *,
};

/// Builds the worker `configure` makes of [`RunningWorker::builder`], subscribes to it, and
/// runs it.
fn start_watched(
    storage: &TestStorage,
    queue: &str,
    tracker: &Tracker,
    configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
) -> (RunningWorker, EventLog) {
    let worker = configure(RunningWorker::builder(storage, queue, tracker)).build();
    let log = EventLog::new(worker.subscribe());
    (RunningWorker::from_worker(worker), log)
}

/// A subscription and every event received from it so far, in order.
struct EventLog {
    events: JobEvents,
    seen: Vec<JobEvent>,
    ended: bool,
}

impl EventLog {
    fn new(events: JobEvents) -> Self {
        Self { events, seen: Vec::new(), ended: false }
    }

    /// Receives events until `done` holds of those received, failing after [`PATIENCE`].
    async fn wait_for(&mut self, what: &str, done: impl Fn(&[JobEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!("the subscription ended while waiting for {what}; received: {:#?}", self.seen),
                Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}; received: {:#?}", self.seen),
            }
        }
    }

    /// Receives events until job `id` has started `n` times.
    async fn wait_for_starts(&mut self, id: JobId, n: usize) {
        self.wait_for(&format!("job {id} to start {n} time(s)"), |seen| {
            seen.iter().filter(|event| event.id == id && event.what == JobEventKind::Started).count() >= n
        })
        .await;
    }

    /// Receives the rest of the events of a stopped worker, until the subscription ends
    /// (`recv` gives `None`), which it must do within [`PATIENCE`].
    async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => break,
                Err(_) => panic!("the subscription did not end within {PATIENCE:?} of the worker stopping"),
            }
        }
        assert!(self.events.try_recv().is_none(), "an ended subscription gives nothing more");
        self.ended = true;
    }

    /// Every event of job `id`, in order; the log must have been finished.
    fn of(&self, id: JobId) -> Vec<JobEvent> {
        assert!(self.ended, "read the events once the subscription has ended");
        self.seen.iter().filter(|event| event.id == id).cloned().collect()
    }

    /// Every event of job `id`, checked to be the events labelled `labels`, in order.
    fn expect(&self, id: JobId, labels: &[&str]) -> Vec<JobEvent> {
        let events = self.of(id);
        let got: Vec<&str> = events.iter().map(|event| event.what.label()).collect();
        assert_eq!(got, labels, "the events of job {id}: {events:#?}");
        events
    }
}

/// `at` plus `delay`.
fn after(at: Timestamp, delay: Duration) -> Timestamp {
    at + chrono::Duration::from_std(delay).expect("a short delay")
}

/// The attempt numbers of `events`.
fn attempts(events: &[JobEvent]) -> Vec<u32> {
    events.iter().map(|event| event.attempt).collect()
}

/// The `retry_at` of a `Failed` or `TimedOut` event.
fn retry_at(event: &JobEvent) -> Timestamp {
    match &event.what {
        JobEventKind::Failed { retry_at, .. } | JobEventKind::TimedOut { retry_at, .. } => *retry_at,
        other => panic!("expected a failed or timed-out event, got {other:?}"),
    }
}

/// The reason of a `Discarded` event.
fn reason(event: &JobEvent) -> &str {
    match &event.what {
        JobEventKind::Discarded { reason } => reason,
        other => panic!("expected a discarded event, got {other:?}"),
    }
}

/// A job that succeeds gives exactly `Started` then `Completed`, both naming the job,
/// its kind, queue, attempt and attempts; the duration covers the handler's run.
pub async fn a_successful_job_gives_started_then_completed(storage: TestStorage) {
    let queue = "ev.complete";
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder);
    let id = enqueue_script(&storage, queue, Script::Sleep { ms: 50 }, |job| job.max_attempts(3)).await;
    wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "completed"]);
    assert_eq!(log.seen.len(), 2, "no event of another job: {:#?}", log.seen);
    for event in &events {
        assert_eq!(
            (event.kind.as_str(), event.queue.as_str(), event.attempt, event.max_attempts),
            (SCRIPTED_KIND, queue, 1, 3),
            "{event:?}"
        );
    }
    assert!(events[0].at <= events[1].at, "started before it completed: {events:#?}");
    match events[1].what {
        JobEventKind::Completed { duration } => {
            assert!(duration >= Duration::from_millis(50), "the duration covers the handler's sleep: {duration:?}");
            assert!(duration < PATIENCE, "{duration:?}");
        }
        ref other => panic!("expected completed, got {other:?}"),
    }
}

/// A job that fails once with attempts left gives `Started`, `Failed` (the error, and
/// the retry time one backoff after the failure), then `Started` and `Completed` for
/// its second attempt.
pub async fn a_failed_attempt_with_attempts_left_gives_failed_with_its_retry_time(storage: TestStorage) {
    let queue = "ev.fail_once";
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder);
    let id = enqueue_script(&storage, queue, Script::FailUntilAttempt { attempt: 2 }, |job| job.max_attempts(3)).await;
    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "failed", "started", "completed"]);
    assert_eq!(attempts(&events), vec![1, 1, 2, 2]);
    let JobEventKind::Failed { error, retry_at } = &events[1].what else { unreachable!("checked above") };
    assert_eq!(error, "attempt 1 fails on purpose");
    assert_eq!(record.errors.len(), 1);
    assert_eq!(&record.errors[0].message, error, "the event carries the error storage recorded");
    assert!(
        *retry_at >= after(events[0].at, SCRIPTED_BACKOFF) && *retry_at <= after(events[1].at, SCRIPTED_BACKOFF),
        "the retry is due one backoff ({SCRIPTED_BACKOFF:?}) after the failure: {events:#?}"
    );
}

/// A failure on the job's last attempt gives `Started` then `Discarded` with the error
/// as reason, never `Failed`: a "death handler" watching for `Discarded` sees exactly
/// the jobs that will not run again, and not a job that failed and then succeeded.
pub async fn a_failure_on_the_last_attempt_gives_discarded_not_failed(storage: TestStorage) {
    let queue = "ev.last_attempt";
    let tracker = Tracker::new();
    let worker = RunningWorker::builder(&storage, queue, &tracker).build();
    let mut log = EventLog::new(worker.subscribe());
    let mut deaths = worker.subscribe();
    let death_handler = tokio::spawn(async move {
        let mut dead = Vec::new();
        while let Some(event) = deaths.recv().await {
            if let JobEventKind::Discarded { reason } = event.what {
                dead.push((event.id, reason));
            }
        }
        dead
    });
    let worker = RunningWorker::from_worker(worker);
    let doomed =
        enqueue_script(&storage, queue, Script::FailUntilAttempt { attempt: 100 }, |job| job.max_attempts(1)).await;
    let recovers =
        enqueue_script(&storage, queue, Script::FailUntilAttempt { attempt: 2 }, |job| job.max_attempts(2)).await;
    let record = wait_for_state(&storage, doomed, JobState::Discarded).await;
    wait_for_state(&storage, recovers, JobState::Completed).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(doomed, &["started", "discarded"]);
    assert_eq!(reason(&events[1]), "attempt 1 fails on purpose");
    assert_eq!(record.errors.iter().map(|error| error.message.as_str()).collect::<Vec<_>>(), vec![reason(&events[1])]);
    assert_eq!((events[1].attempt, events[1].max_attempts), (1, 1));
    log.expect(recovers, &["started", "failed", "started", "completed"]);

    let dead = tokio::time::timeout(PATIENCE, death_handler)
        .await
        .expect("the death handler's subscription ends with the worker")
        .expect("the death handler does not panic");
    assert_eq!(dead, vec![(doomed, "attempt 1 fails on purpose".to_owned())]);
}

/// A handler that discards its job gives `Started` then `Discarded` with its reason,
/// however many attempts are left.
pub async fn a_discarding_handler_gives_discarded_with_its_reason(storage: TestStorage) {
    let queue = "ev.discard";
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder);
    let script = Script::Discard { reason: "mailbox does not exist".to_owned() };
    let id = enqueue_script(&storage, queue, script, |job| job.max_attempts(5)).await;
    wait_for_state(&storage, id, JobState::Discarded).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "discarded"]);
    assert_eq!(reason(&events[1]), "mailbox does not exist");
    assert_eq!((events[1].attempt, events[1].max_attempts), (1, 5));
}

/// A handler that snoozes gives `Snoozed` with the time it is due again (the snooze
/// after the run), then runs again under the same attempt.
pub async fn a_snoozing_handler_gives_snoozed_until_its_due_time(storage: TestStorage) {
    let queue = "ev.snooze";
    let snooze = Duration::from_millis(200);
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder);
    let id = enqueue_script(&storage, queue, Script::SnoozeFirstRun { ms: 200 }, |job| job.max_attempts(1)).await;
    wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "snoozed", "started", "completed"]);
    assert_eq!(attempts(&events), vec![1, 1, 1, 1], "a snooze does not spend the attempt");
    let JobEventKind::Snoozed { until } = events[1].what else { unreachable!("checked above") };
    assert!(
        until >= after(events[0].at, snooze) && until <= after(events[1].at, snooze),
        "due again {snooze:?} after the snooze: {events:#?}"
    );
}

/// An attempt that runs past its timeout gives `TimedOut` (the limit, and the retry
/// time one backoff later) when attempts are left, and `Discarded` with the timeout
/// as reason on the last attempt.
pub async fn a_timeout_gives_timed_out_with_attempts_left_and_discarded_on_the_last(storage: TestStorage) {
    let queue = "ev.timeout";
    let limit = Duration::from_millis(200);
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder);
    let retried =
        enqueue_script(&storage, queue, Script::HangOnFirstAttempt, |job| job.timeout(Some(limit)).max_attempts(3))
            .await;
    let last = enqueue_script(&storage, queue, Script::Hang, |job| job.timeout(Some(limit)).max_attempts(1)).await;
    wait_for_state(&storage, retried, JobState::Completed).await;
    let discarded = wait_for_state(&storage, last, JobState::Discarded).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(retried, &["started", "timed_out", "started", "completed"]);
    assert_eq!(attempts(&events), vec![1, 1, 2, 2]);
    let JobEventKind::TimedOut { timeout, .. } = events[1].what else { unreachable!("checked above") };
    assert_eq!(timeout, limit);
    let retry_at = retry_at(&events[1]);
    assert!(
        retry_at >= after(events[0].at, limit + SCRIPTED_BACKOFF) && retry_at <= after(events[1].at, SCRIPTED_BACKOFF),
        "the retry is due one backoff after the timeout: {events:#?}"
    );

    let events = log.expect(last, &["started", "discarded"]);
    assert!(reason(&events[1]).contains("timed out"), "{events:#?}");
    assert_eq!(discarded.errors.len(), 1);
    assert_eq!(discarded.errors[0].message, reason(&events[1]), "the reason is the error storage recorded");
}

/// Cancelling a running job (through `Queue::cancel`; the worker learns it at its next
/// heartbeat) gives `Started` then `Cancelled`.
pub async fn a_cancelled_running_job_gives_cancelled(storage: TestStorage) {
    let queue = "ev.cancel";
    let tracker = Tracker::new();
    let (worker, mut log) =
        start_watched(&storage, queue, &tracker, |builder| builder.lease(Duration::from_millis(600)));
    let id = enqueue_script(&storage, queue, Script::Hang, |job| job).await;
    log.wait_for_starts(id, 1).await;

    let requested = Queue::new(storage.clone()).cancel(id).await.expect("cancel succeeds");
    assert_eq!(requested.state, JobState::Running, "the cancel is requested of the running job");
    wait_for_state(&storage, id, JobState::Cancelled).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "cancelled"]);
    assert_eq!(attempts(&events), vec![1, 1]);
    assert_eq!(tracker.runs(id), vec![1]);
}

/// Cancelling a running job reaches its handler at once: storage signals the holder
/// through its wake-up channel (NOTIFY, pub/sub, in process) and the holder beats at
/// once, so the handler is stopped within a second although its next regular heartbeat
/// is 20 s away (a 60 s lease). It takes a few milliseconds; the bound leaves room for a
/// loaded machine (200 ms was once missed by 13 ms in CI, with PostgreSQL in a container).
pub async fn a_cancel_reaches_the_running_handler_within_a_second(storage: TestStorage) {
    let queue = "ev.cancel_signal";
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder.lease(Duration::from_secs(60)));
    let id = enqueue_script(&storage, queue, Script::Hang, |job| job).await;
    log.wait_for_starts(id, 1).await;

    let asked = std::time::Instant::now();
    let requested = storage.cancel(id, None).await.expect("cancel succeeds");
    assert_eq!(requested.state, JobState::Running, "the cancel is requested of the running job");
    log.wait_for("the job's cancelled event", |seen| {
        seen.iter().any(|event| event.id == id && event.what == JobEventKind::Cancelled)
    })
    .await;
    let took = asked.elapsed();
    wait_for_state(&storage, id, JobState::Cancelled).await;
    worker.stop().await;
    log.finish().await;

    log.expect(id, &["started", "cancelled"]);
    assert!(took < Duration::from_secs(1), "the handler was stopped {took:?} after the cancel, not within a second");
}

/// A worker shut down while a long job runs gives it `HandedBack` once the grace
/// period is over; a job it had claimed ahead and not started gives `HandedBack` with
/// no `Started`. Both are `available` again with their attempt not spent.
pub async fn shutdown_after_the_grace_period_gives_handed_back(storage: TestStorage) {
    let queue = "ev.handback";
    let tracker = Tracker::new();
    let ids = super::worker::enqueue_scripts(&storage, queue, vec![Script::Hang; 2]).await;
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| {
        builder.concurrency(1).prefetch(1).shutdown_grace(Duration::from_millis(200))
    });
    wait_for_all(&storage, queue, 2, JobState::Running).await;
    log.wait_for("a job to start", |seen| seen.iter().any(|event| event.what == JobEventKind::Started)).await;
    worker.stop().await;
    log.finish().await;

    let started = log.seen.iter().find(|event| event.what == JobEventKind::Started).map(|event| event.id);
    let started = started.expect("a job started");
    let waiting = *ids.iter().find(|id| **id != started).expect("two jobs");
    let events = log.expect(started, &["started", "handed_back"]);
    assert_eq!(attempts(&events), vec![1, 1]);
    log.expect(waiting, &["handed_back"]);
    assert!(tracker.runs(waiting).is_empty(), "the job claimed ahead never ran");
    for id in &ids {
        let record = get(&storage, *id).await;
        assert_eq!(record.state, JobState::Available, "job {id} is handed back");
        assert_eq!(record.attempt, 0, "the interrupted attempt is not spent");
        assert!(record.errors.is_empty());
    }
}

/// A handler that panics with attempts left gives `Failed` with the panic message;
/// on its last attempt, `Discarded` with it.
pub async fn a_panicking_handler_gives_failed_with_the_panic_message(storage: TestStorage) {
    let queue = "ev.panic";
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder);
    let script = Script::Panic { message: "kaboom 51c2".to_owned() };
    let id = enqueue_script(&storage, queue, script, |job| job.max_attempts(2)).await;
    let record = wait_for_state(&storage, id, JobState::Discarded).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "failed", "started", "discarded"]);
    assert_eq!(attempts(&events), vec![1, 1, 2, 2]);
    let JobEventKind::Failed { error, .. } = &events[1].what else { unreachable!("checked above") };
    assert!(error.contains("kaboom 51c2"), "the failure carries the panic message: {error:?}");
    assert!(retry_at(&events[1]) >= after(events[0].at, SCRIPTED_BACKOFF), "{events:#?}");
    assert!(reason(&events[3]).contains("kaboom 51c2"), "{events:#?}");
    let recorded: Vec<&str> = record.errors.iter().map(|error| error.message.as_str()).collect();
    assert_eq!(recorded, vec![error.as_str(), reason(&events[3])], "the events carry the errors storage recorded");
}

/// Two subscribers both receive every event, in the same order; each subscription
/// ends (`recv` gives `None`) once the worker has stopped.
pub async fn every_subscriber_receives_every_event_until_the_worker_stops(storage: TestStorage) {
    let queue = "ev.subscribers";
    let tracker = Tracker::new();
    let worker = RunningWorker::builder(&storage, queue, &tracker).build();
    let mut first = EventLog::new(worker.subscribe());
    let mut second = EventLog::new(worker.subscribe());
    let worker = RunningWorker::from_worker(worker);
    let completes = enqueue_script(&storage, queue, Script::Complete, |job| job).await;
    let retried = enqueue_script(&storage, queue, Script::FailUntilAttempt { attempt: 2 }, |job| job).await;
    let discard = Script::Discard { reason: "not wanted".to_owned() };
    let discarded = enqueue_script(&storage, queue, discard, |job| job).await;
    wait_for_state(&storage, completes, JobState::Completed).await;
    wait_for_state(&storage, retried, JobState::Completed).await;
    wait_for_state(&storage, discarded, JobState::Discarded).await;
    worker.stop().await;
    first.finish().await;
    second.finish().await;

    first.expect(completes, &["started", "completed"]);
    first.expect(retried, &["started", "failed", "started", "completed"]);
    first.expect(discarded, &["started", "discarded"]);
    assert_eq!(first.seen.len(), 8, "every event of the three jobs, and nothing else: {:#?}", first.seen);
    assert_eq!(first.seen, second.seen, "both subscribers received the same events in the same order");
}

/// A worker whose lease on a running job is lost (storage rescued the job as if its
/// lease had expired, and another claim took it) gives `LeaseLost` for that job and no
/// other ending, and reports nothing: the other claim's hold is left as it was.
pub async fn a_lost_lease_gives_lease_lost_and_no_other_ending(storage: TestStorage) {
    let queue = "ev.lease_lost";
    let tracker = Tracker::new();
    // One slot and no prefetch: the worker claims nothing while it holds the job, so the
    // claim after the rescue is the case's own.
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| {
        builder.concurrency(1).prefetch(0).lease(Duration::from_millis(1_500))
    });
    let id = enqueue_script(&storage, queue, Script::Hang, |job| job.max_attempts(3)).await;
    log.wait_for_starts(id, 1).await;

    // The lease is lost as if the worker had stalled past it: an hour on, storage
    // rescues the job and another claim takes it.
    let far_ahead = chrono::Utc::now() + chrono::Duration::hours(1);
    let rescued = storage.rescue_expired(Some(far_ahead)).await.expect("rescue succeeds");
    assert_eq!(rescued.rescued, 1);
    let other = claim_only(&storage, queue, id, after(far_ahead, Duration::from_secs(1))).await;
    assert_eq!(other.attempt, 2);
    log.wait_for("the job's lease-lost event", |seen| {
        seen.iter().any(|event| event.id == id && event.what == JobEventKind::LeaseLost)
    })
    .await;
    let held = get(&storage, id).await;
    assert_eq!(
        (held.state, held.lease_token, held.lease_expires_at),
        (JobState::Running, other.lease_token, other.lease_expires_at),
        "the other claim still holds the job as it claimed it"
    );
    report_applied(&storage, claim_of(&other), JobOutcome::Completed, after(far_ahead, Duration::from_secs(2))).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "lease_lost"]);
    assert_eq!(attempts(&events), vec![1, 1]);
    assert_eq!(log.seen.len(), 2, "no event of another claim: {:#?}", log.seen);
    assert_eq!(tracker.runs(id), vec![1], "the worker did not run the job again");
    let record = get(&storage, id).await;
    assert_eq!((record.state, record.attempt), (JobState::Completed, 2), "completed by the other claim");
    assert_eq!(record.errors.len(), 1, "only the rescue's error is recorded: {:?}", record.errors);
    assert_eq!(record.errors[0].attempt, 1);
}

/// A job cancelled while it waits claimed ahead (prefetched) for a running slot gives
/// `Cancelled` alone: its handler never starts, so there is no `Started`. It ends
/// `cancelled` without having run.
pub async fn a_job_cancelled_before_its_handler_starts_gives_only_cancelled(storage: TestStorage) {
    let queue = "ev.cancel_waiting";
    let tracker = Tracker::new();
    let ids = super::worker::enqueue_scripts(&storage, queue, vec![Script::Hang; 2]).await;
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| {
        builder.concurrency(1).prefetch(1).shutdown_grace(Duration::from_millis(200))
    });
    wait_for_all(&storage, queue, 2, JobState::Running).await;
    log.wait_for("a job to start", |seen| seen.iter().any(|event| event.what == JobEventKind::Started)).await;
    let started = log.seen.iter().find(|event| event.what == JobEventKind::Started).map(|event| event.id);
    let started = started.expect("a job started");
    let waiting = *ids.iter().find(|id| **id != started).expect("two jobs");

    let requested = Queue::new(storage.clone()).cancel(waiting).await.expect("cancel succeeds");
    assert_eq!(requested.state, JobState::Running, "the cancel is requested of the claimed job");
    let record = wait_for_state(&storage, waiting, JobState::Cancelled).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(waiting, &["cancelled"]);
    assert_eq!((events[0].attempt, record.attempt), (1, 1), "the claim began the attempt");
    assert!(tracker.runs(waiting).is_empty(), "the cancelled job never ran");
    log.expect(started, &["started", "handed_back"]);
}

/// How long [`asks_to_retry`] jobs ask to wait before their next attempt.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// Asks on every attempt to be retried after [`RETRY_DELAY`] (a `RetryAfter`).
#[haul::job(name = "haul_tests.events.asks_to_retry")]
pub async fn asks_to_retry() -> Result<(), JobError> {
    Err(JobError::retry_after(RETRY_DELAY))
}

/// A `RetryAfter` with attempts left gives `Failed`, due again after the delay it asked
/// for; on the job's last attempt it gives `Discarded` with its message as reason, not
/// `Failed`, since storage discards the job.
pub async fn retry_after_on_the_last_attempt_gives_discarded_not_failed(storage: TestStorage) {
    let queue = "ev.retry_after";
    let tracker = Tracker::new();
    let (worker, mut log) = start_watched(&storage, queue, &tracker, |builder| builder);
    let id = Queue::new(storage.clone())
        .enqueue(AsksToRetry::new())
        .queue(queue)
        .max_attempts(2)
        .await
        .expect("enqueue succeeds");
    let record = wait_for_state(&storage, id, JobState::Discarded).await;
    worker.stop().await;
    log.finish().await;

    let events = log.expect(id, &["started", "failed", "started", "discarded"]);
    assert_eq!(attempts(&events), vec![1, 1, 2, 2]);
    let retry_at = retry_at(&events[1]);
    assert!(
        retry_at >= after(events[0].at, RETRY_DELAY) && retry_at <= after(events[1].at, RETRY_DELAY),
        "due again the {RETRY_DELAY:?} the handler asked for after the failure: {events:#?}"
    );
    assert_eq!((events[3].attempt, events[3].max_attempts), (2, 2));
    let recorded: Vec<&str> = record.errors.iter().map(|error| error.message.as_str()).collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(reason(&events[3]), recorded[1], "the reason is the error storage recorded");
    assert!(reason(&events[3]).contains("retry requested"), "{events:#?}");
}
