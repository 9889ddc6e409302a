//! The worker runtime: claim, run, report, heartbeat, maintain, shut down gracefully.

mod backoff;
mod claim_ahead;
mod cluster;
mod config;
mod debug;
mod executor;
mod flusher;
mod gauges;
mod heartbeat;
mod held;
mod job_metrics;
mod maintenance;
mod periodic;
mod storage_errors;
mod supervised;
mod throughput;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use claim_ahead::{ClaimAhead, HandlerTimes};
pub use config::WorkerBuilder;
use config::{ClaimGroup, Prefetch, WorkerConfig};

use crate::{
    ClaimParams, JobEvents, Result, StateMap, StopReason, Storage, Wakeups,
    events::EventSender,
    job::{check_registered_kinds, check_required_states},
    middleware::Middleware,
};
use backoff::StorageBackoff;
use cluster::{Leader, Membership};
pub(crate) use executor::execute;
use executor::{Claimed, Executor};
use flusher::Flusher;
use gauges::QueueGauges;
use heartbeat::Heartbeat;
use held::HeldClaims;
pub(crate) use job_metrics::JobMetricsByKind;
use maintenance::Maintenance;
use periodic::PeriodicRunner;
use throughput::{ThroughputRecorder, ThroughputTally};

/// The [`Storage::backend_name`] of the in-process backend (haul-memory).
const MEMORY_BACKEND: &str = "memory";

/// The first log line of a worker on the in-process backend, which says where its
/// jobs are (and are not) seen.
const STARTED_IN_MEMORY: &str = "worker started on the memory backend: its jobs live in this process only; \
    other processes, and this process after a restart, do not see them";

/// Runs jobs from a storage.
///
/// A claim loop per group of slots (the shared ones, and each queue's own: see
/// [`WorkerBuilder::queue_concurrency`]) fills its free slots with batched claims; each
/// handler runs as its own tokio task; outcomes and heartbeats are written in
/// batches (of up to 1,000 outcomes). While more than two such batches of outcomes
/// wait to be written (2,000), the worker claims nothing: a storage that writes
/// outcomes more slowly than the handlers finish slows the claims down, and the jobs a
/// worker holds (whose leases its heartbeats extend) stay bounded. It checks its settings, its state and the storage when it starts (see
/// [`Worker::run_until`]); after that, storage errors are retried with backoff and
/// never end the worker.
///
/// # Workers and the leader
///
/// Each running worker records itself in storage (its id, host, process id, queues,
/// concurrency, the jobs it holds, when it started and when it was last seen:
/// [`crate::Admin::list_workers`]) and refreshes that record every quarter of its
/// [leader lease](WorkerBuilder::leader_lease); a record not refreshed within the
/// lease is gone. At most one live worker of a namespace (a PostgreSQL schema, a
/// Redis key prefix, a memory instance) is its leader, holding a lease it renews on
/// the same interval, and only the leader promotes due jobs, rescues expired leases,
/// prunes old jobs and samples the queue gauges
/// ([`WorkerBuilder::queue_gauge_interval`]), so that work does not grow with the
/// number of workers. A
/// worker that shuts down gives the lead up at once; one that dies is replaced once
/// its lead runs out, within one leader lease (see [`WorkerBuilder::leader_lease`]
/// for the rule). A worker can
/// opt out of leading with [`WorkerBuilder::leader_eligible`].
pub struct Worker {
    storage: Arc<dyn Storage>,
    states: Arc<StateMap>,
    middleware: Arc<[Arc<dyn Middleware>]>,
    events: EventSender,
    config: WorkerConfig,
}

impl Worker {
    /// Starts configuring a worker over `storage`.
    pub fn builder(storage: impl Storage) -> WorkerBuilder {
        WorkerBuilder::new(Arc::new(storage))
    }

    pub(crate) fn from_parts(
        storage: Arc<dyn Storage>,
        states: Arc<StateMap>,
        middleware: Arc<[Arc<dyn Middleware>]>,
        config: WorkerConfig,
    ) -> Self {
        Self { storage, states, middleware, events: EventSender::default(), config }
    }

    /// Subscribes to this worker's lifecycle events (see [`crate::events`]): every
    /// attempt's start and end, from now on. Subscribe before
    /// [`Worker::run_until`] to see every attempt; the subscription ends once the worker
    /// has stopped and every event was received.
    ///
    /// ```
    /// # async fn example(storage: haul_core::testing::TestJobs) {
    /// # let worker = haul_core::Worker::builder(storage.storage()).build();
    /// use haul_core::JobEventKind;
    ///
    /// let mut events = worker.subscribe();
    /// tokio::spawn(async move {
    ///     while let Some(event) = events.recv().await {
    ///         if let JobEventKind::Discarded { reason } = &event.what {
    ///             eprintln!("job {} ({}) will not run again: {reason}", event.id, event.kind);
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn subscribe(&self) -> JobEvents {
        self.events.subscribe()
    }

    /// Runs until `signal` completes, then shuts down gracefully: stops claiming,
    /// lets running jobs finish within the grace period, stops the rest and hands
    /// them back to storage (without spending their attempt), and writes every
    /// outcome before returning.
    ///
    /// A panic in one of the worker's own tasks (a claim loop, the heartbeat, the
    /// flusher, leader maintenance, periodic jobs, the registry) shuts the worker down
    /// the same way, then resumes out of this call; panics of handlers are failed
    /// attempts instead.
    ///
    /// # Start checks
    ///
    /// Before anything runs, it fails at once, returning the error, when:
    ///
    /// - a setting is out of range ([`Error::InvalidArgument`](crate::Error::InvalidArgument),
    ///   [`Error::InvalidName`](crate::Error::InvalidName)), or two periodic jobs share a
    ///   name, or one's job is invalid ([`Error::InvalidArgument`](crate::Error::InvalidArgument));
    /// - two job types register one kind name ([`Error::DuplicateKind`](crate::Error::DuplicateKind));
    /// - a registered job kind whose default queue this worker serves takes a `State<T>`
    ///   that the worker was not given ([`Error::MissingState`](crate::Error::MissingState),
    ///   whose message says to add it with [`WorkerBuilder::state`]). A job enqueued to
    ///   another queue than its kind's default is not known at start: a missing state
    ///   fails its attempts instead;
    /// - [`Storage::check_ready`] fails with an error that retrying cannot fix: the
    ///   storage is not set up for this version of haul
    ///   ([`Error::StorageNotReady`](crate::Error::StorageNotReady), whose message says
    ///   how to fix it, e.g. an unmigrated PostgreSQL schema).
    ///
    /// A storage that cannot be reached yet ([`Error::is_transient`](crate::Error::is_transient):
    /// a lost connection, a timeout) is asked again with backoff, with a warning each
    /// time, until it answers or `signal` completes (then `run_until` returns `Ok`). As
    /// after start, storage errors are retried and never end the worker.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) -> Result<()> {
        self.config.validate()?;
        let scheduler = self.config.periodic_scheduler()?;
        check_registered_kinds()?;
        check_required_states(&self.config.queues, &self.states)?;
        let signal = signal;
        tokio::pin!(signal);
        if !wait_until_ready(self.storage.as_ref(), signal.as_mut()).await? {
            return Ok(());
        }
        let config = self.config;
        let started_at = chrono::Utc::now();
        let held = Arc::new(HeldClaims::default());
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let give_up_flushing = CancellationToken::new();
        let stop_background = CancellationToken::new();
        // Stops with the rest, and also when this future is dropped (a worker aborted
        // without a shutdown), as the death of its process would: its lead and its
        // registry record then end with their lease.
        let stop_cluster = stop_background.child_token();
        let _stop_cluster_on_drop = stop_cluster.clone().drop_guard();
        let leader = Arc::new(Leader::default());
        // Stops the claim loops: at the signal, or when a claim loop or a background
        // task panics (see `supervised`).
        let stop_claiming = CancellationToken::new();

        let flusher = supervised::spawn(
            "flusher",
            &stop_claiming,
            Flusher {
                storage: Arc::clone(&self.storage),
                held: Arc::clone(&held),
                batch: config.flush_batch,
                delete_completed: config.retention.completed.is_zero(),
            }
            .run(report_rx, give_up_flushing.clone()),
        );
        let cancels = heartbeat::subscribe_to_cancels(self.storage.as_ref()).await;
        let heartbeat = supervised::spawn(
            "heartbeat",
            &stop_claiming,
            Heartbeat {
                storage: Arc::clone(&self.storage),
                held: Arc::clone(&held),
                lease: config.lease,
                interval: config.heartbeat_interval,
                cancels,
            }
            .run(stop_background.clone()),
        );
        let maintenance = supervised::spawn(
            "maintenance",
            &stop_claiming,
            Maintenance {
                storage: Arc::clone(&self.storage),
                leader: Arc::clone(&leader),
                interval: config.maintenance_interval,
                prune_interval: config.prune_interval,
                retention: config.retention,
            }
            .run(stop_cluster.clone()),
        );
        let gauges = supervised::spawn(
            "queue gauges",
            &stop_claiming,
            QueueGauges {
                storage: Arc::clone(&self.storage),
                leader: Arc::clone(&leader),
                interval: config.queue_gauge_interval,
            }
            .run(stop_cluster.clone()),
        );
        let periodic = supervised::spawn(
            "periodic jobs",
            &stop_claiming,
            PeriodicRunner { storage: Arc::clone(&self.storage), leader: Arc::clone(&leader), scheduler }
                .run(stop_cluster.clone()),
        );

        let tally = Arc::new(ThroughputTally::new(&config.queues));
        let throughput = supervised::spawn(
            "throughput",
            &stop_claiming,
            ThroughputRecorder {
                storage: Arc::clone(&self.storage),
                tally: Arc::clone(&tally),
                interval: config.throughput_interval,
                final_timeout: config.final_flush_timeout,
            }
            .run(stop_background.clone()),
        );

        let middleware: Arc<[Arc<dyn Middleware>]> = self.middleware;
        let job_metrics = Arc::new(JobMetricsByKind::default());
        // Each group of slots has its own claim loop, running slots and held slots.
        let claimers: Vec<Claimer> = config
            .claim_groups()
            .into_iter()
            .map(|group| {
                let handler_times = Arc::new(HandlerTimes::default());
                let executor = Arc::new(Executor {
                    states: Arc::clone(&self.states),
                    held: Arc::clone(&held),
                    reports: report_tx.clone(),
                    running: Arc::new(Semaphore::new(group.concurrency)),
                    handing_back: stop_claiming.clone(),
                    middleware: Arc::clone(&middleware),
                    events: self.events.clone(),
                    throughput: Arc::clone(&tally),
                    job_metrics: Arc::clone(&job_metrics),
                    handler_times: Arc::clone(&handler_times),
                    slot_wait: (group.prefetch == Prefetch::Auto).then_some(claim_ahead::AUTO_PREFETCH_WAIT),
                });
                // One slot per job held: running, or prefetched and waiting to run.
                let slots = Arc::new(Semaphore::new(group.held_limit()));
                Claimer {
                    storage: Arc::clone(&self.storage),
                    config: config.clone(),
                    group,
                    slots,
                    executor,
                    handler_times,
                }
            })
            .collect();
        // Only the executors send reports from here on: the flusher ends with the last one.
        drop(report_tx);
        let all_slots: Vec<(Arc<Semaphore>, u32)> = claimers
            .iter()
            .map(|claimer| (Arc::clone(&claimer.slots), u32::try_from(claimer.group.held_limit()).unwrap_or(u32::MAX)))
            .collect();
        let backend = self.storage.backend_name();
        let started = if backend == MEMORY_BACKEND { STARTED_IN_MEMORY } else { "worker started" };
        tracing::info!(
            backend,
            worker_id = %config.worker_id,
            queues = ?config.queues,
            concurrency = config.concurrency,
            prefetch = ?config.prefetch,
            queue_concurrency = ?config.queue_concurrency,
            leader_lease = ?config.leader_lease,
            leader_eligible = config.leader_eligible,
            "{started}"
        );
        // Beats and takes the lead at once: a lone worker leads right from the start, and
        // maintenance, woken by the new lead, runs at once.
        let membership = supervised::spawn(
            "membership",
            &stop_claiming,
            Membership {
                storage: Arc::clone(&self.storage),
                held: Arc::clone(&held),
                leader,
                worker_id: config.worker_id.clone(),
                queues: config.queues.clone(),
                concurrency: config.total_concurrency(),
                lease: config.leader_lease,
                eligible: config.leader_eligible,
                host: cluster::host_name(),
                started_at,
                last_term: None,
            }
            .run(stop_cluster.clone()),
        );

        let mut claiming = JoinSet::new();
        for claimer in claimers {
            claiming.spawn(claimer.run(stop_claiming.clone()));
        }
        // A claim loop that panics stops the others; its panic resumes once the worker
        // has shut down (handed back what it held, written every outcome).
        let claim_loop_panic = {
            let stop_all_claiming = stop_claiming.clone();
            let claimers_done = async move {
                let mut first_panic = None;
                while let Some(joined) = claiming.join_next().await {
                    if let Err(error) = joined
                        && error.is_panic()
                    {
                        tracing::error!("a claim loop panicked; stopping the worker");
                        stop_all_claiming.cancel();
                        first_panic.get_or_insert(error.into_panic());
                    }
                }
                first_panic
            };
            tokio::pin!(claimers_done);
            tokio::select! {
                () = &mut signal => {
                    stop_claiming.cancel();
                    // The claimers are gone once this returns.
                    claimers_done.await
                }
                first_panic = &mut claimers_done => first_panic,
            }
        };

        tracing::info!(in_flight = held.len(), grace = ?config.shutdown_grace, "shutting down");
        let finished = tokio::time::timeout(config.shutdown_grace, all_returned(&all_slots)).await;
        if finished.is_err() {
            tracing::warn!(in_flight = held.len(), "grace period over; stopping running jobs and handing them back");
            held.stop_all(StopReason::Shutdown);
            // Handlers are aborted at their next await; one that never yields is left to
            // its lease (the job is rescued later, not lost).
            if tokio::time::timeout(Duration::from_secs(5), all_returned(&all_slots)).await.is_err() {
                tracing::error!("some handlers did not stop; their jobs will be rescued after their leases");
            }
        }

        // Every executor has queued its outcome; the flusher drains and ends.
        let flush_deadline = tokio::time::sleep(config.final_flush_timeout);
        tokio::pin!(flush_deadline);
        let mut first_panic = claim_loop_panic;
        let mut flusher = flusher;
        let flushed = tokio::select! {
            flushed = &mut flusher => flushed,
            () = &mut flush_deadline => {
                give_up_flushing.cancel();
                flusher.await
            }
        };
        supervised::output(flushed, &mut first_panic);
        stop_background.cancel();
        let (heartbeat, maintenance, gauges, periodic, throughput, membership) =
            tokio::join!(heartbeat, maintenance, gauges, periodic, throughput, membership);
        for joined in [heartbeat, maintenance, gauges, periodic, throughput] {
            supervised::output(joined, &mut first_panic);
        }
        // Nothing acts as leader any more: give the lead up and leave the registry.
        if let Some(membership) = supervised::output(membership, &mut first_panic)
            && tokio::time::timeout(config.final_flush_timeout, membership.leave()).await.is_err()
        {
            tracing::warn!("leaving the cluster timed out; the lead and the registry record end with their lease");
        }
        if let Some(panic) = first_panic {
            std::panic::resume_unwind(panic);
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Completes once every slot of every group is free: no job is held any more.
async fn all_returned(slots: &[(Arc<Semaphore>, u32)]) {
    for (semaphore, all) in slots {
        // The permits drop at once: nothing is claimed after the claimers stopped.
        let _ = semaphore.acquire_many(*all).await;
    }
}

/// Asks `storage` whether it is ready until it says so (`Ok(true)`), fails for a reason
/// retrying cannot fix (the error), or `signal` completes first (`Ok(false)`). Transient
/// errors are retried with [`StorageBackoff`].
async fn wait_until_ready(storage: &dyn Storage, mut signal: Pin<&mut impl Future<Output = ()>>) -> Result<bool> {
    let mut backoff = StorageBackoff::default();
    loop {
        match storage.check_ready().await {
            Ok(()) => return Ok(true),
            Err(error) if error.is_transient() => {
                storage_errors::count("check_ready");
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "storage not reachable at start; retrying");
                tokio::select! {
                    () = &mut signal => return Ok(false),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => {
                storage_errors::count("check_ready");
                return Err(error);
            }
        }
    }
}

/// The claim loop of one group of slots: fills its free slots (running and prefetch)
/// with batched claims from its queues.
struct Claimer {
    storage: Arc<dyn Storage>,
    config: WorkerConfig,
    group: ClaimGroup,
    slots: Arc<Semaphore>,
    executor: Arc<Executor>,
    /// The run times of this group's handlers, for the automatic prefetch.
    handler_times: Arc<HandlerTimes>,
}

impl Claimer {
    async fn run(self, stop: CancellationToken) {
        let mut wakeups = self.subscribe().await;
        let mut backoff = StorageBackoff::default();
        let mut ahead = ClaimAhead::default();
        loop {
            let free = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                free = self.free_slots(self.prefetch(&mut ahead)) => free,
            };
            let Some(free) = free else {
                tracing::error!(queues = ?self.group.queues, "the worker's slots were closed; these queues are no longer claimed");
                return;
            };
            // A job handed back while this waited may have lowered the prefetch.
            let permits = self.permits_to_claim(free, self.prefetch(&mut ahead));
            if permits.is_empty() {
                continue;
            }
            let wanted = permits.len();
            // Backpressure from the flusher: no claim while too many outcomes wait. Checked
            // right before the claim (holding its permits), so outcomes queued while the
            // slots were awaited count too.
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = self.executor.held.wait_for_unwritten_at_most(self.config.unwritten_outcome_limit()) => {}
            }
            // Every lease of this claim ends no earlier than this, by this worker's clock.
            let sent_at = Instant::now();
            let lease_deadline = sent_at + self.config.lease;
            let claimed = match self.claim(wanted).await {
                Ok(claimed) => {
                    backoff.reset();
                    ahead.observe(sent_at.elapsed(), claimed.jobs.len() >= wanted, &self.handler_times);
                    claimed
                }
                Err(error) => {
                    drop(permits);
                    storage_errors::count("claim");
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "claiming failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            };
            let got = claimed.jobs.len();
            // A rate limit that held jobs back tells when it lets the next one start (at
            // least 1 ms, so that a storage answering zero cannot make this loop spin).
            let rate_limited =
                claimed.rate_limited_for.map(|wait| wait.max(Duration::from_millis(1)).min(self.config.poll_interval));
            for (record, permit) in claimed.jobs.into_iter().zip(permits) {
                let executor = Arc::clone(&self.executor);
                // Boxed: the task then moves a pointer, not the job's whole future
                // (about 1.8 KB), in and out of its cell (memory drain about 1.05x).
                tokio::spawn(Box::pin(async move {
                    executor.run(Claimed { record, lease_deadline }).await;
                    drop(permit);
                }));
            }
            if got < wanted {
                tokio::select! {
                    () = wait_for_work(&mut wakeups, &self.group.queues) => {}
                    () = tokio::time::sleep(rate_limited.unwrap_or(self.config.poll_interval)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }

    async fn subscribe(&self) -> Option<Wakeups> {
        match self.storage.subscribe().await {
            Ok(wakeups) => Some(wakeups),
            Err(error) => {
                storage_errors::count("subscribe");
                tracing::warn!(%error, "cannot subscribe to wake-ups; polling only");
                None
            }
        }
    }

    /// Jobs to claim ahead of the free running slots now.
    fn prefetch(&self, ahead: &mut ClaimAhead) -> usize {
        match self.group.prefetch {
            Prefetch::Auto => ahead.prefetch(self.group.concurrency, &self.handler_times),
            Prefetch::Fixed(jobs) => jobs,
        }
    }

    /// Jobs to keep unused of the group's permits, one for each job it may ever hold
    /// (its held limit), with `prefetch` jobs claimed ahead: those beyond
    /// `concurrency + prefetch`.
    fn unused_permits(&self, prefetch: usize) -> usize {
        self.group.held_limit().saturating_sub(self.group.concurrency.saturating_add(prefetch))
    }

    /// Waits until enough slots are free to be worth a claim with `prefetch` jobs claimed
    /// ahead (one without a prefetch, half the prefetch with one), then takes every free
    /// permit; `None` if the group's permits are gone.
    async fn free_slots(&self, prefetch: usize) -> Option<OwnedSemaphorePermit> {
        let worth_a_claim = self.unused_permits(prefetch).saturating_add((prefetch / 2).max(1));
        let mut free =
            Arc::clone(&self.slots).acquire_many_owned(u32::try_from(worth_a_claim).unwrap_or(u32::MAX)).await.ok()?;
        while let Ok(more) = Arc::clone(&self.slots).try_acquire_owned() {
            free.merge(more);
        }
        Some(free)
    }

    /// Splits the free permits into one per job to claim with `prefetch` jobs claimed
    /// ahead (up to `concurrency + prefetch` held), giving the unused ones back.
    fn permits_to_claim(&self, mut free: OwnedSemaphorePermit, prefetch: usize) -> Vec<OwnedSemaphorePermit> {
        let unused = self.unused_permits(prefetch);
        if unused >= free.num_permits() {
            return Vec::new();
        }
        drop(free.split(unused));
        let mut permits = Vec::with_capacity(free.num_permits());
        while let Some(one) = free.split(1) {
            permits.push(one);
        }
        permits
    }

    async fn claim(&self, limit: usize) -> Result<crate::PacedClaim> {
        let params = ClaimParams::new(self.group.queues.iter().cloned(), limit)
            .lease(self.config.lease)
            .worker_id(self.config.worker_id.clone());
        self.storage.claim_paced(params).await
    }
}

async fn wait_for_work(wakeups: &mut Option<Wakeups>, queues: &[String]) {
    if let Some(receiver) = wakeups
        && receiver.wait_for(queues).await
    {
        return;
    }
    // No wake-ups (or their sender is gone): rely on the poll interval.
    *wakeups = None;
    std::future::pending().await
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM: pass it to [`Worker::run_until`].
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
