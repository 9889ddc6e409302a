//! The clock of a [`TestJobs`](super::TestJobs): it moves only when the test moves it.

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use chrono::{SubsecRound, Utc};

use crate::{RunAt, Timestamp};

/// Digits of a second kept: whole microseconds, the precision every backend stores, so
/// an instant read back from storage compares equal to the clock that wrote it.
const KEPT_DIGITS: u16 = 6;

/// A settable clock, read by every call a [`TestJobs`](super::TestJobs) makes to storage.
#[derive(Debug)]
pub(super) struct TestClock {
    now: Mutex<Timestamp>,
}

impl TestClock {
    /// A clock set to the real time.
    pub(super) fn starting_now() -> Self {
        Self { now: Mutex::new(Utc::now().trunc_subsecs(KEPT_DIGITS)) }
    }

    /// The clock's time.
    pub(super) fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the clock to `at`.
    pub(super) fn set(&self, at: Timestamp) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at.trunc_subsecs(KEPT_DIGITS);
    }

    /// Moves the clock `by` forward (stopping at the latest representable instant).
    pub(super) fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = RunAt::In(by).resolve(*now).trunc_subsecs(KEPT_DIGITS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_only_when_told_and_keeps_whole_microseconds() {
        let clock = TestClock::starting_now();
        let start = clock.now();
        assert_eq!(start.timestamp_subsec_nanos() % 1_000, 0);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_nanos(1_500));
        assert_eq!(clock.now() - start, chrono::Duration::microseconds(1));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), chrono::DateTime::<Utc>::MAX_UTC.trunc_subsecs(KEPT_DIGITS));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }
}
