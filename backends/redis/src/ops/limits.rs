//! Queue limits: each queue's in its own slot (`haul:{<prefix>:<queue>}:limits`, a hash
//! with `concurrency`, `key_concurrency`, `rate_starts` and `rate_period_ms`,
//! `key_rate_starts` and `key_rate_period_ms`, each present when set), where
//! `claim.lua` reads it atomically with the queue's running set, running jobs per limit
//! key (`haul:{<prefix>:<queue>}:key_running`) and recent starts
//! (`haul:{<prefix>:<queue>}:starts`, and `…:starts:<limit key>` per key), and an index
//! of the queues that have some (`haul:{<prefix>}:limits`, a sorted set of names, all
//! scores 0) for listing them.
//!
//! On one server `set_limits.lua` writes both at once. On a cluster the index lives in
//! another slot, so it is a second call: added to before limits are stored, removed
//! from after they are deleted (then put back if limits were stored again in between),
//! so the index never misses a queue that has limits. It may name a queue whose limits
//! are gone (after an interrupted call, or racing calls); listing skips such names.

use std::time::Duration;

use haul_core::{QueueLimits, QueueLimitsRecord, RateLimit, Result, validate_queue_name};
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
        call.arg(keys.channel())
            .arg(queue)
            .arg(limit_arg(limits.concurrency))
            .arg(limit_arg(limits.key_concurrency))
            .arg(&rate_args(limits.rate))
            .arg(&rate_args(limits.key_rate));
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
            .map(|name| redis::cmd("HMGET").arg(keys.queue(name).limits()).arg(&LIMIT_FIELDS).clone())
            .collect();
        let replies = self.query_all(commands).await?;
        let mut records = Vec::with_capacity(names.len());
        for (name, fields) in names.into_iter().zip(replies) {
            let mut fields = reply::array(fields)?.into_iter();
            let mut limits = QueueLimits::new();
            limits.concurrency = stored_limit(&name, "concurrency limit", fields.next())?;
            limits.key_concurrency = stored_limit(&name, "concurrency limit per key", fields.next())?;
            limits.rate = stored_rate(&name, "rate limit", fields.next(), fields.next())?;
            limits.key_rate = stored_rate(&name, "rate limit per key", fields.next(), fields.next())?;
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

/// The fields of a queue's limits hash, in the order `set_limits.lua` takes them.
const LIMIT_FIELDS: [&str; 6] =
    ["concurrency", "key_concurrency", "rate_starts", "rate_period_ms", "key_rate_starts", "key_rate_period_ms"];

/// A rate limit as `set_limits.lua` takes it: its starts and its period in ms, or two
/// empty strings for none.
fn rate_args(rate: Option<RateLimit>) -> [String; 2] {
    match rate {
        Some(rate) => [rate.starts.to_string(), rate.period_millis().to_string()],
        None => [String::new(), String::new()],
    }
}

/// A rate limit of queue `queue` as stored, from its `starts` and `period` (ms) fields
/// (`None`: both absent), `what` naming it in the error about values that are not a
/// rate limit.
fn stored_rate(queue: &str, what: &str, starts: Option<Value>, period: Option<Value>) -> Result<Option<RateLimit>> {
    let starts = starts.filter(|value| *value != Value::Nil).map(reply::string).transpose()?;
    let period = period.filter(|value| *value != Value::Nil).map(reply::string).transpose()?;
    let (starts, period) = match (starts, period) {
        (None, None) => return Ok(None),
        (starts, period) => (starts.unwrap_or_default(), period.unwrap_or_default()),
    };
    let rate = match (starts.parse::<u32>(), period.parse::<u64>()) {
        (Ok(starts), Ok(period)) => Some(RateLimit::new(starts, Duration::from_millis(period))),
        _ => None,
    };
    rate.filter(|rate| rate.validate().is_ok())
        .map(Some)
        .ok_or_else(|| corrupt(format!("the {what} of queue `{queue}` is `{starts}` starts per `{period}` ms")))
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
