//! Periodic jobs on the in-memory backend: a cron schedule with seconds (every 2 s), an
//! interval (every 3 s) and a nightly cron in a named time zone.
//!
//! The worker leads (it is alone), so it enqueues each schedule's job at each tick and
//! runs it. The program prints the next run times, waits until the two fast schedules
//! have run three times each, then prints each schedule's stored record and checks that
//! no tick was enqueued twice. Run with `cargo run --example periodic`.
//!
//! On PostgreSQL or Redis nothing changes but the storage: every worker declares the
//! same schedules, and the leader alone enqueues them, once per tick.

use std::collections::HashSet;

use haul::prelude::*;
use haul::{Missed, periodic::PeriodicScheduler, storage::Timestamp};

/// Pretends to send a heartbeat to a monitoring service.
#[job(queue = "periodic")]
async fn ping_monitor(service: String) -> Result<(), JobError> {
    println!("  ping {service}");
    Ok(())
}

/// Pretends to recompute cached totals.
#[job(queue = "periodic")]
async fn refresh_totals() -> Result<(), JobError> {
    println!("  refresh totals");
    Ok(())
}

/// Pretends to build the nightly report.
#[job(queue = "periodic")]
async fn nightly_report() -> Result<(), JobError> {
    Ok(())
}

/// The schedules every worker of the application declares.
fn schedules() -> haul::Result<Vec<Periodic>> {
    Ok(vec![
        // Six fields: seconds first. Every 2 seconds.
        Periodic::new("ping-monitor", Schedule::cron("*/2 * * * * *")?, PingMonitor::new("billing-api"))?,
        // Every 3 seconds, at multiples of 3 s since the Unix epoch.
        Periodic::new("refresh-totals", Schedule::every(Duration::from_secs(3))?, RefreshTotals {})?.priority(-1),
        // 03:00 in Paris; a night without a live leader is skipped rather than caught up.
        Periodic::new("nightly-report", Schedule::cron_in("0 3 * * *", "Europe/Paris")?, NightlyReport {})?
            .missed(Missed::Skip),
    ])
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());

    let scheduler = PeriodicScheduler::new(schedules()?, Duration::from_secs(15))?;
    println!("next run times:");
    for (name, ticks) in scheduler.upcoming(chrono::Utc::now(), 3) {
        let ticks: Vec<String> = ticks.iter().map(|tick| tick.format("%Y-%m-%d %H:%M:%S UTC").to_string()).collect();
        println!("  {name:<15} {}", ticks.join(", "));
    }

    let mut builder = Worker::builder(storage.clone()).queues(["periodic"]).leader_lease(Duration::from_secs(2));
    for periodic in schedules()? {
        builder = builder.periodic(periodic);
    }
    let worker = builder.build();

    println!("running until each fast schedule has run three times:");
    let until_three_each = {
        let queue = queue.clone();
        async move {
            while !(completed(&queue, "ping_monitor").await >= 3 && completed(&queue, "refresh_totals").await >= 3) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), worker.run_until(until_three_each))
        .await
        .map_err(|_| haul::Error::InvalidArgument("the schedules did not run three times within 30 s".into()))??;

    println!("stored schedule records:");
    for record in storage.list_periodic().await? {
        let show = |tick: Option<Timestamp>| tick.map_or("-".to_owned(), |tick| tick.format("%H:%M:%S").to_string());
        println!(
            "  {:<15} {:<36} last tick {}  next tick {}",
            record.name,
            record.spec,
            show(record.last_tick),
            show(record.next_tick)
        );
    }

    let jobs = queue.list(ListParams::new().limit(1000)).await?;
    let keys: Vec<&str> = jobs.iter().filter_map(|job| job.unique_key.as_deref()).collect();
    let distinct: HashSet<&str> = keys.iter().copied().collect();
    println!("{} periodic jobs stored, {} distinct ticks", keys.len(), distinct.len());
    if keys.len() != distinct.len() {
        return Err(haul::Error::InvalidArgument("a tick was enqueued twice".into()));
    }
    Ok(())
}

async fn completed(queue: &Queue, kind: &str) -> usize {
    let params = ListParams::new().state(JobState::Completed).limit(1000);
    queue.list(params).await.map_or(0, |jobs| jobs.iter().filter(|job| job.kind == kind).count())
}

#[cfg(test)]
mod tests {
    use haul::testing::TestJobs;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a valid time")
    }

    #[tokio::test]
    async fn the_nightly_report_is_enqueued_once_at_three_in_paris() -> haul::Result<()> {
        let jobs = TestJobs::new(MemoryStorage::new());
        let scheduler = PeriodicScheduler::new(schedules()?, Duration::from_secs(15))?;
        let storage = jobs.storage();
        jobs.set_now(at("2026-07-01T00:30:00Z"));
        let first = scheduler.run_due(storage.as_ref(), Some(jobs.now())).await?;
        assert_eq!(first.first_seen.len(), 3, "new schedules are recorded, not enqueued");
        jobs.set_now(at("2026-07-01T01:00:01Z")); // 03:00:01 in Paris (summer time)
        scheduler.run_due(storage.as_ref(), Some(jobs.now())).await?;
        scheduler.run_due(storage.as_ref(), Some(jobs.now())).await?;
        assert_eq!(jobs.all_enqueued::<NightlyReport>().await?.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_night_without_a_leader_is_skipped() -> haul::Result<()> {
        let jobs = TestJobs::new(MemoryStorage::new());
        let scheduler = PeriodicScheduler::new(schedules()?, Duration::from_secs(15))?;
        let storage = jobs.storage();
        jobs.set_now(at("2026-07-01T00:30:00Z"));
        scheduler.run_due(storage.as_ref(), Some(jobs.now())).await?;
        jobs.set_now(at("2026-07-01T06:00:00Z")); // the leader came back three hours late
        let due = scheduler.run_due(storage.as_ref(), Some(jobs.now())).await?;
        assert_eq!(due.skipped.iter().filter(|(name, _)| name == "nightly-report").count(), 1);
        jobs.refute_enqueued::<NightlyReport>(|_| true).await;
        Ok(())
    }
}
