//! [`Storage`] for [`MemoryStorage`]: lock the store, read the clock, call the
//! lifecycle rule, then send the wake-ups once the lock is released.

use std::sync::{MutexGuard, PoisonError};

use async_trait::async_trait;
use haul_core::{
    Admin, AdminAction, ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, JobFilter,
    JobId, JobRecord, JobState, Leadership, LeadershipParams, ListParams, PacedClaim, PeriodicRecord, PeriodicUpdate,
    PruneParams, QueueCounts, QueueLimits, QueueLimitsRecord, ReportOutcome, ReportParams, RescueOutcome, Result,
    Storage, ThroughputSample, Timestamp, Wakeups, WorkerBeat, WorkerRecord, validate_queue_name,
};

use crate::{MemoryStorage, lifecycle::ClaimRequest, store::Store, time::now_or_clock, wake::Wake};

impl MemoryStorage {
    /// The locked store. A poisoned lock is taken over: nothing panics while holding it
    /// outside of debug assertions, and a job queue must keep serving.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` on the locked store, then sends the wake-ups it gathered.
    fn with_wake<R>(&self, call: impl FnOnce(&mut Store, &mut Wake) -> R) -> R {
        let mut wake = Wake::default();
        let result = call(&mut self.store(), &mut wake);
        wake.send(&self.shared.wakeups);
        result
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        let now = now_or_clock(params.now);
        self.with_wake(|store, wake| store.enqueue(params.jobs, now, wake))
    }

    async fn claim(&self, params: ClaimParams) -> Result<Vec<JobRecord>> {
        Ok(self.claim_paced(params).await?.jobs)
    }

    async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
        for queue in &params.queues {
            validate_queue_name(queue)?;
        }
        let now = now_or_clock(params.now);
        let request = ClaimRequest {
            queues: &params.queues,
            limit: params.limit,
            lease: params.lease,
            worker_id: &params.worker_id,
        };
        Ok(self.store().claim(&request, now))
    }

    async fn report(&self, params: ReportParams) -> Result<ReportOutcome> {
        let now = now_or_clock(params.now);
        self.with_wake(|store, wake| store.report(params.reports, params.delete_completed, now, wake))
    }

    async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        let now = now_or_clock(params.now);
        Ok(self.store().heartbeat(&params.claims, params.lease, now))
    }

    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
        let now = now_or_clock(now);
        Ok(self.with_wake(|store, wake| store.promote_due(now, wake)))
    }

    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        let now = now_or_clock(now);
        Ok(self.with_wake(|store, wake| store.rescue_expired(now, wake)))
    }

    async fn prune(&self, params: PruneParams) -> Result<u64> {
        let now = now_or_clock(params.now);
        Ok(self.store().prune(&params.retention, params.limit, now))
    }

    async fn subscribe(&self) -> Result<Wakeups> {
        Ok(self.shared.wakeups.subscribe())
    }

    async fn beat_worker(&self, beat: WorkerBeat) -> Result<()> {
        let now = now_or_clock(beat.now);
        self.store().cluster.beat(beat, now);
        Ok(())
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        self.store().cluster.remove(id);
        Ok(())
    }

    async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
        let now = now_or_clock(params.now);
        Ok(self.store().cluster.acquire(&params.worker_id, params.ttl, now))
    }

    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()> {
        self.store().cluster.release(worker_id, term);
        Ok(())
    }

    async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()> {
        let now = now_or_clock(update.now);
        self.store().periodic.save(&update, now);
        Ok(())
    }

    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        samples.iter().try_for_each(ThroughputSample::validate)?;
        self.store().throughput.record(samples, now_or_clock(now));
        Ok(())
    }
}

#[async_trait]
impl Admin for MemoryStorage {
    /// A running job's holder is signalled at once (see `Wakeups::next_cancel`).
    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        let now = now_or_clock(now);
        let record = self.store().cancel(id, now)?;
        if record.state == JobState::Running {
            self.shared.wakeups.notify_cancel(id);
        }
        Ok(record)
    }

    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        let now = now_or_clock(now);
        self.with_wake(|store, wake| store.retry(id, now, wake))
    }

    async fn pause_queue(&self, queue: &str) -> Result<()> {
        validate_queue_name(queue)?;
        self.store().set_paused(queue, true);
        Ok(())
    }

    async fn resume_queue(&self, queue: &str) -> Result<()> {
        validate_queue_name(queue)?;
        self.store().set_paused(queue, false);
        self.shared.wakeups.notify(queue);
        Ok(())
    }

    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        validate_queue_name(queue)?;
        limits.validate()?;
        self.store().set_limits(queue, limits);
        // A raised or removed limit may let waiting jobs run.
        self.shared.wakeups.notify(queue);
        Ok(())
    }

    async fn queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        let store = self.store();
        Ok(store.limits.iter().map(|(queue, limits)| QueueLimitsRecord::new(queue.clone(), *limits)).collect())
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        Ok(self.store().get(id).cloned())
    }

    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        check_filter(&params.filter)?;
        Ok(self.store().list(&params))
    }

    async fn delete(&self, id: JobId) -> Result<()> {
        self.store().delete_idle(id)
    }

    /// The bulk calls pick and change their jobs under one lock: each job changed still
    /// matches the filter when it is changed.
    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        check_filter(&filter)?;
        let now = now_or_clock(now);
        self.with_wake(|store, wake| {
            let ids = store.matching(&filter, |state| AdminAction::Retry.accepts(state));
            for &id in &ids {
                store.retry(id, now, wake)?;
            }
            Ok(count(&ids))
        })
    }

    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        check_filter(&filter)?;
        let now = now_or_clock(now);
        let mut store = self.store();
        let ids = store.matching(&filter, |state| AdminAction::Cancel.accepts(state));
        for &id in &ids {
            if store.cancel(id, now)?.state == JobState::Running {
                self.shared.wakeups.notify_cancel(id);
            }
        }
        Ok(count(&ids))
    }

    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        check_filter(&filter)?;
        let mut store = self.store();
        let ids = store.matching(&filter, |state| AdminAction::Delete.accepts(state));
        for &id in &ids {
            store.delete_idle(id)?;
        }
        Ok(count(&ids))
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        Ok(self.store().counts())
    }

    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        let now = now_or_clock(now);
        Ok(self.store().cluster.list(now))
    }

    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        let now = now_or_clock(now);
        Ok(self.store().cluster.leader(now))
    }

    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
        Ok(self.store().periodic.list())
    }

    async fn delete_periodic(&self, name: &str) -> Result<bool> {
        Ok(self.store().periodic.delete(name))
    }

    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        Ok(self.store().throughput.since(since))
    }
}

/// How many jobs `ids` holds, as the bulk calls return it.
fn count(ids: &[JobId]) -> u64 {
    u64::try_from(ids.len()).unwrap_or(u64::MAX)
}

/// Refuses a filter naming an invalid queue, as every call naming a queue does.
fn check_filter(filter: &JobFilter) -> Result<()> {
    filter.queue.as_deref().map_or(Ok(()), validate_queue_name)
}
