//! Writes outcomes to storage in batches, retrying until they are written.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Report, ReportParams, Storage, worker::backoff::StorageBackoff, worker::held::HeldJobs};

pub(crate) struct Flusher {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) held: Arc<HeldJobs>,
    pub(crate) batch: usize,
}

impl Flusher {
    /// Flushes until the channel is closed and drained. An outcome that cannot be
    /// written is retried, never dropped, until `give_up` fires (then its job stays
    /// running in storage and is rescued when its lease expires).
    pub(crate) async fn run(self, mut reports: mpsc::UnboundedReceiver<Report>, give_up: CancellationToken) {
        let mut pending: Vec<Report> = Vec::new();
        let mut backoff = StorageBackoff::default();
        loop {
            if pending.is_empty() {
                match reports.recv().await {
                    Some(report) => pending.push(report),
                    None => return,
                }
            }
            while pending.len() < self.batch {
                match reports.try_recv() {
                    Ok(report) => pending.push(report),
                    Err(_) => break,
                }
            }
            match self.storage.report(ReportParams::new(pending.clone())).await {
                Ok(outcome) => {
                    backoff.reset();
                    for id in &outcome.rejected {
                        tracing::warn!(id = %id, "outcome rejected: this worker no longer holds the job");
                    }
                    metrics::counter!("haul_outcomes_rejected_total").increment(outcome.rejected.len() as u64);
                    for report in pending.drain(..) {
                        self.held.remove(report.claim.id);
                    }
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, pending = pending.len(), ?delay, "writing outcomes failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = give_up.cancelled() => {
                            tracing::error!(
                                pending = pending.len(),
                                "gave up writing outcomes at shutdown; those jobs will be rescued after their leases"
                            );
                            return;
                        }
                    }
                }
            }
        }
    }
}
