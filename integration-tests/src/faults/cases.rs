//! The fault cases. Each counts every job it enqueued and checks where each one ended.
//!
//! The longer cases live in modules of their own and are re-exported here.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use haul::{Error, JobId, JobRecord, JobState, NewJob, Queue, storage::ListParams};
use serde_json::json;

use super::{
    hosts::{HostedWorker, WorkerSpec},
    run_log::{Event, Logged, Run, RunLog, assert_completed_at_least_once, assert_no_outcome_dropped},
    servers::PrivateServer,
};
use crate::{
    TestStorage,
    cases::{
        eventually_within,
        jobs::{SCRIPTED_KIND, Script, Scripted, Tracker},
        worker::{RunningWorker, enqueue_script, wait_for_state},
    },
};

pub use super::leader_kill::a_killed_leader_never_loses_or_repeats_a_tick;
pub use super::{
    poison::poison_input_among_good_jobs_loses_nothing, stall::a_stalled_worker_never_starts_a_job_another_completed,
};

/// How long a case waits for its jobs to reach their final states.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);

/// A run log in a fresh temporary file, removed when dropped.
#[derive(Debug)]
pub(super) struct ScratchLog(pub(super) RunLog);

impl ScratchLog {
    pub(super) fn new() -> Self {
        let path: PathBuf = std::env::temp_dir().join(format!("haul-fault-log-{}", uuid::Uuid::now_v7().simple()));
        Self(RunLog::new(path))
    }

    pub(super) fn spec(&self, queue: &str, concurrency: usize, lease_ms: u64, grace_ms: u64) -> WorkerSpec {
        WorkerSpec {
            queue: queue.to_owned(),
            concurrency,
            prefetch: 0,
            lease_ms,
            grace_ms,
            log: self.0.path().to_owned(),
            periodic: None,
        }
    }
}

impl Drop for ScratchLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.path());
    }
}

pub(super) fn logged_job(producer: &Queue, queue: &str, sleep_ms: u64) -> NewJob {
    producer.prepare(&Logged::new(sleep_ms)).expect("a logged job is valid").queue(queue)
}

async fn enqueue_logged(storage: &TestStorage, queue: &str, sleeps: impl IntoIterator<Item = u64>) -> Vec<JobId> {
    let producer = Queue::new(storage.clone());
    let jobs: Vec<NewJob> = sleeps.into_iter().map(|ms| logged_job(&producer, queue, ms)).collect();
    let mut ids = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(500) {
        ids.extend(producer.insert(chunk.to_vec()).await.expect("enqueue succeeds"));
    }
    ids
}

pub(super) async fn jobs_of(storage: &TestStorage, queue: &str, limit: usize) -> Vec<JobRecord> {
    storage.list(ListParams::new().queue(queue).limit(limit)).await.expect("list succeeds")
}

/// Waits until `queue` holds exactly `count` jobs, all `completed`.
async fn wait_all_completed(storage: &TestStorage, queue: &str, count: usize) -> Vec<JobRecord> {
    eventually_within(PATIENCE, &format!("{count} jobs of {queue} to be completed"), || {
        let storage = storage.clone();
        async move {
            let jobs = storage.list(ListParams::new().queue(queue).limit(count + 1)).await.ok()?;
            (jobs.len() == count && jobs.iter().all(|job| job.state == JobState::Completed)).then_some(jobs)
        }
    })
    .await
}

pub(super) async fn wait_for_log(log: &RunLog, event: Event, count: usize) {
    eventually_within(PATIENCE, &format!("{count} handlers to reach {event:?}"), || async {
        (log.count(event) >= count).then_some(())
    })
    .await;
}

fn ran(runs: &[Run], job: JobId, event: Event) -> bool {
    runs.iter().any(|run| run.job == job && run.event == event)
}

/// A worker killed without warning while it holds jobs (SIGKILL for a process) loses
/// none of them: once their leases expire a second worker runs them again, every job
/// completes, no attempt runs twice, and a job whose completion was stored never runs
/// again.
pub async fn a_killed_worker_loses_no_job(storage: TestStorage, start: impl Fn(&WorkerSpec) -> HostedWorker) {
    const JOBS: usize = 200;
    let queue = "faults.kill";
    let log = ScratchLog::new();
    enqueue_logged(&storage, queue, std::iter::repeat_n(300, JOBS)).await;
    let spec = log.spec(queue, 20, 2_000, 1_000);

    let first = start(&spec);
    wait_for_log(&log.0, Event::Succeeded, 40).await;
    first.kill().await;
    let before_kill = log.0.read();
    let held: Vec<JobId> = jobs_of(&storage, queue, JOBS + 1)
        .await
        .into_iter()
        .filter(|job| job.state == JobState::Running)
        .map(|job| job.id)
        .collect();
    assert!(!held.is_empty(), "the killed worker held jobs");

    let second = start(&spec);
    let records = wait_all_completed(&storage, queue, JOBS).await;
    assert!(second.terminate(PATIENCE).await, "the second worker stops cleanly");

    let runs = log.0.read();
    let rerun = assert_completed_at_least_once(&records, &runs);
    let (mut unflushed, mut unstarted, mut landed_late, mut claimed_late) = (0, 0, 0, 0);
    for record in &records {
        if held.contains(&record.id) {
            if record.attempt == 1 && ran(&before_kill, record.id, Event::Succeeded) {
                // The killed worker had sent this success: a statement in flight at the
                // kill still runs to its end on the server (PostgreSQL does), after the
                // read above saw the job running. Stored once, never run again.
                landed_late += 1;
                continue;
            }
            assert_eq!(record.attempt, 2, "job {} held by the killed worker ran again", record.id);
            unflushed += usize::from(ran(&before_kill, record.id, Event::Succeeded));
            unstarted += usize::from(!ran(&before_kill, record.id, Event::Started));
        } else if ran(&before_kill, record.id, Event::Started) {
            assert_eq!(record.attempt, 1, "job {} the killed worker completed never ran again", record.id);
        } else if record.attempt == 2 && !runs.iter().any(|run| run.job == record.id && run.attempt == 1) {
            // A claim the killed worker sent just before the kill also runs to its end
            // on the server, after the read above saw the job available: the job was
            // held (its first attempt claimed, never started) and runs again once that
            // lease expires.
            claimed_late += 1;
        }
    }
    assert_eq!(rerun, held.len() - landed_late + claimed_late, "exactly the jobs the killed worker held ran again");
    eprintln!(
        "killed worker: {JOBS} enqueued, {JOBS} completed; {} held at the kill and run again \
         ({unflushed} of them had succeeded but their completion was not yet written, {unstarted} had been claimed \
         but not started; {landed_late} more completed by the killed worker's last report, stored after the kill; \
         {claimed_late} more claimed by its last claim, stored after the kill)",
        held.len()
    );
}

/// A worker killed (SIGKILL for a process) while it holds the only slot of a queue
/// limited to one job at once frees that slot when its lease is rescued: another worker
/// then runs the queue's jobs, still one at a time, the killed worker's job again
/// among them.
pub async fn a_killed_worker_frees_its_limited_slot_at_the_rescue(
    storage: TestStorage,
    start: impl Fn(&WorkerSpec) -> HostedWorker,
) {
    let queue = "faults.limit";
    let log = ScratchLog::new();
    storage.set_queue_limits(queue, haul::QueueLimits::new().concurrency(1)).await.expect("the limit is stored");
    // The first job runs long enough for the kill to land while it runs.
    enqueue_logged(&storage, queue, [3_000, 200, 200, 200]).await;
    let spec = log.spec(queue, 4, 2_000, 1_000);

    let (jobs, held) = kill_after_its_first_start(&storage, queue, &log, &spec, &start).await;
    assert_eq!(held.len(), 1, "the killed worker held the queue's one slot: {jobs:?}");

    let second = start(&spec);
    let records = wait_all_completed(&storage, queue, 4).await;
    assert!(second.terminate(PATIENCE).await, "the second worker stops cleanly");

    let runs = log.0.read();
    assert_eq!((runs[0].job, runs[0].event), (held[0], Event::Started), "the killed worker's one start");
    // In the log's order, each later start is followed by its own success before the
    // next start: never two of the queue's jobs at once.
    let mut running: Option<JobId> = None;
    for run in &runs[1..] {
        match run.event {
            Event::Started => {
                assert_eq!(running, None, "two jobs of the limited queue ran at once: {runs:?}");
                running = Some(run.job);
            }
            Event::Succeeded => assert_eq!(running.take(), Some(run.job), "{runs:?}"),
        }
    }
    for record in &records {
        let expected = if record.id == held[0] { 2 } else { 1 };
        assert_eq!(record.attempt, expected, "job {}", record.id);
    }
}

/// A worker killed (SIGKILL for a process) while it holds the only slot of a limit key
/// (a limit per key of 1) frees that slot when its lease is rescued: another worker then
/// runs the key's other jobs one at a time, in claim order, none of them before the
/// rescue, and the killed worker's job again as attempt 2 (due at its rescue, it comes
/// after them). The jobs of another key are not held back meanwhile: they all run
/// before the rescued key's jobs start again.
pub async fn a_killed_worker_frees_its_keys_slot_at_the_rescue(
    storage: TestStorage,
    start: impl Fn(&WorkerSpec) -> HostedWorker,
) {
    let queue = "faults.key_limit";
    let log = ScratchLog::new();
    let limits = haul::QueueLimits::new().key_concurrency(1);
    storage.set_queue_limits(queue, limits).await.expect("the limit is stored");
    // The first job runs long enough for the kill to land while it runs.
    let held_key = enqueue_keyed(&storage, queue, "held", [3_000, 200, 200]).await;
    let spec = log.spec(queue, 4, 2_000, 1_000);

    let (jobs, held) = kill_after_its_first_start(&storage, queue, &log, &spec, &start).await;
    assert_eq!(held, held_key[..1].to_vec(), "the killed worker held the key's one slot, and only it: {jobs:?}");

    let other_key = enqueue_keyed(&storage, queue, "other", [100, 100]).await;
    let second = start(&spec);
    let records = wait_all_completed(&storage, queue, held_key.len() + other_key.len()).await;
    assert!(second.terminate(PATIENCE).await, "the second worker stops cleanly");

    let runs = log.0.read();
    assert_eq!((runs[0].job, runs[0].event), (held[0], Event::Started), "the killed worker's one start");
    assert_one_at_a_time_per_key(&runs[1..], &[&held_key, &other_key]);
    let restarts: Vec<(JobId, u32)> = runs[1..]
        .iter()
        .filter(|run| run.event == Event::Started && held_key.contains(&run.job))
        .map(|run| (run.job, run.attempt))
        .collect();
    let expected = vec![(held_key[1], 1), (held_key[2], 1), (held_key[0], 2)];
    assert_eq!(restarts, expected, "the key's other jobs in order, then the rescued one");
    let first_restart = runs[1..].iter().position(|run| held_key.contains(&run.job)).map_or(runs.len(), |at| at + 1);
    for job in &other_key {
        let success = runs.iter().position(|run| run.job == *job && run.event == Event::Succeeded);
        assert!(
            success.is_some_and(|at| at < first_restart),
            "job {job} of the other key waited for the rescue: {runs:?}"
        );
    }

    let record = |id: JobId| records.iter().find(|record| record.id == id).expect("every job is listed");
    let rescued_at = record(held[0]).errors.first().map(|error| error.at).expect("the rescue is recorded");
    for job in &held_key[1..] {
        let started = record(*job).attempted_at.expect("a completed job was attempted");
        assert!(started >= rescued_at, "job {job} started at {started}, before the rescue at {rescued_at}");
    }
    for record in &records {
        let expected = if record.id == held[0] { 2 } else { 1 };
        assert_eq!(record.attempt, expected, "job {}", record.id);
    }
}

/// Starts a worker, kills it (SIGKILL for a process) once it has started a job, and
/// returns `queue`'s jobs (up to 10) with the ids of those left running.
async fn kill_after_its_first_start(
    storage: &TestStorage,
    queue: &str,
    log: &ScratchLog,
    spec: &WorkerSpec,
    start: &impl Fn(&WorkerSpec) -> HostedWorker,
) -> (Vec<JobRecord>, Vec<JobId>) {
    let worker = start(spec);
    wait_for_log(&log.0, Event::Started, 1).await;
    worker.kill().await;
    let jobs = jobs_of(storage, queue, 10).await;
    let held = jobs.iter().filter(|job| job.state == JobState::Running).map(|job| job.id).collect();
    (jobs, held)
}

/// Enqueues logged jobs sleeping `sleeps` on `queue` with the limit key `key`, in this
/// claim order.
async fn enqueue_keyed(
    storage: &TestStorage,
    queue: &str,
    key: &str,
    sleeps: impl IntoIterator<Item = u64>,
) -> Vec<JobId> {
    let producer = Queue::new(storage.clone());
    let jobs: Vec<NewJob> = sleeps.into_iter().map(|ms| logged_job(&producer, queue, ms).limit_key(key)).collect();
    producer.insert(jobs).await.expect("enqueue succeeds")
}

/// Checks, in the log's order, that each start of a job of one of `keys` (the jobs of
/// each key) comes after the success of the key's job that started before it.
fn assert_one_at_a_time_per_key(runs: &[Run], keys: &[&[JobId]]) {
    let mut running: Vec<Option<JobId>> = vec![None; keys.len()];
    for run in runs {
        let key = keys.iter().position(|jobs| jobs.contains(&run.job)).expect("every logged job has a key");
        match run.event {
            Event::Started => {
                assert_eq!(running[key], None, "two jobs of one key ran at once: {runs:?}");
                running[key] = Some(run.job);
            }
            Event::Succeeded => assert_eq!(running[key].take(), Some(run.job), "{runs:?}"),
        }
    }
}

/// SIGTERM with 500 jobs in flight: within the grace period the jobs that finish are
/// completed and the rest handed back without spending their attempt; a new worker
/// finishes those, and nothing completed runs again.
pub async fn a_terminated_worker_hands_back_what_it_cannot_finish(
    storage: TestStorage,
    start: impl Fn(&WorkerSpec) -> HostedWorker,
) {
    const JOBS: usize = 500;
    let queue = "faults.term";
    let log = ScratchLog::new();
    // 0.5 s to 3.35 s: the grace period of 1 s lets about a third finish.
    let sleeps = (0..JOBS as u64).map(|n| 500 + (n % 20) * 150);
    enqueue_logged(&storage, queue, sleeps).await;
    let spec = log.spec(queue, JOBS, 30_000, 1_000);

    let first = start(&spec);
    wait_for_log(&log.0, Event::Started, JOBS).await;
    assert!(first.terminate(PATIENCE).await, "the worker exits cleanly after SIGTERM");
    let first_runs = log.0.read();

    let after_stop = jobs_of(&storage, queue, JOBS + 1).await;
    assert_eq!(after_stop.len(), JOBS);
    let (mut completed, mut handed_back) = (Vec::new(), Vec::new());
    for record in &after_stop {
        match record.state {
            JobState::Completed => {
                assert!(ran(&first_runs, record.id, Event::Succeeded), "job {} completed without success", record.id);
                completed.push(record.id);
            }
            JobState::Available => {
                assert!(
                    !ran(&first_runs, record.id, Event::Succeeded),
                    "job {} succeeded but was handed back",
                    record.id
                );
                assert_eq!(record.attempt, 0, "job {}: the interrupted attempt is not spent", record.id);
                handed_back.push(record.id);
            }
            other => panic!("job {} is {other} after a graceful shutdown", record.id),
        }
    }
    assert!(
        !completed.is_empty() && !handed_back.is_empty(),
        "{} completed, {} handed back",
        completed.len(),
        handed_back.len()
    );

    let second = start(&spec);
    let records = wait_all_completed(&storage, queue, JOBS).await;
    assert!(second.terminate(PATIENCE).await, "the second worker stops cleanly");
    let later_runs = &log.0.read()[first_runs.len()..];
    for record in &records {
        let again = ran(later_runs, record.id, Event::Started);
        assert_eq!(again, handed_back.contains(&record.id), "job {}: run again iff it was handed back", record.id);
        assert_eq!(record.attempt, 1, "job {} completed on its first counted attempt", record.id);
    }
    eprintln!(
        "SIGTERM with {JOBS} in flight: {} completed within the grace period, {} handed back and completed by a \
         second worker",
        completed.len(),
        handed_back.len()
    );
}

/// Starts `spec`'s worker in a task of the case's runtime.
fn start_task_worker(storage: &TestStorage, spec: &WorkerSpec) -> RunningWorker {
    RunningWorker::from_worker(spec.build(storage.clone()))
}

/// Stops a worker that must have kept running through the fault.
async fn stop_task_worker(worker: RunningWorker) {
    assert!(worker.is_running(), "the worker kept running through the fault");
    worker.stop().await;
}

/// The server is killed and started again while producers enqueue and a worker runs:
/// every enqueue that returned success is completed, the producer's failed calls are
/// retried with the same job id (so a call that did commit is not stored twice), and
/// the worker reconnects by itself.
pub async fn a_restarted_server_loses_no_committed_job(server: &PrivateServer) {
    const JOBS: usize = 300;
    let queue = "faults.restart";
    let storage = server.target().prepare().await.expect("the private server takes the schema");
    let log = ScratchLog::new();
    let worker = start_task_worker(&storage, &log.spec(queue, 8, 10_000, 5_000));

    let committed = Arc::new(Mutex::new(Vec::new()));
    let failed_calls = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn({
        let (storage, committed, failed_calls) = (storage.clone(), committed.clone(), failed_calls.clone());
        async move {
            let producer = Queue::new(storage);
            for _ in 0..JOBS {
                let job = logged_job(&producer, queue, 20);
                loop {
                    match producer.insert(vec![job.clone()]).await {
                        Ok(ids) => {
                            committed.lock().unwrap_or_else(PoisonError::into_inner).push(ids[0]);
                            break;
                        }
                        // An earlier call stored it but its reply was lost.
                        Err(Error::DuplicateId(id)) => {
                            committed.lock().unwrap_or_else(PoisonError::into_inner).push(id);
                            break;
                        }
                        Err(_) => {
                            failed_calls.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    eventually_within(PATIENCE, "100 committed enqueues", || async {
        (committed.lock().unwrap_or_else(PoisonError::into_inner).len() >= 100).then_some(())
    })
    .await;
    let committed_at_crash = committed.lock().unwrap_or_else(PoisonError::into_inner).len();
    server.crash().expect("the server can be killed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.start_again().await.expect("the server starts again");
    tokio::time::timeout(PATIENCE, producer).await.expect("the producer finishes").expect("the producer runs");

    let records = wait_all_completed(&storage, queue, JOBS).await;
    stop_task_worker(worker).await;
    let committed = committed.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(committed.len(), JOBS);
    for id in &committed {
        assert!(records.iter().any(|record| record.id == *id), "committed job {id} is stored");
    }
    assert!(committed_at_crash < JOBS, "the server went down while the producer was enqueueing");
    // Calls made during the outage either fail and are retried, or (PostgreSQL's pool)
    // wait for a connection until the server is back.
    let failed_calls = failed_calls.load(Ordering::Relaxed);
    let rerun = assert_completed_at_least_once(&records, &log.0.read());
    eprintln!(
        "server restart: {JOBS} committed, {JOBS} completed ({rerun} ran twice); {failed_calls} enqueue calls failed \
         during the outage and were retried; {committed_at_crash} were committed before the crash"
    );
}

/// Every client connection is cut every 100 ms while workers claim, heartbeat and write
/// outcomes: every job completes, and no outcome is dropped (no job whose handler
/// succeeded runs again). A claim whose reply was cut is recovered when its lease (3 s
/// here) expires.
pub async fn cut_connections_lose_no_outcome(server: &PrivateServer) {
    const SHORT: usize = 400;
    const LONG: usize = 6;
    let (short_queue, long_queue) = ("faults.cut", "faults.cut_long");
    let storage = server.target().prepare().await.expect("the private server takes the schema");
    let log = ScratchLog::new();
    enqueue_logged(&storage, short_queue, std::iter::repeat_n(5, SHORT)).await;
    enqueue_logged(&storage, long_queue, std::iter::repeat_n(2_500, LONG)).await;

    let short_worker = start_task_worker(&storage, &log.spec(short_queue, 16, 3_000, 5_000));
    // Heartbeats every second, during jobs of 2.5 s.
    let long_worker = start_task_worker(&storage, &log.spec(long_queue, LONG, 3_000, 5_000));

    let cutting = AtomicBool::new(true);
    let cutter = async {
        let mut cut = 0;
        while cutting.load(Ordering::Relaxed) {
            cut += server.cut_connections().await.unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cut
    };
    let finished = async {
        let short = wait_all_completed(&storage, short_queue, SHORT).await;
        let long = wait_all_completed(&storage, long_queue, LONG).await;
        cutting.store(false, Ordering::Relaxed);
        (short, long)
    };
    let (cut, (short, long)) = tokio::join!(cutter, finished);
    stop_task_worker(short_worker).await;
    stop_task_worker(long_worker).await;

    assert!(cut > 0, "connections were cut");
    let runs = log.0.read();
    let lost_claims = assert_no_outcome_dropped(&short, &runs) + assert_no_outcome_dropped(&long, &runs);
    eprintln!(
        "cut connections: {cut} connections closed; {SHORT} short and {LONG} long jobs completed, no outcome \
         dropped; {lost_claims} claims whose reply was cut were recovered after their lease"
    );
}

/// A handler that hangs is stopped by its timeout and retried, while the worker's other
/// slot keeps running jobs.
pub async fn a_hung_handler_times_out_while_other_slots_work(storage: TestStorage) {
    const OTHERS: usize = 40;
    let queue = "faults.hung";
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| builder.concurrency(2));
    let hung = enqueue_script(&storage, queue, Script::HangOnFirstAttempt, |job| {
        job.timeout(Some(Duration::from_secs(3))).max_attempts(3)
    })
    .await;
    wait_for_state(&storage, hung, JobState::Running).await;

    let producer = Queue::new(storage.clone());
    let others: Vec<NewJob> = (0..OTHERS)
        .map(|_| producer.prepare(&Scripted::new(Script::Sleep { ms: 10 })).expect("valid").queue(queue))
        .collect();
    let other_ids = producer.insert(others).await.expect("enqueue succeeds");
    for id in &other_ids {
        wait_for_state(&storage, *id, JobState::Completed).await;
    }
    let meanwhile = storage.get(hung).await.expect("get succeeds").expect("the hung job exists");
    assert_eq!((meanwhile.state, meanwhile.attempt), (JobState::Running, 1), "the others ran while it hung");

    let record = wait_for_state(&storage, hung, JobState::Completed).await;
    worker.stop().await;
    assert_eq!(record.attempt, 2);
    assert_eq!(record.errors.len(), 1);
    assert!(record.errors[0].message.contains("timed out"), "{:?}", record.errors);
    assert_eq!(tracker.runs(hung), vec![1, 2]);
    eprintln!("hung handler: 1 timed out and completed on attempt 2; {OTHERS} others completed meanwhile");
}

/// Bad input at the edges, mixed with good jobs on one worker: arguments over the
/// limit and invalid queue names are refused before anything is stored; stored jobs
/// whose payload no longer fits their type, or whose kind this binary does not know,
/// are recorded failures; every good job completes and nothing is lost.
pub async fn bad_input_among_good_jobs_loses_nothing(storage: TestStorage) {
    let queue = "faults.bad";
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| builder);
    let producer = Queue::new(storage.clone()).max_args_bytes(1024);
    let good = |producer: &Queue| producer.prepare(&Scripted::new(Script::Complete)).expect("valid").queue(queue);

    let mut good_ids = producer.insert((0..10).map(|_| good(&producer)).collect()).await.expect("enqueue succeeds");
    let oversized = Scripted::new(Script::Discard { reason: "x".repeat(2_000) });
    let error = producer.enqueue(oversized).queue(queue).await.expect_err("oversized arguments are refused");
    assert!(matches!(error, Error::PayloadTooLarge { .. }), "{error:?}");
    let error = producer.insert(vec![good(&producer).queue("no such/queue")]).await.expect_err("refused");
    assert!(matches!(error, Error::InvalidName { what: "queue", .. }), "{error:?}");
    // The job's struct changed since these were stored (a field renamed), and a newer
    // deployment enqueued a kind this one does not have.
    let stale = [json!({ "script": { "do": "sleep", "millis": 5 } }), json!({ "steps": [] })]
        .map(|args| NewJob::new(SCRIPTED_KIND, args).queue(queue).max_attempts(1));
    let unknown = ["haul_faults.from_a_newer_deployment", "haul_faults.renamed_kind"]
        .map(|kind| NewJob::new(kind, json!({ "n": 1 })).queue(queue).max_attempts(1));
    let bad_ids = producer.insert(stale.into_iter().chain(unknown).collect()).await.expect("enqueue succeeds");
    good_ids.extend(producer.insert((0..10).map(|_| good(&producer)).collect()).await.expect("enqueue succeeds"));

    for id in &bad_ids {
        let record = wait_for_state(&storage, *id, JobState::Discarded).await;
        assert_eq!(record.errors.len(), 1, "the failure is recorded");
        assert!(!record.errors[0].message.is_empty());
    }
    for id in &good_ids {
        wait_for_state(&storage, *id, JobState::Completed).await;
    }
    worker.stop().await;
    let stored = jobs_of(&storage, queue, 100).await;
    assert_eq!(stored.len(), good_ids.len() + bad_ids.len(), "nothing refused was stored, nothing stored was lost");
    eprintln!(
        "bad input: 2 refused at enqueue; {} good jobs completed; {} bad jobs discarded with the reason recorded",
        good_ids.len(),
        bad_ids.len()
    );
}
