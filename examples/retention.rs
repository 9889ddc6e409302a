//! No history of completed jobs: a worker whose retention keeps completed jobs for zero
//! time deletes each job it completes, in the same storage call that records the
//! completion, so a busy queue leaves nothing behind for the leader to prune.
//!
//! A thousand thumbnails run and leave no trace; a feed import that is discarded stays
//! for a look (discarded jobs are kept a week here); an index rebuild enqueued unique is
//! stored as completed, as every job with a uniqueness key is (a key may block finished
//! jobs), and left to the leader's prune.
//!
//! Run with `cargo run --example retention`; it exits non-zero if a completed job
//! without a uniqueness key is still stored.

use std::sync::atomic::{AtomicUsize, Ordering};

use haul::{QueueCounts, Retention, prelude::*};

/// How many thumbnails the handlers made.
#[derive(Default)]
struct Made(AtomicUsize);

impl Made {
    fn one_more(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn so_far(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Makes a thumbnail (instantly, here).
#[job(queue = "media")]
async fn make_thumbnail(made: State<Made>, image: u32) -> Result<(), JobError> {
    let _ = image;
    made.one_more();
    Ok(())
}

/// Imports a feed whose server always answers 404: discarded after its one attempt.
#[job(queue = "media", max_attempts = 1)]
async fn import_feed(url: String) -> Result<(), String> {
    Err(format!("{url} answered 404"))
}

/// Rebuilds a site's search index; enqueued unique, so one rebuild per site at a time.
#[job(queue = "media")]
async fn rebuild_index(site: String) -> Result<(), JobError> {
    let _ = site;
    Ok(())
}

const THUMBNAILS: u32 = 1_000;

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    queue.enqueue_many((1..=THUMBNAILS).map(MakeThumbnail::new)).await?;
    queue.enqueue(ImportFeed::new("https://example.com/feed.xml".to_owned())).await?;
    queue.enqueue(RebuildIndex::new("docs".to_owned())).unique().await?;

    let made = std::sync::Arc::new(Made::default());
    // Completed jobs: deleted as they complete. Discarded: kept a week, pruned by the
    // leader (which checks every 60 s).
    let retention = Retention::default().completed(Duration::ZERO).discarded(Duration::from_secs(7 * 24 * 3600));
    let worker = Worker::builder(storage)
        .queues(["media"])
        .retention(retention, Duration::from_secs(60))
        .shared_state(std::sync::Arc::clone(&made))
        .build();
    let all_finished = {
        let queue = queue.clone();
        async move {
            while !queue.counts().await.is_ok_and(|counts| counts.iter().all(nothing_left_to_run)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    worker.run_until(all_finished).await?;

    let stored = queue.list(ListParams::new()).await?;
    println!("{} thumbnails made; {} jobs stored:", made.so_far(), stored.len());
    for job in &stored {
        println!("  {} {} (uniqueness key: {:?})", job.kind, job.state, job.unique_key);
    }
    // The leader's prune (at its start, then every 60 s) may have taken the completed
    // rebuild too: only completed jobs without a key must be gone.
    let completed_without_key =
        stored.iter().filter(|job| job.state == JobState::Completed && job.unique_key.is_none()).count();
    let discarded = stored.iter().filter(|job| job.state == JobState::Discarded).count();
    if made.so_far() != THUMBNAILS as usize || completed_without_key != 0 || discarded != 1 {
        return Err(haul::Error::InvalidArgument(
            format!(
                "expected {THUMBNAILS} thumbnails made, no completed job without a key stored and the discarded \
                 import kept; got {} made, {completed_without_key} completed, {discarded} discarded",
                made.so_far()
            )
            .into(),
        ));
    }
    Ok(())
}

/// Whether a queue has no job waiting, running or due for a retry.
fn nothing_left_to_run(counts: &QueueCounts) -> bool {
    [JobState::Available, JobState::Scheduled, JobState::Running, JobState::Retryable]
        .into_iter()
        .all(|state| counts.get(state) == 0)
}
