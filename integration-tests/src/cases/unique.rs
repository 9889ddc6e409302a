//! Unique jobs: an enqueue is skipped while a job with the same key blocks it.

use haul::{
    JobOutcome, JobState, Queue, Unique,
    storage::{EnqueueOutcome, EnqueueParams},
};

use super::{TestStorage, Timestamp, at, claim_of, claim_only, enqueue_one, get, job, report, secs, total_jobs};

async fn enqueue_outcome(storage: &TestStorage, jobs: Vec<haul::NewJob>, now: Timestamp) -> EnqueueOutcome {
    storage.enqueue(EnqueueParams::new(jobs).now(now)).await.expect("enqueue succeeds")
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

/// The arguments of [`wide`]: one long text.
#[haul::job(name = "haul_tests.wide")]
pub async fn wide(text: String) -> Result<(), haul::JobError> {
    let _ = text;
    Ok(())
}

/// `len` letters and digits that do not repeat in any pattern a compressor would find
/// (a key of one repeated letter fits a size limit once compressed).
fn noise(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// A key of any length is accepted and compared exactly: 8 kB keys, two of which
/// differ only in their last byte, and a job unique by its 4 kB of arguments.
pub async fn a_unique_key_of_any_size_is_accepted(storage: TestStorage) {
    let long = noise(8 * 1024, 1);
    let other = format!("{}#", &long[..long.len() - 1]);
    let first = enqueue_one(&storage, job("default").unique(Unique::new(long.as_str())), at(0)).await;
    let outcome = enqueue_outcome(
        &storage,
        vec![job("default").unique(Unique::new(long.as_str())), job("default").unique(Unique::new(other))],
        at(1),
    )
    .await;
    assert_eq!(outcome.ids[0], first, "the same 8 kB key is a duplicate");
    assert_eq!(outcome.duplicates, vec![first], "a key differing in its last byte is another key");
    assert_eq!(get(&storage, first).await.unique_key.as_deref(), Some(long.as_str()), "the key is kept as given");

    let producer = Queue::new(storage.clone());
    let text = noise(4 * 1024, 2);
    let stored = producer.enqueue(Wide::new(text.clone())).unique().await.expect("a unique job with 4 kB of arguments");
    let again = producer.enqueue(Wide::new(text)).unique().await.expect("the same job again");
    assert_eq!(again, stored, "the second identical enqueue returns the first job's id");
    assert_eq!(total_jobs(&storage).await, 3);
}

/// One batch of 40,000 unique jobs over 20,000 keys (each key twice, the second half
/// repeating the first) stores one job per key; every duplicate names the first job
/// of its key. Then one batch of 10,000 jobs of a single key that do not block each
/// other (only a running job blocks them) stores all of them. Both finish in seconds
/// only if a job is not checked against every earlier job of its batch.
pub async fn a_large_batch_of_unique_jobs_is_stored_once_each(storage: TestStorage) {
    const KEYS: usize = 20_000;
    let jobs: Vec<haul::NewJob> =
        (0..2 * KEYS).map(|n| job("default").unique(Unique::new(format!("batch:{}", n % KEYS)))).collect();
    let firsts: Vec<haul::JobId> = jobs[..KEYS].iter().map(|job| job.id).collect();
    let outcome = enqueue_outcome(&storage, jobs, at(0)).await;
    assert_eq!(outcome.ids.len(), 2 * KEYS);
    assert_eq!(&outcome.ids[..KEYS], &firsts[..], "the first job of each key is stored");
    assert_eq!(&outcome.ids[KEYS..], &firsts[..], "the second names the first");
    assert_eq!(outcome.duplicates, firsts);
    assert_eq!(total_jobs(&storage).await, KEYS as u64);

    let jobs: Vec<haul::NewJob> =
        (0..10_000).map(|_| job("default").unique(Unique::new("one").states([JobState::Running]))).collect();
    let ids: Vec<haul::JobId> = jobs.iter().map(|job| job.id).collect();
    let outcome = enqueue_outcome(&storage, jobs, at(1)).await;
    assert_eq!(outcome.ids, ids, "no job of the batch blocks another");
    assert!(outcome.duplicates.is_empty());
    assert_eq!(total_jobs(&storage).await, KEYS as u64 + 10_000);
}
