//! `Debug` for [`Worker`]: the backend and the settings an operator looks for, not the
//! storage's internals.

use std::fmt;

use super::{Worker, WorkerConfig};

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Worker");
        debug.field("backend", &self.storage.backend_name());
        settings(&mut debug, &self.config);
        debug.field("states", &self.states).finish_non_exhaustive()
    }
}

/// Adds the settings of `config` that tell workers apart, shared by the `Debug` of
/// [`Worker`] and of [`super::WorkerBuilder`].
pub(super) fn settings(debug: &mut fmt::DebugStruct<'_, '_>, config: &WorkerConfig) {
    debug
        .field("worker_id", &config.worker_id)
        .field("queues", &config.queues)
        .field("concurrency", &config.concurrency)
        .field("prefetch", &config.prefetch)
        .field("queue_concurrency", &config.queue_concurrency)
        .field("lease", &config.lease)
        .field("poll_interval", &config.poll_interval)
        .field("queue_gauge_interval", &config.queue_gauge_interval)
        .field("throughput_interval", &config.throughput_interval)
        .field("shutdown_grace", &config.shutdown_grace)
        .field("leader_lease", &config.leader_lease)
        .field("leader_eligible", &config.leader_eligible)
        .field("periodic", &config.periodic.iter().map(crate::Periodic::name).collect::<Vec<_>>());
}
