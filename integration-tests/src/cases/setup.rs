//! Setting a storage up through the common API: `migrate` and `check_ready`.
//!
//! The harness hands each case a storage already set up (a migrated schema, a fresh key
//! prefix), as an application's deployment would; these cases check that setting it up
//! again, or from several processes at once, is harmless.

use super::*;

/// `migrate` can run again on a storage in use: it succeeds, keeps the stored jobs,
/// and leaves the storage ready.
pub async fn migrate_is_idempotent_and_the_storage_is_ready_after_it(storage: TestStorage) {
    storage.migrate().await.expect("migrate succeeds");
    storage.check_ready().await.expect("the storage is ready after migrate");
    let id = enqueue_one(&storage, job("setup"), at(0)).await;

    storage.migrate().await.expect("migrating again succeeds");
    storage.check_ready().await.expect("the storage is still ready");
    claim_only(&storage, "setup", id, at(1)).await;
}

/// Several `migrate` calls at once (processes starting together) all succeed, and
/// leave the storage ready.
pub async fn concurrent_migrations_all_succeed(storage: TestStorage) {
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let storage = storage.clone();
            tokio::spawn(async move { storage.migrate().await })
        })
        .collect();
    for call in calls {
        call.await.expect("the migrate task does not panic").expect("every concurrent migrate succeeds");
    }
    storage.check_ready().await.expect("the storage is ready after concurrent migrations");
}
