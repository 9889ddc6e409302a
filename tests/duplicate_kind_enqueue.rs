//! A producer refuses to enqueue a job whose kind name two job types register: a worker
//! of this binary could not tell which one to run. (Its own test binary: the duplicate
//! is registered for the whole binary.)

#![allow(clippy::unwrap_used)]

use haul::prelude::*;

#[job(name = "refund")]
async fn refund_v1(amount: u64) -> Result<(), JobError> {
    let _ = amount;
    Ok(())
}

#[job(name = "refund")]
async fn refund_v2(cents: u64) -> Result<(), JobError> {
    let _ = cents;
    Ok(())
}

#[job]
async fn receipt(order: u64) -> Result<(), JobError> {
    let _ = order;
    Ok(())
}

#[tokio::test]
async fn enqueueing_a_kind_registered_twice_is_refused_naming_both_types_and_the_fix() {
    let queue = Queue::new(MemoryStorage::new());
    let error = queue.enqueue(RefundV1::new(5_u64)).await.unwrap_err();
    let message = error.to_string();
    match error {
        haul::Error::DuplicateKind { kind, first, second } => {
            assert_eq!(kind, "refund");
            assert!(first.ends_with("RefundV1") && second.ends_with("RefundV2"), "{first}, {second}");
        }
        other => panic!("expected DuplicateKind, got {other:?}"),
    }
    assert!(
        message.contains("is registered twice") && message.contains(r#"give one of them `name = "..."`"#),
        "{message}"
    );

    let error = queue.enqueue_many([RefundV2::new(7_u64)]).await.unwrap_err();
    assert!(matches!(error, haul::Error::DuplicateKind { .. }), "{error:?}");
    assert!(queue.list(ListParams::new()).await.unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_kind_registered_once_is_enqueued_as_usual() {
    let queue = Queue::new(MemoryStorage::new());
    let id = queue.enqueue(Receipt::new(1_u64)).await.unwrap();
    assert_eq!(queue.get(id).await.unwrap().unwrap().kind, "receipt");
}
