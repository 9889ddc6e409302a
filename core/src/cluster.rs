//! The cluster layer's contract: a registry of live workers and one elected leader per
//! namespace (a PostgreSQL schema, a Redis key prefix, a memory instance), kept by the
//! storage itself. See [`crate::Storage::beat_worker`] and
//! [`crate::Storage::acquire_leadership`].

use std::time::Duration;

use crate::Timestamp;

/// What a running worker tells the registry about itself, each time it refreshes its
/// record ([`crate::Storage::beat_worker`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerBeat {
    /// The worker's id (unique among live workers of a namespace).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// How many jobs it runs at once.
    pub concurrency: u32,
    /// How many jobs it holds right now (running or prefetched).
    pub held: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How long the record lives without another beat.
    pub ttl: Duration,
    /// Clock override (`None`: the storage's clock).
    pub now: Option<Timestamp>,
}

impl WorkerBeat {
    /// A beat of worker `id`, started at `started_at`, whose record lives `ttl`; host,
    /// pid, queues and counts empty until set.
    pub fn new(id: impl Into<String>, started_at: Timestamp, ttl: Duration) -> Self {
        Self {
            id: id.into(),
            host: String::new(),
            pid: 0,
            queues: Vec::new(),
            concurrency: 0,
            held: 0,
            started_at,
            ttl,
            now: None,
        }
    }

    /// Sets the host and process id.
    pub fn process(mut self, host: impl Into<String>, pid: u32) -> Self {
        self.host = host.into();
        self.pid = pid;
        self
    }

    /// Sets the queues served and the concurrency.
    pub fn serving(mut self, queues: Vec<String>, concurrency: u32) -> Self {
        self.queues = queues;
        self.concurrency = concurrency;
        self
    }

    /// Sets how many jobs the worker holds.
    pub fn held(mut self, held: u32) -> Self {
        self.held = held;
        self
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }
}

/// A live worker's record, as [`crate::Admin::list_workers`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerRecord {
    /// The worker's id.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// How many jobs it runs at once.
    pub concurrency: u32,
    /// How many jobs it held at its last beat.
    pub held: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// Its last beat (the storage's clock, or the beat's `now`).
    pub last_seen_at: Timestamp,
    /// When the record ends without another beat (`last_seen_at` + the beat's ttl).
    pub expires_at: Timestamp,
}

impl WorkerRecord {
    /// The record a beat leaves at `now`.
    pub fn from_beat(beat: &WorkerBeat, now: Timestamp) -> Self {
        Self {
            id: beat.id.clone(),
            host: beat.host.clone(),
            pid: beat.pid,
            queues: beat.queues.clone(),
            concurrency: beat.concurrency,
            held: beat.held,
            started_at: beat.started_at,
            last_seen_at: now,
            expires_at: after(now, beat.ttl),
        }
    }
}

/// Input of [`crate::Storage::acquire_leadership`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeadershipParams {
    /// The worker asking to lead (or to renew its lead).
    pub worker_id: String,
    /// How long the leadership lasts without a renewal.
    pub ttl: Duration,
    /// Clock override (`None`: the storage's clock).
    pub now: Option<Timestamp>,
}

impl LeadershipParams {
    /// `worker_id` asks to lead for `ttl`.
    pub fn new(worker_id: impl Into<String>, ttl: Duration) -> Self {
        Self { worker_id: worker_id.into(), ttl, now: None }
    }

    /// Sets the clock override.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = Some(now);
        self
    }
}

/// The leadership of a namespace: who holds it, under which term, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leadership {
    /// The leading worker.
    pub worker_id: String,
    /// Goes up by one each time the leadership changes hands (or is taken again after
    /// it lapsed), never otherwise: it fences what a leader does under an old term.
    pub term: u64,
    /// When the leadership lapses without a renewal.
    pub expires_at: Timestamp,
}

impl Leadership {
    /// A leadership record.
    pub fn new(worker_id: impl Into<String>, term: u64, expires_at: Timestamp) -> Self {
        Self { worker_id: worker_id.into(), term, expires_at }
    }
}

/// `now + ttl`, saturating at the latest time a timestamp can hold (an absurd ttl means
/// "never expires", not a panic).
pub(crate) fn after(now: Timestamp, ttl: Duration) -> Timestamp {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
