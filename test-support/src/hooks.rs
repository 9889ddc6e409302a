//! The calls a test may bend, each forwarding to the wrapped storage unless overridden.

use async_trait::async_trait;
use haul_core::{
    Admin, ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, JobFilter, JobId, JobRecord,
    Leadership, LeadershipParams, ListParams, PacedClaim, PeriodicRecord, PeriodicUpdate, PruneParams, QueueCounts,
    QueueLimits, QueueLimitsRecord, ReportOutcome, ReportParams, RescueOutcome, Result, Storage, ThroughputSample,
    Timestamp, Wakeups, WorkerBeat, WorkerRecord,
};

/// Every call of [`Storage`] and [`Admin`], each forwarding to [`StorageHooks::inner`]
/// by default: a test overrides only the calls it bends, and [`Hooked`](crate::Hooked)
/// makes the implementer a storage.
///
/// One exception to the one-hook-per-call rule: claims have a single hook,
/// [`StorageHooks::claim_paced`], which serves both [`Storage::claim`] (its jobs) and
/// [`Storage::claim_paced`]. A worker claims through `claim_paced` and a test may call
/// `claim`; one hook bends both, and the contract makes a claim's jobs the same either
/// way.
#[async_trait]
pub trait StorageHooks: Send + Sync + 'static {
    /// The storage every call not overridden goes to.
    type Inner: Storage;
    /// The wrapped storage.
    fn inner(&self) -> &Self::Inner;
    /// [`Storage::backend_name`].
    fn backend_name(&self) -> &'static str {
        self.inner().backend_name()
    }
    /// [`Storage::enqueue`].
    async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        self.inner().enqueue(params).await
    }
    /// Every claim: [`Storage::claim_paced`], and [`Storage::claim`] as its jobs.
    async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
        self.inner().claim_paced(params).await
    }
    /// [`Storage::report`].
    async fn report(&self, params: ReportParams) -> Result<ReportOutcome> {
        self.inner().report(params).await
    }
    /// [`Storage::heartbeat`].
    async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        self.inner().heartbeat(params).await
    }
    /// [`Storage::promote_due`].
    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
        self.inner().promote_due(now).await
    }
    /// [`Storage::rescue_expired`].
    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        self.inner().rescue_expired(now).await
    }
    /// [`Storage::prune`].
    async fn prune(&self, params: PruneParams) -> Result<u64> {
        self.inner().prune(params).await
    }
    /// [`Storage::subscribe`].
    async fn subscribe(&self) -> Result<Wakeups> {
        self.inner().subscribe().await
    }
    /// [`Storage::beat_worker`].
    async fn beat_worker(&self, beat: WorkerBeat) -> Result<()> {
        self.inner().beat_worker(beat).await
    }
    /// [`Storage::remove_worker`].
    async fn remove_worker(&self, id: &str) -> Result<()> {
        self.inner().remove_worker(id).await
    }
    /// [`Storage::acquire_leadership`].
    async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
        self.inner().acquire_leadership(params).await
    }
    /// [`Storage::release_leadership`].
    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()> {
        self.inner().release_leadership(worker_id, term).await
    }
    /// [`Storage::save_periodic`].
    async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()> {
        self.inner().save_periodic(update).await
    }
    /// [`Storage::record_throughput`].
    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        self.inner().record_throughput(samples, now).await
    }
    /// [`Storage::migrate`].
    async fn migrate(&self) -> Result<()> {
        self.inner().migrate().await
    }
    /// [`Storage::check_ready`].
    async fn check_ready(&self) -> Result<()> {
        self.inner().check_ready().await
    }
    /// [`Admin::get`].
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.inner().get(id).await
    }
    /// [`Admin::list`].
    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        self.inner().list(params).await
    }
    /// [`Admin::counts`].
    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        self.inner().counts().await
    }
    /// [`Admin::cancel`].
    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.inner().cancel(id, now).await
    }
    /// [`Admin::retry`].
    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.inner().retry(id, now).await
    }
    /// [`Admin::delete`].
    async fn delete(&self, id: JobId) -> Result<()> {
        self.inner().delete(id).await
    }
    /// [`Admin::pause_queue`].
    async fn pause_queue(&self, queue: &str) -> Result<()> {
        self.inner().pause_queue(queue).await
    }
    /// [`Admin::resume_queue`].
    async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.inner().resume_queue(queue).await
    }
    /// [`Admin::set_queue_limits`].
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        self.inner().set_queue_limits(queue, limits).await
    }
    /// [`Admin::queue_limits`].
    async fn queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        self.inner().queue_limits().await
    }
    /// [`Admin::list_workers`].
    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        self.inner().list_workers(now).await
    }
    /// [`Admin::leader`].
    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        self.inner().leader(now).await
    }
    /// [`Admin::list_periodic`].
    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
        self.inner().list_periodic().await
    }
    /// [`Admin::delete_periodic`].
    async fn delete_periodic(&self, name: &str) -> Result<bool> {
        self.inner().delete_periodic(name).await
    }
    /// [`Admin::throughput`].
    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        self.inner().throughput(since).await
    }
    /// [`Admin::retry_jobs`].
    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.inner().retry_jobs(filter, now).await
    }
    /// [`Admin::cancel_jobs`].
    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.inner().cancel_jobs(filter, now).await
    }
    /// [`Admin::delete_jobs`].
    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        self.inner().delete_jobs(filter).await
    }
}
