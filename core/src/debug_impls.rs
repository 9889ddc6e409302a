//! Every public type of haul-core implements `Debug`, so an application can derive
//! `Debug` on its own types that hold a [`Worker`], a [`Queue`] or an [`Enqueue`].
//!
//! The impls that need private fields live next to their type (`worker/debug.rs`,
//! `worker/config/debug.rs`, `queue/debug.rs`); the check below fails to compile when a
//! public type loses its `Debug` (the `missing_debug_implementations` lint only warns
//! about types that never had one).

use std::fmt::Debug;

use crate::{
    AttemptError, Claim, ClaimParams, Control, Discard, Enqueue, EnqueueOutcome, EnqueueParams, Error, ErrorKind,
    HeartbeatOutcome, HeartbeatParams, JobContext, JobError, JobId, JobKind, JobOptions, JobOutcome, JobRecord,
    JobState, LeaseToken, ListParams, NewJob, PruneParams, Queue, QueueCounts, Report, ReportOutcome, ReportParams,
    RescueOutcome, Retention, RetryAfter, RetryPolicy, RunAt, Snooze, State, StateMap, StopReason, Timestamp, Unique,
    WakeupSender, Wakeups, Worker, WorkerBuilder,
};

/// Compiles only while every type named here implements `Debug`.
const _: fn() = || {
    fn implements_debug<T: Debug + ?Sized>() {}
    implements_debug::<AttemptError>();
    implements_debug::<Claim>();
    implements_debug::<ClaimParams>();
    implements_debug::<Control>();
    implements_debug::<Discard>();
    implements_debug::<Enqueue<'static>>();
    implements_debug::<EnqueueOutcome>();
    implements_debug::<EnqueueParams>();
    implements_debug::<Error>();
    implements_debug::<ErrorKind>();
    implements_debug::<HeartbeatOutcome>();
    implements_debug::<HeartbeatParams>();
    implements_debug::<JobContext>();
    implements_debug::<JobError>();
    implements_debug::<JobId>();
    implements_debug::<JobKind>();
    implements_debug::<JobOptions>();
    implements_debug::<JobOutcome>();
    implements_debug::<JobRecord>();
    implements_debug::<JobState>();
    implements_debug::<LeaseToken>();
    implements_debug::<ListParams>();
    implements_debug::<NewJob>();
    implements_debug::<PruneParams>();
    implements_debug::<Queue>();
    implements_debug::<QueueCounts>();
    implements_debug::<Report>();
    implements_debug::<ReportOutcome>();
    implements_debug::<ReportParams>();
    implements_debug::<RescueOutcome>();
    implements_debug::<Retention>();
    implements_debug::<RetryAfter>();
    implements_debug::<RetryPolicy>();
    implements_debug::<RunAt>();
    implements_debug::<Snooze>();
    implements_debug::<State<()>>();
    implements_debug::<StateMap>();
    implements_debug::<StopReason>();
    implements_debug::<Timestamp>();
    implements_debug::<Unique>();
    implements_debug::<WakeupSender>();
    implements_debug::<Wakeups>();
    implements_debug::<Worker>();
    implements_debug::<WorkerBuilder>();
};
