//! The quickstart on PostgreSQL: the same jobs and the same `run`, only the storage
//! line differs.
//!
//! ```sh
//! HAUL_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example postgres --features postgres
//! ```
//!
//! The jobs live in the schema `haul_example`; finished jobs of earlier runs are pruned
//! first so the final table counts this run only.

#[allow(dead_code, unreachable_pub)] // its `main` is the memory variant
#[path = "quickstart.rs"]
mod quickstart;

use haul::{PostgresConfig, PostgresStorage, Retention, prelude::*, storage::PruneParams};

#[tokio::main]
async fn main() -> haul::Result<()> {
    let url = std::env::var("HAUL_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let storage = PostgresStorage::connect_with(&url, PostgresConfig::new().schema("haul_example")).await?;
    storage.migrate().await?;
    let pruned = storage.prune(PruneParams::new(Retention::all(Duration::ZERO))).await?;
    if pruned > 0 {
        println!("pruned {pruned} finished jobs of earlier runs");
    }
    quickstart::run(storage).await
}
