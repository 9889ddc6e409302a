//! Runs due jobs one at a time through the worker's own executor, on the test clock:
//! claim, run, report, until none is left.

use std::{
    sync::{Arc, PoisonError},
    time::Duration,
};

use super::Shared;
use crate::{
    ClaimParams, Error, JobContext, JobOutcome, JobRecord, JobState, Report, ReportParams, Result, Storage,
    worker::execute,
};

/// The worker id recorded on the jobs a drain claims.
const WORKER_ID: &str = "haul-testing";

tokio::task_local! {
    /// Set while a drain runs: what its jobs enqueue is left for it to run.
    static RUNNING: ();
}

/// Whether the current task is inside a drain (its jobs are running).
pub(super) fn is_running() -> bool {
    RUNNING.try_with(|()| ()).is_ok()
}

/// What a drain did, one count per attempt it ran, by how the attempt ended.
///
/// Compare it whole with `assert_eq!`, naming only the counts you expect:
/// `DrainSummary { completed: 2, failed: 1, ..DrainSummary::default() }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DrainSummary {
    /// The job succeeded: it is `completed`.
    pub completed: usize,
    /// The attempt failed (an error, a panic, a timeout, `RetryAfter`) and attempts are
    /// left: the job is `retryable`, due after its backoff on the test clock.
    pub failed: usize,
    /// The job is `discarded`: its handler discarded it, or its last attempt failed.
    pub discarded: usize,
    /// The job is `cancelled` (a cancel was requested while it ran, and it did not
    /// complete).
    pub cancelled: usize,
    /// The handler snoozed: the job runs again after its delay, the attempt not spent.
    pub snoozed: usize,
}

impl DrainSummary {
    /// How many attempts ran.
    pub fn total(&self) -> usize {
        self.completed + self.failed + self.discarded + self.cancelled + self.snoozed
    }

    fn count(&mut self, ended: JobState) {
        match ended {
            JobState::Completed => self.completed += 1,
            JobState::Retryable => self.failed += 1,
            JobState::Discarded => self.discarded += 1,
            JobState::Cancelled => self.cancelled += 1,
            JobState::Scheduled | JobState::Available => self.snoozed += 1,
            // The outcome was not applied: another claim holds the job.
            JobState::Running => {}
        }
    }
}

/// The queues a drain claims from.
pub(super) enum Queues {
    /// Every queue that has jobs, looked up again whenever nothing is left to claim.
    All,
    /// These queues.
    Only(Vec<String>),
}

impl Queues {
    async fn names(&self, storage: &dyn Storage) -> Result<Vec<String>> {
        match self {
            Self::All => {
                let mut names: Vec<String> = storage.counts().await?.into_iter().map(|counts| counts.queue).collect();
                names.sort_unstable();
                Ok(names)
            }
            Self::Only(names) => Ok(names.clone()),
        }
    }
}

/// Whether a drain makes due `scheduled` and `retryable` jobs available.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Promote {
    /// Yes: [`TestJobs::drain`](super::TestJobs::drain).
    Yes,
    /// No: an inline enqueue runs only what is available.
    No,
}

/// Runs every job available in `queues` (after promoting the due ones, with
/// [`Promote::Yes`]), and the jobs those runs make available, one at a time, until none
/// is left or the drain limit is reached.
pub(super) async fn run(shared: &Shared, queues: Queues, promote: Promote) -> Result<DrainSummary> {
    RUNNING.scope((), run_until_empty(shared, queues, promote)).await
}

async fn run_until_empty(shared: &Shared, queues: Queues, promote: Promote) -> Result<DrainSummary> {
    let storage = shared.storage.as_ref();
    let limit = shared.drain_limit();
    let mut summary = DrainSummary::default();
    let mut attempts: usize = 0;
    if promote == Promote::Yes {
        storage.promote_due(Some(shared.clock.now())).await?;
    }
    let mut serving = queues.names(storage).await?;
    loop {
        if let Some(record) = claim_one(storage, &serving, shared).await? {
            if attempts >= limit {
                hand_back(storage, &record, shared).await?;
                return Err(limit_reached(limit, &summary));
            }
            attempts += 1;
            if let Some(ended) = run_one(shared, record).await? {
                summary.count(ended);
            }
            continue;
        }
        // Nothing left to claim: done, unless jobs came due or went to other queues.
        let promoted = match promote {
            Promote::Yes => storage.promote_due(Some(shared.clock.now())).await?,
            Promote::No => 0,
        };
        let refreshed = queues.names(storage).await?;
        if promoted == 0 && refreshed == serving {
            return Ok(summary);
        }
        serving = refreshed;
    }
}

/// Claims the first available job of `queues`, as a worker would.
async fn claim_one(storage: &dyn Storage, queues: &[String], shared: &Shared) -> Result<Option<JobRecord>> {
    if queues.is_empty() {
        return Ok(None);
    }
    let params = ClaimParams::new(queues.iter().cloned(), 1).worker_id(WORKER_ID).now(shared.clock.now());
    Ok(storage.claim(params).await?.pop())
}

/// Runs one attempt of a claimed job and reports it; returns the state the job is left
/// in (`None` if nothing was reported).
async fn run_one(shared: &Shared, record: JobRecord) -> Result<Option<JobState>> {
    let storage = shared.storage.as_ref();
    let Some(claim) = record.claim() else {
        return Err(Error::InvalidArgument(
            format!("the {} storage returned claimed job {} without a lease token", storage.backend_name(), record.id)
                .into(),
        ));
    };
    let ctx = JobContext::for_claimed(record, claim.token, shared.states.current());
    let record = ctx.record();
    let middleware = Arc::clone(&*shared.middleware.lock().unwrap_or_else(PoisonError::into_inner));
    let metrics = shared.job_metrics.of(&record.queue, &record.kind);
    let outcome = execute(record, ctx.clone(), &middleware, &metrics).await.outcome;
    if ctx.is_marked_completed() {
        // A backend extension already stored the completion with the handler's writes.
        return Ok(Some(JobState::Completed));
    }
    let Some(outcome) = outcome else {
        // The claim was lost: nothing may be reported for it.
        return Ok(None);
    };
    let settled = match &outcome {
        JobOutcome::Completed => Some(JobState::Completed),
        JobOutcome::Discarded { .. } => Some(JobState::Discarded),
        JobOutcome::Cancelled => Some(JobState::Cancelled),
        // Retried, discarded (no attempt left) or cancelled (a cancel was requested):
        // storage decides, so it is read back.
        JobOutcome::Failed { .. } | JobOutcome::Snoozed { .. } => None,
    };
    storage.report(ReportParams::new(vec![Report { claim, outcome }]).now(shared.clock.now())).await?;
    match settled {
        Some(state) => Ok(Some(state)),
        None => Ok(storage.get(record.id).await?.map(|job| job.state)),
    }
}

/// Gives a claimed job back without spending its attempt.
async fn hand_back(storage: &dyn Storage, record: &JobRecord, shared: &Shared) -> Result<()> {
    if let Some(claim) = record.claim() {
        let report = Report { claim, outcome: JobOutcome::Snoozed { delay: Duration::ZERO } };
        storage.report(ReportParams::new(vec![report]).now(shared.clock.now())).await?;
    }
    Ok(())
}

fn limit_reached(limit: usize, summary: &DrainSummary) -> Error {
    Error::InvalidArgument(
        format!(
            "the drain ran its limit of {limit} attempts and jobs are still due ({summary:?}): a job that snoozes \
             without delay, or enqueues itself, keeps a drain going forever; fix the job, or raise the limit with \
             `TestJobs::drain_limit`"
        )
        .into(),
    )
}
