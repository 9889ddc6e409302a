//! An API quota as a rate limit: the `api` queue lets at most 5 of its jobs start in any
//! second, and at most 2 of each customer's (a rate limit per limit key), across every
//! worker. One customer has many calls to make; the others' calls are not held back
//! behind it.
//!
//! Run with `cargo run --example rate_limits`; it prints when each call started, and
//! exits non-zero if more than 5 calls (or more than 2 of one customer) started within
//! one second. It takes about three seconds.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use haul::prelude::*;

/// The queue-wide quota: starts per period.
const STARTS: u32 = 5;
/// The quota of each customer: starts per period.
const KEY_STARTS: u32 = 2;
/// The window both quotas count in.
const PERIOD: Duration = Duration::from_secs(1);
/// A handler starts a moment after its claim (the storage's record of the start): how
/// much later, at most, the handler times' check allows (generous, for a loaded machine;
/// the check of the claims themselves is exact).
const HANDLER_DELAY: Duration = Duration::from_millis(200);
/// The calls each customer makes: one busy customer, two quiet ones.
const CALLS: [(&str, u32); 3] = [("big", 8), ("small-1", 2), ("small-2", 2)];

/// When each call's handler started, with its customer.
struct Log {
    began: Instant,
    starts: Mutex<Vec<(Duration, String)>>,
}

/// Calls a rate-limited API for a customer. `limit_key = customer`: the job counts
/// against its queue's per-key rate under its customer's name.
#[job(queue = "api", limit_key = customer)]
async fn call_api(log: State<Log>, customer: String, call: u32) {
    let started = log.began.elapsed();
    log.starts.lock().expect("log lock").push((started, customer));
    let _ = call;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let limits = QueueLimits::new().rate(RateLimit::new(STARTS, PERIOD)).key_rate(RateLimit::new(KEY_STARTS, PERIOD));
    queue.set_limits("api", limits).await?;
    // The busy customer's calls first: the quiet ones wait behind them in the queue.
    let calls = CALLS.iter().flat_map(|&(customer, calls)| (1..=calls).map(move |call| CallApi::new(customer, call)));
    queue.enqueue_many(calls).await?;

    let total: usize = CALLS.iter().map(|&(_, calls)| calls as usize).sum();
    let log = Arc::new(Log { began: Instant::now(), starts: Mutex::new(Vec::new()) });
    let until_done = {
        let storage = storage.clone();
        async move {
            while completed(&storage).await.map_or(0, |jobs| jobs.len()) < total {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Eight slots: the rate, not the worker, is what holds the calls back.
    Worker::builder(storage.clone())
        .queues(["api"])
        .concurrency(8)
        .shared_state(Arc::clone(&log))
        .build()
        .run_until(until_done)
        .await?;

    let mut starts = log.starts.lock().expect("log lock").clone();
    starts.sort();
    for (at, customer) in &starts {
        println!("{:>6} ms  {customer}", at.as_millis());
    }
    let jobs = completed(&storage).await?;
    let problems = check(&starts, &jobs);
    if !problems.is_empty() {
        return Err(haul::Error::InvalidArgument(problems.join("; ").into()));
    }
    println!(
        "{total} calls: at most {STARTS} started in any {PERIOD:?}, at most {KEY_STARTS} of each customer; the quiet \
         customers' calls did not wait for the busy one's"
    );
    Ok(())
}

/// The completed jobs of `api`.
async fn completed(storage: &MemoryStorage) -> haul::Result<Vec<JobRecord>> {
    storage.list(ListParams::filtered(JobFilter::new().queue("api").state(JobState::Completed)).limit(100)).await
}

/// What broke the quotas: in the starts the storage recorded at each claim (the rule
/// itself), then in the handlers' start times (allowing each [`HANDLER_DELAY`] after its
/// claim), in all and per customer; and whether the quiet customers waited for the busy
/// one.
fn check(handler_starts: &[(Duration, String)], jobs: &[JobRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    let claims = claim_times(jobs);
    if claims.len() != jobs.len() || handler_starts.len() != jobs.len() {
        problems.push(format!("{} jobs completed, {} handlers started", jobs.len(), handler_starts.len()));
    }
    for (what, starts, slack) in
        [("claims", claims.as_slice(), Duration::ZERO), ("handler starts", handler_starts, HANDLER_DELAY)]
    {
        let all: Vec<Duration> = starts.iter().map(|(at, _)| *at).collect();
        if let Some(window) = crowded_window(all, STARTS, PERIOD - slack) {
            problems.push(format!("{what}: more than {STARTS} in the window from {window:?}"));
        }
        let mut by_customer: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
        for (at, customer) in starts {
            by_customer.entry(customer).or_default().push(*at);
        }
        for (customer, times) in by_customer {
            if let Some(window) = crowded_window(times, KEY_STARTS, PERIOD - slack) {
                problems.push(format!("{what}: more than {KEY_STARTS} of {customer} in the window from {window:?}"));
            }
        }
    }
    // Behind the busy customer's 8 calls in the queue, the quiet customers' 4 calls all
    // start before its fifth (in the third window): a key at its quota holds back no
    // other key.
    let busy: Vec<Duration> =
        handler_starts.iter().filter(|(_, customer)| customer == "big").map(|(at, _)| *at).collect();
    let last_quiet = handler_starts.iter().filter(|(_, customer)| customer != "big").map(|(at, _)| *at).max();
    if let (Some(fifth_busy), Some(last_quiet)) = (busy.get(4), last_quiet)
        && last_quiet >= *fifth_busy
    {
        problems.push("the quiet customers' calls waited behind the busy customer's".to_owned());
    }
    problems
}

/// When the storage claimed each job (`attempted_at`: each ran once), from the first
/// claim, with the job's customer.
fn claim_times(jobs: &[JobRecord]) -> Vec<(Duration, String)> {
    let Some(first) = jobs.iter().filter_map(|job| job.attempted_at).min() else {
        return Vec::new();
    };
    jobs.iter().filter_map(|job| Some(((job.attempted_at? - first).to_std().ok()?, job.limit_key.clone()?))).collect()
}

/// The first of `most + 1` of `times` that fall within less than `period` (more than
/// `most` starts in one window), if any.
fn crowded_window(mut times: Vec<Duration>, most: u32, period: Duration) -> Option<Duration> {
    times.sort();
    let most = most as usize;
    times.windows(most + 1).find(|window| window[most] - window[0] < period).map(|window| window[0])
}
