//! Middleware: code that runs around every job's handler on a worker, and around every
//! enqueue of a [`crate::Queue`].
//!
//! A job middleware is an async function of the job's [`JobContext`] and the rest of the
//! chain ([`Next`]): it may act before and after the handler, change or replace what it
//! returns, or not call it at all. Add them with [`crate::WorkerBuilder::middleware`];
//! they run in the order added, the first outermost. Write one as a closure with
//! [`from_fn`], or implement [`Middleware`] on a type that holds state.
//!
//! An enqueue middleware ([`EnqueueMiddleware`], closures with [`enqueue_fn`]) sees each
//! batch of [`NewJob`]s before it is stored and may change them (add metadata, move a
//! queue) or refuse them; add them with [`crate::Queue::middleware`]. The arguments of
//! jobs it changed are checked again against the queue's
//! [`max_args_bytes`](crate::Queue::max_args_bytes). Only enqueues through that `Queue`
//! pass through it: not a `Storage::enqueue` called directly, a PostgreSQL
//! `enqueue_in_tx`, nor the jobs the periodic scheduler enqueues (whose options the
//! schedule declares).
//!
//! ```
//! use haul_core::{JobContext, JobError, middleware::{Next, from_fn}};
//!
//! // Logs how long each job took, whatever it returned.
//! let timing = from_fn(|ctx: JobContext, next: Next| async move {
//!     let started = std::time::Instant::now();
//!     let result = next.run(ctx.clone()).await;
//!     println!("{} took {:?}", ctx.kind(), started.elapsed());
//!     result
//! });
//! # let _ = timing;
//! ```
//!
//! **Why not tower.** A tower `Service` answers `poll_ready` for back-pressure and takes
//! `&mut self`, so each call clones the service; a worker's back-pressure is its slots,
//! and a job runs once. One async function per middleware is what Sidekiq, Oban and
//! River users write, and costs one boxed future per middleware per job (none at all
//! when no middleware is added). A tower layer can still be called from inside one.

use std::{future::Future, sync::Arc};

use async_trait::async_trait;

use crate::{Job, JobContext, JobError, JobId, NewJob, Result, Storage};

/// Code that runs around a job's handler; see the module docs.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Runs around one attempt: call `next.run(ctx)` to run the rest of the chain and
    /// the handler, and return what the attempt returns.
    async fn handle(&self, ctx: JobContext, next: Next) -> std::result::Result<(), JobError>;
}

/// The rest of a middleware chain, ending with the job's handler.
pub struct Next {
    chain: Arc<[Arc<dyn Middleware>]>,
    position: usize,
    job: Box<dyn Job>,
}

impl Next {
    pub(crate) fn new(chain: Arc<[Arc<dyn Middleware>]>, job: Box<dyn Job>) -> Self {
        Self { chain, position: 0, job }
    }

    /// Runs the next middleware, or the handler after the last one.
    pub async fn run(self, ctx: JobContext) -> std::result::Result<(), JobError> {
        match self.chain.get(self.position).cloned() {
            Some(middleware) => {
                let rest = Self { position: self.position + 1, ..self };
                middleware.handle(ctx, rest).await
            }
            None => self.job.perform(ctx).await,
        }
    }
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next").field("remaining", &(self.chain.len() - self.position)).finish_non_exhaustive()
    }
}

/// A [`Middleware`] made from an async closure; see [`from_fn`].
#[derive(Clone, Debug)]
pub struct FnMiddleware<F>(F);

/// A job middleware from an async closure of the context and the rest of the chain.
pub fn from_fn<F, Fut>(function: F) -> FnMiddleware<F>
where
    F: Fn(JobContext, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
{
    FnMiddleware(function)
}

#[async_trait]
impl<F, Fut> Middleware for FnMiddleware<F>
where
    F: Fn(JobContext, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
{
    async fn handle(&self, ctx: JobContext, next: Next) -> std::result::Result<(), JobError> {
        (self.0)(ctx, next).await
    }
}

/// Code that runs around every enqueue of a [`crate::Queue`]; see the module docs.
#[async_trait]
pub trait EnqueueMiddleware: Send + Sync + 'static {
    /// Runs around one batch: call `next.run(jobs)` to store it (through the rest of the
    /// chain) and return the ids, one per job in order, as [`crate::Queue::insert`] does.
    async fn enqueue(&self, jobs: Vec<NewJob>, next: EnqueueNext) -> Result<Vec<JobId>>;
}

/// The rest of an enqueue middleware chain, ending with the storage.
pub struct EnqueueNext {
    chain: Arc<[Arc<dyn EnqueueMiddleware>]>,
    position: usize,
    storage: Arc<dyn Storage>,
    max_args_bytes: usize,
}

impl EnqueueNext {
    pub(crate) fn new(
        chain: Arc<[Arc<dyn EnqueueMiddleware>]>,
        storage: Arc<dyn Storage>,
        max_args_bytes: usize,
    ) -> Self {
        Self { chain, position: 0, storage, max_args_bytes }
    }

    /// Runs the next enqueue middleware, or stores the batch after the last one.
    pub async fn run(self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        match self.chain.get(self.position).cloned() {
            Some(middleware) => {
                let rest = Self { position: self.position + 1, ..self };
                middleware.enqueue(jobs, rest).await
            }
            None => {
                if self.position > 0 {
                    // Middleware ran and may have changed the arguments: checked again,
                    // their depth first (a deep value is dropped without recursion).
                    if let Err(error) = NewJob::validate_batch(&jobs) {
                        for job in jobs {
                            crate::storable::drop_without_recursion(job.args);
                        }
                        return Err(error);
                    }
                    crate::queue::check_args_sizes(&jobs, self.max_args_bytes)?;
                }
                Ok(self.storage.enqueue(crate::EnqueueParams::new(jobs)).await?.ids)
            }
        }
    }
}

impl std::fmt::Debug for EnqueueNext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnqueueNext").field("remaining", &(self.chain.len() - self.position)).finish_non_exhaustive()
    }
}

/// An [`EnqueueMiddleware`] made from an async closure; see [`enqueue_fn`].
#[derive(Clone, Debug)]
pub struct FnEnqueueMiddleware<F>(F);

/// An enqueue middleware from an async closure of the batch and the rest of the chain.
///
/// ```
/// use haul_core::middleware::{EnqueueNext, enqueue_fn};
///
/// // Stamps every job with the tenant of the request that enqueued it.
/// let tenant = enqueue_fn(|mut jobs: Vec<haul_core::NewJob>, next: EnqueueNext| async move {
///     for job in &mut jobs {
///         job.metadata.insert("tenant".to_owned(), "acme".to_owned());
///     }
///     next.run(jobs).await
/// });
/// # let _ = tenant;
/// ```
pub fn enqueue_fn<F, Fut>(function: F) -> FnEnqueueMiddleware<F>
where
    F: Fn(Vec<NewJob>, EnqueueNext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<JobId>>> + Send + 'static,
{
    FnEnqueueMiddleware(function)
}

#[async_trait]
impl<F, Fut> EnqueueMiddleware for FnEnqueueMiddleware<F>
where
    F: Fn(Vec<NewJob>, EnqueueNext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<JobId>>> + Send + 'static,
{
    async fn enqueue(&self, jobs: Vec<NewJob>, next: EnqueueNext) -> Result<Vec<JobId>> {
        (self.0)(jobs, next).await
    }
}
