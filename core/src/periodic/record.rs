//! The storage contract of periodic jobs: one record per schedule, what the leader
//! last did with it ([`crate::Storage::save_periodic`], [`crate::Admin::list_periodic`]).

use crate::Timestamp;

/// A schedule's record in storage, as [`crate::Admin::list_periodic`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeriodicRecord {
    /// The schedule's name (unique in a namespace).
    pub name: String,
    /// The schedule, as people read it (`cron "0 3 * * *" in Europe/Paris`, `every 30s`).
    pub spec: String,
    /// The latest tick dealt with: enqueued, skipped as missed, or the last tick
    /// before the schedule was first seen. Ticks up to it are never enqueued again.
    pub last_tick: Option<Timestamp>,
    /// The next tick, as the scheduler that saved the record computed it.
    pub next_tick: Option<Timestamp>,
    /// When the record was last saved.
    pub updated_at: Timestamp,
}

impl PeriodicRecord {
    /// A record as a backend reads it back from storage.
    pub fn new(
        name: impl Into<String>,
        spec: impl Into<String>,
        last_tick: Option<Timestamp>,
        next_tick: Option<Timestamp>,
        updated_at: Timestamp,
    ) -> Self {
        Self { name: name.into(), spec: spec.into(), last_tick, next_tick, updated_at }
    }
}

/// What a scheduler saves about a schedule ([`crate::Storage::save_periodic`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeriodicUpdate {
    /// The schedule's name.
    pub name: String,
    /// The schedule, as people read it.
    pub spec: String,
    /// The latest tick dealt with, if any (`None` keeps the stored one).
    pub last_tick: Option<Timestamp>,
    /// The next tick.
    pub next_tick: Option<Timestamp>,
    /// Clock override for `updated_at` (`None`: the storage's clock).
    pub now: Option<Timestamp>,
}

impl PeriodicUpdate {
    /// An update of schedule `name`, described by `spec`, with no tick set.
    pub fn new(name: impl Into<String>, spec: impl Into<String>) -> Self {
        Self { name: name.into(), spec: spec.into(), last_tick: None, next_tick: None, now: None }
    }

    /// Sets the latest tick dealt with.
    pub fn last_tick(mut self, tick: Timestamp) -> Self {
        self.last_tick = Some(tick);
        self
    }

    /// Sets the next tick.
    pub fn next_tick(mut self, tick: Timestamp) -> Self {
        self.next_tick = Some(tick);
        self
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }

    /// Whether this update changes nothing because `stored`, a record of the same spec,
    /// dealt with a later tick (the rule every backend applies; see
    /// [`crate::Storage::save_periodic`]). A record of another spec is never newer: a
    /// changed schedule takes its record over whatever the ticks, or it could not be
    /// saved until its own ticks passed the old schedule's last one.
    pub fn is_stale_against(&self, stored: &PeriodicRecord) -> bool {
        self.spec == stored.spec
            && matches!((self.last_tick, stored.last_tick), (Some(given), Some(kept)) if given < kept)
    }

    /// The record this update leaves, given the stored one (if any) and the time `now`:
    /// the stored record unchanged if the update is stale, else the update's spec and
    /// next tick with the later of the two last ticks. Backends may use it, or apply the
    /// same rule in their own language.
    pub fn apply(&self, stored: Option<&PeriodicRecord>, now: Timestamp) -> PeriodicRecord {
        if let Some(stored) = stored
            && self.is_stale_against(stored)
        {
            return stored.clone();
        }
        PeriodicRecord::new(
            self.name.clone(),
            self.spec.clone(),
            self.last_tick.max(stored.and_then(|stored| stored.last_tick)),
            self.next_tick,
            now,
        )
    }
}
