//! Runs one claimed job and turns what happened into an outcome.

use std::{
    any::Any,
    panic::AssertUnwindSafe,
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Claim, Control, Error, JobContext, JobEventKind, JobOutcome, JobRecord, Report, RetryPolicy, StateMap, StopReason,
    events::EventSender,
    job::decode_job,
    middleware::{Middleware, Next},
    worker::{
        claim_ahead::HandlerTimes,
        held::HeldClaims,
        job_metrics::{JobMetrics, JobMetricsByKind},
        throughput::ThroughputTally,
    },
};

/// A job as the claimer hands it to an executor.
pub(crate) struct Claimed {
    pub(crate) record: JobRecord,
    /// When its lease ends by this worker's clock (the claim's send time plus the lease).
    pub(crate) lease_deadline: Instant,
}

/// What the jobs of one group of slots need to run (a worker has one executor per group).
pub(crate) struct Executor {
    pub(crate) states: Arc<StateMap>,
    pub(crate) held: Arc<HeldClaims>,
    pub(crate) reports: tokio::sync::mpsc::UnboundedSender<Report>,
    /// One permit per running handler (the group's concurrency).
    pub(crate) running: Arc<Semaphore>,
    /// Fires when the worker stops claiming: jobs that have not started are handed back.
    pub(crate) handing_back: CancellationToken,
    /// The job middleware, outermost first.
    pub(crate) middleware: Arc<[Arc<dyn Middleware>]>,
    /// Where lifecycle events go.
    pub(crate) events: EventSender,
    /// Completed and failed attempts per queue, for storage's throughput.
    pub(crate) throughput: Arc<ThroughputTally>,
    /// The per-attempt metrics' keys, by queue and kind.
    pub(crate) job_metrics: Arc<JobMetricsByKind>,
    /// How long handlers ran, for the automatic prefetch.
    pub(crate) handler_times: Arc<HandlerTimes>,
    /// How long a job claimed ahead may wait for a running slot before it is handed
    /// back (the automatic prefetch's bound; `None`: as long as it takes).
    pub(crate) slot_wait: Option<Duration>,
}

impl Executor {
    /// Runs a claimed job to an outcome and queues the outcome for flushing.
    ///
    /// Whatever happens in here, even a panic outside the handler, the claim does not
    /// stay held with nobody to report it: its lease would be extended forever.
    pub(crate) async fn run(&self, claimed: Claimed) {
        let Claimed { record, lease_deadline } = claimed;
        let Some(claim) = record.claim() else {
            tracing::error!(id = %record.id, "storage returned a claimed job without a lease token; skipping it");
            return;
        };
        let ctx = JobContext::for_claimed(record, claim.token, Arc::clone(&self.states));
        self.held.insert(claim, ctx.clone(), lease_deadline);
        let mut on_panic = ReleaseOnPanic { held: &self.held, claim, armed: true };
        self.run_held(claim, &ctx).await;
        // Every way out of `run_held` queued an outcome or released the claim itself.
        on_panic.armed = false;
    }

    async fn run_held(&self, claim: Claim, ctx: &JobContext) {
        let record = ctx.record();
        let metric_keys = self.job_metrics.of(&record.queue, &record.kind);
        // A prefetched job waits here for a running slot.
        let slot = tokio::select! {
            biased;
            slot = Arc::clone(&self.running).acquire_owned() => slot.ok(),
            () = self.handing_back.cancelled() => None,
            () = ctx.stop_token().cancelled() => None,
            () = sleep_or_forever(self.slot_wait) => {
                tracing::debug!(id = %record.id, wait = ?self.slot_wait, "a job claimed ahead waited too long for a slot; handing it back");
                self.handler_times.waited_too_long();
                None
            }
        };
        // A stop asked while the slot was being taken (a cancel, a lost lease, the
        // shutdown: a slot freed as it began is not taken up) wins too.
        let Some(_slot) = slot.filter(|_| ctx.stop_reason().is_none() && !self.handing_back.is_cancelled()) else {
            let reason = ctx.stop_reason().unwrap_or(StopReason::Shutdown);
            let outcome = stopped_outcome(Some(reason), None, &RetryPolicy::default(), record.attempt);
            let attempt = Attempt { outcome, timeout: None, duration: Duration::ZERO, stopped: Some(reason) };
            self.end(record, &metric_keys, &attempt);
            self.queue_report(claim, attempt.outcome);
            return;
        };
        // A claim whose lease ended before its start (the worker stalled, or waited on
        // an unreachable storage) may already be someone else's: never start it. It is
        // not handed back either; storage rescues it once its lease expires there too.
        if !self.held.lease_is_live(claim, Instant::now()) {
            tracing::debug!(id = %record.id, "the claim's lease ended before its handler started; leaving it to be rescued");
            metrics::counter!("haul_claims_expired_before_start_total").increment(1);
            let lost = Attempt {
                outcome: None,
                timeout: None,
                duration: Duration::ZERO,
                stopped: Some(StopReason::LeaseLost),
            };
            self.end(record, &metric_keys, &lost);
            self.held.remove(claim);
            return;
        }
        let span = tracing::info_span!(
            "haul.job",
            id = %record.id,
            kind = %record.kind,
            queue = %record.queue,
            attempt = record.attempt,
        );
        #[cfg(feature = "opentelemetry")]
        crate::otel::continue_trace(&span, ctx.metadata());
        let waited = (chrono::Utc::now() - record.run_at).to_std().unwrap_or_default();
        metric_keys.record_wait(waited.as_secs_f64());
        self.events.send(record, || JobEventKind::Started);
        let attempt = execute(record, ctx.clone(), &self.middleware, &metric_keys).instrument(span.clone()).await;
        // An attempt that ended before any handler ran (arguments that cannot be read, a
        // kind this worker does not know) took no time: it says nothing of the handlers.
        if !attempt.duration.is_zero() {
            self.handler_times.record(attempt.duration);
        }
        if ctx.is_marked_completed() {
            // A backend extension already wrote the completion under this claim (the
            // handler's writes and the completion committed together): storage holds
            // the outcome, and any report would find the claim spent.
            if !matches!(attempt.outcome, Some(JobOutcome::Completed) | None) {
                tracing::warn!(id = %record.id, "the job's completion was already committed; ignoring what followed it");
            }
            let completed = Attempt { outcome: Some(JobOutcome::Completed), ..attempt };
            span.in_scope(|| self.end(record, &metric_keys, &completed));
            self.held.remove(claim);
            return;
        }
        span.in_scope(|| self.end(record, &metric_keys, &attempt));
        self.queue_report(claim, attempt.outcome);
    }

    /// Logs, counts and publishes how an attempt ended.
    fn end(&self, record: &JobRecord, metric_keys: &JobMetrics, attempt: &Attempt) {
        let ending = ending_of(record, attempt);
        log_ending(record, &ending);
        metric_keys.count_ending(&ending);
        self.throughput.count(&record.queue, &ending);
        self.events.send(record, || ending);
    }

    fn queue_report(&self, claim: Claim, outcome: Option<JobOutcome>) {
        let Some(outcome) = outcome else {
            // The lease was lost: another worker may hold the job, so say nothing.
            self.held.remove(claim);
            return;
        };
        self.held.mark_reported(claim);
        if self.reports.send(crate::Report { claim, outcome }).is_err() {
            // The flusher is gone; the job stays running in storage and is rescued
            // when its lease expires, so nothing is lost.
            tracing::error!(id = %claim.id, "outcome flusher stopped; the job will be rescued after its lease");
            self.held.remove(claim);
        }
    }
}

/// Releases a claim whose executor panicked outside the handler (a handler's own panic
/// is caught and becomes a failed attempt): heartbeats stop, so the lease expires and
/// storage rescues the job instead of it staying `running` forever.
struct ReleaseOnPanic<'a> {
    held: &'a HeldClaims,
    claim: Claim,
    armed: bool,
}

impl Drop for ReleaseOnPanic<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if std::thread::panicking() {
            tracing::error!(id = %self.claim.id, "the worker runtime panicked running this job; it will be rescued after its lease");
        }
        self.held.remove(self.claim);
    }
}

/// What running one attempt gave.
pub(crate) struct Attempt {
    /// The outcome to report; `None` means it must not be reported (lease lost).
    pub(crate) outcome: Option<JobOutcome>,
    /// The attempt's time limit, if it had one.
    pub(crate) timeout: Option<Duration>,
    /// How long the handler (with its middleware) ran.
    pub(crate) duration: Duration,
    /// The stop that decided the outcome (a timeout, a cancel, a shutdown, a lost
    /// lease), read once where the outcome was decided.
    pub(crate) stopped: Option<StopReason>,
}

/// Runs one attempt through `middleware` (outermost first) and the handler, and records
/// its duration in `metric_keys`.
pub(crate) async fn execute(
    record: &JobRecord,
    ctx: JobContext,
    middleware: &Arc<[Arc<dyn Middleware>]>,
    metric_keys: &JobMetrics,
) -> Attempt {
    let ended = |outcome| Attempt { outcome: Some(outcome), timeout: None, duration: Duration::ZERO, stopped: None };
    if let Some(reason) = &record.unreadable_args {
        // No deployment can run it: discarded at once, with the reason kept.
        return ended(JobOutcome::Discarded { reason: format!("the stored arguments cannot be read: {reason}") });
    }
    let job = match decode_job(&record.kind, &record.args) {
        Ok(job) => job,
        Err(error) => return ended(undecodable(record, &error)),
    };
    let options = job.options();
    let timeout = record.timeout.or(options.timeout);
    let started = std::time::Instant::now();
    // The handler runs inside this task (no second spawn per job); a panic is caught
    // at each poll and becomes a failed attempt, and a stop drops the handler.
    let mut handler = if middleware.is_empty() {
        job.perform(ctx.clone())
    } else {
        Box::pin(Next::new(Arc::clone(middleware), job).run(ctx.clone()))
    };
    let handler = std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(cx))) {
            Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    });
    let finished = tokio::select! {
        biased;
        joined = handler => Some(joined),
        () = sleep_or_forever(timeout) => {
            ctx.stop(StopReason::Timeout);
            None
        }
        () = ctx.stop_token().cancelled() => None,
    };
    let duration = started.elapsed();
    metric_keys.record_duration(duration.as_secs_f64());
    let attempt = |outcome, stopped| Attempt { outcome, timeout, duration, stopped };
    let Some(joined) = finished else {
        let stopped = ctx.stop_reason();
        return attempt(stopped_outcome(stopped, timeout, &options.retry, record.attempt), stopped);
    };
    // A handler that watches its stop token may return before the runtime sees the
    // token fire: once a stop was asked, the reason decides, except that work finished
    // at shutdown counts as done.
    if let Some(reason) = ctx.stop_reason()
        && !(reason == StopReason::Shutdown && matches!(joined, Ok(Ok(()))))
    {
        return attempt(stopped_outcome(Some(reason), timeout, &options.retry, record.attempt), Some(reason));
    }
    let outcome = match joined {
        Ok(Ok(())) => JobOutcome::Completed,
        Ok(Err(error)) => match error.control() {
            None => failed(error.message(), &options.retry, record.attempt),
            Some(Control::RetryAfter(retry)) => {
                JobOutcome::Failed { error: error.message().to_owned(), retry_in: retry.0 }
            }
            Some(Control::Discard(discard)) => JobOutcome::Discarded { reason: discard.0.clone() },
            Some(Control::Snooze(snooze)) => JobOutcome::Snoozed { delay: snooze.0 },
        },
        Err(payload) => {
            failed(&format!("handler panicked: {}", panic_message(payload)), &options.retry, record.attempt)
        }
    };
    attempt(Some(outcome), None)
}

/// How an attempt ended, as events, logs and metrics tell it (see [`JobEventKind`]): a
/// failure on the last attempt is a discard, since storage discards the job.
fn ending_of(record: &JobRecord, attempt: &Attempt) -> JobEventKind {
    let stop = attempt.stopped;
    let after = |delay: Duration| {
        chrono::Duration::from_std(delay)
            .ok()
            .and_then(|delay| chrono::Utc::now().checked_add_signed(delay))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
    };
    match &attempt.outcome {
        None => JobEventKind::LeaseLost,
        Some(JobOutcome::Completed) => JobEventKind::Completed { duration: attempt.duration },
        Some(JobOutcome::Failed { error, .. }) if record.attempt >= record.max_attempts => {
            JobEventKind::Discarded { reason: error.clone() }
        }
        Some(JobOutcome::Failed { retry_in, .. }) if stop == Some(StopReason::Timeout) => {
            JobEventKind::TimedOut { timeout: attempt.timeout.unwrap_or_default(), retry_at: after(*retry_in) }
        }
        Some(JobOutcome::Failed { error, retry_in }) => {
            JobEventKind::Failed { error: error.clone(), retry_at: after(*retry_in) }
        }
        Some(JobOutcome::Discarded { reason }) => JobEventKind::Discarded { reason: reason.clone() },
        Some(JobOutcome::Cancelled) => JobEventKind::Cancelled,
        Some(JobOutcome::Snoozed { .. }) if stop == Some(StopReason::Shutdown) => JobEventKind::HandedBack,
        Some(JobOutcome::Snoozed { delay }) => JobEventKind::Snoozed { until: after(*delay) },
        #[allow(unreachable_patterns)]
        Some(_) => JobEventKind::Failed {
            error: "an outcome this worker does not know".to_owned(),
            retry_at: after(Duration::ZERO),
        },
    }
}

/// One log line per ending, at a level an operator can filter on: `warn` for what
/// needs a look (failures, timeouts, discards, lost leases), `info` for what an operator
/// did or asked (cancel, shutdown), `debug` for the normal course (completions, snoozes).
fn log_ending(record: &JobRecord, ending: &JobEventKind) {
    let (id, kind, attempt) = (record.id, record.kind.as_str(), record.attempt);
    match ending {
        JobEventKind::Started => {}
        JobEventKind::Completed { duration } => tracing::debug!(%id, kind, attempt, ?duration, "job completed"),
        JobEventKind::Failed { error, retry_at } => {
            tracing::warn!(%id, kind, attempt, %error, %retry_at, "job failed; it will be retried");
        }
        JobEventKind::TimedOut { timeout, retry_at } => {
            tracing::warn!(%id, kind, attempt, ?timeout, %retry_at, "job timed out; it will be retried");
        }
        JobEventKind::Discarded { reason } => {
            tracing::warn!(%id, kind, attempt, %reason, "job discarded; it will not run again");
        }
        JobEventKind::Snoozed { until } => tracing::debug!(%id, kind, attempt, %until, "job snoozed"),
        JobEventKind::Cancelled => tracing::info!(%id, kind, attempt, "job cancelled"),
        JobEventKind::HandedBack => {
            tracing::info!(%id, kind, attempt, "job handed back; its attempt is not spent");
        }
        JobEventKind::LeaseLost => {
            tracing::warn!(%id, kind, attempt, "job's lease lost; another worker may run it, nothing is reported");
        }
    }
}

/// A job whose stored form cannot be turned back into a Rust value fails its attempt
/// with the reason recorded (and logged once, as the attempt's end): a newer (or older)
/// deployment may still know it.
fn undecodable(record: &JobRecord, error: &Error) -> JobOutcome {
    let mut message = error.to_string();
    if let Some(source) = std::error::Error::source(error) {
        message = format!("{message}: {source}");
    }
    failed(&message, &RetryPolicy::default(), record.attempt)
}

fn failed(message: &str, retry: &RetryPolicy, attempt: u32) -> JobOutcome {
    JobOutcome::Failed { error: message.to_owned(), retry_in: retry.delay(attempt) }
}

/// The error of an attempt whose stop token was cancelled without a reason.
const UNEXPLAINED_STOP: &str =
    "the job's stop token was cancelled, not by the worker; a handler that gives up should return an error";

fn stopped_outcome(
    reason: Option<StopReason>,
    timeout: Option<Duration>,
    retry: &RetryPolicy,
    attempt: u32,
) -> Option<JobOutcome> {
    match reason {
        Some(StopReason::Timeout) => {
            Some(failed(&format!("timed out after {:?}", timeout.unwrap_or_default()), retry, attempt))
        }
        Some(StopReason::Cancelled) => Some(JobOutcome::Cancelled),
        // Handed back without spending the attempt.
        Some(StopReason::Shutdown) => Some(JobOutcome::Snoozed { delay: Duration::ZERO }),
        // The token was cancelled by code other than the worker (the handler or one of
        // its tasks): a failed attempt, so that a job doing it every time runs out of
        // attempts instead of being handed back forever.
        None => Some(failed(UNEXPLAINED_STOP, retry, attempt)),
        Some(StopReason::LeaseLost) => None,
    }
}

async fn sleep_or_forever(timeout: Option<Duration>) {
    match timeout {
        Some(timeout) => tokio::time::sleep(timeout).await,
        None => std::future::pending().await,
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "a non-string panic payload".to_owned(),
        },
    }
}
