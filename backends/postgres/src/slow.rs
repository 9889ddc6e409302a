//! Which statements ran slow: longer than the fastest statement this storage handle has
//! seen (its network round trip and the server's least work), plus a margin.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// How much longer than the fastest statement seen a statement may take before it is
/// slow. A claim or an outcome batch of a few dozen jobs on a healthy table takes well
/// under 1 ms of server time.
const SLOW_MARGIN: Duration = Duration::from_millis(5);
/// The extra time a statement may take per row it returned.
const SLOW_PER_ROW: Duration = Duration::from_micros(20);

/// The fastest statement a storage handle has seen, the baseline of [`SlowStatements::observe`].
#[derive(Debug)]
pub(crate) struct SlowStatements {
    fastest_micros: AtomicU64,
}

impl Default for SlowStatements {
    fn default() -> Self {
        Self { fastest_micros: AtomicU64::new(u64::MAX) }
    }
}

impl SlowStatements {
    /// Records a statement that returned `rows` rows in `elapsed`, and says whether it
    /// was slow.
    pub(crate) fn observe(&self, elapsed: Duration, rows: usize) -> bool {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let fastest = self.fastest_micros.fetch_min(micros, Ordering::Relaxed).min(micros);
        let per_row = SLOW_PER_ROW.saturating_mul(u32::try_from(rows).unwrap_or(u32::MAX));
        elapsed > Duration::from_micros(fastest).saturating_add(SLOW_MARGIN).saturating_add(per_row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_statement_is_slow_when_it_takes_the_margin_longer_than_the_fastest_one() {
        let slow = SlowStatements::default();
        assert!(!slow.observe(MS, 10), "the first statement sets the baseline");
        assert!(!slow.observe(5 * MS, 10), "5.2 ms is allowed over a 1 ms baseline for 10 rows");
        assert!(slow.observe(7 * MS, 10));
        assert!(!slow.observe(40 * MS, 2_000), "1 ms + 5 ms + 2,000 x 20 µs = 46 ms");
    }

    #[test]
    fn a_distant_server_is_not_slow_for_its_round_trip() {
        let slow = SlowStatements::default();
        assert!(!slow.observe(30 * MS, 1));
        assert!(!slow.observe(33 * MS, 1), "a 30 ms round trip is the baseline");
        assert!(slow.observe(40 * MS, 1));
    }
}
