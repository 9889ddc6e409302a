//! The storage calls, by area. Each runs its Lua script once with every queue group
//! on one server, or once per queue on a cluster (where each script must stay in one
//! queue's slot).

pub(crate) mod admin;
pub(crate) mod bulk;
pub(crate) mod claim;
pub(crate) mod cluster;
pub(crate) mod enqueue;
pub(crate) mod limits;
pub(crate) mod list;
pub(crate) mod maintenance;
pub(crate) mod outcomes;
pub(crate) mod periodic;
pub(crate) mod throughput;

use haul_core::Result;
use redis::{Cmd, RedisResult, Script, ScriptInvocation, Value};

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

    /// Sends the `EVALSHA` commands `calls` of `script` (made by
    /// [`head_command`](crate::scripts::head_command)) in one round trip, as
    /// [`RedisStorage::query_all`] does, and returns each one's reply or error, in
    /// order. Calls the server answers `NOSCRIPT` (it forgot the script, so they did
    /// not run) are sent again once the script is loaded. A lost connection fails the
    /// whole.
    pub(crate) async fn run_all(&self, script: &Script, calls: Vec<Cmd>) -> Result<Vec<Result<Value>>> {
        let mut replies = self.send_each(calls.iter().cloned()).await?;
        let forgotten: Vec<usize> =
            (0..replies.len()).filter(|&at| replies[at].as_ref().is_err_and(is_no_script)).collect();
        if !forgotten.is_empty() {
            script.load_async(&mut self.conn()).await.map_err(map_redis_error)?;
            let again = self.send_each(forgotten.iter().map(|&at| calls[at].clone())).await?;
            for (at, reply) in forgotten.into_iter().zip(again) {
                replies[at] = reply;
            }
        }
        Ok(replies.into_iter().map(|reply| reply.map_err(map_redis_error)).collect())
    }

    /// Sends `commands` in one round trip (a pipeline on a server, concurrent commands
    /// on a cluster) and returns each one's outcome: a command's error does not fail
    /// the others. A lost connection fails the whole.
    async fn send_each(&self, commands: impl Iterator<Item = Cmd>) -> Result<Vec<RedisResult<Value>>> {
        if !self.is_cluster() {
            let mut pipe = redis::pipe();
            for command in commands {
                pipe.add_command(command);
            }
            if pipe.is_empty() {
                return Ok(Vec::new());
            }
            return pipe.ignore_errors().query_async(&mut self.conn()).await.map_err(map_redis_error);
        }
        let replies = commands.map(|command| {
            let mut conn = self.conn();
            async move { command.query_async::<Value>(&mut conn).await }
        });
        Ok(futures_util::future::join_all(replies).await)
    }
}

/// Whether the server answered `NOSCRIPT`: it does not know the script's hash.
fn is_no_script(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Distinct names, in order of first appearance (linear: a batch may hold many).
pub(crate) fn distinct<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().filter(|name| seen.insert(*name)).collect()
}
