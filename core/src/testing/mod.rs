//! Testing an application's jobs without running a worker: [`TestJobs`].
//!
//! Applications use it as `haul::testing`, whose page has runnable examples of every
//! call with `#[job]` and the memory backend. The flow:
//!
//! 1. Wrap a storage (memory, or the application's real PostgreSQL or Redis) in a
//!    [`TestJobs`], with the application state its jobs take
//!    ([`TestJobs::state`], like [`WorkerBuilder::state`](crate::WorkerBuilder::state)).
//! 2. Build the application's [`Queue`](crate::Queue) from [`TestJobs::storage`]: every
//!    call through it reads the test's clock, which starts at the real time and moves
//!    only with [`TestJobs::advance`] and [`TestJobs::set_now`]. `run_in(60 s)` is 60 s
//!    after the test clock, and a retry's backoff is counted on it.
//! 3. Run the code under test, then either:
//!    - assert on what it enqueued ([`TestJobs::assert_enqueued`],
//!      [`TestJobs::assert_enqueued_json`], [`TestJobs::refute_enqueued`],
//!      [`TestJobs::all_enqueued`]); or
//!    - run the jobs with [`TestJobs::drain_all`] or [`TestJobs::drain`], which return a
//!      [`DrainSummary`]: each due job runs through the worker's own code (decoding,
//!      state injection, timeouts, panics, retry policy, discard and snooze), one at a
//!      time, its outcome stored as a worker would store it. A failed job is retried
//!      once [`TestJobs::advance`] has moved the clock past its backoff and the next
//!      drain runs.
//!
//! With [`TestJobs::inline`] instead of [`TestJobs::new`], an enqueue through
//! [`TestJobs::storage`] runs the jobs at once, before it returns.

mod assertions;
mod clock;
mod drain;
mod states;
mod storage;

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

pub use drain::DrainSummary;

use crate::{Result, Storage, Timestamp, middleware::Middleware, worker::JobMetricsByKind};
use clock::TestClock;
use drain::{Promote, Queues};
use states::TestStates;
use storage::ClockedStorage;

/// Attempts one drain runs at most, unless [`TestJobs::drain_limit`] says otherwise.
pub const DEFAULT_DRAIN_LIMIT: usize = 10_000;

/// Runs and inspects an application's jobs in a test, over any storage, on a clock the
/// test moves. See the [module docs](self) for the flow.
///
/// Clones share everything: the storage, the clock, the state and the mode.
#[derive(Clone)]
pub struct TestJobs {
    shared: Arc<Shared>,
}

/// What a [`TestJobs`], its clones and the storage handles it gave out share.
struct Shared {
    /// The storage under test.
    storage: Arc<dyn Storage>,
    clock: TestClock,
    states: TestStates,
    /// The job middleware drains run jobs through, outermost first.
    middleware: Mutex<Arc<[Arc<dyn Middleware>]>>,
    /// Whether an enqueue runs the jobs at once.
    inline: bool,
    drain_limit: AtomicUsize,
    /// The metric keys of the jobs drains ran, as a worker keeps them.
    job_metrics: JobMetricsByKind,
}

impl Shared {
    fn drain_limit(&self) -> usize {
        self.drain_limit.load(Ordering::Relaxed)
    }
}

impl TestJobs {
    /// Collect mode: jobs enqueued through [`TestJobs::storage`] are stored, for the
    /// test to assert on or to run with [`TestJobs::drain_all`].
    pub fn new(storage: impl Storage) -> Self {
        Self::with_mode(storage, false)
    }

    /// Inline mode: an enqueue through [`TestJobs::storage`] stores the jobs, then runs,
    /// before it returns, every job then available in any queue, one at a time as
    /// [`TestJobs::drain_all`] does, and every job those runs make available (the jobs
    /// they enqueue, a snooze of zero); its error, if any, is the enqueue's error.
    ///
    /// Nothing due later runs: a job scheduled in the future (`run_in`, `run_at`), a
    /// snooze with a delay and the retry of a failed attempt wait, whatever their delay,
    /// for [`TestJobs::drain`] or [`TestJobs::drain_all`] (after [`TestJobs::advance`]).
    /// Enqueues made while a drain runs its jobs only store: that drain runs them. (A
    /// handler's own task is what tells: an enqueue from a task the handler spawned
    /// starts a drain of its own, counted in neither summary nor limit of the first.)
    pub fn inline(storage: impl Storage) -> Self {
        Self::with_mode(storage, true)
    }

    fn with_mode(storage: impl Storage, inline: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                storage: Arc::new(storage),
                clock: TestClock::starting_now(),
                states: TestStates::default(),
                middleware: Mutex::new(Arc::new([])),
                inline,
                drain_limit: AtomicUsize::new(DEFAULT_DRAIN_LIMIT),
                job_metrics: JobMetricsByKind::default(),
            }),
        }
    }

    /// Registers application state that handlers receive as `State<T>`, like
    /// [`WorkerBuilder::state`](crate::WorkerBuilder::state). A value given later
    /// replaces an earlier one of the same type.
    #[must_use]
    pub fn state<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.shared_state(Arc::new(value))
    }

    /// Registers application state the test keeps a handle to (to look at what the
    /// jobs did with it); handlers receive it as `State<T>` (not `State<Arc<T>>`).
    #[must_use]
    pub fn shared_state<T: Send + Sync + 'static>(self, value: Arc<T>) -> Self {
        self.shared.states.add(value);
        self
    }

    /// Adds a job middleware that drains run jobs through, as
    /// [`WorkerBuilder::middleware`](crate::WorkerBuilder::middleware) does for a worker
    /// (in the order added, the first outermost).
    #[must_use]
    pub fn middleware(self, middleware: impl Middleware) -> Self {
        {
            let mut chain = self.shared.middleware.lock().unwrap_or_else(PoisonError::into_inner);
            let mut extended = chain.to_vec();
            extended.push(Arc::new(middleware));
            *chain = extended.into();
        }
        self
    }

    /// Sets how many attempts one drain (or one inline enqueue) runs at most
    /// (default [`DEFAULT_DRAIN_LIMIT`]). A drain that reaches it with jobs still due
    /// hands the next job back unrun and fails with
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument): a job that snoozes
    /// without delay or enqueues itself would otherwise keep it going forever.
    #[must_use]
    pub fn drain_limit(self, attempts: usize) -> Self {
        self.shared.drain_limit.store(attempts, Ordering::Relaxed);
        self
    }

    /// The storage to build the application's [`Queue`](crate::Queue) from.
    ///
    /// It forwards every call to the storage under test, giving each one the test
    /// clock's time as its `now` when the caller gives none; in inline mode, an enqueue
    /// also runs the jobs (see [`TestJobs::inline`]).
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::new(ClockedStorage { shared: Arc::clone(&self.shared) })
    }

    /// The test clock's time.
    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// Moves the test clock `by` forward. Jobs that come due run at the next drain.
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Sets the test clock to `at` (earlier or later). Jobs that come due run at the
    /// next drain.
    pub fn set_now(&self, at: Timestamp) {
        self.shared.clock.set(at);
    }

    /// Runs the due jobs of `queues` to completion, as [`TestJobs::drain_all`] does for
    /// every queue. Jobs enqueued to other queues, by the test or by the jobs, stay
    /// enqueued.
    pub async fn drain<Q: Into<String>>(&self, queues: impl IntoIterator<Item = Q>) -> Result<DrainSummary> {
        let queues = Queues::Only(queues.into_iter().map(Into::into).collect());
        drain::run(&self.shared, queues, Promote::Yes).await
    }

    /// Runs every due job of every queue to completion, and returns what happened to
    /// each attempt.
    ///
    /// Jobs whose time has come on the test clock (scheduled ones, retries) are made
    /// available; then jobs are claimed one at a time, in the order a worker claims
    /// them (priority, due time, id), run through the worker's own code and their
    /// outcome stored, until no job is available: jobs that the jobs enqueue run too,
    /// and so does a job snoozed with no delay. A failed attempt's retry stays
    /// `retryable` until the clock passes its backoff ([`TestJobs::advance`]) and a
    /// drain runs again. Paused queues are skipped. A job's timeout, if it has one, is
    /// measured in real time. Jobs run one at a time, so a queue's concurrency limit
    /// ([`crate::limits`]) holds them back only while something else (a worker running
    /// beside the test, a lease not yet rescued) takes its slots: the drain then stops
    /// with those jobs still available.
    ///
    /// Fails on a storage error, or when the [drain limit](TestJobs::drain_limit) is
    /// reached with jobs still due.
    pub async fn drain_all(&self) -> Result<DrainSummary> {
        drain::run(&self.shared, Queues::All, Promote::Yes).await
    }
}

impl fmt::Debug for TestJobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestJobs")
            .field("backend", &self.shared.storage.backend_name())
            .field("now", &self.now())
            .field("inline", &self.shared.inline)
            .field("drain_limit", &self.shared.drain_limit())
            .finish_non_exhaustive()
    }
}
