//! Queue limits ([`haul_core::limits`]): storing them, and the claims of limited queues.
//!
//! Limits live in `<schema>.queue_limits` (migrations 0010 and 0011), one row per
//! limited queue: a queue with a concurrency limit, a limit per key, or both (a row
//! always sets one of them). A claim takes one of two paths:
//!
//! - **Unlimited** (none of its queues is limited, as far as this storage handle
//!   knows): the one claim statement (`claim.sql`, `claim_one_queue.sql`), as fast as
//!   without limits. Its guard, evaluated once per statement, makes it claim nothing
//!   when one of its queues has a row, whatever the handle believed.
//! - **Limited**: one short transaction of two statements. `lock_queue_limits.sql`
//!   locks the limit rows of the claim's limited queues (`FOR UPDATE`, in queue
//!   order), which serializes the claims of a limited queue across every process;
//!   `claim_limited.sql` then counts each limited queue's running jobs (in all, and
//!   per limit key) on a snapshot taken after that lock, takes at most the limit minus
//!   those from it, and, in a queue with a limit per key, only the jobs whose key has
//!   room among the first [`KEY_LIMIT_SCAN`] available ones.
//!
//! Which path: each handle keeps the names of the limited queues ([`LimitedQueues`]),
//! read again by one query when older than [`REFRESH_AFTER`], and forgotten at once by
//! its own [`Admin::set_queue_limits`](haul_core::Admin::set_queue_limits). A limit
//! set through a handle applies to that handle's next claim; a limit set elsewhere
//! applies within [`REFRESH_AFTER`], during which the handle's claims of the queue come
//! back empty (the guard), never over the limit.
//!
//! Storing limits first locks the table (`lock_queue_limits_table.sql`), which waits
//! for the unlimited claims in flight: a claim that began before its queue became
//! limited cannot commit after a limited claim counted the queue's running jobs.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use haul_core::{ClaimParams, Error, KEY_LIMIT_SCAN, QueueLimits, QueueLimitsRecord, Result, validate_queue_name};
use sqlx::{Connection, Row, postgres::PgRow};

use crate::{PostgresStorage, claim_start::WalkStart, error::map_sqlx_error, row::micros};

/// How long storing a limit waits for the `queue_limits` table's lock (every claim of
/// the schema waits behind it meanwhile) before giving up.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '2s'";

/// How a limited claim's transaction begins, with [`LIMITED_CLAIM_SETTINGS`] after:
///
/// - at the level whose statements each take their own snapshot;
/// - with the generic plans of its prepared statements: left to choose, PostgreSQL
///   plans `claim_limited.sql` again on every call (a custom plan, as the generic
///   plan's estimates, made without the parameters' values, look dearer), which takes
///   longer than running it, and the generic plan runs as fast;
/// - with index scans only: a generic plan is kept for the connection's life (until
///   the table's statistics change), so one made while the jobs table was nearly empty
///   or never analyzed must not read it whole ever after (its final update would,
///   rather than fetch the claimed rows by ctid), nor count running jobs with a bitmap
///   scan, which visits every page holding a dead version of a job once running (until
///   vacuum) where an index scan marks the dead entries and skips them from then on.
///   Every read of the jobs table in these statements has an index or TID path.
pub(crate) const BEGIN_LIMITED_CLAIM: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// The planner settings of a limited claim's transaction (see [`BEGIN_LIMITED_CLAIM`]),
/// sent as its first statement: `SET LOCAL`, so they end with it.
pub(crate) const LIMITED_CLAIM_SETTINGS: &str = "SET LOCAL plan_cache_mode = force_generic_plan; \
     SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off";

/// How long a handle trusts its list of limited queues before reading it again.
pub(crate) const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// How many times a claim reads the limited queues again when limits stored through
/// this handle meanwhile may have made its reading stale.
const READS: usize = 3;

/// One storage handle's cache of the names of the limited queues (those with a row).
#[derive(Debug, Default)]
pub(crate) struct LimitedQueues {
    state: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    /// When the names were read (`None`: never, or forgotten).
    read_at: Option<Instant>,
    queues: Arc<HashSet<String>>,
    /// When a claim began reading the names again: until it stores them (or for
    /// [`REFRESH_AFTER`], should it fail or be dropped), the other claims keep using the
    /// stale names (the guard of the unlimited claims covers what they miss) rather
    /// than all read them at once.
    refresh_began: Option<Instant>,
    /// Bumped by every [`LimitedQueues::forget`]: a reading that began before one is
    /// not kept.
    generation: u64,
}

impl LimitedQueues {
    /// The names, if read less than [`REFRESH_AFTER`] before `now`, or if stale while
    /// another claim reads them again; else the generation a new reading must be
    /// stored under (the caller reads them).
    fn fresh(&self, now: Instant) -> std::result::Result<Arc<HashSet<String>>, u64> {
        let mut cached = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let within = |at: Option<Instant>| at.is_some_and(|at| now.saturating_duration_since(at) < REFRESH_AFTER);
        match cached.read_at {
            None => Err(cached.generation),
            Some(read_at) if within(Some(read_at)) || within(cached.refresh_began) => Ok(Arc::clone(&cached.queues)),
            Some(_) => {
                cached.refresh_began = Some(now);
                Err(cached.generation)
            }
        }
    }

    /// Keeps `queues`, read from `read_at` on, unless the names were forgotten since
    /// `generation` was handed out; says whether it kept them.
    fn store(&self, generation: u64, queues: Arc<HashSet<String>>, read_at: Instant) -> bool {
        let mut cached = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.generation != generation {
            return false;
        }
        if cached.read_at.is_some_and(|newer| newer > read_at) {
            // A reading that began later was stored first: keep it.
            return true;
        }
        cached.read_at = Some(read_at);
        cached.queues = queues;
        cached.refresh_began = None;
        true
    }

    /// Forgets the names: the next claims read them again (each of them, until one
    /// stores what it read).
    pub(crate) fn forget(&self) {
        let mut cached = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        cached.read_at = None;
        cached.refresh_began = None;
        cached.generation = cached.generation.wrapping_add(1);
    }
}

impl PostgresStorage {
    /// The limited queues (a concurrency limit, a limit per key, or both), as this
    /// handle knows them (see [`crate::limits`]).
    pub(crate) async fn limited_queues(&self) -> Result<Arc<HashSet<String>>> {
        let cache = &self.inner.limited_queues;
        let mut read = Arc::default();
        for _ in 0..READS {
            let generation = match cache.fresh(Instant::now()) {
                Ok(queues) => return Ok(queues),
                Err(generation) => generation,
            };
            let read_at = Instant::now();
            let queues: Vec<String> = sqlx::query_scalar(self.inner.queries.limited_queues.clone())
                .fetch_all(&self.inner.pool)
                .await
                .map_err(map_sqlx_error)?;
            read = Arc::new(queues.into_iter().collect::<HashSet<_>>());
            if cache.store(generation, Arc::clone(&read), read_at) {
                break;
            }
        }
        // Limits stored through this handle during every reading: the last reading
        // serves this claim (and the guard holds whatever it missed).
        Ok(read)
    }

    /// The limited path of a claim: one transaction that locks the limit rows of the
    /// claim's limited queues, then claims within their caps (`claim_limited.sql`).
    /// Returns the rows and whether the claim statement was slow (see
    /// [`crate::slow`]).
    pub(crate) async fn claim_limited(
        &self,
        params: &ClaimParams,
        starts: &[Option<WalkStart>],
        known: &HashSet<String>,
    ) -> Result<(Vec<PgRow>, bool)> {
        let queries = &self.inner.queries;
        let mut conn = self.inner.pool.acquire().await.map_err(map_sqlx_error)?;
        // The claim statement's snapshot must be taken after the lock (a database or
        // role may default to a stricter level, whose snapshot is the transaction's).
        let mut tx = Connection::begin_with(&mut *conn, BEGIN_LIMITED_CLAIM).await.map_err(map_sqlx_error)?;
        // Inside the transaction, not in its BEGIN: sqlx rolls back only a transaction
        // it saw begin, so a failure here must come after it.
        sqlx::raw_sql(LIMITED_CLAIM_SETTINGS).execute(&mut *tx).await.map_err(map_sqlx_error)?;
        let locked = sqlx::query(queries.lock_queue_limits.clone())
            .bind(&params.queues)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        let mut limited = Vec::with_capacity(locked.len());
        let mut concurrency = Vec::with_capacity(locked.len());
        let mut key_concurrency = Vec::with_capacity(locked.len());
        for row in &locked {
            limited.push(row.try_get::<String, _>("queue").map_err(map_sqlx_error)?);
            concurrency.push(row.try_get::<Option<i32>, _>("concurrency").map_err(map_sqlx_error)?);
            key_concurrency.push(row.try_get::<Option<i32>, _>("key_concurrency").map_err(map_sqlx_error)?);
        }
        let rows = sqlx::query(queries.claim_limited.clone())
            .bind(params.now)
            .bind(&params.queues)
            .bind(crate::backend::limit(params.limit))
            .bind(micros(params.lease))
            .bind(&params.worker_id)
            .bind(starts.iter().map(|start| start.map(|start| start.priority)).collect::<Vec<_>>())
            .bind(starts.iter().map(|start| start.map(|start| start.run_at)).collect::<Vec<_>>())
            .bind(&limited)
            .bind(&concurrency)
            .bind(&key_concurrency)
            .bind(crate::backend::limit(KEY_LIMIT_SCAN))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        tx.commit().await.map_err(map_sqlx_error)?;
        // Limits changed elsewhere since this handle read them: read them again.
        let expected = params.queues.iter().filter(|queue| known.contains(*queue)).collect::<HashSet<_>>();
        if expected != limited.iter().collect::<HashSet<_>>() {
            self.inner.limited_queues.forget();
        }
        // Never judged slow by the unlimited claims' timings (`crate::slow`): this
        // statement also counts running jobs (and looks at up to KEY_LIMIT_SCAN jobs of
        // a key-limited queue), and waits its turn behind the queue's other claims.
        Ok((rows, false))
    }

    /// [`Admin::set_queue_limits`](haul_core::Admin::set_queue_limits).
    pub(crate) async fn store_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        validate_queue_name(queue)?;
        limits.validate()?;
        let concurrency = stored_limit("concurrency limit", limits.concurrency)?;
        let key_concurrency = stored_limit("concurrency limit per key", limits.key_concurrency)?;
        let queries = &self.inner.queries;
        if limits.is_unlimited() {
            sqlx::query(queries.remove_queue_limits.clone())
                .bind(queue)
                .execute(&self.inner.pool)
                .await
                .map_err(map_sqlx_error)?;
        } else {
            let mut tx = self.inner.pool.begin().await.map_err(map_sqlx_error)?;
            // Claims queue behind the table lock while it waits: never for long.
            sqlx::raw_sql(LOCK_TIMEOUT).execute(&mut *tx).await.map_err(map_sqlx_error)?;
            sqlx::query(queries.lock_queue_limits_table.clone()).execute(&mut *tx).await.map_err(|error| {
                if error.as_database_error().and_then(|error| error.code()).as_deref() == Some("55P03") {
                    return Error::backend(
                        "postgres",
                        haul_core::ErrorKind::Timeout,
                        "cannot store the queue's limits now: another transaction has been reading the \
                         queue_limits table for over 2 s; try again",
                        None,
                    );
                }
                map_sqlx_error(error)
            })?;
            sqlx::query(queries.set_queue_limits.clone())
                .bind(queue)
                .bind(concurrency)
                .bind(key_concurrency)
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx_error)?;
            tx.commit().await.map_err(map_sqlx_error)?;
        }
        self.inner.limited_queues.forget();
        Ok(())
    }

    /// [`Admin::queue_limits`](haul_core::Admin::queue_limits).
    pub(crate) async fn stored_queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        let rows = sqlx::query(self.inner.queries.queue_limits.clone())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter().map(decode_limits).collect()
    }
}

/// A limit as the `integer` column stores it (`what` names it in the error).
fn stored_limit(what: &str, limit: Option<u32>) -> Result<Option<i32>> {
    limit
        .map(|limit| {
            i32::try_from(limit)
                .map_err(|_| Error::InvalidArgument(format!("a queue's {what} must be at most {}", i32::MAX).into()))
        })
        .transpose()
}

/// Decodes a row of `queue_limits.sql` (`queue`, `concurrency`, `key_concurrency`).
fn decode_limits(row: &PgRow) -> Result<QueueLimitsRecord> {
    let queue: String = row.try_get("queue").map_err(map_sqlx_error)?;
    let mut limits = QueueLimits::new();
    if let Some(concurrency) = decode_limit(row, &queue, "concurrency")? {
        limits = limits.concurrency(concurrency);
    }
    if let Some(key_concurrency) = decode_limit(row, &queue, "key_concurrency")? {
        limits = limits.key_concurrency(key_concurrency);
    }
    Ok(QueueLimitsRecord::new(queue, limits))
}

/// Decodes the limit column `column` of `queue`'s row: NULL, or a positive `integer`.
fn decode_limit(row: &PgRow, queue: &str, column: &str) -> Result<Option<u32>> {
    let limit: Option<i32> = row.try_get(column).map_err(map_sqlx_error)?;
    limit
        .map(|limit| {
            u32::try_from(limit)
                .map_err(|_| crate::error::corrupt(format!("queue `{queue}` has a `{column}` of {limit}")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Arc<HashSet<String>> {
        Arc::new(names.iter().map(|name| (*name).to_owned()).collect())
    }

    #[test]
    fn the_names_are_read_again_once_stale() {
        let cache = LimitedQueues::default();
        let now = Instant::now();
        let generation = cache.fresh(now).expect_err("never read");
        assert!(cache.store(generation, names(&["a"]), now));
        assert_eq!(cache.fresh(now + REFRESH_AFTER / 2).expect("fresh"), names(&["a"]));
        assert!(cache.fresh(now + REFRESH_AFTER).is_err(), "stale after REFRESH_AFTER");
    }

    #[test]
    fn one_claim_reads_stale_names_again_while_the_others_keep_them() {
        let cache = LimitedQueues::default();
        let now = Instant::now();
        let generation = cache.fresh(now).expect_err("never read");
        assert!(cache.store(generation, names(&["a"]), now));
        let stale = now + REFRESH_AFTER;
        let generation = cache.fresh(stale).expect_err("the first claim after the names went stale reads them");
        assert_eq!(cache.fresh(stale).expect("kept"), names(&["a"]), "the others keep the stale names meanwhile");
        assert!(cache.fresh(stale + REFRESH_AFTER).is_err(), "a reading that never ends is given up on");
        assert!(cache.store(generation, names(&["b"]), stale));
        assert_eq!(cache.fresh(stale).expect("fresh"), names(&["b"]));
    }

    #[test]
    fn forgetting_drops_the_names_and_a_reading_that_began_before() {
        let cache = LimitedQueues::default();
        let now = Instant::now();
        let generation = cache.fresh(now).expect_err("never read");
        assert!(cache.store(generation, names(&[]), now));
        cache.forget();
        let stale = cache.fresh(now).expect_err("forgotten");
        cache.forget();
        assert!(!cache.store(stale, names(&[]), now), "a reading begun before the last forget is not kept");
        let generation = cache.fresh(now).expect_err("still forgotten");
        assert!(cache.store(generation, names(&["a"]), now));
        assert_eq!(cache.fresh(now).expect("fresh"), names(&["a"]));
    }
}
