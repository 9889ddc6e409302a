//! The rules of the job lifecycle: which transition each call makes, and when.
//!
//! These functions are the reference semantics the other backends match; the crate
//! docs summarize them. Every change to a stored job goes through
//! [`crate::store::JobMut::change`].

use std::time::Duration;

use haul_core::{
    AttemptError, Claim, EnqueueOutcome, Error, HeartbeatOutcome, JobId, JobOutcome, JobRecord, JobState, NewJob,
    PacedClaim, Report, ReportOutcome, RescueOutcome, Result, Retention, Timestamp,
};

use crate::{
    store::{Claimable, Store},
    time::{after, before, between},
    unique::BatchUniques,
    wake::Wake,
};

/// The error recorded when a lease runs out before its holder reports.
pub(crate) const LEASE_EXPIRED: &str = "lease expired: the worker holding the job stopped heartbeating";

/// What [`Store::claim`] needs besides the clock.
pub(crate) struct ClaimRequest<'a> {
    pub(crate) queues: &'a [String],
    pub(crate) limit: usize,
    pub(crate) lease: Duration,
    pub(crate) worker_id: &'a str,
}

impl Store {
    /// Validates the whole batch, then stores every job of it.
    /// A unique job that a stored job (or an earlier one of the batch) blocks is not
    /// stored: its place in the outcome holds the blocking job's id (the smallest id
    /// among its blockers).
    ///
    /// Linear in the batch: every job is decided first, against the jobs stored before
    /// the batch (looked at once per distinct [`Unique`](haul_core::Unique)) and the
    /// batch's earlier jobs (kept by key in [`BatchUniques`]), then the others stored.
    pub(crate) fn enqueue(&mut self, jobs: Vec<NewJob>, now: Timestamp, wake: &mut Wake) -> Result<EnqueueOutcome> {
        self.validate_batch(&jobs)?;
        let mut blockers = Vec::with_capacity(jobs.len());
        let mut batch = BatchUniques::default();
        for job in &jobs {
            let blocker = job.unique.as_ref().and_then(|unique| {
                let blocker = batch.blocker(unique, now, |unique| self.blocking(unique, now));
                if blocker.is_none() {
                    batch.stored(&unique.key, job.id, initial_state(job.run_at, now), now);
                }
                blocker
            });
            blockers.push(blocker);
        }
        let mut ids = Vec::with_capacity(jobs.len());
        let mut duplicates = Vec::new();
        for (job, blocker) in jobs.into_iter().zip(blockers) {
            if let Some(existing) = blocker {
                ids.push(existing);
                duplicates.push(existing);
                continue;
            }
            let record = new_record(job, now);
            if record.state == JobState::Available {
                wake.add(&record.queue);
            }
            ids.push(record.id);
            self.insert(record);
        }
        Ok(EnqueueOutcome::new(ids).with_duplicates(duplicates))
    }

    /// The batch's own checks ([`NewJob::validate_batch`]), then ids already stored.
    fn validate_batch(&self, jobs: &[NewJob]) -> Result<()> {
        NewJob::validate_batch(jobs)?;
        match jobs.iter().find(|job| self.contains(job.id)) {
            Some(job) => Err(Error::DuplicateId(job.id)),
            None => Ok(()),
        }
    }

    /// Claims up to `request.limit` available jobs, in claim order, logging their
    /// starts for the rate limits of their queues, and tells how long until a rate
    /// limit that held back a job lets one more start.
    pub(crate) fn claim(&mut self, request: &ClaimRequest<'_>, now: Timestamp) -> PacedClaim {
        if request.limit == 0 {
            return PacedClaim::default();
        }
        let deadline = after(now, request.lease);
        let Claimable { ids, rate_limited_until } = self.claimable(request.queues, request.limit, now);
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let token = self.new_token();
            if let Some(mut job) = self.job_mut(id) {
                job.change(|job| {
                    job.state = JobState::Running;
                    job.attempt = job.attempt.saturating_add(1);
                    job.attempted_at = Some(now);
                    job.lease_token = Some(token);
                    job.lease_expires_at = Some(deadline);
                    job.claimed_by = Some(request.worker_id.to_owned());
                });
                claimed.push(job.get().clone());
            }
        }
        if self.any_rate_limit(request.queues) {
            self.record_starts(&claimed, now);
        }
        PacedClaim::new(claimed).rate_limited_for(rate_limited_until.map(|until| between(now, until)))
    }

    /// Applies each outcome whose claim still holds its job; rejects the others. With
    /// `delete_completed`, a job that completes is deleted, unless it has a uniqueness
    /// key (kept for prune, so that a key blocking completed jobs still blocks).
    pub(crate) fn report(
        &mut self,
        reports: Vec<Report>,
        delete_completed: bool,
        now: Timestamp,
        wake: &mut Wake,
    ) -> Result<ReportOutcome> {
        // Convert first, so an outcome this backend does not know fails the whole call
        // before anything changed.
        let reports = reports
            .into_iter()
            .map(|Report { claim, outcome }| Ok((claim, Outcome::try_from(outcome)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut outcome = ReportOutcome::default();
        let mut freed = Vec::new();
        let any_limit = !self.limits.is_empty();
        for (claim, result) in reports {
            match self.job_mut(claim.id) {
                Some(job)
                    if holds(job.get(), claim)
                        && delete_completed
                        && matches!(result, Outcome::Completed)
                        && job.get().unique_key.is_none() =>
                {
                    // Deleted as it stands: moving it to the finished index first would
                    // be undone at once.
                    if any_limit {
                        freed.push(Freed::by(job.get()));
                    }
                    self.delete(claim.id);
                    outcome.applied.push(claim);
                }
                Some(mut job) if holds(job.get(), claim) => {
                    job.change(|job| apply(job, result, now));
                    if job.get().state == JobState::Available {
                        wake.add(&job.get().queue);
                    } else if any_limit {
                        freed.push(Freed::by(job.get()));
                    }
                    outcome.applied.push(claim);
                }
                _ => outcome.rejected.push(claim),
            }
        }
        self.wake_where_slots_freed(&freed, wake);
        Ok(outcome)
    }

    /// Extends the leases still held and tells which were cancelled or lost.
    pub(crate) fn heartbeat(&mut self, claims: &[Claim], lease: Duration, now: Timestamp) -> HeartbeatOutcome {
        let deadline = after(now, lease);
        let mut outcome = HeartbeatOutcome::default();
        for &claim in claims {
            match self.job_mut(claim.id) {
                Some(mut job) if holds(job.get(), claim) => {
                    job.change(|job| job.lease_expires_at = Some(deadline));
                    outcome.extended.push(claim);
                    if job.get().cancel_requested_at.is_some() {
                        outcome.cancelled.push(claim);
                    }
                }
                _ => outcome.lost.push(claim),
            }
        }
        outcome
    }

    /// Makes due scheduled and retryable jobs available.
    pub(crate) fn promote_due(&mut self, now: Timestamp, wake: &mut Wake) -> u64 {
        let mut promoted = 0;
        for id in self.due(now) {
            if let Some(mut job) = self.job_mut(id) {
                job.change(|job| job.state = JobState::Available);
                wake.add(&job.get().queue);
                promoted += 1;
            }
        }
        promoted
    }

    /// Ends the expired leases.
    pub(crate) fn rescue_expired(&mut self, now: Timestamp, wake: &mut Wake) -> RescueOutcome {
        let mut outcome = RescueOutcome::default();
        let mut freed = Vec::new();
        for id in self.expired(now) {
            let Some(mut job) = self.job_mut(id) else { continue };
            let state = job.change(|job| {
                release(job);
                if job.cancel_requested_at.is_some() {
                    finish(job, JobState::Cancelled, now);
                } else {
                    record_error(job, now, LEASE_EXPIRED.to_owned());
                    if job.attempt >= job.max_attempts {
                        finish(job, JobState::Discarded, now);
                    } else {
                        job.state = JobState::Available;
                        job.run_at = now;
                    }
                }
                job.state
            });
            match state {
                JobState::Cancelled => outcome.cancelled += 1,
                JobState::Discarded => outcome.discarded += 1,
                _ => {
                    wake.add(&job.get().queue);
                    outcome.rescued += 1;
                }
            }
            if state != JobState::Available {
                freed.push(Freed::by(job.get()));
            }
        }
        self.wake_where_slots_freed(&freed, wake);
        outcome
    }

    /// Wakes the claimers of each queue where a running job ended (and did not become
    /// available, which wakes them anyway) if the slot it freed may let a held-back job
    /// run: the queue has a concurrency limit, or a limit per key and the job had a
    /// limit key; and the queue has available jobs. A claim never wakes anyone, so a
    /// claimer held back by a limit waits for one of these wake-ups or its poll.
    fn wake_where_slots_freed(&self, freed: &[Freed], wake: &mut Wake) {
        for Freed { queue, keyed } in freed {
            let Some(limits) = self.limits.get(queue.as_str()) else { continue };
            let limited = limits.concurrency.is_some() || (*keyed && limits.key_concurrency.is_some());
            if limited && self.has_available(queue) {
                wake.add(queue);
            }
        }
    }

    /// Deletes up to `limit` finished jobs older than `retention`, oldest first.
    pub(crate) fn prune(&mut self, retention: &Retention, limit: usize, now: Timestamp) -> u64 {
        let ids = self.prunable(|state| retention.for_state(state).map(|keep| before(now, keep)), limit);
        let mut pruned = 0;
        for id in ids {
            if self.delete(id).is_some() {
                pruned += 1;
            }
        }
        pruned
    }

    /// Cancels a pending job now, or asks the holder of a running one to stop.
    pub(crate) fn cancel(&mut self, id: JobId, now: Timestamp) -> Result<JobRecord> {
        let mut job = self.job_mut(id).ok_or(Error::NotFound(id))?;
        match job.get().state {
            JobState::Scheduled | JobState::Available | JobState::Retryable => {
                job.change(|job| finish(job, JobState::Cancelled, now));
            }
            JobState::Running => job.change(|job| {
                job.cancel_requested_at.get_or_insert(now);
            }),
            state @ (JobState::Completed | JobState::Discarded | JobState::Cancelled) => {
                return Err(Error::InvalidState {
                    id,
                    state,
                    operation: "cancel",
                    expected: "scheduled, available, retryable or running",
                });
            }
        }
        Ok(job.get().clone())
    }

    /// Makes a job that is not running available now, with one more attempt if needed.
    pub(crate) fn retry(&mut self, id: JobId, now: Timestamp, wake: &mut Wake) -> Result<JobRecord> {
        let mut job = self.job_mut(id).ok_or(Error::NotFound(id))?;
        if job.get().state == JobState::Running {
            return Err(Error::InvalidState {
                id,
                state: JobState::Running,
                operation: "retry",
                expected: "scheduled, available, retryable, completed, discarded or cancelled",
            });
        }
        job.change(|job| {
            job.state = JobState::Available;
            job.run_at = now;
            job.finished_at = None;
            job.cancel_requested_at = None;
            release(job);
            if job.attempt >= job.max_attempts {
                job.max_attempts = job.attempt.saturating_add(1);
            }
        });
        wake.add(&job.get().queue);
        Ok(job.get().clone())
    }
}

/// A slot a job freed by leaving `running` other than for `available`.
struct Freed {
    /// The job's queue.
    queue: String,
    /// Whether the job had a limit key (so it also freed a slot of its key).
    keyed: bool,
}

impl Freed {
    fn by(job: &JobRecord) -> Self {
        Self { queue: job.queue.clone(), keyed: job.limit_key.is_some() }
    }
}

/// A [`JobOutcome`] this backend knows how to apply.
enum Outcome {
    Completed,
    Failed { error: String, retry_in: Duration },
    Discarded { reason: String },
    Cancelled,
    Snoozed { delay: Duration },
}

impl TryFrom<JobOutcome> for Outcome {
    type Error = Error;

    fn try_from(outcome: JobOutcome) -> Result<Self> {
        Ok(match outcome {
            JobOutcome::Completed => Self::Completed,
            JobOutcome::Failed { error, retry_in } => {
                Self::Failed { error: haul_core::storable_text(&error).into_owned(), retry_in }
            }
            JobOutcome::Discarded { reason } => {
                Self::Discarded { reason: haul_core::storable_text(&reason).into_owned() }
            }
            JobOutcome::Cancelled => Self::Cancelled,
            JobOutcome::Snoozed { delay } => Self::Snoozed { delay },
            other => {
                return Err(Error::InvalidArgument(
                    format!("the memory backend does not support the outcome {other:?}").into(),
                ));
            }
        })
    }
}

/// Applies the outcome of a held job's attempt. A requested cancel wins over a retry
/// or a snooze: the job will not run again.
fn apply(job: &mut JobRecord, outcome: Outcome, now: Timestamp) {
    release(job);
    let cancel_requested = job.cancel_requested_at.is_some();
    match outcome {
        Outcome::Completed => finish(job, JobState::Completed, now),
        Outcome::Failed { error, retry_in } => {
            record_error(job, now, error);
            if cancel_requested {
                finish(job, JobState::Cancelled, now);
            } else if job.attempt >= job.max_attempts {
                finish(job, JobState::Discarded, now);
            } else {
                job.state = JobState::Retryable;
                job.run_at = after(now, retry_in);
            }
        }
        Outcome::Discarded { reason } => {
            record_error(job, now, reason);
            finish(job, JobState::Discarded, now);
        }
        Outcome::Cancelled => finish(job, JobState::Cancelled, now),
        Outcome::Snoozed { .. } if cancel_requested => finish(job, JobState::Cancelled, now),
        Outcome::Snoozed { delay } => {
            job.attempt = job.attempt.saturating_sub(1);
            job.run_at = after(now, delay);
            job.state = if delay.is_zero() { JobState::Available } else { JobState::Scheduled };
        }
    }
}

/// Whether `claim` is the current claim of `job`.
fn holds(job: &JobRecord, claim: Claim) -> bool {
    job.state == JobState::Running && job.lease_token == Some(claim.token)
}

/// Clears the lease of a job leaving `running` (its `attempted_at` stays).
fn release(job: &mut JobRecord) {
    job.lease_token = None;
    job.lease_expires_at = None;
    job.claimed_by = None;
}

fn finish(job: &mut JobRecord, state: JobState, now: Timestamp) {
    job.state = state;
    job.finished_at = Some(now);
}

fn record_error(job: &mut JobRecord, now: Timestamp, message: String) {
    job.errors.push(AttemptError { attempt: job.attempt, at: now, message });
}

/// The state a job due at `run_at` is stored in when enqueued at `now`.
fn initial_state(run_at: haul_core::RunAt, now: Timestamp) -> JobState {
    if run_at.resolve(now) > now { JobState::Scheduled } else { JobState::Available }
}

/// The stored form of a new job. Every field is set here, whatever defaults the
/// constructor picks (`NewJob` is `#[non_exhaustive]`, so the `..` below is required:
/// a field added to it must be carried over here by hand).
fn new_record(job: NewJob, now: Timestamp) -> JobRecord {
    let NewJob { id, kind, args, queue, priority, run_at, max_attempts, timeout, unique, metadata, limit_key, .. } =
        job;
    let state = initial_state(run_at, now);
    let run_at = run_at.resolve(now);
    let mut record = JobRecord::new(id, kind, args);
    record.queue = queue;
    record.priority = priority;
    record.state = state;
    record.attempt = 0;
    record.max_attempts = max_attempts;
    record.timeout = timeout;
    record.run_at = run_at;
    record.created_at = now;
    record.attempted_at = None;
    record.finished_at = None;
    record.cancel_requested_at = None;
    record.errors = Vec::new();
    record.lease_token = None;
    record.lease_expires_at = None;
    record.claimed_by = None;
    record.unique_key = unique.map(|unique| unique.key);
    record.metadata = std::sync::Arc::new(metadata);
    record.limit_key = limit_key;
    record
}
