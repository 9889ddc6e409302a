//! The PostgreSQL side of the operators' calls (`HAUL_TEST_POSTGRES_URL`): a delete
//! or a bulk call racing a transaction that holds the job waits for it and judges the
//! job by its new state, the bulk calls walk every batch, and listing a state reads
//! that state's jobs only.

mod common;

use std::time::Duration;

use haul_core::{Admin, EnqueueParams, Error, JobFilter, JobId, JobState, ListParams, NewJob, Storage};
use haul_postgres::PostgresStorage;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tokio::time::timeout;

use common::GENEROUS;

async fn enqueue(storage: &PostgresStorage, queue: &str, count: usize) -> Vec<JobId> {
    let jobs = (0..count).map(|n| NewJob::new("admin_job", json!({ "n": n })).queue(queue)).collect();
    storage.enqueue(EnqueueParams::new(jobs)).await.expect("enqueue").ids
}

fn jobs_table(storage: &PostgresStorage) -> String {
    format!("\"{}\".jobs", storage.schema())
}

/// Sets the state of `ids` by hand (a finished state gets a finish time).
async fn set_state(storage: &PostgresStorage, ids: &[JobId], state: JobState) {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET state = $2, finished_at = CASE WHEN $3 THEN now() END WHERE id = ANY ($1)",
        jobs_table(storage)
    )))
    .bind(&ids)
    .bind(state.as_str())
    .bind(state.is_finished())
    .execute(storage.pool())
    .await
    .expect("set state");
}

/// A transaction that changed a job as a claim or an outcome would and is kept open, so
/// the job's row stays locked until it commits.
struct Holder {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pid: i32,
}

/// Opens a transaction that changes `id` to `state` and keeps it open. It ends by
/// itself after a minute idle, so a failed test does not leave it holding the row.
async fn hold_changing(storage: &PostgresStorage, id: JobId, state: JobState) -> Holder {
    let mut tx = storage.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = '60s'").execute(&mut *tx).await.expect("set");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *tx).await.expect("pid");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET state = $2, finished_at = CASE WHEN $3 THEN now() END WHERE id = $1",
        jobs_table(storage)
    )))
    .bind(id.0)
    .bind(state.as_str())
    .bind(state.is_finished())
    .execute(&mut *tx)
    .await
    .expect("change the job in the open transaction");
    Holder { tx, pid }
}

impl Holder {
    /// Waits until a statement of another session waits for this transaction's locks.
    async fn until_someone_waits(&self) {
        let mut conn = PgConnection::connect(&common::url()).await.expect("connect");
        timeout(GENEROUS, async {
            loop {
                let waiting: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))")
                        .bind(self.pid)
                        .fetch_one(&mut conn)
                        .await
                        .expect("pg_stat_activity");
                if waiting > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a statement waits for the row lock");
    }

    async fn commit(self) {
        self.tx.commit().await.expect("commit the held change");
    }
}

async fn state_of(storage: &PostgresStorage, id: JobId) -> Option<JobState> {
    storage.get(id).await.expect("get").map(|record| record.state)
}

mod delete {
    use super::*;

    #[tokio::test]
    async fn a_delete_waits_for_a_concurrent_claim_and_keeps_the_job_it_made_running() {
        let (storage, _guard) = common::storage().await;
        let id = enqueue(&storage, "default", 1).await[0];
        let claim = hold_changing(&storage, id, JobState::Running).await;

        let deleting = tokio::spawn({
            let storage = storage.clone();
            async move { storage.delete(id).await }
        });
        claim.until_someone_waits().await;
        claim.commit().await;

        let error = deleting.await.expect("task").expect_err("the job is running by then");
        assert!(
            matches!(error, Error::InvalidState { id: failed, state: JobState::Running, operation: "delete", .. } if failed == id),
            "{error:?}"
        );
        assert_eq!(state_of(&storage, id).await, Some(JobState::Running), "the claimed job is kept");
    }

    #[tokio::test]
    async fn a_delete_waits_for_a_concurrent_outcome_and_deletes_the_finished_job() {
        let (storage, _guard) = common::storage().await;
        let id = enqueue(&storage, "default", 1).await[0];
        set_state(&storage, &[id], JobState::Running).await;
        let outcome = hold_changing(&storage, id, JobState::Completed).await;

        let deleting = tokio::spawn({
            let storage = storage.clone();
            async move { storage.delete(id).await }
        });
        outcome.until_someone_waits().await;
        outcome.commit().await;

        deleting.await.expect("task").expect("the job is completed by then");
        assert_eq!(state_of(&storage, id).await, None);
        assert!(matches!(storage.delete(id).await, Err(Error::NotFound(missing)) if missing == id));
    }
}

mod bulk {
    use super::*;

    #[tokio::test]
    async fn retry_jobs_waits_for_a_held_job_and_skips_it_once_it_is_running() {
        let (storage, _guard) = common::storage().await;
        let ids = enqueue(&storage, "default", 5).await;
        set_state(&storage, &ids, JobState::Discarded).await;
        let claim = hold_changing(&storage, ids[2], JobState::Running).await;

        let retrying = tokio::spawn({
            let storage = storage.clone();
            async move { storage.retry_jobs(JobFilter::new().state(JobState::Discarded), None).await }
        });
        claim.until_someone_waits().await;
        claim.commit().await;

        assert_eq!(retrying.await.expect("task").expect("retry_jobs"), 4);
        for (n, id) in ids.iter().enumerate() {
            let expected = if n == 2 { JobState::Running } else { JobState::Available };
            assert_eq!(state_of(&storage, *id).await, Some(expected), "job {n}");
        }
    }

    #[tokio::test]
    async fn delete_jobs_waits_for_a_held_job_and_keeps_it_once_it_is_running() {
        let (storage, _guard) = common::storage().await;
        let ids = enqueue(&storage, "default", 5).await;
        let claim = hold_changing(&storage, ids[0], JobState::Running).await;

        let deleting = tokio::spawn({
            let storage = storage.clone();
            async move { storage.delete_jobs(JobFilter::new().queue("default")).await }
        });
        claim.until_someone_waits().await;
        claim.commit().await;

        assert_eq!(deleting.await.expect("task").expect("delete_jobs"), 4);
        assert_eq!(state_of(&storage, ids[0]).await, Some(JobState::Running));
        for id in &ids[1..] {
            assert_eq!(state_of(&storage, *id).await, None);
        }
    }

    #[tokio::test]
    async fn cancel_jobs_waits_for_a_held_job_and_asks_it_to_stop_once_it_is_running() {
        let (storage, _guard) = common::storage().await;
        let ids = enqueue(&storage, "default", 3).await;
        let claim = hold_changing(&storage, ids[1], JobState::Running).await;

        let cancelling = tokio::spawn({
            let storage = storage.clone();
            async move { storage.cancel_jobs(JobFilter::new().state(JobState::Available), None).await }
        });
        claim.until_someone_waits().await;
        claim.commit().await;

        // The job left the states asked for (available) before it was changed: skipped.
        assert_eq!(cancelling.await.expect("task").expect("cancel_jobs"), 2);
        let held = storage.get(ids[1]).await.expect("get").expect("the job exists");
        assert_eq!((held.state, held.cancel_requested_at), (JobState::Running, None));
        assert_eq!(state_of(&storage, ids[0]).await, Some(JobState::Cancelled));
        assert_eq!(state_of(&storage, ids[2]).await, Some(JobState::Cancelled));
    }

    /// More matches than one statement's batch (1,000): every batch is walked, each job
    /// changed once, and a retry wakes the queues that got jobs.
    #[tokio::test]
    async fn the_bulk_calls_walk_every_batch() {
        let (storage, _guard) = common::storage().await;
        let mail = enqueue(&storage, "mail", 1_500).await;
        let reports = enqueue(&storage, "reports", 1_100).await;
        set_state(&storage, &mail, JobState::Discarded).await;
        set_state(&storage, &reports, JobState::Discarded).await;
        set_state(&storage, &mail[..10], JobState::Running).await;
        let mut wakeups = storage.subscribe().await.expect("subscribe");

        let retried = storage.retry_jobs(JobFilter::new().queue("mail"), None).await.expect("retry_jobs");
        assert_eq!(retried, 1_490, "every mail job but the running ones");
        assert!(timeout(GENEROUS, wakeups.wait_for(&["mail".to_owned()])).await.expect("a wake-up for mail"));
        let available =
            storage.list(ListParams::new().queue("mail").state(JobState::Available).limit(2_000)).await.expect("list");
        assert_eq!(available.len(), 1_490);
        assert!(available.iter().all(|job| job.max_attempts > job.attempt), "each retried job may run again");

        let cancelled = storage.cancel_jobs(JobFilter::new().queue("mail"), None).await.expect("cancel_jobs");
        assert_eq!(cancelled, 1_500, "1,490 cancelled and 10 running jobs asked to stop");

        let deleted = storage.delete_jobs(JobFilter::new()).await.expect("delete_jobs");
        assert_eq!(deleted, 1_490 + 1_100, "every job but the running ones");
        let left = storage.list(ListParams::new().limit(100)).await.expect("list");
        assert_eq!(left.len(), 10);
        assert!(left.iter().all(|job| job.state == JobState::Running && job.cancel_requested_at.is_some()));
    }

    #[tokio::test]
    async fn a_filter_of_only_states_an_action_refuses_changes_nothing() {
        let (storage, _guard) = common::storage().await;
        let ids = enqueue(&storage, "default", 2).await;
        set_state(&storage, &ids[..1], JobState::Running).await;
        set_state(&storage, &ids[1..], JobState::Completed).await;

        let running = JobFilter::new().state(JobState::Running);
        assert_eq!(storage.retry_jobs(running.clone(), None).await.expect("retry_jobs"), 0);
        assert_eq!(storage.delete_jobs(running).await.expect("delete_jobs"), 0);
        let completed = JobFilter::new().state(JobState::Completed);
        assert_eq!(storage.cancel_jobs(completed, None).await.expect("cancel_jobs"), 0);
        assert_eq!(state_of(&storage, ids[0]).await, Some(JobState::Running));
        assert_eq!(state_of(&storage, ids[1]).await, Some(JobState::Completed));
    }
}

mod plans {
    use super::*;

    /// The rows the scans of the jobs table in a JSON plan read: those they returned
    /// and those their filters threw away.
    fn rows_read(plan: &serde_json::Value) -> u64 {
        let number = |key: &str| plan.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let own = if plan["Relation Name"] == "jobs" {
            number("Actual Rows") * number("Actual Loops") + number("Rows Removed by Filter")
        } else {
            0
        };
        let children = plan.get("Plans").and_then(serde_json::Value::as_array).into_iter().flatten();
        own + children.map(rows_read).sum::<u64>()
    }

    /// `EXPLAIN (ANALYZE, FORMAT JSON)` of a 10-job page of `filter`, planned with its
    /// parameters' values as the storage's unprepared statement is.
    async fn explain_list(storage: &PostgresStorage, filter: &JobFilter) -> serde_json::Value {
        let states: Vec<&str> = filter.states.iter().map(|state| state.as_str()).collect();
        let row = sqlx::query(AssertSqlSafe(format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", storage.list_statement())))
            .bind(filter.queue.as_deref())
            .bind(&states)
            .bind(filter.kind.as_deref())
            .bind(filter.created_from)
            .bind(filter.created_until)
            .bind(None::<uuid::Uuid>)
            .bind(10_i64)
            .persistent(false)
            .fetch_one(storage.pool())
            .await
            .expect("explain");
        let explained: serde_json::Value = row.get(0);
        explained[0]["Plan"].clone()
    }

    /// 20,000 completed jobs, then 20 discarded ones among them and 50 available ones
    /// enqueued last (the newest ids): a page of a rare state, or of the newest, reads
    /// about a page of rows, not the completed jobs before them.
    #[tokio::test]
    async fn a_page_of_one_state_reads_about_a_page_of_rows() {
        let (storage, _guard) = common::storage().await;
        let mut old = Vec::new();
        for queue in ["mail", "reports"] {
            for _ in 0..10 {
                old.extend(enqueue(&storage, queue, 1_000).await);
            }
        }
        set_state(&storage, &old, JobState::Completed).await;
        let discarded: Vec<JobId> = old.iter().step_by(1_000).copied().collect();
        set_state(&storage, &discarded, JobState::Discarded).await;
        enqueue(&storage, "mail", 50).await;
        sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {}", jobs_table(&storage))))
            .execute(storage.pool())
            .await
            .expect("vacuum analyze");

        for filter in [
            JobFilter::new().state(JobState::Discarded),
            JobFilter::new().state(JobState::Available),
            JobFilter::new().state(JobState::Completed),
            JobFilter::new().queue("mail").state(JobState::Discarded),
            JobFilter::new().queue("mail").state(JobState::Available),
            JobFilter::new().state(JobState::Discarded).state(JobState::Available),
        ] {
            let plan = explain_list(&storage, &filter).await;
            let read = rows_read(&plan);
            assert!(read <= 100, "{filter:?} read {read} rows: {plan:#}");
            let listed = storage.list(ListParams::filtered(filter.clone()).limit(10)).await.expect("list");
            assert_eq!(listed.len(), 10, "{filter:?}");
            assert!(listed.iter().all(|job| filter.matches(job)), "{filter:?}");
        }
    }
}
