//! Limits every worker obeys, kept in storage per queue: a queue's concurrency limit
//! caps its running jobs across every claimer, checked atomically with each claim, and
//! its limit per key caps the running jobs of each limit key the same way.
//!
//! These cases run on a multi-threaded runtime (see the suite macro), so the racing
//! claimers really race.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use haul::{
    JobOutcome, JobState, ListParams, NewJob, Queue, QueueLimits, QueueLimitsRecord,
    limits::{KEY_LIMIT_SCAN, MAX_LIMIT_KEY_BYTES},
    storage::ClaimParams,
};
use tokio::sync::Barrier;

use super::{
    jobs::{Script, Scripted, Tracker},
    worker::{RunningWorker, enqueue_script, enqueue_scripts},
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

async fn set_key_limit(storage: &TestStorage, queue: &str, key_concurrency: u32) {
    let limits = QueueLimits::new().key_concurrency(key_concurrency);
    storage.set_queue_limits(queue, limits).await.expect("limits are stored");
}

/// Jobs on `queue` with these limit keys (`None`: no key), in this claim order (their
/// ids increase, everything else is equal).
fn keyed_jobs(queue: &str, keys: &[Option<&str>]) -> Vec<NewJob> {
    let ids = ordered_ids(keys.len());
    keys.iter()
        .zip(ids)
        .map(|(key, id)| {
            let job = job(queue).id(id);
            match key {
                Some(key) => job.limit_key(*key),
                None => job,
            }
        })
        .collect()
}

/// Enqueues `per_key` jobs of each key on `queue` at the base time, interleaved (the
/// first of every key, then the second of every key…), and returns each key's ids in
/// claim order.
async fn enqueue_interleaved(
    storage: &TestStorage,
    queue: &str,
    keys: &[&str],
    per_key: usize,
) -> HashMap<String, Vec<JobId>> {
    let order: Vec<Option<&str>> = (0..per_key).flat_map(|_| keys.iter().map(|key| Some(*key))).collect();
    let ids = enqueue(storage, keyed_jobs(queue, &order), at(0)).await;
    let mut by_key: HashMap<String, Vec<JobId>> = HashMap::new();
    for (key, id) in order.into_iter().zip(ids) {
        by_key.entry(key.unwrap_or_default().to_owned()).or_default().push(id);
    }
    by_key
}

/// The running jobs of `queue` per limit key, as storage lists them (keyless jobs
/// left out).
async fn running_per_key(storage: &TestStorage, queue: &str) -> HashMap<String, usize> {
    let params = ListParams::new().queue(queue).state(JobState::Running).limit(10_000);
    let running = storage.list(params).await.expect("listing succeeds");
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for key in running.iter().filter_map(|record| record.limit_key.clone()) {
        *per_key.entry(key).or_default() += 1;
    }
    per_key
}

/// The limit key of a claimed or stored job, which must have one.
/// [`concurrency::CLAIMERS`] claimers released at once, each claiming up to `each` jobs
/// of `queue` at `now` (half of them through [`Storage::claim_paced`]): every job they
/// took together.
pub(crate) async fn race_claims(storage: &TestStorage, queue: &str, each: usize, now: Timestamp) -> Vec<JobRecord> {
    let barrier = Arc::new(Barrier::new(concurrency::CLAIMERS));
    let claimers: Vec<_> = (0..concurrency::CLAIMERS)
        .map(|n| {
            let (storage, barrier, queue) = (storage.clone(), Arc::clone(&barrier), queue.to_owned());
            tokio::spawn(async move {
                barrier.wait().await;
                let worker = format!("claimer-{n}");
                if n % 2 == 0 {
                    claim_as(&storage, &[queue.as_str()], each, now, &worker).await
                } else {
                    let params = ClaimParams::new([queue.as_str()], each).lease(LEASE).worker_id(worker).now(now);
                    storage.claim_paced(params).await.expect("claim succeeds").jobs
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.expect("claimer task finishes"));
    }
    claimed
}

fn key_of(record: &JobRecord) -> &str {
    record.limit_key.as_deref().unwrap_or_else(|| panic!("job {} has a limit key", record.id))
}

/// How many of `records` have each limit key.
fn count_per_key(records: &[JobRecord]) -> HashMap<String, usize> {
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for record in records {
        *per_key.entry(key_of(record).to_owned()).or_default() += 1;
    }
    per_key
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
        let claimed = race_claims(&storage, "lim", 3, at(1)).await;
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

/// Which limit holds a worker back until a slot frees.
#[derive(Clone, Copy, Debug)]
enum Held {
    /// The queue's concurrency limit of 1.
    ByQueue,
    /// The queue's limit per key of 1 (the held and the waiting job share a key).
    ByKey,
}

/// How the slot a worker waits for is freed.
#[derive(Clone, Copy, Debug)]
enum Freed {
    /// Its job is reported completed.
    ByReport,
    /// Its expired lease is rescued, on the job's last attempt (so it ends discarded).
    ByRescue,
}

/// A worker whose claims find a limited queue (or key) full is woken when the slot
/// frees, without waiting for its poll interval (an hour here).
async fn a_waiting_worker_is_woken_when_the_slot_frees(storage: TestStorage, held: Held, freed: Freed) {
    let queue = "lim.wake";
    let with_key = |job: NewJob| match held {
        Held::ByQueue => job,
        Held::ByKey => job.limit_key("k"),
    };
    match held {
        Held::ByQueue => set_limit(&storage, queue, 1).await,
        Held::ByKey => set_key_limit(&storage, queue, 1).await,
    }
    let now = chrono::Utc::now();
    let held = enqueue_one(&storage, with_key(job(queue).max_attempts(1)), now).await;
    let held = claim(&storage, &[queue], 1, now).await.into_iter().find(|record| record.id == held);
    let held = held.expect("the case holds the slot");
    let waiting = enqueue_script(&storage, queue, Script::Complete, with_key).await;
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
    a_waiting_worker_is_woken_when_the_slot_frees(storage, Held::ByQueue, Freed::ByReport).await;
}

/// A worker waiting on a full limited queue is woken when the running job's expired
/// lease is rescued (here it ends discarded, its last attempt spent).
pub async fn a_waiting_worker_is_woken_when_a_rescue_frees_the_slot(storage: TestStorage) {
    a_waiting_worker_is_woken_when_the_slot_frees(storage, Held::ByQueue, Freed::ByRescue).await;
}

/// A worker waiting on a full key (limit per key 1) is woken when the key's running
/// job is reported.
pub async fn a_waiting_worker_is_woken_when_a_report_frees_the_keys_slot(storage: TestStorage) {
    a_waiting_worker_is_woken_when_the_slot_frees(storage, Held::ByKey, Freed::ByReport).await;
}

/// A worker waiting on a full key (limit per key 1) is woken when the key's running
/// job's expired lease is rescued.
pub async fn a_waiting_worker_is_woken_when_a_rescue_frees_the_keys_slot(storage: TestStorage) {
    a_waiting_worker_is_woken_when_the_slot_frees(storage, Held::ByKey, Freed::ByRescue).await;
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

/// A limit per key is stored, listed, replaced and removed with the concurrency limit
/// or without it; a limit per key of 0 is refused and changes nothing stored.
pub async fn key_limits_are_stored_listed_replaced_and_removed(storage: TestStorage) {
    let both = QueueLimits::new().concurrency(5).key_concurrency(1);
    storage.set_queue_limits("both", both).await.expect("limits are stored");
    set_key_limit(&storage, "keyed", 2).await;
    set_limit(&storage, "plain", 3).await;
    let listed = storage.queue_limits().await.expect("listing succeeds");
    let expected = vec![
        QueueLimitsRecord::new("both", both),
        QueueLimitsRecord::new("keyed", QueueLimits::new().key_concurrency(2)),
        QueueLimitsRecord::new("plain", QueueLimits::new().concurrency(3)),
    ];
    assert_eq!(listed, expected);

    for zero in [QueueLimits::new().key_concurrency(0), QueueLimits::new().concurrency(4).key_concurrency(0)] {
        let refused = storage.set_queue_limits("both", zero).await;
        assert!(matches!(refused, Err(haul::Error::InvalidArgument(_))), "{zero:?}: {refused:?}");
    }
    assert_eq!(storage.queue_limits().await.expect("listing succeeds"), expected, "a refused call changes nothing");

    // Replaced as a whole: each call's limits are the queue's limits.
    set_limit(&storage, "both", 5).await;
    let plain_and_keyed = QueueLimits::new().concurrency(3).key_concurrency(7);
    storage.set_queue_limits("plain", plain_and_keyed).await.expect("limits are stored");
    set_key_limit(&storage, "keyed", 9).await;
    let listed = storage.queue_limits().await.expect("listing succeeds");
    let expected = vec![
        QueueLimitsRecord::new("both", QueueLimits::new().concurrency(5)),
        QueueLimitsRecord::new("keyed", QueueLimits::new().key_concurrency(9)),
        QueueLimitsRecord::new("plain", plain_and_keyed),
    ];
    assert_eq!(listed, expected);

    storage.set_queue_limits("keyed", QueueLimits::new()).await.expect("removing succeeds");
    set_key_limit(&storage, "both", 2).await;
    let listed = storage.queue_limits().await.expect("listing succeeds");
    let expected = vec![
        QueueLimitsRecord::new("both", QueueLimits::new().key_concurrency(2)),
        QueueLimitsRecord::new("plain", plain_and_keyed),
    ];
    assert_eq!(listed, expected);
}

/// An empty limit key, one longer than [`MAX_LIMIT_KEY_BYTES`] bytes (counted in
/// bytes, not characters) or one with a NUL is refused at enqueue, and nothing of its
/// batch is stored; a key of exactly the longest length is stored.
pub async fn a_bad_limit_key_is_refused_at_enqueue(storage: TestStorage) {
    let too_long = "k".repeat(MAX_LIMIT_KEY_BYTES + 1);
    let too_many_bytes = "é".repeat(MAX_LIMIT_KEY_BYTES / 2 + 1);
    assert!(too_many_bytes.chars().count() < MAX_LIMIT_KEY_BYTES, "fewer characters than bytes allowed");
    for bad in ["", too_long.as_str(), too_many_bytes.as_str(), "a\0b"] {
        let batch = vec![job("keys").limit_key("good"), job("keys").limit_key(bad)];
        let refused = storage.enqueue(EnqueueParams::new(batch).now(at(0))).await;
        assert!(matches!(refused, Err(haul::Error::InvalidArgument(_))), "{bad:?}: {refused:?}");
        let producer = Queue::new(storage.clone());
        let refused = producer.enqueue(Scripted::new(Script::Complete)).queue("keys").limit_key(bad).await;
        assert!(matches!(refused, Err(haul::Error::InvalidArgument(_))), "{bad:?}: {refused:?}");
    }
    let stored = storage.list(ListParams::new().limit(10)).await.expect("listing succeeds");
    assert_eq!(stored, vec![], "no job of a refused batch is stored");

    let longest = format!("{}k", "é".repeat(MAX_LIMIT_KEY_BYTES / 2));
    assert_eq!(longest.len(), MAX_LIMIT_KEY_BYTES);
    let id = enqueue_one(&storage, job("keys").limit_key(longest.clone()), at(0)).await;
    assert_eq!(get(&storage, id).await.limit_key, Some(longest));
}

/// The limit key a job is enqueued with (through [`Queue::enqueue`] or a [`NewJob`])
/// is stored as given and read back by `get`, `list` and the claim; a job enqueued
/// without one has none.
pub async fn the_limit_key_round_trips_through_get_list_and_claim(storage: TestStorage) {
    let queue = "keys";
    let producer = Queue::new(storage.clone());
    let through_queue = producer
        .enqueue(Scripted::new(Script::Complete))
        .queue(queue)
        .limit_key("customer-42")
        .await
        .expect("enqueue succeeds");
    let jobs = vec![job(queue).limit_key("Ünïcode key / with spaces: 🗝"), job(queue), job(queue).limit_key("x")];
    let mut ids = vec![through_queue];
    ids.extend(producer.insert(jobs).await.expect("insert succeeds"));
    let expected: HashMap<JobId, Option<&str>> =
        ids.iter().copied().zip([Some("customer-42"), Some("Ünïcode key / with spaces: 🗝"), None, Some("x")]).collect();

    for (id, key) in &expected {
        assert_eq!(get(&storage, *id).await.limit_key.as_deref(), *key, "get of job {id}");
    }
    let listed = storage.list(ListParams::new().queue(queue).limit(10)).await.expect("listing succeeds");
    assert_eq!(listed.len(), expected.len());
    for record in &listed {
        assert_eq!(record.limit_key.as_deref(), expected[&record.id], "list of job {}", record.id);
    }
    let claimed = claim(&storage, &[queue], 10, chrono::Utc::now() + chrono::Duration::seconds(1)).await;
    assert_eq!(claimed.len(), expected.len(), "no limit: every job is claimed");
    for record in &claimed {
        assert_eq!(record.limit_key.as_deref(), expected[&record.id], "claim of job {}", record.id);
    }
}

/// A claim takes a job with a limit key only while the key's running jobs and the
/// jobs of the key it took before are under the limit; jobs without a key are taken
/// freely; the jobs it skips stay available with their attempts unspent.
pub async fn a_claim_takes_at_most_the_key_limit_of_each_key(storage: TestStorage) {
    let queue = "keyed";
    set_key_limit(&storage, queue, 2).await;
    let first = enqueue(&storage, keyed_jobs(queue, &[Some("a")]), at(0)).await;
    claim_only(&storage, queue, first[0], at(0)).await;
    let keys = [Some("a"), Some("a"), Some("b"), None, Some("a"), Some("b"), Some("b"), None, Some("c"), Some("b")];
    let ids = enqueue(&storage, keyed_jobs(queue, &keys), at(0)).await;
    let claimed = claim(&storage, &[queue], 20, at(1)).await;
    // `a` has one running: one more; `b` two; `c` one; both keyless jobs.
    let expected = vec![ids[0], ids[2], ids[3], ids[5], ids[7], ids[8]];
    assert_eq!(ids_of(&claimed), expected, "in claim order, each key up to its limit");
    for skipped in [ids[1], ids[4], ids[6], ids[9]] {
        let record = get(&storage, skipped).await;
        assert_eq!((record.state, record.attempt), (JobState::Available, 0), "job {skipped} is held back");
    }
    assert!(claim(&storage, &[queue], 20, at(2)).await.is_empty(), "every key is full, no keyless job waits");
    let expected_running = HashMap::from([("a".to_owned(), 2), ("b".to_owned(), 2), ("c".to_owned(), 1)]);
    assert_eq!(running_per_key(&storage, queue).await, expected_running);
}

/// A limit per key of 1 runs each key's jobs one at a time, in the order they were
/// enqueued, whatever order the keys' jobs interleave in and however the claims and
/// completions fall.
pub async fn a_key_limit_of_one_runs_each_keys_jobs_in_order(storage: TestStorage) {
    const PER_KEY: usize = 5;
    let queue = "keyed";
    let keys = ["k1", "k2", "k3", "k4"];
    set_key_limit(&storage, queue, 1).await;
    let enqueued = enqueue_interleaved(&storage, queue, &keys, PER_KEY).await;
    let mut started: HashMap<String, Vec<JobId>> = HashMap::new();
    let mut running: Vec<JobRecord> = Vec::new();
    // Each round ends one job, so twice the rounds needed is plenty.
    let rounds = (2 * keys.len() * PER_KEY) as i64;
    for now in 1..=rounds {
        // Claims of two, ending one job per round (the longest running): the keys'
        // turns interleave unevenly.
        for record in claim(&storage, &[queue], 2, at(now)).await {
            assert!(
                running.iter().all(|other| key_of(other) != key_of(&record)),
                "a second job of key {} started: {:?}",
                key_of(&record),
                record.id
            );
            started.entry(key_of(&record).to_owned()).or_default().push(record.id);
            running.push(record);
        }
        let stored = running_per_key(&storage, queue).await;
        assert!(stored.values().all(|&count| count == 1), "storage runs one job per key: {stored:?}");
        if running.is_empty() {
            break;
        }
        let ended = running.remove(0);
        report_applied(&storage, claim_of(&ended), JobOutcome::Completed, at(now)).await;
    }
    assert!(running.is_empty(), "every job ran");
    assert_eq!(started, enqueued, "each key's jobs started in the order they were enqueued");
}

/// Claimers racing on a queue with a limit per key of 2 take exactly two jobs of each
/// key together, never more, round after round, and every job is claimed once.
pub async fn racing_claimers_never_exceed_a_key_limit_together(storage: TestStorage) {
    const KEY_LIMIT: usize = 2;
    const ROUNDS: usize = 6;
    let queue = "keyed";
    let keys = ["r1", "r2", "r3", "r4"];
    set_key_limit(&storage, queue, KEY_LIMIT as u32).await;
    let enqueued = enqueue_interleaved(&storage, queue, &keys, KEY_LIMIT * ROUNDS).await;
    let mut seen = HashSet::new();
    for round in 0..ROUNDS {
        let claimed = race_claims(&storage, queue, 3, at(1)).await;
        let per_key = count_per_key(&claimed);
        let expected: HashMap<String, usize> = keys.iter().map(|key| ((*key).to_owned(), KEY_LIMIT)).collect();
        assert_eq!(per_key, expected, "round {round}: the claimers took exactly the limit of each key together");
        for record in &claimed {
            assert!(seen.insert(record.id), "job {} claimed twice", record.id);
            report_applied(&storage, claim_of(record), JobOutcome::Completed, at(2)).await;
        }
    }
    assert_eq!(seen.len(), enqueued.values().map(Vec::len).sum::<usize>(), "every job was claimed");
}

/// Every way a running job ends frees its key's slot for the next claim: completed,
/// failed with a retry, snoozed, discarded, cancelled while running (once its holder
/// reports), and the rescue of its expired lease.
pub async fn every_ending_of_a_running_job_frees_its_keys_slot(storage: TestStorage) {
    let queue = "keyed";
    set_key_limit(&storage, queue, 1).await;
    enqueue(&storage, keyed_jobs(queue, &[Some("k"); 7]), at(0)).await;
    let endings = [
        JobOutcome::Completed,
        failed("boom", secs(3_600)),
        JobOutcome::Snoozed { delay: secs(3_600) },
        JobOutcome::Discarded { reason: "no".to_owned() },
    ];
    let mut now = 1;
    let hold = async |now| {
        let claimed = claim(&storage, &[queue], 5, at(now)).await;
        assert_eq!(claimed.len(), 1, "one slot for the key");
        assert!(claim(&storage, &[queue], 5, at(now)).await.is_empty(), "the key's slot is taken");
        claimed.into_iter().next().expect("one job is claimed")
    };
    for ending in endings {
        let held = hold(now).await;
        report_applied(&storage, claim_of(&held), ending.clone(), at(now)).await;
        now += 1;
    }

    let held = hold(now).await;
    let cancelled = storage.cancel(held.id, Some(at(now))).await.expect("cancel succeeds");
    assert_eq!(cancelled.state, JobState::Running, "a running job is asked to stop");
    assert!(claim(&storage, &[queue], 5, at(now)).await.is_empty(), "the slot is held until the holder reports");
    report_applied(&storage, claim_of(&held), JobOutcome::Cancelled, at(now)).await;
    now += 1;

    let held = hold(now).await;
    let expired = at(now) + chrono::Duration::from_std(LEASE).expect("the lease fits") + chrono::Duration::seconds(1);
    assert_eq!(storage.rescue_expired(Some(expired)).await.expect("rescue succeeds").rescued, 1);
    assert_eq!(state_of(&storage, held.id).await, JobState::Available);
    assert_eq!(claim(&storage, &[queue], 5, expired).await.len(), 1, "the rescue freed the slot");
}

/// A job whose lease expired keeps its key's slot until it is rescued, while jobs of
/// other keys and without a key are claimed meanwhile.
pub async fn an_expired_lease_holds_its_keys_slot_until_it_is_rescued(storage: TestStorage) {
    let queue = "keyed";
    set_key_limit(&storage, queue, 1).await;
    let ids = enqueue(&storage, keyed_jobs(queue, &[Some("k"), Some("k"), Some("other"), None]), at(0)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 1, at(0)).await), vec![ids[0]]);
    let expired = at(0) + chrono::Duration::from_std(LEASE).expect("the lease fits") + chrono::Duration::seconds(1);
    let meanwhile = claim(&storage, &[queue], 10, expired).await;
    assert_eq!(ids_of(&meanwhile), ids[2..].to_vec(), "the expired lease still holds the key's slot, only its");
    let rescued = storage.rescue_expired(Some(expired)).await.expect("rescue succeeds");
    assert_eq!(rescued.rescued, 1);
    let next = claim(&storage, &[queue], 10, expired).await;
    assert_eq!(next.len(), 1, "the key's slot is free again, and only one");
    let states = [state_of(&storage, ids[0]).await, state_of(&storage, ids[1]).await];
    assert!(states.contains(&JobState::Running) && states.contains(&JobState::Available), "{states:?}");
}

/// A job of a key that was running before its queue got a limit per key counts
/// against the limit once it is set.
pub async fn a_job_running_before_the_key_limit_was_set_counts_against_it(storage: TestStorage) {
    let queue = "keyed";
    let ids = enqueue(&storage, keyed_jobs(queue, &[Some("k"), Some("k"), Some("k"), Some("k")]), at(0)).await;
    let first = claim(&storage, &[queue], 1, at(1)).await;
    assert_eq!(ids_of(&first), vec![ids[0]]);
    set_key_limit(&storage, queue, 1).await;
    assert!(claim(&storage, &[queue], 10, at(2)).await.is_empty(), "the running job holds the key's one slot");
    set_key_limit(&storage, queue, 2).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(3)).await), vec![ids[1]], "one more fits the raised limit");
    report_applied(&storage, claim_of(&first[0]), JobOutcome::Completed, at(4)).await;
    assert_eq!(ids_of(&claim(&storage, &[queue], 10, at(4)).await), vec![ids[2]], "the ended job's slot");
}

/// A concurrency limit and a limit per key apply together: with a concurrency of 3 and
/// 1 per key over five keys, at most three jobs run, of three different keys.
pub async fn the_concurrency_limit_and_the_key_limit_apply_together(storage: TestStorage) {
    let queue = "keyed";
    let limits = QueueLimits::new().concurrency(3).key_concurrency(1);
    storage.set_queue_limits(queue, limits).await.expect("limits are stored");
    let keys: Vec<Option<&str>> =
        ["k1", "k1", "k2", "k2", "k3", "k3", "k4", "k4", "k5", "k5"].into_iter().map(Some).collect();
    let ids = enqueue(&storage, keyed_jobs(queue, &keys), at(0)).await;
    let mut running = claim(&storage, &[queue], 10, at(1)).await;
    assert_eq!(ids_of(&running), vec![ids[0], ids[2], ids[4]], "the first job of each of three keys");
    assert!(claim(&storage, &[queue], 10, at(1)).await.is_empty(), "the queue is full");
    let mut ended = 0;
    let mut now = 2;
    while !running.is_empty() {
        let done = running.remove(0);
        report_applied(&storage, claim_of(&done), JobOutcome::Completed, at(now)).await;
        ended += 1;
        let claimed = claim(&storage, &[queue], 10, at(now)).await;
        assert!(claimed.len() <= 1, "one slot freed: {claimed:?}");
        running.extend(claimed);
        assert!(running.len() <= 3);
        let distinct: HashSet<&str> = running.iter().map(key_of).collect();
        assert_eq!(distinct.len(), running.len(), "one running job per key: {running:?}");
        assert_eq!(running_in(&storage, queue).await, running.len() as u64);
        now += 1;
    }
    assert_eq!(ended, ids.len(), "every job ran");
}

/// A claim looks at no more than [`KEY_LIMIT_SCAN`] of a key-limited queue's waiting
/// jobs: a job of a key with room behind that many jobs of a full key waits, and is
/// claimed once one of them is gone.
pub async fn a_claim_looks_at_no_more_than_the_scan_bound(storage: TestStorage) {
    let queue = "keyed";
    set_key_limit(&storage, queue, 1).await;
    let mut keys = vec![Some("full"); KEY_LIMIT_SCAN + 1];
    keys.push(Some("free"));
    let jobs = keyed_jobs(queue, &keys);
    let free = jobs.last().map(|job| job.id).expect("the job of the free key");
    let mut ids = Vec::new();
    for chunk in jobs.chunks(500) {
        ids.extend(enqueue(&storage, chunk.to_vec(), at(0)).await);
    }
    let first = claim(&storage, &[queue], 1, at(1)).await;
    assert_eq!(ids_of(&first), vec![ids[0]], "the full key's one slot");
    assert!(
        claim(&storage, &[queue], 10, at(1)).await.is_empty(),
        "{KEY_LIMIT_SCAN} waiting jobs of the full key come first"
    );
    storage.cancel(ids[1], Some(at(2))).await.expect("cancel succeeds");
    let claimed = claim(&storage, &[queue], 10, at(2)).await;
    assert_eq!(ids_of(&claimed), vec![free], "{} waiting jobs of the full key come first", KEY_LIMIT_SCAN - 1);
}
