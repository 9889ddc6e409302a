//! Helpers shared by the facade's runtime tests.

use std::{future::Future, time::Duration};

use haul::{JobId, JobRecord, JobState, Queue};
use tokio::{sync::oneshot, task::JoinHandle};

/// A worker running in the background until `stop` is called.
pub(crate) struct RunningWorker {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<haul::Result<()>>,
}

impl RunningWorker {
    pub(crate) fn start(worker: haul::Worker) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    /// Signals shutdown and waits for `run_until` to return.
    pub(crate) async fn stop(self) -> haul::Result<()> {
        let _ = self.stop.send(());
        self.handle.await.expect("worker task panicked")
    }
}

/// Polls `check` until it yields a value, failing the test after 20 s.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
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

/// Waits until job `id` is in `state` and returns it.
pub(crate) async fn job_in_state(queue: &Queue, id: JobId, state: JobState) -> JobRecord {
    eventually(&format!("job {id} to be {state}"), || async {
        queue.get(id).await.expect("get").filter(|job| job.state == state)
    })
    .await
}

/// Waits until `n` jobs are in `state`.
pub(crate) async fn count_in_state(queue: &Queue, state: JobState, n: u64) {
    eventually(&format!("{n} jobs to be {state}"), || async {
        let total: u64 = queue.counts().await.expect("counts").iter().map(|c| c.get(state)).sum();
        (total == n).then_some(())
    })
    .await
}
