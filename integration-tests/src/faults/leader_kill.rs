//! Three worker processes share one periodic schedule while the namespace's leader is
//! SIGKILLed again and again for a minute.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use haul::{
    JobId, JobRecord, JobState, Periodic, Queue, RunAt,
    storage::{Leadership, Timestamp},
};
use tokio::{sync::oneshot, task::JoinSet, time::Instant};

use super::{
    cases::{PATIENCE, ScratchLog, jobs_of, logged_job},
    hosts::{HostedWorker, PERIODIC_NAME, PeriodicSpec, WorkerSpec},
    run_log::assert_completed_at_least_once,
};
use crate::{TestStorage, cases::eventually_within};

/// The worker processes kept running.
const WORKERS: usize = 3;
/// The schedule's interval.
const TICK_MS: u64 = 2_000;
/// The workers' job lease and leader lease. A dead leader's lead lasts three quarters
/// of it and the others ask for it every quarter, so a new leader leads within one
/// lease of the kill: shorter than a tick period, so at most one tick falls due while no
/// leader is alive, and the new leader's first pass enqueues it (two in one gap would be
/// coalesced into one, and the case would report the other as missing).
const LEASE_MS: u64 = 1_000;
/// How long each tick's job runs: longer than a tick period, so one or two tick jobs are
/// running at any time and a killed leader often holds one, which must be rescued.
const TICK_JOB_MS: u64 = 3_000;
/// How long the leader is killed for.
const CHAOS: Duration = Duration::from_secs(60);
/// The shortest pause between a failover and the next kill; each pause adds up to
/// another second, so kills fall at every phase of the tick period.
const PACE_MS: u64 = 2_500;
/// How long to wait for a leader (after a kill: a new one).
const FAILOVER_PATIENCE: Duration = Duration::from_secs(10);
/// Jobs enqueued after each kill, due this much later: the leaders must promote them.
const SCHEDULED_PER_KILL: usize = 2;
const SCHEDULED_DELAY: Duration = Duration::from_secs(3);
const SCHEDULED_JOB_MS: u64 = 100;
/// A scheduled job due this long before the end of the minute must have completed
/// within it: promotion waits at most for a failover, and the job is short.
const SCHEDULED_MARGIN: Duration = Duration::from_secs(10);
/// The workers' shutdown grace: longer than a tick job, so a graceful stop finishes them.
const GRACE_MS: u64 = 5_000;

/// Three worker processes declare the same periodic job (`every 2 s`) with 1 s leases.
/// For a minute, every 2.5 to 3.5 s, the case finds the leader ([`haul::Admin::leader`]),
/// maps its worker id to its process through the registry, SIGKILLs it, starts a
/// replacement (three run again), waits for a new leader, and enqueues jobs due 3 s
/// later. Then it stops the workers gracefully, lets a fourth worker without the
/// schedule finish what they handed back (and what is not due yet), and checks:
///
/// - every tick from the first stored one to the last the schedule's record holds has
///   exactly one job (its unique key `periodic:fault-tick:<tick>`): no duplicate, no
///   missing tick, and the leaders kept up until the end of the minute;
/// - every job completed, each stored completion being a handler's success
///   ([`assert_completed_at_least_once`]); the jobs a leader held just before its kill
///   ran again on a later attempt (at least one tick job, and one within the minute).
///   Jobs run again that no killed leader held are counted, not failed: a late
///   heartbeat on a loaded machine or a claim just before the kill explains them;
/// - maintenance kept running on the surviving leaders: scheduled jobs due at least
///   [`SCHEDULED_MARGIN`] before the end of the minute completed within it;
/// - the leader changed once per kill (one of slack), more than ten times in all.
///
/// Timings: with a 1 s leader lease a new leader leads within 1 s of a kill, which is
/// less than the 2 s tick period, so at most one tick falls in a gap and the new leader
/// enqueues it at once (two in one gap would be coalesced, and one reported missing). Kills come every 2.5 to 3.5 s
/// plus the failover, so each leader runs for at least one tick before it dies.
///
/// Memory storage cannot run this case: the three workers must be processes that share
/// the schedule through storage.
pub async fn a_killed_leader_never_loses_or_repeats_a_tick(
    storage: TestStorage,
    start: impl Fn(&WorkerSpec) -> HostedWorker,
) {
    let queue = "faults.leader_kill";
    let log = ScratchLog::new();
    let spec = WorkerSpec {
        periodic: Some(PeriodicSpec { every_ms: TICK_MS, sleep_ms: TICK_JOB_MS }),
        ..log.spec(queue, 4, LEASE_MS, GRACE_MS)
    };
    let periodic = spec.periodic.as_ref().expect("the spec has a periodic job").periodic(queue);
    let producer = Queue::new(storage.clone());

    let mut workers: Vec<HostedWorker> = (0..WORKERS).map(|_| start(&spec)).collect();
    live_leader(&storage, &workers).await;
    // The first leader records the schedule from its latest tick on, without a job.
    let initial_tick = wait_for_last_tick(&storage, None).await;

    let sampler = LeaderSampler::start(storage.clone());
    let mut kills: Vec<Kill> = Vec::new();
    let mut scheduled: Vec<JobId> = Vec::new();
    let began = Instant::now();
    while began.elapsed() < CHAOS {
        let pause = PACE_MS + (kills.len() as u64 * 379) % 1_000;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (leader, index) = live_leader(&storage, &workers).await;
        let victim = workers.swap_remove(index);
        let pid = victim.pid().expect("the workers are processes");
        // What it holds now (a job may still finish in the moment before the kill).
        let held: Vec<(JobId, u32)> = jobs_of(&storage, queue, 10_000)
            .await
            .into_iter()
            .filter(|job| job.state == JobState::Running && job.claimed_by.as_deref() == Some(&leader.worker_id))
            .map(|job| (job.id, job.attempt))
            .collect();
        let killed_at = Instant::now();
        victim.kill().await;
        workers.push(start(&spec));
        let next = eventually_within(FAILOVER_PATIENCE, "a new leader after the kill", || async {
            storage.leader(None).await.ok().flatten().filter(|lead| lead.worker_id != leader.worker_id)
        })
        .await;
        let failover = killed_at.elapsed();
        let due: Vec<_> = (0..SCHEDULED_PER_KILL)
            .map(|_| logged_job(&producer, queue, SCHEDULED_JOB_MS).run_at(RunAt::In(SCHEDULED_DELAY)))
            .collect();
        scheduled.extend(producer.insert(due).await.expect("enqueue succeeds"));
        kills.push(Kill { leader, pid, failover, next, held });
    }
    let chaos_end = Utc::now();
    let observed = sampler.stop().await;
    // The leader deals with the minute's last tick (it may have been killed just before).
    let last_chaos_tick = periodic.schedule().latest_at_or_before(chaos_end).expect("an interval always has ticks");
    wait_for_last_tick(&storage, Some(last_chaos_tick)).await;

    let mut stopping = JoinSet::new();
    for worker in workers {
        stopping.spawn(worker.terminate(PATIENCE));
    }
    for clean in stopping.join_all().await {
        assert!(clean, "a worker exits cleanly after SIGTERM");
    }
    // Finishes what the graceful stops handed back and what is not due yet; it has no
    // schedule, so no tick is enqueued any more.
    let drain = start(&WorkerSpec { periodic: None, ..spec.clone() });
    let records = eventually_within(PATIENCE, &format!("every job of {queue} to be completed"), || async {
        let jobs = jobs_of(&storage, queue, 10_000).await;
        jobs.iter().all(|job| job.state == JobState::Completed).then_some(jobs)
    })
    .await;
    assert!(drain.terminate(PATIENCE).await, "the draining worker exits cleanly");
    let final_tick = wait_for_last_tick(&storage, None).await;

    let rerun = assert_completed_at_least_once(&records, &log.0.read());
    let ticks = Ticks::of(&periodic, &records);
    let scheduled_ids: HashSet<JobId> = scheduled.iter().copied().collect();
    let others: HashSet<JobId> =
        records.iter().filter(|record| record.unique_key.is_none()).map(|record| record.id).collect();
    assert_eq!(others, scheduled_ids, "the queue holds the tick jobs and the scheduled jobs, nothing else");

    let first = *ticks.by_tick.keys().next().expect("ticks were enqueued");
    let last = *ticks.by_tick.keys().next_back().expect("ticks were enqueued");
    let expected = ticks_from(&periodic, first, final_tick);
    let missing: Vec<Timestamp> = expected.iter().filter(|tick| !ticks.by_tick.contains_key(tick)).copied().collect();
    let duplicates: Vec<(&String, usize)> =
        ticks.by_key.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (k, *n)).collect();
    let enqueued = ticks.by_key.len();

    let tick_records: Vec<&JobRecord> = ticks.by_tick.values().flatten().copied().collect();
    // Jobs a leader held when it was killed, and ran again on a later attempt.
    let held: BTreeMap<JobId, u32> = kills.iter().flat_map(|kill| kill.held.iter().copied()).collect();
    let rescued = |record: &&&JobRecord| held.get(&record.id).is_some_and(|attempt| record.attempt > *attempt);
    let held_ticks = tick_records.iter().filter(|record| held.contains_key(&record.id)).count();
    let rescued_ticks: Vec<&&JobRecord> = tick_records.iter().filter(rescued).collect();
    let rescued_in_time = rescued_ticks.iter().filter(|record| finished_by(record, chaos_end)).count();
    let rescued_all = records.iter().filter(|record| rescued(&record)).count();
    let unexplained: Vec<(JobId, u32)> = records
        .iter()
        .filter(|record| record.attempt > 1 && !held.contains_key(&record.id))
        .map(|record| (record.id, record.attempt))
        .collect();
    let ticks_after = tick_records.iter().filter(|record| !finished_by(record, chaos_end)).count();
    let scheduled_records: Vec<&JobRecord> =
        records.iter().filter(|record| scheduled_ids.contains(&record.id)).collect();
    let due_early = chaos_end - chrono::Duration::from_std(SCHEDULED_MARGIN).expect("the margin fits");
    let late_scheduled: Vec<JobId> = scheduled_records
        .iter()
        .filter(|record| record.run_at <= due_early && !finished_by(record, chaos_end))
        .map(|record| record.id)
        .collect();
    let promotion_lag = scheduled_records
        .iter()
        .filter_map(|record| (record.attempted_at? - record.run_at).to_std().ok())
        .max()
        .unwrap_or_default();
    // Terms only go up: the sampler's and the kills' observations, in order.
    let terms: std::collections::BTreeSet<u64> =
        observed.iter().chain(kills.iter().flat_map(|kill| [&kill.leader, &kill.next])).map(|lead| lead.term).collect();
    let changes = terms.len().saturating_sub(1);
    let longest_failover = kills.iter().map(|kill| kill.failover).max().unwrap_or_default();

    println!(
        "leader kill on {backend}: {kills} leaders SIGKILLed in {secs} s, {changes} leader changes observed (terms \
         {first_term}..{last_term}), longest failover {failover} ms; ticks every {TICK_MS} ms from {first} to \
         {last}: {expected} expected, {enqueued} enqueued, {duplicates} duplicates, {missing} missing, {done} \
         completed ({held_ticks} held by a killed leader, {rescued} of them rescued and run again, \
         {rescued_in_time} of those within the minute; {ticks_after} finished after it); scheduled: {scheduled} \
         enqueued, {scheduled} completed, {late} due {margin} s before the end finished after it, longest \
         promotion lag {lag} ms; {rerun} jobs ran more than one attempt ({rescued_all} rescued from a killed \
         leader, {unexplained} not held by one)",
        backend = storage.backend_name(),
        kills = kills.len(),
        secs = CHAOS.as_secs(),
        first_term = terms.first().copied().unwrap_or_default(),
        last_term = terms.last().copied().unwrap_or_default(),
        failover = longest_failover.as_millis(),
        expected = expected.len(),
        duplicates = duplicates.len(),
        missing = missing.len(),
        done = tick_records.len(),
        rescued = rescued_ticks.len(),
        unexplained = unexplained.len(),
        scheduled = scheduled.len(),
        late = late_scheduled.len(),
        margin = SCHEDULED_MARGIN.as_secs(),
        lag = promotion_lag.as_millis(),
    );
    for kill in &kills {
        eprintln!(
            "killed {} (pid {}, term {}); {} leads under term {} after {} ms",
            kill.leader.worker_id,
            kill.pid,
            kill.leader.term,
            kill.next.worker_id,
            kill.next.term,
            kill.failover.as_millis()
        );
    }

    assert!(duplicates.is_empty(), "ticks stored more than once: {duplicates:?}");
    assert!(missing.is_empty(), "ticks without a job: {missing:?}");
    assert_eq!(last, final_tick, "the schedule's record holds the last tick stored");
    assert!(final_tick >= last_chaos_tick, "the leaders enqueued ticks until the end of the minute");
    let first_due = periodic.schedule().next_after(initial_tick).expect("an interval always has ticks");
    assert!(first <= first_due, "the first tick after the schedule was recorded ({first_due}) has a job");
    assert!(kills.len() > 10, "{} kills in a minute", kills.len());
    assert!(changes + 1 >= kills.len(), "{changes} leader changes for {} kills", kills.len());
    assert!(changes > 10, "{changes} leader changes");
    assert!(!rescued_ticks.is_empty(), "a killed leader held a tick job, which was rescued");
    assert!(rescued_in_time > 0, "a rescued tick job completed within the minute");
    assert!(late_scheduled.is_empty(), "scheduled jobs due well before the end finished after it: {late_scheduled:?}");
}

/// One kill: the leader killed, its process, and the leader that followed.
#[derive(Debug)]
struct Kill {
    leader: Leadership,
    pid: u32,
    failover: Duration,
    next: Leadership,
    /// `(job, attempt)` of the jobs it held just before.
    held: Vec<(JobId, u32)>,
}

/// The stored tick jobs, by tick and by unique key.
struct Ticks<'a> {
    by_tick: BTreeMap<Timestamp, Vec<&'a JobRecord>>,
    by_key: BTreeMap<String, usize>,
}

impl<'a> Ticks<'a> {
    fn of(periodic: &Periodic, records: &'a [JobRecord]) -> Self {
        let prefix = format!("periodic:{PERIODIC_NAME}:");
        let mut ticks = Self { by_tick: BTreeMap::new(), by_key: BTreeMap::new() };
        for record in records {
            let Some(key) = &record.unique_key else { continue };
            let text = key.strip_prefix(&prefix).unwrap_or_else(|| panic!("job {}: unexpected key {key}", record.id));
            let tick: Timestamp = DateTime::parse_from_rfc3339(text)
                .unwrap_or_else(|error| panic!("job {}: key {key} holds no time: {error}", record.id))
                .with_timezone(&Utc);
            assert_eq!(&periodic.tick_key(tick), key, "job {}: the key is the tick's", record.id);
            assert_eq!(periodic.schedule().latest_at_or_before(tick), Some(tick), "{key} is a tick of the schedule");
            ticks.by_tick.entry(tick).or_default().push(record);
            *ticks.by_key.entry(key.clone()).or_default() += 1;
        }
        ticks
    }
}

/// Every tick of `periodic` from `first` to `last`, both included.
fn ticks_from(periodic: &Periodic, first: Timestamp, last: Timestamp) -> Vec<Timestamp> {
    let mut ticks = vec![first];
    while let Some(next) = periodic.schedule().next_after(*ticks.last().expect("never empty")) {
        if next > last {
            break;
        }
        ticks.push(next);
    }
    ticks
}

fn finished_by(record: &JobRecord, at: Timestamp) -> bool {
    record.finished_at.is_some_and(|finished| finished <= at)
}

/// Waits for the schedule's record to hold a last tick (at least `at_least`), and
/// returns it.
async fn wait_for_last_tick(storage: &TestStorage, at_least: Option<Timestamp>) -> Timestamp {
    eventually_within(PATIENCE, "the schedule's record to hold its last tick", || async {
        let records = storage.list_periodic().await.ok()?;
        let last = records.into_iter().find(|record| record.name == PERIODIC_NAME)?.last_tick?;
        at_least.is_none_or(|at_least| last >= at_least).then_some(last)
    })
    .await
}

/// Waits until every worker in `workers` is in the registry and one of them leads;
/// returns the leadership and that worker's index.
async fn live_leader(storage: &TestStorage, workers: &[HostedWorker]) -> (Leadership, usize) {
    eventually_within(FAILOVER_PATIENCE, "a leader among the running workers", || async {
        let lead = storage.leader(None).await.ok()??;
        let registered = storage.list_workers(None).await.ok()?;
        let pids: Vec<u32> = workers.iter().map(|worker| worker.pid().expect("the workers are processes")).collect();
        if !pids.iter().all(|pid| registered.iter().any(|record| record.pid == *pid)) {
            return None;
        }
        let pid = registered.iter().find(|record| record.id == lead.worker_id)?.pid;
        let index = pids.iter().position(|candidate| *candidate == pid)?;
        Some((lead, index))
    })
    .await
}

/// Polls the leadership every 50 ms and keeps each change (a new term or worker).
struct LeaderSampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Leadership>>,
}

impl LeaderSampler {
    fn start(storage: TestStorage) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen: Vec<Leadership> = Vec::new();
            let mut stopping = false;
            loop {
                if let Ok(Some(lead)) = storage.leader(None).await
                    && seen.last().is_none_or(|last| (&last.worker_id, last.term) != (&lead.worker_id, lead.term))
                {
                    seen.push(lead);
                }
                if stopping {
                    return seen;
                }
                tokio::select! {
                    // One more sample once told to stop.
                    _ = &mut stopped => stopping = true,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Every leadership seen, in order.
    async fn stop(self) -> Vec<Leadership> {
        let _ = self.stop.send(());
        self.task.await.expect("the sampler runs")
    }
}
