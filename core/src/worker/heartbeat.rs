//! Extends the leases of held jobs and relays cancellations and lost leases.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{HeartbeatParams, StopReason, Storage, worker::held::HeldJobs};

pub(crate) struct Heartbeat {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) held: Arc<HeldJobs>,
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
            let claims = self.held.claims();
            if claims.is_empty() {
                continue;
            }
            match self.storage.heartbeat(HeartbeatParams::new(claims, self.lease)).await {
                Ok(outcome) => {
                    for id in outcome.cancelled {
                        self.held.stop(id, StopReason::Cancelled);
                    }
                    for id in outcome.lost {
                        tracing::warn!(id = %id, "lease lost; stopping the handler");
                        self.held.stop(id, StopReason::LeaseLost);
                    }
                }
                Err(error) => tracing::warn!(%error, "heartbeat failed; retrying at the next beat"),
            }
        }
    }
}
