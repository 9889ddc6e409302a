//! The jobs a worker holds: claimed and not yet reported to storage.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use crate::{Claim, JobContext, JobId, StopReason};

/// Claims held by this worker, with the context of each running handler.
///
/// A job stays held until its outcome is written, so its lease keeps being extended
/// while the outcome waits in the flush queue.
#[derive(Default)]
pub(crate) struct HeldJobs {
    jobs: Mutex<HashMap<JobId, (Claim, JobContext)>>,
}

impl HeldJobs {
    fn lock(&self) -> MutexGuard<'_, HashMap<JobId, (Claim, JobContext)>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, claim: Claim, ctx: JobContext) {
        self.lock().insert(claim.id, (claim, ctx));
    }

    pub(crate) fn remove(&self, id: JobId) {
        self.lock().remove(&id);
    }

    /// The claims whose lease still needs extending: a job whose completion was
    /// already committed (a job-scoped transaction) holds no lease any more.
    pub(crate) fn claims(&self) -> Vec<Claim> {
        self.lock().values().filter(|(_, ctx)| !ctx.is_marked_completed()).map(|(claim, _)| *claim).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Asks one running handler to stop.
    pub(crate) fn stop(&self, id: JobId, reason: StopReason) {
        if let Some((_, ctx)) = self.lock().get(&id) {
            ctx.stop(reason);
        }
    }

    /// Asks every running handler to stop.
    pub(crate) fn stop_all(&self, reason: StopReason) {
        for (_, ctx) in self.lock().values() {
            ctx.stop(reason);
        }
    }
}
