//! Per-queue throughput: the samples `record_throughput` adds up by queue and minute,
//! what `throughput(since)` reads back, how long they are kept, and the counts a real
//! worker records for the attempts it ends.
//!
//! The storage cases pass an explicit `now` and place their samples at fixed times
//! ([`at`]); the worker cases run the real runtime, which stamps its samples with the
//! real clock, and read back from a `since` taken before the worker started.

use std::time::Duration;

use haul::{JobState, THROUGHPUT_RETENTION, ThroughputSample};

use super::{
    jobs::{Script, Tracker},
    worker::{RunningWorker, enqueue_script, enqueue_scripts, wait_for_all, wait_for_state},
    *,
};

/// 12:00:00 on the base day: the start of the minute most samples fall in.
fn noon() -> Timestamp {
    at(12 * 3600)
}

/// `minutes` minutes and `secs` seconds after [`noon`].
fn noon_plus(minutes: i64, secs: i64) -> Timestamp {
    noon() + chrono::Duration::minutes(minutes) + chrono::Duration::seconds(secs)
}

/// Records `samples` at `now`, which must succeed.
async fn record(storage: &TestStorage, samples: Vec<ThroughputSample>, now: Timestamp) {
    storage.record_throughput(samples, Some(now)).await.expect("record_throughput succeeds");
}

/// What `throughput(since)` returns, as `(queue, minute, completed, failed)`.
async fn read(storage: &TestStorage, since: Timestamp) -> Vec<(String, Timestamp, u64, u64)> {
    storage
        .throughput(since)
        .await
        .expect("throughput succeeds")
        .into_iter()
        .map(|sample| (sample.queue, sample.minute, sample.completed, sample.failed))
        .collect()
}

/// `(queue, minute, completed, failed)`, as [`read`] returns it.
fn row(queue: &str, minute: Timestamp, completed: u64, failed: u64) -> (String, Timestamp, u64, u64) {
    (queue.to_owned(), minute, completed, failed)
}

/// The completed and failed attempts of `queue` summed over every minute from `since`.
async fn totals_of(storage: &TestStorage, queue: &str, since: Timestamp) -> (u64, u64) {
    storage
        .throughput(since)
        .await
        .expect("throughput succeeds")
        .iter()
        .filter(|sample| sample.queue == queue)
        .fold((0, 0), |(completed, failed), sample| (completed + sample.completed, failed + sample.failed))
}

/// The queues `throughput(since)` has samples of, each once, sorted.
async fn queues_recorded(storage: &TestStorage, since: Timestamp) -> Vec<String> {
    let mut queues: Vec<String> =
        storage.throughput(since).await.expect("throughput succeeds").into_iter().map(|sample| sample.queue).collect();
    queues.dedup();
    queues
}

/// Samples of the same queue and minute add up, within a call and across calls;
/// other queues and other minutes stay apart; the result is ordered by queue, then
/// minute, whatever order the samples came in.
pub async fn samples_of_a_queue_and_minute_add_up_and_others_stay_apart(storage: TestStorage) {
    let (alpha, beta) = ("tp.sum.alpha", "tp.sum.beta");
    record(
        &storage,
        vec![
            ThroughputSample::new(beta, noon_plus(1, 5), 7, 0),
            ThroughputSample::new(alpha, noon_plus(1, 0), 0, 1),
            ThroughputSample::new(alpha, noon_plus(0, 0), 1, 2),
            ThroughputSample::new(beta, noon_plus(0, 30), 3, 0),
            ThroughputSample::new(beta, noon_plus(0, 40), 1, 1),
        ],
        noon_plus(1, 10),
    )
    .await;
    record(
        &storage,
        vec![ThroughputSample::new(alpha, noon_plus(0, 20), 4, 5), ThroughputSample::new(beta, noon_plus(1, 59), 0, 3)],
        noon_plus(2, 0),
    )
    .await;

    assert_eq!(
        read(&storage, noon()).await,
        vec![
            row(alpha, noon_plus(0, 0), 5, 7),
            row(alpha, noon_plus(1, 0), 0, 1),
            row(beta, noon_plus(0, 0), 4, 1),
            row(beta, noon_plus(1, 0), 7, 3),
        ]
    );
}

/// A sample's minute is truncated to the start of its minute, whether the sample was
/// built with [`ThroughputSample::new`] or its `minute` field was set to any instant:
/// 12:00:10 and 12:00:59.999 both land in 12:00:00, and 12:01:00 starts the next one.
pub async fn a_samples_minute_is_truncated_to_the_start_of_its_minute(storage: TestStorage) {
    let queue = "tp.truncate";
    let mut unaligned = ThroughputSample::new(queue, noon(), 3, 4);
    unaligned.minute = noon_plus(0, 59) + chrono::Duration::milliseconds(999);
    let mut next_minute = ThroughputSample::new(queue, noon(), 100, 0);
    next_minute.minute = noon_plus(1, 0);
    record(&storage, vec![ThroughputSample::new(queue, noon_plus(0, 10), 1, 2), unaligned], noon_plus(1, 0)).await;
    let mut late = ThroughputSample::new(queue, noon(), 10, 0);
    late.minute = noon_plus(0, 50);
    record(&storage, vec![late, next_minute], noon_plus(1, 30)).await;

    assert_eq!(read(&storage, noon()).await, vec![row(queue, noon(), 14, 6), row(queue, noon_plus(1, 0), 100, 0)]);
}

/// `throughput(since)` returns the minutes at or after the minute holding `since`, and
/// no earlier one.
pub async fn throughput_since_returns_the_minutes_from_the_minute_of_since(storage: TestStorage) {
    let (alpha, beta) = ("tp.since.alpha", "tp.since.beta");
    record(
        &storage,
        vec![
            ThroughputSample::new(alpha, noon_plus(0, 0), 1, 0),
            ThroughputSample::new(alpha, noon_plus(1, 0), 2, 0),
            ThroughputSample::new(alpha, noon_plus(2, 0), 3, 0),
            ThroughputSample::new(beta, noon_plus(1, 45), 0, 4),
        ],
        noon_plus(2, 30),
    )
    .await;

    let all = vec![
        row(alpha, noon_plus(0, 0), 1, 0),
        row(alpha, noon_plus(1, 0), 2, 0),
        row(alpha, noon_plus(2, 0), 3, 0),
        row(beta, noon_plus(1, 0), 0, 4),
    ];
    assert_eq!(read(&storage, noon() - chrono::Duration::hours(1)).await, all, "an hour before: every minute");
    assert_eq!(read(&storage, noon()).await, all, "since the first minute: every minute");
    let from_second_minute = all[1..].to_vec();
    assert_eq!(read(&storage, noon_plus(1, 0)).await, from_second_minute, "since 12:01:00");
    assert_eq!(read(&storage, noon_plus(1, 59)).await, from_second_minute, "since 12:01:59: the minute 12:01 included");
    assert_eq!(read(&storage, noon_plus(2, 0)).await, vec![row(alpha, noon_plus(2, 0), 3, 0)], "since 12:02:00");
    assert_eq!(read(&storage, noon_plus(3, 0)).await, Vec::new(), "since a minute after the last: nothing");
}

/// Samples are kept at least [`THROUGHPUT_RETENTION`] before the `now` of a later
/// call: a sample exactly that old, and one within it, are still read back after a
/// call at that later `now`. (Older samples *may* be dropped; the contract does not
/// promise when, so that is not checked.)
pub async fn samples_within_the_retention_are_kept_at_a_later_now(storage: TestStorage) {
    let (old, new) = ("tp.keep.old", "tp.keep.new");
    let retention = chrono::Duration::from_std(THROUGHPUT_RETENTION).expect("the retention fits a chrono duration");
    record(
        &storage,
        vec![ThroughputSample::new(old, noon(), 1, 2), ThroughputSample::new(old, noon_plus(30, 0), 3, 4)],
        noon_plus(30, 30),
    )
    .await;

    // Half the retention later: everything is kept.
    record(&storage, vec![ThroughputSample::new(new, noon() + retention / 2, 5, 0)], noon() + retention / 2).await;
    // Exactly the retention after the first minute: that minute is still within it.
    record(&storage, vec![ThroughputSample::new(new, noon() + retention, 0, 6)], noon() + retention).await;

    assert_eq!(
        read(&storage, noon()).await,
        vec![
            row(new, noon() + retention / 2, 5, 0),
            row(new, noon() + retention, 0, 6),
            row(old, noon(), 1, 2),
            row(old, noon_plus(30, 0), 3, 4),
        ]
    );
}

/// A worker counts the attempts it ends per queue and writes them when it stops:
/// completed attempts as completed; failures (retried or last), panics and discards
/// as failed; snoozes in neither. The interval is an hour, so only the write at
/// shutdown can have recorded them.
pub async fn a_worker_records_its_completed_and_failed_attempts_when_it_stops(storage: TestStorage) {
    let (main, other) = ("tp.worker.main", "tp.worker.other");
    let since = chrono::Utc::now();
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, main, &tracker, |builder| {
        builder.queues([main, other]).throughput_interval(Duration::from_secs(3600))
    });

    // main: 4 + 1 (after 2 failures) + 1 (after a snooze) completed; 2 + 1 + 1 + 1 failed.
    let mut main_jobs = enqueue_scripts(&storage, main, vec![Script::Complete; 4]).await;
    main_jobs.push(enqueue_script(&storage, main, Script::FailUntilAttempt { attempt: 3 }, |job| job).await);
    main_jobs.push(enqueue_script(&storage, main, Script::SnoozeFirstRun { ms: 50 }, |job| job).await);
    let discarded = [
        enqueue_script(&storage, main, Script::Discard { reason: "not wanted".to_owned() }, |job| job).await,
        enqueue_script(&storage, main, Script::FailUntilAttempt { attempt: 100 }, |job| job.max_attempts(1)).await,
        enqueue_script(&storage, main, Script::Panic { message: "on purpose".to_owned() }, |job| job.max_attempts(1))
            .await,
    ];
    // other: 2 completed, 1 failed.
    enqueue_scripts(&storage, other, vec![Script::Complete, Script::Complete]).await;
    let other_discarded =
        enqueue_script(&storage, other, Script::Discard { reason: "not wanted".to_owned() }, |job| job).await;

    for &id in &main_jobs {
        wait_for_state(&storage, id, JobState::Completed).await;
    }
    for &id in discarded.iter().chain([&other_discarded]) {
        wait_for_state(&storage, id, JobState::Discarded).await;
    }
    worker.stop().await;

    assert_eq!(totals_of(&storage, main, since).await, (6, 5), "{main}: completed and failed attempts");
    assert_eq!(totals_of(&storage, other, since).await, (2, 1), "{other}: completed and failed attempts");
    assert_eq!(queues_recorded(&storage, since).await, vec![main.to_owned(), other.to_owned()]);
}

/// A running worker writes its counts every interval, before it stops; stopping then
/// adds only what it ended since, never the same attempts again.
pub async fn a_running_worker_records_its_counts_every_interval(storage: TestStorage) {
    let queue = "tp.interval";
    let since = chrono::Utc::now();
    let tracker = Tracker::new();
    // A write may take at most the interval, and one that takes longer loses its counts
    // (see `ThroughputRecorder`): 50 ms was too short for a loaded CI machine.
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| {
        builder.throughput_interval(Duration::from_millis(500))
    });

    enqueue_scripts(&storage, queue, vec![Script::Complete; 3]).await;
    wait_for_all(&storage, queue, 3, JobState::Completed).await;
    eventually("the worker to record 3 completed attempts while running", || {
        let storage = storage.clone();
        async move { (totals_of(&storage, queue, since).await == (3, 0)).then_some(()) }
    })
    .await;
    assert!(worker.is_running(), "the counts were written by the interval, not at stop");

    worker.stop().await;
    assert_eq!(totals_of(&storage, queue, since).await, (3, 0), "stopping counts no attempt twice");
}
