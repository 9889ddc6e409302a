//! Rate limits, kept in storage per queue: a queue's rate limit caps how many of its
//! jobs start in any window of time across every claimer, and its rate limit per key
//! caps each limit key's starts the same way. The window slides: a claim at `t` counts
//! the starts in `(t - period, t]`, its own earlier ones included, and every attempt
//! is a start. A claim also tells how long until a rate limit that held a job back
//! lets another start ([`PacedClaim::rate_limited_for`]).
//!
//! Every case moves the clock with `now` (milliseconds from the base time, see
//! [`ms`]) instead of sleeping, except the worker case, which waits for storage
//! states with a generous deadline. These cases run on a multi-threaded runtime (see
//! the suite macro), so the racing claimers really race.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use haul::{
    JobOutcome, JobState, NewJob, QueueLimits, QueueLimitsRecord, RateLimit,
    limits::{KEY_LIMIT_SCAN, MAX_RATE_PERIOD, MAX_RATE_STARTS},
    storage::{ClaimParams, PacedClaim},
};

use super::{
    jobs::{Script, Tracker},
    worker::{RunningWorker, enqueue_scripts},
    *,
};

/// The base time plus `millis` milliseconds.
fn ms(millis: i64) -> Timestamp {
    at(0) + chrono::Duration::milliseconds(millis)
}

/// `n` milliseconds.
fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `starts` per `period_ms` milliseconds.
fn rate(starts: u32, period_ms: u64) -> RateLimit {
    RateLimit::new(starts, millis(period_ms))
}

async fn set_limits(storage: &TestStorage, queue: &str, limits: QueueLimits) {
    storage.set_queue_limits(queue, limits).await.expect("limits are stored");
}

async fn set_rate(storage: &TestStorage, queue: &str, rate: RateLimit) {
    set_limits(storage, queue, QueueLimits::new().rate(rate)).await;
}

async fn set_key_rate(storage: &TestStorage, queue: &str, key_rate: RateLimit) {
    set_limits(storage, queue, QueueLimits::new().key_rate(key_rate)).await;
}

/// Enqueues jobs on `queue` at `now`, one per entry of `keys` (`None`: no limit key),
/// in this claim order (increasing ids, all else equal); returns the ids.
async fn enqueue_keyed(storage: &TestStorage, queue: &str, keys: &[Option<&str>], now: Timestamp) -> Vec<JobId> {
    let jobs: Vec<NewJob> = keys
        .iter()
        .zip(ordered_ids(keys.len()))
        .map(|(key, id)| match key {
            Some(key) => job(queue).id(id).limit_key(*key),
            None => job(queue).id(id),
        })
        .collect();
    enqueue(storage, jobs, now).await
}

/// Enqueues `n` jobs without a key on `queue` at `now`, in claim order.
async fn enqueue_n(storage: &TestStorage, queue: &str, n: usize, now: Timestamp) -> Vec<JobId> {
    enqueue_keyed(storage, queue, &vec![None; n], now).await
}

/// Claims up to `limit` jobs from `queues` at `now` through [`Storage::claim_paced`].
async fn paced(storage: &TestStorage, queues: &[&str], limit: usize, now: Timestamp) -> PacedClaim {
    let params = ClaimParams::new(queues.iter().copied(), limit).lease(LEASE).worker_id(WORKER).now(now);
    storage.claim_paced(params).await.expect("claim succeeds")
}

/// Claims through [`Storage::claim_paced`] and checks both the jobs (in order) and
/// the wait it reports.
async fn paced_expect(
    storage: &TestStorage,
    queues: &[&str],
    limit: usize,
    now: Timestamp,
    jobs: &[JobId],
    rate_limited_for: Option<Duration>,
) {
    let claimed = paced(storage, queues, limit, now).await;
    assert_eq!(ids_of(&claimed.jobs), jobs.to_vec(), "the jobs of a paced claim of {queues:?} at {now}");
    assert_eq!(claimed.rate_limited_for, rate_limited_for, "the wait of a paced claim of {queues:?} at {now}");
}

/// Checks that each job is available with its attempt count unchanged.
async fn assert_held_back(storage: &TestStorage, ids: &[JobId], attempt: u32) {
    for id in ids {
        let record = get(storage, *id).await;
        assert_eq!((record.state, record.attempt), (JobState::Available, attempt), "job {id} is held back");
    }
}

/// The limit key of a claimed job, which must have one.
fn key_of(record: &JobRecord) -> &str {
    record.limit_key.as_deref().unwrap_or_else(|| panic!("job {} has a limit key", record.id))
}

/// Rate limits are stored and listed with the other limits of their queue, to the
/// millisecond and up to the largest allowed; each call replaces the queue's limits as
/// a whole; limits that limit nothing remove the queue's row.
pub async fn rate_limits_are_stored_listed_replaced_and_removed(storage: TestStorage) {
    let widest = RateLimit::new(MAX_RATE_STARTS, MAX_RATE_PERIOD);
    let odd = rate(3, 1_500);
    let all = QueueLimits::new().concurrency(4).key_concurrency(2).rate(RateLimit::per_second(5)).key_rate(odd);
    let keyed = QueueLimits::new().key_rate(rate(1, 1));
    set_limits(&storage, "all", all).await;
    set_limits(&storage, "rated", QueueLimits::new().rate(widest)).await;
    set_limits(&storage, "keyed", keyed).await;
    set_limits(&storage, "plain", QueueLimits::new().concurrency(3)).await;
    let listed = storage.queue_limits().await.expect("listing succeeds");
    let expected = vec![
        QueueLimitsRecord::new("all", all),
        QueueLimitsRecord::new("keyed", keyed),
        QueueLimitsRecord::new("plain", QueueLimits::new().concurrency(3)),
        QueueLimitsRecord::new("rated", QueueLimits::new().rate(widest)),
    ];
    assert_eq!(listed, expected, "every limit as set, in queue order");

    // Replaced as a whole: the limits a call leaves out are gone.
    let only_rate = QueueLimits::new().rate(RateLimit::per_minute(100));
    set_limits(&storage, "all", only_rate).await;
    let plain_and_rated = QueueLimits::new().concurrency(3).rate(RateLimit::per_hour(7));
    set_limits(&storage, "plain", plain_and_rated).await;
    set_limits(&storage, "rated", QueueLimits::new()).await;
    let listed = storage.queue_limits().await.expect("listing succeeds");
    let expected = vec![
        QueueLimitsRecord::new("all", only_rate),
        QueueLimitsRecord::new("keyed", keyed),
        QueueLimitsRecord::new("plain", plain_and_rated),
    ];
    assert_eq!(listed, expected, "replaced, and the unlimited queue removed");

    set_limits(&storage, "all", QueueLimits::new()).await;
    set_limits(&storage, "keyed", QueueLimits::new()).await;
    let listed = storage.queue_limits().await.expect("listing succeeds");
    assert_eq!(listed, vec![QueueLimitsRecord::new("plain", plain_and_rated)], "only rate limits, removed");
}

/// A rate limit of 0 starts, of a period of 0, under a millisecond or not whole
/// milliseconds, or over [`MAX_RATE_STARTS`] or [`MAX_RATE_PERIOD`], is refused with
/// [`haul::Error::InvalidArgument`], as a queue's or a key's rate, alone or with
/// valid limits, and changes nothing stored.
pub async fn bad_rate_limits_are_refused_and_change_nothing(storage: TestStorage) {
    let stored = QueueLimits::new().concurrency(2).rate(RateLimit::per_second(3));
    set_limits(&storage, "q", stored).await;
    let bad_rates = [
        RateLimit::new(0, secs(1)),
        RateLimit::new(MAX_RATE_STARTS + 1, secs(1)),
        RateLimit::new(1, Duration::ZERO),
        RateLimit::new(1, Duration::from_micros(999)),
        RateLimit::new(1, Duration::from_micros(1_500)),
        RateLimit::new(1, MAX_RATE_PERIOD + millis(1)),
    ];
    for bad in bad_rates {
        let refused_limits = [
            QueueLimits::new().rate(bad),
            QueueLimits::new().key_rate(bad),
            QueueLimits::new().concurrency(1).rate(RateLimit::per_second(1)).key_rate(bad),
            QueueLimits::new().rate(bad).key_rate(RateLimit::per_second(1)),
        ];
        for limits in refused_limits {
            for queue in ["q", "fresh"] {
                let refused = storage.set_queue_limits(queue, limits).await;
                assert!(matches!(refused, Err(haul::Error::InvalidArgument(_))), "{queue} {limits:?}: {refused:?}");
            }
        }
    }
    let listed = storage.queue_limits().await.expect("listing succeeds");
    assert_eq!(listed, vec![QueueLimitsRecord::new("q", stored)], "a refused call changes nothing");
}

/// A rate limit of `n` per period lets exactly `n` jobs start at `t` (one claim's own
/// starts counting), none more until the period has passed (a millisecond before is
/// too early), and `n` again once every start left the window.
pub async fn a_rate_limit_allows_exactly_its_starts_per_period(storage: TestStorage) {
    let queue = "rated";
    set_rate(&storage, queue, rate(3, 1_000)).await;
    let ids = enqueue_n(&storage, queue, 20, ms(0)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, ms(0)).await), ids[..3], "three of ten");
    assert!(claim(&storage, &[queue], 10, ms(0)).await.is_empty(), "full at t");
    assert!(claim(&storage, &[queue], 10, ms(999)).await.is_empty(), "full until the period has passed");
    assert_held_back(&storage, &ids[3..], 0).await;
    let named_twice = claim(&storage, &[queue, queue], 10, ms(1_000)).await;
    assert_eq!(ids_of(&named_twice), ids[3..6], "the starts at t left; a queue named twice counts once");
    assert!(claim(&storage, &[queue], 10, ms(1_000)).await.is_empty(), "full again");
    // Claims of one job each fill the window the same.
    for (n, id) in ids[6..9].iter().enumerate() {
        assert_eq!(ids_of(&claim(&storage, &[queue], 1, ms(2_000)).await), vec![*id], "claim {n} of one");
    }
    assert!(claim(&storage, &[queue], 1, ms(2_999)).await.is_empty(), "three single claims fill the window");
}

/// The window slides with each start, as a log of start times, not a refilled bucket
/// or a fixed window: with 2 per second, starts at 0 ms and 400 ms let exactly one
/// more start at 1,000 ms (the one at 0 left, the one at 400 ms did not) and the next
/// at 1,400 ms.
pub async fn the_window_slides_with_each_start(storage: TestStorage) {
    let queue = "spread";
    set_rate(&storage, queue, rate(2, 1_000)).await;
    let ids = enqueue_n(&storage, queue, 10, ms(0)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 1, ms(0)).await), ids[..1]);
    assert_eq!(ids_of(&claim(&storage, &[queue], 5, ms(400)).await), ids[1..2], "one left in the window");
    assert!(claim(&storage, &[queue], 5, ms(999)).await.is_empty());
    assert_eq!(ids_of(&claim(&storage, &[queue], 5, ms(1_000)).await), ids[2..3], "one more, not two");
    assert!(claim(&storage, &[queue], 5, ms(1_399)).await.is_empty(), "the start at 400 ms is in the window");
    assert_eq!(ids_of(&claim(&storage, &[queue], 5, ms(1_400)).await), ids[3..4]);
    assert!(claim(&storage, &[queue], 5, ms(1_999)).await.is_empty());
    assert_eq!(ids_of(&claim(&storage, &[queue], 5, ms(2_000)).await), ids[4..5]);
    assert_eq!(ids_of(&claim(&storage, &[queue], 5, ms(2_400)).await), ids[5..6]);
    assert_eq!(ids_of(&claim(&storage, &[queue], 5, ms(5_000)).await), ids[6..8], "every start left");
}

/// Jobs a rate limit holds back stay available with no attempt spent, keep their
/// place in the claim order (ahead of jobs enqueued after them), and are claimed by
/// later claims until none is left.
pub async fn held_back_jobs_stay_available_and_keep_their_attempts_and_order(storage: TestStorage) {
    let queue = "rated";
    set_rate(&storage, queue, rate(2, 10_000)).await;
    let ids = enqueue_n(&storage, queue, 6, at(0)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(0)).await), ids[..2]);
    assert_held_back(&storage, &ids[2..], 0).await;
    let late = enqueue_n(&storage, queue, 2, at(5)).await;
    assert!(claim(&storage, &[queue], 10, at(5)).await.is_empty());
    assert_held_back(&storage, &ids[2..], 0).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(10)).await), ids[2..4], "the held jobs first");
    assert_held_back(&storage, &ids[4..], 0).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(20)).await), ids[4..6]);
    assert_held_back(&storage, &late, 0).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(30)).await), late, "then the later jobs");
    for id in ids.iter().chain(&late) {
        let record = get(&storage, *id).await;
        assert_eq!((record.state, record.attempt), (JobState::Running, 1), "job {id} ran once");
    }
}

/// A rate limit per key lets each limit key of the queue start its own `n` jobs per
/// period: a full key's jobs are skipped without stopping other keys' jobs behind
/// them, jobs without a key are not limited, and the same key in another queue counts
/// apart.
pub async fn a_key_rate_limit_allows_each_key_its_starts_per_period(storage: TestStorage) {
    let queue = "keyed";
    set_key_rate(&storage, queue, rate(2, 10_000)).await;
    let keys = [Some("a"), Some("a"), Some("a"), None, Some("b"), Some("a"), None, Some("b"), Some("b"), Some("c")];
    let ids = enqueue_keyed(&storage, queue, &keys, at(0)).await;
    let claimed = claim(&storage, &[queue], 20, at(0)).await;
    let expected = vec![ids[0], ids[1], ids[3], ids[4], ids[6], ids[7], ids[9]];
    assert_eq!(ids_of(&claimed), expected, "in claim order, each key up to its rate, keyless jobs freely");
    let skipped = [ids[2], ids[5], ids[8]];
    assert_held_back(&storage, &skipped, 0).await;

    let keyless = enqueue_n(&storage, queue, 5, at(1)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 20, at(1)).await), keyless, "keyless jobs are not key-rate limited");
    let other_queue = "keyed.other";
    set_key_rate(&storage, other_queue, rate(2, 10_000)).await;
    let elsewhere = enqueue_keyed(&storage, other_queue, &[Some("a")], at(1)).await;
    assert_eq!(ids_of(&claim(&storage, &[other_queue], 5, at(1)).await), elsewhere, "key a of another queue");

    assert!(claim(&storage, &[queue], 20, ms(9_999)).await.is_empty(), "keys a and b are full until 10 s");
    assert_held_back(&storage, &skipped, 0).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 20, at(10)).await), skipped.to_vec(), "their starts left");
}

/// A rate limit and a concurrency limit apply together: with 3 starts per 10 s and 2
/// running at once, the concurrency holds jobs back while the rate has room, and the
/// rate holds them back while slots are free.
pub async fn a_rate_limit_and_a_concurrency_limit_apply_together(storage: TestStorage) {
    let queue = "both";
    set_limits(&storage, queue, QueueLimits::new().concurrency(2).rate(rate(3, 10_000))).await;
    let ids = enqueue_n(&storage, queue, 10, at(0)).await;
    let first = paced(&storage, &[queue], 10, at(0)).await;
    assert_eq!(ids_of(&first.jobs), ids[..2], "two slots");
    assert_eq!(first.rate_limited_for, None, "the concurrency limit, not the rate, held the rest back");
    report_applied(&storage, claim_of(&first.jobs[0]), JobOutcome::Completed, at(1)).await;
    let second = claim(&storage, &[queue], 10, at(1)).await;
    assert_eq!(ids_of(&second), ids[2..3], "one slot freed, the third start");
    report_applied(&storage, claim_of(&first.jobs[1]), JobOutcome::Completed, at(2)).await;
    report_applied(&storage, claim_of(&second[0]), JobOutcome::Completed, at(2)).await;
    paced_expect(&storage, &[queue], 10, at(2), &[], Some(secs(8))).await;
    let third = claim(&storage, &[queue], 10, at(10)).await;
    assert_eq!(ids_of(&third), ids[3..5], "two slots, and the two starts at 0 left");
    for record in &third {
        report_applied(&storage, claim_of(record), JobOutcome::Completed, at(10)).await;
    }
    paced_expect(&storage, &[queue], 10, at(10), &[], Some(secs(1))).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(11)).await), ids[5..6], "the start at 1 s left");
}

/// A rate limit per key and a concurrency limit per key apply together: with one
/// running and 2 starts per 10 s per key, a key's third job waits for the window
/// though its slot is free, and another key's job waits for its slot.
pub async fn a_key_rate_limit_and_a_key_concurrency_limit_apply_together(storage: TestStorage) {
    let queue = "keyed";
    set_limits(&storage, queue, QueueLimits::new().key_concurrency(1).key_rate(rate(2, 10_000))).await;
    let keys = [Some("a"), Some("b"), Some("a"), Some("b"), Some("a"), Some("b")];
    let ids = enqueue_keyed(&storage, queue, &keys, at(0)).await;
    let (a, b): (Vec<JobId>, Vec<JobId>) =
        (ids.iter().step_by(2).copied().collect(), ids[1..].iter().step_by(2).copied().collect());
    let first = paced(&storage, &[queue], 10, at(0)).await;
    assert_eq!(ids_of(&first.jobs), vec![a[0], b[0]], "one running per key");
    assert_eq!(first.rate_limited_for, None, "the limit per key, not the rate, held the rest back");
    report_applied(&storage, claim_of(&first.jobs[0]), JobOutcome::Completed, at(1)).await;
    let a1 = claim(&storage, &[queue], 10, at(1)).await;
    assert_eq!(ids_of(&a1), vec![a[1]], "key a's slot is free and its rate has room");
    report_applied(&storage, claim_of(&a1[0]), JobOutcome::Completed, at(2)).await;
    paced_expect(&storage, &[queue], 10, at(2), &[], Some(secs(8))).await;
    assert_held_back(&storage, &[a[2], b[1], b[2]], 0).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(10)).await), vec![a[2]], "key b's slot is still taken");
    report_applied(&storage, claim_of(&first.jobs[1]), JobOutcome::Completed, at(10)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(10)).await), vec![b[1]]);
}

/// The four limits of a queue apply together: 10 running in the queue and 1 per key,
/// 3 starts per 10 s in the queue and 1 per key.
pub async fn every_limit_applies_together(storage: TestStorage) {
    let queue = "all";
    let limits = QueueLimits::new().concurrency(10).key_concurrency(1).rate(rate(3, 10_000)).key_rate(rate(1, 10_000));
    set_limits(&storage, queue, limits).await;
    let keys = [Some("a"), Some("a"), Some("b"), Some("b"), Some("c"), Some("d"), None];
    let ids = enqueue_keyed(&storage, queue, &keys, at(0)).await;
    let first = paced(&storage, &[queue], 10, at(0)).await;
    assert_eq!(ids_of(&first.jobs), vec![ids[0], ids[2], ids[4]], "one per key until the queue's rate is full");
    assert_eq!(first.rate_limited_for, Some(secs(10)), "the queue's rate held back d and the keyless job");
    assert_held_back(&storage, &[ids[1], ids[3], ids[5], ids[6]], 0).await;
    let later = claim(&storage, &[queue], 10, at(10)).await;
    assert_eq!(ids_of(&later), vec![ids[5], ids[6]], "a and b still run; d and the keyless job start");
    report_applied(&storage, claim_of(&first.jobs[0]), JobOutcome::Completed, at(10)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(10)).await), vec![ids[1]], "a's slot freed, its rate has room");
    report_applied(&storage, claim_of(&first.jobs[1]), JobOutcome::Completed, at(10)).await;
    paced_expect(&storage, &[queue], 10, at(10), &[], Some(secs(10))).await;
    assert_held_back(&storage, &[ids[3]], 0).await;
}

/// Eight claimers racing at the same `now`, round after round, together start exactly
/// the rate limit's worth of jobs per window, never more, each job once.
pub async fn racing_claimers_never_exceed_a_rate_limit_together(storage: TestStorage) {
    const STARTS: usize = 5;
    const ROUNDS: usize = 6;
    let queue = "rated";
    set_rate(&storage, queue, rate(STARTS as u32, 1_000)).await;
    // More jobs than the rounds take, so that taking too many is possible.
    enqueue_n(&storage, queue, STARTS * ROUNDS + 20, at(0)).await;
    let mut seen = HashSet::new();
    for round in 0..ROUNDS {
        let now = ms(1_000 * round as i64);
        let claimed = race(&storage, queue, now).await;
        assert_eq!(claimed.len(), STARTS, "round {round}: the claimers took exactly the rate together");
        for record in &claimed {
            assert!(seen.insert(record.id), "job {} claimed twice", record.id);
        }
        let late = race(&storage, queue, now + chrono::Duration::milliseconds(999)).await;
        assert_eq!(ids_of(&late), vec![], "round {round}: nothing more within the window");
    }
}

/// Eight claimers racing at the same `now`, round after round, together start exactly
/// the rate limit per key's worth of each key's jobs per window, never more.
pub async fn racing_claimers_never_exceed_a_key_rate_limit_together(storage: TestStorage) {
    const STARTS: usize = 2;
    const ROUNDS: usize = 5;
    let queue = "keyed";
    let keys = ["r1", "r2", "r3", "r4"];
    set_key_rate(&storage, queue, rate(STARTS as u32, 1_000)).await;
    let order: Vec<Option<&str>> = (0..STARTS * ROUNDS + 3).flat_map(|_| keys.iter().map(|key| Some(*key))).collect();
    enqueue_keyed(&storage, queue, &order, at(0)).await;
    let mut seen = HashSet::new();
    for round in 0..ROUNDS {
        let now = ms(1_000 * round as i64);
        let claimed = race(&storage, queue, now).await;
        let mut per_key: HashMap<&str, usize> = HashMap::new();
        for record in &claimed {
            *per_key.entry(key_of(record)).or_default() += 1;
            assert!(seen.insert(record.id), "job {} claimed twice", record.id);
        }
        let expected: HashMap<&str, usize> = keys.iter().map(|key| (*key, STARTS)).collect();
        assert_eq!(per_key, expected, "round {round}: the claimers took exactly the rate of each key together");
        let late = race(&storage, queue, now + chrono::Duration::milliseconds(999)).await;
        assert_eq!(ids_of(&late), vec![], "round {round}: nothing more within the window");
    }
}

/// [`concurrency::CLAIMERS`] claims of up to 3 jobs of `queue` racing at `now`.
async fn race(storage: &TestStorage, queue: &str, now: Timestamp) -> Vec<JobRecord> {
    super::limits::race_claims(storage, queue, 3, now).await
}

/// Every attempt is a start: a job failed, retried and claimed again counts once per
/// claim, so two attempts of one job fill a rate of 2 and the third waits for the
/// window.
pub async fn each_attempt_of_a_retried_job_counts_as_a_start(storage: TestStorage) {
    let queue = "rated";
    set_rate(&storage, queue, rate(2, 100_000)).await;
    let id = enqueue_one(&storage, job(queue), at(0)).await;
    let first = claim_only(&storage, queue, id, at(0)).await;
    report_applied(&storage, claim_of(&first), failed("boom", secs(1)), at(1)).await;
    assert_eq!(storage.promote_due(Some(at(2))).await.expect("promote succeeds"), 1);
    let second = claim_only(&storage, queue, id, at(2)).await;
    assert_eq!(second.attempt, 2);
    report_applied(&storage, claim_of(&second), failed("boom", secs(1)), at(3)).await;
    assert_eq!(storage.promote_due(Some(at(4))).await.expect("promote succeeds"), 1);
    paced_expect(&storage, &[queue], 10, at(4), &[], Some(secs(96))).await;
    assert!(claim(&storage, &[queue], 10, ms(99_999)).await.is_empty(), "both attempts are in the window");
    assert_held_back(&storage, &[id], 2).await;
    assert_eq!(claim_only(&storage, queue, id, at(100)).await.attempt, 3, "the first attempt left the window");
}

/// Limits hold across a rescued lease: a job whose expired lease was rescued counts
/// its start still, and its next claim is a start again, for the queue's rate and its
/// key's; another key is not held back meanwhile.
pub async fn rate_limits_hold_across_a_rescued_lease(storage: TestStorage) {
    let (rated, keyed) = ("rated", "keyed");
    set_rate(&storage, rated, rate(1, 100_000)).await;
    set_key_rate(&storage, keyed, rate(1, 100_000)).await;
    let r = enqueue_one(&storage, job(rated), at(0)).await;
    let k = enqueue_one(&storage, job(keyed).limit_key("k"), at(0)).await;
    claim_only(&storage, rated, r, at(0)).await;
    claim_only(&storage, keyed, k, at(0)).await;
    let lease = chrono::Duration::from_std(LEASE).expect("the lease fits");
    let rescued = storage.rescue_expired(Some(at(0) + lease + chrono::Duration::seconds(1))).await;
    assert_eq!(rescued.expect("rescue succeeds").rescued, 2);
    assert_held_back(&storage, &[r, k], 1).await;
    let other = enqueue_one(&storage, job(keyed).limit_key("other"), at(31)).await;
    let meanwhile = paced(&storage, &[rated, keyed], 10, at(31)).await;
    assert_eq!(ids_of(&meanwhile.jobs), vec![other], "only the job of another key");
    assert_eq!(meanwhile.rate_limited_for, Some(secs(69)), "the rescued jobs' starts at 0 s count");
    report_applied(&storage, claim_of(&meanwhile.jobs[0]), JobOutcome::Completed, at(32)).await;
    assert!(claim(&storage, &[rated, keyed], 10, ms(99_999)).await.is_empty(), "the rescued starts still count");
    let again = claim(&storage, &[rated, keyed], 10, at(100)).await;
    let mut expected = vec![r, k];
    expected.sort();
    assert_eq!(sorted_ids_of(&again), expected);
    assert!(again.iter().all(|record| record.attempt == 2), "{again:?}");

    let rescued = storage.rescue_expired(Some(at(100) + lease + chrono::Duration::seconds(1))).await;
    assert_eq!(rescued.expect("rescue succeeds").rescued, 2);
    assert!(claim(&storage, &[rated, keyed], 10, at(131)).await.is_empty(), "the second claims count too");
    paced_expect(&storage, &[rated, keyed], 10, at(131), &[], Some(secs(69))).await;
    assert_eq!(claim(&storage, &[rated, keyed], 10, at(200)).await.len(), 2);
}

/// A claim a queue's rate held back tells exactly when the next start is allowed: the
/// `n`-th most recent start (this claim's own included) plus the period.
pub async fn rate_limited_for_tells_when_the_queues_next_start_is_allowed(storage: TestStorage) {
    let queue = "rated";
    set_rate(&storage, queue, rate(2, 10_000)).await;
    let ids = enqueue_n(&storage, queue, 8, at(0)).await;
    paced_expect(&storage, &[queue], 10, at(0), &ids[..2], Some(secs(10))).await;
    paced_expect(&storage, &[queue], 10, at(3), &[], Some(secs(7))).await;
    paced_expect(&storage, &[queue], 10, ms(9_999), &[], Some(millis(1))).await;
    paced_expect(&storage, &[queue], 1, at(10), &ids[2..3], None).await;
    paced_expect(&storage, &[queue], 10, at(10), &ids[3..4], Some(secs(10))).await;

    // Spread starts: the older of the last two sets the wait, older ones no longer do.
    let spread = "spread";
    set_rate(&storage, spread, rate(2, 10_000)).await;
    let ids = enqueue_n(&storage, spread, 8, at(0)).await;
    paced_expect(&storage, &[spread], 1, at(0), &ids[..1], None).await;
    paced_expect(&storage, &[spread], 1, at(6), &ids[1..2], None).await;
    paced_expect(&storage, &[spread], 10, at(7), &[], Some(secs(3))).await;
    paced_expect(&storage, &[spread], 10, at(10), &ids[2..3], Some(secs(6))).await;
    paced_expect(&storage, &[spread], 10, ms(13_500), &[], Some(millis(2_500))).await;
}

/// A claim a key's rate held back tells when the first held key may start again (the
/// soonest of the keys that held a job back).
pub async fn rate_limited_for_tells_when_a_keys_next_start_is_allowed(storage: TestStorage) {
    let queue = "keyed";
    set_key_rate(&storage, queue, rate(1, 10_000)).await;
    let a = enqueue_keyed(&storage, queue, &[Some("a"), Some("a")], at(0)).await;
    paced_expect(&storage, &[queue], 10, at(0), &a[..1], Some(secs(10))).await;
    let b = enqueue_keyed(&storage, queue, &[Some("b"), Some("b")], at(6)).await;
    paced_expect(&storage, &[queue], 10, at(6), &b[..1], Some(secs(4))).await;
    paced_expect(&storage, &[queue], 10, at(7), &[], Some(secs(3))).await;
    paced_expect(&storage, &[queue], 10, at(10), &a[1..], Some(secs(6))).await;
    paced_expect(&storage, &[queue], 10, at(16), &b[1..], None).await;
}

/// A claim no rate limit held back reports no wait: no rate limit, a rate with room,
/// a full rate with no job waiting (none available, one not yet due, or the queue
/// paused), a claim that
/// its `limit` stopped (even when it filled the rate exactly, or when the held job of
/// a rated queue comes after the last job the limit let it take), a claim of zero.
pub async fn rate_limited_for_is_none_when_no_rate_limit_held_a_job_back(storage: TestStorage) {
    let free = enqueue_n(&storage, "free", 3, at(0)).await;
    paced_expect(&storage, &["free"], 2, at(0), &free[..2], None).await;
    paced_expect(&storage, &["free"], 10, at(0), &free[2..], None).await;

    set_rate(&storage, "roomy", rate(5, 10_000)).await;
    let roomy = enqueue_n(&storage, "roomy", 3, at(0)).await;
    paced_expect(&storage, &["roomy"], 10, at(0), &roomy, None).await;

    set_rate(&storage, "drained", rate(1, 10_000)).await;
    let drained = enqueue_n(&storage, "drained", 1, at(0)).await;
    paced_expect(&storage, &["drained"], 10, at(0), &drained, None).await;
    paced_expect(&storage, &["drained"], 10, at(1), &[], None).await;
    enqueue_one(&storage, job_at("drained", at(20)), at(1)).await;
    paced_expect(&storage, &["drained"], 10, at(2), &[], None).await;

    set_rate(&storage, "paused", rate(1, 10_000)).await;
    let paused = enqueue_n(&storage, "paused", 2, at(0)).await;
    paced_expect(&storage, &["paused"], 1, at(0), &paused[..1], None).await;
    storage.pause_queue("paused").await.expect("pausing succeeds");
    paced_expect(&storage, &["paused"], 10, at(1), &[], None).await;
    storage.resume_queue("paused").await.expect("resuming succeeds");
    paced_expect(&storage, &["paused"], 10, at(1), &[], Some(secs(9))).await;

    set_rate(&storage, "limited", rate(5, 10_000)).await;
    let limited = enqueue_n(&storage, "limited", 10, at(0)).await;
    paced_expect(&storage, &["limited"], 2, at(0), &limited[..2], None).await;
    paced_expect(&storage, &["limited"], 3, at(0), &limited[2..5], None).await;
    paced_expect(&storage, &["limited"], 0, at(0), &[], None).await;
    paced_expect(&storage, &["limited"], 1, at(0), &[], Some(secs(10))).await;

    // Several queues: a job held back behind the last job the claim's limit let it
    // take (in claim order) would not have been taken anyway.
    set_rate(&storage, "rated.after", rate(1, 10_000)).await;
    let ids = ordered_ids(5);
    enqueue(&storage, vec![job("rated.after").id(ids[0])], at(0)).await;
    claim_only(&storage, "rated.after", ids[0], at(0)).await;
    let jobs = vec![job("free.before").id(ids[1]), job("free.before").id(ids[2]), job("free.before").id(ids[3])];
    enqueue(&storage, jobs, at(0)).await;
    enqueue(&storage, vec![job("rated.after").id(ids[4])], at(0)).await;
    let queues = ["free.before", "rated.after"];
    paced_expect(&storage, &queues, 2, at(0), &ids[1..3], None).await;
    paced_expect(&storage, &queues, 10, at(0), &ids[3..4], Some(secs(10))).await;
}

/// A claim of several queues that rates held back tells the soonest of their waits,
/// whichever queue (or key) it comes from.
pub async fn rate_limited_for_is_the_soonest_of_the_claims_queues(storage: TestStorage) {
    let (slow, fast, keyed) = ("slow", "fast", "keyed");
    set_rate(&storage, slow, rate(1, 10_000)).await;
    set_rate(&storage, fast, rate(1, 4_000)).await;
    set_key_rate(&storage, keyed, rate(1, 3_000)).await;
    let ids = ordered_ids(6);
    let jobs = vec![
        job(slow).id(ids[0]),
        job(fast).id(ids[1]),
        job(keyed).id(ids[2]).limit_key("k"),
        job(slow).id(ids[3]),
        job(fast).id(ids[4]),
        job(keyed).id(ids[5]).limit_key("k"),
    ];
    enqueue(&storage, jobs, at(0)).await;
    let queues = [slow, keyed, fast];
    paced_expect(&storage, &queues[..2], 10, at(0), &[ids[0], ids[2]], Some(secs(3))).await;
    paced_expect(&storage, &[slow, fast], 10, at(0), &[ids[1]], Some(secs(4))).await;
    paced_expect(&storage, &queues, 10, at(2), &[], Some(secs(1))).await;
    paced_expect(&storage, &queues, 10, at(3), &[ids[5]], Some(secs(1))).await;
    paced_expect(&storage, &queues, 10, at(4), &[ids[4]], Some(secs(6))).await;
    paced_expect(&storage, &queues, 10, at(10), &[ids[3]], None).await;
}

/// In a claim of several queues, a queue whose rate is full gives nothing and the
/// other queues fill the rest; a claim that comes back short tells the rate-limited
/// queue's wait (a full one may not: its claimer claims again at once).
pub async fn the_other_queues_of_a_claim_fill_what_a_rate_leaves(storage: TestStorage) {
    let (rated, free) = ("rated", "free");
    set_rate(&storage, rated, rate(2, 10_000)).await;
    let ids = ordered_ids(8);
    let jobs = (0..8).map(|n| job(if n < 4 { rated } else { free }).id(ids[n])).collect();
    enqueue(&storage, jobs, at(0)).await;
    let claimed = paced(&storage, &[rated, free], 5, at(0)).await;
    assert_eq!(ids_of(&claimed.jobs), [&ids[..2], &ids[4..7]].concat(), "two of the rated queue, three others");
    paced_expect(&storage, &[rated, free], 5, at(0), &ids[7..], Some(secs(10))).await;
    assert_held_back(&storage, &ids[2..4], 0).await;
    paced_expect(&storage, &[rated, free], 5, at(10), &ids[2..4], None).await;
}

/// A changed rate limit applies to the next claim, counting the starts already in the
/// window: raised, it lets the difference start; lowered, it holds jobs back until
/// enough starts left; removed, it limits nothing.
pub async fn a_changed_rate_limit_applies_to_the_next_claim(storage: TestStorage) {
    let queue = "rated";
    set_rate(&storage, queue, rate(2, 10_000)).await;
    let ids = enqueue_n(&storage, queue, 30, at(0)).await;
    assert_eq!(claim(&storage, &[queue], 10, at(0)).await.len(), 2);
    set_rate(&storage, queue, rate(4, 10_000)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(1)).await), ids[2..4], "raised to four, two in the window");
    set_rate(&storage, queue, rate(3, 10_000)).await;
    assert!(claim(&storage, &[queue], 10, at(2)).await.is_empty(), "four in the window, over the new three");
    let one = claim(&storage, &[queue], 10, at(10)).await;
    assert_eq!(ids_of(&one), ids[4..5], "the starts at 0 s left, the two at 1 s are in the window");
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(11)).await), ids[5..7], "the starts at 1 s left");
    set_rate(&storage, queue, rate(3, 20_000)).await;
    assert!(claim(&storage, &[queue], 10, at(25)).await.is_empty(), "the longer window holds the starts at 10-11 s");
    paced_expect(&storage, &[queue], 10, at(25), &[], Some(secs(5))).await;
    set_limits(&storage, queue, QueueLimits::new()).await;
    assert_eq!(claim(&storage, &[queue], 10, at(25)).await.len(), 10, "no limit any more");
}

/// The largest rate limit is honoured exactly: [`MAX_RATE_STARTS`] starts at one time,
/// then none for [`MAX_RATE_PERIOD`] (31 days, more milliseconds than a 32-bit
/// integer holds), as a queue's rate and as a key's.
pub async fn the_largest_rate_limit_is_honoured(storage: TestStorage) {
    let widest = RateLimit::new(MAX_RATE_STARTS, MAX_RATE_PERIOD);
    let period = chrono::Duration::from_std(MAX_RATE_PERIOD).expect("the period fits");
    let starts = MAX_RATE_STARTS as usize;
    for (queue, limits, key) in
        [("rated", QueueLimits::new().rate(widest), None), ("keyed", QueueLimits::new().key_rate(widest), Some("k"))]
    {
        set_limits(&storage, queue, limits).await;
        let ids = ordered_ids(starts + 1);
        let jobs: Vec<NewJob> = ids
            .iter()
            .map(|id| match key {
                Some(key) => job(queue).id(*id).limit_key(key),
                None => job(queue).id(*id),
            })
            .collect();
        for chunk in jobs.chunks(1_000) {
            enqueue(&storage, chunk.to_vec(), at(0)).await;
        }
        // In claims of a thousand: a claim of a key-limited queue looks at no more.
        for round in 0..starts / KEY_LIMIT_SCAN {
            let claimed = claim(&storage, &[queue], KEY_LIMIT_SCAN, at(0)).await;
            assert_eq!(claimed.len(), KEY_LIMIT_SCAN, "{queue}: claim {round}");
        }
        paced_expect(&storage, &[queue], 10, at(0), &[], Some(MAX_RATE_PERIOD)).await;
        let last_moment = at(0) + period - chrono::Duration::milliseconds(1);
        paced_expect(&storage, &[queue], 10, last_moment, &[], Some(millis(1))).await;
        let last = ids[starts];
        paced_expect(&storage, &[queue], 10, at(0) + period, &[last], None).await;
    }
}

/// A claim looks at no more than [`KEY_LIMIT_SCAN`] waiting jobs of a queue with a
/// rate limit per key: a job of a key with room behind that many jobs of a full key
/// waits, and is claimed once one of them is gone.
pub async fn a_claim_looks_at_no_more_than_the_scan_bound_with_a_key_rate(storage: TestStorage) {
    let queue = "keyed";
    set_key_rate(&storage, queue, RateLimit::per_hour(1)).await;
    let mut keys = vec!["full"; KEY_LIMIT_SCAN + 1];
    keys.push("free");
    let ids = ordered_ids(keys.len());
    let jobs: Vec<NewJob> = keys.iter().zip(&ids).map(|(key, id)| job(queue).id(*id).limit_key(*key)).collect();
    for chunk in jobs.chunks(500) {
        enqueue(&storage, chunk.to_vec(), at(0)).await;
    }
    let free = ids[KEY_LIMIT_SCAN + 1];
    paced_expect(&storage, &[queue], 1, at(0), &ids[..1], None).await;
    paced_expect(&storage, &[queue], 10, at(1), &[], Some(secs(3_599))).await;
    storage.cancel(ids[1], Some(at(2))).await.expect("cancel succeeds");
    paced_expect(&storage, &[queue], 10, at(2), &[free], Some(secs(3_598))).await;
}

/// A worker whose claim a rate held back claims again when the rate lets the next job
/// start, without waiting for its poll interval (an hour here); the jobs start no
/// faster than the rate, by the storage's clock.
pub async fn a_worker_claims_again_when_the_rate_lets_the_next_job_start(storage: TestStorage) {
    let queue = "rated.worker";
    let period = millis(300);
    set_rate(&storage, queue, RateLimit::new(1, period)).await;
    let ids = enqueue_scripts(&storage, queue, vec![Script::Complete; 3]).await;
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| {
        builder.poll_interval(Duration::from_secs(3_600)).maintenance_interval(Duration::from_secs(3_600))
    });
    let mut started = Vec::new();
    for id in &ids {
        let record = worker::wait_for_state(&storage, *id, JobState::Completed).await;
        started.push(record.attempted_at.expect("a completed job was attempted"));
    }
    worker.stop().await;
    started.sort();
    let period = chrono::Duration::from_std(period).expect("the period fits");
    for pair in started.windows(2) {
        assert!(pair[1] - pair[0] >= period, "starts closer than the rate allows: {started:?}");
    }
}
