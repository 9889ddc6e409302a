//! Runs the worker's periodic jobs while it leads: a pass of the scheduler when it
//! begins to lead (which enqueues ticks missed while no leader ran) and at each tick.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    PeriodicScheduler, Storage,
    worker::{backoff::StorageBackoff, cluster::Leader, storage_errors},
};

/// The longest sleep between passes, so that a wall clock moved forward is noticed.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

pub(crate) struct PeriodicRunner {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) leader: Arc<Leader>,
    pub(crate) scheduler: PeriodicScheduler,
}

impl PeriodicRunner {
    pub(crate) async fn run(self, stop: CancellationToken) {
        if self.scheduler.is_empty() {
            return;
        }
        let mut began = self.leader.subscribe();
        let mut backoff = StorageBackoff::default();
        loop {
            began.borrow_and_update();
            if !self.leader.is_leading() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = began.changed() => continue,
                }
            }
            let leader = Arc::clone(&self.leader);
            // Ticks are judged at this instant; the next wake is the first tick after it,
            // so a tick that comes while the pass runs is not slept past.
            let clock = Utc::now();
            let passed = self.scheduler.run_pass(self.storage.as_ref(), clock, None, || leader.is_leading()).await;
            let next_tick = Instant::now() + self.until_next_tick_after(clock);
            let wake = match passed {
                Ok(_) => {
                    backoff.reset();
                    next_tick
                }
                Err(error) => {
                    // One schedule's failure does not hold the others' ticks back.
                    storage_errors::count("periodic");
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in = ?delay, "enqueueing periodic jobs failed; retrying");
                    next_tick.min(Instant::now() + delay)
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(wake) => {}
                _ = began.changed() => {}
            }
        }
    }

    /// How long from now until the first tick of any schedule after `clock` (zero if
    /// it has already come), at most [`LONGEST_WAIT`].
    fn until_next_tick_after(&self, clock: chrono::DateTime<Utc>) -> Duration {
        self.scheduler
            .next_tick_after(clock)
            .map_or(LONGEST_WAIT, |tick| (tick - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(LONGEST_WAIT))
    }
}
