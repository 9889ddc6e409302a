//! The queue counts the pages show, read from storage at most once per refresh.
//!
//! Counting every job is the one read whose cost grows with the stored jobs (on
//! PostgreSQL, a scan of the jobs table: about 0.2 s per million jobs). So pages do not
//! count for themselves: they share one snapshot, however many are open. The rule:
//!
//! - a snapshot younger than its *lifetime* is used as it is; the lifetime is the
//!   dashboard's refresh interval (5 s by default), or ten times as long as the last
//!   count took when that is longer, so counting never takes more than a tenth of the
//!   time;
//! - an older snapshot is still used, and one recount starts in the background for the
//!   pages that follow;
//! - with no snapshot (the first page, or the first after an action from the
//!   dashboard, which drops it), the page waits for the count.
//!
//! A count that was running when an action dropped the snapshot may have read the
//! jobs before the action: its result is returned to the page that waited for it but
//! not kept, so the page after the action counts again.
//!
//! Pages show when their counts were taken.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use haul::{Admin, QueueCounts};
use tokio::sync::Mutex;

/// The default lifetime when the page refresh is off.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(5);

/// The longest a count may take: one that hangs must not hold every page that waits
/// for it forever (a page then shows a 503 and the next one counts again).
const COUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// One count of every queue.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    /// The counts, as [`Admin::counts`] returned them.
    pub(crate) queues: Arc<Vec<QueueCounts>>,
    /// When the count started.
    pub(crate) taken_at: DateTime<Utc>,
    /// When the count ended, by this process's monotonic clock.
    ended: Instant,
    /// How long it took.
    took: Duration,
}

/// The shared snapshot and whether a recount runs.
#[derive(Debug, Default)]
pub(crate) struct CountsCache {
    latest: std::sync::Mutex<Option<Snapshot>>,
    /// Held while counting: one count at a time, and pages that must wait share it.
    counting: Arc<Mutex<()>>,
    /// Bumped by every [`CountsCache::invalidate`]: a count started before the last
    /// invalidation is not kept.
    generation: AtomicU64,
}

impl CountsCache {
    /// The counts a page shows (see the module docs for the rule). `refresh` is the
    /// dashboard's refresh interval.
    pub(crate) async fn get(self: &Arc<Self>, admin: &Arc<dyn Admin>, refresh: Duration) -> haul::Result<Snapshot> {
        if let Some(snapshot) = self.latest() {
            if snapshot.ended.elapsed() >= lifetime(refresh, snapshot.took) {
                self.recount_in_background(admin);
            }
            return Ok(snapshot);
        }
        let _counting = self.counting.lock().await;
        // Another page may have counted while this one waited.
        if let Some(snapshot) = self.latest() {
            return Ok(snapshot);
        }
        self.count(admin.as_ref()).await
    }

    /// Forgets the snapshot: an action changed the counts, so the next page counts
    /// again.
    pub(crate) fn invalidate(&self) {
        let mut latest = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        *latest = None;
    }

    /// A guard that forgets the snapshot when dropped: an action holds one while it
    /// acts, so the counts are forgotten however the action ends, even when the client
    /// goes away mid-action and the request's future is dropped with the change made.
    pub(crate) fn invalidate_on_drop(&self) -> InvalidateOnDrop<'_> {
        InvalidateOnDrop(self)
    }

    fn latest(&self) -> Option<Snapshot> {
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Starts one recount unless one runs already.
    fn recount_in_background(self: &Arc<Self>, admin: &Arc<dyn Admin>) {
        let Ok(counting) = Arc::clone(&self.counting).try_lock_owned() else { return };
        let cache = Arc::clone(self);
        let admin = Arc::clone(admin);
        tokio::spawn(async move {
            let _counting = counting;
            // A failed recount keeps the old snapshot; the next page tries again.
            if let Err(error) = cache.count(admin.as_ref()).await {
                tracing::warn!(%error, "recounting the queues for the dashboard failed");
            }
        });
    }

    /// Counts and keeps the result. The caller holds `counting`.
    /// Kept only if no invalidation happened meanwhile (see the module docs).
    async fn count(&self, admin: &dyn Admin) -> haul::Result<Snapshot> {
        let generation = self.generation.load(Ordering::SeqCst);
        let taken_at = Utc::now();
        let started = Instant::now();
        let queues = tokio::time::timeout(COUNT_TIMEOUT, admin.counts()).await.map_err(|_| {
            haul::Error::backend(
                "storage",
                haul::ErrorKind::Timeout,
                format!("counting the queues took longer than {} s", COUNT_TIMEOUT.as_secs()),
                None,
            )
        })??;
        let snapshot = Snapshot { queues: Arc::new(queues), taken_at, ended: Instant::now(), took: started.elapsed() };
        let mut latest = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) == generation {
            *latest = Some(snapshot.clone());
        }
        Ok(snapshot)
    }
}

/// See [`CountsCache::invalidate_on_drop`].
pub(crate) struct InvalidateOnDrop<'a>(&'a CountsCache);

impl Drop for InvalidateOnDrop<'_> {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}

/// How long a snapshot that took `took` to count is used before a recount.
fn lifetime(refresh: Duration, took: Duration) -> Duration {
    let refresh = if refresh.is_zero() { DEFAULT_LIFETIME } else { refresh };
    refresh.max(took.saturating_mul(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_count_lives_ten_times_its_duration() {
        let refresh = Duration::from_secs(5);
        assert_eq!(lifetime(refresh, Duration::from_millis(20)), refresh);
        assert_eq!(lifetime(refresh, Duration::from_secs(2)), Duration::from_secs(20));
        assert_eq!(lifetime(Duration::ZERO, Duration::ZERO), DEFAULT_LIFETIME);
    }
}
