//! The backend trait: what a storage must do, batch-first.
//!
//! **Unstable until 1.0.** The conformance suite in `haul-integration-tests` is the
//! implementer's kit: a backend is correct when it passes it.
//!
//! Every time-dependent call takes an optional `now`. `None` means the storage's own
//! clock (the database's `now()`, Redis `TIME`, the process clock for memory); tests
//! pass a value to move the clock instead of sleeping.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::{
    Admin, Claim, JobId, JobRecord, JobState, Leadership, LeadershipParams, NewJob, PeriodicUpdate, Result,
    ThroughputSample, Timestamp, Wakeups, WorkerBeat,
};

/// A job storage. See the module docs for the contract.
#[async_trait]
pub trait Storage: Admin + Send + Sync + 'static {
    /// A short name for logs and errors (`"memory"`, `"postgres"`, `"redis"`).
    fn backend_name(&self) -> &'static str;

    /// Inserts a batch of jobs, atomically: either every job is stored or none is.
    /// Jobs whose `run_at` is in the future are `scheduled`, the others `available`.
    /// An id already stored (or repeated in the batch) fails the whole batch with
    /// [`crate::Error::DuplicateId`], leaving the stored job untouched.
    ///
    /// A job with [`NewJob::unique`] set is not inserted while a stored job (or an
    /// earlier job of the same batch) blocks it ([`crate::Unique::is_blocked_by`]): its
    /// place in the returned ids holds the blocking job's id, which is also listed in
    /// [`EnqueueOutcome::duplicates`]. A backend that cannot honour uniqueness must
    /// reject such a job with an error, never store it as if it were not unique.
    async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome>;

    /// Claims up to `limit` available jobs from `queues` (paused queues excepted), in
    /// priority, then `run_at`, then id order. Each claimed job becomes `running`, its
    /// attempt count goes up by one, and it gets a fresh lease token and deadline.
    /// No job is ever handed to two claimers. A job whose stored arguments cannot be
    /// read is claimed like the others and returned with
    /// [`JobRecord::unreadable_args`] set (so are `get` and `list`): it never fails the
    /// call for the rest of the batch.
    ///
    /// The order may lag, by at most [`CLAIM_ORDER_LAG`]: a claim at `now` never passes
    /// over a job that was already available at `now - CLAIM_ORDER_LAG` to take one
    /// that sorts after it. A job that became available later (a retry, a higher
    /// priority enqueued meanwhile) may wait for a later claim while the backend
    /// resumes its walks from where its last claim stopped (PostgreSQL does while its
    /// walks from the start are slow, as a long transaction makes them; see its
    /// README, which also gives the bound's two small exceptions there). The lag only
    /// reorders: a claim never comes back empty while one of its queues holds an
    /// available job that no limit holds back.
    ///
    /// A queue with a concurrency limit ([`Admin::set_queue_limits`](crate::Admin::set_queue_limits))
    /// never gets more running jobs from a claim than its limit: the claim takes at
    /// most the limit minus the queue's running jobs (a job whose lease expired counts
    /// until it is rescued), checked atomically with the claim whatever other claims
    /// run at once, and skips that queue's other jobs; the claim's other queues fill
    /// the rest, in claim order among themselves. Skipped jobs stay available and keep
    /// their attempt count. A queue with a concurrency limit per key
    /// ([`QueueLimits::key_concurrency`](crate::QueueLimits::key_concurrency)) is
    /// capped the same way for each limit key: a job with a key is taken only while its
    /// key's running jobs, counted with the jobs this claim took before it, are under
    /// the limit; the claim looks at no more than
    /// [`KEY_LIMIT_SCAN`](crate::KEY_LIMIT_SCAN) of the queue's available jobs, in
    /// claim order. Jobs without a key are not capped per key.
    ///
    /// A queue with a rate limit ([`QueueLimits::rate`](crate::QueueLimits::rate),
    /// [`QueueLimits::key_rate`](crate::QueueLimits::key_rate)) gets a job from a
    /// claim at time `t` only while fewer than the limit's `starts` jobs of the queue
    /// (or of the job's key) were claimed in `(t - period, t]`, the jobs this claim
    /// took before it included; every claimed job is recorded as a start at `t`. Jobs
    /// held back stay available and keep their attempt count, as above. Every limit
    /// applies together; the key scan bound covers any per-key limit.
    async fn claim(&self, params: ClaimParams) -> Result<Vec<JobRecord>>;

    /// Claims like [`Storage::claim`] and also tells how long until a rate limit that
    /// held back a job lets another one start ([`PacedClaim::rate_limited_for`]): the
    /// worker claims again then instead of polling. Backends with rate limits override
    /// it (and implement `claim` as its jobs); the default knows of no rate limit.
    async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
        Ok(PacedClaim::new(self.claim(params).await?))
    }

    /// Records the outcomes of attempts. Each is fenced by its claim: an outcome whose
    /// lease token no longer matches a running job is rejected, not applied. A batch may
    /// hold outcomes of two claims of one job (an old, lost claim and a new one): each is
    /// judged by its own token, so the new claim's outcome applies and the old one's is
    /// rejected, whatever their order. Text is stored as given, except that NUL
    /// characters become U+FFFD ([`crate::storable_text`]).
    ///
    /// With [`ReportParams::delete_completed`], a completion that applies deletes its
    /// job instead of storing it as `completed`, as [`Storage::prune`] would but at
    /// once (the job is gone from `get`, listings and counts), unless the job has a
    /// uniqueness key: that job is stored as `completed`, so that a key whose blocking
    /// states include finished ones (periodic ticks use one) blocks until the job is
    /// pruned. Other outcomes are stored as without it.
    async fn report(&self, params: ReportParams) -> Result<ReportOutcome>;

    /// Extends the leases of held jobs and tells which of them were cancelled or lost,
    /// each judged by its own claim (a job may appear under an old and a new claim).
    async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome>;

    /// Moves `scheduled` and `retryable` jobs whose `run_at` has come to `available`.
    /// Returns how many moved.
    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64>;

    /// Ends the leases that expired: the job goes back to `available` (its attempt
    /// stays counted), to `discarded` when no attempt is left, or to `cancelled` when a
    /// cancel was requested.
    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome>;

    /// Deletes finished jobs older than the retention policy, at most `limit` of them.
    async fn prune(&self, params: PruneParams) -> Result<u64>;

    /// Subscribes to wake-up signals sent when work becomes available.
    async fn subscribe(&self) -> Result<Wakeups>;

    /// Records or refreshes a worker in the registry: the record is `beat`'s, seen at
    /// `now`, and ends at `now + beat.ttl` unless beaten again. Records whose end has
    /// passed are never listed, and a storage may delete them at any time.
    async fn beat_worker(&self, beat: WorkerBeat) -> Result<()>;

    /// Removes a worker's record (at shutdown). Removing an unknown id is not an error.
    async fn remove_worker(&self, id: &str) -> Result<()>;

    /// Makes `params.worker_id` the leader of this namespace, or renews its lead, if no
    /// other worker holds a leadership that has not lapsed (its `expires_at` is after
    /// `now`). Returns the leadership this worker now holds (expiring at
    /// `now + params.ttl`; same term on a renewal of a live lead, the previous term plus
    /// one when it takes a lead that was free, lapsed or another's), or `None` when
    /// another worker leads. Atomic: two callers never both get a leadership whose
    /// lifetimes overlap.
    async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>>;

    /// Gives the lead up, if `worker_id` still holds it under `term`; otherwise does
    /// nothing. The next [`Storage::acquire_leadership`] by anyone then succeeds.
    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()>;

    /// Saves what a scheduler did with a periodic schedule. The stored `last_tick` never
    /// moves back: an update of the stored spec whose `last_tick` is earlier than the
    /// stored one changes nothing; otherwise (another spec included) the record takes
    /// the update's spec and next tick, the later of the two last ticks (`None` keeps
    /// the stored one), and `updated_at = now` ([`PeriodicUpdate::apply`] states the
    /// rule in code). Atomic per record.
    async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()>;

    /// Adds worker-counted attempt endings to the per-queue, per-minute counts that
    /// [`Admin::throughput`](crate::Admin::throughput) reads: samples of the same queue
    /// and minute add up, across calls and workers (each sample's minute is truncated
    /// to a whole minute). Samples are kept at least [`crate::THROUGHPUT_RETENTION`]
    /// before `now` (default: storage's clock); older ones may be dropped. An invalid
    /// queue name is an [`crate::Error::InvalidName`] and records nothing.
    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()>;

    /// Prepares the storage for this version of haul: creates or upgrades what it needs
    /// (PostgreSQL: the schema and its tables; Redis: the key layout's version marker).
    /// Idempotent, and safe when several processes call it at once. The default does
    /// nothing, for backends that need no setup (memory).
    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    /// Checks that the storage is ready for this version of haul (migrated, in a layout
    /// it understands), failing with [`crate::Error::StorageNotReady`] whose message says
    /// how to fix it. Workers call it at start. The default finds nothing to check, so a
    /// storage that wraps another (for metrics, faults, a test clock) must forward this
    /// and [`Storage::migrate`] explicitly, or the wrapped storage is never checked.
    async fn check_ready(&self) -> Result<()> {
        Ok(())
    }
}

/// Input of [`Storage::enqueue`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct EnqueueParams {
    /// The jobs to insert.
    pub jobs: Vec<NewJob>,
    /// Clock override.
    pub now: Option<Timestamp>,
}

impl EnqueueParams {
    /// Enqueues `jobs`.
    pub fn new(jobs: Vec<NewJob>) -> Self {
        Self { jobs, now: None }
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }
}

/// Output of [`Storage::enqueue`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnqueueOutcome {
    /// One id per input job, in input order: the new job's, or for a unique job that was
    /// skipped, the id of the job that blocked it.
    pub ids: Vec<JobId>,
    /// The ids (among `ids`) of existing jobs that made a unique job be skipped.
    pub duplicates: Vec<JobId>,
}

impl EnqueueOutcome {
    /// An outcome listing `ids`, none of them a duplicate.
    pub fn new(ids: Vec<JobId>) -> Self {
        Self { ids, duplicates: Vec::new() }
    }

    /// Marks `ids` as duplicates.
    pub fn with_duplicates(mut self, duplicates: Vec<JobId>) -> Self {
        self.duplicates = duplicates;
        self
    }
}

/// How long a job may be passed over by claims that take jobs sorting after it
/// (see [`Storage::claim`]): a claim at `now` takes every job that was available at
/// `now - CLAIM_ORDER_LAG` before any job that sorts after it.
pub const CLAIM_ORDER_LAG: Duration = Duration::from_secs(1);

/// Input of [`Storage::claim`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClaimParams {
    /// Queues to claim from.
    pub queues: Vec<String>,
    /// At most this many jobs.
    pub limit: usize,
    /// How long the lease lasts before it must be extended.
    pub lease: Duration,
    /// Who claims (recorded for operators).
    pub worker_id: String,
    /// Clock override.
    pub now: Option<Timestamp>,
}

impl ClaimParams {
    /// Claims up to `limit` jobs from `queues` with a 30 s lease.
    pub fn new<Q: Into<String>>(queues: impl IntoIterator<Item = Q>, limit: usize) -> Self {
        Self {
            queues: queues.into_iter().map(Into::into).collect(),
            limit,
            lease: Duration::from_secs(30),
            worker_id: "anonymous".to_owned(),
            now: None,
        }
    }

    /// Sets the lease length.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the worker id.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = worker_id.into();
        self
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }
}

/// What [`Storage::claim_paced`] returns.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PacedClaim {
    /// The claimed jobs, as [`Storage::claim`] returns them.
    pub jobs: Vec<JobRecord>,
    /// `Some(d)` when a rate limit held back an available job of the claim's queues
    /// that the claim would otherwise have taken: `d` is the time, from the claim's
    /// clock, until the earliest of the limits that held a job back lets one more
    /// start (when its `starts`-th most recent start leaves the window). `None` when no
    /// rate limit held a job back; a claim that took `limit` jobs may also leave it
    /// `None` (its claimer claims again as soon as it has room anyway).
    pub rate_limited_for: Option<Duration>,
}

impl PacedClaim {
    /// A claim no rate limit held back.
    pub fn new(jobs: Vec<JobRecord>) -> Self {
        Self { jobs, rate_limited_for: None }
    }

    /// Sets [`PacedClaim::rate_limited_for`].
    #[must_use]
    pub fn rate_limited_for(mut self, wait: Option<Duration>) -> Self {
        self.rate_limited_for = wait;
        self
    }
}

/// What happened to one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobOutcome {
    /// The handler succeeded: `completed`.
    Completed,
    /// The attempt failed: `retryable` at now + `retry_in`, or `discarded` when no
    /// attempt is left. The error is appended to the job's history.
    Failed {
        /// What went wrong.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// Give up now: `discarded`, the reason appended to the error history.
    Discarded {
        /// Why.
        reason: String,
    },
    /// The holder stopped because the job was cancelled: `cancelled`.
    Cancelled,
    /// Run again after `delay` without spending the attempt: `scheduled` (or
    /// `available` when the delay is zero), attempt count back down by one. Also how a
    /// worker hands back jobs it could not finish before shutdown.
    Snoozed {
        /// Delay before the job is due again.
        delay: Duration,
    },
}

/// One fenced outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The claim the outcome belongs to.
    pub claim: Claim,
    /// What happened.
    pub outcome: JobOutcome,
}

/// Input of [`Storage::report`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ReportParams {
    /// The outcomes.
    pub reports: Vec<Report>,
    /// Clock override.
    pub now: Option<Timestamp>,
    /// Whether a completion deletes its job instead of keeping it as `completed` (see
    /// [`Storage::report`]).
    pub delete_completed: bool,
}

impl ReportParams {
    /// Reports `reports`, keeping completed jobs.
    pub fn new(reports: Vec<Report>) -> Self {
        Self { reports, now: None, delete_completed: false }
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }

    /// Sets whether a completion deletes its job (a worker whose retention of completed
    /// jobs is zero asks for it).
    pub fn delete_completed(mut self, delete: bool) -> Self {
        self.delete_completed = delete;
        self
    }
}

/// Output of [`Storage::report`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportOutcome {
    /// Claims whose outcome was applied.
    pub applied: Vec<Claim>,
    /// Claims whose outcome was rejected because they no longer hold their job.
    pub rejected: Vec<Claim>,
}

impl ReportOutcome {
    /// An outcome from its parts.
    pub fn new(applied: Vec<Claim>, rejected: Vec<Claim>) -> Self {
        Self { applied, rejected }
    }
}

/// Input of [`Storage::heartbeat`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HeartbeatParams {
    /// The claims held.
    pub claims: Vec<Claim>,
    /// The new lease length, counted from now.
    pub lease: Duration,
    /// Clock override.
    pub now: Option<Timestamp>,
}

impl HeartbeatParams {
    /// Extends `claims` by `lease`.
    pub fn new(claims: Vec<Claim>, lease: Duration) -> Self {
        Self { claims, lease, now: None }
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }
}

/// Output of [`Storage::heartbeat`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatOutcome {
    /// Claims whose lease was extended.
    pub extended: Vec<Claim>,
    /// Claims still held whose job was asked to cancel (their lease is extended too,
    /// so the holder can report [`JobOutcome::Cancelled`]).
    pub cancelled: Vec<Claim>,
    /// Claims that no longer hold their job (lease expired and rescued, or finished).
    pub lost: Vec<Claim>,
}

impl HeartbeatOutcome {
    /// An outcome from its parts.
    pub fn new(extended: Vec<Claim>, cancelled: Vec<Claim>, lost: Vec<Claim>) -> Self {
        Self { extended, cancelled, lost }
    }
}

/// Output of [`Storage::rescue_expired`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RescueOutcome {
    /// Jobs made available again.
    pub rescued: u64,
    /// Jobs discarded because no attempt was left.
    pub discarded: u64,
    /// Jobs cancelled because a cancel had been requested.
    pub cancelled: u64,
}

impl RescueOutcome {
    /// An outcome from its parts.
    pub fn new(rescued: u64, discarded: u64, cancelled: u64) -> Self {
        Self { rescued, discarded, cancelled }
    }
}

/// How long finished jobs are kept, per terminal state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Completed jobs.
    pub completed: Duration,
    /// Discarded jobs.
    pub discarded: Duration,
    /// Cancelled jobs.
    pub cancelled: Duration,
}

impl Retention {
    /// The same retention for every terminal state.
    pub fn all(keep: Duration) -> Self {
        Self { completed: keep, discarded: keep, cancelled: keep }
    }

    /// Sets the retention of completed jobs.
    pub fn completed(mut self, keep: Duration) -> Self {
        self.completed = keep;
        self
    }

    /// Sets the retention of discarded jobs.
    pub fn discarded(mut self, keep: Duration) -> Self {
        self.discarded = keep;
        self
    }

    /// Sets the retention of cancelled jobs.
    pub fn cancelled(mut self, keep: Duration) -> Self {
        self.cancelled = keep;
        self
    }

    /// The retention for a terminal state, `None` for other states.
    pub fn for_state(&self, state: JobState) -> Option<Duration> {
        match state {
            JobState::Completed => Some(self.completed),
            JobState::Discarded => Some(self.discarded),
            JobState::Cancelled => Some(self.cancelled),
            _ => None,
        }
    }
}

impl Default for Retention {
    /// Completed jobs for a day, discarded and cancelled ones for a week.
    fn default() -> Self {
        Self {
            completed: Duration::from_secs(24 * 3600),
            discarded: Duration::from_secs(7 * 24 * 3600),
            cancelled: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Input of [`Storage::prune`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PruneParams {
    /// How long finished jobs are kept (measured from `finished_at`).
    pub retention: Retention,
    /// Delete at most this many jobs per call.
    pub limit: usize,
    /// Clock override.
    pub now: Option<Timestamp>,
}

impl PruneParams {
    /// Prunes by `retention`, at most 10,000 jobs.
    pub fn new(retention: Retention) -> Self {
        Self { retention, limit: 10_000, now: None }
    }

    /// Sets the batch limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }
}

/// A shared storage is a storage, so `Arc<dyn Storage>` (what `haul::connect`
/// returns) works wherever a storage is expected.
#[async_trait]
impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn backend_name(&self) -> &'static str {
        (**self).backend_name()
    }
    async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        (**self).enqueue(params).await
    }
    async fn claim(&self, params: ClaimParams) -> Result<Vec<JobRecord>> {
        (**self).claim(params).await
    }
    async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
        (**self).claim_paced(params).await
    }
    async fn report(&self, params: ReportParams) -> Result<ReportOutcome> {
        (**self).report(params).await
    }
    async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        (**self).heartbeat(params).await
    }
    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
        (**self).promote_due(now).await
    }
    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        (**self).rescue_expired(now).await
    }
    async fn prune(&self, params: PruneParams) -> Result<u64> {
        (**self).prune(params).await
    }
    async fn subscribe(&self) -> Result<Wakeups> {
        (**self).subscribe().await
    }
    async fn beat_worker(&self, beat: WorkerBeat) -> Result<()> {
        (**self).beat_worker(beat).await
    }
    async fn remove_worker(&self, id: &str) -> Result<()> {
        (**self).remove_worker(id).await
    }
    async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
        (**self).acquire_leadership(params).await
    }
    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()> {
        (**self).release_leadership(worker_id, term).await
    }
    async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()> {
        (**self).save_periodic(update).await
    }
    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        (**self).record_throughput(samples, now).await
    }
    async fn migrate(&self) -> Result<()> {
        (**self).migrate().await
    }
    async fn check_ready(&self) -> Result<()> {
        (**self).check_ready().await
    }
}
