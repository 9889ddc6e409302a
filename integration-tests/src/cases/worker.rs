//! The worker runtime over the backend: jobs run to completion, failures are retried,
//! panics and timeouts are recorded, shutdown loses nothing.
//!
//! The worker uses the storage's real clock, so these cases keep their delays short and
//! wait for storage states with a generous deadline instead of moving the clock.

use std::time::Duration;

use haul::{
    JobId, JobRecord, JobState, NewJob, Queue, Worker, WorkerBuilder,
    storage::{ClaimParams, HeartbeatOutcome, HeartbeatParams, ListParams, PacedClaim, ReportOutcome, ReportParams},
};
use haul_test_support::{Hooked, StorageHooks};
use tokio::{sync::oneshot, task::JoinHandle};

use super::{
    jobs::{Script, Scripted, Tracker, UnboundedBackoff},
    *,
};

/// A worker running in a task until [`RunningWorker::stop`].
#[derive(Debug)]
pub struct RunningWorker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<haul::Result<()>>,
}

impl RunningWorker {
    /// Starts a worker on `queue` over `storage`, with short intervals suited to tests;
    /// `configure` adjusts the builder.
    pub fn start(
        storage: &TestStorage,
        queue: &str,
        tracker: &Tracker,
        configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
    ) -> Self {
        Self::from_worker(configure(Self::builder(storage, queue, tracker)).build())
    }

    /// The builder [`RunningWorker::start`] configures: a worker on `queue` over
    /// `storage` with short intervals suited to tests, and `tracker` as state. A case
    /// that must subscribe before the worker runs builds from this and then calls
    /// [`RunningWorker::from_worker`].
    pub fn builder(storage: &TestStorage, queue: &str, tracker: &Tracker) -> WorkerBuilder {
        Worker::builder(storage.clone())
            .queues([queue])
            .concurrency(4)
            .poll_interval(Duration::from_millis(50))
            .maintenance_interval(Duration::from_millis(50))
            .lease(Duration::from_secs(5))
            // A worker that dies hands the lead (and the rescue of its jobs) on within ~1 s.
            .leader_lease(Duration::from_secs(1))
            .shutdown_grace(Duration::from_secs(10))
            .state(tracker.clone())
    }

    /// Runs `worker` in a task until [`RunningWorker::stop`].
    pub fn from_worker(worker: Worker) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run_until(async move {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Whether the worker is still running (it stops only when asked, or on bad settings).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Waits for the worker to end by itself (within the patience) and returns how it
    /// ended: `Err` if its task panicked.
    pub async fn ended(self) -> Result<haul::Result<()>, tokio::task::JoinError> {
        tokio::time::timeout(PATIENCE, self.task).await.expect("the worker ends in time")
    }

    /// Signals shutdown and waits for the worker to return, which it must do cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(PATIENCE, self.task).await.expect("the worker stops in time");
        result.expect("the worker task does not panic").expect("the worker returns Ok");
    }
}

/// Enqueues scripted jobs on `queue` through [`Queue`], as an application would.
pub async fn enqueue_scripts(storage: &TestStorage, queue: &str, scripts: Vec<Script>) -> Vec<JobId> {
    let producer = Queue::new(storage.clone());
    let jobs = scripts
        .into_iter()
        .map(|script| producer.prepare(&Scripted::new(script)).expect("a scripted job is valid").queue(queue))
        .collect();
    producer.insert(jobs).await.expect("enqueue succeeds")
}

/// Enqueues one scripted job on `queue`, adjusted by `adjust`.
pub async fn enqueue_script(
    storage: &TestStorage,
    queue: &str,
    script: Script,
    adjust: impl FnOnce(NewJob) -> NewJob,
) -> JobId {
    let producer = Queue::new(storage.clone());
    let job = producer.prepare(&Scripted::new(script)).expect("a scripted job is valid").queue(queue);
    producer.insert(vec![adjust(job)]).await.expect("enqueue succeeds")[0]
}

/// Waits until job `id` is in `state` and returns it.
pub async fn wait_for_state(storage: &TestStorage, id: JobId, state: JobState) -> JobRecord {
    eventually(&format!("job {id} to be {state}"), || {
        let storage = storage.clone();
        async move { storage.get(id).await.expect("get succeeds").filter(|record| record.state == state) }
    })
    .await
}

/// Waits until every job of `queue` is in `state` and there are `count` of them.
pub async fn wait_for_all(storage: &TestStorage, queue: &str, count: usize, state: JobState) -> Vec<JobRecord> {
    eventually(&format!("{count} jobs of {queue} to be {state}"), || {
        let storage = storage.clone();
        let queue = queue.to_owned();
        async move {
            let jobs = storage.list(ListParams::new().queue(queue).limit(count + 1)).await.expect("list succeeds");
            (jobs.len() == count && jobs.iter().all(|job| job.state == state)).then_some(jobs)
        }
    })
    .await
}

/// A batch of jobs runs to completion, each exactly once and on its first attempt.
pub async fn runs_a_batch_of_jobs_to_completion(storage: TestStorage) {
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, "w.batch", vec![Script::Complete; 100]).await;
    let worker = RunningWorker::start(&storage, "w.batch", &tracker, |builder| builder.concurrency(8));

    let done = wait_for_all(&storage, "w.batch", ids.len(), JobState::Completed).await;
    worker.stop().await;
    for record in done {
        assert_eq!(record.attempt, 1);
        assert!(record.errors.is_empty());
        assert!(record.finished_at.is_some());
        assert_eq!(tracker.runs(record.id), vec![1], "job {} ran exactly once", record.id);
    }
}

/// A graceful shutdown lets the jobs in flight finish and leaves the others available:
/// no job is lost, left running, or run twice.
pub async fn graceful_shutdown_lets_jobs_in_flight_finish_and_loses_none(storage: TestStorage) {
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, "w.drain", vec![Script::Sleep { ms: 300 }; 12]).await;
    let worker = RunningWorker::start(&storage, "w.drain", &tracker, |builder| builder.concurrency(4));

    eventually("a job to start", || {
        let tracker = tracker.clone();
        async move { (!tracker.started().is_empty()).then_some(()) }
    })
    .await;
    worker.stop().await;

    let started = tracker.started();
    let mut completed = 0;
    for id in &ids {
        let record = get(&storage, *id).await;
        match record.state {
            JobState::Completed => {
                completed += 1;
                assert_eq!(tracker.runs(*id), vec![1], "a completed job ran once");
            }
            JobState::Available => {
                assert!(!started.contains(id), "a job that started was finished, not handed back");
                assert_eq!(record.attempt, 0);
            }
            other => panic!("job {id} is {other} after shutdown; expected completed or available"),
        }
    }
    assert!(completed >= 1, "the job in flight finished");
    assert_eq!(completed, started.len(), "every started job completed");
}

/// Jobs still running when the grace period ends are stopped and handed back
/// `available` without spending their attempt, and can be claimed again.
pub async fn shutdown_after_the_grace_period_hands_running_jobs_back(storage: TestStorage) {
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, "w.handback", vec![Script::Hang; 3]).await;
    let worker = RunningWorker::start(&storage, "w.handback", &tracker, |builder| {
        builder.concurrency(3).shutdown_grace(Duration::from_millis(200))
    });
    wait_for_all(&storage, "w.handback", 3, JobState::Running).await;
    // Running in storage once claimed; the handlers start just after.
    eventually("every handler to start", || async { ids.iter().all(|id| !tracker.runs(*id).is_empty()).then_some(()) })
        .await;
    worker.stop().await;

    for id in &ids {
        let record = get(&storage, *id).await;
        assert_eq!(record.state, JobState::Available, "job {id} is handed back");
        assert_eq!(record.attempt, 0, "the interrupted attempt is not spent");
        assert!(record.errors.is_empty());
        assert_eq!(record.lease_token, None);
        assert_eq!(tracker.runs(*id), vec![1]);
    }
    let queue = ["w.handback"];
    let reclaimed = storage.claim(haul::storage::ClaimParams::new(queue, 10)).await.expect("claim succeeds");
    assert_eq!(sorted_ids_of(&reclaimed), {
        let mut ids = ids.clone();
        ids.sort();
        ids
    });
}

/// The jobs of `queue` in `state`.
async fn jobs_in_state(storage: &TestStorage, queue: &str, state: JobState) -> Vec<JobRecord> {
    let jobs = storage.list(ListParams::new().queue(queue).limit(1_000)).await.expect("list succeeds");
    jobs.into_iter().filter(|job| job.state == state).collect()
}

/// A worker with a prefetch claims up to `concurrency + prefetch` jobs but runs only
/// `concurrency` of them at once; the rest wait claimed, and nothing more is claimed.
pub async fn a_prefetching_worker_claims_ahead_but_runs_only_its_concurrency(storage: TestStorage) {
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, "w.prefetch", vec![Script::Hang; 12]).await;
    let worker = RunningWorker::start(&storage, "w.prefetch", &tracker, |builder| {
        builder.concurrency(2).prefetch(6).shutdown_grace(Duration::from_millis(200))
    });
    eventually("8 jobs to be claimed", || {
        let storage = storage.clone();
        async move { (jobs_in_state(&storage, "w.prefetch", JobState::Running).await.len() == 8).then_some(()) }
    })
    .await;
    // Several poll intervals: the worker must neither start a third handler nor claim more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tracker.started().len(), 2, "only `concurrency` handlers run");
    assert_eq!(jobs_in_state(&storage, "w.prefetch", JobState::Running).await.len(), 8);
    assert_eq!(jobs_in_state(&storage, "w.prefetch", JobState::Available).await.len(), 4);

    worker.stop().await;
    let started = tracker.started();
    for id in &ids {
        let record = get(&storage, *id).await;
        assert_eq!(record.state, JobState::Available, "job {id} is handed back");
        assert_eq!(record.attempt, 0, "a handed-back job keeps its attempt");
        assert_eq!(tracker.runs(*id).len(), usize::from(started.contains(id)));
    }
}

/// At shutdown, prefetched jobs that have not started are handed back at once: they do
/// not start while the running job finishes within the grace period.
pub async fn shutdown_hands_prefetched_jobs_back_without_running_them(storage: TestStorage) {
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, "w.prefetch_stop", vec![Script::Sleep { ms: 1_000 }; 5]).await;
    let worker = RunningWorker::start(&storage, "w.prefetch_stop", &tracker, |builder| {
        builder.concurrency(1).prefetch(4).shutdown_grace(Duration::from_secs(10))
    });
    wait_for_all(&storage, "w.prefetch_stop", 5, JobState::Running).await;
    worker.stop().await;

    let started = tracker.started();
    assert_eq!(started.len(), 1, "only the job that was running started");
    for id in &ids {
        let record = get(&storage, *id).await;
        if started.contains(id) {
            assert_eq!(record.state, JobState::Completed, "the running job finished within the grace period");
        } else {
            assert_eq!(record.state, JobState::Available, "prefetched job {id} is handed back");
            assert_eq!(record.attempt, 0, "a handed-back job keeps its attempt");
            assert_eq!(record.lease_token, None);
        }
    }
}

/// A queue with slots of its own keeps running while another queue's jobs hold every
/// shared slot: the slow jobs' queue cannot starve it.
pub async fn a_queue_with_slots_of_its_own_runs_while_slow_jobs_hold_the_shared_ones(storage: TestStorage) {
    let (slow, fast) = ("w.slots_slow", "w.slots_fast");
    let tracker = Tracker::new();
    enqueue_scripts(&storage, slow, vec![Script::Hang; 3]).await;
    let worker = RunningWorker::start(&storage, slow, &tracker, |builder| {
        builder
            .queues([slow, fast])
            .concurrency(1)
            .queue_concurrency(fast, 1)
            .shutdown_grace(Duration::from_millis(200))
    });
    eventually("a slow job to hold the shared slot", || {
        let started = tracker.started().len();
        async move { (started == 1).then_some(()) }
    })
    .await;
    let fast_ids = enqueue_scripts(&storage, fast, vec![Script::Complete; 3]).await;
    wait_for_all(&storage, fast, 3, JobState::Completed).await;
    for id in &fast_ids {
        assert_eq!(tracker.runs(*id).len(), 1, "fast job {id} ran once");
    }
    assert_eq!(jobs_in_state(&storage, slow, JobState::Running).await.len(), 1, "the shared slot holds one slow job");
    assert_eq!(jobs_in_state(&storage, slow, JobState::Available).await.len(), 2);
    let workers = storage.list_workers(None).await.expect("list_workers succeeds");
    assert_eq!(workers.iter().map(|worker| worker.concurrency).collect::<Vec<_>>(), vec![2], "shared plus own slots");
    worker.stop().await;
}

/// A worker whose every queue has slots of its own (no shared slots, a queue listed
/// twice served once) runs each queue within its own limit and stops cleanly.
pub async fn a_worker_whose_every_queue_has_slots_of_its_own_keeps_each_limit(storage: TestStorage) {
    let (first, second) = ("w.slots_first", "w.slots_second");
    let tracker = Tracker::new();
    enqueue_scripts(&storage, first, vec![Script::Hang; 3]).await;
    enqueue_scripts(&storage, second, vec![Script::Hang; 3]).await;
    let worker = RunningWorker::start(&storage, first, &tracker, |builder| {
        builder
            .queues([first, second, first])
            .queue_concurrency(first, 1)
            .queue_concurrency(second, 2)
            .shutdown_grace(Duration::from_millis(200))
    });
    eventually("each queue to fill its own slots", || {
        let started = tracker.started().len();
        async move { (started == 3).then_some(()) }
    })
    .await;
    let workers = storage.list_workers(None).await.expect("list_workers succeeds");
    assert_eq!(workers.iter().map(|worker| worker.concurrency).collect::<Vec<_>>(), vec![3], "1 + 2 slots");
    assert_eq!(jobs_in_state(&storage, first, JobState::Running).await.len(), 1);
    assert_eq!(jobs_in_state(&storage, second, JobState::Running).await.len(), 2);
    worker.stop().await;
    for queue in [first, second] {
        assert_eq!(jobs_in_state(&storage, queue, JobState::Available).await.len(), 3, "{queue}: all handed back");
    }
}

/// A claim loop that panics stops the worker: the other loops stop claiming, what the
/// worker held is handed back, and the panic comes out of `run_until`.
pub async fn a_panicking_claim_loop_stops_the_worker_and_hands_its_jobs_back(storage: TestStorage) {
    let (fine, broken) = ("w.claim_fine", "w.claim_broken");
    let tracker = Tracker::new();
    let hung = enqueue_scripts(&storage, fine, vec![Script::Hang]).await[0];
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let faulty = FaultyStorage { claim_panics_on: Some((broken, armed.clone())), ..FaultyStorage::new(&storage) };
    let faulty: TestStorage = std::sync::Arc::new(Hooked::new(faulty));
    let worker = RunningWorker::start(&faulty, fine, &tracker, |builder| {
        builder.queues([fine, broken]).queue_concurrency(broken, 1).shutdown_grace(Duration::from_millis(200))
    });
    eventually("the fine queue's job to run", || async { (!tracker.runs(hung).is_empty()).then_some(()) }).await;
    // The broken queue's next claim (within a poll interval) panics.
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let ended = worker.ended().await;
    assert!(ended.as_ref().is_err_and(tokio::task::JoinError::is_panic), "the panic comes out: {ended:?}");
    let record = get(&storage, hung).await;
    assert_eq!((record.state, record.attempt), (JobState::Available, 0), "the running job is handed back");
}

/// A panic in one of the worker's own background tasks (here leader maintenance, whose
/// promotion panics) stops the worker as a claim loop's does: the running job is handed
/// back and the panic comes out of `run_until`, instead of a leader that never promotes
/// or rescues again while the worker goes on claiming.
pub async fn a_panicking_background_task_stops_the_worker_and_hands_its_jobs_back(storage: TestStorage) {
    let queue = "w.background_panic";
    let tracker = Tracker::new();
    let hung = enqueue_scripts(&storage, queue, vec![Script::Hang]).await[0];
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let faulty = FaultyStorage { promote_panics: Some(armed.clone()), ..FaultyStorage::new(&storage) };
    let faulty: TestStorage = std::sync::Arc::new(Hooked::new(faulty));
    let worker = RunningWorker::start(&faulty, queue, &tracker, |builder| {
        builder.maintenance_interval(Duration::from_millis(20)).shutdown_grace(Duration::from_millis(200))
    });
    eventually("the job to run", || async { (!tracker.runs(hung).is_empty()).then_some(()) }).await;
    // The leader's next maintenance pass panics.
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let ended = worker.ended().await;
    assert!(ended.as_ref().is_err_and(tokio::task::JoinError::is_panic), "the panic comes out: {ended:?}");
    let record = get(&storage, hung).await;
    assert_eq!((record.state, record.attempt), (JobState::Available, 0), "the running job is handed back");
}

/// A queue with slots of its own never takes the shared slots, however many of its jobs
/// wait: the other queues run in them.
pub async fn a_queue_with_slots_of_its_own_never_takes_the_shared_ones(storage: TestStorage) {
    let (busy, other) = ("w.slots_busy", "w.slots_other");
    let tracker = Tracker::new();
    enqueue_scripts(&storage, busy, vec![Script::Hang; 4]).await;
    let worker = RunningWorker::start(&storage, busy, &tracker, |builder| {
        builder
            .queues([busy, other])
            .concurrency(2)
            .prefetch(4)
            .queue_concurrency(busy, 2)
            .shutdown_grace(Duration::from_millis(200))
    });
    eventually("the busy queue to fill its own slots", || {
        let storage = storage.clone();
        async move { (jobs_in_state(&storage, busy, JobState::Running).await.len() == 2).then_some(()) }
    })
    .await;
    let other_ids = enqueue_scripts(&storage, other, vec![Script::Complete; 4]).await;
    wait_for_all(&storage, other, 4, JobState::Completed).await;
    assert_eq!(other_ids.iter().map(|id| tracker.runs(*id).len()).sum::<usize>(), 4);
    // The shared slots (and their prefetch) were free all along, and ran four jobs:
    // still two busy jobs are claimed, in the queue's own slots, none prefetched.
    assert_eq!(jobs_in_state(&storage, busy, JobState::Running).await.len(), 2, "two busy jobs, in its own slots");
    assert_eq!(jobs_in_state(&storage, busy, JobState::Available).await.len(), 2);
    worker.stop().await;
}

/// A worker with a prefetch runs a batch to completion, each job once, on its first attempt.
pub async fn a_prefetching_worker_runs_every_job_once(storage: TestStorage) {
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, "w.prefetch_all", vec![Script::Complete; 300]).await;
    let worker =
        RunningWorker::start(&storage, "w.prefetch_all", &tracker, |builder| builder.concurrency(4).prefetch(40));
    let done = wait_for_all(&storage, "w.prefetch_all", ids.len(), JobState::Completed).await;
    worker.stop().await;
    for record in done {
        assert_eq!(record.attempt, 1);
        assert_eq!(tracker.runs(record.id), vec![1], "job {} ran exactly once", record.id);
    }
}

/// At default settings a worker whose jobs are much shorter than a claim's round trip
/// claims ahead of its slots (the automatic prefetch): some claim asks for more jobs
/// than it has slots.
pub async fn a_default_worker_claims_ahead_for_short_jobs(storage: TestStorage) {
    let queue = "w.auto_prefetch_short";
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, queue, vec![Script::Complete; 300]).await;
    let recording = ClaimLimits::default();
    let wrapped: TestStorage = std::sync::Arc::new(Hooked::new(FaultyStorage {
        claim_limits: Some(recording.clone()),
        ..FaultyStorage::new(&storage)
    }));
    let worker = RunningWorker::start(&wrapped, queue, &tracker, |builder| builder.concurrency(2));
    wait_for_all(&storage, queue, ids.len(), JobState::Completed).await;
    worker.stop().await;
    let limits = recording.taken();
    assert!(limits.iter().any(|&limit| limit > 2), "no claim asked for more than the 2 slots: {limits:?}");
    for id in ids {
        assert_eq!(tracker.runs(id), vec![1], "job {id} ran once");
    }
}

/// At default settings a worker whose jobs run far longer than a claim's round trip
/// (1 s here) claims only for free slots: no job waits claimed while another worker
/// could run it.
pub async fn a_default_worker_does_not_claim_ahead_for_long_jobs(storage: TestStorage) {
    let queue = "w.auto_prefetch_long";
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, queue, vec![Script::Sleep { ms: 1_000 }; 6]).await;
    let recording = ClaimLimits::default();
    let wrapped: TestStorage = std::sync::Arc::new(Hooked::new(FaultyStorage {
        claim_limits: Some(recording.clone()),
        ..FaultyStorage::new(&storage)
    }));
    let worker = RunningWorker::start(&wrapped, queue, &tracker, |builder| builder.concurrency(2));
    wait_for_all(&storage, queue, ids.len(), JobState::Completed).await;
    worker.stop().await;
    let limits = recording.taken();
    assert!(limits.iter().all(|&limit| limit <= 2), "a claim asked for more than the 2 slots: {limits:?}");
    assert!(!limits.is_empty());
}

/// Long jobs queued behind many short ones are claimed ahead as if they were short; at
/// default settings each job claimed ahead that has not started within 1 s is handed
/// back for any worker to take. With one slot, held by a job that never ends, the worker
/// ends up holding that job alone: the jobs it had claimed ahead behind it were handed
/// back (a `HandedBack` event each), and every other job is completed or available
/// (again) without having spent an attempt.
pub async fn long_jobs_claimed_ahead_behind_short_ones_are_handed_back(storage: TestStorage) {
    let queue = "w.auto_prefetch_mixed";
    let tracker = Tracker::new();
    let mut scripts = vec![Script::Complete; 400];
    scripts.extend(vec![Script::Hang; 6]);
    let ids = enqueue_scripts(&storage, queue, scripts).await;
    let hanging: Vec<JobId> = ids[400..].to_vec();
    let worker = RunningWorker::builder(&storage, queue, &tracker)
        .concurrency(1)
        .shutdown_grace(Duration::from_millis(200))
        .build();
    let mut events = worker.subscribe();
    let worker = RunningWorker::from_worker(worker);
    let mut handed_back = std::collections::HashSet::new();
    let available = eventually("jobs handed back, one long job running and the rest waiting", || {
        while let Some(event) = events.try_recv() {
            if event.what == haul::JobEventKind::HandedBack {
                handed_back.insert(event.id);
            }
        }
        let some_handed_back = !handed_back.is_empty();
        let (storage, hanging) = (storage.clone(), hanging.clone());
        async move {
            if !some_handed_back {
                return None;
            }
            let running = jobs_in_state(&storage, queue, JobState::Running).await;
            let available = jobs_in_state(&storage, queue, JobState::Available).await;
            let completed = jobs_in_state(&storage, queue, JobState::Completed).await.len();
            let one_long_running = running.len() == 1 && hanging.contains(&running[0].id);
            (one_long_running && available.len() + completed == 405).then_some(available)
        }
    })
    .await;
    for job in &available {
        assert_eq!(job.attempt, 0, "job {} is handed back without spending its attempt", job.id);
    }
    worker.stop().await;
    for id in &ids {
        assert!(tracker.runs(*id).len() <= 1, "job {id} ran at most once");
    }
}

/// The `limit` of every claim a [`FaultyStorage`] passed on.
#[derive(Clone, Default)]
struct ClaimLimits(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

impl ClaimLimits {
    fn record(&self, limit: usize) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(limit);
    }

    fn taken(&self) -> Vec<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A handler that panics fails its attempt with the panic message recorded, and the
/// worker keeps running jobs.
pub async fn a_panicking_handler_is_recorded_as_a_failed_attempt(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.panic", &tracker, |builder| builder);
    let panics = Script::Panic { message: "kaboom 7f3a".to_owned() };
    let id = enqueue_script(&storage, "w.panic", panics, |job| job.max_attempts(2)).await;

    let record = wait_for_state(&storage, id, JobState::Discarded).await;
    assert_eq!(record.attempt, 2);
    assert_eq!(record.errors.len(), 2, "each panic is a failed attempt");
    assert!(record.errors.iter().all(|error| error.message.contains("kaboom 7f3a")), "{:?}", record.errors);
    assert_eq!(tracker.runs(id), vec![1, 2]);

    let after = enqueue_script(&storage, "w.panic", Script::Complete, |job| job).await;
    wait_for_state(&storage, after, JobState::Completed).await;
    worker.stop().await;
}

/// A handler that runs past its timeout is stopped, the attempt fails, and the job is
/// retried.
pub async fn a_timed_out_handler_is_retried(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.timeout", &tracker, |builder| builder);
    let id = enqueue_script(&storage, "w.timeout", Script::HangOnFirstAttempt, |job| {
        job.timeout(Some(Duration::from_millis(200))).max_attempts(3)
    })
    .await;

    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;
    assert_eq!(record.attempt, 2);
    assert_eq!(record.errors.len(), 1, "the timed-out attempt is recorded");
    assert_eq!(record.errors[0].attempt, 1);
    assert_eq!(tracker.runs(id), vec![1, 2]);
}

/// A handler that fails is retried after its backoff until it succeeds, each failure
/// recorded.
pub async fn a_failing_handler_is_retried_until_it_succeeds(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.retry", &tracker, |builder| builder);
    let id = enqueue_script(&storage, "w.retry", Script::FailUntilAttempt { attempt: 3 }, |job| job).await;

    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;
    assert_eq!(record.attempt, 3);
    let history: Vec<_> = record.errors.iter().map(|error| (error.attempt, error.message.as_str())).collect();
    assert_eq!(history, vec![(1, "attempt 1 fails on purpose"), (2, "attempt 2 fails on purpose")]);
    assert_eq!(tracker.runs(id), vec![1, 2, 3]);
}

/// A handler that exhausts its attempts leaves the job discarded with every failure.
pub async fn a_handler_failing_every_attempt_ends_discarded(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.exhaust", &tracker, |builder| builder);
    let script = Script::FailUntilAttempt { attempt: 100 };
    let id = enqueue_script(&storage, "w.exhaust", script, |job| job.max_attempts(3)).await;

    let record = wait_for_state(&storage, id, JobState::Discarded).await;
    worker.stop().await;
    assert_eq!(record.attempt, 3);
    assert_eq!(record.errors.iter().map(|error| error.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(tracker.runs(id), vec![1, 2, 3]);
}

/// A handler that snoozes runs again later without spending an attempt.
pub async fn a_snoozing_handler_runs_again_without_spending_an_attempt(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.snooze", &tracker, |builder| builder);
    let id = enqueue_script(&storage, "w.snooze", Script::SnoozeFirstRun { ms: 100 }, |job| job.max_attempts(1)).await;

    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;
    assert_eq!(record.attempt, 1, "the snoozed run did not spend the only attempt");
    assert!(record.errors.is_empty());
    assert_eq!(tracker.runs(id), vec![1, 1]);
}

/// A handler that asks to discard ends the job `discarded` with its reason, at once.
pub async fn a_discarding_handler_ends_the_job_discarded(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, "w.discard", &tracker, |builder| builder);
    let script = Script::Discard { reason: "mailbox does not exist".to_owned() };
    let id = enqueue_script(&storage, "w.discard", script, |job| job.max_attempts(5)).await;

    let record = wait_for_state(&storage, id, JobState::Discarded).await;
    worker.stop().await;
    assert_eq!(record.attempt, 1);
    assert_eq!(record.errors.len(), 1);
    assert_eq!(record.errors[0].message, "mailbox does not exist");
    assert_eq!(tracker.runs(id), vec![1]);
}

/// Cancelling a running job stops its handler (through the heartbeat) and ends it
/// `cancelled`.
pub async fn a_cancelled_running_job_stops_its_handler(storage: TestStorage) {
    let tracker = Tracker::new();
    let worker =
        RunningWorker::start(&storage, "w.cancel", &tracker, |builder| builder.lease(Duration::from_millis(600)));
    let id = enqueue_script(&storage, "w.cancel", Script::Hang, |job| job).await;
    wait_for_state(&storage, id, JobState::Running).await;

    let requested = storage.cancel(id, None).await.expect("cancel succeeds");
    assert_eq!(requested.state, JobState::Running);
    let record = wait_for_state(&storage, id, JobState::Cancelled).await;
    worker.stop().await;
    assert!(record.finished_at.is_some());
    assert_eq!(tracker.runs(id), vec![1]);
}

/// A worker that loses a job's lease and claims the same job again runs the new claim
/// to completion once: cleaning up the old claim does not touch the new one (before
/// claims were the unit the worker tracks, the old run's cleanup removed the new run
/// from the heartbeat, and the job was rescued, run again and again, and discarded).
pub async fn a_worker_that_reclaims_a_job_it_lost_completes_it_once(storage: TestStorage) {
    let queue = "w.reclaim";
    let tracker = Tracker::new();
    // The first run outlives its lost lease; the second outlives two leases after the
    // first run ends (had the first run's cleanup dropped the second claim, its
    // heartbeats would stop and the job would be rescued and run a third time). The
    // lease leaves room for heartbeats delayed by a loaded machine (one every 500 ms).
    let id = enqueue_script(&storage, queue, Script::SleepPerAttempt { ms: vec![2_000, 5_000] }, |job| job).await;
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| {
        builder.concurrency(2).lease(Duration::from_millis(1_500))
    });
    wait_for_state(&storage, id, JobState::Running).await;
    // The lease is lost as if the worker had stalled: storage rescues the job, and the
    // same worker claims it again while its first run is still going.
    let far_ahead = chrono::Utc::now() + chrono::Duration::hours(1);
    let rescued = storage.rescue_expired(Some(far_ahead)).await.expect("rescue succeeds");
    assert_eq!(rescued.rescued, 1);

    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;
    assert_eq!(record.attempt, 2, "completed by the second claim");
    assert_eq!(tracker.runs(id), vec![1, 2], "the second claim ran once, and nothing ran after it");
}

/// A storage with faults a case sets: heartbeats that always fail (the worker cannot
/// extend its leases), and report batches refused for good when they hold a discard
/// with a given reason; it can also record each claim's limit. The rest passes through.
struct FaultyStorage {
    inner: TestStorage,
    heartbeats_fail: bool,
    refused_reason: Option<&'static str>,
    /// A claim from this queue panics once the flag is set.
    claim_panics_on: Option<(&'static str, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
    /// Where each claim's limit is recorded.
    claim_limits: Option<ClaimLimits>,
    /// Promoting due jobs (leader maintenance) panics once the flag is set.
    promote_panics: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl FaultyStorage {
    fn new(inner: &TestStorage) -> Self {
        Self {
            inner: inner.clone(),
            heartbeats_fail: false,
            refused_reason: None,
            claim_panics_on: None,
            claim_limits: None,
            promote_panics: None,
        }
    }

    fn refuses(&self, params: &ReportParams) -> bool {
        params.reports.iter().any(|report| {
            matches!(&report.outcome, haul::JobOutcome::Discarded { reason } if Some(reason.as_str()) == self.refused_reason)
        })
    }
}

#[async_trait::async_trait]
impl StorageHooks for FaultyStorage {
    type Inner = TestStorage;
    fn inner(&self) -> &TestStorage {
        &self.inner
    }
    async fn claim_paced(&self, params: ClaimParams) -> haul::Result<PacedClaim> {
        if let Some((queue, armed)) = &self.claim_panics_on
            && armed.load(std::sync::atomic::Ordering::SeqCst)
            && params.queues.iter().any(|claimed| claimed == queue)
        {
            panic!("a claim from {queue} panics");
        }
        if let Some(limits) = &self.claim_limits {
            limits.record(params.limit);
        }
        self.inner.claim_paced(params).await
    }
    async fn promote_due(&self, now: Option<haul::storage::Timestamp>) -> haul::Result<u64> {
        if self.promote_panics.as_ref().is_some_and(|armed| armed.load(std::sync::atomic::Ordering::SeqCst)) {
            panic!("promoting due jobs panics");
        }
        self.inner.promote_due(now).await
    }
    async fn report(&self, params: ReportParams) -> haul::Result<ReportOutcome> {
        if self.refuses(&params) {
            return Err(haul::Error::backend(self.backend_name(), haul::ErrorKind::Other, "refused for good", None));
        }
        self.inner.report(params).await
    }
    async fn heartbeat(&self, params: HeartbeatParams) -> haul::Result<HeartbeatOutcome> {
        if self.heartbeats_fail {
            return Err(haul::Error::backend(
                self.backend_name(),
                haul::ErrorKind::Connection,
                "heartbeats are cut",
                None,
            ));
        }
        self.inner.heartbeat(params).await
    }
}

/// A job claimed ahead (prefetched) whose lease ends while it waits for a slot is never
/// started under that claim: another worker may hold it by then. Here heartbeats fail,
/// so the lease of the job waiting behind a 1 s job ends after 300 ms.
pub async fn a_claim_whose_lease_ended_before_its_start_never_starts(storage: TestStorage) {
    let queue = "w.expired_start";
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, queue, vec![Script::Sleep { ms: 1_000 }; 2]).await;
    let cut: TestStorage =
        std::sync::Arc::new(Hooked::new(FaultyStorage { heartbeats_fail: true, ..FaultyStorage::new(&storage) }));
    let worker = RunningWorker::start(&cut, queue, &tracker, |builder| {
        builder.concurrency(1).prefetch(1).lease(Duration::from_millis(300))
    });
    // Both are claimed at once; one runs, the other waits for the slot. Once the first
    // finishes, the claims go round again (attempt 2).
    eventually("a second round of claims", || async {
        ids.iter().any(|id| tracker.runs(*id).iter().any(|&attempt| attempt >= 2)).then_some(())
    })
    .await;
    worker.stop().await;
    let first_claims_run = ids.iter().filter(|id| tracker.runs(**id).first() == Some(&1)).count();
    assert_eq!(
        first_claims_run,
        1,
        "only the job that got the slot ran under its first claim: {:?}",
        ids.iter().map(|id| tracker.runs(*id)).collect::<Vec<_>>()
    );
}

/// A kind whose backoff has no cap (`Duration::MAX`) still ends each failed attempt in a
/// visible state: retryable with a very long delay, or discarded after its last attempt
/// (the delay used to overflow, panic the runtime and leave the job running forever).
pub async fn a_failure_with_an_unbounded_backoff_ends_in_a_visible_state(storage: TestStorage) {
    let queue = "w.unbounded_backoff";
    let tracker = Tracker::new();
    let producer = Queue::new(storage.clone());
    let last = producer.enqueue(UnboundedBackoff::new()).queue(queue).max_attempts(1).await.expect("enqueued");
    let more = producer.enqueue(UnboundedBackoff::new()).queue(queue).max_attempts(5).await.expect("enqueued");
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| builder);
    let discarded = wait_for_state(&storage, last, JobState::Discarded).await;
    let retryable = wait_for_state(&storage, more, JobState::Retryable).await;
    worker.stop().await;
    assert_eq!(discarded.errors.len(), 1);
    assert_eq!((retryable.errors.len(), retryable.lease_token), (1, None));
    assert!(retryable.run_at > chrono::Utc::now() + chrono::Duration::days(365), "{:?}", retryable.run_at);
}

/// An outcome that storage refuses for good (not a lost connection or a timeout) does
/// not hold back the other outcomes of its batch: they are written one by one, the
/// refused one is given up, and its job is rescued after its lease (here: discarded,
/// its last attempt spent). Before, the flusher retried the whole batch forever.
pub async fn an_outcome_storage_refuses_does_not_hold_back_the_others(storage: TestStorage) {
    let queue = "w.refused_outcome";
    let tracker = Tracker::new();
    let refused = FaultyStorage { refused_reason: Some("refuse me"), ..FaultyStorage::new(&storage) };
    let refused: TestStorage = std::sync::Arc::new(Hooked::new(refused));
    let worker = RunningWorker::start(&refused, queue, &tracker, |builder| {
        builder.concurrency(8).lease(Duration::from_millis(500))
    });
    let poison =
        enqueue_script(&storage, queue, Script::Discard { reason: "refuse me".to_owned() }, |job| job.max_attempts(1))
            .await;
    eventually("the refused job to run", || async { (!tracker.runs(poison).is_empty()).then_some(()) }).await;
    let good = enqueue_scripts(&storage, queue, vec![Script::Complete; 20]).await;
    for id in &good {
        let record = wait_for_state(&storage, *id, JobState::Completed).await;
        assert_eq!(record.attempt, 1);
    }
    let poisoned = wait_for_state(&storage, poison, JobState::Discarded).await;
    worker.stop().await;
    assert_eq!(tracker.runs(poison), vec![1], "the refused job ran once, then its lease expired");
    assert_eq!(poisoned.errors.len(), 1, "the rescue recorded why: {:?}", poisoned.errors);
}
