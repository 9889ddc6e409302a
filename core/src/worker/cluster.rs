//! The worker's place in its cluster: its record in the registry, refreshed on a short
//! interval, and the namespace's leadership, which it takes (unless it opted out) and
//! renews on the same interval. Maintenance acts only while [`Leader::is_leading`].

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    LeadershipParams, Storage, Timestamp, WorkerBeat,
    worker::{backoff::StorageBackoff, held::HeldClaims, storage_errors},
};

/// A lead this worker holds, by its own clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lead {
    term: u64,
    /// When the lead ends by this worker's clock: counted from just before the
    /// acquisition that last renewed it was sent, so it never ends later than the
    /// storage's own `expires_at`.
    deadline: Instant,
}

/// Whether this worker leads: written by [`Membership`], read by maintenance.
#[derive(Debug)]
pub(crate) struct Leader {
    lead: Mutex<Option<Lead>>,
    /// Goes up each time this worker begins a lead, so maintenance starts at once.
    began: watch::Sender<u64>,
}

impl Default for Leader {
    fn default() -> Self {
        Self { lead: Mutex::new(None), began: watch::Sender::new(0) }
    }
}

impl Leader {
    fn lock(&self) -> MutexGuard<'_, Option<Lead>> {
        self.lead.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this worker may act as leader now: it holds a lead whose deadline has
    /// not passed.
    pub(crate) fn is_leading(&self) -> bool {
        self.lock().is_some_and(|lead| lead.deadline > Instant::now())
    }

    /// Changes each time this worker begins to lead.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.began.subscribe()
    }

    fn deadline(&self) -> Option<Instant> {
        self.lock().map(|lead| lead.deadline)
    }

    /// Records that storage granted (or renewed) the lead under `term` until no earlier
    /// than `deadline`. Returns the term when this begins a lead: a new term, or the
    /// first live one after a lapse. A grant whose deadline has already passed (the
    /// reply took a whole lease) is not a lead.
    fn granted(&self, term: u64, deadline: Instant) -> Option<u64> {
        let now = Instant::now();
        let mut lead = self.lock();
        if deadline <= now {
            return None;
        }
        let began = !lead.is_some_and(|held| held.term == term && held.deadline > now);
        let deadline = match *lead {
            Some(held) if !began => held.deadline.max(deadline),
            _ => deadline,
        };
        *lead = Some(Lead { term, deadline });
        drop(lead);
        if began {
            self.began.send_modify(|count| *count = count.wrapping_add(1));
            metrics::gauge!("haul_worker_is_leader").set(1.0);
            Some(term)
        } else {
            None
        }
    }

    /// Ends the lead if its deadline has passed; returns its term if it was live until now.
    fn lapse_if_due(&self) -> Option<u64> {
        let mut lead = self.lock();
        let held = (*lead)?;
        if held.deadline > Instant::now() {
            return None;
        }
        *lead = None;
        drop(lead);
        metrics::gauge!("haul_worker_is_leader").set(0.0);
        Some(held.term)
    }

    /// Ends the lead, live or not; returns its term and whether it was still live.
    fn end(&self) -> Option<(u64, bool)> {
        let held = self.lock().take()?;
        metrics::gauge!("haul_worker_is_leader").set(0.0);
        Some((held.term, held.deadline > Instant::now()))
    }
}

/// The task that keeps this worker's record and, if it may lead, takes and renews the
/// lead: at start, then every quarter of the lease. The record lives the whole lease;
/// the lead lives three quarters of it ([`Membership::lead_ttl`]), so a dead leader's
/// lead runs out and is taken at the next try of another worker within one lease.
pub(crate) struct Membership {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) held: Arc<HeldClaims>,
    pub(crate) leader: Arc<Leader>,
    pub(crate) worker_id: String,
    pub(crate) queues: Vec<String>,
    pub(crate) concurrency: usize,
    pub(crate) lease: Duration,
    pub(crate) eligible: bool,
    pub(crate) host: String,
    pub(crate) started_at: Timestamp,
    /// The last term storage granted this worker, until storage says another leads:
    /// what it gives up at shutdown.
    pub(crate) last_term: Option<u64>,
}

impl Membership {
    /// Beats and renews until `stop`, then returns itself for [`Membership::leave`].
    pub(crate) async fn run(mut self, stop: CancellationToken) -> Self {
        let interval = self.lease / 4;
        let mut backoff = StorageBackoff::default();
        loop {
            let next = if self.round().await {
                backoff.reset();
                Instant::now() + interval
            } else {
                Instant::now() + backoff.next_delay().min(interval)
            };
            loop {
                let deadline = self.leader.deadline();
                tokio::select! {
                    () = stop.cancelled() => return self,
                    () = tokio::time::sleep_until(next) => break,
                    () = sleep_until_some(deadline) => self.lapse_if_due(),
                }
            }
        }
    }

    /// How long a granted lead lasts: three quarters of the leader lease, so that with a
    /// renewal every quarter a dead leader is replaced within one leader lease.
    fn lead_ttl(&self) -> Duration {
        self.lease.mul_f64(0.75)
    }

    /// One beat and, if eligible, one acquisition. Returns false if either failed.
    async fn round(&mut self) -> bool {
        let held = u32::try_from(self.held.len()).unwrap_or(u32::MAX);
        let beat = WorkerBeat::new(self.worker_id.clone(), self.started_at, self.lease)
            .process(self.host.clone(), std::process::id())
            .serving(self.queues.clone(), u32::try_from(self.concurrency).unwrap_or(u32::MAX))
            .held(held);
        let beaten = match self.storage.beat_worker(beat).await {
            Ok(()) => true,
            Err(error) => {
                storage_errors::count("beat_worker");
                tracing::warn!(%error, "refreshing this worker's registry record failed; retrying");
                false
            }
        };
        if !self.eligible {
            return beaten;
        }
        // Storage's end of the lead is at least this late, by this worker's clock.
        let sent_at = Instant::now();
        let acquired =
            self.storage.acquire_leadership(LeadershipParams::new(self.worker_id.clone(), self.lead_ttl())).await;
        self.lapse_if_due();
        match acquired {
            Ok(Some(lead)) if lead.worker_id == self.worker_id => {
                self.last_term = Some(lead.term);
                if let Some(term) = self.leader.granted(lead.term, sent_at + self.lead_ttl()) {
                    tracing::info!(worker_id = %self.worker_id, term, lease = ?self.lead_ttl(), "became the leader");
                }
                beaten
            }
            Ok(_) => {
                self.last_term = None;
                if let Some((term, true)) = self.leader.end() {
                    tracing::info!(worker_id = %self.worker_id, term, "stopped leading: another worker leads");
                }
                beaten
            }
            Err(error) => {
                storage_errors::count("acquire_leadership");
                let leading = self.leader.is_leading();
                tracing::warn!(%error, leading, "taking or renewing the lead failed; retrying");
                false
            }
        }
    }

    fn lapse_if_due(&self) {
        if let Some(term) = self.leader.lapse_if_due() {
            tracing::info!(
                worker_id = %self.worker_id,
                term,
                "stopped leading: the lead was not renewed within its lease"
            );
        }
    }

    /// At shutdown, once nothing runs any more: gives the lead up (so another worker
    /// takes it at once) and removes this worker's record. Failures are logged only:
    /// the lead and the record then end with their lease.
    pub(crate) async fn leave(self) {
        if let Some((term, true)) = self.leader.end() {
            tracing::info!(worker_id = %self.worker_id, term, "stopped leading: shutting down");
        }
        if let Some(term) = self.last_term
            && let Err(error) = self.storage.release_leadership(&self.worker_id, term).await
        {
            storage_errors::count("release_leadership");
            tracing::warn!(%error, term, "giving the lead up at shutdown failed; it ends with its lease");
        }
        if let Err(error) = self.storage.remove_worker(&self.worker_id).await {
            storage_errors::count("remove_worker");
            tracing::warn!(%error, "removing this worker's registry record failed; it ends with its lease");
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The host name for the registry: `HOSTNAME`, else `/etc/hostname`, else `"unknown"`.
pub(crate) fn host_name() -> String {
    let named = |name: Option<String>| name.map(|name| name.trim().to_owned()).filter(|name| !name.is_empty());
    named(std::env::var("HOSTNAME").ok())
        .or_else(|| named(std::fs::read_to_string("/etc/hostname").ok()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lead_lasts_until_its_own_deadline_and_a_renewal_moves_it_forward() {
        let leader = Leader::default();
        let mut began = leader.subscribe();
        assert!(!leader.is_leading());
        let now = Instant::now();
        assert_eq!(leader.granted(3, now + Duration::from_secs(10)), Some(3), "a new lead begins");
        assert!(leader.is_leading());
        assert!(began.has_changed().unwrap_or(false));
        began.borrow_and_update();
        assert_eq!(leader.granted(3, now + Duration::from_secs(20)), None, "a renewal is no new lead");
        assert_eq!(leader.deadline(), Some(now + Duration::from_secs(20)));
        assert!(!began.has_changed().unwrap_or(true));
        assert_eq!(leader.granted(4, now + Duration::from_secs(15)), Some(4), "a new term is a new lead");
        assert_eq!(leader.lapse_if_due(), None, "a live lead does not lapse");
        assert_eq!(leader.end(), Some((4, true)));
        assert!(!leader.is_leading());
    }

    #[tokio::test]
    async fn a_lead_granted_too_late_or_past_its_deadline_is_no_lead() {
        let leader = Leader::default();
        assert_eq!(leader.granted(1, Instant::now()), None, "the reply came after the lease");
        assert!(!leader.is_leading());
        assert_eq!(leader.granted(1, Instant::now() + Duration::from_millis(30)), Some(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(!leader.is_leading(), "the lead ends at its deadline, renewed or not");
        assert_eq!(leader.lapse_if_due(), Some(1));
        assert_eq!(leader.end(), None);
        assert_eq!(
            leader.granted(1, Instant::now() + Duration::from_secs(1)),
            Some(1),
            "the same term after a lapse begins a lead again"
        );
    }

    #[test]
    fn the_host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }
}
