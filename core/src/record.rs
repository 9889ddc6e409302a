//! The stored form of a job and its states.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, JobId, LeaseToken};

/// A point in time as stored by haul.
pub type Timestamp = DateTime<Utc>;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at`.
    Scheduled,
    /// Ready to be claimed.
    Available,
    /// Held by a worker under a lease.
    Running,
    /// Failed and waiting for its next attempt.
    Retryable,
    /// Finished successfully (terminal).
    Completed,
    /// Gave up: attempts exhausted or discarded by its handler (terminal, can be retried by hand).
    Discarded,
    /// Cancelled before it finished (terminal, can be retried by hand).
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        Self::Scheduled,
        Self::Available,
        Self::Running,
        Self::Retryable,
        Self::Completed,
        Self::Discarded,
        Self::Cancelled,
    ];

    /// The lowercase name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Available => "available",
            Self::Running => "running",
            Self::Retryable => "retryable",
            Self::Completed => "completed",
            Self::Discarded => "discarded",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job has finished (completed, discarded or cancelled).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Discarded | Self::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown job state `{s}`").into()))
    }
}

/// A job to insert, as the storage sees it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewJob {
    /// Its id, made by the client.
    pub id: JobId,
    /// The stable kind name.
    pub kind: String,
    /// The arguments, a JSON object.
    pub args: serde_json::Value,
    /// The queue it goes to.
    pub queue: String,
    /// Lower runs first.
    pub priority: i16,
    /// When it may first run, by the storage's clock.
    pub run_at: RunAt,
    /// How many attempts it gets before it is discarded.
    pub max_attempts: u32,
    /// How long one attempt may run; `None` means no limit.
    pub timeout: Option<Duration>,
    /// At most one job with this key at a time; see [`Unique`].
    pub unique: Option<Unique>,
    /// Strings stored with the job for middleware and handlers (see [`crate::Metadata`]).
    pub metadata: crate::Metadata,
    /// The key the job counts against in its queue's per-key limits (see
    /// [`crate::limits`]); `None`: not key-limited.
    pub limit_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` with `args` on the `default` queue, priority 0, 20 attempts, due now.
    pub fn new(kind: impl Into<String>, args: serde_json::Value) -> Self {
        Self {
            id: JobId::new(),
            kind: kind.into(),
            args,
            queue: crate::job::DEFAULT_QUEUE.to_owned(),
            priority: 0,
            run_at: RunAt::Now,
            max_attempts: crate::job::DEFAULT_MAX_ATTEMPTS,
            timeout: None,
            unique: None,
            metadata: crate::Metadata::new(),
            limit_key: None,
        }
    }

    /// Sets the limit key (see [`crate::limits`]).
    pub fn limit_key(mut self, key: impl Into<String>) -> Self {
        self.limit_key = Some(key.into());
        self
    }

    /// Adds a metadata entry (replacing the value of a key already set).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the priority (lower runs first).
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Sets when the job may first run.
    pub fn run_at(mut self, run_at: RunAt) -> Self {
        self.run_at = run_at;
        self
    }

    /// Sets the number of attempts.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Makes the job unique (see [`Unique`]).
    pub fn unique(mut self, unique: Unique) -> Self {
        self.unique = Some(unique);
        self
    }

    /// Sets the id.
    pub fn id(mut self, id: JobId) -> Self {
        self.id = id;
        self
    }

    /// Checks what every storage requires of a new job: valid queue and kind names, at
    /// least one attempt, a timeout (if any) above zero, metadata within its limits
    /// ([`crate::MAX_METADATA_BYTES`]), a limit key (if any) that
    /// [`crate::validate_limit_key`] accepts, and arguments that are a JSON object nested at
    /// most [`crate::MAX_ARGS_DEPTH`] levels deep.
    pub fn validate(&self) -> Result<(), Error> {
        crate::validate_queue_name(&self.queue)?;
        crate::validate_kind_name(&self.kind)?;
        if self.max_attempts == 0 {
            return Err(Error::InvalidArgument(
                format!("job {} of kind `{}` has max_attempts 0; it needs at least 1", self.id, self.kind).into(),
            ));
        }
        if self.timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(Error::InvalidArgument(
                format!(
                    "job {} of kind `{}` has a timeout of zero, so every attempt would time out; give it a longer \
                     timeout, or none",
                    self.id, self.kind
                )
                .into(),
            ));
        }
        if !self.args.is_object() {
            return Err(Error::InvalidArgument(
                format!("job {} of kind `{}` has arguments that are not a JSON object", self.id, self.kind).into(),
            ));
        }
        crate::metadata::check_metadata(self.id, &self.kind, &self.metadata)?;
        if let Some(key) = &self.limit_key {
            crate::validate_limit_key(key).map_err(|error| match error {
                Error::InvalidArgument(reason) => {
                    Error::InvalidArgument(format!("job {} of kind `{}`: {reason}", self.id, self.kind).into())
                }
                other => other,
            })?;
        }
        crate::storable::check_args(&self.kind, &self.args)
    }

    /// Checks a batch before anything is stored: every job [valid](Self::validate), and
    /// no id twice ([`Error::DuplicateId`]). Backends call it first in `enqueue`.
    pub fn validate_batch(jobs: &[NewJob]) -> Result<(), Error> {
        let mut seen = std::collections::HashSet::with_capacity(if jobs.len() > 1 { jobs.len() } else { 0 });
        for job in jobs {
            job.validate()?;
            if jobs.len() > 1 && !seen.insert(job.id) {
                return Err(Error::DuplicateId(job.id));
            }
        }
        Ok(())
    }
}

/// Uniqueness of a job: an enqueue is skipped, and the existing job's id returned,
/// while a stored job has the same key, is in one of `states`, and (when a window is
/// set) was created less than `window` ago.
///
/// ```
/// use std::time::Duration;
/// use haul_core::{JobState, Unique};
/// let unique = Unique::new("invoice:42").window(Duration::from_secs(3600));
/// assert!(unique.states.contains(&JobState::Running));
/// assert!(!unique.states.contains(&JobState::Completed));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unique {
    /// The key; jobs of any kind and queue that share it are duplicates.
    pub key: String,
    /// The states in which a stored job blocks a new one (default: every unfinished state).
    pub states: Vec<JobState>,
    /// Only jobs created less than this long ago block a new one (default: no limit).
    pub window: Option<Duration>,
}

impl Unique {
    /// Unique by `key` among unfinished jobs, with no time window.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            states: vec![JobState::Scheduled, JobState::Available, JobState::Running, JobState::Retryable],
            window: None,
        }
    }

    /// Unique by kind and arguments: the key is the kind and the arguments' JSON (object
    /// keys sorted, so the same arguments always give the same key).
    pub fn by_args(kind: &str, args: &serde_json::Value) -> Self {
        Self::new(format!("{kind}:{args}"))
    }

    /// Sets the blocking states.
    pub fn states(mut self, states: impl IntoIterator<Item = JobState>) -> Self {
        self.states = states.into_iter().collect();
        self
    }

    /// Sets the time window.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// Whether `job`, stored when `now` is the time, blocks a new job with this key.
    pub fn is_blocked_by(&self, job: &JobRecord, now: Timestamp) -> bool {
        job.unique_key.as_deref() == Some(self.key.as_str())
            && self.states.contains(&job.state)
            && self.window.is_none_or(|window| {
                chrono::Duration::from_std(window)
                    .ok()
                    .and_then(|window| now.checked_sub_signed(window))
                    .is_none_or(|since| job.created_at > since)
            })
    }
}

/// When a new job may first run. Relative delays are measured on the storage's clock
/// at insertion, so client clock skew does not move them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunAt {
    /// As soon as possible.
    #[default]
    Now,
    /// At this instant.
    At(Timestamp),
    /// This long after insertion.
    In(Duration),
}

impl RunAt {
    /// The instant this resolves to, given the storage's `now`.
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            Self::Now => now,
            Self::At(at) => at,
            Self::In(delay) => chrono::Duration::from_std(delay)
                .ok()
                .and_then(|delay| now.checked_add_signed(delay))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// The error recorded for one failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// When it was recorded.
    pub at: Timestamp,
    /// What the handler (or the runtime) said.
    pub message: String,
}

/// A stored job, as `get`, `list` and `claim` return it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// The stable kind name.
    pub kind: String,
    /// The arguments, a JSON object.
    pub args: serde_json::Value,
    /// Its queue.
    pub queue: String,
    /// Lower runs first.
    pub priority: i16,
    /// Its state.
    pub state: JobState,
    /// Attempts started so far (the running one included).
    pub attempt: u32,
    /// Attempts it gets before it is discarded.
    pub max_attempts: u32,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// When it is (or was) due.
    pub run_at: Timestamp,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When its latest attempt started.
    pub attempted_at: Option<Timestamp>,
    /// When it reached a terminal state.
    pub finished_at: Option<Timestamp>,
    /// When a cancel was requested while it was running.
    pub cancel_requested_at: Option<Timestamp>,
    /// One entry per failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// The token of the current claim (running jobs only).
    pub lease_token: Option<LeaseToken>,
    /// When the current lease expires (running jobs only).
    pub lease_expires_at: Option<Timestamp>,
    /// Who holds the current claim (running jobs only).
    pub claimed_by: Option<String>,
    /// The uniqueness key it was enqueued with, if any.
    pub unique_key: Option<String>,
    /// The metadata it was enqueued with (see [`crate::Metadata`]), shared: a claim
    /// hands the job's handler this map without copying it.
    pub metadata: std::sync::Arc<crate::Metadata>,
    /// The key it counts against in its queue's per-key limits (see [`crate::limits`]).
    pub limit_key: Option<String>,
    /// Why the stored arguments could not be read (then `args` is `null`): written by
    /// something other than haul's enqueue, or nested deeper than a decoder reads. A
    /// worker discards such a job with this reason rather than fail the claim it came
    /// in with.
    pub unreadable_args: Option<String>,
}

impl JobRecord {
    /// A record for backends to fill in: `available` on the default queue, created and
    /// due now, priority 0, no attempt made yet, default max attempts; every other
    /// field empty.
    pub fn new(id: JobId, kind: impl Into<String>, args: serde_json::Value) -> Self {
        let now = chrono::Utc::now();
        Self {
            id,
            kind: kind.into(),
            args,
            queue: crate::job::DEFAULT_QUEUE.to_owned(),
            priority: 0,
            state: JobState::Available,
            attempt: 0,
            max_attempts: crate::job::DEFAULT_MAX_ATTEMPTS,
            timeout: None,
            run_at: now,
            created_at: now,
            attempted_at: None,
            finished_at: None,
            cancel_requested_at: None,
            errors: Vec::new(),
            lease_token: None,
            lease_expires_at: None,
            claimed_by: None,
            unique_key: None,
            metadata: std::sync::Arc::default(),
            limit_key: None,
            unreadable_args: None,
        }
    }

    /// The claim a holder presents for this job, if it is running.
    pub fn claim(&self) -> Option<crate::Claim> {
        self.lease_token.map(|token| crate::Claim { id: self.id, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_delay_saturates_instead_of_panicking() {
        let now = chrono::Utc::now();
        assert_eq!(RunAt::In(Duration::MAX).resolve(now), DateTime::<Utc>::MAX_UTC);
        assert_eq!(RunAt::In(Duration::from_secs(1)).resolve(now), now + chrono::Duration::seconds(1));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().ok(), Some(state));
        }
        assert!(matches!("done".parse::<JobState>(), Err(Error::InvalidArgument(_))));
    }
}
