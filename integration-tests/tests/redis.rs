//! The conformance suite on the Redis backend:
//! `cargo test -p haul-integration-tests --test redis`, against `HAUL_TEST_REDIS_URL`
//! or a container. Every case uses a key prefix of its own and deletes its keys.

mod redis {
    haul_integration_tests::conformance_suite!(haul_integration_tests::RedisHarness::new());
}
