//! Queue limits ([`haul_core::limits`]): storing them, and the claims of limited queues.
//!
//! Limits live in `<schema>.queue_limits` (migrations 0010, 0011 and 0012), one row
//! per limited queue: a queue with a concurrency limit, a limit per key, a rate, a rate
//! per key, or several (a row always sets one of them). A claim takes one of two paths:
//!
//! - **Unlimited** (none of its queues is limited, as far as this storage handle
//!   knows): the one claim statement (`claim.sql`, `claim_one_queue.sql`), as fast as
//!   without limits. Its guard, evaluated once per statement, makes it claim nothing
//!   when one of its queues has a row, whatever the handle believed.
//! - **Limited**: one short transaction of two statements (three for a short claim
//!   of a queue with a rate, see below). `lock_queue_limits.sql`
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
//! Rates (migration 0012): a queue with a rate or a rate per key is a limited queue,
//! and its claims take the limited path, whose row lock serializes them as it does
//! for the concurrency limits. `claim_limited.sql` counts each rate scope's starts
//! within the period (`rate_limit_starts`, on the snapshot taken after the lock),
//! takes at most what the rates allow, records a start per claimed job at the claim's
//! time, and deletes the starts of the scopes it touched that left their period;
//! `prune_rate_starts.sql`, part of each prune, deletes the rest (scopes never claimed
//! again, and those of a removed rate). When the claim came back short (a full claim
//! leaves the wait unset), a third statement,
//! `rate_limited_for.sql`, still under the lock, reads how long until a full scope
//! lets one more start ([`haul_core::PacedClaim::rate_limited_for`]). A claim of
//! queues without a rate runs no more statements than before, and no scan of the
//! start log runs in its plan.
//!
//! Storing limits first locks the table (`lock_queue_limits_table.sql`), which waits
//! for the unlimited claims in flight: a claim that began before its queue became
//! limited cannot commit after a limited claim counted the queue's running jobs.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use haul_core::{
    ClaimParams, Error, KEY_LIMIT_SCAN, QueueLimits, QueueLimitsRecord, RateLimit, Result, Timestamp,
    validate_queue_name,
};
use sqlx::{Connection, Row, postgres::PgRow};

use crate::{PostgresStorage, backend::ClaimRun, error::map_sqlx_error, row::micros};

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
    /// Deletes at most `limit` starts no rate limit counts any more
    /// (`prune_rate_starts.sql`): part of [`Storage::prune`], which counts only the
    /// jobs it deletes. A failure is logged, not returned, so the count of the jobs
    /// already deleted is not lost; the next prune tries again.
    ///
    /// [`Storage::prune`]: haul_core::Storage::prune
    pub(crate) async fn prune_rate_starts(&self, now: Option<Timestamp>, limit: usize) {
        let pruned = sqlx::query(self.inner.queries.prune_rate_starts.clone())
            .bind(now)
            .bind(crate::backend::limit(limit))
            .execute(&self.inner.pool)
            .await;
        if let Err(error) = pruned {
            tracing::warn!(%error, "pruning the starts of rate limits failed; the next prune tries again");
        }
    }

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
    /// claim's limited queues, then claims within their caps and rates
    /// (`claim_limited.sql`), then, when the claim came back short and one of them has
    /// a rate, reads how long until a rate that held a job back lets one more start
    /// (`rate_limited_for.sql`). Its statement is not timed (see
    /// [`crate::claim_start`]).
    pub(crate) async fn claim_limited(&self, params: &ClaimParams, known: &HashSet<String>) -> Result<ClaimRun> {
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
        let locked = locked.iter().map(LockedRow::decode).collect::<Result<Vec<_>>>()?;
        let limits = LockedLimits::of(&locked);
        // Sent now: the lock may have waited for other claims of these queues.
        let (starts, time) = self.inner.claim_starts.begin(&params.queues, params.now);
        let rows = sqlx::query(queries.claim_limited.clone())
            .bind(params.now)
            .bind(&params.queues)
            .bind(crate::backend::limit(params.limit))
            .bind(micros(params.lease))
            .bind(&params.worker_id)
            .bind(starts.iter().map(|start| start.map(|start| start.priority)).collect::<Vec<_>>())
            .bind(starts.iter().map(|start| start.map(|start| start.run_at)).collect::<Vec<_>>())
            .bind(&limits.queues)
            .bind(&limits.concurrency)
            .bind(&limits.key_concurrency)
            .bind(crate::backend::limit(KEY_LIMIT_SCAN))
            .bind(&limits.rate_starts)
            .bind(&limits.rate_period_ms)
            .bind(&limits.key_rate_starts)
            .bind(&limits.key_rate_period_ms)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        // Only a short claim has room for a job a rate held back (a full claim may
        // leave `rate_limited_for` unset: its claimer claims again as soon as it can).
        let rate_limited_for = if rows.len() < params.limit && locked.iter().any(LockedRow::has_rate) {
            self.rate_limited_for(&mut tx, params, &locked).await?
        } else {
            None
        };
        tx.commit().await.map_err(map_sqlx_error)?;
        // Limits changed elsewhere since this handle read them: read them again.
        let expected = params.queues.iter().filter(|queue| known.contains(*queue)).collect::<HashSet<_>>();
        if expected != limits.queues.iter().collect::<HashSet<_>>() {
            self.inner.limited_queues.forget();
        }
        Ok(ClaimRun { rows, starts, time, statement_time: None, rate_limited_for })
    }

    /// `rate_limited_for.sql`, in the limited claim's transaction, for the claim's
    /// queues with a rate (of `locked`).
    async fn rate_limited_for(
        &self,
        tx: &mut sqlx::PgConnection,
        params: &ClaimParams,
        locked: &[LockedRow],
    ) -> Result<Option<Duration>> {
        let rated = LockedLimits::of(locked.iter().filter(|row| row.has_rate()));
        let wait: Option<i64> = sqlx::query_scalar(self.inner.queries.rate_limited_for.clone())
            .bind(params.now)
            .bind(&rated.queues)
            .bind(&rated.concurrency)
            .bind(&rated.key_concurrency)
            .bind(&rated.rate_starts)
            .bind(&rated.rate_period_ms)
            .bind(&rated.key_rate_starts)
            .bind(&rated.key_rate_period_ms)
            .bind(crate::backend::limit(KEY_LIMIT_SCAN))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        Ok(wait.map(|micros| Duration::from_micros(u64::try_from(micros).unwrap_or(0))))
    }

    /// [`Admin::set_queue_limits`](haul_core::Admin::set_queue_limits).
    pub(crate) async fn store_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        validate_queue_name(queue)?;
        limits.validate()?;
        let concurrency = stored_limit("concurrency limit", limits.concurrency)?;
        let key_concurrency = stored_limit("concurrency limit per key", limits.key_concurrency)?;
        let (rate_starts, rate_period_ms) = stored_rate(limits.rate);
        let (key_rate_starts, key_rate_period_ms) = stored_rate(limits.key_rate);
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
                .bind(rate_starts)
                .bind(rate_period_ms)
                .bind(key_rate_starts)
                .bind(key_rate_period_ms)
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

/// A rate as its columns store it: its starts and its period in milliseconds (both
/// within range once [`QueueLimits::validate`] passed).
fn stored_rate(rate: Option<RateLimit>) -> (Option<i32>, Option<i64>) {
    match rate {
        Some(rate) => (
            Some(i32::try_from(rate.starts).unwrap_or(i32::MAX)),
            Some(i64::try_from(rate.period_millis()).unwrap_or(i64::MAX)),
        ),
        None => (None, None),
    }
}

/// Decodes the rate columns `starts` and `period_ms` of `queue`'s row: both NULL, or a
/// positive count and a positive period.
fn decode_rate(row: &PgRow, queue: &str, starts: &str, period_ms: &str) -> Result<Option<RateLimit>> {
    let count = decode_limit(row, queue, starts)?;
    let period: Option<i64> = row.try_get(period_ms).map_err(map_sqlx_error)?;
    match (count, period) {
        (None, None) => Ok(None),
        (Some(count), Some(period)) if period > 0 => {
            Ok(Some(RateLimit::new(count, Duration::from_millis(period.unsigned_abs()))))
        }
        _ => Err(crate::error::corrupt(format!("queue `{queue}` has a `{starts}` and `{period_ms}` that disagree"))),
    }
}

/// The limits of one of a limited claim's queues, as `lock_queue_limits.sql` read and
/// locked them (NULL: that limit is not set).
#[derive(Clone, Debug)]
struct LockedRow {
    queue: String,
    concurrency: Option<i32>,
    key_concurrency: Option<i32>,
    rate_starts: Option<i32>,
    rate_period_ms: Option<i64>,
    key_rate_starts: Option<i32>,
    key_rate_period_ms: Option<i64>,
}

impl LockedRow {
    fn decode(row: &PgRow) -> Result<Self> {
        let column = |name: &str| row.try_get(name).map_err(map_sqlx_error);
        Ok(Self {
            queue: row.try_get("queue").map_err(map_sqlx_error)?,
            concurrency: column("concurrency")?,
            key_concurrency: column("key_concurrency")?,
            rate_starts: column("rate_starts")?,
            rate_period_ms: row.try_get("rate_period_ms").map_err(map_sqlx_error)?,
            key_rate_starts: column("key_rate_starts")?,
            key_rate_period_ms: row.try_get("key_rate_period_ms").map_err(map_sqlx_error)?,
        })
    }

    /// Whether the queue has a rate or a rate per key.
    fn has_rate(&self) -> bool {
        self.rate_starts.is_some() || self.key_rate_starts.is_some()
    }
}

/// The limits of a limited claim's queues, as bound to its statements: one array per
/// column, one entry per queue.
#[derive(Debug, Default)]
struct LockedLimits {
    queues: Vec<String>,
    concurrency: Vec<Option<i32>>,
    key_concurrency: Vec<Option<i32>>,
    rate_starts: Vec<Option<i32>>,
    rate_period_ms: Vec<Option<i64>>,
    key_rate_starts: Vec<Option<i32>>,
    key_rate_period_ms: Vec<Option<i64>>,
}

impl LockedLimits {
    fn of<'a>(rows: impl IntoIterator<Item = &'a LockedRow>) -> Self {
        let mut limits = Self::default();
        for row in rows {
            limits.queues.push(row.queue.clone());
            limits.concurrency.push(row.concurrency);
            limits.key_concurrency.push(row.key_concurrency);
            limits.rate_starts.push(row.rate_starts);
            limits.rate_period_ms.push(row.rate_period_ms);
            limits.key_rate_starts.push(row.key_rate_starts);
            limits.key_rate_period_ms.push(row.key_rate_period_ms);
        }
        limits
    }
}

/// Decodes a row of `queue_limits.sql` (`queue`, `concurrency`, `key_concurrency` and
/// the rate columns).
fn decode_limits(row: &PgRow) -> Result<QueueLimitsRecord> {
    let queue: String = row.try_get("queue").map_err(map_sqlx_error)?;
    let mut limits = QueueLimits::new();
    if let Some(concurrency) = decode_limit(row, &queue, "concurrency")? {
        limits = limits.concurrency(concurrency);
    }
    if let Some(key_concurrency) = decode_limit(row, &queue, "key_concurrency")? {
        limits = limits.key_concurrency(key_concurrency);
    }
    if let Some(rate) = decode_rate(row, &queue, "rate_starts", "rate_period_ms")? {
        limits = limits.rate(rate);
    }
    if let Some(key_rate) = decode_rate(row, &queue, "key_rate_starts", "key_rate_period_ms")? {
        limits = limits.key_rate(key_rate);
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
