//! One program for every backend: the storage is a URL, the rest is the same code.
//!
//! ```sh
//! cargo run --example any_backend --features postgres,redis      # HAUL_URL unset: memory://
//! HAUL_URL='postgres://postgres@127.0.0.1:5432/test?schema=haul_any_backend' cargo run --example any_backend --features postgres,redis
//! HAUL_URL='redis://127.0.0.1:6379?prefix=haul_any_backend' cargo run --example any_backend --features postgres,redis
//! HAUL_URL='redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002?prefix=haul_any_backend' cargo run --example any_backend --features postgres,redis
//! ```
//!
//! It enqueues 50 jobs of three kinds: 48 image resizes in one batch, a card charge
//! whose first attempt fails (it succeeds on its second), and a reminder scheduled
//! 1 second ahead. A worker runs them until every one is accounted for, then the
//! program checks each job's stored record (completed, with the attempts it should
//! have spent, each attempt run once, the reminder not started early), prints one line
//! and exits 0. A job lost, failed or run twice makes it print the reason and exit 1.
//!
//! Every run enqueues new jobs and checks only those, so it can run again on the same
//! schema or key prefix.

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use haul::prelude::*;

/// The queue of this example's jobs.
const QUEUE: &str = "any_backend";
/// Image resizes enqueued in one batch.
const IMAGES: u32 = 48;
/// How far ahead the reminder is scheduled.
const REMINDER_DELAY: Duration = Duration::from_secs(1);
/// How long the jobs may take before the ones not finished count as lost.
const DEADLINE: Duration = Duration::from_secs(60);

/// Handler runs by job id, counted by the handlers themselves: each must match the
/// attempts storage recorded, or an attempt ran twice.
#[derive(Default)]
struct Runs(Mutex<HashMap<JobId, u32>>);

impl Runs {
    /// Counts a run of the job `ctx` belongs to.
    fn record(&self, ctx: &JobContext) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(ctx.id()).or_default() += 1;
    }

    /// How many times the handler of `id` ran.
    fn of(&self, id: JobId) -> u32 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&id).copied().unwrap_or(0)
    }
}

/// Pretends to resize an image.
#[job(queue = "any_backend")]
async fn resize_image(ctx: JobContext, runs: State<Runs>, image_id: u32) -> Result<(), JobError> {
    runs.record(&ctx);
    tokio::time::sleep(Duration::from_millis(u64::from(image_id % 5))).await;
    Ok(())
}

/// A card charge whose first attempt times out: the error is recorded, and the retry
/// 200 ms later succeeds.
#[job(queue = "any_backend", max_attempts = 3, backoff = RetryPolicy::fixed(Duration::from_millis(200)))]
async fn charge_card(ctx: JobContext, runs: State<Runs>, order: u32) -> Result<(), String> {
    runs.record(&ctx);
    if ctx.attempt() == 1 {
        return Err(format!("order {order}: the card network timed out"));
    }
    Ok(())
}

/// A reminder, enqueued to run [`REMINDER_DELAY`] from now.
#[job(queue = "any_backend")]
async fn send_reminder(ctx: JobContext, runs: State<Runs>, to: String) -> Result<(), JobError> {
    runs.record(&ctx);
    let _ = to;
    Ok(())
}

/// What each enqueued job should end with.
struct Expected {
    id: JobId,
    kind: &'static str,
    attempts: u32,
    scheduled: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("any_backend: FAILED: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<String, Box<dyn std::error::Error>> {
    let started = Instant::now();
    // The one backend-specific input. Unset, the jobs live in this process (memory://).
    let url = std::env::var("HAUL_URL").unwrap_or_else(|_| "memory://".to_owned());
    let storage = haul::connect(&url).await?;
    storage.migrate().await?;
    let backend = storage.backend_name();

    let queue = Queue::new(storage.clone());
    let mut expected = Vec::new();
    for id in queue.enqueue_many((0..IMAGES).map(ResizeImage::new)).await? {
        expected.push(Expected { id, kind: "resize_image", attempts: 1, scheduled: false });
    }
    let id = queue.enqueue(ChargeCard::new(1042)).await?;
    expected.push(Expected { id, kind: "charge_card", attempts: 2, scheduled: false });
    let id = queue.enqueue(SendReminder::new("ada@example.com")).run_in(REMINDER_DELAY).await?;
    expected.push(Expected { id, kind: "send_reminder", attempts: 1, scheduled: true });

    let runs = Arc::new(Runs::default());
    let worker = Worker::builder(storage)
        .queues([QUEUE])
        .concurrency(8)
        .shared_state(runs.clone())
        .maintenance_interval(Duration::from_millis(100))
        .build();
    let ids: Vec<JobId> = expected.iter().map(|job| job.id).collect();
    let until_all_finished = {
        let queue = queue.clone();
        async move {
            while started.elapsed() < DEADLINE && !all_finished(&queue, &ids).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    worker.run_until(until_all_finished).await?;

    let mut problems = Vec::new();
    for job in &expected {
        if let Some(problem) = check(&queue, job, runs.of(job.id)).await? {
            problems.push(problem);
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{} of {} jobs on {backend} are not as expected: {}",
            problems.len(),
            expected.len(),
            problems.join("; ")
        )
        .into());
    }
    let attempts: u32 = expected.iter().map(|job| job.attempts).sum();
    Ok(format!(
        "any_backend: {backend}: {} of {} jobs completed ({IMAGES} resize_image, 1 charge_card after a retry, \
         1 send_reminder scheduled {} s ahead), {attempts} attempts, none lost, in {:.2} s",
        expected.len(),
        expected.len(),
        REMINDER_DELAY.as_secs(),
        started.elapsed().as_secs_f64()
    ))
}

/// Whether every job of `ids` has finished (read errors count as not yet).
async fn all_finished(queue: &Queue, ids: &[JobId]) -> bool {
    for &id in ids {
        match queue.get(id).await {
            Ok(Some(job)) if job.state.is_finished() => {}
            _ => return false,
        }
    }
    true
}

/// What is wrong with `job`'s stored record, if anything.
async fn check(queue: &Queue, job: &Expected, runs: u32) -> haul::Result<Option<String>> {
    let Some(record) = queue.get(job.id).await? else {
        return Ok(Some(format!("{} {} is lost (not in storage)", job.kind, job.id)));
    };
    let last_error = || record.errors.last().map_or_else(|| "no error recorded".to_owned(), |e| e.message.clone());
    let problem = match record.state {
        JobState::Completed => None,
        JobState::Discarded => Some(format!("failed after {} attempts: {}", record.attempt, last_error())),
        JobState::Cancelled => Some("was cancelled".to_owned()),
        state => Some(format!("is still {} after {} s (lost)", state.as_str(), DEADLINE.as_secs())),
    }
    .or_else(|| {
        (record.attempt != job.attempts)
            .then(|| format!("completed after {} attempts, expected {}", record.attempt, job.attempts))
    })
    .or_else(|| {
        (runs != record.attempt).then(|| format!("its handler ran {runs} times for {} attempts", record.attempt))
    })
    .or_else(|| {
        let delay = record.run_at.signed_duration_since(record.created_at).to_std().unwrap_or_default();
        let early = record.attempted_at.is_some_and(|at| at < record.run_at);
        (job.scheduled && (delay < REMINDER_DELAY || early))
            .then(|| format!("was scheduled {delay:?} ahead and started early: {early}"))
    });
    Ok(problem.map(|problem| format!("{} {} {problem}", job.kind, job.id)))
}
