//! Picking a backend from a URL.

use std::sync::Arc;

use haul_core::{Error, Result, Storage};

/// Connects to the storage a URL names, among the backends compiled in:
/// `memory://` (feature `memory`), `postgres://` or `postgresql://` (feature
/// `postgres`), `redis://` or `rediss://` (feature `redis`). Swapping storage is then
/// a configuration change.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> haul::Result<()> {
/// let storage = haul::connect("memory://").await?;
/// assert_eq!(storage.backend_name(), "memory");
/// assert!(haul::connect("ftp://example.com").await.is_err());
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn Storage>> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme).ok_or_else(|| {
        Error::InvalidArgument(
            format!("`{url}` is not a storage URL (expected memory://, postgres://… or redis://…)").into(),
        )
    })?;
    match scheme {
        "memory" => memory(),
        "postgres" | "postgresql" => postgres(url, scheme).await,
        "redis" | "rediss" => redis(url, scheme).await,
        other => Err(Error::InvalidArgument(
            format!("unknown storage scheme `{other}://` (expected memory://, postgres://… or redis://…)").into(),
        )),
    }
}

#[cfg(feature = "memory")]
fn memory() -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(haul_memory::MemoryStorage::new()))
}

#[cfg(not(feature = "memory"))]
fn memory() -> Result<Arc<dyn Storage>> {
    not_available("memory", "memory")
}

/// PostgreSQL with the default schema (`haul`). Connecting runs no DDL: the tables are
/// created by `PostgresStorage::migrate()`, once per deployment.
#[cfg(feature = "postgres")]
async fn postgres(url: &str, _scheme: &str) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(haul_postgres::PostgresStorage::connect(url).await?))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str, scheme: &str) -> Result<Arc<dyn Storage>> {
    not_available(scheme, "postgres")
}

/// Redis with the default key prefix (`haul`).
#[cfg(feature = "redis")]
async fn redis(url: &str, _scheme: &str) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(haul_redis::RedisStorage::connect(url).await?))
}

#[cfg(not(feature = "redis"))]
async fn redis(_url: &str, scheme: &str) -> Result<Arc<dyn Storage>> {
    not_available(scheme, "redis")
}

#[cfg(not(all(feature = "memory", feature = "postgres", feature = "redis")))]
fn not_available(scheme: &str, feature: &'static str) -> Result<Arc<dyn Storage>> {
    Err(Error::BackendNotAvailable { scheme: scheme.to_owned(), feature })
}
