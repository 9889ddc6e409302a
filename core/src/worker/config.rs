//! Worker settings and their builder.

mod debug;

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use crate::{
    Error, Periodic, PeriodicScheduler, Result, Retention, StateMap, Storage,
    middleware::Middleware,
    validate_queue_name,
    worker::{Worker, claim_ahead::AUTO_PREFETCH_MAX},
};

/// Settings of one worker; see [`WorkerBuilder`] for each one's meaning and default.
#[derive(Clone, Debug)]
pub(crate) struct WorkerConfig {
    pub(crate) worker_id: String,
    pub(crate) queues: Vec<String>,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: Prefetch,
    /// Queues with slots of their own ([`WorkerBuilder::queue_concurrency`]).
    pub(crate) queue_concurrency: BTreeMap<String, usize>,
    pub(crate) poll_interval: Duration,
    pub(crate) lease: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) maintenance_interval: Duration,
    pub(crate) prune_interval: Duration,
    pub(crate) queue_gauge_interval: Duration,
    pub(crate) throughput_interval: Duration,
    pub(crate) retention: Retention,
    pub(crate) flush_batch: usize,
    pub(crate) final_flush_timeout: Duration,
    pub(crate) leader_lease: Duration,
    pub(crate) leader_eligible: bool,
    pub(crate) periodic: Vec<Periodic>,
}

impl WorkerConfig {
    /// The settings of a worker nobody configured (each is documented on its
    /// [`WorkerBuilder`] method).
    fn defaults() -> Self {
        let lease = Duration::from_secs(30);
        WorkerConfig {
            worker_id: format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple()),
            queues: vec![crate::job::DEFAULT_QUEUE.to_owned()],
            concurrency: 10,
            prefetch: Prefetch::Auto,
            queue_concurrency: BTreeMap::new(),
            poll_interval: Duration::from_secs(1),
            lease,
            heartbeat_interval: lease / 3,
            shutdown_grace: Duration::from_secs(10),
            maintenance_interval: Duration::from_secs(1),
            prune_interval: Duration::from_secs(60),
            queue_gauge_interval: Duration::from_secs(5),
            throughput_interval: Duration::from_secs(5),
            retention: Retention::default(),
            flush_batch: 1000,
            final_flush_timeout: Duration::from_secs(10),
            leader_lease: Duration::from_secs(15),
            leader_eligible: true,
            periodic: Vec::new(),
        }
    }

    /// While more outcomes than this wait to be written, the worker claims nothing: two
    /// report batches (one being written, one filling).
    pub(crate) fn unwritten_outcome_limit(&self) -> usize {
        self.flush_batch.saturating_mul(2)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.worker_id.is_empty() || self.worker_id.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(
                format!(
                    "the worker id {:?} must be non-empty, without NUL or other control characters",
                    self.worker_id
                )
                .into(),
            ));
        }
        if self.queues.is_empty() {
            return Err(Error::InvalidArgument("a worker needs at least one queue".into()));
        }
        for queue in &self.queues {
            validate_queue_name(queue)?;
        }
        if self.concurrency == 0 {
            return Err(Error::InvalidArgument("concurrency must be at least 1".into()));
        }
        for (queue, &concurrency) in &self.queue_concurrency {
            if !self.queues.contains(queue) {
                return Err(Error::InvalidArgument(
                    format!("queue {queue:?} has a concurrency of its own but is not among the worker's queues").into(),
                ));
            }
            if concurrency == 0 {
                return Err(Error::InvalidArgument(
                    format!("the concurrency of queue {queue:?} must be at least 1").into(),
                ));
            }
        }
        let groups = self.claim_groups();
        let held = groups.iter().map(ClaimGroup::held_limit).fold(0, usize::saturating_add);
        // Shutdown waits for each group's slots with one `acquire_many(u32)`.
        let largest = groups.iter().map(ClaimGroup::held_limit).max().unwrap_or_default();
        if held > tokio::sync::Semaphore::MAX_PERMITS || u32::try_from(largest).is_err() {
            return Err(Error::InvalidArgument(
                format!(
                    "concurrency + prefetch must be at most {} (each queue's own concurrency too), \
                     and all of them together at most {}",
                    u32::MAX,
                    tokio::sync::Semaphore::MAX_PERMITS
                )
                .into(),
            ));
        }
        if self.lease < Duration::from_millis(100) {
            return Err(Error::InvalidArgument("the lease must be at least 100 ms".into()));
        }
        if self.leader_lease < Duration::from_millis(100) {
            return Err(Error::InvalidArgument("the leader lease must be at least 100 ms".into()));
        }
        for (name, value) in [
            ("poll interval", self.poll_interval),
            ("maintenance interval", self.maintenance_interval),
            ("prune interval", self.prune_interval),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidArgument(format!("the {name} must not be zero").into()));
            }
        }
        Ok(())
    }

    /// The worker's slots, split by who may use them: the shared slots first (the queues
    /// without a concurrency of their own; absent when there are none), then each queue
    /// with slots of its own, in the order of [`WorkerConfig::queues`].
    pub(crate) fn claim_groups(&self) -> Vec<ClaimGroup> {
        // A queue listed twice is served once.
        let mut seen = HashSet::new();
        let queues: Vec<&String> = self.queues.iter().filter(|queue| seen.insert(queue.as_str())).collect();
        let shared: Vec<String> = queues
            .iter()
            .filter(|queue| !self.queue_concurrency.contains_key(**queue))
            .map(|queue| (*queue).clone())
            .collect();
        let shared = (!shared.is_empty()).then_some(ClaimGroup {
            queues: shared,
            concurrency: self.concurrency,
            prefetch: self.prefetch,
        });
        let own = queues.into_iter().filter_map(|queue| {
            let concurrency = *self.queue_concurrency.get(queue)?;
            Some(ClaimGroup { queues: vec![queue.clone()], concurrency, prefetch: Prefetch::Fixed(0) })
        });
        shared.into_iter().chain(own).collect()
    }

    /// Jobs this worker runs at once, every group of slots together.
    pub(crate) fn total_concurrency(&self) -> usize {
        self.claim_groups().iter().map(|group| group.concurrency).fold(0, usize::saturating_add)
    }

    /// The scheduler of this worker's periodic jobs (checked: unique names, valid jobs).
    /// A tick counts as missed when it is dealt with more than two leader leases after
    /// its time: longer than a failover takes.
    pub(crate) fn periodic_scheduler(&self) -> Result<PeriodicScheduler> {
        PeriodicScheduler::new(self.periodic.clone(), self.leader_lease.saturating_mul(2))
    }
}

/// Slots of a worker and the queues whose jobs may take them; each group has a claim
/// loop of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClaimGroup {
    pub(crate) queues: Vec<String>,
    /// Jobs of these queues run at once.
    pub(crate) concurrency: usize,
    /// Jobs of these queues claimed ahead of free slots.
    pub(crate) prefetch: Prefetch,
}

impl ClaimGroup {
    /// Jobs the group holds at most: running, and prefetched waiting to run.
    pub(crate) fn held_limit(&self) -> usize {
        let ahead = match self.prefetch {
            Prefetch::Auto => AUTO_PREFETCH_MAX,
            Prefetch::Fixed(jobs) => jobs,
        };
        self.concurrency.saturating_add(ahead)
    }
}

/// How many jobs a group of slots claims ahead of its free running slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prefetch {
    /// As many as pays, from what the worker observes (see [`super::claim_ahead`]).
    Auto,
    /// This many ([`WorkerBuilder::prefetch`]).
    Fixed(usize),
}

/// Builds a [`Worker`]. Start from [`Worker::builder`].
#[must_use]
pub struct WorkerBuilder {
    storage: Arc<dyn Storage>,
    states: StateMap,
    middleware: Vec<Arc<dyn Middleware>>,
    config: WorkerConfig,
}

impl WorkerBuilder {
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage, states: StateMap::new(), middleware: Vec::new(), config: WorkerConfig::defaults() }
    }

    /// Queues to work (default: `["default"]`).
    pub fn queues<Q: Into<String>>(mut self, queues: impl IntoIterator<Item = Q>) -> Self {
        self.config.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Jobs run at once (default: 10), in the slots the worker's queues share: every
    /// queue but those given slots of their own with [`WorkerBuilder::queue_concurrency`].
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency;
        self
    }

    /// Gives `queue` slots of its own: up to `concurrency` of its jobs run at once, in
    /// slots no other queue uses, and it never uses the shared ones
    /// ([`WorkerBuilder::concurrency`]). So slow jobs in one queue cannot keep another
    /// waiting: give the queue that must not wait slots of its own (or each queue).
    ///
    /// Each queue with slots of its own is claimed on its own: one claim loop each, as
    /// many jobs as it has free slots, without [`WorkerBuilder::prefetch`] (which
    /// applies to the shared slots only); so each such queue adds a claim per poll
    /// interval and per wake-up while it is idle. The worker runs up to each queue's
    /// own concurrency plus, if any queue is left without slots of its own, the shared
    /// `concurrency`. `queue` must be one of [`WorkerBuilder::queues`]
    /// ([`Worker::run_until`] fails at start otherwise); a second call for the same
    /// queue replaces the first.
    ///
    /// This limits one worker. A limit every worker obeys together is stored in
    /// storage instead ([`crate::Admin::set_queue_limits`], see [`crate::limits`]); the
    /// README's "Flow control" section has both.
    ///
    /// ```
    /// # fn example(storage: impl haul_core::Storage) {
    /// // `reports` jobs take minutes; `mail` must go out within seconds.
    /// let worker = haul_core::Worker::builder(storage)
    ///     .queues(["reports", "mail"])
    ///     .concurrency(4) // the slots `reports` takes
    ///     .queue_concurrency("mail", 2) // two slots only `mail` takes
    ///     .build();
    /// # }
    /// ```
    pub fn queue_concurrency(mut self, queue: impl Into<String>, concurrency: usize) -> Self {
        self.config.queue_concurrency.insert(queue.into(), concurrency);
        self
    }

    /// Jobs claimed ahead of free slots (default: automatic, see below); `prefetch(0)`
    /// claims only for free slots.
    ///
    /// With a prefetch, the worker keeps up to `concurrency + prefetch` jobs of the
    /// shared slots claimed (queues with slots of their own,
    /// [`WorkerBuilder::queue_concurrency`], do not prefetch):
    /// the ones beyond the running `concurrency` wait in the worker, in claim order,
    /// and start as slots free up. It claims again once half the prefetch has been
    /// used, so each claim fetches many jobs in one round trip, which is what lets
    /// short jobs run at the storage's batch speed.
    ///
    /// A prefetched job is claimed in storage while it waits: its attempt has begun,
    /// its lease is extended by heartbeats, and no other worker can run it. At
    /// shutdown, prefetched jobs that have not started are handed back at once without
    /// spending their attempt.
    ///
    /// Without this setting the prefetch follows one rule: while its claims come back
    /// full (its queues have a backlog), the worker claims ahead as many jobs as its
    /// shared slots finish in two claim round trips,
    /// `2 × concurrency × round trip / handler time` rounded down, at most 8 per slot and
    /// 256 in all, from the
    /// running averages of its claims' round trips and its handlers' run times (each
    /// new sample weighs a quarter). Until a handler has finished, it claims nothing
    /// ahead. So many short jobs are claimed in large batches and wait about two round
    /// trips for a slot, while jobs much longer than a round trip (100 ms jobs on a
    /// storage answering in 1 ms, with fewer than 50 slots) are not claimed ahead at all.
    /// Long jobs queued behind short ones can be claimed ahead as if they were short: a
    /// job claimed ahead that has not started within 1 s is handed back (its attempt not
    /// spent, [`crate::JobEventKind::HandedBack`]) for any worker to take, and the
    /// averages start over, so that nothing is claimed ahead until a handler has
    /// finished again. A job claimed ahead counts against its queue's stored
    /// concurrency limit ([`crate::limits`]) while it waits. Set a fixed prefetch to
    /// override the rule.
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.config.prefetch = Prefetch::Fixed(prefetch);
        self
    }

    /// Registers application state that handlers receive as `State<T>` (a second value
    /// of the same type replaces the first).
    ///
    /// Every registered job kind whose default queue this worker serves must find the
    /// state its `State<T>` arguments take: otherwise [`Worker::run_until`] fails at
    /// start with [`Error::MissingState`] naming the kind and the type. A job enqueued
    /// to another queue than its kind's default is not checked at start; a missing
    /// state fails its attempts instead.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Registers application state the caller keeps a handle to; handlers receive it
    /// as `State<T>` (not `State<Arc<T>>`). Checked at start like [`WorkerBuilder::state`].
    pub fn shared_state<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.states.insert_shared(value);
        self
    }

    /// How often to look for work when no wake-up arrives (default: 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// How long a claim lasts without a heartbeat (default: 30 s); heartbeats are sent
    /// every third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self.config.heartbeat_interval = lease / 3;
        self
    }

    /// How long running jobs may take to finish after shutdown begins before they are
    /// stopped and handed back (default: 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// How often due jobs are promoted and expired leases rescued (default: 1 s), while
    /// this worker is the leader (see [`WorkerBuilder::leader_lease`]).
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.config.maintenance_interval = interval;
        self
    }

    /// How often the leader samples the job counts of every queue into the gauges
    /// `haul_queue_jobs{queue,state}` (every state, zero when no job is in it) and
    /// `haul_queue_paused{queue}` (1 or 0) (default: 5 s).
    ///
    /// Only the leader (see [`WorkerBuilder::leader_lease`]) samples: one
    /// [`crate::Admin::counts`] call per interval, however many workers run. It samples at
    /// once when it begins to lead, then every interval. A worker that stops leading
    /// stops sampling and its gauges keep the last values it set, so with several
    /// workers read the gauges of the process that leads now (its
    /// `haul_worker_is_leader` is 1). A queue that leaves the counts (no job left, not
    /// paused) is set to zero once.
    ///
    /// A sample that takes long spaces out the next ones: after a sample that took `t`,
    /// the next comes no sooner than `10 × t` (when that is longer than the interval), so
    /// sampling keeps storage busy at most a tenth of one connection's time. That matters
    /// on PostgreSQL, where each sample counts every stored job (one `GROUP BY` over the
    /// jobs table, finished jobs kept for retention included: about 0.2 s for a million
    /// rows on a small server); the memory and Redis backends keep counters. Zero turns
    /// the gauges off.
    pub fn queue_gauge_interval(mut self, interval: Duration) -> Self {
        self.config.queue_gauge_interval = interval;
        self
    }

    /// How often this worker adds the attempts it ended (completed and failed, per
    /// queue) to storage's per-minute throughput, which `haul stats` and the dashboard
    /// show (default: 5 s; zero turns it off).
    ///
    /// One [`crate::Storage::record_throughput`] call per interval and worker, off the
    /// claim and report path; counting an attempt takes no lock. Each interval's counts
    /// are filed under the minute the call is made in, so an attempt may be shown up to
    /// one interval late. The counts are for a dashboard, not for billing: a worker
    /// that dies loses at most one interval's counts, a call that takes longer than an
    /// interval is given up (its counts lost), and a failed call's counts are added to
    /// the next interval's (counted twice if storage applied the call but its answer was
    /// lost). The worker writes once more when it stops.
    pub fn throughput_interval(mut self, interval: Duration) -> Self {
        self.config.throughput_interval = interval;
        self
    }

    /// How long finished jobs are kept, and how often they are pruned (defaults:
    /// [`Retention::default`], every 60 s).
    ///
    /// The leader prunes: it deletes in batches of 10,000 and repeats until a batch
    /// comes back short (nothing older than the retention is left), then waits for the
    /// next prune interval, so pruning keeps up with any completion rate.
    ///
    /// A retention of zero for completed jobs (`Retention::default().completed(Duration::ZERO)`)
    /// keeps none: this worker deletes each job it completes in the same storage call
    /// that writes the completion, instead of marking it completed for the leader to
    /// prune. Nothing of such a job stays to be listed, counted or retried; on
    /// PostgreSQL this also makes each completion cheaper (see the README's
    /// *Performance*). Kept and pruned by the retention as before: a completed job with
    /// a uniqueness key (a key may block finished jobs, as a periodic schedule's ticks
    /// do, until the job is pruned), a job whose handler committed its completion itself
    /// (PostgreSQL's job transaction), and discarded and cancelled jobs.
    ///
    /// ```
    /// # fn example(storage: impl haul_core::Storage) {
    /// use std::time::Duration;
    /// use haul_core::Retention;
    ///
    /// // No history of completed jobs; failures kept a week for a look.
    /// let keep_failures_only = Retention::default().completed(Duration::ZERO);
    /// let worker = haul_core::Worker::builder(storage)
    ///     .retention(keep_failures_only, Duration::from_secs(60))
    ///     .build();
    /// # }
    /// ```
    pub fn retention(mut self, retention: Retention, prune_interval: Duration) -> Self {
        self.config.retention = retention;
        self.config.prune_interval = prune_interval;
        self
    }

    /// The longest a namespace stays without a leader after its leader dies (default:
    /// 15 s). Each worker renews its registry record and, if it may lead, asks for the
    /// lead every quarter of it; the record lives the whole lease, a granted lead three
    /// quarters of it.
    ///
    /// Every running worker records itself in storage (see [`crate::Admin::list_workers`])
    /// and, unless it opted out with [`WorkerBuilder::leader_eligible`], tries to become
    /// the namespace's one leader. Only the leader promotes due jobs, rescues expired
    /// leases and prunes old jobs. The rule:
    ///
    /// - a leader that shuts down gives the lead up at once: another worker takes it at
    ///   its next try, within a quarter of its own leader lease;
    /// - a leader that dies (or stops reaching storage) keeps the lead until it runs
    ///   out, three quarters of a lease after its last renewal; another worker takes it
    ///   at its next try, within a quarter of a lease after that: so within one leader
    ///   lease of the death (15 s with the default), and maintenance with it;
    /// - a leader stops acting as leader when its lead runs out by its own clock,
    ///   counted from when it sent the renewal, which is never later than storage's end
    ///   of the lead: no other worker can be elected before it stops.
    ///
    /// A shorter lease fails over faster and costs two storage calls per worker per
    /// quarter of it. Workers of one namespace should use the same lease. It must be at
    /// least 100 ms.
    pub fn leader_lease(mut self, lease: Duration) -> Self {
        self.config.leader_lease = lease;
        self
    }

    /// Whether this worker may become the leader (default: true).
    ///
    /// A worker that may not still records itself in the registry and runs jobs, but
    /// never promotes, rescues or prunes: leave at least one eligible worker running
    /// per namespace, or due jobs stay scheduled and expired leases are never rescued.
    pub fn leader_eligible(mut self, eligible: bool) -> Self {
        self.config.leader_eligible = eligible;
        self
    }

    /// Adds a periodic job: while this worker leads, it enqueues `periodic`'s job at each
    /// tick of its schedule, once per tick across every worker and leader change (see
    /// [`crate::periodic`]).
    ///
    /// Declare the same periodic jobs on every worker that may lead: the leader runs the
    /// ones it was built with. A worker that never leads
    /// ([`WorkerBuilder::leader_eligible`]) never enqueues them. Two periodic jobs of one
    /// worker must not share a name ([`Worker::run_until`] fails at start otherwise).
    /// The job's queue need not be one this worker serves.
    pub fn periodic(mut self, periodic: Periodic) -> Self {
        self.config.periodic.push(periodic);
        self
    }

    /// The id recorded on claimed jobs, on this worker's registry record and on its
    /// leadership (default: process id and a random suffix). Two workers running at
    /// once on one namespace must not share it.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.config.worker_id = worker_id.into();
        self
    }

    /// Adds a job middleware (see [`crate::middleware`]): every attempt's handler runs
    /// inside it. Middleware run in the order added, the first outermost; a job's
    /// timeout, cancellation and panic handling cover the whole chain.
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Builds the worker. Settings are checked when it starts running.
    pub fn build(self) -> Worker {
        Worker::from_parts(self.storage, Arc::new(self.states), self.middleware.into(), self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(queues: &[&str], own: &[(&str, usize)]) -> WorkerConfig {
        let mut config = WorkerConfig::defaults();
        config.queues = queues.iter().map(|queue| (*queue).to_owned()).collect();
        config.prefetch = Prefetch::Fixed(6);
        config.queue_concurrency = own.iter().map(|(queue, n)| ((*queue).to_owned(), *n)).collect();
        config
    }

    fn group(queues: &[&str], concurrency: usize, prefetch: usize) -> ClaimGroup {
        ClaimGroup {
            queues: queues.iter().map(|queue| (*queue).to_owned()).collect(),
            concurrency,
            prefetch: Prefetch::Fixed(prefetch),
        }
    }

    #[test]
    fn the_shared_slots_come_first_then_each_queue_with_its_own_in_the_queues_order() {
        let config = config(&["a", "mail", "b", "sms"], &[("sms", 3), ("mail", 2)]);
        assert_eq!(
            config.claim_groups(),
            vec![group(&["a", "b"], 10, 6), group(&["mail"], 2, 0), group(&["sms"], 3, 0)]
        );
        assert_eq!(config.total_concurrency(), 15);
    }

    #[test]
    fn by_default_the_shared_slots_prefetch_automatically_and_a_queue_with_its_own_does_not() {
        let mut config = config(&["a", "mail"], &[("mail", 2)]);
        config.prefetch = WorkerConfig::defaults().prefetch;
        let groups = config.claim_groups();
        assert_eq!(groups[0].prefetch, Prefetch::Auto);
        assert_eq!(groups[0].held_limit(), 10 + AUTO_PREFETCH_MAX);
        assert_eq!(groups[1], group(&["mail"], 2, 0));
    }

    #[test]
    fn a_queue_listed_twice_is_served_once_and_without_a_shared_queue_there_are_no_shared_slots() {
        let config = config(&["mail", "sms", "mail"], &[("sms", 3), ("mail", 2)]);
        assert_eq!(config.claim_groups(), vec![group(&["mail"], 2, 0), group(&["sms"], 3, 0)]);
        assert_eq!(config.total_concurrency(), 5);
        let config = super::tests::config(&["a", "a"], &[]);
        assert_eq!(config.claim_groups(), vec![group(&["a"], 10, 6)]);
    }
}
