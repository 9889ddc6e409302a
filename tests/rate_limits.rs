//! A rate-limited queue through the facade: the worker claims again when the limit
//! lets the next job start (the claim's `rate_limited_for`), not at its next poll.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use haul::prelude::*;
use tokio::sync::oneshot;

/// When each job's handler started.
#[derive(Default)]
struct Starts(Mutex<Vec<Instant>>);

impl Starts {
    fn record(&self) {
        self.0.lock().unwrap().push(Instant::now());
    }
}

#[job(queue = "rate_limited")]
async fn paced(starts: State<Starts>) -> Result<(), JobError> {
    starts.record();
    Ok(())
}

const PERIOD: Duration = Duration::from_millis(300);

/// With a poll interval of an hour and no wake-up for a rate limit, only the claim's
/// hint can start the second and third jobs within the test's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claims_again_when_the_rate_limit_lets_the_next_job_start() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    queue.set_limits("rate_limited", QueueLimits::new().rate(RateLimit::new(1, PERIOD))).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(queue.enqueue(Paced::new()).await.unwrap());
    }
    let starts = Arc::new(Starts::default());
    let worker = Worker::builder(storage.clone())
        .queues(["rate_limited"])
        .concurrency(8)
        .poll_interval(Duration::from_secs(3_600))
        .shared_state(Arc::clone(&starts))
        .build();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));

    let all_completed = async {
        loop {
            let mut completed = 0;
            for &id in &ids {
                if queue.get(id).await.unwrap().is_some_and(|job| job.state == JobState::Completed) {
                    completed += 1;
                }
            }
            if completed == ids.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(20), all_completed).await;
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    assert!(finished.is_ok(), "the rate-limited jobs did not all run within 20 s: the worker waited for its poll");

    let starts = starts.0.lock().unwrap().clone();
    assert_eq!(starts.len(), 3);
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        // Starts are claims by the storage's clock; a handler starts a little after its
        // claim, so allow a little slack below the period.
        assert!(gap >= PERIOD - Duration::from_millis(50), "two jobs started {gap:?} apart");
    }
}
