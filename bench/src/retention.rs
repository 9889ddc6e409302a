//! The retention workload: producers at a sustained rate, stepped up, while one worker
//! with a short retention of completed jobs works them and, as the namespace's leader,
//! prunes them: at each rate, whether the finished jobs kept in storage stay bounded.
//!
//! A step at `r` jobs/s runs for `--retention-seconds` (10 s by default), and at most
//! `--jobs / r` seconds, as the steady workload enqueues at most `--jobs` jobs; a rate
//! whose step would be shorter than [`MIN_STEP`] is not tried, since pruning cannot show
//! in less. CI's `--jobs 2000` so runs one step of 8 s per backend; `--jobs 20000` runs
//! 250, 500, 1,000 and 2,000 jobs/s for 10 s each and 4,000 jobs/s for 5 s.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use haul::{Queue, Retention, Storage, Worker, job};
use sqlx::AssertSqlSafe;
use tokio::sync::Notify;

use crate::{
    BoxError, Figure, Settings,
    backends::{Memory, Postgres, Redis},
    ui::Ui,
    workloads::{self, BATCH, Backend},
};

/// The queue (and kind) of this workload's jobs: a queue of its own, so its worker needs
/// none of the states the `bench` queue's kinds take.
const QUEUE: &str = "bench.retention";
/// How long the worker keeps completed jobs.
const RETENTION: Duration = Duration::from_secs(2);
/// How often the leader prunes.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// Allowance on top of the retention and the prune interval, for a pass's own duration
/// and the flushing of completions.
const SLACK: Duration = Duration::from_secs(1);
/// The first rate tried; each next step doubles it.
const FIRST_RATE: u32 = 250;
/// The highest rate tried, whatever `--jobs` allows.
const MAX_RATE: u32 = 64_000;
/// The shortest step worth running: longer than the retention, the prune interval and
/// the slack together, so a store that is not pruned grows past the bound.
const MIN_STEP: Duration = Duration::from_secs(5);
/// How often the stored finished jobs are counted during a step.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often the producer enqueues what is due, in one batch.
const PRODUCER_TICK: Duration = Duration::from_millis(10);
/// The share of the target rate the producer and the worker must reach for a step to
/// count as sustained.
const SUSTAINED: f64 = 0.9;
/// How long the worker may take to become the namespace's leader.
const LEADER_PATIENCE: Duration = Duration::from_secs(10);

/// A job that does nothing.
#[job(name = "bench.retained", queue = "bench.retention")]
async fn retained() -> Result<(), haul::JobError> {
    Ok(())
}

/// The steps of the workload: each one's target rate and length.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    steps: Vec<(u32, Duration)>,
}

impl Plan {
    /// Steps of `step_seconds` (0 or less: the workload is skipped, `None`) at 250 jobs/s
    /// and doubling rates, each at most `jobs / rate` seconds long, as long as that is at
    /// least [`MIN_STEP`] (or `step_seconds`, when shorter).
    pub(crate) fn new(step_seconds: f64, jobs: usize) -> Option<Self> {
        if !step_seconds.is_finite() || step_seconds <= 0.0 {
            return None;
        }
        let step = Duration::from_secs_f64(step_seconds);
        let shortest = step.min(MIN_STEP);
        let mut steps = Vec::new();
        let mut rate = FIRST_RATE;
        while rate <= MAX_RATE {
            let length = step.min(Duration::from_secs_f64(jobs as f64 / f64::from(rate)));
            if length < shortest {
                break;
            }
            steps.push((rate, length));
            rate *= 2;
        }
        (!steps.is_empty()).then_some(Self { steps })
    }
}

/// What a backend tells about its storage beyond the job counts.
pub(crate) trait Probe: Backend {
    /// Readies a fresh storage for the workload; returns a note for the output.
    async fn prepare(&self, _storage: &Self::Storage) -> Result<Option<String>, BoxError> {
        Ok(None)
    }

    /// The space the jobs take, if the backend can tell (read at the end of each step).
    async fn space(&self, _storage: &Self::Storage) -> Option<String> {
        None
    }
}

impl Probe for Memory {}

impl Probe for Redis {}

impl Probe for Postgres {
    /// Turns autovacuum on for the schema's tables when the server runs it; a table's
    /// `autovacuum_enabled` cannot turn it on when the server's `autovacuum` is off.
    async fn prepare(&self, storage: &haul::PostgresStorage) -> Result<Option<String>, BoxError> {
        let schema = storage.schema();
        if self.setting("autovacuum").await != "on" {
            return Ok(Some(format!(
                "postgres retention: autovacuum is OFF on this server (a table's autovacuum_enabled cannot override \
                 that), so nothing vacuums the jobs table during this workload: its size and dead tuples grow with \
                 every pruned job; the finished counts are live rows (counts()), which pruning alone bounds \
                 (schema {schema})"
            )));
        }
        let tables: Vec<String> = sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
            .bind(schema.to_owned())
            .fetch_all(self.admin())
            .await?;
        for table in &tables {
            sqlx::query(AssertSqlSafe(format!("ALTER TABLE \"{schema}\".\"{table}\" SET (autovacuum_enabled = on)")))
                .execute(self.admin())
                .await?;
        }
        Ok(Some(format!(
            "postgres retention: autovacuum is on on this server and set on (autovacuum_enabled = on) for the \
             workload's {} tables",
            tables.len()
        )))
    }

    /// The jobs table's total size and dead tuples (statistics, which lag by a second or so).
    async fn space(&self, storage: &haul::PostgresStorage) -> Option<String> {
        let (bytes, dead): (i64, Option<i64>) = sqlx::query_as(
            "SELECT pg_total_relation_size(format('%I.jobs', $1::text)::regclass), \
             (SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs')",
        )
        .bind(storage.schema().to_owned())
        .fetch_one(self.admin())
        .await
        .ok()?;
        let dead = dead.map_or_else(|| "?".to_owned(), |d| d.to_string());
        Some(format!("jobs table {:.1} MB, {dead} dead tuples", bytes as f64 / 1_048_576.0))
    }
}

/// One step's measures.
#[derive(Clone, Debug)]
struct Step {
    rate: u32,
    elapsed: Duration,
    enqueued: usize,
    /// Jobs that finished during the step (pruned ones included).
    completed: u64,
    /// Finished jobs stored at the end of the step.
    finished_end: u64,
    /// The most finished jobs stored at any sample of the step.
    finished_max: u64,
    /// Unfinished jobs at the end of the step (a backlog the worker did not work off).
    unfinished_end: u64,
    space: Option<String>,
}

impl Step {
    fn per_second(&self, count: f64) -> f64 {
        count / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn enqueue_rate(&self) -> f64 {
        self.per_second(self.enqueued as f64)
    }

    fn completion_rate(&self) -> f64 {
        self.per_second(self.completed as f64)
    }

    /// The most finished jobs a store pruned in time holds at the step's completion rate:
    /// what finished within the retention, the prune interval and the slack.
    fn bound(&self) -> u64 {
        (self.completion_rate() * (RETENTION + PRUNE_INTERVAL + SLACK).as_secs_f64()).ceil() as u64
    }

    fn bounded(&self) -> bool {
        self.finished_end <= self.bound()
    }

    fn sustained(&self) -> bool {
        let target = f64::from(self.rate) * SUSTAINED;
        self.enqueue_rate() >= target && self.completion_rate() >= target
    }

    fn figure(&self, backend: &'static str) -> Figure {
        let label = format!("retention {}/s, {:.0} s", self.rate, self.elapsed.as_secs_f64());
        let jobs = usize::try_from(self.completed).unwrap_or(usize::MAX);
        let mut note = format!(
            "enqueued {:.0}/s, completed {:.0}/s; finished jobs stored: {} at the end, max {} (bound {}): {}; {} \
             unfinished at the end",
            self.enqueue_rate(),
            self.completion_rate(),
            self.finished_end,
            self.finished_max,
            self.bound(),
            if self.bounded() { "bounded" } else { "NOT bounded" },
            self.unfinished_end,
        );
        if let Some(space) = &self.space {
            note.push_str(&format!("; {space}"));
        }
        Figure::new(backend, &label, jobs, self.elapsed).note(note)
    }
}

/// What the workload found on one backend.
#[derive(Clone, Debug)]
struct Outcome {
    backend: &'static str,
    /// The highest rate at which the finished jobs stayed bounded (every lower step too).
    highest_bounded: Option<u32>,
    /// Why the steps stopped where they did.
    stopped: String,
}

/// The workload's runs over the backends of one bench run, and what they found.
#[derive(Debug)]
pub(crate) struct Runs {
    plan: Option<Plan>,
    outcomes: Vec<Outcome>,
    notes: Vec<String>,
}

impl Runs {
    /// Runs of `plan` (`None`: the workload is skipped).
    pub(crate) fn new(plan: Option<Plan>) -> Self {
        Self { plan, outcomes: Vec::new(), notes: Vec::new() }
    }

    /// Runs the steps on a fresh storage of `backend` until one is not sustained or not
    /// bounded: one figure per step.
    pub(crate) async fn run<B: Probe>(
        &mut self,
        backend: &mut B,
        settings: &Settings,
        ui: &Ui,
    ) -> Result<Vec<Figure>, BoxError> {
        let Some(plan) = self.plan.clone() else { return Ok(Vec::new()) };
        let name = backend.name();
        let (steps, note) = workloads::on_fresh(backend, async |backend, storage| {
            let note = backend.prepare(storage).await?;
            let handle = backend.attach(storage).await?;
            let worked = run_steps(backend, storage, &handle, &plan, settings, ui).await;
            let detached = backend.detach(handle).await;
            let steps = worked?;
            detached?;
            Ok((steps, note))
        })
        .await?;
        self.notes.extend(note);
        self.outcomes.push(outcome(name, &plan, &steps));
        Ok(steps.iter().map(|step| step.figure(name)).collect())
    }

    /// The notes for the output: how the workload ran, and per backend the highest rate
    /// at which the finished jobs stayed bounded next to its drain rate in `figures`.
    pub(crate) fn notes(&self, figures: &[Figure], settings: &Settings) -> Vec<String> {
        if self.outcomes.is_empty() {
            return Vec::new();
        }
        let mut notes = vec![format!(
            "retention: one worker (c={}, default prefetch and poll interval) keeps completed jobs {} s and its \
             leader prunes every {} s; producers enqueue what is due every {} ms in one batch; each step counts \
             the finished jobs stored every {} ms (counts()); bounded: at most completed/s x ({} s retention + {} s \
             prune interval + {} s slack) stored at the step's end; sustained: enqueued and completed at least {:.0}% \
             of the target; jobs/s is completed/s; the steps stop at the first that is not both",
            settings.concurrency,
            RETENTION.as_secs(),
            PRUNE_INTERVAL.as_secs(),
            PRODUCER_TICK.as_millis(),
            SAMPLE_EVERY.as_millis(),
            RETENTION.as_secs(),
            PRUNE_INTERVAL.as_secs(),
            SLACK.as_secs(),
            SUSTAINED * 100.0,
        )];
        notes.extend(self.notes.iter().cloned());
        let drain_label = format!("drain, c={}", settings.concurrency);
        for outcome in &self.outcomes {
            let drain = figures
                .iter()
                .find(|f| f.backend == outcome.backend && f.workload == drain_label)
                .map_or_else(|| "not measured in this run".to_owned(), |f| format!("{:.0} jobs/s", f.jobs_per_second));
            let highest = outcome.highest_bounded.map_or_else(|| "none".to_owned(), |rate| format!("{rate} jobs/s"));
            notes.push(format!(
                "retention summary, {}: finished jobs stayed bounded up to {highest} ({}); {drain_label}: {drain}",
                outcome.backend, outcome.stopped
            ));
        }
        notes
    }
}

/// The highest bounded and sustained rate of `steps`, and why they stopped.
fn outcome(backend: &'static str, plan: &Plan, steps: &[Step]) -> Outcome {
    let highest_bounded = steps.iter().take_while(|s| s.bounded() && s.sustained()).last().map(|s| s.rate);
    let stopped = match steps.last() {
        Some(last) if !last.bounded() => format!(
            "at {}/s {} finished jobs were stored at the end, above the bound of {}",
            last.rate,
            last.finished_end,
            last.bound()
        ),
        Some(last) if !last.sustained() => format!(
            "at {}/s the producer enqueued {:.0}/s and the worker completed {:.0}/s, under {:.0}% of the target",
            last.rate,
            last.enqueue_rate(),
            last.completion_rate(),
            SUSTAINED * 100.0
        ),
        Some(last) if plan.steps.last().is_some_and(|&(rate, _)| rate == last.rate) => format!(
            "{}/s is the highest rate tried: a faster step would last under {} s with this --jobs",
            last.rate,
            MIN_STEP.as_secs()
        ),
        Some(last) => format!("the worker stopped after the step at {}/s", last.rate),
        None => "no step ran".to_owned(),
    };
    Outcome { backend, highest_bounded, stopped }
}

/// Starts the worker on `handle`, runs the plan's steps until one is not both sustained
/// and bounded, and stops the worker.
async fn run_steps<B: Probe>(
    backend: &B,
    storage: &B::Storage,
    handle: &B::Storage,
    plan: &Plan,
    settings: &Settings,
    ui: &Ui,
) -> Result<Vec<Step>, BoxError> {
    let worker_id = format!("bench-retention-{}", std::process::id());
    let worker = Worker::builder(handle.clone())
        .queues([QUEUE])
        .concurrency(settings.concurrency)
        .retention(Retention::default().completed(RETENTION), PRUNE_INTERVAL)
        .worker_id(worker_id.clone())
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    let stepped = async {
        wait_to_lead(storage, &worker_id).await?;
        let queue = Queue::new(storage.clone());
        let enqueued = AtomicUsize::new(0);
        let mut steps = Vec::new();
        for &(rate, length) in &plan.steps {
            let step = step(backend, storage, &queue, &enqueued, rate, length, ui).await?;
            let go_on = step.bounded() && step.sustained();
            steps.push(step);
            if !go_on || running.is_finished() {
                break;
            }
        }
        Ok::<_, BoxError>(steps)
    }
    .await;
    let _ = stop.send(());
    let worked = running.await;
    let steps = stepped?;
    worked??;
    Ok(steps)
}

/// Waits until `worker_id` leads the namespace (only the leader prunes).
async fn wait_to_lead<S: Storage>(storage: &S, worker_id: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + LEADER_PATIENCE;
    loop {
        if storage.leader(None).await?.is_some_and(|lead| lead.worker_id == worker_id) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("the retention worker did not lead within {LEADER_PATIENCE:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The finished and the unfinished jobs of [`QUEUE`] in storage.
async fn stored<S: Storage>(storage: &S) -> Result<(u64, u64), BoxError> {
    let (mut finished, mut unfinished) = (0, 0);
    for counts in storage.counts().await?.iter().filter(|c| c.queue == QUEUE) {
        for (state, count) in &counts.states {
            if state.is_finished() {
                finished += count;
            } else {
                unfinished += count;
            }
        }
    }
    Ok((finished, unfinished))
}

/// Jobs that ever finished: every job enqueued so far but the unfinished ones. Exact
/// between steps, when no enqueue is in flight.
fn ever_finished(enqueued: &AtomicUsize, unfinished: u64) -> u64 {
    u64::try_from(enqueued.load(Ordering::Relaxed)).unwrap_or(u64::MAX).saturating_sub(unfinished)
}

/// One step: `rate` jobs/s for `length` while the stored finished jobs are sampled.
async fn step<B: Probe>(
    backend: &B,
    storage: &B::Storage,
    queue: &Queue,
    enqueued: &AtomicUsize,
    rate: u32,
    length: Duration,
    ui: &Ui,
) -> Result<Step, BoxError> {
    let (_, unfinished_before) = stored(storage).await?;
    let finished_before = ever_finished(enqueued, unfinished_before);
    let enqueued_before = enqueued.load(Ordering::Relaxed);
    let total = (f64::from(rate) * length.as_secs_f64()) as usize;
    let bar = ui.bar(backend.name(), &format!("retention {rate}/s"), total);
    let done = Notify::new();
    let started = Instant::now();
    let (produced, sampled) = tokio::join!(
        async {
            let produced = produce(queue, rate, length, &[enqueued, bar.counter()]).await;
            let elapsed = started.elapsed();
            done.notify_one();
            produced.map(|()| elapsed)
        },
        async {
            let mut finished_max = 0;
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = done.notified() => return Ok::<_, BoxError>(finished_max),
                    _ = ticks.tick() => {}
                }
                finished_max = finished_max.max(stored(storage).await?.0);
            }
        }
    );
    let elapsed = produced?;
    let (finished_end, unfinished_end) = stored(storage).await?;
    let finished_max = sampled?.max(finished_end);
    let space = backend.space(storage).await;
    let step = Step {
        rate,
        elapsed,
        enqueued: enqueued.load(Ordering::Relaxed) - enqueued_before,
        completed: ever_finished(enqueued, unfinished_end).saturating_sub(finished_before),
        finished_end,
        finished_max,
        unfinished_end,
        space,
    };
    bar.finish(usize::try_from(step.completed).unwrap_or(usize::MAX), elapsed);
    Ok(step)
}

/// Enqueues no-op jobs at `rate` jobs/s for `length`: every [`PRODUCER_TICK`], what is
/// due in one batch (of at most [`BATCH`]), counted in each of `counters`; the last call
/// may end after `length`.
async fn produce(queue: &Queue, rate: u32, length: Duration, counters: &[&AtomicUsize]) -> Result<(), BoxError> {
    let mut ticks = tokio::time::interval(PRODUCER_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0;
    loop {
        ticks.tick().await;
        let elapsed = started.elapsed();
        let due = (elapsed.min(length).as_secs_f64() * f64::from(rate)) as usize;
        // Catches up in batches, but never past the step's end: a producer that falls
        // behind shows as an enqueue rate under the target.
        while sent < due && started.elapsed() < length {
            let n = (due - sent).min(BATCH);
            queue.enqueue_many((0..n).map(|_| Retained::new())).await?;
            sent += n;
            for counter in counters {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if started.elapsed() >= length {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: u32, completed: u64, finished_end: u64) -> Step {
        Step {
            rate,
            elapsed: Duration::from_secs(10),
            enqueued: rate as usize * 10,
            completed,
            finished_end,
            finished_max: finished_end,
            unfinished_end: 0,
            space: None,
        }
    }

    #[test]
    fn steps_double_the_rate_while_jobs_allow_a_step_of_five_seconds() {
        let seconds = |plan: Plan| -> Vec<(u32, f64)> {
            plan.steps.into_iter().map(|(rate, length)| (rate, length.as_secs_f64())).collect()
        };
        let full = Plan::new(10.0, 20_000).expect("a plan");
        assert_eq!(seconds(full), [(250, 10.0), (500, 10.0), (1_000, 10.0), (2_000, 10.0), (4_000, 5.0)]);
        assert_eq!(seconds(Plan::new(10.0, 2_000).expect("a plan")), [(250, 8.0)]);
        // A step shortened below five seconds on purpose still runs.
        assert_eq!(seconds(Plan::new(2.0, 2_000).expect("a plan")), [(250, 2.0), (500, 2.0), (1_000, 2.0)]);
        assert!(Plan::new(0.0, 20_000).is_none());
        assert!(Plan::new(10.0, 100).is_none());
    }

    #[test]
    fn a_step_is_bounded_when_at_most_four_seconds_of_completions_are_stored() {
        // 1,000/s completed: the bound is 4,000.
        assert!(step(1_000, 10_000, 4_000).bounded());
        assert!(!step(1_000, 10_000, 4_001).bounded());
        assert!(step(1_000, 10_000, 0).sustained());
        assert!(!step(1_000, 8_000, 0).sustained());
    }

    #[test]
    fn the_highest_bounded_rate_is_the_last_step_before_the_first_failure() {
        let plan = Plan::new(10.0, 20_000).expect("a plan");
        let steps = [step(250, 2_500, 700), step(500, 5_000, 1_400), step(1_000, 10_000, 9_000)];
        let found = outcome("memory", &plan, &steps);
        assert_eq!(found.highest_bounded, Some(500));
        assert!(found.stopped.contains("above the bound of 4000"), "{}", found.stopped);
        let short = Plan::new(10.0, 4_000).expect("a plan");
        let found = outcome("memory", &short, &steps[..2]);
        assert_eq!(found.highest_bounded, Some(500));
        assert!(found.stopped.contains("500/s is the highest rate tried"), "{}", found.stopped);
        assert_eq!(outcome("memory", &plan, &[step(250, 1_000, 0)]).highest_bounded, None);
    }
}
