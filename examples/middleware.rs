//! Middleware and metadata: every job carries the tenant of the code that enqueued it.
//!
//! - An **enqueue middleware** on the `Queue` stamps each job's metadata with the
//!   current tenant (a task-local here; a request extension in a web service).
//! - A **job middleware** on the worker reads it back and makes it the current tenant
//!   while the handler runs.
//! - The handler reads the tenant through the middleware's task-local, and the job's
//!   own metadata through `JobContext::metadata`.
//!
//! Run with `cargo run --example middleware`; it exits non-zero if a job saw the wrong
//! tenant.

use std::sync::{Arc, Mutex};

use haul::middleware::{EnqueueNext, Next, enqueue_fn, from_fn};
use haul::prelude::*;

tokio::task_local! {
    /// The tenant the current code acts for.
    static TENANT: String;
}

/// The metadata key the tenant travels under.
const TENANT_KEY: &str = "tenant";

/// What each invoice job saw: (invoice number, tenant from the middleware, tenant from
/// the job's metadata).
#[derive(Default)]
struct Seen(Mutex<Vec<(u32, String, String)>>);

/// Pretends to build an invoice for the current tenant.
#[job(queue = "invoices")]
async fn build_invoice(seen: State<Seen>, ctx: JobContext, number: u32) -> Result<(), JobError> {
    let current = TENANT.try_with(Clone::clone).unwrap_or_default();
    let stored = ctx.metadata().get(TENANT_KEY).cloned().unwrap_or_default();
    println!("invoice {number} for tenant {current}");
    let seen: &Seen = &seen;
    seen.0.lock().map_err(|_| JobError::fail("poisoned"))?.push((number, current, stored));
    Ok(())
}

#[tokio::main]
async fn main() -> haul::Result<()> {
    let storage = MemoryStorage::new();

    // Enqueue side: stamp every job with the tenant of the code that enqueues it.
    let queue = Queue::new(storage.clone()).middleware(enqueue_fn(|mut jobs: Vec<haul::NewJob>, next: EnqueueNext| {
        let tenant = TENANT.try_with(Clone::clone);
        async move {
            if let Ok(tenant) = tenant {
                for job in &mut jobs {
                    job.metadata.entry(TENANT_KEY.to_owned()).or_insert_with(|| tenant.clone());
                }
            }
            next.run(jobs).await
        }
    }));
    TENANT.scope("acme".to_owned(), queue.enqueue_many((1..=3).map(BuildInvoice::new))).await?;
    TENANT.scope("globex".to_owned(), async { queue.enqueue(BuildInvoice::new(4)).await }).await?;

    // Worker side: run each handler as the tenant its job was enqueued for.
    let seen = Arc::new(Seen::default());
    let worker = Worker::builder(storage)
        .queues(["invoices"])
        .shared_state(Arc::clone(&seen))
        .middleware(from_fn(|ctx: JobContext, next: Next| async move {
            let tenant = ctx.metadata().get(TENANT_KEY).cloned().unwrap_or_else(|| "none".to_owned());
            TENANT.scope(tenant, next.run(ctx)).await
        }))
        .build();
    let all_four = {
        let seen = Arc::clone(&seen);
        async move {
            while seen.0.lock().map_or(0, |seen| seen.len()) < 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    worker.run_until(all_four).await?;

    let mut seen = seen.0.lock().map(|seen| seen.clone()).unwrap_or_default();
    seen.sort();
    let expected = [(1, "acme"), (2, "acme"), (3, "acme"), (4, "globex")];
    for ((number, current, stored), (want_number, want_tenant)) in seen.iter().zip(expected) {
        if *number != want_number || current != want_tenant || stored != want_tenant {
            return Err(haul::Error::InvalidArgument(
                format!("invoice {number} ran as {current} (stored {stored}); expected {want_tenant}").into(),
            ));
        }
    }
    println!("every invoice ran as the tenant that enqueued it");
    Ok(())
}
