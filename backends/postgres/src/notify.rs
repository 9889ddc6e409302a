//! Wake-ups for jobs enqueued through the pool: a NOTIFY sent after the insert
//! commits, by one task per storage that coalesces the queues of concurrent enqueues.
//!
//! A NOTIFY inside the insert's transaction would make PostgreSQL take its
//! database-wide NOTIFY lock at commit and hold it through the WAL flush, so
//! concurrent enqueues would commit one at a time. The notifier sends the wake-ups
//! from a transaction that writes nothing else (no flush to wait for), one statement
//! per round for every queue requested since the previous round.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use sqlx::{SqlStr, postgres::PgPool};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Shortest and longest pause before retrying a round that failed.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The handle on a running notifier task. Dropping it stops the task, after one last
/// attempt to send what is still pending.
#[derive(Debug)]
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

#[derive(Debug, Default)]
struct Shared {
    /// Queues requested and not yet taken by a round.
    pending: Mutex<BTreeSet<String>>,
    /// Signalled after each request; a signal with no waiter is kept for the next wait,
    /// so a request made while a round is in flight starts the next round.
    requested: Notify,
}

impl Shared {
    fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn put_back(&self, queues: BTreeSet<String>) {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).extend(queues);
    }
}

impl Notifier {
    /// Spawns the task (on the current tokio runtime), which runs `sql` (notify.sql)
    /// on `pool`.
    pub(crate) fn start(pool: PgPool, sql: SqlStr, channel: String) -> Self {
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        tokio::spawn(run(Arc::clone(&shared), pool, sql, channel, stop.clone()));
        Self { shared, _stop: stop.drop_guard() }
    }

    /// Asks for a NOTIFY of each of `queues`, sent by a round that starts after this
    /// call (so after the caller's commit when it calls this once committed).
    pub(crate) fn request(&self, queues: impl IntoIterator<Item = String>) {
        self.shared.put_back(queues.into_iter().collect());
        self.shared.requested.notify_one();
    }
}

/// Runs rounds until `stop` fires, then makes one last attempt for what is pending.
async fn run(shared: Arc<Shared>, pool: PgPool, sql: SqlStr, channel: String, stop: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = shared.requested.notified() => {}
        }
        let queues = shared.take();
        if queues.is_empty() {
            continue;
        }
        match send(&pool, &sql, &queues).await {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(error) if pool.is_closed() => {
                tracing::debug!(%channel, %error, queues = queues.len(), "pool closed; wake-up notifications dropped");
                return;
            }
            Err(error) => {
                tracing::warn!(%channel, %error, queues = queues.len(), ?backoff, "sending wake-up notifications failed; retrying");
                shared.put_back(queues);
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                shared.requested.notify_one();
            }
        }
    }
    let queues = shared.take();
    if queues.is_empty() || pool.is_closed() {
        return;
    }
    if let Err(error) = send(&pool, &sql, &queues).await {
        tracing::warn!(%channel, %error, queues = queues.len(), "sending the last wake-up notifications failed");
    }
}

async fn send(pool: &PgPool, sql: &SqlStr, queues: &BTreeSet<String>) -> Result<(), sqlx::Error> {
    let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
    sqlx::query(sql.clone()).bind(queues).execute(pool).await?;
    Ok(())
}
