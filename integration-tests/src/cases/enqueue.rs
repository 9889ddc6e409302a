//! Enqueue: what goes in comes out exactly, batches are atomic, `run_at` decides the
//! first state.

use haul::{JobState, NewJob, RunAt, storage::EnqueueParams};
use serde_json::json;

use super::*;

/// A job's kind, arguments and options survive storage exactly, and a new job starts
/// with no attempt, no error and no claim.
pub async fn round_trip_keeps_payload_and_options_exactly(storage: TestStorage) {
    let args = json!({
        "to": "ada@example.com",
        "subject": "héllo ✉ \"quoted\" \\ back\nslash",
        "count": 42,
        "ratio": 0.25,
        "big": 9_007_199_254_740_991_i64,
        "negative": -7,
        "flags": [true, false, null],
        "nested": { "list": [1, [2, 3], { "deep": "yes" }], "empty": {} },
    });
    let new = NewJob::new("mail.send_email", args.clone())
        .queue("mail.high")
        .priority(-5)
        .max_attempts(7)
        .timeout(Some(secs(90)));
    let id = enqueue_one(&storage, new, at(0)).await;

    let record = get(&storage, id).await;
    assert_eq!(record.id, id);
    assert_eq!(record.kind, "mail.send_email");
    assert_eq!(record.args, args);
    assert_eq!(record.queue, "mail.high");
    assert_eq!(record.priority, -5);
    assert_eq!(record.max_attempts, 7);
    assert_eq!(record.timeout, Some(secs(90)));
    assert_eq!(record.state, JobState::Available);
    assert_eq!(record.attempt, 0);
    assert_eq!(record.run_at, at(0));
    assert_eq!(record.created_at, at(0));
    assert_eq!(record.attempted_at, None);
    assert_eq!(record.finished_at, None);
    assert_eq!(record.cancel_requested_at, None);
    assert!(record.errors.is_empty());
    assert_eq!(record.lease_token, None);
    assert_eq!(record.lease_expires_at, None);
    assert_eq!(record.claimed_by, None);

    let claimed = claim_only(&storage, "mail.high", id, at(1)).await;
    assert_eq!(claimed.kind, "mail.send_email");
    assert_eq!(claimed.args, args, "the claimed job carries the same arguments");
    assert_eq!(claimed.timeout, Some(secs(90)));
    assert_eq!(claimed.max_attempts, 7);
}

/// A job without a timeout has none when it comes back.
pub async fn a_job_without_timeout_has_none(storage: TestStorage) {
    let id = enqueue_one(&storage, job("default").timeout(None), at(0)).await;
    assert_eq!(get(&storage, id).await.timeout, None);
}

/// The ids returned are the client-made ids, in input order.
pub async fn returns_the_ids_in_input_order(storage: TestStorage) {
    let mut ids = ordered_ids(4);
    ids.reverse();
    let jobs = ids.iter().map(|id| job("default").id(*id)).collect();
    let returned = enqueue(&storage, jobs, at(0)).await;
    assert_eq!(returned, ids);
    for id in ids {
        assert_eq!(state_of(&storage, id).await, JobState::Available);
    }
}

/// A job due in the future is `scheduled`, whether its time is absolute or relative to
/// the storage's clock.
pub async fn a_future_run_at_makes_the_job_scheduled(storage: TestStorage) {
    let absolute = enqueue_one(&storage, job_at("default", at(60)), at(0)).await;
    let relative = enqueue_one(&storage, job("default").run_at(RunAt::In(secs(90))), at(10)).await;

    let absolute = get(&storage, absolute).await;
    assert_eq!(absolute.state, JobState::Scheduled);
    assert_eq!(absolute.run_at, at(60));
    let relative = get(&storage, relative).await;
    assert_eq!(relative.state, JobState::Scheduled);
    assert_eq!(relative.run_at, at(100), "a relative delay counts from the storage's now");
}

/// A job due now or in the past is `available` at once, keeping its `run_at`.
pub async fn a_past_or_present_run_at_makes_the_job_available(storage: TestStorage) {
    let past = enqueue_one(&storage, job_at("default", at(-60)), at(0)).await;
    let present = enqueue_one(&storage, job_at("default", at(0)), at(0)).await;
    let now = enqueue_one(&storage, job("default").run_at(RunAt::Now), at(0)).await;
    let zero_delay = enqueue_one(&storage, job("default").run_at(RunAt::In(secs(0))), at(0)).await;

    for (id, run_at) in [(past, at(-60)), (present, at(0)), (now, at(0)), (zero_delay, at(0))] {
        let record = get(&storage, id).await;
        assert_eq!(record.state, JobState::Available, "job due at {run_at}");
        assert_eq!(record.run_at, run_at);
    }
}

/// A batch that cannot be stored as a whole stores none of its jobs, and leaves the
/// job it collided with untouched.
pub async fn a_batch_that_fails_stores_none_of_its_jobs(storage: TestStorage) {
    let existing = enqueue_one(&storage, job("default").priority(3), at(0)).await;
    let fresh = ordered_ids(2);
    let batch = vec![job("default").id(fresh[0]), job("other").id(fresh[1]), job("default").id(existing).priority(-9)];
    let result = storage.enqueue(EnqueueParams::new(batch).now(at(1))).await;
    assert!(
        matches!(result, Err(haul::Error::DuplicateId(id)) if id == existing),
        "a batch reusing a stored id is rejected with DuplicateId: {result:?}"
    );

    for id in fresh {
        assert_eq!(storage.get(id).await.expect("get succeeds"), None, "no job of the failed batch is stored");
    }
    let kept = get(&storage, existing).await;
    assert_eq!(kept.priority, 3, "the existing job is not overwritten");
    assert_eq!(kept.created_at, at(0));
    let counts = storage.counts().await.expect("counts succeed");
    assert_eq!(counts.len(), 1, "only the first job's queue has jobs: {counts:?}");
    assert_eq!(counts[0].get(JobState::Available), 1);
}

/// A batch of a thousand jobs with sizeable arguments and metadata (more than a backend
/// may send in one request) is stored whole, each job as given; the same batch with a
/// stored job's id as its last job stores none of its jobs.
pub async fn a_large_batch_is_stored_whole_or_not_at_all(storage: TestStorage) {
    const JOBS: usize = 1_000;
    let padding = "p".repeat(100);
    let large_batch = |ids: &[JobId]| -> Vec<NewJob> {
        ids.iter()
            .enumerate()
            .map(|(index, id)| {
                NewJob::new(KIND, json!({ "n": index, "padding": padding }))
                    .queue(if index % 2 == 0 { "even" } else { "odd" })
                    .id(*id)
                    .metadata("request", format!("request-{index}"))
            })
            .collect()
    };
    let ids = ordered_ids(JOBS);
    assert_eq!(enqueue(&storage, large_batch(&ids), at(0)).await, ids);
    for (index, id) in ids.iter().enumerate() {
        let stored = get(&storage, *id).await;
        assert_eq!(stored.args, json!({ "n": index, "padding": padding }), "job {index}");
        assert_eq!(stored.metadata.get("request").map(String::as_str), Some(format!("request-{index}").as_str()));
        assert_eq!(stored.state, JobState::Available);
    }

    let mut refused = ordered_ids(JOBS);
    refused[JOBS - 1] = ids[0];
    let result = storage.enqueue(EnqueueParams::new(large_batch(&refused)).now(at(1))).await;
    assert!(
        matches!(result, Err(haul::Error::DuplicateId(id)) if id == ids[0]),
        "a batch reusing a stored id is rejected with DuplicateId: {result:?}"
    );
    for id in &refused[..JOBS - 1] {
        assert_eq!(storage.get(*id).await.expect("get succeeds"), None, "no job of the failed batch is stored");
    }
    let counts = storage.counts().await.expect("counts succeed");
    let stored: u64 = counts.iter().map(|queue| queue.get(JobState::Available)).sum();
    assert_eq!(stored, JOBS as u64, "only the first batch's jobs are stored: {counts:?}");
}

/// An empty batch succeeds and stores nothing.
pub async fn an_empty_batch_stores_nothing(storage: TestStorage) {
    let outcome = storage.enqueue(EnqueueParams::new(Vec::new()).now(at(0))).await.expect("enqueue succeeds");
    assert!(outcome.ids.is_empty());
    assert!(storage.counts().await.expect("counts succeed").is_empty());
}
