//! Periodic storage upkeep on the leader only: promote due jobs, rescue expired leases,
//! prune old jobs.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    PruneParams, Retention, Storage,
    worker::{cluster::Leader, storage_errors},
};

pub(crate) struct Maintenance {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) leader: Arc<Leader>,
    pub(crate) interval: Duration,
    pub(crate) prune_interval: Duration,
    pub(crate) retention: Retention,
}

/// How a pruning pass ended.
enum Pass {
    /// Nothing older than the retention is left, or a batch failed: wait for the next
    /// prune interval.
    Done,
    /// The worker stopped leading (or is stopping) between batches.
    Interrupted,
}

impl Maintenance {
    /// Promotes and rescues every interval, and prunes every prune interval, while this
    /// worker leads; both start at once when it begins to lead.
    pub(crate) async fn run(self, stop: CancellationToken) {
        tokio::join!(self.upkeep(&stop), self.pruning(&stop));
    }

    async fn upkeep(&self, stop: &CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut began = self.leader.subscribe();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
                // The sender lives in `self.leader`: this never fails.
                _ = began.changed() => {}
            }
            self.promote_and_rescue().await;
        }
    }

    async fn promote_and_rescue(&self) {
        if !self.leader.is_leading() {
            return;
        }
        match self.storage.promote_due(None).await {
            Ok(0) => {}
            Ok(promoted) => tracing::debug!(promoted, "promoted due jobs"),
            Err(error) => {
                storage_errors::count("promote_due");
                tracing::warn!(%error, "promoting due jobs failed");
            }
        }
        if !self.leader.is_leading() {
            return;
        }
        match self.storage.rescue_expired(None).await {
            Ok(outcome) if outcome.rescued + outcome.discarded + outcome.cancelled > 0 => {
                tracing::warn!(?outcome, "rescued jobs whose lease expired");
            }
            Ok(_) => {}
            Err(error) => {
                storage_errors::count("rescue_expired");
                tracing::warn!(%error, "rescuing expired leases failed");
            }
        }
    }

    async fn pruning(&self, stop: &CancellationToken) {
        let mut began = self.leader.subscribe();
        let mut due = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(due) => {}
            }
            began.borrow_and_update();
            if !self.leader.is_leading() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = began.changed() => {}
                }
                continue;
            }
            match self.prune_all(stop).await {
                Pass::Done => due = Instant::now() + self.prune_interval,
                // Goes on, as soon as this worker leads again, where it stopped.
                Pass::Interrupted => {}
            }
        }
    }

    /// Deletes finished jobs older than the retention in batches of the
    /// [`PruneParams`] limit, until a batch deletes fewer than that: nothing is left.
    async fn prune_all(&self, stop: &CancellationToken) -> Pass {
        let params = PruneParams::new(self.retention);
        let limit = u64::try_from(params.limit).unwrap_or(u64::MAX);
        let (mut pruned, mut batches) = (0_u64, 0_u32);
        loop {
            if stop.is_cancelled() || !self.leader.is_leading() {
                if pruned > 0 {
                    tracing::debug!(pruned, batches, "pruned finished jobs; interrupted");
                }
                return Pass::Interrupted;
            }
            match self.storage.prune(params.clone()).await {
                Ok(deleted) => {
                    pruned = pruned.saturating_add(deleted);
                    batches = batches.saturating_add(1);
                    if deleted < limit {
                        if pruned > 0 {
                            tracing::debug!(pruned, batches, "pruned finished jobs");
                        }
                        return Pass::Done;
                    }
                }
                Err(error) => {
                    storage_errors::count("prune");
                    tracing::warn!(%error, pruned, "pruning failed; retrying at the next prune interval");
                    return Pass::Done;
                }
            }
            // Lets promote and rescue run between batches even when storage never waits.
            tokio::task::yield_now().await;
        }
    }
}
