//! Private database servers that a fault case may stop, restart and cut off: a
//! PostgreSQL cluster made with `initdb` and run with `pg_ctl`, and a `redis-server`
//! with an append-only file, each in a temporary directory on a free port.
//!
//! Both are found on `PATH`, or for PostgreSQL in Debian's `/usr/lib/postgresql/<n>/bin`.
//! PostgreSQL refuses to run as root; as root the server runs as the `postgres` user
//! (through `runuser`). Dropping a server stops it and removes its directory.

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::hosts::Target;
use crate::HarnessError;

/// How long a server may take to accept connections after it starts.
const START_PATIENCE: Duration = Duration::from_secs(30);

fn free_port() -> Result<u16, HarnessError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn scratch_dir(what: &str) -> Result<PathBuf, HarnessError> {
    let dir = std::env::temp_dir().join(format!("haul-{what}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    // The server may run as another user (PostgreSQL as `postgres` when we are root).
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
    Ok(dir)
}

fn run(command: &mut Command) -> Result<(), HarnessError> {
    let output = command.stdin(Stdio::null()).output().map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .into())
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

fn postgres_bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = on_path("initdb").as_deref().and_then(Path::parent) {
        return Ok(dir.to_owned());
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin"))).collect())
        .unwrap_or_default();
    versions.retain(|dir| dir.join("initdb").is_file());
    versions.sort();
    versions.pop().ok_or_else(|| {
        "PostgreSQL's initdb and pg_ctl are needed for the fault tests (install postgresql, or put its bin \
         directory on PATH)"
            .into()
    })
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

async fn wait_until_ready<F: FnMut() -> bool>(what: &str, mut ready: F) -> Result<(), HarnessError> {
    let deadline = tokio::time::Instant::now() + START_PATIENCE;
    while !ready() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{what} did not accept connections within {START_PATIENCE:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn accepts_connections(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A PostgreSQL cluster of the case's own.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl PrivatePostgres {
    /// Creates a cluster (`initdb`) and starts it.
    pub async fn start() -> Result<Self, HarnessError> {
        let server = Self {
            bin: postgres_bin_dir()?,
            dir: scratch_dir("pg")?,
            port: free_port()?,
            as_postgres_user: running_as_root(),
        };
        let data = server.data_dir();
        run(server
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8"])
            .args(["--locale=C", "--pgdata"])
            .arg(&data))?;
        server.start_again().await?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again on the same port and data.
    pub async fn start_again(&self) -> Result<(), HarnessError> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=100",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        run(self.command("pg_ctl").arg("start").arg("--pgdata").arg(self.data_dir()).arg("--log").arg(&log).args([
            "--wait",
            "--options",
            &options,
        ]))?;
        let port = self.port;
        wait_until_ready("the private PostgreSQL", move || accepts_connections(port)).await
    }

    /// Stops the server like a crash: `pg_ctl stop --mode immediate` (no checkpoint;
    /// the next start recovers from the write-ahead log).
    pub fn crash(&self) -> Result<(), HarnessError> {
        run(self.command("pg_ctl").arg("stop").arg("--pgdata").arg(self.data_dir()).args(["--mode", "immediate"]))
    }

    /// Closes every client connection but the caller's; returns how many it closed.
    pub async fn cut_connections(&self) -> Result<u64, HarnessError> {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&self.url()).await?;
        let cut: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend') AS terminated",
        )
        .fetch_one(&mut admin)
        .await?;
        admin.close().await?;
        Ok(u64::try_from(cut).unwrap_or(0))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` of the case's own, writing every command to its append-only file
/// before replying (`appendfsync always`), so a kill loses nothing it acknowledged.
#[derive(Debug)]
pub struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    process: std::sync::Mutex<Option<Child>>,
}

impl PrivateRedis {
    /// Starts a server.
    pub async fn start() -> Result<Self, HarnessError> {
        if on_path("redis-server").is_none() {
            return Err("redis-server is needed for the fault tests (install redis-server)".into());
        }
        let server = Self { dir: scratch_dir("redis")?, port: free_port()?, process: std::sync::Mutex::new(None) };
        server.start_again().await?;
        Ok(server)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the (killed) server again on the same port, replaying its append-only file.
    pub async fn start_again(&self) -> Result<(), HarnessError> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(self.dir())
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "server.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start redis-server: {error}"))?;
        *self.process.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        let port = self.port;
        wait_until_ready("the private Redis", move || accepts_connections(port)).await
    }

    /// Kills the server (SIGKILL).
    pub fn crash(&self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.process.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Closes every client connection but the caller's (`CLIENT KILL`, for normal and
    /// pub/sub clients); returns how many it closed.
    pub async fn cut_connections(&self) -> Result<u64, HarnessError> {
        let client = redis::Client::open(self.url())?;
        let mut admin = client.get_multiplexed_async_connection().await?;
        let mut cut = 0;
        for kind in ["normal", "pubsub"] {
            let closed: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg(kind)
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut admin)
                .await?;
            cut += closed;
        }
        Ok(cut)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private server of either kind, for the cases that stop or cut it.
#[derive(Debug)]
pub enum PrivateServer {
    /// PostgreSQL.
    Postgres(PrivatePostgres),
    /// Redis.
    Redis(PrivateRedis),
}

impl PrivateServer {
    /// Starts a private PostgreSQL.
    pub async fn postgres() -> Result<Self, HarnessError> {
        Ok(Self::Postgres(PrivatePostgres::start().await?))
    }

    /// Starts a private Redis.
    pub async fn redis() -> Result<Self, HarnessError> {
        Ok(Self::Redis(PrivateRedis::start().await?))
    }

    /// A fresh namespace on this server.
    pub fn target(&self) -> Target {
        match self {
            Self::Postgres(server) => Target::postgres(server.url()),
            Self::Redis(server) => Target::redis(server.url()),
        }
    }

    /// Stops the server abruptly.
    pub fn crash(&self) -> Result<(), HarnessError> {
        match self {
            Self::Postgres(server) => server.crash(),
            Self::Redis(server) => server.crash(),
        }
    }

    /// Starts the crashed server again, on the same port and data.
    pub async fn start_again(&self) -> Result<(), HarnessError> {
        match self {
            Self::Postgres(server) => server.start_again().await,
            Self::Redis(server) => server.start_again().await,
        }
    }

    /// Closes every client connection but the caller's; returns how many.
    pub async fn cut_connections(&self) -> Result<u64, HarnessError> {
        match self {
            Self::Postgres(server) => server.cut_connections().await,
            Self::Redis(server) => server.cut_connections().await,
        }
    }
}
