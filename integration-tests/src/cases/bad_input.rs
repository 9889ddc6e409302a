//! Bad input: each is a clear error before anything is stored, or a recorded failure
//! of the job; never a lost job or a dead worker.

use haul::{Error, JobState, NewJob, Queue};
use serde_json::json;

use super::{
    jobs::{SCRIPTED_KIND, Script, Scripted, Tracker},
    worker::{RunningWorker, enqueue_script, wait_for_state},
    *,
};

async fn nothing_stored(storage: &TestStorage) {
    let counts = storage.counts().await.expect("counts succeed");
    assert!(counts.is_empty(), "nothing was stored: {counts:?}");
}

/// Queue names that are empty, too long or contain odd characters are refused, for
/// enqueue and for pause.
pub async fn invalid_queue_names_are_rejected(storage: TestStorage) {
    let producer = Queue::new(storage.clone());
    for bad in ["", "mail queue", "q{1}", "é", "a/b", &"x".repeat(101)] {
        let error = producer.insert(vec![job(bad)]).await.expect_err("an invalid queue is refused");
        assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{bad:?}: {error:?}");
        let error = producer.pause(bad).await.expect_err("pausing an invalid queue is refused");
        assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{bad:?}: {error:?}");
    }
    let error = producer.enqueue(Scripted::new(Script::Complete)).queue("no spaces").await.expect_err("refused");
    assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{error:?}");
    nothing_stored(&storage).await;
}

/// Job kind names that are empty, too long or contain odd characters are refused.
pub async fn invalid_kind_names_are_rejected(storage: TestStorage) {
    let producer = Queue::new(storage.clone());
    for bad in ["", "send email", "drop;table", &"k".repeat(101)] {
        let error = producer.insert(vec![NewJob::new(bad, json!({}))]).await.expect_err("an invalid kind is refused");
        assert!(matches!(error, Error::InvalidName { what: "job kind", .. }), "{bad:?}: {error:?}");
    }
    nothing_stored(&storage).await;
}

/// Arguments that are not a JSON object are refused.
pub async fn arguments_that_are_not_an_object_are_rejected(storage: TestStorage) {
    let producer = Queue::new(storage.clone());
    for bad in [json!([1, 2]), json!("text"), json!(3), json!(null), json!(true)] {
        let error = producer.insert(vec![NewJob::new(KIND, bad.clone())]).await.expect_err("refused");
        assert!(matches!(error, Error::InvalidArgument(_)), "{bad}: {error:?}");
    }
    nothing_stored(&storage).await;
}

/// A job with no attempt at all is refused.
pub async fn zero_max_attempts_is_rejected(storage: TestStorage) {
    let producer = Queue::new(storage.clone());
    let error = producer.insert(vec![job("q").max_attempts(0)]).await.expect_err("refused");
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    let error = producer.enqueue(Scripted::new(Script::Complete)).max_attempts(0).await.expect_err("refused");
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    nothing_stored(&storage).await;
}

/// One invalid job in a batch refuses the whole batch.
pub async fn a_batch_with_one_invalid_job_stores_nothing(storage: TestStorage) {
    let producer = Queue::new(storage.clone());
    let error = producer.insert(vec![job("q"), job("q"), job("bad queue")]).await.expect_err("refused");
    assert!(matches!(error, Error::InvalidName { .. }), "{error:?}");
    nothing_stored(&storage).await;
}

/// Arguments larger than the queue's limit are refused with `PayloadTooLarge`, naming
/// the kind, the size and the limit; arguments within it are accepted.
pub async fn oversized_arguments_are_rejected(storage: TestStorage) {
    let producer = Queue::new(storage.clone()).max_args_bytes(1024);
    let big = Scripted::new(Script::Discard { reason: "x".repeat(2000) });
    let error = producer.enqueue(big).queue("q").await.expect_err("oversized arguments are refused");
    assert!(
        matches!(&error, Error::PayloadTooLarge { kind, size, limit: 1024 } if kind == SCRIPTED_KIND && *size > 2000),
        "{error:?}"
    );
    let error = producer
        .enqueue_many((0..3).map(|n| Scripted::new(Script::Discard { reason: "y".repeat(1000 * n) })))
        .await
        .expect_err("a batch with an oversized job is refused");
    assert!(matches!(error, Error::PayloadTooLarge { .. }), "{error:?}");
    nothing_stored(&storage).await;

    let default_limit = Queue::new(storage.clone());
    let huge = Scripted::new(Script::Discard { reason: "z".repeat(haul::storage::DEFAULT_MAX_ARGS_BYTES + 1) });
    let error = default_limit.enqueue(huge).queue("q").await.expect_err("over the default limit is refused");
    assert!(matches!(error, Error::PayloadTooLarge { .. }), "{error:?}");
    nothing_stored(&storage).await;

    let fits = Scripted::new(Script::Discard { reason: "x".repeat(900) });
    let id = producer.enqueue(fits).queue("q").await.expect("arguments within the limit are accepted");
    assert_eq!(state_of(&storage, id).await, JobState::Available);
}

/// A stored job of a kind no job type in the worker's binary registers fails its
/// attempt with the reason recorded; the worker keeps running other jobs.
pub async fn a_job_of_an_unknown_kind_is_a_recorded_failure(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.unknown", &tracker, |builder| builder);
    let orphan = NewJob::new("haul_tests.nobody_registers_this", json!({ "x": 1 })).queue("w.unknown").max_attempts(1);
    let id = Queue::new(storage.clone()).insert(vec![orphan]).await.expect("enqueue succeeds")[0];

    let record = wait_for_state(&storage, id, JobState::Discarded).await;
    assert_eq!(record.attempt, 1);
    assert_eq!(record.errors.len(), 1, "the failure is recorded");
    assert!(!record.errors[0].message.is_empty());
    assert_eq!(record.args, json!({ "x": 1 }), "the job's arguments are kept for an operator");

    let next = enqueue_script(&storage, "w.unknown", Script::Complete, |job| job).await;
    wait_for_state(&storage, next, JobState::Completed).await;
    worker.stop().await;
}

/// A stored job whose arguments no longer fit its type fails its attempt with the
/// reason recorded; the worker keeps running other jobs.
pub async fn a_job_with_a_corrupt_payload_is_a_recorded_failure(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.corrupt", &tracker, |builder| builder);
    let corrupt = [json!({ "script": { "do": "no_such_step" } }), json!({ "wrong": "shape" })];
    let jobs = corrupt.iter().map(|args| NewJob::new(SCRIPTED_KIND, args.clone()).queue("w.corrupt").max_attempts(1));
    let ids = Queue::new(storage.clone()).insert(jobs.collect()).await.expect("enqueue succeeds");

    for id in &ids {
        let record = wait_for_state(&storage, *id, JobState::Discarded).await;
        assert_eq!(record.attempt, 1);
        assert_eq!(record.errors.len(), 1, "the failure is recorded");
        assert!(!record.errors[0].message.is_empty());
        assert!(tracker.runs(*id).is_empty(), "the handler never ran");
    }

    let next = enqueue_script(&storage, "w.corrupt", Script::Complete, |job| job).await;
    wait_for_state(&storage, next, JobState::Completed).await;
    worker.stop().await;
}
