//! The storage calls, by area. Each runs its Lua script once with every queue group
//! on one server, or once per queue on a cluster (where each script must stay in one
//! queue's slot).

pub(crate) mod admin;
pub(crate) mod claim;
pub(crate) mod cluster;
pub(crate) mod enqueue;
pub(crate) mod maintenance;
pub(crate) mod outcomes;
pub(crate) mod periodic;

use haul_core::Result;
use redis::{ScriptInvocation, Value};

use crate::{RedisStorage, error::map_redis_error};

impl RedisStorage {
    /// Runs a prepared script invocation (`EVALSHA`, loading the script on `NOSCRIPT`).
    pub(crate) async fn run(&self, call: &ScriptInvocation<'_>) -> Result<Value> {
        call.invoke_async(&mut self.conn()).await.map_err(map_redis_error)
    }

    /// Sends `commands` in one round trip and returns their replies in order: as one
    /// pipeline on a server, as concurrent commands on a cluster (where a pipeline
    /// must stay in one slot).
    pub(crate) async fn query_all(&self, commands: Vec<redis::Cmd>) -> Result<Vec<Value>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if !self.is_cluster() {
            let mut pipe = redis::pipe();
            for command in commands {
                pipe.add_command(command);
            }
            return pipe.query_async(&mut self.conn()).await.map_err(map_redis_error);
        }
        let replies = commands.into_iter().map(|command| {
            let mut conn = self.conn();
            async move { command.query_async::<Value>(&mut conn).await }
        });
        futures_util::future::try_join_all(replies).await.map_err(map_redis_error)
    }
}

/// Distinct names, in order of first appearance (linear: a batch may hold many).
pub(crate) fn distinct<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().filter(|name| seen.insert(*name)).collect()
}
