//! LISTEN/NOTIFY wake-ups: one background task per storage feeds a [`WakeupSender`].

use std::time::Duration;

use haul_core::{Result, WakeupSender};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::map_sqlx_error;

/// Shortest and longest pause before replacing a failed LISTEN connection.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A running listener. Dropping it stops the task and closes its connection.
#[derive(Debug)]
pub(crate) struct Listener {
    sender: WakeupSender,
    _stop: DropGuard,
}

impl Listener {
    /// Connects with `options` on a connection of its own (never one of the storage's
    /// pool), runs `LISTEN channel`, and spawns the task that relays notifications.
    /// Returns once the LISTEN is in place, so a notification sent after this returns
    /// is delivered.
    pub(crate) async fn start(options: PgConnectOptions, channel: String) -> Result<Self> {
        // A pool of one, used only to reconnect.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        let listener = listen(&pool, &channel).await?;
        let sender = WakeupSender::new();
        let stop = CancellationToken::new();
        tokio::spawn(relay(listener, pool, channel, sender.clone(), stop.clone()));
        Ok(Self { sender, _stop: stop.drop_guard() })
    }

    /// The sender the task feeds.
    pub(crate) fn sender(&self) -> &WakeupSender {
        &self.sender
    }
}

/// A listener on `channel` that never reconnects by itself: sqlx 0.9.1's `PgListener`
/// retries a failed reconnect at once, in a loop without a pause, for as long as the
/// error is an I/O error other than a refused connection (a reset, an unreachable
/// host, a failed DNS lookup); the relay below reconnects with a backoff instead.
async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.map_err(map_sqlx_error)?;
    listener.eager_reconnect(false);
    listener.listen(channel).await.map_err(map_sqlx_error)?;
    Ok(listener)
}

/// Relays notifications until `stop` fires. A lost or failed connection is replaced by
/// a fresh listener, re-LISTENed, after a pause that doubles with each failure in a row
/// (100 ms to 5 s); notifications sent meanwhile are lost, which the workers' poll
/// interval covers.
async fn relay(listener: PgListener, pool: PgPool, channel: String, sender: WakeupSender, stop: CancellationToken) {
    let mut listener = Some(listener);
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(current) = listener.as_mut() else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match listen(&pool, &channel).await {
                Ok(fresh) => {
                    tracing::info!(%channel, "LISTEN connection re-established");
                    backoff = MIN_BACKOFF;
                    listener = Some(fresh);
                }
                Err(error) => tracing::warn!(%channel, %error, "re-establishing the LISTEN connection failed"),
            }
            continue;
        };
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = current.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => sender.notify(notification.payload()),
            Ok(None) => {
                tracing::info!(%channel, "LISTEN connection lost; replacing it");
                listener = None;
            }
            Err(error) => {
                tracing::warn!(%channel, %error, "LISTEN connection failed; replacing it");
                // Give the broken connection back before asking the pool of one for another.
                listener = None;
            }
        }
    }
}
