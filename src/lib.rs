#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;

pub use connect::connect;
pub use haul_core::forward_admin;
pub use haul_core::limits;
#[doc(inline)]
pub use haul_core::{
    Admin, AdminAction, AttemptError, Claim, Control, Discard, Enqueue, EnqueueJob, Error, ErrorKind, IntoJobResult,
    Job, JobContext, JobError, JobEvent, JobEventKind, JobEvents, JobFilter, JobId, JobOptions, JobOutcome, JobRecord,
    JobState, ListParams, MAX_METADATA_BYTES, Metadata, Missed, NewJob, Periodic, Queue, QueueCounts, QueueLimits,
    QueueLimitsRecord, RateLimit, Result, Retention, RetryAfter, RetryPolicy, RunAt, Schedule, Snooze, State, StateMap,
    StopReason, Storage, THROUGHPUT_RETENTION, ThroughputSample, Unique, Worker, WorkerBuilder, shutdown_signal,
};
/// Middleware around every job's handler and every enqueue: [`middleware::from_fn`],
/// [`middleware::enqueue_fn`], [`middleware::Middleware`], [`middleware::EnqueueMiddleware`].
pub mod middleware {
    #[doc(inline)]
    pub use haul_core::middleware::*;
}
/// Lifecycle events of the attempts a worker runs ([`Worker::subscribe`]).
pub mod events {
    #[doc(inline)]
    pub use haul_core::events::*;
}
/// Periodic (cron) jobs: [`Periodic`], [`Schedule`], [`Missed`], and the scheduler the
/// leader runs. See the README's "Periodic jobs".
pub mod periodic {
    #[doc(inline)]
    pub use haul_core::periodic::*;
}
pub mod testing;
/// OpenTelemetry trace propagation through job metadata: [`otel::inject`] at enqueue,
/// [`otel::continue_trace`] on each attempt's span (see the README's "OpenTelemetry").
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel {
    #[doc(inline)]
    pub use haul_core::otel::*;
}
/// The backend trait and its parameter types, for backend authors (unstable until 1.0).
pub mod storage {
    #[doc(inline)]
    pub use haul_core::{
        CLAIM_ORDER_LAG, ClaimParams, DEFAULT_MAX_ARGS_BYTES, EnqueueOutcome, EnqueueParams, HeartbeatOutcome,
        HeartbeatParams, JobOutcome, Leadership, LeadershipParams, LeaseToken, ListParams, MAX_ARGS_DEPTH, PacedClaim,
        PeriodicRecord, PeriodicUpdate, PruneParams, QueueCounts, Report, ReportOutcome, ReportParams, RescueOutcome,
        Retention, Storage, ThroughputSample, Timestamp, WakeupSender, Wakeups, WorkerBeat, WorkerRecord,
        merge_samples, minute_of, storable_text,
    };
}
#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
#[doc(inline)]
pub use haul_macros::job;
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
#[doc(inline)]
pub use haul_memory::MemoryStorage;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[doc(inline)]
pub use haul_postgres::{PostgresConfig, PostgresStorage};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use haul_redis::{RedisConfig, RedisStorage};

/// The PostgreSQL backend: everything [haul-postgres](https://docs.rs/haul-postgres)
/// exports, so an application names it through `haul` alone.
///
/// Beyond the [`Storage`] calls every backend shares, it offers the calls that need
/// the database: [`PostgresStorage::migrate`](postgres::PostgresStorage::migrate),
/// enqueueing in the application's own `sqlx` transaction
/// ([`PostgresStorage::enqueue_in_tx`](postgres::PostgresStorage::enqueue_in_tx)) and
/// job-scoped transactions, whose commit also completes the job
/// ([`JobTransaction`](postgres::JobTransaction)).
///
/// ```no_run
/// use haul::JobContext;
/// use haul::postgres::{JobTransaction, PostgresConfig, PostgresStorage};
///
/// # async fn example() -> haul::Result<()> {
/// let config = PostgresConfig::new().schema("billing_jobs");
/// let storage = PostgresStorage::connect_with("postgres://app@localhost/app", config).await?;
/// storage.migrate().await?;
/// # Ok(()) }
/// /// In a handler: the job's writes go through `tx`, and its commit completes the job.
/// async fn finish(storage: &PostgresStorage, ctx: &JobContext) -> haul::Result<()> {
///     let tx: JobTransaction = storage.begin_job_transaction(ctx).await?;
///     tx.commit().await
/// }
/// ```
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres {
    #[doc(inline)]
    pub use haul_postgres::*;
}

/// The Redis backend: everything [haul-redis](https://docs.rs/haul-redis) exports, so
/// an application names it through `haul` alone.
///
/// Beyond the [`Storage`] calls every backend shares, it offers its own settings
/// ([`RedisConfig`]: key prefix, eviction check) and Redis Cluster connections
/// ([`RedisStorage::connect_cluster`](redis::RedisStorage::connect_cluster)).
///
/// ```no_run
/// use haul::redis::{RedisConfig, RedisStorage};
///
/// # async fn example() -> haul::Result<()> {
/// let storage = RedisStorage::connect_with("redis://127.0.0.1:6379", RedisConfig::new().prefix("billing")).await?;
/// assert_eq!(storage.prefix(), "billing");
/// # Ok(()) }
/// ```
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    #[doc(inline)]
    pub use haul_redis::*;
}

/// Everything the quickstart needs, in one `use haul::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "memory")]
    pub use crate::MemoryStorage;
    #[cfg(feature = "macros")]
    pub use crate::job;
    pub use crate::{
        Admin, Discard, JobContext, JobError, JobFilter, JobId, JobRecord, JobState, ListParams, Periodic, Queue,
        QueueLimits, RateLimit, RetryAfter, RetryPolicy, Schedule, Snooze, State, Storage, Unique, Worker,
        shutdown_signal,
    };
    pub use std::time::Duration;
}

/// Paths used by the code `#[job]` generates. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use haul_core::__private::{async_trait, inventory, serde, typetag};
    pub use haul_core::{FromContext, IntoJobResult, Job, JobContext, JobError, JobKind, JobOptions, RetryPolicy};
    pub use std::boxed::Box;
    pub use std::result::Result;
    pub use std::time::Duration;
}
