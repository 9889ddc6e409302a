//! The jobs, their indexes, and the one way to change a stored job.
//!
//! A record is only ever changed through [`JobMut::change`], which takes the job out
//! of its index, applies the change, and puts it back under its new key. Every state
//! transition of [`crate::lifecycle`] goes through it, so the indexes always agree
//! with the records.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
};

use foldhash::HashMap;
use haul_core::{
    Error, JobFilter, JobId, JobRecord, JobState, KEY_LIMIT_SCAN, LeaseToken, ListParams, QueueCounts, QueueLimits,
    Result, Timestamp, Unique,
};

use crate::{
    cluster::Cluster,
    index::{AvailableKey, FINISHED_STATES, Index, QueueIndex, TimeKey, state_slot},
    periodic::Periodics,
    rate::{RateLogs, full_until_unlogged},
};

/// Every job of one storage, with its indexes.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// The records by id. Ids are UUIDv7, so id order is creation order: listing
    /// follows it, and claims (mostly FIFO) walk neighbouring records.
    jobs: BTreeMap<JobId, JobRecord>,
    /// The secondary indexes.
    index: Index,
    /// Where lease tokens come from.
    tokens: TokenSource,
    /// Jobs by uniqueness key (a key never changes once a job is stored).
    unique: HashMap<String, BTreeSet<JobId>>,
    /// The worker registry and the leadership, under the same lock as the jobs.
    pub(crate) cluster: Cluster,
    /// The records of periodic schedules, under the same lock as the jobs.
    pub(crate) periodic: Periodics,
    /// The per-minute throughput samples, under the same lock as the jobs.
    pub(crate) throughput: crate::throughput::Throughput,
    /// The queues' stored limits (never unlimited ones), in queue order. Changed
    /// through [`Store::set_limits`], which keeps `rates` in step.
    pub(crate) limits: BTreeMap<String, QueueLimits>,
    /// The logged starts of the queues with rate limits.
    rates: RateLogs,
}

/// What a claim may take (see [`Store::claimable`]).
#[derive(Debug, Default)]
pub(crate) struct Claimable {
    /// The ids of the jobs to claim, in claim order.
    pub(crate) ids: Vec<JobId>,
    /// When the earliest rate limit that held back a job the claim would otherwise have
    /// taken lets one more start (`None`: no rate limit held such a job back).
    pub(crate) rate_limited_until: Option<Timestamp>,
}

impl Claimable {
    /// The claim of `keys` (what the claim takes of at most `limit`), given the jobs
    /// rate limits `held` back. A held-back job counts if the claim would otherwise
    /// have taken it: the claim has room left, or the job comes before its last one.
    fn of(keys: Vec<AvailableKey>, limit: usize, held: &[Held]) -> Self {
        let cutoff = if keys.len() < limit { None } else { keys.last().copied() };
        let rate_limited_until =
            held.iter().filter(|held| cutoff.is_none_or(|last| held.entry < last)).map(|held| held.until).min();
        Self { ids: keys.into_iter().map(|(_, _, id)| id).collect(), rate_limited_until }
    }
}

/// What one queue may give a claim (see [`Store::takeable`]).
#[derive(Debug, Default)]
struct Takeable {
    /// The jobs it may give, in claim order.
    keys: Vec<AvailableKey>,
    /// The jobs a rate limit held back that would have fitted every other limit, in
    /// claim order. A job is noted only if its limit frees up sooner than that of the
    /// job noted before it (a later job counts only when an earlier one does).
    held: Vec<Held>,
}

impl Takeable {
    /// Notes that a rate limit full until `until` held back the job at `entry`.
    fn hold(&mut self, entry: AvailableKey, until: Timestamp) {
        if self.held.last().is_none_or(|last| until < last.until) {
            self.held.push(Held { entry, until });
        }
    }
}

/// A job a rate limit held back, and when that limit lets one more start.
#[derive(Debug)]
struct Held {
    entry: AvailableKey,
    until: Timestamp,
}

/// Lease tokens: a random prefix per store and a counter, so every claim of this
/// store gets a distinct token without asking the OS for randomness each time.
/// Tokens fence a claim against later claims of the same job; they are not secrets.
#[derive(Debug)]
struct TokenSource {
    prefix: u64,
    next: u64,
}

impl Default for TokenSource {
    fn default() -> Self {
        Self { prefix: LeaseToken::new().0.as_u64_pair().1, next: 0 }
    }
}

/// Write access to one stored job that keeps the indexes in step.
pub(crate) struct JobMut<'a> {
    job: &'a mut JobRecord,
    index: &'a mut Index,
}

impl JobMut<'_> {
    /// The job as stored.
    pub(crate) fn get(&self) -> &JobRecord {
        self.job
    }

    /// Changes the job and re-indexes it under its new state and keys.
    pub(crate) fn change<R>(&mut self, change: impl FnOnce(&mut JobRecord) -> R) -> R {
        self.index.remove(self.job);
        let result = change(self.job);
        self.index.insert(self.job);
        result
    }
}

impl Store {
    /// Whether a job has this id.
    pub(crate) fn contains(&self, id: JobId) -> bool {
        self.jobs.contains_key(&id)
    }

    /// The job with this id.
    pub(crate) fn get(&self, id: JobId) -> Option<&JobRecord> {
        self.jobs.get(&id)
    }

    /// Write access to the job with this id.
    pub(crate) fn job_mut(&mut self, id: JobId) -> Option<JobMut<'_>> {
        let job = self.jobs.get_mut(&id)?;
        Some(JobMut { job, index: &mut self.index })
    }

    /// Stores a new job. The caller has checked that its id is unused.
    pub(crate) fn insert(&mut self, job: JobRecord) {
        debug_assert!(!self.jobs.contains_key(&job.id), "job {} inserted twice", job.id);
        self.index.insert(&job);
        if let Some(key) = &job.unique_key {
            self.unique.entry(key.clone()).or_default().insert(job.id);
        }
        self.jobs.insert(job.id, job);
    }

    /// The oldest stored job that blocks a new job with `unique`, if any.
    pub(crate) fn blocking(&self, unique: &Unique, now: Timestamp) -> Option<JobId> {
        let ids = self.unique.get(&unique.key)?;
        ids.iter().copied().find(|id| self.jobs.get(id).is_some_and(|job| unique.is_blocked_by(job, now)))
    }

    /// A lease token never issued before by this store.
    pub(crate) fn new_token(&mut self) -> LeaseToken {
        self.tokens.next = self.tokens.next.wrapping_add(1);
        LeaseToken(uuid::Uuid::from_u64_pair(self.tokens.prefix, self.tokens.next))
    }

    /// Deletes a job for good.
    pub(crate) fn delete(&mut self, id: JobId) -> Option<JobRecord> {
        let job = self.jobs.remove(&id)?;
        self.index.remove(&job);
        self.index.forget_if_unused(&job.queue);
        if let Some(key) = &job.unique_key
            && let Some(ids) = self.unique.get_mut(key)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.unique.remove(key);
            }
        }
        Some(job)
    }

    /// The ids of the jobs `filter` matches whose state `accepts`, in id order.
    pub(crate) fn matching(&self, filter: &JobFilter, accepts: impl Fn(JobState) -> bool) -> Vec<JobId> {
        self.jobs.values().filter(|job| accepts(job.state) && filter.matches(job)).map(|job| job.id).collect()
    }

    /// Deletes a job that is not running (the operators' delete).
    pub(crate) fn delete_idle(&mut self, id: JobId) -> Result<()> {
        let state = self.get(id).ok_or(Error::NotFound(id))?.state;
        if state == JobState::Running {
            return Err(Error::InvalidState {
                id,
                state,
                operation: "delete",
                expected: "scheduled, available, retryable, completed, discarded or cancelled",
            });
        }
        self.delete(id);
        Ok(())
    }

    /// Pauses or resumes `queue` (a valid name, with or without jobs).
    pub(crate) fn set_paused(&mut self, queue: &str, paused: bool) {
        match self.index.queues.get_mut(queue) {
            Some(entry) => entry.paused = paused,
            None if paused => {
                self.index.queues.insert(queue.to_owned(), QueueIndex { paused, ..QueueIndex::default() });
            }
            None => {}
        }
        self.index.forget_if_unused(queue);
    }

    /// The ids of up to `limit` available jobs of the unpaused `queues` a claim at `now`
    /// may take, in claim order, no more of a queue than its limits leave room for (see
    /// [`Store::takeable`]), and when a rate limit that held back a job the claim would
    /// otherwise have taken lets one more start.
    pub(crate) fn claimable(&self, queues: &[String], limit: usize, now: Timestamp) -> Claimable {
        let mut open = queues.iter().filter_map(|name| {
            let queue = self.index.queues.get(name.as_str())?;
            let room = self.room(name, queue).min(limit);
            (!queue.paused && room > 0 && !queue.available.is_empty()).then_some((name.as_str(), queue, room))
        });
        let (Some(first), second) = (open.next(), open.next()) else { return Claimable::default() };
        let Some(second) = second else {
            let (name, queue, room) = first;
            let Takeable { keys, held } = self.takeable(name, queue, room, now);
            return Claimable::of(keys, limit, &held);
        };
        // Several queues: merge what each may give. A queue named twice gives the same
        // keys twice, which `dedup` removes once sorted. Any claim-order prefix of what
        // a queue may give is within its limits too, so truncating the merge is safe.
        let mut keys: Vec<AvailableKey> = Vec::new();
        let mut held: Vec<Held> = Vec::new();
        for (name, queue, room) in [first, second].into_iter().chain(open) {
            let takeable = self.takeable(name, queue, room, now);
            keys.extend(takeable.keys);
            held.extend(takeable.held);
        }
        keys.sort_unstable();
        keys.dedup();
        keys.truncate(limit);
        Claimable::of(keys, limit, &held)
    }

    /// How many more jobs of `queue` may run: its concurrency limit minus its running
    /// jobs, or no bound without a limit.
    fn room(&self, name: &str, queue: &QueueIndex) -> usize {
        let Some(limit) = self.limits.get(name).and_then(|limits| limits.concurrency) else {
            return usize::MAX;
        };
        let running = queue.counts[state_slot(JobState::Running)];
        usize::try_from(u64::from(limit).saturating_sub(running)).unwrap_or(usize::MAX)
    }

    /// The keys of up to `room` available jobs of `queue` (named `name`) a claim at
    /// `now` may take, in claim order, and the jobs a rate limit held back. Without a
    /// limit per key or a rate limit, the first `room`. With a limit per key, the claim
    /// looks at no more than [`KEY_LIMIT_SCAN`] jobs and takes a job with a limit key
    /// only while the key's running jobs and the jobs of the key it took before are
    /// under the limit; a job without a key is not capped per key. With a rate limit,
    /// it takes a job only while the queue's (and, with a rate limit per key, the job's
    /// key's) logged starts in the window and the jobs it took before are under the
    /// limit; once the queue's rate is full it takes nothing more.
    fn takeable(&self, name: &str, queue: &QueueIndex, room: usize, now: Timestamp) -> Takeable {
        let Some(limits) = self.limits.get(name).filter(|limits| limits.limits_keys() || limits.rate.is_some()) else {
            return Takeable { keys: queue.available.iter().take(room).copied().collect(), held: Vec::new() };
        };
        let scan = if limits.limits_keys() { KEY_LIMIT_SCAN } else { usize::MAX };
        let mut takeable = Takeable::default();
        let mut taken_per_key: HashMap<&str, u64> = HashMap::default();
        for &entry in queue.available.iter().take(scan) {
            if takeable.keys.len() >= room {
                break;
            }
            let key = if limits.limits_keys() { self.limit_key_of(entry) } else { None };
            let taken_of_key = key.map_or(0, |key| taken_per_key.get(key).copied().unwrap_or(0));
            if let (Some(key), Some(per_key)) = (key, limits.key_concurrency)
                && queue.running_with_key(key) + taken_of_key >= u64::from(per_key)
            {
                continue;
            }
            if let Some(until) = self.queue_rate_full_until(name, limits, now, takeable.keys.len()) {
                takeable.hold(entry, until);
                break;
            }
            if let Some(until) = key.and_then(|key| self.key_rate_full_until(name, key, limits, now, taken_of_key)) {
                takeable.hold(entry, until);
                continue;
            }
            if let Some(key) = key {
                *taken_per_key.entry(key).or_insert(0) += 1;
            }
            takeable.keys.push(entry);
        }
        takeable
    }

    /// When the queue's rate limit lets one more job start, if it is full at `now` once
    /// the claim's `taken` jobs of the queue count.
    fn queue_rate_full_until(
        &self,
        name: &str,
        limits: &QueueLimits,
        now: Timestamp,
        taken: usize,
    ) -> Option<Timestamp> {
        let rate = limits.rate.as_ref()?;
        let taken = u64::try_from(taken).unwrap_or(u64::MAX);
        match self.rates.queue(name) {
            Some(starts) => starts.full_until(rate, now, taken),
            None => full_until_unlogged(rate, now, taken),
        }
    }

    /// When the rate limit per key lets one more job of `key` start, if it is full at
    /// `now` once the claim's `taken` jobs of the key count.
    fn key_rate_full_until(
        &self,
        name: &str,
        key: &str,
        limits: &QueueLimits,
        now: Timestamp,
        taken: u64,
    ) -> Option<Timestamp> {
        let rate = limits.key_rate.as_ref()?;
        match self.rates.key(name, key) {
            Some(starts) => starts.full_until(rate, now, taken),
            None => full_until_unlogged(rate, now, taken),
        }
    }

    /// Sets the stored limits of `queue` (unlimited ones remove them) and drops the
    /// logged starts its rate limits no longer need.
    pub(crate) fn set_limits(&mut self, queue: &str, limits: QueueLimits) {
        if limits.is_unlimited() {
            self.limits.remove(queue);
        } else {
            self.limits.insert(queue.to_owned(), limits);
        }
        self.rates.keep_only_limited(queue, &limits);
    }

    /// Logs the starts of the jobs just claimed at `now` for the rate limits of their
    /// queues.
    pub(crate) fn record_starts(&mut self, claimed: &[JobRecord], now: Timestamp) {
        for job in claimed {
            if let Some(limits) = self.limits.get(job.queue.as_str()) {
                self.rates.record(&job.queue, job.limit_key.as_deref(), limits, now);
            }
        }
    }

    /// Whether a claim of `queues` must log its starts: one of them has a rate limit.
    pub(crate) fn any_rate_limit(&self, queues: &[String]) -> bool {
        !self.limits.is_empty()
            && queues.iter().any(|queue| {
                self.limits.get(queue.as_str()).is_some_and(|limits| limits.rate.is_some() || limits.key_rate.is_some())
            })
    }

    /// The limit key of the available job at `entry`, if it has one.
    fn limit_key_of(&self, (_, _, id): AvailableKey) -> Option<&str> {
        self.jobs.get(&id).and_then(|job| job.limit_key.as_deref())
    }

    /// Whether `queue` has available jobs.
    pub(crate) fn has_available(&self, queue: &str) -> bool {
        self.index.queues.get(queue).is_some_and(|queue| !queue.available.is_empty())
    }

    /// The ids of scheduled and retryable jobs due at `now`.
    pub(crate) fn due(&self, now: Timestamp) -> Vec<JobId> {
        ids_until(&self.index.pending, now)
    }

    /// The ids of running jobs whose lease deadline is at or before `now`.
    pub(crate) fn expired(&self, now: Timestamp) -> Vec<JobId> {
        ids_until(&self.index.running, now)
    }

    /// The ids of up to `limit` finished jobs that finished at or before the cutoff of
    /// their state (`None`: keep them), oldest first.
    pub(crate) fn prunable(&self, cutoff: impl Fn(JobState) -> Option<Timestamp>, limit: usize) -> Vec<JobId> {
        let mut keys: Vec<TimeKey> = Vec::new();
        for (state, finished) in FINISHED_STATES.into_iter().zip(&self.index.finished) {
            if let Some(cutoff) = cutoff(state) {
                keys.extend(finished.iter().take_while(|&&(at, _)| at <= cutoff).take(limit).copied());
            }
        }
        keys.sort_unstable();
        keys.truncate(limit);
        keys.into_iter().map(|(_, id)| id).collect()
    }

    /// The jobs matching `params`, in id order.
    pub(crate) fn list(&self, params: &ListParams) -> Vec<JobRecord> {
        let start = params.after.map_or(Bound::Unbounded, Bound::Excluded);
        self.jobs
            .range((start, Bound::Unbounded))
            .map(|(_, job)| job)
            .filter(|job| params.filter.matches(job))
            .take(params.limit)
            .cloned()
            .collect()
    }

    /// Counts per queue (queues with jobs or paused), by queue name, each with the
    /// `run_at` of the head of its available jobs.
    pub(crate) fn counts(&self) -> Vec<QueueCounts> {
        let mut counts: Vec<QueueCounts> = self
            .index
            .queues
            .iter()
            .map(|(name, queue)| {
                let states: BTreeMap<JobState, u64> =
                    JobState::ALL.into_iter().zip(queue.counts).filter(|&(_, count)| count > 0).collect();
                // The first key in claim order is the head: the job the next claim takes.
                let head = queue.available.first().map(|&(_, run_at, _)| run_at);
                QueueCounts::new(name.clone(), queue.paused, states).next_available_at(head)
            })
            .collect();
        counts.sort_unstable_by(|a, b| a.queue.cmp(&b.queue));
        counts
    }

    /// Panics if an index disagrees with the records (tests only).
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        let mut rebuilt = Index::default();
        for job in self.jobs.values() {
            rebuilt.insert(job);
        }
        for (name, queue) in &self.index.queues {
            assert!(!queue.is_forgettable(), "queue `{name}` is kept without jobs or pause");
            if queue.paused {
                let entry = rebuilt.queues.entry(name.clone()).or_default();
                entry.paused = true;
            }
        }
        assert_eq!(self.index, rebuilt, "indexes drifted from the records");
        let mut unique: HashMap<String, BTreeSet<JobId>> = HashMap::default();
        for job in self.jobs.values() {
            if let Some(key) = &job.unique_key {
                unique.entry(key.clone()).or_default().insert(job.id);
            }
        }
        assert_eq!(self.unique, unique, "the uniqueness index drifted from the records");
        assert!(self.jobs.iter().all(|(id, job)| *id == job.id), "a job is stored under another id");
    }
}

fn ids_until(set: &BTreeSet<TimeKey>, until: Timestamp) -> Vec<JobId> {
    set.iter().take_while(|&&(at, _)| at <= until).map(|&(_, id)| id).collect()
}
