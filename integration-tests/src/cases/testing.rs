//! `haul::testing` over the backend: an application's jobs are drained on the test
//! clock, run inline, and asserted on, whatever storage holds them.
//!
//! Each case sets the test clock to the suite's base time ([`t0`]) and moves it by hand;
//! the storage's own clock is never read.

use std::time::Duration;

use haul::{
    JobContext, JobError, JobState, Queue, State,
    testing::{DrainSummary, TestJobs},
};
use serde_json::json;

use super::{
    jobs::{SCRIPTED_BACKOFF, SCRIPTED_KIND, Script, Scripted, Tracker},
    *,
};

/// The kind name of [`Relay`] jobs.
pub const RELAY_KIND: &str = "haul_tests.testing.relay";

/// The queue [`Relay`] jobs start in.
pub const RELAY_QUEUE: &str = "testing_relay_a";

/// The queue every other hop of a [`Relay`] goes to.
pub const OTHER_RELAY_QUEUE: &str = "testing_relay_b";

/// Enqueues the next hop, `hops - 1`, in the other relay queue, until no hop is left.
#[haul::job(name = "haul_tests.testing.relay", queue = "testing_relay_a")]
pub async fn relay(queue: State<Queue>, ctx: &JobContext, hops: u32) -> Result<(), JobError> {
    if hops > 0 {
        let next = if ctx.queue() == RELAY_QUEUE { OTHER_RELAY_QUEUE } else { RELAY_QUEUE };
        queue.enqueue(Relay::new(hops - 1)).queue(next).await?;
    }
    Ok(())
}

/// A [`TestJobs`] in collect mode (or inline), its clock at [`t0`], with the producer
/// relays use and `tracker` as state.
fn test_jobs(storage: TestStorage, inline: bool, tracker: &Tracker) -> (TestJobs, Queue) {
    let jobs = if inline { TestJobs::inline(storage) } else { TestJobs::new(storage) };
    jobs.set_now(t0());
    let queue = Queue::new(jobs.storage());
    (jobs.state(queue.clone()).state(tracker.clone()), queue)
}

fn completed(n: usize) -> DrainSummary {
    DrainSummary { completed: n, ..DrainSummary::default() }
}

/// Enqueues a scripted job on the `testing` queue.
async fn enqueue_script(queue: &Queue, script: Script) -> haul::JobId {
    queue.enqueue(Scripted::new(script)).queue("testing").await.expect("enqueue succeeds")
}

/// A drain runs the jobs the jobs enqueue, in any queue; a drain of some queues leaves
/// the others' jobs enqueued.
pub async fn a_drain_runs_due_jobs_and_the_jobs_they_enqueue(storage: TestStorage) {
    let (jobs, queue) = test_jobs(storage, false, &Tracker::new());
    let first = queue.enqueue(Relay::new(3)).await.expect("enqueue succeeds");

    assert_eq!(jobs.drain_all().await.expect("the drain succeeds"), completed(4));
    assert_eq!(queue.get(first).await.expect("get succeeds").map(|job| job.state), Some(JobState::Completed));
    assert!(jobs.enqueued().await.expect("listing succeeds").is_empty(), "every hop ran");

    queue.enqueue(Relay::new(1)).await.expect("enqueue succeeds");
    assert_eq!(jobs.drain([RELAY_QUEUE]).await.expect("the drain succeeds"), completed(1));
    jobs.assert_enqueued_json(RELAY_KIND, json!({ "hops": 0 })).await;
    let left = jobs.enqueued().await.expect("listing succeeds");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].queue, OTHER_RELAY_QUEUE);
    assert_eq!(jobs.drain([OTHER_RELAY_QUEUE]).await.expect("the drain succeeds"), completed(1));
}

/// A failed attempt's retry is due after its backoff on the test clock, and runs at
/// the first drain after the clock has passed it.
pub async fn a_failed_job_runs_again_once_the_test_clock_passes_its_backoff(storage: TestStorage) {
    let tracker = Tracker::new();
    let (jobs, queue) = test_jobs(storage, false, &tracker);
    let id = enqueue_script(&queue, Script::FailUntilAttempt { attempt: 2 }).await;

    assert_eq!(
        jobs.drain_all().await.expect("the drain succeeds"),
        DrainSummary { failed: 1, ..DrainSummary::default() }
    );
    let stored = queue.get(id).await.expect("get succeeds").expect("the job exists");
    assert_eq!(stored.state, JobState::Retryable);
    assert_eq!(stored.run_at, t0() + chrono::Duration::from_std(SCRIPTED_BACKOFF).expect("a short backoff"));
    assert_eq!(stored.errors[0].at, t0(), "the failure is recorded at the test clock's time");
    assert_eq!(jobs.drain_all().await.expect("the drain succeeds"), DrainSummary::default(), "not due yet");

    jobs.advance(SCRIPTED_BACKOFF);
    assert_eq!(jobs.drain_all().await.expect("the drain succeeds"), completed(1));
    assert_eq!(tracker.runs(id), vec![1, 2]);
}

/// A job enqueued with `run_in` is due that long after the test clock, and runs only
/// once the clock reaches it.
pub async fn a_scheduled_job_runs_once_the_test_clock_reaches_it(storage: TestStorage) {
    let tracker = Tracker::new();
    let (jobs, queue) = test_jobs(storage, false, &tracker);
    let id = queue
        .enqueue(Scripted::new(Script::Complete))
        .queue("testing")
        .run_in(Duration::from_secs(3600))
        .await
        .expect("enqueue succeeds");

    let stored = queue.get(id).await.expect("get succeeds").expect("the job exists");
    assert_eq!((stored.state, stored.created_at, stored.run_at), (JobState::Scheduled, t0(), at(3600)));
    assert_eq!(jobs.drain_all().await.expect("the drain succeeds"), DrainSummary::default());
    jobs.advance(Duration::from_secs(3599));
    assert_eq!(jobs.drain_all().await.expect("the drain succeeds"), DrainSummary::default());
    assert!(tracker.runs(id).is_empty());

    jobs.advance(Duration::from_secs(1));
    assert_eq!(jobs.drain_all().await.expect("the drain succeeds"), completed(1));
    assert_eq!(tracker.runs(id), vec![1]);
}

/// The assertions find the jobs stored in the backend, by type and by JSON.
pub async fn the_assertions_read_the_enqueued_jobs(storage: TestStorage) {
    let (jobs, queue) = test_jobs(storage, false, &Tracker::new());
    enqueue_script(&queue, Script::Complete).await;
    enqueue_script(&queue, Script::FailUntilAttempt { attempt: 2 }).await;
    queue.enqueue(Relay::new(5)).run_in(Duration::from_secs(60)).await.expect("enqueue succeeds");

    jobs.assert_enqueued::<Scripted>(|job| job.script == Script::FailUntilAttempt { attempt: 2 }).await;
    jobs.assert_enqueued::<Relay>(|job| job.hops == 5).await;
    jobs.assert_enqueued_json(SCRIPTED_KIND, json!({ "script": { "do": "complete" } })).await;
    jobs.refute_enqueued::<Scripted>(|job| job.script == Script::Hang).await;
    jobs.refute_enqueued_json(RELAY_KIND, json!({ "hops": 4 })).await;
    let scripts: Vec<Script> =
        jobs.all_enqueued::<Scripted>().await.expect("listing succeeds").into_iter().map(|job| job.script).collect();
    assert_eq!(scripts, vec![Script::Complete, Script::FailUntilAttempt { attempt: 2 }]);
    let states: Vec<JobState> = jobs.enqueued().await.expect("listing succeeds").iter().map(|job| job.state).collect();
    assert_eq!(states, vec![JobState::Available, JobState::Available, JobState::Scheduled]);
}

/// In inline mode an enqueue returns once the job, and the jobs it enqueued, have run.
pub async fn an_inline_enqueue_runs_the_job_before_it_returns(storage: TestStorage) {
    let tracker = Tracker::new();
    let (jobs, queue) = test_jobs(storage, true, &tracker);

    let first = queue.enqueue(Relay::new(2)).await.expect("enqueue succeeds");
    assert_eq!(queue.get(first).await.expect("get succeeds").map(|job| job.state), Some(JobState::Completed));
    assert!(jobs.enqueued().await.expect("listing succeeds").is_empty(), "every hop ran");

    let failing = enqueue_script(&queue, Script::FailUntilAttempt { attempt: 2 }).await;
    assert_eq!(tracker.runs(failing), vec![1]);
    let stored = queue.get(failing).await.expect("get succeeds").expect("the job exists");
    assert_eq!(stored.state, JobState::Retryable, "the retry waits for a drain");
    jobs.advance(SCRIPTED_BACKOFF);
    assert_eq!(jobs.drain_all().await.expect("the drain succeeds"), completed(1));
    assert_eq!(tracker.runs(failing), vec![1, 2]);
}
