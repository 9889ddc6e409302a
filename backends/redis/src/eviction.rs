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
//! Calls that need a check while one runs share it (see [`PolicyWatch::ensure_with`]);
//! on a cluster each master is checked on its own and one out of reach is checked later
//! (see [`check_cluster`]).

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    io,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared, join_all};
use haul_core::{Error, ErrorKind};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind as RedisKind, RedisError, RedisResult,
    Value,
    aio::ConnectionLike,
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo},
};

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

    /// The haul error that refuses the node, with what to do about it. Of kind
    /// [`ErrorKind::Other`], not a transient kind: no retry of the same call helps until
    /// an operator changes the policy, and a caller that retries transient errors must
    /// not loop on it silently. It refuses every call of the storage alike, so the
    /// worker keeps its outcomes and retries them (see the crate docs).
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

/// A check's outcome, shared by every call that waits for it: whether every node
/// answered (else the check runs again on the next call), or the error (a refusal, or a
/// node that could not be reached) that each of those calls returns.
type Check = Shared<CheckFuture>;

type CheckFuture = BoxFuture<'static, RedisResult<bool>>;

/// When the policy of a connection was last checked, against how often the connection
/// may have been made again. Shared by the clones of a connection.
pub(crate) struct PolicyWatch {
    allow_eviction: bool,
    /// Bumped each time the connection may have been made again; starts at 1, so the
    /// first command (or the explicit check at connect) checks.
    dropped: AtomicU64,
    /// The value of `dropped` that the last passed check started from.
    checked: AtomicU64,
    /// The check in progress and the value of `dropped` it started from. Every call
    /// that needs a check meanwhile waits for this one and shares its outcome, its error
    /// included, instead of running its own. Held weakly: a check whose callers all
    /// went away is dropped, and the next call starts another.
    running: Mutex<Option<(u64, WeakShared<CheckFuture>)>>,
}

impl fmt::Debug for PolicyWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyWatch")
            .field("allow_eviction", &self.allow_eviction)
            .field("dropped", &self.dropped)
            .field("checked", &self.checked)
            .finish_non_exhaustive()
    }
}

impl PolicyWatch {
    /// A watch whose first use checks; with `allow_eviction`, a node that fails the
    /// check is only warned about.
    pub(crate) fn new(allow_eviction: bool) -> Self {
        Self { allow_eviction, dropped: AtomicU64::new(1), checked: AtomicU64::new(0), running: Mutex::new(None) }
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

    /// Whether the policy was checked since the connection was last made again: two
    /// atomic loads, the whole cost of the check on the hot path.
    pub(crate) fn is_current(&self) -> bool {
        self.checked.load(Ordering::Acquire) >= self.dropped.load(Ordering::Acquire)
    }

    /// Runs `read` (which returns each node and its policy) unless the policy was
    /// checked since the connection was last made again, and judges its answer (see
    /// [`PolicyWatch::ensure_with`]).
    pub(crate) async fn ensure<F, Fut>(&self, read: F) -> RedisResult<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = RedisResult<Vec<(String, Option<String>)>>> + Send + 'static,
    {
        self.ensure_with(|_, allow_eviction| {
            let reading = read();
            async move {
                judge_all(reading.await?, allow_eviction)?;
                Ok(true)
            }
        })
        .await
    }

    /// Runs the check `check(from, allow_eviction)` unless the policy was checked since
    /// the connection was last made again; `from` is the count of reconnects the check
    /// starts from. The check judges the nodes itself and returns whether every node
    /// answered; a refused node is an error carrying an [`EvictionPolicyError`].
    ///
    /// Calls that need a check while one that started from the same count (or a later
    /// one) is running wait for that one and share its outcome: during an outage each
    /// call waits for at most one check, not for one after another. A check that failed
    /// (the connection is still down) returns its error to every call that waited for
    /// it; the next call starts a new one. A check that passed with a node left to check
    /// later (see [`check_cluster`]) lets its calls through but does not count as done.
    pub(crate) async fn ensure_with<F, Fut>(&self, check: F) -> RedisResult<()>
    where
        F: FnOnce(u64, bool) -> Fut,
        Fut: Future<Output = RedisResult<bool>> + Send + 'static,
    {
        let from = self.dropped.load(Ordering::Acquire);
        if self.checked.load(Ordering::Acquire) >= from {
            return Ok(());
        }
        let (from, outcome) = self.join_or_start(from, check);
        if outcome.await? {
            self.checked.fetch_max(from, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The running check if it started from `from` or later and has not finished, else
    /// a new one (which later calls join); with the count it started from.
    fn join_or_start<F, Fut>(&self, from: u64, check: F) -> (u64, Check)
    where
        F: FnOnce(u64, bool) -> Fut,
        Fut: Future<Output = RedisResult<bool>> + Send + 'static,
    {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((started, weak)) = running.as_ref()
            && *started >= from
            && let Some(outcome) = weak.upgrade().filter(|outcome| outcome.peek().is_none())
        {
            return (*started, outcome);
        }
        let outcome = check(from, self.allow_eviction).boxed().shared();
        *running = outcome.downgrade().map(|weak| (from, weak));
        (from, outcome)
    }
}

/// Judges every node's answer: the first refused node is an error carrying its
/// [`EvictionPolicyError`].
fn judge_all(nodes: Vec<(String, Option<String>)>, allow_eviction: bool) -> RedisResult<()> {
    for (node, policy) in nodes {
        judge(node, policy, allow_eviction).map_err(EvictionPolicyError::into_redis_error)?;
    }
    Ok(())
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

/// The masters of a cluster that passed a check, and those that could not be reached.
/// Shared by the clones of a cluster connection.
#[derive(Debug)]
pub(crate) struct ClusterNodes {
    state: Mutex<NodesState>,
    /// How to connect to a node (credentials, TLS, protocol), from the first URL the
    /// cluster was connected through: a master out of reach is checked on a connection
    /// of its own, which leaves the cluster client's repair of that node alone.
    seed: ConnectionInfo,
    timeouts: AsyncConnectionConfig,
}

#[derive(Debug, Default)]
struct NodesState {
    /// The masters, as last read from `CLUSTER SLOTS`.
    masters: Vec<Master>,
    /// Each master (`host:port`) and the count of reconnects that its last passed check
    /// started from.
    passed: HashMap<String, u64>,
    /// Masters that could not be reached: from then on they are checked in the
    /// background, without holding calls back, until one answers.
    later: HashSet<String>,
    /// Masters whose background check is running.
    probing: HashSet<String>,
}

impl ClusterNodes {
    /// No master checked yet; `seed` is how to connect to a node, and `timeouts` the
    /// connection and response timeouts of such a connection.
    pub(crate) fn new(seed: ConnectionInfo, timeouts: AsyncConnectionConfig) -> Self {
        Self { state: Mutex::default(), seed, timeouts }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NodesState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks the masters of the cluster that did not pass a check since `from`, one by
/// one (concurrently), so that one master cannot fail the check of the others:
///
/// - a master that answers with a policy that is not `noeviction` refuses (an error
///   carrying its [`EvictionPolicyError`]);
/// - a master that cannot be reached (or not in time) is left to check later: it does
///   not fail the check, since a call to a healthy master must go on, and a call to the
///   master out of reach fails on its own. From then on it is checked in the background
///   (it does not hold calls back) until it answers, and the check is not done (it runs
///   again on the next call) until every master passed.
///
/// Returns whether every master passed. The masters are read from `CLUSTER SLOTS`, as
/// answered by the first master that answers.
pub(crate) async fn check_cluster(
    mut conn: ClusterConnection,
    nodes: Arc<ClusterNodes>,
    from: u64,
    allow_eviction: bool,
) -> RedisResult<bool> {
    let masters = cluster_masters(&mut conn, &nodes).await?;
    let mut deferred = false;
    let mut now = Vec::new();
    {
        let mut state = nodes.lock();
        for master in masters {
            if state.passed.get(&master.name).is_some_and(|&passed| passed >= from) {
                continue;
            }
            if !state.later.contains(&master.name) {
                now.push(master);
                continue;
            }
            deferred = true;
            if state.probing.insert(master.name.clone()) {
                tokio::spawn(probe(Arc::clone(&nodes), master, from, allow_eviction));
            }
        }
    }
    let readings = join_all(now.into_iter().map(|master| {
        let mut conn = conn.clone();
        async move {
            let reading = read_master(&mut conn, &master).await;
            (master, reading)
        }
    }))
    .await;
    let mut state = nodes.lock();
    let mut refusal = None;
    let mut passed_all = true;
    for (master, reading) in readings {
        match reading {
            Ok(policy) => match judge(master.name.clone(), policy, allow_eviction) {
                Ok(()) => passed(&mut state, master.name, from),
                Err(refused) => {
                    passed_all = false;
                    refusal.get_or_insert(refused);
                }
            },
            Err(error) => {
                tracing::warn!(
                    node = %master.name,
                    %error,
                    "cannot read the `maxmemory-policy` of a Redis Cluster master; it will be checked later, \
                     calls to the other masters go on"
                );
                passed_all = false;
                state.later.insert(master.name);
            }
        }
    }
    match refusal {
        Some(refusal) => Err(refusal.into_redis_error()),
        None => Ok(passed_all && !deferred),
    }
}

/// Notes that `node` passed the check that started from `from`.
fn passed(state: &mut NodesState, node: String, from: u64) {
    let passed = state.passed.entry(node).or_insert(from);
    *passed = (*passed).max(from);
}

/// Checks a master that could not be reached, in the background, on a connection of its
/// own. A master that answers leaves the set of masters to check later: if it passed, it
/// counts as checked from `from`; if not, the next call's check reads it again, waits
/// for it and refuses.
async fn probe(nodes: Arc<ClusterNodes>, master: Master, from: u64, allow_eviction: bool) {
    let reading = read_alone(&nodes, &master).await;
    let mut state = nodes.lock();
    state.probing.remove(&master.name);
    if let Ok(policy) = reading {
        state.later.remove(&master.name);
        if policy.as_deref() == Some(NOEVICTION) || allow_eviction {
            passed(&mut state, master.name, from);
        }
    }
}

/// The policy of `master`, read on a connection of its own.
async fn read_alone(nodes: &ClusterNodes, master: &Master) -> RedisResult<Option<String>> {
    let addr = match nodes.seed.addr() {
        ConnectionAddr::TcpTls { insecure, tls_params, .. } => ConnectionAddr::TcpTls {
            host: master.host.clone(),
            port: master.port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(master.host.clone(), master.port),
    };
    let client = Client::open(nodes.seed.clone().set_addr(addr))?;
    let mut conn = client.get_multiplexed_async_connection_with_config(&nodes.timeouts).await?;
    let mut read = read_single(&mut conn, &master.name).await?;
    Ok(read.pop().and_then(|(_, policy)| policy))
}

/// A master of a cluster.
#[derive(Clone, Debug)]
struct Master {
    host: String,
    port: u16,
    /// `host:port`, as in errors.
    name: String,
}

/// The masters of the cluster, from `CLUSTER SLOTS`: asked of a master that passed a
/// check and is not out of reach, else of every master (the first answer counts), and,
/// when neither answers, as last read.
async fn cluster_masters(conn: &mut ClusterConnection, nodes: &ClusterNodes) -> RedisResult<Vec<Master>> {
    let (known, healthy) = {
        let state = nodes.lock();
        let healthy = state
            .masters
            .iter()
            .find(|master| state.passed.contains_key(&master.name) && !state.later.contains(&master.name))
            .cloned();
        (state.masters.clone(), healthy)
    };
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    let route = match healthy {
        Some(master) => {
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: master.host, port: master.port })
        }
        None => RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::OneSucceeded))),
    };
    let masters = match conn.route_command(cmd, route).await.and_then(parse_masters) {
        Ok(masters) => masters,
        Err(_) if !known.is_empty() => known,
        Err(error) => return Err(error),
    };
    nodes.lock().masters.clone_from(&masters);
    Ok(masters)
}

/// The masters in a `CLUSTER SLOTS` reply.
fn parse_masters(reply: Value) -> RedisResult<Vec<Master>> {
    let unexpected = || RedisError::from((RedisKind::UnexpectedReturnType, "unexpected CLUSTER SLOTS reply"));
    let Value::Array(ranges) = reply else {
        return Err(unexpected());
    };
    let mut masters: Vec<Master> = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return Err(unexpected());
        };
        // `[start, end, [host, port, id, …], replicas…]`
        let Some(Value::Array(master)) = range.into_iter().nth(2) else {
            return Err(unexpected());
        };
        let mut master = master.into_iter();
        let (Some(host), Some(port)) = (master.next(), master.next()) else {
            return Err(unexpected());
        };
        let host: String = redis::from_redis_value(host)?;
        let port: u16 = redis::from_redis_value(port)?;
        // An empty or `?` host: the node does not know its own address; the client
        // cannot route to it by address either.
        if host.is_empty() || host == "?" {
            continue;
        }
        let name = format!("{host}:{port}");
        if !masters.iter().any(|known| known.name == name) {
            masters.push(Master { host, port, name });
        }
    }
    Ok(masters)
}

/// The policy of one master of the cluster (as [`read_single`] reads it).
async fn read_master(conn: &mut ClusterConnection, master: &Master) -> RedisResult<Option<String>> {
    let route =
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: master.host.clone(), port: master.port });
    let config = conn.route_command(config_get(), route.clone()).await;
    let mut policy = answered(config)?.and_then(config_policy);
    if policy.is_none() {
        let info = conn.route_command(info_memory(), route).await;
        policy = answered(info)?.and_then(info_policy);
    }
    Ok(policy)
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

    type Policies = RedisResult<Vec<(String, Option<String>)>>;

    /// A reader that counts its calls and answers `nodes`.
    fn counting(
        calls: &Arc<AtomicU64>,
        nodes: Vec<(&'static str, &'static str)>,
    ) -> impl Fn() -> BoxFuture<'static, Policies> {
        let calls = Arc::clone(calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let nodes = nodes.iter().map(|(node, policy)| ((*node).to_owned(), Some((*policy).to_owned()))).collect();
            async move { Ok(nodes) }.boxed()
        }
    }

    #[tokio::test]
    async fn a_check_runs_once_until_the_connection_drops_again() {
        let watch = PolicyWatch::new(false);
        let calls = Arc::new(AtomicU64::new(0));
        let read = counting(&calls, vec![("n", NOEVICTION)]);
        watch.ensure(&read).await.unwrap();
        watch.ensure(&read).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        watch.note_failure(&RedisError::from((RedisKind::Server(ServerErrorKind::ResponseError), "script failed")));
        watch.ensure(&read).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a failed script does not drop the connection");
        watch.note_failure(&RedisError::from(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
        assert!(!watch.is_current());
        watch.ensure(&read).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(watch.is_current());
    }

    #[tokio::test]
    async fn a_refused_node_is_checked_again_on_every_call() {
        let watch = PolicyWatch::new(false);
        let calls = Arc::new(AtomicU64::new(0));
        let read = counting(&calls, vec![("a", NOEVICTION), ("b", "allkeys-lru")]);
        for _ in 0..2 {
            let error = watch.ensure(&read).await.unwrap_err();
            assert_eq!(
                EvictionPolicyError::carried_by(&error).and_then(EvictionPolicyError::policy),
                Some("allkeys-lru")
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// Calls that need a check while one runs wait for it and share its outcome, its
    /// error included; the call after a failed check starts a new one.
    #[tokio::test]
    async fn concurrent_calls_share_one_check_and_its_error() {
        let watch = PolicyWatch::new(false);
        let calls = Arc::new(AtomicU64::new(0));
        let (fail, failed) = tokio::sync::oneshot::channel::<()>();
        let failed = failed.shared();
        let read = {
            let calls = Arc::clone(&calls);
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                let failed = failed.clone();
                async move {
                    let _ = failed.await;
                    Err(RedisError::from(io::Error::new(io::ErrorKind::TimedOut, "no reply")))
                }
            }
        };
        let waiters = join_all((0..6).map(|_| watch.ensure(read.clone())));
        let release = async {
            tokio::task::yield_now().await;
            fail.send(()).unwrap();
        };
        let (outcomes, ()) = tokio::join!(waiters, release);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one check for all six calls");
        for outcome in outcomes {
            assert!(outcome.unwrap_err().is_timeout(), "every call gets the check's error");
        }
        let _ = watch.ensure(read.clone()).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the call after a failed check checks again");
    }

    /// A check that started before the connection dropped again does not do for a call
    /// that saw the drop: that call starts its own.
    #[tokio::test]
    async fn a_call_that_saw_a_later_drop_does_not_join_an_older_check() {
        let watch = PolicyWatch::new(false);
        let calls = Arc::new(AtomicU64::new(0));
        let (pass, passed) = tokio::sync::oneshot::channel::<()>();
        let passed = passed.shared();
        let read = {
            let calls = Arc::clone(&calls);
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                let passed = passed.clone();
                async move {
                    let _ = passed.await;
                    Ok(vec![("n".to_owned(), Some(NOEVICTION.to_owned()))])
                }
            }
        };
        let first = watch.ensure(read.clone());
        let second = async {
            tokio::task::yield_now().await;
            watch.mark_dropped();
            watch.ensure(read.clone()).await
        };
        let release = async {
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            pass.send(()).unwrap();
        };
        let (first, second, ()) = tokio::join!(first, second, release);
        first.unwrap();
        second.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(watch.is_current());
    }
}
