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

use crate::eviction::{self, PolicyWatch};

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
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Conn {
    /// A connection to the one server at `node`, whose reconnects `watch` hears of.
    pub(crate) fn single(conn: ConnectionManager, node: String, watch: Arc<PolicyWatch>) -> Self {
        Self { link: Link::Single { conn, node: node.into() }, watch }
    }

    /// A connection to a cluster.
    pub(crate) fn cluster(conn: ClusterConnection, watch: Arc<PolicyWatch>) -> Self {
        Self { link: Link::Cluster(conn), watch }
    }

    /// Whether the keys of different queues may live on different nodes, so that each
    /// script must stay within one queue's slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// Checks the eviction policy of the server (of every master of a cluster) unless
    /// it was checked since the connection was last made again. A refused server is an
    /// error that [`crate::error::map_redis_error`] turns into the refusal.
    pub(crate) async fn ensure_policy(&self) -> RedisResult<()> {
        let link = self.link.clone();
        self.watch
            .ensure(|| async move {
                match link {
                    Link::Single { mut conn, node } => eviction::read_single(&mut conn, &node).await,
                    Link::Cluster(mut conn) => eviction::read_cluster(&mut conn).await,
                }
            })
            .await
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
                Link::Cluster(conn) => conn.req_packed_command(cmd).await,
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
                Link::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count).await,
            };
            self.note(result)
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single { conn, .. } => conn.get_db(),
            Link::Cluster(conn) => conn.get_db(),
        }
    }
}
