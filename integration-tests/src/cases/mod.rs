//! The cases of the suite, one module per area, and the fixtures they share.
//!
//! Every case is a plain `pub async fn` taking a fresh [`TestStorage`] and checking
//! one behaviour; [`conformance_suite!`](crate::conformance_suite) turns each into a
//! test per backend. Storage cases pass an explicit `now` (a fixed base time plus an
//! offset, see [`at`]) to every time-dependent call, so they move the clock instead of
//! sleeping. Worker cases run the real runtime and wait for storage states with a
//! generous deadline, never asserting elapsed time.
//!
//! Panics are how a case fails, so the fixtures `expect` freely.

pub mod admin;
pub mod admin_actions;
pub mod bad_input;
pub mod cancel;
pub mod claim;
pub mod cluster;
pub mod concurrency;
pub mod enqueue;
pub mod events;
pub mod failure;
pub mod jobs;
pub mod lease;
pub mod limits;
pub mod metadata;
pub mod middleware;
pub mod periodic;
pub mod rate_limits;
pub mod retention;
pub mod schedule;
pub mod setup;
pub mod testing;
pub mod throughput;
pub mod unique;
pub mod wakeup;
pub mod worker;

use std::{future::Future, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use haul::{
    Claim, JobId, JobOutcome, JobRecord, JobState, NewJob, RunAt,
    storage::{ClaimParams, EnqueueParams, Report, ReportOutcome, ReportParams},
};

pub use crate::harness::TestStorage;

/// A point in time, as storages take and return it.
pub type Timestamp = DateTime<Utc>;

/// The kind name of jobs enqueued straight into storage (never run by a worker).
pub const KIND: &str = "haul_tests.plain";

/// The lease [`claim`] asks for.
pub const LEASE: Duration = Duration::from_secs(30);

/// The worker id [`claim`] records.
pub const WORKER: &str = "worker-1";

/// How long cases wait for something asynchronous (a worker finishing, a wake-up)
/// before failing. Generous: it bounds a failure, never a success.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The fixed base time of storage cases: 2030-01-01T00:00:00Z, on a whole second so
/// every backend stores it exactly.
pub fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("2030-01-01 is a valid date")
}

/// The base time plus `secs` seconds (negative: before it).
pub fn at(secs: i64) -> Timestamp {
    t0() + chrono::Duration::seconds(secs)
}

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A plain job of [`KIND`] on `queue`, due now, with 20 attempts.
pub fn job(queue: &str) -> NewJob {
    NewJob::new(KIND, serde_json::json!({ "n": 1 })).queue(queue)
}

/// `n` ids in increasing order (the order `list` and claim ties use).
pub fn ordered_ids(n: usize) -> Vec<JobId> {
    let mut ids: Vec<JobId> = (0..n).map(|_| JobId::new()).collect();
    ids.sort();
    ids
}

/// Enqueues `jobs` in one batch at `now` and returns their ids.
pub async fn enqueue(storage: &TestStorage, jobs: Vec<NewJob>, now: Timestamp) -> Vec<JobId> {
    let count = jobs.len();
    let ids = storage.enqueue(EnqueueParams::new(jobs).now(now)).await.expect("enqueue succeeds").ids;
    assert_eq!(ids.len(), count, "enqueue returns one id per job");
    ids
}

/// Enqueues one job at `now` and returns its id.
pub async fn enqueue_one(storage: &TestStorage, job: NewJob, now: Timestamp) -> JobId {
    enqueue(storage, vec![job], now).await[0]
}

/// Claims up to `limit` jobs from `queues` at `now`, with a [`LEASE`] lease, as [`WORKER`].
pub async fn claim(storage: &TestStorage, queues: &[&str], limit: usize, now: Timestamp) -> Vec<JobRecord> {
    claim_as(storage, queues, limit, now, WORKER).await
}

/// Claims up to `limit` jobs from `queues` at `now` as `worker`.
pub async fn claim_as(
    storage: &TestStorage,
    queues: &[&str],
    limit: usize,
    now: Timestamp,
    worker: &str,
) -> Vec<JobRecord> {
    let params = ClaimParams::new(queues.iter().copied(), limit).lease(LEASE).worker_id(worker).now(now);
    storage.claim(params).await.expect("claim succeeds")
}

/// Claims from `queue` at `now` and checks that exactly the job `id` came back.
pub async fn claim_only(storage: &TestStorage, queue: &str, id: JobId, now: Timestamp) -> JobRecord {
    let mut claimed = claim(storage, &[queue], 10, now).await;
    assert_eq!(ids_of(&claimed), vec![id], "exactly this job is claimed");
    claimed.remove(0)
}

/// The claim a holder presents for a running job.
pub fn claim_of(record: &JobRecord) -> Claim {
    record.claim().expect("a claimed job carries a lease token")
}

/// Reports one outcome at `now`.
pub async fn report(storage: &TestStorage, claim: Claim, outcome: JobOutcome, now: Timestamp) -> ReportOutcome {
    report_all(storage, vec![Report { claim, outcome }], now).await
}

/// Reports a batch of outcomes at `now`.
pub async fn report_all(storage: &TestStorage, reports: Vec<Report>, now: Timestamp) -> ReportOutcome {
    storage.report(ReportParams::new(reports).now(now)).await.expect("report succeeds")
}

/// Reports one outcome at `now` and checks it was applied.
pub async fn report_applied(storage: &TestStorage, claim: Claim, outcome: JobOutcome, now: Timestamp) {
    let outcome = report(storage, claim, outcome, now).await;
    assert_eq!(outcome.applied, vec![claim], "the outcome is applied");
    assert!(outcome.rejected.is_empty(), "nothing is rejected: {outcome:?}");
}

/// A failed attempt with `error`, retried after `retry_in`.
pub fn failed(error: &str, retry_in: Duration) -> JobOutcome {
    JobOutcome::Failed { error: error.to_owned(), retry_in }
}

/// How many jobs are stored, in every queue and state.
pub async fn total_jobs(storage: &TestStorage) -> u64 {
    storage.counts().await.expect("counts succeed").iter().flat_map(|counts| counts.states.values()).sum()
}

/// The stored job `id`, which must exist.
pub async fn get(storage: &TestStorage, id: JobId) -> JobRecord {
    storage.get(id).await.expect("get succeeds").unwrap_or_else(|| panic!("job {id} exists"))
}

/// The state of the stored job `id`.
pub async fn state_of(storage: &TestStorage, id: JobId) -> JobState {
    get(storage, id).await.state
}

/// The ids of `records`, in their order.
pub fn ids_of(records: &[JobRecord]) -> Vec<JobId> {
    records.iter().map(|record| record.id).collect()
}

/// The ids of `records`, sorted.
pub fn sorted_ids_of(records: &[JobRecord]) -> Vec<JobId> {
    let mut ids = ids_of(records);
    ids.sort();
    ids
}

/// Enqueues one job at `now` on `queue` and claims it at `now`.
pub async fn running_job(storage: &TestStorage, job: NewJob, now: Timestamp) -> JobRecord {
    let queue = job.queue.clone();
    let id = enqueue_one(storage, job, now).await;
    claim_only(storage, &queue, id, now).await
}

/// Two claims of one job in queue `queue`: it is claimed at `at(0)`, rescued at
/// `at(30)` once its lease expired, and claimed again at `at(31)`. Returns the job's id,
/// its old (rescued) claim and its current one.
pub async fn old_and_current_claims(storage: &TestStorage, queue: &str) -> (JobId, Claim, Claim) {
    let stale = running_job(storage, job(queue), at(0)).await;
    storage.rescue_expired(Some(at(30))).await.expect("rescue succeeds");
    let current = claim_only(storage, queue, stale.id, at(31)).await;
    (stale.id, claim_of(&stale), claim_of(&current))
}

/// A job due at `run_at` rather than now.
pub fn job_at(queue: &str, run_at: Timestamp) -> NewJob {
    job(queue).run_at(RunAt::At(run_at))
}

/// Polls `check` until it returns `Some`, failing after [`PATIENCE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(PATIENCE, what, check).await
}

/// Polls `check` until it returns `Some`, failing after `patience` with `what`.
pub async fn eventually_within<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {patience:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
