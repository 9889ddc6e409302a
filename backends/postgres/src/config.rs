//! Configuration of a [`crate::PostgresStorage`].

use std::time::Duration;

use haul_core::{Error, Result, validate_namespace};
use sqlx::postgres::PgPoolOptions;

/// The longest schema name: PostgreSQL's identifier limit (`NAMEDATALEN - 1` bytes).
const MAX_SCHEMA_LEN: usize = 63;

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "haul";

/// The pool size used when none is configured (sqlx's default).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long a call waits for a connection of the pool when none is configured (sqlx's
/// default).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The server time past which a claim's walk of the claim index counts as slow (plus as
/// much again per 25 jobs claimed), when none is configured ([`PostgresConfig::slow_claim`]).
pub const DEFAULT_SLOW_CLAIM: Duration = Duration::from_millis(1);

/// Where and how a [`crate::PostgresStorage`] keeps its tables, and the pool it opens
/// when it connects ([`crate::PostgresStorage::connect_with`]).
///
/// ```
/// use std::time::Duration;
///
/// use haul_postgres::PostgresConfig;
///
/// let config = PostgresConfig::new().schema("billing_jobs").max_connections(20).acquire_timeout(Duration::from_secs(5));
/// assert_eq!(config.schema_name(), "billing_jobs");
/// assert_eq!(config.pool_options().get_max_connections(), 20);
/// assert!(config.validate().is_ok());
/// assert!(PostgresConfig::new().schema("Robert'); DROP TABLE jobs;--").validate().is_err());
/// assert!(PostgresConfig::new().max_connections(2).min_connections(3).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    schema: String,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    migrate_on_connect: bool,
    slow_claim: Duration,
    async_claim_commit: bool,
}

impl PostgresConfig {
    /// The default configuration: schema `haul`, a pool of at most 10 connections
    /// (none kept open when idle) that waits up to 30 s for a free connection, and no
    /// migration when connecting.
    pub fn new() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            min_connections: 0,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            migrate_on_connect: false,
            slow_claim: DEFAULT_SLOW_CLAIM,
            async_claim_commit: false,
        }
    }

    /// Sets the schema holding the `jobs` and `queues` tables (default `haul`): 1 to
    /// 63 lowercase letters, digits and `_` (PostgreSQL's identifier limit), starting
    /// with a letter. It is validated when the storage is built.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets how many connections the pool opened by
    /// [`crate::PostgresStorage::connect_with`] may hold (default 10, at least 1). A
    /// pool given to [`crate::PostgresStorage::from_pool_with`] keeps its own settings.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets how many connections that pool keeps open even when idle (default 0, at
    /// most [`PostgresConfig::max_connections`]).
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// Sets how long a call waits for a connection of that pool before it fails with a
    /// timeout (default 30 s); connecting waits as long at most for the server's
    /// answer.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Runs [`Storage::migrate`](haul_core::Storage::migrate) as part of connecting (the
    /// URL's `migrate=true`), so that the storage returned has its tables. Off by
    /// default: migrations are usually a deployment step.
    pub fn migrate_on_connect(mut self, migrate: bool) -> Self {
        self.migrate_on_connect = migrate;
        self
    }

    /// Sets when a claim's walk of the claim index counts as slow (the URL's
    /// `slow_claim`, default 1 ms): when its statement ran longer than this on the server,
    /// plus as much again for each 25 jobs it claimed. After two slow walks from the
    /// start of a queue in a row, the storage's claims of that queue resume from the
    /// last job it claimed there for [`CLAIM_ORDER_LAG`](haul_core::CLAIM_ORDER_LAG),
    /// which a long transaction makes worth it (see the backend's README, "Long
    /// transactions"). Zero counts every claim that takes a job as slow (tests use it
    /// to make claims resume); [`Duration::MAX`] never resumes.
    pub fn slow_claim(mut self, time: Duration) -> Self {
        self.slow_claim = time;
        self
    }

    /// The configured [`PostgresConfig::slow_claim`].
    pub fn slow_claim_time(&self) -> Duration {
        self.slow_claim
    }

    /// Lets claims commit without waiting for the WAL flush (the URL's
    /// `async_claim_commit=true`; off by default): each claim statement sets
    /// `synchronous_commit` off for its own transaction. On a loaded server this takes
    /// about a millisecond off the time from an enqueue to its job's start.
    ///
    /// The cost: if the PostgreSQL server crashes within about three times its
    /// `wal_writer_delay` (600 ms by default) of a claim, before a later commit flushes
    /// it, the claim is lost (a failover can lose it within the replication lag). Its job
    /// is available again as soon as the server is back, and runs again under the same
    /// attempt number, possibly while the first run is still going: the worker that held
    /// it learns of the loss at its next heartbeat, which is refused, as is its outcome.
    /// Meanwhile the two runs may together exceed the queue's concurrency limits, and the
    /// lost claim's start no longer counts against a rate limit. No job is lost and no
    /// outcome is stored twice; that attempt counts once against `max_attempts`.
    /// Enqueues, outcomes and heartbeats stay synchronous.
    ///
    /// ```
    /// use haul_postgres::PostgresConfig;
    ///
    /// let config = PostgresConfig::new().async_claim_commit(true);
    /// assert!(config.async_claim_commits());
    /// assert!(!PostgresConfig::new().async_claim_commits());
    /// ```
    pub fn async_claim_commit(mut self, enabled: bool) -> Self {
        self.async_claim_commit = enabled;
        self
    }

    /// Whether claims commit without waiting for the WAL flush
    /// ([`PostgresConfig::async_claim_commit`]).
    pub fn async_claim_commits(&self) -> bool {
        self.async_claim_commit
    }

    /// The configured schema.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The options of the pool [`crate::PostgresStorage::connect_with`] opens: the
    /// configured size and acquire timeout, sqlx's defaults otherwise.
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
    }

    /// How long connecting waits for the server's first answer: the acquire timeout.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// Whether connecting runs the migrations ([`PostgresConfig::migrate_on_connect`]).
    pub fn migrates_on_connect(&self) -> bool {
        self.migrate_on_connect
    }

    /// Checks the configuration: [`haul_core::Error::InvalidName`] for a bad schema,
    /// [`haul_core::Error::InvalidArgument`] for a pool of no connection, a minimum
    /// above the maximum, or a zero acquire timeout.
    pub fn validate(&self) -> Result<()> {
        validate_namespace(&self.schema)?;
        if self.schema.len() > MAX_SCHEMA_LEN {
            // PostgreSQL would silently cut a longer name to 63 bytes.
            return Err(Error::InvalidName {
                what: "schema",
                value: self.schema.clone(),
                reason: "is longer than 63 characters, PostgreSQL's limit for a schema name",
            });
        }
        if self.max_connections == 0 {
            return Err(Error::InvalidArgument("max_connections must be at least 1".into()));
        }
        if self.min_connections > self.max_connections {
            return Err(Error::InvalidArgument(
                format!(
                    "min_connections ({}) must not be above max_connections ({})",
                    self.min_connections, self.max_connections
                )
                .into(),
            ));
        }
        if self.acquire_timeout.is_zero() {
            return Err(Error::InvalidArgument("acquire_timeout must be above zero".into()));
        }
        Ok(())
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The NOTIFY channel of a schema: `haul_<schema>`, or when that is longer than
/// PostgreSQL's 63-byte identifier limit, a prefix of it and a stable hash of the rest.
pub(crate) fn channel_name(schema: &str) -> String {
    let full = format!("haul_{schema}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a, 64 bits: stable across processes, versions and platforms.
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{}_{hash:016x}", &full[..46])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_longer_than_postgres_identifiers_is_refused() {
        assert!(PostgresConfig::new().schema("a".repeat(63)).validate().is_ok());
        let error = PostgresConfig::new().schema("a".repeat(64)).validate().err().map(|error| error.to_string());
        assert!(error.as_deref().is_some_and(|message| message.contains("63")), "{error:?}");
    }

    #[test]
    fn channel_names_fit_in_a_postgres_identifier() {
        assert_eq!(channel_name("haul"), "haul_haul");
        let long = "a".repeat(100);
        let other = format!("{}b", "a".repeat(99));
        assert_eq!(channel_name(&long).len(), 63);
        assert_ne!(channel_name(&long), channel_name(&other));
        assert_eq!(channel_name(&long), channel_name(&long));
    }
}
