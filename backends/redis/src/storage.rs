//! [`RedisStorage`]: connecting, the key layout in use, and the lookups the storage
//! calls share.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError},
};

use haul_core::{Error, JobId, Result, Storage, WakeupSender, validate_namespace};
use redis::{
    AsyncCommands, AsyncConnectionConfig, Client, IntoConnectionInfo, PushInfo, PushKind, aio::ConnectionManagerConfig,
    cluster::ClusterClient,
};
use tokio_util::sync::CancellationToken;

use crate::{
    RedisConfig,
    codec::reply,
    conn::Conn,
    error::{is_not_a_redis_reply, map_connect_error, map_redis_error, no_reply_error},
    eviction::{ClusterNodes, PolicyWatch},
    first_reply::first_reply,
    keys::Keys,
    url::{RedisUrl, Servers},
    wakeup::Subscriber,
};

/// How many times a (re)connection is retried, backing off from 100 ms, before the
/// call that needed it fails; the next call tries again.
const CONNECT_RETRIES: usize = 3;

/// Most job locations remembered between a claim and its report (see
/// [`RedisStorage::locate`]); beyond that the cache starts over.
const LOCATIONS_CAPACITY: usize = 100_000;

/// Jobs stored in Redis, under one key prefix. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct RedisStorage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: Conn,
    pub(crate) keys: Keys,
    pub(crate) wakeups: WakeupSender,
    pub(crate) subscriber: Subscriber,
    /// The queue of each job claimed through this storage and not reported yet, so that
    /// reports and heartbeats need no lookup. A job's queue never changes.
    locations: Mutex<HashMap<JobId, String>>,
    /// Stops the wake-up subscription when the last clone is dropped.
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RedisStorage {
    /// Connects to the Redis server (or Redis Cluster) that `url` names, with the
    /// [`RedisConfig`] its query parameters set (the defaults otherwise: key prefix
    /// `haul`; a server that may evict keys is refused, see
    /// [`RedisStorage::connect_with`]).
    ///
    /// The URL is `redis://`, `rediss://` (TLS), `redis+unix://`, or
    /// `redis+cluster://host1:port1,host2:port2` (`rediss+cluster://`) for a cluster;
    /// haul reads `prefix`, `response_timeout`, `connection_timeout`, `allow_eviction`
    /// and `migrate` from its query, and passes the rest (user, password, database,
    /// `protocol`, `#insecure`) to the `redis` crate. Any other parameter is an
    /// [`Error::InvalidArgument`](haul_core::Error::InvalidArgument) that lists the
    /// known ones. The table of every parameter, with examples, is in the docs of
    /// [`haul::connect`](https://docs.rs/haul/latest/haul/fn.connect.html).
    ///
    /// ```no_run
    /// # async fn example() -> haul_core::Result<()> {
    /// use haul_redis::RedisStorage;
    ///
    /// let storage = RedisStorage::connect("redis://127.0.0.1:6379/?prefix=billing&response_timeout=2s").await?;
    /// assert_eq!(storage.prefix(), "billing");
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, RedisConfig::default()).await
    }

    /// Connects as [`RedisStorage::connect`] does, starting from `config`: the URL's
    /// parameters take precedence over it. The prefix is checked first (1 to 100
    /// lowercase letters, digits and `_`, starting with a letter); the connection is
    /// made before this returns and is re-made when it drops.
    ///
    /// Connecting fails fast, and says why: a refused connection at once ("cannot
    /// connect to Redis at host:port: Connection refused"), a server that does not
    /// speak Redis's protocol with what it replied ("… did not answer as a Redis
    /// server …"), and a server that answers nothing once the connection timeout has
    /// passed ("no Redis reply came within …"), each an
    /// [`Error::Backend`](haul_core::Error::Backend) of kind
    /// [`Connection`](haul_core::ErrorKind::Connection).
    ///
    /// A server whose `maxmemory-policy` is not `noeviction` (or cannot be read) is
    /// refused with an [`Error::Backend`](haul_core::Error::Backend) of kind
    /// [`Other`](haul_core::ErrorKind::Other) whose source is an
    /// [`EvictionPolicyError`](crate::EvictionPolicyError), unless
    /// [`RedisConfig::allow_eviction`] is set. The policy is checked again before the
    /// first command after each reconnect.
    ///
    /// With [`RedisConfig::migrate_on_connect`] (`migrate=true`), runs
    /// [`Storage::migrate`] before returning, which refuses a prefix whose key layout
    /// marker names another version of haul's layout with
    /// [`Error::StorageNotReady`](haul_core::Error::StorageNotReady) (a worker refuses
    /// it at start too).
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<Self> {
        let RedisUrl { servers, settings } = crate::url::parse(url)?;
        let config = settings.apply_to(config);
        let storage = match servers {
            Servers::One(url) => Self::connect_one(&url, &config).await?,
            Servers::Cluster(nodes) => Self::connect_cluster_nodes(nodes, &config).await?,
        };
        storage.migrate_if_asked(&config).await?;
        Ok(storage)
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each,
    /// with the user, password and `protocol` the `redis` crate reads, but none of
    /// haul's parameters: those are in `config`) with `config`. Every script then runs
    /// on the node that holds its queue's slot; see the crate docs for what differs
    /// from a single server. A `redis+cluster://host1:port1,host2:port2` URL given to
    /// [`RedisStorage::connect`] ends here too.
    ///
    /// Every master's `maxmemory-policy` is checked as [`RedisStorage::connect_with`]
    /// does, each master on its own, and checked again after a call fails with a
    /// connection error. A master that cannot be reached is checked later, in the
    /// background; it does not fail the calls to the other masters.
    pub async fn connect_cluster<U: AsRef<str>>(
        nodes: impl IntoIterator<Item = U>,
        config: RedisConfig,
    ) -> Result<Self> {
        let mut node_urls = Vec::new();
        for node in nodes {
            let node = node.as_ref();
            match crate::url::parse(node)? {
                RedisUrl { servers: Servers::One(url), settings } if settings.is_empty() => node_urls.push(url),
                RedisUrl { servers: Servers::One(_), .. } => {
                    return Err(Error::InvalidArgument(
                        "the node URLs of a Redis Cluster take none of haul's parameters: set them in the \
                         RedisConfig, or connect with a redis+cluster://host1:port1,host2:port2/?… URL"
                            .into(),
                    ));
                }
                RedisUrl { servers: Servers::Cluster(_), .. } => {
                    return Err(Error::InvalidArgument(
                        "a node of a Redis Cluster is a redis:// or rediss:// URL, not a redis+cluster:// URL".into(),
                    ));
                }
            }
        }
        let storage = Self::connect_cluster_nodes(node_urls, &config).await?;
        storage.migrate_if_asked(&config).await?;
        Ok(storage)
    }

    /// Connects to the one server at `url` (a URL for the driver) with `config`, within
    /// the connection timeout.
    async fn connect_one(url: &str, config: &RedisConfig) -> Result<Self> {
        validate_namespace(&config.prefix)?;
        let client = Client::open(url).map_err(map_redis_error)?;
        let watch = Arc::new(PolicyWatch::new(config.allow_eviction));
        let mut manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(CONNECT_RETRIES);
        if client.get_connection_info().redis_settings().protocol().supports_resp3() {
            // Over RESP3 the manager also reconnects, without a failed call, when the
            // connection reports its own loss; hear of it too.
            let watch = Arc::clone(&watch);
            manager = manager.set_push_sender(move |push: PushInfo| {
                if push.kind == PushKind::Disconnection {
                    watch.mark_dropped();
                }
                Ok::<(), Infallible>(())
            });
        }
        let node = client.get_connection_info().addr().to_string();
        // The manager retries a failed first connection, each attempt with the whole
        // connection timeout: bound them all by it, so that a server that answers
        // nothing fails in that time rather than several times it.
        let connecting = client.get_connection_manager_with_config(manager);
        let conn = match tokio::time::timeout(config.connection_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) if error.is_timeout() => return Err(no_reply_error(&node, config.connection_timeout)),
            Ok(Err(error)) => {
                let reply = if is_not_a_redis_reply(&error) {
                    first_reply(client.get_connection_info().addr(), config.connection_timeout).await
                } else {
                    None
                };
                return Err(map_connect_error(error, &node, reply.as_deref()));
            }
            Err(_elapsed) => return Err(no_reply_error(&node, config.connection_timeout)),
        };
        let conn = Conn::single(conn, node, watch);
        conn.ensure_policy().await.map_err(map_redis_error)?;
        Ok(Self::from_parts(conn, client, config))
    }

    /// Connects to the cluster of `nodes` (URLs for the driver) with `config`.
    async fn connect_cluster_nodes(nodes: Vec<String>, config: &RedisConfig) -> Result<Self> {
        validate_namespace(&config.prefix)?;
        let first = nodes
            .first()
            .ok_or_else(|| Error::InvalidArgument("a Redis Cluster needs the URL of at least one node".into()))?;
        let node_names: Vec<String> = nodes
            .iter()
            .filter_map(|node| node.as_str().into_connection_info().ok())
            .map(|info| info.addr().to_string())
            .collect();
        // Pub/sub messages reach every node of a cluster, so any node serves wake-ups.
        let subscriber = Client::open(first.as_str()).map_err(map_redis_error)?;
        let cluster = ClusterClient::builder(nodes)
            .connection_timeout(config.connection_timeout)
            .response_timeout(config.response_timeout)
            .build()
            .map_err(map_redis_error)?;
        let conn = cluster
            .get_async_connection()
            .await
            .map_err(|error| map_connect_error(error, &format!("{} (Redis Cluster)", node_names.join(", ")), None))?;
        // A master out of reach has its policy read on a connection of its own, made
        // like the connection to the first node.
        let timeouts = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let nodes = ClusterNodes::new(subscriber.get_connection_info().clone(), timeouts);
        let conn = Conn::cluster(conn, nodes, Arc::new(PolicyWatch::new(config.allow_eviction)));
        conn.ensure_policy().await.map_err(map_redis_error)?;
        Ok(Self::from_parts(conn, subscriber, config))
    }

    /// Runs [`Storage::migrate`] when `config` asks for it (`migrate=true`).
    ///
    /// Without it, connecting does not check the prefix's layout marker: a prefix laid
    /// out by another version must stay reachable, to be looked at or purged. Workers
    /// check it at start ([`Storage::check_ready`]).
    async fn migrate_if_asked(&self, config: &RedisConfig) -> Result<()> {
        if config.migrate_on_connect {
            Storage::migrate(self).await?;
        }
        Ok(())
    }

    fn from_parts(conn: Conn, subscriber: Client, config: &RedisConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                keys: Keys::new(&config.prefix),
                wakeups: WakeupSender::new(),
                subscriber: Subscriber::new(subscriber),
                locations: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Whether this storage talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.conn.is_cluster()
    }

    /// Deletes every key of this storage's prefix: all its jobs, queues and flags.
    /// Returns how many keys were deleted. Meant for tests and for retiring a prefix;
    /// other storages on the same server are untouched.
    ///
    /// On one server the keys are found with `SCAN`; on a cluster, from the queue set
    /// and the queues' own sets, which reach every key the storage writes except the
    /// start sets of rate limits per key (`haul:{p:q}:starts:<limit key>`): those
    /// expire by themselves within their rate's period.
    pub async fn purge(&self) -> Result<u64> {
        let keys = if self.is_cluster() { self.reachable_keys().await? } else { self.scan_keys().await? };
        let mut deleted = 0;
        // On a cluster the keys of one DEL must share a slot: delete them one by one.
        for chunk in keys.chunks(if self.is_cluster() { 1 } else { 500 }) {
            let count: u64 = self.conn().del(chunk).await.map_err(map_redis_error)?;
            deleted += count;
        }
        Ok(deleted)
    }

    /// Every key of the prefix, by `SCAN` (one server).
    async fn scan_keys(&self) -> Result<Vec<String>> {
        let mut found = HashSet::new();
        let mut conn = self.conn();
        for pattern in self.inner.keys.patterns() {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(map_redis_error)?;
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Every key the storage may have written: the prefix-level keys (indexes, layout
    /// marker, worker registry, leadership), the limits of the queues in the index of
    /// limited queues, then the keys reached from the queue set.
    async fn reachable_keys(&self) -> Result<Vec<String>> {
        let keys = &self.inner.keys;
        let mut found = keys.globals().to_vec();
        let mut conn = self.conn();
        // A queue may have limits without ever having had jobs.
        let limited: Vec<String> = conn.zrange(keys.limits(), 0, -1).await.map_err(map_redis_error)?;
        found.extend(limited.iter().map(|name| keys.queue(name).limits()));
        for name in self.queue_names().await? {
            let queue = keys.queue(&name);
            for set in queue.group().take(crate::keys::QUEUE_SETS.len()) {
                let members: Vec<String> = conn.zrange(&set, 0, -1).await.map_err(map_redis_error)?;
                // Members of the available set are `<run_at>:<id>`; of the others, the id.
                found.extend(members.iter().map(|member| {
                    let id = member.rsplit_once(':').map_or(member.as_str(), |(_, id)| id);
                    format!("{}{id}", queue.job_prefix())
                }));
                found.push(set);
            }
            found.push(queue.paused());
            found.push(queue.limits());
            found.push(queue.key_running());
            found.push(queue.starts());
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// A handle on the connection.
    pub(crate) fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    /// Remembers the queue of claimed jobs.
    pub(crate) fn remember<'a>(&self, jobs: impl IntoIterator<Item = (JobId, &'a str)>) {
        let mut locations = self.inner.locations.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, queue) in jobs {
            if locations.len() >= LOCATIONS_CAPACITY {
                locations.clear();
            }
            locations.insert(id, queue.to_owned());
        }
    }

    /// Forgets the queue of jobs whose claim ended.
    pub(crate) fn forget(&self, ids: impl IntoIterator<Item = JobId>) {
        let mut locations = self.inner.locations.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            locations.remove(&id);
        }
    }

    /// The queue of each job of `ids` (`None`: no such job), from the claims this
    /// storage remembers, else from the jobs index in one round trip.
    pub(crate) async fn locate(&self, ids: &[JobId]) -> Result<Vec<Option<String>>> {
        let mut found: Vec<Option<String>> = {
            let locations = self.inner.locations.lock().unwrap_or_else(PoisonError::into_inner);
            ids.iter().map(|id| locations.get(id).cloned()).collect()
        };
        let unknown: Vec<usize> = (0..ids.len()).filter(|&at| found[at].is_none()).collect();
        if unknown.is_empty() {
            return Ok(found);
        }
        let index = self.inner.keys.jobs();
        let mut pipe = redis::pipe();
        for &at in &unknown {
            let id = ids[at];
            pipe.cmd("ZRANGEBYLEX")
                .arg(&index)
                .arg(format!("[{id}:"))
                .arg(format!("[{id};"))
                .arg("LIMIT")
                .arg(0)
                .arg(1);
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn()).await.map_err(map_redis_error)?;
        for (at, value) in unknown.into_iter().zip(replies) {
            if let Some(member) = reply::array(value)?.into_iter().next() {
                let member = reply::string(member)?;
                found[at] = member.split_once(':').map(|(_, queue)| queue.to_owned());
            }
        }
        Ok(found)
    }

    /// The queue of one job, from the jobs index.
    pub(crate) async fn queue_of(&self, id: JobId) -> Result<Option<String>> {
        let index = self.inner.keys.jobs();
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(&index)
            .arg(format!("[{id}:"))
            .arg(format!("[{id};"))
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(map_redis_error)?;
        Ok(members.first().and_then(|member| member.split_once(':')).map(|(_, queue)| queue.to_owned()))
    }

    /// The names of every queue that has (or had) jobs or was paused, sorted.
    pub(crate) async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.conn().smembers(self.inner.keys.queues()).await.map_err(map_redis_error)?;
        names.sort_unstable();
        Ok(names)
    }

    /// The token that stops background tasks when the storage is dropped.
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.inner.stop.clone()
    }
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("prefix", &self.prefix())
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}
