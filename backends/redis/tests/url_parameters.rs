//! The parameters of a URL reach the storage: `prefix` names the keys, the driver's
//! own parameters (`protocol`) still reach the driver, and `migrate=true` connects a
//! storage that is ready.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use haul_core::{EnqueueParams, NewJob, Storage};
use haul_redis::RedisStorage;
use serde_json::json;

/// The test server's URL with `query` added.
fn url_with(query: &str) -> String {
    let url = common::url();
    let separator = if url.contains('?') {
        "&"
    } else if url.split_once("://").is_some_and(|(_, rest)| rest.contains('/')) {
        "?"
    } else {
        "/?"
    };
    format!("{url}{separator}{query}")
}

#[tokio::test]
async fn every_parameter_of_the_url_is_taken() {
    let guard = common::KeysGuard { prefix: common::fresh_prefix() };
    let url = url_with(&format!(
        "prefix={}&response_timeout=5s&connection_timeout=2500ms&allow_eviction=false&migrate=true&protocol=resp3",
        guard.prefix
    ));
    let storage = RedisStorage::connect(&url).await.unwrap();
    assert_eq!(storage.prefix(), guard.prefix);
    assert!(!storage.is_cluster());
    storage.check_ready().await.unwrap();
    let ids = storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({})).queue("q")])).await.unwrap().ids;
    assert!(storage.get(ids[0]).await.unwrap().is_some());
    let keys = common::keys_of(&guard.prefix).await;
    assert!(keys.iter().any(|key| key.contains(&ids[0].to_string())), "the job is under the URL's prefix: {keys:?}");
}

#[tokio::test]
async fn the_urls_prefix_takes_precedence_over_the_config() {
    let guard = common::KeysGuard { prefix: common::fresh_prefix() };
    let config = haul_redis::RedisConfig::new().prefix("from_config");
    let storage = RedisStorage::connect_with(&url_with(&format!("prefix={}", guard.prefix)), config).await.unwrap();
    assert_eq!(storage.prefix(), guard.prefix);
}
