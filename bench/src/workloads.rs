//! The measured workloads, written once over any storage ([`Backend`]).

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use std::collections::HashMap;

use haul::{JobContext, JobId, JobState, Queue, QueueLimits, Retention, Storage, Worker, WorkerBuilder, job};
use tokio::{
    sync::{Notify, Semaphore},
    task::JoinSet,
};

use crate::{BoxError, Figure, FloorOf, Latency, Settings, Workload, ui::Ui};

/// Jobs per batch in the batched enqueues.
pub(crate) const BATCH: usize = 1_000;
/// Concurrent producers of the one-by-one enqueue (and the most in flight in steady state).
pub(crate) const PRODUCERS: usize = 32;
/// How many limit keys the `keyed-limits` workload spreads its jobs over.
pub(crate) const LIMIT_KEYS: usize = 1_000;
/// Poll interval of the drain workers (wake-ups do the rest).
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// How often a drain's workers that delete completed jobs prune the others (the default
/// interval; nothing is left to prune in a drain).
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How long the steady-state workload waits for its last jobs once the producers stop.
pub(crate) const STEADY_GRACE: Duration = Duration::from_secs(30);

/// A storage to measure, created fresh for each workload.
pub(crate) trait Backend {
    /// The storage type.
    type Storage: Storage + Clone;

    /// The backend's name in the table.
    fn name(&self) -> &'static str;

    /// A fresh, empty storage for one workload.
    async fn fresh(&mut self) -> Result<Self::Storage, BoxError>;

    /// Another handle on the same storage, as a separate worker process would have.
    async fn attach(&self, storage: &Self::Storage) -> Result<Self::Storage, BoxError>;

    /// Called after jobs were pre-enqueued and before they are worked (statistics). With
    /// `kept_finished`, the storage also holds finished jobs that stand for a history
    /// kept for a while: the backend cleans up after them as it would have by then.
    async fn settle(&self, storage: &Self::Storage, kept_finished: bool) -> Result<(), BoxError>;

    /// Lets go of a handle from [`Backend::attach`].
    async fn detach(&self, storage: Self::Storage) -> Result<(), BoxError>;

    /// Lets go of a storage from [`Backend::fresh`] and deletes what it holds.
    async fn release(&mut self, storage: Self::Storage) -> Result<(), BoxError>;

    /// Whether `queue` still holds a job that is available or running (a drain of no-op
    /// jobs makes no other unfinished state), asked as cheaply as the backend allows:
    /// the drains poll it to see their end. The default reads [`Queue::counts`], which
    /// the memory and Redis backends keep as counters.
    async fn any_unfinished(&self, queue: &Queue) -> Result<bool, BoxError> {
        let counts = queue.counts().await?;
        Ok(counts.iter().any(|queue| queue.get(JobState::Available) + queue.get(JobState::Running) > 0))
    }
}

/// The instant every enqueue-to-start latency is measured from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Microseconds since [`base`].
pub(crate) fn now_micros() -> u64 {
    u64::try_from(base().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Counts handler runs and wakes the harness when the target is reached.
#[derive(Default)]
pub(crate) struct Progress {
    done: Arc<AtomicUsize>,
    target: AtomicUsize,
    reached: Notify,
}

/// A job that does nothing but count itself.
#[job(queue = "bench")]
async fn noop(progress: haul::State<Progress>) -> Result<(), haul::JobError> {
    let done = progress.done.fetch_add(1, Ordering::Relaxed) + 1;
    if done == progress.target.load(Ordering::Relaxed) {
        progress.reached.notify_one();
    }
    Ok(())
}

/// Enqueue-to-start latencies seen by the handler of [`Timed`].
#[derive(Default)]
pub(crate) struct Latencies {
    pub(crate) done: Arc<AtomicUsize>,
    /// Each job's id and start, in microseconds since [`base`].
    pub(crate) starts: Mutex<Vec<(JobId, u64)>>,
    pub(crate) last_start: Mutex<Option<Instant>>,
}

/// A no-op job that records when it started.
#[job(queue = "bench")]
async fn timed(ctx: JobContext, latencies: haul::State<Latencies>, enqueued_us: u64) -> Result<(), haul::JobError> {
    let now = now_micros();
    // The enqueue instant is also in the producer's records; the argument keeps the job
    // self-describing (and its args a realistic size).
    let _ = enqueued_us;
    if let Ok(mut starts) = latencies.starts.lock() {
        starts.push((ctx.id(), now));
    }
    if let Ok(mut last) = latencies.last_start.lock() {
        *last = Some(Instant::now());
    }
    latencies.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Every workload on `backend`, each on a fresh storage.
pub(crate) async fn suite<B: Backend>(backend: &mut B, settings: &Settings, ui: &Ui) -> Result<Vec<Figure>, BoxError> {
    let mut figures = Vec::new();
    if settings.runs(Workload::Enqueue) {
        figures.push(enqueue_batched(backend, settings.jobs, ui).await?);
        figures.push(enqueue_one_by_one(backend, settings.jobs, ui).await?);
    }
    // The unlimited drain runs for keyed-limits too: that workload is compared with it.
    if settings.runs(Workload::Drain) || settings.runs(Workload::KeyedLimits) {
        let drain_label = format!("drain, c={}", settings.concurrency);
        let unlimited = DrainPlan::new(settings.jobs, 1, settings.concurrency);
        let unlimited = drain(backend, &drain_label, unlimited, ui).await?;
        let unlimited_rate = unlimited.jobs_per_second;
        figures.push(unlimited);
        if settings.runs(Workload::KeyedLimits) {
            figures.push(keyed_limits(backend, settings, (&drain_label, unlimited_rate), ui).await?);
        }
    }
    if settings.runs(Workload::Drain) && settings.prefetch > 0 {
        let label = format!("drain, c={} prefetch {}", settings.concurrency, settings.prefetch);
        let plan = DrainPlan::new(settings.jobs, 1, settings.concurrency).prefetch(settings.prefetch);
        figures.push(drain(backend, &label, plan, ui).await?);
    }
    if settings.runs(Workload::Drain) {
        let label = format!("drain, c={} completed deleted", settings.concurrency);
        let plan = DrainPlan::new(settings.jobs, 1, settings.concurrency).deleting_completed();
        figures.push(drain(backend, &label, plan, ui).await?);
    }
    if settings.runs(Workload::Steady) {
        figures.push(steady(backend, settings, ui).await?);
    }
    if settings.runs(Workload::Growth) {
        figures.extend(crate::growth::run(backend, settings, ui).await?);
    }
    let scaling: &[usize] = if settings.runs(Workload::Scaling) { &[1, 2, 4] } else { &[] };
    for &instances in scaling {
        let label =
            format!("scaling, {instances} worker{} c={}", if instances == 1 { "" } else { "s" }, settings.concurrency);
        figures.push(drain(backend, &label, DrainPlan::new(settings.jobs, instances, settings.concurrency), ui).await?);
    }
    Ok(figures)
}

/// Runs `work` on a fresh storage and releases the storage whatever the outcome.
pub(crate) async fn on_fresh<B: Backend, T>(
    backend: &mut B,
    work: impl AsyncFnOnce(&B, &B::Storage) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    let storage = backend.fresh().await?;
    let result = work(backend, &storage).await;
    let released = backend.release(storage).await;
    let value = result?;
    released?;
    Ok(value)
}

/// Enqueues `jobs` no-op jobs in batches of 1,000, counting them in `counter`.
pub(crate) async fn enqueue_noops(queue: &Queue, jobs: usize, counter: &AtomicUsize) -> Result<(), BoxError> {
    let mut left = jobs;
    while left > 0 {
        let n = left.min(BATCH);
        queue.enqueue_many((0..n).map(|_| Noop::new())).await?;
        counter.fetch_add(n, Ordering::Relaxed);
        left -= n;
    }
    Ok(())
}

/// Enqueues `jobs` no-op jobs in batches of 1,000, job `i` with the limit key
/// `key-{i % keys}`, counting them in `counter`.
async fn enqueue_keyed_noops(queue: &Queue, jobs: usize, keys: usize, counter: &AtomicUsize) -> Result<(), BoxError> {
    let keys = keys.max(1);
    let mut next = 0;
    while next < jobs {
        let n = (jobs - next).min(BATCH);
        let batch = (next..next + n)
            .map(|i| Ok(queue.prepare(&Noop::new())?.limit_key(format!("key-{}", i % keys))))
            .collect::<Result<Vec<_>, haul::Error>>()?;
        queue.insert(batch).await?;
        counter.fetch_add(n, Ordering::Relaxed);
        next += n;
    }
    Ok(())
}

/// `jobs` jobs enqueued in batches of 1,000.
async fn enqueue_batched<B: Backend>(backend: &mut B, jobs: usize, ui: &Ui) -> Result<Figure, BoxError> {
    let name = backend.name();
    let label = "enqueue, batches of 1,000";
    on_fresh(backend, async |_, storage| {
        let queue = Queue::new(storage.clone());
        let bar = ui.bar(name, label, jobs);
        let started = Instant::now();
        enqueue_noops(&queue, jobs, bar.counter()).await?;
        let elapsed = started.elapsed();
        bar.finish(jobs, elapsed);
        Ok(Figure::new(name, label, jobs, elapsed).floor(FloorOf::Enqueue))
    })
    .await
}

/// `jobs` jobs enqueued one at a time by 32 concurrent producers.
async fn enqueue_one_by_one<B: Backend>(backend: &mut B, jobs: usize, ui: &Ui) -> Result<Figure, BoxError> {
    let name = backend.name();
    let label = "enqueue, 1 by 1, 32 producers";
    on_fresh(backend, async |_, storage| {
        let queue = Queue::new(storage.clone());
        let bar = ui.bar(name, label, jobs);
        let started = Instant::now();
        let mut producers = JoinSet::new();
        for p in 0..PRODUCERS {
            let queue = queue.clone();
            let counter = Arc::clone(bar.counter_arc());
            let share = jobs / PRODUCERS + usize::from(p < jobs % PRODUCERS);
            producers.spawn(async move {
                for _ in 0..share {
                    queue.enqueue(Noop::new()).await?;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, haul::Error>(())
            });
        }
        while let Some(joined) = producers.join_next().await {
            joined??;
        }
        let elapsed = started.elapsed();
        bar.finish(jobs, elapsed);
        Ok(Figure::new(name, label, jobs, elapsed).floor(FloorOf::EnqueueOneByOne))
    })
    .await
}

/// How many jobs are stored over every queue: in `state`, or in any state (`None`).
async fn stored(queue: &Queue, state: Option<JobState>) -> Result<usize, BoxError> {
    let counts = queue.counts().await?;
    let total: u64 = match state {
        Some(state) => counts.iter().map(|c| c.get(state)).sum(),
        None => counts.iter().flat_map(|c| c.states.values()).sum(),
    };
    Ok(usize::try_from(total).unwrap_or(usize::MAX))
}

/// How a drain is set up: how many jobs, worked by how many workers of how many slots
/// (and jobs claimed ahead: the worker's automatic prefetch unless set), and whether
/// they carry limit keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DrainPlan {
    jobs: usize,
    instances: usize,
    concurrency: usize,
    prefetch: Option<usize>,
    /// `Some(keys)`: the queue is limited to one running job per limit key, and job `i`
    /// has the key `key-{i % keys}`.
    keys: Option<usize>,
    /// Finished jobs stored in the queue before its jobs are enqueued, kept while they
    /// are drained.
    history: usize,
    /// The workers keep completed jobs for no time: each completion deletes its job.
    delete_completed: bool,
}

impl DrainPlan {
    /// `jobs` jobs without limit keys, `instances` workers of `concurrency` slots and the
    /// default (automatic) prefetch.
    pub(crate) fn new(jobs: usize, instances: usize, concurrency: usize) -> Self {
        Self { jobs, instances, concurrency, prefetch: None, keys: None, history: 0, delete_completed: false }
    }

    /// The workers keep completed jobs for no time (`Retention::completed(Duration::ZERO)`).
    fn deleting_completed(mut self) -> Self {
        self.delete_completed = true;
        self
    }

    /// `history` finished jobs are stored first, and kept while the jobs are drained.
    pub(crate) fn history(mut self, history: usize) -> Self {
        self.history = history;
        self
    }

    /// Each worker claims `prefetch` jobs ahead.
    fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// The jobs' limit keys are spread over `keys` keys, each limited to one running job.
    fn keyed(mut self, keys: usize) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Pre-enqueues the plan's jobs on a fresh storage (storing its finished jobs first,
    /// and the queue's key limit when the jobs are keyed), counting them in `counter`.
    async fn enqueue<S: Storage>(&self, storage: &S, queue: &Queue, counter: &AtomicUsize) -> Result<(), BoxError> {
        if self.history > 0 {
            crate::growth::store_finished(storage, queue, self.history).await?;
        }
        match self.keys {
            None => enqueue_noops(queue, self.jobs, counter).await,
            Some(keys) => {
                queue.set_limits("bench", QueueLimits::new().key_concurrency(1)).await?;
                enqueue_keyed_noops(queue, self.jobs, keys, counter).await
            }
        }
    }
}

/// The pre-enqueued no-op jobs of `plan` worked by its workers, timed until every one is
/// completed in storage.
pub(crate) async fn drain<B: Backend>(
    backend: &mut B,
    label: &str,
    plan: DrainPlan,
    ui: &Ui,
) -> Result<Figure, BoxError> {
    let DrainPlan { jobs, instances, concurrency, prefetch, delete_completed, .. } = plan;
    let name = backend.name();
    on_fresh(backend, async |backend, storage| {
        let queue = Queue::new(storage.clone());
        let prepare = ui.bar(name, &format!("{label} (pre-enqueue)"), jobs);
        plan.enqueue(storage, &queue, prepare.counter()).await?;
        backend.settle(storage, plan.history > 0).await?;
        prepare.clear();

        let progress = Arc::new(Progress::default());
        progress.target.store(jobs, Ordering::Relaxed);
        let bar = ui.bar_on(name, label, jobs, Arc::clone(&progress.done));
        let mut handles = Vec::with_capacity(instances);
        for _ in 0..instances {
            handles.push(backend.attach(storage).await?);
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let mut workers = JoinSet::new();
        for handle in &handles {
            let builder = drain_worker(handle.clone(), concurrency, prefetch, &progress);
            let builder = if delete_completed {
                builder.retention(Retention::default().completed(Duration::ZERO), PRUNE_INTERVAL)
            } else {
                builder
            };
            let worker = builder.build();
            let mut stopped = stopped.clone();
            workers.spawn(worker.run_until(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
        }
        // A worker that ends early (it refused to start) must not leave this waiting.
        tokio::select! {
            () = progress.reached.notified() => {}
            Some(joined) = workers.join_next() => {
                joined??;
                return Err("a worker stopped before the jobs were done".into());
            }
        }
        while backend.any_unfinished(&queue).await? {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed();
        let _ = stop.send(true);
        while let Some(joined) = workers.join_next().await {
            joined??;
        }
        // Checked once the clock has stopped: counting every job can cost more than the
        // drain on a large table.
        if delete_completed {
            let left = stored(&queue, None).await?;
            if left != plan.history {
                return Err(format!("{left} jobs left after a drain that deletes them, not {}", plan.history).into());
            }
        } else {
            let done = stored(&queue, Some(JobState::Completed)).await?;
            if done != plan.history + jobs {
                return Err(format!("{done} jobs completed, not {}", plan.history + jobs).into());
            }
        }
        for handle in handles {
            backend.detach(handle).await?;
        }
        bar.finish(jobs, elapsed);
        Ok(Figure::new(name, label, jobs, elapsed).floor(FloorOf::Drain).workers(instances))
    })
    .await
}

/// The worker of the drain workloads on `handle`: `concurrency` slots, `prefetch` jobs
/// claimed ahead (`None`: the default, automatic prefetch), counting its runs in
/// `progress`.
fn drain_worker<S: Storage>(
    handle: S,
    concurrency: usize,
    prefetch: Option<usize>,
    progress: &Arc<Progress>,
) -> WorkerBuilder {
    let builder = Worker::builder(handle).queues(["bench"]).concurrency(concurrency);
    let builder = match prefetch {
        Some(prefetch) => builder.prefetch(prefetch),
        None => builder,
    };
    builder
        .shared_state(Arc::clone(progress))
        // Every kind of the queue `bench` must find its state, or the worker refuses to
        // start; no `timed` job runs here.
        .shared_state(Arc::new(Latencies::default()))
        .poll_interval(DRAIN_POLL)
}

/// The drain of the `keyed-limits` workload: the unlimited drain's jobs and worker (one
/// instance, `settings.concurrency` slots, the default prefetch), each job with a limit key of
/// [`LIMIT_KEYS`] in turn, in a queue limited to one running job per key; compared with
/// `unlimited`, the label and jobs/s of the unlimited drain on the same backend.
async fn keyed_limits<B: Backend>(
    backend: &mut B,
    settings: &Settings,
    unlimited: (&str, f64),
    ui: &Ui,
) -> Result<Figure, BoxError> {
    let label = format!("keyed limits, c={}, {LIMIT_KEYS} keys at 1/key", settings.concurrency);
    let plan = DrainPlan::new(settings.jobs, 1, settings.concurrency).keyed(LIMIT_KEYS);
    let figure = drain(backend, &label, plan, ui).await?;
    let (unlimited_label, unlimited_rate) = unlimited;
    Ok(figure.compared_to("keyed/unlimited: ", unlimited_label, unlimited_rate))
}

/// One drain as [`drain`] runs it with one instance, for workloads that compare variants
/// of the worker (the `middleware` workload): `jobs` no-op jobs are pre-enqueued by
/// `enqueue` (given the queue; it must enqueue with [`enqueue_noops`]), then one worker
/// on `storage`, built by [`drain_worker`] and then `customize`, works them; returns the
/// time from the worker's start until every job is completed in storage.
pub(crate) async fn drain_once<S: Storage + Clone>(
    storage: &S,
    jobs: usize,
    concurrency: usize,
    prefetch: usize,
    enqueue: impl AsyncFnOnce(&Queue) -> Result<(), BoxError>,
    customize: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
) -> Result<Duration, BoxError> {
    let queue = Queue::new(storage.clone());
    enqueue(&queue).await?;
    let progress = Arc::new(Progress::default());
    progress.target.store(jobs, Ordering::Relaxed);
    let worker = customize(drain_worker(storage.clone(), concurrency, Some(prefetch), &progress)).build();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    // A worker that ends early (it refused to start) must not leave this waiting.
    tokio::select! {
        () = progress.reached.notified() => {}
        joined = &mut running => {
            joined??;
            return Err("the worker stopped before the jobs were done".into());
        }
    }
    while stored(&queue, Some(JobState::Completed)).await? < jobs {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    running.await??;
    Ok(elapsed)
}

/// The worker of the latency workloads, recording handler starts in a [`Latencies`].
///
/// It has its own storage handle (as a separate process would: for PostgreSQL, its own
/// pool), and the default poll interval (1 s): jobs start on wake-ups, not polls.
pub(crate) struct LatencyWorker<S> {
    handle: S,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<haul::Result<()>>,
}

impl<S: Storage + Clone> LatencyWorker<S> {
    /// Starts the worker and gives it time to start listening before the first job.
    pub(crate) async fn start<B: Backend<Storage = S>>(
        backend: &B,
        storage: &S,
        settings: &Settings,
        latencies: &Arc<Latencies>,
    ) -> Result<Self, BoxError> {
        let handle = backend.attach(storage).await?;
        let worker = Worker::builder(handle.clone())
            .queues(["bench"])
            .concurrency(settings.concurrency)
            .shared_state(Arc::clone(latencies))
            // Every kind of the queue `bench` must find its state; no `noop` job runs here.
            .shared_state(Arc::new(Progress::default()))
            .build();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Self { handle, stop, running })
    }

    /// Stops the worker, detaches its storage handle, and fails if the worker failed.
    pub(crate) async fn stop<B: Backend<Storage = S>>(self, backend: &B) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        let worked = self.running.await;
        backend.detach(self.handle).await?;
        worked??;
        Ok(())
    }
}

/// Producers at `settings.rate` jobs/s for `settings.steady_seconds` (or fewer when
/// `settings.jobs` jobs take less) with one worker running: enqueue-to-start latency and
/// the achieved rate.
async fn steady<B: Backend>(backend: &mut B, settings: &Settings, ui: &Ui) -> Result<Figure, BoxError> {
    let name = backend.name();
    let rate = f64::from(settings.rate.max(1));
    let total = ((rate * settings.steady_seconds) as usize).min(settings.jobs).max(1);
    let label = format!("steady {}/s, {:.1} s", settings.rate, total as f64 / rate);
    on_fresh(backend, async |backend, storage| {
        let queue = Queue::new(storage.clone());
        let latencies = Arc::new(Latencies::default());
        let bar = ui.bar_on(name, &label, total, Arc::clone(&latencies.done));
        let worker = LatencyWorker::start(backend, storage, settings, &latencies).await?;

        let started = Instant::now();
        let (calls, produced) = produce(&queue, rate, total).await?;
        let deadline = Instant::now() + STEADY_GRACE;
        while latencies.done.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worker.stop(backend).await?;
        let done = latencies.done.load(Ordering::Relaxed);
        let last = latencies.last_start.lock().ok().and_then(|last| *last).unwrap_or_else(Instant::now);
        let elapsed = last.saturating_duration_since(started).max(produced);
        let starts: HashMap<JobId, u64> =
            latencies.starts.lock().map(|s| s.iter().copied().collect()).unwrap_or_default();
        // From the start of the enqueue call, and from its return (the commit), to the
        // handler's start; and the enqueue call itself.
        let (mut from_call, mut from_return, mut call_time) = (Vec::new(), Vec::new(), Vec::new());
        for &(id, at, returned) in &calls {
            call_time.push(returned.saturating_sub(at));
            if let Some(&start) = starts.get(&id) {
                from_call.push(start.saturating_sub(at));
                from_return.push(start.saturating_sub(returned));
            }
        }
        bar.finish(done, elapsed);
        let after_return = Latency::of(&mut from_return);
        let mut figure = Figure::new(name, &label, done, elapsed)
            .latency(Latency::of(&mut from_call))
            .latency_after_return(after_return);
        let achieved = total as f64 / produced.as_secs_f64().max(f64::EPSILON);
        let mut notes = Vec::new();
        if achieved < 0.9 * rate {
            notes.push(format!("the producers reached only {achieved:.0} of {rate:.0} jobs/s"));
        }
        if let (Some(call), Some(after)) = (Latency::of(&mut call_time), after_return) {
            notes.push(format!(
                "latency counts from the enqueue call's start; the call took p50 {:.2} / p99 {:.2} ms; \
                 from its return to the start: p50 {:.2} / p90 {:.2} / p99 {:.2} ms",
                call.p50_ms, call.p99_ms, after.p50_ms, after.p90_ms, after.p99_ms
            ));
        }
        if done < total {
            notes.push(format!("only {done} of {total} jobs started within {} s", STEADY_GRACE.as_secs()));
        }
        if !notes.is_empty() {
            figure = figure.note(notes.join("; "));
        }
        Ok(figure)
    })
    .await
}

/// One enqueue call of [`produce`]: the job's id, and the call's start and return in
/// microseconds since [`base`].
pub(crate) type Call = (JobId, u64, u64);

/// Enqueues `total` [`Timed`] jobs at `rate` jobs/s, at most [`PRODUCERS`] calls in flight:
/// every call, and how long the production took.
pub(crate) async fn produce(queue: &Queue, rate: f64, total: usize) -> Result<(Vec<Call>, Duration), BoxError> {
    let in_flight = Arc::new(Semaphore::new(PRODUCERS));
    let mut producers = JoinSet::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0;
    let mut calls = Vec::with_capacity(total);
    while sent < total {
        ticks.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
        while sent < due {
            let permit = Arc::clone(&in_flight).acquire_owned().await?;
            let queue = queue.clone();
            producers.spawn(async move {
                let at = now_micros();
                let enqueued = queue.enqueue(Timed::new(at)).await;
                drop(permit);
                enqueued.map(|id| (id, at, now_micros()))
            });
            sent += 1;
        }
        while let Some(joined) = producers.try_join_next() {
            calls.push(joined??);
        }
    }
    while let Some(joined) = producers.join_next().await {
        calls.push(joined??);
    }
    Ok((calls, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use haul::{Admin, ListParams, MemoryStorage};

    use super::*;

    #[tokio::test]
    async fn a_keyed_plan_limits_the_queue_per_key_and_spreads_its_jobs_over_the_keys() {
        let storage = MemoryStorage::new();
        let queue = Queue::new(storage.clone());
        let counter = AtomicUsize::new(0);
        DrainPlan::new(2_500, 1, 32).keyed(LIMIT_KEYS).enqueue(&storage, &queue, &counter).await.expect("enqueued");
        assert_eq!(counter.load(Ordering::Relaxed), 2_500);

        let limits = storage.queue_limits().await.expect("limits");
        assert_eq!(limits.len(), 1);
        assert_eq!((limits[0].queue.as_str(), limits[0].limits), ("bench", QueueLimits::new().key_concurrency(1)));

        let jobs = storage.list(ListParams::new().limit(3_000)).await.expect("jobs");
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for job in &jobs {
            *per_key.entry(job.limit_key.clone().expect("every job has a key")).or_default() += 1;
        }
        assert_eq!(per_key.len(), LIMIT_KEYS);
        assert_eq!((per_key["key-0"], per_key["key-499"], per_key["key-500"], per_key["key-999"]), (3, 3, 2, 2));
    }

    #[tokio::test]
    async fn an_unkeyed_plan_stores_no_limits_and_no_keys() {
        let storage = MemoryStorage::new();
        let queue = Queue::new(storage.clone());
        DrainPlan::new(10, 1, 32).enqueue(&storage, &queue, &AtomicUsize::new(0)).await.expect("enqueued");
        assert!(storage.queue_limits().await.expect("limits").is_empty());
        let jobs = storage.list(ListParams::new()).await.expect("jobs");
        assert_eq!(jobs.len(), 10);
        assert!(jobs.iter().all(|job| job.limit_key.is_none()));
    }

    #[tokio::test]
    async fn a_plan_with_history_stores_its_finished_jobs_before_its_jobs() {
        let storage = MemoryStorage::new();
        let queue = Queue::new(storage.clone());
        let counter = AtomicUsize::new(0);
        DrainPlan::new(10, 1, 32).history(7).enqueue(&storage, &queue, &counter).await.expect("enqueued");
        assert_eq!(counter.load(Ordering::Relaxed), 10, "the counter counts the plan's jobs only");
        let jobs = storage.list(ListParams::new()).await.expect("jobs");
        let in_state = |state| jobs.iter().filter(|job| job.state == state).count();
        assert_eq!((in_state(JobState::Completed), in_state(JobState::Available), jobs.len()), (7, 10, 17));
    }
}
