//! Middleware over the backend: job middleware run around the handler on a real
//! worker (in order, replacing or skipping what the handler does, inside the job's
//! timeout and panic handling) and on `haul::testing` drains; enqueue middleware see and
//! change every batch a `Queue` stores, or refuse it whole.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use haul::{
    Error, JobContext, JobError, JobId, JobState, Metadata, NewJob, Queue, RetryPolicy, State,
    middleware::{EnqueueNext, Middleware, Next, enqueue_fn, from_fn},
    testing::{DrainSummary, TestJobs},
};
use serde::{Deserialize, Serialize};

use super::{
    jobs::Tracker,
    worker::{RunningWorker, wait_for_state},
    *,
};

/// The kind name of [`Noted`] jobs.
pub const NOTED_KIND: &str = "haul_tests.middleware.noted";

/// The default queue of [`Noted`] jobs.
pub const NOTED_QUEUE: &str = "mw.noted";

/// The delay between attempts of [`Noted`] jobs.
pub const NOTED_BACKOFF: Duration = Duration::from_millis(50);

/// What a [`Noted`] job's handler returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Act {
    /// Succeed.
    Succeed,
    /// Fail every attempt with [`HANDLER_ERROR`].
    Fail,
    /// Fail the first attempt, succeed later.
    FailFirstAttempt,
}

/// The error of a [`Noted`] job that fails.
pub const HANDLER_ERROR: &str = "the handler fails on purpose";

/// What a handler or a middleware saw of the attempt it ran in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Who saw it: `handler`, or a middleware's name.
    pub by: String,
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// The attempt.
    pub attempt: u32,
    /// The attempts the job gets.
    pub max_attempts: u32,
    /// Its metadata.
    pub metadata: Metadata,
}

impl Seen {
    fn of(by: &str, ctx: &JobContext) -> Self {
        Self {
            by: by.to_owned(),
            id: ctx.id(),
            kind: ctx.kind().to_owned(),
            queue: ctx.queue().to_owned(),
            attempt: ctx.attempt(),
            max_attempts: ctx.max_attempts(),
            metadata: ctx.metadata().clone(),
        }
    }
}

/// What handlers and middleware did, per job, in order: one note per step (`handler`,
/// `a-before`…), and the contexts they saw.
///
/// Register it on the worker with `.state(journal.clone())`; the case keeps a clone.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    entries: Arc<Mutex<Vec<(JobId, String)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Journal {
    /// Notes that `what` happened in the attempt of job `id`.
    pub fn note(&self, id: JobId, what: impl Into<String>) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push((id, what.into()));
    }

    /// The notes about job `id`, in order.
    pub fn notes(&self, id: JobId) -> Vec<String> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().filter(|(of, _)| *of == id).map(|(_, what)| what.clone()).collect()
    }

    /// Records what `by` saw of `ctx`.
    pub fn saw(&self, by: &str, ctx: &JobContext) {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).push(Seen::of(by, ctx));
    }

    /// What `by` saw in the attempts of job `id`, in order.
    pub fn seen(&self, by: &str, id: JobId) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter().filter(|seen| seen.by == by && seen.id == id).cloned().collect()
    }
}

/// Notes `handler` and what it saw in the worker's [`Journal`], then does what `act` says.
#[haul::job(name = "haul_tests.middleware.noted", queue = "mw.noted", backoff = RetryPolicy::fixed(NOTED_BACKOFF))]
pub async fn noted(journal: State<Journal>, ctx: &JobContext, act: Act) -> Result<(), JobError> {
    journal.note(ctx.id(), "handler");
    journal.saw("handler", ctx);
    match act {
        Act::Succeed => Ok(()),
        Act::Fail => Err(JobError::fail(HANDLER_ERROR)),
        Act::FailFirstAttempt if ctx.attempt() == 1 => Err(JobError::fail(HANDLER_ERROR)),
        Act::FailFirstAttempt => Ok(()),
    }
}

/// A middleware that notes `<name>-before` and `<name>-after` around the rest of the
/// chain in `journal`.
fn recording(journal: &Journal, name: &'static str) -> impl Middleware {
    let journal = journal.clone();
    from_fn(move |ctx: JobContext, next: Next| {
        let journal = journal.clone();
        async move {
            journal.note(ctx.id(), format!("{name}-before"));
            let result = next.run(ctx.clone()).await;
            journal.note(ctx.id(), format!("{name}-after"));
            result
        }
    })
}

/// A worker on `queue` with `journal` as state and `middleware` in that order.
fn start(
    storage: &TestStorage,
    queue: &str,
    journal: &Journal,
    configure: impl FnOnce(haul::WorkerBuilder) -> haul::WorkerBuilder,
) -> RunningWorker {
    RunningWorker::start(storage, queue, &Tracker::new(), |builder| configure(builder.state(journal.clone())))
}

/// Enqueues a [`Noted`] job doing `act` on `queue` through `producer`, with `max_attempts`.
async fn enqueue_noted(producer: &Queue, queue: &str, act: Act, max_attempts: u32) -> JobId {
    producer.enqueue(Noted::new(act)).queue(queue).max_attempts(max_attempts).await.expect("enqueue succeeds")
}

/// Two middleware run in the order added, the first outermost, around the handler.
pub async fn middleware_run_in_the_order_added_the_first_outermost(storage: TestStorage) {
    let queue = "mw.order";
    let journal = Journal::default();
    let worker = start(&storage, queue, &journal, |builder| {
        builder.middleware(recording(&journal, "a")).middleware(recording(&journal, "b"))
    });
    let id = enqueue_noted(&Queue::new(storage.clone()), queue, Act::Succeed, 3).await;
    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;

    assert_eq!(journal.notes(id), ["a-before", "b-before", "handler", "b-after", "a-after"]);
    assert_eq!(record.attempt, 1);
}

/// A middleware can replace what the handler returned: a failure it turns into success
/// completes the job on that attempt, and a success it turns into a discard ends the
/// job discarded with the middleware's reason.
pub async fn a_middleware_can_replace_the_handlers_result(storage: TestStorage) {
    let queue = "mw.replace";
    let journal = Journal::default();
    let swap = from_fn(|ctx: JobContext, next: Next| async move {
        match next.run(ctx).await {
            Ok(()) => Err(JobError::discard("the middleware refuses success")),
            Err(error) if error.control().is_none() => Ok(()),
            Err(error) => Err(error),
        }
    });
    let worker = start(&storage, queue, &journal, |builder| builder.middleware(swap));
    let producer = Queue::new(storage.clone());
    let failing = enqueue_noted(&producer, queue, Act::Fail, 3).await;
    let succeeding = enqueue_noted(&producer, queue, Act::Succeed, 3).await;
    let completed = wait_for_state(&storage, failing, JobState::Completed).await;
    let discarded = wait_for_state(&storage, succeeding, JobState::Discarded).await;
    worker.stop().await;

    assert_eq!(completed.attempt, 1, "the failure became a success on the first attempt");
    assert!(completed.errors.is_empty(), "no failure was recorded: {:?}", completed.errors);
    assert_eq!(discarded.attempt, 1);
    let reasons: Vec<&str> = discarded.errors.iter().map(|error| error.message.as_str()).collect();
    assert_eq!(reasons, ["the middleware refuses success"]);
    assert_eq!(journal.notes(failing), ["handler"]);
    assert_eq!(journal.notes(succeeding), ["handler"]);
}

/// A middleware that returns without calling `next` skips the handler: the job ends as
/// the middleware says (completed) and its handler never runs.
pub async fn a_middleware_that_does_not_call_next_skips_the_handler(storage: TestStorage) {
    let queue = "mw.skip";
    let journal = Journal::default();
    let skip = from_fn(|_ctx: JobContext, _next: Next| async { Ok(()) });
    let worker =
        start(&storage, queue, &journal, |builder| builder.middleware(recording(&journal, "outer")).middleware(skip));
    let id = enqueue_noted(&Queue::new(storage.clone()), queue, Act::Fail, 3).await;
    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;

    assert_eq!(record.attempt, 1);
    assert!(record.errors.is_empty());
    assert_eq!(journal.notes(id), ["outer-before", "outer-after"], "the handler never ran");
}

/// A middleware sees the job's metadata and the context the handler gets: its id,
/// kind, queue, attempt and attempts, on every attempt.
pub async fn a_middleware_sees_the_jobs_metadata_and_context(storage: TestStorage) {
    let queue = "mw.context";
    let journal = Journal::default();
    let watcher = {
        let journal = journal.clone();
        from_fn(move |ctx: JobContext, next: Next| {
            journal.saw("middleware", &ctx);
            next.run(ctx)
        })
    };
    let worker = start(&storage, queue, &journal, |builder| builder.middleware(watcher));
    let id = Queue::new(storage.clone())
        .enqueue(Noted::new(Act::FailFirstAttempt))
        .queue(queue)
        .max_attempts(4)
        .metadata("tenant", "acme")
        .metadata("request", "r-7")
        .await
        .expect("enqueue succeeds");
    wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;

    let metadata: Metadata = [("tenant", "acme"), ("request", "r-7")]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    let expected: Vec<Seen> = [1, 2]
        .into_iter()
        .map(|attempt| Seen {
            by: "middleware".to_owned(),
            id,
            kind: NOTED_KIND.to_owned(),
            queue: queue.to_owned(),
            attempt,
            max_attempts: 4,
            metadata: metadata.clone(),
        })
        .collect();
    assert_eq!(journal.seen("middleware", id), expected, "the middleware saw each attempt's context");
    let by_handler: Vec<Seen> = expected.into_iter().map(|seen| Seen { by: "handler".to_owned(), ..seen }).collect();
    assert_eq!(journal.seen("handler", id), by_handler, "the handler got the context the middleware saw");
}

/// A middleware that panics fails the attempt as a panicking handler does (the panic
/// message recorded, the job retried), and the worker keeps running.
pub async fn a_panic_in_a_middleware_is_a_failed_attempt(storage: TestStorage) {
    let queue = "mw.panic";
    let journal = Journal::default();
    let panics_first = from_fn(|ctx: JobContext, next: Next| async move {
        if ctx.attempt() == 1 {
            panic!("middleware kaboom 3e9d");
        }
        next.run(ctx).await
    });
    let worker = start(&storage, queue, &journal, |builder| builder.middleware(panics_first));
    let id = enqueue_noted(&Queue::new(storage.clone()), queue, Act::Succeed, 3).await;
    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;

    assert_eq!(record.attempt, 2, "the panicking attempt was spent and retried");
    assert_eq!(record.errors.len(), 1, "{:?}", record.errors);
    assert_eq!(record.errors[0].attempt, 1);
    assert!(record.errors[0].message.contains("middleware kaboom 3e9d"), "{:?}", record.errors);
    assert_eq!(journal.notes(id), ["handler"], "the handler ran only on the second attempt");
}

/// A job's timeout covers its middleware: a middleware that sleeps past it times the
/// attempt out (recorded as such, retried), and the handler behind it never runs.
pub async fn the_jobs_timeout_covers_its_middleware(storage: TestStorage) {
    let queue = "mw.timeout";
    let journal = Journal::default();
    let slow_first = from_fn(|ctx: JobContext, next: Next| async move {
        if ctx.attempt() == 1 {
            tokio::time::sleep(PATIENCE).await;
        }
        next.run(ctx).await
    });
    let worker = start(&storage, queue, &journal, |builder| builder.middleware(slow_first));
    let id = Queue::new(storage.clone())
        .enqueue(Noted::new(Act::Succeed))
        .queue(queue)
        .max_attempts(2)
        .timeout(Duration::from_millis(200))
        .await
        .expect("enqueue succeeds");
    let record = wait_for_state(&storage, id, JobState::Completed).await;
    worker.stop().await;

    assert_eq!(record.attempt, 2);
    assert_eq!(record.errors.len(), 1, "{:?}", record.errors);
    assert_eq!(record.errors[0].attempt, 1);
    assert!(record.errors[0].message.contains("timed out"), "{:?}", record.errors);
    let attempts: Vec<u32> = journal.seen("handler", id).iter().map(|seen| seen.attempt).collect();
    assert_eq!(attempts, vec![2], "the handler ran only on the second attempt");
}

/// An enqueue middleware sees every batch a `Queue` stores, one call per batch, and
/// the metadata it adds is stored with every job (next to the job's own) and read by
/// the handler from its context.
pub async fn an_enqueue_middleware_adds_metadata_to_every_job_of_a_batch(storage: TestStorage) {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let stamp = {
        let batches = Arc::clone(&batches);
        enqueue_fn(move |mut jobs: Vec<NewJob>, next: EnqueueNext| {
            batches.lock().unwrap_or_else(PoisonError::into_inner).push(jobs.len());
            for job in &mut jobs {
                job.metadata.insert("tenant".to_owned(), "acme".to_owned());
            }
            next.run(jobs)
        })
    };
    let producer = Queue::new(storage.clone()).middleware(stamp);
    let many = producer.enqueue_many((0..3).map(|_| Noted::new(Act::Succeed))).await.expect("enqueue succeeds");
    assert_eq!(many.len(), 3);
    let one = producer.enqueue(Noted::new(Act::Succeed)).metadata("request", "r-1").await.expect("enqueue succeeds");
    assert_eq!(*batches.lock().unwrap_or_else(PoisonError::into_inner), vec![3, 1], "one call per batch");

    let tenant: Metadata = [("tenant".to_owned(), "acme".to_owned())].into();
    let mut both = tenant.clone();
    both.insert("request".to_owned(), "r-1".to_owned());
    let expected: Vec<(JobId, &Metadata)> =
        many.iter().map(|id| (*id, &tenant)).chain(std::iter::once((one, &both))).collect();
    for (id, metadata) in &expected {
        assert_eq!(&&*get(&storage, *id).await.metadata, metadata, "job {id} is stored with the metadata");
    }

    let journal = Journal::default();
    let worker = start(&storage, NOTED_QUEUE, &journal, |builder| builder);
    for (id, _) in &expected {
        wait_for_state(&storage, *id, JobState::Completed).await;
    }
    worker.stop().await;
    for (id, metadata) in &expected {
        let seen: Vec<Metadata> = journal.seen("handler", *id).into_iter().map(|seen| seen.metadata).collect();
        assert_eq!(&seen, &[(*metadata).clone()], "the handler of job {id} read the metadata");
    }
}

/// An enqueue middleware that returns an error refuses the batch: the enqueue fails
/// with that error and none of its jobs is stored.
pub async fn an_enqueue_middleware_that_fails_stores_nothing(storage: TestStorage) {
    let calls = Arc::new(Mutex::new(0_usize));
    let counting = {
        let calls = Arc::clone(&calls);
        enqueue_fn(move |jobs: Vec<NewJob>, next: EnqueueNext| {
            *calls.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            next.run(jobs)
        })
    };
    let refuse = enqueue_fn(|jobs: Vec<NewJob>, _next: EnqueueNext| async move {
        drop(jobs);
        Err(Error::InvalidArgument("refused by the enqueue middleware".into()))
    });
    let producer = Queue::new(storage.clone()).middleware(counting).middleware(refuse);

    let refused = |error: &Error| matches!(error, Error::InvalidArgument(message) if message.contains("refused by"));
    let error = producer.enqueue_many((0..3).map(|_| Noted::new(Act::Succeed))).await.expect_err("a refused batch");
    assert!(refused(&error), "{error:?}");
    let error = producer.enqueue(Noted::new(Act::Succeed)).await.expect_err("a refused job");
    assert!(refused(&error), "{error:?}");
    assert_eq!(*calls.lock().unwrap_or_else(PoisonError::into_inner), 2, "the outer middleware saw both batches");
    assert_eq!(total_jobs(&storage).await, 0, "nothing of a refused batch is stored");
}

/// An enqueue middleware that adds 2,000 bytes to each job's arguments.
fn padding() -> impl haul::middleware::EnqueueMiddleware {
    enqueue_fn(|mut jobs: Vec<NewJob>, next: EnqueueNext| {
        for job in &mut jobs {
            if let Some(args) = job.args.as_object_mut() {
                args.insert("padding".to_owned(), serde_json::Value::String("x".repeat(2_000)));
            }
        }
        next.run(jobs)
    })
}

/// Arguments an enqueue middleware grows past the queue's `max_args_bytes` are refused
/// like any oversized arguments: the batch fails with `PayloadTooLarge` and nothing is
/// stored; arguments it leaves within the limit are stored.
pub async fn arguments_an_enqueue_middleware_grows_past_the_limit_are_refused(storage: TestStorage) {
    let producer = Queue::new(storage.clone()).max_args_bytes(1_024).middleware(padding());
    let error = producer.enqueue(Noted::new(Act::Succeed)).await.expect_err("grown arguments are refused");
    assert!(matches!(error, Error::PayloadTooLarge { limit: 1_024, .. }), "{error:?}");
    assert_eq!(total_jobs(&storage).await, 0, "nothing of a refused batch is stored");

    let roomy = Queue::new(storage.clone()).max_args_bytes(4_096).middleware(padding());
    roomy.enqueue(Noted::new(Act::Succeed)).await.expect("arguments within the limit are stored");
    assert_eq!(total_jobs(&storage).await, 1);
}

/// `haul::testing` drains run jobs through the middleware given to `TestJobs`, in the
/// order added, as a worker does.
pub async fn test_jobs_drains_run_jobs_through_the_middleware(storage: TestStorage) {
    let journal = Journal::default();
    let forgive = from_fn(|ctx: JobContext, next: Next| async move {
        match next.run(ctx).await {
            Err(error) if error.control().is_none() => Ok(()),
            other => other,
        }
    });
    let jobs =
        TestJobs::new(storage).state(journal.clone()).middleware(recording(&journal, "outer")).middleware(forgive);
    let producer = Queue::new(jobs.storage());
    let succeeds = enqueue_noted(&producer, "mw.testing", Act::Succeed, 3).await;
    let fails = enqueue_noted(&producer, "mw.testing", Act::Fail, 3).await;

    let summary = jobs.drain_all().await.expect("the drain succeeds");
    assert_eq!(summary, DrainSummary { completed: 2, ..DrainSummary::default() }, "the failure was forgiven");
    for id in [succeeds, fails] {
        assert_eq!(journal.notes(id), ["outer-before", "handler", "outer-after"], "job {id}");
        let record = get(&jobs.storage(), id).await;
        assert_eq!((record.state, record.attempt), (JobState::Completed, 1));
        assert!(record.errors.is_empty());
    }
}
