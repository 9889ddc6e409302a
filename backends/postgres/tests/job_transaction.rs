//! The job-scoped transaction against a real server (`HAUL_TEST_POSTGRES_URL`): a
//! handler's writes and its job's completion commit together, roll back together, and
//! a lost lease keeps both from being stored.

mod common;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use haul::{StateMap, WorkerBuilder, prelude::*};
use haul_core::{ClaimParams, Error, JobOutcome, ReportOutcome, ReportParams};
use haul_postgres::PostgresStorage;
use haul_test_support::{Hooked, StorageHooks};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot};

use common::GENEROUS;

/// A lease no test outlives, so no heartbeat runs during a test.
const LONG_LEASE: Duration = Duration::from_secs(3600);

/// Every outcome the worker wrote, and those storage rejected.
#[derive(Clone, Default)]
struct Reports {
    written: Arc<Mutex<Vec<(JobId, JobOutcome)>>>,
    rejected: Arc<Mutex<Vec<JobId>>>,
}

impl Reports {
    fn written(&self) -> Vec<(JobId, JobOutcome)> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn rejected(&self) -> Vec<JobId> {
        self.rejected.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The PostgreSQL storage, recording the outcomes the worker reports through it.
#[derive(Clone)]
struct Recording {
    storage: PostgresStorage,
    reports: Reports,
}

#[async_trait]
impl StorageHooks for Recording {
    type Inner = PostgresStorage;
    fn inner(&self) -> &PostgresStorage {
        &self.storage
    }
    async fn report(&self, params: ReportParams) -> haul::Result<ReportOutcome> {
        let written: Vec<_> = params.reports.iter().map(|report| (report.claim.id, report.outcome.clone())).collect();
        let outcome = self.storage.report(params).await?;
        self.reports.written.lock().unwrap_or_else(PoisonError::into_inner).extend(written);
        self.reports
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(outcome.rejected.iter().map(|claim| claim.id));
        Ok(outcome)
    }
}

/// Tells the test that the handler is about to return.
struct Done {
    tx: mpsc::UnboundedSender<()>,
}

/// Steps of the lost-lease handler: it says when its write is made, waits for the
/// test to take its lease away, and hands back what its commit returned.
struct Steps {
    written: mpsc::UnboundedSender<()>,
    go: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    committed: mpsc::UnboundedSender<haul::Result<()>>,
}

fn insert_note(table: &str) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(AssertSqlSafe(format!("INSERT INTO {table} (job, note) VALUES ($1, $2)")))
}

#[haul::job(name = "job_tx_commit", max_attempts = 3)]
async fn write_and_commit(
    ctx: &JobContext,
    storage: State<PostgresStorage>,
    done: State<Done>,
    table: String,
    note: String,
) -> Result<(), JobError> {
    let mut tx = storage.begin_job_transaction(ctx).await?;
    insert_note(&table).bind(ctx.id().0).bind(note).execute(&mut *tx).await?;
    tx.commit().await?;
    let _ = done.tx.send(());
    Ok(())
}

#[haul::job(name = "job_tx_fail", max_attempts = 3, backoff = RetryPolicy::fixed(Duration::from_secs(3600)))]
async fn write_and_fail(
    ctx: &JobContext,
    storage: State<PostgresStorage>,
    done: State<Done>,
    table: String,
) -> Result<(), JobError> {
    let mut tx = storage.begin_job_transaction(ctx).await?;
    insert_note(&table).bind(ctx.id().0).bind("never kept").execute(&mut *tx).await?;
    let _ = done.tx.send(());
    Err(JobError::fail("refused after writing"))
}

#[haul::job(name = "job_tx_lease_lost", max_attempts = 3, backoff = RetryPolicy::fixed(Duration::from_secs(3600)))]
async fn write_then_commit_late(
    ctx: &JobContext,
    storage: State<PostgresStorage>,
    steps: State<Steps>,
    table: String,
) -> Result<(), JobError> {
    let mut tx = storage.begin_job_transaction(ctx).await?;
    insert_note(&table).bind(ctx.id().0).bind("too late").execute(&mut *tx).await?;
    let _ = steps.written.send(());
    let go = steps.go.lock().await.take();
    if let Some(go) = go {
        let _ = go.await;
    }
    let committed = tx.commit().await;
    let failed = committed.is_err();
    let _ = steps.committed.send(committed);
    if failed { Err(JobError::fail("the commit was fenced off")) } else { Ok(()) }
}

/// A table for the handlers' writes, in the test's schema.
async fn notes_table(storage: &PostgresStorage) -> String {
    let table = format!("\"{}\".notes", storage.schema());
    sqlx::query(AssertSqlSafe(format!("CREATE TABLE {table} (job uuid PRIMARY KEY, note text NOT NULL)")))
        .execute(storage.pool())
        .await
        .expect("create the notes table");
    table
}

async fn notes_of(storage: &PostgresStorage, table: &str, id: JobId) -> Vec<String> {
    sqlx::query(AssertSqlSafe(format!("SELECT note FROM {table} WHERE job = $1")))
        .bind(id.0)
        .fetch_all(storage.pool())
        .await
        .expect("read notes")
        .iter()
        .map(|row| row.get("note"))
        .collect()
}

/// A worker on the default queue, which every job of this file uses, so it is given
/// every state they take (a worker missing one fails at start): placeholders for
/// `Done` and `Steps`, which a test replaces with the one it watches.
fn worker(storage: &PostgresStorage, reports: &Reports) -> WorkerBuilder {
    let recording = Hooked::new(Recording { storage: storage.clone(), reports: reports.clone() });
    let steps = Steps {
        written: mpsc::unbounded_channel().0,
        go: tokio::sync::Mutex::new(None),
        committed: mpsc::unbounded_channel().0,
    };
    Worker::builder(recording)
        .worker_id("worker-a")
        .concurrency(1)
        .lease(LONG_LEASE)
        .poll_interval(Duration::from_millis(50))
        .state(storage.clone())
        .state(Done { tx: mpsc::unbounded_channel().0 })
        .state(steps)
}

async fn job(storage: &PostgresStorage, id: JobId) -> JobRecord {
    storage.get(id).await.expect("get").expect("the job exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_job_transaction_stores_the_write_and_completes_the_job_without_a_report() {
    let (storage, _guard) = common::storage().await;
    let table = notes_table(&storage).await;
    let id = Queue::new(storage.clone()).enqueue(WriteAndCommit::new(table.clone(), "hello")).await.expect("enqueue");

    let reports = Reports::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let run = worker(&storage, &reports).state(Done { tx: done_tx }).build().run_until(async move {
        done_rx.recv().await;
    });
    tokio::time::timeout(GENEROUS, run).await.expect("the job ran").expect("the worker ran");

    assert_eq!(notes_of(&storage, &table, id).await, vec!["hello".to_owned()]);
    let record = job(&storage, id).await;
    assert_eq!(record.state, JobState::Completed);
    assert_eq!(record.attempt, 1);
    assert!(record.errors.is_empty(), "{:?}", record.errors);
    assert!(record.finished_at.is_some());
    assert_eq!(record.lease_token, None);
    assert!(reports.written().is_empty(), "the worker reported {:?}", reports.written());
    assert!(reports.rejected().is_empty());
}

/// A job completed by its handler's committed transaction gives `Started` then
/// `Completed`, once: the worker publishes the completion the commit stored, although it
/// writes no outcome of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_job_transaction_gives_started_then_completed_once() {
    let (storage, _guard) = common::storage().await;
    let table = notes_table(&storage).await;
    let id = Queue::new(storage.clone()).enqueue(WriteAndCommit::new(table.clone(), "evented")).await.expect("enqueue");

    let reports = Reports::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let worker = worker(&storage, &reports).state(Done { tx: done_tx }).build();
    let mut events = worker.subscribe();
    let run = worker.run_until(async move {
        done_rx.recv().await;
    });
    tokio::time::timeout(GENEROUS, run).await.expect("the job ran").expect("the worker ran");
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(GENEROUS, events.recv()).await.expect("the subscription ends") {
        seen.push(event);
    }

    assert_eq!(job(&storage, id).await.state, JobState::Completed);
    let labels: Vec<&str> = seen.iter().map(|event| event.what.label()).collect();
    assert_eq!(labels, vec!["started", "completed"], "{seen:#?}");
    assert!(seen.iter().all(|event| event.id == id && event.attempt == 1), "{seen:#?}");
    assert!(matches!(seen[1].what, haul::JobEventKind::Completed { .. }), "{seen:#?}");
    assert!(reports.written().is_empty(), "the worker reported {:?}", reports.written());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_rolls_back_its_writes_and_the_job_is_retried() {
    let (storage, _guard) = common::storage().await;
    let table = notes_table(&storage).await;
    let id = Queue::new(storage.clone()).enqueue(WriteAndFail::new(table.clone())).await.expect("enqueue");

    let reports = Reports::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let run = worker(&storage, &reports).state(Done { tx: done_tx }).build().run_until(async move {
        done_rx.recv().await;
    });
    tokio::time::timeout(GENEROUS, run).await.expect("the job ran").expect("the worker ran");

    assert!(notes_of(&storage, &table, id).await.is_empty());
    let record = job(&storage, id).await;
    assert_eq!(record.state, JobState::Retryable);
    assert_eq!(record.attempt, 1);
    assert_eq!(record.errors.len(), 1);
    assert_eq!(record.errors[0].message, "refused after writing");
    let written = reports.written();
    assert!(
        matches!(written.as_slice(), [(written_id, JobOutcome::Failed { .. })] if *written_id == id),
        "{written:?}"
    );
    assert!(reports.rejected().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_the_lease_was_lost_is_fenced_off_and_keeps_nothing() {
    let (storage, _guard) = common::storage().await;
    let table = notes_table(&storage).await;
    let id = Queue::new(storage.clone()).enqueue(WriteThenCommitLate::new(table.clone())).await.expect("enqueue");

    let reports = Reports::default();
    let (written_tx, mut written_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = oneshot::channel();
    let (committed_tx, mut committed_rx) = mpsc::unbounded_channel();
    let steps = Steps { written: written_tx, go: tokio::sync::Mutex::new(Some(go_rx)), committed: committed_tx };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // Not the leader: its maintenance would rescue the job on its own, and a rescue that
    // holds the row when this test rescues makes the test's claim find nothing.
    let run =
        tokio::spawn(worker(&storage, &reports).leader_eligible(false).state(steps).build().run_until(async move {
            let _ = stop_rx.await;
        }));

    tokio::time::timeout(GENEROUS, written_rx.recv()).await.expect("the handler wrote");
    let first = job(&storage, id).await;
    // The lease runs out (the worker stalled, say), the job is rescued and someone else
    // claims it.
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{}\".jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        storage.schema()
    )))
    .bind(id.0)
    .execute(storage.pool())
    .await
    .expect("expire the lease");
    storage.rescue_expired(None).await.expect("rescue");
    let claimed = storage.claim(ClaimParams::new(["default"], 1).worker_id("worker-b")).await.expect("claim");
    assert_eq!(claimed.iter().map(|record| record.id).collect::<Vec<_>>(), vec![id]);
    let second = claimed[0].claim().expect("a claim");
    assert_ne!(first.lease_token, Some(second.token));

    go_tx.send(()).expect("the handler waits");
    let committed = tokio::time::timeout(GENEROUS, committed_rx.recv()).await.expect("the handler committed");
    assert!(matches!(committed, Some(Err(Error::LeaseLost(lost))) if lost == id), "{committed:?}");
    stop_tx.send(()).expect("the worker runs");
    tokio::time::timeout(GENEROUS, run).await.expect("the worker stopped").expect("no panic").expect("the worker ran");

    assert!(notes_of(&storage, &table, id).await.is_empty());
    let record = job(&storage, id).await;
    assert_eq!(record.state, JobState::Running);
    assert_eq!(record.attempt, 2);
    assert_eq!(record.lease_token, Some(second.token));
    assert_eq!(record.claimed_by.as_deref(), Some("worker-b"));
    // The first worker's failure was fenced off too.
    assert_eq!(reports.rejected(), vec![id]);
}

#[tokio::test]
async fn a_job_transaction_outside_any_claim_cannot_commit() {
    let (storage, _guard) = common::storage().await;
    let table = notes_table(&storage).await;
    let ctx = JobContext::for_test(StateMap::new());
    let mut tx = storage.begin_job_transaction(&ctx).await.expect("begin");
    insert_note(&table).bind(ctx.id().0).bind("orphan").execute(&mut *tx).await.expect("insert");
    let committed = tx.commit().await;
    assert!(matches!(committed, Err(Error::LeaseLost(lost)) if lost == ctx.id()), "{committed:?}");
    assert!(!ctx.is_marked_completed());
    assert!(notes_of(&storage, &table, ctx.id()).await.is_empty());
}
