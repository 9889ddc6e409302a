//! Smoke tests of the service provisioning (`haul_integration_tests::services`): each
//! server the suite runs against answers, whether it comes from `HAUL_TEST_*_URL` or from a
//! container. Without a server these tests fail with a message that says how to provide one.

#![allow(clippy::unwrap_used)] // tests may unwrap

use haul_integration_tests::services::{postgres_url, redis_url};
use sqlx::Connection as _;

#[tokio::test]
async fn postgres_service_accepts_connections() {
    let url = postgres_url().await;
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("could not connect to the PostgreSQL server at {url}: {err}"));

    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(one, 1);

    conn.close().await.unwrap();
}

#[tokio::test]
async fn redis_service_answers_ping() {
    let url = redis_url().await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("could not connect to the Redis server at {url}: {err}"));

    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// The servers outlive the test (and so the runtime) that first asked for them: the next
/// test, on a runtime of its own, gets the same server and can still reach it.
#[test]
fn a_server_outlives_the_runtime_that_asked_for_it() {
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let first = runtime().block_on(async { (postgres_url().await, redis_url().await) });
    let second = runtime().block_on(async {
        let (postgres, redis) = (postgres_url().await, redis_url().await);
        let mut conn = sqlx::PgConnection::connect(&postgres).await.unwrap();
        sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
        let mut conn = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        (postgres, redis)
    });
    assert_eq!(first, second);
}
