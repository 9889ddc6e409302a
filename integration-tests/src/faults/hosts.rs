//! Where a fault case's workers run: a child process (which can be killed for real) or
//! a thread with a runtime of its own (for the memory backend, which another process
//! cannot reach).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use haul::{Storage, Worker};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::run_log::{Logged, RunLog};
use crate::{HarnessError, TestStorage};

/// The environment variable the child worker reads its [`ChildSpec`] from (as JSON).
pub const CHILD_SPEC_VAR: &str = "HAUL_FAULT_WORKER_SPEC";

/// A storage another process can reach: a server and a namespace of its own.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum Target {
    /// A PostgreSQL schema.
    Postgres {
        /// The server.
        url: String,
        /// The schema.
        schema: String,
    },
    /// A Redis key prefix.
    Redis {
        /// The server.
        url: String,
        /// The key prefix.
        prefix: String,
    },
}

impl Target {
    /// A fresh schema on the PostgreSQL server at `url`.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self::Postgres { url: url.into(), schema: crate::harness::fresh_name("haul_fault") }
    }

    /// A fresh key prefix on the Redis server at `url`.
    pub fn redis(url: impl Into<String>) -> Self {
        Self::Redis { url: url.into(), prefix: crate::harness::fresh_name("haul_fault") }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "postgres",
            Self::Redis { .. } => "redis",
        }
    }

    /// Connects to the storage. PostgreSQL's pool gives up acquiring a connection after
    /// 5 s, so calls fail (and are retried by their caller) while the server is down.
    pub async fn connect(&self) -> Result<TestStorage, HarnessError> {
        match self {
            Self::Postgres { url, schema } => {
                let pool =
                    sqlx::postgres::PgPoolOptions::new().acquire_timeout(Duration::from_secs(5)).connect(url).await?;
                let config = haul::PostgresConfig::new().schema(schema);
                Ok(Arc::new(haul::PostgresStorage::from_pool_with(pool, config)?))
            }
            Self::Redis { url, prefix } => {
                let config = haul::RedisConfig::new().prefix(prefix).response_timeout(Duration::from_secs(5));
                Ok(Arc::new(haul::RedisStorage::connect_with(url, config).await?))
            }
        }
    }

    /// Creates the namespace (PostgreSQL: migrates the schema) and connects to it.
    pub async fn prepare(&self) -> Result<TestStorage, HarnessError> {
        if let Self::Postgres { url, schema } = self {
            let storage = haul::PostgresStorage::connect_with(url, haul::PostgresConfig::new().schema(schema)).await?;
            storage.migrate().await?;
            storage.pool().close().await;
        }
        self.connect().await
    }

    /// Removes the namespace and everything in it.
    pub async fn cleanup(&self) -> Result<(), HarnessError> {
        match self {
            Self::Postgres { url, schema } => crate::harness::drop_schema(url, schema).await?,
            Self::Redis { url, prefix } => {
                let storage = haul::RedisStorage::connect_with(url, haul::RedisConfig::new().prefix(prefix)).await?;
                storage.purge().await?;
            }
        }
        Ok(())
    }
}

/// How a fault case's worker is set up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The one queue it works.
    pub queue: String,
    /// Its slots.
    pub concurrency: usize,
    /// How many jobs it claims ahead of its free slots.
    pub prefetch: usize,
    /// Its lease, in milliseconds (heartbeats every third of it).
    pub lease_ms: u64,
    /// Its shutdown grace period, in milliseconds.
    pub grace_ms: u64,
    /// The run log its handlers write.
    pub log: PathBuf,
    /// The periodic job it declares, if any (every worker of a case declares the same).
    #[serde(default)]
    pub periodic: Option<PeriodicSpec>,
}

/// The name of the periodic job a [`WorkerSpec`] declares.
pub const PERIODIC_NAME: &str = "fault-tick";

/// A periodic job on the spec's queue: a [`Logged`] job at each tick, named
/// [`PERIODIC_NAME`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PeriodicSpec {
    /// The interval of its [`haul::Schedule::every`], in milliseconds (at least 1 s).
    pub every_ms: u64,
    /// How long each tick's job sleeps, in milliseconds.
    pub sleep_ms: u64,
}

impl PeriodicSpec {
    /// The periodic job, sending its ticks' jobs to `queue`. A tick's job may be held by
    /// several workers that die in turn, so it has attempts to spare.
    pub fn periodic(&self, queue: &str) -> haul::Periodic {
        let schedule = haul::Schedule::every(Duration::from_millis(self.every_ms)).expect("the interval is valid");
        haul::Periodic::new(PERIODIC_NAME, schedule, Logged::new(self.sleep_ms))
            .expect("the periodic job is valid")
            .queue(queue)
            .max_attempts(50)
    }
}

impl WorkerSpec {
    /// The worker this spec describes, over `storage`.
    pub fn build(&self, storage: impl Storage) -> Worker {
        let builder = Worker::builder(storage)
            .queues([self.queue.as_str()])
            .concurrency(self.concurrency)
            .prefetch(self.prefetch)
            .lease(Duration::from_millis(self.lease_ms))
            // A killed or frozen leader is replaced as fast as its jobs' leases expire.
            .leader_lease(Duration::from_millis(self.lease_ms))
            .shutdown_grace(Duration::from_millis(self.grace_ms))
            .poll_interval(Duration::from_millis(100))
            .maintenance_interval(Duration::from_millis(100))
            .state(RunLog::new(&self.log));
        match &self.periodic {
            Some(periodic) => builder.periodic(periodic.periodic(&self.queue)),
            None => builder,
        }
        .build()
    }
}

/// What the child worker binary (`haul-fault-worker`) is told to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildSpec {
    /// The storage.
    pub target: Target,
    /// The worker.
    pub worker: WorkerSpec,
}

/// A worker a fault case can kill or stop.
#[derive(Debug)]
pub enum HostedWorker {
    /// A child process running `haul-fault-worker`.
    Process(ProcessWorker),
    /// A thread with a runtime of its own.
    Thread(ThreadWorker),
}

impl HostedWorker {
    /// Starts `haul-fault-worker` (at `binary`) on `target`.
    pub fn process(binary: &Path, target: &Target, worker: &WorkerSpec) -> Self {
        let spec = ChildSpec { target: target.clone(), worker: worker.clone() };
        let spec = serde_json::to_string(&spec).expect("a spec serializes");
        let child = Command::new(binary)
            .env(CHILD_SPEC_VAR, spec)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        Self::Process(ProcessWorker(child))
    }

    /// Starts a worker over `storage` on a thread with a runtime of its own.
    pub fn thread(storage: &TestStorage, worker: &WorkerSpec) -> Self {
        Self::Thread(ThreadWorker::start(storage.clone(), worker))
    }

    /// Kills the worker without warning: SIGKILL for a process; for a thread, its
    /// runtime is dropped at once, so nothing it holds is finished, handed back or
    /// flushed — as if its process had died.
    pub async fn kill(self) {
        match self {
            Self::Process(mut process) => {
                process.0.kill().expect("SIGKILL is delivered");
                process.0.wait().expect("the killed worker is reaped");
            }
            Self::Thread(thread) => thread.crash().await,
        }
    }

    /// The worker's process id (the `pid` its [`RunLog`] lines carry); a thread worker
    /// shares the case's process and has none of its own.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Process(process) => Some(process.0.id()),
            Self::Thread(_) => None,
        }
    }

    /// Freezes the worker process (SIGSTOP), as a long garbage-collection pause, a
    /// swapped-out host or a suspended VM would: it keeps its connections and claims but
    /// runs nothing, heartbeats included, until [`HostedWorker::resume`].
    ///
    /// Only a process can be frozen; a thread worker panics here.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a worker frozen by [`HostedWorker::pause`] run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Self::Process(process) = self else {
            panic!("a worker on a thread cannot be paused; run it as a process");
        };
        let status = Command::new("kill").args([signal, &process.0.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} is delivered");
    }

    /// Asks the worker to shut down gracefully (SIGTERM for a process) and waits for it,
    /// up to `patience`. Returns whether it exited cleanly.
    pub async fn terminate(self, patience: Duration) -> bool {
        match self {
            Self::Process(mut process) => terminate_process(&mut process.0, patience).await,
            Self::Thread(thread) => thread.stop(patience).await,
        }
    }
}

async fn terminate_process(child: &mut Child, patience: Duration) -> bool {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "SIGTERM is delivered");
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().expect("the worker can be waited for") {
            return status.success();
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child worker process, killed when dropped so that a case that failed half-way
/// leaves no worker behind.
#[derive(Debug)]
pub struct ProcessWorker(Child);

impl Drop for ProcessWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker on a thread of its own with its own runtime.
#[derive(Debug)]
pub struct ThreadWorker {
    command: oneshot::Sender<ThreadCommand>,
    finished: oneshot::Receiver<bool>,
}

#[derive(Debug)]
enum ThreadCommand {
    Crash,
    Stop,
}

impl ThreadWorker {
    fn start(storage: TestStorage, spec: &WorkerSpec) -> Self {
        let worker = spec.build(storage);
        let (command, commands) = oneshot::channel();
        let (report, finished) = oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime starts");
            let (stop, stopped) = oneshot::channel::<()>();
            let run = runtime.spawn(worker.run_until(async move {
                let _ = stopped.await;
            }));
            let clean = runtime.block_on(async move {
                match commands.await {
                    Ok(ThreadCommand::Stop) => {
                        let _ = stop.send(());
                        matches!(run.await, Ok(Ok(())))
                    }
                    Ok(ThreadCommand::Crash) | Err(_) => false,
                }
            });
            // Drops every task at its next await: nothing is flushed or handed back.
            runtime.shutdown_background();
            let _ = report.send(clean);
        });
        Self { command, finished }
    }

    async fn crash(self) {
        let _ = self.command.send(ThreadCommand::Crash);
        // Wait until the runtime is gone, so the case goes on after the "death".
        let _ = self.finished.await;
    }

    async fn stop(self, patience: Duration) -> bool {
        let _ = self.command.send(ThreadCommand::Stop);
        matches!(tokio::time::timeout(patience, self.finished).await, Ok(Ok(true)))
    }
}

/// The body of the child worker binary: reads its [`ChildSpec`] from
/// [`CHILD_SPEC_VAR`], runs the worker until SIGTERM or SIGINT, and returns how it
/// ended.
pub async fn run_child_worker() -> Result<(), HarnessError> {
    let spec = std::env::var(CHILD_SPEC_VAR).map_err(|_| format!("{CHILD_SPEC_VAR} is not set"))?;
    let spec: ChildSpec = serde_json::from_str(&spec)?;
    let storage = spec.target.connect().await?;
    spec.worker.build(storage).run_until(haul::shutdown_signal()).await?;
    Ok(())
}
