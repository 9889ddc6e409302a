//! Queue limits: each queue's in its own slot (`haul:{<prefix>:<queue>}:limits`, a hash
//! with `concurrency` and `key_concurrency`, each present when set), where `claim.lua`
//! reads it atomically with the queue's running set and running jobs per limit key
//! (`haul:{<prefix>:<queue>}:key_running`), and an index of the queues that have some
//! (`haul:{<prefix>}:limits`, a sorted set of names, all scores 0) for listing them.
//!
//! On one server `set_limits.lua` writes both at once. On a cluster the index lives in
//! another slot, so it is a second call: added to before limits are stored, removed
//! from after they are deleted (then put back if limits were stored again in between),
//! so the index never misses a queue that has limits. It may name a queue whose limits
//! are gone (after an interrupted call, or racing calls); listing skips such names.

use haul_core::{QueueLimits, QueueLimitsRecord, Result, validate_queue_name};
use redis::{AsyncCommands, Value};

use crate::{
    RedisStorage,
    codec::reply,
    error::{corrupt, map_redis_error},
    scripts::scripts,
};

impl RedisStorage {
    pub(crate) async fn store_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        validate_queue_name(queue)?;
        limits.validate()?;
        let keys = &self.inner.keys;
        let (limits_key, index) = (keys.queue(queue).limits(), keys.limits());
        let concurrency = limit_arg(limits.concurrency);
        let key_concurrency = limit_arg(limits.key_concurrency);
        let adding = !limits.is_unlimited();
        let mut conn = self.conn();
        if self.is_cluster() && adding {
            // The index first, in the prefix's slot: it may name a queue without limits
            // (readers skip it), never miss a queue with some.
            let _: u64 = conn.zadd(&index, queue, 0).await.map_err(map_redis_error)?;
        }
        let mut call = scripts().set_limits.prepare_invoke();
        call.key(&limits_key);
        if !self.is_cluster() {
            call.key(&index);
        }
        call.arg(keys.channel()).arg(queue).arg(&concurrency).arg(&key_concurrency);
        self.run(&call).await?;
        if !self.is_cluster() || adding {
            return Ok(());
        }
        let _: u64 = conn.zrem(&index, queue).await.map_err(map_redis_error)?;
        // A call storing limits for the queue meanwhile may have added it to the index
        // before this removal: it belongs there while its limits exist.
        let stored: bool = conn.exists(&limits_key).await.map_err(map_redis_error)?;
        if stored {
            let _: u64 = conn.zadd(&index, queue, 0).await.map_err(map_redis_error)?;
        }
        Ok(())
    }

    pub(crate) async fn stored_queue_limits(&self) -> Result<Vec<QueueLimitsRecord>> {
        let keys = &self.inner.keys;
        let names: Vec<String> = self.conn().zrange(keys.limits(), 0, -1).await.map_err(map_redis_error)?;
        let commands = names
            .iter()
            .map(|name| {
                redis::cmd("HMGET").arg(keys.queue(name).limits()).arg("concurrency").arg("key_concurrency").clone()
            })
            .collect();
        let replies = self.query_all(commands).await?;
        let mut records = Vec::with_capacity(names.len());
        for (name, fields) in names.into_iter().zip(replies) {
            let mut fields = reply::array(fields)?.into_iter();
            let mut limits = QueueLimits::new();
            limits.concurrency = stored_limit(&name, "concurrency limit", fields.next())?;
            limits.key_concurrency = stored_limit(&name, "concurrency limit per key", fields.next())?;
            if !limits.is_unlimited() {
                records.push(QueueLimitsRecord::new(name, limits));
            }
        }
        // The index's members sort by bytes already (equal scores); keep the order
        // whatever the server.
        records.sort_unstable_by(|a, b| a.queue.cmp(&b.queue));
        Ok(records)
    }
}

/// A limit as `set_limits.lua` takes it: the number, or empty for none.
fn limit_arg(limit: Option<u32>) -> String {
    limit.map(|limit| limit.to_string()).unwrap_or_default()
}

/// A limit of queue `queue` as stored (`None`: the field is absent), `what` naming it
/// in the error about a value that is not a limit.
fn stored_limit(queue: &str, what: &str, value: Option<Value>) -> Result<Option<u32>> {
    let Some(value) = value.filter(|value| *value != Value::Nil) else { return Ok(None) };
    let text = reply::string(value)?;
    text.parse::<u32>()
        .ok()
        .filter(|&limit| limit > 0)
        .map(Some)
        .ok_or_else(|| corrupt(format!("the {what} of queue `{queue}` is `{text}`")))
}
