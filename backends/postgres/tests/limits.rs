//! Queue limits on PostgreSQL (`HAUL_TEST_POSTGRES_URL`), beyond the conformance
//! cases: the unlimited claim statements' guard across storage handles (another
//! process's limit), the limited path across handles, the guard's place in the plan of
//! the unlimited claims, limit keys through every enqueue path, the wake-ups of limits
//! per key, and migration 0011 on a schema at 0010.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use haul_core::{
    Admin as _, ClaimParams, EnqueueParams, JobId, JobOutcome, JobRecord, ListParams, NewJob, QueueLimits,
    QueueLimitsRecord, Report, ReportParams, Storage, Unique,
};
use haul_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row, postgres::PgListener};

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

async fn set_key_limit(storage: &PostgresStorage, queue: &str, key_concurrency: u32) {
    storage.set_queue_limits(queue, QueueLimits::new().key_concurrency(key_concurrency)).await.expect("set");
}

/// A job of `queue` with the limit key `key` (`None`: no key).
fn keyed(queue: &str, key: Option<&str>) -> NewJob {
    let job = NewJob::new("keyed_job", json!({})).queue(queue);
    match key {
        Some(key) => job.limit_key(key),
        None => job,
    }
}

async fn report_completed(storage: &PostgresStorage, records: &[JobRecord]) {
    let reports = records
        .iter()
        .map(|record| Report { claim: record.claim().expect("a claimed job"), outcome: JobOutcome::Completed })
        .collect();
    let outcome = storage.report(ReportParams::new(reports)).await.expect("report");
    assert_eq!(outcome.applied.len(), records.len(), "every claim held");
}

/// The keys of queue `keyed` with more than one running job.
async fn keys_running_twice(storage: &PostgresStorage) -> Vec<String> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT limit_key FROM \"{}\".jobs WHERE queue = 'keyed' AND state = 'running' \
         AND limit_key IS NOT NULL GROUP BY limit_key HAVING count(*) > 1",
        storage.schema()
    )))
    .fetch_all(storage.pool())
    .await
    .expect("count the running jobs per key")
}

/// The claims and runs of the race below, as the claimers saw them.
#[derive(Default)]
struct KeyedRuns {
    /// Per key: the jobs claimed and not yet about to be reported.
    running: HashMap<String, usize>,
    /// Per key: the jobs in the order they were claimed.
    order: HashMap<String, Vec<JobId>>,
}

/// Handles with their own pools (as processes) claiming and completing jobs of a key
/// limit of 1 at once never run two jobs of one key together, and run each key's jobs
/// in claim order; the keyless jobs are not held back. Each claimer checks storage
/// while its jobs run, and remembers them until just before it reports them (so a
/// second job of a key seen while the first is still remembered was claimed while the
/// first was running in storage).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_of_several_handles_never_run_two_jobs_of_a_key_at_once() {
    const KEYS: usize = 4;
    const PER_KEY: usize = 10;
    const KEYLESS: usize = 6;
    const TOTAL: usize = KEYS * PER_KEY + KEYLESS;
    let (storage, _guard) = common::storage().await;
    set_key_limit(&storage, "keyed", 1).await;
    let names: Vec<String> = (0..KEYS).map(|key| format!("customer-{key}")).collect();
    // Interleaved (the first job of every key, then the second…), the keyless ones first.
    let mut jobs: Vec<NewJob> = (0..KEYLESS).map(|_| keyed("keyed", None)).collect();
    for _ in 0..PER_KEY {
        jobs.extend(names.iter().map(|name| keyed("keyed", Some(name))));
    }
    let ids = storage.enqueue(EnqueueParams::new(jobs.clone())).await.expect("enqueue").ids;
    let mut expected: HashMap<String, Vec<JobId>> = HashMap::new();
    for (job, id) in jobs.iter().zip(&ids) {
        if let Some(key) = &job.limit_key {
            expected.entry(key.clone()).or_default().push(*id);
        }
    }

    let runs = Arc::new(Mutex::new(KeyedRuns::default()));
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut claimers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let handle = other_handle(&storage).await;
        for _ in 0..2 {
            let (handle, runs, done) = (handle.clone(), Arc::clone(&runs), Arc::clone(&done));
            claimers.spawn(async move {
                while done.load(Ordering::SeqCst) < TOTAL {
                    assert!(Instant::now() < deadline, "the jobs were not all run in time");
                    let claimed = handle.claim(ClaimParams::new(["keyed"], 3)).await.expect("claim");
                    if claimed.is_empty() {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    {
                        let mut runs = runs.lock().expect("runs");
                        for record in &claimed {
                            let Some(key) = record.limit_key.clone() else { continue };
                            let running = runs.running.entry(key.clone()).or_default();
                            *running += 1;
                            assert_eq!(*running, 1, "two jobs of `{key}` running at once");
                            runs.order.entry(key).or_default().push(record.id);
                        }
                    }
                    // While they run (the other claimers racing meanwhile), no key has
                    // two running jobs in storage.
                    let doubled = keys_running_twice(&handle).await;
                    assert!(doubled.is_empty(), "two jobs running at once of {doubled:?}");
                    {
                        let mut runs = runs.lock().expect("runs");
                        for key in claimed.iter().filter_map(|record| record.limit_key.as_ref()) {
                            *runs.running.get_mut(key).expect("claimed") -= 1;
                        }
                    }
                    report_completed(&handle, &claimed).await;
                    done.fetch_add(claimed.len(), Ordering::SeqCst);
                }
            });
        }
    }
    while let Some(joined) = claimers.join_next().await {
        joined.expect("claimer");
    }
    let runs = runs.lock().expect("runs");
    assert_eq!(runs.order, expected, "each key's jobs ran one at a time, in claim order");
    assert_eq!(done.load(Ordering::SeqCst), TOTAL);
}

/// A job's limit key is stored by every enqueue path (one job, a batch, a batch with a
/// unique job, the caller's transaction), NULL when it has none, and read back by get,
/// list and claim.
#[tokio::test]
async fn the_limit_key_round_trips_through_every_enqueue_path() {
    let (storage, _guard) = common::storage().await;
    let single = storage.enqueue(EnqueueParams::new(vec![keyed("q", Some("one"))])).await.expect("enqueue").ids;
    let batch = storage
        .enqueue(EnqueueParams::new(vec![keyed("q", Some("b-1")), keyed("q", None), keyed("q", Some("b-1"))]))
        .await
        .expect("enqueue a batch")
        .ids;
    let unique = storage
        .enqueue(EnqueueParams::new(vec![
            keyed("q", Some("u")).unique(Unique::new("the unique one")),
            keyed("q", Some("é")),
        ]))
        .await
        .expect("enqueue a batch with a unique job")
        .ids;
    let mut tx = storage.pool().begin().await.expect("begin");
    let in_tx = storage.enqueue_in_tx(&mut tx, vec![keyed("q", Some("tx"))]).await.expect("enqueue in tx").ids;
    tx.commit().await.expect("commit");

    let expected: Vec<(JobId, Option<&str>)> = vec![
        (single[0], Some("one")),
        (batch[0], Some("b-1")),
        (batch[1], None),
        (batch[2], Some("b-1")),
        (unique[0], Some("u")),
        (unique[1], Some("é")),
        (in_tx[0], Some("tx")),
    ];
    let stored: HashMap<JobId, Option<String>> =
        sqlx::query(AssertSqlSafe(format!("SELECT id, limit_key FROM \"{}\".jobs", storage.schema())))
            .fetch_all(storage.pool())
            .await
            .expect("read the column")
            .iter()
            .map(|row| (JobId(row.get("id")), row.get("limit_key")))
            .collect();
    let listed: HashMap<JobId, Option<String>> = storage
        .list(ListParams::new().queue("q"))
        .await
        .expect("list")
        .into_iter()
        .map(|record| (record.id, record.limit_key))
        .collect();
    let claimed: HashMap<JobId, Option<String>> = storage
        .claim(ClaimParams::new(["q"], 10))
        .await
        .expect("claim")
        .into_iter()
        .map(|record| (record.id, record.limit_key))
        .collect();
    assert_eq!(claimed.len(), expected.len(), "the queue is unlimited");
    for (id, key) in expected {
        let key = key.map(str::to_owned);
        assert_eq!(stored[&id], key, "stored: {id}");
        assert_eq!(listed[&id], key, "listed: {id}");
        assert_eq!(claimed[&id], key, "claimed: {id}");
        assert_eq!(storage.get(id).await.expect("get").expect("exists").limit_key, key, "got: {id}");
    }
}

/// A queue with only a limit per key is a limited queue: the unlimited claim
/// statements take nothing from it, nor from the other queues claimed with it, whatever
/// their caller believed; the storage's claims obey the limit.
#[tokio::test]
async fn the_guard_of_the_unlimited_claims_holds_for_a_queue_with_only_a_key_limit() {
    let (storage, _guard) = common::storage().await;
    let keyed_ids = storage
        .enqueue(EnqueueParams::new((0..4).map(|_| keyed("keyed", Some("k"))).collect()))
        .await
        .expect("enqueue")
        .ids;
    enqueue(&storage, "free", 4).await;
    set_key_limit(&storage, "keyed", 1).await;
    assert_eq!(
        storage.queue_limits().await.expect("list"),
        vec![QueueLimitsRecord::new("keyed", QueueLimits::new().key_concurrency(1))]
    );

    let (one_queue, several) = storage.claim_statements();
    let (one_queue, several) = (one_queue.to_owned(), several.to_owned());
    let now = None::<chrono::DateTime<chrono::Utc>>;
    let claim_one = |queue: &'static str| {
        sqlx::query(AssertSqlSafe(one_queue.clone()))
            .bind(now)
            .bind(queue)
            .bind(10_i64)
            .bind(30_000_000_i64)
            .bind("unaware")
            .bind(None::<i16>)
            .bind(now)
    };
    let claimed = claim_one("keyed").fetch_all(storage.pool()).await.expect("claim");
    assert!(claimed.is_empty(), "the one-queue statement takes nothing from the key-limited queue");
    let claimed = sqlx::query(AssertSqlSafe(several))
        .bind(now)
        .bind(vec!["free".to_owned(), "keyed".to_owned()])
        .bind(10_i64)
        .bind(30_000_000_i64)
        .bind("unaware")
        .bind(vec![None::<i16>, None])
        .bind(vec![now, now])
        .fetch_all(storage.pool())
        .await
        .expect("claim");
    assert!(claimed.is_empty(), "the several-queue statement takes nothing when one of them is limited");
    assert_eq!(claim_one("free").fetch_all(storage.pool()).await.expect("claim").len(), 4, "an unlimited queue");

    assert_eq!(claim(&storage, &["keyed"], 10).await, keyed_ids[..1], "one job of the key at a time");
    assert!(claim(&storage, &["keyed"], 10).await.is_empty());
}

/// Everything this schema's channel carries until `sentinel` (sent after the
/// statements watched): notifications from one session arrive in commit order.
async fn notifications_until_sentinel(listener: &mut PgListener, storage: &PostgresStorage) -> Vec<String> {
    sqlx::query("SELECT pg_notify($1, 'sentinel')")
        .bind(storage.channel())
        .execute(storage.pool())
        .await
        .expect("notify");
    let mut payloads = Vec::new();
    loop {
        let notification =
            tokio::time::timeout(Duration::from_secs(10), listener.recv()).await.expect("in time").expect("recv");
        if notification.payload() == "sentinel" {
            return payloads;
        }
        payloads.push(notification.payload().to_owned());
    }
}

/// Enqueues `jobs` in a transaction of their own: their NOTIFY is sent by the commit,
/// before this returns (an enqueue through the pool notifies later, from a task).
async fn enqueue_notified(storage: &PostgresStorage, jobs: Vec<NewJob>) {
    let mut tx = storage.pool().begin().await.expect("begin");
    storage.enqueue_in_tx(&mut tx, jobs).await.expect("enqueue");
    tx.commit().await.expect("commit");
}

/// An outcome batch that ends jobs with a key of a queue with a limit per key notifies
/// the queue once, although none of its jobs is available; ending only keyless jobs of
/// it, or keyed jobs of a queue without a limit per key, notifies nothing. A rescue
/// that ends keyed jobs of it (discarded: no attempt left) notifies it once too.
#[tokio::test]
async fn ending_keyed_jobs_of_a_key_limited_queue_notifies_it_once() {
    let (storage, _guard) = common::storage().await;
    set_key_limit(&storage, "keyed", 2).await;
    let mut listener = PgListener::connect_with(storage.pool()).await.expect("listen");
    listener.listen(storage.channel()).await.expect("listen");
    let jobs = vec![
        keyed("keyed", Some("a")),
        keyed("keyed", Some("a")),
        keyed("keyed", Some("b")),
        keyed("keyed", None),
        keyed("plain", Some("a")),
    ];
    enqueue_notified(&storage, jobs).await;
    let enqueued = notifications_until_sentinel(&mut listener, &storage).await;
    assert_eq!(enqueued.iter().collect::<HashSet<_>>(), HashSet::from([&"keyed".to_owned(), &"plain".to_owned()]));
    let claimed = storage.claim(ClaimParams::new(["keyed", "plain"], 10)).await.expect("claim");
    assert_eq!(claimed.len(), 5);
    let (with_key, without): (Vec<JobRecord>, Vec<JobRecord>) =
        claimed.into_iter().partition(|record| record.queue == "keyed" && record.limit_key.is_some());

    report_completed(&storage, &without).await;
    assert!(notifications_until_sentinel(&mut listener, &storage).await.is_empty(), "no slot of a key freed");
    report_completed(&storage, &with_key).await;
    assert_eq!(notifications_until_sentinel(&mut listener, &storage).await, ["keyed"], "once per queue");

    let last_attempts = vec![keyed("keyed", Some("a")).max_attempts(1), keyed("keyed", Some("b")).max_attempts(1)];
    enqueue_notified(&storage, last_attempts).await;
    assert_eq!(notifications_until_sentinel(&mut listener, &storage).await, ["keyed"]);
    let lease = Duration::from_secs(1);
    let claimed = storage.claim(ClaimParams::new(["keyed"], 10).lease(lease)).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let rescued = storage.rescue_expired(Some(later)).await.expect("rescue");
    assert_eq!(rescued.discarded, 2);
    assert_eq!(notifications_until_sentinel(&mut listener, &storage).await, ["keyed"], "once per queue");
}

/// Migration 0011 on a schema at 0010: the stored jobs have no limit key, the stored
/// concurrency limits stay (a row that limited nothing goes), the index of running
/// jobs per key exists, and limits per key can be stored and obeyed.
#[tokio::test]
async fn the_limit_key_migration_applies_on_a_schema_at_0010() {
    use sqlx::{migrate::Migrator, postgres::PgPoolOptions};

    let (storage, guard) = common::unmigrated().await;
    let schema = guard.schema.as_str();
    let all = sqlx::migrate!("./migrations");
    let mut before = Migrator::with_migrations(all.iter().filter(|m| m.version < 11).cloned().collect());
    before.dangerous_set_table_name(format!("\"{schema}\"._sqlx_migrations"));
    before.create_schema(format!("\"{schema}\""));
    let options = (*storage.pool().connect_options()).clone().options([("search_path", schema)]);
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.expect("connect");
    before.run(&pool).await.expect("migrations before 0011");
    let old = JobId::new();
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, queue, state, max_attempts, run_at, created_at) \
         VALUES ($1, 'keyed_job', '{}', 'keyed', 'available', 3, now(), now())",
    )
    .bind(old.0)
    .execute(&pool)
    .await
    .expect("a job stored before 0011");
    sqlx::query("INSERT INTO queue_limits (queue, concurrency) VALUES ('capped', 3), ('nothing', NULL)")
        .execute(&pool)
        .await
        .expect("limits stored before 0011");
    pool.close().await;

    storage.migrate().await.expect("migrate");
    storage.check_ready().await.expect("ready");
    assert_eq!(storage.get(old).await.expect("get").expect("kept").limit_key, None);
    assert_eq!(
        storage.queue_limits().await.expect("list"),
        vec![QueueLimitsRecord::new("capped", QueueLimits::new().concurrency(3))]
    );
    let index: Option<String> =
        sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2")
            .bind(schema)
            .bind("jobs_running_limit_key_idx")
            .fetch_optional(storage.pool())
            .await
            .expect("read the catalog");
    let index = index.expect("the index of running jobs per key");
    assert!(
        index.contains("(queue, limit_key) WHERE ((state = 'running'::text) AND (limit_key IS NOT NULL))"),
        "{index}"
    );

    storage.set_queue_limits("keyed", QueueLimits::new().concurrency(5).key_concurrency(1)).await.expect("set");
    let ids = storage
        .enqueue(EnqueueParams::new(vec![keyed("keyed", Some("k")), keyed("keyed", Some("k"))]))
        .await
        .expect("enqueue")
        .ids;
    assert_eq!(claim(&storage, &["keyed"], 10).await, [old, ids[0]], "the old job, then one of the key");
    let empty = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".queue_limits (queue, concurrency, key_concurrency) VALUES ('x', NULL, NULL)"
    )))
    .execute(storage.pool())
    .await
    .expect_err("a row that limits nothing is refused");
    let code = empty.as_database_error().and_then(|error| error.code()).map(|code| code.into_owned());
    assert_eq!(code.as_deref(), Some("23514"), "check_violation: {empty:?}");
}

/// The relation of every node of type `node_type` in the JSON plan `plan`.
fn nodes_on(plan: &serde_json::Value, node_type: &str, found: &mut Vec<String>) {
    match plan {
        serde_json::Value::Object(node) => {
            if node.get("Node Type").and_then(serde_json::Value::as_str) == Some(node_type) {
                let relation = node.get("Relation Name").and_then(serde_json::Value::as_str).unwrap_or_default();
                found.push(relation.to_owned());
            }
            node.values().for_each(|value| nodes_on(value, node_type, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| nodes_on(item, node_type, found)),
        _ => {}
    }
}

/// Every scan of the index `index` in the JSON plan `plan`: its actual rows and loops.
fn index_scans(plan: &serde_json::Value, index: &str, found: &mut Vec<(u64, u64)>) {
    match plan {
        serde_json::Value::Object(node) => {
            if node.get("Index Name").and_then(serde_json::Value::as_str) == Some(index) {
                let count = |key: &str| node.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
                found.push((count("Actual Rows"), count("Actual Loops")));
            }
            node.values().for_each(|value| index_scans(value, index, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| index_scans(item, index, found)),
        _ => {}
    }
}

/// The plan of the limited claim of up to `limit` jobs of `queue` (limited to
/// `key_concurrency` per key), as the storage runs it: in its transaction's settings,
/// after its lock, the generic plan of the prepared statement. Rolled back.
async fn explain_limited_claim(storage: &PostgresStorage, queue: &str, limit: i64, key_concurrency: i32) -> String {
    let (begin, lock, claim) = storage.limited_claim_statements();
    let mut conn = storage.pool().acquire().await.expect("acquire");
    sqlx::raw_sql(AssertSqlSafe(begin.to_owned())).execute(&mut *conn).await.expect("begin");
    sqlx::query(AssertSqlSafe(lock.to_owned())).bind(vec![queue.to_owned()]).fetch_all(&mut *conn).await.expect("lock");
    sqlx::raw_sql(AssertSqlSafe(format!("PREPARE limited_claim AS {claim}")))
        .execute(&mut *conn)
        .await
        .expect("prepare");
    let explain = format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE limited_claim (NULL, ARRAY['{queue}'], {limit}, 30000000, 'explain', \
         ARRAY[NULL::smallint], ARRAY[NULL::timestamptz], ARRAY['{queue}'], ARRAY[NULL::integer], \
         ARRAY[{key_concurrency}], {}, ARRAY[NULL::integer], ARRAY[NULL::bigint], ARRAY[NULL::integer], \
         ARRAY[NULL::bigint])",
        haul_core::KEY_LIMIT_SCAN
    );
    let plan: serde_json::Value =
        sqlx::query_scalar(AssertSqlSafe(explain)).fetch_one(&mut *conn).await.expect("explain");
    for statement in ["ROLLBACK", "DEALLOCATE limited_claim"] {
        sqlx::raw_sql(statement).execute(&mut *conn).await.expect("clean up");
    }
    plan.to_string()
}

/// The limited claim of a key-limited queue reads indexes only (never the whole jobs
/// table, even in a plan made without statistics), fetches the jobs it chose by ctid,
/// reads the running jobs with a key through their partial index, and ranks only the
/// first
/// `2 * cap + 64` available jobs when they hold enough jobs with room; all
/// `KEY_LIMIT_SCAN` of them only when they do not.
#[tokio::test]
async fn a_key_limited_claim_reads_few_jobs_when_the_first_ones_have_room() {
    const KEYS: usize = 300;
    let (storage, _guard) = common::storage().await;
    set_key_limit(&storage, "spread", 1).await;
    set_key_limit(&storage, "crowded", 1).await;
    let names: Vec<String> = (0..KEYS).map(|key| format!("k{key}")).collect();
    let spread: Vec<NewJob> = (0..3).flat_map(|_| names.iter().map(|name| keyed("spread", Some(name)))).collect();
    storage.enqueue(EnqueueParams::new(spread)).await.expect("enqueue");
    let mut crowded: Vec<NewJob> = (0..900).map(|_| keyed("crowded", Some("full"))).collect();
    crowded.extend(names.iter().map(|name| keyed("crowded", Some(name))));
    for batch in crowded.chunks(500) {
        storage.enqueue(EnqueueParams::new(batch.to_vec())).await.expect("enqueue");
    }
    assert_eq!(claim(&storage, &["spread"], 5).await.len(), 5);
    assert_eq!(claim(&storage, &["crowded"], 1).await.len(), 1, "the full key's first job");

    let plan = explain_limited_claim(&storage, "spread", 10, 1).await;
    assert!(!plan.contains("Seq Scan") && !plan.contains("Bitmap"), "{plan}");
    let mut tid_scans = Vec::new();
    nodes_on(&serde_json::from_str(&plan).expect("json"), "Tid Scan", &mut tid_scans);
    let on_jobs = tid_scans.iter().filter(|relation| relation.as_str() == "jobs").count();
    assert_eq!(on_jobs, 2, "the chosen jobs locked, then claimed, by ctid: {plan}");
    let mut running = Vec::new();
    index_scans(&serde_json::from_str(&plan).expect("json"), "jobs_running_limit_key_idx", &mut running);
    assert_eq!(running, [(5, 1)], "the running jobs with a key, read once: {plan}");
    let mut walks = Vec::new();
    index_scans(&serde_json::from_str(&plan).expect("json"), "jobs_available_idx", &mut walks);
    let read: Vec<u64> = walks.iter().filter(|(_, loops)| *loops > 0).map(|(rows, _)| *rows).collect();
    assert_eq!(read.len(), 1, "one walk: {plan}");
    assert!(read[0] <= 2 * 10 + 64 + 1, "the first 2 * cap + 64 jobs: {read:?}");

    let plan = explain_limited_claim(&storage, "crowded", 10, 1).await;
    assert!(!plan.contains("Seq Scan") && !plan.contains("Bitmap"), "{plan}");
    let mut walks = Vec::new();
    index_scans(&serde_json::from_str(&plan).expect("json"), "jobs_available_idx", &mut walks);
    let read: Vec<u64> = walks.iter().filter(|(_, loops)| *loops > 0).map(|(rows, _)| *rows).collect();
    assert_eq!(read.len(), 2, "the first jobs, then all KEY_LIMIT_SCAN: {plan}");
    assert!(read[0] <= 2 * 10 + 64 + 1 && read[1] >= haul_core::KEY_LIMIT_SCAN as u64, "{read:?}");
    let claimed = serde_json::from_str::<serde_json::Value>(&plan).expect("json")[0]["Plan"]["Actual Rows"].as_u64();
    assert_eq!(claimed, Some(10), "ten keys with room behind the full key's 899 jobs");
}
