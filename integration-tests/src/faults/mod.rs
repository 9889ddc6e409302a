//! The fault group: haul keeps its at-least-once promise when workers are killed,
//! servers restart, connections are cut, handlers hang and input is bad.
//!
//! The cases live in [`cases`]; `tests/faults.rs` runs each on every backend where it
//! applies. Workers that must die for real run as child processes
//! (`src/bin/haul-fault-worker.rs`, see [`hosts`]); servers that must stop run
//! privately in a temporary directory ([`servers`]). What handlers did is written to a
//! [`run_log::RunLog`] file, since a killed process's memory is gone.

pub mod cases;
pub mod hosts;
pub mod leader_kill;
pub mod poison;
pub mod retention;
pub mod run_log;
pub mod servers;
pub mod stall;

pub use hosts::{HostedWorker, Target, WorkerSpec, run_child_worker};
pub use servers::PrivateServer;

use crate::HarnessError;

/// Runs `body` on a prepared `target`, then removes the target's namespace whether the
/// body passed or not.
pub async fn with_target<F, Fut>(target: Target, body: F)
where
    F: FnOnce(crate::TestStorage, Target) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let storage = match target.prepare().await {
        Ok(storage) => storage,
        Err(error) => panic!("cannot prepare the {} target: {error}", target.backend()),
    };
    let outcome = tokio::spawn(body(storage, target.clone())).await;
    let cleaned: Result<(), HarnessError> = target.cleanup().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
    if let Err(error) = cleaned {
        panic!("cannot clean up the {} target: {error}", target.backend());
    }
}
