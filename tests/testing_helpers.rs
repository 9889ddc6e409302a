//! `haul::testing` as an application uses it: inline and collect modes, assertions and
//! their failure messages, drains over the test clock (follow-up jobs, retries,
//! scheduled jobs, every outcome), state injection and the drain limit.

#![allow(clippy::unwrap_used)]

use std::{
    future::Future,
    sync::{Arc, Mutex},
};

use haul::{
    prelude::*,
    testing::{DrainSummary, TestJobs},
};
use serde_json::json;

/// Records what the jobs of these tests did.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
}

impl Log {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

#[job(queue = "mail")]
async fn send_email(log: State<Log>, to: String, subject: String) -> Result<(), JobError> {
    log.push(format!("mail to {to}: {subject}"));
    Ok(())
}

/// Sends its confirmation through the queue given as state, into another queue.
#[job(queue = "orders")]
async fn place_order(queue: State<Queue>, log: State<Log>, order: u32) -> Result<(), JobError> {
    log.push(format!("order {order} placed"));
    queue.enqueue(SendEmail::new("ada@example.com", format!("order {order}"))).await?;
    Ok(())
}

/// Also enqueues a reminder a day later.
#[job(queue = "orders")]
async fn place_order_with_reminder(queue: State<Queue>, order: u32) -> Result<(), JobError> {
    queue
        .enqueue(SendEmail::new("ada@example.com", format!("order {order} reminder")))
        .run_in(Duration::from_secs(24 * 3600))
        .await?;
    Ok(())
}

/// Fails its first two attempts, 30 s apart.
#[job(backoff = RetryPolicy::fixed(Duration::from_secs(30)))]
async fn flaky_charge(ctx: JobContext, log: State<Log>, cents: u64) -> Result<(), String> {
    log.push(format!("charge {cents}, attempt {}", ctx.attempt()));
    if ctx.attempt() < 3 {
        return Err(format!("bank unavailable on attempt {}", ctx.attempt()));
    }
    Ok(())
}

/// Ends as its arguments say.
#[job(queue = "outcomes", max_attempts = 1)]
async fn ends(how: String) -> Result<(), JobError> {
    match how.as_str() {
        "fail" => Err(JobError::fail("no attempt left")),
        "discard" => Err(JobError::discard("not worth it")),
        "panic" => panic!("the handler panicked"),
        "snooze" => Err(JobError::snooze(Duration::from_secs(60))),
        _ => Ok(()),
    }
}

/// Asks for its own cancellation while it runs, then fails: the cancel wins.
#[job(queue = "outcomes")]
async fn cancel_myself(queue: State<Queue>, ctx: JobContext) -> Result<(), JobError> {
    queue.cancel(ctx.id()).await?;
    Err(JobError::fail("stopped after the cancel"))
}

/// Snoozes without delay, forever.
#[job(queue = "forever")]
async fn poll_forever() -> Result<(), JobError> {
    Err(JobError::snooze(Duration::ZERO))
}

/// Runs `assertion` and returns its panic message; fails if it does not panic.
async fn panic_message(assertion: impl Future<Output = ()> + Send + 'static) -> String {
    let error = tokio::spawn(assertion).await.expect_err("the assertion panics");
    let payload = error.into_panic();
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast::<&str>().map(|message| (*message).to_owned()).unwrap_or_default(),
    }
}

fn completed(n: usize) -> DrainSummary {
    DrainSummary { completed: n, ..DrainSummary::default() }
}

async fn state_of(queue: &Queue, id: JobId) -> JobState {
    queue.get(id).await.unwrap().unwrap().state
}

#[tokio::test]
async fn inline_mode_runs_the_job_and_what_it_enqueues_before_the_enqueue_returns() {
    let log = Arc::new(Log::default());
    let jobs = TestJobs::inline(MemoryStorage::new()).shared_state(Arc::clone(&log));
    let queue = Queue::new(jobs.storage());
    let jobs = jobs.state(queue.clone());

    let id = queue.enqueue(PlaceOrder::new(7)).await.unwrap();

    assert_eq!(log.lines(), ["order 7 placed", "mail to ada@example.com: order 7"]);
    assert_eq!(state_of(&queue, id).await, JobState::Completed);
    assert!(jobs.enqueued().await.unwrap().is_empty(), "nothing is left enqueued");
}

#[tokio::test]
async fn inline_mode_leaves_jobs_due_later_for_a_drain_after_advance() {
    let jobs = TestJobs::inline(MemoryStorage::new());
    let queue = Queue::new(jobs.storage());
    let jobs = jobs.state(queue.clone()).state(Log::default());

    let order = queue.enqueue(PlaceOrderWithReminder::new(8)).await.unwrap();
    assert_eq!(state_of(&queue, order).await, JobState::Completed);
    jobs.assert_enqueued::<SendEmail>(|email| email.subject == "order 8 reminder").await;

    jobs.advance(Duration::from_secs(24 * 3600));
    assert_eq!(jobs.drain_all().await.unwrap(), completed(1));
    jobs.refute_enqueued::<SendEmail>(|_| true).await;
}

#[tokio::test]
async fn collect_mode_stores_the_jobs_for_assertions_without_running_them() {
    let log = Arc::new(Log::default());
    let jobs = TestJobs::new(MemoryStorage::new()).shared_state(Arc::clone(&log));
    let queue = Queue::new(jobs.storage());

    queue.enqueue(SendEmail::new("ada@example.com", "hello")).await.unwrap();
    queue.enqueue(SendEmail::new("bob@example.com", "later")).run_in(Duration::from_secs(60)).await.unwrap();
    queue.enqueue(FlakyCharge::new(4200)).await.unwrap();

    assert!(log.lines().is_empty(), "nothing ran");
    jobs.assert_enqueued::<SendEmail>(|email| email.to == "ada@example.com" && email.subject == "hello").await;
    jobs.assert_enqueued::<SendEmail>(|email| email.subject == "later").await;
    jobs.assert_enqueued::<FlakyCharge>(|charge| charge.cents == 4200).await;
    jobs.assert_enqueued_json("send_email", json!({ "to": "bob@example.com" })).await;
    jobs.assert_enqueued_json("flaky_charge", json!({})).await;
    jobs.refute_enqueued::<SendEmail>(|email| email.to == "eve@example.com").await;
    jobs.refute_enqueued::<PlaceOrder>(|_| true).await;
    jobs.refute_enqueued_json("send_email", json!({ "to": "ada@example.com", "subject": "later" })).await;
    jobs.refute_enqueued_json("place_order", json!({})).await;

    let emails = jobs.all_enqueued::<SendEmail>().await.unwrap();
    let recipients: Vec<&str> = emails.iter().map(|email| email.to.as_str()).collect();
    assert_eq!(recipients, ["ada@example.com", "bob@example.com"]);
    assert_eq!(jobs.all_enqueued::<FlakyCharge>().await.unwrap().len(), 1);
    assert!(jobs.all_enqueued::<PlaceOrder>().await.unwrap().is_empty());
    let states: Vec<JobState> = jobs.enqueued().await.unwrap().iter().map(|job| job.state).collect();
    assert_eq!(states, [JobState::Available, JobState::Scheduled, JobState::Available]);
}

#[tokio::test]
async fn a_failed_assertion_lists_what_was_enqueued() {
    let jobs = TestJobs::new(MemoryStorage::new());
    let queue = Queue::new(jobs.storage());
    queue.enqueue(SendEmail::new("ada@example.com", "hello")).await.unwrap();
    queue.enqueue(FlakyCharge::new(990)).run_in(Duration::from_secs(60)).await.unwrap();

    let message = {
        let jobs = jobs.clone();
        panic_message(async move { jobs.assert_enqueued::<SendEmail>(|email| email.to == "bob@example.com").await })
            .await
    };
    assert_eq!(
        message,
        "expected an enqueued job of type `testing_helpers::SendEmail` matching the predicate, found none; \
         enqueued jobs (2):\n  - send_email on queue `mail` (available): {\"subject\":\"hello\",\"to\":\"ada@example.com\"}\n  \
         - flaky_charge on queue `default` (scheduled, due in 60s): {\"cents\":990}"
    );

    let message = {
        let jobs = jobs.clone();
        panic_message(async move { jobs.assert_enqueued_json("send_email", json!({ "to": "bob@example.com" })).await })
            .await
    };
    assert!(
        message.starts_with("expected an enqueued job of kind `send_email` with arguments containing"),
        "{message}"
    );
    assert!(message.contains("flaky_charge on queue `default`"), "{message}");

    let message = {
        let jobs = jobs.clone();
        panic_message(async move { jobs.refute_enqueued::<SendEmail>(|_| true).await }).await
    };
    assert!(message.starts_with("expected no enqueued job of type `testing_helpers::SendEmail`"), "{message}");
    assert!(message.contains("enqueued jobs (1):\n  - send_email on queue `mail`"), "{message}");
    assert!(!message.contains("flaky_charge"), "only the jobs that match are listed: {message}");

    let message = panic_message(async move { jobs.refute_enqueued_json("flaky_charge", json!({})).await }).await;
    assert!(message.contains("flaky_charge on queue `default`"), "{message}");

    let empty = TestJobs::new(MemoryStorage::new());
    let message = panic_message(async move { empty.assert_enqueued::<SendEmail>(|_| true).await }).await;
    assert!(message.ends_with("found none; no job is enqueued"), "{message}");
}

#[tokio::test]
async fn a_drain_runs_the_jobs_that_jobs_enqueue_and_only_the_queues_it_names() {
    let log = Arc::new(Log::default());
    let jobs = TestJobs::new(MemoryStorage::new()).shared_state(Arc::clone(&log));
    let queue = Queue::new(jobs.storage());
    let jobs = jobs.state(queue.clone());
    let order = queue.enqueue(PlaceOrder::new(1)).await.unwrap();

    assert_eq!(jobs.drain(["orders"]).await.unwrap(), completed(1));
    assert_eq!(state_of(&queue, order).await, JobState::Completed);
    jobs.assert_enqueued::<SendEmail>(|email| email.subject == "order 1").await;
    assert_eq!(log.lines(), ["order 1 placed"]);

    queue.enqueue(PlaceOrder::new(2)).await.unwrap();
    assert_eq!(jobs.drain_all().await.unwrap(), completed(3), "the order, its mail and the earlier mail");
    assert_eq!(
        log.lines(),
        ["order 1 placed", "mail to ada@example.com: order 1", "order 2 placed", "mail to ada@example.com: order 2"]
    );
    assert!(jobs.enqueued().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_job_is_retried_only_once_the_clock_passes_its_backoff() {
    let log = Arc::new(Log::default());
    let jobs = TestJobs::new(MemoryStorage::new()).shared_state(Arc::clone(&log));
    let queue = Queue::new(jobs.storage());
    let id = queue.enqueue(FlakyCharge::new(4200)).await.unwrap();

    assert_eq!(jobs.drain_all().await.unwrap(), DrainSummary { failed: 1, ..DrainSummary::default() });
    let job = queue.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Retryable);
    assert_eq!(job.run_at, jobs.now() + chrono::Duration::seconds(30), "the backoff is counted on the test clock");
    assert_eq!(job.errors.len(), 1);
    assert_eq!(job.errors[0].message, "bank unavailable on attempt 1");

    assert_eq!(jobs.drain_all().await.unwrap(), DrainSummary::default(), "not due yet");
    jobs.advance(Duration::from_secs(29));
    assert_eq!(jobs.drain_all().await.unwrap(), DrainSummary::default(), "still not due");
    jobs.advance(Duration::from_secs(1));
    assert_eq!(jobs.drain_all().await.unwrap(), DrainSummary { failed: 1, ..DrainSummary::default() });
    jobs.set_now(jobs.now() + chrono::Duration::seconds(30));
    assert_eq!(jobs.drain_all().await.unwrap(), completed(1));

    assert_eq!(state_of(&queue, id).await, JobState::Completed);
    assert_eq!(log.lines(), ["charge 4200, attempt 1", "charge 4200, attempt 2", "charge 4200, attempt 3"]);
}

#[tokio::test]
async fn a_scheduled_job_runs_only_once_the_clock_reaches_it() {
    let log = Arc::new(Log::default());
    let jobs = TestJobs::new(MemoryStorage::new()).shared_state(Arc::clone(&log));
    let queue = Queue::new(jobs.storage());
    let id =
        queue.enqueue(SendEmail::new("ada@example.com", "see you")).run_in(Duration::from_secs(3600)).await.unwrap();

    let job = queue.get(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.created_at), (JobState::Scheduled, jobs.now()));
    assert_eq!(job.run_at, jobs.now() + chrono::Duration::hours(1), "run_in counts from the test clock");
    assert_eq!(jobs.drain_all().await.unwrap(), DrainSummary::default());

    jobs.advance(Duration::from_secs(3599));
    assert_eq!(jobs.drain_all().await.unwrap(), DrainSummary::default());
    assert!(log.lines().is_empty());

    jobs.advance(Duration::from_secs(1));
    assert_eq!(jobs.drain_all().await.unwrap(), completed(1));
    assert_eq!(log.lines(), ["mail to ada@example.com: see you"]);
}

#[tokio::test]
async fn a_job_gets_the_state_given_with_state() {
    let jobs = TestJobs::new(MemoryStorage::new());
    let queue = Queue::new(jobs.storage());
    let id = queue.enqueue(SendEmail::new("ada@example.com", "hello")).await.unwrap();

    // Without its state, the attempt fails saying which state is missing.
    assert_eq!(jobs.drain_all().await.unwrap(), DrainSummary { failed: 1, ..DrainSummary::default() });
    let job = queue.get(id).await.unwrap().unwrap();
    assert!(job.errors[0].message.contains("Log"), "{:?}", job.errors);

    let log = Arc::new(Log::default());
    let jobs = jobs.shared_state(Arc::clone(&log));
    jobs.advance(Duration::from_secs(3600));
    assert_eq!(jobs.drain_all().await.unwrap(), completed(1));
    assert_eq!(log.lines(), ["mail to ada@example.com: hello"]);
}

#[tokio::test]
async fn a_drain_counts_each_attempt_by_how_it_ended() {
    let jobs = TestJobs::new(MemoryStorage::new());
    let queue = Queue::new(jobs.storage());
    let jobs = jobs.state(queue.clone());
    let cancelled_while_running = queue.enqueue(CancelMyself::new()).await.unwrap();
    for how in ["complete", "fail", "discard", "panic", "snooze"] {
        queue.enqueue(Ends::new(how)).await.unwrap();
    }
    let retried = queue.enqueue(Ends::new("fail")).max_attempts(2).await.unwrap();
    let cancelled = queue.enqueue(Ends::new("complete")).await.unwrap();
    queue.cancel(cancelled).await.unwrap();

    assert_eq!(
        jobs.drain(["outcomes"]).await.unwrap(),
        DrainSummary { completed: 1, failed: 1, discarded: 3, cancelled: 1, snoozed: 1 }
    );
    assert_eq!(state_of(&queue, cancelled_while_running).await, JobState::Cancelled);
    assert_eq!(state_of(&queue, retried).await, JobState::Retryable);
    // The default backoff after a first attempt is about 1 s; the snooze is 60 s.
    jobs.advance(Duration::from_secs(2));
    assert_eq!(
        jobs.drain(["outcomes"]).await.unwrap(),
        DrainSummary { discarded: 1, ..DrainSummary::default() },
        "the retried job fails its last attempt"
    );
    jobs.advance(Duration::from_secs(58));
    assert_eq!(
        jobs.drain(["outcomes"]).await.unwrap(),
        DrainSummary { snoozed: 1, ..DrainSummary::default() },
        "the snoozed job runs again (and snoozes again) without spending its attempt"
    );
}

#[tokio::test]
async fn a_drain_stops_at_its_limit_and_hands_the_next_job_back() {
    let jobs = TestJobs::new(MemoryStorage::new()).drain_limit(25);
    let queue = Queue::new(jobs.storage());
    let id = queue.enqueue(PollForever::new()).await.unwrap();

    let error = jobs.drain_all().await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("limit of 25 attempts"), "{message}");
    assert!(message.contains("snoozed: 25"), "{message}");
    let job = queue.get(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Available, 0), "handed back unrun, no attempt spent");
}

#[tokio::test]
async fn an_inline_enqueue_fails_when_its_run_reaches_the_limit() {
    let jobs = TestJobs::inline(MemoryStorage::new()).drain_limit(3);
    let queue = Queue::new(jobs.storage());
    let error = queue.enqueue(PollForever::new()).await.unwrap_err();
    assert!(error.to_string().contains("limit of 3 attempts"), "{error}");
}
