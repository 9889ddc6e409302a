//! Rate limits on the memory backend, with the clock moved by hand: how many jobs a
//! claim takes, and the exact `rate_limited_for` it reports.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use haul_core::{
    Admin as _, ClaimParams, EnqueueParams, JobId, JobOutcome, JobRecord, JobState, NewJob, PacedClaim, QueueLimits,
    QueueLimitsRecord, RateLimit, Report, ReportParams, RunAt, Storage, Timestamp,
};
use haul_memory::MemoryStorage;
use serde_json::json;

const LEASE: Duration = Duration::from_secs(3_600);

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn wait_ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// `keys.len()` jobs of `queue`, due one second apart before `t` in this order (so
/// claim order is list order), each with its limit key if any.
async fn enqueue(storage: &MemoryStorage, queue: &str, keys: &[Option<&str>], t: Timestamp) -> Vec<JobId> {
    let count = i64::try_from(keys.len()).unwrap();
    let jobs = keys
        .iter()
        .zip(0..)
        .map(|(key, n)| {
            let job = NewJob::new("work", json!({})).queue(queue).run_at(RunAt::At(t - secs(count - n)));
            match key {
                Some(key) => job.limit_key(*key),
                None => job,
            }
        })
        .collect();
    storage.enqueue(EnqueueParams::new(jobs).now(t)).await.unwrap().ids
}

async fn claim(storage: &MemoryStorage, queues: &[&str], limit: usize, now: Timestamp) -> PacedClaim {
    storage.claim_paced(ClaimParams::new(queues.iter().copied(), limit).lease(LEASE).now(now)).await.unwrap()
}

fn ids(claim: &PacedClaim) -> Vec<JobId> {
    claim.jobs.iter().map(|job| job.id).collect()
}

async fn limit(storage: &MemoryStorage, queue: &str, limits: QueueLimits) {
    storage.set_queue_limits(queue, limits).await.unwrap();
}

async fn complete(storage: &MemoryStorage, job: &JobRecord, now: Timestamp) {
    let report = Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed };
    let outcome = storage.report(ReportParams::new(vec![report]).now(now)).await.unwrap();
    assert_eq!(outcome.applied.len(), 1);
}

#[tokio::test]
async fn a_queue_starts_exactly_its_rate_per_sliding_window() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().rate(RateLimit::new(2, Duration::from_secs(10)))).await;
    let jobs = enqueue(&storage, "q", &[None; 6], t).await;

    let first = claim(&storage, &["q"], 1, t).await;
    assert_eq!((ids(&first), first.rate_limited_for), (jobs[..1].to_vec(), None));
    let second = claim(&storage, &["q"], 10, t + secs(4)).await;
    assert_eq!(ids(&second), jobs[1..2]);
    assert_eq!(second.rate_limited_for, wait_ms(6_000), "the start at t leaves the window at t + 10 s");

    let just_before = claim(&storage, &["q"], 10, t + secs(10) - ms(1)).await;
    assert_eq!((ids(&just_before), just_before.rate_limited_for), (vec![], wait_ms(1)));

    let at_period = claim(&storage, &["q"], 10, t + secs(10)).await;
    assert_eq!(ids(&at_period), jobs[2..3], "one start left the window: one more starts");
    assert_eq!(at_period.rate_limited_for, wait_ms(4_000));

    let later = claim(&storage, &["q"], 10, t + secs(14)).await;
    assert_eq!((ids(&later), later.rate_limited_for), (jobs[3..4].to_vec(), wait_ms(6_000)));
}

#[tokio::test]
async fn a_claim_counts_its_own_starts_and_waits_a_whole_period_after_a_burst() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().rate(RateLimit::new(3, Duration::from_secs(10)))).await;
    let jobs = enqueue(&storage, "q", &[None; 5], t).await;
    let burst = claim(&storage, &["q"], 10, t).await;
    assert_eq!((ids(&burst), burst.rate_limited_for), (jobs[..3].to_vec(), wait_ms(10_000)));
    let next = claim(&storage, &["q"], 10, t + secs(3)).await;
    assert_eq!((ids(&next), next.rate_limited_for), (vec![], wait_ms(7_000)));
    assert_eq!(ids(&claim(&storage, &["q"], 10, t + secs(10)).await), jobs[3..5]);
}

#[tokio::test]
async fn a_rate_per_key_holds_back_only_that_keys_jobs() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().key_rate(RateLimit::new(1, Duration::from_secs(10)))).await;
    let jobs = enqueue(&storage, "q", &[Some("a"), Some("a"), Some("b"), None, None, Some("b"), Some("c")], t).await;

    // Key a starts at t, key b at t + 3 s; jobs without a key are not rate-limited.
    let first = claim(&storage, &["q"], 1, t).await;
    assert_eq!((ids(&first), first.rate_limited_for), (jobs[..1].to_vec(), None));
    let second = claim(&storage, &["q"], 10, t + secs(3)).await;
    assert_eq!(ids(&second), vec![jobs[2], jobs[3], jobs[4], jobs[6]], "a's second job does not stop the others");
    assert_eq!(second.rate_limited_for, wait_ms(7_000), "key a's start leaves the window first");

    let held = claim(&storage, &["q"], 10, t + secs(5)).await;
    assert_eq!((ids(&held), held.rate_limited_for), (vec![], wait_ms(5_000)));
    let a_again = claim(&storage, &["q"], 10, t + secs(10)).await;
    assert_eq!(ids(&a_again), jobs[1..2]);
    assert_eq!(a_again.rate_limited_for, wait_ms(3_000), "now only key b holds a job back");
    let b_again = claim(&storage, &["q"], 10, t + secs(13)).await;
    assert_eq!((ids(&b_again), b_again.rate_limited_for), (jobs[5..6].to_vec(), None));
}

#[tokio::test]
async fn the_rates_of_the_queue_and_of_its_keys_apply_together() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    let limits = QueueLimits::new()
        .rate(RateLimit::new(3, Duration::from_secs(60)))
        .key_rate(RateLimit::new(1, Duration::from_secs(10)));
    limit(&storage, "q", limits).await;
    let jobs = enqueue(&storage, "q", &[Some("a"), Some("a"), Some("b"), None, Some("c")], t).await;
    let first = claim(&storage, &["q"], 10, t).await;
    assert_eq!(ids(&first), vec![jobs[0], jobs[2], jobs[3]], "the queue's rate stops the claim at 3");
    // Key a's second job waits 10 s for its key; the queue's rate then holds back c's
    // job for 60 s: the earlier of the two is reported.
    assert_eq!(first.rate_limited_for, wait_ms(10_000));
    let full = claim(&storage, &["q"], 10, t + secs(10)).await;
    assert_eq!((ids(&full), full.rate_limited_for), (vec![], wait_ms(50_000)), "the queue gives nothing");
    assert_eq!(ids(&claim(&storage, &["q"], 10, t + secs(60)).await), vec![jobs[1], jobs[4]]);
}

#[tokio::test]
async fn rate_and_concurrency_limits_apply_together() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    let limits = QueueLimits::new().concurrency(2).rate(RateLimit::new(3, Duration::from_secs(10)));
    limit(&storage, "q", limits).await;
    let jobs = enqueue(&storage, "q", &[None; 6], t).await;

    let first = claim(&storage, &["q"], 10, t).await;
    assert_eq!(ids(&first), jobs[..2], "the concurrency limit stops the claim");
    assert_eq!(first.rate_limited_for, None, "no rate limit held a job back");
    complete(&storage, &first.jobs[0], t).await;
    let second = claim(&storage, &["q"], 10, t + secs(1)).await;
    assert_eq!((ids(&second), second.rate_limited_for), (jobs[2..3].to_vec(), None));
    complete(&storage, &first.jobs[1], t + secs(1)).await;
    complete(&storage, &second.jobs[0], t + secs(1)).await;

    let rate_full = claim(&storage, &["q"], 10, t + secs(2)).await;
    assert_eq!((ids(&rate_full), rate_full.rate_limited_for), (vec![], wait_ms(8_000)), "slots free, rate full");
    let both_full = claim(&storage, &["q"], 10, t + secs(10)).await;
    assert_eq!(ids(&both_full), jobs[3..5]);
    assert_eq!(both_full.rate_limited_for, None, "the concurrency limit, not the rate, stopped it");
}

#[tokio::test]
async fn a_claim_stopped_by_its_own_limit_is_not_rate_limited() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().rate(RateLimit::new(2, Duration::from_secs(10)))).await;
    let jobs = enqueue(&storage, "q", &[None; 4], t).await;
    let [urgent] = enqueue(&storage, "r", &[None], t).await[..] else { panic!() };

    let exact = claim(&storage, &["q"], 2, t).await;
    assert_eq!((ids(&exact), exact.rate_limited_for), (jobs[..2].to_vec(), None));
    // q's next job comes before r's in claim order: held back, the claim would have
    // taken it instead of r's.
    let mixed = claim(&storage, &["q", "r"], 1, t + secs(1)).await;
    assert_eq!((ids(&mixed), mixed.rate_limited_for), (vec![urgent], wait_ms(9_000)));
}

#[tokio::test]
async fn the_claim_limit_before_a_held_job_in_claim_order_means_no_rate_wait() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().rate(RateLimit::new(1, Duration::from_secs(10)))).await;
    let _ = enqueue(&storage, "q", &[None; 2], t).await;
    assert_eq!(claim(&storage, &["q"], 1, t).await.jobs.len(), 1);
    // r's jobs are due before q's held one, so they come first in claim order.
    let r_jobs = enqueue(&storage, "r", &[None; 3], t - secs(60)).await;
    let one = claim(&storage, &["q", "r"], 1, t + secs(1)).await;
    assert_eq!((ids(&one), one.rate_limited_for), (r_jobs[..1].to_vec(), None), "the claim's limit stopped it");
    let all = claim(&storage, &["q", "r"], 5, t + secs(1)).await;
    assert_eq!((ids(&all), all.rate_limited_for), (r_jobs[1..].to_vec(), wait_ms(9_000)));
}

#[tokio::test]
async fn held_back_jobs_stay_available_and_keep_their_attempts() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().rate(RateLimit::new(1, Duration::from_secs(10)))).await;
    let jobs = enqueue(&storage, "q", &[None; 2], t).await;
    assert_eq!(claim(&storage, &["q"], 2, t).await.jobs.len(), 1);
    for offset in [1, 5, 9] {
        assert!(claim(&storage, &["q"], 2, t + secs(offset)).await.jobs.is_empty());
    }
    let held = storage.get(jobs[1]).await.unwrap().unwrap();
    assert_eq!((held.state, held.attempt, held.attempted_at), (JobState::Available, 0, None));
    let claimed = claim(&storage, &["q"], 2, t + secs(10)).await;
    assert_eq!((claimed.jobs[0].id, claimed.jobs[0].attempt), (jobs[1], 1));
}

#[tokio::test]
async fn a_job_claimed_again_after_a_rescue_starts_again() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().rate(RateLimit::new(2, Duration::from_secs(3_600 * 3)))).await;
    let [id] = enqueue(&storage, "q", &[None], t).await[..] else { panic!() };
    assert_eq!(ids(&claim(&storage, &["q"], 1, t).await), vec![id]);
    let rescue_at = t + secs(3_600);
    assert_eq!(storage.rescue_expired(Some(rescue_at)).await.unwrap().rescued, 1);
    let again = claim(&storage, &["q"], 5, rescue_at).await;
    assert_eq!((ids(&again), again.jobs[0].attempt, again.rate_limited_for), (vec![id], 2, None));
    let [next] = enqueue(&storage, "q", &[None], rescue_at).await[..] else { panic!() };
    let held = claim(&storage, &["q"], 5, rescue_at).await;
    assert_eq!((ids(&held), held.rate_limited_for), (vec![], wait_ms(2 * 3_600 * 1_000)), "both attempts count");
    assert_eq!(ids(&claim(&storage, &["q"], 5, t + secs(3 * 3_600)).await), vec![next]);
}

#[tokio::test]
async fn rate_limits_are_stored_and_the_last_call_wins() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    let per_key = RateLimit::new(1, Duration::from_millis(1_500));
    let limits = QueueLimits::new().concurrency(3).rate(RateLimit::per_minute(100)).key_rate(per_key);
    limit(&storage, "q", limits).await;
    assert_eq!(storage.queue_limits().await.unwrap(), vec![QueueLimitsRecord::new("q", limits)]);

    // Removing a rate limit lets the held-back jobs start at once.
    limit(&storage, "r", QueueLimits::new().rate(RateLimit::per_hour(1))).await;
    let jobs = enqueue(&storage, "r", &[None; 2], t).await;
    assert_eq!(claim(&storage, &["r"], 5, t).await.rate_limited_for, wait_ms(3_600_000));
    limit(&storage, "r", QueueLimits::new().concurrency(5)).await;
    let freed = claim(&storage, &["r"], 5, t + secs(1)).await;
    assert_eq!((ids(&freed), freed.rate_limited_for), (jobs[1..].to_vec(), None));
    limit(&storage, "r", QueueLimits::new()).await;
    assert_eq!(storage.queue_limits().await.unwrap(), vec![QueueLimitsRecord::new("q", limits)]);
}

#[tokio::test]
async fn claim_returns_the_jobs_of_the_paced_claim() {
    let storage = MemoryStorage::new();
    let t = Utc::now();
    limit(&storage, "q", QueueLimits::new().rate(RateLimit::new(2, Duration::from_secs(10)))).await;
    let jobs = enqueue(&storage, "q", &[None; 3], t).await;
    let claimed = storage.claim(ClaimParams::new(["q"], 5).lease(LEASE).now(t)).await.unwrap();
    assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), jobs[..2]);
    assert!(storage.claim(ClaimParams::new(["q"], 5).lease(LEASE).now(t + secs(1))).await.unwrap().is_empty());
}
