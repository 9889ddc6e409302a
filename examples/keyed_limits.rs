//! One at a time per customer, in order: the `sync` queue runs at most one job per
//! customer at once (a limit per key, kept in storage), while two workers with eight
//! slots each work on different customers side by side.
//!
//! Run with `cargo run --example keyed_limits`; it prints each customer's sync steps in
//! the order they ran, and exits non-zero if a customer ever had two steps running at
//! once or ran them out of order.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use haul::prelude::*;

const CUSTOMERS: u64 = 4;
const STEPS: u64 = 5;

/// What ran: the customers with a step running now, each customer's finished steps in
/// order, and whether a customer ever had two steps running at once.
#[derive(Default)]
struct Log {
    running: Mutex<HashSet<u64>>,
    steps: Mutex<HashMap<u64, Vec<u64>>>,
    overlapped: Mutex<bool>,
}

/// Pushes one step of a customer's data to an API that must see them one at a time,
/// in order. `limit_key = customer_id`: the job counts against its queue's per-key
/// limit under its customer's id.
#[job(queue = "sync", limit_key = customer_id)]
async fn sync_step(log: State<Log>, customer_id: u64, step: u64) {
    if !log.running.lock().expect("log lock").insert(customer_id) {
        *log.overlapped.lock().expect("log lock") = true;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.steps.lock().expect("log lock").entry(customer_id).or_default().push(step);
    log.running.lock().expect("log lock").remove(&customer_id);
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    queue.set_limits("sync", QueueLimits::new().key_concurrency(1)).await?;
    // Each customer's steps 1..=5, enqueued interleaved across customers.
    queue
        .enqueue_many((1..=STEPS).flat_map(|step| (1..=CUSTOMERS).map(move |customer| SyncStep::new(customer, step))))
        .await?;

    let log = Arc::new(Log::default());
    let total = (CUSTOMERS * STEPS) as usize;
    let until_done = |log: Arc<Log>| async move {
        while log.steps.lock().expect("log lock").values().map(Vec::len).sum::<usize>() < total {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let worker = || {
        Worker::builder(storage.clone())
            .queues(["sync"])
            .concurrency(8)
            .shared_state(Arc::clone(&log))
            .build()
            .run_until(until_done(Arc::clone(&log)))
    };
    let (first, second) = tokio::join!(worker(), worker());
    first?;
    second?;

    let steps = log.steps.lock().expect("log lock").clone();
    let mut in_order = true;
    for customer in 1..=CUSTOMERS {
        let ran = steps.get(&customer).cloned().unwrap_or_default();
        println!("customer {customer}: steps ran in the order {ran:?}");
        in_order &= ran == (1..=STEPS).collect::<Vec<_>>();
    }
    let overlapped = *log.overlapped.lock().expect("log lock");
    if overlapped || !in_order {
        return Err(haul::Error::InvalidArgument(
            format!("a customer's steps overlapped ({overlapped}) or ran out of order ({})", !in_order).into(),
        ));
    }
    println!("{total} steps by two workers with 8 slots each: one at a time per customer, in order");
    Ok(())
}
