//! Bad input: each is a clear error before anything is stored, or a recorded failure
//! of the job; never a lost job or a dead worker.

use std::time::Duration;

use haul::{
    Error, JobFilter, JobOutcome, JobState, ListParams, NewJob, Queue,
    storage::{EnqueueParams, Report},
};
use serde_json::json;

use super::{
    jobs::{CARRIER_KIND, Carrier, SCRIPTED_KIND, Script, Scripted, Tracker},
    worker::{RunningWorker, enqueue_script, wait_for_state},
    *,
};

async fn nothing_stored(storage: &TestStorage) {
    let counts = storage.counts().await.expect("counts succeed");
    assert!(counts.is_empty(), "nothing was stored: {counts:?}");
}

/// Queue names that are empty, too long or contain odd characters are refused, for
/// enqueue, pause, list and bulk calls.
pub async fn invalid_queue_names_are_rejected(storage: TestStorage) {
    let producer = Queue::new(storage.clone());
    for bad in ["", "mail queue", "q{1}", "é", "a/b", &"x".repeat(101)] {
        let error = producer.insert(vec![job(bad)]).await.expect_err("an invalid queue is refused");
        assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{bad:?}: {error:?}");
        let error = producer.pause(bad).await.expect_err("pausing an invalid queue is refused");
        assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{bad:?}: {error:?}");
        let error = storage.list(ListParams::new().queue(bad)).await.expect_err("listing an invalid queue is refused");
        assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{bad:?}: {error:?}");
        let error = storage.delete_jobs(JobFilter::new().queue(bad)).await.expect_err("a bulk call on it is refused");
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

/// `value` nested `levels` objects deep, built without recursion.
fn nested(levels: usize) -> serde_json::Value {
    let mut value = json!(1);
    for _ in 0..levels {
        let mut object = serde_json::Map::new();
        object.insert("inner".to_owned(), value);
        value = serde_json::Value::Object(object);
    }
    value
}

/// Drops `value` without recursion (a 10,000-level value would overflow the stack).
fn drop_flat(value: serde_json::Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(fields) => stack.extend(fields.into_iter().map(|(_, child)| child)),
            _ => {}
        }
    }
}

/// Arguments a stored job could never be read back with are refused before anything is
/// stored, on every enqueue path: nested deeper than `MAX_ARGS_DEPTH` (even 10,000
/// levels, without overflowing the stack), a NaN or infinite number, a NUL character
/// (refused by storage itself too);
/// so are a zero timeout, and prepared jobs over the size limit.
pub async fn arguments_that_cannot_be_read_back_are_refused(storage: TestStorage) {
    let producer = Queue::new(storage.clone()).max_args_bytes(4096);
    for levels in [haul::storage::MAX_ARGS_DEPTH, 10_000] {
        let carrier = Carrier::new(nested(levels), 1.0);
        let error = producer.prepare(&carrier).expect_err("too deep");
        assert!(matches!(error, Error::InvalidArgument(_)), "{levels} levels: {error:?}");
        drop_flat(carrier.value);
        let too_deep = NewJob::new(CARRIER_KIND, nested(levels + 1));
        let error = producer.insert(vec![too_deep]).await.expect_err("too deep to insert");
        assert!(matches!(error, Error::InvalidArgument(_)), "{levels} levels: {error:?}");
    }
    for number in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = producer.enqueue(Carrier::new(json!({}), number)).await.expect_err("not a JSON number");
        assert!(matches!(&error, Error::Serialization { kind, .. } if kind == CARRIER_KIND), "{number}: {error:?}");
    }
    let error = producer.enqueue(Carrier::new(json!({ "name": "a\u{0}b" }), 1.0)).await.expect_err("NUL");
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    // Storage refuses them too, for a caller that does not go through a `Queue`.
    for args in [json!({ "a": "x\u{0}y" }), json!({ "a\u{0}": 1 }), json!({ "a": [["\u{0}"]] })] {
        let error = storage.enqueue(EnqueueParams::new(vec![NewJob::new(CARRIER_KIND, args.clone())])).await;
        assert!(matches!(error, Err(Error::InvalidArgument(_))), "{args}: {error:?}");
    }
    let error = producer.enqueue(Carrier::new(json!({}), 1.0)).timeout(Duration::ZERO).await.expect_err("zero");
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    let big = NewJob::new(CARRIER_KIND, json!({ "value": "x".repeat(5000), "number": 1.0 }));
    let error = producer.insert(vec![big]).await.expect_err("over the limit");
    assert!(matches!(error, Error::PayloadTooLarge { limit: 4096, .. }), "{error:?}");
    nothing_stored(&storage).await;

    // Just within every limit: stored.
    let fits = Carrier::new(nested(haul::storage::MAX_ARGS_DEPTH - 1), f64::MAX);
    producer.enqueue(fits).queue("q").timeout(Duration::from_millis(1)).await.expect("within the limits");
}

/// A handler's error or discard reason with NUL characters is stored with each NUL
/// replaced by U+FFFD, and does not hold back the other outcomes of its batch.
pub async fn text_with_nul_characters_is_stored_with_replacement_characters(storage: TestStorage) {
    let failing = running_job(&storage, job("q").max_attempts(3), at(0)).await;
    let discarded = running_job(&storage, job("q"), at(0)).await;
    let completed = running_job(&storage, job("q"), at(0)).await;
    let reports = vec![
        Report { claim: claim_of(&failing), outcome: failed("bad\0byte", secs(5)) },
        Report { claim: claim_of(&discarded), outcome: JobOutcome::Discarded { reason: "\0".to_owned() } },
        Report { claim: claim_of(&completed), outcome: JobOutcome::Completed },
    ];
    let outcome = report_all(&storage, reports, at(1)).await;
    assert_eq!(outcome.applied.len(), 3, "{outcome:?}");
    let failing = get(&storage, failing.id).await;
    assert_eq!((failing.state, failing.errors[0].message.as_str()), (JobState::Retryable, "bad\u{FFFD}byte"));
    let discarded = get(&storage, discarded.id).await;
    assert_eq!((discarded.state, discarded.errors[0].message.as_str()), (JobState::Discarded, "\u{FFFD}"));
    assert_eq!(state_of(&storage, completed.id).await, JobState::Completed);
}

/// Throughput samples with an invalid queue name are refused with `InvalidName`, and
/// the call records nothing: not even its valid samples, placed before and after the
/// invalid one.
pub async fn throughput_samples_with_an_invalid_queue_are_refused_and_record_nothing(storage: TestStorage) {
    let valid = |minute: i64| haul::ThroughputSample::new("tp.valid", at(minute * 60), 1, 1);
    for bad in ["", "mail queue", "q{1}", "é", "a/b", &"x".repeat(101)] {
        let samples = vec![valid(0), haul::ThroughputSample::new(bad, at(0), 2, 3), valid(1)];
        let error = storage.record_throughput(samples, Some(at(90))).await.expect_err("an invalid queue is refused");
        assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{bad:?}: {error:?}");
    }
    let recorded = storage.throughput(at(-3600)).await.expect("throughput succeeds");
    assert!(recorded.is_empty(), "nothing was recorded: {recorded:?}");
}
