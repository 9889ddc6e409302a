//! What a worker checks when it starts, through the facade: a job kind it serves that
//! takes a `State<T>` it was not given stops it at once, with the fix in the message.

#![allow(clippy::unwrap_used)]

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use haul::{JobId, JobRecord, JobState, Queue, prelude::*};

/// The state `charge` takes.
#[derive(Default)]
struct Ledger {
    charged: AtomicU64,
}

#[job(queue = "start_checks.billing")]
async fn charge(ledger: State<Ledger>, cents: u64) -> Result<(), JobError> {
    ledger.charged.fetch_add(cents, Ordering::SeqCst);
    Ok(())
}

fn worker(storage: &MemoryStorage, queue: &str) -> haul::WorkerBuilder {
    Worker::builder(storage.clone()).queues([queue]).poll_interval(Duration::from_millis(20))
}

#[tokio::test]
async fn a_worker_serving_a_kind_without_the_state_it_takes_fails_at_start_with_the_fix() {
    let storage = MemoryStorage::new();
    let run = worker(&storage, "start_checks.billing").build().run_until(std::future::pending());
    let error =
        tokio::time::timeout(Duration::from_secs(20), run).await.expect("run_until returns at once").unwrap_err();
    let message = error.to_string();
    match error {
        haul::Error::MissingState { kind, queue, type_name } => {
            assert_eq!((kind.as_str(), queue.as_str()), ("charge", "start_checks.billing"));
            assert!(type_name.ends_with("::Ledger"), "{type_name}");
        }
        other => panic!("expected MissingState, got {other:?}"),
    }
    assert!(message.contains("job kind `charge` takes `State<") && message.contains("Ledger>`"), "{message}");
    assert!(message.contains("Worker::builder(..).state(value)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_state_given_the_worker_runs_the_kind() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(Charge::new(250)).await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let running =
        RunningWorker::start(worker(&storage, "start_checks.billing").shared_state(Arc::clone(&ledger)).build());
    job_in_state(&queue, id, JobState::Completed).await;
    running.stop().await.unwrap();
    assert_eq!(ledger.charged.load(Ordering::SeqCst), 250);
}

/// A job sent to another queue than its kind's default is not known when a worker of
/// that queue starts: the worker starts, and the missing state fails the attempt,
/// naming the type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_to_another_queue_fails_its_attempt_when_the_state_is_missing() {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(Charge::new(1)).queue("start_checks.elsewhere").max_attempts(1).await.unwrap();
    let running = RunningWorker::start(worker(&storage, "start_checks.elsewhere").build());
    let job = job_in_state(&queue, id, JobState::Discarded).await;
    running.stop().await.unwrap();
    assert!(job.errors[0].message.contains("Ledger"), "{}", job.errors[0].message);
}

// --- helpers ---

/// A worker running in the background until `stop` is called.
struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<haul::Result<()>>,
}

impl RunningWorker {
    fn start(worker: haul::Worker) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    async fn stop(self) -> haul::Result<()> {
        let _ = self.stop.send(());
        self.handle.await.expect("worker task panicked")
    }
}

/// Polls `check` until it yields a value, failing the test after 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn job_in_state(queue: &Queue, id: JobId, state: JobState) -> JobRecord {
    eventually(&format!("job {id} to be {state}"), || async {
        queue.get(id).await.expect("get").filter(|job| job.state == state)
    })
    .await
}
