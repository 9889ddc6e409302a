//! `haul::connect` configures each backend from the URL's parameters: the jobs land
//! in the PostgreSQL schema or under the Redis prefix the URL names, `migrate=true`
//! creates the tables, and an unknown parameter is refused, naming the known ones.
//!
//! Needs `HAUL_TEST_POSTGRES_URL` and `HAUL_TEST_REDIS_URL`, as the backends' tests.

#![allow(clippy::unwrap_used)] // tests may unwrap

use haul::{
    Error, ErrorKind, NewJob, PostgresConfig, PostgresStorage, RedisConfig, RedisStorage, storage::EnqueueParams,
};
use serde_json::json;
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
    format!("haul_url_{}", &uuid::Uuid::now_v7().simple().to_string()[16..])
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
async fn a_postgres_url_names_the_schema_the_pool_and_the_migration() {
    let schema = fresh_name();
    let _cleanup = Cleanup::drop_schema(schema.clone());
    let url = with_query(&postgres_url(), &format!("schema={schema}&migrate=true&max_connections=3"));
    let storage = haul::connect(&url).await.unwrap();
    assert_eq!(storage.backend_name(), "postgres");
    let id = storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({}))])).await.unwrap().ids[0];

    // The tables are in the URL's schema, and the job is there.
    let direct = PostgresStorage::connect_with(&postgres_url(), PostgresConfig::new().schema(&schema)).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(&schema)
    .fetch_all(direct.pool())
    .await
    .unwrap();
    assert!(tables.iter().any(|table| table == "jobs"), "{tables:?}");
    let found = haul::Admin::get(&direct, id).await.unwrap().unwrap();
    assert_eq!(found.kind, "plain");
    let stored: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\".jobs")))
        .fetch_one(direct.pool())
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn a_postgresql_url_with_an_unknown_parameter_is_refused_listing_the_known_ones() {
    let Err(error) = haul::connect(&with_query(&postgres_url(), "schema=a&pool_size=3")).await else {
        panic!("an unknown parameter is refused")
    };
    let Error::InvalidArgument(message) = &error else { panic!("{error:?}") };
    for expected in ["`pool_size`", "schema", "max_connections", "acquire_timeout", "migrate", "sslmode"] {
        assert!(message.contains(expected), "{expected} missing from {message}");
    }
}

#[tokio::test]
async fn a_redis_url_names_the_prefix() {
    let prefix = fresh_name();
    let _cleanup = Cleanup::purge_prefix(prefix.clone());
    let url = with_query(&redis_url(), &format!("prefix={prefix}&migrate=true&response_timeout=5s"));
    let storage = haul::connect(&url).await.unwrap();
    assert_eq!(storage.backend_name(), "redis");
    let id = storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({}))])).await.unwrap().ids[0];

    // The job is under the URL's prefix, and not under the default one.
    let direct = RedisStorage::connect_with(&redis_url(), RedisConfig::new().prefix(&prefix)).await.unwrap();
    assert_eq!(haul::Admin::get(&direct, id).await.unwrap().map(|job| job.kind), Some("plain".to_owned()));
    let default_prefix = RedisStorage::connect(&redis_url()).await.unwrap();
    assert!(haul::Admin::get(&default_prefix, id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_redis_url_with_an_unknown_parameter_is_refused_listing_the_known_ones() {
    let Err(error) = haul::connect(&with_query(&redis_url(), "prefix=a&timeout=5s")).await else {
        panic!("an unknown parameter is refused")
    };
    let Error::InvalidArgument(message) = &error else { panic!("{error:?}") };
    for expected in ["`timeout`", "prefix", "response_timeout", "connection_timeout", "allow_eviction", "protocol"] {
        assert!(message.contains(expected), "{expected} missing from {message}");
    }
}

#[tokio::test]
async fn a_redis_cluster_url_goes_to_the_cluster_connection() {
    // Nothing listens on these ports: the cluster client's own error, naming the nodes.
    let ports: Vec<u16> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let url = format!("redis+cluster://127.0.0.1:{},127.0.0.1:{}/?prefix=p", ports[0], ports[1]);
    let Err(error) = haul::connect(&url).await else { panic!("no cluster listens there") };
    assert_eq!(error.kind(), Some(ErrorKind::Connection), "{error:?}");
    assert!(error.to_string().contains("(Redis Cluster)"), "{error}");
}

#[tokio::test]
async fn a_memory_url_takes_only_migrate() {
    let storage = haul::connect("memory://?migrate=true").await.unwrap();
    assert_eq!(storage.backend_name(), "memory");
    let Err(error) = haul::connect("memory://?schema=x").await else { panic!("memory:// takes no schema") };
    assert!(matches!(&error, Error::InvalidArgument(message) if message.contains("`schema`")), "{error:?}");
}
