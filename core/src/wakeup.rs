//! In-process fan-out of "new work on queue X" and "job X was cancelled" signals.
//!
//! Backends feed a [`WakeupSender`] from their own notification mechanism
//! (LISTEN/NOTIFY, pub/sub, or directly for memory); workers hold [`Wakeups`]
//! receivers and fall back to polling (new work) or to their heartbeat (cancels) when
//! nothing arrives.
//!
//! A signal travels as one string: a queue name for new work, [`cancel_signal`]'s
//! `cancel:<job id>` for a cancel. The two cannot be confused, because a queue name
//! never holds a `:`.

use tokio::sync::broadcast;

use crate::JobId;

/// The prefix of a cancel signal.
const CANCEL_PREFIX: &str = "cancel:";

/// The signal a storage sends when it records a cancel request for a running job, so
/// that its holder beats at once instead of at its next heartbeat.
///
/// ```
/// use haul_core::{JobId, wakeup::cancel_signal};
///
/// let id = JobId::new();
/// assert_eq!(cancel_signal(id), format!("cancel:{id}"));
/// ```
pub fn cancel_signal(id: JobId) -> String {
    format!("{CANCEL_PREFIX}{id}")
}

/// What [`Wakeups::next_cancel`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelSignal {
    /// A cancel was requested for this job.
    Job(JobId),
    /// The sender is gone: no signal will come any more.
    Closed,
}

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

    /// Sends `signal`: a queue name (that queue may have work) or a
    /// [`cancel_signal`], as received from the backend's notification mechanism. Does
    /// nothing if nobody listens.
    pub fn notify(&self, signal: &str) {
        if self.sender.receiver_count() > 0 {
            // An error only means every receiver is gone.
            let _ = self.sender.send(signal.to_owned());
        }
    }

    /// Signals that a cancel was requested for the running job `id`.
    pub fn notify_cancel(&self, id: JobId) {
        self.notify(&cancel_signal(id));
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

    /// Waits for the next cancel signal. Signals missed because this receiver lagged
    /// behind are skipped: the holder's heartbeat learns of those cancels.
    pub async fn next_cancel(&mut self) -> CancelSignal {
        loop {
            match self.receiver.recv().await {
                Ok(signal) => {
                    if let Some(id) = signal.strip_prefix(CANCEL_PREFIX).and_then(|id| id.parse().ok()) {
                        return CancelSignal::Job(JobId(id));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return CancelSignal::Closed,
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

    #[tokio::test]
    async fn cancel_signals_are_told_apart_from_queue_names() {
        let sender = WakeupSender::new();
        let mut for_claims = sender.subscribe();
        let mut for_cancels = sender.subscribe();
        let id = JobId::new();
        sender.notify_cancel(id);
        sender.notify("mail");
        assert!(for_claims.wait_for(&["mail".to_owned()]).await, "a cancel signal is no queue's wake-up");
        assert_eq!(for_cancels.next_cancel().await, CancelSignal::Job(id));
        sender.notify("mail");
        drop(sender);
        assert_eq!(for_cancels.next_cancel().await, CancelSignal::Closed, "queue wake-ups are no cancel");
    }
}
