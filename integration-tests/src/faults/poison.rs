//! Poison input among good jobs: what producers, handlers and a tampered store can hand
//! haul that it must refuse, record or survive, without losing a good job.
//!
//! Some inputs nest JSON 10,000 levels deep, which serde builds, walks and drops
//! recursively: run the case on threads with big stacks (see `tests/faults.rs`).

use std::{collections::HashMap, time::Duration};

use haul::{Error, JobError, JobId, JobRecord, JobState, NewJob, Queue, RetryPolicy, storage::ListParams};
use serde_json::{Map, Value};

use super::{cases::PATIENCE, hosts::Target};
use crate::{
    HarnessError, TestStorage,
    cases::{
        jobs::{Script, Scripted, Tracker},
        worker::RunningWorker,
    },
};

/// The kind name of [`HoldsValue`] jobs.
pub const HOLDS_VALUE_KIND: &str = "haul_faults.holds_value";

/// Carries any JSON value; succeeds.
#[haul::job(name = "haul_faults.holds_value", max_attempts = 1)]
pub async fn holds_value(value: Value) -> Result<(), JobError> {
    drop(value);
    Ok(())
}

/// Carries a number; succeeds.
#[haul::job(name = "haul_faults.measured", max_attempts = 1)]
pub async fn measured(reading: f64) -> Result<(), JobError> {
    let _ = reading;
    Ok(())
}

/// Fails every attempt; its kind's backoff is `Duration::MAX` from the first failure.
#[haul::job(
    name = "haul_faults.fails_with_endless_backoff",
    backoff = RetryPolicy::exponential(Duration::MAX).max_delay(Duration::MAX).jitter(0.0)
)]
pub async fn fails_with_endless_backoff() -> Result<(), JobError> {
    Err(JobError::fail("fails on purpose, with a backoff of Duration::MAX"))
}

/// The good jobs of the case.
const GOOD: usize = 1_000;
/// How deep the arguments of the row tampered with in storage nest: deeper than a
/// reader accepts, shallow enough for PostgreSQL's `jsonb`.
const UNREADABLE_DEPTH: usize = 300;

/// One worker at concurrency 32 runs 1,000 good jobs mixed with every poison input:
/// - a failure and a discard whose message holds NUL characters end `discarded`, the
///   message recorded with each NUL replaced by U+FFFD;
/// - typed arguments nested deeper than the limit (150 and 10,000 levels), through
///   `enqueue` and through `Queue::insert`, are refused with `InvalidArgument`;
/// - `f64::NAN` and `f64::INFINITY` arguments (which would be stored as `null` and
///   never read back) are refused with `Serialization`;
/// - a prepared job over the queue's `max_args_bytes`, inserted, is refused with
///   `PayloadTooLarge`;
/// - a zero per-enqueue timeout is refused with `InvalidArgument`;
/// - a unique job with 4 kB of arguments is accepted and completed once;
/// - with `raw` access (PostgreSQL, Redis): a stored row whose arguments cannot be read
///   back ends `discarded` with that reason recorded, the other jobs of its claim batch
///   (the worker's first, with the other poison jobs) complete, and `get`/`list` still
///   work;
/// - a job whose kind's backoff is `Duration::MAX` fails its only attempt and ends
///   `discarded`.
///
/// Every good job completes on its first attempt and nothing refused is stored. The
/// case checks every input and then names each one that misbehaved.
pub async fn poison_input_among_good_jobs_loses_nothing(storage: TestStorage, raw: Option<Target>) {
    let queue = "faults.poison";
    let backend = storage.backend_name();
    let producer = Queue::new(storage.clone());
    let scripted =
        |script: Script| producer.prepare(&Scripted::new(script)).expect("a scripted job is valid").queue(queue);
    let mut problems: Vec<String> = Vec::new();

    // Everything stored waits in the paused queue until the worker starts; the worker's
    // first claim then takes 32 jobs at once, the poison among them.
    producer.pause(queue).await.expect("pause succeeds");
    let mut good = producer.insert((0..10).map(|_| scripted(Script::Complete)).collect()).await.expect("enqueue");
    let nul = |rest: &str| ["poison".to_owned(), "in a".to_owned(), rest.to_owned()];
    let poisoned = vec![
        scripted(Script::FailJoinedByNul { parts: nul("failure").into() }).max_attempts(1),
        scripted(Script::DiscardJoinedByNul { parts: nul("discard").into() }),
        producer.prepare(&FailsWithEndlessBackoff::new()).expect("valid").queue(queue).max_attempts(1),
    ];
    let poisoned = producer.insert(poisoned).await.expect("enqueue succeeds");
    let [nul_failure, nul_discard, endless_backoff] = poisoned[..] else { unreachable!("3 ids") };
    let mut expected: Vec<JobId> = poisoned.clone();
    // A job whose stored arguments are then replaced by JSON no reader accepts.
    let tampered = match &raw {
        Some(target) => {
            let id = producer.insert(vec![scripted(Script::Complete)]).await.expect("enqueue succeeds")[0];
            let text = format!("{}1{}", "{\"a\":".repeat(UNREADABLE_DEPTH), "}".repeat(UNREADABLE_DEPTH));
            overwrite_args(target, queue, id, &text).await.expect("the stored arguments can be overwritten");
            check_readable(&producer, queue, id, "before the worker ran", &mut problems).await;
            expected.push(id);
            Some(id)
        }
        None => None,
    };
    for chunk in [GOOD / 2 - 10, GOOD / 2] {
        let jobs = (0..chunk).map(|_| scripted(Script::Complete)).collect();
        good.extend(producer.insert(jobs).await.expect("enqueue succeeds"));
    }
    assert_eq!(good.len(), GOOD);
    // 4 kB that do not compress (PostgreSQL compresses long index entries).
    let padding = incompressible(4_096);
    let unique_padding = Script::Padded { padding };
    let mut unique_ids = Vec::new();
    for _ in 0..2 {
        match producer.enqueue(Scripted::new(unique_padding.clone())).queue(queue).unique().await {
            Ok(id) => unique_ids.push(id),
            Err(error) => problems.push(format!("a unique job with 4 kB of arguments was refused: {error:?}")),
        }
    }
    if unique_ids.len() == 2 && unique_ids[0] != unique_ids[1] {
        problems.push(format!("the unique job with 4 kB of arguments was stored twice: {unique_ids:?}"));
    }
    expected.extend(&good);
    expected.extend(unique_ids.first());

    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| builder.concurrency(32));
    producer.resume(queue).await.expect("resume succeeds");

    // Refused at enqueue, while the worker drains the good jobs.
    let mut refusals = 0;
    let mut refuse = |what: &str, result: haul::Result<Vec<JobId>>, expected: &str, fits: fn(&Error) -> bool| {
        refusals += 1;
        match result {
            Ok(ids) => problems.push(format!("{what}: accepted and stored as {ids:?}; expected {expected}")),
            Err(error) if !fits(&error) => {
                problems.push(format!("{what}: refused with {error:?}; expected {expected}"))
            }
            Err(_) => {}
        }
    };
    for depth in [150, 10_000] {
        let typed = producer.enqueue(HoldsValue::new(nested(depth))).queue(queue).await.map(|id| vec![id]);
        let what = format!("typed arguments nested {depth} levels");
        refuse(&what, typed, "InvalidArgument", |error| matches!(error, Error::InvalidArgument(_)));
        let mut args = Map::new();
        args.insert("value".to_owned(), nested(depth));
        let inserted = producer.insert(vec![NewJob::new(HOLDS_VALUE_KIND, Value::Object(args)).queue(queue)]).await;
        let what = format!("inserted arguments nested {depth} levels");
        refuse(&what, inserted, "InvalidArgument", |error| matches!(error, Error::InvalidArgument(_)));
    }
    for (name, reading) in [("NaN", f64::NAN), ("infinity", f64::INFINITY)] {
        let result = producer.enqueue(Measured::new(reading)).queue(queue).await.map(|id| vec![id]);
        let what = format!("an f64 argument of {name}");
        refuse(&what, result, "Serialization", |error| matches!(error, Error::Serialization { .. }));
    }
    let limited = Queue::new(storage.clone()).max_args_bytes(1_024);
    let oversized = scripted(Script::Padded { padding: "x".repeat(2_000) });
    let result = limited.insert(vec![scripted(Script::Complete), oversized]).await;
    let what = "an insert with 2 kB of arguments into a queue limited to 1 kB";
    refuse(what, result, "PayloadTooLarge", |error| matches!(error, Error::PayloadTooLarge { .. }));
    let result = producer.enqueue(Scripted::new(Script::Complete)).queue(queue).timeout(Duration::ZERO).await;
    let what = "a per-enqueue timeout of zero";
    refuse(what, result.map(|id| vec![id]), "InvalidArgument", |error| matches!(error, Error::InvalidArgument(_)));

    let records = settle(&producer, queue, &expected).await;
    let record = |id: JobId| records.get(&id);

    let mut first_try = 0;
    let mut late_or_lost = Vec::new();
    for id in &good {
        match record(*id) {
            Some(job) if job.state == JobState::Completed && job.attempt == 1 && job.errors.is_empty() => {
                first_try += 1;
            }
            other => late_or_lost.push(format!("{id}: {}", describe(other))),
        }
    }
    if !late_or_lost.is_empty() {
        problems.push(format!(
            "{} of {GOOD} good jobs did not complete on their first attempt, e.g. {:?}",
            late_or_lost.len(),
            &late_or_lost[..late_or_lost.len().min(3)]
        ));
    }
    let replaced = |rest: &str| format!("poison\u{FFFD}in a\u{FFFD}{rest}");
    for (id, what, message) in
        [(nul_failure, "failure", replaced("failure")), (nul_discard, "discard", replaced("discard"))]
    {
        match record(id) {
            Some(job)
                if job.state == JobState::Discarded
                    && job.errors.iter().map(|error| (error.attempt, error.message.as_str())).eq([(1, &*message)]) => {}
            other => problems.push(format!(
                "a {what} with NUL characters in its message: expected discarded with {message:?} recorded on \
                 attempt 1, found {}",
                describe(other)
            )),
        }
    }
    if record(endless_backoff).is_none_or(|job| job.state != JobState::Discarded) {
        problems.push(format!(
            "a failure whose kind's backoff is Duration::MAX, with 1 attempt: expected discarded, found {}",
            describe(record(endless_backoff))
        ));
    }
    if let Some(&id) = unique_ids.first()
        && !(record(id).is_some_and(|job| job.state == JobState::Completed) && tracker.runs(id) == [1])
    {
        problems.push(format!(
            "the unique job with 4 kB of arguments: expected completed by one run, found {} after runs {:?}",
            describe(record(id)),
            tracker.runs(id)
        ));
    }
    if let Some(id) = tampered {
        match record(id) {
            Some(job)
                if job.state == JobState::Discarded
                    && job.errors.last().is_some_and(|error| error.message.to_lowercase().contains("argument")) => {}
            other => problems.push(format!(
                "a stored row whose arguments cannot be read: expected discarded with an error about its arguments, \
                 found {}",
                describe(other)
            )),
        }
        check_readable(&producer, queue, id, "after the worker ran", &mut problems).await;
    }
    match producer.list(ListParams::new().queue(queue).limit(GOOD * 2)).await {
        Ok(stored) => {
            let extra: Vec<JobId> = stored.iter().map(|job| job.id).filter(|id| !expected.contains(id)).collect();
            if !extra.is_empty() {
                problems.push(format!("{} jobs were stored although refused: {extra:?}", extra.len()));
            }
        }
        Err(error) => problems.push(format!("the queue cannot be listed: {error:?}")),
    }

    assert!(
        problems.is_empty(),
        "poison input on {backend}: {} inputs misbehaved:\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
    worker.stop().await;
    eprintln!(
        "poison input: {first_try} good jobs completed on their first attempt; {refusals} enqueues refused with the \
         expected error (deep, NaN, infinite, oversized, zero timeout); discarded with their reason recorded: a \
         failure and a discard with NUL characters (stored as U+FFFD), a failure with a backoff of Duration::MAX{}; \
         a unique job with 4 kB of arguments completed once",
        if tampered.is_some() { ", a stored row whose arguments cannot be read (get and list still work)" } else { "" }
    );
}

/// A JSON object nested `depth` levels deep (`{"a":{"a":…1…}}`), built without recursion.
fn nested(depth: usize) -> Value {
    let mut value = Value::from(1);
    for _ in 0..depth {
        let mut object = Map::new();
        object.insert("a".to_owned(), value);
        value = Value::Object(object);
    }
    value
}

/// `len` letters that do not repeat in any pattern a compressor would find
/// (xorshift64).
fn incompressible(len: usize) -> String {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + u8::try_from(state % 26).expect("below 26"))
        })
        .collect()
}

/// Describes what a job ended as, with its last recorded error.
fn describe(record: Option<&JobRecord>) -> String {
    match record {
        Some(job) => match job.errors.last() {
            Some(last) => format!(
                "{} on attempt {} with {} errors, the last {:?} on attempt {}",
                job.state,
                job.attempt,
                job.errors.len(),
                last.message,
                last.attempt
            ),
            None => format!("{} on attempt {} with no error", job.state, job.attempt),
        },
        None => "a job that cannot be read".to_owned(),
    }
}

/// Checks that `get` and `list` still return the job `id` whose stored arguments were
/// tampered with.
async fn check_readable(producer: &Queue, queue: &str, id: JobId, when: &str, problems: &mut Vec<String>) {
    match producer.get(id).await {
        Ok(Some(_)) => {}
        other => problems.push(format!("get of the job whose arguments cannot be read, {when}: {other:?}")),
    }
    match producer.list(ListParams::new().queue(queue).limit(GOOD * 2)).await {
        Ok(jobs) if jobs.iter().any(|job| job.id == id) => {}
        Ok(_) => problems.push(format!("list of its queue, {when}, leaves out the job whose arguments cannot be read")),
        Err(error) => {
            problems.push(format!("list of the queue holding a job whose arguments cannot be read, {when}: {error:?}"))
        }
    }
}

/// Waits until every job of `expected` is finished, up to [`PATIENCE`], and returns
/// what each ended as (a job that cannot be read is missing). Reads the queue with
/// `list`, or job by job with `get` when the list fails.
async fn settle(producer: &Queue, queue: &str, expected: &[JobId]) -> HashMap<JobId, JobRecord> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let records: HashMap<JobId, JobRecord> =
            match producer.list(ListParams::new().queue(queue).limit(expected.len() * 2)).await {
                Ok(jobs) => jobs.into_iter().map(|job| (job.id, job)).collect(),
                Err(_) => {
                    let mut records = HashMap::new();
                    for id in expected {
                        if let Ok(Some(job)) = producer.get(*id).await {
                            records.insert(*id, job);
                        }
                    }
                    records
                }
            };
        let finished = expected.iter().all(|id| records.get(id).is_some_and(|job| job.state.is_finished()));
        if finished || tokio::time::Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Overwrites the stored arguments of job `id` of `queue` with `text`, behind haul's
/// back: a PostgreSQL `UPDATE`, a Redis `HSET` on the job's hash.
async fn overwrite_args(target: &Target, queue: &str, id: JobId, text: &str) -> Result<(), HarnessError> {
    match target {
        Target::Postgres { url, schema } => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            // The schema is a name the harness made (letters, digits, underscores).
            let update = format!("UPDATE \"{schema}\".jobs SET args = $1::jsonb WHERE id = $2::uuid");
            let updated = sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(text)
                .bind(id.to_string())
                .execute(&mut conn)
                .await?
                .rows_affected();
            conn.close().await?;
            if updated != 1 {
                return Err(format!("job {id} is not stored in {schema}.jobs").into());
            }
        }
        Target::Redis { url, prefix } => {
            let client = redis::Client::open(url.as_str())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            // The job's hash (see the key layout in backends/redis/src/keys.rs).
            let key = format!("haul:{{{prefix}:{queue}}}:job:{id}");
            let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await?;
            if !exists {
                return Err(format!("job {id} has no hash at {key}").into());
            }
            let _: i64 = redis::cmd("HSET").arg(&key).arg("args").arg(text).query_async(&mut conn).await?;
        }
    }
    Ok(())
}
