//! Where a claim starts its walk of a queue in the claim index: from the beginning, or,
//! while walks from the beginning are slow, from the last job it claimed there.
//!
//! A claim walks `jobs_available_idx` (queue, priority, run_at, id) from the start of
//! each queue. The index entries of jobs already claimed stay on that walk until no
//! snapshot can see the jobs available any more; while a long transaction holds such a
//! snapshot they pile up, and every claim visits every one of them (a claim then slows
//! down in proportion to the jobs claimed since the snapshot was taken). Once
//! [`SLOW_WALKS_TO_RESUME`] walks from the beginning in a row were slow (see
//! [`crate::slow`]), the queue's next claims start at the priority and run_at of the last
//! job claimed from it, for [`RESUME_FOR`]; then one walk from the beginning decides
//! again (slow: resume again; fast: walk from the beginning from then on). A job that
//! sorts before that point (a higher priority, or an earlier run_at, made available
//! meanwhile) waits for that walk: claim order is exact except while walks are slow.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use haul_core::{JobRecord, Timestamp};

/// How many slow walks from the beginning in a row make a queue's claims resume.
const SLOW_WALKS_TO_RESUME: u32 = 2;
/// How long a queue's claims resume before a walk from the beginning decides again.
const RESUME_FOR: Duration = Duration::from_secs(1);

/// A point in a queue's claim order: the walk takes jobs at or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalkStart {
    pub(crate) priority: i16,
    pub(crate) run_at: Timestamp,
    /// Which resumption of the queue it belongs to: a claim that started before a walk
    /// from the beginning set a new start must not move that one.
    resumption: u64,
}

impl WalkStart {
    fn of(record: &JobRecord, resumption: u64) -> Self {
        Self { priority: record.priority, run_at: record.run_at, resumption }
    }
}

/// The walk starts of one storage handle, per queue (only queues whose walks are slow
/// have an entry).
#[derive(Debug, Default)]
pub(crate) struct ClaimStarts {
    walks: Mutex<Walks>,
}

#[derive(Debug, Default)]
struct Walks {
    by_queue: HashMap<String, QueueWalks>,
    /// Resumptions so far, over every queue (never reused, even after a queue's entry
    /// was removed).
    resumptions: u64,
}

#[derive(Debug, Default)]
struct QueueWalks {
    /// Slow walks from the beginning in a row.
    slow_walks: u32,
    /// Where the queue's claims start, and until when.
    resume: Option<(WalkStart, Instant)>,
}

impl ClaimStarts {
    /// Where a claim at `now` starts in each of `queues` (`None`: at the beginning).
    pub(crate) fn starts(&self, queues: &[String], now: Instant) -> Vec<Option<WalkStart>> {
        let walks = self.walks.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .iter()
            .map(|queue| {
                let (start, until) = walks.by_queue.get(queue)?.resume?;
                (now < until).then_some(start)
            })
            .collect()
    }

    /// Learns from a claim at `now` that started each of `queues` at `starts`, was `slow`
    /// or not, and returned `claimed` (sorted in claim order).
    pub(crate) fn record(
        &self,
        queues: &[String],
        starts: &[Option<WalkStart>],
        claimed: &[JobRecord],
        slow: bool,
        now: Instant,
    ) {
        let mut walks = self.walks.lock().unwrap_or_else(PoisonError::into_inner);
        let Walks { by_queue, resumptions } = &mut *walks;
        for (queue, start) in queues.iter().zip(starts) {
            let last = claimed.iter().rev().find(|record| record.queue == *queue);
            if let Some(start) = start {
                // A resumed walk moves its start along, unless a newer resumption replaced it.
                if let (Some(QueueWalks { resume: Some((current, _)), .. }), Some(last)) =
                    (by_queue.get_mut(queue), last)
                    && current.resumption == start.resumption
                {
                    *current = WalkStart::of(last, start.resumption);
                }
                continue;
            }
            if !slow {
                by_queue.remove(queue);
                continue;
            }
            let queue_walks = by_queue.entry(queue.clone()).or_default();
            queue_walks.slow_walks = queue_walks.slow_walks.saturating_add(1);
            queue_walks.resume = None;
            if let Some(last) = last
                && queue_walks.slow_walks >= SLOW_WALKS_TO_RESUME
            {
                *resumptions = resumptions.wrapping_add(1);
                queue_walks.resume = Some((WalkStart::of(last, *resumptions), now + RESUME_FOR));
                tracing::debug!(queue = %queue, "claims walk slowly from the start; resuming from the last claimed job");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use haul_core::{JobId, JobState};
    use serde_json::json;

    use super::*;

    const FAST: bool = false;
    const SLOW: bool = true;

    fn record(queue: &str, priority: i16, second: u32) -> JobRecord {
        let run_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).single().expect("a valid time");
        let mut record = JobRecord::new(JobId::new(), "k", json!({}));
        record.queue = queue.to_owned();
        record.priority = priority;
        record.run_at = run_at;
        record.state = JobState::Running;
        record
    }

    /// The (priority, run_at) of each start.
    fn points(starts: &[Option<WalkStart>]) -> Vec<Option<(i16, Timestamp)>> {
        starts.iter().map(|start| start.map(|start| (start.priority, start.run_at))).collect()
    }

    fn at(record: &JobRecord) -> Option<(i16, Timestamp)> {
        Some((record.priority, record.run_at))
    }

    #[test]
    fn claims_walk_from_the_beginning_until_two_walks_in_a_row_are_slow() {
        let starts = ClaimStarts::default();
        let queues = ["default".to_owned()];
        let now = Instant::now();
        let job = record("default", 0, 1);
        assert_eq!(points(&starts.starts(&queues, now)), [None]);

        starts.record(&queues, &[None], std::slice::from_ref(&job), SLOW, now);
        assert_eq!(points(&starts.starts(&queues, now)), [None], "one slow walk is not enough");
        starts.record(&queues, &[None], std::slice::from_ref(&job), FAST, now);
        starts.record(&queues, &[None], std::slice::from_ref(&job), SLOW, now);
        assert_eq!(points(&starts.starts(&queues, now)), [None], "a fast walk starts the count again");

        let later = record("default", 0, 2);
        starts.record(&queues, &[None], &[job, later.clone()], SLOW, now);
        assert_eq!(points(&starts.starts(&queues, now)), [at(&later)], "resumes from the last job claimed");
    }

    #[test]
    fn a_resumed_walk_moves_its_start_and_a_walk_from_the_beginning_decides_again() {
        let starts = ClaimStarts::default();
        let queues = ["default".to_owned()];
        let now = Instant::now();
        let first = record("default", 0, 1);
        for _ in 0..2 {
            starts.record(&queues, &[None], std::slice::from_ref(&first), SLOW, now);
        }
        let resumed = starts.starts(&queues, now);
        assert_eq!(points(&resumed), [at(&first)]);

        let second = record("default", 1, 0);
        starts.record(&queues, &resumed, std::slice::from_ref(&second), SLOW, now);
        let moved = starts.starts(&queues, now);
        assert_eq!(points(&moved), [at(&second)]);
        starts.record(&queues, &moved, &[], FAST, now);
        assert_eq!(points(&starts.starts(&queues, now)), [at(&second)], "an empty claim keeps the start");

        let after = now + RESUME_FOR;
        assert_eq!(points(&starts.starts(&queues, after)), [None], "the resumption has expired");
        starts.record(&queues, &[None], std::slice::from_ref(&second), SLOW, after);
        assert_eq!(points(&starts.starts(&queues, after)), [at(&second)], "still slow: resumes again");
        starts.record(&queues, &[None], &[], FAST, after);
        assert_eq!(points(&starts.starts(&queues, after)), [None], "fast again: exact order");
    }

    #[test]
    fn a_claim_of_an_older_resumption_does_not_move_a_newer_start() {
        let starts = ClaimStarts::default();
        let queues = ["default".to_owned()];
        let now = Instant::now();
        let (early, late) = (record("default", 0, 1), record("default", 0, 9));
        for _ in 0..2 {
            starts.record(&queues, &[None], std::slice::from_ref(&early), SLOW, now);
        }
        let stale = starts.starts(&queues, now);

        // The resumption expires; a walk from the beginning, still slow, sets a new start
        // while a claim of the old resumption is in flight.
        let after = now + RESUME_FOR;
        starts.record(&queues, &[None], std::slice::from_ref(&early), SLOW, after);
        starts.record(&queues, &stale, std::slice::from_ref(&late), FAST, after);
        assert_eq!(points(&starts.starts(&queues, after)), [at(&early)]);

        // Nor after a fast walk removed the queue's entry and two slow ones resumed anew.
        starts.record(&queues, &[None], &[], FAST, after);
        for _ in 0..2 {
            starts.record(&queues, &[None], std::slice::from_ref(&early), SLOW, after);
        }
        starts.record(&queues, &stale, std::slice::from_ref(&late), FAST, after);
        assert_eq!(points(&starts.starts(&queues, after)), [at(&early)]);
    }

    #[test]
    fn each_queue_has_its_own_start() {
        let starts = ClaimStarts::default();
        let queues = ["a".to_owned(), "b".to_owned()];
        let now = Instant::now();
        let (in_a, in_b) = (record("a", 0, 5), record("b", 0, 1));
        for _ in 0..2 {
            starts.record(&queues, &[None, None], &[in_b.clone(), in_a.clone()], SLOW, now);
        }
        assert_eq!(points(&starts.starts(&queues, now)), [at(&in_a), at(&in_b)]);
    }
}
