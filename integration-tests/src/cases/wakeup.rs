//! Wake-ups: new work is signalled, so workers need not wait for their poll interval.
//!
//! Real asynchrony is the point here, so these cases wait for the event with a generous
//! deadline (and never assert how long it took).

use std::time::Duration;

use haul::JobState;

use super::{
    jobs::{Script, Tracker},
    worker::{RunningWorker, enqueue_script, wait_for_state},
    *,
};

/// How long a case waits for one wake-up.
const WAKEUP_PATIENCE: Duration = Duration::from_secs(5);

/// A subscriber is woken for a queue after an available job is enqueued there.
pub async fn a_subscriber_is_woken_after_an_available_job_is_enqueued(storage: TestStorage) {
    let mut wakeups = storage.subscribe().await.expect("subscribe succeeds");
    enqueue_one(&storage, job("mail"), at(0)).await;
    let woken = tokio::time::timeout(WAKEUP_PATIENCE, wakeups.wait_for(&["mail".to_owned()])).await;
    assert_eq!(woken, Ok(true), "a wake-up for `mail` arrives");
}

/// Every subscriber is woken, not just one of them.
pub async fn every_subscriber_is_woken(storage: TestStorage) {
    let mut first = storage.subscribe().await.expect("subscribe succeeds");
    let mut second = storage.subscribe().await.expect("subscribe succeeds");
    enqueue_one(&storage, job("mail"), at(0)).await;
    let queues = ["mail".to_owned()];
    let woken = tokio::time::timeout(WAKEUP_PATIENCE, async {
        (first.wait_for(&queues).await, second.wait_for(&queues).await)
    })
    .await;
    assert_eq!(woken, Ok((true, true)));
}

/// An idle worker picks up new work through its wake-up, long before its (one hour)
/// poll interval would have found it.
pub async fn an_idle_worker_is_woken_by_new_work(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker =
        RunningWorker::start(&storage, "w.wake", &tracker, |builder| builder.poll_interval(Duration::from_secs(3600)));
    // The first job proves the worker is up (and subscribed); after it, the worker idles.
    let first = enqueue_script(&storage, "w.wake", Script::Complete, |job| job).await;
    wait_for_state(&storage, first, JobState::Completed).await;

    let second = enqueue_script(&storage, "w.wake", Script::Complete, |job| job).await;
    wait_for_state(&storage, second, JobState::Completed).await;
    worker.stop().await;
}
