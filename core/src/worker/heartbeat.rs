//! Extends the leases of held claims and relays cancellations and lost leases.
//!
//! It beats every `interval`, and at once when storage signals a cancel request for a
//! job this worker runs (see [`crate::wakeup::cancel_signal`]): the heartbeat's reply is
//! what stops the handler, fenced by claim as always, so a signal only makes it come
//! sooner. A signal that never arrives or is dropped (no subscription, a lagging
//! receiver, a signal that came before the job's claim was held) leaves the cancel to
//! the next regular beat.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    HeartbeatParams, StopReason, Storage, Wakeups,
    wakeup::CancelSignal,
    worker::{held::HeldClaims, storage_errors},
};

pub(crate) struct Heartbeat {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) held: Arc<HeldClaims>,
    pub(crate) lease: Duration,
    pub(crate) interval: Duration,
    /// The subscription to cancel signals, made before the worker's first claim (see
    /// [`subscribe_to_cancels`]); `None` if that failed.
    pub(crate) cancels: Option<Wakeups>,
}

/// Subscribes to the storage's signals before anything is claimed, so that no cancel
/// of a job this worker runs can be sent before the heartbeat listens.
pub(crate) async fn subscribe_to_cancels(storage: &dyn Storage) -> Option<Wakeups> {
    match storage.subscribe().await {
        Ok(signals) => Some(signals),
        Err(error) => {
            storage_errors::count("subscribe");
            tracing::warn!(%error, "cannot subscribe to cancel signals; cancels reach handlers at heartbeats");
            None
        }
    }
}

impl Heartbeat {
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let first = self.cancels.take();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let beat_now = Notify::new();
        let mut cancels = std::pin::pin!(self.listen_for_cancels(first, &beat_now));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {}
                () = beat_now.notified() => ticker.reset(),
                () = &mut cancels => {}
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

    /// Never completes: wakes `beat_now` when storage signals a cancel for a job this
    /// worker runs. Signals that arrive before the heartbeat beats make one beat (a
    /// `Notify` holds one permit), so a bulk cancel does not set off a beat per job.
    /// Without a subscription (`first` failed, or one closed) it subscribes again every
    /// heartbeat interval; meanwhile cancels reach handlers at the regular beats.
    async fn listen_for_cancels(&self, first: Option<Wakeups>, beat_now: &Notify) {
        let mut subscription = first;
        loop {
            if let Some(mut signals) = subscription.take() {
                loop {
                    match signals.next_cancel().await {
                        CancelSignal::Job(id) if self.held.runs_job(id) => beat_now.notify_one(),
                        CancelSignal::Job(_) => {}
                        CancelSignal::Closed => break,
                    }
                }
            }
            tokio::time::sleep(self.interval).await;
            subscription = subscribe_to_cancels(self.storage.as_ref()).await;
        }
    }
}
