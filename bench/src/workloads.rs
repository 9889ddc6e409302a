//! The measured workloads, written once over any storage.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use haul::{JobState, MemoryStorage, Queue, Storage, Worker, job};
use tokio::sync::Notify;

use crate::Figure;

/// Counts handler runs and wakes the harness when the target is reached.
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

const BATCH: usize = 1_000;
const PRODUCERS: usize = 32;

/// Every workload on the memory backend, each on a fresh storage.
pub(crate) async fn memory(jobs: usize, concurrency: usize) -> haul::Result<Vec<Figure>> {
    Ok(vec![
        enqueue_batched("memory", MemoryStorage::new(), jobs).await?,
        enqueue_one_by_one("memory", MemoryStorage::new(), jobs).await?,
        drain("memory", MemoryStorage::new(), jobs, concurrency).await?,
    ])
}

/// `jobs` jobs enqueued in batches of 1,000.
async fn enqueue_batched(backend: &'static str, storage: impl Storage, jobs: usize) -> haul::Result<Figure> {
    let queue = Queue::new(storage);
    let started = Instant::now();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(BATCH);
        queue.enqueue_many((0..n).map(|_| Noop::new())).await?;
        left -= n;
    }
    Ok(Figure::new(backend, "enqueue (batches of 1,000)", jobs, started.elapsed()))
}

/// `jobs` jobs enqueued one at a time by 32 concurrent producers.
async fn enqueue_one_by_one(backend: &'static str, storage: impl Storage, jobs: usize) -> haul::Result<Figure> {
    let queue = Queue::new(storage);
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let queue = queue.clone();
            let share = jobs / PRODUCERS + usize::from(p < jobs % PRODUCERS);
            tokio::spawn(async move {
                for _ in 0..share {
                    queue.enqueue(Noop::new()).await?;
                }
                Ok::<_, haul::Error>(())
            })
        })
        .collect();
    for producer in producers {
        producer.await.map_err(|e| haul::Error::InvalidArgument(e.to_string().into()))??;
    }
    Ok(Figure::new(backend, "enqueue (1 by 1, 32 producers)", jobs, started.elapsed()))
}

/// `jobs` pre-enqueued no-op jobs worked at `concurrency`, timed until every one is
/// completed in storage.
async fn drain(
    backend: &'static str,
    storage: impl Storage + Clone,
    jobs: usize,
    concurrency: usize,
) -> haul::Result<Figure> {
    let queue = Queue::new(storage.clone());
    let mut left = jobs;
    while left > 0 {
        let n = left.min(BATCH);
        queue.enqueue_many((0..n).map(|_| Noop::new())).await?;
        left -= n;
    }
    let progress = Arc::new(Progress::default());
    progress.target.store(jobs, Ordering::Relaxed);
    let worker = Worker::builder(storage)
        .queues(["bench"])
        .concurrency(concurrency)
        .shared_state(Arc::clone(&progress))
        .poll_interval(Duration::from_millis(100))
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    progress.reached.notified().await;
    loop {
        let completed: u64 = queue.counts().await?.iter().map(|c| c.get(JobState::Completed)).sum();
        if completed as usize >= jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    running.await.map_err(|e| haul::Error::InvalidArgument(e.to_string().into()))??;
    Ok(Figure::new(backend, "drain (no-op, concurrency)", jobs, elapsed))
}
