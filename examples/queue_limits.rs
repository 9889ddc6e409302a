//! A limit every worker obeys: two workers with eight slots each share a storage, and
//! the `payments` queue is limited to two jobs at once across both of them.
//!
//! Run with `cargo run --example queue_limits`; it prints how many payments ran at once
//! at most, and exits non-zero if that ever went over the limit.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use haul::prelude::*;

/// How many payments run right now, and the most that ever ran at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    most: AtomicUsize,
    done: AtomicUsize,
}

/// Pretends to call a payment provider that allows two calls at a time.
#[job(queue = "payments")]
async fn charge(gauge: State<Gauge>, cents: u64) -> Result<(), JobError> {
    let running = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
    gauge.most.fetch_max(running, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    gauge.now.fetch_sub(1, Ordering::SeqCst);
    gauge.done.fetch_add(1, Ordering::SeqCst);
    println!("charged {cents} cents ({running} running)");
    Ok(())
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    queue.set_limits("payments", QueueLimits::new().concurrency(2)).await?;
    queue.enqueue_many((1..=12).map(|n| Charge::new(n * 100))).await?;

    let gauge = Arc::new(Gauge::default());
    let until_done = |gauge: Arc<Gauge>| async move {
        while gauge.done.load(Ordering::SeqCst) < 12 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let worker = || {
        Worker::builder(storage.clone())
            .queues(["payments"])
            .concurrency(8)
            .shared_state(Arc::clone(&gauge))
            .build()
            .run_until(until_done(Arc::clone(&gauge)))
    };
    let (first, second) = tokio::join!(worker(), worker());
    first?;
    second?;

    let most = gauge.most.load(Ordering::SeqCst);
    println!("12 payments by two workers with 8 slots each: at most {most} ran at once (limit 2)");
    if most > 2 {
        return Err(haul::Error::InvalidArgument(format!("{most} payments ran at once, over the limit of 2").into()));
    }
    Ok(())
}
