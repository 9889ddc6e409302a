//! The scheduler: given the time, enqueues each schedule's due tick once and records it.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;

use crate::{EnqueueParams, Error, JobId, Periodic, PeriodicUpdate, Result, Storage, Timestamp, periodic::Missed};

/// The periodic jobs of a worker, and the pass that enqueues their due ticks.
///
/// The worker runs [`PeriodicScheduler::run_due`] while it leads, at each tick; tests
/// can call it with a clock of their own.
#[derive(Clone, Debug, Default)]
pub struct PeriodicScheduler {
    jobs: Vec<Periodic>,
    late_after: Duration,
}

/// What one [`PeriodicScheduler::run_due`] pass did, per schedule name and tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DueTicks {
    /// Ticks whose job this pass stored, with the job's id.
    pub enqueued: Vec<(String, Timestamp, JobId)>,
    /// Ticks whose job was already stored (another scheduler acted), with its id.
    pub duplicates: Vec<(String, Timestamp, JobId)>,
    /// Missed ticks recorded without a job ([`Missed::Skip`]).
    pub skipped: Vec<(String, Timestamp)>,
    /// Schedules seen for the first time (or whose expression or interval changed):
    /// recorded from their latest tick on, which is not enqueued.
    pub first_seen: Vec<String>,
}

impl PeriodicScheduler {
    /// A scheduler of `jobs`, which counts a tick as missed when it is dealt with more
    /// than `late_after` after its time (the worker passes its leader lease). Fails if
    /// two jobs share a name or one stores an invalid job.
    pub fn new(jobs: Vec<Periodic>, late_after: Duration) -> Result<Self> {
        if late_after.is_zero() {
            return Err(Error::InvalidArgument("a periodic scheduler's `late_after` must not be zero".into()));
        }
        let mut names = std::collections::HashSet::new();
        for job in &jobs {
            if !names.insert(job.name()) {
                return Err(Error::InvalidArgument(
                    format!("two periodic jobs are named `{}`; give each its own name", job.name()).into(),
                ));
            }
            job.validate()?;
        }
        Ok(Self { jobs, late_after })
    }

    /// The periodic jobs, in the order they were declared.
    pub fn jobs(&self) -> &[Periodic] {
        &self.jobs
    }

    /// Whether there is nothing to schedule.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The earliest tick of any schedule strictly after `at`.
    pub fn next_tick_after(&self, at: Timestamp) -> Option<Timestamp> {
        self.jobs.iter().filter_map(|job| job.schedule().next_after(at)).min()
    }

    /// The next `count` ticks of every schedule after `after`, by name.
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<(&str, Vec<Timestamp>)> {
        self.jobs.iter().map(|job| (job.name(), job.upcoming(after, count))).collect()
    }

    /// Enqueues, for each schedule, its latest tick at or before `now` if storage has
    /// not recorded it (or a later one) as dealt with, then records it. `now` is also
    /// the storage's clock override; `None` means this process's clock for ticks and the
    /// storage's own clock for storage.
    ///
    /// Per schedule, with `last` the tick its record holds and `tick` the latest tick at
    /// or before `now`:
    ///
    /// - no record, or a record of another schedule under the same name (its expression
    ///   or interval changed): the schedule is recorded from `tick` on, and nothing is
    ///   enqueued (a new schedule starts at its next tick);
    /// - `tick` after `last`: one job is enqueued for `tick`, unique by
    ///   [`Periodic::tick_key`] in every state, so a second scheduler acting on the same
    ///   tick stores nothing; ticks between `last` and `tick` were missed and get no job
    ///   of their own. If `tick` is itself missed (more than `late_after` old) and the
    ///   schedule says [`Missed::Skip`], it is recorded without a job;
    /// - otherwise there is nothing to do.
    ///
    /// The job is stored before the record, so a scheduler that dies between the two
    /// leaves the tick to the next one, whose enqueue the uniqueness key turns into a
    /// duplicate. A schedule whose storage call fails does not hold the others back:
    /// the pass goes on and returns the first error at the end (what it did stays
    /// done; the failed schedule is dealt with at the next pass).
    pub async fn run_due(&self, storage: &dyn Storage, now: Option<Timestamp>) -> Result<DueTicks> {
        self.run_pass(storage, now.unwrap_or_else(Utc::now), now, || true).await
    }

    /// [`PeriodicScheduler::run_due`] with ticks judged at `clock` and `storage_now` as
    /// the storage's clock override, asking `may_act` before each schedule and stopping
    /// (without an error) once it says no: the worker passes "still the leader".
    pub(crate) async fn run_pass(
        &self,
        storage: &dyn Storage,
        clock: Timestamp,
        storage_now: Option<Timestamp>,
        may_act: impl Fn() -> bool,
    ) -> Result<DueTicks> {
        let mut due = DueTicks::default();
        if self.jobs.is_empty() {
            return Ok(due);
        }
        let stored: HashMap<String, (String, Option<Timestamp>)> = storage
            .list_periodic()
            .await?
            .into_iter()
            .map(|record| (record.name, (record.spec, record.last_tick)))
            .collect();
        let mut first_error = None;
        for job in &self.jobs {
            if !may_act() {
                break;
            }
            // A record of another schedule under this name does not count.
            let last = stored
                .get(job.name())
                .filter(|(spec, _)| *spec == job.schedule().to_string())
                .and_then(|(_, last)| *last);
            if let Err(error) = self.run_one(storage, job, last, clock, storage_now, &mut due).await {
                tracing::warn!(periodic = job.name(), %error, "enqueueing a periodic job failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(due), Err)
    }

    /// One schedule's part of the pass, given the last tick its record holds.
    async fn run_one(
        &self,
        storage: &dyn Storage,
        job: &Periodic,
        last: Option<Timestamp>,
        clock: Timestamp,
        now: Option<Timestamp>,
        due: &mut DueTicks,
    ) -> Result<()> {
        let Some(tick) = job.schedule().latest_at_or_before(clock) else { return Ok(()) };
        let Some(last) = last else {
            save(storage, job, tick, clock, now).await?;
            due.first_seen.push(job.name().to_owned());
            return Ok(());
        };
        if tick <= last {
            return Ok(());
        }
        let missed_between = job.schedule().ticks_between(last, tick, 1000);
        if missed_between > 0 {
            tracing::warn!(
                periodic = job.name(),
                missed = missed_between,
                %last,
                %tick,
                "ticks passed with no pass of the scheduler at them (no leader, or a slow pass); they get no job of their own"
            );
        }
        let late = (clock - tick).to_std().is_ok_and(|age| age > self.late_after);
        if late && job.missed_ticks() == Missed::Skip {
            tracing::info!(periodic = job.name(), %tick, "skipping a missed tick, as the schedule says");
            save(storage, job, tick, clock, now).await?;
            due.skipped.push((job.name().to_owned(), tick));
            return Ok(());
        }
        let mut params = EnqueueParams::new(vec![job.job_for(tick)]);
        params.now = now;
        let outcome = storage.enqueue(params).await?;
        let Some(&id) = outcome.ids.first() else {
            return Err(Error::InvalidArgument("the storage returned no id".into()));
        };
        if outcome.duplicates.contains(&id) {
            tracing::debug!(periodic = job.name(), %tick, %id, "the tick's job was already enqueued");
            due.duplicates.push((job.name().to_owned(), tick, id));
        } else {
            tracing::info!(periodic = job.name(), %tick, %id, late, "enqueued a periodic job");
            due.enqueued.push((job.name().to_owned(), tick, id));
        }
        save(storage, job, tick, clock, now).await
    }
}

/// Records `tick` as `job`'s latest tick dealt with, and its next tick after `clock`.
async fn save(
    storage: &dyn Storage,
    job: &Periodic,
    tick: Timestamp,
    clock: Timestamp,
    now: Option<Timestamp>,
) -> Result<()> {
    let mut update = PeriodicUpdate::new(job.name(), job.schedule().to_string()).last_tick(tick);
    update.next_tick = job.schedule().next_after(clock);
    update.now = now;
    storage.save_periodic(update).await
}
