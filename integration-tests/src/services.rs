//! Provisioning of the services (PostgreSQL, Redis) the suite runs against.
//!
//! [`postgres_url`] and [`redis_url`] give the URL of a server; isolating the tests from
//! each other on it (a schema or a key prefix per test) is up to the caller. A server comes
//! from, in this order:
//!
//! 1. the environment: [`POSTGRES_URL_VAR`] (`HAUL_TEST_POSTGRES_URL`) and [`REDIS_URL_VAR`]
//!    (`HAUL_TEST_REDIS_URL`), taken as they are;
//! 2. otherwise a container started by testcontainers from [`POSTGRES_IMAGE`] or
//!    [`REDIS_IMAGE`], once per test process and shared by all of its tests. Where no
//!    registry is reachable, `integration-tests/images/build.sh` builds local images under
//!    those names.
//!
//! When neither works, the test fails with a message that says how to provide a server
//! (it never passes or skips silently, whether or not `HAUL_REQUIRE_SERVICES` is set).
//!
//! # One container per test process
//!
//! Every `#[tokio::test]` runs on its own runtime, which ends with the test, but the shared
//! containers must outlive any one test. So they are started on a runtime of this module's
//! own, which lives as long as the process, kept in statics, and reached by plain TCP
//! afterwards.
//!
//! # No container left behind
//!
//! Statics are never dropped, so testcontainers' removal on drop never runs for the shared
//! containers. Instead, before its first container starts, the test process starts a
//! *reaper*: a small `sh` child in a process group of its own (so a Ctrl-C at the terminal
//! does not reach it) that ignores SIGHUP, SIGINT and SIGTERM, reads its stdin until end of
//! file, then removes every container labelled with this process's [`RUN_LABEL`]. Only the
//! test process holds the other end of that pipe, and it never closes it: the kernel does
//! when the process ends, however it ends (normal exit, panic, SIGKILL), also while a
//! container is still starting. The reaper needs the `docker` command line; as a second line
//! of defence every container is also labelled [`PID_LABEL`]` = <pid of the test process>`,
//! and `.ci/run` removes the labelled containers whose process is gone.

use std::{
    env,
    error::Error as StdError,
    future::Future,
    process::Child,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use testcontainers::{ContainerAsync, Image, ImageExt, TestcontainersError, runners::AsyncRunner};
use testcontainers_modules::{
    postgres::Postgres,
    redis::{REDIS_PORT, Redis},
};
use tokio::{runtime::Runtime, sync::OnceCell};

/// The environment variable that names a PostgreSQL server to use instead of a container.
pub const POSTGRES_URL_VAR: &str = "HAUL_TEST_POSTGRES_URL";

/// The environment variable that names a Redis server to use instead of a container.
pub const REDIS_URL_VAR: &str = "HAUL_TEST_REDIS_URL";

/// The image (name, tag) of the PostgreSQL container; `integration-tests/images/build.sh`
/// builds a local one under this name.
pub const POSTGRES_IMAGE: (&str, &str) = ("postgres", "15-bookworm");

/// The image (name, tag) of the Redis container; `integration-tests/images/build.sh` builds
/// a local one under this name.
pub const REDIS_IMAGE: (&str, &str) = ("redis", "7.0-bookworm");

/// A label every container started here carries; its value is the id of the test process
/// that started it, so that leftovers of processes that are gone can be found and removed
/// (`docker ps --all --filter label=org.haul.test.pid`).
pub const PID_LABEL: &str = "org.haul.test.pid";

/// A label every container started here carries; its value is unique to the test process
/// (its pid and start time), and the process's reaper removes the containers that have it.
pub const RUN_LABEL: &str = "org.haul.test.run";

/// How long a container may take to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How to provide a server, appended to every failure.
const HOW_TO_PROVIDE: &str = "to run these tests, either point them at a server you run \
     (HAUL_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test, \
     HAUL_TEST_REDIS_URL=redis://127.0.0.1:6379), or start a Docker engine (e.g. `dockerd &`) \
     so that testcontainers can start one; where no container registry is reachable, build \
     the images first with integration-tests/images/build.sh (as root); .ci/run does all this";

/// Why no server could be provided.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The environment variable is set but is not valid unicode.
    #[error("{var} is set but is not valid unicode")]
    NotUnicode {
        /// The environment variable.
        var: &'static str,
    },
    /// The runtime that owns the containers could not be started.
    #[error("could not start the runtime that owns the test containers")]
    Runtime(#[source] Arc<std::io::Error>),
    /// testcontainers could not start the container (no Docker engine, no image, not ready
    /// in time…).
    #[error("{var} is not set and no {service} container could be started from {image}")]
    Container {
        /// The service (`PostgreSQL` or `Redis`).
        service: &'static str,
        /// The environment variable that would have named a server.
        var: &'static str,
        /// The image, as `name:tag`.
        image: String,
        /// What testcontainers reported.
        #[source]
        source: Arc<TestcontainersError>,
    },
    /// Starting the container panicked.
    #[error("starting the {service} container panicked")]
    Panicked {
        /// The service (`PostgreSQL` or `Redis`).
        service: &'static str,
    },
}

impl ServiceError {
    /// The whole message for a failing test: this error, its causes, and how to provide a
    /// server.
    pub fn report(&self) -> String {
        let mut message = self.to_string();
        let mut source = self.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message.push_str("\n\n");
        message.push_str(HOW_TO_PROVIDE);
        message
    }
}

/// The URL of a PostgreSQL server for the tests (a superuser on a database of its own,
/// `postgres://…`).
///
/// # Panics
///
/// When no server can be provided, with a message that says how to provide one
/// ([`try_postgres_url`] returns the error instead).
pub async fn postgres_url() -> String {
    match try_postgres_url().await {
        Ok(url) => url,
        Err(err) => panic!("no PostgreSQL server for the tests: {}", err.report()),
    }
}

/// The URL of a Redis server for the tests (`redis://…`).
///
/// # Panics
///
/// When no server can be provided, with a message that says how to provide one
/// ([`try_redis_url`] returns the error instead).
pub async fn redis_url() -> String {
    match try_redis_url().await {
        Ok(url) => url,
        Err(err) => panic!("no Redis server for the tests: {}", err.report()),
    }
}

/// The URL of a PostgreSQL server for the tests: [`POSTGRES_URL_VAR`] if set, else the
/// container shared by this test process (started on first use).
pub async fn try_postgres_url() -> Result<String, ServiceError> {
    static SHARED: OnceCell<Result<Shared<Postgres>, ServiceError>> = OnceCell::const_new();

    if let Some(url) = env_url(POSTGRES_URL_VAR)? {
        return Ok(url);
    }
    let shared = SHARED
        .get_or_init(|| {
            // The module's defaults: user, password and database `postgres`, fsync off.
            let request = Postgres::default().with_tag(POSTGRES_IMAGE.1);
            start_shared("PostgreSQL", POSTGRES_URL_VAR, request, 5432, |host, port| {
                format!("postgres://postgres:postgres@{host}:{port}/postgres")
            })
        })
        .await;
    shared.as_ref().map(|shared| shared.url.clone()).map_err(Clone::clone)
}

/// The URL of a Redis server for the tests: [`REDIS_URL_VAR`] if set, else the container
/// shared by this test process (started on first use).
pub async fn try_redis_url() -> Result<String, ServiceError> {
    static SHARED: OnceCell<Result<Shared<Redis>, ServiceError>> = OnceCell::const_new();

    if let Some(url) = env_url(REDIS_URL_VAR)? {
        return Ok(url);
    }
    let shared = SHARED
        .get_or_init(|| {
            let request = Redis::default().with_tag(REDIS_IMAGE.1);
            start_shared("Redis", REDIS_URL_VAR, request, REDIS_PORT, |host, port| format!("redis://{host}:{port}"))
        })
        .await;
    shared.as_ref().map(|shared| shared.url.clone()).map_err(Clone::clone)
}

/// A container shared by every test of the process; kept in a static, so never dropped.
struct Shared<I: Image> {
    url: String,
    _container: ContainerAsync<I>,
}

/// The value of `var`, or `None` when it is unset or empty.
fn env_url(var: &'static str) -> Result<Option<String>, ServiceError> {
    match env::var(var) {
        Ok(url) if url.trim().is_empty() => Ok(None),
        Ok(url) => Ok(Some(url)),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => Err(ServiceError::NotUnicode { var }),
    }
}

/// The runtime that owns the shared containers. It lives as long as the process: the
/// containers' Docker client and their log readers run on it, and it must not end with the
/// test that happened to start a container.
fn service_runtime() -> Result<&'static Runtime, ServiceError> {
    static RUNTIME: OnceLock<Result<Runtime, Arc<std::io::Error>>> = OnceLock::new();

    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("haul-test-services")
                .enable_all()
                .build()
                .map_err(Arc::new)
        })
        .as_ref()
        .map_err(|err| ServiceError::Runtime(Arc::clone(err)))
}

/// Starts `request` on the service runtime and waits for it from the caller's runtime.
fn start_shared<I>(
    service: &'static str,
    var: &'static str,
    request: testcontainers::ContainerRequest<I>,
    port: u16,
    url: impl FnOnce(&str, u16) -> String + Send + 'static,
) -> impl Future<Output = Result<Shared<I>, ServiceError>>
where
    I: Image + Send + Sync + 'static,
{
    let image = request.descriptor();
    let container_error =
        move |source| ServiceError::Container { service, var, image: image.clone(), source: Arc::new(source) };
    let start = async move {
        let container = request
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_label(RUN_LABEL, reaper().run.as_str())
            .with_startup_timeout(STARTUP_TIMEOUT)
            .start()
            .await
            .map_err(&container_error)?;
        let host = container_host(&container).await.map_err(&container_error)?;
        let port = container.get_host_port_ipv4(port).await.map_err(&container_error)?;
        Ok(Shared { url: url(&host, port), _container: container })
    };
    async move { service_runtime()?.spawn(start).await.map_err(|_| ServiceError::Panicked { service })? }
}

/// The host to reach a container's mapped ports on: the Docker host when it is remote,
/// else 127.0.0.1.
///
/// (testcontainers' own answer, when the tests themselves run in a container and talk to
/// the engine through its socket, is the bridge's gateway; the ports are mapped on the
/// loopback interface too, and the tests' traffic stays there.)
async fn container_host<I: Image>(container: &ContainerAsync<I>) -> Result<String, TestcontainersError> {
    let remote = env::var("DOCKER_HOST").is_ok_and(|host| !host.is_empty() && !host.starts_with("unix://"));
    if remote { Ok(container.get_host().await?.to_string()) } else { Ok("127.0.0.1".to_owned()) }
}

/// The reaper of this process (see the module's documentation).
struct Reaper {
    /// The value of [`RUN_LABEL`] on this process's containers.
    run: String,
    /// Never dropped, so its stdin stays open until the process ends.
    _child: Option<Child>,
}

/// This process's reaper, started on first use.
fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();

    REAPER.get_or_init(|| {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
        let run = format!("{}-{started}", std::process::id());
        let child = spawn_reaper(&format!("label={RUN_LABEL}={run}"));
        Reaper { run, _child: child }
    })
}

/// The command of a reaper: ignore the signals a terminal or a test runner sends to the
/// group, wait for end of file on stdin (the end of the test process), remove the containers
/// that match the filter `$1`.
#[cfg(unix)]
const REAPER_SCRIPT: &str = r#"trap '' HUP INT TERM
cat >/dev/null
ids=$(docker ps --all --quiet --filter "$1") && [ -n "$ids" ] && exec docker rm --force --volumes $ids"#;

/// Starts a reaper for the containers that match `filter`. `None` when it could not be
/// started: the containers are then left for `.ci/run`, or for
/// `docker rm -f $(docker ps -aq --filter label=org.haul.test.pid)`.
#[cfg(unix)]
fn spawn_reaper(filter: &str) -> Option<Child> {
    use std::{
        os::unix::process::CommandExt,
        process::{Command, Stdio},
    };

    let spawned = Command::new("sh")
        .args(["-c", REAPER_SCRIPT, "haul-test-reaper", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(child) => Some(child),
        Err(err) => {
            eprintln!(
                "warning: could not start the process that removes this test process's containers when it \
                 ends ({err}); remove them yourself with `docker rm -f $(docker ps -aq --filter {filter})`"
            );
            None
        }
    }
}

/// Without a Unix shell there is no reaper; the containers are left for `.ci/run`.
#[cfg(not(unix))]
fn spawn_reaper(_filter: &str) -> Option<Child> {
    None
}
