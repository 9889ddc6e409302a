//! The fault group on every backend where each fault applies:
//! `cargo test -p haul-integration-tests --test faults`.
//!
//! PostgreSQL and Redis workers that must die run as child processes
//! (`haul-fault-worker`); restarts and cut connections use private servers the case
//! starts and stops (`initdb`/`pg_ctl`, `redis-server`); the rest use the servers the
//! conformance suite uses (`HAUL_TEST_POSTGRES_URL`, `HAUL_TEST_REDIS_URL`, or
//! testcontainers). The memory backend has no server to restart or connection to cut,
//! and no other process can reach it, so its workers die by having their runtime
//! dropped. For the same reason the leader-kill case (three worker processes sharing
//! one periodic schedule, the leader SIGKILLed again and again) runs on PostgreSQL and
//! Redis only: a memory storage cannot share a schedule across processes.

use std::{path::Path, sync::Arc};

use haul_integration_tests::{
    TestStorage,
    faults::{HostedWorker, PrivateServer, Target, cases, retention, with_target},
    services,
};

const WORKER_BINARY: &str = env!("CARGO_BIN_EXE_haul-fault-worker");

/// Runs the future `case` makes on a runtime whose threads (and the one blocking on it)
/// have stacks of 256 MiB: the poison case builds, serializes and drops JSON nested
/// 10,000 levels deep, which serde does recursively.
fn on_big_stacks<F>(case: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    const STACK: usize = 256 << 20;
    let thread = std::thread::Builder::new().stack_size(STACK).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(STACK)
            .enable_all()
            .build()
            .expect("a runtime starts");
        runtime.block_on(case());
    });
    if let Err(panic) = thread.expect("a thread starts").join() {
        std::panic::resume_unwind(panic);
    }
}

fn in_child_process(target: &Target) -> impl Fn(&haul_integration_tests::faults::WorkerSpec) -> HostedWorker + use<> {
    let target = target.clone();
    move |spec| HostedWorker::process(Path::new(WORKER_BINARY), &target, spec)
}

mod memory {
    use super::*;

    fn storage() -> TestStorage {
        Arc::new(haul::MemoryStorage::new())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_worker_loses_no_job() {
        let storage = storage();
        let host = storage.clone();
        cases::a_killed_worker_loses_no_job(storage, move |spec| HostedWorker::thread(&host, spec)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_worker_frees_its_limited_slot_at_the_rescue() {
        let storage = storage();
        let host = storage.clone();
        cases::a_killed_worker_frees_its_limited_slot_at_the_rescue(storage, move |spec| {
            HostedWorker::thread(&host, spec)
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_worker_frees_its_keys_slot_at_the_rescue() {
        let storage = storage();
        let host = storage.clone();
        cases::a_killed_worker_frees_its_keys_slot_at_the_rescue(storage, move |spec| {
            HostedWorker::thread(&host, spec)
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_terminated_worker_hands_back_what_it_cannot_finish() {
        let storage = storage();
        let host = storage.clone();
        cases::a_terminated_worker_hands_back_what_it_cannot_finish(storage, move |spec| {
            HostedWorker::thread(&host, spec)
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_handler_times_out_while_other_slots_work() {
        cases::a_hung_handler_times_out_while_other_slots_work(storage()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input_among_good_jobs_loses_nothing() {
        cases::bad_input_among_good_jobs_loses_nothing(storage()).await;
    }

    #[test]
    fn poison_input_among_good_jobs_loses_nothing() {
        on_big_stacks(|| cases::poison_input_among_good_jobs_loses_nothing(storage(), None));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pruning_keeps_up_with_completions() {
        retention::pruning_keeps_up_with_completions(storage()).await;
    }
}

/// The fault cases for a backend reached through a URL and a private server.
macro_rules! server_faults {
    ($module:ident, $url:expr, $target:path, $server:expr) => {
        mod $module {
            use super::*;

            async fn target() -> Target {
                $target($url.await)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_killed_worker_loses_no_job() {
                with_target(target().await, |storage, target| async move {
                    cases::a_killed_worker_loses_no_job(storage, in_child_process(&target)).await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_killed_worker_frees_its_limited_slot_at_the_rescue() {
                with_target(target().await, |storage, target| async move {
                    cases::a_killed_worker_frees_its_limited_slot_at_the_rescue(storage, in_child_process(&target))
                        .await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_killed_worker_frees_its_keys_slot_at_the_rescue() {
                with_target(target().await, |storage, target| async move {
                    cases::a_killed_worker_frees_its_keys_slot_at_the_rescue(storage, in_child_process(&target)).await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_terminated_worker_hands_back_what_it_cannot_finish() {
                with_target(target().await, |storage, target| async move {
                    cases::a_terminated_worker_hands_back_what_it_cannot_finish(storage, in_child_process(&target))
                        .await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_stalled_worker_never_starts_a_job_another_completed() {
                with_target(target().await, |storage, target| async move {
                    cases::a_stalled_worker_never_starts_a_job_another_completed(storage, in_child_process(&target))
                        .await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_killed_leader_never_loses_or_repeats_a_tick() {
                with_target(target().await, |storage, target| async move {
                    cases::a_killed_leader_never_loses_or_repeats_a_tick(storage, in_child_process(&target)).await;
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_hung_handler_times_out_while_other_slots_work() {
                with_target(target().await, |storage, _| {
                    cases::a_hung_handler_times_out_while_other_slots_work(storage)
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_input_among_good_jobs_loses_nothing() {
                with_target(target().await, |storage, _| cases::bad_input_among_good_jobs_loses_nothing(storage)).await;
            }

            #[test]
            fn poison_input_among_good_jobs_loses_nothing() {
                on_big_stacks(|| async {
                    with_target(target().await, |storage, target| {
                        cases::poison_input_among_good_jobs_loses_nothing(storage, Some(target))
                    })
                    .await;
                });
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pruning_keeps_up_with_completions() {
                with_target(target().await, |storage, _| retention::pruning_keeps_up_with_completions(storage)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_restarted_server_loses_no_committed_job() {
                let server = $server.await.expect("a private server starts");
                cases::a_restarted_server_loses_no_committed_job(&server).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cut_connections_lose_no_outcome() {
                let server = $server.await.expect("a private server starts");
                cases::cut_connections_lose_no_outcome(&server).await;
            }
        }
    };
}

server_faults!(postgres, services::postgres_url(), Target::postgres, PrivateServer::postgres());
server_faults!(redis, services::redis_url(), Target::redis, PrivateServer::redis());
