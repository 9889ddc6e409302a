//! Core of [haul](https://docs.rs/haul): the `Job` and `Storage` traits, the worker
//! runtime, and the types they share.
//!
//! Applications use the `haul` facade crate; backend authors implement [`Storage`]
//! and run the conformance suite of `haul-integration-tests` against it. The
//! `Storage` trait is **unstable until 1.0**.

mod admin;
mod cluster;
mod context;
mod debug_impls;
mod error;
pub mod events;
mod id;
pub mod job;
pub mod limits;
mod metadata;
pub mod middleware;
mod names;
#[cfg(feature = "opentelemetry")]
pub mod otel;
mod outcome;
pub mod periodic;
mod queue;
mod record;
mod retry;
mod storable;
mod storage;
pub mod testing;
mod throughput;
pub mod url_param;
pub mod wakeup;
mod worker;

pub use admin::{Admin, AdminAction, JobFilter, ListParams, QueueCounts};
pub use cluster::{Leadership, LeadershipParams, WorkerBeat, WorkerRecord};
pub use context::{FromContext, JobContext, State, StateMap, StateRequirement, StopReason};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use events::{JobEvent, JobEventKind, JobEvents};
pub use id::{Claim, JobId, LeaseToken};
pub use job::{Job, JobKind, JobOptions};
pub use limits::{
    KEY_LIMIT_SCAN, MAX_LIMIT_KEY_BYTES, MAX_RATE_PERIOD, MAX_RATE_STARTS, QueueLimits, QueueLimitsRecord, RateLimit,
    validate_limit_key,
};
pub use metadata::{MAX_METADATA_BYTES, Metadata, metadata_from_json};
pub use names::{MAX_NAME_LEN, validate_kind_name, validate_namespace, validate_periodic_name, validate_queue_name};
pub use outcome::{Control, Discard, IntoJobResult, JobError, RetryAfter, Snooze};
pub use periodic::{DueTicks, Missed, Periodic, PeriodicRecord, PeriodicScheduler, PeriodicUpdate, Schedule};
pub use queue::{DEFAULT_MAX_ARGS_BYTES, Enqueue, EnqueueJob, Queue};
pub use record::{AttemptError, JobRecord, JobState, NewJob, RunAt, Timestamp, Unique};
pub use retry::RetryPolicy;
pub use storable::{MAX_ARGS_DEPTH, json_len, storable_text};
pub use storage::{
    CLAIM_ORDER_LAG, ClaimParams, EnqueueOutcome, EnqueueParams, HeartbeatOutcome, HeartbeatParams, JobOutcome,
    PacedClaim, PruneParams, Report, ReportOutcome, ReportParams, RescueOutcome, Retention, Storage,
};
pub use throughput::{THROUGHPUT_RETENTION, ThroughputSample, merge_samples, minute_of};
pub use wakeup::{WakeupSender, Wakeups};
pub use worker::{Worker, WorkerBuilder, shutdown_signal};

#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use inventory;
    pub use serde;
    pub use typetag;
}
