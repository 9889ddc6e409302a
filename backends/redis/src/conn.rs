//! The connection the storage sends its commands on: one node through a connection
//! manager (which reconnects), or a cluster (which follows its slots). Before a command
//! it checks the server's eviction policy again if the connection may have been made
//! again since the last check (see [`crate::eviction`]).

use std::sync::Arc;

use redis::{
    Cmd, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
};

use crate::eviction::{self, ClusterNodes, PolicyWatch};

/// A multiplexed connection, cheap to clone; clones share the policy watch.
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    watch: Arc<PolicyWatch>,
}

#[derive(Clone)]
enum Link {
    /// One server, named `node` (`host:port`) in errors.
    Single { conn: ConnectionManager, node: Arc<str> },
    /// A Redis Cluster, and which of its masters passed the check.
    Cluster { conn: ClusterConnection, nodes: Arc<ClusterNodes> },
}

impl Conn {
    /// A connection to the one server at `node`, whose reconnects `watch` hears of.
    pub(crate) fn single(conn: ConnectionManager, node: String, watch: Arc<PolicyWatch>) -> Self {
        Self { link: Link::Single { conn, node: node.into() }, watch }
    }

    /// A connection to a cluster, whose masters `nodes` keeps track of.
    pub(crate) fn cluster(conn: ClusterConnection, nodes: ClusterNodes, watch: Arc<PolicyWatch>) -> Self {
        Self { link: Link::Cluster { conn, nodes: Arc::new(nodes) }, watch }
    }

    /// Whether the keys of different queues may live on different nodes, so that each
    /// script must stay within one queue's slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster { .. })
    }

    /// Checks the eviction policy of the server (of the masters of a cluster) unless it
    /// was checked since the connection was last made again. A refused server is an
    /// error that [`crate::error::map_redis_error`] turns into the refusal.
    pub(crate) async fn ensure_policy(&self) -> RedisResult<()> {
        if self.watch.is_current() {
            return Ok(());
        }
        // Boxed so that the futures of the commands, which hold this one, stay small
        // on the path that needs no check.
        Box::pin(self.check_policy()).await
    }

    /// The check itself: on a handle of its own, since the check in progress is shared
    /// by every call that waits for it (see [`PolicyWatch::ensure_with`]).
    async fn check_policy(&self) -> RedisResult<()> {
        match &self.link {
            Link::Single { conn, node } => {
                let (mut conn, node) = (conn.clone(), Arc::clone(node));
                self.watch.ensure(move || async move { eviction::read_single(&mut conn, &node).await }).await
            }
            Link::Cluster { conn, nodes } => {
                let (conn, nodes) = (conn.clone(), Arc::clone(nodes));
                self.watch
                    .ensure_with(move |from, allow_eviction| eviction::check_cluster(conn, nodes, from, allow_eviction))
                    .await
            }
        }
    }

    /// Hands a command's outcome back, noting a failure after which the driver
    /// reconnects.
    fn note<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result {
            self.watch.note_failure(error);
        }
        result
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.ensure_policy().await?;
            let result = match &mut self.link {
                Link::Single { conn, .. } => conn.req_packed_command(cmd).await,
                Link::Cluster { conn, .. } => conn.req_packed_command(cmd).await,
            };
            self.note(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.ensure_policy().await?;
            let result = match &mut self.link {
                Link::Single { conn, .. } => conn.req_packed_commands(pipeline, offset, count).await,
                Link::Cluster { conn, .. } => conn.req_packed_commands(pipeline, offset, count).await,
            };
            self.note(result)
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single { conn, .. } => conn.get_db(),
            Link::Cluster { conn, .. } => conn.get_db(),
        }
    }
}
