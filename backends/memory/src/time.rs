//! Clock arithmetic that saturates instead of panicking on absurd durations.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use haul_core::Timestamp;

/// The caller's clock override, or the process clock.
pub(crate) fn now_or_clock(now: Option<Timestamp>) -> Timestamp {
    now.unwrap_or_else(Utc::now)
}

/// `at + delay`, or the last representable instant when that overflows.
pub(crate) fn after(at: Timestamp, delay: Duration) -> Timestamp {
    TimeDelta::from_std(delay).ok().and_then(|delay| at.checked_add_signed(delay)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at - span`, or the first representable instant when that overflows.
pub(crate) fn before(at: Timestamp, span: Duration) -> Timestamp {
    TimeDelta::from_std(span).ok().and_then(|span| at.checked_sub_signed(span)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The time from `from` until `until`, zero when `until` is not later.
pub(crate) fn between(from: Timestamp, until: Timestamp) -> Duration {
    (until - from).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let now = Utc::now();
        assert_eq!(after(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(before(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(after(now, Duration::from_secs(1)), now + TimeDelta::seconds(1));
    }
}
