//! A death handler: when a job will not run again (its last attempt failed, or its
//! handler discarded it), post an alert. It subscribes to the worker's lifecycle events
//! and reacts to `JobEventKind::Discarded`; the other events go to a progress line.
//!
//! Run with `cargo run --example death_handler`.

use haul::prelude::*;
use haul::{JobEvent, JobEventKind};

/// Charges a card; card numbers ending in 0 are declined every time.
#[job(queue = "billing", max_attempts = 2, backoff = RetryPolicy::fixed(Duration::from_millis(100)))]
async fn charge_card(card: String, cents: u64) -> Result<(), String> {
    if card.ends_with('0') {
        return Err(format!("card {card} declined for {cents} cents"));
    }
    Ok(())
}

/// Where alerts go: a chat webhook or a pager in a real service.
fn post_alert(event: &JobEvent, reason: &str) {
    println!("ALERT job {} ({}) gave up after attempt {}: {reason}", event.id, event.kind, event.attempt);
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let cards = ["4242", "4000", "5555", "3000"];
    let ids = queue.enqueue_many(cards.iter().map(|card| ChargeCard::new(*card, 1_999))).await?;

    let worker = Worker::builder(storage).queues(["billing"]).build();
    let mut events = worker.subscribe();
    let alerts = tokio::spawn(async move {
        let mut alerts = 0;
        while let Some(event) = events.recv().await {
            match &event.what {
                JobEventKind::Discarded { reason } => {
                    post_alert(&event, reason);
                    alerts += 1;
                }
                JobEventKind::Failed { error, retry_at } => {
                    println!("job {} failed ({error}); retrying at {}", event.id, retry_at.format("%H:%M:%S%.3f"));
                }
                JobEventKind::Completed { duration } => println!("job {} completed in {duration:?}", event.id),
                _ => {}
            }
        }
        alerts
    });

    let all_finished = {
        let queue = queue.clone();
        async move {
            loop {
                let mut finished = 0;
                for id in &ids {
                    if queue.get(*id).await.ok().flatten().is_some_and(|job| job.state.is_finished()) {
                        finished += 1;
                    }
                }
                if finished == ids.len() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    worker.run_until(all_finished).await?;
    // The worker is gone: the subscription ends once every event was received.
    let alerts = alerts.await.map_err(|error| haul::Error::InvalidArgument(error.to_string().into()))?;
    println!("{alerts} alerts posted");
    if alerts != 2 {
        return Err(haul::Error::InvalidArgument(format!("expected 2 alerts, got {alerts}").into()));
    }
    Ok(())
}
