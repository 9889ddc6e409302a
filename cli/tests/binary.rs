//! The `haul` binary against PostgreSQL and Redis, each test in a schema or key prefix
//! of its own: migrate, list, a confirmed and a declined bulk retry, queues.
//!
//! Needs `HAUL_TEST_POSTGRES_URL` and `HAUL_TEST_REDIS_URL`, as the backends' tests: a
//! missing one fails the test with how to set it, never passes silently.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use common::{discarded, enqueue, get, job, json_lines};
use haul::{JobId, JobState, RedisConfig, RedisStorage, Storage};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The PostgreSQL server under test: `HAUL_TEST_POSTGRES_URL`.
fn postgres_url() -> String {
    std::env::var("HAUL_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set HAUL_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run these tests")
    })
}

/// The Redis server under test: `HAUL_TEST_REDIS_URL`.
fn redis_url() -> String {
    std::env::var("HAUL_TEST_REDIS_URL")
        .unwrap_or_else(|_| panic!("set HAUL_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) to run these tests"))
}

/// `url` with `query` added.
fn with_query(url: &str, query: &str) -> String {
    let separator = if url.contains('?') {
        "&"
    } else if url.split_once("://").is_some_and(|(_, rest)| rest.contains('/')) {
        "?"
    } else {
        "/?"
    };
    format!("{url}{separator}{query}")
}

/// A schema or prefix name no other test uses.
fn fresh_name() -> String {
    format!("haul_cli_{}", &uuid::Uuid::now_v7().simple().to_string()[16..])
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

/// Runs `haul <args>` with `HAUL_URL` set to `url` (and no `--url`), `input` on its
/// standard input.
fn haul_env(url: &str, args: &[&str], input: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_haul"));
    command.args(args).env("HAUL_URL", url);
    spawn(command, input)
}

/// Runs `haul --url <url> <args>`, `input` on its standard input.
fn haul(url: &str, args: &[&str], input: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_haul"));
    command.arg("--url").arg(url).args(args).env_remove("HAUL_URL");
    spawn(command, input)
}

fn spawn(mut command: Command, input: &str) -> Run {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("haul starts");
    child.stdin.take().expect("a piped stdin").write_all(input.as_bytes()).expect("the input is written");
    let output = child.wait_with_output().expect("haul ends");
    Run {
        code: output.status.code(),
        out: String::from_utf8(output.stdout).expect("UTF-8 output"),
        err: String::from_utf8(output.stderr).expect("UTF-8 errors"),
    }
}

/// The states of `ids`, in their order.
async fn states(storage: &std::sync::Arc<dyn Storage>, ids: &[JobId]) -> Vec<JobState> {
    let mut states = Vec::new();
    for &id in ids {
        states.push(get(storage, id).await.state);
    }
    states
}

/// The command-line session both backends go through once migrated.
async fn operate(url: &str) {
    let run = haul(url, &["migrate"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.out.contains("the storage is ready"), "{run:?}");
    assert!(!run.out.contains(url) && !run.err.contains(url), "the URL is never printed: {run:?}");

    let storage = haul::connect(url).await.expect("the storage opens");
    let mail = discarded(&storage, "mail", 3, "smtp refused").await;
    let other = discarded(&storage, "other", 1, "boom").await;

    let run = haul(url, &["jobs", "list", "--state", "discarded"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.out.lines().count(), 5, "a header and four jobs: {run:?}");
    for id in mail.iter().chain(&other) {
        assert!(run.out.contains(&id.to_string()), "{id} listed: {run:?}");
    }
    assert!(run.out.contains("smtp refused"), "{run:?}");
    let run = haul(url, &["jobs", "list", "--state", "discarded", "--queue", "mail", "--json"], "");
    let listed: Vec<String> = json_lines(&run.out).iter().map(|job| job["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed, mail.iter().map(ToString::to_string).collect::<Vec<_>>());

    let run = haul(url, &["jobs", "retry", "--state", "discarded", "--queue", "mail"], "n\n");
    assert_eq!(run.code, Some(5), "declined: {run:?}");
    assert!(run.err.contains("retry 3 jobs matching --queue mail --state discarded? [y/N]"), "{run:?}");
    assert_eq!(states(&storage, &mail).await, [JobState::Discarded; 3], "nothing changed");

    let run = haul(url, &["jobs", "retry", "--state", "discarded", "--queue", "mail", "--yes"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.out, "retried 3 jobs\n");
    assert_eq!(states(&storage, &mail).await, [JobState::Available; 3]);
    assert_eq!(states(&storage, &other).await, [JobState::Discarded], "another queue is left alone");

    let run = haul_env(url, &["queues"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let row = |queue: &str| -> Vec<String> {
        let line = run.out.lines().find(|line| line.starts_with(queue)).unwrap_or_else(|| panic!("{queue}: {run:?}"));
        line.split_whitespace().take(10).map(str::to_owned).collect()
    };
    // queue, paused, limit, scheduled, available, running, retryable, completed, discarded, cancelled
    assert_eq!(row("mail"), ["mail", "no", "-", "0", "3", "0", "0", "0", "0", "0"]);
    assert_eq!(row("other"), ["other", "no", "-", "0", "0", "0", "0", "0", "1", "0"]);

    limit(url, &storage).await;

    let run = haul(url, &["jobs", "show", &JobId::new().to_string()], "");
    assert_eq!(run.code, Some(3), "{run:?}");
}

/// Limits set one flag at a time (each keeps the others), shown by `queues` and `stats`;
/// a job's limit key shown by `jobs show`. `mail` holds three available jobs.
async fn limit(url: &str, storage: &std::sync::Arc<dyn Storage>) {
    let run = haul(url, &["queues", "limit", "mail", "--key-concurrency", "1"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let run = haul(url, &["queues", "limit", "mail", "--concurrency", "4", "--json"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let expected = serde_json::json!({
        "queue": "mail",
        "concurrency_limit": 4,
        "key_concurrency_limit": 1,
        "rate_limit": null,
        "key_rate_limit": null,
    });
    assert_eq!(json_lines(&run.out), [expected], "the limit per key is kept");
    let run = haul(url, &["queues", "limit", "mail", "--rate", "100/1m"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let run = haul(url, &["queues", "limit", "mail", "--key-rate", "2/1500ms", "--json"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let expected = serde_json::json!({
        "queue": "mail",
        "concurrency_limit": 4,
        "key_concurrency_limit": 1,
        "rate_limit": { "starts": 100, "period": 60.0 },
        "key_rate_limit": { "starts": 2, "period": 1.5 },
    });
    assert_eq!(json_lines(&run.out), [expected], "every stored limit is kept");
    let run = haul(url, &["queues", "limit", "mail", "--rate", "1/0s"], "");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.err.contains("from 1ms to 31 days"), "{run:?}");

    let run = haul(url, &["queues"], "");
    let mail = run.out.lines().find(|line| line.starts_with("mail")).unwrap_or_else(|| panic!("mail: {run:?}"));
    // queue, paused, the limits, scheduled, available
    assert_eq!(
        mail.split_whitespace().take(8).collect::<Vec<_>>(),
        ["mail", "no", "4,", "1/key,", "100/1m,", "2/1500ms/key", "0", "3"]
    );
    let run = haul(url, &["stats", "--json"], "");
    let stats = json_lines(&run.out);
    let mail = stats.iter().find(|line| line["queue"] == "mail").unwrap_or_else(|| panic!("mail: {run:?}"));
    assert_eq!((mail["concurrency_limit"].as_u64(), mail["key_concurrency_limit"].as_u64()), (Some(4), Some(1)));
    assert_eq!(mail["rate_limit"], serde_json::json!({ "starts": 100, "period": 60.0 }), "{run:?}");
    assert_eq!(mail["key_rate_limit"], serde_json::json!({ "starts": 2, "period": 1.5 }), "{run:?}");
    let run = haul(url, &["queues", "limit", "mail", "--rate", "none", "--key-rate", "none"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let limits = storage.queue_limits().await.unwrap();
    assert_eq!(limits[0].limits, haul::QueueLimits::new().concurrency(4).key_concurrency(1), "the rates are removed");

    let keyed = enqueue(storage, job("keyed").limit_key("customer-42")).await;
    let run = haul(url, &["jobs", "show", &keyed.to_string()], "");
    assert!(run.out.lines().any(|line| line.split_whitespace().eq(["limit", "key", "customer-42"])), "{run:?}");
    let run = haul(url, &["jobs", "show", &keyed.to_string(), "--json"], "");
    assert_eq!(json_lines(&run.out)[0]["limit_key"], "customer-42", "{run:?}");

    let run = haul(url, &["queues", "limit", "mail", "--unlimited"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(storage.queue_limits().await.unwrap().is_empty(), "every limit is removed");
}

/// Runs `cleanup` when dropped, on a runtime of its own (Drop cannot await, and may
/// run during a panic).
struct Cleanup(Option<Box<dyn FnOnce() + Send>>);

impl Cleanup {
    fn drop_schema(schema: String) -> Self {
        Self::on_drop(move || {
            run(async move {
                let mut conn = PgConnection::connect(&postgres_url()).await?;
                sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                Ok(())
            })
        })
    }

    fn purge_prefix(prefix: String) -> Self {
        Self::on_drop(move || {
            run(async move {
                RedisStorage::connect_with(&redis_url(), RedisConfig::new().prefix(&prefix)).await?.purge().await?;
                Ok(())
            })
        })
    }

    fn on_drop(cleanup: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(cleanup)))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(cleanup) = self.0.take() {
            let _ = std::thread::spawn(cleanup).join();
        }
    }
}

/// Runs `work` on a runtime of its own, reporting a failure on stderr.
fn run(work: impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>) {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Into::into)
        .and_then(|runtime| runtime.block_on(work));
    if let Err(error) = outcome {
        eprintln!("cleanup failed: {error}");
    }
}

#[tokio::test]
async fn the_binary_operates_a_postgres_storage() {
    let schema = fresh_name();
    let _cleanup = Cleanup::drop_schema(schema.clone());
    let url = with_query(&postgres_url(), &format!("schema={schema}"));

    // Before the migration, every command but migrate says how to fix it.
    let run = haul(&url, &["queues"], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.err.contains(&format!("schema `{schema}` does not exist")), "{run:?}");
    assert!(run.err.contains("hint: from the command line: haul migrate"), "{run:?}");

    operate(&url).await;
}

#[tokio::test]
async fn the_binary_operates_a_redis_storage() {
    let prefix = fresh_name();
    let _cleanup = Cleanup::purge_prefix(prefix.clone());
    operate(&with_query(&redis_url(), &format!("prefix={prefix}"))).await;
}

#[test]
fn the_binary_without_a_url_exits_2_saying_how_to_give_one() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_haul"));
    command.arg("queues").env_remove("HAUL_URL");
    let run = spawn(command, "");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.err.contains("pass --url URL or set HAUL_URL"), "{run:?}");
}

#[test]
fn the_binary_refuses_a_bad_command_line_with_2() {
    let run = haul("memory://", &["jobs", "list", "--state", "done"], "");
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.err.contains("unknown job state `done`"), "{run:?}");
}
