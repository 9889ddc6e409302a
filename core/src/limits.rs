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
//! Limits are stored, not configured per worker, so every worker agrees on them: set
//! them with [`Admin::set_queue_limits`](crate::Admin::set_queue_limits) (or
//! [`Queue::set_limits`](crate::Queue::set_limits), or `haul queues limit`); the last
//! call wins. A worker's own slots
//! ([`WorkerBuilder::queue_concurrency`](crate::WorkerBuilder::queue_concurrency)) limit
//! that worker only, within the stored limit.

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

    /// Whether these limits limit nothing (storing them removes the queue's limits).
    pub fn is_unlimited(&self) -> bool {
        self.concurrency.is_none() && self.key_concurrency.is_none()
    }

    /// Checks the limits before they are stored: a concurrency of 0 would stop the
    /// queue for good (pause it instead), and one above [`MAX_CONCURRENCY_LIMIT`] is
    /// refused on every backend alike.
    pub fn validate(&self) -> Result<()> {
        check_concurrency("concurrency limit", self.concurrency)?;
        check_concurrency("concurrency limit per key", self.key_concurrency)
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
    fn limit_keys_are_checked() {
        assert!(validate_limit_key("customer-42").is_ok());
        assert!(validate_limit_key("").is_err());
        assert!(validate_limit_key("a\0b").is_err());
        assert!(validate_limit_key(&"k".repeat(MAX_LIMIT_KEY_BYTES)).is_ok());
        assert!(validate_limit_key(&"k".repeat(MAX_LIMIT_KEY_BYTES + 1)).is_err());
    }
}
