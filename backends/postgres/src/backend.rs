//! The [`Storage`] implementation: each operation is one statement from `queries/`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::PoisonError,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use haul_core::{
    Admin, AdminAction, Claim, ClaimParams, EnqueueOutcome, EnqueueParams, Error, HeartbeatOutcome, HeartbeatParams,
    JobFilter, JobId, JobOutcome, JobRecord, Leadership, LeadershipParams, LeaseToken, ListParams, PacedClaim,
    PeriodicRecord, PeriodicUpdate, PruneParams, QueueCounts, QueueLimits, QueueLimitsRecord, ReportOutcome,
    ReportParams, RescueOutcome, Result, Storage, ThroughputSample, Timestamp, Wakeups, WorkerBeat, WorkerRecord,
    storable_text, validate_queue_name,
};
use sqlx::{AssertSqlSafe, Row, SqlStr, postgres::PgRow};
use uuid::Uuid;

use crate::{
    BACKEND, PostgresStorage,
    claim_start::{ClaimTime, WalkStart},
    error::map_sqlx_error,
    listen::Listener,
    row::{decode_leadership, decode_record, decode_worker, micros, parse_state},
    storage::WakeUp,
};

fn count(row: &PgRow, column: &str) -> Result<u64> {
    let value: i64 = row.try_get(column).map_err(map_sqlx_error)?;
    Ok(u64::try_from(value).unwrap_or(0))
}

pub(crate) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The outcome of a cancel or retry statement: `None` when the job does not exist,
/// else its state before the statement and its record if the statement changed it.
fn decode_change(row: Option<PgRow>) -> Result<Option<(haul_core::JobState, Option<JobRecord>)>> {
    let Some(row) = row else { return Ok(None) };
    let previous: String = row.try_get("previous_state").map_err(map_sqlx_error)?;
    let previous = parse_state(&previous)?;
    let changed: Option<Uuid> = row.try_get("id").map_err(map_sqlx_error)?;
    let record = match changed {
        Some(_) => Some(decode_record(&row)?),
        None => None,
    };
    Ok(Some((previous, record)))
}

/// Decodes a row of the periodic table (`name`, `spec`, `last_tick`, `next_tick`,
/// `updated_at`).
fn decode_periodic(row: &PgRow) -> Result<PeriodicRecord> {
    let name: String = row.try_get("name").map_err(map_sqlx_error)?;
    let spec: String = row.try_get("spec").map_err(map_sqlx_error)?;
    let updated_at: Timestamp = row.try_get("updated_at").map_err(map_sqlx_error)?;
    let last_tick = row.try_get("last_tick").map_err(map_sqlx_error)?;
    let next_tick = row.try_get("next_tick").map_err(map_sqlx_error)?;
    Ok(PeriodicRecord::new(name, spec, last_tick, next_tick, updated_at))
}

impl PostgresStorage {
    /// Runs an operator's change of one job (`queries/cancel.sql`, `queries/retry.sql`:
    /// bound to the id and the clock, returning the job's `previous_state` and, when it
    /// changed, the job): the changed job, [`Error::NotFound`], or [`Error::InvalidState`]
    /// naming `operation` and the states it `expected`.
    async fn change_one(
        &self,
        query: SqlStr,
        id: JobId,
        now: Option<Timestamp>,
        operation: &'static str,
        expected: &'static str,
    ) -> Result<JobRecord> {
        let row =
            sqlx::query(query).bind(id.0).bind(now).fetch_optional(&self.inner.pool).await.map_err(map_sqlx_error)?;
        match decode_change(row)? {
            None => Err(Error::NotFound(id)),
            Some((_, Some(record))) => Ok(record),
            Some((state, None)) => Err(Error::InvalidState { id, state, operation, expected }),
        }
    }

    /// One claim statement, on the limited path (see [`crate::limits`]) when one of the
    /// claim's queues is in `limited`, else the unlimited one; its jobs in claim order,
    /// learned from by the claim starts (see [`crate::claim_start`]). The limited path's
    /// walks are never timed: its statement also counts running jobs (and looks at up to
    /// `KEY_LIMIT_SCAN` jobs of a key-limited queue) and waits its turn behind the
    /// queue's other claims.
    async fn claim_once(&self, params: &ClaimParams, limited: &HashSet<String>) -> Result<(Vec<JobRecord>, ClaimRun)> {
        let run = if params.queues.iter().any(|queue| limited.contains(queue)) {
            self.claim_limited(params, limited).await?
        } else {
            self.claim_unlimited(params).await?
        };
        let mut records = run.rows.iter().map(decode_record).collect::<Result<Vec<_>>>()?;
        records.sort_by_key(|record| (record.priority, record.run_at, record.id));
        let claim_starts = &self.inner.claim_starts;
        let slow = claim_starts.is_slow(run.statement_time, records.len());
        claim_starts.record(&params.queues, &run.starts, &records, slow, run.time);
        Ok((records, run))
    }

    /// The unlimited path of a claim: one statement (`claim_one_queue.sql` for one
    /// queue, `claim.sql` otherwise), whose guard claims nothing from a limited queue.
    async fn claim_unlimited(&self, params: &ClaimParams) -> Result<ClaimRun> {
        let queries = &self.inner.queries;
        let mut conn = self.inner.pool.acquire().await.map_err(map_sqlx_error)?;
        let (starts, time) = self.inner.claim_starts.begin(&params.queues, params.now);
        let query = match (params.queues.as_slice(), starts.as_slice()) {
            ([queue], [start]) => sqlx::query(queries.claim_one_queue.clone())
                .bind(params.now)
                .bind(queue)
                .bind(limit(params.limit))
                .bind(micros(params.lease))
                .bind(&params.worker_id)
                .bind(start.map(|start| start.priority))
                .bind(start.map(|start| start.run_at)),
            (queues, starts) => sqlx::query(queries.claim.clone())
                .bind(params.now)
                .bind(queues)
                .bind(limit(params.limit))
                .bind(micros(params.lease))
                .bind(&params.worker_id)
                .bind(starts.iter().map(|start| start.map(|start| start.priority)).collect::<Vec<_>>())
                .bind(starts.iter().map(|start| start.map(|start| start.run_at)).collect::<Vec<_>>()),
        };
        let rows = query.fetch_all(&mut *conn).await.map_err(map_sqlx_error)?;
        let statement_time = statement_time(&rows)?;
        Ok(ClaimRun { rows, starts, time, statement_time, rate_limited_for: None })
    }
}

/// What a claim's statement returned, and how it walked (see [`crate::claim_start`]).
pub(crate) struct ClaimRun {
    pub(crate) rows: Vec<PgRow>,
    /// Where it started in each of its queues.
    pub(crate) starts: Vec<Option<WalkStart>>,
    /// When it was sent.
    pub(crate) time: ClaimTime,
    /// How long its statement ran on the server (`None`: not timed).
    pub(crate) statement_time: Option<Duration>,
    /// How long until a rate limit that held a job back lets one more start.
    pub(crate) rate_limited_for: Option<Duration>,
}

impl PostgresStorage {
    /// `ANALYZE (SKIP_LOCKED)` of the jobs table (skipped while autovacuum or another
    /// ANALYZE holds it). Fresh statistics make the planner cost the table as it is, and
    /// an ANALYZE makes every connection plan its prepared statements again: a cached
    /// plan made while the table was nearly empty (a sequential scan is the cheapest plan
    /// for a few pages) would otherwise scan the grown table on every claim and outcome
    /// batch until autovacuum analyzes it. Nothing is sent to any connection's session.
    ///
    /// A failure (a statement timeout on a large table, say) is logged, never returned:
    /// the promotion it follows has committed. The next attempt waits
    /// [`ANALYZE_RETRY_AFTER`].
    async fn analyze_jobs(&self) {
        let failed_at = &self.inner.analyze_failed_at;
        let recently_failed = failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < ANALYZE_RETRY_AFTER);
        if recently_failed {
            return;
        }
        let schema = &self.inner.schema;
        tracing::debug!(%schema, "the jobs table has more than doubled since its statistics; analyzing it");
        let analyze = format!("ANALYZE (SKIP_LOCKED) \"{schema}\".jobs");
        if let Err(error) = sqlx::raw_sql(AssertSqlSafe(analyze)).execute(&self.inner.pool).await {
            tracing::warn!(%schema, %error, "cannot analyze the jobs table; trying again in a minute");
            *failed_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

/// How long after a failed ANALYZE of the jobs table the next one waits.
const ANALYZE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How long a claim statement ran on the server: the largest `statement_us` of its rows
/// (`queries/claim_update.sql`); `None` when it returned no row.
fn statement_time(rows: &[PgRow]) -> Result<Option<Duration>> {
    let mut longest = None;
    for row in rows {
        let micros: i64 = row.try_get("statement_us").map_err(map_sqlx_error)?;
        let time = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        longest = longest.max(Some(time));
    }
    Ok(longest)
}

impl PostgresStorage {
    /// One statement of `report.sql` applying `outcomes`: the claims it applied.
    async fn report_statement<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        now: Option<Timestamp>,
        outcomes: &[OutcomeParams<'_>],
        delete_completed: bool,
    ) -> Result<HashSet<Claim>> {
        let ids: Vec<Uuid> = outcomes.iter().map(|outcome| outcome.id).collect();
        let tokens: Vec<Uuid> = outcomes.iter().map(|outcome| outcome.token).collect();
        let names: Vec<&str> = outcomes.iter().map(|outcome| outcome.outcome).collect();
        let messages: Vec<Option<&str>> = outcomes.iter().map(|outcome| outcome.message.as_deref()).collect();
        let delays: Vec<Option<i64>> = outcomes.iter().map(|outcome| outcome.delay_us).collect();
        let rows = sqlx::query(self.inner.queries.report.clone())
            .bind(now)
            .bind(&ids)
            .bind(&tokens)
            .bind(&names)
            .bind(&messages)
            .bind(&delays)
            .bind(delete_completed)
            .fetch_all(executor)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter()
            .map(|row| {
                let id = row.try_get::<Uuid, _>("id").map_err(map_sqlx_error)?;
                let token = row.try_get::<Uuid, _>("token").map_err(map_sqlx_error)?;
                Ok(Claim { id: JobId(id), token: LeaseToken(token) })
            })
            .collect()
    }
}

/// One outcome as `report.sql` takes it.
struct OutcomeParams<'a> {
    id: Uuid,
    token: Uuid,
    outcome: &'static str,
    message: Option<std::borrow::Cow<'a, str>>,
    delay_us: Option<i64>,
}

impl<'a> OutcomeParams<'a> {
    fn of(report: &'a haul_core::Report) -> Result<Self> {
        let (outcome, message, delay_us) = match &report.outcome {
            JobOutcome::Completed => ("completed", None, None),
            // PostgreSQL cannot store NUL in text or jsonb.
            JobOutcome::Failed { error, retry_in } => ("failed", Some(storable_text(error)), Some(micros(*retry_in))),
            JobOutcome::Discarded { reason } => ("discarded", Some(storable_text(reason)), None),
            JobOutcome::Cancelled => ("cancelled", None, None),
            JobOutcome::Snoozed { delay } => ("snoozed", None, Some(micros(*delay))),
            other => return Err(Error::InvalidArgument(format!("unsupported job outcome {other:?}").into())),
        };
        Ok(Self { id: report.claim.id.0, token: report.claim.token.0, outcome, message, delay_us })
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn enqueue(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        let inserted = self.insert(&self.inner.pool, params, WakeUp::AfterCommit).await?;
        self.wake_after_commit(inserted.available);
        Ok(inserted.outcome)
    }

    /// [`Storage::claim_paced`]'s jobs.
    async fn claim(&self, params: ClaimParams) -> Result<Vec<JobRecord>> {
        Ok(self.claim_paced(params).await?.jobs)
    }

    /// The claim (see [`crate::limits`] for its two paths). Only the limited path of a
    /// claim with a rate-limited queue can say how long a rate holds jobs back.
    async fn claim_paced(&self, params: ClaimParams) -> Result<PacedClaim> {
        if params.limit == 0 || params.queues.is_empty() {
            return Ok(PacedClaim::default());
        }
        let limited = self.limited_queues().await?;
        let (records, run) = self.claim_once(&params, &limited).await?;
        if records.is_empty() && run.starts.iter().any(Option::is_some) {
            // The resumed walks found nothing after their starts, which ended their
            // resumptions: what is left sorts before them. Walk from the beginning now
            // rather than leave the claimer idle until its next wake-up.
            let (records, run) = self.claim_once(&params, &limited).await?;
            return Ok(PacedClaim::new(records).rate_limited_for(run.rate_limited_for));
        }
        Ok(PacedClaim::new(records).rate_limited_for(run.rate_limited_for))
    }

    async fn report(&self, params: ReportParams) -> Result<ReportOutcome> {
        let mut seen = HashSet::new();
        let mut outcomes = Vec::with_capacity(params.reports.len());
        for report in &params.reports {
            // A second outcome of the same claim in one batch finds the claim already spent.
            // Two claims of one job (an old, lost one and a new one) both go in: only the
            // one whose token the job holds matches.
            if seen.insert(report.claim) {
                outcomes.push(OutcomeParams::of(report)?);
            }
        }
        // report.sql locks the rows in id order itself.
        let applied_claims = if outcomes.is_empty() {
            HashSet::new()
        } else {
            self.report_statement(&self.inner.pool, params.now, &outcomes, params.delete_completed).await?
        };
        let mut applied = Vec::new();
        let mut rejected = Vec::new();
        let mut seen = HashSet::new();
        for report in &params.reports {
            let claim = report.claim;
            if seen.insert(claim) && applied_claims.contains(&claim) {
                applied.push(claim);
            } else {
                rejected.push(claim);
            }
        }
        Ok(ReportOutcome::new(applied, rejected))
    }

    async fn heartbeat(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        if params.claims.is_empty() {
            return Ok(HeartbeatOutcome::default());
        }
        let mut seen = HashSet::new();
        let claims: Vec<Claim> = params.claims.iter().copied().filter(|claim| seen.insert(*claim)).collect();
        let ids: Vec<Uuid> = claims.iter().map(|claim| claim.id.0).collect();
        let tokens: Vec<Uuid> = claims.iter().map(|claim| claim.token.0).collect();
        let rows = sqlx::query(self.inner.queries.heartbeat.clone())
            .bind(params.now)
            .bind(&ids)
            .bind(&tokens)
            .bind(micros(params.lease))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        let mut held = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: Uuid = row.try_get("id").map_err(map_sqlx_error)?;
            let token: Uuid = row.try_get("token").map_err(map_sqlx_error)?;
            let cancel_requested: bool = row.try_get("cancel_requested").map_err(map_sqlx_error)?;
            held.insert(Claim { id: JobId(id), token: LeaseToken(token) }, cancel_requested);
        }
        let mut outcome = HeartbeatOutcome::default();
        for claim in claims {
            match held.get(&claim) {
                Some(cancel_requested) => {
                    outcome.extended.push(claim);
                    if *cancel_requested {
                        outcome.cancelled.push(claim);
                    }
                }
                None => outcome.lost.push(claim),
            }
        }
        Ok(outcome)
    }

    /// Also analyzes the jobs table when it has more than doubled since its statistics
    /// were taken (see [`PostgresStorage::analyze_jobs`]): the leader promotes once per
    /// maintenance pass, so that is how often the size is checked.
    async fn promote_due(&self, now: Option<Timestamp>) -> Result<u64> {
        let row = sqlx::query(self.inner.queries.promote_due.clone())
            .bind(now)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        let statistics_stale: Option<bool> = row.try_get("statistics_stale").map_err(map_sqlx_error)?;
        if statistics_stale == Some(true) {
            self.analyze_jobs().await;
        }
        count(&row, "promoted")
    }

    async fn rescue_expired(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        let row = sqlx::query(self.inner.queries.rescue_expired.clone())
            .bind(now)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(RescueOutcome::new(count(&row, "rescued")?, count(&row, "discarded")?, count(&row, "cancelled")?))
    }

    async fn prune(&self, params: PruneParams) -> Result<u64> {
        if params.limit == 0 {
            return Ok(0);
        }
        let retention = params.retention;
        let result = sqlx::query(self.inner.queries.prune.clone())
            .bind(params.now)
            .bind(micros(retention.completed))
            .bind(micros(retention.discarded))
            .bind(micros(retention.cancelled))
            .bind(limit(params.limit))
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        self.prune_rate_starts(params.now, params.limit).await;
        Ok(result.rows_affected())
    }

    async fn subscribe(&self) -> Result<Wakeups> {
        let mut listener = self.inner.listener.lock().await;
        if let Some(listener) = listener.as_ref() {
            return Ok(listener.sender().subscribe());
        }
        let options = (*self.inner.pool.connect_options()).clone();
        let started = Listener::start(options, self.inner.channel.clone()).await?;
        let wakeups = started.sender().subscribe();
        // Set once: the listener, once started, is kept for the storage's life.
        let _ = self.inner.local_wakeups.set(started.sender().clone());
        *listener = Some(started);
        Ok(wakeups)
    }

    /// One statement: upserts the worker's row, and deletes the rows of other workers
    /// expired for over an hour (`queries/beat_worker.sql`).
    async fn beat_worker(&self, beat: WorkerBeat) -> Result<()> {
        sqlx::query(self.inner.queries.beat_worker.clone())
            .bind(beat.now)
            .bind(&beat.id)
            .bind(&beat.host)
            .bind(i64::from(beat.pid))
            .bind(&beat.queues)
            .bind(i64::from(beat.concurrency))
            .bind(i64::from(beat.held))
            .bind(beat.started_at)
            .bind(micros(beat.ttl))
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        sqlx::query(self.inner.queries.remove_worker.clone())
            .bind(id)
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    /// One `INSERT … ON CONFLICT DO UPDATE … WHERE` on the single-row leader table
    /// (`queries/acquire_leadership.sql`): atomic without a session lock.
    async fn acquire_leadership(&self, params: LeadershipParams) -> Result<Option<Leadership>> {
        let row = sqlx::query(self.inner.queries.acquire_leadership.clone())
            .bind(params.now)
            .bind(&params.worker_id)
            .bind(micros(params.ttl))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        row.as_ref().map(decode_leadership).transpose()
    }

    async fn release_leadership(&self, worker_id: &str, term: u64) -> Result<()> {
        // No stored term exceeds i64::MAX: such a term holds nothing to release.
        let Ok(term) = i64::try_from(term) else { return Ok(()) };
        sqlx::query(self.inner.queries.release_leadership.clone())
            .bind(worker_id)
            .bind(term)
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    /// One `INSERT … ON CONFLICT DO UPDATE … WHERE` (`queries/save_periodic.sql`):
    /// atomic per record, and a stale update (an earlier last tick) changes nothing.
    /// PostgreSQL cannot store NUL in `text`: a spec holding one is stored with U+FFFD
    /// in its place ([`storable_text`]).
    async fn save_periodic(&self, update: PeriodicUpdate) -> Result<()> {
        sqlx::query(self.inner.queries.save_periodic.clone())
            .bind(update.now)
            .bind(&update.name)
            .bind(storable_text(&update.spec).as_ref())
            .bind(update.last_tick)
            .bind(update.next_tick)
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    /// One statement (`queries/record_throughput.sql`), after every sample's queue is
    /// checked: adds the samples to the stored counts (rows locked in queue, minute
    /// order, so concurrent workers cannot deadlock) and deletes the rows older than
    /// [`haul_core::THROUGHPUT_RETENTION`] before `now`, skipping rows another
    /// transaction holds. No samples: no round trip.
    async fn record_throughput(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        self.add_throughput(samples, now).await
    }

    /// [`PostgresStorage::migrate`]: creates the schema and applies the embedded
    /// migrations it lacks, under sqlx's advisory lock (so concurrent calls are safe).
    async fn migrate(&self) -> Result<()> {
        PostgresStorage::migrate(self).await
    }

    /// Checks that `<schema>._sqlx_migrations` records every migration this build
    /// embeds as applied; otherwise (no schema, no table, or missing versions) fails
    /// with [`Error::StorageNotReady`] naming the schema, what it lacks, and the fix
    /// (call `storage.migrate()` once, or connect with `?migrate=true`). Versions that
    /// this build does not know, applied by a newer haul, are accepted as long as every
    /// version of this build is applied too.
    async fn check_ready(&self) -> Result<()> {
        self.check_migrated().await
    }
}

#[async_trait]
impl Admin for PostgresStorage {
    /// One statement (`queries/delete.sql`): the row is locked, then deleted unless it
    /// is running, so a job claimed meanwhile is kept and reported running.
    async fn delete(&self, id: JobId) -> Result<()> {
        let row = sqlx::query(self.inner.queries.delete.clone())
            .bind(id.0)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        let Some(row) = row else { return Err(Error::NotFound(id)) };
        let deleted: Option<Uuid> = row.try_get("deleted").map_err(map_sqlx_error)?;
        if deleted.is_some() {
            return Ok(());
        }
        let state: String = row.try_get("previous_state").map_err(map_sqlx_error)?;
        Err(Error::InvalidState {
            id,
            state: parse_state(&state)?,
            operation: "delete",
            expected: "scheduled, available, retryable, completed, discarded or cancelled",
        })
    }

    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        let query = self.inner.queries.cancel.clone();
        self.change_one(query, id, now, "cancel", "scheduled, available, retryable or running").await
    }

    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        let query = self.inner.queries.retry.clone();
        self.change_one(query, id, now, "retry", "scheduled, available, retryable, completed, discarded or cancelled")
            .await
    }

    async fn pause_queue(&self, queue: &str) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(self.inner.queries.pause_queue.clone())
            .bind(queue)
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    async fn resume_queue(&self, queue: &str) -> Result<()> {
        validate_queue_name(queue)?;
        sqlx::query(self.inner.queries.resume_queue.clone())
            .bind(queue)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    /// Validates, then removes the queue's row (unlimited limits) or, in one
    /// transaction, locks the limits table (waiting for the claims in flight) and
    /// upserts it. This storage's next claim obeys the limits; other processes' within
    /// a second, their claims of the queue coming back empty meanwhile (see *Queue
    /// limits* in the crate docs).
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        self.store_queue_limits(queue, limits).await
    }

    /// One statement (`queries/queue_limits.sql`).
    async fn queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        self.stored_queue_limits().await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let row = sqlx::query(self.inner.queries.get.clone())
            .bind(id.0)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        row.as_ref().map(decode_record).transpose()
    }

    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        let filter = &params.filter;
        if let Some(queue) = &filter.queue {
            validate_queue_name(queue)?;
        }
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        let states: Vec<&str> = filter.states.iter().map(|state| state.as_str()).collect();
        let rows = sqlx::query(self.inner.queries.list.clone())
            .bind(filter.queue.as_deref())
            .bind(&states)
            .bind(filter.kind.as_deref())
            .bind(filter.created_from)
            .bind(filter.created_until)
            .bind(params.after.map(|id| id.0))
            .bind(limit(params.limit))
            // Unprepared: planned with the parameters' values (see matching_ids.sql).
            .persistent(false)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter().map(decode_record).collect()
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        let rows =
            sqlx::query(self.inner.queries.counts.clone()).fetch_all(&self.inner.pool).await.map_err(map_sqlx_error)?;
        let mut queues: BTreeMap<String, QueueCounts> = BTreeMap::new();
        for row in &rows {
            let queue: String = row.try_get("queue").map_err(map_sqlx_error)?;
            let state: Option<String> = row.try_get("state").map_err(map_sqlx_error)?;
            let paused: bool = row.try_get("paused").map_err(map_sqlx_error)?;
            let jobs = count(row, "jobs")?;
            let head: Option<Timestamp> = row.try_get("next_available_at").map_err(map_sqlx_error)?;
            let entry = queues.entry(queue.clone()).or_insert_with(|| QueueCounts::new(queue, false, BTreeMap::new()));
            entry.paused |= paused;
            if head.is_some() {
                entry.next_available_at = head;
            }
            if let Some(state) = state
                && jobs > 0
            {
                entry.states.insert(parse_state(&state)?, jobs);
            }
        }
        Ok(queues.into_values().collect())
    }

    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        let rows = sqlx::query(self.inner.queries.list_workers.clone())
            .bind(now)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter().map(decode_worker).collect()
    }

    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        let row = sqlx::query(self.inner.queries.leader.clone())
            .bind(now)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        row.as_ref().map(decode_leadership).transpose()
    }

    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
        let rows = sqlx::query(self.inner.queries.list_periodic.clone())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter().map(decode_periodic).collect()
    }

    async fn delete_periodic(&self, name: &str) -> Result<bool> {
        let row = sqlx::query(self.inner.queries.delete_periodic.clone())
            .bind(name)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(row.is_some())
    }

    /// One statement (`queries/throughput.sql`) over the minute index.
    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        self.throughput_since(since).await
    }

    /// Set-based: one statement per batch of 1,000 matching jobs
    /// (`queries/retry_jobs.sql`), with one NOTIFY per queue that got jobs.
    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.bulk(&filter, AdminAction::Retry, now).await
    }

    /// Set-based: one statement per batch of 1,000 matching jobs
    /// (`queries/cancel_jobs.sql`).
    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        self.bulk(&filter, AdminAction::Cancel, now).await
    }

    /// Set-based: one statement per batch of 1,000 matching jobs
    /// (`queries/delete_jobs.sql`).
    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        self.bulk(&filter, AdminAction::Delete, None).await
    }
}
