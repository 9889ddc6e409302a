//! The automatic prefetch: how many jobs the shared slots claim ahead when
//! [`WorkerBuilder::prefetch`](crate::WorkerBuilder::prefetch) is not set.
//!
//! The rule: while its claims come back full (the queues have a backlog), the worker
//! keeps claimed, beyond its running slots, as many jobs as those slots finish in two
//! claim round trips, `floor(2 × concurrency × round trip / handler time)`, at most
//! [`AUTO_PREFETCH_PER_SLOT`] per slot and [`AUTO_PREFETCH_MAX`] in all. Both times are running averages of what this worker saw (each
//! new sample weighs a quarter); until a handler has finished, and after a claim that
//! came back short, it claims no job ahead. So short jobs are claimed in large batches, and a prefetched
//! job waits about two round trips for its slot; jobs that run much longer than a
//! round trip are not claimed ahead at all.
//!
//! An estimate can be wrong: long jobs queued behind short ones are claimed ahead as if
//! they were short. So a job claimed ahead that has not started within
//! [`AUTO_PREFETCH_WAIT`] is handed back (its attempt not spent) for any worker to take,
//! and the averages start over: nothing is claimed ahead until a handler has finished
//! again.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// The most jobs the automatic prefetch claims ahead of the running slots, in all...
pub(crate) const AUTO_PREFETCH_MAX: usize = 256;

/// ...and per running slot: the handler time the rule counts leaves out the worker's
/// own work per job, which bounds how fast a few slots go through short jobs.
pub(crate) const AUTO_PREFETCH_PER_SLOT: usize = 8;

/// How long a job claimed ahead by the automatic prefetch waits for a slot before it is
/// handed back.
pub(crate) const AUTO_PREFETCH_WAIT: Duration = Duration::from_secs(1);

/// How much a new sample weighs in a running average: one part in this many.
const SAMPLE_WEIGHT: u32 = 4;

/// Handler run times of one group of slots: added by its executor as attempts end,
/// taken by its claimer after each claim; and whether a job claimed ahead waited too
/// long since the claimer last asked.
#[derive(Debug, Default)]
pub(crate) struct HandlerTimes {
    tally: Mutex<Tally>,
    waited_too_long: AtomicBool,
}

#[derive(Debug, Default)]
struct Tally {
    total: Duration,
    attempts: u32,
}

impl HandlerTimes {
    /// Adds one attempt whose handler (with its middleware) ran for `took`.
    pub(crate) fn record(&self, took: Duration) {
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.total = tally.total.saturating_add(took);
        tally.attempts = tally.attempts.saturating_add(1);
    }

    /// Notes that a job claimed ahead was handed back for waiting too long.
    pub(crate) fn waited_too_long(&self) {
        self.waited_too_long.store(true, Ordering::Relaxed);
    }

    /// The mean run time of the attempts added since the previous call, if any.
    fn take_mean(&self) -> Option<Duration> {
        let tally = std::mem::take(&mut *self.tally.lock().unwrap_or_else(PoisonError::into_inner));
        (tally.attempts > 0).then(|| tally.total / tally.attempts)
    }
}

/// A claimer's running averages of its claim round trip and its handlers' run time,
/// and whether its last claim came back full.
#[derive(Debug, Default)]
pub(crate) struct ClaimAhead {
    round_trip: Option<Duration>,
    handler: Option<Duration>,
    backlog: bool,
}

impl ClaimAhead {
    /// Takes in a claim that took `round_trip` and came back `full` (with every job it
    /// asked for), and the handlers that ended since the previous claim.
    pub(crate) fn observe(&mut self, round_trip: Duration, full: bool, handlers: &HandlerTimes) {
        self.backlog = full;
        self.round_trip = Some(blend(self.round_trip, round_trip));
        if let Some(mean) = handlers.take_mean() {
            self.handler = Some(blend(self.handler, mean));
        }
    }

    /// Jobs to claim ahead of `concurrency` running slots now (see the module docs). If
    /// a job claimed ahead waited too long since the last call, the handler average
    /// starts over first (so this is 0 until a handler has finished again).
    pub(crate) fn prefetch(&mut self, concurrency: usize, handlers: &HandlerTimes) -> usize {
        if handlers.waited_too_long.swap(false, Ordering::Relaxed) {
            self.handler = None;
            // Attempts that ended before the hand-back belong to the old average.
            handlers.take_mean();
        }
        let (true, Some(round_trip), Some(handler)) = (self.backlog, self.round_trip, self.handler) else {
            return 0;
        };
        // A handler that took no measurable time is one nanosecond long.
        let handler = handler.as_nanos().max(1);
        let finished_in_two_round_trips = 2 * concurrency as u128 * round_trip.as_nanos() / handler;
        let most = concurrency.saturating_mul(AUTO_PREFETCH_PER_SLOT).min(AUTO_PREFETCH_MAX);
        usize::try_from(finished_in_two_round_trips).map_or(most, |jobs| jobs.min(most))
    }
}

/// `average` moved a [`SAMPLE_WEIGHT`]th of the way to `sample` (the sample alone when
/// there is no average yet).
fn blend(average: Option<Duration>, sample: Duration) -> Duration {
    match average {
        None => sample,
        Some(average) if sample >= average => average + (sample - average) / SAMPLE_WEIGHT,
        Some(average) => average - (average - sample) / SAMPLE_WEIGHT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ahead(round_trip_us: u64, handler_us: u64) -> ClaimAhead {
        let handlers = HandlerTimes::default();
        handlers.record(Duration::from_micros(handler_us));
        let mut ahead = ClaimAhead::default();
        ahead.observe(Duration::from_micros(round_trip_us), true, &handlers);
        ahead
    }

    /// [`ClaimAhead::prefetch`] with no hand-back since the last call.
    fn prefetch(ahead: &mut ClaimAhead, concurrency: usize) -> usize {
        ahead.prefetch(concurrency, &HandlerTimes::default())
    }

    #[test]
    fn nothing_is_claimed_ahead_before_a_handler_has_finished() {
        let mut ahead = ClaimAhead::default();
        ahead.observe(Duration::from_millis(1), true, &HandlerTimes::default());
        assert_eq!(prefetch(&mut ahead, 32), 0);
    }

    #[test]
    fn the_slots_claim_what_they_finish_in_two_round_trips() {
        // 4 slots, 1 ms claims, 500 µs jobs: 8 jobs per round trip.
        assert_eq!(prefetch(&mut ahead(1_000, 500), 4), 16);
        // Jobs as long as a round trip: two per slot.
        assert_eq!(prefetch(&mut ahead(1_000, 1_000), 4), 8);
    }

    #[test]
    fn long_jobs_are_not_claimed_ahead() {
        // 100 ms jobs and 2 ms claims: in two round trips 10 slots finish 0.4 jobs
        // (none is claimed ahead), 32 slots 1.28 (one is).
        assert_eq!(prefetch(&mut ahead(2_000, 100_000), 10), 0);
        assert_eq!(prefetch(&mut ahead(2_000, 100_000), 32), 1);
    }

    #[test]
    fn nothing_is_claimed_ahead_after_a_claim_that_came_back_short() {
        let mut ahead = ahead(1_000, 500);
        ahead.observe(Duration::from_micros(1_000), false, &HandlerTimes::default());
        assert_eq!(prefetch(&mut ahead, 4), 0, "no backlog");
        ahead.observe(Duration::from_micros(1_000), true, &HandlerTimes::default());
        assert_eq!(prefetch(&mut ahead, 4), 16);
    }

    #[test]
    fn short_jobs_are_claimed_ahead_up_to_the_bound() {
        assert_eq!(prefetch(&mut ahead(1_000, 0), 1), AUTO_PREFETCH_PER_SLOT);
        assert_eq!(prefetch(&mut ahead(1_000, 0), 31), 31 * AUTO_PREFETCH_PER_SLOT);
        assert_eq!(prefetch(&mut ahead(50_000, 1), 32), AUTO_PREFETCH_MAX);
        assert_eq!(prefetch(&mut ahead(50_000, 1), usize::MAX), AUTO_PREFETCH_MAX);
    }

    #[test]
    fn each_new_sample_moves_the_averages_a_quarter_of_the_way() {
        let handlers = HandlerTimes::default();
        let mut ahead = ahead(1_000, 100);
        handlers.record(Duration::from_micros(300));
        handlers.record(Duration::from_micros(500));
        ahead.observe(Duration::from_micros(2_000), true, &handlers);
        assert_eq!(ahead.round_trip, Some(Duration::from_micros(1_250)));
        // The mean of the two new attempts (400 µs) weighs a quarter.
        assert_eq!(ahead.handler, Some(Duration::from_micros(175)));
        // A claim with no handler ended since keeps the handler average.
        ahead.observe(Duration::from_micros(250), true, &handlers);
        assert_eq!(ahead.handler, Some(Duration::from_micros(175)));
        assert_eq!(ahead.round_trip, Some(Duration::from_micros(1_000)));
    }

    #[test]
    fn a_job_that_waited_too_long_starts_the_handler_average_over() {
        let handlers = HandlerTimes::default();
        let mut ahead = ahead(1_000, 100);
        handlers.record(Duration::from_micros(100));
        handlers.waited_too_long();
        assert_eq!(ahead.prefetch(4, &handlers), 0, "nothing is claimed ahead until a handler finishes");
        ahead.observe(Duration::from_micros(1_000), true, &handlers);
        assert_eq!(ahead.prefetch(4, &handlers), 0, "an attempt that ended before the hand-back does not count");
        handlers.record(Duration::from_micros(500));
        ahead.observe(Duration::from_micros(1_000), true, &handlers);
        assert_eq!(ahead.handler, Some(Duration::from_micros(500)), "the new sample alone");
        assert_eq!(ahead.prefetch(4, &handlers), 16);
    }
}
