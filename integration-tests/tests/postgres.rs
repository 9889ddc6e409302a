//! The conformance suite on PostgreSQL, a schema per case:
//! `cargo test -p haul-integration-tests -- postgres::`.

mod postgres {
    haul_integration_tests::conformance_suite!(haul_integration_tests::PostgresHarness::new());
}

/// The suite again with claims that resume from the last claimed job after two claims
/// from the start of a queue (every claim that takes a job counted slow, as under a
/// long transaction): every contract holds while they do, and the claim order lags by
/// at most `CLAIM_ORDER_LAG`.
mod postgres_resuming_claims {
    use haul_integration_tests::{PostgresHarness, cases, run_case};

    haul_integration_tests::conformance_suite!(PostgresHarness::resuming_claims());

    /// The order-lag case passes over its new job here (so the bound is tested where it
    /// bites), then claims it once the lag has passed.
    #[tokio::test]
    async fn a_resumed_claim_passes_over_a_new_job_for_at_most_the_order_lag() {
        run_case(PostgresHarness::resuming_claims(), "claim::resumed", &[], |storage| async move {
            let passed_over = cases::claim::passes_over_a_new_job_for_at_most_the_order_lag(&storage).await;
            assert!(passed_over, "two claims in a row counted slow make the next claim resume past the new job");
        })
        .await;
    }
}
