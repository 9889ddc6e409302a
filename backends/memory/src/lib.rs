//! In-memory storage for [haul](https://docs.rs/haul): the embedded default
//! (`memory://`) and the reference for the semantics every other backend matches.
//!
//! ```
//! use haul_core::{ClaimParams, EnqueueParams, NewJob, Storage};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> haul_core::Result<()> {
//! let storage = haul_memory::MemoryStorage::new();
//! storage.enqueue(EnqueueParams::new(vec![NewJob::new("send_email", serde_json::json!({ "to": "a@b.c" }))])).await?;
//! let claimed = storage.claim(ClaimParams::new(["default"], 10)).await?;
//! assert_eq!(claimed[0].kind, "send_email");
//! # Ok(()) }
//! ```
//!
//! Applications rarely call the storage directly: they hand it to `haul::Queue` and
//! `haul::Worker` (or get it from `haul::connect("memory://")`). Jobs live in the
//! process and are gone when it exits; clones of a `MemoryStorage` share the same jobs.
//!
//! # This process only
//!
//! `memory://` is not shared: another process that opens `memory://` gets storage of
//! its own, empty, and a job enqueued by a web server is never seen by a worker running
//! in another process. Nor does this process see its jobs again after a restart. Use it
//! for tests, for development, and for applications whose producer and worker run in
//! one process and can lose queued jobs on exit; use PostgreSQL or Redis otherwise. A
//! worker on this backend says so in its first log line.
//!
//! # Semantics
//!
//! Every time-dependent call uses the `now` it is given, or the process clock.
//!
//! - **enqueue** validates the whole batch first (queue and kind names, at least one
//!   attempt, arguments a JSON object, ids unused) and then stores all of it or none.
//!   A job due after `now` is `scheduled`, otherwise `available`. A unique job that a
//!   stored job (or an earlier job of the batch) blocks — same key, a blocking state,
//!   created inside the window — is skipped and the blocking job's id returned in its
//!   place and in `duplicates`.
//! - **claim** takes `available` jobs of the unpaused queues in priority, `run_at`, id
//!   order. Each becomes `running` with its attempt count up by one, a fresh lease
//!   token, `lease_expires_at = now + lease`, and `claimed_by` set. A queue with a
//!   concurrency limit gives no more than the limit minus its running jobs; one with a
//!   limit per key walks at most [`KEY_LIMIT_SCAN`](haul_core::KEY_LIMIT_SCAN) of its
//!   available jobs and takes a job with a limit key only while the key's running jobs
//!   and the jobs of the key taken before it in this claim are under the limit. A
//!   queue with a rate limit gives a job only while its starts logged in
//!   `(now - period, now]` and the jobs taken before it in this claim are under the
//!   limit (per key for a rate limit per key, walking at most `KEY_LIMIT_SCAN` jobs);
//!   once its own rate is full it gives nothing more. Every claimed job is logged as a
//!   start at `now` for its queue's rate limits (only queues with one log starts). The
//!   claim (`claim_paced`) tells, when a rate limit held back a job it would otherwise
//!   have taken (it had room under `limit` and the concurrency limits), how long until
//!   the earliest such limit lets one more start.
//! - **report** applies an outcome only if the job is `running` under the claim's
//!   token, else rejects it. Completed, discarded and cancelled jobs get
//!   `finished_at`; a failure appends to the error history and is `retryable` at
//!   `now + retry_in`, or `discarded` once `attempt >= max_attempts`; a snooze gives
//!   the attempt back and is due at `now + delay` (`available` right away when the
//!   delay is zero). A cancel requested while the job ran turns a failure or a snooze
//!   into `cancelled`. The lease fields are cleared; `attempted_at` stays.
//! - **heartbeat** extends the leases still held (`extended`), flags those asked to
//!   cancel (`cancelled`, also extended), and reports the others as `lost`.
//! - **promote_due** makes `scheduled` and `retryable` jobs with `run_at <= now`
//!   `available`.
//! - **rescue_expired** ends leases with a deadline `<= now`: `cancelled` if a cancel
//!   was requested, else the error `lease expired: …` is recorded and the job is
//!   `discarded` when no attempt is left or `available` again (at `now`) otherwise.
//! - **prune** deletes up to `limit` finished jobs with `finished_at <= now - retention`
//!   of their state, oldest first.
//! - **cancel** ends a `scheduled`, `available` or `retryable` job as `cancelled`;
//!   marks a `running` one with `cancel_requested_at` (its holder learns it by
//!   heartbeat); is an `InvalidState` error on a finished job.
//! - **retry** makes any job but a `running` one `available` now, clears
//!   `finished_at` and `cancel_requested_at`, keeps the error history, and raises
//!   `max_attempts` to `attempt + 1` when the attempts are used up.
//! - **pause_queue**/**resume_queue** work on any valid queue name, with or without jobs.
//! - **counts** lists the queues that have jobs or are paused, by name.
//! - **beat_worker** stores the worker's record, seen at `now` and ending at
//!   `now + ttl`; **list_workers** shows the records ending after `now`, by id;
//!   **remove_worker** forgets one (an unknown id is fine). Expired records are
//!   dropped by beats and lists.
//! - **acquire_leadership** renews the caller's live lead (same term, ending at
//!   `now + ttl`), or gives it a lead that is free, released or lapsed
//!   (`expires_at <= now`) under the previous term plus one (the first is 1), or
//!   returns `None` while another worker's lead is live. **release_leadership** frees
//!   the lead if that worker holds it under that term; the term counter stays.
//!   **leader** is the lead unless released or lapsed.
//! - **save_periodic** applies [`PeriodicUpdate::apply`](haul_core::PeriodicUpdate::apply)
//!   to the schedule's record at `now`: an update whose `last_tick` is before the
//!   stored one changes nothing; otherwise the record takes its spec and next tick,
//!   the later of the two last ticks, and `updated_at = now`. **list_periodic** shows
//!   every record by name; **delete_periodic** forgets one and tells whether it was
//!   there.
//!
//! Wake-ups are sent once per queue per call whenever jobs become available (enqueue,
//! snooze, promotion, rescue, retry, resume), and when a running job of a limited queue
//! ends (report, rescue) while the queue has available jobs: a queue with a
//! concurrency limit, or with a limit per key when the job had a limit key. A claim
//! sends none.
//!
//! # Performance
//!
//! One mutex guards the jobs, held for the length of one call and never across an
//! `.await`. Hot calls use indexes (available jobs per queue in claim order, running
//! jobs per queue and limit key, pending jobs by due time, running jobs by lease
//! deadline, finished jobs by finish time), so claiming or promoting `k` jobs costs
//! `O(k log n)`, not a scan; a claim of a queue with a limit per key looks at up to
//! [`KEY_LIMIT_SCAN`](haul_core::KEY_LIMIT_SCAN) more jobs. A rate limit keeps at
//! most its `starts` most recent start times per queue (or key) within its period; a
//! key's log is dropped once its starts left the window, and a queue's logs with its
//! rate limits. A claim of queues without a rate limit logs nothing.

mod cluster;
mod index;
mod lifecycle;
mod periodic;
mod rate;
mod storage_impl;
mod store;
#[cfg(test)]
mod tests;
mod throughput;
mod time;
mod unique;
mod wake;

use std::sync::{Arc, Mutex};

use haul_core::WakeupSender;

use crate::store::Store;

/// Jobs kept in this process. Cheap to clone; clones share the same jobs.
///
/// Only this process sees them: other processes (each `MemoryStorage::new()` or
/// `memory://` is storage of its own), and this process after a restart, do not. See
/// [the crate docs](crate#this-process-only).
///
/// Nothing needs setting up: [`Storage::migrate`](haul_core::Storage::migrate) and
/// [`Storage::check_ready`](haul_core::Storage::check_ready) keep their defaults.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    store: Mutex<Store>,
    wakeups: WakeupSender,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage").finish_non_exhaustive()
    }
}
