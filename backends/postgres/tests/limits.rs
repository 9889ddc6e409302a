//! Queue limits on PostgreSQL (`HAUL_TEST_POSTGRES_URL`), beyond the conformance
//! cases: the unlimited claim statements' guard across storage handles (another
//! process's limit), the limited path across handles, and the guard's place in the
//! plan of the unlimited claims.

mod common;

use std::{collections::HashSet, time::Duration};

use haul_core::{Admin as _, ClaimParams, EnqueueParams, JobId, NewJob, QueueLimits, Storage};
use haul_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

/// Longer than a handle trusts its list of limited queues (1 s).
const REFRESHED: Duration = Duration::from_millis(1_300);

async fn enqueue(storage: &PostgresStorage, queue: &str, count: usize) -> Vec<JobId> {
    let jobs = (0..count).map(|n| NewJob::new("limited_job", json!({ "n": n })).queue(queue)).collect();
    storage.enqueue(EnqueueParams::new(jobs)).await.expect("enqueue").ids
}

async fn claim(storage: &PostgresStorage, queues: &[&str], limit: usize) -> Vec<JobId> {
    let claimed = storage.claim(ClaimParams::new(queues.iter().copied(), limit)).await.expect("claim");
    claimed.iter().map(|record| record.id).collect()
}

/// Another handle on `storage`'s schema with a pool of its own, as another process has.
async fn other_handle(storage: &PostgresStorage) -> PostgresStorage {
    PostgresStorage::from_pool_with(common::pool(10).await, PostgresConfig::new().schema(storage.schema()))
        .expect("a valid schema")
}

async fn running(storage: &PostgresStorage, queue: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".jobs WHERE queue = $1 AND state = 'running'",
        storage.schema()
    )))
    .bind(queue)
    .fetch_one(storage.pool())
    .await
    .expect("count")
}

/// A limit set through another handle: this handle's claims of the queue come back
/// empty until it reads the limits again, then obey the limit; never over it. (Its
/// claims of the queue with others come back empty too meanwhile; not checked here,
/// as a loaded machine may pass the refresh time between two calls.)
#[tokio::test]
async fn a_limit_set_elsewhere_empties_the_claims_of_the_queue_until_the_handle_reads_it() {
    let (setter, _guard) = common::storage().await;
    let claimer = other_handle(&setter).await;
    let limited = enqueue(&setter, "lim", 10).await;
    let free = enqueue(&setter, "free", 10).await;
    assert_eq!(claim(&claimer, &["lim"], 1).await, limited[..1], "the claimer knows of no limit");

    setter.set_queue_limits("lim", QueueLimits::new().concurrency(3)).await.expect("set");
    assert_eq!(claim(&setter, &["lim"], 10).await, limited[1..3], "the setter's next claim obeys the limit");
    assert!(claim(&claimer, &["lim"], 10).await.is_empty(), "the guard: nothing from the limited queue");
    assert_eq!(claim(&claimer, &["free"], 2).await, free[..2], "queues claimed without it are unaffected");
    assert_eq!(running(&setter, "lim").await, 3);

    tokio::time::sleep(REFRESHED).await;
    assert!(claim(&claimer, &["lim"], 10).await.is_empty(), "the limit is reached");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{}\".jobs SET state = 'completed', lease_token = NULL, lease_expires_at = NULL, \
         finished_at = now() WHERE id = $1",
        setter.schema()
    )))
    .bind(limited[0].0)
    .execute(setter.pool())
    .await
    .expect("complete one");
    assert_eq!(claim(&claimer, &["lim", "free"], 3).await, [limited[3], free[2], free[3]], "one slot, then free");
    assert_eq!(running(&setter, "lim").await, 3);

    // Removed elsewhere: the claimer's limited path finds no limit row, claims as
    // unlimited, and reads the limits again.
    setter.set_queue_limits("lim", QueueLimits::new()).await.expect("remove");
    assert_eq!(claim(&claimer, &["lim"], 2).await, limited[4..6]);
    assert_eq!(claim(&claimer, &["lim"], 2).await, limited[6..8]);
}

/// Handles with their own pools (as processes) claiming a limited queue at once never
/// take more than the limit together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_of_several_handles_never_exceed_a_limit_together() {
    const LIMIT: usize = 4;
    let (storage, _guard) = common::storage().await;
    storage.set_queue_limits("lim", QueueLimits::new().concurrency(LIMIT as u32)).await.expect("set");
    enqueue(&storage, "lim", 100).await;
    enqueue(&storage, "free", 100).await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(other_handle(&storage).await);
    }
    let mut claimers = tokio::task::JoinSet::new();
    for (n, handle) in handles.into_iter().enumerate() {
        for _ in 0..4 {
            let handle = handle.clone();
            let queues: &[&str] = if n % 2 == 0 { &["lim"] } else { &["free", "lim"] };
            claimers.spawn(async move { claim(&handle, queues, 3).await });
        }
    }
    let mut seen = HashSet::new();
    while let Some(claimed) = claimers.join_next().await {
        for id in claimed.expect("claimer") {
            assert!(seen.insert(id), "{id} claimed twice");
        }
    }
    assert_eq!(running(&storage, "lim").await, LIMIT as i64);
}

/// The unlimited claims read the limits once per statement (an InitPlan), not once per
/// queue or per job.
#[tokio::test]
async fn the_guard_of_the_unlimited_claims_is_evaluated_once_per_statement() {
    let (storage, _guard) = common::storage().await;
    enqueue(&storage, "a", 50).await;
    enqueue(&storage, "b", 50).await;
    let now = None::<chrono::DateTime<chrono::Utc>>;
    let (one_queue, several) = storage.claim_statements();
    let (one_queue, several) = (one_queue.to_owned(), several.to_owned());
    let mut tx = storage.pool().begin().await.expect("begin");
    let explain = |sql: &str| AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, FORMAT TEXT) {sql}"));
    let plan: Vec<String> = sqlx::query(explain(&one_queue))
        .bind(now)
        .bind("a")
        .bind(10_i64)
        .bind(30_000_000_i64)
        .bind("w")
        .bind(None::<i16>)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    let one_queue_plan = plan.join("\n");
    let plan: Vec<String> = sqlx::query(explain(&several))
        .bind(now)
        .bind(vec!["a".to_owned(), "b".to_owned()])
        .bind(10_i64)
        .bind(30_000_000_i64)
        .bind("w")
        .bind(vec![None::<i16>, None])
        .bind(vec![now, now])
        .fetch_all(&mut *tx)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    let several_plan = plan.join("\n");
    tx.rollback().await.expect("rollback");
    for plan in [&one_queue_plan, &several_plan] {
        println!("{plan}\n");
        let scans: Vec<&str> = plan.lines().filter(|line| line.contains("on queue_limits")).collect();
        assert_eq!(scans.len(), 1, "{plan}");
        assert!(scans[0].contains("(actual rows=0 loops=1)"), "read once: {plan}");
        assert!(plan.contains("InitPlan"), "{plan}");
        assert!(plan.contains("jobs_available_idx"), "{plan}");
    }
}

/// Storing a limit waits for the unlimited claims in flight: a claim that began while
/// the queue was unlimited cannot commit its jobs after a limited claim counted the
/// queue's running jobs (which would take the queue over its new limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_limit_waits_for_the_unlimited_claims_in_flight() {
    let (storage, _guard) = common::storage().await;
    enqueue(&storage, "lim", 10).await;
    // An unlimited claim of three jobs, in flight: its transaction is still open.
    let claim_sql = storage.claim_statements().0.to_owned();
    let mut in_flight = storage.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = '60s'").execute(&mut *in_flight).await.expect("set");
    let claimed = sqlx::query(AssertSqlSafe(claim_sql))
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind("lim")
        .bind(3_i64)
        .bind(30_000_000_i64)
        .bind("in-flight")
        .bind(None::<i16>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .fetch_all(&mut *in_flight)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);

    let setter = storage.clone();
    let mut set = tokio::spawn(async move { setter.set_queue_limits("lim", QueueLimits::new().concurrency(2)).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut set).await.is_err(),
        "storing the limit waits for the claim in flight"
    );
    in_flight.commit().await.expect("commit");
    set.await.expect("task").expect("set");
    assert!(claim(&storage, &["lim"], 10).await.is_empty(), "three run, over the limit of two");
    assert_eq!(running(&storage, "lim").await, 3);
}
