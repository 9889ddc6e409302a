//! A fresh schema per test, dropped afterwards (even when the test panics).

#![allow(dead_code, unreachable_pub, missing_docs)]

use haul_postgres::{PostgresConfig, PostgresStorage};
use sqlx::{
    AssertSqlSafe, Connection, PgConnection,
    postgres::{PgPool, PgPoolOptions},
};

/// A bound on waits for real asynchrony; never a timing assertion.
pub const GENEROUS: std::time::Duration = std::time::Duration::from_secs(20);

/// The server under test: `HAUL_TEST_POSTGRES_URL`.
pub fn url() -> String {
    std::env::var("HAUL_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set HAUL_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
    })
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!("haul_test_{}", &uuid::Uuid::now_v7().simple().to_string()[16..])
}

/// A pool on the test server.
pub async fn pool(max_connections: u32) -> PgPool {
    PgPoolOptions::new().max_connections(max_connections).connect(&url()).await.expect("connect to the test server")
}

/// A storage on a fresh schema (not migrated) and the guard that drops the schema.
pub async fn unmigrated() -> (PostgresStorage, SchemaGuard) {
    let schema = fresh_schema();
    let storage =
        PostgresStorage::from_pool_with(pool(20).await, PostgresConfig::new().schema(&schema)).expect("a valid schema");
    (storage, SchemaGuard { schema })
}

/// A migrated storage on a fresh schema and the guard that drops the schema.
pub async fn storage() -> (PostgresStorage, SchemaGuard) {
    let (storage, guard) = unmigrated().await;
    storage.migrate().await.expect("migrate");
    (storage, guard)
}

/// Drops its schema when dropped, on a connection of its own.
pub struct SchemaGuard {
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // A thread with its own runtime: Drop cannot await, and may run during a panic.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut conn = PgConnection::connect(&url()).await?;
                sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop schema {}: {dropped:?}", self.schema);
        }
    }
}
