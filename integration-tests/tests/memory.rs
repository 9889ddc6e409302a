//! The conformance suite on the in-memory backend:
//! `cargo test -p haul-integration-tests -- memory::`.

mod memory {
    haul_integration_tests::conformance_suite!(haul_integration_tests::MemoryHarness::new());
}
