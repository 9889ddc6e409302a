//! The conformance suite on PostgreSQL, a schema per case:
//! `cargo test -p haul-integration-tests -- postgres::`.

mod postgres {
    haul_integration_tests::conformance_suite!(haul_integration_tests::PostgresHarness::new());
}
