//! [`RedisStorage`]: connecting, the key layout in use, and the lookups the storage
//! calls share.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError},
};

use haul_core::{JobId, Result, WakeupSender, validate_namespace};
use redis::{
    AsyncCommands, AsyncConnectionConfig, Client, PushInfo, PushKind, aio::ConnectionManagerConfig,
    cluster::ClusterClient,
};
use tokio_util::sync::CancellationToken;

use crate::{
    RedisConfig,
    codec::reply,
    conn::Conn,
    error::map_redis_error,
    eviction::{ClusterNodes, PolicyWatch},
    keys::Keys,
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
    /// Connects to the Redis server at `url` (`redis://…`, `rediss://…`) with the
    /// default [`RedisConfig`] (key prefix `haul`; a server that may evict keys is
    /// refused, see [`RedisStorage::connect_with`]).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, RedisConfig::default()).await
    }

    /// Connects to the Redis server at `url` with `config`. The prefix is checked first
    /// (1 to 100 lowercase letters, digits and `_`, starting with a letter); the
    /// connection is made before this returns and is re-made when it drops.
    ///
    /// A server whose `maxmemory-policy` is not `noeviction` (or cannot be read) is
    /// refused with an [`Error::Backend`](haul_core::Error::Backend) of kind
    /// [`Other`](haul_core::ErrorKind::Other) whose source is an
    /// [`EvictionPolicyError`](crate::EvictionPolicyError), unless
    /// [`RedisConfig::allow_eviction`] is set. The policy is checked again before the
    /// first command after each reconnect.
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<Self> {
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
        let conn = client.get_connection_manager_with_config(manager).await.map_err(map_redis_error)?;
        let conn = Conn::single(conn, node, watch);
        conn.ensure_policy().await.map_err(map_redis_error)?;
        Ok(Self::from_parts(conn, client, &config))
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each)
    /// with `config`. Every script then runs on the node that holds its queue's slot;
    /// see the crate docs for what differs from a single server.
    ///
    /// Every master's `maxmemory-policy` is checked as [`RedisStorage::connect_with`]
    /// does, each master on its own, and checked again after a call fails with a
    /// connection error. A master that cannot be reached is checked later, in the
    /// background; it does not fail the calls to the other masters.
    pub async fn connect_cluster<U: AsRef<str>>(
        nodes: impl IntoIterator<Item = U>,
        config: RedisConfig,
    ) -> Result<Self> {
        validate_namespace(&config.prefix)?;
        let nodes: Vec<String> = nodes.into_iter().map(|node| node.as_ref().to_owned()).collect();
        let first = nodes.first().ok_or_else(|| {
            haul_core::Error::InvalidArgument("a Redis Cluster needs the URL of at least one node".into())
        })?;
        // Pub/sub messages reach every node of a cluster, so any node serves wake-ups.
        let subscriber = Client::open(first.as_str()).map_err(map_redis_error)?;
        let cluster = ClusterClient::builder(nodes)
            .connection_timeout(config.connection_timeout)
            .response_timeout(config.response_timeout)
            .build()
            .map_err(map_redis_error)?;
        let conn = cluster.get_async_connection().await.map_err(map_redis_error)?;
        // A master out of reach has its policy read on a connection of its own, made
        // like the connection to the first node.
        let timeouts = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout));
        let nodes = ClusterNodes::new(subscriber.get_connection_info().clone(), timeouts);
        let conn = Conn::cluster(conn, nodes, Arc::new(PolicyWatch::new(config.allow_eviction)));
        conn.ensure_policy().await.map_err(map_redis_error)?;
        Ok(Self::from_parts(conn, subscriber, &config))
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
    /// and the queues' own sets (every key the storage writes is reachable from them).
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

    /// Every key the storage may have written, reached from the queue set.
    async fn reachable_keys(&self) -> Result<Vec<String>> {
        let keys = &self.inner.keys;
        let mut found = vec![keys.jobs(), keys.queues(), keys.unique()];
        let mut conn = self.conn();
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
        }
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
