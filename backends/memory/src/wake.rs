//! Wake-ups gathered while the store is locked and sent once it is released.

use haul_core::WakeupSender;

/// The distinct queues that got available jobs during one call.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    queues: Vec<String>,
}

impl Wake {
    /// Remembers that `queue` has work.
    pub(crate) fn add(&mut self, queue: &str) {
        if !self.queues.iter().any(|known| known == queue) {
            self.queues.push(queue.to_owned());
        }
    }

    /// Signals every remembered queue once.
    pub(crate) fn send(self, sender: &WakeupSender) {
        for queue in &self.queues {
            sender.notify(queue);
        }
    }
}
