//! Throughput of the Redis backend, and the commands it sends per job:
//!
//! ```text
//! HAUL_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p haul-redis --example throughput -- 100000
//! ```
//!
//! Enqueues the jobs in batches of 1,000, then drains them with a worker (no-op
//! handler, concurrency 32), on a fresh key prefix that is purged at the end. The
//! command counts come from the server's `INFO commandstats`, so run it on a server
//! nothing else uses.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use haul::{Queue, Worker, job};
use haul_redis::{RedisConfig, RedisStorage};
use tokio::sync::Notify;

/// Counts handler runs and wakes `main` when all are done.
#[derive(Default)]
struct Progress {
    done: AtomicUsize,
    target: AtomicUsize,
    reached: Notify,
}

/// A job that does nothing but count itself.
#[job(queue = "bench")]
async fn noop(progress: haul::State<Progress>) -> Result<(), haul::JobError> {
    let done = progress.done.fetch_add(1, Ordering::Relaxed) + 1;
    if done == progress.target.load(Ordering::Relaxed) {
        progress.reached.notify_one();
    }
    Ok(())
}

/// Calls per command since the server started.
async fn command_calls(url: &str) -> Result<HashMap<String, u64>, Box<dyn std::error::Error>> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|field| field.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

fn per_job(before: &HashMap<String, u64>, after: &HashMap<String, u64>, jobs: usize) -> String {
    let mut deltas: Vec<(String, u64)> = after
        .iter()
        .map(|(name, calls)| (name.clone(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(name, delta)| *delta > 0 && name != "info")
        .collect();
    deltas.sort();
    let total: u64 = deltas.iter().map(|(_, delta)| delta).sum();
    let detail: Vec<String> = deltas.iter().map(|(name, delta)| format!("{name} {delta}")).collect();
    format!("{:.4} commands per job ({})", total as f64 / jobs as f64, detail.join(", "))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("HAUL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let jobs: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(100_000);
    let prefix = format!("haul_bench_{}", &uuid::Uuid::now_v7().simple().to_string()[16..]);
    let storage = RedisStorage::connect_with(&url, RedisConfig::new().prefix(&prefix)).await?;

    let queue = Queue::new(storage.clone());
    let before = command_calls(&url).await?;
    let started = Instant::now();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(1_000);
        queue.enqueue_many((0..n).map(|_| Noop::new())).await?;
        left -= n;
    }
    let elapsed = started.elapsed();
    let after = command_calls(&url).await?;
    println!(
        "enqueue (batches of 1,000): {jobs} jobs in {elapsed:.2?}, {:.0} jobs/s",
        jobs as f64 / elapsed.as_secs_f64()
    );
    println!("  {}", per_job(&before, &after, jobs));

    let progress = Arc::new(Progress::default());
    progress.target.store(jobs, Ordering::Relaxed);
    let reached = progress.reached.notified();
    let before = command_calls(&url).await?;
    let started = Instant::now();
    let worker =
        Worker::builder(storage.clone()).queues(["bench"]).concurrency(32).shared_state(Arc::clone(&progress)).build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(600), reached).await?;
    let elapsed = started.elapsed();
    let after = command_calls(&url).await?;
    let _ = stop.send(());
    running.await??;
    println!(
        "drain (no-op handler, concurrency 32): {jobs} jobs in {elapsed:.2?}, {:.0} jobs/s",
        jobs as f64 / elapsed.as_secs_f64()
    );
    println!("  {}", per_job(&before, &after, jobs));

    storage.purge().await?;
    Ok(())
}
