//! Lifecycle events: what happened to each attempt a worker ran, delivered to whoever
//! subscribed ([`crate::Worker::subscribe`]): dashboards, alerts, tests.
//!
//! Each attempt a worker takes on produces [`JobEventKind::Started`] when its handler
//! starts (not for a job handed back before it started), then exactly one ending event.
//! A failure (an error, a panic or a timeout) on the job's last attempt ends in
//! [`JobEventKind::Discarded`], since storage discards the job: that is the one event
//! that says "this job will not run again" after an attempt, the death handler's event.
//!
//! Events tell what the worker reported, not what storage then stored: a cancel
//! requested after the last heartbeat turns a reported failure into `cancelled` in
//! storage, and a report that arrives after the lease was lost is rejected there, while
//! the event says `Failed` or `Completed`. An event may reach a subscriber before
//! storage holds the outcome (outcomes are written in batches). A job that a crashed
//! worker held on its last attempt is discarded by the leader's rescue, which sends no
//! event: watch `discarded` counts in storage for those.
//!
//! Delivery is a broadcast channel of [`EVENT_CAPACITY`] events: a subscriber that falls
//! further behind loses the oldest (with a warning), so a slow one never slows the
//! worker. Events are built only while someone is subscribed. A subscription ends
//! (`recv` returns `None`) once the worker has stopped and every job task it started
//! has ended: a handler that never yields keeps it open.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::{JobId, JobRecord, Timestamp};

/// How many events a subscriber may fall behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 4096;

/// Something that happened to one attempt of a job.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JobEvent {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// The attempt (from 1).
    pub attempt: u32,
    /// The attempts the job gets.
    pub max_attempts: u32,
    /// When it happened, by the worker's clock.
    pub at: Timestamp,
    /// What happened.
    pub what: JobEventKind,
}

impl JobEvent {
    pub(crate) fn new(record: &JobRecord, what: JobEventKind) -> Self {
        Self {
            id: record.id,
            kind: record.kind.clone(),
            queue: record.queue.clone(),
            attempt: record.attempt,
            max_attempts: record.max_attempts,
            at: chrono::Utc::now(),
            what,
        }
    }
}

/// What happened; see the module docs for the order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum JobEventKind {
    /// The attempt started: the handler is about to run. A job whose stored arguments
    /// cannot be read or decoded starts too, and ends at once (`Failed` or `Discarded`,
    /// with the reason). A claimed job that ends before its handler starts (cancelled,
    /// handed back at shutdown, its lease lost while it waited for a slot) gets its
    /// ending alone, without `Started`, although storage counted the attempt.
    Started,
    /// The handler succeeded: the job is `completed`.
    Completed {
        /// How long the attempt ran.
        duration: Duration,
    },
    /// The handler failed (an error or a panic) and the job will be retried.
    Failed {
        /// The error recorded.
        error: String,
        /// When the next attempt is due.
        retry_at: Timestamp,
    },
    /// The attempt ran out of time and the job will be retried.
    TimedOut {
        /// The attempt's time limit.
        timeout: Duration,
        /// When the next attempt is due.
        retry_at: Timestamp,
    },
    /// The job will not run again: the handler discarded it, its last attempt failed or
    /// timed out, or its stored form cannot be read.
    Discarded {
        /// Why (the last error, for a failed last attempt).
        reason: String,
    },
    /// The handler snoozed the job: it runs again at `until` without spending an attempt.
    Snoozed {
        /// When it is due again.
        until: Timestamp,
    },
    /// The job was cancelled while it ran (or before it started).
    Cancelled,
    /// The worker gave the job back without spending its attempt: it shut down before
    /// the job finished (or started), or the job, claimed ahead by the automatic
    /// prefetch, waited too long for a slot (see [`crate::WorkerBuilder::prefetch`]).
    HandedBack,
    /// The worker lost the job's lease (another worker may run it); nothing is reported.
    LeaseLost,
}

impl JobEventKind {
    /// The label of this ending in metrics and logs: `started`, `completed`, `failed`,
    /// `timed_out`, `discarded`, `snoozed`, `cancelled`, `handed_back`, `lease_lost`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::TimedOut { .. } => "timed_out",
            Self::Discarded { .. } => "discarded",
            Self::Snoozed { .. } => "snoozed",
            Self::Cancelled => "cancelled",
            Self::HandedBack => "handed_back",
            Self::LeaseLost => "lease_lost",
        }
    }
}

/// A subscription to a worker's [`JobEvent`]s ([`crate::Worker::subscribe`]).
#[derive(Debug)]
pub struct JobEvents {
    receiver: broadcast::Receiver<JobEvent>,
}

impl JobEvents {
    pub(crate) fn new(receiver: broadcast::Receiver<JobEvent>) -> Self {
        Self { receiver }
    }

    /// The next event, waiting for one; `None` once the worker is gone and every event
    /// was received. Events lost by falling behind are skipped with a warning.
    pub async fn recv(&mut self) -> Option<JobEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::warn!(lost, "a job event subscriber fell behind; the oldest events were dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<JobEvent> {
        loop {
            match self.receiver.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(lost)) => {
                    tracing::warn!(lost, "a job event subscriber fell behind; the oldest events were dropped");
                }
                Err(_) => return None,
            }
        }
    }
}

/// The sending side, shared by a worker's executors. The channel is made at the first
/// subscription, so a worker nobody subscribes to allocates nothing for it and pays one
/// atomic load per event.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventSender {
    sender: std::sync::Arc<std::sync::OnceLock<broadcast::Sender<JobEvent>>>,
}

impl EventSender {
    pub(crate) fn subscribe(&self) -> JobEvents {
        JobEvents::new(self.sender.get_or_init(|| broadcast::Sender::new(EVENT_CAPACITY)).subscribe())
    }

    /// Sends what `what` builds about `record`, if anyone listens.
    pub(crate) fn send(&self, record: &JobRecord, what: impl FnOnce() -> JobEventKind) {
        if let Some(sender) = self.sender.get()
            && sender.receiver_count() > 0
        {
            // No receiver left meanwhile is not an error.
            let _ = sender.send(JobEvent::new(record, what()));
        }
    }
}
