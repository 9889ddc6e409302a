//! haul's metrics in the Prometheus text format: a memory worker runs a few jobs (some
//! fail once, one is discarded), then the program prints what a Prometheus server would
//! scrape and exits. Run with `cargo run --example prometheus`.
//!
//! haul records through the `metrics` facade; any recorder works. Here it is
//! metrics-exporter-prometheus's, installed without its HTTP listener: a service would
//! serve `handle.render()` on its own `/metrics` route (or enable the exporter's
//! `http-listener` feature and call `PrometheusBuilder::install()`). The README's
//! *Metrics* lists every metric.

use haul::prelude::*;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Always works.
#[job(queue = "billing")]
async fn send_invoice(invoice: u32) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(u64::from(invoice % 5) * 10)).await;
    Ok(())
}

/// Fails its first attempt, then works.
#[job(queue = "billing", backoff = RetryPolicy::fixed(Duration::from_millis(100)))]
async fn sync_customer(ctx: JobContext, customer: u32) -> Result<(), String> {
    if ctx.attempt() == 1 {
        return Err(format!("the CRM timed out on customer {customer}"));
    }
    Ok(())
}

/// Fails both its attempts: the second failure discards it.
#[job(queue = "billing", max_attempts = 2, backoff = RetryPolicy::fixed(Duration::from_millis(100)))]
async fn charge_card(card: String) -> Result<(), String> {
    Err(format!("card {card} was declined"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Job durations and waits as Prometheus histograms rather than the exporter's
    // default summaries, so they add up across workers: buckets in seconds, few here to
    // keep the output short; pick the ones that fit your jobs.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &[0.01, 0.1, 1.0, 10.0, 60.0])?
        .install_recorder()?;

    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let mut ids = queue.enqueue_many((1..=8).map(SendInvoice::new)).await?;
    ids.extend(queue.enqueue_many((1..=2).map(SyncCustomer::new)).await?);
    ids.push(queue.enqueue(ChargeCard::new("4000 0000 0000 0002")).await?);

    let worker = Worker::builder(storage)
        .queues(["billing"])
        .concurrency(4)
        .maintenance_interval(Duration::from_millis(50))
        .queue_gauge_interval(Duration::from_millis(100))
        .build();
    let all_finished = {
        let (queue, handle) = (queue.clone(), handle.clone());
        async move {
            loop {
                let mut finished = 0;
                for id in &ids {
                    finished +=
                        usize::from(queue.get(*id).await.ok().flatten().is_some_and(|job| job.state.is_finished()));
                }
                // Once every job is finished, until the leader's next sample of the queue
                // gauges shows it too.
                let exposition = handle.render();
                let sampled = ["scheduled", "available", "running", "retryable"].iter().all(|state| {
                    exposition.contains(&format!("haul_queue_jobs{{queue=\"billing\",state=\"{state}\"}} 0"))
                });
                if finished == ids.len() && sampled {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    worker.run_until(all_finished).await?;

    let exposition = handle.render();
    print!("{exposition}");
    for metric in ["haul_jobs_finished_total", "haul_job_duration_seconds", "haul_queue_jobs"] {
        if !exposition.contains(metric) {
            return Err(format!("{metric} is missing from the exposition").into());
        }
    }
    Ok(())
}
