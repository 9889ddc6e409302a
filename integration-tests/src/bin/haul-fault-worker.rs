//! A worker process for the fault tests: reads what to run from
//! `HAUL_FAULT_WORKER_SPEC` and works until SIGTERM or SIGINT (or SIGKILL, which is the
//! point). See `haul_integration_tests::faults::hosts`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match haul_integration_tests::faults::run_child_worker().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("haul-fault-worker: {error}");
            ExitCode::FAILURE
        }
    }
}
