//! Limits every worker of a namespace obeys, kept in storage per queue.
//!
//! [`QueueLimits::concurrency`] caps the jobs of one queue that run at once across
//! every worker and process sharing the storage: storage checks it inside each claim,
//! atomically with the claim, so two workers claiming together never exceed it. A job
//! counts from its claim (prefetched jobs included) until its attempt ends (it is
//! reported, or its lease is rescued); a job held back by a limit stays available,
//! keeps its attempts, and is claimed by the first claim after a slot frees up.
//!
//! [`QueueLimits::key_concurrency`] caps the running jobs of each *limit key* of the
//! queue the same way: a job enqueued with a limit key
//! ([`Enqueue::limit_key`](crate::Enqueue::limit_key), e.g. a customer id) counts
//! against its key's limit in its queue; a job without one is not key-limited. A key
//! limit of 1 runs each key's jobs one at a time, in claim order (priority, then
//! `run_at`, then id): a key's next job starts only after the one before it ended. A
//! job that comes back for another attempt (a retry after a failure, a snooze, or the
//! rescue of its expired lease) is due at its new time, so the key's jobs due before
//! then run first. A claim of a key-limited queue looks at no more
//! than [`KEY_LIMIT_SCAN`] of its waiting jobs, in claim order: jobs of keys with room
//! further back wait until some ahead of them start. Both limits apply together.
//!
//! [`QueueLimits::rate`] caps how many jobs of the queue *start* in any window of
//! time, and [`QueueLimits::key_rate`] how many of each limit key do: a
//! [`RateLimit`] of `n` per `period` lets a claim at time `t` take a job only while
//! fewer than `n` jobs of the queue (or of the job's key) were claimed in
//! `(t - period, t]`, counting the jobs the same claim took before it (a start
//! recorded after `t`, left by a clock that went back, counts too). A start is a
//! claim, by the storage's clock (or the claim's `now`): every attempt counts, a
//! prefetched job counts when it is claimed, and a job claimed again after its lease
//! was rescued counts again. This is a sliding window, not a token bucket: a bucket
//! of `n` that refills `n` per period lets up to `2n - 1` jobs start within one
//! period (a full bucket, then its refill), while the window never lets more than
//! `n` start in any period, which is what an API quota such as "100 calls a minute"
//! means. Storage keeps the start times of a queue's (or a key's) last `n` starts
//! within the period, hence the bound [`MAX_RATE_STARTS`]; it may forget starts that
//! left the window of the latest claim, so a claim whose clock is behind an earlier
//! claim's (a clock stepped back) may count fewer than were made in its window. A job held back by a rate
//! limit stays available and keeps its attempts; the claim tells the worker how long
//! until the limit lets another job start ([`PacedClaim::rate_limited_for`]), and the
//! worker claims again then (or at its next poll, or on a wake-up, if sooner).
//!
//! Every limit applies together: a job starts only when the queue's concurrency and
//! rate limits and its key's limits all have room. A claim of a queue with any
//! per-key limit looks at no more than [`KEY_LIMIT_SCAN`] of its waiting jobs.
//!
//! Limits are stored, not configured per worker, so every worker agrees on them: set
//! them with [`Admin::set_queue_limits`](crate::Admin::set_queue_limits) (or
//! [`Queue::set_limits`](crate::Queue::set_limits), or `haul queues limit`); the last
//! call wins. A worker's own slots
//! ([`WorkerBuilder::queue_concurrency`](crate::WorkerBuilder::queue_concurrency)) limit
//! that worker only, within the stored limit.
//!
//! [`PacedClaim::rate_limited_for`]: crate::PacedClaim::rate_limited_for

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The largest concurrency limit a queue can have (2^31 - 1, what a PostgreSQL
/// `integer` holds).
pub const MAX_CONCURRENCY_LIMIT: u32 = 2_147_483_647;

/// The most waiting jobs of a key-limited queue one claim looks at, in claim order,
/// to find jobs whose keys have room (see the [module docs](self)).
pub const KEY_LIMIT_SCAN: usize = 1_000;

/// The longest limit key, in bytes.
pub const MAX_LIMIT_KEY_BYTES: usize = 255;

/// The most starts a [`RateLimit`] allows per period.
pub const MAX_RATE_STARTS: u32 = 10_000;

/// The longest period of a [`RateLimit`] (31 days).
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(31 * 24 * 60 * 60);

/// The limits of one queue (see the [module docs](self)). The default limits nothing.
///
/// ```
/// use haul_core::QueueLimits;
///
/// // At most 5 jobs of the queue running at once, across every worker.
/// let limits = QueueLimits::new().concurrency(5);
/// assert_eq!(limits.concurrency, Some(5));
/// assert!(QueueLimits::new().is_unlimited());
///
/// // One job at a time per limit key (say, per customer), in order.
/// let per_customer = QueueLimits::new().key_concurrency(1);
/// assert_eq!(per_customer.key_concurrency, Some(1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueLimits {
    /// At most this many jobs of the queue running at once across every worker
    /// (`None`: no limit). From 1 to [`MAX_CONCURRENCY_LIMIT`].
    pub concurrency: Option<u32>,
    /// At most this many jobs with the same limit key running at once in the queue,
    /// across every worker (`None`: no limit per key). From 1 to
    /// [`MAX_CONCURRENCY_LIMIT`].
    pub key_concurrency: Option<u32>,
    /// At most this many jobs of the queue start in any window of time, across every
    /// worker (`None`: no rate limit).
    pub rate: Option<RateLimit>,
    /// At most this many jobs with the same limit key start in any window of time in
    /// the queue, across every worker (`None`: no rate limit per key).
    pub key_rate: Option<RateLimit>,
}

impl QueueLimits {
    /// No limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`QueueLimits::concurrency`].
    #[must_use]
    pub fn concurrency(mut self, concurrency: u32) -> Self {
        self.concurrency = Some(concurrency);
        self
    }

    /// Sets [`QueueLimits::key_concurrency`].
    #[must_use]
    pub fn key_concurrency(mut self, key_concurrency: u32) -> Self {
        self.key_concurrency = Some(key_concurrency);
        self
    }

    /// Sets [`QueueLimits::rate`].
    #[must_use]
    pub fn rate(mut self, rate: RateLimit) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Sets [`QueueLimits::key_rate`].
    #[must_use]
    pub fn key_rate(mut self, key_rate: RateLimit) -> Self {
        self.key_rate = Some(key_rate);
        self
    }

    /// Whether these limits limit nothing (storing them removes the queue's limits).
    pub fn is_unlimited(&self) -> bool {
        self.concurrency.is_none() && self.key_concurrency.is_none() && self.rate.is_none() && self.key_rate.is_none()
    }

    /// Whether a claim of the queue must look at its jobs' limit keys.
    pub fn limits_keys(&self) -> bool {
        self.key_concurrency.is_some() || self.key_rate.is_some()
    }

    /// Checks the limits before they are stored: a concurrency of 0 would stop the
    /// queue for good (pause it instead), and one above [`MAX_CONCURRENCY_LIMIT`] is
    /// refused on every backend alike.
    pub fn validate(&self) -> Result<()> {
        check_concurrency("concurrency limit", self.concurrency)?;
        check_concurrency("concurrency limit per key", self.key_concurrency)?;
        for rate in [self.rate, self.key_rate].into_iter().flatten() {
            rate.validate()?;
        }
        Ok(())
    }
}

/// At most [`starts`](RateLimit::starts) jobs start in any window of
/// [`period`](RateLimit::period) (see the [module docs](self)).
///
/// It reads as `STARTS/PERIOD`, the period in [humantime](https://docs.rs/humantime)
/// form (`500ms`, `90s`, `1m`, `1h 30m`, `1d`), and prints the period as one word in
/// its largest whole unit ([`RateLimit::period_text`]):
///
/// ```
/// use std::time::Duration;
/// use haul_core::{QueueLimits, RateLimit};
///
/// let quota: RateLimit = "100/1m".parse()?;
/// assert_eq!(quota, RateLimit::per_minute(100));
/// assert_eq!(quota.to_string(), "100/1m");
/// assert_eq!("5/500ms".parse::<RateLimit>()?, RateLimit::new(5, Duration::from_millis(500)));
///
/// // At most 100 starts a minute in the queue, and 2 a second per customer.
/// let limits = QueueLimits::new().rate(quota).key_rate(RateLimit::per_second(2));
/// assert!(limits.validate().is_ok());
/// # Ok::<(), haul_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RateLimit {
    /// How many jobs may start per period: from 1 to [`MAX_RATE_STARTS`].
    pub starts: u32,
    /// The window: whole milliseconds, from 1 ms to [`MAX_RATE_PERIOD`].
    pub period: Duration,
}

impl RateLimit {
    /// At most `starts` starts in any window of `period`.
    pub fn new(starts: u32, period: Duration) -> Self {
        Self { starts, period }
    }

    /// At most `starts` starts in any second.
    pub fn per_second(starts: u32) -> Self {
        Self::new(starts, Duration::from_secs(1))
    }

    /// At most `starts` starts in any minute.
    pub fn per_minute(starts: u32) -> Self {
        Self::new(starts, Duration::from_secs(60))
    }

    /// At most `starts` starts in any hour.
    pub fn per_hour(starts: u32) -> Self {
        Self::new(starts, Duration::from_secs(60 * 60))
    }

    /// The period in whole milliseconds (what storage keeps; see [`RateLimit::validate`]).
    pub fn period_millis(&self) -> u64 {
        u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks the limit: 1 to [`MAX_RATE_STARTS`] starts, a period of whole
    /// milliseconds from 1 ms to [`MAX_RATE_PERIOD`].
    pub fn validate(&self) -> Result<()> {
        if self.starts == 0 {
            return Err(Error::InvalidArgument(
                "a rate limit must allow at least 1 start per period (pause the queue to stop it)".into(),
            ));
        }
        if self.starts > MAX_RATE_STARTS {
            return Err(Error::InvalidArgument(
                format!("a rate limit allows at most {MAX_RATE_STARTS} starts per period").into(),
            ));
        }
        if self.period < Duration::from_millis(1) || self.period > MAX_RATE_PERIOD {
            return Err(Error::InvalidArgument("a rate limit's period must be from 1ms to 31 days".to_owned().into()));
        }
        if !self.period.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(Error::InvalidArgument("a rate limit's period must be whole milliseconds".into()));
        }
        Ok(())
    }
}

impl RateLimit {
    /// The period as one word in its largest whole unit (`1500ms`, `90s`, `1m`, `2h`,
    /// `31d`), as [`Display`](fmt::Display) prints it and [`FromStr`] reads it back.
    pub fn period_text(&self) -> String {
        const UNITS: [(u64, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")];
        let millis = self.period_millis();
        if !self.period.subsec_nanos().is_multiple_of(1_000_000) || millis == 0 {
            // Not a valid period (see `validate`): shown exactly.
            return humantime::format_duration(self.period).to_string();
        }
        UNITS
            .iter()
            .find(|(unit, _)| millis.is_multiple_of(*unit))
            .map_or_else(|| format!("{millis}ms"), |(unit, name)| format!("{}{name}", millis / unit))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.starts, self.period_text())
    }
}

impl FromStr for RateLimit {
    type Err = Error;

    /// Reads `STARTS/PERIOD` (`100/1m`, `5/500ms`, `1000/1day`) and checks it.
    fn from_str(text: &str) -> Result<Self> {
        let malformed = || {
            Error::InvalidArgument(
                format!("a rate limit reads STARTS/PERIOD, such as 100/1m or 5/500ms; got {text:?}").into(),
            )
        };
        let (starts, period) = text.split_once('/').ok_or_else(malformed)?;
        let starts = starts.trim().parse().map_err(|_| malformed())?;
        let period = humantime::parse_duration(period.trim()).map_err(|_| malformed())?;
        let rate = Self::new(starts, period);
        rate.validate()?;
        Ok(rate)
    }
}

fn check_concurrency(what: &str, limit: Option<u32>) -> Result<()> {
    match limit {
        Some(0) => Err(Error::InvalidArgument(
            format!("a queue's {what} must be at least 1 (pause the queue to stop it)").into(),
        )),
        Some(limit) if limit > MAX_CONCURRENCY_LIMIT => {
            Err(Error::InvalidArgument(format!("a queue's {what} must be at most {MAX_CONCURRENCY_LIMIT}").into()))
        }
        _ => Ok(()),
    }
}

/// Checks a job's limit key: not empty, at most [`MAX_LIMIT_KEY_BYTES`] bytes, no NUL.
pub fn validate_limit_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("a limit key must not be empty (leave it unset instead)".into()));
    }
    if key.len() > MAX_LIMIT_KEY_BYTES {
        return Err(Error::InvalidArgument(
            format!("a limit key takes {} bytes; the limit is {MAX_LIMIT_KEY_BYTES}", key.len()).into(),
        ));
    }
    if key.contains('\0') {
        return Err(Error::InvalidArgument("a limit key must not contain NUL characters".into()));
    }
    Ok(())
}

/// A queue and its stored limits, as [`Admin::queue_limits`](crate::Admin::queue_limits)
/// lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueLimitsRecord {
    /// The queue.
    pub queue: String,
    /// Its limits (never unlimited: those are not stored).
    pub limits: QueueLimits,
}

impl QueueLimitsRecord {
    /// The record of `queue`'s `limits`.
    pub fn new(queue: impl Into<String>, limits: QueueLimits) -> Self {
        Self { queue: queue.into(), limits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_concurrency_is_refused() {
        assert!(matches!(QueueLimits::new().concurrency(0).validate(), Err(Error::InvalidArgument(_))));
        assert!(QueueLimits::new().concurrency(1).validate().is_ok());
        assert!(QueueLimits::new().validate().is_ok());
        assert!(QueueLimits::new().concurrency(MAX_CONCURRENCY_LIMIT).validate().is_ok());
        assert!(QueueLimits::new().concurrency(MAX_CONCURRENCY_LIMIT + 1).validate().is_err());
    }

    #[test]
    fn a_zero_key_concurrency_is_refused() {
        assert!(matches!(QueueLimits::new().key_concurrency(0).validate(), Err(Error::InvalidArgument(_))));
        assert!(QueueLimits::new().key_concurrency(MAX_CONCURRENCY_LIMIT + 1).validate().is_err());
        assert!(QueueLimits::new().key_concurrency(1).validate().is_ok());
        assert!(!QueueLimits::new().key_concurrency(1).is_unlimited());
    }

    #[test]
    fn rate_limits_are_checked() {
        assert!(RateLimit::per_second(1).validate().is_ok());
        assert!(RateLimit::per_second(0).validate().is_err());
        assert!(RateLimit::per_second(MAX_RATE_STARTS).validate().is_ok());
        assert!(RateLimit::per_second(MAX_RATE_STARTS + 1).validate().is_err());
        assert!(RateLimit::new(1, Duration::from_millis(1)).validate().is_ok());
        assert!(RateLimit::new(1, Duration::from_micros(999)).validate().is_err());
        assert!(RateLimit::new(1, Duration::from_micros(1_500)).validate().is_err());
        assert!(RateLimit::new(1, MAX_RATE_PERIOD).validate().is_ok());
        assert!(RateLimit::new(1, MAX_RATE_PERIOD + Duration::from_millis(1)).validate().is_err());
        assert!(QueueLimits::new().key_rate(RateLimit::per_minute(0)).validate().is_err());
        assert!(QueueLimits::new().rate(RateLimit::per_minute(0)).validate().is_err());
        assert!(!QueueLimits::new().rate(RateLimit::per_minute(1)).is_unlimited());
        assert!(QueueLimits::new().key_rate(RateLimit::per_minute(1)).limits_keys());
        assert!(!QueueLimits::new().rate(RateLimit::per_minute(1)).limits_keys());
    }

    #[test]
    fn rate_limits_read_and_print_as_starts_per_period() {
        assert_eq!("100/1m".parse::<RateLimit>().ok(), Some(RateLimit::per_minute(100)));
        assert_eq!(" 3 / 1h ".parse::<RateLimit>().ok(), Some(RateLimit::per_hour(3)));
        assert_eq!("1000/1day".parse::<RateLimit>().ok(), Some(RateLimit::new(1000, Duration::from_secs(86_400))));
        for bad in ["100", "/1m", "x/1m", "100/", "100/soon", "0/1m", "-1/1m", "1/0s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
        let shown = [
            (RateLimit::per_second(7), "7/1s"),
            (RateLimit::new(5, Duration::from_millis(1_500)), "5/1500ms"),
            (RateLimit::new(5, Duration::from_secs(90)), "5/90s"),
            (RateLimit::per_hour(3), "3/1h"),
            (RateLimit::new(1, MAX_RATE_PERIOD), "1/31d"),
        ];
        for (rate, text) in shown {
            assert_eq!(rate.to_string(), text);
            assert_eq!(text.parse::<RateLimit>().ok(), Some(rate));
        }
    }

    #[test]
    fn limit_keys_are_checked() {
        assert!(validate_limit_key("customer-42").is_ok());
        assert!(validate_limit_key("").is_err());
        assert!(validate_limit_key("a\0b").is_err());
        assert!(validate_limit_key(&"k".repeat(MAX_LIMIT_KEY_BYTES)).is_ok());
        assert!(validate_limit_key(&"k".repeat(MAX_LIMIT_KEY_BYTES + 1)).is_err());
    }
}
