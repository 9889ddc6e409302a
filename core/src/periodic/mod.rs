//! Periodic jobs: a job enqueued at each tick of a [`Schedule`], by the namespace's
//! leader, exactly once per tick however many workers declare it.
//!
//! Declare them on the worker with [`crate::WorkerBuilder::periodic`]. The leader
//! enqueues each tick's job through the normal enqueue path with a uniqueness key that
//! holds the schedule's name and the tick's time (in every state, finished ones too), so
//! even two schedulers acting at once (an old leader that has not yet noticed it lost
//! the lead) store one job per tick. Storage keeps, per schedule, the latest tick dealt
//! with ([`PeriodicRecord`]); ticks up to it are never enqueued again, and a leader that
//! takes over finds there what the previous one did.

mod record;
mod schedule;
mod scheduler;

use std::time::Duration;

use chrono::SecondsFormat;

pub use record::{PeriodicRecord, PeriodicUpdate};
pub use schedule::{MIN_INTERVAL, Schedule};
pub use scheduler::{DueTicks, PeriodicScheduler};

use crate::{
    DEFAULT_MAX_ARGS_BYTES, EnqueueJob, Error, JobState, NewJob, Result, Timestamp, Unique, queue::prepare_job,
    validate_periodic_name,
};

/// What the leader does with ticks that came while no leader could enqueue them (a
/// tick counts as missed when it is dealt with more than two leader leases after its
/// time: no leader was alive, or the leader could not reach storage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Missed {
    /// Enqueue one job when a leader returns, however many ticks were missed (for the
    /// latest of them), as Oban and River do. The default.
    #[default]
    RunOnce,
    /// Enqueue nothing for missed ticks; wait for the next one.
    Skip,
}

/// A job enqueued at each tick of a schedule; see the module docs for the guarantees
/// and `haul`'s README ("Periodic jobs") for a complete example.
///
/// ```text
/// Periodic::new("nightly-report", Schedule::cron_in("0 3 * * *", "Europe/Paris")?, NightlyReport {})?
///     .priority(-1)
///     .missed(Missed::Skip)
/// ```
#[derive(Clone, Debug)]
pub struct Periodic {
    name: String,
    schedule: Schedule,
    job: NewJob,
    missed: Missed,
}

impl Periodic {
    /// Enqueues `job` (with its kind's options) at each tick of `schedule`, under
    /// `name` (unique in a namespace: 1 to 100 characters of `A-Z a-z 0-9 _ - . :`).
    /// Each tick's job is unique by the tick ([`Periodic::tick_key`]), which replaces
    /// the kind's own `unique = true`: a slow run does not stop the next tick's job.
    ///
    /// Fails with the reasons [`crate::Queue::prepare`] gives for a job that could never
    /// run, and for an invalid name.
    pub fn new<J: EnqueueJob>(name: impl Into<String>, schedule: Schedule, job: J) -> Result<Self> {
        let name = name.into();
        validate_periodic_name(&name)?;
        let job = prepare_job(&job, DEFAULT_MAX_ARGS_BYTES)?;
        Ok(Self { name, schedule, job, missed: Missed::default() })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// What happens to missed ticks.
    pub fn missed_ticks(&self) -> Missed {
        self.missed
    }

    /// Sets what happens to missed ticks (default: [`Missed::RunOnce`]).
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// Overrides the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.job.queue = queue.into();
        self
    }

    /// Overrides the priority (lower runs first).
    pub fn priority(mut self, priority: i16) -> Self {
        self.job.priority = priority;
        self
    }

    /// Overrides the number of attempts.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.job.max_attempts = max_attempts;
        self
    }

    /// Overrides the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.job.timeout = Some(timeout);
        self
    }

    /// The next `count` ticks after `after`.
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Timestamp> {
        self.schedule.upcoming(after, count)
    }

    /// The uniqueness key of the job of one tick: `periodic:<name>:<tick in RFC 3339, UTC, µs>`.
    pub fn tick_key(&self, tick: Timestamp) -> String {
        format!("periodic:{}:{}", self.name, tick.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    /// The job stored for one tick: the template, unique by [`Periodic::tick_key`] in
    /// every state. This key replaces a kind's own uniqueness (`unique = true`, by
    /// arguments): ticks of one schedule never block each other.
    pub(crate) fn job_for(&self, tick: Timestamp) -> NewJob {
        let mut job = self.job.clone();
        job.id = crate::JobId::new();
        job.unique = Some(Unique::new(self.tick_key(tick)).states(JobState::ALL));
        job
    }

    /// Checks the job that every tick stores (its queue, attempts, timeout).
    pub(crate) fn validate(&self) -> Result<()> {
        self.job.validate().map_err(|error| match error {
            Error::InvalidArgument(reason) => {
                Error::InvalidArgument(format!("periodic job `{}`: {reason}", self.name).into())
            }
            other => other,
        })
    }
}
