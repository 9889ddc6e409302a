//! `Storage::migrate` and `Storage::check_ready` on PostgreSQL: a schema that was never
//! migrated (or lacks a migration) is refused with the fix in the message, and a worker
//! on it fails at start instead of warning at every poll; a worker whose server is
//! down waits for it instead.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use haul::{Error, Storage, Worker};
use haul_postgres::{PostgresConfig, PostgresStorage};
use sqlx::{AssertSqlSafe, postgres::PgPoolOptions};

/// Bounds a call that must return at once; it never delays a passing test.
const PATIENCE: Duration = Duration::from_secs(20);

/// The reason of a `StorageNotReady` error, or a panic naming what came instead.
fn not_ready_reason(result: haul::Result<()>) -> String {
    match result {
        Err(Error::StorageNotReady { backend: "postgres", reason }) => reason,
        other => panic!("expected StorageNotReady from postgres, got {other:?}"),
    }
}

#[tokio::test]
async fn a_schema_never_migrated_is_not_ready_and_the_message_says_to_migrate() {
    let (storage, guard) = common::unmigrated().await;
    let reason = not_ready_reason(Storage::check_ready(&storage).await);
    assert!(reason.contains(&format!("schema `{}` does not exist", guard.schema)), "{reason}");
    assert!(reason.contains("storage.migrate()") && reason.contains("?migrate=true"), "{reason}");
}

#[tokio::test]
async fn a_schema_without_the_migrations_table_is_not_ready() {
    let (storage, guard) = common::unmigrated().await;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{}\"", guard.schema))).execute(storage.pool()).await.unwrap();
    let reason = not_ready_reason(Storage::check_ready(&storage).await);
    assert!(reason.contains(&guard.schema) && reason.contains("no `_sqlx_migrations` table"), "{reason}");
    assert!(reason.contains("storage.migrate()"), "{reason}");
}

#[tokio::test]
async fn migrating_through_the_storage_trait_makes_the_schema_ready() {
    let (storage, _guard) = common::unmigrated().await;
    Storage::migrate(&storage).await.unwrap();
    Storage::check_ready(&storage).await.unwrap();
    Storage::migrate(&storage).await.unwrap();
    Storage::check_ready(&storage).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_migrations_of_one_schema_all_succeed() {
    let (storage, guard) = common::unmigrated().await;
    let other =
        PostgresStorage::from_pool_with(common::pool(2).await, PostgresConfig::new().schema(&guard.schema)).unwrap();
    let (first, second, third) =
        tokio::join!(Storage::migrate(&storage), Storage::migrate(&other), Storage::migrate(&storage));
    first.unwrap();
    second.unwrap();
    third.unwrap();
    Storage::check_ready(&storage).await.unwrap();
}

#[tokio::test]
async fn a_schema_missing_one_migration_is_not_ready_naming_that_version() {
    let (storage, guard) = common::storage().await;
    let table = format!("\"{}\"._sqlx_migrations", guard.schema);
    let latest: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(version) FROM {table}")))
        .fetch_one(storage.pool())
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE version = $1")))
        .bind(latest)
        .execute(storage.pool())
        .await
        .unwrap();
    let reason = not_ready_reason(Storage::check_ready(&storage).await);
    assert!(reason.contains(&format!("lacks migration {latest} (")), "{reason}");
    assert!(reason.contains("storage.migrate()"), "{reason}");
}

#[tokio::test]
async fn a_version_applied_by_a_newer_haul_does_not_make_the_schema_unready() {
    let (storage, guard) = common::storage().await;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\"._sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999999999999, 'from a newer haul', true, '\\x00', 0)",
        guard.schema
    )))
    .execute(storage.pool())
    .await
    .unwrap();
    Storage::check_ready(&storage).await.unwrap();
}

#[tokio::test]
async fn a_worker_on_a_schema_never_migrated_fails_at_start_with_the_fix() {
    let (storage, _guard) = common::unmigrated().await;
    let worker = Worker::builder(storage).build();
    let result = tokio::time::timeout(PATIENCE, worker.run_until(std::future::pending())).await;
    let reason = not_ready_reason(result.expect("run_until returns at once"));
    assert!(reason.contains("storage.migrate()"), "{reason}");
}

#[tokio::test]
async fn a_worker_whose_storage_cannot_be_reached_at_start_waits_for_it_until_stopped() {
    // Nothing listens on port 1; the pool connects on first use.
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://postgres@127.0.0.1:1/test")
        .unwrap();
    let worker = Worker::builder(PostgresStorage::from_pool(pool)).build();
    // The worker keeps asking (a storage that is down for a moment must not end it);
    // the stop signal ends the wait, and the worker returns without an error.
    let stop = tokio::time::sleep(Duration::from_secs(1));
    let result = tokio::time::timeout(PATIENCE, worker.run_until(stop)).await;
    result.expect("run_until returns once stopped").unwrap();
}
