//! A fresh key prefix per test, whose keys are deleted afterwards (even when the test
//! panics).

#![allow(dead_code, unreachable_pub, missing_docs)]

use haul_redis::{RedisConfig, RedisStorage};

/// The server under test: `HAUL_TEST_REDIS_URL`.
pub fn url() -> String {
    std::env::var("HAUL_TEST_REDIS_URL")
        .unwrap_or_else(|_| panic!("set HAUL_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) to run the Redis tests"))
}

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("haul_test_{}", &uuid::Uuid::now_v7().simple().to_string()[16..])
}

/// The nodes of the Redis Cluster in `HAUL_TEST_REDIS_CLUSTER_URLS` (comma-separated),
/// for the tests ignored without one (`-- --ignored on_a_cluster`).
pub fn cluster_nodes() -> Vec<String> {
    let urls = std::env::var("HAUL_TEST_REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| panic!("set HAUL_TEST_REDIS_CLUSTER_URLS to the nodes of a Redis Cluster"));
    urls.split(',').map(str::to_owned).collect()
}

/// A storage on a fresh prefix and the guard that deletes its keys.
pub async fn storage() -> (RedisStorage, KeysGuard) {
    let prefix = fresh_prefix();
    let storage = RedisStorage::connect_with(&url(), RedisConfig::new().prefix(&prefix)).await.expect("connect");
    (storage, KeysGuard { prefix })
}

/// A plain connection to the test server, for looking at keys directly.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url()).expect("a valid URL").get_multiplexed_async_connection().await.expect("connect")
}

/// Every key of `prefix` on the server.
pub async fn keys_of(prefix: &str) -> Vec<String> {
    let mut conn = raw().await;
    let mut keys = Vec::new();
    for pattern in [format!("haul:{{{prefix}}}:*"), format!("haul:{{{prefix}:*")] {
        let found: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.expect("KEYS");
        keys.extend(found);
    }
    keys.sort();
    keys
}

/// Deletes every key of its prefix when dropped, on a connection of its own.
pub struct KeysGuard {
    pub prefix: String,
}

impl KeysGuard {
    /// The key of queue `queue` named `suffix` under this prefix, e.g. `running` or
    /// `job:<id>`: `haul:{<prefix>:<queue>}:<suffix>`.
    pub fn queue_key(&self, queue: &str, suffix: &str) -> String {
        format!("haul:{{{}:{queue}}}:{suffix}", self.prefix)
    }
}

impl Drop for KeysGuard {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // A thread with its own runtime: Drop cannot await, and may run during a panic.
        let purged = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let storage = RedisStorage::connect_with(&url(), RedisConfig::new().prefix(&prefix)).await?;
                storage.purge().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(purged, Ok(Ok(()))) {
            eprintln!("could not delete the keys of prefix {}: {purged:?}", self.prefix);
        }
    }
}
