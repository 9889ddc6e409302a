//! The one place where driver errors become haul errors.

use std::time::Duration;

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

/// Maps an error met while connecting to `node` (`host:port`), saying why in words,
/// with the driver's error as the source:
///
/// - a refused connection: "cannot connect to Redis at `node`: Connection refused …",
///   [`ErrorKind::Connection`];
/// - a reply that is not Redis's protocol: "`node` did not answer as a Redis server",
///   with `first_reply` (the first bytes the server sent, escaped) when known,
///   [`ErrorKind::Connection`];
/// - no reply in time: as [`no_reply_error`];
/// - anything else: [`map_redis_error`]'s kind and message, after "connecting to Redis
///   at `node`".
pub(crate) fn map_connect_error(error: RedisError, node: &str, first_reply: Option<&str>) -> Error {
    if error.is_connection_refusal() {
        let message = format!("cannot connect to Redis at {node}: {error}");
        return Error::backend(BACKEND, ErrorKind::Connection, message, Some(Box::new(error)));
    }
    if is_not_a_redis_reply(&error) {
        let message = match first_reply {
            Some(reply) => format!(
                "{node} did not answer as a Redis server: it replied `{reply}` (is the port that of another service?)"
            ),
            None => format!("{node} did not answer as a Redis server: its reply is not Redis's protocol ({error})"),
        };
        return Error::backend(BACKEND, ErrorKind::Connection, message, Some(Box::new(error)));
    }
    match map_redis_error(error) {
        Error::Backend { backend, kind, message, source } => {
            Error::Backend { backend, kind, message: format!("connecting to Redis at {node}: {message}"), source }
        }
        other => other,
    }
}

/// Nothing that speaks Redis's protocol answered `node` within `timeout` (the
/// connection timeout): [`ErrorKind::Connection`].
pub(crate) fn no_reply_error(node: &str, timeout: Duration) -> Error {
    let message = format!(
        "{node} did not answer as a Redis server: no Redis reply came within {timeout:?} (`connection_timeout`); \
         is the address right, and is it reachable?"
    );
    Error::backend(BACKEND, ErrorKind::Connection, message, None)
}

/// Whether `error` says the server's reply is not Redis's protocol (so the server is
/// probably not Redis).
pub(crate) fn is_not_a_redis_reply(error: &RedisError) -> bool {
    matches!(error.kind(), RedisKind::Parse | RedisKind::UnexpectedReturnType)
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
    fn a_refused_connection_says_refused_and_where() {
        let refused = RedisError::from(io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused"));
        let error = map_connect_error(refused, "127.0.0.1:1", None);
        assert_eq!(error.kind(), Some(ErrorKind::Connection));
        assert!(error.to_string().contains("cannot connect to Redis at 127.0.0.1:1: Connection refused"), "{error}");
    }

    #[test]
    fn a_reply_that_is_not_redis_says_so_with_what_came() {
        let garbage = || RedisError::from((RedisKind::Parse, "parse error"));
        let error = map_connect_error(garbage(), "h:80", Some("HTTP/1.1 400 Bad Request"));
        assert_eq!(error.kind(), Some(ErrorKind::Connection));
        let message = error.to_string();
        assert!(message.contains("h:80 did not answer as a Redis server"), "{message}");
        assert!(message.contains("`HTTP/1.1 400 Bad Request`"), "{message}");
        let error = map_connect_error(garbage(), "h:80", None);
        assert!(error.to_string().contains("did not answer as a Redis server"), "{error}");
    }

    #[test]
    fn no_reply_in_time_says_no_redis_reply_came() {
        let error = no_reply_error("h:6379", Duration::from_millis(1500));
        assert_eq!(error.kind(), Some(ErrorKind::Connection));
        assert!(error.to_string().contains("no Redis reply came within 1.5s"), "{error}");
    }

    #[test]
    fn any_other_connect_error_keeps_its_kind_and_says_where() {
        let error = map_connect_error(RedisError::from((RedisKind::AuthenticationFailed, "bad password")), "h:1", None);
        assert_eq!(error.kind(), Some(ErrorKind::Other));
        assert!(error.to_string().contains("connecting to Redis at h:1:"), "{error}");
    }

    #[test]
    fn the_redis_error_is_the_source() {
        let error = map_redis_error(RedisError::from((RedisKind::Io, "io")));
        let source = std::error::Error::source(&error).expect("a source");
        assert!(source.downcast_ref::<RedisError>().is_some());
        assert!(matches!(error, Error::Backend { backend: "redis", .. }));
    }
}
