//! The claims a worker holds: claimed and not yet reported to storage.
//!
//! Everything is keyed by claim (job id + lease token), never by job id alone: after a
//! lost lease a worker may claim the same job again while the old claim's handler is
//! still stopping or its outcome is still queued, and the two must never be mixed up.
//!
//! It also counts the outcomes queued and not yet written, so that the claim loops can
//! wait while too many are ([`HeldClaims::wait_for_unwritten_at_most`]): a storage that
//! writes outcomes slower than the handlers produce them then slows the claims, instead
//! of the worker holding ever more finished jobs whose leases its heartbeats must extend.

use std::{
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use foldhash::HashMap;
use tokio::sync::Notify;

use crate::{Claim, JobContext, StopReason};

/// One held claim.
struct Held {
    /// The context of the claim's handler, until its outcome is queued for the flusher
    /// (`None` after: the handler has finished, so nothing is left to stop, and the
    /// context is freed by the task that ran it rather than by the flusher).
    ctx: Option<JobContext>,
    /// When the lease ends by this worker's clock: counted from just before the claim
    /// (or the last heartbeat that extended it) was sent, so it never ends later than
    /// the storage's own deadline.
    lease_deadline: Instant,
}

impl Held {
    /// The attempt's outcome is queued for the flusher.
    fn reported(&self) -> bool {
        self.ctx.is_none()
    }
}

/// Claims held by this worker, with the context of each one's handler.
///
/// A claim stays held until its outcome is written, so its lease keeps being extended
/// while the outcome waits in the flush queue.
#[derive(Default)]
pub(crate) struct HeldClaims {
    claims: Mutex<HashMap<Claim, Held>>,
    /// Held claims whose outcome is queued (see [`Held::reported`]): counted up under the `claims`
    /// lock as a claim is marked reported (so always before its removal), down once it
    /// has left the map.
    unwritten: AtomicUsize,
    /// Notified whenever `unwritten` goes down.
    written: Notify,
}

impl HeldClaims {
    fn lock(&self) -> MutexGuard<'_, HashMap<Claim, Held>> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, claim: Claim, ctx: JobContext, lease_deadline: Instant) {
        let replaced = self.lock().insert(claim, Held { ctx: Some(ctx), lease_deadline });
        // Only a storage that handed out one claim twice gets here.
        self.forget_written(usize::from(replaced.is_some_and(|held| held.reported())));
    }

    pub(crate) fn remove(&self, claim: Claim) {
        self.remove_all([claim]);
    }

    /// Releases `claims` under one lock (the flusher's written batch).
    pub(crate) fn remove_all(&self, claims: impl IntoIterator<Item = Claim>) {
        let written = {
            let mut held = self.lock();
            claims.into_iter().filter_map(|claim| held.remove(&claim)).filter(Held::reported).count()
        };
        self.forget_written(written);
    }

    /// Counts out `written` claims that left the map with their outcome queued.
    fn forget_written(&self, written: usize) {
        if written > 0 {
            self.unwritten.fetch_sub(written, Ordering::Relaxed);
            self.written.notify_waiters();
        }
    }

    /// Waits until at most `most` held claims have an outcome queued and not yet written.
    pub(crate) async fn wait_for_unwritten_at_most(&self, most: usize) {
        loop {
            // Made before the check, so a removal between the two still wakes it.
            let written = self.written.notified();
            if self.unwritten.load(Ordering::Relaxed) <= most {
                return;
            }
            written.await;
        }
    }

    /// The claims whose lease still needs extending: a job whose completion was
    /// already committed (a job-scoped transaction) holds no lease any more.
    pub(crate) fn claims_to_extend(&self) -> Vec<Claim> {
        self.lock()
            .iter()
            .filter(|(_, held)| !held.ctx.as_ref().is_some_and(JobContext::is_marked_completed))
            .map(|(claim, _)| *claim)
            .collect()
    }

    /// Whether a claim of job `id` is held, its handler has not finished and nothing has
    /// asked it to stop yet.
    pub(crate) fn runs_job(&self, id: crate::JobId) -> bool {
        self.lock()
            .iter()
            .any(|(claim, held)| claim.id == id && held.ctx.as_ref().is_some_and(|ctx| ctx.stop_reason().is_none()))
    }

    /// Records that storage extended `claims` until at least `deadline` (this worker's clock).
    pub(crate) fn extended(&self, claims: &[Claim], deadline: Instant) {
        let mut held = self.lock();
        for claim in claims {
            if let Some(held) = held.get_mut(claim) {
                held.lease_deadline = held.lease_deadline.max(deadline);
            }
        }
    }

    /// Whether `claim` is held and its lease has not ended by `now`.
    pub(crate) fn lease_is_live(&self, claim: Claim, now: Instant) -> bool {
        self.lock().get(&claim).is_some_and(|held| held.lease_deadline > now)
    }

    /// Records that the handler of `claim` finished and its outcome is queued.
    pub(crate) fn mark_reported(&self, claim: Claim) {
        let ended = {
            let mut held = self.lock();
            let ended = held.get_mut(&claim).and_then(|held| held.ctx.take());
            if ended.is_some() {
                self.unwritten.fetch_add(1, Ordering::Relaxed);
            }
            ended
        };
        // Dropped here, outside the lock, by the task that ran the job.
        drop(ended);
    }

    /// Storage says `claim` no longer holds its job. Stops its handler if it is still
    /// running and returns true; a claim whose outcome is already queued (or written)
    /// is left alone, since its outcome's own fencing settles it.
    pub(crate) fn lost(&self, claim: Claim) -> bool {
        match self.lock().get(&claim).and_then(|held| held.ctx.as_ref()) {
            Some(ctx) => {
                ctx.stop(StopReason::LeaseLost);
                true
            }
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Asks the handler of one claim to stop.
    pub(crate) fn stop(&self, claim: Claim, reason: StopReason) {
        if let Some(ctx) = self.lock().get(&claim).and_then(|held| held.ctx.as_ref()) {
            ctx.stop(reason);
        }
    }

    /// Asks every running handler to stop.
    pub(crate) fn stop_all(&self, reason: StopReason) {
        for ctx in self.lock().values().filter_map(|held| held.ctx.as_ref()) {
            ctx.stop(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{JobId, LeaseToken, StateMap};

    fn context(claim: Claim) -> JobContext {
        JobContext::new(claim.id, claim.token, "k", "q", 1, 1, chrono::Utc::now(), Arc::new(StateMap::new()))
    }

    #[test]
    fn two_claims_of_one_job_are_held_apart() {
        let held = HeldClaims::default();
        let id = JobId::new();
        let (old, new) = (Claim { id, token: LeaseToken::new() }, Claim { id, token: LeaseToken::new() });
        let later = Instant::now() + Duration::from_secs(30);
        held.insert(old, context(old), later);
        held.insert(new, context(new), later);
        held.remove(old);
        assert_eq!(held.claims_to_extend(), vec![new], "removing the old claim keeps the new one");
        assert!(held.lease_is_live(new, Instant::now()));
        assert!(!held.lease_is_live(old, Instant::now()));
    }

    #[test]
    fn a_lost_claim_stops_its_handler_only_while_it_runs() {
        let held = HeldClaims::default();
        let running = Claim { id: JobId::new(), token: LeaseToken::new() };
        let reported = Claim { id: JobId::new(), token: LeaseToken::new() };
        let (running_ctx, reported_ctx) = (context(running), context(reported));
        let later = Instant::now() + Duration::from_secs(30);
        held.insert(running, running_ctx.clone(), later);
        held.insert(reported, reported_ctx.clone(), later);
        held.mark_reported(reported);
        assert!(held.lost(running));
        assert!(!held.lost(reported), "a finished handler is not reported as a lost lease");
        assert!(!held.lost(Claim { id: JobId::new(), token: LeaseToken::new() }));
        assert_eq!(running_ctx.stop_reason(), Some(StopReason::LeaseLost));
        assert_eq!(reported_ctx.stop_reason(), None);
    }

    #[test]
    fn a_batch_of_written_claims_is_counted_out_at_once() {
        let held = HeldClaims::default();
        let later = Instant::now() + Duration::from_secs(30);
        let claims: Vec<Claim> = (0..3).map(|_| Claim { id: JobId::new(), token: LeaseToken::new() }).collect();
        for &claim in &claims {
            held.insert(claim, context(claim), later);
        }
        held.mark_reported(claims[0]);
        held.mark_reported(claims[1]);
        held.mark_reported(claims[1]);
        assert_eq!(held.unwritten.load(Ordering::Relaxed), 2, "a claim is counted once, however often it is marked");
        // The reported claims stay held (their leases are still extended) until written.
        assert_eq!(held.claims_to_extend().len(), 3);
        held.remove_all([claims[0], claims[1], claims[2]]);
        assert_eq!(held.unwritten.load(Ordering::Relaxed), 0, "the claim still running was not counted out");
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn a_heartbeat_moves_the_deadline_forward_only() {
        let held = HeldClaims::default();
        let claim = Claim { id: JobId::new(), token: LeaseToken::new() };
        let start = Instant::now();
        held.insert(claim, context(claim), start + Duration::from_secs(10));
        held.extended(&[claim], start + Duration::from_secs(5));
        assert!(held.lease_is_live(claim, start + Duration::from_secs(9)));
        held.extended(&[claim], start + Duration::from_secs(20));
        assert!(held.lease_is_live(claim, start + Duration::from_secs(19)));
        assert!(!held.lease_is_live(claim, start + Duration::from_secs(20)));
    }
}
