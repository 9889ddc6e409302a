//! The job type worker cases run, and the tracker that records what it did.
//!
//! One `#[job]` whose arguments say what to do (complete, fail, panic, hang…), so each
//! worker case enqueues the behaviour it needs. Its kind name is fixed, so worker cases
//! also use a queue of their own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use haul::{JobContext, JobError, JobId, RetryPolicy, State};
use serde::{Deserialize, Serialize};

/// The kind name of [`Scripted`] jobs.
pub const SCRIPTED_KIND: &str = "haul_tests.scripted";

/// The delay between attempts of [`Scripted`] jobs, short so retries happen quickly.
pub const SCRIPTED_BACKOFF: Duration = Duration::from_millis(50);

/// What a [`Scripted`] job does when it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Script {
    /// Succeed at once.
    Complete,
    /// Sleep, then succeed.
    Sleep {
        /// How long, in milliseconds.
        ms: u64,
    },
    /// Fail every attempt before `attempt`, then succeed.
    FailUntilAttempt {
        /// The first attempt that succeeds.
        attempt: u32,
    },
    /// Panic with `message`.
    Panic {
        /// The panic message.
        message: String,
    },
    /// Snooze on the first run, succeed on the next.
    SnoozeFirstRun {
        /// The snooze, in milliseconds.
        ms: u64,
    },
    /// Ask for the job to be discarded.
    Discard {
        /// Why.
        reason: String,
    },
    /// Never finish the first attempt (only its timeout ends it); succeed later.
    HangOnFirstAttempt,
    /// Never finish: only a stop (shutdown, cancel, timeout) ends it.
    Hang,
    /// Sleep `ms[n - 1]` milliseconds on attempt `n` (the last value for later
    /// attempts), then succeed.
    SleepPerAttempt {
        /// Milliseconds per attempt.
        ms: Vec<u64>,
    },
    /// Succeed at once; `padding` only makes the arguments as large as a case needs.
    Padded {
        /// Anything.
        padding: String,
    },
    /// Fail every attempt with `parts` joined by NUL characters (made by the handler:
    /// stored arguments cannot carry a NUL on every backend).
    FailJoinedByNul {
        /// The message around each NUL.
        parts: Vec<String>,
    },
    /// Ask for the job to be discarded with `parts` joined by NUL characters as reason.
    DiscardJoinedByNul {
        /// The reason around each NUL.
        parts: Vec<String>,
    },
}

/// Records every run of a [`Scripted`] job: the attempt number of each run, per job.
///
/// Register it on the worker with `.state(tracker.clone())`; the case keeps a clone.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    runs: Arc<Mutex<HashMap<JobId, Vec<u32>>>>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, id: JobId, attempt: u32) -> usize {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let attempts = runs.entry(id).or_default();
        attempts.push(attempt);
        attempts.len()
    }

    /// The attempt number of each run of job `id`, in order (empty if it never ran).
    pub fn runs(&self, id: JobId) -> Vec<u32> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned().unwrap_or_default()
    }

    /// The jobs that started at least once.
    pub fn started(&self) -> Vec<JobId> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect()
    }
}

/// Runs a [`Script`], recording the run in the worker's [`Tracker`].
#[haul::job(name = "haul_tests.scripted", backoff = RetryPolicy::fixed(SCRIPTED_BACKOFF))]
pub async fn scripted(tracker: State<Tracker>, ctx: &JobContext, script: Script) -> Result<(), JobError> {
    let run = tracker.record(ctx.id(), ctx.attempt());
    match script {
        Script::Complete => Ok(()),
        Script::Sleep { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        }
        Script::FailUntilAttempt { attempt } if ctx.attempt() < attempt => {
            Err(JobError::fail(format!("attempt {} fails on purpose", ctx.attempt())))
        }
        Script::FailUntilAttempt { .. } => Ok(()),
        Script::Panic { message } => panic!("{message}"),
        Script::SnoozeFirstRun { ms } if run == 1 => Err(JobError::snooze(Duration::from_millis(ms))),
        Script::SnoozeFirstRun { .. } => Ok(()),
        Script::Discard { reason } => Err(JobError::discard(reason)),
        Script::HangOnFirstAttempt if ctx.attempt() == 1 => std::future::pending().await,
        Script::HangOnFirstAttempt => Ok(()),
        Script::Hang => std::future::pending().await,
        Script::SleepPerAttempt { ms } => {
            let index = usize::try_from(ctx.attempt()).unwrap_or(usize::MAX).saturating_sub(1).min(ms.len() - 1);
            tokio::time::sleep(Duration::from_millis(ms[index])).await;
            Ok(())
        }
        Script::Padded { .. } => Ok(()),
        Script::FailJoinedByNul { parts } => Err(JobError::fail(parts.join("\0"))),
        Script::DiscardJoinedByNul { parts } => Err(JobError::discard(parts.join("\0"))),
    }
}

/// The kind name of [`Carrier`] jobs.
pub const CARRIER_KIND: &str = "haul_tests.carrier";

/// A job that carries any JSON value and a number, and succeeds.
#[haul::job(name = "haul_tests.carrier")]
pub async fn carrier(value: serde_json::Value, number: f64) -> Result<(), JobError> {
    let _ = (value, number);
    Ok(())
}

/// A job that always fails, whose kind waits `Duration::MAX` between attempts.
#[haul::job(name = "haul_tests.unbounded_backoff", backoff = RetryPolicy::fixed(Duration::MAX))]
pub async fn unbounded_backoff(tracker: State<Tracker>, ctx: &JobContext) -> Result<(), JobError> {
    tracker.record(ctx.id(), ctx.attempt());
    Err(JobError::fail("fails on purpose"))
}
