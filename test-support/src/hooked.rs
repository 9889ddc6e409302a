//! The storage made of a test's hooks.

use std::ops::Deref;

use async_trait::async_trait;
use haul_core::{
    Admin, ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, JobFilter, JobId, JobRecord,
    Leadership, LeadershipParams, ListParams, PacedClaim, PeriodicRecord, PeriodicUpdate, PruneParams, QueueCounts,
    QueueLimits, QueueLimitsRecord, ReportOutcome, ReportParams, RescueOutcome, Result, Storage, ThroughputSample,
    Timestamp, Wakeups, WorkerBeat, WorkerRecord,
};

use crate::StorageHooks;

/// A [`Storage`] (and [`Admin`]) that sends every call to the matching hook of `H`, so
/// it behaves like `H`'s inner storage except in the calls `H` overrides. Derefs to `H`,
/// so a test reads what its hooks recorded through the storage it handed out.
///
/// Every call of both traits is forwarded, those with default bodies too (the list of
/// `impl Storage for Arc<S>` and `impl Admin for Arc<A>` in haul-core): a call the
/// traits gain must be added to [`StorageHooks`] and here.
#[derive(Clone, Debug, Default)]
pub struct Hooked<H>(H);

impl<H: StorageHooks> Hooked<H> {
    /// A storage bent by `hooks`.
    pub fn new(hooks: H) -> Self {
        Self(hooks)
    }
}

impl<H> Deref for Hooked<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.0
    }
}

#[async_trait]
impl<H: StorageHooks> Storage for Hooked<H> {
    fn backend_name(&self) -> &'static str {
        self.0.backend_name()
    }
    async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        self.0.enqueue(params).await
    }
    async fn claim(&self, params: ClaimParams) -> Result<Vec<JobRecord>> {
        Ok(self.0.claim_paced(params).await?.jobs)
    }
    async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
        self.0.claim_paced(params).await
    }
    async fn report(&self, params: ReportParams) -> Result<ReportOutcome> {
        self.0.report(params).await
    }
    async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        self.0.heartbeat(params).await
    }
    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
        self.0.promote_due(now).await
    }
    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        self.0.rescue_expired(now).await
    }
    async fn prune(&self, params: PruneParams) -> Result<u64> {
        self.0.prune(params).await
    }
    async fn subscribe(&self) -> Result<Wakeups> {
        self.0.subscribe().await
    }
    async fn beat_worker(&self, beat: WorkerBeat) -> Result<()> {
        self.0.beat_worker(beat).await
    }
    async fn remove_worker(&self, id: &str) -> Result<()> {
        self.0.remove_worker(id).await
    }
    async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
        self.0.acquire_leadership(params).await
    }
    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()> {
        self.0.release_leadership(worker_id, term).await
    }
    async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()> {
        self.0.save_periodic(update).await
    }
    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        self.0.record_throughput(samples, now).await
    }
    async fn migrate(&self) -> Result<()> {
        self.0.migrate().await
    }
    async fn check_ready(&self) -> Result<()> {
        self.0.check_ready().await
    }
}

#[async_trait]
impl<H: StorageHooks> Admin for Hooked<H> {
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.0.get(id).await
    }
    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        self.0.list(params).await
    }
    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        self.0.counts().await
    }
    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.0.cancel(id, now).await
    }
    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.0.retry(id, now).await
    }
    async fn delete(&self, id: JobId) -> Result<()> {
        self.0.delete(id).await
    }
    async fn pause_queue(&self, queue: &str) -> Result<()> {
        self.0.pause_queue(queue).await
    }
    async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.0.resume_queue(queue).await
    }
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        self.0.set_queue_limits(queue, limits).await
    }
    async fn queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        self.0.queue_limits().await
    }
    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        self.0.list_workers(now).await
    }
    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        self.0.leader(now).await
    }
    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
        self.0.list_periodic().await
    }
    async fn delete_periodic(&self, name: &str) -> Result<bool> {
        self.0.delete_periodic(name).await
    }
    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        self.0.throughput(since).await
    }
    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.0.retry_jobs(filter, now).await
    }
    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.0.cancel_jobs(filter, now).await
    }
    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        self.0.delete_jobs(filter).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use haul_core::{NewJob, QueueCounts};
    use haul_memory::MemoryStorage;

    use super::*;

    /// Counts the claims and hides the counts; everything else goes to memory.
    #[derive(Default)]
    struct Bent {
        inner: MemoryStorage,
        claims: AtomicUsize,
    }

    #[async_trait]
    impl StorageHooks for Bent {
        type Inner = MemoryStorage;
        fn inner(&self) -> &MemoryStorage {
            &self.inner
        }
        async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
            self.claims.fetch_add(1, Ordering::SeqCst);
            self.inner.claim_paced(params).await
        }
        async fn counts(&self) -> Result<Vec<QueueCounts>> {
            Ok(Vec::new())
        }
    }

    fn job() -> NewJob {
        NewJob::new("kind", serde_json::json!({}))
    }

    #[tokio::test]
    async fn one_hook_bends_both_claims_and_the_rest_reaches_the_inner_storage() {
        let storage = Hooked::new(Bent::default());
        let ids = storage.enqueue(EnqueueParams::new(vec![job(), job()])).await.unwrap().ids;
        assert_eq!(storage.get(ids[0]).await.unwrap().map(|record| record.id), Some(ids[0]), "reaches memory");
        assert_eq!(storage.claim(ClaimParams::new(["default"], 1)).await.unwrap().len(), 1);
        assert_eq!(storage.claim_paced(ClaimParams::new(["default"], 1)).await.unwrap().jobs.len(), 1);
        assert_eq!(storage.claims.load(Ordering::SeqCst), 2, "both claims went through the hook");
        assert!(storage.counts().await.unwrap().is_empty(), "the bent call");
        assert_eq!(storage.inner.counts().await.unwrap().len(), 1);
        assert_eq!(storage.backend_name(), "memory");
    }
}
