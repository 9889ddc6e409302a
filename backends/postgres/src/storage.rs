//! [`PostgresStorage`]: construction, migrations and the extension methods.

use std::sync::{Arc, OnceLock};

use haul_core::{
    EnqueueOutcome, EnqueueParams, Error, JobId, JobState, Metadata, NewJob, Result, RunAt, Timestamp, Unique,
    WakeupSender,
};
use sqlx::{
    Acquire, PgConnection, Postgres, Row,
    migrate::Migrator,
    postgres::{PgPool, PgPoolOptions},
    types::Json,
};
use tokio::sync::Mutex;

use crate::{
    claim_start::ClaimStarts,
    config::{PostgresConfig, channel_name},
    error::{corrupt, map_sqlx_error},
    limits::LimitedQueues,
    listen::Listener,
    notify::Notifier,
    pool::open_pool,
    queries::Queries,
    row::{micros, timeout_ms},
    unique::{EarlierJobs, lock_slots, unique_digest},
    url::PostgresUrl,
};

/// The embedded migrations (`backends/postgres/migrations/*.sql`).
pub(crate) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Job storage in PostgreSQL: one `jobs` table in a configurable schema, claims with
/// `FOR UPDATE SKIP LOCKED`, wake-ups with LISTEN/NOTIFY, and enqueue inside the
/// application's own transaction ([`PostgresStorage::enqueue_in_tx`]).
///
/// Cheap to clone: clones share the pool and the LISTEN connection.
#[derive(Clone)]
pub struct PostgresStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) schema: String,
    pub(crate) channel: String,
    pub(crate) queries: Queries,
    pub(crate) listener: Mutex<Option<Listener>>,
    /// The sender of this storage's listener once it runs: jobs enqueued through this
    /// storage wake its own subscribers directly too.
    pub(crate) local_wakeups: OnceLock<WakeupSender>,
    /// Sends the NOTIFY of jobs enqueued through the pool, after their commit; started
    /// by the first such enqueue.
    pub(crate) notifier: OnceLock<Notifier>,
    /// Where claims start walking each queue (see [`ClaimStarts`]).
    pub(crate) claim_starts: ClaimStarts,
    /// When an ANALYZE of the jobs table last failed (maintenance waits before the next).
    pub(crate) analyze_failed_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// The limited queues (a concurrency limit, a limit per key, or both), as this
    /// storage last read them (see [`crate::limits`]).
    pub(crate) limited_queues: LimitedQueues,
}

/// Where an insert's wake-ups are sent from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WakeUp {
    /// By the insert statement, in the caller's transaction: delivered when it commits.
    InTransaction,
    /// By the caller once the insert committed ([`PostgresStorage::wake_after_commit`]).
    AfterCommit,
}

/// What an insert did: its outcome, and the queues that received available jobs.
pub(crate) struct Inserted {
    pub(crate) outcome: EnqueueOutcome,
    pub(crate) available: Vec<String>,
}

impl PostgresStorage {
    /// Connects a pool to the PostgreSQL server `url` names, with the
    /// [`PostgresConfig`] its query parameters set (the defaults otherwise: schema
    /// `haul`, sqlx's pool size and timeouts). Runs no DDL unless the URL says
    /// `migrate=true`: call [`PostgresStorage::migrate`] once to create the tables.
    ///
    /// haul reads `schema`, `max_connections`, `min_connections`, `acquire_timeout`
    /// and `migrate` from the query; the parameters sqlx reads as libpq does
    /// (`sslmode`, `sslrootcert`, `application_name`, `options`, `host`, `port`, …) go
    /// to sqlx; any other parameter is an
    /// [`Error::InvalidArgument`] that lists the known ones. The table of every
    /// parameter, with examples, is in the docs of
    /// [`haul::connect`](https://docs.rs/haul/latest/haul/fn.connect.html).
    ///
    /// ```no_run
    /// # async fn example() -> haul_core::Result<()> {
    /// use haul_postgres::PostgresStorage;
    ///
    /// let url = "postgres://app@db.internal/app?schema=billing_jobs&max_connections=20&application_name=billing";
    /// let storage = PostgresStorage::connect(url).await?;
    /// assert_eq!(storage.schema(), "billing_jobs");
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresConfig::new()).await
    }

    /// Connects as [`PostgresStorage::connect`] does, starting from `config`: the URL's
    /// parameters take precedence over it. The configuration is checked before
    /// connecting ([`PostgresConfig::validate`]).
    ///
    /// Connecting fails fast, and says why: one connection is opened directly before
    /// the pool (whose own connections would retry a refused server until
    /// `acquire_timeout` and report only a timeout), so a refused connection, a failed
    /// password or an unknown database come back at once with the server's or the
    /// driver's reason ("cannot connect to PostgreSQL at host:port: … Connection
    /// refused"), as an [`Error::Backend`] of kind
    /// [`Connection`](haul_core::ErrorKind::Connection) where it is one. A server that
    /// does not answer at all fails after `acquire_timeout`.
    ///
    /// With [`PostgresConfig::migrate_on_connect`] (`migrate=true`), runs
    /// [`Storage::migrate`](haul_core::Storage::migrate) before returning.
    pub async fn connect_with(url: &str, config: PostgresConfig) -> Result<Self> {
        let PostgresUrl { connect_options, settings } = crate::url::parse(url)?;
        let config = settings.apply_to(config);
        config.validate()?;
        let pool = open_pool(connect_options, &config).await?;
        let storage = Self::from_pool_with(pool, config.clone())?;
        if config.migrates_on_connect() {
            haul_core::Storage::migrate(&storage).await?;
        }
        Ok(storage)
    }

    /// Uses an existing pool with the default schema (`haul`). Tune the pool (size,
    /// timeouts) through [`PgPoolOptions`].
    pub fn from_pool(pool: PgPool) -> Self {
        Self::build(pool, &PostgresConfig::new())
    }

    /// Uses an existing pool with `config` ([`Error::InvalidName`] for a bad schema).
    /// The pool keeps its own size and timeouts, and nothing is migrated: the pool
    /// settings and [`PostgresConfig::migrate_on_connect`] are for
    /// [`PostgresStorage::connect_with`].
    pub fn from_pool_with(pool: PgPool, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(pool, &config))
    }

    fn build(pool: PgPool, config: &PostgresConfig) -> Self {
        let schema = config.schema_name().to_owned();
        let channel = channel_name(&schema);
        let queries = Queries::new(&schema, &channel, config.async_claim_commits());
        Self {
            inner: Arc::new(Inner {
                pool,
                schema,
                channel,
                queries,
                listener: Mutex::new(None),
                local_wakeups: OnceLock::new(),
                notifier: OnceLock::new(),
                claim_starts: ClaimStarts::new(config.slow_claim_time()),
                analyze_failed_at: std::sync::Mutex::new(None),
                limited_queues: LimitedQueues::default(),
            }),
        }
    }

    /// The pool, for the application's own queries and transactions.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The statement `Admin::list` runs, as rendered for this schema. Not part of the
    /// API: it is here so the crate's plan tests EXPLAIN the statement the storage
    /// really sends.
    #[doc(hidden)]
    pub fn list_statement(&self) -> &str {
        self.inner.queries.list.as_str()
    }

    /// The unlimited claim statements, as rendered for this schema: of one queue
    /// (`queries/claim_one_queue.sql`) and of several (`queries/claim.sql`). Not part of
    /// the API: it is here so the crate's tests run the statements the storage sends.
    #[doc(hidden)]
    pub fn claim_statements(&self) -> (&str, &str) {
        (self.inner.queries.claim_one_queue.as_str(), self.inner.queries.claim.as_str())
    }

    /// The limited claim's transaction, as rendered for this schema: how it begins (with
    /// its settings), its
    /// lock statement (`queries/lock_queue_limits.sql`) and its claim statement
    /// (`queries/claim_limited.sql`). Not part of the API: it is here so the crate's
    /// tests explain the statements the storage sends.
    #[doc(hidden)]
    pub fn limited_claim_statements(&self) -> (String, &str, &str) {
        let queries = &self.inner.queries;
        let begin = format!("{}; {}", crate::limits::BEGIN_LIMITED_CLAIM, crate::limits::LIMITED_CLAIM_SETTINGS);
        (begin, queries.lock_queue_limits.as_str(), queries.claim_limited.as_str())
    }

    /// The LISTEN/NOTIFY channel of this schema (its payloads are queue names).
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Creates the schema and applies the embedded migrations that it lacks, recording
    /// them in `<schema>._sqlx_migrations`. Idempotent, and safe when several processes
    /// call it at once: the migrations run under sqlx's advisory lock, on a dedicated
    /// connection whose `search_path` is the schema (never one of the pool's).
    pub async fn migrate(&self) -> Result<()> {
        let schema = &self.inner.schema;
        let mut migrator = Migrator::with_migrations(MIGRATIONS.iter().cloned().collect());
        migrator.dangerous_set_table_name(format!("\"{schema}\"._sqlx_migrations"));
        migrator.create_schema(format!("\"{schema}\""));
        let options = (*self.inner.pool.connect_options()).clone().options([("search_path", schema.as_str())]);
        // A pool of one dedicated connection (the migrator's advisory lock is held by
        // the session, and the search_path must not leak into the application's pool).
        let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.map_err(map_sqlx_error)?;
        let result = migrator.run(&pool).await;
        // Closing ends the session, and with it the advisory lock even after a failure.
        pool.close().await;
        result.map_err(|error| map_sqlx_error(sqlx::Error::Migrate(Box::new(error))))
    }

    /// Enqueues `jobs` on the caller's connection, typically inside the caller's own
    /// transaction (`&mut *tx`): the jobs exist, and their wake-up is sent, only if that
    /// transaction commits. Relative run times use the transaction's clock (`now()`,
    /// the transaction's start).
    ///
    /// Unique jobs are honoured as by [`Storage::enqueue`](haul_core::Storage::enqueue),
    /// in a savepoint: the advisory locks on their keys' lock slots are held until the
    /// caller's transaction ends, so a concurrent enqueue of the same key (or of a key
    /// in the same slot) waits for it (keep the transaction short), and sees the job
    /// only if it commits. The lookup uses the transaction's snapshot: at
    /// `REPEATABLE READ` or above it cannot see a job of the key committed after the
    /// transaction began.
    ///
    /// Open the transaction with sqlx (`pool.begin()`, `conn.begin()`), not with a `BEGIN`
    /// statement: a batch of unique jobs runs in a savepoint that sqlx opens only inside
    /// a transaction it knows of.
    ///
    /// A batch holding an id already stored fails with [`Error::DuplicateId`](haul_core::Error::DuplicateId)
    /// having stored nothing, and the transaction stays usable. Any other failure of
    /// the insert (an insert of the same id racing with this one, a timeout) is an error
    /// of the transaction, which PostgreSQL then aborts, as for any statement of yours.
    ///
    /// ```no_run
    /// # async fn example(storage: haul_postgres::PostgresStorage) -> Result<(), Box<dyn std::error::Error>> {
    /// use haul_core::NewJob;
    ///
    /// let mut tx = storage.pool().begin().await?;
    /// sqlx::query("INSERT INTO users (email) VALUES ($1)").bind("a@b.c").execute(&mut *tx).await?;
    /// let job = NewJob::new("send_welcome", serde_json::json!({ "email": "a@b.c" }));
    /// storage.enqueue_in_tx(&mut tx, vec![job]).await?;
    /// tx.commit().await?; // the user and the job, or neither
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_in_tx(&self, conn: &mut PgConnection, jobs: Vec<NewJob>) -> Result<EnqueueOutcome> {
        let inserted = self.insert(conn, EnqueueParams::new(jobs), WakeUp::InTransaction).await?;
        Ok(inserted.outcome)
    }

    /// Wakes the workers of `queues`, whose new jobs are committed: this storage's own
    /// subscribers at once, and every listener through a NOTIFY from the notifier task.
    pub(crate) fn wake_after_commit(&self, queues: Vec<String>) {
        if queues.is_empty() {
            return;
        }
        if let Some(sender) = self.inner.local_wakeups.get() {
            for queue in &queues {
                sender.notify(queue);
            }
        }
        let inner = &self.inner;
        inner
            .notifier
            .get_or_init(|| Notifier::start(inner.pool.clone(), inner.queries.notify.clone(), inner.channel.clone()))
            .request(queues);
    }

    /// Validates and inserts a batch. Without unique jobs: one statement. With unique
    /// jobs: a short transaction (a savepoint inside the caller's) that locks the keys'
    /// slots, finds the blocking jobs, and inserts the jobs that nothing blocks. With
    /// [`WakeUp::AfterCommit`] it sends no NOTIFY: the caller wakes
    /// [`Inserted::available`] once the insert is committed.
    pub(crate) async fn insert<'c>(
        &self,
        conn: impl Acquire<'c, Database = Postgres>,
        params: EnqueueParams,
        wake_up: WakeUp,
    ) -> Result<Inserted> {
        let jobs = params.jobs;
        if jobs.is_empty() {
            return Ok(Inserted { outcome: EnqueueOutcome::new(Vec::new()), available: Vec::new() });
        }
        NewJob::validate_batch(&jobs)?;
        if jobs.iter().all(|job| job.unique.is_none()) {
            let columns = EnqueueColumns::of(&jobs)?;
            let mut conn = conn.acquire().await.map_err(map_sqlx_error)?;
            let mut available = self.insert_columns(&mut conn, params.now, &columns, wake_up).await?;
            available.sort_unstable();
            available.dedup();
            return Ok(Inserted { outcome: EnqueueOutcome::new(jobs.iter().map(|job| job.id).collect()), available });
        }
        let digests: Vec<Option<Vec<u8>>> =
            jobs.iter().map(|job| job.unique.as_ref().map(|unique| unique_digest(&unique.key))).collect();
        // Refuses what PostgreSQL cannot store before any statement.
        let mut columns = EnqueueColumns::with_capacity(jobs.len());
        for (job, digest) in jobs.iter().zip(&digests) {
            columns.push(job, digest.as_deref())?;
        }
        let mut tx = conn.begin().await.map_err(map_sqlx_error)?;
        let inserted = self.insert_unique(&mut tx, &jobs, &digests, params.now, wake_up).await?;
        tx.commit().await.map_err(map_sqlx_error)?;
        Ok(inserted)
    }

    /// Inserts validated columns in one statement; returns the queues that received
    /// available jobs.
    async fn insert_columns(
        &self,
        conn: &mut PgConnection,
        now: Option<Timestamp>,
        columns: &EnqueueColumns,
        wake_up: WakeUp,
    ) -> Result<Vec<String>> {
        let row = sqlx::query(self.inner.queries.enqueue.clone())
            .bind(now)
            .bind(&columns.ids)
            .bind(&columns.kinds)
            .bind(&columns.args)
            .bind(&columns.queues)
            .bind(&columns.priorities)
            .bind(&columns.run_ats)
            .bind(&columns.delays_us)
            .bind(&columns.max_attempts)
            .bind(&columns.timeouts_ms)
            .bind(&columns.unique_keys)
            .bind(wake_up == WakeUp::InTransaction)
            .bind(&columns.unique_digests)
            .bind(&columns.metadata)
            .bind(&columns.limit_keys)
            .fetch_one(conn)
            .await
            .map_err(map_sqlx_error)?;
        let duplicate: Option<uuid::Uuid> = row.try_get("duplicate").map_err(map_sqlx_error)?;
        if let Some(id) = duplicate {
            return Err(Error::DuplicateId(JobId(id)));
        }
        let available: Option<Vec<String>> = row.try_get("available").map_err(map_sqlx_error)?;
        Ok(available.unwrap_or_default())
    }

    /// Inserts a validated batch holding unique jobs, inside a transaction on `conn`:
    /// locks the keys' slots, then applies [`haul_core::Unique::is_blocked_by`] job by
    /// job, in input order, against the stored jobs and the batch's earlier jobs. Each
    /// step is linear in the batch's size: one lock per slot (at most
    /// [`crate::unique::UNIQUE_LOCK_SLOTS`]), one index lookup per job, and the earlier
    /// jobs kept by key.
    async fn insert_unique(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
        digests: &[Option<Vec<u8>>],
        now: Option<Timestamp>,
        wake_up: WakeUp,
    ) -> Result<Inserted> {
        let uniques: Vec<(usize, &Unique, &[u8])> = jobs
            .iter()
            .zip(digests)
            .enumerate()
            .filter_map(|(index, (job, digest))| Some((index, job.unique.as_ref()?, digest.as_deref()?)))
            .collect();
        sqlx::query(self.inner.queries.lock_unique_keys.clone())
            .bind(lock_slots(uniques.iter().map(|&(_, _, digest)| digest)))
            .execute(&mut *conn)
            .await
            .map_err(map_sqlx_error)?;
        let keys: Vec<&str> = uniques.iter().map(|(_, unique, _)| unique.key.as_str()).collect();
        let key_digests: Vec<&[u8]> = uniques.iter().map(|&(_, _, digest)| digest).collect();
        let states: Vec<String> = uniques
            .iter()
            .map(|(_, unique, _)| unique.states.iter().map(|state| state.as_str()).collect::<Vec<_>>().join(","))
            .collect();
        let windows_us: Vec<Option<i64>> = uniques.iter().map(|(_, unique, _)| unique.window.map(micros)).collect();
        let rows = sqlx::query(self.inner.queries.find_blocking.clone())
            .bind(now)
            .bind(&keys)
            .bind(&key_digests)
            .bind(&states)
            .bind(&windows_us)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_sqlx_error)?;
        if rows.len() != uniques.len() {
            return Err(corrupt(format!("expected {} rows of blocking jobs, got {}", uniques.len(), rows.len())));
        }
        let mut clock = None;
        let mut stored: Vec<Option<(Timestamp, JobId)>> = vec![None; jobs.len()];
        for ((index, _, _), row) in uniques.iter().zip(&rows) {
            clock = Some(row.try_get::<Timestamp, _>("now").map_err(map_sqlx_error)?);
            let id: Option<uuid::Uuid> = row.try_get("id").map_err(map_sqlx_error)?;
            let created_at: Option<Timestamp> = row.try_get("created_at").map_err(map_sqlx_error)?;
            if let (Some(id), Some(created_at), Some(slot)) = (id, created_at, stored.get_mut(*index)) {
                *slot = Some((created_at, JobId(id)));
            }
        }
        let clock = clock.ok_or_else(|| corrupt("no clock from the blocking-job lookup"))?;

        let mut ids = Vec::with_capacity(jobs.len());
        let mut duplicates = Vec::new();
        let mut kept = EnqueueColumns::with_capacity(jobs.len());
        // The batch's unique jobs stored so far, as they will be stored.
        let mut earlier = EarlierJobs::default();
        for (position, ((job, digest), stored)) in jobs.iter().zip(digests).zip(stored).enumerate() {
            if let Some(unique) = &job.unique {
                let earlier_blocker = earlier.blocking(unique, clock).map(|id| (clock, id));
                if let Some((_, blocker)) = stored.into_iter().chain(earlier_blocker).min() {
                    ids.push(blocker);
                    duplicates.push(blocker);
                    continue;
                }
                let state = if is_scheduled(job.run_at, clock) { JobState::Scheduled } else { JobState::Available };
                earlier.stored(&unique.key, position, job.id, state, clock);
            }
            kept.push(job, digest.as_deref())?;
            ids.push(job.id);
        }
        let available =
            if kept.ids.is_empty() { Vec::new() } else { self.insert_columns(conn, now, &kept, wake_up).await? };
        Ok(Inserted { outcome: EnqueueOutcome::new(ids).with_duplicates(duplicates), available })
    }
}

/// Whether a job due at `run_at` is stored `scheduled` (rather than `available`) when
/// inserted at `now`, as enqueue.sql decides it.
fn is_scheduled(run_at: RunAt, now: Timestamp) -> bool {
    match run_at {
        RunAt::Now => false,
        RunAt::At(at) => at > now,
        RunAt::In(delay) => micros(delay) > 0,
    }
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("schema", &self.inner.schema)
            .field("channel", &self.inner.channel)
            .field("pool", &self.inner.pool)
            .finish_non_exhaustive()
    }
}

/// A batch of new jobs as one array per column, for UNNEST.
struct EnqueueColumns {
    ids: Vec<uuid::Uuid>,
    kinds: Vec<String>,
    args: Vec<serde_json::Value>,
    queues: Vec<String>,
    priorities: Vec<i16>,
    run_ats: Vec<Option<haul_core::Timestamp>>,
    delays_us: Vec<i64>,
    max_attempts: Vec<i32>,
    timeouts_ms: Vec<Option<i64>>,
    unique_keys: Vec<Option<String>>,
    unique_digests: Vec<Option<Vec<u8>>>,
    /// NULL for a job without metadata (see migration 0007).
    metadata: Vec<Option<Json<Metadata>>>,
    /// NULL for a job without a limit key (see migration 0011).
    limit_keys: Vec<Option<String>>,
}

impl EnqueueColumns {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            ids: Vec::with_capacity(capacity),
            kinds: Vec::with_capacity(capacity),
            args: Vec::with_capacity(capacity),
            queues: Vec::with_capacity(capacity),
            priorities: Vec::with_capacity(capacity),
            run_ats: Vec::with_capacity(capacity),
            delays_us: Vec::with_capacity(capacity),
            max_attempts: Vec::with_capacity(capacity),
            timeouts_ms: Vec::with_capacity(capacity),
            unique_keys: Vec::with_capacity(capacity),
            unique_digests: Vec::with_capacity(capacity),
            metadata: Vec::with_capacity(capacity),
            limit_keys: Vec::with_capacity(capacity),
        }
    }

    /// The columns of `jobs`, none of them unique (checked by [`NewJob::validate_batch`]).
    fn of(jobs: &[NewJob]) -> Result<Self> {
        let mut columns = Self::with_capacity(jobs.len());
        for job in jobs {
            columns.push(job, None)?;
        }
        Ok(columns)
    }

    /// Appends `job` (checked by [`NewJob::validate_batch`], which also refuses NUL
    /// characters, which jsonb cannot hold) with the digest of its uniqueness key,
    /// refusing a `max_attempts` past PostgreSQL's `integer`.
    fn push(&mut self, job: &NewJob, unique_digest: Option<&[u8]>) -> Result<()> {
        let max_attempts = i32::try_from(job.max_attempts)
            .map_err(|_| Error::InvalidArgument(format!("max_attempts must be at most {}", i32::MAX).into()))?;
        let (run_at, delay_us) = match job.run_at {
            RunAt::Now => (None, 0),
            RunAt::At(at) => (Some(at), 0),
            RunAt::In(delay) => (None, micros(delay)),
        };
        self.ids.push(job.id.0);
        self.kinds.push(job.kind.clone());
        self.args.push(job.args.clone());
        self.queues.push(job.queue.clone());
        self.priorities.push(job.priority);
        self.run_ats.push(run_at);
        self.delays_us.push(delay_us);
        self.max_attempts.push(max_attempts);
        self.timeouts_ms.push(job.timeout.map(timeout_ms));
        self.unique_keys.push(job.unique.as_ref().map(|unique| unique.key.clone()));
        self.unique_digests.push(unique_digest.map(<[u8]>::to_vec));
        self.metadata.push((!job.metadata.is_empty()).then(|| Json(job.metadata.clone())));
        self.limit_keys.push(job.limit_key.clone());
        Ok(())
    }
}
