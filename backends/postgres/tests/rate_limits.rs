//! Rate limits on PostgreSQL (`HAUL_TEST_POSTGRES_URL`), beyond the conformance cases:
//! claimers of several handles racing on a rate and a rate per key, the wait a claim
//! reports (`rate_limited_for`), the bounded start log (`rate_limit_starts`) through
//! claims and prune, migration 0012 on a schema at 0011, and queues without a rate
//! never reading the start log.

mod common;

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use haul_core::{
    Admin as _, ClaimParams, EnqueueParams, JobId, NewJob, PacedClaim, PruneParams, QueueLimits, QueueLimitsRecord,
    RateLimit, Retention, Storage,
};
use haul_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

/// A job of `queue` with the limit key `key` (`None`: no key).
fn job(queue: &str, key: Option<&str>) -> NewJob {
    let job = NewJob::new("rated_job", json!({})).queue(queue);
    match key {
        Some(key) => job.limit_key(key),
        None => job,
    }
}

async fn enqueue(storage: &PostgresStorage, jobs: Vec<NewJob>) -> Vec<JobId> {
    let mut ids = Vec::new();
    for batch in jobs.chunks(500) {
        ids.extend(storage.enqueue(EnqueueParams::new(batch.to_vec())).await.expect("enqueue").ids);
    }
    ids
}

async fn claim_at(storage: &PostgresStorage, queues: &[&str], limit: usize, now: DateTime<Utc>) -> PacedClaim {
    let params = ClaimParams::new(queues.iter().copied(), limit).now(now).lease(Duration::from_secs(3_600));
    storage.claim_paced(params).await.expect("claim")
}

fn ms(millis: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(millis)
}

/// Another handle on `storage`'s schema with a pool of its own, as another process has.
async fn other_handle(storage: &PostgresStorage) -> PostgresStorage {
    PostgresStorage::from_pool_with(common::pool(10).await, PostgresConfig::new().schema(storage.schema()))
        .expect("a valid schema")
}

async fn set(storage: &PostgresStorage, queue: &str, limits: QueueLimits) {
    storage.set_queue_limits(queue, limits).await.expect("set the limits");
}

/// The rows of the start log, per scope: `(queue, limit_key, count)`.
async fn logged_starts(storage: &PostgresStorage) -> Vec<(String, String, i64)> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT queue, limit_key, count(*) AS n FROM \"{}\".rate_limit_starts GROUP BY 1, 2 ORDER BY 1, 2",
        storage.schema()
    )))
    .fetch_all(storage.pool())
    .await
    .expect("read the start log")
    .iter()
    .map(|row| (row.get("queue"), row.get("limit_key"), row.get("n")))
    .collect()
}

/// Claimers of several handles (as processes), all at the same instant and then just
/// before and at the end of the window, never take more than the rate together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_of_several_handles_never_exceed_a_rate_within_a_window() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "rated", QueueLimits::new().rate(RateLimit::new(5, Duration::from_secs(10)))).await;
    enqueue(&storage, (0..100).map(|_| job("rated", None)).collect()).await;
    enqueue(&storage, (0..100).map(|_| job("free", None)).collect()).await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(other_handle(&storage).await);
    }
    let t0 = Utc::now();
    let race = |now: DateTime<Utc>| {
        let mut claimers = tokio::task::JoinSet::new();
        for (n, handle) in handles.iter().enumerate() {
            for _ in 0..3 {
                let handle = handle.clone();
                let queues: &'static [&'static str] = if n % 2 == 0 { &["rated"] } else { &["free", "rated"] };
                claimers.spawn(async move { claim_at(&handle, queues, 3, now).await });
            }
        }
        claimers
    };
    let mut seen = HashSet::new();
    for (now, expected) in [(t0, 5), (t0 + ms(9_999), 0), (t0 + ms(10_000), 5), (t0 + ms(15_000), 0)] {
        let mut claimers = race(now);
        let mut rated = 0;
        while let Some(claimed) = claimers.join_next().await {
            for record in claimed.expect("claimer").jobs {
                assert!(seen.insert(record.id), "{} claimed twice", record.id);
                rated += usize::from(record.queue == "rated");
            }
        }
        assert_eq!(rated, expected, "jobs of the rated queue started at {now}");
    }
}

/// A rate per key caps each key's starts in a window, not the jobs without a key; a
/// key held back does not hold back the keys behind it.
#[tokio::test]
async fn a_rate_per_key_caps_each_key_and_not_the_keyless_jobs() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "keyed", QueueLimits::new().key_rate(RateLimit::new(2, Duration::from_secs(10)))).await;
    let mut jobs: Vec<NewJob> = (0..4).map(|_| job("keyed", Some("a"))).collect();
    jobs.extend((0..4).map(|_| job("keyed", Some("b"))));
    jobs.extend((0..3).map(|_| job("keyed", None)));
    let ids = enqueue(&storage, jobs).await;
    let t0 = Utc::now();
    let taken: HashSet<JobId> = claim_at(&storage, &["keyed"], 20, t0).await.jobs.iter().map(|r| r.id).collect();
    let expected: HashSet<JobId> = [0, 1, 4, 5, 8, 9, 10].iter().map(|&n| ids[n]).collect();
    assert_eq!(taken, expected, "two of each key, every keyless job");
    assert!(claim_at(&storage, &["keyed"], 20, t0 + ms(9_000)).await.jobs.is_empty());
    let later: HashSet<JobId> =
        claim_at(&storage, &["keyed"], 20, t0 + ms(10_000)).await.jobs.iter().map(|r| r.id).collect();
    assert_eq!(later, [2, 3, 6, 7].iter().map(|&n| ids[n]).collect(), "the window moved on");
}

/// `rate_limited_for` is the time until the full scope's `starts`-th most recent
/// start leaves the window; `None` when no rate held a job back.
#[tokio::test]
async fn a_claim_held_back_by_a_rate_says_how_long_until_the_next_start() {
    let (storage, _guard) = common::storage().await;
    set(&storage, "rated", QueueLimits::new().rate(RateLimit::new(2, Duration::from_secs(10)))).await;
    let t0 = Utc::now();
    let empty = claim_at(&storage, &["rated"], 10, t0).await;
    assert_eq!((empty.jobs.len(), empty.rate_limited_for), (0, None), "no job: nothing held back");
    enqueue(&storage, (0..5).map(|_| job("rated", None)).collect()).await;
    let first = claim_at(&storage, &["rated"], 10, t0).await;
    assert_eq!(first.jobs.len(), 2);
    assert_eq!(first.rate_limited_for, Some(Duration::from_secs(10)), "this claim's own starts fill the window");
    let held = claim_at(&storage, &["rated"], 10, t0 + ms(3_000)).await;
    assert_eq!((held.jobs.len(), held.rate_limited_for), (0, Some(Duration::from_secs(7))));
    let full = claim_at(&storage, &["rated"], 1, t0 + ms(10_000)).await;
    assert_eq!((full.jobs.len(), full.rate_limited_for), (1, None), "a full claim: no room for a held job");
    let one_more = claim_at(&storage, &["rated"], 10, t0 + ms(12_500)).await;
    assert_eq!(one_more.jobs.len(), 1, "the window (t0 + 2.5 s, t0 + 12.5 s] holds one start");
    assert_eq!(one_more.rate_limited_for, Some(Duration::from_millis(7_500)), "the start at t0 + 10 s is the 2nd");

    // A concurrency limit, not the rate, holds the job back: no wait.
    set(&storage, "both", QueueLimits::new().concurrency(1).rate(RateLimit::new(10, Duration::from_secs(10)))).await;
    enqueue(&storage, (0..3).map(|_| job("both", None)).collect()).await;
    let capped = claim_at(&storage, &["both"], 10, t0).await;
    assert_eq!((capped.jobs.len(), capped.rate_limited_for), (1, None));

    // A rate per key: the key's full scope.
    set(&storage, "keyed", QueueLimits::new().key_rate(RateLimit::new(1, Duration::from_secs(10)))).await;
    let three_of_a = (0..3).map(|_| job("keyed", Some("a")));
    enqueue(&storage, three_of_a.chain([job("keyed", Some("b"))]).collect()).await;
    let keyed = claim_at(&storage, &["keyed"], 10, t0).await;
    assert_eq!((keyed.jobs.len(), keyed.rate_limited_for), (2, Some(Duration::from_secs(10))));
    let keyed = claim_at(&storage, &["keyed"], 10, t0 + ms(4_000)).await;
    assert_eq!((keyed.jobs.len(), keyed.rate_limited_for), (0, Some(Duration::from_secs(6))));
    // With another queue claimed alongside, the least wait of the scopes holding a job
    // back: `a` until t0 + 24 s, `rated` (its last job) until t0 + 10 s + 10 s.
    let both = claim_at(&storage, &["keyed", "rated"], 10, t0 + ms(14_000)).await;
    assert_eq!(both.jobs.len(), 1, "the second job of `a`");
    assert_eq!(both.rate_limited_for, Some(Duration::from_secs(6)));
}

/// The start log keeps, per scope claimed again, only the starts within the period; prune
/// deletes the rest (scopes never claimed again, and every scope of a queue whose rate
/// was removed).
#[tokio::test]
async fn the_start_log_stays_bounded_through_claims_and_prune() {
    let (storage, _guard) = common::storage().await;
    let limits = QueueLimits::new()
        .rate(RateLimit::new(3, Duration::from_secs(1)))
        .key_rate(RateLimit::new(1, Duration::from_secs(1)));
    set(&storage, "rated", limits).await;
    let keys: Vec<String> = (0..40).map(|key| format!("k{key}")).collect();
    enqueue(&storage, (0..400).map(|n| job("rated", Some(&keys[n % keys.len()]))).collect()).await;
    let t0 = Utc::now();
    let mut claimed = 0;
    for step in 0..200 {
        claimed += claim_at(&storage, &["rated"], 10, t0 + ms(step * 250)).await.jobs.len();
        let log = logged_starts(&storage).await;
        let queue_scope = log.iter().find(|(_, key, _)| key.is_empty()).map_or(0, |(_, _, n)| *n);
        assert!(queue_scope <= 3, "the queue's scope, step {step}: {log:?}");
        assert!(log.iter().all(|(_, _, n)| *n <= 3), "step {step}: {log:?}");
    }
    assert_eq!(claimed, 50 * 3, "3 starts a second, for 50 seconds");
    let rows = |log: Vec<(String, String, i64)>| log.iter().map(|(_, _, n)| *n).sum::<i64>();
    assert!(rows(logged_starts(&storage).await) > 0);
    let prune = |now: DateTime<Utc>| {
        let storage = storage.clone();
        async move {
            let params = PruneParams::new(Retention::default()).limit(1_000);
            let mut params = params;
            params.now = Some(now);
            storage.prune(params).await.expect("prune")
        }
    };
    prune(t0 + ms(200 * 250 + 1_000)).await;
    assert_eq!(logged_starts(&storage).await, vec![], "every start left its period");

    // A rate removed: its scopes go at the next prune, however recent.
    claim_at(&storage, &["rated"], 10, t0 + ms(100_000)).await;
    assert!(rows(logged_starts(&storage).await) > 0);
    set(&storage, "rated", QueueLimits::new().concurrency(100)).await;
    prune(t0 + ms(100_000)).await;
    assert_eq!(logged_starts(&storage).await, vec![], "no rate: no starts kept");
}

/// Rates round-trip through the admin calls; the table refuses half a rate.
#[tokio::test]
async fn rates_are_stored_read_back_and_checked() {
    let (storage, _guard) = common::storage().await;
    let limits = QueueLimits::new()
        .concurrency(4)
        .rate(RateLimit::new(100, Duration::from_millis(60_000)))
        .key_rate(RateLimit::new(2, Duration::from_millis(1_500)));
    set(&storage, "a", limits).await;
    set(&storage, "b", QueueLimits::new().key_rate(RateLimit::per_second(1))).await;
    assert_eq!(
        storage.queue_limits().await.expect("list"),
        vec![
            QueueLimitsRecord::new("a", limits),
            QueueLimitsRecord::new("b", QueueLimits::new().key_rate(RateLimit::per_second(1)))
        ]
    );
    set(&storage, "a", QueueLimits::new().rate(RateLimit::per_hour(1))).await;
    assert_eq!(storage.queue_limits().await.expect("list")[0].limits, QueueLimits::new().rate(RateLimit::per_hour(1)));
    let half = format!("INSERT INTO \"{}\".queue_limits (queue, rate_starts) VALUES ('x', 3)", storage.schema());
    assert!(sqlx::query(AssertSqlSafe(half)).execute(storage.pool()).await.is_err(), "half a rate is refused");
    assert!(storage.set_queue_limits("c", QueueLimits::new().rate(RateLimit::per_second(0))).await.is_err());
}

/// Migration 0012 on a schema at 0011: the stored limits stay, rates can be stored and
/// are obeyed.
#[tokio::test]
async fn the_rate_limit_migration_applies_on_a_schema_at_0011() {
    use sqlx::{migrate::Migrator, postgres::PgPoolOptions};

    let (storage, guard) = common::unmigrated().await;
    let schema = guard.schema.as_str();
    let all = sqlx::migrate!("./migrations");
    let mut before = Migrator::with_migrations(all.iter().filter(|m| m.version < 12).cloned().collect());
    before.dangerous_set_table_name(format!("\"{schema}\"._sqlx_migrations"));
    before.create_schema(format!("\"{schema}\""));
    let options = (*storage.pool().connect_options()).clone().options([("search_path", schema)]);
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.expect("connect");
    before.run(&pool).await.expect("migrations before 0012");
    sqlx::query(
        "INSERT INTO queue_limits (queue, concurrency, key_concurrency) VALUES ('capped', 3, NULL), ('keyed', NULL, 1)",
    )
    .execute(&pool)
    .await
    .expect("limits stored before 0012");
    pool.close().await;

    storage.migrate().await.expect("migrate");
    storage.check_ready().await.expect("ready");
    assert_eq!(
        storage.queue_limits().await.expect("list"),
        vec![
            QueueLimitsRecord::new("capped", QueueLimits::new().concurrency(3)),
            QueueLimitsRecord::new("keyed", QueueLimits::new().key_concurrency(1)),
        ]
    );
    set(&storage, "capped", QueueLimits::new().concurrency(3).rate(RateLimit::new(1, Duration::from_secs(60)))).await;
    enqueue(&storage, vec![job("capped", None), job("capped", None)]).await;
    let t0 = Utc::now();
    assert_eq!(claim_at(&storage, &["capped"], 10, t0).await.jobs.len(), 1, "one start a minute");
    let empty = format!("INSERT INTO \"{schema}\".queue_limits (queue) VALUES ('x')");
    let error = sqlx::query(AssertSqlSafe(empty)).execute(storage.pool()).await.expect_err("limits nothing");
    let code = error.as_database_error().and_then(|error| error.code()).map(|code| code.into_owned());
    assert_eq!(code.as_deref(), Some("23514"), "check_violation: {error:?}");
}

/// What the plan of a claim did with the start log: per node on `rate_limit_starts`,
/// its type, actual loops and rows.
fn start_log_nodes(plan: &serde_json::Value, found: &mut Vec<(String, u64, u64)>) {
    match plan {
        serde_json::Value::Object(node) => {
            if node.get("Relation Name").and_then(serde_json::Value::as_str) == Some("rate_limit_starts") {
                let count = |key: &str| node.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
                let kind = node.get("Node Type").and_then(serde_json::Value::as_str).unwrap_or_default();
                found.push((kind.to_owned(), count("Actual Loops"), count("Actual Rows")));
            }
            node.values().for_each(|value| start_log_nodes(value, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| start_log_nodes(item, found)),
        _ => {}
    }
}

/// The plan of the limited claim of `queue` with the stored limits (explained as the
/// storage runs it, in its transaction), rolled back.
async fn explain_limited_claim(storage: &PostgresStorage, queue: &str, limit: i64) -> serde_json::Value {
    let (begin, lock, claim) = storage.limited_claim_statements();
    let mut conn = storage.pool().acquire().await.expect("acquire");
    sqlx::raw_sql(AssertSqlSafe(begin.to_owned())).execute(&mut *conn).await.expect("begin");
    let row = sqlx::query(AssertSqlSafe(lock.to_owned()))
        .bind(vec![queue.to_owned()])
        .fetch_one(&mut *conn)
        .await
        .expect("lock");
    let column = |name: &str| row.get::<Option<i64>, _>(name).map_or("NULL".to_owned(), |value| value.to_string());
    let int = |name: &str| row.get::<Option<i32>, _>(name).map_or("NULL".to_owned(), |value| value.to_string());
    sqlx::raw_sql(AssertSqlSafe(format!("PREPARE rated_claim AS {claim}"))).execute(&mut *conn).await.expect("prepare");
    let explain = format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE rated_claim (NULL, ARRAY['{queue}'], {limit}, 30000000, 'explain', \
         ARRAY[NULL::smallint], ARRAY[NULL::timestamptz], ARRAY['{queue}'], ARRAY[{}::integer], \
         ARRAY[{}::integer], {}, ARRAY[{}::integer], ARRAY[{}::bigint], ARRAY[{}::integer], ARRAY[{}::bigint])",
        int("concurrency"),
        int("key_concurrency"),
        haul_core::KEY_LIMIT_SCAN,
        int("rate_starts"),
        column("rate_period_ms"),
        int("key_rate_starts"),
        column("key_rate_period_ms"),
    );
    let plan: serde_json::Value =
        sqlx::query_scalar(AssertSqlSafe(explain)).fetch_one(&mut *conn).await.expect("explain");
    for statement in ["ROLLBACK", "DEALLOCATE rated_claim"] {
        sqlx::raw_sql(statement).execute(&mut *conn).await.expect("clean up");
    }
    plan
}

/// A claim of queues without a rate reads nothing of the start log: the unlimited
/// statements do not name it, and in the limited claim of a queue without a rate, no
/// scan of it runs (its insert and delete get no rows). With a rate, the claim reads
/// the log through its index and records its starts; 20,000 jobs, and no plan reads a
/// table whole.
#[tokio::test]
async fn a_claim_without_a_rate_reads_nothing_of_the_start_log() {
    let (storage, _guard) = common::storage().await;
    let (one_queue, several) = storage.claim_statements();
    assert!(!one_queue.contains("rate_limit_starts") && !several.contains("rate_limit_starts"));
    set(&storage, "capped", QueueLimits::new().concurrency(5).key_concurrency(1)).await;
    let limits = QueueLimits::new()
        .rate(RateLimit::new(50, Duration::from_secs(60)))
        .key_rate(RateLimit::new(2, Duration::from_secs(60)));
    set(&storage, "rated", limits).await;
    for queue in ["capped", "rated", "other"] {
        enqueue(&storage, (0..(20_000 / 3)).map(|n| job(queue, Some(&format!("k{}", n % 500)))).collect()).await;
    }
    sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE \"{}\".jobs", storage.schema())))
        .execute(storage.pool())
        .await
        .expect("analyze");
    claim_at(&storage, &["rated"], 20, Utc::now()).await;

    let plan = explain_limited_claim(&storage, "capped", 10).await;
    let mut nodes = Vec::new();
    start_log_nodes(&plan, &mut nodes);
    assert!(!nodes.is_empty(), "{plan}");
    for (kind, loops, rows) in &nodes {
        assert_eq!(*rows, 0, "{kind}: {plan}");
        if kind.contains("Index") {
            assert_eq!(*loops, 0, "{kind} never runs: {plan}");
        }
    }
    assert_eq!(plan[0]["Plan"]["Actual Rows"].as_u64(), Some(5), "{plan}");

    let plan = explain_limited_claim(&storage, "rated", 10).await;
    let text = plan.to_string();
    assert!(!text.contains("Seq Scan") && !text.contains("Bitmap"), "{text}");
    let mut nodes = Vec::new();
    start_log_nodes(&plan, &mut nodes);
    let index_reads: Vec<_> = nodes.iter().filter(|(kind, loops, _)| kind.contains("Index") && *loops > 0).collect();
    assert!(index_reads.len() >= 2, "the queue's scope and its keys' scopes read through the index: {nodes:?}");
    assert!(nodes.iter().any(|(kind, _, rows)| kind == "ModifyTable" && *rows == 0), "{nodes:?}");
    assert_eq!(plan[0]["Plan"]["Actual Rows"].as_u64(), Some(10), "{text}");
    let inserted = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".rate_limit_starts",
        storage.schema()
    )))
    .fetch_one(storage.pool())
    .await
    .expect("count");
    assert_eq!(inserted, 40, "the first claim's 20 starts, of the queue and of their keys (rolled back: not 60)");
}
