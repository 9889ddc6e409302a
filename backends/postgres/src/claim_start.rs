//! Where a claim starts its walk of a queue in the claim index: from the beginning, or,
//! while walks from the beginning are slow, from the last job it claimed there.
//!
//! A claim walks `jobs_available_idx` (queue, priority, run_at, id) from the start of
//! each queue. The index entries of jobs already claimed stay on that walk until no
//! snapshot can see the jobs available any more; while a long transaction holds such a
//! snapshot they pile up, and every claim visits every one of them (a claim then slows
//! down in proportion to the jobs claimed since the snapshot was taken). Once
//! [`SLOW_WALKS_TO_RESUME`] walks from the beginning in a row were slow, the queue's next
//! claims start at the priority and run_at of the last job claimed from it, for
//! [`RESUME_FOR`]; then a walk from the beginning decides again. A job that sorts before
//! that point (a higher priority, or an earlier run_at, made available meanwhile) waits
//! for that walk: claim order is exact except while walks are slow.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use haul_core::{JobRecord, Timestamp};

/// A statement that took longer than this, plus [`SLOW_PER_ROW`] for each row it
/// returned, was slow. A claim or an outcome batch of a few dozen jobs on a healthy
/// table takes well under 1 ms.
const SLOW_STATEMENT: Duration = Duration::from_millis(5);
/// The time a statement may take per row returned before it counts as slow.
const SLOW_PER_ROW: Duration = Duration::from_micros(20);
/// How many slow walks from the beginning in a row make a queue's claims resume.
const SLOW_WALKS_TO_RESUME: u32 = 2;
/// How long a queue's claims resume before a walk from the beginning decides again.
const RESUME_FOR: Duration = Duration::from_secs(1);

/// A point in a queue's claim order: the walk takes jobs at or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalkStart {
    pub(crate) priority: i16,
    pub(crate) run_at: Timestamp,
}

impl WalkStart {
    fn of(record: &JobRecord) -> Self {
        Self { priority: record.priority, run_at: record.run_at }
    }
}

/// The walk starts of one storage handle, per queue (only queues whose walks are slow
/// have an entry).
#[derive(Debug, Default)]
pub(crate) struct ClaimStarts {
    queues: Mutex<HashMap<String, QueueWalks>>,
}

#[derive(Debug, Default)]
struct QueueWalks {
    /// Slow walks from the beginning in a row.
    slow_walks: u32,
    /// Where the queue's claims start, and until when.
    resume: Option<(WalkStart, Instant)>,
}

/// Whether a statement that returned `rows` rows in `elapsed` was slow.
pub(crate) fn is_slow(elapsed: Duration, rows: usize) -> bool {
    let per_row = SLOW_PER_ROW.saturating_mul(u32::try_from(rows).unwrap_or(u32::MAX));
    elapsed > SLOW_STATEMENT.saturating_add(per_row)
}

impl ClaimStarts {
    /// Where a claim at `now` starts in each of `queues` (`None`: at the beginning).
    pub(crate) fn starts(&self, queues: &[String], now: Instant) -> Vec<Option<WalkStart>> {
        let walks = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .iter()
            .map(|queue| {
                let (start, until) = walks.get(queue)?.resume?;
                (now < until).then_some(start)
            })
            .collect()
    }

    /// Learns from a claim that started each of `queues` at `starts`, took `elapsed`
    /// and returned `claimed` (sorted in claim order) at `now`.
    pub(crate) fn record(
        &self,
        queues: &[String],
        starts: &[Option<WalkStart>],
        claimed: &[JobRecord],
        elapsed: Duration,
        now: Instant,
    ) {
        let slow = is_slow(elapsed, claimed.len());
        let mut walks = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        for (queue, start) in queues.iter().zip(starts) {
            let last = claimed.iter().rev().find(|record| record.queue == *queue).map(WalkStart::of);
            if start.is_some() {
                // A resumed walk moves its start along.
                if let (Some(QueueWalks { resume: Some((start, _)), .. }), Some(last)) = (walks.get_mut(queue), last) {
                    *start = last;
                }
                continue;
            }
            if !slow {
                walks.remove(queue);
                continue;
            }
            let queue_walks = walks.entry(queue.clone()).or_default();
            queue_walks.slow_walks = queue_walks.slow_walks.saturating_add(1);
            queue_walks.resume =
                last.filter(|_| queue_walks.slow_walks >= SLOW_WALKS_TO_RESUME).map(|last| (last, now + RESUME_FOR));
            if queue_walks.resume.is_some() {
                tracing::debug!(queue = %queue, ?elapsed, "claims walk slowly from the start; resuming from the last claimed job");
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

    const FAST: Duration = Duration::from_micros(500);
    const SLOW: Duration = Duration::from_millis(50);

    fn record(queue: &str, priority: i16, second: u32) -> JobRecord {
        let run_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).single().expect("a valid time");
        let mut record = JobRecord::new(JobId::new(), "k", json!({}));
        record.queue = queue.to_owned();
        record.priority = priority;
        record.run_at = run_at;
        record.state = JobState::Running;
        record
    }

    fn start(record: &JobRecord) -> Option<WalkStart> {
        Some(WalkStart::of(record))
    }

    #[test]
    fn claims_walk_from_the_beginning_until_two_walks_in_a_row_are_slow() {
        let starts = ClaimStarts::default();
        let queues = ["default".to_owned()];
        let now = Instant::now();
        let job = record("default", 0, 1);
        assert_eq!(starts.starts(&queues, now), [None]);

        starts.record(&queues, &[None], std::slice::from_ref(&job), SLOW, now);
        assert_eq!(starts.starts(&queues, now), [None], "one slow walk is not enough");
        starts.record(&queues, &[None], std::slice::from_ref(&job), FAST, now);
        starts.record(&queues, &[None], std::slice::from_ref(&job), SLOW, now);
        assert_eq!(starts.starts(&queues, now), [None], "a fast walk starts the count again");

        let later = record("default", 0, 2);
        starts.record(&queues, &[None], &[job, later.clone()], SLOW, now);
        assert_eq!(starts.starts(&queues, now), [start(&later)], "resumes from the last job claimed");
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
        assert_eq!(resumed, [start(&first)]);

        let second = record("default", 1, 0);
        starts.record(&queues, &resumed, std::slice::from_ref(&second), SLOW, now);
        assert_eq!(starts.starts(&queues, now), [start(&second)]);
        starts.record(&queues, &[start(&second)], &[], FAST, now);
        assert_eq!(starts.starts(&queues, now), [start(&second)], "an empty claim keeps the start");

        let after = now + RESUME_FOR;
        assert_eq!(starts.starts(&queues, after), [None], "the resumption has expired");
        starts.record(&queues, &[None], std::slice::from_ref(&second), SLOW, after);
        assert_eq!(starts.starts(&queues, after), [start(&second)], "still slow: resumes again");
        starts.record(&queues, &[None], &[], FAST, after);
        assert_eq!(starts.starts(&queues, after), [None], "fast again: exact order");
    }

    #[test]
    fn each_queue_has_its_own_start_and_large_claims_may_take_longer() {
        let starts = ClaimStarts::default();
        let queues = ["a".to_owned(), "b".to_owned()];
        let now = Instant::now();
        let (in_a, in_b) = (record("a", 0, 5), record("b", 0, 1));
        for _ in 0..2 {
            starts.record(&queues, &[None, None], &[in_b.clone(), in_a.clone()], SLOW, now);
        }
        assert_eq!(starts.starts(&queues, now), [start(&in_a), start(&in_b)]);

        let other = ClaimStarts::default();
        let many: Vec<_> = (0..3_000).map(|_| record("a", 0, 1)).collect();
        for _ in 0..2 {
            other.record(&queues[..1], &[None], &many, SLOW, now);
        }
        assert_eq!(other.starts(&queues[..1], now), [None], "50 ms for 3,000 jobs is not slow");
    }
}
