//! Limits every worker of a namespace obeys, kept in storage per queue.
//!
//! [`QueueLimits::concurrency`] caps the jobs of one queue that run at once across
//! every worker and process sharing the storage: storage checks it inside each claim,
//! atomically with the claim, so two workers claiming together never exceed it. A job
//! counts from its claim (prefetched jobs included) until its attempt ends (it is
//! reported, or its lease is rescued); a job held back by a limit stays available,
//! keeps its attempts, and is claimed by the first claim after a slot frees up.
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

/// The limits of one queue (see the [module docs](self)). The default limits nothing.
///
/// ```
/// use haul_core::QueueLimits;
///
/// // At most 5 jobs of the queue running at once, across every worker.
/// let limits = QueueLimits::new().concurrency(5);
/// assert_eq!(limits.concurrency, Some(5));
/// assert!(QueueLimits::new().is_unlimited());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueLimits {
    /// At most this many jobs of the queue running at once across every worker
    /// (`None`: no limit). From 1 to [`MAX_CONCURRENCY_LIMIT`].
    pub concurrency: Option<u32>,
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

    /// Whether these limits limit nothing (storing them removes the queue's limits).
    pub fn is_unlimited(&self) -> bool {
        self.concurrency.is_none()
    }

    /// Checks the limits before they are stored: a concurrency of 0 would stop the
    /// queue for good (pause it instead), and one above [`MAX_CONCURRENCY_LIMIT`] is
    /// refused on every backend alike.
    pub fn validate(&self) -> Result<()> {
        match self.concurrency {
            Some(0) => Err(Error::InvalidArgument(
                "a queue's concurrency limit must be at least 1 (pause the queue to stop it)".into(),
            )),
            Some(limit) if limit > MAX_CONCURRENCY_LIMIT => Err(Error::InvalidArgument(
                format!("a queue's concurrency limit must be at most {MAX_CONCURRENCY_LIMIT}").into(),
            )),
            _ => Ok(()),
        }
    }
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
}
