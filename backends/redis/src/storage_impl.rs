//! [`Storage`] for [`RedisStorage`]: each call is one of the `ops` modules.

use async_trait::async_trait;
use haul_core::{
    Admin, AdminAction, ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, JobFilter,
    JobId, JobRecord, Leadership, LeadershipParams, ListParams, PacedClaim, PeriodicRecord, PeriodicUpdate,
    PruneParams, QueueCounts, QueueLimits, QueueLimitsRecord, ReportOutcome, ReportParams, RescueOutcome, Result,
    Storage, ThroughputSample, Timestamp, Wakeups, WorkerBeat, WorkerRecord,
};

use crate::{BACKEND, RedisStorage};

#[async_trait]
impl Storage for RedisStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        self.enqueue_jobs(params).await
    }

    async fn claim(&self, params: ClaimParams) -> Result<Vec<JobRecord>> {
        Ok(self.claim_jobs(params).await?.jobs)
    }

    /// One run of `claim.lua` (one per queue slot on a cluster): it checks every limit
    /// of each queue atomically with the claim, records the starts of rate-limited
    /// queues and keys, and tells how long a rate limit holds jobs back.
    async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
        self.claim_jobs(params).await
    }

    async fn report(&self, params: ReportParams) -> Result<ReportOutcome> {
        self.report_outcomes(params).await
    }

    async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        self.heartbeat_claims(params).await
    }

    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
        self.promote(now).await
    }

    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        self.rescue(now).await
    }

    async fn prune(&self, params: PruneParams) -> Result<u64> {
        self.prune_finished(params).await
    }

    async fn subscribe(&self) -> Result<Wakeups> {
        self.subscribe_wakeups().await
    }

    /// One script (`beat_worker.lua`) in the prefix's slot: writes the record and its
    /// expiry, and deletes up to 100 records that have ended.
    async fn beat_worker(&self, beat: WorkerBeat) -> Result<()> {
        self.beat(beat).await
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        self.unregister(id).await
    }

    async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
        self.acquire_lead(params).await
    }

    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()> {
        self.release_lead(worker_id, term).await
    }

    /// One script (`save_periodic.lua`) in the prefix's slot: reads the stored last
    /// tick of the record (`haul:{<prefix>}:periodic`, field = name) and writes the
    /// record unless the update is stale, so the compare-and-set is atomic.
    async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()> {
        self.save_periodic_record(update).await
    }

    /// One script (`record_throughput.lua`) in the prefix's slot, after every sample
    /// is checked: adds the samples to `haul:{<prefix>}:throughput` and drops the
    /// minutes older than the retention before `now`, atomically. No samples, no call.
    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        self.record_samples(samples, now).await
    }

    /// Marks the key prefix with this build's layout version (`haul:{<prefix>}:layout`,
    /// set only if absent), then checks it as [`Storage::check_ready`] does. Redis needs
    /// nothing else set up.
    async fn migrate(&self) -> Result<()> {
        self.migrate_layout().await
    }

    /// Accepts a prefix without a layout marker (nothing to set up on Redis) or marked
    /// with this build's version; refuses one marked by another version of haul with
    /// [`haul_core::Error::StorageNotReady`], which names both versions and the ways out.
    async fn check_ready(&self) -> Result<()> {
        self.check_layout().await
    }
}

#[async_trait]
impl Admin for RedisStorage {
    /// `delete.lua` in the job's slot after a lookup of its queue; see the crate docs.
    async fn delete(&self, id: JobId) -> Result<()> {
        self.delete_job(id).await
    }

    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.cancel_job(id, now).await
    }

    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.retry_job(id, now).await
    }

    async fn pause_queue(&self, queue: &str) -> Result<()> {
        self.set_paused(queue, true).await
    }

    async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.set_paused(queue, false).await
    }

    /// One script (`set_limits.lua`) in the queue's slot; on a cluster, then the
    /// index of limited queues in the prefix's slot (see `ops::limits`).
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        self.store_queue_limits(queue, limits).await
    }

    /// The index of limited queues, then each one's limits in one round trip.
    async fn queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        self.stored_queue_limits().await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.get_job(id).await
    }

    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        self.list_jobs(params).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        self.queue_counts().await
    }

    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        self.live_workers(now).await
    }

    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        self.current_leader(now).await
    }

    /// One `HGETALL`, sorted by name in the client.
    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
        self.periodic_records().await
    }

    /// One `HDEL`.
    async fn delete_periodic(&self, name: &str) -> Result<bool> {
        self.delete_periodic_record(name).await
    }

    /// One read-only script (`throughput.lua`): the index's members from the minute
    /// holding `since` on and their counts, ordered by queue then minute in the client.
    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        self.samples_since(since).await
    }

    /// Pages of 500 from `list`, each page's `retry.lua` runs in one round trip.
    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.bulk(filter, AdminAction::Retry, now).await
    }

    /// Pages of 500 from `list`, each page's `cancel.lua` runs in one round trip.
    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.bulk(filter, AdminAction::Cancel, now).await
    }

    /// Pages of 500 from `list`, each page's `delete.lua` runs in one round trip (and
    /// on a cluster one more removes the deleted jobs' index members).
    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        self.bulk(filter, AdminAction::Delete, None).await
    }
}
