//! Writes outcomes to storage in batches, retrying until they are written.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    Error, Report, ReportOutcome, ReportParams, Result, Storage,
    worker::{backoff::StorageBackoff, held::HeldClaims, storage_errors},
};

pub(crate) struct Flusher {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) held: Arc<HeldClaims>,
    pub(crate) batch: usize,
    /// Completions delete their jobs (the worker keeps completed jobs for no time).
    pub(crate) delete_completed: bool,
}

impl Flusher {
    /// Flushes until the channel is closed and drained, or until `give_up` fires and
    /// nothing is queued (an executor that never returns holds the channel open). An
    /// outcome that cannot be written is retried, never dropped, until `give_up` fires
    /// (then its job stays running in storage and is rescued when its lease expires).
    ///
    /// A batch that storage refuses for a reason other than a lost connection, a
    /// timeout or a conflict is written one outcome at a time, so one outcome that
    /// storage will never take does not hold back the others. An outcome is given up
    /// (logged with storage's reason; its job is rescued after its lease) only when it
    /// is refused in a pass where another outcome was written: proof that storage works
    /// and refuses this outcome. When every outcome is refused (a full disk, a read-only
    /// server), all of them are kept and retried.
    pub(crate) async fn run(self, reports: mpsc::UnboundedReceiver<Report>, give_up: CancellationToken) {
        let mut left = Unwritten { held: &self.held, pending: Vec::new(), reports };
        let mut backoff = StorageBackoff::default();
        loop {
            if left.pending.is_empty() {
                // Outcomes already queued are still written after `give_up`; waiting
                // for more is not: a handler that never yields keeps the channel open.
                let next = tokio::select! {
                    biased;
                    report = left.reports.recv() => report,
                    () = give_up.cancelled() => None,
                };
                match next {
                    Some(report) => left.pending.push(report),
                    None => return,
                }
            }
            while left.pending.len() < self.batch {
                match left.reports.try_recv() {
                    Ok(report) => left.pending.push(report),
                    Err(_) => break,
                }
            }
            let result = match self.report(left.pending.clone()).await {
                Ok(outcome) => {
                    self.written(&outcome, std::mem::take(&mut left.pending));
                    Ok(())
                }
                Err(error) if !error.is_transient() => self.one_by_one(&mut left.pending, error).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, pending = left.pending.len(), ?delay, "writing outcomes failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = give_up.cancelled() => {
                            tracing::error!(
                                pending = left.pending.len(),
                                "gave up writing outcomes at shutdown; those jobs will be rescued after their leases"
                            );
                            return;
                        }
                    }
                }
            }
        }
    }

    /// One storage call writing `reports`; a failure is counted in
    /// `haul_storage_errors_total{operation="report"}`.
    async fn report(&self, reports: Vec<Report>) -> Result<ReportOutcome> {
        let params = ReportParams::new(reports).delete_completed(self.delete_completed);
        self.storage.report(params).await.inspect_err(|_| storage_errors::count("report"))
    }

    /// Releases the claims of written outcomes.
    fn written(&self, outcome: &ReportOutcome, reports: Vec<Report>) {
        for claim in &outcome.rejected {
            tracing::warn!(id = %claim.id, "outcome rejected: this worker no longer holds the job");
        }
        metrics::counter!("haul_outcomes_rejected_total").increment(outcome.rejected.len() as u64);
        self.held.remove_all(reports.iter().map(|report| report.claim));
    }

    /// Writes `pending` one outcome at a time after storage refused the whole batch
    /// with `batch_error`. Written outcomes leave `pending`; refused ones are given up
    /// if another outcome was written in this pass, else kept. A transient failure
    /// stops the pass, keeping the rest.
    async fn one_by_one(&self, pending: &mut Vec<Report>, batch_error: Error) -> Result<(), Error> {
        let mut refused: Vec<(Report, Error)> = Vec::new();
        let mut written_any = false;
        let mut stopped = None;
        for report in std::mem::take(pending) {
            if stopped.is_some() {
                pending.push(report);
                continue;
            }
            match self.report(vec![report.clone()]).await {
                Ok(outcome) => {
                    written_any = true;
                    self.written(&outcome, vec![report]);
                }
                Err(error) if !error.is_transient() => refused.push((report, error)),
                Err(error) => {
                    stopped = Some(error);
                    pending.push(report);
                }
            }
        }
        if written_any {
            for (report, error) in refused {
                self.refused(report, &error);
            }
        } else {
            pending.extend(refused.into_iter().map(|(report, _)| report));
        }
        match stopped {
            Some(error) => Err(error),
            None if pending.is_empty() => Ok(()),
            None => Err(batch_error),
        }
    }

    fn refused(&self, report: Report, error: &Error) {
        tracing::error!(
            id = %report.claim.id,
            %error,
            outcome = ?report.outcome,
            "storage refused this outcome; giving it up (the job will be rescued after its lease)"
        );
        metrics::counter!("haul_outcomes_refused_total").increment(1);
        self.held.remove(report.claim);
    }
}

/// The outcomes a flusher has not written: the batch in hand and those still queued.
/// However the flusher ends (given up at shutdown, or a storage that panicked), their
/// claims are released when it does: no heartbeat extends their leases any more (storage
/// rescues the jobs), and the claim loops stop waiting for them to be written.
struct Unwritten<'a> {
    held: &'a HeldClaims,
    pending: Vec<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
}

impl Drop for Unwritten<'_> {
    fn drop(&mut self) {
        self.reports.close();
        while let Ok(report) = self.reports.try_recv() {
            self.pending.push(report);
        }
        self.held.remove_all(self.pending.drain(..).map(|report| report.claim));
    }
}
