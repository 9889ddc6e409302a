//! Two job types claiming one kind name stop the worker at start.

#![allow(clippy::unwrap_used)]

use haul::prelude::*;

#[job(name = "charge_card")]
async fn charge_card_v1(amount: u64) -> Result<(), JobError> {
    let _ = amount;
    Ok(())
}

#[job(name = "charge_card")]
async fn charge_card_v2(cents: u64) -> Result<(), JobError> {
    let _ = cents;
    Ok(())
}

#[tokio::test]
async fn a_duplicate_kind_name_is_an_error_at_worker_start() {
    let worker = Worker::builder(MemoryStorage::new()).build();
    let error = worker.run_until(std::future::pending()).await.unwrap_err();
    match error {
        haul::Error::DuplicateKind { kind, first, second } => {
            assert_eq!(kind, "charge_card");
            assert!(first.ends_with("ChargeCardV1"), "{first}");
            assert!(second.ends_with("ChargeCardV2"), "{second}");
        }
        other => panic!("expected DuplicateKind, got {other:?}"),
    }
}
