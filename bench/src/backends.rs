//! The measured backends: how each makes a fresh storage and cleans it up.

use haul::{
    JobFilter, JobState, ListParams, MemoryStorage, PostgresConfig, PostgresStorage, Queue, RedisConfig, RedisStorage,
};
use sqlx::{AssertSqlSafe, PgPool, postgres::PgPoolOptions};

use crate::{BoxError, workloads::Backend};

/// The in-process backend: a new `MemoryStorage` per workload.
pub(crate) struct Memory;

impl Backend for Memory {
    type Storage = MemoryStorage;

    fn name(&self) -> &'static str {
        "memory"
    }

    async fn fresh(&mut self) -> Result<MemoryStorage, BoxError> {
        Ok(MemoryStorage::new())
    }

    async fn attach(&self, storage: &MemoryStorage) -> Result<MemoryStorage, BoxError> {
        Ok(storage.clone())
    }

    async fn settle(&self, _storage: &MemoryStorage, _kept_finished: bool) -> Result<(), BoxError> {
        Ok(())
    }

    async fn detach(&self, _storage: MemoryStorage) -> Result<(), BoxError> {
        Ok(())
    }

    async fn release(&mut self, _storage: MemoryStorage) -> Result<(), BoxError> {
        Ok(())
    }
}

/// PostgreSQL: a fresh schema per workload, dropped at its end.
pub(crate) struct Postgres {
    url: String,
    admin: PgPool,
    prefix: String,
    next: usize,
    /// Schemas created and not dropped yet.
    live: Vec<String>,
}

impl Postgres {
    /// Connects the administrative pool (DDL, ANALYZE, the floor).
    pub(crate) async fn connect(url: &str) -> Result<Self, BoxError> {
        let admin = PgPoolOptions::new().max_connections(4).connect(url).await?;
        Ok(Self {
            url: url.to_owned(),
            admin,
            prefix: format!("haul_bench_{}", std::process::id()),
            next: 0,
            live: Vec::new(),
        })
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The administrative pool.
    pub(crate) fn admin(&self) -> &PgPool {
        &self.admin
    }

    /// A schema name no other workload of this run uses.
    pub(crate) fn schema_name(&mut self, what: &str) -> String {
        self.next += 1;
        let schema = format!("{}_{what}{}", self.prefix, self.next);
        self.live.push(schema.clone());
        schema
    }

    /// Drops `schema` and everything in it.
    pub(crate) async fn drop_schema(&mut self, schema: &str) -> Result<(), BoxError> {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))).execute(&self.admin).await?;
        self.live.retain(|live| live != schema);
        Ok(())
    }

    /// Drops every schema this run created and did not drop yet (after a failure).
    pub(crate) async fn cleanup(&mut self) -> Result<(), BoxError> {
        for schema in self.live.clone() {
            self.drop_schema(&schema).await?;
        }
        Ok(())
    }

    /// The value of the server setting `name`, or `unknown`.
    pub(crate) async fn setting(&self, name: &str) -> String {
        sqlx::query_scalar::<_, String>("SELECT current_setting($1)")
            .bind(name.to_owned())
            .fetch_one(&self.admin)
            .await
            .unwrap_or_else(|_| "unknown".to_owned())
    }

    /// The server's version string.
    pub(crate) async fn server_version(&self) -> Result<String, BoxError> {
        Ok(sqlx::query_scalar::<_, String>("SELECT version()").fetch_one(&self.admin).await?)
    }
}

impl Backend for Postgres {
    type Storage = PostgresStorage;

    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn fresh(&mut self) -> Result<PostgresStorage, BoxError> {
        let schema = self.schema_name("w");
        let storage = PostgresStorage::connect_with(&self.url, PostgresConfig::new().schema(schema)).await?;
        storage.migrate().await?;
        Ok(storage)
    }

    async fn attach(&self, storage: &PostgresStorage) -> Result<PostgresStorage, BoxError> {
        Ok(PostgresStorage::connect_with(&self.url, PostgresConfig::new().schema(storage.schema())).await?)
    }

    /// `ANALYZE` of the jobs table; `VACUUM (ANALYZE)` when it keeps finished jobs: the
    /// harness finished them seconds ago, and their dead row versions (one per state they
    /// went through, in every index) would have been vacuumed long since on a server whose
    /// autovacuum had the time those jobs stand for.
    async fn settle(&self, storage: &PostgresStorage, kept_finished: bool) -> Result<(), BoxError> {
        let command = if kept_finished { "VACUUM (ANALYZE)" } else { "ANALYZE" };
        sqlx::query(AssertSqlSafe(format!("{command} \"{}\".jobs", storage.schema()))).execute(&self.admin).await?;
        Ok(())
    }

    async fn detach(&self, storage: PostgresStorage) -> Result<(), BoxError> {
        storage.pool().close().await;
        Ok(())
    }

    /// One listing of the first available or running job: an index probe per state,
    /// where `counts` would count the whole table (finished jobs too).
    async fn any_unfinished(&self, queue: &Queue) -> Result<bool, BoxError> {
        let unfinished = JobFilter::new().queue("bench").state(JobState::Available).state(JobState::Running);
        Ok(!queue.list(ListParams::filtered(unfinished).limit(1)).await?.is_empty())
    }

    async fn release(&mut self, storage: PostgresStorage) -> Result<(), BoxError> {
        let schema = storage.schema().to_owned();
        storage.pool().close().await;
        drop(storage);
        self.drop_schema(&schema).await
    }
}

/// Redis: a fresh key prefix per workload, purged at its end.
pub(crate) struct Redis {
    url: String,
    prefix: String,
    next: usize,
}

impl Redis {
    /// Measures the Redis server at `url`.
    pub(crate) fn new(url: &str) -> Self {
        Self { url: url.to_owned(), prefix: format!("haul_bench_{}", std::process::id()), next: 0 }
    }

    async fn connect(&self, prefix: &str) -> Result<RedisStorage, BoxError> {
        Ok(RedisStorage::connect_with(&self.url, RedisConfig::new().prefix(prefix)).await?)
    }
}

impl Backend for Redis {
    type Storage = RedisStorage;

    fn name(&self) -> &'static str {
        "redis"
    }

    async fn fresh(&mut self) -> Result<RedisStorage, BoxError> {
        self.next += 1;
        let prefix = format!("{}_w{}", self.prefix, self.next);
        let storage = self.connect(&prefix).await?;
        storage.purge().await?;
        Ok(storage)
    }

    async fn attach(&self, storage: &RedisStorage) -> Result<RedisStorage, BoxError> {
        self.connect(storage.prefix()).await
    }

    async fn settle(&self, _storage: &RedisStorage, _kept_finished: bool) -> Result<(), BoxError> {
        Ok(())
    }

    async fn detach(&self, _storage: RedisStorage) -> Result<(), BoxError> {
        Ok(())
    }

    async fn release(&mut self, storage: RedisStorage) -> Result<(), BoxError> {
        storage.purge().await?;
        Ok(())
    }
}
