//! The floors: the batched enqueue/claim/complete cycle with no library around it, as raw
//! SQL on a minimal table for PostgreSQL (here) and as minimal Lua for Redis ([`redis`]).

pub(crate) mod redis;

use std::time::Instant;

use sqlx::{AssertSqlSafe, PgPool, SqlSafeStr, postgres::PgPoolOptions};
use tokio::task::JoinSet;

use crate::{
    BoxError, Figure, FloorOf,
    backends::Postgres,
    ui::Ui,
    workloads::{BATCH, PRODUCERS},
};

/// Concurrent claim/complete loops of the floor's drain.
pub(crate) const FLOOR_CLAIMERS: usize = 2;

/// The PostgreSQL floor's enqueue and drain figures, on a schema of its own (dropped at the end).
pub(crate) async fn postgres(pg: &mut Postgres, jobs: usize, ui: &Ui) -> Result<Vec<Figure>, BoxError> {
    let schema = pg.schema_name("floor");
    let result = async {
        let mut figures = run(pg.admin(), &schema, jobs, ui).await?;
        // As many connections as a haul storage's default pool.
        let pool = PgPoolOptions::new().max_connections(10).connect(pg.url()).await?;
        let single = one_by_one(&pool, &schema, jobs, ui).await;
        pool.close().await;
        figures.push(single?);
        Ok::<_, BoxError>(figures)
    }
    .await;
    let dropped = pg.drop_schema(&schema).await;
    let figures = result?;
    dropped?;
    Ok(figures)
}

async fn run(pool: &PgPool, schema: &str, jobs: usize, ui: &Ui) -> Result<Vec<Figure>, BoxError> {
    let table = format!("\"{schema}\".jobs");
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\""))).execute(pool).await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (
             id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             args   jsonb       NOT NULL,
             state  smallint    NOT NULL DEFAULT 0,
             run_at timestamptz NOT NULL DEFAULT now()
         )"
    )))
    .execute(pool)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE INDEX ON {table} (run_at, id) WHERE state = 0"))).execute(pool).await?;

    let insert = AssertSqlSafe(format!("INSERT INTO {table} (args) SELECT a::jsonb FROM unnest($1::text[]) AS a"))
        .into_sql_str();
    let label = "floor: enqueue, batches of 1,000";
    let bar = ui.bar("postgres", label, jobs);
    let started = Instant::now();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(BATCH);
        let args: Vec<String> = (0..n).map(|_| "{}".to_owned()).collect();
        sqlx::query(insert.clone()).bind(args).execute(pool).await?;
        bar.counter().fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        left -= n;
    }
    let enqueue = started.elapsed();
    bar.finish(jobs, enqueue);
    sqlx::query(AssertSqlSafe(format!("ANALYZE {table}"))).execute(pool).await?;

    let claim = AssertSqlSafe(format!(
        "UPDATE {table} SET state = 1 WHERE id IN \
         (SELECT id FROM {table} WHERE state = 0 ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT {BATCH}) \
         RETURNING id"
    ))
    .into_sql_str();
    let complete = AssertSqlSafe(format!("UPDATE {table} SET state = 2 WHERE id = ANY($1)")).into_sql_str();
    let label_drain = "floor: claim + complete by 1,000";
    let bar = ui.bar("postgres", label_drain, jobs);
    let started = Instant::now();
    let mut claimers = JoinSet::new();
    for _ in 0..FLOOR_CLAIMERS {
        let (pool, claim, complete, counter) =
            (pool.clone(), claim.clone(), complete.clone(), std::sync::Arc::clone(bar.counter_arc()));
        claimers.spawn(async move {
            loop {
                let ids: Vec<i64> = sqlx::query_scalar(claim.clone()).fetch_all(&pool).await?;
                if ids.is_empty() {
                    return Ok::<_, sqlx::Error>(());
                }
                let n = ids.len();
                sqlx::query(complete.clone()).bind(ids).execute(&pool).await?;
                counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = claimers.join_next().await {
        joined??;
    }
    let drain = started.elapsed();
    let completed: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE state = 2")))
        .fetch_one(pool)
        .await?;
    if usize::try_from(completed).ok() != Some(jobs) {
        return Err(format!("the floor completed {completed} of {jobs} jobs").into());
    }
    bar.finish(jobs, drain);
    Ok(vec![
        Figure::new("postgres", label, jobs, enqueue).floor_figure(FloorOf::Enqueue),
        Figure::new("postgres", label_drain, jobs, drain)
            .floor_figure(FloorOf::Drain)
            .note(format!("{FLOOR_CLAIMERS} concurrent claim/complete loops")),
    ])
}

/// `jobs` single-row inserts, each its own transaction, from 32 concurrent producers on a
/// pool of 10 connections (into the floor's table, after its drain).
async fn one_by_one(pool: &PgPool, schema: &str, jobs: usize, ui: &Ui) -> Result<Figure, BoxError> {
    let insert = AssertSqlSafe(format!("INSERT INTO \"{schema}\".jobs (args) VALUES ('{{}}'::jsonb)")).into_sql_str();
    let label = "floor: enqueue, 1 by 1, 32 producers";
    let bar = ui.bar("postgres", label, jobs);
    let started = Instant::now();
    let mut producers = JoinSet::new();
    for p in 0..PRODUCERS {
        let (pool, insert, counter) = (pool.clone(), insert.clone(), std::sync::Arc::clone(bar.counter_arc()));
        let share = jobs / PRODUCERS + usize::from(p < jobs % PRODUCERS);
        producers.spawn(async move {
            for _ in 0..share {
                sqlx::query(insert.clone()).execute(&pool).await?;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(joined) = producers.join_next().await {
        joined??;
    }
    let elapsed = started.elapsed();
    bar.finish(jobs, elapsed);
    Ok(Figure::new("postgres", label, jobs, elapsed)
        .floor_figure(FloorOf::EnqueueOneByOne)
        .note("single-row INSERTs, one transaction each, on a pool of 10 connections".to_owned()))
}
