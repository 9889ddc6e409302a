//! `haul-bench`: measures haul's backends and prints a table (and JSON with `--json`).
//!
//! ```text
//! cargo run --release -p haul-bench -- --backend all --jobs 20000 --concurrency 32
//! ```
//!
//! The `middleware` workload (memory backend only) compares the memory drain with and
//! without middleware in one run; built with `--features otel` it also measures the drain
//! with OpenTelemetry trace propagation (see `middleware.rs`):
//!
//! ```text
//! cargo run --release -p haul-bench --features otel -- --backend memory --workloads middleware
//! ```
//!
//! The `admin` workload times the operators' calls (`haul jobs list`, the other `Admin`
//! reads) and the dashboard's pages on a store of a million jobs (see `admin.rs`; in the
//! default set, without `--admin-jobs`, it stores `--jobs` jobs instead):
//!
//! ```text
//! cargo run --release -p haul-bench -- --backend all --workloads admin
//! ```
//!
//! The `keyed-limits` workload drains jobs whose limit keys are spread over 1,000 keys
//! in a queue limited to one running job per key, beside the unlimited drain:
//!
//! ```text
//! cargo run --release -p haul-bench -- --backend all --workloads drain,keyed-limits
//! ```
//!
//! PostgreSQL is reached at `HAUL_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); every workload runs in a fresh schema that
//! is dropped at its end. Redis is reached at `HAUL_BENCH_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), each workload under a fresh key prefix that is purged at its end.

/// With the `mimalloc` feature, the bench allocates with mimalloc instead of the
/// system's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod backends;
mod floor;
mod growth;
mod long_tx;
mod middleware;
mod retention;
mod ui;
mod workloads;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// The error type of the harness.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The PostgreSQL URL when `HAUL_BENCH_POSTGRES_URL` is not set.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The Redis URL when `HAUL_BENCH_REDIS_URL` is not set.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Command-line settings.
#[derive(Debug, Parser)]
#[command(about = "Measure haul's throughput and latency on each backend")]
struct Args {
    /// Backend to measure.
    #[arg(long, value_enum, default_value_t = BackendChoice::Memory)]
    backend: BackendChoice,
    /// Jobs per workload.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker concurrency (slots per worker instance).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Prefetch of the second drain figure (0: only the drain at the default, automatic prefetch).
    #[arg(long, default_value_t = 224)]
    prefetch: usize,
    /// Producer rate of the steady-state workload, in jobs per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Duration of the steady-state workload's production, in seconds (at most `--jobs` jobs).
    #[arg(long, default_value_t = 3.0)]
    steady_seconds: f64,
    /// How long the long-transaction workload (PostgreSQL) holds its snapshot, in seconds
    /// (0 skips the workload).
    #[arg(long, default_value_t = 60.0)]
    long_tx_seconds: f64,
    /// How long the long-transaction workload runs before and after the held snapshot, in
    /// seconds (default: the hold's length, at most 10 s).
    #[arg(long)]
    long_tx_phase_seconds: Option<f64>,
    /// Length of each step of the retention workload, in seconds (0 skips the workload); a
    /// step at r jobs/s lasts at most `--jobs` / r seconds, and rates whose step would last
    /// under 5 s (or this, when shorter) are not tried.
    #[arg(long, default_value_t = 10.0)]
    retention_seconds: f64,
    /// Measured rounds of the middleware workload (each runs every variant once; each
    /// variant's figure is the median of its rounds).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    middleware_rounds: u32,
    /// Jobs stored for the admin workload (default: 1,000,000 when `--workloads` names
    /// `admin`, else `--jobs`, so the default set stays quick).
    #[arg(long)]
    admin_jobs: Option<usize>,
    /// Timed repetitions of each call of the admin workload (after 3 untimed ones).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    admin_reps: u32,
    /// Backlog sizes of the growth workload's drains, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000, 1_000_000])]
    growth_sizes: Vec<usize>,
    /// Finished jobs kept in storage during the growth workload's last drain, which drains
    /// the second of `--growth-sizes` (the first if only one is given; 0: no such drain).
    #[arg(long, default_value_t = 1_000_000)]
    growth_history: usize,
    /// Keep the admin workload's store (PostgreSQL schema, Redis prefix) for inspection;
    /// its name is printed, and deleting it is up to you.
    #[arg(long)]
    admin_keep: bool,
    /// Workloads to run, comma-separated (default: all). The floor runs whenever a
    /// workload compared with it runs.
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Option<Vec<Workload>>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One workload of the suite, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// Batched and one-by-one enqueue.
    Enqueue,
    /// Pre-enqueued jobs worked by one worker: with the default prefetch, with `--prefetch`
    /// jobs claimed ahead, and keeping no completed jobs (each completion deletes its job).
    Drain,
    /// The drain's jobs with limit keys spread over 1,000 keys, in a queue limited to one
    /// running job per key; beside the unlimited drain (run for it too), with the ratio.
    KeyedLimits,
    /// Producers at a fixed rate, enqueue-to-start latency.
    Steady,
    /// Drain by 1, 2 and 4 worker instances.
    Scaling,
    /// Steady state around a held snapshot (PostgreSQL).
    LongTx,
    /// Stepped producer rates with a short retention: do the stored finished jobs stay bounded.
    Retention,
    /// The memory drain without middleware, with one and with three pass-through middleware,
    /// and (feature `otel`) under an OpenTelemetry layer with and without trace propagation:
    /// ratios to the first, in one run (memory only).
    Middleware,
    /// The operators' calls and the dashboard's pages on a store of many jobs: p50 and
    /// p95 per call.
    Admin,
    /// Drains of `--growth-sizes` pre-enqueued jobs, and one of the second size (the first
    /// if only one is given) with `--growth-history` finished jobs kept: does throughput
    /// hold as the backlog or the history grows. Runs only when named (it takes minutes
    /// per backend).
    Growth,
}

impl Workload {
    /// The default set: every workload but `growth`.
    const ALL: [Workload; 9] = [
        Workload::Enqueue,
        Workload::Drain,
        Workload::KeyedLimits,
        Workload::Steady,
        Workload::Scaling,
        Workload::LongTx,
        Workload::Retention,
        Workload::Middleware,
        Workload::Admin,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum BackendChoice {
    Memory,
    Postgres,
    Redis,
    All,
}

impl BackendChoice {
    fn includes(self, other: BackendChoice) -> bool {
        self == BackendChoice::All || self == other
    }
}

/// The settings every workload reads.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Settings {
    pub(crate) jobs: usize,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: usize,
    pub(crate) rate: u32,
    pub(crate) steady_seconds: f64,
    /// The held snapshot's duration in the long-transaction workload (0: skipped).
    pub(crate) long_tx_seconds: f64,
    /// The before and after phases' duration in the long-transaction workload.
    pub(crate) long_tx_phase_seconds: Option<f64>,
    /// The length of each step of the retention workload (0: skipped).
    pub(crate) retention_seconds: f64,
    /// The measured rounds of the middleware workload.
    pub(crate) middleware_rounds: usize,
    /// Jobs stored by the admin workload.
    pub(crate) admin_jobs: usize,
    /// Timed repetitions of each call of the admin workload.
    pub(crate) admin_reps: usize,
    /// Whether the admin workload keeps its store.
    pub(crate) admin_keep: bool,
    /// Backlog sizes of the growth workload's drains.
    pub(crate) growth_sizes: Vec<usize>,
    /// Finished jobs kept during the growth workload's last drain.
    pub(crate) growth_history: usize,
    /// The workloads to run.
    pub(crate) workloads: Vec<Workload>,
}

impl Settings {
    /// Whether `workload` is to run.
    pub(crate) fn runs(&self, workload: Workload) -> bool {
        self.workloads.contains(&workload)
    }

    /// Whether the floor is to run: some workload compared with it runs.
    fn runs_floor(&self) -> bool {
        [Workload::Enqueue, Workload::Drain, Workload::KeyedLimits, Workload::Scaling].iter().any(|w| self.runs(*w))
    }
}

/// Which floor figure a haul figure is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FloorOf {
    /// Batched raw inserts.
    Enqueue,
    /// Single-row raw inserts from 32 producers.
    EnqueueOneByOne,
    /// Raw claim + complete by 1,000.
    Drain,
}

/// Enqueue-to-start latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    /// The percentiles of `micros` (sorted in place); `None` when it is empty.
    pub(crate) fn of(micros: &mut [u64]) -> Option<Self> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let index = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
            micros[index] as f64 / 1_000.0
        };
        Some(Self { p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99), max_ms: at(1.0) })
    }
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Figure {
    backend: &'static str,
    workload: String,
    jobs: usize,
    seconds: f64,
    jobs_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    /// Enqueue-to-start latency, from the start of the enqueue call.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
    /// The same, from the return of the enqueue call (the job is committed).
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_after_return: Option<Latency>,
    /// The floor figure this one is compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    compared_with: Option<FloorOf>,
    /// Set on the floor's own figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    floor_of: Option<FloorOf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    floor_jobs_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_floor: Option<f64>,
    /// Long-transaction phases: jobs/s relative to the phase before the held snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_before: Option<f64>,
    /// Jobs/s relative to the baseline measured in the same run: for the middleware
    /// variants, the drain without middleware; for keyed-limits, the unlimited drain; for
    /// growth, the drain of the first size (for the drain with a history kept, the
    /// drain of its own size).
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl Figure {
    pub(crate) fn new(backend: &'static str, workload: &str, jobs: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            backend,
            workload: workload.to_owned(),
            jobs,
            seconds,
            jobs_per_second: jobs as f64 / seconds.max(f64::EPSILON),
            workers: None,
            latency: None,
            latency_after_return: None,
            compared_with: None,
            floor_of: None,
            floor_jobs_per_second: None,
            ratio_to_floor: None,
            ratio_to_before: None,
            ratio_to_baseline: None,
            note: None,
        }
    }

    /// Compares this figure with the floor's `kind` figure of its backend, if it has one.
    pub(crate) fn floor(mut self, kind: FloorOf) -> Self {
        self.compared_with = Some(kind);
        self
    }

    /// Marks this figure as the floor's `kind` figure.
    pub(crate) fn floor_figure(mut self, kind: FloorOf) -> Self {
        self.floor_of = Some(kind);
        self
    }

    pub(crate) fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    pub(crate) fn latency(mut self, latency: Option<Latency>) -> Self {
        self.latency = latency;
        self
    }

    pub(crate) fn latency_after_return(mut self, latency: Option<Latency>) -> Self {
        self.latency_after_return = latency;
        self
    }

    pub(crate) fn ratio_to_before(mut self, ratio: f64) -> Self {
        self.ratio_to_before = Some(ratio);
        self
    }

    pub(crate) fn ratio_to_baseline(mut self, ratio: f64) -> Self {
        self.ratio_to_baseline = Some(ratio);
        self
    }

    /// This figure's jobs/s as a ratio to `baseline_rate`, the jobs/s of the workload
    /// `baseline`, with a note saying so (after `prefix`).
    pub(crate) fn compared_to(self, prefix: &str, baseline: &str, baseline_rate: f64) -> Self {
        let ratio = self.jobs_per_second / baseline_rate.max(f64::EPSILON);
        self.ratio_to_baseline(ratio).note(format!("{prefix}{ratio:.2}x the jobs/s of `{baseline}`"))
    }

    pub(crate) fn note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }
}

/// Fills in the ratios of every figure that has a floor figure on its backend.
fn compare_with_floors(figures: &mut [Figure]) {
    let floors: Vec<(&'static str, FloorOf, f64)> =
        figures.iter().filter_map(|f| f.floor_of.map(|kind| (f.backend, kind, f.jobs_per_second))).collect();
    for figure in figures.iter_mut() {
        let Some(kind) = figure.compared_with else { continue };
        if let Some((_, _, floor)) = floors.iter().find(|(backend, k, _)| *backend == figure.backend && *k == kind) {
            figure.floor_jobs_per_second = Some(*floor);
            figure.ratio_to_floor = Some(figure.jobs_per_second / floor);
        }
    }
}

#[derive(Debug, Serialize)]
struct RunReport<'a> {
    machine: Machine,
    versions: Versions,
    git_commit: String,
    settings: ReportSettings<'a>,
    notes: &'a [String],
    figures: &'a [Figure],
    /// The admin workload's tables, one per backend.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    admin: &'a [admin::Table],
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
    /// `/proc/loadavg` when the run started (other work on the machine skews figures).
    load_at_start: String,
}

#[derive(Debug, Serialize)]
struct Versions {
    haul: &'static str,
    rustc: String,
    /// `SHOW server_version`.
    postgres: Option<String>,
    /// `SELECT version()`.
    postgres_build: Option<String>,
    /// `redis_version` from `INFO server`.
    redis: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReportSettings<'a> {
    backend: BackendChoice,
    #[serde(flatten)]
    workloads: &'a Settings,
    batch: usize,
    producers: usize,
    floor_claimers: usize,
    postgres_url: Option<String>,
    redis_url: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let named = args.workloads.as_ref().is_some_and(|named| named.contains(&Workload::Admin));
    let admin_jobs = args.admin_jobs.unwrap_or(if named { admin::DEFAULT_JOBS } else { args.jobs });
    let load_at_start =
        std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "unknown".to_owned(), |l| l.trim().to_owned());
    let settings = Settings {
        jobs: args.jobs,
        concurrency: args.concurrency,
        prefetch: args.prefetch,
        rate: args.rate,
        steady_seconds: args.steady_seconds,
        long_tx_seconds: args.long_tx_seconds,
        long_tx_phase_seconds: args.long_tx_phase_seconds,
        retention_seconds: args.retention_seconds,
        middleware_rounds: usize::try_from(args.middleware_rounds).unwrap_or(usize::MAX),
        admin_jobs,
        admin_reps: usize::try_from(args.admin_reps).unwrap_or(usize::MAX),
        admin_keep: args.admin_keep,
        growth_sizes: args.growth_sizes.clone(),
        growth_history: args.growth_history,
        workloads: args.workloads.clone().unwrap_or_else(|| Workload::ALL.to_vec()),
    };
    let long_tx_plan = long_tx::Plan::new(args.long_tx_seconds, args.long_tx_phase_seconds)
        .filter(|_| settings.runs(Workload::LongTx));
    let mut retention = retention::Runs::new(
        retention::Plan::new(args.retention_seconds, args.jobs).filter(|_| settings.runs(Workload::Retention)),
    );
    let ui = ui::Ui::new();
    let mut figures = Vec::new();
    let mut admin_tables = Vec::new();
    let mut notes = Vec::new();
    let (mut postgres_version, mut postgres_build, mut redis_version) = (None, None, None);
    let postgres_url = std::env::var("HAUL_BENCH_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let redis_url = std::env::var("HAUL_BENCH_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());

    if args.backend.includes(BackendChoice::Memory) {
        figures.extend(workloads::suite(&mut backends::Memory, &settings, &ui).await?);
        if settings.runs(Workload::Middleware) {
            let (measured, note) = middleware::run(&settings, &ui).await?;
            figures.extend(measured);
            notes.push(note);
        }
        figures.extend(retention.run(&mut backends::Memory, &settings, &ui).await?);
        if settings.runs(Workload::Admin) {
            let (figure, table) = admin::run(&mut backends::Memory, &settings, &ui).await?;
            figures.push(figure);
            admin_tables.push(table);
        }
    }
    if args.backend.includes(BackendChoice::Postgres) {
        let mut pg = backends::Postgres::connect(&postgres_url).await?;
        postgres_version = Some(pg.setting("server_version").await);
        postgres_build = pg.server_version().await.ok();
        notes.push(format!(
            "postgres: autovacuum is {} on this server; the harness runs ANALYZE on the jobs table after \
             pre-enqueueing for each drain (VACUUM (ANALYZE) for a drain with finished jobs kept; fsync {}, synchronous_commit {}; each workload in a fresh schema)",
            pg.setting("autovacuum").await,
            pg.setting("fsync").await,
            pg.setting("synchronous_commit").await,
        ));
        if let Some(plan) = long_tx_plan {
            notes.push(format!(
                "postgres long tx: one worker as in steady, producers at {}/s throughout; {:.0} s before, {:.0} s \
                 while another connection holds a REPEATABLE READ transaction idle after one read of the jobs \
                 table (its snapshot holds back the xmin horizon; rolled back at the end), {:.0} s after; jobs/s \
                 counts the handler starts in each phase, p50/p99 are from the enqueue call's start for the jobs \
                 enqueued in the phase",
                settings.rate,
                plan.phase.as_secs_f64(),
                plan.hold.as_secs_f64(),
                plan.phase.as_secs_f64(),
            ));
        }
        let result = async {
            let mut measured = Vec::new();
            if settings.runs_floor() {
                measured.extend(floor::postgres(&mut pg, settings.jobs, &ui).await?);
            }
            measured.extend(workloads::suite(&mut pg, &settings, &ui).await?);
            if let Some(plan) = long_tx_plan {
                measured.extend(long_tx::run(&mut pg, &settings, plan, &ui).await?);
            }
            measured.extend(retention.run(&mut pg, &settings, &ui).await?);
            let admin =
                if settings.runs(Workload::Admin) { Some(admin::run(&mut pg, &settings, &ui).await?) } else { None };
            Ok::<_, BoxError>((measured, admin))
        }
        .await;
        let cleaned = pg.cleanup().await;
        let (measured, admin) = result?;
        figures.extend(measured);
        if let Some((figure, table)) = admin {
            figures.push(figure);
            admin_tables.push(table);
        }
        cleaned?;
    }
    notes.push(format!(
        "drain and scaling: no-op jobs, pre-enqueued, timed until every job is completed in storage; each worker \
         instance has {} slots and its own storage handle (for postgres its own pool; scaling runs 1, 2 and 4 \
         instances in this process)",
        settings.concurrency
    ));
    if settings.runs(Workload::KeyedLimits) {
        notes.push(format!(
            "keyed limits: the drain's jobs and worker, each job with the limit key key-(i mod {keys}) (so the \
             first {keys} available jobs have {keys} different keys), in a queue whose stored limits are \
             key_concurrency 1 (no queue-wide limit); its note gives its jobs/s over the unlimited drain's on the \
             same backend (the JSON's ratio_to_baseline)",
            keys = workloads::LIMIT_KEYS
        ));
    }
    notes.push(
        "steady: one worker with the default 1 s poll interval (jobs start on wake-ups); p50/p90/p99 are from \
         the start of the enqueue call to the handler's start (the note gives them from the call's return); \
         jobs/s is the achieved rate"
            .to_owned(),
    );
    if args.backend.includes(BackendChoice::Redis) {
        redis_version = floor::redis::server_version(&redis_url).await.ok();
        if settings.runs_floor() {
            figures.extend(floor::redis::measure(&redis_url, settings.jobs, &ui).await?);
        }
        let mut redis = backends::Redis::new(&redis_url);
        figures.extend(workloads::suite(&mut redis, &settings, &ui).await?);
        figures.extend(retention.run(&mut redis, &settings, &ui).await?);
        if settings.runs(Workload::Admin) {
            let (figure, table) = admin::run(&mut redis, &settings, &ui).await?;
            figures.push(figure);
            admin_tables.push(table);
        }
        notes.push(
            "redis: each workload under a fresh key prefix, purged at its end; the floor is three minimal Lua \
             scripts (a sorted set of available ids, a sorted set of running ids scored by lease deadline, a hash \
             per job), no library around them"
                .to_owned(),
        );
    }
    compare_with_floors(&mut figures);
    notes.extend(retention.notes(&figures, &settings));
    print_table(&figures);
    for table in &admin_tables {
        table.print();
    }
    for note in &notes {
        println!("note: {note}");
    }

    if let Some(path) = &args.json {
        let report = RunReport {
            machine: Machine {
                cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                kernel: command_output("uname", &["-srm"]),
                load_at_start,
            },
            versions: Versions {
                haul: env!("CARGO_PKG_VERSION"),
                rustc: command_output("rustc", &["--version"]),
                postgres: postgres_version,
                postgres_build,
                redis: redis_version,
            },
            git_commit: git_commit(),
            settings: ReportSettings {
                backend: args.backend,
                workloads: &settings,
                batch: workloads::BATCH,
                producers: workloads::PRODUCERS,
                floor_claimers: floor::FLOOR_CLAIMERS,
                postgres_url: args.backend.includes(BackendChoice::Postgres).then(|| redact(&postgres_url)),
                redis_url: args.backend.includes(BackendChoice::Redis).then(|| redact(&redis_url)),
            },
            notes: &notes,
            figures: &figures,
            admin: &admin_tables,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn print_table(figures: &[Figure]) {
    let dash = || "-".to_owned();
    let ms = |value: Option<f64>| value.map_or_else(dash, |v| format!("{v:.2}"));
    println!(
        "\n{:<9} {:<38} {:>7} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9}",
        "backend", "workload", "jobs", "seconds", "jobs/s", "p50 ms", "p90 ms", "p99 ms", "vs floor"
    );
    for f in figures {
        let ratio = f.ratio_to_floor.map_or_else(dash, |r| format!("{r:.2}x"));
        println!(
            "{:<9} {:<38} {:>7} {:>8.3} {:>10.0} {:>8} {:>8} {:>8} {:>9}",
            f.backend,
            f.workload,
            f.jobs,
            f.seconds,
            f.jobs_per_second,
            ms(f.latency.map(|l| l.p50_ms)),
            ms(f.latency.map(|l| l.p90_ms)),
            ms(f.latency.map(|l| l.p99_ms)),
            ratio
        );
        if let Some(note) = &f.note {
            println!("{:<9} ({note})", "");
        }
    }
    println!();
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The trimmed standard output of a command, or `unknown`.
fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The commit checked out, with `-dirty` when the tree has uncommitted changes.
fn git_commit() -> String {
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty());
    if dirty { format!("{commit}-dirty") } else { commit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_taken_from_the_sorted_samples() {
        let mut micros: Vec<u64> = (1..=100).rev().map(|ms| ms * 1_000).collect();
        let latency = Latency::of(&mut micros).expect("samples");
        assert_eq!((latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert!(Latency::of(&mut []).is_none());
    }

    #[test]
    fn figures_are_compared_with_the_floor_of_their_own_backend_only() {
        let second = Duration::from_secs(1);
        let mut figures = vec![
            Figure::new("postgres", "floor drain", 1_000, second).floor_figure(FloorOf::Drain),
            Figure::new("postgres", "drain", 500, second).floor(FloorOf::Drain),
            Figure::new("postgres", "enqueue", 500, second).floor(FloorOf::Enqueue),
            Figure::new("redis", "drain", 500, second).floor(FloorOf::Drain),
        ];
        compare_with_floors(&mut figures);
        let ratios: Vec<Option<f64>> = figures.iter().map(|f| f.ratio_to_floor).collect();
        assert_eq!(ratios, [None, Some(0.5), None, None]);
    }

    #[test]
    fn urls_in_the_report_lose_their_password() {
        assert_eq!(redact("postgres://app:secret@db:5432/x"), "postgres://app@db:5432/x");
        assert_eq!(redact("postgres://postgres@127.0.0.1:5432/test"), "postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
