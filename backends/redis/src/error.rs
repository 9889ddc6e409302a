//! The one place where driver errors become haul errors.

use haul_core::{Error, ErrorKind};
use redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind};

use crate::{BACKEND, EvictionPolicyError};

/// Maps a redis error to a haul [`Error::Backend`] with the right [`ErrorKind`]; the
/// redis error stays reachable through `source()`.
///
/// - I/O errors, dropped or refused connections, a cluster node that cannot be
///   reached, a server still loading its data set, a cluster that is down or failing
///   over (`CLUSTERDOWN`, `MASTERDOWN`, `READONLY`) and redirections the client did not
///   follow (`MOVED`, `ASK`) are [`ErrorKind::Connection`];
/// - a response that did not come in time, and a server busy running a script
///   (`BUSY`), are [`ErrorKind::Timeout`];
/// - `TRYAGAIN` (keys of a slot being migrated) and an aborted transaction are
///   [`ErrorKind::Conflict`];
/// - a reply the client could not parse or that has an unexpected type is
///   [`ErrorKind::CorruptData`];
/// - anything else (a failed script, `OOM`, `CROSSSLOT`, missing permissions, failed
///   authentication, a bad URL) is [`ErrorKind::Other`];
/// - a server refused for its eviction policy (see [`crate::eviction`]) is
///   [`ErrorKind::Other`] with the [`EvictionPolicyError`] as its source and a message
///   that says how to fix it.
pub(crate) fn map_redis_error(error: RedisError) -> Error {
    if let Some(refusal) = EvictionPolicyError::carried_by(&error) {
        return refusal.clone().into_error();
    }
    let kind = classify(&error);
    let message = match error.code() {
        Some("OOM") => format!("{error} (is maxmemory reached? haul needs `maxmemory-policy noeviction`)"),
        _ => error.to_string(),
    };
    Error::backend(BACKEND, kind, message, Some(Box::new(error)))
}

/// The kind of a driver error (see [`map_redis_error`]).
pub(crate) fn classify(error: &RedisError) -> ErrorKind {
    if error.is_timeout() {
        return ErrorKind::Timeout;
    }
    if error.is_connection_dropped() || error.is_connection_refusal() {
        return ErrorKind::Connection;
    }
    match error.kind() {
        RedisKind::Io | RedisKind::ClusterConnectionNotFound => ErrorKind::Connection,
        RedisKind::Server(server) => match server {
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask => ErrorKind::Connection,
            ServerErrorKind::TryAgain | ServerErrorKind::ExecAbort => ErrorKind::Conflict,
            _ => ErrorKind::Other,
        },
        RedisKind::Extension => match error.code() {
            Some("BUSY") => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        },
        RedisKind::Parse | RedisKind::UnexpectedReturnType => ErrorKind::CorruptData,
        _ => ErrorKind::Other,
    }
}

/// A stored value or a script reply that does not have the expected form.
pub(crate) fn corrupt(message: impl Into<String>) -> Error {
    Error::backend(BACKEND, ErrorKind::CorruptData, message, None)
}

#[cfg(test)]
mod tests {
    use std::io;

    use redis::make_extension_error;

    use super::*;

    fn kind_of(error: RedisError) -> Option<ErrorKind> {
        map_redis_error(error).kind()
    }

    fn server(kind: ServerErrorKind) -> RedisError {
        RedisError::from((RedisKind::Server(kind), "from the server"))
    }

    #[test]
    fn a_timed_out_response_is_a_timeout() {
        assert_eq!(kind_of(io::Error::new(io::ErrorKind::TimedOut, "no reply").into()), Some(ErrorKind::Timeout));
    }

    #[test]
    fn a_busy_server_is_a_timeout() {
        let busy = make_extension_error("BUSY".to_owned(), Some("Redis is busy running a script".to_owned()));
        assert_eq!(kind_of(busy), Some(ErrorKind::Timeout));
    }

    #[test]
    fn a_reset_or_refused_connection_is_a_connection_error() {
        for io_kind in [io::ErrorKind::ConnectionReset, io::ErrorKind::ConnectionRefused, io::ErrorKind::BrokenPipe] {
            let error = RedisError::from(io::Error::new(io_kind, "gone"));
            assert_eq!(kind_of(error), Some(ErrorKind::Connection), "{io_kind:?}");
        }
    }

    #[test]
    fn any_other_io_error_is_a_connection_error() {
        let error = RedisError::from((RedisKind::Io, "io"));
        assert_eq!(kind_of(error), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_cluster_node_out_of_reach_is_a_connection_error() {
        let error = RedisError::from((RedisKind::ClusterConnectionNotFound, "no node"));
        assert_eq!(kind_of(error), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_server_loading_or_failing_over_is_a_connection_error() {
        for kind in [
            ServerErrorKind::BusyLoading,
            ServerErrorKind::ClusterDown,
            ServerErrorKind::MasterDown,
            ServerErrorKind::ReadOnly,
            ServerErrorKind::Moved,
            ServerErrorKind::Ask,
        ] {
            assert_eq!(kind_of(server(kind)), Some(ErrorKind::Connection), "{kind:?}");
        }
    }

    #[test]
    fn a_slot_in_migration_is_a_conflict() {
        assert_eq!(kind_of(server(ServerErrorKind::TryAgain)), Some(ErrorKind::Conflict));
    }

    #[test]
    fn an_aborted_transaction_is_a_conflict() {
        assert_eq!(kind_of(server(ServerErrorKind::ExecAbort)), Some(ErrorKind::Conflict));
    }

    #[test]
    fn an_unparsable_or_mistyped_reply_is_corrupt_data() {
        assert_eq!(kind_of(RedisError::from((RedisKind::Parse, "garbage"))), Some(ErrorKind::CorruptData));
        let mistyped = RedisError::from((RedisKind::UnexpectedReturnType, "not an integer"));
        assert_eq!(kind_of(mistyped), Some(ErrorKind::CorruptData));
    }

    #[test]
    fn a_failed_script_or_command_is_other() {
        for kind in [
            ServerErrorKind::ResponseError,
            ServerErrorKind::NoScript,
            ServerErrorKind::CrossSlot,
            ServerErrorKind::NoPerm,
        ] {
            assert_eq!(kind_of(server(kind)), Some(ErrorKind::Other), "{kind:?}");
        }
    }

    #[test]
    fn out_of_memory_is_other_and_says_what_to_check() {
        let error = map_redis_error(make_extension_error("OOM".to_owned(), Some("command not allowed".to_owned())));
        assert_eq!(error.kind(), Some(ErrorKind::Other));
        assert!(!error.is_transient());
    }

    #[test]
    fn failed_authentication_and_bad_configuration_are_other() {
        for kind in [RedisKind::AuthenticationFailed, RedisKind::InvalidClientConfig, RedisKind::Client] {
            assert_eq!(kind_of(RedisError::from((kind, "no"))), Some(ErrorKind::Other), "{kind:?}");
        }
    }

    #[test]
    fn an_eviction_policy_refusal_is_other_with_the_refusal_as_source() {
        let watch = crate::eviction::PolicyWatch::new(false);
        let refused = futures_util::FutureExt::now_or_never(
            watch.ensure(|| async { Ok(vec![("127.0.0.1:6379".to_owned(), Some("allkeys-lru".to_owned()))]) }),
        );
        let Some(Err(driver_error)) = refused else { panic!("the check refuses allkeys-lru: {refused:?}") };
        let error = map_redis_error(driver_error);
        assert_eq!(error.kind(), Some(ErrorKind::Other));
        assert!(!error.is_transient());
        let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<EvictionPolicyError>());
        assert_eq!(source.and_then(EvictionPolicyError::policy), Some("allkeys-lru"));
    }

    #[test]
    fn the_redis_error_is_the_source() {
        let error = map_redis_error(RedisError::from((RedisKind::Io, "io")));
        let source = std::error::Error::source(&error).expect("a source");
        assert!(source.downcast_ref::<RedisError>().is_some());
        assert!(matches!(error, Error::Backend { backend: "redis", .. }));
    }
}
