//! Waiting between retries of a failing storage call.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff from 50 ms to 5 s with full jitter, reset on success.
#[derive(Debug, Default)]
pub(crate) struct StorageBackoff {
    failures: u32,
}

impl StorageBackoff {
    const BASE: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(5);

    /// Records a failure and returns how long to wait before the next try.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = Self::BASE.saturating_mul(1 << self.failures.min(10)).min(Self::MAX);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Records a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_its_cap_and_resets() {
        let mut backoff = StorageBackoff::default();
        let first = backoff.next_delay();
        assert!(first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(backoff.next_delay() <= StorageBackoff::MAX);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
