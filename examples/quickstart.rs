//! haul in one file: three kinds of job on the in-memory backend.
//!
//! - 1,000 image resizes enqueued in one batch,
//! - a call to a flaky API that fails twice and succeeds on its third attempt,
//! - a reminder scheduled 3 seconds ahead,
//! - a report scheduled for later and cancelled before it runs.
//!
//! A worker with 32 slots runs them, a progress line shows the counts, and a table
//! accounts for every job at the end. Run with `cargo run --example quickstart`.
//!
//! Only the storage line is backend-specific: `examples/postgres.rs` runs the same
//! `run` on PostgreSQL.

use std::time::Instant;

use haul::prelude::*;

/// Pretends to resize an image.
#[job(queue = "images")]
async fn resize_image(image_id: u32, width: u32) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(u64::from(image_id % 7) + u64::from(width % 3))).await;
    Ok(())
}

/// A remote API that answers 503 twice before it works.
#[job(max_attempts = 5, backoff = RetryPolicy::fixed(Duration::from_millis(500)))]
async fn call_flaky_api(ctx: JobContext, endpoint: String) -> Result<(), String> {
    if ctx.attempt() < 3 {
        return Err(format!("{endpoint} answered 503 on attempt {}", ctx.attempt()));
    }
    Ok(())
}

/// Application state a handler receives as `State<T>`.
struct Mailer {
    from: &'static str,
}

/// Sends a reminder through the shared mailer.
#[job(queue = "mail")]
async fn send_reminder(mailer: State<Mailer>, to: String) -> Result<(), JobError> {
    println!("\n{} -> {to}: don't forget the meeting", mailer.from);
    Ok(())
}

/// A nightly report; the one enqueued below is cancelled before it runs.
#[job(queue = "reports")]
async fn build_report(day: String) -> Result<(), JobError> {
    println!("\nbuilding the report for {day}");
    Ok(())
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    run(storage).await
}

/// Everything after the storage line: enqueue, work, report.
pub async fn run(storage: impl Storage + Clone) -> haul::Result<()> {
    let started = Instant::now();
    let queue = Queue::new(storage.clone());

    let images = queue.enqueue_many((0..1_000).map(|i| ResizeImage::new(i, 640))).await?;
    queue.enqueue(CallFlakyApi::new("https://api.example.com/charge")).await?;
    queue.enqueue(SendReminder::new("ada@example.com")).run_in(Duration::from_secs(3)).await?;
    let report = queue.enqueue(BuildReport::new("2026-11-23")).run_in(Duration::from_secs(3600)).await?;
    queue.cancel(report).await?;
    println!("enqueued {} image jobs in one batch, plus 3 others (one cancelled)", images.len());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::builder(storage)
        .queues(["images", "default", "mail", "reports"])
        .concurrency(32)
        // The image jobs are many and short: claim up to 64 more ahead of free slots.
        .prefetch(64)
        .state(Mailer { from: "robot@example.com" })
        .maintenance_interval(Duration::from_millis(200))
        .build();
    let running = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));

    loop {
        let counts = totals(&queue).await?;
        let done = counts.finished();
        print!(
            "\r{:>5.1}s  available {:>4}  running {:>3}  scheduled {:>2}  retryable {:>2}  finished {:>4}/{}",
            started.elapsed().as_secs_f64(),
            counts.get(JobState::Available),
            counts.get(JobState::Running),
            counts.get(JobState::Scheduled),
            counts.get(JobState::Retryable),
            done,
            counts.total(),
        );
        if done == counts.total() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!();
    let _ = stop.send(());
    running.await.map_err(|e| haul::Error::InvalidArgument(e.to_string().into()))??;

    print_table(&queue).await?;
    println!("wall time: {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Job counts by state over every queue.
struct Totals(std::collections::BTreeMap<JobState, u64>);

impl Totals {
    fn get(&self, state: JobState) -> u64 {
        self.0.get(&state).copied().unwrap_or(0)
    }
    fn total(&self) -> u64 {
        self.0.values().sum()
    }
    fn finished(&self) -> u64 {
        self.0.iter().filter(|(state, _)| state.is_finished()).map(|(_, n)| n).sum()
    }
}

async fn totals(queue: &Queue) -> haul::Result<Totals> {
    let mut totals = std::collections::BTreeMap::new();
    for counts in queue.counts().await? {
        for (state, n) in counts.states {
            *totals.entry(state).or_insert(0) += n;
        }
    }
    Ok(Totals(totals))
}

/// One row per (kind, state): how many jobs and how many attempts they spent.
async fn print_table(queue: &Queue) -> haul::Result<()> {
    let mut rows = std::collections::BTreeMap::<(String, JobState), (u64, u64)>::new();
    let mut after = None;
    loop {
        let mut params = ListParams::new().limit(500);
        if let Some(id) = after {
            params = params.after(id);
        }
        let page = queue.list(params).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for job in &page {
            let row = rows.entry((job.kind.clone(), job.state)).or_default();
            row.0 += 1;
            row.1 += u64::from(job.attempt);
        }
    }
    println!("{:<16} {:<10} {:>6} {:>9}", "kind", "state", "jobs", "attempts");
    for ((kind, state), (jobs, attempts)) in rows {
        println!("{kind:<16} {:<10} {jobs:>6} {attempts:>9}", state.as_str());
    }
    Ok(())
}

/// The jobs above, tested with `haul::testing`: no worker and no sleeping, the clock is
/// moved by hand. `cargo test --example quickstart` runs them (so does
/// `cargo test --workspace`).
#[cfg(test)]
mod tests {
    use haul::testing::{DrainSummary, TestJobs};
    use serde_json::json;

    use super::*;

    fn completed(n: usize) -> DrainSummary {
        DrainSummary { completed: n, ..DrainSummary::default() }
    }

    #[tokio::test]
    async fn image_resizes_go_to_the_images_queue_and_complete() -> haul::Result<()> {
        let jobs = TestJobs::new(MemoryStorage::new());
        let queue = Queue::new(jobs.storage());
        queue.enqueue_many((0..5).map(|i| ResizeImage::new(i, 640))).await?;

        jobs.assert_enqueued::<ResizeImage>(|job| job.image_id == 4 && job.width == 640).await;
        jobs.assert_enqueued_json("resize_image", json!({ "image_id": 0 })).await;
        assert!(jobs.enqueued().await?.iter().all(|job| job.queue == "images"));
        assert_eq!(jobs.drain(["images"]).await?, completed(5));
        jobs.refute_enqueued::<ResizeImage>(|_| true).await;
        Ok(())
    }

    #[tokio::test]
    async fn the_flaky_api_call_succeeds_on_its_third_attempt() -> haul::Result<()> {
        let jobs = TestJobs::new(MemoryStorage::new());
        let queue = Queue::new(jobs.storage());
        let id = queue.enqueue(CallFlakyApi::new("https://api.example.com/charge")).await?;
        let failed = DrainSummary { failed: 1, ..DrainSummary::default() };

        assert_eq!(jobs.drain_all().await?, failed);
        assert_eq!(jobs.drain_all().await?, DrainSummary::default(), "the retry waits for its 500 ms backoff");
        jobs.advance(Duration::from_millis(500));
        assert_eq!(jobs.drain_all().await?, failed);
        jobs.advance(Duration::from_millis(500));
        assert_eq!(jobs.drain_all().await?, completed(1));

        let job = queue.get(id).await?.map(|job| (job.state, job.attempt, job.errors.len()));
        assert_eq!(job, Some((JobState::Completed, 3, 2)));
        Ok(())
    }

    #[tokio::test]
    async fn the_reminder_runs_three_seconds_later_with_the_mailer() -> haul::Result<()> {
        let jobs = TestJobs::new(MemoryStorage::new()).state(Mailer { from: "robot@example.com" });
        let queue = Queue::new(jobs.storage());
        queue.enqueue(SendReminder::new("ada@example.com")).run_in(Duration::from_secs(3)).await?;

        jobs.assert_enqueued::<SendReminder>(|job| job.to == "ada@example.com").await;
        assert_eq!(jobs.drain_all().await?, DrainSummary::default(), "not due yet");
        jobs.advance(Duration::from_secs(3));
        assert_eq!(jobs.drain_all().await?, completed(1));
        Ok(())
    }

    #[tokio::test]
    async fn a_cancelled_report_never_runs() -> haul::Result<()> {
        let jobs = TestJobs::new(MemoryStorage::new());
        let queue = Queue::new(jobs.storage());
        let id = queue.enqueue(BuildReport::new("2026-11-23")).run_in(Duration::from_secs(3600)).await?;
        queue.cancel(id).await?;

        jobs.refute_enqueued::<BuildReport>(|_| true).await;
        jobs.advance(Duration::from_secs(2 * 3600));
        assert_eq!(jobs.drain_all().await?, DrainSummary::default());
        assert_eq!(queue.get(id).await?.map(|job| job.state), Some(JobState::Cancelled));
        Ok(())
    }
}
