//! The admin workload: the operators' calls (`haul jobs list`'s [`Admin::list`], the other
//! [`Admin`] reads) and the dashboard's pages (`haul-web`, requested in-process with
//! `tower::ServiceExt::oneshot`), timed on a store of many jobs (`--admin-jobs`, a million
//! when the workload is asked for by name).
//!
//! Seeding goes through the [`Storage`] API only: enqueues of 5,000 jobs, four calls in
//! flight, over four queues and eight kinds; then, per queue, claims of 1,000 and one report
//! per claim give the jobs destined to finish their state (about 1% discarded, 4% completed,
//! 1% cancelled, 1% retryable, 0.1% left running under a long lease); 5% are scheduled an
//! hour to a day ahead and the rest stay available. The jobs to claim are enqueued due an
//! hour ago, so the claims (priority, then `run_at`, then id order) take exactly them while
//! they are spread over the whole id range. A few worker records, schedules and an hour of
//! throughput samples are stored too. PostgreSQL's jobs table is then vacuumed and analyzed,
//! as autovacuum would on a production server.
//!
//! Each call is made a few times to warm up, then `--admin-reps` times one after the other;
//! the table gives its p50 and p95 and marks those whose p50 is at or above 100 ms.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, http::Request};
use haul::{
    Admin, JobId, JobOutcome, JobRecord, JobState, ListParams, NewJob, RunAt, Storage, ThroughputSample,
    storage::{ClaimParams, EnqueueParams, PeriodicUpdate, Report, ReportParams, WorkerBeat},
};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::{
    BoxError, Figure, Settings,
    backends::{Memory, Postgres, Redis},
    ui::Ui,
    workloads::{Backend, on_fresh},
};

/// The jobs stored when the workload is asked for by name and `--admin-jobs` is not given.
pub(crate) const DEFAULT_JOBS: usize = 1_000_000;
/// The queues the jobs are spread over.
const QUEUES: [&str; 4] = ["q0", "q1", "q2", "q3"];
/// How many kinds the jobs are spread over (`bench.admin.kind0` to `kind7`).
const KINDS: usize = 8;
/// Jobs per enqueue call while seeding.
const ENQUEUE_BATCH: usize = 5_000;
/// Enqueue calls in flight while seeding.
const ENQUEUERS: usize = 4;
/// Jobs per claim while seeding.
const CLAIM_BATCH: usize = 1_000;
/// The page size of the list calls (`haul jobs list`'s default).
const PAGE: usize = 50;
/// Calls made before the timed ones.
const WARMUP: usize = 3;
/// A call whose p50 is at or above this is marked.
const BAR_MS: f64 = 100.0;
/// Seeding slower than this is worth a note.
const SLOW_SEEDING: Duration = Duration::from_secs(180);
/// How many times the PostgreSQL jobs table is vacuumed at most after seeding.
const VACUUM_TRIES: u32 = 3;
/// The lease of the seeding claims: the jobs left running stay so for the whole run.
const LEASE: Duration = Duration::from_secs(6 * 3600);

/// What seeding makes of a job, chosen by its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fate {
    Available,
    Scheduled,
    Running,
    Retryable,
    Completed,
    Cancelled,
    Discarded,
}

impl Fate {
    /// The fate of job number `seq`: per hundred, 1 discarded, 4 completed, 1 cancelled,
    /// 1 retryable, 5 scheduled, the rest available; one in a thousand is left running.
    fn of(seq: usize) -> Self {
        match seq % 100 {
            0 => Self::Discarded,
            1..=4 => Self::Completed,
            5 => Self::Cancelled,
            6 => Self::Retryable,
            7..=11 => Self::Scheduled,
            _ if seq % 1_000 == 50 => Self::Running,
            _ => Self::Available,
        }
    }

    /// Whether seeding claims the job.
    fn claimed(self) -> bool {
        matches!(self, Self::Running | Self::Retryable | Self::Completed | Self::Cancelled | Self::Discarded)
    }
}

/// The queue of job number `seq` (not aligned with its kind or its fate).
fn queue_of(seq: usize) -> &'static str {
    QUEUES[(seq / 7) % QUEUES.len()]
}

/// The kind of job number `seq`.
fn kind_of(seq: usize) -> String {
    format!("bench.admin.kind{}", seq % KINDS)
}

/// Job number `seq`, as seeding enqueues it; `claim_from` is when the claimed ones are due.
fn new_job(seq: usize, claim_from: haul::storage::Timestamp) -> NewJob {
    let account = seq % 9_973;
    let args = serde_json::json!({
        "seq": seq,
        "account_id": account,
        "email": format!("user{account}@example.com"),
        "template": "welcome",
        "locale": "en-GB",
    });
    let fate = Fate::of(seq);
    let job = NewJob::new(kind_of(seq), args).queue(queue_of(seq));
    match fate {
        Fate::Scheduled => job.run_at(RunAt::In(Duration::from_secs(3_600 + (seq as u64 * 37) % 82_800))),
        Fate::Discarded => job.run_at(RunAt::At(claim_from)).max_attempts(1),
        _ if fate.claimed() => job.run_at(RunAt::At(claim_from)),
        _ => job,
    }
}

/// Whether seeding keeps the id of job number `seq`: every tenth (available, completed
/// and the like in their proportions) and the discarded ones of every hundred.
fn kept_id(seq: usize) -> bool {
    seq % 10 == 3 || seq.is_multiple_of(100)
}

/// The outcome seeding reports for a claimed job of `fate` (`None`: left running).
fn outcome(fate: Fate) -> Option<JobOutcome> {
    let failure = || "smtp.example.com:25: connection refused (os error 111)".to_owned();
    match fate {
        Fate::Completed => Some(JobOutcome::Completed),
        Fate::Cancelled => Some(JobOutcome::Cancelled),
        Fate::Discarded => Some(JobOutcome::Failed { error: failure(), retry_in: Duration::from_secs(1) }),
        Fate::Retryable => Some(JobOutcome::Failed { error: failure(), retry_in: Duration::from_secs(3_600) }),
        Fate::Running | Fate::Available | Fate::Scheduled => None,
    }
}

/// What a backend does once the jobs are stored, and where a kept store goes.
pub(crate) trait Prepare: Backend {
    /// Called after seeding, before the calls are timed; returns a note for the table.
    async fn after_seeding(&self, _storage: &Self::Storage) -> Result<Option<String>, BoxError> {
        Ok(None)
    }

    /// A storage that is not deleted at the end of the run (`--admin-keep`), and its name.
    async fn kept(&mut self) -> Result<(Self::Storage, String), BoxError>;
}

impl Prepare for Memory {
    async fn kept(&mut self) -> Result<(haul::MemoryStorage, String), BoxError> {
        Ok((haul::MemoryStorage::new(), "memory (gone with the process)".to_owned()))
    }
}

impl Prepare for Redis {
    async fn kept(&mut self) -> Result<(haul::RedisStorage, String), BoxError> {
        let storage = self.fresh().await?;
        let prefix = storage.prefix().to_owned();
        Ok((storage, format!("redis prefix {prefix} (purge it yourself)")))
    }
}

impl Prepare for Postgres {
    /// `VACUUM (ANALYZE)` of the jobs table: the server's autovacuum may be off (it is on
    /// the project's test server), and a production server's would have run by now. A
    /// snapshot held elsewhere on the server keeps the vacuum from marking pages
    /// all-visible (index-only scans then read the table); the vacuum is tried again up
    /// to [`VACUUM_TRIES`] times while under 90% of the pages are, and the note tells.
    async fn after_seeding(&self, storage: &haul::PostgresStorage) -> Result<Option<String>, BoxError> {
        let started = Instant::now();
        let table = format!("\"{}\".jobs", storage.schema());
        let mut tries = 0;
        let (pages, visible) = loop {
            tries += 1;
            sqlx::query(AssertSqlSafe(format!("VACUUM (ANALYZE) {table}"))).execute(self.admin()).await?;
            let (pages, visible): (i32, i32) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT relpages, relallvisible FROM pg_class WHERE oid = '{table}'::regclass"
            )))
            .fetch_one(self.admin())
            .await?;
            if tries >= VACUUM_TRIES || f64::from(visible) >= 0.9 * f64::from(pages) {
                break (pages, visible);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        Ok(Some(format!(
            "VACUUM (ANALYZE) of the jobs table after seeding, as autovacuum would on a production server: {tries} \
             run(s), {:.1} s, {visible} of {pages} pages all-visible",
            started.elapsed().as_secs_f64()
        )))
    }

    async fn kept(&mut self) -> Result<(haul::PostgresStorage, String), BoxError> {
        let schema = format!("haul_bench_{}_admin_kept", std::process::id());
        let config = haul::PostgresConfig::new().schema(schema.clone());
        let storage = haul::PostgresStorage::connect_with(self.url(), config).await?;
        storage.migrate().await?;
        Ok((storage, format!("postgres schema {schema} (drop it yourself)")))
    }
}

/// One timed call.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    /// What was called.
    call: String,
    /// Timed repetitions.
    reps: usize,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
    /// What the last call returned (jobs, records or bytes), to show it did the work.
    returned: String,
    /// Whether the p50 is at or above 100 ms.
    slow: bool,
}

/// The figures of one backend.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Table {
    backend: &'static str,
    jobs: usize,
    /// Seconds the seeding took, enqueue to the last report.
    seed_seconds: f64,
    /// The seeded jobs per state, as `counts` gives them.
    states: Vec<(String, u64)>,
    notes: Vec<String>,
    rows: Vec<Row>,
}

impl Table {
    /// Prints the table.
    pub(crate) fn print(&self) {
        println!(
            "admin on {}: {} jobs stored, seeded in {:.1} s ({:.0} jobs/s)",
            self.backend,
            self.jobs,
            self.seed_seconds,
            self.jobs as f64 / self.seed_seconds.max(f64::EPSILON)
        );
        let states: Vec<String> = self.states.iter().map(|(state, n)| format!("{state} {n}")).collect();
        println!("  states: {}", states.join(", "));
        for note in &self.notes {
            println!("  note: {note}");
        }
        println!("  {:<52} {:>5} {:>9} {:>9} {:>9}  {:<14}", "call", "reps", "p50 ms", "p95 ms", "max ms", "returned");
        for row in &self.rows {
            println!(
                "  {:<52} {:>5} {:>9.2} {:>9.2} {:>9.2}  {:<14}{}",
                row.call,
                row.reps,
                row.p50_ms,
                row.p95_ms,
                row.max_ms,
                row.returned,
                if row.slow { "  <-- p50 >= 100 ms" } else { "" }
            );
        }
        println!();
    }
}

/// The ids the timed calls use.
struct Seeded {
    /// A discarded job (the detail page shows its error).
    discarded: JobId,
    /// The job in the middle of the id order, the cursor of the deep page.
    middle: JobId,
    /// Jobs spread over the id range, `get`'s targets in turn.
    sample: Vec<JobId>,
    elapsed: Duration,
}

/// Seeds a store of `settings.admin_jobs` jobs on `backend`, times the calls and pages on
/// it, and deletes it (unless `settings.admin_keep`).
pub(crate) async fn run<B: Prepare>(
    backend: &mut B,
    settings: &Settings,
    ui: &Ui,
) -> Result<(Figure, Table), BoxError> {
    if settings.admin_keep {
        let (storage, name) = backend.kept().await?;
        let mut measured = measure(backend, &storage, settings, ui).await?;
        measured.1.notes.push(format!("kept: {name}"));
        return Ok(measured);
    }
    on_fresh(backend, async |backend, storage| measure(backend, storage, settings, ui).await).await
}

async fn measure<B: Prepare>(
    backend: &B,
    storage: &B::Storage,
    settings: &Settings,
    ui: &Ui,
) -> Result<(Figure, Table), BoxError> {
    let name = backend.name();
    let jobs = settings.admin_jobs;
    let seeded = seed(name, storage, jobs, ui).await?;
    let mut notes = Vec::new();
    if seeded.elapsed > SLOW_SEEDING {
        notes.push(format!(
            "seeding took {:.0} s, more than {} s",
            seeded.elapsed.as_secs_f64(),
            SLOW_SEEDING.as_secs()
        ));
    }
    notes.extend(backend.after_seeding(storage).await?);
    let counts = storage.counts().await?;
    let mut states: Vec<(String, u64)> = JobState::ALL
        .iter()
        .map(|&state| (state.to_string(), counts.iter().map(|queue| queue.get(state)).sum()))
        .filter(|(_, n)| *n > 0)
        .collect();
    states.sort_by_key(|(_, n)| std::cmp::Reverse(*n));

    let admin: Arc<dyn Admin> = Arc::new(storage.clone());
    let router = haul_web::Dashboard::new(Arc::clone(&admin)).refresh_interval(Duration::ZERO).router();
    let reps = settings.admin_reps;
    let bar = ui.bar(name, "admin calls", reps + WARMUP);
    let mut rows = Vec::new();
    for call in calls(&seeded) {
        bar.counter().store(0, Ordering::Relaxed);
        rows.push(time(&call, reps, bar.counter(), &admin, &router, &seeded).await?);
    }
    bar.clear();

    let label =
        format!("admin seed ({} enqueued, {} claimed)", jobs, (0..jobs).filter(|s| Fate::of(*s).claimed()).count());
    let figure = Figure::new(name, &label, jobs, seeded.elapsed);
    Ok((figure, Table { backend: name, jobs, seed_seconds: seeded.elapsed.as_secs_f64(), states, notes, rows }))
}

/// Enqueues `jobs` jobs, claims and reports those destined to leave `available`, and
/// stores worker records, schedules and throughput samples.
async fn seed<S: Storage + Clone>(name: &str, storage: &S, jobs: usize, ui: &Ui) -> Result<Seeded, BoxError> {
    let started = Instant::now();
    let claim_from = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let bar = ui.bar(name, "admin seed: enqueue", jobs);
    let next_batch = Arc::new(AtomicUsize::new(0));
    let marks = Arc::new(Mutex::new(Vec::<(usize, JobId)>::new()));
    let mut enqueuers = JoinSet::new();
    for _ in 0..ENQUEUERS {
        let (storage, next_batch, marks, counter) =
            (storage.clone(), Arc::clone(&next_batch), Arc::clone(&marks), Arc::clone(bar.counter_arc()));
        enqueuers.spawn(async move {
            loop {
                let first = next_batch.fetch_add(1, Ordering::Relaxed) * ENQUEUE_BATCH;
                if first >= jobs {
                    return Ok::<_, BoxError>(());
                }
                let seqs = first..(first + ENQUEUE_BATCH).min(jobs);
                let batch: Vec<NewJob> = seqs.clone().map(|seq| new_job(seq, claim_from)).collect();
                // Some ids are kept: `get`'s targets, the middle cursor, a discarded job.
                let kept: Vec<(usize, JobId)> =
                    batch.iter().zip(seqs.clone()).filter(|(_, seq)| kept_id(*seq)).map(|(j, s)| (s, j.id)).collect();
                let n = batch.len();
                storage.enqueue(EnqueueParams::new(batch)).await?;
                if let Ok(mut marks) = marks.lock() {
                    marks.extend(kept);
                }
                counter.fetch_add(n, Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = enqueuers.join_next().await {
        joined??;
    }
    bar.finish(jobs, started.elapsed());

    let claimed: Vec<usize> = QUEUES
        .iter()
        .map(|queue| (0..jobs).filter(|&seq| queue_of(seq) == *queue && Fate::of(seq).claimed()).count())
        .collect();
    let bar = ui.bar(name, "admin seed: claim and report", claimed.iter().sum());
    let claim_started = Instant::now();
    let mut claimers = JoinSet::new();
    for (queue, target) in QUEUES.iter().zip(claimed) {
        let (storage, counter) = (storage.clone(), Arc::clone(bar.counter_arc()));
        claimers.spawn(claim_and_report(storage, queue, target, counter));
    }
    while let Some(joined) = claimers.join_next().await {
        joined??;
    }
    let claimed = bar.counter().load(Ordering::Relaxed);
    bar.finish(claimed, claim_started.elapsed());
    operators_records(storage).await?;

    let mut marks = Arc::try_unwrap(marks).map_err(|_| "seeding tasks still hold the ids")?.into_inner()?;
    marks.sort_unstable_by_key(|(seq, _)| *seq);
    let discarded = marks.iter().find(|(seq, _)| Fate::of(*seq) == Fate::Discarded).map(|(_, id)| *id);
    let mut ids: Vec<JobId> = marks.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    let middle = ids.get(ids.len() / 2).copied();
    let (Some(discarded), Some(middle)) = (discarded, middle) else {
        return Err("the admin workload needs at least one job".into());
    };
    // Every 97th kept id: spread over the whole range, in no particular order.
    let sample = (0..ids.len().min(1_000)).map(|i| ids[(i * 97) % ids.len()]).collect();
    Ok(Seeded { discarded, middle, sample, elapsed: started.elapsed() })
}

/// Claims `target` jobs of `queue`, 1,000 at a time, and reports each one's outcome (the
/// jobs destined to stay running are left held).
async fn claim_and_report<S: Storage>(
    storage: S,
    queue: &'static str,
    target: usize,
    counter: Arc<AtomicUsize>,
) -> Result<(), BoxError> {
    let mut done = 0;
    while done < target {
        let params =
            ClaimParams::new([queue], CLAIM_BATCH.min(target - done)).lease(LEASE).worker_id("haul-bench-admin-seed");
        let claimed = storage.claim(params).await?;
        if claimed.is_empty() {
            return Err(format!("{queue}: the claims found {done} of the {target} jobs to claim").into());
        }
        let mut reports = Vec::with_capacity(claimed.len());
        for job in &claimed {
            let fate = fate_of_record(job)?;
            if !fate.claimed() {
                return Err(
                    format!("{queue}: a claim took job {} due now before the jobs due an hour ago", job.id).into()
                );
            }
            if let (Some(claim), Some(outcome)) = (job.claim(), outcome(fate)) {
                reports.push(Report { claim, outcome });
            }
        }
        if !reports.is_empty() {
            let outcome = storage.report(ReportParams::new(reports)).await?;
            if !outcome.rejected.is_empty() {
                return Err(format!("{queue}: {} reports rejected", outcome.rejected.len()).into());
            }
        }
        done += claimed.len();
        counter.fetch_add(claimed.len(), Ordering::Relaxed);
    }
    Ok(())
}

/// The fate of a seeded job, read back from its arguments.
fn fate_of_record(job: &JobRecord) -> Result<Fate, BoxError> {
    let seq = job.args.get("seq").and_then(serde_json::Value::as_u64).ok_or("a seeded job without its seq")?;
    Ok(Fate::of(usize::try_from(seq)?))
}

/// Six live worker records, twelve schedules and an hour of per-minute throughput.
async fn operators_records<S: Storage>(storage: &S) -> Result<(), BoxError> {
    let now = chrono::Utc::now();
    for i in 0..6 {
        let queues = QUEUES.iter().map(|q| (*q).to_owned()).collect();
        let beat = WorkerBeat::new(format!("bench-worker-{i}"), now - chrono::TimeDelta::hours(2), LEASE)
            .process(format!("host-{}", i % 3), 4_000 + i)
            .serving(queues, 32)
            .held(i * 3);
        storage.beat_worker(beat).await?;
    }
    for i in 0..12 {
        let update = PeriodicUpdate::new(format!("bench.report-{i:02}"), format!("{} * * * *", i * 5))
            .last_tick(now - chrono::TimeDelta::minutes(30))
            .next_tick(now + chrono::TimeDelta::minutes(30));
        storage.save_periodic(update).await?;
    }
    let mut samples = Vec::new();
    for minute in 0..60 {
        for (q, queue) in QUEUES.iter().enumerate() {
            let at = now - chrono::TimeDelta::minutes(minute);
            samples.push(ThroughputSample::new(*queue, at, 600 + 10 * q as u64 + minute as u64, minute as u64 % 7));
        }
    }
    storage.record_throughput(samples, None).await?;
    Ok(())
}

/// One timed call: an [`Admin`] call or a dashboard page.
enum Call {
    /// `Admin::list` as `haul jobs list` makes it.
    List(&'static str, ListParams),
    Counts,
    Throughput,
    Get,
    Workers,
    Periodic,
    /// A dashboard page, by its path and query, from a dashboard that has served the
    /// warm-up calls (the pages share its counts snapshot: see haul-web's counts rule).
    Page(String),
    /// The same from a new dashboard each time: the page counts the queues itself, as
    /// the first page after a start or an action does.
    ColdPage(String),
}

/// Every call the table lists, in its order.
fn calls(seeded: &Seeded) -> Vec<Call> {
    let page = || ListParams::new().limit(PAGE);
    vec![
        Call::List("list: first page", page()),
        Call::List("list: state=discarded", page().state(JobState::Discarded)),
        Call::List("list: queue=q1 state=discarded", page().queue("q1").state(JobState::Discarded)),
        Call::List("list: kind=bench.admin.kind3", page().kind(kind_of(3))),
        Call::List("list: state=available after=<middle id>", page().state(JobState::Available).after(seeded.middle)),
        Call::Counts,
        Call::Throughput,
        Call::Get,
        Call::Workers,
        Call::Periodic,
        Call::Page("/".to_owned()),
        Call::ColdPage("/".to_owned()),
        Call::Page("/jobs".to_owned()),
        Call::ColdPage("/jobs".to_owned()),
        Call::Page("/jobs?state=discarded".to_owned()),
        Call::Page("/jobs?queue=q1&state=discarded".to_owned()),
        Call::Page(format!("/jobs/{}", seeded.discarded)),
        Call::Page("/workers".to_owned()),
        Call::Page("/periodic".to_owned()),
    ]
}

impl Call {
    /// The call's name in the table.
    fn label(&self) -> String {
        match self {
            Self::List(label, _) => (*label).to_owned(),
            Self::Counts => "counts".to_owned(),
            Self::Throughput => "throughput(now - 1h)".to_owned(),
            Self::Get => "get (ids spread over the range)".to_owned(),
            Self::Workers => "list_workers".to_owned(),
            Self::Periodic => "list_periodic".to_owned(),
            Self::Page(path) if path.starts_with("/jobs/") => "page GET /jobs/{id} (a discarded job)".to_owned(),
            Self::Page(path) => format!("page GET {path}"),
            Self::ColdPage(path) => format!("page GET {path} (cold: counts the queues)"),
        }
    }

    /// Makes the call once (the `rep`th time); returns what it returned, for the table.
    async fn make(
        &self,
        admin: &Arc<dyn Admin>,
        router: &Router,
        seeded: &Seeded,
        rep: usize,
    ) -> Result<String, BoxError> {
        Ok(match self {
            Self::List(_, params) => format!("{} jobs", admin.list(params.clone()).await?.len()),
            Self::Counts => format!("{} queues", admin.counts().await?.len()),
            Self::Throughput => {
                let since = chrono::Utc::now() - chrono::TimeDelta::hours(1);
                format!("{} samples", admin.throughput(since).await?.len())
            }
            Self::Get => {
                let id = seeded.sample[rep % seeded.sample.len()];
                let found = admin.get(id).await?.ok_or_else(|| format!("job {id} not found"))?;
                format!("1 {}", found.state)
            }
            Self::Workers => format!("{} workers", admin.list_workers(None).await?.len()),
            Self::Periodic => format!("{} schedules", admin.list_periodic().await?.len()),
            Self::Page(path) | Self::ColdPage(path) => {
                let router = match self {
                    Self::ColdPage(_) => {
                        haul_web::Dashboard::new(Arc::clone(admin)).refresh_interval(Duration::ZERO).router()
                    }
                    _ => router.clone(),
                };
                let request = Request::get(path.as_str()).body(Body::empty())?;
                let response = router.oneshot(request).await?;
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
                if !status.is_success() {
                    return Err(format!("GET {path}: {status}: {}", String::from_utf8_lossy(&body)).into());
                }
                format!("{} KB", body.len().div_ceil(1_024))
            }
        })
    }
}

/// Makes `call` [`WARMUP`] times, then `reps` times timed; its p50, p95 and max.
async fn time(
    call: &Call,
    reps: usize,
    counter: &AtomicUsize,
    admin: &Arc<dyn Admin>,
    router: &Router,
    seeded: &Seeded,
) -> Result<Row, BoxError> {
    let mut micros = Vec::with_capacity(reps);
    let mut returned = String::new();
    for rep in 0..WARMUP + reps {
        let started = Instant::now();
        returned = call.make(admin, router, seeded, rep).await?;
        if rep >= WARMUP {
            micros.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let (p50_ms, p95_ms, max_ms) = percentiles(&mut micros);
    Ok(Row { call: call.label(), reps, p50_ms, p95_ms, max_ms, returned, slow: p50_ms >= BAR_MS })
}

/// The p50, p95 and max of `micros` (sorted in place), in milliseconds; zeros when empty.
fn percentiles(micros: &mut [u64]) -> (f64, f64, f64) {
    if micros.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    micros.sort_unstable();
    let at = |q: f64| {
        let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[index] as f64 / 1_000.0
    };
    (at(0.50), at(0.95), at(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_mix_is_the_documented_one() {
        let mut counts = std::collections::HashMap::new();
        for seq in 0..100_000 {
            *counts.entry(Fate::of(seq)).or_insert(0) += 1;
        }
        let share = |fate| f64::from(counts.get(&fate).copied().unwrap_or(0)) / 1_000.0;
        assert_eq!(share(Fate::Discarded), 1.0);
        assert_eq!(share(Fate::Completed), 4.0);
        assert_eq!(share(Fate::Cancelled), 1.0);
        assert_eq!(share(Fate::Retryable), 1.0);
        assert_eq!(share(Fate::Scheduled), 5.0);
        assert_eq!(share(Fate::Running), 0.1);
    }

    #[test]
    fn queues_and_kinds_are_not_aligned_with_fates() {
        let discarded_queues: std::collections::BTreeSet<&str> =
            (0..10_000).filter(|s| Fate::of(*s) == Fate::Discarded).map(queue_of).collect();
        assert_eq!(discarded_queues.len(), QUEUES.len());
        let kinds: std::collections::BTreeSet<String> =
            (0..10_000).filter(|s| queue_of(*s) == "q1").map(kind_of).collect();
        assert_eq!(kinds.len(), KINDS);
    }

    #[test]
    fn percentiles_are_read_from_the_sorted_samples() {
        let mut micros: Vec<u64> = (1..=100).rev().map(|ms| ms * 1_000).collect();
        assert_eq!(percentiles(&mut micros), (50.0, 95.0, 100.0));
    }
}
