//! Extends the leases of held claims and relays cancellations and lost leases.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    HeartbeatParams, StopReason, Storage,
    worker::{held::HeldClaims, storage_errors},
};

pub(crate) struct Heartbeat {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) held: Arc<HeldClaims>,
    pub(crate) lease: Duration,
    pub(crate) interval: Duration,
}

impl Heartbeat {
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let claims = self.held.claims_to_extend();
            if claims.is_empty() {
                continue;
            }
            // Storage's new deadline is at least this late, by this worker's clock.
            let sent_at = Instant::now();
            match self.storage.heartbeat(HeartbeatParams::new(claims, self.lease)).await {
                Ok(outcome) => {
                    self.held.extended(&outcome.extended, sent_at + self.lease);
                    for claim in outcome.cancelled {
                        self.held.stop(claim, StopReason::Cancelled);
                    }
                    for claim in outcome.lost {
                        // A claim whose handler already finished is lost because its
                        // outcome was written meanwhile (or will be rejected): not news.
                        if self.held.lost(claim) {
                            tracing::warn!(id = %claim.id, "lease lost; stopping the handler");
                        }
                    }
                }
                Err(error) => {
                    storage_errors::count("heartbeat");
                    tracing::warn!(%error, "heartbeat failed; retrying at the next beat");
                }
            }
        }
    }
}
