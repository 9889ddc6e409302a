//! The PostgreSQL side of the throughput samples (`HAUL_TEST_POSTGRES_URL`): adds that
//! run at once on the same rows all count and never deadlock, old rows are deleted when
//! samples are recorded (relative to the call's `now`), and migration 0009 applies to
//! a schema migrated up to 0008.

mod common;

use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use haul_core::{Admin, Error, Storage, THROUGHPUT_RETENTION, ThroughputSample, Timestamp};
use haul_postgres::PostgresStorage;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::time::timeout;

use common::GENEROUS;

/// A whole minute far from the server's clock: a statement that used the server's clock
/// instead of the call's `now` would treat every sample of it as expired.
fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2020, 6, 1, 12, 0, 0).single().expect("a valid time")
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn table(storage: &PostgresStorage) -> String {
    format!("\"{}\".throughput", storage.schema())
}

async fn stored_rows(storage: &PostgresStorage) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", table(storage))))
        .fetch_one(storage.pool())
        .await
        .expect("count the rows")
}

/// Every stored sample (nothing is older than a day before `t0`).
async fn all(storage: &PostgresStorage) -> Vec<ThroughputSample> {
    storage.throughput(t0() - TimeDelta::days(1)).await.expect("throughput")
}

/// Waits until `count` sessions wait, directly or through one another, for `holder`'s
/// locks.
async fn until_waiting_for(holder: i32, count: i64) {
    let mut conn = PgConnection::connect(&common::url()).await.expect("connect");
    timeout(GENEROUS, async {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "WITH RECURSIVE waiting (pid) AS ( \
                     SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)) \
                     UNION \
                     SELECT a.pid FROM pg_stat_activity AS a JOIN waiting AS w ON w.pid = ANY (pg_blocking_pids(a.pid)) \
                 ) \
                 SELECT count(*) FROM waiting",
            )
            .bind(holder)
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_activity");
            if waiting >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the statements wait for the row lock");
}

#[tokio::test]
async fn concurrent_adds_to_the_same_rows_all_count() {
    let (storage, _guard) = common::storage().await;
    let now = Some(t0());
    let (a, b) = (t0(), t0() - minutes(1));
    storage.record_throughput(vec![ThroughputSample::new("mail", a, 1, 0)], now).await.expect("first record");

    // Another transaction adds to the row and keeps it locked: both calls then run
    // while it holds the row, and wait for it.
    let mut holder = storage.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = '60s'").execute(&mut *holder).await.expect("set");
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *holder).await.expect("pid");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET completed = completed + 100 WHERE queue = 'mail' AND minute = $1",
        table(&storage)
    )))
    .bind(a)
    .execute(&mut *holder)
    .await
    .expect("hold the row");

    // The two calls name the rows in opposite orders: they still lock them in one order.
    let first = tokio::spawn({
        let storage = storage.clone();
        let samples = vec![ThroughputSample::new("mail", a, 10, 1), ThroughputSample::new("mail", b, 5, 0)];
        async move { storage.record_throughput(samples, now).await }
    });
    let second = tokio::spawn({
        let storage = storage.clone();
        let samples = vec![
            ThroughputSample::new("mail", b + TimeDelta::seconds(59), 7, 2),
            ThroughputSample::new("mail", a + TimeDelta::seconds(30), 20, 3),
            ThroughputSample::new("mail", a, 1, 0),
        ];
        async move { storage.record_throughput(samples, now).await }
    });
    until_waiting_for(holder_pid, 2).await;
    holder.commit().await.expect("commit the held add");
    first.await.expect("task").expect("first concurrent record");
    second.await.expect("task").expect("second concurrent record");

    assert_eq!(
        all(&storage).await,
        vec![ThroughputSample::new("mail", b, 12, 2), ThroughputSample::new("mail", a, 132, 4)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_workers_adding_to_the_same_rows_in_any_order_never_deadlock() {
    let (storage, _guard) = common::storage().await;
    let now = Some(t0());
    let rows: Vec<(&str, Timestamp)> =
        ["a", "b", "c"].into_iter().flat_map(|queue| (0..4).map(move |n| (queue, t0() - minutes(n)))).collect();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let storage = storage.clone();
        let mut order = rows.clone();
        if worker % 2 == 1 {
            order.reverse();
        }
        order.rotate_left(worker);
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let samples =
                    order.iter().map(|(queue, minute)| ThroughputSample::new(*queue, *minute, 1, 1)).collect();
                storage.record_throughput(samples, now).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        timeout(GENEROUS, task).await.expect("no worker is stuck").expect("task").expect("record");
    }
    let samples = all(&storage).await;
    assert_eq!(samples.len(), rows.len());
    assert!(samples.iter().all(|sample| sample.completed == 80 && sample.failed == 80), "{samples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_that_sweep_the_rows_others_add_to_never_deadlock() {
    let (storage, _guard) = common::storage().await;
    let retention = TimeDelta::from_std(THROUGHPUT_RETENTION).expect("retention");
    // Odd workers' clock is past the retention of even workers' minutes: their sweeps
    // delete the rows even workers add to, while they add to rows of their own.
    let later = t0() + retention + minutes(5);
    let mut tasks = Vec::new();
    for worker in 0..8_i64 {
        let storage = storage.clone();
        let now = if worker % 2 == 0 { t0() } else { later };
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let mut samples: Vec<ThroughputSample> = ["a", "b", "c"]
                    .into_iter()
                    .flat_map(|queue| (0..4).map(move |n| ThroughputSample::new(queue, now - minutes(n), 1, 0)))
                    .collect();
                if (worker + round) % 2 == 1 {
                    samples.reverse();
                }
                storage.record_throughput(samples, Some(now)).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        timeout(GENEROUS, task).await.expect("no worker is stuck").expect("task").expect("record");
    }
    let kept = storage.throughput(later - minutes(3)).await.expect("throughput");
    assert_eq!(kept.len(), 12);
    assert!(kept.iter().all(|sample| sample.completed == 40), "{kept:?}");
    assert!(all(&storage).await.iter().all(|sample| sample.completed <= 40));
}

#[tokio::test]
async fn recording_deletes_the_rows_older_than_the_retention_before_its_now() {
    let (storage, _guard) = common::storage().await;
    let retention = TimeDelta::from_std(THROUGHPUT_RETENTION).expect("retention");
    storage
        .record_throughput(
            vec![
                ThroughputSample::new("mail", t0(), 1, 0),
                ThroughputSample::new("mail", t0() - minutes(1), 2, 0),
                ThroughputSample::new("sms", t0() - minutes(30), 3, 0),
                // Already older than the retention at this call's now: never kept.
                ThroughputSample::new("sms", t0() - retention - minutes(1), 4, 0),
            ],
            Some(t0()),
        )
        .await
        .expect("record");
    assert_eq!(stored_rows(&storage).await, 3);

    // Half a minute past the retention after t0: the minute of t0 is the oldest kept.
    let later = t0() + retention + TimeDelta::seconds(30);
    storage.record_throughput(vec![ThroughputSample::new("push", later, 0, 1)], Some(later)).await.expect("record");
    assert_eq!(
        all(&storage).await,
        vec![ThroughputSample::new("mail", t0(), 1, 0), ThroughputSample::new("push", later, 0, 1)]
    );
    assert_eq!(stored_rows(&storage).await, 2, "the older rows are deleted, not only hidden");
}

#[tokio::test]
async fn reads_start_at_the_minute_of_since_in_queue_byte_order() {
    let (storage, _guard) = common::storage().await;
    let samples = ["b", "B", "a", "_x"]
        .into_iter()
        .flat_map(|queue| [0, 1, 2].map(|n| ThroughputSample::new(queue, t0() - minutes(n), 1, 0)))
        .collect();
    storage.record_throughput(samples, Some(t0())).await.expect("record");
    let read = storage.throughput(t0() - minutes(1) + TimeDelta::seconds(59)).await.expect("throughput");
    let keys: Vec<(&str, Timestamp)> = read.iter().map(|sample| (sample.queue.as_str(), sample.minute)).collect();
    let expected: Vec<(&str, Timestamp)> =
        ["B", "_x", "a", "b"].into_iter().flat_map(|queue| [(queue, t0() - minutes(1)), (queue, t0())]).collect();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn an_invalid_queue_records_nothing() {
    let (storage, _guard) = common::storage().await;
    let samples = vec![ThroughputSample::new("mail", t0(), 1, 0), ThroughputSample::new("no spaces", t0(), 1, 0)];
    let error = storage.record_throughput(samples, Some(t0())).await.expect_err("an invalid queue");
    assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{error:?}");
    assert_eq!(stored_rows(&storage).await, 0);
}

#[tokio::test]
async fn no_samples_runs_no_statement() {
    // No table here: a statement would fail.
    let (storage, _guard) = common::unmigrated().await;
    storage.record_throughput(Vec::new(), None).await.expect("nothing to record");
}

#[tokio::test]
async fn migration_0009_applies_to_a_schema_migrated_to_0008() {
    use sqlx::{migrate::Migrator, postgres::PgPoolOptions};

    let (storage, guard) = common::unmigrated().await;
    let schema = guard.schema.as_str();
    let all_migrations = sqlx::migrate!("./migrations");
    let mut before = Migrator::with_migrations(all_migrations.iter().filter(|m| m.version < 9).cloned().collect());
    before.dangerous_set_table_name(format!("\"{schema}\"._sqlx_migrations"));
    before.create_schema(format!("\"{schema}\""));
    let options = (*storage.pool().connect_options()).clone().options([("search_path", schema)]);
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.expect("connect");
    before.run(&pool).await.expect("migrations before 0009");
    pool.close().await;
    assert!(Storage::check_ready(&storage).await.is_err(), "0009 is missing");

    storage.migrate().await.expect("migrate");
    Storage::check_ready(&storage).await.expect("ready");
    storage.record_throughput(vec![ThroughputSample::new("mail", t0(), 2, 1)], Some(t0())).await.expect("record");
    assert_eq!(all(&storage).await, vec![ThroughputSample::new("mail", t0(), 2, 1)]);
}
