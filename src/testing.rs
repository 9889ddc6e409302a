//! Test an application's jobs without running a worker: [`TestJobs`].
//!
//! A [`TestJobs`] wraps any storage (memory here; the application's real PostgreSQL or
//! Redis works the same) and gives the application a storage handle to build its
//! [`Queue`](crate::Queue) from. Every call through that handle reads the **test
//! clock**, which starts at the real time and moves only when the test says so
//! ([`TestJobs::advance`], [`TestJobs::set_now`]): `run_in(1 h)` is an hour after the
//! test clock, and a retry's backoff is counted on it, so a test never sleeps.
//!
//! Then, in the default **collect mode**, the test either asserts on what was enqueued
//! ([`TestJobs::assert_enqueued`], [`TestJobs::assert_enqueued_json`],
//! [`TestJobs::refute_enqueued`], [`TestJobs::all_enqueued`]) or runs the jobs with
//! [`TestJobs::drain_all`] / [`TestJobs::drain`]: each due job runs through the
//! worker's own code (decoding, `State<T>` injection, timeouts, panics, retry policy,
//! discard and snooze), one at a time, and its outcome is stored as a worker would
//! store it; the drain returns a [`DrainSummary`] to `assert_eq!` against. In **inline
//! mode** ([`TestJobs::inline`]) an enqueue runs the jobs before it returns.
//!
//! # The flow
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use haul::prelude::*;
//! use haul::testing::{DrainSummary, TestJobs};
//!
//! /// Where the application sends its mail (a fake one in tests).
//! #[derive(Default)]
//! struct Outbox {
//!     sent: Mutex<Vec<String>>,
//! }
//!
//! #[job(queue = "welcome")]
//! async fn send_welcome(outbox: State<Outbox>, to: String) -> Result<(), JobError> {
//!     outbox.sent.lock().unwrap().push(format!("welcome, {to}"));
//!     Ok(())
//! }
//!
//! /// The application code under test.
//! async fn sign_up(queue: &Queue, email: &str) -> haul::Result<()> {
//!     queue.enqueue(SendWelcome::new(email)).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> haul::Result<()> {
//! let outbox = Arc::new(Outbox::default());
//! let jobs = TestJobs::new(MemoryStorage::new()).shared_state(Arc::clone(&outbox));
//! let queue = Queue::new(jobs.storage());
//!
//! sign_up(&queue, "ada@example.com").await?;
//!
//! jobs.assert_enqueued::<SendWelcome>(|job| job.to == "ada@example.com").await;
//! assert_eq!(jobs.drain_all().await?, DrainSummary { completed: 1, ..DrainSummary::default() });
//! assert_eq!(*outbox.sent.lock().unwrap(), ["welcome, ada@example.com"]);
//! jobs.refute_enqueued::<SendWelcome>(|_| true).await; // it ran: nothing is left
//! # Ok(())
//! # }
//! ```
//!
//! [`TestJobs::state`] gives a value the way `Worker::builder(..).state(..)` does;
//! [`TestJobs::shared_state`] gives one the test keeps a handle to, as above.
//!
//! # Retries and the clock
//!
//! A failed attempt is stored `retryable`, due after its backoff on the test clock. A
//! drain does not run it until [`TestJobs::advance`] (or [`TestJobs::set_now`]) has
//! moved the clock past it. [`TestJobs::drain`] runs only the queues it names.
//!
//! ```
//! use haul::prelude::*;
//! use haul::testing::{DrainSummary, TestJobs};
//!
//! #[job(queue = "payments", backoff = RetryPolicy::fixed(Duration::from_secs(30)))]
//! async fn charge_card(ctx: JobContext, cents: u64) -> Result<(), String> {
//!     if ctx.attempt() == 1 {
//!         return Err(format!("the bank timed out charging {cents} cents"));
//!     }
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> haul::Result<()> {
//! let jobs = TestJobs::new(MemoryStorage::new());
//! let queue = Queue::new(jobs.storage());
//! let id = queue.enqueue(ChargeCard::new(4200)).await?;
//!
//! assert_eq!(jobs.drain(["payments"]).await?, DrainSummary { failed: 1, ..DrainSummary::default() });
//! let job = queue.get(id).await?.unwrap();
//! assert_eq!(job.state, JobState::Retryable);
//! assert_eq!(job.run_at, jobs.now() + chrono::Duration::seconds(30));
//!
//! // Not due yet: nothing runs.
//! assert_eq!(jobs.drain(["payments"]).await?, DrainSummary::default());
//!
//! jobs.advance(Duration::from_secs(30));
//! assert_eq!(jobs.drain(["payments"]).await?, DrainSummary { completed: 1, ..DrainSummary::default() });
//!
//! // The clock can also be set outright (to any instant, earlier or later).
//! let tomorrow = jobs.now() + chrono::Duration::days(1);
//! jobs.set_now(tomorrow);
//! assert_eq!(jobs.now(), tomorrow);
//! # Ok(())
//! # }
//! ```
//!
//! # Scheduled jobs and jobs that enqueue jobs
//!
//! A job enqueued with `run_in` or `run_at` runs at the first drain once the clock has
//! reached it. Jobs enqueued by the jobs a drain runs (here through a [`Queue`](crate::Queue)
//! given as state) run in the same drain when they are due.
//!
//! ```
//! use haul::prelude::*;
//! use haul::testing::{DrainSummary, TestJobs};
//!
//! #[job(queue = "orders")]
//! async fn place_order(queue: State<Queue>, order: u32) -> Result<(), JobError> {
//!     queue.enqueue(ShipOrder::new(order)).await?;
//!     Ok(())
//! }
//!
//! #[job]
//! async fn ship_order(order: u32) -> Result<(), JobError> {
//!     let _ = order;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> haul::Result<()> {
//! let jobs = TestJobs::new(MemoryStorage::new());
//! let queue = Queue::new(jobs.storage());
//! let jobs = jobs.state(queue.clone());
//!
//! queue.enqueue(PlaceOrder::new(7)).run_in(Duration::from_secs(3600)).await?;
//! assert_eq!(jobs.drain_all().await?, DrainSummary::default()); // due in an hour
//!
//! jobs.advance(Duration::from_secs(3600));
//! assert_eq!(jobs.drain_all().await?, DrainSummary { completed: 2, ..DrainSummary::default() });
//! # Ok(())
//! # }
//! ```
//!
//! # Assertions
//!
//! The assertions read the **enqueued** jobs: those stored `scheduled`, `available` or
//! `retryable` ([`TestJobs::enqueued`] lists them). A typed assertion matches the jobs of
//! its type with a predicate; a JSON one matches a kind name and arguments that contain
//! the given JSON (every key of an object, recursively; other values exactly).
//!
//! ```
//! use haul::prelude::*;
//! use haul::testing::TestJobs;
//! use serde_json::json;
//!
//! #[job(queue = "invoices")]
//! async fn send_invoice(to: String, cents: u64) -> Result<(), JobError> {
//!     let _ = (to, cents);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> haul::Result<()> {
//! let jobs = TestJobs::new(MemoryStorage::new());
//! let queue = Queue::new(jobs.storage());
//! queue.enqueue(SendInvoice::new("ada@example.com", 4200)).await?;
//! queue.enqueue(SendInvoice::new("bob@example.com", 990)).run_in(Duration::from_secs(60)).await?;
//!
//! jobs.assert_enqueued::<SendInvoice>(|job| job.cents > 4000).await;
//! jobs.assert_enqueued_json("send_invoice", json!({ "to": "bob@example.com" })).await;
//! jobs.refute_enqueued::<SendInvoice>(|job| job.to.ends_with("@example.org")).await;
//! jobs.refute_enqueued_json("send_invoice", json!({ "cents": 0 })).await;
//!
//! let invoices = jobs.all_enqueued::<SendInvoice>().await?;
//! assert_eq!(invoices.iter().map(|job| job.cents).collect::<Vec<_>>(), [4200, 990]);
//! let records = jobs.enqueued().await?;
//! assert_eq!(records[1].state, JobState::Scheduled);
//! # Ok(())
//! # }
//! ```
//!
//! A failing assertion panics with what was enqueued:
//!
//! ```text
//! expected an enqueued job of type `app::SendInvoice` matching the predicate, found none; enqueued jobs (2):
//!   - send_invoice on queue `invoices` (available): {"cents":4200,"to":"ada@example.com"}
//!   - send_invoice on queue `invoices` (scheduled, due in 60s): {"cents":990,"to":"bob@example.com"}
//! ```
//!
//! # Inline mode
//!
//! With [`TestJobs::inline`], an enqueue through [`TestJobs::storage`] stores the jobs,
//! then runs every available job before it returns, and the jobs those runs enqueue
//! that are due. Jobs due later (scheduled ones, a retry after a failed attempt) wait
//! for a drain after [`TestJobs::advance`].
//!
//! ```
//! use haul::prelude::*;
//! use haul::testing::{DrainSummary, TestJobs};
//!
//! #[job]
//! async fn refresh_avatar(user: u32) -> Result<(), JobError> {
//!     let _ = user;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> haul::Result<()> {
//! let jobs = TestJobs::inline(MemoryStorage::new());
//! let queue = Queue::new(jobs.storage());
//!
//! let now = queue.enqueue(RefreshAvatar::new(1)).await?;
//! assert_eq!(queue.get(now).await?.map(|job| job.state), Some(JobState::Completed));
//!
//! let later = queue.enqueue(RefreshAvatar::new(2)).run_in(Duration::from_secs(60)).await?;
//! assert_eq!(queue.get(later).await?.map(|job| job.state), Some(JobState::Scheduled));
//! jobs.advance(Duration::from_secs(60));
//! assert_eq!(jobs.drain_all().await?, DrainSummary { completed: 1, ..DrainSummary::default() });
//! # Ok(())
//! # }
//! ```
//!
//! # The drain limit
//!
//! A drain runs at most [`DEFAULT_DRAIN_LIMIT`] attempts, or as many as
//! [`TestJobs::drain_limit`] says: a job that always snoozes without delay, or enqueues
//! itself, would otherwise keep it going forever. Reaching the limit with jobs still
//! due hands the next job back unrun and fails.
//!
//! ```
//! use haul::prelude::*;
//! use haul::testing::TestJobs;
//!
//! #[job]
//! async fn poll_forever() -> Result<(), JobError> {
//!     Err(JobError::snooze(Duration::ZERO))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> haul::Result<()> {
//! let jobs = TestJobs::new(MemoryStorage::new()).drain_limit(100);
//! Queue::new(jobs.storage()).enqueue(PollForever::new()).await?;
//! let error = jobs.drain_all().await.unwrap_err();
//! assert!(error.to_string().contains("limit of 100 attempts"));
//! # Ok(())
//! # }
//! ```
//!
//! # Over PostgreSQL or Redis
//!
//! Only the storage differs; the test clock is passed to every call, so the database's
//! own clock does not matter. Give each test a storage of its own (a schema, a key
//! prefix) so tests running at once do not drain each other's jobs.
//!
//! ```no_run
//! use haul::Storage;
//!
//! # async fn example() -> haul::Result<()> {
//! let storage = haul::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! storage.migrate().await?;
//! let jobs = haul::testing::TestJobs::new(storage);
//! # let _ = jobs;
//! # Ok(())
//! # }
//! ```

#[doc(inline)]
pub use haul_core::testing::{DEFAULT_DRAIN_LIMIT, DrainSummary, TestJobs};
