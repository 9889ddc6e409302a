//! The start times that rate limits count: a sliding-window log per queue (for
//! [`QueueLimits::rate`]) and per limit key of a queue (for [`QueueLimits::key_rate`]).
//!
//! A log keeps, in time order, no more than the limit's `starts` most recent starts,
//! and none older than its period: that is all a claim needs to tell whether one
//! more start fits and, when it does not, when it will. Starts are only logged for
//! queues with a rate limit, so a limit counts the starts since it was set. A key's
//! log is dropped once its starts have all left the window (by a sweep of the
//! queue's keys at most once per period), and a queue's logs when its rate limits
//! are removed, so the logs hold no more than the starts of the last two periods.

use std::collections::VecDeque;

use foldhash::HashMap;

use haul_core::{QueueLimits, RateLimit, Timestamp};

use crate::time::{after, before};

/// The logged starts of every queue with a rate limit.
#[derive(Debug, Default)]
pub(crate) struct RateLogs {
    queues: HashMap<String, QueueStarts>,
}

/// The logged starts of one queue.
#[derive(Debug, Default)]
struct QueueStarts {
    /// The queue's starts (kept only while it has a [`QueueLimits::rate`]).
    queue: Starts,
    /// The starts per limit key (kept only while it has a [`QueueLimits::key_rate`]).
    keys: HashMap<String, Starts>,
    /// When the key logs are next swept for keys whose starts all left the window.
    next_key_sweep: Option<Timestamp>,
}

/// Start times in time order: at most a limit's `starts`, none older than its period
/// when the last start was logged.
#[derive(Debug, Default)]
pub(crate) struct Starts(VecDeque<Timestamp>);

impl RateLogs {
    /// The starts of `queue` (empty when none are logged).
    pub(crate) fn queue(&self, queue: &str) -> Option<&Starts> {
        self.queues.get(queue).map(|starts| &starts.queue)
    }

    /// The starts of the limit key `key` in `queue` (`None` when none are logged).
    pub(crate) fn key(&self, queue: &str, key: &str) -> Option<&Starts> {
        self.queues.get(queue).and_then(|starts| starts.keys.get(key))
    }

    /// Logs a start at `now` of a job of `queue` with the limit key `key`, in each scope
    /// `limits` rate-limits.
    pub(crate) fn record(&mut self, queue: &str, key: Option<&str>, limits: &QueueLimits, now: Timestamp) {
        let key_rate = limits.key_rate.zip(key);
        if limits.rate.is_none() && key_rate.is_none() {
            return;
        }
        let starts = self.queues.entry(queue.to_owned()).or_default();
        if let Some(rate) = limits.rate {
            starts.queue.record(&rate, now);
        }
        if let Some((rate, key)) = key_rate {
            starts.sweep_keys(&rate, now);
            match starts.keys.get_mut(key) {
                Some(log) => log.record(&rate, now),
                None => {
                    let mut log = Starts::default();
                    log.record(&rate, now);
                    starts.keys.insert(key.to_owned(), log);
                }
            }
        }
    }

    /// Drops the logs `limits` (the queue's new limits) no longer need.
    pub(crate) fn keep_only_limited(&mut self, queue: &str, limits: &QueueLimits) {
        let Some(starts) = self.queues.get_mut(queue) else { return };
        if limits.rate.is_none() {
            starts.queue = Starts::default();
        }
        if limits.key_rate.is_none() {
            starts.keys = HashMap::default();
            starts.next_key_sweep = None;
        }
        if limits.rate.is_none() && limits.key_rate.is_none() {
            self.queues.remove(queue);
        }
    }

    /// How many scopes (queues and keys) have logged starts (tests only).
    #[cfg(test)]
    pub(crate) fn scopes(&self) -> usize {
        self.queues.values().map(|starts| usize::from(!starts.queue.0.is_empty()) + starts.keys.len()).sum()
    }
}

impl QueueStarts {
    /// Drops the key logs whose starts all left the window, at most once per period.
    fn sweep_keys(&mut self, rate: &RateLimit, now: Timestamp) {
        if self.next_key_sweep.is_some_and(|at| now < at) {
            return;
        }
        let oldest_kept = before(now, rate.period);
        self.keys.retain(|_, log| log.0.back().is_some_and(|&last| last > oldest_kept));
        self.next_key_sweep = Some(after(now, rate.period));
    }
}

impl Starts {
    /// Logs a start at `now`, then forgets the starts `rate` no longer counts.
    fn record(&mut self, rate: &RateLimit, now: Timestamp) {
        let log = &mut self.0;
        if log.back().is_none_or(|&last| last <= now) {
            log.push_back(now);
        } else {
            // A clock that went back: keep the log in time order.
            let at = log.partition_point(|&start| start <= now);
            log.insert(at, now);
        }
        let oldest_kept = before(now, rate.period);
        let limit = usize::try_from(rate.starts).unwrap_or(usize::MAX);
        while log.len() > limit || log.front().is_some_and(|&first| first <= oldest_kept) {
            log.pop_front();
        }
    }

    /// When one more start fits in `rate` at `now`, once `extra` more starts at `now`
    /// (the jobs of this scope the claim already took) are counted: `None` when it
    /// fits now, else the instant the `starts`-th most recent start leaves the window.
    pub(crate) fn full_until(&self, rate: &RateLimit, now: Timestamp, extra: u64) -> Option<Timestamp> {
        full_until(self.0.as_slices(), rate, now, extra)
    }
}

/// [`Starts::full_until`] for a scope with no logged start.
pub(crate) fn full_until_unlogged(rate: &RateLimit, now: Timestamp, extra: u64) -> Option<Timestamp> {
    full_until((&[], &[]), rate, now, extra)
}

fn full_until(
    (front, back): (&[Timestamp], &[Timestamp]),
    rate: &RateLimit,
    now: Timestamp,
    extra: u64,
) -> Option<Timestamp> {
    let starts = u64::from(rate.starts);
    let oldest_counted = before(now, rate.period);
    let in_window = |slice: &[Timestamp]| slice.len() - slice.partition_point(|&start| start <= oldest_counted);
    let logged = u64::try_from(in_window(front) + in_window(back)).unwrap_or(u64::MAX);
    if logged.saturating_add(extra) < starts {
        return None;
    }
    if extra >= starts {
        return Some(after(now, rate.period));
    }
    // The `starts`-th most recent start is the `(starts - extra)`-th most recent logged.
    let from_last = usize::try_from(starts - extra).unwrap_or(usize::MAX);
    let len = front.len() + back.len();
    let at = len.checked_sub(from_last)?;
    let start = if at < front.len() { front.get(at) } else { back.get(at - front.len()) };
    start.map(|&start| after(start, rate.period))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeDelta, Utc};

    use super::*;

    fn ms(n: i64) -> TimeDelta {
        TimeDelta::milliseconds(n)
    }

    #[test]
    fn a_log_keeps_the_last_starts_within_the_period_in_time_order() {
        let rate = RateLimit::new(3, Duration::from_secs(10));
        let t = Utc::now();
        let mut log = Starts::default();
        for offset in [0, 1_000, 500, 2_000, 3_000] {
            log.record(&rate, t + ms(offset));
        }
        assert_eq!(Vec::from(log.0.clone()), vec![t + ms(1_000), t + ms(2_000), t + ms(3_000)]);
        log.record(&rate, t + ms(12_500));
        assert_eq!(Vec::from(log.0.clone()), vec![t + ms(3_000), t + ms(12_500)]);
    }

    #[test]
    fn full_until_counts_the_window_and_the_claims_own_starts() {
        let rate = RateLimit::new(2, Duration::from_secs(10));
        let t = Utc::now();
        let mut log = Starts::default();
        log.record(&rate, t);
        assert_eq!(log.full_until(&rate, t, 0), None);
        assert_eq!(log.full_until(&rate, t, 1), Some(t + ms(10_000)));
        log.record(&rate, t + ms(4_000));
        assert_eq!(log.full_until(&rate, t + ms(5_000), 0), Some(t + ms(10_000)));
        assert_eq!(log.full_until(&rate, t + ms(5_000), 2), Some(t + ms(15_000)));
        assert_eq!(log.full_until(&rate, t + ms(10_000), 0), None, "the first start left the window");
        assert_eq!(full_until_unlogged(&rate, t, 1), None);
        assert_eq!(full_until_unlogged(&rate, t, 2), Some(t + ms(10_000)));
    }

    #[test]
    fn key_logs_are_swept_once_their_starts_left_the_window_and_dropped_with_the_limit() {
        let rate = RateLimit::new(1, Duration::from_secs(1));
        let limits = QueueLimits::new().rate(rate).key_rate(rate);
        let t = Utc::now();
        let mut logs = RateLogs::default();
        for key in ["a", "b", "c"] {
            logs.record("q", Some(key), &limits, t);
        }
        assert_eq!(logs.scopes(), 4);
        logs.record("q", Some("d"), &limits, t + ms(1_000));
        assert_eq!(logs.scopes(), 2, "the keys whose starts left the window are dropped");
        logs.keep_only_limited("q", &QueueLimits::new().rate(rate));
        assert_eq!(logs.scopes(), 1);
        logs.keep_only_limited("q", &QueueLimits::new().concurrency(1));
        assert_eq!(logs.scopes(), 0);
        assert!(logs.queues.is_empty());
    }
}
