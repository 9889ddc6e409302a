//! Unique jobs: an enqueue is skipped while a job with the same key blocks it.

use haul::{
    JobOutcome, JobState, Unique,
    storage::{EnqueueOutcome, EnqueueParams},
};

use super::{TestStorage, Timestamp, at, claim_of, claim_only, enqueue_one, get, job, report, secs};

async fn enqueue_outcome(storage: &TestStorage, jobs: Vec<haul::NewJob>, now: Timestamp) -> EnqueueOutcome {
    storage.enqueue(EnqueueParams::new(jobs).now(now)).await.expect("enqueue succeeds")
}

async fn total_jobs(storage: &TestStorage) -> u64 {
    storage.counts().await.expect("counts succeed").iter().flat_map(|counts| counts.states.values()).sum()
}

/// While an unfinished job holds the key, a new one is not stored and the outcome
/// names the existing job instead.
pub async fn a_unique_job_is_skipped_while_an_unfinished_one_has_its_key(storage: TestStorage) {
    let first = enqueue_one(&storage, job("default").unique(Unique::new("invoice:42")), at(0)).await;
    let second = job("default").unique(Unique::new("invoice:42"));
    let skipped_id = second.id;
    let outcome = enqueue_outcome(&storage, vec![second], at(1)).await;
    assert_eq!(outcome.ids, vec![first], "the existing job's id stands for the skipped one");
    assert_eq!(outcome.duplicates, vec![first]);
    assert_eq!(storage.get(skipped_id).await.expect("get succeeds"), None);
    assert_eq!(total_jobs(&storage).await, 1);
}

/// Jobs with different keys, or without a key, never block each other.
pub async fn different_keys_do_not_block_each_other(storage: TestStorage) {
    enqueue_one(&storage, job("default").unique(Unique::new("a")), at(0)).await;
    let outcome = enqueue_outcome(&storage, vec![job("default").unique(Unique::new("b")), job("default")], at(1)).await;
    assert!(outcome.duplicates.is_empty());
    assert_eq!(total_jobs(&storage).await, 3);
}

/// The key is recorded on the stored job.
pub async fn the_unique_key_is_recorded_on_the_job(storage: TestStorage) {
    let id = enqueue_one(&storage, job("default").unique(Unique::new("report:2026-11")), at(0)).await;
    assert_eq!(get(&storage, id).await.unique_key.as_deref(), Some("report:2026-11"));
}

/// By default a finished job no longer blocks its key.
pub async fn a_finished_job_does_not_block_its_key(storage: TestStorage) {
    let first = enqueue_one(&storage, job("default").unique(Unique::new("k")), at(0)).await;
    let claimed = claim_only(&storage, "default", first, at(1)).await;
    report(&storage, claim_of(&claimed), JobOutcome::Completed, at(2)).await;
    let outcome = enqueue_outcome(&storage, vec![job("default").unique(Unique::new("k"))], at(3)).await;
    assert!(outcome.duplicates.is_empty());
    assert_ne!(outcome.ids, vec![first]);
    assert_eq!(get(&storage, outcome.ids[0]).await.state, JobState::Available);
}

/// A job in one of the listed states blocks; here completed jobs block too.
pub async fn the_blocking_states_can_include_finished_ones(storage: TestStorage) {
    let once = || Unique::new("welcome:ada").states(JobState::ALL);
    let first = enqueue_one(&storage, job("default").unique(once()), at(0)).await;
    let claimed = claim_only(&storage, "default", first, at(1)).await;
    report(&storage, claim_of(&claimed), JobOutcome::Completed, at(2)).await;
    let outcome = enqueue_outcome(&storage, vec![job("default").unique(once())], at(3)).await;
    assert_eq!(outcome.duplicates, vec![first]);
    assert_eq!(total_jobs(&storage).await, 1);
}

/// With a window, only jobs created less than the window ago block.
pub async fn the_window_limits_how_far_back_a_key_blocks(storage: TestStorage) {
    let hourly = || Unique::new("digest").window(secs(60));
    let first = enqueue_one(&storage, job("default").unique(hourly()), at(0)).await;
    let inside = enqueue_outcome(&storage, vec![job("default").unique(hourly())], at(59)).await;
    assert_eq!(inside.duplicates, vec![first], "created 59 s ago: inside the window");
    let outside = enqueue_outcome(&storage, vec![job("default").unique(hourly())], at(61)).await;
    assert!(outside.duplicates.is_empty(), "created 61 s ago: outside the window");
    assert_eq!(total_jobs(&storage).await, 2);
}

/// Within one batch, a later job with the key of an earlier one is skipped.
pub async fn a_batch_keeps_only_the_first_job_of_a_key(storage: TestStorage) {
    let first = job("default").unique(Unique::new("k"));
    let first_id = first.id;
    let outcome = enqueue_outcome(&storage, vec![first, job("other").unique(Unique::new("k"))], at(0)).await;
    assert_eq!(outcome.ids, vec![first_id, first_id]);
    assert_eq!(outcome.duplicates, vec![first_id]);
    assert_eq!(total_jobs(&storage).await, 1);
}
