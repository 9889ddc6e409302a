//! What a running handler knows about its job, and the application state it can ask for.

use std::{
    any::{Any, TypeId, type_name},
    fmt,
    ops::Deref,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use foldhash::HashMap;
use tokio_util::sync::CancellationToken;

use crate::{Claim, JobError, JobId, JobRecord, LeaseToken, Timestamp};

/// Why a running job was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The worker is shutting down and the grace period is over.
    Shutdown,
    /// The attempt ran longer than its timeout.
    Timeout,
    /// Someone cancelled the job.
    Cancelled,
    /// The worker lost the job's lease (another worker may hold it now).
    LeaseLost,
}

/// The job a handler is running, and the signal that asks it to stop.
///
/// A handler takes it as an argument (`ctx: JobContext` or `ctx: &JobContext`) and
/// `#[job]` injects it.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<ContextInner>,
    /// Apart from `inner`, so that [`JobContext::with_metadata`] never splits the
    /// attempt's shared state (stop reason, completion mark) in two.
    metadata: Arc<crate::Metadata>,
}

struct ContextInner {
    /// The job as claimed: the context owns the worker's copy, so that naming the job
    /// costs no copy of its kind or queue.
    record: JobRecord,
    token: LeaseToken,
    stop: CancellationToken,
    stop_reason: Mutex<Option<StopReason>>,
    completed: AtomicBool,
    states: Arc<StateMap>,
}

impl JobContext {
    /// A context for one attempt, run under the claim `id` + `token`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: JobId,
        token: LeaseToken,
        kind: impl Into<String>,
        queue: impl Into<String>,
        attempt: u32,
        max_attempts: u32,
        enqueued_at: Timestamp,
        states: Arc<StateMap>,
    ) -> Self {
        Self::with_shared_metadata(id, token, kind, queue, attempt, max_attempts, enqueued_at, states, Arc::default())
    }

    /// [`JobContext::new`] with `metadata`.
    #[allow(clippy::too_many_arguments)]
    fn with_shared_metadata(
        id: JobId,
        token: LeaseToken,
        kind: impl Into<String>,
        queue: impl Into<String>,
        attempt: u32,
        max_attempts: u32,
        enqueued_at: Timestamp,
        states: Arc<StateMap>,
        metadata: Arc<crate::Metadata>,
    ) -> Self {
        let mut record = JobRecord::new(id, kind, serde_json::Value::Null);
        record.queue = queue.into();
        record.attempt = attempt;
        record.max_attempts = max_attempts;
        record.created_at = enqueued_at;
        record.metadata = Arc::clone(&metadata);
        Self::of_record(record, token, states, metadata)
    }

    fn of_record(record: JobRecord, token: LeaseToken, states: Arc<StateMap>, metadata: Arc<crate::Metadata>) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                record,
                token,
                stop: CancellationToken::new(),
                stop_reason: Mutex::new(None),
                completed: AtomicBool::new(false),
                states,
            }),
            metadata,
        }
    }

    /// The context of the attempt a claim of `record` (under `token`) runs. The context
    /// keeps the record, and shares its metadata: nothing is copied.
    pub(crate) fn for_claimed(record: JobRecord, token: LeaseToken, states: Arc<StateMap>) -> Self {
        let metadata = Arc::clone(&record.metadata);
        Self::of_record(record, token, states, metadata)
    }

    /// The job as claimed (for a context built by hand, a record with only what
    /// [`JobContext::new`] was given).
    pub(crate) fn record(&self) -> &JobRecord {
        &self.inner.record
    }

    /// This context with `metadata` as the job's metadata (for contexts built by hand,
    /// e.g. to unit-test a handler or a middleware). The attempt's state (its stop
    /// token and reason, its completion mark) stays shared with the original.
    #[must_use]
    pub fn with_metadata(mut self, metadata: crate::Metadata) -> Self {
        self.metadata = Arc::new(metadata);
        self
    }

    /// The job's metadata (see [`crate::Metadata`]): set at enqueue, by the caller or an
    /// enqueue middleware.
    pub fn metadata(&self) -> &crate::Metadata {
        &self.metadata
    }

    /// A context for calling a job directly in a unit test, with the given state (and a
    /// fresh claim that no storage knows).
    pub fn for_test(states: StateMap) -> Self {
        Self::new(JobId::new(), LeaseToken::new(), "test", "default", 1, 1, chrono::Utc::now(), Arc::new(states))
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.inner.record.id
    }

    /// The claim this attempt runs under: the job id and the lease token that fences
    /// every write of its outcome. Backend extensions use it to write the outcome
    /// themselves (see [`JobContext::mark_completed`]).
    pub fn claim(&self) -> Claim {
        Claim { id: self.inner.record.id, token: self.inner.token }
    }

    /// Records that this attempt's completion was already written to storage, fenced
    /// by [`JobContext::claim`], so the worker must not report an outcome for it.
    ///
    /// For backend extensions that complete a job together with the handler's own
    /// writes, such as haul-postgres's job-scoped transaction, which calls it once its
    /// commit succeeded. A handler must not call it otherwise: a job marked but not
    /// completed in storage stays running until its lease expires and is then rescued.
    ///
    /// Once marked, whatever the handler then returns (or a stop that follows), the
    /// worker writes nothing for the attempt: storage already holds its outcome.
    pub fn mark_completed(&self) {
        self.inner.completed.store(true, Ordering::Release);
    }

    /// Whether [`JobContext::mark_completed`] was called.
    pub fn is_marked_completed(&self) -> bool {
        self.inner.completed.load(Ordering::Acquire)
    }

    /// The job's kind name.
    pub fn kind(&self) -> &str {
        &self.inner.record.kind
    }

    /// The queue it was claimed from.
    pub fn queue(&self) -> &str {
        &self.inner.record.queue
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.record.attempt
    }

    /// How many attempts the job gets.
    pub fn max_attempts(&self) -> u32 {
        self.inner.record.max_attempts
    }

    /// When the job was enqueued.
    pub fn enqueued_at(&self) -> Timestamp {
        self.inner.record.created_at
    }

    /// Fires when the handler should stop: shutdown after the grace period, timeout,
    /// cancellation, or a lost lease. Handlers doing long work should watch it.
    ///
    /// It is for watching: a handler still running when it cancels the token itself
    /// (there is then no [`StopReason`]) is stopped, and its attempt counts as failed.
    /// To give up, return an error.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.inner.stop
    }

    /// Why the stop token fired, if it did.
    pub fn stop_reason(&self) -> Option<StopReason> {
        *self.inner.stop_reason.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fires the stop token with a reason (the first reason wins).
    pub fn stop(&self, reason: StopReason) {
        {
            let mut slot = self.inner.stop_reason.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(reason);
        }
        self.inner.stop.cancel();
    }

    /// The application state of type `T` registered on the worker.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<State<T>, JobError> {
        self.inner.states.get::<T>().map(State).ok_or_else(|| {
            JobError::fail(format!(
                "no state of type `{}` is registered on this worker; add it with Worker::builder(..).state(..)",
                type_name::<T>()
            ))
        })
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.inner.record.id)
            .field("kind", &self.inner.record.kind)
            .field("queue", &self.inner.record.queue)
            .field("attempt", &self.inner.record.attempt)
            .finish_non_exhaustive()
    }
}

/// Application state shared with handlers, injected by `#[job]` for arguments of
/// type `State<T>`.
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Values a `#[job]` handler can receive without them being stored with the job.
pub trait FromContext: Sized {
    /// Extracts the value from the running job's context.
    fn from_context(ctx: &JobContext) -> Result<Self, JobError>;

    /// The application state this value is taken from, if any. `#[job]` records it in
    /// the kind's registration, so that a worker missing it fails when it starts
    /// rather than at each attempt. The default needs none.
    fn required_state() -> Option<StateRequirement> {
        None
    }
}

impl<T: Send + Sync + 'static> FromContext for State<T> {
    fn from_context(ctx: &JobContext) -> Result<Self, JobError> {
        ctx.state::<T>()
    }

    fn required_state() -> Option<StateRequirement> {
        Some(StateRequirement::of::<T>())
    }
}

/// A type of application state that a handler needs from its worker (registered with
/// `Worker::builder(..).state(value)`), as [`FromContext::required_state`] declares it.
///
/// ```
/// use haul_core::{StateMap, StateRequirement};
///
/// struct Mailer;
/// let needed = StateRequirement::of::<Mailer>();
/// assert!(needed.type_name().ends_with("Mailer"));
/// assert!(!StateMap::new().provides(needed));
/// assert!(StateMap::new().with(Mailer).provides(needed));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateRequirement {
    type_id: TypeId,
    type_name: &'static str,
}

impl StateRequirement {
    /// The state of type `T`.
    pub fn of<T: Send + Sync + 'static>() -> Self {
        Self { type_id: TypeId::of::<T>(), type_name: type_name::<T>() }
    }

    /// The identity of the state's type.
    pub fn type_id(&self) -> TypeId {
        self.type_id
    }

    /// The state's type, as Rust names it (for messages).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl FromContext for JobContext {
    fn from_context(ctx: &JobContext) -> Result<Self, JobError> {
        Ok(ctx.clone())
    }
}

/// Application state by type, as registered on a worker.
#[derive(Default)]
pub struct StateMap {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl StateMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the value of type `T`.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// Adds (or replaces) a value of type `T` that the caller keeps sharing.
    pub fn insert_shared<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), value);
    }

    /// Adds `value` and returns the map, for chaining.
    pub fn with<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// The value of type `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values.get(&TypeId::of::<T>()).and_then(|value| Arc::clone(value).downcast::<T>().ok())
    }

    /// Whether the map holds the state `requirement` names.
    pub fn provides(&self, requirement: StateRequirement) -> bool {
        self.values.contains_key(&requirement.type_id)
    }
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMap").field("len", &self.values.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_found_by_type_and_missing_state_is_a_clear_failure() {
        let ctx = JobContext::for_test(StateMap::new().with(41_u32));
        assert_eq!(ctx.state::<u32>().map(|s| *s + 1).ok(), Some(42));
        let missing = ctx.state::<String>().err();
        assert!(missing.is_some_and(|e| e.message().contains("alloc::string::String")));
    }

    #[test]
    fn state_declares_its_type_and_other_injected_values_need_none() {
        let needed = <State<u32> as FromContext>::required_state();
        assert_eq!(needed, Some(StateRequirement::of::<u32>()));
        assert_eq!(needed.map(|needed| needed.type_name()), Some("u32"));
        assert_eq!(<JobContext as FromContext>::required_state(), None);
        let states = StateMap::new().with(1_u32);
        assert!(states.provides(StateRequirement::of::<u32>()));
        assert!(!states.provides(StateRequirement::of::<u64>()));
    }

    #[test]
    fn a_context_exposes_its_claim_and_remembers_a_completion_mark() {
        let ctx = JobContext::for_test(StateMap::new());
        let other = JobContext::for_test(StateMap::new());
        assert_eq!(ctx.claim().id, ctx.id());
        assert_ne!(ctx.claim().token, other.claim().token);
        assert!(!ctx.is_marked_completed());
        ctx.clone().mark_completed();
        assert!(ctx.is_marked_completed());
        assert!(!other.is_marked_completed());
    }

    #[test]
    fn first_stop_reason_wins() {
        let ctx = JobContext::for_test(StateMap::new());
        assert!(!ctx.stop_token().is_cancelled());
        ctx.stop(StopReason::Timeout);
        ctx.stop(StopReason::Shutdown);
        assert!(ctx.stop_token().is_cancelled());
        assert_eq!(ctx.stop_reason(), Some(StopReason::Timeout));
    }
}
