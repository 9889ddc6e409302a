//! The uniqueness decisions of one enqueue batch, in time linear in the batch.

use std::collections::HashMap;

use haul_core::{JobId, JobRecord, JobState, Timestamp, Unique};

/// What a batch knows about one uniqueness key.
#[derive(Debug, Default)]
struct KeyEntry {
    /// The oldest job stored before the batch that blocks each distinct [`Unique`] of
    /// the key seen so far (usually one).
    stored: Vec<(Unique, Option<JobId>)>,
    /// The batch's own jobs of the key, by the state a new job can have (scheduled,
    /// available): the position of the one with the smallest id. Jobs of a key, state
    /// and creation time block exactly the same later jobs, so that one stands for all.
    earlier: [Option<usize>; 2],
}

/// The unique jobs of a batch and the stored jobs that block them, by key.
#[derive(Debug, Default)]
pub(crate) struct BatchUniques {
    keys: HashMap<String, KeyEntry>,
}

impl BatchUniques {
    /// The stored job that blocks `unique`, from `lookup` (run once per distinct
    /// `unique` of the batch, before any job of the batch is stored).
    pub(crate) fn stored_blocker(
        &mut self,
        unique: &Unique,
        lookup: impl FnOnce(&Unique) -> Option<JobId>,
    ) -> Option<JobId> {
        let entry = self.keys.entry(unique.key.clone()).or_default();
        if let Some((_, blocker)) = entry.stored.iter().find(|(seen, _)| seen == unique) {
            return *blocker;
        }
        let blocker = lookup(unique);
        entry.stored.push((unique.clone(), blocker));
        blocker
    }

    /// The smallest id among the jobs of the batch so far (`records`, as they will be
    /// stored) that block `unique` at `now`.
    pub(crate) fn earlier_blocker(&self, unique: &Unique, records: &[JobRecord], now: Timestamp) -> Option<JobId> {
        let entry = self.keys.get(&unique.key)?;
        entry
            .earlier
            .iter()
            .flatten()
            .filter_map(|&position| records.get(position))
            .filter(|record| unique.is_blocked_by(record, now))
            .map(|record| record.id)
            .min()
    }

    /// Records that `record`, at `position` among the batch's records, will be stored.
    pub(crate) fn stored(&mut self, record: &JobRecord, position: usize, records: &[JobRecord]) {
        let Some(key) = &record.unique_key else { return };
        let slot = match record.state {
            JobState::Scheduled => 0,
            JobState::Available => 1,
            _ => return,
        };
        let entry = self.keys.entry(key.clone()).or_default();
        let smaller = entry.earlier[slot].and_then(|known| records.get(known)).is_none_or(|known| record.id < known.id);
        if smaller {
            entry.earlier[slot] = Some(position);
        }
    }
}
