//! Slots of its own for a queue that must not wait: slow `reports` jobs fill every
//! shared slot, and `mail` still goes out at once, in the two slots only it takes.
//!
//! Run with `cargo run --example queue_slots`; it exits non-zero if a mail waited for
//! a report.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use haul::prelude::*;

/// When each job finished, by name, since the example started.
struct Log {
    start: Instant,
    finished: Mutex<Vec<(String, Duration)>>,
}

impl Log {
    fn record(&self, name: String) {
        let at = self.start.elapsed();
        println!("{:>5} ms  {name}", at.as_millis());
        if let Ok(mut finished) = self.finished.lock() {
            finished.push((name, at));
        }
    }

    fn finished(&self, prefix: &str) -> Vec<Duration> {
        let finished = self.finished.lock().map(|finished| finished.clone()).unwrap_or_default();
        finished.into_iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, at)| at).collect()
    }
}

/// A report that takes half a second to build.
#[job(queue = "reports")]
async fn build_report(log: State<Log>, number: u32) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    log.record(format!("report {number} built"));
    Ok(())
}

/// A mail that goes out at once.
#[job(queue = "mail")]
async fn send_mail(log: State<Log>, to: String) -> Result<(), JobError> {
    log.record(format!("mail to {to} sent"));
    Ok(())
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    // Six reports first: enough to keep the shared slots busy for 1.5 s.
    queue.enqueue_many((1..=6).map(BuildReport::new)).await?;
    queue.enqueue_many(["ada", "grace", "linus", "barbara"].map(|to| SendMail::new(to.to_owned()))).await?;

    let log = Arc::new(Log { start: Instant::now(), finished: Mutex::new(Vec::new()) });
    let worker = Worker::builder(storage)
        .queues(["reports", "mail"])
        .concurrency(2) // the shared slots: `reports` takes them
        .queue_concurrency("mail", 2) // two slots only `mail` takes
        .shared_state(Arc::clone(&log))
        .build();
    let all_done = {
        let log = Arc::clone(&log);
        async move {
            while log.finished("report").len() < 6 || log.finished("mail").len() < 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    worker.run_until(all_done).await?;

    let last_mail = log.finished("mail").into_iter().max().unwrap_or_default();
    let first_report = log.finished("report").into_iter().min().unwrap_or_default();
    if last_mail >= first_report {
        return Err(haul::Error::InvalidArgument(
            format!("the last mail went out at {last_mail:?}, after the first report ({first_report:?})").into(),
        ));
    }
    println!("every mail went out before the first report was built: `mail` never waited for `reports`");
    Ok(())
}
