//! Job metadata: the string map a job is enqueued with comes back exactly from `get`,
//! `list` and `claim` (a handler reads it from its context), stays fixed through
//! retries, snoozes and rescues, and is refused at enqueue when too large or holding a
//! NUL.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use haul::{
    Error, JobContext, JobError, JobId, JobOutcome, JobRecord, JobState, ListParams, MAX_METADATA_BYTES, Metadata,
    NewJob, Queue, storage::EnqueueParams,
};

use super::{jobs::Tracker, worker::RunningWorker, *};

/// Metadata made of `entries`.
pub fn metadata_of(entries: &[(&str, &str)]) -> Metadata {
    entries.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
}

/// `job` with every entry of `metadata` added.
fn with_metadata(job: NewJob, metadata: &Metadata) -> NewJob {
    metadata.iter().fold(job, |job, (key, value)| job.metadata(key.clone(), value.clone()))
}

/// Metadata whose keys and values hold what a storage format might split on or escape:
/// unicode, spaces, quotes, backslashes, slashes, `|`, `=`, `:`, newlines and other
/// control characters, JSON-looking text.
fn awkward_metadata() -> Metadata {
    metadata_of(&[
        ("tenant", "acme"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("clé ünïcödé ✉", "värde 数据 🚀"),
        ("with space", "a value with  two  spaces "),
        ("quote\"d", "say \"hi\""),
        ("back\\slash", "C:\\path\\to\\file \\\" \\\\"),
        ("pipe|and=equals", "a|b|c=d=e"),
        ("colon:key", "x:y:{z}"),
        ("lines", "first\nsecond\r\nthird\t(tab)\n"),
        ("controls", "bell\u{7} escape\u{1b} delete\u{7f} a/b </x>"),
        ("json", "{\"k\": [1, \"2\"], \"n\": null}"),
        ("empty", ""),
    ])
}

/// The listed jobs of `queue`, by id.
async fn listed(storage: &TestStorage, queue: &str) -> HashMap<JobId, JobRecord> {
    let records = storage.list(ListParams::new().queue(queue).limit(100)).await.expect("list succeeds");
    records.into_iter().map(|record| (record.id, record)).collect()
}

/// Metadata comes back exactly as given from `get`, `list` and `claim`: every key and
/// value, whatever characters they hold.
pub async fn metadata_round_trips_exactly_through_get_list_and_claim(storage: TestStorage) {
    let metadata = awkward_metadata();
    let id = enqueue_one(&storage, with_metadata(job("meta.q"), &metadata), at(0)).await;

    assert_eq!(*get(&storage, id).await.metadata, metadata, "get returns the metadata");
    let listed = listed(&storage, "meta.q").await;
    assert_eq!(listed.get(&id).map(|record| &*record.metadata), Some(&metadata), "list returns the metadata");
    let claimed = claim_only(&storage, "meta.q", id, at(1)).await;
    assert_eq!(*claimed.metadata, metadata, "claim returns the metadata");
    assert_eq!(*get(&storage, id).await.metadata, metadata, "the running job keeps it");
}

/// A job enqueued without metadata comes back with an empty map from `get`, `list` and
/// `claim`.
pub async fn a_job_without_metadata_has_an_empty_map(storage: TestStorage) {
    let id = enqueue_one(&storage, job("meta.none"), at(0)).await;

    assert!(get(&storage, id).await.metadata.is_empty(), "get: no metadata");
    let listed = listed(&storage, "meta.none").await;
    assert!(listed.get(&id).is_some_and(|record| record.metadata.is_empty()), "list: no metadata");
    let claimed = claim_only(&storage, "meta.none", id, at(1)).await;
    assert!(claimed.metadata.is_empty(), "claim: no metadata");
}

/// Each job of a batch keeps its own metadata, jobs without any among them.
pub async fn a_batch_keeps_each_jobs_own_metadata(storage: TestStorage) {
    let wanted: Vec<Metadata> = vec![
        metadata_of(&[("tenant", "acme")]),
        Metadata::new(),
        metadata_of(&[("tenant", "globex"), ("request", "r-2")]),
        metadata_of(&[("tenant", "initech"), ("note", "line\nbreak")]),
        Metadata::new(),
        metadata_of(&[("only", "é")]),
    ];
    let jobs = wanted.iter().map(|metadata| with_metadata(job("meta.batch"), metadata)).collect();
    let ids = enqueue(&storage, jobs, at(0)).await;
    let expected: HashMap<JobId, &Metadata> = ids.iter().copied().zip(&wanted).collect();

    for (id, metadata) in &expected {
        assert_eq!(&&*get(&storage, *id).await.metadata, metadata, "get of job {id}");
    }
    let listed = listed(&storage, "meta.batch").await;
    assert_eq!(listed.len(), ids.len());
    for (id, record) in &listed {
        assert_eq!(Some(&&*record.metadata), expected.get(id), "list of job {id}");
    }
    let claimed = claim(&storage, &["meta.batch"], ids.len(), at(1)).await;
    assert_eq!(sorted_ids_of(&claimed), ordered(&ids), "every job is claimed");
    for record in &claimed {
        assert_eq!(Some(&&*record.metadata), expected.get(&record.id), "claim of job {}", record.id);
    }
}

/// `ids`, sorted.
fn ordered(ids: &[JobId]) -> Vec<JobId> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

/// Metadata is fixed at enqueue: a failed attempt, its retry, a snooze and a retry by
/// hand keep it, and every claim returns it.
pub async fn metadata_survives_failed_attempts_snoozes_and_manual_retries(storage: TestStorage) {
    let metadata = awkward_metadata();
    let first = running_job(&storage, with_metadata(job("meta.retry"), &metadata), at(0)).await;
    assert_eq!(*first.metadata, metadata);

    report_applied(&storage, claim_of(&first), failed("boom", secs(10)), at(1)).await;
    let retryable = get(&storage, first.id).await;
    assert_eq!(retryable.state, JobState::Retryable);
    assert_eq!(*retryable.metadata, metadata, "a failed attempt keeps the metadata");

    storage.promote_due(Some(at(20))).await.expect("promote succeeds");
    let second = claim_only(&storage, "meta.retry", first.id, at(20)).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(*second.metadata, metadata, "the claim after a retry returns the metadata");

    report_applied(&storage, claim_of(&second), JobOutcome::Snoozed { delay: secs(5) }, at(21)).await;
    assert_eq!(*get(&storage, first.id).await.metadata, metadata, "a snooze keeps the metadata");
    storage.promote_due(Some(at(30))).await.expect("promote succeeds");
    let third = claim_only(&storage, "meta.retry", first.id, at(30)).await;
    assert_eq!(*third.metadata, metadata, "the claim after a snooze returns the metadata");

    report_applied(&storage, claim_of(&third), JobOutcome::Discarded { reason: "give up".to_owned() }, at(31)).await;
    let retried = storage.retry(first.id, Some(at(35))).await.expect("retry succeeds");
    assert_eq!(*retried.metadata, metadata, "a retry by hand returns the metadata");
    let fourth = claim_only(&storage, "meta.retry", first.id, at(40)).await;
    assert_eq!(*fourth.metadata, metadata, "the claim after a retry by hand returns the metadata");
}

/// A job rescued from an expired lease keeps its metadata, and its next claim returns it.
pub async fn metadata_survives_the_rescue_of_an_expired_lease(storage: TestStorage) {
    let metadata = metadata_of(&[("tenant", "acme"), ("trace", "a|b\nc")]);
    let record = running_job(&storage, with_metadata(job("meta.rescue"), &metadata), at(0)).await;

    let rescued = storage.rescue_expired(Some(at(31))).await.expect("rescue succeeds");
    assert_eq!(rescued.rescued, 1);
    let back = get(&storage, record.id).await;
    assert_eq!(back.state, JobState::Available);
    assert_eq!(*back.metadata, metadata, "the rescue keeps the metadata");

    let again = claim_only(&storage, "meta.rescue", record.id, at(32)).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(*again.metadata, metadata, "the claim after a rescue returns the metadata");
}

/// Metadata at the size limit is stored whole; one byte more, a NUL in a value or a
/// control character in a key is refused with `InvalidArgument`, and nothing of the
/// batch is stored.
pub async fn metadata_over_the_limit_or_with_a_nul_is_refused(storage: TestStorage) {
    let key = "big";
    let value = "é".repeat((MAX_METADATA_BYTES - key.len()) / 2) + &"x".repeat((MAX_METADATA_BYTES - key.len()) % 2);
    let largest = metadata_of(&[(key, &value)]);
    let over = metadata_of(&[(key, &format!("{value}x"))]);
    let refused = [
        ("over the limit", over),
        ("a NUL in a value", metadata_of(&[("tenant", "ac\0me")])),
        ("a control character in a key", metadata_of(&[("ten\nant", "acme")])),
        ("an empty key", metadata_of(&[("", "acme")])),
    ];
    for (what, metadata) in refused {
        let batch = vec![job("meta.bad"), with_metadata(job("meta.bad"), &metadata)];
        let error = storage.enqueue(EnqueueParams::new(batch).now(at(0))).await.expect_err(what);
        assert!(matches!(error, Error::InvalidArgument(_)), "{what}: {error:?}");
    }
    assert_eq!(total_jobs(&storage).await, 0, "nothing of a refused batch is stored");

    let id = enqueue_one(&storage, with_metadata(job("meta.bad"), &largest), at(0)).await;
    assert_eq!(*get(&storage, id).await.metadata, largest, "metadata at the limit is stored whole");
    assert_eq!(*claim_only(&storage, "meta.bad", id, at(1)).await.metadata, largest);
}

/// The metadata each [`metadata_reader`] run saw, by job id (the handler has no state
/// of its own, so a worker of any queue can run it).
static SEEN: Mutex<Option<HashMap<JobId, Metadata>>> = Mutex::new(None);

/// What [`metadata_reader`] saw for job `id`, if it ran.
fn seen(id: JobId) -> Option<Metadata> {
    SEEN.lock().unwrap_or_else(PoisonError::into_inner).as_ref().and_then(|seen| seen.get(&id).cloned())
}

/// Records the metadata its context carries.
#[haul::job(name = "haul_tests.metadata_reader")]
pub async fn metadata_reader(ctx: &JobContext) -> Result<(), JobError> {
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    seen.get_or_insert_with(HashMap::new).insert(ctx.id(), ctx.metadata().clone());
    Ok(())
}

/// A handler reads from its context the metadata the job was enqueued with through
/// [`Queue::enqueue`]; a job enqueued without any reads an empty map.
pub async fn a_handler_reads_the_metadata_it_was_enqueued_with(storage: TestStorage) {
    let queue = "meta.worker";
    let producer = Queue::new(storage.clone());
    let with = producer
        .enqueue(MetadataReader::new())
        .queue(queue)
        .metadata("tenant", "acme")
        .metadata("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .await
        .expect("enqueue succeeds");
    let without = producer.enqueue(MetadataReader::new()).queue(queue).await.expect("enqueue succeeds");

    let worker = RunningWorker::start(&storage, queue, &Tracker::new(), |builder| builder);
    let with_seen = eventually("the handler to see the metadata", || async { seen(with) }).await;
    let without_seen = eventually("the handler of the other job to run", || async { seen(without) }).await;
    super::worker::wait_for_state(&storage, with, JobState::Completed).await;
    super::worker::wait_for_state(&storage, without, JobState::Completed).await;
    worker.stop().await;

    assert_eq!(
        with_seen,
        metadata_of(&[("tenant", "acme"), ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),])
    );
    assert!(without_seen.is_empty(), "a job without metadata reads an empty map: {without_seen:?}");
}
