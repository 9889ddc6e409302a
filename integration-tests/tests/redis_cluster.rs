//! The conformance suite on a Redis Cluster (the nodes in
//! `HAUL_TEST_REDIS_CLUSTER_URLS`):
//! `cargo test -p haul-integration-tests --features redis-cluster --test redis_cluster`.
//! Behind a feature because it needs a cluster; `.ci/run` starts one and runs it.
//! Every case uses a key prefix of its own and deletes its keys.

mod redis_cluster {
    haul_integration_tests::conformance_suite!(haul_integration_tests::RedisHarness::cluster());
}
