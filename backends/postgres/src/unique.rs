//! Uniqueness keys: their digest, their advisory lock slots, and the batch's own jobs
//! that block later jobs of the same key.

use std::collections::HashMap;

use haul_core::{JobId, JobRecord, JobState, Timestamp, Unique};
use sha2::{Digest, Sha256};

/// How many advisory lock slots the uniqueness keys of one schema share: a batch takes
/// at most this many locks (see `queries/lock_unique_keys.sql` for the choice).
pub(crate) const UNIQUE_LOCK_SLOTS: u16 = 64;

/// The digest of a uniqueness key, as stored in `unique_digest` and indexed: SHA-256 of
/// its UTF-8 bytes (migration 0004 computes the same in SQL for the rows it backfills).
pub(crate) fn unique_digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The distinct lock slots of `digests`, ascending (the order locks are taken in).
pub(crate) fn lock_slots<'a>(digests: impl IntoIterator<Item = &'a [u8]>) -> Vec<i32> {
    let mut taken = [false; UNIQUE_LOCK_SLOTS as usize];
    for digest in digests {
        let [first, second, ..] = *digest else { continue };
        taken[usize::from(u16::from_be_bytes([first, second]) % UNIQUE_LOCK_SLOTS)] = true;
    }
    (0..UNIQUE_LOCK_SLOTS).filter(|&slot| taken[usize::from(slot)]).map(i32::from).collect()
}

/// The unique jobs a batch stores, as they will be stored, for the later jobs of the
/// batch to be checked against: per key, the first job stored in each state a new job
/// can have. A later job that an earlier one blocks is blocked by the first of that
/// state too (they differ only by id), so checking the firsts is checking them all,
/// whatever the batch's size.
#[derive(Debug, Default)]
pub(crate) struct EarlierJobs<'a> {
    /// Per key: the first job stored scheduled, then the first stored available, each
    /// with its position in the batch.
    by_key: HashMap<&'a str, [Option<(usize, JobRecord)>; 2]>,
}

impl<'a> EarlierJobs<'a> {
    /// The first job of the batch so far that blocks `unique` at `now`
    /// ([`Unique::is_blocked_by`]), by position in the batch.
    pub(crate) fn blocking(&self, unique: &Unique, now: Timestamp) -> Option<JobId> {
        self.by_key
            .get(unique.key.as_str())?
            .iter()
            .flatten()
            .filter(|(_, record)| unique.is_blocked_by(record, now))
            .min_by_key(|(position, _)| *position)
            .map(|(_, record)| record.id)
    }

    /// Records that the job `id` at `position` is stored with key `key`, in `state`
    /// (scheduled or available), created at `now`.
    pub(crate) fn stored(&mut self, key: &'a str, position: usize, id: JobId, state: JobState, now: Timestamp) {
        let slot = usize::from(state == JobState::Available);
        let firsts = self.by_key.entry(key).or_default();
        if firsts[slot].is_none() {
            let mut record = JobRecord::new(id, String::new(), serde_json::Value::Null);
            record.unique_key = Some(key.to_owned());
            record.state = state;
            record.created_at = now;
            firsts[slot] = Some((position, record));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_digest_is_the_sha256_of_the_key() {
        // printf 'é' | sha256sum
        let expected = "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c";
        let hex: String = unique_digest("é").iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, expected);
        assert_eq!(unique_digest(&"k".repeat(8192)).len(), 32);
    }

    #[test]
    fn lock_slots_are_distinct_ascending_and_bounded() {
        let digests: Vec<Vec<u8>> = (0..10_000).map(|n| unique_digest(&format!("key:{n}"))).collect();
        let slots = lock_slots(digests.iter().map(Vec::as_slice));
        assert_eq!(slots, (0..i32::from(UNIQUE_LOCK_SLOTS)).collect::<Vec<_>>());
        let one = lock_slots([unique_digest("a").as_slice(), unique_digest("a").as_slice()]);
        assert_eq!(one.len(), 1);
        assert!(lock_slots(std::iter::empty()).is_empty());
    }

    #[test]
    fn the_first_blocking_job_of_the_batch_is_found_by_state_and_window() {
        let now = Timestamp::default();
        let (scheduled, available) = (JobId::new(), JobId::new());
        let mut earlier = EarlierJobs::default();
        assert_eq!(earlier.blocking(&Unique::new("k"), now), None);
        earlier.stored("k", 3, scheduled, JobState::Scheduled, now);
        earlier.stored("k", 5, available, JobState::Available, now);
        earlier.stored("k", 7, JobId::new(), JobState::Available, now);
        assert_eq!(earlier.blocking(&Unique::new("k"), now), Some(scheduled), "the first by position");
        let only_available = Unique::new("k").states([JobState::Available]);
        assert_eq!(earlier.blocking(&only_available, now), Some(available));
        assert_eq!(earlier.blocking(&Unique::new("k").states([JobState::Running]), now), None);
        assert_eq!(earlier.blocking(&Unique::new("k").window(Duration::ZERO), now), None, "created now");
        assert_eq!(earlier.blocking(&Unique::new("other"), now), None);
    }
}
