//! Periodic storage upkeep: promote due jobs, rescue expired leases, prune old jobs.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{PruneParams, Retention, Storage};

pub(crate) struct Maintenance {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) interval: Duration,
    pub(crate) prune_interval: Duration,
    pub(crate) retention: Retention,
}

impl Maintenance {
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_prune = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.tick(&mut next_prune).await;
        }
    }

    async fn tick(&self, next_prune: &mut Instant) {
        match self.storage.promote_due(None).await {
            Ok(0) => {}
            Ok(promoted) => tracing::debug!(promoted, "promoted due jobs"),
            Err(error) => tracing::warn!(%error, "promoting due jobs failed"),
        }
        match self.storage.rescue_expired(None).await {
            Ok(outcome) if outcome.rescued + outcome.discarded + outcome.cancelled > 0 => {
                tracing::warn!(?outcome, "rescued jobs whose lease expired");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "rescuing expired leases failed"),
        }
        if Instant::now() >= *next_prune {
            *next_prune = Instant::now() + self.prune_interval;
            match self.storage.prune(PruneParams::new(self.retention)).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "pruned finished jobs"),
                Err(error) => tracing::warn!(%error, "pruning failed"),
            }
        }
    }
}
