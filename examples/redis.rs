//! The quickstart on Redis: the same jobs and the same `run`, only the storage line
//! differs.
//!
//! ```sh
//! HAUL_REDIS_URL=redis://127.0.0.1:6379 cargo run --example redis --features redis
//! ```
//!
//! The keys live under the prefix `haul_example`; finished jobs of earlier runs are
//! pruned first so the final table counts this run only.

#[allow(dead_code, unreachable_pub)] // its `main` is the memory variant
#[path = "quickstart.rs"]
mod quickstart;

use haul::{RedisConfig, RedisStorage, Retention, prelude::*, storage::PruneParams};

#[tokio::main]
async fn main() -> haul::Result<()> {
    let url = std::env::var("HAUL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let storage = RedisStorage::connect_with(&url, RedisConfig::new().prefix("haul_example")).await?;
    let pruned = storage.prune(PruneParams::new(Retention::all(Duration::ZERO))).await?;
    if pruned > 0 {
        println!("pruned {pruned} finished jobs of earlier runs");
    }
    quickstart::run(storage).await
}
