//! Where a claim starts its walk of a queue in the claim index: from the beginning, or,
//! while walks from the beginning are slow, from the last job it claimed there.
//!
//! A claim walks `jobs_available_idx` (queue, priority, run_at, id) from the start of
//! each queue. The index entries of jobs already claimed stay on that walk until no
//! snapshot can see the jobs available any more; while a long transaction holds such a
//! snapshot they pile up, and every claim visits every one of them (a claim then slows
//! down in proportion to the jobs claimed since the snapshot was taken).
//!
//! The rule, per storage handle and queue:
//! - A walk is **slow** when its claim statement ran longer on the server than the
//!   handle's [`PostgresConfig::slow_claim`](crate::PostgresConfig::slow_claim) (1 ms
//!   by default), plus as much again for each [`JOBS_PER_SLOW_CLAIM`] jobs it claimed:
//!   the server's own clock, so neither the network nor a busy client counts. A claim
//!   that took no job is never slow (nothing in its walk could be taken out of order).
//! - After [`SLOW_WALKS_TO_RESUME`] slow walks from the beginning in a row, the
//!   queue's claims start at the priority and run_at of the last job claimed from it
//!   (an index condition, not a filter), moving along with each claim. A walk from the
//!   beginning that took no job of the queue changes nothing (it cannot be timed).
//! - A resumption holds for claims sent within [`CLAIM_ORDER_LAG`] of the claim that
//!   set it (the client's monotonic clock, read once the claim has its connection) and,
//!   for claims given a clock ([`ClaimParams::now`](haul_core::ClaimParams)), only while
//!   that clock is within [`CLAIM_ORDER_LAG`] after the setting claim's. A resumed walk
//!   that takes no job of the queue ends it: what is left sorts before its start. Then
//!   one walk from the beginning decides again (slow: resume again; fast: walk from the
//!   beginning from then on).
//!
//! That keeps [`Storage::claim`](haul_core::Storage::claim)'s order bound: a resumption
//! is set by a walk from the beginning and used for less than [`CLAIM_ORDER_LAG`] after
//! it, so a job available [`CLAIM_ORDER_LAG`] before a claim was seen by the walk that
//! set the resumption the claim uses: that walk took it, or stopped before it (the start
//! is then before the job, and resumed walks take it before anything after it). Two
//! exceptions, both documented: the claim runs on the server up to a network one-way
//! delay after it was sent, and a job another claim held locked when a walk passed it
//! (SKIP LOCKED) may be passed over for the lag after that walk.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use haul_core::{CLAIM_ORDER_LAG, JobRecord, Timestamp};

/// How many slow walks from the beginning in a row make a queue's claims resume.
const SLOW_WALKS_TO_RESUME: u32 = 2;
/// The jobs a claim may take for each [`PostgresConfig::slow_claim`](crate::PostgresConfig::slow_claim)
/// of server time it is allowed on top of the first.
pub(crate) const JOBS_PER_SLOW_CLAIM: usize = 25;

/// How long a resumption lasts: [`CLAIM_ORDER_LAG`] (1 s), as a clock interval.
fn lag() -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(CLAIM_ORDER_LAG).unwrap_or(chrono::TimeDelta::MAX)
}

/// When a claim is sent: the client's monotonic clock once the claim has its
/// connection, and the claim's own clock when the caller gave one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClaimTime {
    pub(crate) sent: Instant,
    pub(crate) clock: Option<Timestamp>,
}

impl ClaimTime {
    /// A claim sent now, with the caller's `clock` (`ClaimParams::now`).
    pub(crate) fn now(clock: Option<Timestamp>) -> Self {
        Self { sent: Instant::now(), clock }
    }
}

/// A queue's resumed start, and how long it holds.
#[derive(Clone, Copy, Debug)]
struct Resumption {
    start: WalkStart,
    /// Claims sent from this instant on walk from the beginning.
    deadline: Instant,
    /// The setting claim's clock and that clock plus the lag, when it had one: claims
    /// given a clock resume only within it.
    clock_window: Option<(Timestamp, Timestamp)>,
}

impl Resumption {
    fn holds_for(&self, time: ClaimTime) -> bool {
        let in_window = match (self.clock_window, time.clock) {
            (Some((since, until)), Some(clock)) => since <= clock && clock < until,
            _ => true,
        };
        time.sent < self.deadline && in_window
    }
}

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
#[derive(Debug)]
pub(crate) struct ClaimStarts {
    /// The server time a claim may take per [`JOBS_PER_SLOW_CLAIM`] jobs.
    slow_claim: Duration,
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
    /// Where the queue's claims start, while they resume.
    resume: Option<Resumption>,
}

impl ClaimStarts {
    /// No queue resumed yet; a claim is slow past `slow_claim`, plus as much again per
    /// [`JOBS_PER_SLOW_CLAIM`] jobs.
    pub(crate) fn new(slow_claim: Duration) -> Self {
        Self { slow_claim, walks: Mutex::default() }
    }

    /// Whether a claim statement that ran `statement_time` on the server (`None`: the
    /// claim took no job, or did not say) and claimed `jobs` jobs was slow.
    pub(crate) fn is_slow(&self, statement_time: Option<Duration>, jobs: usize) -> bool {
        let times = u32::try_from(1 + jobs / JOBS_PER_SLOW_CLAIM).unwrap_or(u32::MAX);
        let allowed = self.slow_claim.saturating_mul(times);
        statement_time.is_some_and(|time| jobs > 0 && time > allowed)
    }

    /// A claim of `queues` given the clock `clock`, sent now (call it once the claim has
    /// its connection): where it starts in each queue, and its [`ClaimTime`].
    pub(crate) fn begin(&self, queues: &[String], clock: Option<Timestamp>) -> (Vec<Option<WalkStart>>, ClaimTime) {
        let time = ClaimTime::now(clock);
        (self.starts(queues, time), time)
    }

    /// Where a claim sent at `time` starts in each of `queues` (`None`: at the
    /// beginning).
    pub(crate) fn starts(&self, queues: &[String], time: ClaimTime) -> Vec<Option<WalkStart>> {
        let walks = self.walks.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .iter()
            .map(|queue| {
                let resumption = walks.by_queue.get(queue)?.resume?;
                resumption.holds_for(time).then_some(resumption.start)
            })
            .collect()
    }

    /// Learns from a claim sent at `time` that started each of `queues` at `starts`, was
    /// `slow` or not, and returned `claimed` (sorted in claim order).
    pub(crate) fn record(
        &self,
        queues: &[String],
        starts: &[Option<WalkStart>],
        claimed: &[JobRecord],
        slow: bool,
        time: ClaimTime,
    ) {
        let mut walks = self.walks.lock().unwrap_or_else(PoisonError::into_inner);
        let Walks { by_queue, resumptions } = &mut *walks;
        for (queue, start) in queues.iter().zip(starts) {
            let last = claimed.iter().rev().find(|record| record.queue == *queue);
            if let Some(start) = start {
                // A resumed walk moves its start along, or ends its resumption when it
                // took nothing; unless a newer resumption replaced it.
                let current = by_queue.get_mut(queue).and_then(|walks| walks.resume.as_mut());
                match (current, last) {
                    (Some(current), Some(last)) if current.start.resumption == start.resumption => {
                        current.start = WalkStart::of(last, start.resumption);
                    }
                    (Some(current), None) if current.start.resumption == start.resumption => {
                        by_queue.remove(queue);
                    }
                    _ => {}
                }
                continue;
            }
            // A walk from the beginning that took nothing of the queue cannot be judged.
            let Some(last) = last else { continue };
            if !slow {
                by_queue.remove(queue);
                continue;
            }
            let queue_walks = by_queue.entry(queue.clone()).or_default();
            queue_walks.slow_walks = queue_walks.slow_walks.saturating_add(1);
            queue_walks.resume = None;
            if queue_walks.slow_walks >= SLOW_WALKS_TO_RESUME {
                *resumptions = resumptions.wrapping_add(1);
                queue_walks.resume = Some(Resumption {
                    start: WalkStart::of(last, *resumptions),
                    deadline: time.sent + CLAIM_ORDER_LAG,
                    clock_window: time.clock.and_then(|since| Some((since, since.checked_add_signed(lag())?))),
                });
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
    const SLOW_CLAIM: Duration = Duration::from_millis(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_claim_is_slow_past_the_slow_claim_time_and_as_much_again_per_25_jobs() {
        let starts = ClaimStarts::new(SLOW_CLAIM);
        assert!(!starts.is_slow(Some(MS), 1));
        assert!(starts.is_slow(Some(MS + MS / 10), 1));
        assert!(!starts.is_slow(Some(MS), 24));
        assert!(starts.is_slow(Some(MS + MS / 10), 24));
        assert!(!starts.is_slow(Some(2 * MS), 32), "25 to 49 jobs may take two slow-claim times");
        assert!(starts.is_slow(Some(3 * MS), 32));
        assert!(!starts.is_slow(Some(12 * MS), 287));
        assert!(starts.is_slow(Some(13 * MS), 287));
        assert!(!starts.is_slow(Some(60 * MS), 0), "a claim that took nothing is never slow");
        assert!(!starts.is_slow(None, 10), "nor one that did not say");
        let every = ClaimStarts::new(Duration::ZERO);
        assert!(every.is_slow(Some(Duration::from_micros(1)), 1), "zero: every claim that took a job is slow");
    }

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

    /// A claim sent at `sent` without a clock of its own.
    fn sent(sent: Instant) -> ClaimTime {
        ClaimTime { sent, clock: None }
    }

    /// Two slow walks from the beginning of `queues` sent at `time`, each taking `job`.
    fn resume(starts: &ClaimStarts, queues: &[String], job: &JobRecord, time: ClaimTime) {
        for _ in 0..2 {
            starts.record(queues, &vec![None; queues.len()], std::slice::from_ref(job), SLOW, time);
        }
    }

    #[test]
    fn claims_walk_from_the_beginning_until_two_walks_in_a_row_are_slow() {
        let starts = ClaimStarts::new(SLOW_CLAIM);
        let queues = ["default".to_owned()];
        let now = sent(Instant::now());
        let job = record("default", 0, 1);
        assert_eq!(points(&starts.starts(&queues, now)), [None]);

        starts.record(&queues, &[None], std::slice::from_ref(&job), SLOW, now);
        assert_eq!(points(&starts.starts(&queues, now)), [None], "one slow walk is not enough");
        starts.record(&queues, &[None], std::slice::from_ref(&job), FAST, now);
        starts.record(&queues, &[None], std::slice::from_ref(&job), SLOW, now);
        assert_eq!(points(&starts.starts(&queues, now)), [None], "a fast walk starts the count again");

        starts.record(&queues, &[None], &[], FAST, now);
        let later = record("default", 0, 2);
        starts.record(&queues, &[None], &[job, later.clone()], SLOW, now);
        assert_eq!(
            points(&starts.starts(&queues, now)),
            [at(&later)],
            "resumes from the last job claimed; a walk that took nothing did not count"
        );
    }

    #[test]
    fn a_resumed_walk_moves_its_start_and_ends_the_resumption_when_it_takes_nothing() {
        let starts = ClaimStarts::new(SLOW_CLAIM);
        let queues = ["default".to_owned()];
        let now = sent(Instant::now());
        let first = record("default", 0, 1);
        resume(&starts, &queues, &first, now);
        let resumed = starts.starts(&queues, now);
        assert_eq!(points(&resumed), [at(&first)]);

        let second = record("default", 1, 0);
        starts.record(&queues, &resumed, std::slice::from_ref(&second), SLOW, now);
        let moved = starts.starts(&queues, now);
        assert_eq!(points(&moved), [at(&second)]);

        starts.record(&queues, &moved, &[], FAST, now);
        assert_eq!(points(&starts.starts(&queues, now)), [None], "nothing after the start: walk from the beginning");
        starts.record(&queues, &[None], std::slice::from_ref(&second), SLOW, now);
        assert_eq!(points(&starts.starts(&queues, now)), [None], "and two slow walks again to resume");
    }

    #[test]
    fn a_resumption_holds_for_claims_sent_within_the_lag_of_the_claim_that_set_it() {
        let starts = ClaimStarts::new(SLOW_CLAIM);
        let queues = ["default".to_owned()];
        let set_at = Instant::now();
        let job = record("default", 0, 1);
        resume(&starts, &queues, &job, sent(set_at));
        let just_before = set_at + CLAIM_ORDER_LAG - MS;
        assert_eq!(points(&starts.starts(&queues, sent(just_before))), [at(&job)]);
        assert_eq!(points(&starts.starts(&queues, sent(set_at + CLAIM_ORDER_LAG))), [None]);

        let after = set_at + CLAIM_ORDER_LAG;
        starts.record(&queues, &[None], std::slice::from_ref(&job), SLOW, sent(after));
        assert_eq!(points(&starts.starts(&queues, sent(after))), [at(&job)], "still slow: resumes again");
        starts.record(&queues, &[None], std::slice::from_ref(&job), FAST, sent(after));
        assert_eq!(points(&starts.starts(&queues, sent(after))), [None], "fast again: exact order");
    }

    #[test]
    fn a_claim_given_a_clock_resumes_only_within_the_lag_of_the_setting_claims_clock() {
        let starts = ClaimStarts::new(SLOW_CLAIM);
        let queues = ["default".to_owned()];
        let (set_at, clock) = (Instant::now(), Utc::now());
        let job = record("default", 0, 1);
        resume(&starts, &queues, &job, ClaimTime { sent: set_at, clock: Some(clock) });
        let with_clock = |clock| ClaimTime { sent: set_at, clock: Some(clock) };
        assert_eq!(
            points(&starts.starts(&queues, with_clock(clock + lag() - chrono::TimeDelta::milliseconds(1)))),
            [at(&job)]
        );
        assert_eq!(points(&starts.starts(&queues, with_clock(clock + lag()))), [None], "the lag has passed");
        let earlier = clock - chrono::TimeDelta::milliseconds(1);
        assert_eq!(points(&starts.starts(&queues, with_clock(earlier))), [None], "a clock that went back");
        let frozen = ClaimTime { sent: set_at + CLAIM_ORDER_LAG, clock: Some(clock) };
        assert_eq!(points(&starts.starts(&queues, frozen)), [None], "a frozen clock: the monotonic deadline holds");
    }

    #[test]
    fn a_claim_of_an_older_resumption_does_not_move_a_newer_start() {
        let starts = ClaimStarts::new(SLOW_CLAIM);
        let queues = ["default".to_owned()];
        let now = Instant::now();
        let (early, late) = (record("default", 0, 1), record("default", 0, 9));
        resume(&starts, &queues, &early, sent(now));
        let stale = starts.starts(&queues, sent(now));

        // The resumption expires; a walk from the beginning, still slow, sets a new start
        // while a claim of the old resumption is in flight.
        let after = sent(now + CLAIM_ORDER_LAG);
        starts.record(&queues, &[None], std::slice::from_ref(&early), SLOW, after);
        starts.record(&queues, &stale, std::slice::from_ref(&late), FAST, after);
        assert_eq!(points(&starts.starts(&queues, after)), [at(&early)]);
        starts.record(&queues, &stale, &[], FAST, after);
        assert_eq!(points(&starts.starts(&queues, after)), [at(&early)], "nor end it");

        // Nor after a fast walk removed the queue's entry and two slow ones resumed anew.
        starts.record(&queues, &[None], std::slice::from_ref(&early), FAST, after);
        resume(&starts, &queues, &early, after);
        starts.record(&queues, &stale, std::slice::from_ref(&late), FAST, after);
        assert_eq!(points(&starts.starts(&queues, after)), [at(&early)]);
    }

    #[test]
    fn each_queue_has_its_own_start() {
        let starts = ClaimStarts::new(SLOW_CLAIM);
        let queues = ["a".to_owned(), "b".to_owned()];
        let now = sent(Instant::now());
        let (in_a, in_b) = (record("a", 0, 5), record("b", 0, 1));
        for _ in 0..2 {
            starts.record(&queues, &[None, None], &[in_b.clone(), in_a.clone()], SLOW, now);
        }
        assert_eq!(points(&starts.starts(&queues, now)), [at(&in_a), at(&in_b)]);
    }
}
