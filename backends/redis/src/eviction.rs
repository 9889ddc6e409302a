//! The eviction-policy check: a server whose `maxmemory-policy` is not `noeviction` may
//! delete job keys under memory pressure, losing jobs without a trace and leaving
//! indexes that point at nothing. Such a server is refused, unless
//! [`RedisConfig::allow_eviction`](crate::RedisConfig::allow_eviction) is set, in which
//! case the check only logs a warning.
//!
//! The policy is read with `CONFIG GET maxmemory-policy`, or, where that command is
//! refused (renamed or denied on managed Redis), from the `maxmemory_policy` field of
//! `INFO memory`. A node that answers neither is refused too.
//!
//! When it runs: [`PolicyWatch`] counts the times the connection may have been made
//! again (a call failed with an error after which the driver reconnects, or, over
//! RESP3, the driver reported a disconnection) and the [`Conn`](crate::conn::Conn)
//! checks the policy again before the next command whenever that count moved since the
//! last passed check. The first check runs at connect, on every master of a cluster.

use std::{
    fmt,
    future::Future,
    io,
    sync::atomic::{AtomicU64, Ordering},
};

use haul_core::{Error, ErrorKind};
use redis::{
    ErrorKind as RedisKind, RedisError, RedisResult, Value,
    aio::ConnectionLike,
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo},
};
use tokio::sync::Mutex;

use crate::{BACKEND, error::classify};

/// The one policy that never evicts a key.
pub(crate) const NOEVICTION: &str = "noeviction";

/// A Redis server (or cluster node) whose `maxmemory-policy` may evict haul's keys, or
/// whose policy could not be read. It is the [`source`](std::error::Error::source) of
/// the [`Error::Backend`] (kind [`ErrorKind::Other`]) that refuses the server, so a
/// caller can tell this refusal apart from other failures:
///
/// ```no_run
/// # async fn example() {
/// use haul_redis::{EvictionPolicyError, RedisStorage};
///
/// if let Err(error) = RedisStorage::connect("redis://127.0.0.1:6379").await {
///     let source = std::error::Error::source(&error);
///     if let Some(refused) = source.and_then(|source| source.downcast_ref::<EvictionPolicyError>()) {
///         eprintln!("{} has maxmemory-policy {:?}", refused.node(), refused.policy());
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictionPolicyError {
    node: String,
    policy: Option<String>,
}

impl EvictionPolicyError {
    /// The node, as `host:port` (or the socket path).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's `maxmemory-policy` (`allkeys-lru`, `volatile-ttl`…), or `None` when
    /// neither `CONFIG GET` nor `INFO memory` answered.
    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }

    /// The haul error that refuses the node, with what to do about it.
    pub(crate) fn into_error(self) -> Error {
        let message = match &self.policy {
            Some(policy) => format!(
                "the Redis server at {} has `maxmemory-policy {policy}`, so under memory pressure it may evict \
                 job keys and lose jobs without a trace; run `CONFIG SET maxmemory-policy noeviction` on it (and \
                 set `maxmemory-policy noeviction` in its configuration so that a restart keeps it), or set \
                 `RedisConfig::allow_eviction(true)` to connect with a warning",
                self.node
            ),
            None => format!(
                "cannot read the `maxmemory-policy` of the Redis server at {} (`CONFIG GET maxmemory-policy` and \
                 `INFO memory` were both refused), so haul cannot tell whether it may evict job keys; make sure \
                 it runs with `maxmemory-policy noeviction` (`CONFIG SET maxmemory-policy noeviction`) and set \
                 `RedisConfig::allow_eviction(true)` to connect anyway",
                self.node
            ),
        };
        Error::backend(BACKEND, ErrorKind::Other, message, Some(Box::new(self)))
    }

    /// This refusal as a driver error, to cross the [`ConnectionLike`] boundary; the
    /// error mapping finds it again with [`EvictionPolicyError::carried_by`].
    fn into_redis_error(self) -> RedisError {
        RedisError::from(io::Error::other(Carrier(self)))
    }

    /// The refusal a driver error made by [`EvictionPolicyError::into_redis_error`]
    /// carries.
    pub(crate) fn carried_by(error: &RedisError) -> Option<&Self> {
        let mut next = std::error::Error::source(error);
        while let Some(error) = next {
            if let Some(refusal) = error.downcast_ref::<Self>() {
                return Some(refusal);
            }
            if let Some(Carrier(refusal)) = error.downcast_ref::<Carrier>() {
                return Some(refusal);
            }
            if let Some(Carrier(refusal)) =
                error.downcast_ref::<io::Error>().and_then(io::Error::get_ref).and_then(|inner| inner.downcast_ref())
            {
                return Some(refusal);
            }
            next = error.source();
        }
        None
    }
}

impl fmt::Display for EvictionPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            Some(policy) => write!(f, "`maxmemory-policy` of {} is `{policy}`, not `{NOEVICTION}`", self.node),
            None => write!(f, "`maxmemory-policy` of {} cannot be read", self.node),
        }
    }
}

impl std::error::Error for EvictionPolicyError {}

/// Wraps a refusal inside an `io::Error` inside a `RedisError`: `io::Error::source` skips
/// the error it wraps and returns that error's source, so the refusal is the carrier's
/// source.
#[derive(Debug)]
struct Carrier(EvictionPolicyError);

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carrier {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// When the policy of a connection was last checked, against how often the connection
/// may have been made again. Shared by the clones of a connection.
#[derive(Debug)]
pub(crate) struct PolicyWatch {
    allow_eviction: bool,
    /// Bumped each time the connection may have been made again; starts at 1, so the
    /// first command (or the explicit check at connect) checks.
    dropped: AtomicU64,
    /// The value of `dropped` that the last passed check started from.
    checked: AtomicU64,
    /// One check at a time; the other calls wait for its outcome.
    checking: Mutex<()>,
}

impl PolicyWatch {
    /// A watch whose first use checks; with `allow_eviction`, a node that fails the
    /// check is only warned about.
    pub(crate) fn new(allow_eviction: bool) -> Self {
        Self { allow_eviction, dropped: AtomicU64::new(1), checked: AtomicU64::new(0), checking: Mutex::new(()) }
    }

    /// Notes that the connection may have been (or is being) made again.
    pub(crate) fn mark_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes a failed command: the driver reconnects after I/O errors and after the
    /// errors it deems unrecoverable (a dropped connection, a cluster node out of
    /// reach).
    pub(crate) fn note_failure(&self, error: &RedisError) {
        if error.is_io_error() || error.is_unrecoverable_error() {
            self.mark_dropped();
        }
    }

    /// Runs `read` (which returns each node and its policy) unless the policy was
    /// checked since the connection was last made again, and judges its answer. A
    /// refused node is an error carrying an [`EvictionPolicyError`]; a check that could
    /// not run (the connection is still down) returns its error and runs again on the
    /// next call.
    pub(crate) async fn ensure<F, Fut>(&self, read: F) -> RedisResult<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = RedisResult<Vec<(String, Option<String>)>>>,
    {
        if self.checked.load(Ordering::Acquire) >= self.dropped.load(Ordering::Acquire) {
            return Ok(());
        }
        let _checking = self.checking.lock().await;
        let from = self.dropped.load(Ordering::Acquire);
        if self.checked.load(Ordering::Acquire) >= from {
            return Ok(());
        }
        for (node, policy) in read().await? {
            judge(node, policy, self.allow_eviction).map_err(EvictionPolicyError::into_redis_error)?;
        }
        self.checked.fetch_max(from, Ordering::AcqRel);
        Ok(())
    }
}

/// Passes a node with `noeviction`; refuses any other (or an unknown) policy, or with
/// `allow_eviction` only warns about it.
fn judge(node: String, policy: Option<String>, allow_eviction: bool) -> Result<(), EvictionPolicyError> {
    if policy.as_deref() == Some(NOEVICTION) {
        return Ok(());
    }
    let refusal = EvictionPolicyError { node, policy };
    if allow_eviction {
        tracing::warn!(
            node = %refusal.node,
            policy = refusal.policy.as_deref().unwrap_or("unknown"),
            "the Redis server may evict job keys under memory pressure (allowed by `RedisConfig::allow_eviction`); \
             run `CONFIG SET maxmemory-policy noeviction` on it"
        );
        return Ok(());
    }
    Err(refusal)
}

/// The policy of the one server behind `conn` (named `node` in errors).
pub(crate) async fn read_single(
    conn: &mut impl ConnectionLike,
    node: &str,
) -> RedisResult<Vec<(String, Option<String>)>> {
    let config = config_get().query_async::<Value>(conn).await;
    let mut policy = answered(config)?.and_then(config_policy);
    if policy.is_none() {
        let info = info_memory().query_async::<Value>(conn).await;
        policy = answered(info)?.and_then(info_policy);
    }
    Ok(vec![(node.to_owned(), policy)])
}

/// The policy of every master of the cluster, by address.
pub(crate) async fn read_cluster(conn: &mut ClusterConnection) -> RedisResult<Vec<(String, Option<String>)>> {
    let mut nodes = Vec::new();
    for (node, reply) in per_master(conn.route_command(config_get(), all_masters()).await?)? {
        nodes.push((node, answered(Ok(reply))?.and_then(config_policy)));
    }
    if nodes.iter().any(|(_, policy)| policy.is_none()) {
        let mut infos = per_master(conn.route_command(info_memory(), all_masters()).await?)?;
        for (node, policy) in nodes.iter_mut().filter(|(_, policy)| policy.is_none()) {
            if let Some(at) = infos.iter().position(|(address, _)| address == node) {
                let (_, reply) = infos.swap_remove(at);
                *policy = answered(Ok(reply))?.and_then(info_policy);
            }
        }
    }
    Ok(nodes)
}

fn config_get() -> redis::Cmd {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    cmd
}

fn info_memory() -> redis::Cmd {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("memory");
    cmd
}

fn all_masters() -> RoutingInfo {
    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None))
}

/// The replies of a command sent to every master: a map from each node's address to
/// its reply (a server error included).
fn per_master(reply: Value) -> RedisResult<Vec<(String, Value)>> {
    let Value::Map(replies) = reply else {
        return Err(RedisError::from((RedisKind::UnexpectedReturnType, "expected one reply per cluster master")));
    };
    let mut nodes = Vec::with_capacity(replies.len());
    for (node, reply) in replies {
        nodes.push((redis::from_redis_value::<String>(node)?, reply));
    }
    Ok(nodes)
}

/// A command's reply, or `None` when the server refused the command (unknown, renamed
/// or denied); failures after which a retry may succeed (a lost connection, a server
/// still loading) stay errors.
fn answered(reply: RedisResult<Value>) -> RedisResult<Option<Value>> {
    match reply {
        Ok(Value::ServerError(error)) => answered(Err(error.into())),
        Ok(value) => Ok(Some(value)),
        Err(error)
            if matches!(error.kind(), RedisKind::Server(_) | RedisKind::Extension)
                && classify(&error) == ErrorKind::Other =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The policy in a `CONFIG GET maxmemory-policy` reply: `[name, value]` (RESP2) or
/// `{name: value}` (RESP3); `None` when the parameter is not listed.
fn config_policy(reply: Value) -> Option<String> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
        }
        _ => return None,
    };
    pairs.into_iter().find_map(|(name, value)| {
        let name = redis::from_redis_value::<String>(name).ok()?;
        (name == "maxmemory-policy").then(|| redis::from_redis_value::<String>(value).ok()).flatten()
    })
}

/// The `maxmemory_policy` field of an `INFO memory` reply.
fn info_policy(reply: Value) -> Option<String> {
    let text = redis::from_redis_value::<String>(reply).ok()?;
    text.lines().find_map(|line| line.trim_end().strip_prefix("maxmemory_policy:").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use redis::ServerErrorKind;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn refusal(policy: Option<&str>) -> EvictionPolicyError {
        EvictionPolicyError { node: "127.0.0.1:6379".to_owned(), policy: policy.map(str::to_owned) }
    }

    #[test]
    fn noeviction_passes_and_any_other_policy_is_refused() {
        assert_eq!(judge("n".to_owned(), Some(NOEVICTION.to_owned()), false), Ok(()));
        for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-ttl"] {
            let refused = judge("n".to_owned(), Some(policy.to_owned()), false).unwrap_err();
            assert_eq!(refused.policy(), Some(policy));
            assert_eq!(refused.node(), "n");
        }
    }

    #[test]
    fn an_unknown_policy_is_refused() {
        assert_eq!(judge("n".to_owned(), None, false).unwrap_err().policy(), None);
    }

    #[test]
    fn the_opt_in_lets_any_policy_through() {
        assert_eq!(judge("n".to_owned(), Some("allkeys-lru".to_owned()), true), Ok(()));
        assert_eq!(judge("n".to_owned(), None, true), Ok(()));
    }

    #[test]
    fn the_policy_is_read_from_either_form_of_config_get() {
        let resp2 = Value::Array(vec![bulk("maxmemory-policy"), bulk("allkeys-lru")]);
        assert_eq!(config_policy(resp2).as_deref(), Some("allkeys-lru"));
        let resp3 = Value::Map(vec![(bulk("maxmemory-policy"), bulk("noeviction"))]);
        assert_eq!(config_policy(resp3).as_deref(), Some("noeviction"));
        assert_eq!(config_policy(Value::Array(Vec::new())), None);
    }

    #[test]
    fn the_policy_is_read_from_info_memory() {
        let info =
            bulk("# Memory\r\nused_memory:1\r\nmaxmemory:0\r\nmaxmemory_policy:volatile-lru\r\nallocator_frag:1\r\n");
        assert_eq!(info_policy(info).as_deref(), Some("volatile-lru"));
        let verbatim = Value::VerbatimString {
            format: redis::VerbatimFormat::Text,
            text: "maxmemory_policy:noeviction\r\n".into(),
        };
        assert_eq!(info_policy(verbatim).as_deref(), Some("noeviction"));
        assert_eq!(info_policy(bulk("# Memory\r\nused_memory:1\r\n")), None);
    }

    #[test]
    fn a_refused_command_is_no_answer_but_a_lost_connection_is_an_error() {
        let unknown = RedisError::from((RedisKind::Server(ServerErrorKind::ResponseError), "unknown command"));
        assert!(matches!(answered(Err(unknown)), Ok(None)));
        let denied = RedisError::from((RedisKind::Server(ServerErrorKind::NoPerm), "no permissions"));
        assert!(matches!(answered(Err(denied)), Ok(None)));
        let lost = RedisError::from(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert!(answered(Err(lost)).is_err());
        let loading = RedisError::from((RedisKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(answered(Err(loading)).is_err());
    }

    #[test]
    fn a_refusal_survives_the_trip_through_a_driver_error() {
        let error = refusal(Some("allkeys-lru")).into_redis_error();
        assert_eq!(EvictionPolicyError::carried_by(&error), Some(&refusal(Some("allkeys-lru"))));
        let other = RedisError::from(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert_eq!(EvictionPolicyError::carried_by(&other), None);
    }

    #[test]
    fn the_refusal_is_a_permanent_backend_error_whose_source_is_the_refusal() {
        let error = refusal(Some("allkeys-lru")).into_error();
        assert!(matches!(error, Error::Backend { backend: "redis", kind: ErrorKind::Other, .. }));
        assert!(!error.is_transient());
        let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<EvictionPolicyError>());
        assert_eq!(source, Some(&refusal(Some("allkeys-lru"))));
    }

    /// The one test that reads the message: naming the policy and the fix is its job.
    #[test]
    fn the_message_names_the_policy_and_the_fix() {
        let Error::Backend { message, .. } = refusal(Some("allkeys-lru")).into_error() else {
            panic!("a backend error");
        };
        assert!(message.contains("`maxmemory-policy allkeys-lru`"), "{message}");
        assert!(message.contains("CONFIG SET maxmemory-policy noeviction"), "{message}");
        assert!(message.contains("RedisConfig::allow_eviction(true)"), "{message}");
        let Error::Backend { message, .. } = refusal(None).into_error() else {
            panic!("a backend error");
        };
        assert!(message.contains("INFO memory"), "{message}");
        assert!(message.contains("RedisConfig::allow_eviction(true)"), "{message}");
    }

    #[tokio::test]
    async fn a_check_runs_once_until_the_connection_drops_again() {
        let watch = PolicyWatch::new(false);
        let calls = AtomicU64::new(0);
        let read = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![("n".to_owned(), Some(NOEVICTION.to_owned()))])
        };
        watch.ensure(read).await.unwrap();
        watch.ensure(read).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        watch.note_failure(&RedisError::from((RedisKind::Server(ServerErrorKind::ResponseError), "script failed")));
        watch.ensure(read).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a failed script does not drop the connection");
        watch.note_failure(&RedisError::from(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
        watch.ensure(read).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_node_is_checked_again_on_every_call() {
        let watch = PolicyWatch::new(false);
        let calls = AtomicU64::new(0);
        let read = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![("a".to_owned(), Some(NOEVICTION.to_owned())), ("b".to_owned(), Some("allkeys-lru".to_owned()))])
        };
        for _ in 0..2 {
            let error = watch.ensure(read).await.unwrap_err();
            assert_eq!(
                EvictionPolicyError::carried_by(&error).and_then(EvictionPolicyError::policy),
                Some("allkeys-lru")
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
