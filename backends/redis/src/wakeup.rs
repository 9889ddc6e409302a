//! Wake-ups: the scripts `PUBLISH` a queue's name on the prefix's channel when it gets
//! available jobs; one subscription per storage feeds a [`WakeupSender`].
//!
//! The subscription runs on its own connection, in a task started by the first
//! [`Storage::subscribe`](haul_core::Storage::subscribe) call and stopped when the
//! last clone of the storage is dropped. When its connection drops, it reconnects
//! (backing off up to [`MAX_BACKOFF`]) and resubscribes, then wakes every known queue,
//! since signals sent in between were lost. Nothing polls.

use std::time::Duration;

use futures_util::StreamExt as _;
use haul_core::{Result, WakeupSender, Wakeups};
use redis::{AsyncCommands, Client, aio::PubSub};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{RedisStorage, error::map_redis_error};

/// The first delay before reconnecting a dropped subscription.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// The longest delay between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The subscription of one storage, started on first use.
pub(crate) struct Subscriber {
    client: Client,
    started: Mutex<bool>,
}

impl Subscriber {
    /// A subscriber that connects with `client` once asked to.
    pub(crate) fn new(client: Client) -> Self {
        Self { client, started: Mutex::new(false) }
    }
}

impl RedisStorage {
    /// A receiver of wake-ups; starts the subscription on first use and returns once
    /// the server has confirmed it, so no signal published afterwards is missed.
    pub(crate) async fn subscribe_wakeups(&self) -> Result<Wakeups> {
        let inner = &self.inner;
        let mut started = inner.subscriber.started.lock().await;
        let receiver = inner.wakeups.subscribe();
        if !*started {
            let channel = inner.keys.channel();
            let pubsub = open(&inner.subscriber.client, &channel).await?;
            let task = Forwarder {
                client: inner.subscriber.client.clone(),
                channel,
                queues: inner.keys.queues(),
                sender: inner.wakeups.clone(),
                storage_conn: self.conn(),
                stop: self.stop_token(),
            };
            tokio::spawn(task.run(pubsub));
            *started = true;
        }
        Ok(receiver)
    }
}

/// Connects and subscribes to `channel`.
async fn open(client: &Client, channel: &str) -> Result<PubSub> {
    let mut pubsub = client.get_async_pubsub().await.map_err(map_redis_error)?;
    pubsub.subscribe(channel).await.map_err(map_redis_error)?;
    Ok(pubsub)
}

/// The task that forwards messages to the storage's wake-up sender.
struct Forwarder {
    client: Client,
    channel: String,
    queues: String,
    sender: WakeupSender,
    storage_conn: crate::conn::Conn,
    stop: CancellationToken,
}

impl Forwarder {
    async fn run(mut self, mut pubsub: PubSub) {
        loop {
            {
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        message = messages.next() => match message {
                            Some(message) => match message.get_payload::<String>() {
                                Ok(queue) => self.sender.notify(&queue),
                                Err(error) => tracing::warn!(%error, "ignoring a wake-up that is not a queue name"),
                            },
                            None => break,
                        },
                    }
                }
            }
            tracing::warn!(channel = %self.channel, "wake-up subscription dropped; resubscribing");
            pubsub = match self.reconnect().await {
                Some(pubsub) => pubsub,
                None => return,
            };
            self.wake_every_queue().await;
        }
    }

    /// Subscribes again, backing off between attempts; `None` once the storage is gone.
    async fn reconnect(&self) -> Option<PubSub> {
        let mut delay = MIN_BACKOFF;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            match open(&self.client, &self.channel).await {
                Ok(pubsub) => return Some(pubsub),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?delay, "cannot resubscribe to wake-ups");
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Signals lost while the subscription was down: wake every known queue.
    async fn wake_every_queue(&mut self) {
        match self.storage_conn.smembers::<_, Vec<String>>(&self.queues).await {
            Ok(queues) => queues.iter().for_each(|queue| self.sender.notify(queue)),
            Err(error) => tracing::warn!(error = %map_redis_error(error), "cannot list the queues to wake"),
        }
    }
}
