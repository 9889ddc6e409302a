//! The worker's background tasks (heartbeat, maintenance, periodic jobs, gauges,
//! throughput, membership, the flusher), each spawned so that its panic stops the
//! worker as a claim loop's does: the claim loops stop, the worker shuts down (hands
//! back what it holds, writes every outcome it can), and the panic comes out of
//! [`Worker::run_until`](crate::Worker::run_until). Without this a panicked heartbeat
//! would let every lease lapse, or a panicked maintenance task leave a leader that
//! never rescues, while the worker went on claiming.

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

/// Spawns `task`, named `name` in the log; a panic of it cancels `stop_claiming`. The
/// handle gives the task's output, or the [`JoinError`] of its panic or abort.
pub(crate) fn spawn<T: Send + 'static>(
    name: &'static str,
    stop_claiming: &CancellationToken,
    task: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<Result<T, JoinError>> {
    let task = tokio::spawn(task);
    let stop_claiming = stop_claiming.clone();
    tokio::spawn(async move {
        let joined = task.await;
        if joined.as_ref().is_err_and(JoinError::is_panic) {
            tracing::error!(task = name, "a background task of the worker panicked; stopping the worker");
            stop_claiming.cancel();
        }
        joined
    })
}

/// The task's output from a handle of [`spawn`]: the panic of the task (or of its
/// supervisor), if it panicked, goes to `first_panic` when that is still empty.
pub(crate) fn output<T>(
    joined: Result<Result<T, JoinError>, JoinError>,
    first_panic: &mut Option<Box<dyn std::any::Any + Send>>,
) -> Option<T> {
    match joined.and_then(|inner| inner) {
        Ok(output) => Some(output),
        Err(error) => {
            if error.is_panic() && first_panic.is_none() {
                *first_panic = Some(error.into_panic());
            }
            None
        }
    }
}
