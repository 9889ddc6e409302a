//! The one error type at the storage boundary.

use std::borrow::Cow;

use crate::JobId;

/// A boxed error from a driver (sqlx, redis…), reachable through [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across haul.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong at the storage boundary and in the runtime.
///
/// Match on variants and on [`ErrorKind`], never on the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No job has this id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// A job with this id is already stored.
    #[error("job {0} already exists")]
    DuplicateId(JobId),
    /// The job exists but is in a state that does not allow the operation.
    #[error("job {id} is {state}; {operation} needs it to be {expected}")]
    InvalidState {
        /// The job.
        id: JobId,
        /// Its current state.
        state: crate::JobState,
        /// What was attempted.
        operation: &'static str,
        /// The states that would have allowed it.
        expected: &'static str,
    },
    /// The arguments of a job could not be serialized or deserialized.
    #[error("job kind `{kind}` could not be (de)serialized")]
    Serialization {
        /// The job kind.
        kind: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A stored job names a kind that no `#[job]` in this binary registers.
    #[error("unknown job kind `{0}`; is the job registered in this binary?")]
    UnknownKind(String),
    /// Two job types registered the same kind name.
    #[error("job kind `{kind}` is registered twice (by `{first}` and `{second}`); give one of them `name = \"...\"`")]
    DuplicateKind {
        /// The kind name.
        kind: String,
        /// The first Rust type registering it.
        first: &'static str,
        /// The second Rust type registering it.
        second: &'static str,
    },
    /// A name (queue, namespace, kind) is not acceptable.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidName {
        /// What the name is for (`"queue"`, `"namespace"`…).
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A value passed to haul is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(Cow<'static, str>),
    /// The serialized arguments are larger than the configured limit.
    #[error(
        "job kind `{kind}` has {size} bytes of arguments, more than the limit of {limit}; store large data \
         elsewhere and pass a reference to it, or raise the limit with `Queue::max_args_bytes`"
    )]
    PayloadTooLarge {
        /// The job kind.
        kind: String,
        /// The size of the serialized arguments.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A storage URL names a backend this build does not include.
    #[error(
        "`{scheme}://` needs the `{feature}` feature of haul, which this build does not enable (or whose backend is not released yet)"
    )]
    BackendNotAvailable {
        /// The URL scheme.
        scheme: String,
        /// The cargo feature that provides it.
        feature: &'static str,
    },
    /// A write fenced by a claim found that the claim no longer holds: the job's lease
    /// expired (it may be rescued and claimed by someone else) or its outcome was
    /// already written. Nothing was changed.
    #[error("the worker no longer holds job {0}")]
    LeaseLost(JobId),
    /// The backend does not offer a feature the call asks for.
    #[error("the {backend} backend does not support {feature}")]
    Unsupported {
        /// Which backend.
        backend: &'static str,
        /// The feature asked for.
        feature: &'static str,
    },
    /// The storage is not set up for this version of haul (not migrated, or laid out
    /// by an incompatible version); the message says what to do.
    #[error("the {backend} storage is not ready: {reason}")]
    StorageNotReady {
        /// Which backend.
        backend: &'static str,
        /// What is missing or incompatible, and how to fix it.
        reason: String,
    },
    /// A job kind that a worker may run takes `State<T>`, and the worker was not given a
    /// `T`. Reported when the worker starts (see `Worker::run_until` for which kinds are
    /// checked).
    #[error(
        "job kind `{kind}` takes `State<{type_name}>`, but this worker, which serves its queue `{queue}`, has no \
         such state: add it with `Worker::builder(..).state(value)` (or `.shared_state(arc)`)"
    )]
    MissingState {
        /// The job kind.
        kind: String,
        /// The kind's default queue, which the worker serves.
        queue: String,
        /// The type of the missing state.
        type_name: &'static str,
    },
    /// A periodic job's schedule cannot be used: its cron expression does not parse or
    /// never matches, its time zone is unknown, or its interval is out of range.
    #[error("invalid schedule `{schedule}`: {reason}")]
    InvalidSchedule {
        /// The schedule as given (cron expression and time zone, or interval).
        schedule: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The worker is shutting down and does not accept the operation.
    #[error("the worker is shutting down")]
    ShuttingDown,
    /// The backend failed; see [`ErrorKind`] and the source.
    #[error("{kind} error in the {backend} backend: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The class of failure.
        kind: ErrorKind,
        /// What happened, in the backend's words.
        message: String,
        /// The driver error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// The class of a backend failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The connection could not be made or was lost.
    Connection,
    /// The operation timed out.
    Timeout,
    /// A conflicting concurrent change; retrying may succeed.
    Conflict,
    /// Stored data is not in the expected form.
    CorruptData,
    /// Anything else.
    Other,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connection => "connection",
            Self::Timeout => "timeout",
            Self::Conflict => "conflict",
            Self::CorruptData => "corrupt data",
            Self::Other => "other",
        })
    }
}

impl Error {
    /// Builds a [`Error::Backend`] error.
    pub fn backend(
        backend: &'static str,
        kind: ErrorKind,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Self::Backend { backend, kind, message: message.into(), source }
    }

    /// The backend error kind, if this is a backend error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Backend { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether retrying the same call later may succeed (lost connection, timeout, conflict).
    ///
    /// ```
    /// use haul_core::{Error, ErrorKind};
    /// let err = Error::backend("memory", ErrorKind::Connection, "reset", None);
    /// assert!(err.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Conflict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_over_the_limit_are_told_how_to_raise_it() {
        let error = Error::PayloadTooLarge { kind: "resize".to_owned(), size: 2048, limit: 1024 };
        let message = error.to_string();
        assert!(message.starts_with("job kind `resize` has 2048 bytes of arguments, more than the limit of 1024"));
        assert!(message.contains("`Queue::max_args_bytes`"), "{message}");
    }
}
