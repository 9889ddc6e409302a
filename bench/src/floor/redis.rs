//! The Redis floor: the batched enqueue/claim/complete cycle as minimal hand-written Lua
//! on a sorted set of available ids, a sorted set of running ids (scored by lease
//! deadline) and a hash per job, with no library around it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use redis::{Script, aio::MultiplexedConnection};
use tokio::task::JoinSet;

use crate::{
    BoxError, Figure, FloorOf,
    floor::FLOOR_CLAIMERS,
    ui::Ui,
    workloads::{BATCH, PRODUCERS},
};

/// KEYS: available set, job hash prefix. ARGV: now (µs), then id, args per job.
const ENQUEUE: &str = r"
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2] .. ARGV[i], 'args', ARGV[i + 1], 'state', 'available')
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
end
return (#ARGV - 1) / 2
";

/// KEYS: available set, running set, job hash prefix. ARGV: limit, lease deadline (µs).
/// Returns the claimed ids.
const CLAIM: &str = r"
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local ids = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  redis.call('HSET', KEYS[3] .. id, 'state', 'running')
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  ids[#ids + 1] = id
end
return ids
";

/// KEYS: running set, job hash prefix. ARGV: the ids. Returns how many were running.
const COMPLETE: &str = r"
local done = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2] .. ARGV[i], 'state', 'completed')
    done = done + 1
  end
end
return done
";

/// The lease the floor's claim gives, in microseconds.
const LEASE_MICROS: u64 = 30_000_000;

/// The floor's keys, under a prefix of their own.
#[derive(Clone)]
struct Keys {
    prefix: String,
    available: String,
    running: String,
    job: String,
}

impl Keys {
    fn new(prefix: String) -> Self {
        Self {
            available: format!("{prefix}:available"),
            running: format!("{prefix}:running"),
            job: format!("{prefix}:job:"),
            prefix,
        }
    }
}

/// The floor's three scripts.
#[derive(Clone)]
struct Scripts {
    enqueue: Arc<Script>,
    claim: Arc<Script>,
    complete: Arc<Script>,
}

/// The floor's enqueue and drain figures on the Redis server at `url`, under a key prefix
/// of their own (deleted at the end).
pub(crate) async fn measure(url: &str, jobs: usize, ui: &Ui) -> Result<Vec<Figure>, BoxError> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let keys = Keys::new(format!("haul_bench_{}_floor", std::process::id()));
    let scripts = Scripts {
        enqueue: Arc::new(Script::new(ENQUEUE)),
        claim: Arc::new(Script::new(CLAIM)),
        complete: Arc::new(Script::new(COMPLETE)),
    };
    purge(&mut conn, &keys.prefix).await?;
    let result = async {
        let mut figures = batched(&conn, &keys, &scripts, jobs, ui).await?;
        figures.push(one_by_one(&conn, &keys, &scripts, jobs, ui).await?);
        Ok::<_, BoxError>(figures)
    }
    .await;
    let purged = purge(&mut conn, &keys.prefix).await;
    let figures = result?;
    purged?;
    Ok(figures)
}

/// Microseconds since the Unix epoch.
fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Enqueues `count` jobs with ids from `first` in one script call.
async fn enqueue(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    script: &Script,
    first: u64,
    count: usize,
) -> Result<(), BoxError> {
    let mut call = script.key(&keys.available);
    call.key(&keys.job).arg(now_micros());
    for id in first..first + count as u64 {
        call.arg(id).arg("{}");
    }
    let stored: usize = call.invoke_async(conn).await?;
    if stored != count {
        return Err(format!("the floor's enqueue stored {stored} of {count} jobs").into());
    }
    Ok(())
}

/// `jobs` jobs enqueued in batches of 1,000, then claimed and completed by 1,000 by
/// [`FLOOR_CLAIMERS`] concurrent loops.
async fn batched(
    conn: &MultiplexedConnection,
    keys: &Keys,
    scripts: &Scripts,
    jobs: usize,
    ui: &Ui,
) -> Result<Vec<Figure>, BoxError> {
    let label = "floor: enqueue, batches of 1,000";
    let bar = ui.bar("redis", label, jobs);
    let started = Instant::now();
    let mut next = 0u64;
    let mut left = jobs;
    let mut conn_enqueue = conn.clone();
    while left > 0 {
        let n = left.min(BATCH);
        enqueue(&mut conn_enqueue, keys, &scripts.enqueue, next, n).await?;
        next += n as u64;
        bar.counter().fetch_add(n, Ordering::Relaxed);
        left -= n;
    }
    let enqueued = started.elapsed();
    bar.finish(jobs, enqueued);

    let label_drain = "floor: claim + complete by 1,000";
    let bar = ui.bar("redis", label_drain, jobs);
    let started = Instant::now();
    let mut claimers = JoinSet::new();
    for _ in 0..FLOOR_CLAIMERS {
        let (mut conn, keys, scripts, counter) =
            (conn.clone(), keys.clone(), scripts.clone(), Arc::clone(bar.counter_arc()));
        claimers.spawn(async move {
            loop {
                let ids: Vec<String> = scripts
                    .claim
                    .key(&keys.available)
                    .key(&keys.running)
                    .key(&keys.job)
                    .arg(BATCH)
                    .arg(now_micros() + LEASE_MICROS)
                    .invoke_async(&mut conn)
                    .await?;
                if ids.is_empty() {
                    return Ok::<_, redis::RedisError>(());
                }
                let mut call = scripts.complete.key(&keys.running);
                call.key(&keys.job).arg(&ids);
                let done: usize = call.invoke_async(&mut conn).await?;
                counter.fetch_add(done, Ordering::Relaxed);
            }
        });
    }
    while let Some(joined) = claimers.join_next().await {
        joined??;
    }
    let drained = started.elapsed();
    let completed = bar.counter().load(Ordering::Relaxed);
    let mut check = conn.clone();
    let (available, running): (usize, usize) =
        redis::pipe().zcard(&keys.available).zcard(&keys.running).query_async(&mut check).await?;
    if completed != jobs || available != 0 || running != 0 {
        return Err(format!(
            "the floor completed {completed} of {jobs} jobs ({available} still available, {running} running)"
        )
        .into());
    }
    bar.finish(jobs, drained);
    Ok(vec![
        Figure::new("redis", label, jobs, enqueued).floor_figure(FloorOf::Enqueue),
        Figure::new("redis", label_drain, jobs, drained)
            .floor_figure(FloorOf::Drain)
            .note(format!("{FLOOR_CLAIMERS} concurrent claim/complete loops (ZPOPMIN + HSET; ZREM + HSET)")),
    ])
}

/// `jobs` single-job enqueue calls from 32 concurrent producers on one multiplexed
/// connection (as haul's storage has), under ids after the batched run's.
async fn one_by_one(
    conn: &MultiplexedConnection,
    keys: &Keys,
    scripts: &Scripts,
    jobs: usize,
    ui: &Ui,
) -> Result<Figure, BoxError> {
    let label = "floor: enqueue, 1 by 1, 32 producers";
    let bar = ui.bar("redis", label, jobs);
    let next = Arc::new(AtomicU64::new(jobs as u64));
    let started = Instant::now();
    let mut producers = JoinSet::new();
    for p in 0..PRODUCERS {
        let (mut conn, keys, script, next) =
            (conn.clone(), keys.clone(), Arc::clone(&scripts.enqueue), Arc::clone(&next));
        let counter: Arc<AtomicUsize> = Arc::clone(bar.counter_arc());
        let share = jobs / PRODUCERS + usize::from(p < jobs % PRODUCERS);
        producers.spawn(async move {
            for _ in 0..share {
                enqueue(&mut conn, &keys, &script, next.fetch_add(1, Ordering::Relaxed), 1).await?;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(joined) = producers.join_next().await {
        joined??;
    }
    let elapsed = started.elapsed();
    bar.finish(jobs, elapsed);
    Ok(Figure::new("redis", label, jobs, elapsed)
        .floor_figure(FloorOf::EnqueueOneByOne)
        .note("one EVALSHA per job on one multiplexed connection".to_owned()))
}

/// Deletes every key under `prefix`.
async fn purge(conn: &mut MultiplexedConnection, prefix: &str) -> Result<(), BoxError> {
    let pattern = format!("{prefix}:*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1_000).query_async(conn).await?;
        if !keys.is_empty() {
            let _: usize = redis::cmd("UNLINK").arg(&keys).query_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The server's `redis_version` from `INFO server`.
pub(crate) async fn server_version(url: &str) -> Result<String, BoxError> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await?;
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| "INFO server has no redis_version".into())
}
