//! `PostgresConfig::async_claim_commit`: the claim's own transaction, and only it, runs
//! with `synchronous_commit` off.
//!
//! A deferred trigger on the jobs table records, at each commit that wrote a job, the
//! setting in force then. The storage runs on a pool of one connection whose sessions
//! start with `synchronous_commit` on (whatever the server's default), so the enqueue,
//! the claim and the report all run on that session, one after another: the report
//! seeing `on` shows that the claim's setting ended with its transaction. Each claim
//! path is taken: one queue (`claim_one_queue.sql`), two queues (`claim.sql`), and a
//! queue with a limit (`claim_limited.sql`).

mod common;

use std::time::Duration;

use haul_core::{
    Admin as _, ClaimParams, EnqueueParams, JobOutcome, NewJob, QueueLimits, Report, ReportParams, Storage,
};
use haul_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;
use sqlx::{AssertSqlSafe, Executor as _, PgPool, postgres::PgPoolOptions};

/// Adds a table `commit_settings` to `schema` and a trigger that appends, at the commit
/// of each insert or update of a job, the job's new state and the `synchronous_commit`
/// in force.
async fn record_commit_settings(pool: &PgPool, schema: &str) {
    for statement in [
        format!("CREATE TABLE \"{schema}\".commit_settings (n bigserial PRIMARY KEY, state text, setting text)"),
        format!(
            "CREATE FUNCTION \"{schema}\".record_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO \"{schema}\".commit_settings (state, setting) \
             VALUES (NEW.state, current_setting('synchronous_commit')); RETURN NEW; END $$"
        ),
        format!(
            "CREATE CONSTRAINT TRIGGER record_commit_setting AFTER INSERT OR UPDATE ON \"{schema}\".jobs \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION \"{schema}\".record_commit_setting()"
        ),
    ] {
        sqlx::query(AssertSqlSafe(statement)).execute(pool).await.expect("set up the recording trigger");
    }
}

/// The (state, setting) pairs recorded so far, in order.
async fn recorded(pool: &PgPool, schema: &str) -> Vec<(String, String)> {
    sqlx::query_as(AssertSqlSafe(format!("SELECT state, setting FROM \"{schema}\".commit_settings ORDER BY n")))
        .fetch_all(pool)
        .await
        .expect("read the recorded settings")
}

/// The claim paths: how many queues a claim names, and whether the job's queue has a
/// limit.
const PATHS: [(usize, bool); 3] = [(1, false), (2, false), (1, true)];

/// Enqueues one job, claims it from `queues` queues (the job's first) and reports it
/// completed, on a storage with `config` on a pool of one connection; returns what the
/// trigger recorded. With `limited`, the job's queue has a concurrency limit, so the
/// claim takes the limited path.
async fn enqueue_claim_complete(config: PostgresConfig, queues: usize, limited: bool) -> Vec<(String, String)> {
    let schema = common::fresh_schema();
    let _guard = common::SchemaGuard { schema: schema.clone() };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| Box::pin(async move { conn.execute("SET synchronous_commit = on").await.map(drop) }))
        .connect(&common::url())
        .await
        .expect("connect to the test server");
    let storage = PostgresStorage::from_pool_with(pool.clone(), config.schema(&schema)).expect("a valid config");
    storage.migrate().await.expect("migrate");
    record_commit_settings(&pool, &schema).await;
    if limited {
        storage.set_queue_limits("async_commit", QueueLimits::new().concurrency(5)).await.expect("set a limit");
    }

    let job = NewJob::new("async_commit.job", json!({})).queue("async_commit");
    storage.enqueue(EnqueueParams::new(vec![job])).await.expect("enqueue");
    let names = ["async_commit", "async_commit_other"];
    let claimed = storage
        .claim(ClaimParams::new(names.into_iter().take(queues), 1).lease(Duration::from_secs(60)).worker_id("test"))
        .await
        .expect("claim");
    let claim = claimed.first().and_then(|record| record.claim()).expect("one job claimed");
    let report = Report { claim, outcome: JobOutcome::Completed };
    storage.report(ReportParams::new(vec![report])).await.expect("report");
    recorded(&pool, &schema).await
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(state, setting)| ((*state).to_owned(), (*setting).to_owned())).collect()
}

#[tokio::test]
async fn with_async_claim_commit_only_the_claim_commits_without_the_wal_flush() {
    for (queues, limited) in PATHS {
        let recorded = enqueue_claim_complete(PostgresConfig::new().async_claim_commit(true), queues, limited).await;
        let expected = pairs(&[("available", "on"), ("running", "off"), ("completed", "on")]);
        assert_eq!(recorded, expected, "{queues} queue(s), limited: {limited}");
    }
}

#[tokio::test]
async fn by_default_every_commit_waits_for_the_wal_flush() {
    for (queues, limited) in PATHS {
        let recorded = enqueue_claim_complete(PostgresConfig::new(), queues, limited).await;
        let expected = pairs(&[("available", "on"), ("running", "on"), ("completed", "on")]);
        assert_eq!(recorded, expected, "{queues} queue(s), limited: {limited}");
    }
}
