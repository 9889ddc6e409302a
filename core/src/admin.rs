//! The operators' seam: everything the `haul` CLI and the dashboard read or change.
//!
//! [`Admin`] holds the inspection calls (get, list, counts, workers, schedules) and
//! the operator actions (cancel, retry, delete, pause and resume, one job or every job
//! a [`JobFilter`] matches). Every [`Storage`](crate::Storage) is an `Admin` (it is a
//! supertrait), so an operator tool takes an `Arc<dyn Admin>` or the
//! `Arc<dyn Storage>` that `haul::connect` returns, and a worker never needs this
//! trait in scope.
//!
//! **Unstable until 1.0**, like `Storage`; the conformance suite holds every backend
//! to the contracts below.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;

use crate::{
    Error, JobId, JobRecord, JobState, Leadership, PeriodicRecord, QueueLimits, QueueLimitsRecord, Result,
    ThroughputSample, Timestamp, WorkerRecord,
};

/// How many jobs the default bulk calls read per page of [`Admin::list`].
const BULK_PAGE: usize = 500;

/// Operator calls: inspection and actions on jobs, queues and schedules. See the
/// module docs.
///
/// The bulk calls ([`Admin::retry_jobs`], [`Admin::cancel_jobs`],
/// [`Admin::delete_jobs`]) judge each job by its state at the moment it is changed: a
/// job that became `running` since it was listed is skipped, never retried or deleted
/// under its holder's feet, and a job that left the filter's states meanwhile is left
/// alone too. Their default implementations page through [`Admin::list`] and apply
/// the one-job call to each match, which re-checks only the first rule; the memory,
/// PostgreSQL and Redis backends override them to check both in the same atomic step.
#[async_trait]
pub trait Admin: Send + Sync + 'static {
    /// Looks up one job.
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>>;

    /// Lists the first `params.limit` jobs matching `params.filter` whose id is greater
    /// than `params.after`, in id (creation) order: exactly `limit` jobs when at least
    /// that many match, so a shorter page is the last. Pass the last id of a page as
    /// the next page's `after` (keyset pagination: a page costs about the same however
    /// deep it is). A shared storage should list one state without reading every
    /// stored job (PostgreSQL by index, Redis by state set; memory scans its map).
    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>>;

    /// Counts jobs per queue and state, tells which queues are paused, and gives each
    /// queue's [`QueueCounts::next_available_at`] (found by index, without reading every
    /// available job).
    async fn counts(&self) -> Result<Vec<QueueCounts>>;

    /// Cancels a job. A scheduled, available or retryable job becomes `cancelled` and
    /// never runs; a running job keeps running until its holder learns of the request
    /// through [`Storage::heartbeat`](crate::Storage::heartbeat). A finished job is an
    /// [`Error::InvalidState`].
    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord>;

    /// Makes a job that is not running available now (a finished, scheduled, retryable
    /// or available one). If its attempts are used up it gets one more. A running job is
    /// an [`Error::InvalidState`].
    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord>;

    /// Deletes a job that is not running, with everything stored about it (its
    /// uniqueness key no longer blocks new jobs). A running job is an
    /// [`Error::InvalidState`] (cancel it first); an unknown id is [`Error::NotFound`].
    async fn delete(&self, id: JobId) -> Result<()>;

    /// Stops claims from `queue` until it is resumed. Enqueueing still works.
    async fn pause_queue(&self, queue: &str) -> Result<()>;

    /// Lets claims from `queue` happen again.
    async fn resume_queue(&self, queue: &str) -> Result<()>;

    /// Stores `limits` for `queue` (see [`crate::limits`]), replacing the ones it had;
    /// limits that limit nothing ([`QueueLimits::is_unlimited`]) remove them. Every
    /// claim after this call returns obeys them; a backend whose processes cache which
    /// queues are limited says how long another process may take to learn of a new
    /// limit (PostgreSQL: up to a second, during which that process's claims including
    /// the queue come back empty, never over the limit). An invalid queue name is an
    /// [`Error::InvalidName`], an invalid limit ([`QueueLimits::validate`]) an
    /// [`Error::InvalidArgument`]; either way nothing is stored.
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()>;

    /// Every queue with stored limits, in queue order (byte order of the UTF-8 names).
    async fn queue_limits(&self) -> Result<Vec<QueueLimitsRecord>>;

    /// The live workers (records whose end is after `now`), in id order.
    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>>;

    /// The current leadership, if one has not lapsed at `now`.
    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>>;

    /// Every schedule's record, in name order (byte order of the UTF-8 names).
    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>>;

    /// Deletes a schedule's record (e.g. of a schedule no worker declares any more);
    /// returns whether there was one. A worker that still declares it records it again.
    async fn delete_periodic(&self, name: &str) -> Result<bool>;

    /// The per-minute throughput samples (see [`Storage::record_throughput`](crate::Storage::record_throughput))
    /// whose minute is at or after `since` (truncated to its minute), one per queue and
    /// minute that has any, ordered by queue then minute ([`crate::merge_samples`]'s
    /// shape). Minutes nobody recorded are absent, not zero.
    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>>;

    /// Retries every job `filter` matches that [`Admin::retry`] accepts (any state but
    /// `running`); returns how many were made available.
    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        bulk(self, filter, AdminAction::Retry, now).await
    }

    /// Cancels every job `filter` matches that [`Admin::cancel`] accepts (scheduled,
    /// available, retryable, and running ones, whose holders are asked to stop);
    /// returns how many were cancelled or asked to cancel.
    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        bulk(self, filter, AdminAction::Cancel, now).await
    }

    /// Deletes every job `filter` matches that is not running; returns how many were
    /// deleted.
    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        bulk(self, filter, AdminAction::Delete, None).await
    }
}

/// An operator action on a job: [`Admin::retry`], [`Admin::cancel`] or
/// [`Admin::delete`] (and their bulk calls, which apply it to each match it accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdminAction {
    /// [`Admin::retry`]: make the job available now.
    Retry,
    /// [`Admin::cancel`]: cancel the job (or ask its holder to stop).
    Cancel,
    /// [`Admin::delete`]: delete the job and everything stored about it.
    Delete,
}

impl AdminAction {
    /// Every action.
    pub const ALL: [AdminAction; 3] = [Self::Retry, Self::Cancel, Self::Delete];

    /// Whether the action accepts a job in `state`: retry and delete take any state
    /// but `running`, cancel any unfinished one (scheduled, available, retryable or
    /// running). Every backend refuses the other states with
    /// [`Error::InvalidState`], and the bulk calls skip them.
    ///
    /// ```
    /// use haul_core::{AdminAction, JobState};
    ///
    /// assert!(AdminAction::Retry.accepts(JobState::Discarded));
    /// assert!(!AdminAction::Delete.accepts(JobState::Running));
    /// assert!(AdminAction::Cancel.accepts(JobState::Running));
    /// assert!(!AdminAction::Cancel.accepts(JobState::Completed));
    /// ```
    pub fn accepts(self, state: JobState) -> bool {
        match self {
            Self::Retry | Self::Delete => state != JobState::Running,
            Self::Cancel => !state.is_finished(),
        }
    }
}

/// Pages through the jobs `filter` matches and applies `action` to each the action
/// accepts; a job that changed state or went away in between is skipped.
async fn bulk<A: Admin + ?Sized>(
    admin: &A,
    filter: JobFilter,
    action: AdminAction,
    now: Option<Timestamp>,
) -> Result<u64> {
    let mut changed = 0;
    let mut after = None;
    loop {
        let params = ListParams { filter: filter.clone(), after, limit: BULK_PAGE };
        let page = admin.list(params).await?;
        for job in page.iter().filter(|job| action.accepts(job.state)) {
            let result = match action {
                AdminAction::Retry => admin.retry(job.id, now).await.map(drop),
                AdminAction::Cancel => admin.cancel(job.id, now).await.map(drop),
                AdminAction::Delete => admin.delete(job.id).await,
            };
            match result {
                Ok(()) => changed += 1,
                Err(Error::NotFound(_) | Error::InvalidState { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        match page.last() {
            Some(last) if page.len() == BULK_PAGE => after = Some(last.id),
            _ => return Ok(changed),
        }
    }
}

/// Which jobs a list or a bulk call applies to. Every field left empty matches every
/// job; the fields that are set must all match.
///
/// ```
/// use haul_core::{JobFilter, JobState};
///
/// let failed_mail = JobFilter::new().queue("mail").state(JobState::Discarded);
/// assert_eq!(failed_mail.states, vec![JobState::Discarded]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only these states (empty: all).
    pub states: Vec<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs created at or after this instant.
    pub created_from: Option<Timestamp>,
    /// Only jobs created before this instant.
    pub created_until: Option<Timestamp>,
}

impl JobFilter {
    /// Matches every job.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only `state` (can be called several times).
    pub fn state(mut self, state: JobState) -> Self {
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Only `kind`.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Only jobs created at or after `from`.
    pub fn created_from(mut self, from: Timestamp) -> Self {
        self.created_from = Some(from);
        self
    }

    /// Only jobs created before `until`.
    pub fn created_until(mut self, until: Timestamp) -> Self {
        self.created_until = Some(until);
        self
    }

    /// Whether `job` matches: the rule every backend implements.
    pub fn matches(&self, job: &JobRecord) -> bool {
        self.queue.as_ref().is_none_or(|queue| *queue == job.queue)
            && (self.states.is_empty() || self.states.contains(&job.state))
            && self.kind.as_ref().is_none_or(|kind| *kind == job.kind)
            && self.created_from.is_none_or(|from| job.created_at >= from)
            && self.created_until.is_none_or(|until| job.created_at < until)
    }
}

/// Input of [`Admin::list`]: a filter, a cursor and a page size.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ListParams {
    /// Which jobs.
    pub filter: JobFilter,
    /// Only jobs with an id greater than this (the cursor: the last id of the previous
    /// page).
    pub after: Option<JobId>,
    /// At most this many.
    pub limit: usize,
}

impl Default for ListParams {
    fn default() -> Self {
        Self { filter: JobFilter::default(), after: None, limit: 100 }
    }
}

impl ListParams {
    /// Lists up to 100 jobs of any queue and state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists up to 100 jobs that `filter` matches.
    pub fn filtered(filter: JobFilter) -> Self {
        Self { filter, ..Self::default() }
    }

    /// Only `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.filter = self.filter.queue(queue);
        self
    }

    /// Only `state` (can be called several times).
    pub fn state(mut self, state: JobState) -> Self {
        self.filter = self.filter.state(state);
        self
    }

    /// Only `kind`.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.filter = self.filter.kind(kind);
        self
    }

    /// Only ids after `id`.
    pub fn after(mut self, id: JobId) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `limit`.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// Job counts of one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Jobs per state (states with no job are absent).
    pub states: BTreeMap<JobState, u64>,
    /// The `run_at` of the available job the next claim on this queue would take (the
    /// head of its claim order: in a queue whose jobs share one priority, the oldest),
    /// `None` when no job is available. Its age is how long the queue's work waits.
    pub next_available_at: Option<Timestamp>,
}

impl QueueCounts {
    /// Counts of `queue`.
    pub fn new(queue: impl Into<String>, paused: bool, states: BTreeMap<JobState, u64>) -> Self {
        Self { queue: queue.into(), paused, states, next_available_at: None }
    }

    /// Sets [`QueueCounts::next_available_at`].
    pub fn next_available_at(mut self, at: Option<Timestamp>) -> Self {
        self.next_available_at = at;
        self
    }

    /// The count for one state.
    pub fn get(&self, state: JobState) -> u64 {
        self.states.get(&state).copied().unwrap_or(0)
    }
}

/// A shared admin is an admin, so `Arc<dyn Admin>` works wherever one is expected.
#[async_trait]
impl<A: Admin + ?Sized> Admin for Arc<A> {
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        (**self).get(id).await
    }
    async fn list(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        (**self).list(params).await
    }
    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        (**self).counts().await
    }
    async fn cancel(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        (**self).cancel(id, now).await
    }
    async fn retry(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        (**self).retry(id, now).await
    }
    async fn delete(&self, id: JobId) -> Result<()> {
        (**self).delete(id).await
    }
    async fn pause_queue(&self, queue: &str) -> Result<()> {
        (**self).pause_queue(queue).await
    }
    async fn resume_queue(&self, queue: &str) -> Result<()> {
        (**self).resume_queue(queue).await
    }
    async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        (**self).set_queue_limits(queue, limits).await
    }
    async fn queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        (**self).queue_limits().await
    }
    async fn list_workers(&self, now: Option<Timestamp>) -> Result<Vec<WorkerRecord>> {
        (**self).list_workers(now).await
    }
    async fn leader(&self, now: Option<Timestamp>) -> Result<Option<Leadership>> {
        (**self).leader(now).await
    }
    async fn list_periodic(&self) -> Result<Vec<PeriodicRecord>> {
        (**self).list_periodic().await
    }
    async fn delete_periodic(&self, name: &str) -> Result<bool> {
        (**self).delete_periodic(name).await
    }
    async fn throughput(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        (**self).throughput(since).await
    }
    async fn retry_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        (**self).retry_jobs(filter, now).await
    }
    async fn cancel_jobs(&self, filter: JobFilter, now: Option<Timestamp>) -> Result<u64> {
        (**self).cancel_jobs(filter, now).await
    }
    async fn delete_jobs(&self, filter: JobFilter) -> Result<u64> {
        (**self).delete_jobs(filter).await
    }
}

/// Implements [`Admin`] for a storage that wraps another by forwarding every call to
/// the field named: for wrappers that add behaviour to the lifecycle calls only
/// (faults, metrics, recording in tests). The field must implement `Admin`.
///
/// ```
/// use std::sync::Arc;
///
/// /// Logs every lifecycle call (its `Storage` impl, not shown) and forwards the rest.
/// struct Logged {
///     inner: Arc<dyn haul_core::Admin>,
/// }
///
/// haul_core::forward_admin!(Logged, inner);
/// ```
#[macro_export]
macro_rules! forward_admin {
    ($wrapper:ty, $field:ident) => {
        #[$crate::__private::async_trait]
        impl $crate::Admin for $wrapper {
            async fn get(&self, id: $crate::JobId) -> $crate::Result<Option<$crate::JobRecord>> {
                $crate::Admin::get(&self.$field, id).await
            }
            async fn list(&self, params: $crate::ListParams) -> $crate::Result<Vec<$crate::JobRecord>> {
                $crate::Admin::list(&self.$field, params).await
            }
            async fn counts(&self) -> $crate::Result<Vec<$crate::QueueCounts>> {
                $crate::Admin::counts(&self.$field).await
            }
            async fn cancel(
                &self,
                id: $crate::JobId,
                now: Option<$crate::Timestamp>,
            ) -> $crate::Result<$crate::JobRecord> {
                $crate::Admin::cancel(&self.$field, id, now).await
            }
            async fn retry(
                &self,
                id: $crate::JobId,
                now: Option<$crate::Timestamp>,
            ) -> $crate::Result<$crate::JobRecord> {
                $crate::Admin::retry(&self.$field, id, now).await
            }
            async fn delete(&self, id: $crate::JobId) -> $crate::Result<()> {
                $crate::Admin::delete(&self.$field, id).await
            }
            async fn pause_queue(&self, queue: &str) -> $crate::Result<()> {
                $crate::Admin::pause_queue(&self.$field, queue).await
            }
            async fn resume_queue(&self, queue: &str) -> $crate::Result<()> {
                $crate::Admin::resume_queue(&self.$field, queue).await
            }
            async fn set_queue_limits(&self, queue: &str, limits: $crate::QueueLimits) -> $crate::Result<()> {
                $crate::Admin::set_queue_limits(&self.$field, queue, limits).await
            }
            async fn queue_limits(&self) -> $crate::Result<Vec<$crate::QueueLimitsRecord>> {
                $crate::Admin::queue_limits(&self.$field).await
            }
            async fn list_workers(&self, now: Option<$crate::Timestamp>) -> $crate::Result<Vec<$crate::WorkerRecord>> {
                $crate::Admin::list_workers(&self.$field, now).await
            }
            async fn leader(&self, now: Option<$crate::Timestamp>) -> $crate::Result<Option<$crate::Leadership>> {
                $crate::Admin::leader(&self.$field, now).await
            }
            async fn list_periodic(&self) -> $crate::Result<Vec<$crate::PeriodicRecord>> {
                $crate::Admin::list_periodic(&self.$field).await
            }
            async fn delete_periodic(&self, name: &str) -> $crate::Result<bool> {
                $crate::Admin::delete_periodic(&self.$field, name).await
            }
            async fn throughput(&self, since: $crate::Timestamp) -> $crate::Result<Vec<$crate::ThroughputSample>> {
                $crate::Admin::throughput(&self.$field, since).await
            }
            async fn retry_jobs(
                &self,
                filter: $crate::JobFilter,
                now: Option<$crate::Timestamp>,
            ) -> $crate::Result<u64> {
                $crate::Admin::retry_jobs(&self.$field, filter, now).await
            }
            async fn cancel_jobs(
                &self,
                filter: $crate::JobFilter,
                now: Option<$crate::Timestamp>,
            ) -> $crate::Result<u64> {
                $crate::Admin::cancel_jobs(&self.$field, filter, now).await
            }
            async fn delete_jobs(&self, filter: $crate::JobFilter) -> $crate::Result<u64> {
                $crate::Admin::delete_jobs(&self.$field, filter).await
            }
        }
    };
}
