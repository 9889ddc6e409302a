//! The producer handle: enqueue typed jobs, and the operator's calls on them.

mod debug;

use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use crate::{
    Error, Job, JobId, JobRecord, ListParams, NewJob, QueueCounts, Result, RunAt, Storage, Timestamp, Unique,
    job::{check_kind_not_duplicated, encode_args_sized},
    middleware::{EnqueueMiddleware, EnqueueNext},
    validate_queue_name,
};

/// A job type the queue can enqueue: a [`Job`] that serializes, and deserializes again
/// (every enqueue checks that its arguments read back).
pub trait EnqueueJob: Job + serde::Serialize + serde::de::DeserializeOwned {}

impl<J: Job + serde::Serialize + serde::de::DeserializeOwned> EnqueueJob for J {}

/// Largest serialized arguments accepted by default (1 MiB).
pub const DEFAULT_MAX_ARGS_BYTES: usize = 1 << 20;

/// Enqueues jobs into a storage, and gives an operator's calls on them
/// (cancel, retry, get, list, counts, pause, resume). Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    storage: Arc<dyn Storage>,
    max_args_bytes: usize,
    middleware: Arc<[Arc<dyn EnqueueMiddleware>]>,
}

impl Queue {
    /// A producer for `storage`.
    pub fn new(storage: impl Storage) -> Self {
        Self { storage: Arc::new(storage), max_args_bytes: DEFAULT_MAX_ARGS_BYTES, middleware: Arc::new([]) }
    }

    /// Adds an enqueue middleware (see [`crate::middleware`]): every batch this queue
    /// enqueues (one job or many) passes through it before it is stored, in the order
    /// middleware were added, the first outermost. Jobs the middleware changes are still
    /// checked by the storage ([`NewJob::validate_batch`]).
    pub fn middleware(mut self, middleware: impl EnqueueMiddleware) -> Self {
        let mut chain = self.middleware.to_vec();
        chain.push(Arc::new(middleware));
        self.middleware = chain.into();
        self
    }

    /// Sets the largest serialized arguments accepted ([`Error::PayloadTooLarge`] above
    /// it), on every path: [`Queue::enqueue`], [`Queue::enqueue_many`] and [`Queue::insert`].
    pub fn max_args_bytes(mut self, limit: usize) -> Self {
        self.max_args_bytes = limit;
        self
    }

    /// The storage this queue writes to.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Starts enqueueing `job`; set options on the returned builder, then `.await` it.
    pub fn enqueue<J: EnqueueJob>(&self, job: J) -> Enqueue<'_> {
        Enqueue { queue: self, job: self.prepare(&job) }
    }

    /// Enqueues many jobs of one kind in one atomic batch, with their kind's options.
    pub async fn enqueue_many<J, I>(&self, jobs: I) -> Result<Vec<JobId>>
    where
        J: EnqueueJob,
        I: IntoIterator<Item = J>,
    {
        let jobs = jobs.into_iter().map(|job| self.prepare(&job)).collect::<Result<Vec<_>>>()?;
        self.store(jobs).await
    }

    /// Inserts prepared jobs in one atomic batch, after checking each one
    /// ([`NewJob::validate_batch`]) and the size of its arguments against
    /// [`Queue::max_args_bytes`].
    pub async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        if let Err(error) = NewJob::validate_batch(&jobs) {
            // Refused arguments may be nested thousands of levels deep.
            for job in jobs {
                crate::storable::drop_without_recursion(job.args);
            }
            return Err(error);
        }
        check_args_sizes(&jobs, self.max_args_bytes)?;
        self.store(jobs).await
    }

    /// Stores jobs that [`Queue::prepare`] made through the enqueue middleware: their
    /// arguments were size- and depth-checked there (sizes are checked again after
    /// middleware, which may have changed them), and the storage validates the rest
    /// ([`NewJob::validate_batch`]).
    async fn store(&self, #[allow(unused_mut)] mut jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        // The current span's trace context into each job's metadata (hence the `mut`).
        #[cfg(feature = "opentelemetry")]
        crate::otel::inject(&mut jobs);
        EnqueueNext::new(Arc::clone(&self.middleware), Arc::clone(&self.storage), self.max_args_bytes).run(jobs).await
    }

    /// Turns a typed job into its stored form with its kind's options.
    ///
    /// Refuses arguments over [`Queue::max_args_bytes`] ([`Error::PayloadTooLarge`]),
    /// and arguments that could be stored but never run: nested deeper than
    /// [`crate::MAX_ARGS_DEPTH`] ([`Error::InvalidArgument`]), or that do not read back
    /// as the job's type ([`Error::Serialization`]; e.g. a NaN or infinite `f64`, which
    /// JSON stores as `null`).
    ///
    /// Refuses too a job whose kind name two job types of this binary register
    /// ([`Error::DuplicateKind`]): its workers could not tell which one to run.
    pub fn prepare<J: EnqueueJob>(&self, job: &J) -> Result<NewJob> {
        prepare_job(job, self.max_args_bytes)
    }

    /// Cancels a job (see [`crate::Admin::cancel`]).
    pub async fn cancel(&self, id: JobId) -> Result<JobRecord> {
        self.storage.cancel(id, None).await
    }

    /// Makes a discarded, cancelled or waiting job available now (see [`crate::Admin::retry`]).
    pub async fn retry(&self, id: JobId) -> Result<JobRecord> {
        self.storage.retry(id, None).await
    }

    /// Looks up a job.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.storage.get(id).await
    }

    /// Lists jobs.
    pub async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        self.storage.list(params).await
    }

    /// Counts jobs per queue and state.
    pub async fn counts(&self) -> Result<Vec<QueueCounts>> {
        self.storage.counts().await
    }

    /// Pauses a queue: its jobs are not claimed until it is resumed.
    pub async fn pause(&self, queue: &str) -> Result<()> {
        validate_queue_name(queue)?;
        self.storage.pause_queue(queue).await
    }

    /// Resumes a paused queue.
    pub async fn resume(&self, queue: &str) -> Result<()> {
        validate_queue_name(queue)?;
        self.storage.resume_queue(queue).await
    }

    /// Stores `queue`'s limits, which every worker obeys (see [`crate::limits`]);
    /// [`crate::QueueLimits::new`] removes them.
    pub async fn set_limits(&self, queue: &str, limits: crate::QueueLimits) -> Result<()> {
        validate_queue_name(queue)?;
        limits.validate()?;
        self.storage.set_queue_limits(queue, limits).await
    }
}

/// [`Queue::prepare`] with `max_args_bytes` as the size limit.
pub(crate) fn prepare_job<J: EnqueueJob>(job: &J, max_args_bytes: usize) -> Result<NewJob> {
    let kind = job.typetag_name();
    check_kind_not_duplicated(kind)?;
    let (args, size) = encode_args_sized(job)?;
    if size > max_args_bytes {
        return Err(Error::PayloadTooLarge { kind: kind.to_owned(), size, limit: max_args_bytes });
    }
    if let Err(source) = J::deserialize(&args) {
        return Err(Error::Serialization { kind: kind.to_owned(), source });
    }
    let options = job.options();
    let mut new = NewJob::new(kind, args)
        .queue(options.queue.into_owned())
        .priority(options.priority)
        .max_attempts(options.max_attempts);
    new.timeout = options.timeout;
    new.limit_key = job.limit_key();
    if options.unique {
        new.unique = Some(Unique::by_args(&new.kind, &new.args));
    }
    Ok(new)
}

/// Refuses the batch if a job's serialized arguments exceed `limit` bytes
/// ([`Error::PayloadTooLarge`]).
pub(crate) fn check_args_sizes(jobs: &[NewJob], limit: usize) -> Result<()> {
    for job in jobs {
        let size = crate::json_len(&job.args);
        if size > limit {
            return Err(Error::PayloadTooLarge { kind: job.kind.clone(), size, limit });
        }
    }
    Ok(())
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("backend", &self.storage.backend_name())
            .field("max_args_bytes", &self.max_args_bytes)
            .field("middleware", &self.middleware.len())
            .finish()
    }
}

/// A job being enqueued: set per-enqueue options, then `.await` it for its id.
#[must_use = "an enqueue does nothing until it is awaited"]
pub struct Enqueue<'a> {
    queue: &'a Queue,
    job: Result<NewJob>,
}

impl Enqueue<'_> {
    fn update(mut self, change: impl FnOnce(&mut NewJob)) -> Self {
        if let Ok(job) = self.job.as_mut() {
            change(job);
        }
        self
    }

    /// Runs the job no earlier than `at`.
    pub fn run_at(self, at: Timestamp) -> Self {
        self.update(|job| job.run_at = RunAt::At(at))
    }

    /// Runs the job no earlier than `delay` from now (the storage's clock).
    pub fn run_in(self, delay: Duration) -> Self {
        self.update(|job| job.run_at = RunAt::In(delay))
    }

    /// Overrides the priority (lower runs first).
    pub fn priority(self, priority: i16) -> Self {
        self.update(|job| job.priority = priority)
    }

    /// Overrides the queue.
    pub fn queue(self, queue: impl Into<String>) -> Self {
        let queue = queue.into();
        self.update(|job| job.queue = queue)
    }

    /// Overrides the number of attempts.
    pub fn max_attempts(self, max_attempts: u32) -> Self {
        self.update(|job| job.max_attempts = max_attempts)
    }

    /// Overrides the per-attempt timeout.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.update(|job| job.timeout = Some(timeout))
    }

    /// Adds a metadata entry (see [`crate::Metadata`]), read back by the handler with
    /// [`crate::JobContext::metadata`].
    pub fn metadata(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        self.update(|job| {
            job.metadata.insert(key, value);
        })
    }

    /// Sets the job's limit key, which it counts against in its queue's per-key limits
    /// ([`crate::QueueLimits::key_concurrency`]), e.g. a customer id.
    pub fn limit_key(self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.update(|job| job.limit_key = Some(key))
    }

    /// Makes the job unique by its kind and arguments among unfinished jobs: while such
    /// a job exists, this enqueue inserts nothing and returns that job's id.
    pub fn unique(self) -> Self {
        self.update(|job| job.unique = Some(Unique::by_args(&job.kind, &job.args)))
    }

    /// Makes the job unique as `unique` says (key, blocking states, time window).
    pub fn unique_with(self, unique: Unique) -> Self {
        self.update(|job| job.unique = Some(unique))
    }

    /// The stored form this enqueue would insert.
    pub fn into_new_job(self) -> Result<NewJob> {
        self.job
    }
}

impl<'a> IntoFuture for Enqueue<'a> {
    type Output = Result<JobId>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<JobId>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let ids = self.queue.store(vec![self.job?]).await?;
            ids.into_iter().next().ok_or_else(|| Error::InvalidArgument("the storage returned no id".into()))
        })
    }
}
