//! Backend-only behaviour of haul-postgres against a real server
//! (`HAUL_TEST_POSTGRES_URL`): migrations, transactional enqueue, claim concurrency
//! and locking, the claim plan, plans that stay linear with stale statistics,
//! LISTEN/NOTIFY, corrupt rows.

mod common;

use haul_core::Admin as _;
use std::{collections::HashSet, time::Duration};

use haul_core::{
    ClaimParams, EnqueueParams, Error, ErrorKind, HeartbeatParams, JobOutcome, JobState, ListParams, NewJob, Report,
    ReportParams, RunAt, Storage,
};
use haul_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};
use tokio::time::timeout;

use common::GENEROUS;

fn job(queue: &str) -> NewJob {
    NewJob::new("test_job", json!({ "n": 1 })).queue(queue)
}

async fn enqueue(storage: &PostgresStorage, queue: &str, count: usize) -> Vec<haul_core::JobId> {
    let jobs = (0..count).map(|_| job(queue)).collect();
    storage.enqueue(EnqueueParams::new(jobs)).await.expect("enqueue").ids
}

mod migrate {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn running_migrate_twice_and_concurrently_applies_each_migration_once() {
        let (storage, guard) = common::unmigrated().await;
        let schema = guard.schema.clone();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let storage = PostgresStorage::from_pool_with(common::pool(2).await, PostgresConfig::new().schema(&schema))
                .expect("valid schema");
            tasks.push(tokio::spawn(async move { storage.migrate().await }));
        }
        for task in tasks {
            task.await.expect("task").expect("concurrent migrate");
        }
        storage.migrate().await.expect("second migrate");
        storage.migrate().await.expect("third migrate");

        let applied: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\"._sqlx_migrations")))
                .fetch_one(storage.pool())
                .await
                .expect("migrations table");
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).expect("migrations").count();
        assert_eq!(applied, i64::try_from(files).expect("count"));
        assert_eq!(enqueue(&storage, "default", 1).await.len(), 1);
    }

    /// Unique jobs stored before migration 0004 get the digest of their key (the one
    /// the client computes), so they still block new jobs of that key; and a key too
    /// long for the old index of the key text is accepted once it is gone.
    #[tokio::test]
    async fn the_digest_migration_backfills_the_unique_jobs_stored_before_it() {
        use haul_core::{JobId, Unique};
        use sha2::{Digest, Sha256};
        use sqlx::{migrate::Migrator, postgres::PgPoolOptions};

        let (storage, guard) = common::unmigrated().await;
        let schema = guard.schema.as_str();
        let all = sqlx::migrate!("./migrations");
        let mut before = Migrator::with_migrations(all.iter().filter(|m| m.version < 4).cloned().collect());
        before.dangerous_set_table_name(format!("\"{schema}\"._sqlx_migrations"));
        before.create_schema(format!("\"{schema}\""));
        let options = (*storage.pool().connect_options()).clone().options([("search_path", schema)]);
        let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.expect("connect");
        before.run(&pool).await.expect("migrations before 0004");
        let key = "é".repeat(1000); // 2000 bytes: within the old index's limit
        let old = JobId::new();
        sqlx::query(
            "INSERT INTO jobs (id, kind, args, queue, state, max_attempts, run_at, created_at, unique_key) \
             VALUES ($1, 'test_job', '{}', 'default', 'available', 3, now(), now(), $2)",
        )
        .bind(old.0)
        .bind(&key)
        .execute(&pool)
        .await
        .expect("a unique job stored before 0004");
        pool.close().await;

        storage.migrate().await.expect("migrate");
        let digest: Vec<u8> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT unique_digest FROM \"{schema}\".jobs WHERE id = $1")))
                .bind(old.0)
                .fetch_one(storage.pool())
                .await
                .expect("digest");
        assert_eq!(digest, Sha256::digest(key.as_bytes()).to_vec());
        let outcome =
            storage.enqueue(EnqueueParams::new(vec![job("default").unique(Unique::new(&key))])).await.expect("enqueue");
        assert_eq!(outcome.duplicates, vec![old]);
        let long = storage
            .enqueue(EnqueueParams::new(vec![job("default").unique(Unique::new("é".repeat(4000)))]))
            .await
            .expect("a long key is accepted");
        assert!(long.duplicates.is_empty());

        // A writer that knows nothing of the digest (an older haul) is refused.
        let unpaired = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".jobs (id, kind, args, queue, state, max_attempts, run_at, created_at, unique_key) \
             VALUES ($1, 'test_job', '{{}}', 'default', 'available', 3, now(), now(), 'k')"
        )))
        .bind(JobId::new().0)
        .execute(storage.pool())
        .await
        .expect_err("a key without its digest is refused");
        let code = unpaired.as_database_error().and_then(|error| error.code()).map(|code| code.into_owned());
        assert_eq!(code.as_deref(), Some("23514"), "check_violation: {unpaired:?}");
    }

    #[tokio::test]
    async fn connecting_creates_nothing_until_migrate_is_called() {
        let (storage, guard) = common::unmigrated().await;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)")
                .bind(&guard.schema)
                .fetch_one(storage.pool())
                .await
                .expect("query");
        assert!(!exists);
        let error = storage.enqueue(EnqueueParams::new(vec![job("default")])).await.expect_err("no table yet");
        assert_eq!(error.kind(), Some(ErrorKind::Other));
    }

    #[tokio::test]
    async fn a_schema_that_is_not_a_plain_name_is_rejected() {
        let pool = common::pool(1).await;
        for bad in ["Haul", "haul; DROP TABLE x", "1haul", "", "ha\"ul"] {
            let result = PostgresStorage::from_pool_with(pool.clone(), PostgresConfig::new().schema(bad));
            assert!(matches!(result, Err(Error::InvalidName { what: "namespace", .. })), "{bad:?}");
        }
    }
}

mod transactional_enqueue {
    use super::*;

    async fn users_table(storage: &PostgresStorage) -> String {
        let table = format!("\"{}\".users", storage.schema());
        sqlx::query(AssertSqlSafe(format!("CREATE TABLE {table} (email text PRIMARY KEY)")))
            .execute(storage.pool())
            .await
            .expect("create users");
        table
    }

    #[tokio::test]
    async fn a_job_enqueued_in_a_committed_transaction_exists_with_the_data() {
        let (storage, _guard) = common::storage().await;
        let users = users_table(&storage).await;
        let mut wakeups = storage.subscribe().await.expect("subscribe");

        let mut tx = storage.pool().begin().await.expect("begin");
        sqlx::query(AssertSqlSafe(format!("INSERT INTO {users} (email) VALUES ('a@b.c')")))
            .execute(&mut *tx)
            .await
            .expect("insert user");
        let ids = storage.enqueue_in_tx(&mut tx, vec![job("mail")]).await.expect("enqueue in tx").ids;
        assert_eq!(storage.get(ids[0]).await.expect("get"), None, "invisible before commit");
        tx.commit().await.expect("commit");

        let record = storage.get(ids[0]).await.expect("get").expect("the job exists");
        assert_eq!(record.state, JobState::Available);
        assert!(timeout(GENEROUS, wakeups.wait_for(&["mail".to_owned()])).await.expect("wake-up after commit"));
    }

    #[tokio::test]
    async fn a_job_enqueued_in_a_rolled_back_transaction_does_not_exist() {
        let (storage, _guard) = common::storage().await;
        let users = users_table(&storage).await;

        let mut tx = storage.pool().begin().await.expect("begin");
        sqlx::query(AssertSqlSafe(format!("INSERT INTO {users} (email) VALUES ('a@b.c')")))
            .execute(&mut *tx)
            .await
            .expect("insert user");
        let ids = storage.enqueue_in_tx(&mut tx, vec![job("mail"), job("mail")]).await.expect("enqueue in tx").ids;
        tx.rollback().await.expect("rollback");

        for id in ids {
            assert_eq!(storage.get(id).await.expect("get"), None);
        }
        assert!(storage.list(ListParams::new()).await.expect("list").is_empty());
        let users: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {users}")))
            .fetch_one(storage.pool())
            .await
            .expect("count users");
        assert_eq!(users, 0);
    }
}

mod duplicate_ids {
    use super::*;

    #[tokio::test]
    async fn a_stored_id_fails_the_batch_in_a_transaction_that_stays_usable() {
        let (storage, _guard) = common::storage().await;
        let existing = enqueue(&storage, "default", 1).await[0];
        let fresh = job("default");
        let fresh_id = fresh.id;

        let mut tx = storage.pool().begin().await.expect("begin");
        let result = storage.enqueue_in_tx(&mut tx, vec![fresh, job("default").id(existing)]).await;
        assert!(matches!(result, Err(Error::DuplicateId(id)) if id == existing), "{result:?}");
        let alive: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *tx).await.expect("the transaction is usable");
        assert_eq!(alive, 1);
        tx.commit().await.expect("commit");
        assert_eq!(storage.get(fresh_id).await.expect("get"), None);
    }

    /// A large batch (300 jobs of about 250 bytes) inside a transaction that enqueued
    /// before: the stored id in its last job undoes the batch, and only it.
    #[tokio::test]
    async fn a_stored_id_in_a_large_batch_undoes_only_the_batch() {
        let (storage, _guard) = common::storage().await;
        let existing = enqueue(&storage, "default", 1).await[0];
        let padding = "p".repeat(200);
        let mut batch: Vec<NewJob> =
            (0..300).map(|n| NewJob::new("test_job", json!({ "n": n, "padding": padding }))).collect();
        let fresh: Vec<_> = batch.iter().map(|job| job.id).collect();
        batch.push(job("default").id(existing));

        let mut tx = storage.pool().begin().await.expect("begin");
        let before = job("default");
        let before_id = before.id;
        storage.enqueue_in_tx(&mut tx, vec![before]).await.expect("an earlier enqueue of the transaction");
        let result = storage.enqueue_in_tx(&mut tx, batch).await;
        assert!(matches!(result, Err(Error::DuplicateId(id)) if id == existing), "{result:?}");
        let alive: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *tx).await.expect("the transaction is usable");
        assert_eq!(alive, 1);
        tx.commit().await.expect("commit");
        assert!(storage.get(before_id).await.expect("get").is_some(), "the transaction's earlier job is kept");
        for id in fresh {
            assert_eq!(storage.get(id).await.expect("get"), None, "no job of the failed batch is stored");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loser_of_two_batches_racing_on_one_id_gets_duplicate_id() {
        let (storage, _guard) = common::storage().await;
        let contested = job("default");
        let id = contested.id;

        // The winner inserts the id and keeps its transaction open.
        let mut winner = storage.pool().begin().await.expect("begin");
        storage.enqueue_in_tx(&mut winner, vec![contested.clone()]).await.expect("winner enqueues");

        // The loser does not see the uncommitted row, inserts, and waits on the key.
        let other = job("default");
        let other_id = other.id;
        let loser = {
            let storage = storage.clone();
            tokio::spawn(async move { storage.enqueue(EnqueueParams::new(vec![other, contested])).await })
        };
        let admin = common::pool(1).await;
        timeout(GENEROUS, async {
            loop {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%Inserts a batch%'",
                )
                .fetch_one(&admin)
                .await
                .expect("pg_stat_activity");
                if waiting > 0 {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the loser waits on the winner's row");
        winner.commit().await.expect("winner commits");

        let result = timeout(GENEROUS, loser).await.expect("the loser finishes").expect("task");
        assert!(matches!(result, Err(Error::DuplicateId(duplicate)) if duplicate == id), "{result:?}");
        assert_eq!(storage.get(other_id).await.expect("get"), None, "nothing of the losing batch is stored");
        assert!(storage.get(id).await.expect("get").is_some());
    }
}

mod claim {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixteen_concurrent_claimers_claim_each_job_exactly_once() {
        let (storage, _guard) = common::storage().await;
        let mut enqueued = HashSet::new();
        for _ in 0..4 {
            enqueued.extend(enqueue(&storage, "busy", 200).await);
        }

        let mut claimers = Vec::new();
        for worker in 0..16 {
            let storage = storage.clone();
            claimers.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let params = ClaimParams::new(["busy"], 7).worker_id(format!("worker-{worker}"));
                    let batch = storage.claim(params).await.expect("claim");
                    if batch.is_empty() {
                        return claimed;
                    }
                    claimed.extend(batch);
                }
            }));
        }
        let mut seen = HashSet::new();
        for claimer in claimers {
            for record in claimer.await.expect("claimer") {
                assert!(seen.insert(record.id), "job {} claimed twice", record.id);
                assert_eq!(record.state, JobState::Running);
                assert_eq!(record.attempt, 1);
                assert!(record.lease_token.is_some());
            }
        }
        assert_eq!(seen, enqueued);
        let available = storage.list(ListParams::new().state(JobState::Available)).await.expect("list");
        assert!(available.is_empty());
    }

    /// Whether some session waits for a lock the session `pid` holds.
    async fn blocks_another_session(storage: &PostgresStorage, pid: i32) -> bool {
        sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))) AS blocks")
            .bind(pid)
            .fetch_one(storage.pool())
            .await
            .expect("pg_stat_activity")
            .get("blocks")
    }

    /// Three running jobs, and an open transaction that has updated them (as a heartbeat
    /// or a cancel request does) without committing, with its session's pid.
    async fn running_jobs_updated_in_an_open_transaction(
        storage: &PostgresStorage,
    ) -> (Vec<haul_core::Claim>, sqlx::Transaction<'static, sqlx::Postgres>, i32) {
        enqueue(storage, "default", 3).await;
        let claimed = storage.claim(ClaimParams::new(["default"], 3)).await.expect("claim");
        let claims: Vec<_> = claimed.iter().map(|record| record.claim().expect("a claimed job")).collect();
        let mut tx = storage.pool().begin().await.expect("begin");
        let update = format!(
            "UPDATE \"{}\".jobs SET lease_expires_at = lease_expires_at + interval '1 minute'",
            storage.schema()
        );
        sqlx::query(AssertSqlSafe(update)).execute(&mut *tx).await.expect("update in the open transaction");
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *tx).await.expect("pid");
        (claims, tx, pid)
    }

    /// Waits until `task` waits for a lock the session `pid` holds (or has finished).
    async fn wait_until_blocked<T>(storage: &PostgresStorage, pid: i32, task: &tokio::task::JoinHandle<T>) {
        timeout(GENEROUS, async {
            while !task.is_finished() && !blocks_another_session(storage, pid).await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the statement waits or finishes");
        assert!(!task.is_finished(), "the statement must wait for the open transaction's row locks");
    }

    /// An outcome batch that waits for a concurrent update of its jobs applies every
    /// outcome once that update commits: it locks the newest versions of the rows and
    /// updates them, found by id (see `queries/report.sql`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outcome_batch_waiting_for_a_concurrent_update_applies_every_outcome() {
        let (storage, _guard) = common::storage().await;
        let (claims, tx, pid) = running_jobs_updated_in_an_open_transaction(&storage).await;
        let reports = claims.iter().map(|claim| Report { claim: *claim, outcome: JobOutcome::Completed }).collect();
        let report = tokio::spawn({
            let storage = storage.clone();
            async move { storage.report(ReportParams::new(reports)).await }
        });
        wait_until_blocked(&storage, pid, &report).await;
        tx.commit().await.expect("commit");
        let outcome = timeout(GENEROUS, report).await.expect("report finishes").expect("task").expect("report");
        assert_eq!(outcome.applied.len(), 3, "{outcome:?}");
        for claim in claims {
            let record = storage.get(claim.id).await.expect("get").expect("stored");
            assert_eq!(record.state, JobState::Completed);
        }
    }

    /// A heartbeat batch that waits for a concurrent update of its jobs extends every
    /// lease once that update commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_batch_waiting_for_a_concurrent_update_extends_every_lease() {
        let (storage, _guard) = common::storage().await;
        let (claims, tx, pid) = running_jobs_updated_in_an_open_transaction(&storage).await;
        let heartbeat = tokio::spawn({
            let (storage, claims) = (storage.clone(), claims.clone());
            async move { storage.heartbeat(HeartbeatParams::new(claims, Duration::from_secs(600))).await }
        });
        wait_until_blocked(&storage, pid, &heartbeat).await;
        tx.commit().await.expect("commit");
        let outcome =
            timeout(GENEROUS, heartbeat).await.expect("heartbeat finishes").expect("task").expect("heartbeat");
        assert_eq!(outcome.extended.len(), 3, "{outcome:?}");
        assert!(outcome.lost.is_empty(), "{outcome:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_skips_rows_locked_by_another_transaction_instead_of_waiting() {
        let (storage, _guard) = common::storage().await;
        let ids = enqueue(&storage, "default", 10).await;

        // Another transaction holds the four oldest jobs, and stays open during the claim.
        let mut tx = storage.pool().begin().await.expect("begin");
        let locked: Vec<uuid::Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM \"{}\".jobs ORDER BY id LIMIT 4 FOR UPDATE",
            storage.schema()
        )))
        .fetch_all(&mut *tx)
        .await
        .expect("lock rows");
        assert_eq!(locked.len(), 4);

        let claimed = timeout(GENEROUS, storage.claim(ClaimParams::new(["default"], 10)))
            .await
            .expect("the claim must not wait for the open transaction")
            .expect("claim");
        let claimed: HashSet<_> = claimed.iter().map(|record| record.id.0).collect();
        let expected: HashSet<_> = ids.iter().map(|id| id.0).filter(|id| !locked.contains(id)).collect();
        assert_eq!(claimed, expected);

        tx.rollback().await.expect("rollback");
        let rest = storage.claim(ClaimParams::new(["default"], 10)).await.expect("claim the rest");
        assert_eq!(rest.len(), 4);
    }

    /// Runs a claim statement (`claim.sql` or `claim_one_queue.sql`, its parameters
    /// bound by `bind`) and returns the queue and priority of each job claimed, sorted.
    async fn run_claim_sql<'q>(
        storage: &PostgresStorage,
        sql: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Vec<(String, i16)> {
        let sql = sql.replace("{schema}", &format!("\"{}\"", storage.schema()));
        let rows = bind(sqlx::query(AssertSqlSafe(sql))).fetch_all(storage.pool()).await.expect("claim");
        let mut claimed: Vec<(String, i16)> =
            rows.iter().map(|row| (row.get::<String, _>("queue"), row.get::<i16, _>("priority"))).collect();
        claimed.sort();
        claimed
    }

    /// One job of each priority 0 to 3 in `queue`; returns the run_at of the priority 2 job.
    async fn four_priorities(storage: &PostgresStorage, queue: &str) -> chrono::DateTime<chrono::Utc> {
        let jobs = (0..4).map(|priority| job(queue).priority(priority)).collect();
        let ids = storage.enqueue(EnqueueParams::new(jobs)).await.expect("enqueue").ids;
        storage.get(ids[2]).await.expect("get").expect("stored").run_at
    }

    #[tokio::test]
    async fn a_claim_walks_each_queue_from_its_start() {
        let (storage, _guard) = common::storage().await;
        let start_run_at = four_priorities(&storage, "a").await;
        four_priorities(&storage, "b").await;
        let now = None::<chrono::DateTime<chrono::Utc>>;

        let claimed = run_claim_sql(&storage, storage.claim_statements().0, |query| {
            query.bind(now).bind("a").bind(10_i64).bind(30_000_000_i64).bind("w").bind(2_i16).bind(start_run_at)
        })
        .await;
        assert_eq!(claimed, [("a".to_owned(), 2), ("a".to_owned(), 3)], "the one-queue claim starts at priority 2");

        let claimed = run_claim_sql(&storage, storage.claim_statements().1, |query| {
            query
                .bind(now)
                .bind(vec!["a".to_owned(), "b".to_owned()])
                .bind(10_i64)
                .bind(30_000_000_i64)
                .bind("w")
                .bind(vec![None::<i16>, Some(1_i16)])
                .bind(vec![None, Some(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)])
        })
        .await;
        let expected =
            [("a", 0), ("a", 1), ("b", 1), ("b", 2), ("b", 3)].map(|(queue, priority)| (queue.to_owned(), priority));
        assert_eq!(claimed, expected, "queue a from its beginning, queue b from priority 1");
    }

    #[tokio::test]
    async fn the_claim_query_can_use_the_partial_index_of_available_jobs() {
        let (storage, _guard) = common::storage().await;
        for _ in 0..5 {
            enqueue(&storage, "default", 1000).await;
            enqueue(&storage, "other", 1000).await;
        }
        let claimed = storage.claim(ClaimParams::new(["default"], 2500)).await.expect("claim");
        assert_eq!(claimed.len(), 2500);
        let schema = format!("\"{}\"", storage.schema());
        sqlx::query(AssertSqlSafe(format!("ANALYZE {schema}.jobs"))).execute(storage.pool()).await.expect("analyze");

        let plan = explain_claim(&storage, false).await;
        println!("EXPLAIN claim (10,000 jobs, 2,500 running):\n{plan}");
        let forced = explain_claim(&storage, true).await;
        println!("EXPLAIN claim with enable_seqscan = off:\n{forced}");
        assert!(forced.contains("jobs_available_idx"), "{forced}");
    }
}

/// Plans that must stay linear in the batch whatever the table's statistics say. Each
/// case reproduces statistics that misled the planner before (a table analyzed while
/// no job was running, or never analyzed) and checks the executed plan's row counts,
/// not its timing.
mod plans {
    use super::*;

    /// The largest "Rows Removed by Join Filter" of any node of an EXPLAIN (ANALYZE,
    /// FORMAT JSON) plan: how many row pairs a nested loop compared and threw away.
    fn most_rows_removed_by_join_filter(plan: &serde_json::Value) -> u64 {
        let own = plan.get("Rows Removed by Join Filter").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let children = plan.get("Plans").and_then(serde_json::Value::as_array).into_iter().flatten();
        children.map(most_rows_removed_by_join_filter).fold(own, u64::max)
    }

    /// Whether some node of a JSON plan reads the whole jobs table.
    fn scans_the_jobs_table(plan: &serde_json::Value) -> bool {
        let own = plan["Node Type"] == "Seq Scan" && plan["Relation Name"] == "jobs";
        let children = plan.get("Plans").and_then(serde_json::Value::as_array).into_iter().flatten();
        own || children.into_iter().any(scans_the_jobs_table)
    }

    /// Runs `EXPLAIN (ANALYZE, FORMAT JSON)` of `sql` with `bind`'s parameters in a
    /// transaction that is rolled back, and returns the top plan node.
    async fn explain_analyze<'q>(
        storage: &PostgresStorage,
        sql: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> serde_json::Value {
        let sql = sql.replace("{schema}", &format!("\"{}\"", storage.schema())).replace("{channel}", "'explain'");
        let mut tx = storage.pool().begin().await.expect("begin");
        let query = bind(sqlx::query(AssertSqlSafe(format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))));
        let explained: serde_json::Value = query.fetch_one(&mut *tx).await.expect("explain").get(0);
        tx.rollback().await.expect("rollback");
        explained[0]["Plan"].clone()
    }

    /// 20,000 jobs, analyzed while all were available, then all claimed: the statistics
    /// say no job is running. Returns the claims (id, token) of 1,000 of them.
    async fn running_jobs_the_statistics_do_not_know()
    -> (PostgresStorage, common::SchemaGuard, Vec<(uuid::Uuid, uuid::Uuid)>) {
        let (storage, guard) = common::storage().await;
        for _ in 0..20 {
            enqueue(&storage, "default", 1_000).await;
        }
        let schema = format!("\"{}\"", storage.schema());
        sqlx::query(AssertSqlSafe(format!("ANALYZE {schema}.jobs"))).execute(storage.pool()).await.expect("analyze");
        let claimed = storage.claim(ClaimParams::new(["default"], 20_000)).await.expect("claim");
        assert_eq!(claimed.len(), 20_000);
        let claims = claimed.iter().take(1_000).map(|record| record.claim().expect("a claimed job has a claim"));
        let claims = claims.map(|claim| (claim.id.0, claim.token.0)).collect();
        (storage, guard, claims)
    }

    /// Completions that update their rows, then completions that delete them (each
    /// EXPLAIN is rolled back, so both see the same running jobs).
    #[tokio::test]
    async fn an_outcome_batch_looks_each_job_up_once_with_stale_statistics() {
        let (storage, _guard, claims) = running_jobs_the_statistics_do_not_know().await;
        let (ids, tokens): (Vec<_>, Vec<_>) = claims.into_iter().unzip();
        let n = ids.len();
        for delete_completed in [false, true] {
            let plan = explain_analyze(&storage, include_str!("../queries/report.sql"), |query| {
                query
                    .bind(None::<chrono::DateTime<chrono::Utc>>)
                    .bind(ids.clone())
                    .bind(tokens.clone())
                    .bind(vec!["completed".to_owned(); n])
                    .bind(vec![None::<String>; n])
                    .bind(vec![None::<i64>; n])
                    .bind(delete_completed)
            })
            .await;
            let deleting = if delete_completed { " (deleting)" } else { "" };
            assert_eq!(plan["Actual Rows"], 1_000, "every outcome applies{deleting}: {plan}");
            let removed = most_rows_removed_by_join_filter(&plan);
            assert!(removed <= 1_000, "a join compared {removed} row pairs for 1,000 outcomes{deleting}: {plan}");
            assert!(
                !scans_the_jobs_table(&plan),
                "1,000 outcomes on 20,000 jobs read the whole table{deleting}: {plan}"
            );
        }
    }

    #[tokio::test]
    async fn a_heartbeat_batch_looks_each_job_up_once_with_stale_statistics() {
        let (storage, _guard, claims) = running_jobs_the_statistics_do_not_know().await;
        let (ids, tokens): (Vec<_>, Vec<_>) = claims.into_iter().unzip();
        let plan = explain_analyze(&storage, include_str!("../queries/heartbeat.sql"), |query| {
            query.bind(None::<chrono::DateTime<chrono::Utc>>).bind(ids).bind(tokens).bind(30_000_000_i64)
        })
        .await;
        assert_eq!(plan["Actual Rows"], 1_000, "every lease is extended: {plan}");
        let removed = most_rows_removed_by_join_filter(&plan);
        assert!(removed <= 1_000, "a join compared {removed} row pairs for 1,000 heartbeats: {plan}");
        assert!(!scans_the_jobs_table(&plan), "1,000 heartbeats on 20,000 jobs read the whole table: {plan}");
    }

    #[tokio::test]
    async fn a_large_claim_updates_the_picked_rows_without_reading_the_table() {
        let (storage, _guard) = common::storage().await;
        for _ in 0..20 {
            enqueue(&storage, "default", 1_000).await;
        }
        let schema = format!("\"{}\"", storage.schema());
        sqlx::query(AssertSqlSafe(format!("ANALYZE {schema}.jobs"))).execute(storage.pool()).await.expect("analyze");
        let plan = explain_analyze(&storage, storage.claim_statements().1, |query| {
            query
                .bind(None::<chrono::DateTime<chrono::Utc>>)
                .bind(vec!["default".to_owned()])
                .bind(500_i64)
                .bind(30_000_000_i64)
                .bind("explain")
                .bind(vec![None::<i16>])
                .bind(vec![None::<chrono::DateTime<chrono::Utc>>])
        })
        .await;
        assert_eq!(plan["Actual Rows"], 500, "the claim takes its limit: {plan}");
        assert!(!scans_the_jobs_table(&plan), "{plan}");

        let plan = explain_analyze(&storage, storage.claim_statements().0, |query| {
            query
                .bind(None::<chrono::DateTime<chrono::Utc>>)
                .bind("default")
                .bind(500_i64)
                .bind(30_000_000_i64)
                .bind("explain")
                .bind(None::<i16>)
                .bind(None::<chrono::DateTime<chrono::Utc>>)
        })
        .await;
        assert_eq!(plan["Actual Rows"], 500, "the one-queue claim takes its limit: {plan}");
        assert!(!scans_the_jobs_table(&plan), "{plan}");
    }

    /// The index scan node of a JSON plan that reads `jobs_available_idx`.
    fn claim_index_scan(plan: &serde_json::Value) -> Option<&serde_json::Value> {
        if plan["Index Name"] == "jobs_available_idx" {
            return Some(plan);
        }
        plan.get("Plans").and_then(serde_json::Value::as_array)?.iter().find_map(claim_index_scan)
    }

    /// The jobs table's pages as its planner statistics know them (`pg_class.relpages`)
    /// and as they are.
    async fn known_and_actual_pages(storage: &PostgresStorage) -> (i64, i64) {
        let row = sqlx::query(
            "SELECT c.relpages::bigint AS known, pg_relation_size(c.oid) / current_setting('block_size')::bigint AS actual \
             FROM pg_class AS c WHERE c.oid = format('%I.jobs', $1::text)::regclass",
        )
        .bind(storage.schema())
        .fetch_one(storage.pool())
        .await
        .expect("pg_class");
        (row.get("known"), row.get("actual"))
    }

    /// A maintenance pass (the leader's `promote_due`) analyzes the jobs table once it
    /// has more than doubled (plus 8 pages) since its statistics were taken, and not
    /// before: an ANALYZE makes every connection replan its cached plans, so none made
    /// on a nearly empty table goes on scanning the grown one.
    #[tokio::test]
    async fn maintenance_analyzes_the_jobs_table_once_it_has_more_than_doubled() {
        let (storage, _guard) = common::storage().await;
        // Only the storage analyzes this table (the server's autovacuum may be on).
        let no_autovacuum = format!("ALTER TABLE \"{}\".jobs SET (autovacuum_enabled = false)", storage.schema());
        sqlx::query(AssertSqlSafe(no_autovacuum)).execute(storage.pool()).await.expect("alter table");
        for _ in 0..10 {
            enqueue(&storage, "default", 1_000).await;
        }
        let (known, actual) = known_and_actual_pages(&storage).await;
        assert!(actual > 2 * known + 8, "the new table has grown past its statistics: {known} of {actual} pages");
        storage.promote_due(None).await.expect("promote");
        let (known, actual) = known_and_actual_pages(&storage).await;
        assert_eq!(known, actual, "analyzed: the statistics know the table's size");

        enqueue(&storage, "default", 1_000).await;
        storage.promote_due(None).await.expect("promote");
        let (still_known, grown) = known_and_actual_pages(&storage).await;
        assert!(grown > actual, "the table grew: {actual} -> {grown} pages");
        assert_eq!(still_known, known, "not analyzed again before the table has doubled");
    }

    /// A claim that starts its walk past the beginning positions the index scan there
    /// (an index condition), instead of reading the entries before it and filtering them.
    #[tokio::test]
    async fn a_claim_walk_start_is_an_index_condition() {
        let (storage, _guard) = common::storage().await;
        enqueue(&storage, "default", 1_000).await;
        let start = chrono::Utc::now() + chrono::Duration::days(1);
        let plans = [
            explain_analyze(&storage, storage.claim_statements().0, |query| {
                query
                    .bind(None::<chrono::DateTime<chrono::Utc>>)
                    .bind("default")
                    .bind(10_i64)
                    .bind(30_000_000_i64)
                    .bind("explain")
                    .bind(0_i16)
                    .bind(start)
            })
            .await,
            explain_analyze(&storage, storage.claim_statements().1, |query| {
                query
                    .bind(None::<chrono::DateTime<chrono::Utc>>)
                    .bind(vec!["default".to_owned()])
                    .bind(10_i64)
                    .bind(30_000_000_i64)
                    .bind("explain")
                    .bind(vec![Some(0_i16)])
                    .bind(vec![Some(start)])
            })
            .await,
        ];
        for plan in plans {
            assert_eq!(plan["Actual Rows"], 0, "every job sorts before the start: {plan}");
            let scan = claim_index_scan(&plan).unwrap_or_else(|| panic!("the claim walks the claim index: {plan}"));
            let condition = scan["Index Cond"].as_str().unwrap_or_default();
            assert!(condition.contains("priority") && condition.contains("run_at"), "{scan}");
            assert_eq!(scan["Actual Rows"], 0, "{scan}");
            assert!(scan.get("Rows Removed by Filter").is_none_or(|removed| removed == 0), "{scan}");
        }
    }

    /// A prepared enqueue switches to a generic plan after a few runs; on a table never
    /// analyzed, the duplicate-id check must still go through the primary key, not read
    /// the whole table.
    #[tokio::test]
    async fn the_generic_enqueue_plan_checks_ids_through_the_primary_key() {
        let (storage, _guard) = common::storage().await;
        enqueue(&storage, "default", 2_000).await;
        let sql = include_str!("../queries/enqueue.sql")
            .replace("{schema}", &format!("\"{}\"", storage.schema()))
            .replace("{channel}", "'explain'");
        let mut conn = storage.pool().acquire().await.expect("acquire");
        for statement in [
            "SET plan_cache_mode = force_generic_plan".to_owned(),
            format!(
                "PREPARE generic_enqueue (timestamptz, uuid[], text[], jsonb[], text[], smallint[], timestamptz[], \
                 bigint[], integer[], bigint[], text[], boolean, bytea[], jsonb[], text[]) AS {sql}"
            ),
        ] {
            sqlx::raw_sql(AssertSqlSafe(statement)).execute(&mut *conn).await.expect("prepare");
        }
        let explain = "EXPLAIN (FORMAT TEXT) EXECUTE generic_enqueue (NULL, ARRAY[gen_random_uuid()], ARRAY['test_job'], \
                       ARRAY['{}'::jsonb], ARRAY['default'], ARRAY[0::smallint], ARRAY[NULL::timestamptz], ARRAY[0::bigint], \
                       ARRAY[3], ARRAY[NULL::bigint], ARRAY[NULL::text], false, ARRAY[NULL::bytea], \
                       ARRAY[NULL::jsonb], ARRAY[NULL::text])";
        let plan: Vec<String> = sqlx::query(explain)
            .fetch_all(&mut *conn)
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        for statement in ["DEALLOCATE generic_enqueue", "RESET plan_cache_mode"] {
            sqlx::raw_sql(statement).execute(&mut *conn).await.expect("reset");
        }
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on jobs"), "{plan}");
        assert!(plan.contains("jobs_pkey"), "{plan}");
    }
}

/// The plan of `queries/claim.sql` for one queue and 10 jobs.
async fn explain_claim(storage: &PostgresStorage, without_seqscan: bool) -> String {
    let claim_sql = storage.claim_statements().1.to_owned();
    let mut tx = storage.pool().begin().await.expect("begin");
    if without_seqscan {
        sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.expect("set");
    }
    let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!("EXPLAIN {claim_sql}")))
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(vec!["default".to_owned()])
        .bind(10_i64)
        .bind(30_000_000_i64)
        .bind("explain")
        .bind(vec![None::<i16>])
        .bind(vec![None::<chrono::DateTime<chrono::Utc>>])
        .fetch_all(&mut *tx)
        .await
        .expect("explain")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    tx.rollback().await.expect("rollback");
    plan.join("\n")
}

mod notify {
    use super::*;

    /// Another handle on `storage`'s schema, with a pool of its own (as another process
    /// would have): its enqueues can wake `storage`'s subscribers only through NOTIFY.
    async fn other_handle(storage: &PostgresStorage) -> PostgresStorage {
        PostgresStorage::from_pool_with(common::pool(5).await, PostgresConfig::new().schema(storage.schema()))
            .expect("a valid schema")
    }

    #[tokio::test]
    async fn an_enqueue_through_the_pool_notifies_listeners_once_the_job_is_committed() {
        let (storage, _guard) = common::storage().await;
        let mut listener = sqlx::postgres::PgListener::connect(&common::url()).await.expect("listener");
        listener.listen(storage.channel()).await.expect("listen");

        let ids = enqueue(&storage, "mail", 1).await;
        let notification = timeout(GENEROUS, listener.recv()).await.expect("a notification").expect("recv");
        assert_eq!(notification.payload(), "mail");
        // Sent after the commit: a claimer woken by it finds the job.
        let other = other_handle(&storage).await;
        let claimed = other.claim(ClaimParams::new(["mail"], 10)).await.expect("claim");
        assert_eq!(claimed.iter().map(|record| record.id).collect::<Vec<_>>(), ids);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_queue_of_concurrent_enqueues_is_notified() {
        let (storage, _guard) = common::storage().await;
        let mut listener = sqlx::postgres::PgListener::connect(&common::url()).await.expect("listener");
        listener.listen(storage.channel()).await.expect("listen");

        let queues: HashSet<String> = (0..40).map(|n| format!("queue-{n}")).collect();
        let mut enqueues = tokio::task::JoinSet::new();
        for queue in queues.clone() {
            let storage = storage.clone();
            enqueues.spawn(async move { enqueue(&storage, &queue, 1).await });
        }
        while let Some(joined) = enqueues.join_next().await {
            joined.expect("enqueue task");
        }
        let mut seen = HashSet::new();
        timeout(GENEROUS, async {
            while seen.len() < queues.len() {
                let notification = listener.recv().await.expect("recv");
                seen.insert(notification.payload().to_owned());
            }
        })
        .await
        .unwrap_or_else(|_| panic!("notified {} of {} queues", seen.len(), queues.len()));
        assert_eq!(seen, queues);
    }

    #[tokio::test]
    async fn a_subscriber_of_another_storage_is_woken_by_an_enqueue() {
        let (storage, _guard) = common::storage().await;
        let worker_side = other_handle(&storage).await;
        let mut wakeups = worker_side.subscribe().await.expect("subscribe");
        enqueue(&storage, "mail", 1).await;
        let woken = timeout(GENEROUS, wakeups.wait_for(&["mail".to_owned()])).await.expect("a wake-up");
        assert!(woken);
    }

    #[tokio::test]
    async fn a_job_enqueued_in_a_transaction_notifies_when_the_transaction_commits() {
        let (storage, _guard) = common::storage().await;
        let mut listener = sqlx::postgres::PgListener::connect(&common::url()).await.expect("listener");
        listener.listen(storage.channel()).await.expect("listen");

        let mut tx = storage.pool().begin().await.expect("begin");
        storage.enqueue_in_tx(&mut tx, vec![job("in-tx")]).await.expect("enqueue in tx");
        // An enqueue committed meanwhile is notified first: the transaction's job is
        // not notified before its commit.
        enqueue(&storage, "marker", 1).await;
        let first = timeout(GENEROUS, listener.recv()).await.expect("a notification").expect("recv");
        assert_eq!(first.payload(), "marker");
        tx.commit().await.expect("commit");
        let next = timeout(GENEROUS, listener.recv()).await.expect("a notification").expect("recv");
        assert_eq!(next.payload(), "in-tx");
    }

    #[tokio::test]
    async fn a_subscriber_is_woken_when_jobs_are_enqueued() {
        let (storage, _guard) = common::storage().await;
        let mut wakeups = storage.subscribe().await.expect("subscribe");
        enqueue(&storage, "mail", 3).await;
        let woken = timeout(GENEROUS, wakeups.wait_for(&["mail".to_owned()])).await.expect("a wake-up");
        assert!(woken);
    }

    #[tokio::test]
    async fn a_scheduled_job_sends_no_notification_until_it_is_promoted() {
        let (storage, _guard) = common::storage().await;
        let mut listener = sqlx::postgres::PgListener::connect(&common::url()).await.expect("listener");
        listener.listen(storage.channel()).await.expect("listen");

        let later = NewJob::new("test_job", json!({})).queue("later").run_at(RunAt::In(Duration::from_secs(60)));
        storage.enqueue(EnqueueParams::new(vec![later])).await.expect("enqueue scheduled");
        enqueue(&storage, "marker", 2).await;
        let first = timeout(GENEROUS, listener.recv()).await.expect("a notification").expect("recv");
        assert_eq!(first.payload(), "marker", "the scheduled job notified nobody; the batch of two notified once");

        let promoted =
            storage.promote_due(Some(chrono::Utc::now() + chrono::Duration::minutes(2))).await.expect("promote");
        assert_eq!(promoted, 1);
        let next = timeout(GENEROUS, listener.recv()).await.expect("a notification").expect("recv");
        assert_eq!(next.payload(), "later");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listener_listens_again_after_its_connection_is_killed() {
        let (storage, _guard) = common::storage().await;
        let mut wakeups = storage.subscribe().await.expect("subscribe");
        let admin = common::pool(1).await;
        let killed: Vec<bool> = sqlx::query_scalar(
            r#"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = format('LISTEN "%s"', $1::text)"#,
        )
        .bind(storage.channel())
        .fetch_all(&admin)
        .await
        .expect("terminate the listener");
        assert_eq!(killed, vec![true], "exactly one LISTEN connection was killed");

        // Notifications sent while the listener reconnects are lost (the workers' poll
        // covers that): keep enqueueing until one gets through. The enqueues go through
        // another handle, which does not wake this storage's subscribers directly.
        let producer = other_handle(&storage).await;
        let woken = timeout(GENEROUS, async {
            loop {
                enqueue(&producer, "mail", 1).await;
                if let Ok(woken) = timeout(Duration::from_millis(250), wakeups.wait_for(&["mail".to_owned()])).await {
                    return woken;
                }
            }
        })
        .await
        .expect("a wake-up after the reconnection");
        assert!(woken);
    }

    #[tokio::test]
    async fn subscribers_learn_that_the_storage_is_gone_when_it_is_dropped() {
        let (storage, _guard) = common::storage().await;
        let mut wakeups = storage.subscribe().await.expect("subscribe");
        drop(storage);
        let woken = timeout(GENEROUS, wakeups.wait_for(&["mail".to_owned()])).await.expect("the sender closes");
        assert!(!woken);
    }
}

mod data {
    use super::*;

    #[tokio::test]
    async fn a_row_with_an_unknown_state_is_reported_as_corrupt_data() {
        let (storage, _guard) = common::storage().await;
        let id = enqueue(&storage, "default", 1).await[0];
        let jobs = format!("\"{}\".jobs", storage.schema());
        sqlx::query(AssertSqlSafe(format!("ALTER TABLE {jobs} DROP CONSTRAINT jobs_state_check")))
            .execute(storage.pool())
            .await
            .expect("drop check");
        sqlx::query(AssertSqlSafe(format!("UPDATE {jobs} SET state = 'exploded' WHERE id = $1")))
            .bind(id.0)
            .execute(storage.pool())
            .await
            .expect("corrupt the row");
        let error = storage.get(id).await.expect_err("corrupt row");
        assert_eq!(error.kind(), Some(ErrorKind::CorruptData));
        let error = storage.list(ListParams::new()).await.expect_err("corrupt row");
        assert_eq!(error.kind(), Some(ErrorKind::CorruptData));
    }

    #[tokio::test]
    async fn the_stored_form_is_plain_columns_an_operator_can_read() {
        let (storage, _guard) = common::storage().await;
        let new = NewJob::new("mail:send", json!({ "to": "a@b.c" })).queue("mail").priority(3).max_attempts(5);
        let id = storage.enqueue(EnqueueParams::new(vec![new])).await.expect("enqueue").ids[0];
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT kind, args->>'to' AS to, queue, priority, state, attempt, max_attempts, errors::text AS errors FROM \"{}\".jobs WHERE id = $1",
            storage.schema()
        )))
        .bind(id.0)
        .fetch_one(storage.pool())
        .await
        .expect("read the row");
        assert_eq!(row.get::<String, _>("kind"), "mail:send");
        assert_eq!(row.get::<String, _>("to"), "a@b.c");
        assert_eq!(row.get::<String, _>("queue"), "mail");
        assert_eq!(row.get::<i16, _>("priority"), 3);
        assert_eq!(row.get::<String, _>("state"), "available");
        assert_eq!(row.get::<i32, _>("attempt"), 0);
        assert_eq!(row.get::<i32, _>("max_attempts"), 5);
        assert_eq!(row.get::<String, _>("errors"), "[]");
    }

    /// Metadata is a JSON object of strings in `metadata`; a job without any stores NULL
    /// (migration 0007), not an empty object.
    #[tokio::test]
    async fn metadata_is_a_json_object_and_null_when_empty() {
        let (storage, _guard) = common::storage().await;
        let with = job("default").metadata("tenant", "acme").metadata("trace", "a\"b");
        let ids = storage.enqueue(EnqueueParams::new(vec![with, job("default")])).await.expect("enqueue").ids;
        let stored: Vec<Option<serde_json::Value>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT metadata FROM \"{}\".jobs WHERE id = ANY ($1) ORDER BY id",
            storage.schema()
        )))
        .bind(ids.iter().map(|id| id.0).collect::<Vec<_>>())
        .fetch_all(storage.pool())
        .await
        .expect("read the column");
        assert_eq!(stored, vec![Some(json!({ "tenant": "acme", "trace": "a\"b" })), None]);
    }

    /// Metadata written by hand with non-string values still reads (as their JSON
    /// text); a non-object reads as none, so the job still runs and fails no claim.
    #[tokio::test]
    async fn metadata_written_by_hand_is_read_leniently() {
        let (storage, _guard) = common::storage().await;
        let id = enqueue(&storage, "default", 1).await[0];
        let set = |value: serde_json::Value| {
            sqlx::query(AssertSqlSafe(format!("UPDATE \"{}\".jobs SET metadata = $2 WHERE id = $1", storage.schema())))
                .bind(id.0)
                .bind(value)
                .execute(storage.pool())
        };
        set(json!({ "tenant": "acme", "shard": 7 })).await.expect("update");
        let record = storage.get(id).await.expect("get").expect("exists");
        let expected: haul_core::Metadata =
            [("shard", "7"), ("tenant", "acme")].map(|(key, value)| (key.to_owned(), value.to_owned())).into();
        assert_eq!(*record.metadata, expected);
        set(json!(["tenant"])).await.expect("update");
        assert!(storage.get(id).await.expect("get").expect("exists").metadata.is_empty());
        let claimed = storage.claim(ClaimParams::new(["default"], 10)).await.expect("a bad value fails no claim");
        assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), vec![id]);
    }

    #[tokio::test]
    async fn a_failed_attempt_is_recorded_in_the_errors_column_and_read_back() {
        let (storage, _guard) = common::storage().await;
        let id = enqueue(&storage, "default", 1).await[0];
        let claimed = storage.claim(ClaimParams::new(["default"], 1)).await.expect("claim");
        let claim = claimed[0].claim().expect("a claim");
        let outcome = JobOutcome::Failed { error: "boom".to_owned(), retry_in: Duration::from_secs(10) };
        let report = storage.report(ReportParams::new(vec![Report { claim, outcome }])).await.expect("report");
        assert_eq!(report.applied, vec![claim]);
        let record = storage.get(id).await.expect("get").expect("exists");
        assert_eq!(record.state, JobState::Retryable);
        assert_eq!(record.errors.len(), 1);
        assert_eq!(record.errors[0].attempt, 1);
        assert_eq!(record.errors[0].message, "boom");
        assert_eq!(record.lease_token, None);
    }
}

mod unique {
    use std::sync::Arc;

    use haul_core::Unique;
    use tokio::sync::Barrier;

    use super::*;

    async fn stored_jobs(storage: &PostgresStorage, schema: &str) -> i64 {
        sqlx::query(AssertSqlSafe(format!("SELECT count(*) AS n FROM \"{schema}\".jobs")))
            .fetch_one(storage.pool())
            .await
            .expect("count")
            .get("n")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_enqueues_of_one_unique_key_store_one_job_and_all_get_its_id() {
        let (storage, guard) = common::storage().await;
        let barrier = Arc::new(Barrier::new(8));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (storage, barrier) = (storage.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let job = job("default").unique(Unique::new("invoice:42"));
                storage.enqueue(EnqueueParams::new(vec![job])).await.expect("enqueue")
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(timeout(GENEROUS, task).await.expect("enqueue finishes").expect("task"));
        }
        assert_eq!(stored_jobs(&storage, &guard.schema).await, 1);
        let ids: HashSet<_> = outcomes.iter().flat_map(|outcome| outcome.ids.iter().copied()).collect();
        assert_eq!(ids.len(), 1, "every enqueue names the one stored job: {outcomes:?}");
        assert_eq!(outcomes.iter().filter(|outcome| outcome.duplicates.is_empty()).count(), 1, "{outcomes:?}");
    }

    /// Whether an enqueue waits for an advisory lock slot of the storage's schema (the
    /// schema is the test's own, so only its enqueues take these locks).
    async fn waits_for_a_lock_slot(storage: &PostgresStorage) -> bool {
        sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND objsubid = 2 AND classid = to_regclass(format('%I.jobs', $1::text))::oid) AS waiting",
        )
        .bind(storage.schema())
        .fetch_one(storage.pool())
        .await
        .expect("pg_locks")
        .get("waiting")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_enqueue_racing_an_uncommitted_unique_job_waits_and_gets_its_id_once_it_commits() {
        let (storage, guard) = common::storage().await;
        let key = guard.schema.clone();
        let mut tx = storage.pool().begin().await.expect("begin");
        let first = storage
            .enqueue_in_tx(&mut tx, vec![job("default").unique(Unique::new(&key))])
            .await
            .expect("enqueue in tx")
            .ids;
        let racer = {
            let (storage, key) = (storage.clone(), key.clone());
            tokio::spawn(async move {
                storage.enqueue(EnqueueParams::new(vec![job("default").unique(Unique::new(key))])).await
            })
        };
        timeout(GENEROUS, async {
            while !racer.is_finished() && !waits_for_a_lock_slot(&storage).await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the racer waits or finishes");
        assert!(!racer.is_finished(), "the racer must wait for the uncommitted job's transaction");
        tx.commit().await.expect("commit");
        let outcome = timeout(GENEROUS, racer).await.expect("racer finishes").expect("task").expect("enqueue");
        assert_eq!(outcome.ids, first);
        assert_eq!(outcome.duplicates, first);
        assert_eq!(stored_jobs(&storage, &guard.schema).await, 1);
    }

    #[tokio::test]
    async fn a_unique_job_of_a_rolled_back_transaction_does_not_block_its_key() {
        let (storage, _guard) = common::storage().await;
        let mut tx = storage.pool().begin().await.expect("begin");
        let rolled_back = storage
            .enqueue_in_tx(&mut tx, vec![job("default").unique(Unique::new("k"))])
            .await
            .expect("enqueue in tx")
            .ids;
        tx.rollback().await.expect("rollback");
        let outcome =
            storage.enqueue(EnqueueParams::new(vec![job("default").unique(Unique::new("k"))])).await.expect("enqueue");
        assert!(outcome.duplicates.is_empty(), "{outcome:?}");
        assert_ne!(outcome.ids, rolled_back);
        assert_eq!(storage.get(rolled_back[0]).await.expect("get"), None);
        let stored = storage.get(outcome.ids[0]).await.expect("get").expect("stored");
        assert_eq!(stored.unique_key.as_deref(), Some("k"));
    }

    #[tokio::test]
    async fn a_batch_checks_each_job_against_stored_jobs_and_its_earlier_jobs() {
        let (storage, guard) = common::storage().await;
        let stored = storage
            .enqueue(EnqueueParams::new(vec![job("default").unique(Unique::new("a"))]))
            .await
            .expect("enqueue")
            .ids[0];
        let fresh = job("default").unique(Unique::new("b"));
        let fresh_id = fresh.id;
        let batch = vec![
            job("default").unique(Unique::new("a")),
            fresh,
            job("default"),
            job("default").unique(Unique::new("b")),
        ];
        let plain_id = batch[2].id;
        let outcome = storage.enqueue(EnqueueParams::new(batch)).await.expect("enqueue");
        assert_eq!(outcome.ids, vec![stored, fresh_id, plain_id, fresh_id]);
        assert_eq!(outcome.duplicates, vec![stored, fresh_id]);
        assert_eq!(stored_jobs(&storage, &guard.schema).await, 3);
    }
}
