//! In-process fan-out of "new work on queue X" signals.
//!
//! Backends feed a [`WakeupSender`] from their own notification mechanism
//! (LISTEN/NOTIFY, pub/sub, or directly for memory); workers hold a [`Wakeups`]
//! receiver and fall back to polling when nothing arrives.

use tokio::sync::broadcast;

/// Capacity of the wake-up channel; a receiver that lags simply wakes up.
const CHANNEL_CAPACITY: usize = 1024;

/// The sending side: one per storage instance, cheap to clone.
#[derive(Clone, Debug)]
pub struct WakeupSender {
    sender: broadcast::Sender<String>,
}

impl WakeupSender {
    /// A sender with no receivers yet.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self { sender }
    }

    /// Signals that `queue` may have work. Does nothing if nobody listens.
    pub fn notify(&self, queue: &str) {
        if self.sender.receiver_count() > 0 {
            // An error only means every receiver is gone.
            let _ = self.sender.send(queue.to_owned());
        }
    }

    /// A new receiver of signals sent from now on.
    pub fn subscribe(&self) -> Wakeups {
        Wakeups { receiver: self.sender.subscribe() }
    }
}

impl Default for WakeupSender {
    fn default() -> Self {
        Self::new()
    }
}

/// The receiving side, held by one worker.
#[derive(Debug)]
pub struct Wakeups {
    receiver: broadcast::Receiver<String>,
}

impl Wakeups {
    /// Waits until one of `queues` is signalled (a lagged receiver counts as signalled).
    /// Returns `false` when the sender is gone and no signal will ever come.
    pub async fn wait_for(&mut self, queues: &[String]) -> bool {
        loop {
            match self.receiver.recv().await {
                Ok(queue) if queues.contains(&queue) => return true,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => return true,
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_only_for_the_queues_asked_for() {
        let sender = WakeupSender::new();
        let mut wakeups = sender.subscribe();
        sender.notify("other");
        sender.notify("mail");
        assert!(wakeups.wait_for(&["mail".to_owned()]).await);
        drop(sender);
        assert!(!wakeups.wait_for(&["mail".to_owned()]).await);
    }
}
