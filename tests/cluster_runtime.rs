//! Workers in a cluster, through the facade on the memory backend: every running worker
//! is in the registry, one leader at a time runs maintenance, the lead passes on when
//! its leader stops or dies, and pruning deletes batch after batch until nothing is left.
//!
//! Each worker runs over its own [`Counting`] handle on a shared storage, so a test sees
//! which worker called what, and when.

#![allow(clippy::unwrap_used)]

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use haul::{
    JobOutcome, NewJob, Retention, WorkerBuilder,
    prelude::*,
    storage::{
        ClaimParams, Leadership, LeadershipParams, PruneParams, Report, ReportParams, RescueOutcome, Timestamp,
        WorkerBeat,
    },
};
use haul_test_support::{Hooked, StorageHooks};
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};

/// A short leader lease, for the cases where the lead must change hands.
const LEASE: Duration = Duration::from_millis(300);

/// One worker's handle on a shared memory storage, counting the calls it forwards.
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryStorage,
    calls: Arc<Calls>,
}

#[derive(Default)]
struct Calls {
    promote: AtomicUsize,
    rescue: AtomicUsize,
    prune: AtomicUsize,
    beats: AtomicUsize,
    acquires: AtomicUsize,
    /// When each maintenance call (promote, rescue, prune) arrived.
    maintenance_at: Mutex<Vec<Instant>>,
    /// When the last acquisition that storage granted was sent.
    last_granted_at: Mutex<Option<Instant>>,
    /// Acquisitions fail (as if storage could not be reached) while set.
    fail_acquire: AtomicBool,
}

impl Counting {
    fn over(inner: &MemoryStorage) -> Hooked<Self> {
        Hooked::new(Self { inner: inner.clone(), calls: Arc::default() })
    }

    fn maintenance(&self) -> usize {
        self.calls.maintenance_at.lock().unwrap().len()
    }

    fn maintained(&self, at: Instant) {
        self.calls.maintenance_at.lock().unwrap().push(at);
    }
}

#[async_trait]
impl StorageHooks for Counting {
    type Inner = MemoryStorage;
    fn inner(&self) -> &MemoryStorage {
        &self.inner
    }
    async fn promote_due(&self, now: Option<Timestamp>) -> haul::Result<u64> {
        self.maintained(Instant::now());
        self.calls.promote.fetch_add(1, Ordering::SeqCst);
        self.inner.promote_due(now).await
    }
    async fn rescue_expired(&self, now: Option<Timestamp>) -> haul::Result<RescueOutcome> {
        self.maintained(Instant::now());
        self.calls.rescue.fetch_add(1, Ordering::SeqCst);
        self.inner.rescue_expired(now).await
    }
    async fn prune(&self, params: PruneParams) -> haul::Result<u64> {
        self.maintained(Instant::now());
        self.calls.prune.fetch_add(1, Ordering::SeqCst);
        self.inner.prune(params).await
    }
    async fn beat_worker(&self, beat: WorkerBeat) -> haul::Result<()> {
        self.calls.beats.fetch_add(1, Ordering::SeqCst);
        self.inner.beat_worker(beat).await
    }
    async fn acquire_leadership(&self, params: LeadershipParams) -> haul::Result<Option<Leadership>> {
        let sent_at = Instant::now();
        self.calls.acquires.fetch_add(1, Ordering::SeqCst);
        if self.calls.fail_acquire.load(Ordering::SeqCst) {
            return Err(haul::Error::backend(
                self.backend_name(),
                haul::ErrorKind::Connection,
                "acquisitions are cut",
                None,
            ));
        }
        let granted = self.inner.acquire_leadership(params).await?;
        if granted.is_some() {
            *self.calls.last_granted_at.lock().unwrap() = Some(sent_at);
        }
        Ok(granted)
    }
}

fn worker(storage: &Hooked<Counting>, id: &str) -> WorkerBuilder {
    Worker::builder(storage.clone())
        .worker_id(id)
        .queues(["cluster"])
        .concurrency(3)
        .poll_interval(Duration::from_millis(50))
        .maintenance_interval(Duration::from_millis(20))
        .leader_lease(LEASE)
}

async fn leader_of(storage: &MemoryStorage) -> Option<Leadership> {
    storage.leader(None).await.unwrap()
}

async fn listed(storage: &MemoryStorage) -> Vec<String> {
    storage.list_workers(None).await.unwrap().into_iter().map(|record| record.id).collect()
}

/// Waits until `id` leads and returns its leadership.
async fn led_by(storage: &MemoryStorage, id: &str) -> Leadership {
    eventually(&format!("{id} to lead"), || async { leader_of(storage).await.filter(|lead| lead.worker_id == id) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_worker_leads_at_once_and_is_listed_with_what_it_serves() {
    let storage = MemoryStorage::new();
    let handle = Counting::over(&storage);
    let started = Instant::now();
    // The default lease (15 s): leading at once means the first try is at start.
    let running = RunningWorker::start(
        Worker::builder(handle.clone())
            .worker_id("solo")
            .queues(["cluster.a", "cluster.b"])
            .concurrency(3)
            .maintenance_interval(Duration::from_secs(3600))
            .build(),
    );
    led_by(&storage, "solo").await;
    eventually("maintenance to run on the new leader", || async { (handle.maintenance() >= 2).then_some(()) }).await;
    assert!(started.elapsed() < Duration::from_secs(2), "led and maintained at once: {:?}", started.elapsed());

    let records = storage.list_workers(None).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.id, "solo");
    assert_eq!(record.queues, vec!["cluster.a".to_owned(), "cluster.b".to_owned()]);
    assert_eq!((record.concurrency, record.held), (3, 0));
    assert_eq!(record.pid, std::process::id());
    assert!(!record.host.is_empty());
    assert_eq!(record.expires_at - record.last_seen_at, chrono::Duration::seconds(15), "the record lives one lease");

    running.stop().await.unwrap();
    assert_eq!(leader_of(&storage).await, None, "a worker that stops gives the lead up");
    assert_eq!(listed(&storage).await, Vec::<String>::new(), "and leaves the registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_workers_exactly_one_leads_and_only_it_maintains() {
    let storage = MemoryStorage::new();
    let (a, b) = (Counting::over(&storage), Counting::over(&storage));
    let workers = [RunningWorker::start(worker(&a, "a").build()), RunningWorker::start(worker(&b, "b").build())];
    eventually("both workers to be listed", || async { (listed(&storage).await == ["a", "b"]).then_some(()) }).await;
    let lead = eventually("a leader", || leader_of(&storage)).await;
    let (leader, follower) = if lead.worker_id == "a" { (&a, &b) } else { (&b, &a) };

    // Ten renewals: more than three leases, all under the same term.
    let renewals = leader.calls.acquires.load(Ordering::SeqCst) + 10;
    eventually("ten renewals of the lead", || async {
        (leader.calls.acquires.load(Ordering::SeqCst) >= renewals
            && follower.calls.acquires.load(Ordering::SeqCst) >= 5)
            .then_some(())
    })
    .await;
    let still = leader_of(&storage).await.unwrap();
    assert_eq!((still.worker_id.as_str(), still.term), (lead.worker_id.as_str(), lead.term), "the lead never lapsed");
    assert!(leader.calls.promote.load(Ordering::SeqCst) > 0 && leader.calls.rescue.load(Ordering::SeqCst) > 0);
    assert!(leader.calls.prune.load(Ordering::SeqCst) > 0);
    assert_eq!(follower.maintenance(), 0, "the follower never promotes, rescues or prunes");

    for running in workers {
        running.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_hands_the_lead_over_at_once() {
    let storage = MemoryStorage::new();
    let (a, b) = (Counting::over(&storage), Counting::over(&storage));
    let first = RunningWorker::start(worker(&a, "a").build());
    let before = led_by(&storage, "a").await;
    let second = RunningWorker::start(worker(&b, "b").build());
    eventually("b to be listed", || async { listed(&storage).await.contains(&"b".to_owned()).then_some(()) }).await;

    first.stop().await.unwrap();
    let stopped = Instant::now();
    let meanwhile = leader_of(&storage).await;
    assert!(meanwhile.as_ref().is_none_or(|lead| lead.worker_id == "b"), "a gave the lead up: {meanwhile:?}");
    assert_eq!(listed(&storage).await, ["b"], "a left the registry");
    let after = led_by(&storage, "b").await;
    assert!(stopped.elapsed() < LEASE, "b led {:?} after a stopped, within one lease", stopped.elapsed());
    assert!(after.term > before.term, "a new term: {} after {}", after.term, before.term);
    eventually("b to maintain", || async { (b.maintenance() > 0).then_some(()) }).await;

    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_dies_is_replaced_once_its_lease_runs_out() {
    let storage = MemoryStorage::new();
    let (a, b) = (Counting::over(&storage), Counting::over(&storage));
    let first = RunningWorker::start(worker(&a, "a").build());
    led_by(&storage, "a").await;
    let second = RunningWorker::start(worker(&b, "b").build());
    eventually("b to be listed", || async { listed(&storage).await.contains(&"b".to_owned()).then_some(()) }).await;

    // Dropped without a shutdown: nothing is given up, the lease must run out.
    first.abort().await;
    let died = Instant::now();
    led_by(&storage, "b").await;
    let replaced_after = died.elapsed();
    // The lead (three quarters of the lease, counted from the last renewal) plus at
    // most a quarter of the lease until b's next try: one lease; some room for a loaded
    // machine.
    assert!(replaced_after < LEASE * 2, "b led {replaced_after:?} after a died");
    eventually("b to maintain", || async { (b.maintenance() > 0).then_some(()) }).await;
    eventually("a's record to end", || async { (listed(&storage).await == ["b"]).then_some(()) }).await;
    assert!(died.elapsed() < LEASE * 2, "a's record ended within its lease: {:?}", died.elapsed());

    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_may_not_lead_never_leads_nor_maintains() {
    let storage = MemoryStorage::new();
    let (follower, leader) = (Counting::over(&storage), Counting::over(&storage));
    // Alone and first, it would lead if it could.
    let bystander = RunningWorker::start(worker(&follower, "bystander").leader_eligible(false).build());
    eventually("three beats of the bystander", || async {
        (follower.calls.beats.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert_eq!(listed(&storage).await, ["bystander"], "it is in the registry");
    assert_eq!(leader_of(&storage).await, None, "nobody leads");

    let eligible = RunningWorker::start(worker(&leader, "eligible").build());
    led_by(&storage, "eligible").await;
    let beats = follower.calls.beats.load(Ordering::SeqCst) + 5;
    eventually("the leader to maintain while the bystander beats five more times", || async {
        let calls = &leader.calls;
        (calls.promote.load(Ordering::SeqCst) >= 5
            && calls.rescue.load(Ordering::SeqCst) >= 5
            && calls.prune.load(Ordering::SeqCst) >= 1
            && follower.calls.beats.load(Ordering::SeqCst) >= beats)
            .then_some(())
    })
    .await;
    assert_eq!(listed(&storage).await, ["bystander", "eligible"]);
    assert_eq!(follower.calls.acquires.load(Ordering::SeqCst), 0, "it never tries to lead");
    assert_eq!(follower.maintenance(), 0, "it never promotes, rescues or prunes");

    eligible.stop().await.unwrap();
    bystander.stop().await.unwrap();
}

/// Renewals that fail do not extend the lead: the worker stops acting as leader by its
/// own clock, one lease after it sent its last granted acquisition (never later than
/// storage's end of that lease), and leads again once storage answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_fail_stops_acting_within_its_lease() {
    let storage = MemoryStorage::new();
    let handle = Counting::over(&storage);
    let running = RunningWorker::start(worker(&handle, "cut").build());
    let before = led_by(&storage, "cut").await;
    eventually("maintenance", || async { (handle.maintenance() >= 3).then_some(()) }).await;

    handle.calls.fail_acquire.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    eventually("the lead to lapse in storage", || async { leader_of(&storage).await.is_none().then_some(()) }).await;
    let failed = handle.calls.acquires.load(Ordering::SeqCst) + 3;
    eventually("three more failed renewals", || async {
        (handle.calls.acquires.load(Ordering::SeqCst) >= failed).then_some(())
    })
    .await;
    let last_granted = handle.calls.last_granted_at.lock().unwrap().unwrap();
    assert!(last_granted < cut_at);
    let late: Vec<Duration> = handle
        .calls
        .maintenance_at
        .lock()
        .unwrap()
        .iter()
        // The check that the lead is live comes just before the call: a few ms of room.
        .filter(|at| **at > last_granted + LEASE + Duration::from_millis(20))
        .map(|at| *at - last_granted)
        .collect();
    assert!(late.is_empty(), "maintenance after the lead ran out by the worker's clock: {late:?}");

    handle.calls.fail_acquire.store(false, Ordering::SeqCst);
    let again = led_by(&storage, "cut").await;
    assert!(again.term > before.term, "a lapsed lead taken again is a new term");
    let count = handle.maintenance();
    eventually("maintenance again", || async { (handle.maintenance() > count).then_some(()) }).await;
    running.stop().await.unwrap();
}

/// With more finished jobs than one prune batch (10,000), the leader's first pass
/// deletes batch after batch until none is left; the next pass is an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_repeats_batches_until_nothing_is_left() {
    const FINISHED: usize = 10_050;
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let jobs: Vec<NewJob> = (0..FINISHED)
        .map(|n| NewJob::new("cluster.finished", serde_json::json!({ "n": n })).queue("cluster.prune"))
        .collect();
    for chunk in jobs.chunks(1_000) {
        queue.insert(chunk.to_vec()).await.unwrap();
    }
    let claimed = storage.claim(ClaimParams::new(["cluster.prune"], FINISHED)).await.unwrap();
    assert_eq!(claimed.len(), FINISHED);
    let reports =
        claimed.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed }).collect();
    let outcome = storage.report(ReportParams::new(reports)).await.unwrap();
    assert_eq!(outcome.applied.len(), FINISHED);

    let handle = Counting::over(&storage);
    let running = RunningWorker::start(
        worker(&handle, "pruner").retention(Retention::all(Duration::ZERO), Duration::from_secs(3600)).build(),
    );
    eventually("every finished job to be pruned", || async {
        storage.list(ListParams::new().queue("cluster.prune").limit(1)).await.unwrap().is_empty().then_some(())
    })
    .await;
    eventually("the short batch that ends the pass", || async {
        (handle.calls.prune.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    running.stop().await.unwrap();
    assert_eq!(handle.calls.prune.load(Ordering::SeqCst), 2, "one pass: a full batch, then the rest");
}

/// A leader lease under 100 ms (renewals every quarter of it) is refused at start.
#[tokio::test]
async fn a_leader_lease_under_100_ms_is_refused_at_start() {
    let handle = Counting::over(&MemoryStorage::new());
    for lease in [Duration::ZERO, Duration::from_millis(99)] {
        let error = worker(&handle, "short").leader_lease(lease).build().run_until(std::future::ready(())).await;
        assert!(matches!(error, Err(haul::Error::InvalidArgument(_))), "{lease:?}: {error:?}");
    }
    assert_eq!(handle.calls.beats.load(Ordering::SeqCst), 0, "refused before anything runs");
}

// --- helpers ---

/// A worker running in the background until `stop` (a graceful shutdown) or `abort`
/// (dropped, as if its process died).
struct RunningWorker {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<haul::Result<()>>,
}

impl RunningWorker {
    fn start(worker: haul::Worker) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    async fn stop(self) -> haul::Result<()> {
        let _ = self.stop.send(());
        self.handle.await.expect("worker task panicked")
    }

    async fn abort(self) {
        self.handle.abort();
        assert!(self.handle.await.is_err_and(|error| error.is_cancelled()));
    }
}

/// Polls `check` until it yields a value, failing the test after 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
