//! The cluster layer: the worker registry (`haul:{<prefix>}:workers` and its expiry
//! index) and the prefix's leadership (`haul:{<prefix>}:leader`), each call one script
//! in the prefix's slot.

use haul_core::{Leadership, LeadershipParams, Result, Timestamp, WorkerBeat, WorkerRecord};

use crate::{
    RedisStorage,
    codec::{clock_arg, duration_micros, reply, worker_fields, worker_from_stored},
    scripts::scripts,
};

impl RedisStorage {
    pub(crate) async fn beat(&self, beat: WorkerBeat) -> Result<()> {
        let keys = &self.inner.keys;
        let mut call = scripts().beat_worker.prepare_invoke();
        call.key(keys.workers())
            .key(keys.workers_expiry())
            .arg(clock_arg(beat.now))
            .arg(&beat.id)
            .arg(duration_micros(beat.ttl))
            .arg(worker_fields(&beat));
        self.run(&call).await?;
        Ok(())
    }

    pub(crate) async fn unregister(&self, id: &str) -> Result<()> {
        let keys = &self.inner.keys;
        let mut call = scripts().remove_worker.prepare_invoke();
        call.key(keys.workers()).key(keys.workers_expiry()).arg(id);
        self.run(&call).await?;
        Ok(())
    }

    pub(crate) async fn live_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        let keys = &self.inner.keys;
        let mut call = scripts().list_workers.prepare_invoke();
        call.key(keys.workers()).key(keys.workers_expiry()).arg(clock_arg(now));
        let mut workers = reply::array(self.run(&call).await?)?
            .into_iter()
            .map(|record| worker_from_stored(&reply::string(record)?))
            .collect::<Result<Vec<_>>>()?;
        workers.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(workers)
    }

    pub(crate) async fn acquire_lead(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
        let mut call = scripts().acquire_leadership.prepare_invoke();
        call.key(self.inner.keys.leader())
            .arg(clock_arg(params.now))
            .arg(&params.worker_id)
            .arg(duration_micros(params.ttl));
        reply::leadership(self.run(&call).await?)
    }

    pub(crate) async fn release_lead(&self, worker_id: &str, term: u64) -> Result<()> {
        let mut call = scripts().release_leadership.prepare_invoke();
        call.key(self.inner.keys.leader()).arg(worker_id).arg(term);
        self.run(&call).await?;
        Ok(())
    }

    pub(crate) async fn current_leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        let mut call = scripts().leader.prepare_invoke();
        call.key(self.inner.keys.leader()).arg(clock_arg(now));
        reply::leadership(self.run(&call).await?)
    }
}
