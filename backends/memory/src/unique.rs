//! The uniqueness decisions of one enqueue batch, in time linear in the batch.

use std::collections::HashMap;

use haul_core::{JobId, JobRecord, JobState, Timestamp, Unique};

/// What a batch knows about one uniqueness key.
#[derive(Debug, Default)]
struct KeyEntry<'a> {
    /// The oldest job stored before the batch that blocks each distinct [`Unique`] of
    /// the key met so far (usually one).
    stored: Vec<(&'a Unique, Option<JobId>)>,
    /// The batch's own jobs of the key, by the state a new job can have (scheduled,
    /// available): the one with the smallest id, as it will be stored. Jobs of one key,
    /// state and creation time block exactly the same later jobs, so that one stands
    /// for all of them.
    earlier: [Option<Box<JobRecord>>; 2],
}

/// The unique jobs of a batch and the stored jobs that block them, by key.
#[derive(Debug, Default)]
pub(crate) struct BatchUniques<'a> {
    keys: HashMap<&'a str, KeyEntry<'a>>,
}

impl<'a> BatchUniques<'a> {
    /// The smallest id among the jobs that block `unique` at `now`: the stored ones,
    /// which `lookup` finds (run once per distinct `unique` of the batch, so before any
    /// job of the batch is stored), and the batch's jobs recorded with
    /// [`BatchUniques::stored`].
    pub(crate) fn blocker(
        &mut self,
        unique: &'a Unique,
        now: Timestamp,
        lookup: impl FnOnce(&Unique) -> Option<JobId>,
    ) -> Option<JobId> {
        let entry = self.keys.entry(unique.key.as_str()).or_default();
        let stored = match entry.stored.iter().find(|(seen, _)| *seen == unique) {
            Some((_, blocker)) => *blocker,
            None => {
                let blocker = lookup(unique);
                entry.stored.push((unique, blocker));
                blocker
            }
        };
        let earlier = entry
            .earlier
            .iter()
            .flatten()
            .filter(|record| unique.is_blocked_by(record, now))
            .map(|record| record.id)
            .min();
        stored.into_iter().chain(earlier).min()
    }

    /// Records that the batch stores job `id` with `key`, in `state` (scheduled or
    /// available), created at `now`.
    pub(crate) fn stored(&mut self, key: &'a str, id: JobId, state: JobState, now: Timestamp) {
        let slot = usize::from(state == JobState::Available);
        let entry = self.keys.entry(key).or_default();
        if entry.earlier[slot].as_ref().is_none_or(|known| id < known.id) {
            let mut record = JobRecord::new(id, String::new(), serde_json::Value::Null);
            record.unique_key = Some(key.to_owned());
            record.state = state;
            record.created_at = now;
            entry.earlier[slot] = Some(Box::new(record));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_smallest_blocking_id_is_found_among_stored_and_earlier_jobs() {
        let now = Timestamp::default();
        let ids = {
            let mut ids: Vec<JobId> = (0..4).map(|_| JobId::new()).collect();
            ids.sort();
            ids
        };
        let default = Unique::new("k");
        let only_available = Unique::new("k").states([JobState::Available]);
        let running = Unique::new("k").states([JobState::Running]);
        let empty_window = Unique::new("k").window(Duration::ZERO);
        let mut batch = BatchUniques::default();
        let mut lookups = 0;
        assert_eq!(batch.blocker(&default, now, |_| None), None);
        batch.stored("k", ids[3], JobState::Available, now);
        batch.stored("k", ids[1], JobState::Available, now);
        batch.stored("k", ids[2], JobState::Scheduled, now);
        assert_eq!(batch.blocker(&default, now, |_| unreachable!("looked up once")), Some(ids[1]));
        assert_eq!(batch.blocker(&only_available, now, |_| Some(ids[0])), Some(ids[0]), "a stored job is older");
        assert_eq!(
            batch.blocker(&running, now, |_| {
                lookups += 1;
                None
            }),
            None
        );
        assert_eq!(lookups, 1);
        assert_eq!(batch.blocker(&empty_window, now, |_| None), None, "the batch's jobs are created now");
    }
}
