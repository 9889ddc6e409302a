//! How long to wait before the next attempt of a failed job.

use std::time::Duration;

use rand::Rng;

/// Backoff between attempts: exponential with jitter and a cap, or fixed.
///
/// ```
/// use std::time::Duration;
/// use haul_core::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(Duration::from_secs(1))
///     .max_delay(Duration::from_secs(60))
///     .jitter(0.0);
/// assert_eq!(policy.delay(1), Duration::from_secs(1));
/// assert_eq!(policy.delay(3), Duration::from_secs(4));
/// assert_eq!(policy.delay(30), Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    base: Duration,
    factor: f64,
    max_delay: Duration,
    jitter: f64,
}

impl RetryPolicy {
    /// Doubles the delay after each failed attempt, starting at `base`, capped at one
    /// hour, with ±10% jitter.
    pub const fn exponential(base: Duration) -> Self {
        Self { base, factor: 2.0, max_delay: Duration::from_secs(3600), jitter: 0.1 }
    }

    /// The same delay after every failed attempt, with no jitter.
    pub const fn fixed(delay: Duration) -> Self {
        Self { base: delay, factor: 1.0, max_delay: delay, jitter: 0.0 }
    }

    /// Caps the delay.
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets the growth factor (at least 1).
    pub const fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor < 1.0 { 1.0 } else { factor };
        self
    }

    /// Sets the jitter as a fraction of the delay, clamped to `0.0..=1.0`: each delay
    /// is drawn uniformly from `delay * (1 ± jitter)`.
    pub const fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let cap = self.max_delay.as_secs_f64();
        let raw = (self.base.as_secs_f64() * self.factor.powi(exponent)).min(cap);
        let jittered = if self.jitter > 0.0 {
            raw * rand::rng().random_range((1.0 - self.jitter)..=(1.0 + self.jitter))
        } else {
            raw
        };
        // Saturating: a cap of `Duration::MAX` is not exactly representable as f64 seconds.
        Duration::try_from_secs_f64(jittered.clamp(0.0, cap)).unwrap_or(self.max_delay)
    }
}

impl Default for RetryPolicy {
    /// Exponential from 1 s, capped at one hour, ±10% jitter.
    fn default() -> Self {
        Self::exponential(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_band_and_the_cap() {
        let policy = RetryPolicy::exponential(Duration::from_secs(10)).jitter(0.5);
        for _ in 0..200 {
            let delay = policy.delay(2).as_secs_f64();
            assert!((10.0..=30.0).contains(&delay), "{delay}");
        }
        let capped = RetryPolicy::exponential(Duration::from_secs(10)).max_delay(Duration::from_secs(15));
        for _ in 0..200 {
            assert!(capped.delay(5) <= Duration::from_secs(15));
        }
    }

    #[test]
    fn an_unbounded_cap_saturates_instead_of_panicking() {
        let policy = RetryPolicy::exponential(Duration::from_secs(1)).max_delay(Duration::MAX);
        assert!(policy.delay(64) >= Duration::from_secs(1 << 40));
        assert_eq!(RetryPolicy::fixed(Duration::MAX).delay(1), Duration::MAX);
    }

    #[test]
    fn fixed_never_grows() {
        let policy = RetryPolicy::fixed(Duration::from_millis(250));
        assert_eq!(policy.delay(1), policy.delay(9));
    }
}
