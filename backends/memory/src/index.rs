//! Secondary indexes over the stored jobs, so every hot call touches only the jobs it
//! returns or moves.
//!
//! Each job sits in exactly one index, chosen by its state, under a key made from its
//! own fields. [`Index::insert`] and [`Index::remove`] derive that key from the record,
//! so as long as a record only changes between a `remove` and an `insert` (which
//! [`crate::store::JobMut::change`] guarantees), the indexes cannot drift.

use std::collections::BTreeSet;

use foldhash::HashMap;

use haul_core::{JobId, JobRecord, JobState, Timestamp};

/// Sort key of an available job: priority, then due time, then id (FIFO).
pub(crate) type AvailableKey = (i16, Timestamp, JobId);

/// Sort key of the time-ordered indexes: the instant that matters, then id.
pub(crate) type TimeKey = (Timestamp, JobId);

/// Per-queue data: its available jobs, its counts, whether it is paused.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueIndex {
    /// Available jobs in claim order.
    pub(crate) available: BTreeSet<AvailableKey>,
    /// Jobs per state, indexed by [`state_slot`].
    pub(crate) counts: [u64; JobState::ALL.len()],
    /// Running jobs per limit key (keys with none are absent), kept whether or not the
    /// queue has a limit per key, so a limit set later counts the jobs already running.
    pub(crate) running_per_key: HashMap<String, u64>,
    /// Whether claims skip this queue.
    pub(crate) paused: bool,
}

impl QueueIndex {
    /// Whether the queue has no job and is not paused, so nothing needs to remember it.
    pub(crate) fn is_forgettable(&self) -> bool {
        !self.paused && self.counts.iter().all(|&count| count == 0)
    }

    /// How many of the queue's running jobs have the limit key `key`.
    pub(crate) fn running_with_key(&self, key: &str) -> u64 {
        self.running_per_key.get(key).copied().unwrap_or(0)
    }
}

/// Every index of the store.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    /// Queues by name.
    pub(crate) queues: HashMap<String, QueueIndex>,
    /// Scheduled and retryable jobs by `run_at`.
    pub(crate) pending: BTreeSet<TimeKey>,
    /// Running jobs by lease deadline.
    pub(crate) running: BTreeSet<TimeKey>,
    /// Finished jobs by `finished_at`, one set per terminal state (see [`finished_slot`]).
    pub(crate) finished: [BTreeSet<TimeKey>; 3],
}

impl Index {
    /// Adds `job` to the index its state calls for.
    pub(crate) fn insert(&mut self, job: &JobRecord) {
        match self.queues.get_mut(job.queue.as_str()) {
            Some(queue) => add_to_queue(queue, job),
            None => {
                let mut queue = QueueIndex::default();
                add_to_queue(&mut queue, job);
                self.queues.insert(job.queue.clone(), queue);
            }
        }
        let inserted = match Placement::of(job) {
            Placement::Available => true,
            Placement::Pending(key) => self.pending.insert(key),
            Placement::Running(key) => self.running.insert(key),
            Placement::Finished(slot, key) => self.finished[slot].insert(key),
        };
        debug_assert!(inserted, "job {} indexed twice", job.id);
    }

    /// Removes `job` from its index. `job` must be exactly as it was when inserted.
    pub(crate) fn remove(&mut self, job: &JobRecord) {
        let from_queue = self.queues.get_mut(job.queue.as_str()).is_some_and(|queue| remove_from_queue(queue, job));
        let from_set = match Placement::of(job) {
            Placement::Available => true,
            Placement::Pending(key) => self.pending.remove(&key),
            Placement::Running(key) => self.running.remove(&key),
            Placement::Finished(slot, key) => self.finished[slot].remove(&key),
        };
        debug_assert!(from_queue && from_set, "job {} was not indexed as stored", job.id);
    }

    /// Drops the entry of `queue` if it has no job and is not paused.
    pub(crate) fn forget_if_unused(&mut self, queue: &str) {
        if self.queues.get(queue).is_some_and(QueueIndex::is_forgettable) {
            self.queues.remove(queue);
        }
    }
}

fn add_to_queue(queue: &mut QueueIndex, job: &JobRecord) {
    queue.counts[state_slot(job.state)] += 1;
    match (job.state, &job.limit_key) {
        (JobState::Available, _) => {
            let inserted = queue.available.insert(available_key(job));
            debug_assert!(inserted, "job {} indexed twice", job.id);
        }
        (JobState::Running, Some(key)) => count_running_key(&mut queue.running_per_key, key),
        _ => {}
    }
}

fn remove_from_queue(queue: &mut QueueIndex, job: &JobRecord) -> bool {
    let count = &mut queue.counts[state_slot(job.state)];
    let Some(decremented) = count.checked_sub(1) else { return false };
    *count = decremented;
    match (job.state, &job.limit_key) {
        (JobState::Available, _) => queue.available.remove(&available_key(job)),
        (JobState::Running, Some(key)) => uncount_running_key(&mut queue.running_per_key, key),
        _ => true,
    }
}

/// Counts one more running job with the limit key `key`.
fn count_running_key(running_per_key: &mut HashMap<String, u64>, key: &str) {
    match running_per_key.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            running_per_key.insert(key.to_owned(), 1);
        }
    }
}

/// Counts one running job with the limit key `key` less, forgetting a key that has
/// none left. Returns whether the key was counted.
fn uncount_running_key(running_per_key: &mut HashMap<String, u64>, key: &str) -> bool {
    let Some(count) = running_per_key.get_mut(key) else { return false };
    *count -= 1;
    if *count == 0 {
        running_per_key.remove(key);
    }
    true
}

/// Where a job sits, by state.
enum Placement {
    /// In its queue's `available` set (kept by `add_to_queue`/`remove_from_queue`).
    Available,
    Pending(TimeKey),
    Running(TimeKey),
    Finished(usize, TimeKey),
}

impl Placement {
    fn of(job: &JobRecord) -> Self {
        match job.state {
            JobState::Available => Self::Available,
            JobState::Scheduled | JobState::Retryable => Self::Pending((job.run_at, job.id)),
            // A running job always has a deadline and a finished one a finish time; the
            // fallbacks only keep the key derivation total.
            JobState::Running => Self::Running((job.lease_expires_at.unwrap_or(job.run_at), job.id)),
            JobState::Completed | JobState::Discarded | JobState::Cancelled => {
                Self::Finished(finished_slot(job.state), (job.finished_at.unwrap_or(job.run_at), job.id))
            }
        }
    }
}

/// The claim-order key of an available job.
pub(crate) fn available_key(job: &JobRecord) -> AvailableKey {
    (job.priority, job.run_at, job.id)
}

/// The position of `state` in [`JobState::ALL`].
pub(crate) fn state_slot(state: JobState) -> usize {
    match state {
        JobState::Scheduled => 0,
        JobState::Available => 1,
        JobState::Running => 2,
        JobState::Retryable => 3,
        JobState::Completed => 4,
        JobState::Discarded => 5,
        JobState::Cancelled => 6,
    }
}

/// The position of a terminal state in [`Index::finished`] (0 for other states, which
/// never get there).
pub(crate) fn finished_slot(state: JobState) -> usize {
    match state {
        JobState::Discarded => 1,
        JobState::Cancelled => 2,
        _ => 0,
    }
}

/// The terminal states in [`Index::finished`] order.
pub(crate) const FINISHED_STATES: [JobState; 3] = [JobState::Completed, JobState::Discarded, JobState::Cancelled];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_order_of_the_state_lists() {
        for (slot, state) in JobState::ALL.into_iter().enumerate() {
            assert_eq!(state_slot(state), slot);
        }
        for (slot, state) in FINISHED_STATES.into_iter().enumerate() {
            assert_eq!(finished_slot(state), slot);
        }
    }
}
