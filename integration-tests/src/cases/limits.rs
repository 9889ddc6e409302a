//! Limits every worker obeys, kept in storage per queue: a queue's concurrency limit
//! caps its running jobs across every claimer, checked atomically with each claim.
//!
//! These cases run on a multi-threaded runtime (see the suite macro), so the racing
//! claimers really race.

use std::{sync::Arc, time::Duration};

use haul::{JobOutcome, JobState, QueueLimits, QueueLimitsRecord};
use tokio::sync::Barrier;

use super::{
    jobs::{Script, Tracker},
    worker::{RunningWorker, enqueue_scripts},
    *,
};

async fn set_limit(storage: &TestStorage, queue: &str, concurrency: u32) {
    storage.set_queue_limits(queue, QueueLimits::new().concurrency(concurrency)).await.expect("limits are stored");
}

async fn enqueue_n(storage: &TestStorage, queue: &str, n: usize) -> Vec<JobId> {
    enqueue(storage, (0..n).map(|_| job(queue)).collect(), at(0)).await
}

async fn running_in(storage: &TestStorage, queue: &str) -> u64 {
    let counts = storage.counts().await.expect("counts succeed");
    counts.iter().find(|counts| counts.queue == queue).map_or(0, |counts| counts.get(JobState::Running))
}

/// Limits are stored per queue, listed in queue order, replaced by a second call, and
/// removed by limits that limit nothing.
pub async fn limits_are_stored_listed_replaced_and_removed(storage: TestStorage) {
    assert_eq!(storage.queue_limits().await.expect("listing succeeds"), vec![]);
    set_limit(&storage, "zeta", 4).await;
    set_limit(&storage, "alpha", 2).await;
    set_limit(&storage, "Beta", 7).await;
    let listed = storage.queue_limits().await.expect("listing succeeds");
    let expected = vec![
        QueueLimitsRecord::new("Beta", QueueLimits::new().concurrency(7)),
        QueueLimitsRecord::new("alpha", QueueLimits::new().concurrency(2)),
        QueueLimitsRecord::new("zeta", QueueLimits::new().concurrency(4)),
    ];
    assert_eq!(listed, expected, "byte order of the names");

    set_limit(&storage, "alpha", 9).await;
    storage.set_queue_limits("zeta", QueueLimits::new()).await.expect("removing succeeds");
    storage.set_queue_limits("never-limited", QueueLimits::new()).await.expect("removing nothing succeeds");
    let listed = storage.queue_limits().await.expect("listing succeeds");
    let expected = vec![
        QueueLimitsRecord::new("Beta", QueueLimits::new().concurrency(7)),
        QueueLimitsRecord::new("alpha", QueueLimits::new().concurrency(9)),
    ];
    assert_eq!(listed, expected);
}

/// A bad queue name ([`haul::Error::InvalidName`]) or a zero limit is refused, and
/// nothing is stored.
pub async fn a_bad_queue_name_or_a_zero_limit_is_refused(storage: TestStorage) {
    let zero = storage.set_queue_limits("q", QueueLimits::new().concurrency(0)).await;
    assert!(matches!(zero, Err(haul::Error::InvalidArgument(_))), "{zero:?}");
    for bad in ["", "with space", "nul\0"] {
        let error = storage.set_queue_limits(bad, QueueLimits::new().concurrency(1)).await;
        assert!(matches!(error, Err(haul::Error::InvalidName { .. })), "{bad:?}: {error:?}");
    }
    assert_eq!(storage.queue_limits().await.expect("listing succeeds"), vec![]);
}

/// A claim takes no more than the limit minus the queue's running jobs; the jobs it
/// leaves stay available and keep their attempt count.
pub async fn a_claim_takes_no_more_than_the_limit_minus_the_running_jobs(storage: TestStorage) {
    set_limit(&storage, "lim", 3).await;
    let ids = enqueue_n(&storage, "lim", 10).await;
    let first = claim(&storage, &["lim"], 2, at(1)).await;
    assert_eq!(ids_of(&first), ids[..2].to_vec(), "in claim order");
    let second = claim(&storage, &["lim"], 10, at(1)).await;
    assert_eq!(ids_of(&second), ids[2..3].to_vec(), "one slot was left");
    assert!(claim(&storage, &["lim"], 10, at(2)).await.is_empty(), "no slot is left");
    assert_eq!(running_in(&storage, "lim").await, 3);
    for id in &ids[3..] {
        let record = get(&storage, *id).await;
        assert_eq!((record.state, record.attempt), (JobState::Available, 0), "job {id} is held back, not attempted");
    }
}

/// Every way a running job ends frees its slot for the next claim: completed, failed
/// with a retry, discarded, cancelled, snoozed.
pub async fn every_ending_of_a_running_job_frees_its_slot(storage: TestStorage) {
    set_limit(&storage, "lim", 1).await;
    enqueue_n(&storage, "lim", 6).await;
    let endings = [
        JobOutcome::Completed,
        failed("boom", secs(3_600)),
        JobOutcome::Discarded { reason: "no".to_owned() },
        JobOutcome::Cancelled,
        JobOutcome::Snoozed { delay: secs(3_600) },
    ];
    let mut now = 1;
    for ending in endings {
        let claimed = claim(&storage, &["lim"], 5, at(now)).await;
        assert_eq!(claimed.len(), 1, "one slot");
        assert!(claim(&storage, &["lim"], 5, at(now)).await.is_empty(), "the slot is taken");
        report_applied(&storage, claim_of(&claimed[0]), ending.clone(), at(now)).await;
        now += 1;
    }
    assert_eq!(claim(&storage, &["lim"], 5, at(now)).await.len(), 1, "the last ending freed the slot too");
}

/// In a claim of several queues, a limited queue gives only its free slots and the
/// other queues fill the rest, in claim order among themselves.
pub async fn the_other_queues_of_a_claim_fill_what_a_limit_leaves(storage: TestStorage) {
    set_limit(&storage, "lim", 2).await;
    let limited = enqueue(&storage, (0..4).map(|_| job("lim")).collect(), at(0)).await;
    let free = enqueue(&storage, (0..4).map(|_| job("free")).collect(), at(0)).await;
    let claimed = claim(&storage, &["lim", "free"], 5, at(1)).await;
    let mut expected = limited[..2].to_vec();
    expected.extend_from_slice(&free[..3]);
    assert_eq!(ids_of(&claimed), expected);
    let more = claim(&storage, &["lim", "free"], 5, at(1)).await;
    assert_eq!(ids_of(&more), free[3..].to_vec(), "the limited queue has no slot left");
}

/// A queue without a limit, next to a limited one, is not limited.
pub async fn a_limit_applies_to_its_own_queue_only(storage: TestStorage) {
    set_limit(&storage, "lim", 1).await;
    enqueue_n(&storage, "other", 20).await;
    assert_eq!(claim(&storage, &["other"], 20, at(1)).await.len(), 20);
}

/// A limit lowered below the running jobs holds back claims until enough of them end;
/// a raised one takes effect at the next claim; a removed one limits nothing.
pub async fn a_changed_limit_applies_to_the_next_claim(storage: TestStorage) {
    set_limit(&storage, "lim", 3).await;
    enqueue_n(&storage, "lim", 20).await;
    let running = claim(&storage, &["lim"], 10, at(1)).await;
    assert_eq!(running.len(), 3);
    set_limit(&storage, "lim", 1).await;
    assert!(claim(&storage, &["lim"], 10, at(2)).await.is_empty());
    report_applied(&storage, claim_of(&running[0]), JobOutcome::Completed, at(2)).await;
    assert!(claim(&storage, &["lim"], 10, at(2)).await.is_empty(), "two still run, over the new limit of one");
    report_applied(&storage, claim_of(&running[1]), JobOutcome::Completed, at(3)).await;
    report_applied(&storage, claim_of(&running[2]), JobOutcome::Completed, at(3)).await;
    let one = claim(&storage, &["lim"], 10, at(3)).await;
    assert_eq!(one.len(), 1);
    set_limit(&storage, "lim", 4).await;
    assert_eq!(claim(&storage, &["lim"], 10, at(4)).await.len(), 3, "raised to four, one running");
    storage.set_queue_limits("lim", QueueLimits::new()).await.expect("removing succeeds");
    assert_eq!(claim(&storage, &["lim"], 10, at(5)).await.len(), 10, "no limit any more");
}

/// A job whose lease expired keeps its slot until it is rescued; then the slot is
/// free and the rescued job can be claimed again.
pub async fn an_expired_lease_holds_its_slot_until_it_is_rescued(storage: TestStorage) {
    set_limit(&storage, "lim", 1).await;
    let ids = enqueue_n(&storage, "lim", 2).await;
    let held = claim(&storage, &["lim"], 5, at(0)).await;
    assert_eq!(ids_of(&held), vec![ids[0]]);
    let expired = at(0) + chrono::Duration::from_std(LEASE).expect("the lease fits") + chrono::Duration::seconds(1);
    assert!(claim(&storage, &["lim"], 5, expired).await.is_empty(), "the expired lease still holds the slot");
    let rescued = storage.rescue_expired(Some(expired)).await.expect("rescue succeeds");
    assert_eq!(rescued.rescued, 1);
    let next = claim(&storage, &["lim"], 5, expired).await;
    assert_eq!(next.len(), 1, "the slot is free again, and only one");
    let states = [state_of(&storage, ids[0]).await, state_of(&storage, ids[1]).await];
    assert!(states.contains(&JobState::Running) && states.contains(&JobState::Available), "{states:?}");
}

/// Claimers racing on a limited queue never take more than the limit together, round
/// after round, and every job is claimed once.
pub async fn racing_claimers_never_exceed_a_limit_together(storage: TestStorage) {
    const LIMIT: usize = 5;
    const ROUNDS: usize = 8;
    set_limit(&storage, "lim", LIMIT as u32).await;
    let ids = enqueue_n(&storage, "lim", LIMIT * ROUNDS).await;
    let mut seen = std::collections::HashSet::new();
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(concurrency::CLAIMERS));
        let claimers: Vec<_> = (0..concurrency::CLAIMERS)
            .map(|n| {
                let (storage, barrier) = (storage.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    claim_as(&storage, &["lim"], 3, at(1), &format!("claimer-{n}")).await
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for claimer in claimers {
            claimed.extend(claimer.await.expect("claimer task finishes"));
        }
        assert_eq!(claimed.len(), LIMIT, "round {round}: the claimers took exactly the limit together");
        for record in &claimed {
            assert!(seen.insert(record.id), "job {} claimed twice", record.id);
            report_applied(&storage, claim_of(record), JobOutcome::Completed, at(2)).await;
        }
    }
    assert_eq!(seen.len(), ids.len(), "every job was claimed");
}

/// Two workers with eight slots each on a queue limited to two run two jobs at once
/// together, never more; the others wait available, unattempted.
pub async fn workers_together_run_no_more_than_the_limit(storage: TestStorage) {
    let queue = "lim.workers";
    set_limit(&storage, queue, 2).await;
    let tracker = Tracker::new();
    let ids = enqueue_scripts(&storage, queue, vec![Script::Hang; 6]).await;
    let configure = |builder: haul::WorkerBuilder| builder.concurrency(8).shutdown_grace(Duration::from_millis(200));
    let first = RunningWorker::start(&storage, queue, &tracker, configure);
    let second = RunningWorker::start(&storage, queue, &tracker, configure);
    eventually("two jobs to start", || {
        let started = tracker.started().len();
        async move { (started == 2).then_some(()) }
    })
    .await;
    // Both workers poll every 50 ms with six free slots each: give them a few polls.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tracker.started().len(), 2, "no third job starts");
    assert_eq!(running_in(&storage, queue).await, 2);
    first.stop().await;
    second.stop().await;
    for id in ids {
        let record = get(&storage, id).await;
        assert_eq!((record.state, record.attempt), (JobState::Available, 0), "job {id} is back, unspent");
    }
}

/// A queue named twice in one claim still gives no more than its free slots.
pub async fn a_queue_named_twice_in_a_claim_gives_no_more_than_its_limit(storage: TestStorage) {
    set_limit(&storage, "lim", 2).await;
    enqueue_n(&storage, "lim", 5).await;
    assert_eq!(claim(&storage, &["lim", "lim"], 10, at(1)).await.len(), 2);
    assert!(claim(&storage, &["lim", "other", "lim"], 10, at(1)).await.is_empty());
}

/// How the slot a worker waits for is freed.
#[derive(Clone, Copy, Debug)]
enum Freed {
    /// Its job is reported completed.
    ByReport,
    /// Its expired lease is rescued, on the job's last attempt (so it ends discarded).
    ByRescue,
}

/// A worker whose claims find a limited queue full is woken when the slot frees,
/// without waiting for its poll interval (an hour here).
async fn a_waiting_worker_is_woken_when_the_slot_frees(storage: TestStorage, freed: Freed) {
    let queue = "lim.wake";
    set_limit(&storage, queue, 1).await;
    let now = chrono::Utc::now();
    let held = enqueue_one(&storage, job(queue).max_attempts(1), now).await;
    let held = claim(&storage, &[queue], 1, now).await.into_iter().find(|record| record.id == held);
    let held = held.expect("the case holds the queue's one slot");
    let waiting = enqueue_scripts(&storage, queue, vec![Script::Complete]).await[0];
    // A job of another queue the worker serves: once it ran, the worker has claimed
    // with the slot held (skipping `waiting`) and waits for a wake-up.
    let probe_queue = "lim.wake_probe";
    let probe = enqueue_scripts(&storage, probe_queue, vec![Script::Complete]).await[0];
    let tracker = Tracker::new();
    let worker = RunningWorker::start(&storage, queue, &tracker, |builder| {
        builder
            .queues([queue, probe_queue])
            .poll_interval(Duration::from_secs(3_600))
            .maintenance_interval(Duration::from_secs(3_600))
    });
    worker::wait_for_state(&storage, probe, JobState::Completed).await;
    assert_eq!(state_of(&storage, waiting).await, JobState::Available, "held back while the slot is taken");
    match freed {
        Freed::ByReport => report_applied(&storage, claim_of(&held), JobOutcome::Completed, chrono::Utc::now()).await,
        Freed::ByRescue => {
            let expired = chrono::Utc::now() + chrono::Duration::from_std(LEASE).expect("the lease fits");
            let rescued = storage.rescue_expired(Some(expired + chrono::Duration::seconds(1))).await;
            assert_eq!(rescued.expect("rescue succeeds").discarded, 1, "the held job used its one attempt");
        }
    }
    worker::wait_for_state(&storage, waiting, JobState::Completed).await;
    worker.stop().await;
}

/// A worker waiting on a full limited queue is woken when the running job is reported.
pub async fn a_waiting_worker_is_woken_when_a_report_frees_the_slot(storage: TestStorage) {
    a_waiting_worker_is_woken_when_the_slot_frees(storage, Freed::ByReport).await;
}

/// A worker waiting on a full limited queue is woken when the running job's expired
/// lease is rescued (here it ends discarded, its last attempt spent).
pub async fn a_waiting_worker_is_woken_when_a_rescue_frees_the_slot(storage: TestStorage) {
    a_waiting_worker_is_woken_when_the_slot_frees(storage, Freed::ByRescue).await;
}

/// A paused limited queue gives nothing, with or without free slots; resumed, it gives
/// its free slots' worth.
pub async fn a_paused_limited_queue_gives_nothing(storage: TestStorage) {
    set_limit(&storage, "lim", 2).await;
    enqueue_n(&storage, "lim", 3).await;
    let free = enqueue_n(&storage, "free", 1).await;
    storage.pause_queue("lim").await.expect("pausing succeeds");
    assert!(claim(&storage, &["lim"], 10, at(1)).await.is_empty());
    assert_eq!(ids_of(&claim(&storage, &["lim", "free"], 10, at(1)).await), free, "only the unpaused queue");
    storage.resume_queue("lim").await.expect("resuming succeeds");
    assert_eq!(claim(&storage, &["lim"], 10, at(2)).await.len(), 2);
}

/// A claim that a limit shapes sets every claimed job's fields as any claim does:
/// running, attempt 1, its own lease token, the lease deadline, the claimer.
pub async fn a_claim_of_a_limited_queue_sets_each_jobs_claim_fields(storage: TestStorage) {
    set_limit(&storage, "lim", 2).await;
    enqueue_n(&storage, "lim", 3).await;
    enqueue_n(&storage, "free", 3).await;
    let claimed = claim_as(&storage, &["lim", "free"], 4, at(5), "limited-claimer").await;
    assert_eq!(claimed.len(), 4);
    let mut tokens = std::collections::HashSet::new();
    for record in &claimed {
        assert_eq!((record.state, record.attempt), (JobState::Running, 1), "{record:?}");
        assert_eq!(record.claimed_by.as_deref(), Some("limited-claimer"));
        assert_eq!(record.attempted_at, Some(at(5)));
        assert_eq!(record.lease_expires_at, Some(at(5) + chrono::Duration::from_std(LEASE).expect("the lease fits")));
        assert!(tokens.insert(record.lease_token.expect("a claimed job has a lease token")), "tokens are distinct");
        assert_eq!(get(&storage, record.id).await.lease_token, record.lease_token, "the token is stored");
    }
    assert_eq!(claimed.iter().filter(|record| record.queue == "lim").count(), 2);
}
