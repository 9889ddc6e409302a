//! A worker frozen past its lease (SIGSTOP, as a long pause of its process would) while
//! the other workers rescue and finish the jobs it held.

use std::{collections::HashSet, time::Duration};

use haul::{JobId, JobRecord, JobState, NewJob, Queue, storage::ListParams};

use super::{
    cases::{PATIENCE, ScratchLog, jobs_of, logged_job},
    hosts::{HostedWorker, WorkerSpec},
    run_log::{Event, assert_completed_at_least_once, started_after_completion},
};
use crate::{TestStorage, cases::eventually_within};

/// How often the stalled worker is frozen; each freeze gets a burst of jobs of its own.
const CYCLES: usize = 6;
/// The jobs of one burst.
const BURST: usize = 60;
/// How long each handler runs.
const HANDLER_MS: u64 = 100;
/// The workers' lease; they heartbeat every third of it.
const LEASE_MS: u64 = 1_000;
/// How long each freeze lasts: long enough for the frozen worker's leases to expire
/// and for the others to rescue and complete what it held.
const FROZEN: Duration = Duration::from_millis(2_500);
/// How long the stalled worker runs after a freeze before the next burst.
const THAWED: Duration = Duration::from_millis(1_000);

/// Three workers with 1 s leases run bursts of short jobs; during each burst one of
/// them is frozen (SIGSTOP) for 2.5 s, as soon as it has claimed some. Its leases
/// expire while it is frozen; the others rescue and complete the jobs it held. When it
/// thaws, it must not start a handler for a claim whose lease expired: no job is lost,
/// no job whose handler succeeded ends `discarded`, and no handler starts after the
/// success of the attempt its job was completed with.
///
/// Each worker prefetches, so the frozen one holds claims it has not started yet.
pub async fn a_stalled_worker_never_starts_a_job_another_completed(
    storage: TestStorage,
    start: impl Fn(&WorkerSpec) -> HostedWorker,
) {
    let queue = "faults.stall";
    let log = ScratchLog::new();
    let producer = Queue::new(storage.clone());
    let spec = WorkerSpec { prefetch: 8, ..log.spec(queue, 4, LEASE_MS, 1_000) };
    let stalled = start(&spec);
    let others = [start(&spec), start(&spec)];
    let stalled_pid = stalled.pid().expect("the stalled worker is a process");

    let mut frozen_holding = Vec::new();
    for cycle in 1..=CYCLES {
        // Attempts to spare: every freeze spends the attempt of each claim it outlives.
        let burst: Vec<NewJob> =
            (0..BURST).map(|_| logged_job(&producer, queue, HANDLER_MS).max_attempts(50)).collect();
        let burst: HashSet<JobId> = producer.insert(burst).await.expect("enqueue succeeds").into_iter().collect();
        // Its first handler of the burst shows that it holds a claim batch of the burst.
        let first = eventually_within(PATIENCE, "the stalled worker to start a job of the burst", || async {
            log.0
                .read()
                .into_iter()
                .find(|run| run.event == Event::Started && run.pid == stalled_pid && burst.contains(&run.job))
        })
        .await;
        stalled.pause();
        let running: Vec<JobRecord> = jobs_of(&storage, queue, CYCLES * BURST + 1)
            .await
            .into_iter()
            .filter(|job| burst.contains(&job.id) && job.state == JobState::Running)
            .collect();
        let holder = running.iter().find(|job| job.id == first.job).and_then(|job| job.claimed_by.clone());
        frozen_holding.push(running.iter().filter(|job| holder.is_some() && job.claimed_by == holder).count());
        tokio::time::sleep(FROZEN).await;
        stalled.resume();
        wait_all_finished(&storage, queue, cycle * BURST).await;
        tokio::time::sleep(THAWED).await;
    }

    let records = wait_all_finished(&storage, queue, CYCLES * BURST).await;
    for worker in others.into_iter().chain([stalled]) {
        assert!(worker.terminate(PATIENCE).await, "a worker stops cleanly");
    }
    let runs = log.0.read();

    let not_completed: Vec<String> = records
        .iter()
        .filter(|record| record.state != JobState::Completed)
        .map(|record| format!("{} {} on attempt {}", record.id, record.state, record.attempt))
        .collect();
    let discarded_after_success = records
        .iter()
        .filter(|record| record.state == JobState::Discarded)
        .filter(|record| runs.iter().any(|run| run.job == record.id && run.event == Event::Succeeded))
        .count();
    let late = started_after_completion(&records, &runs);
    let late_by_stalled =
        late.iter().filter(|found| found.late_starts.iter().any(|(_, pid)| *pid == stalled_pid)).count();
    let examples: Vec<String> = late
        .iter()
        .take(5)
        .map(|found| {
            format!(
                "job {} completed on attempt {} (which started {} times), then started as (attempt, pid) {:?}",
                found.job, found.completed_attempt, found.completed_attempt_starts, found.late_starts
            )
        })
        .collect();
    assert!(
        not_completed.is_empty() && discarded_after_success == 0 && late.is_empty(),
        "stalled worker on {}: {} of {} jobs not completed ({discarded_after_success} of them discarded although a handler \
         succeeded): {not_completed:?}; {} jobs started again after the success of the attempt they were completed \
         with, or whose completed attempt did not start exactly once ({late_by_stalled} of them by the frozen worker, \
         pid {stalled_pid}; it held {frozen_holding:?} claims at each freeze); for example: {examples:#?}",
        storage.backend_name(),
        not_completed.len(),
        records.len(),
        late.len(),
    );
    let rerun = assert_completed_at_least_once(&records, &runs);
    eprintln!(
        "stalled worker: {} enqueued, {} completed; one of 3 workers frozen {CYCLES} times for {FROZEN:?} with \
         {LEASE_MS} ms leases, holding {frozen_holding:?} claims of its burst each time; {rerun} jobs ran again after \
         their lease expired; no handler started after its job's completion, none discarded after a success",
        records.len(),
        records.len(),
    );
}

/// Waits until `queue` holds exactly `count` jobs, all finished (completed, discarded
/// or cancelled), and returns them.
async fn wait_all_finished(storage: &TestStorage, queue: &str, count: usize) -> Vec<JobRecord> {
    eventually_within(PATIENCE, &format!("{count} jobs of {queue} to finish"), || async {
        let jobs = storage.list(ListParams::new().queue(queue).limit(count + 1)).await.ok()?;
        (jobs.len() == count && jobs.iter().all(|job| job.state.is_finished())).then_some(jobs)
    })
    .await
}
