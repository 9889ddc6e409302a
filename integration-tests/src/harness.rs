//! What a backend provides to run the suite: a fresh, isolated storage per case, and
//! the capabilities it has.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use haul::Storage;

/// A shared storage, as every case receives it.
pub type TestStorage = Arc<dyn Storage>;

/// A boxed error from a harness (a service that cannot be reached, a schema that
/// cannot be created…).
pub type HarnessError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A feature of a backend that some cases need. A backend without it skips those cases
/// and prints why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// [`Storage::subscribe`] delivers a wake-up when work arrives (rather than never).
    Wakeups,
    /// [`haul::NewJob::unique`] is honoured (a backend without it rejects such jobs).
    UniqueJobs,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wakeups => "wake-ups",
            Self::UniqueJobs => "unique jobs",
        })
    }
}

/// The capabilities a backend lacks, each with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    missing: Vec<(Capability, &'static str)>,
}

impl Capabilities {
    /// Every capability.
    pub fn all() -> Self {
        Self::default()
    }

    /// Declares `capability` missing, because of `reason`.
    pub fn without(mut self, capability: Capability, reason: &'static str) -> Self {
        self.missing.push((capability, reason));
        self
    }

    /// The first of `required` that is missing, with its reason.
    pub fn first_missing(&self, required: &[Capability]) -> Option<(Capability, &'static str)> {
        required.iter().find_map(|needed| self.missing.iter().find(|(missing, _)| missing == needed).copied())
    }
}

/// A backend under test.
///
/// The suite builds one harness per case (the expression given to
/// [`conformance_suite!`](crate::conformance_suite) is evaluated in every test), asks
/// it for one storage, runs the case, then calls [`Harness::cleanup`], even when the
/// case failed.
pub trait Harness: Send + Sync + 'static {
    /// The backend's name, as in test output (`"memory"`, `"postgres"`, `"redis"`).
    fn backend(&self) -> &'static str;

    /// What this backend can do; cases needing something else are skipped.
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    /// A fresh storage that no other case sees: a new instance, a schema of its own or
    /// a key prefix of its own.
    fn storage(&self) -> impl Future<Output = Result<TestStorage, HarnessError>> + Send;

    /// Removes what [`Harness::storage`] created (a schema, keys). Default: nothing.
    fn cleanup(&self) -> impl Future<Output = Result<(), HarnessError>> + Send {
        async { Ok(()) }
    }
}

/// The in-memory backend: a new [`haul::MemoryStorage`] per case.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryHarness;

impl MemoryHarness {
    /// The harness.
    pub fn new() -> Self {
        Self
    }
}

impl Harness for MemoryHarness {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn storage(&self) -> Result<TestStorage, HarnessError> {
        Ok(Arc::new(haul::MemoryStorage::new()))
    }
}

/// The PostgreSQL backend: a schema of its own per case (`haul_case_<random>`) on the
/// server from [`crate::services::try_postgres_url`], migrated before the case and
/// dropped (with everything in it) by [`Harness::cleanup`].
#[derive(Clone, Debug)]
pub struct PostgresHarness {
    schema: String,
    /// The storage's [`haul::PostgresConfig::slow_claim`], when not the default.
    slow_claim: Option<Duration>,
}

impl PostgresHarness {
    /// A harness with a fresh schema name.
    pub fn new() -> Self {
        Self { schema: fresh_name("haul_case"), slow_claim: None }
    }

    /// A harness whose storage counts every claim that takes a job as slow
    /// ([`haul::PostgresConfig::slow_claim`] zero): after two claims from the start of a
    /// queue, its claims resume from the last job claimed, as under a long transaction.
    pub fn resuming_claims() -> Self {
        Self { slow_claim: Some(Duration::ZERO), ..Self::new() }
    }

    /// The schema this harness creates and drops.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Default for PostgresHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for PostgresHarness {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn storage(&self) -> Result<TestStorage, HarnessError> {
        let url = crate::services::try_postgres_url().await?;
        let mut config = haul::PostgresConfig::new().schema(&self.schema);
        if let Some(slow_claim) = self.slow_claim {
            config = config.slow_claim(slow_claim);
        }
        let storage = haul::PostgresStorage::connect_with(&url, config).await?;
        storage.migrate().await?;
        Ok(Arc::new(storage))
    }

    async fn cleanup(&self) -> Result<(), HarnessError> {
        let url = crate::services::try_postgres_url().await?;
        drop_schema(&url, &self.schema).await
    }
}

/// A schema or key-prefix name no other case uses: `<prefix>_<random>`.
pub fn fresh_name(prefix: &str) -> String {
    // The tail of a UUIDv7 is random; its head is the time, shared by parallel cases.
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}_{}", &random[16..])
}

/// Drops `schema` and everything in it on the PostgreSQL server at `url`.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), HarnessError> {
    use sqlx::Connection as _;

    let mut conn = sqlx::PgConnection::connect(url).await?;
    // A case that left a transaction open must not hang the suite.
    sqlx::query("SET lock_timeout = '60s'").execute(&mut conn).await?;
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// The environment variable that names the nodes of a Redis Cluster for the tests
/// (comma-separated URLs, e.g. `redis://127.0.0.1:7000,redis://127.0.0.1:7001`).
pub const REDIS_CLUSTER_URLS_VAR: &str = "HAUL_TEST_REDIS_CLUSTER_URLS";

/// The Redis backend: a key prefix of its own per case (`haul_case_<random>`) on the
/// server from [`crate::services::try_redis_url`] ([`RedisHarness::new`]) or on the
/// cluster named by [`REDIS_CLUSTER_URLS_VAR`] ([`RedisHarness::cluster`]);
/// [`Harness::cleanup`] deletes every key of that prefix.
#[derive(Debug)]
pub struct RedisHarness {
    prefix: String,
    cluster: bool,
    storage: std::sync::Mutex<Option<haul::RedisStorage>>,
}

impl RedisHarness {
    /// A harness on one server, with a fresh key prefix.
    pub fn new() -> Self {
        Self { prefix: fresh_name("haul_case"), cluster: false, storage: std::sync::Mutex::new(None) }
    }

    /// A harness on the Redis Cluster named by [`REDIS_CLUSTER_URLS_VAR`], with a fresh
    /// key prefix. Without the variable every case fails, saying how to set it.
    pub fn cluster() -> Self {
        Self { cluster: true, ..Self::new() }
    }

    async fn connect(&self) -> Result<haul::RedisStorage, HarnessError> {
        let config = haul::RedisConfig::new().prefix(&self.prefix);
        if !self.cluster {
            let url = crate::services::try_redis_url().await?;
            return Ok(haul::RedisStorage::connect_with(&url, config).await?);
        }
        let urls = std::env::var(REDIS_CLUSTER_URLS_VAR).unwrap_or_default();
        let nodes: Vec<&str> = urls.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
        if nodes.is_empty() {
            return Err(format!(
                "set {REDIS_CLUSTER_URLS_VAR} to the nodes of a Redis Cluster (comma-separated, e.g. \
                 redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002); .ci/run starts one"
            )
            .into());
        }
        // One script call stores a batch: the suite's largest (40,000 unique jobs) ran
        // past the default 10 s on a loaded CI machine, three nodes and the tests
        // sharing two cores. Give each reply a minute, so that only a hang fails a case.
        let config = config.response_timeout(std::time::Duration::from_secs(60));
        Ok(haul::RedisStorage::connect_cluster(nodes, config).await?)
    }

    /// The key prefix this harness uses and cleans up.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Default for RedisHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for RedisHarness {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn storage(&self) -> Result<TestStorage, HarnessError> {
        let storage = self.connect().await?;
        *self.storage.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(storage.clone());
        Ok(Arc::new(storage))
    }

    async fn cleanup(&self) -> Result<(), HarnessError> {
        let kept = self.storage.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let storage = match kept {
            Some(storage) => storage,
            None => self.connect().await?,
        };
        storage.purge().await?;
        Ok(())
    }
}

/// Runs one case on a fresh storage from `harness`: skips it (saying why) when a
/// required capability is missing, and cleans up after it whether it passed or not.
///
/// Panics (failing the test) when the harness cannot provide a storage, or when the
/// case panics.
pub async fn run_case<H, F, Fut>(harness: H, case: &str, requires: &[Capability], body: F)
where
    H: Harness,
    F: FnOnce(TestStorage) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let backend = harness.backend();
    if let Some((capability, reason)) = harness.capabilities().first_missing(requires) {
        eprintln!("skipped {backend}::{case}: the {backend} backend has no {capability} ({reason})");
        return;
    }
    let storage = match harness.storage().await {
        Ok(storage) => storage,
        Err(error) => panic!("the {backend} harness could not provide a storage for {case}: {error}"),
    };
    let outcome = tokio::spawn(body(storage)).await;
    let cleaned = harness.cleanup().await;
    match outcome {
        Ok(()) => {}
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("{backend}::{case} did not finish: {error}"),
    }
    if let Err(error) = cleaned {
        panic!("the {backend} harness could not clean up after {case}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_capability_is_reported_with_its_reason() {
        let capabilities = Capabilities::all().without(Capability::Wakeups, "no pub/sub in this build");
        assert_eq!(
            capabilities.first_missing(&[Capability::Wakeups]),
            Some((Capability::Wakeups, "no pub/sub in this build"))
        );
        assert_eq!(capabilities.first_missing(&[]), None);
        assert_eq!(Capabilities::all().first_missing(&[Capability::Wakeups]), None);
    }

    #[tokio::test]
    async fn a_case_needing_a_missing_capability_is_skipped_without_asking_for_storage() {
        struct Unreachable;
        impl Harness for Unreachable {
            fn backend(&self) -> &'static str {
                "unreachable"
            }
            fn capabilities(&self) -> Capabilities {
                Capabilities::all().without(Capability::Wakeups, "test")
            }
            async fn storage(&self) -> Result<TestStorage, HarnessError> {
                Err("no storage for skipped cases".into())
            }
        }
        run_case(Unreachable, "area::case", &[Capability::Wakeups], |_storage| async {
            panic!("a skipped case does not run")
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "could not provide a storage")]
    async fn a_harness_that_cannot_provide_storage_fails_the_case() {
        struct Broken;
        impl Harness for Broken {
            fn backend(&self) -> &'static str {
                "broken"
            }
            async fn storage(&self) -> Result<TestStorage, HarnessError> {
                Err("set HAUL_TEST_BROKEN_URL".into())
            }
        }
        run_case(Broken, "area::case", &[], |_storage| async {}).await;
    }
}
