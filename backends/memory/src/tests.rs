//! Randomized transitions that check the indexes never drift from the records.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use haul_core::{
    Claim, JobId, JobOutcome, JobRecord, JobState, NewJob, QueueLimits, RateLimit, Report, ReportOutcome, Retention,
    RunAt, Timestamp, Unique,
};
use serde_json::json;

use crate::{lifecycle::ClaimRequest, store::Store, wake::Wake};

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { items.get(self.below(items.len() as u64) as usize) }
    }
}

const QUEUES: [&str; 3] = ["a", "b", "c"];

/// The limit keys of the walk's jobs (`None`: no key).
const LIMIT_KEYS: [Option<&str>; 4] = [None, Some("k1"), Some("k2"), Some("k3")];

/// The limits of queue `a` in the walk; `b` has a limit per key only, `c` none.
const LIMITED_QUEUE: &str = "a";
const CONCURRENCY: u32 = 4;
const KEY_CONCURRENCY: u32 = 2;

/// The rate limit of queue `c`, and the rate limit per key of queue `b`.
const RATE_QUEUE: &str = "c";
const RATE: (u32, i64) = (3, 5);
const KEY_RATE_QUEUE: &str = "b";
const KEY_RATE: (u32, i64) = (2, 7);

fn rate((starts, seconds): (u32, i64)) -> RateLimit {
    RateLimit::new(starts, Duration::from_secs(seconds.unsigned_abs()))
}

/// Checks that no more than `starts` of the `logged` starts (queue, limit key, time)
/// in `queue` fall in the window of `seconds` ending at `now`, in all (`per_key`
/// false) or per limit key.
fn assert_within_rate(
    logged: &[(String, Option<String>, Timestamp)],
    queue: &str,
    (starts, seconds): (u32, i64),
    per_key: bool,
    now: Timestamp,
) {
    let mut counts = std::collections::HashMap::new();
    let recent = logged.iter().filter(|(q, _, at)| q == queue && *at > now - TimeDelta::seconds(seconds));
    for (_, key, _) in recent {
        if per_key && key.is_none() {
            continue;
        }
        let scope = if per_key { key.clone() } else { None };
        let count = counts.entry(scope).or_insert(0_u32);
        *count += 1;
        assert!(*count <= starts, "{count} starts of {queue} ({key:?}) within {seconds}s of {now}");
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Checks that queue `queue` runs no more than `total` jobs at once, and no more than
/// `per_key` of any limit key.
fn assert_within_limits(store: &Store, ids: &[JobId], queue: &str, total: u32, per_key: u32) {
    let running: Vec<&JobRecord> = ids
        .iter()
        .filter_map(|&id| store.get(id))
        .filter(|job| job.queue == queue && job.state == JobState::Running)
        .collect();
    assert!(running.len() <= total as usize, "{} running in {queue}", running.len());
    let mut per_key_running = std::collections::HashMap::new();
    for key in running.iter().filter_map(|job| job.limit_key.as_deref()) {
        let count = per_key_running.entry(key).or_insert(0_u32);
        *count += 1;
        assert!(*count <= per_key, "{count} jobs of key {key} running in {queue}");
    }
}

/// Checks what every state implies about the other fields.
fn assert_fields_match_state(job: &JobRecord) {
    let running = job.state == JobState::Running;
    assert_eq!(job.lease_token.is_some(), running, "{job:?}");
    assert_eq!(job.lease_expires_at.is_some(), running, "{job:?}");
    assert_eq!(job.claimed_by.is_some(), running, "{job:?}");
    assert_eq!(job.finished_at.is_some(), job.state.is_finished(), "{job:?}");
    assert!(job.cancel_requested_at.is_none() || running || job.state.is_finished(), "{job:?}");
    assert!(job.attempt <= job.max_attempts, "{job:?}");
}

/// Whether `claim` holds: its job is running under its token.
fn holds(store: &Store, claim: Claim) -> bool {
    store.get(claim.id).is_some_and(|job| job.lease_token == Some(claim.token))
}

/// Checks a report's result against its batch and what held before it (`before`, per
/// report: whether its claim held, whether its job has a uniqueness key): each outcome
/// is applied or rejected; a claim that held applies its first outcome only (a repeat
/// finds it spent), and one that did not applies nothing; with `delete_completed`, an
/// applied completion deleted its job unless the job has a uniqueness key, which keeps
/// it as completed.
fn assert_outcomes_applied_once(
    store: &Store,
    batch: &[Report],
    before: &[(bool, bool)],
    reported: &ReportOutcome,
    delete_completed: bool,
) {
    assert_eq!(reported.applied.len() + reported.rejected.len(), batch.len(), "{reported:?}");
    for (index, report) in batch.iter().enumerate() {
        let (held, keyed) = before[index];
        let first = batch.iter().position(|r| r.claim == report.claim) == Some(index);
        let applied = reported.applied.iter().filter(|claim| **claim == report.claim).count();
        assert_eq!(applied, usize::from(held), "claim {:?} (held: {held})", report.claim);
        if !first || !held || !matches!(report.outcome, JobOutcome::Completed) {
            continue;
        }
        let stored = store.get(report.claim.id).map(|job| job.state);
        let expected = if delete_completed && !keyed { None } else { Some(JobState::Completed) };
        assert_eq!(stored, expected, "completed job {} (keyed: {keyed})", report.claim.id);
    }
}

#[test]
fn indexes_stay_consistent_through_four_thousand_random_transitions() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut store = Store::default();
    let mut now = Utc::now();
    let mut ids: Vec<JobId> = Vec::new();
    let mut claims: Vec<Claim> = Vec::new();
    // Claims that no longer hold (the job finished, or was rescued and claimed again):
    // the last few, so that reports also carry old claims, which must be rejected.
    let mut stale: Vec<Claim> = Vec::new();
    let mut seen_states = std::collections::BTreeSet::new();
    let limits = QueueLimits::new().concurrency(CONCURRENCY).key_concurrency(KEY_CONCURRENCY);
    store.limits.insert(LIMITED_QUEUE.to_owned(), limits);
    store.limits.insert(KEY_RATE_QUEUE.to_owned(), QueueLimits::new().key_concurrency(1).key_rate(rate(KEY_RATE)));
    store.limits.insert(RATE_QUEUE.to_owned(), QueueLimits::new().rate(rate(RATE)));
    let mut starts: Vec<(String, Option<String>, Timestamp)> = Vec::new();

    for step in 0..4_000 {
        let mut wake = Wake::default();
        match rng.below(12) {
            0 | 1 => {
                let batch = (0..=rng.below(2))
                    .map(|_| {
                        let queue = *rng.pick(&QUEUES).unwrap_or(&"a");
                        let run_at = match rng.below(3) {
                            0 => RunAt::Now,
                            1 => RunAt::In(secs(rng.below(30))),
                            _ => RunAt::At(now - TimeDelta::seconds(rng.below(30) as i64)),
                        };
                        let mut job = NewJob::new("work", json!({ "n": step }))
                            .queue(queue)
                            .priority(rng.below(3) as i16 - 1)
                            .max_attempts(1 + rng.below(3) as u32)
                            .run_at(run_at);
                        job.limit_key = rng.pick(&LIMIT_KEYS).copied().flatten().map(str::to_owned);
                        // Some jobs carry one of a few uniqueness keys (a key blocks while a
                        // job with it is available or completed): stored, skipped as
                        // duplicates, kept as completed by a deleting completion, and pruned.
                        if rng.below(3) == 0 {
                            let key = format!("key-{}", rng.below(3));
                            job = job.unique(Unique::new(key).states([JobState::Available, JobState::Completed]));
                        }
                        job
                    })
                    .collect::<Vec<_>>();
                // A skipped unique job gives the id of the job that blocked it, once more.
                for id in store.enqueue(batch, now, &mut wake).unwrap().ids {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            2 | 3 => {
                let queues: Vec<String> =
                    QUEUES.iter().filter(|_| rng.below(2) == 0).map(|q| (*q).to_owned()).collect();
                let request = ClaimRequest {
                    queues: &queues,
                    limit: rng.below(8) as usize,
                    lease: secs(rng.below(20)),
                    worker_id: "w",
                };
                for job in store.claim(&request, now).jobs {
                    claims.push(job.claim().unwrap());
                    starts.push((job.queue.clone(), job.limit_key.clone(), now));
                }
                assert_within_rate(&starts, RATE_QUEUE, RATE, false, now);
                assert_within_rate(&starts, KEY_RATE_QUEUE, KEY_RATE, true, now);
            }
            4 | 5 => {
                // One to three outcomes, a claim possibly twice (the repeat is rejected).
                let mut batch = Vec::new();
                for _ in 0..=rng.below(3) {
                    let pool = if rng.below(4) == 0 && !stale.is_empty() { &stale } else { &claims };
                    let Some(&claim) = rng.pick(pool) else { break };
                    let outcome = match rng.below(5) {
                        0 => JobOutcome::Completed,
                        1 => JobOutcome::Failed { error: "boom".into(), retry_in: secs(rng.below(10)) },
                        2 => JobOutcome::Discarded { reason: "no".into() },
                        3 => JobOutcome::Cancelled,
                        _ => JobOutcome::Snoozed { delay: secs(rng.below(3)) },
                    };
                    batch.push(Report { claim, outcome });
                }
                let delete_completed = rng.below(2) == 0;
                // Read before the report: whether each claim holds, and whether its job
                // has a uniqueness key.
                let before: Vec<(bool, bool)> = batch
                    .iter()
                    .map(|r| {
                        let keyed = store.get(r.claim.id).is_some_and(|job| job.unique_key.is_some());
                        (holds(&store, r.claim), keyed)
                    })
                    .collect();
                let reported = store.report(batch.clone(), delete_completed, now, &mut wake).unwrap();
                assert_outcomes_applied_once(&store, &batch, &before, &reported, delete_completed);
            }
            6 => {
                let held: Vec<Claim> = claims.iter().copied().filter(|_| rng.below(2) == 0).collect();
                store.heartbeat(&held, secs(rng.below(20)), now);
            }
            7 => {
                store.promote_due(now, &mut wake);
                store.rescue_expired(now, &mut wake);
            }
            8 => {
                store.prune(&Retention::all(secs(rng.below(60))), rng.below(50) as usize, now);
            }
            9 => {
                if let Some(&id) = rng.pick(&ids) {
                    let _ = if rng.below(2) == 0 { store.cancel(id, now) } else { store.retry(id, now, &mut wake) };
                }
            }
            10 => {
                let queue = *rng.pick(&QUEUES).unwrap_or(&"a");
                store.set_paused(queue, rng.below(2) == 0);
            }
            _ => now += TimeDelta::seconds(rng.below(8) as i64),
        }
        store.assert_consistent();
        assert_within_limits(&store, &ids, LIMITED_QUEUE, CONCURRENCY, KEY_CONCURRENCY);
        assert_within_limits(&store, &ids, "b", u32::MAX, 1);
        for &id in &ids {
            if let Some(job) = store.get(id) {
                assert_fields_match_state(job);
                seen_states.insert(job.state);
            }
        }
        // Keep the scans of the test itself short.
        starts.retain(|(_, _, at)| *at > now - TimeDelta::seconds(KEY_RATE.1.max(RATE.1)));
        ids.retain(|&id| store.contains(id));
        let (live, gone): (Vec<Claim>, Vec<Claim>) = claims.into_iter().partition(|claim| holds(&store, *claim));
        claims = live;
        stale.extend(gone);
        stale.drain(..stale.len().saturating_sub(8));
    }
    assert_eq!(seen_states.len(), JobState::ALL.len(), "the walk should visit every state: {seen_states:?}");
}
