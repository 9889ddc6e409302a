//! The storage handle a [`TestJobs`](super::TestJobs) gives the application: the real
//! storage, on the test clock, running jobs at enqueue in inline mode.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Shared,
    drain::{self, Queues},
};
use crate::{
    Admin, ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, JobFilter, JobId, JobRecord,
    Leadership, LeadershipParams, ListParams, PacedClaim, PeriodicRecord, PeriodicUpdate, PruneParams, QueueCounts,
    ReportOutcome, ReportParams, RescueOutcome, Result, Storage, ThroughputSample, Timestamp, Wakeups, WorkerBeat,
    WorkerRecord,
};

/// Forwards every call to the storage under test, filling in each `now` the caller
/// left `None` with the test clock's time.
pub(super) struct ClockedStorage {
    pub(super) shared: Arc<Shared>,
}

impl ClockedStorage {
    fn inner(&self) -> &dyn Storage {
        self.shared.storage.as_ref()
    }

    fn now_or_test_clock(&self, now: Option<Timestamp>) -> Option<Timestamp> {
        Some(now.unwrap_or_else(|| self.shared.clock.now()))
    }
}

#[async_trait]
impl Storage for ClockedStorage {
    fn backend_name(&self) -> &'static str {
        self.inner().backend_name()
    }

    /// Stores the jobs; in inline mode, then runs every available job before returning
    /// (see [`TestJobs::inline`](super::TestJobs::inline)), unless a drain is already
    /// running them: jobs enqueued by a job being run are left to that run.
    async fn enqueue(&self, mut params: EnqueueParams) -> Result<EnqueueOutcome> {
        params.now = self.now_or_test_clock(params.now);
        let outcome = self.inner().enqueue(params).await?;
        if self.shared.inline && !drain::is_running() {
            drain::run(&self.shared, Queues::All, drain::Promote::No).await?;
        }
        Ok(outcome)
    }

    async fn claim(&self, mut params: ClaimParams) -> Result<Vec<JobRecord>> {
        params.now = self.now_or_test_clock(params.now);
        self.inner().claim(params).await
    }

    async fn claim_paced(&self, mut params: ClaimParams) -> Result<PacedClaim> {
        params.now = self.now_or_test_clock(params.now);
        self.inner().claim_paced(params).await
    }

    async fn report(&self, mut params: ReportParams) -> Result<ReportOutcome> {
        params.now = self.now_or_test_clock(params.now);
        self.inner().report(params).await
    }

    async fn heartbeat(&self, mut params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        params.now = self.now_or_test_clock(params.now);
        self.inner().heartbeat(params).await
    }

    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
        self.inner().promote_due(self.now_or_test_clock(now)).await
    }

    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        self.inner().rescue_expired(self.now_or_test_clock(now)).await
    }

    async fn prune(&self, mut params: PruneParams) -> Result<u64> {
        params.now = self.now_or_test_clock(params.now);
        self.inner().prune(params).await
    }

    async fn subscribe(&self) -> Result<Wakeups> {
        self.inner().subscribe().await
    }

    async fn beat_worker(&self, mut beat: WorkerBeat) -> Result<()> {
        beat.now = self.now_or_test_clock(beat.now);
        self.inner().beat_worker(beat).await
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        self.inner().remove_worker(id).await
    }

    async fn acquire_leadership(&self, mut params: LeadershipParams) -> Result<Option<Leadership>> {
        params.now = self.now_or_test_clock(params.now);
        self.inner().acquire_leadership(params).await
    }

    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()> {
        self.inner().release_leadership(worker_id, term).await
    }

    async fn save_periodic(&self, mut update: PeriodicUpdate) -> Result<()> {
        update.now = self.now_or_test_clock(update.now);
        self.inner().save_periodic(update).await
    }

    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        self.inner().record_throughput(samples, self.now_or_test_clock(now)).await
    }

    async fn migrate(&self) -> Result<()> {
        self.inner().migrate().await
    }

    async fn check_ready(&self) -> Result<()> {
        self.inner().check_ready().await
    }
}

#[async_trait]
impl Admin for ClockedStorage {
    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.inner().cancel(id, self.now_or_test_clock(now)).await
    }

    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        self.inner().retry(id, self.now_or_test_clock(now)).await
    }

    async fn delete(&self, id: JobId) -> Result<()> {
        self.inner().delete(id).await
    }

    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        self.inner().throughput(since).await
    }

    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.inner().retry_jobs(filter, self.now_or_test_clock(now)).await
    }

    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.inner().cancel_jobs(filter, self.now_or_test_clock(now)).await
    }

    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        self.inner().delete_jobs(filter).await
    }

    async fn pause_queue(&self, queue: &str) -> Result<()> {
        self.inner().pause_queue(queue).await
    }

    async fn resume_queue(&self, queue: &str) -> Result<()> {
        self.inner().resume_queue(queue).await
    }

    async fn set_queue_limits(&self, queue: &str, limits: crate::QueueLimits) -> Result<()> {
        self.inner().set_queue_limits(queue, limits).await
    }

    async fn queue_limits(&self) -> Result<Vec<crate::QueueLimitsRecord>> {
        self.inner().queue_limits().await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.inner().get(id).await
    }

    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        self.inner().list(params).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        self.inner().counts().await
    }

    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        self.inner().list_workers(self.now_or_test_clock(now)).await
    }

    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        self.inner().leader(self.now_or_test_clock(now)).await
    }

    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
        self.inner().list_periodic().await
    }

    async fn delete_periodic(&self, name: &str) -> Result<bool> {
        self.inner().delete_periodic(name).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, PoisonError};

    use super::*;
    use crate::{Claim, LeaseToken, WakeupSender, testing::TestJobs};

    /// A storage that records each call and the `now` it was given.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<(&'static str, Option<Timestamp>)>>,
    }

    impl Recorder {
        fn record(&self, call: &'static str, now: Option<Timestamp>) {
            self.calls.lock().unwrap_or_else(PoisonError::into_inner).push((call, now));
        }
    }

    #[async_trait]
    impl Storage for Recorder {
        fn backend_name(&self) -> &'static str {
            "recorder"
        }
        async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
            self.record("enqueue", params.now);
            Ok(EnqueueOutcome::default())
        }
        async fn claim(&self, params: ClaimParams) -> Result<Vec<JobRecord>> {
            self.record("claim", params.now);
            Ok(Vec::new())
        }
        async fn report(&self, params: ReportParams) -> Result<ReportOutcome> {
            self.record("report", params.now);
            Ok(ReportOutcome::default())
        }
        async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
            self.record("heartbeat", params.now);
            Ok(HeartbeatOutcome::default())
        }
        async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
            self.record("promote_due", now);
            Ok(0)
        }
        async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
            self.record("rescue_expired", now);
            Ok(RescueOutcome::default())
        }
        async fn prune(&self, params: PruneParams) -> Result<u64> {
            self.record("prune", params.now);
            Ok(0)
        }
        async fn subscribe(&self) -> Result<Wakeups> {
            self.record("subscribe", None);
            Ok(WakeupSender::new().subscribe())
        }
        async fn beat_worker(&self, beat: WorkerBeat) -> Result<()> {
            self.record("beat_worker", beat.now);
            Ok(())
        }
        async fn remove_worker(&self, _id: &str) -> Result<()> {
            self.record("remove_worker", None);
            Ok(())
        }
        async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
            self.record("acquire_leadership", params.now);
            Ok(None)
        }
        async fn release_leadership(&self, _worker_id: &str, _term: u64) -> Result<()> {
            self.record("release_leadership", None);
            Ok(())
        }
        async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()> {
            self.record("save_periodic", update.now);
            Ok(())
        }
        async fn record_throughput(&self, _samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
            self.record("record_throughput", now);
            Ok(())
        }
        async fn migrate(&self) -> Result<()> {
            self.record("migrate", None);
            Ok(())
        }
        async fn check_ready(&self) -> Result<()> {
            self.record("check_ready", None);
            Ok(())
        }
    }

    #[async_trait]
    impl Admin for Recorder {
        async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
            self.record("cancel", now);
            Ok(JobRecord::new(id, "kind", serde_json::json!({})))
        }

        async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
            self.record("retry", now);
            Ok(JobRecord::new(id, "kind", serde_json::json!({})))
        }

        async fn delete(&self, _id: JobId) -> Result<()> {
            self.record("delete", None);
            Ok(())
        }

        async fn pause_queue(&self, _queue: &str) -> Result<()> {
            self.record("pause_queue", None);
            Ok(())
        }

        async fn resume_queue(&self, _queue: &str) -> Result<()> {
            self.record("resume_queue", None);
            Ok(())
        }

        async fn set_queue_limits(&self, _queue: &str, _limits: crate::QueueLimits) -> Result<()> {
            self.record("set_queue_limits", None);
            Ok(())
        }

        async fn queue_limits(&self) -> Result<Vec<crate::QueueLimitsRecord>> {
            self.record("queue_limits", None);
            Ok(Vec::new())
        }

        async fn get(&self, _id: JobId) -> Result<Option<JobRecord>> {
            self.record("get", None);
            Ok(None)
        }

        async fn list(&self, _params: ListParams) -> Result<Vec<JobRecord>> {
            self.record("list", None);
            Ok(Vec::new())
        }

        async fn counts(&self) -> Result<Vec<QueueCounts>> {
            self.record("counts", None);
            Ok(Vec::new())
        }

        async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
            self.record("list_workers", now);
            Ok(Vec::new())
        }

        async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
            self.record("leader", now);
            Ok(None)
        }

        async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
            self.record("list_periodic", None);
            Ok(Vec::new())
        }

        async fn delete_periodic(&self, _name: &str) -> Result<bool> {
            self.record("delete_periodic", None);
            Ok(false)
        }
        async fn throughput(&self, _since: Timestamp) -> Result<Vec<ThroughputSample>> {
            self.record("throughput", None);
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn every_call_is_forwarded_with_the_test_clock_unless_it_names_its_own_time() {
        let recorder = Arc::new(Recorder::default());
        let jobs = TestJobs::new(Arc::clone(&recorder));
        jobs.advance(std::time::Duration::from_secs(3600));
        let test_now = Some(jobs.now());
        let storage = jobs.storage();
        let id = JobId::new();
        let claim = Claim { id, token: LeaseToken::new() };
        assert_eq!(storage.backend_name(), "recorder");
        storage.enqueue(EnqueueParams::new(Vec::new())).await.ok();
        storage.claim(ClaimParams::new(["default"], 1)).await.ok();
        storage.report(ReportParams::new(Vec::new())).await.ok();
        storage.heartbeat(HeartbeatParams::new(vec![claim], std::time::Duration::from_secs(30))).await.ok();
        storage.promote_due(None).await.ok();
        storage.rescue_expired(None).await.ok();
        storage.prune(PruneParams::new(crate::Retention::default())).await.ok();
        storage.cancel(id, None).await.ok();
        storage.retry(id, None).await.ok();
        storage.pause_queue("default").await.ok();
        storage.resume_queue("default").await.ok();
        storage.get(id).await.ok();
        storage.list(ListParams::new()).await.ok();
        storage.counts().await.ok();
        storage.subscribe().await.ok();
        storage.migrate().await.ok();
        storage.check_ready().await.ok();
        let started = chrono::Utc::now();
        storage.beat_worker(crate::WorkerBeat::new("w", started, std::time::Duration::from_secs(30))).await.ok();
        storage.list_workers(None).await.ok();
        storage.acquire_leadership(LeadershipParams::new("w", std::time::Duration::from_secs(30))).await.ok();
        storage.leader(None).await.ok();
        storage.remove_worker("w").await.ok();
        storage.release_leadership("w", 1).await.ok();
        storage.save_periodic(crate::PeriodicUpdate::new("nightly", "every 1s")).await.ok();
        storage.list_periodic().await.ok();
        storage.delete_periodic("nightly").await.ok();
        storage.record_throughput(Vec::new(), None).await.ok();
        storage.throughput(chrono::Utc::now()).await.ok();
        let own_time = chrono::Utc::now() - chrono::Duration::days(1);
        storage.promote_due(Some(own_time)).await.ok();

        let calls = recorder.calls.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let timed =
            ["enqueue", "claim", "report", "heartbeat", "promote_due", "rescue_expired", "prune", "cancel", "retry"];
        let untimed = ["pause_queue", "resume_queue", "get", "list", "counts", "subscribe", "migrate", "check_ready"];
        let expected: Vec<(&str, Option<Timestamp>)> = timed
            .iter()
            .map(|call| (*call, test_now))
            .chain(untimed.iter().map(|call| (*call, None)))
            .chain(["beat_worker", "list_workers", "acquire_leadership", "leader"].iter().map(|call| (*call, test_now)))
            .chain([("remove_worker", None), ("release_leadership", None)])
            .chain([("save_periodic", test_now), ("list_periodic", None), ("delete_periodic", None)])
            .chain([("record_throughput", test_now), ("throughput", None)])
            .chain([("promote_due", Some(own_time))])
            .collect();
        assert_eq!(calls, expected);
    }
}
