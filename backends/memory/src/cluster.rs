//! The cluster layer: the registry of live workers and the namespace's one leader.
//!
//! Kept in the [`Store`](crate::store::Store), so every call runs under the same lock
//! as the jobs and an acquisition is atomic.

use std::{collections::BTreeMap, time::Duration};

use haul_core::{Leadership, Timestamp, WorkerBeat, WorkerRecord};

use crate::time::after;

/// The workers and the leadership of one storage.
#[derive(Debug, Default)]
pub(crate) struct Cluster {
    /// The worker records by id (id order is listing order). Expired records are
    /// dropped by [`Cluster::beat`] and [`Cluster::list`].
    workers: BTreeMap<String, WorkerRecord>,
    /// The last term handed out (0: never). Survives releases and lapses.
    term: u64,
    /// The current lead, possibly lapsed; `None` when never taken or released.
    lead: Option<Leadership>,
}

impl Cluster {
    /// Records or refreshes `beat`'s worker, seen at `now`.
    pub(crate) fn beat(&mut self, mut beat: WorkerBeat, now: Timestamp) {
        self.drop_expired(now);
        // `from_beat` computes the end with plain addition; compute it here with the
        // saturating clock arithmetic instead, so an absurd ttl cannot panic.
        let ttl = std::mem::replace(&mut beat.ttl, Duration::ZERO);
        let mut record = WorkerRecord::from_beat(&beat, now);
        record.expires_at = after(now, ttl);
        self.workers.insert(record.id.clone(), record);
    }

    /// Forgets worker `id`, if it is known.
    pub(crate) fn remove(&mut self, id: &str) {
        self.workers.remove(id);
    }

    /// The records live at `now` (ending after it), in id order.
    pub(crate) fn list(&mut self, now: Timestamp) -> Vec<WorkerRecord> {
        self.drop_expired(now);
        self.workers.values().cloned().collect()
    }

    fn drop_expired(&mut self, now: Timestamp) {
        self.workers.retain(|_, record| record.expires_at > now);
    }

    /// Renews `worker_id`'s live lead (same term), or hands it a lead that is free,
    /// released or lapsed at `now` (next term); `None` while another worker's lead
    /// is live.
    pub(crate) fn acquire(&mut self, worker_id: &str, ttl: Duration, now: Timestamp) -> Option<Leadership> {
        let expires_at = after(now, ttl);
        if let Some(lead) = self.lead.as_mut().filter(|lead| lead.expires_at > now) {
            if lead.worker_id != worker_id {
                return None;
            }
            lead.expires_at = expires_at;
            return Some(lead.clone());
        }
        self.term = self.term.saturating_add(1);
        let lead = Leadership::new(worker_id, self.term, expires_at);
        self.lead = Some(lead.clone());
        Some(lead)
    }

    /// Frees the lead if `worker_id` holds it under `term`; the term counter stays.
    pub(crate) fn release(&mut self, worker_id: &str, term: u64) {
        if self.lead.as_ref().is_some_and(|lead| lead.worker_id == worker_id && lead.term == term) {
            self.lead = None;
        }
    }

    /// The lead, unless released or lapsed at `now`.
    pub(crate) fn leader(&self, now: Timestamp) -> Option<Leadership> {
        self.lead.as_ref().filter(|lead| lead.expires_at > now).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap

    use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    use haul_core::Admin as _;

    use super::*;

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn beat(id: &str, ttl: u64) -> WorkerBeat {
        WorkerBeat::new(id, t(0), secs(ttl))
    }

    fn ids(records: &[WorkerRecord]) -> Vec<&str> {
        records.iter().map(|record| record.id.as_str()).collect()
    }

    #[test]
    fn a_beat_stores_the_record_of_from_beat() {
        let mut cluster = Cluster::default();
        let beat = beat("w1", 30).process("host", 42).serving(vec!["a".into(), "b".into()], 8).held(3);
        cluster.beat(beat.clone(), t(5));
        let listed = cluster.list(t(5));
        assert_eq!(listed, vec![WorkerRecord::from_beat(&beat, t(5))]);
        assert_eq!(listed[0].last_seen_at, t(5));
        assert_eq!(listed[0].expires_at, t(35));
    }

    #[test]
    fn a_beat_replaces_the_previous_record() {
        let mut cluster = Cluster::default();
        cluster.beat(beat("w1", 30).held(1), t(0));
        cluster.beat(beat("w1", 10).held(2), t(20));
        let listed = cluster.list(t(25));
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].held, listed[0].last_seen_at, listed[0].expires_at), (2, t(20), t(30)));
        // The new, shorter ttl counts, not the old end.
        assert!(cluster.list(t(30)).is_empty());
    }

    #[test]
    fn listing_shows_only_records_ending_after_now_in_id_order() {
        let mut cluster = Cluster::default();
        cluster.beat(beat("w3", 30), t(0));
        cluster.beat(beat("w1", 10), t(0));
        cluster.beat(beat("w2", 20), t(0));
        assert_eq!(ids(&cluster.list(t(0))), ["w1", "w2", "w3"]);
        assert_eq!(ids(&cluster.list(t(9))), ["w1", "w2", "w3"]);
        // An end equal to `now` has passed.
        assert_eq!(ids(&cluster.list(t(10))), ["w2", "w3"]);
        assert_eq!(ids(&cluster.list(t(25))), ["w3"]);
        assert!(cluster.list(t(30)).is_empty());
    }

    #[test]
    fn expired_records_are_dropped_by_beats_and_lists() {
        let mut cluster = Cluster::default();
        cluster.beat(beat("w1", 10), t(0));
        cluster.beat(beat("w2", 30), t(0));
        cluster.beat(beat("w3", 30), t(15));
        assert_eq!(cluster.workers.keys().map(String::as_str).collect::<Vec<_>>(), ["w2", "w3"]);
        cluster.list(t(40));
        assert_eq!(cluster.workers.keys().map(String::as_str).collect::<Vec<_>>(), ["w3"]);
    }

    #[test]
    fn removing_forgets_the_worker_and_an_unknown_id_is_fine() {
        let mut cluster = Cluster::default();
        cluster.beat(beat("w1", 30), t(0));
        cluster.beat(beat("w2", 30), t(0));
        cluster.remove("w1");
        cluster.remove("nobody");
        assert_eq!(ids(&cluster.list(t(1))), ["w2"]);
    }

    #[test]
    fn an_absurd_ttl_saturates() {
        let mut cluster = Cluster::default();
        cluster.beat(WorkerBeat::new("w1", t(0), Duration::MAX), t(0));
        assert_eq!(cluster.list(t(0))[0].expires_at, DateTime::<Utc>::MAX_UTC);
        let lead = cluster.acquire("w1", Duration::MAX, t(0)).unwrap();
        assert_eq!(lead.expires_at, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn the_first_lead_has_term_one() {
        let mut cluster = Cluster::default();
        assert_eq!(cluster.leader(t(0)), None);
        assert_eq!(cluster.acquire("w1", secs(10), t(0)), Some(Leadership::new("w1", 1, t(10))));
        assert_eq!(cluster.leader(t(5)), Some(Leadership::new("w1", 1, t(10))));
    }

    #[test]
    fn the_holder_renews_a_live_lead_under_the_same_term() {
        let mut cluster = Cluster::default();
        cluster.acquire("w1", secs(10), t(0)).unwrap();
        assert_eq!(cluster.acquire("w1", secs(10), t(9)), Some(Leadership::new("w1", 1, t(19))));
        // A shorter ttl shortens it: the end is `now + ttl`.
        assert_eq!(cluster.acquire("w1", secs(2), t(10)), Some(Leadership::new("w1", 1, t(12))));
        assert_eq!(cluster.leader(t(11)), Some(Leadership::new("w1", 1, t(12))));
    }

    #[test]
    fn another_worker_is_refused_while_the_lead_is_live() {
        let mut cluster = Cluster::default();
        cluster.acquire("w1", secs(10), t(0)).unwrap();
        assert_eq!(cluster.acquire("w2", secs(10), t(9)), None);
        // The refusal changes nothing.
        assert_eq!(cluster.leader(t(9)), Some(Leadership::new("w1", 1, t(10))));
        assert_eq!(cluster.acquire("w1", secs(10), t(9)), Some(Leadership::new("w1", 1, t(19))));
    }

    #[test]
    fn a_lapsed_lead_goes_to_anyone_under_the_next_term() {
        let mut cluster = Cluster::default();
        cluster.acquire("w1", secs(10), t(0)).unwrap();
        // Lapsed exactly at its end.
        assert_eq!(cluster.leader(t(10)), None);
        assert_eq!(cluster.acquire("w2", secs(10), t(10)), Some(Leadership::new("w2", 2, t(20))));
        assert_eq!(cluster.acquire("w1", secs(10), t(15)), None);
    }

    #[test]
    fn the_holder_retaking_its_lapsed_lead_gets_the_next_term() {
        let mut cluster = Cluster::default();
        cluster.acquire("w1", secs(10), t(0)).unwrap();
        assert_eq!(cluster.acquire("w1", secs(10), t(10)), Some(Leadership::new("w1", 2, t(20))));
        assert_eq!(cluster.acquire("w1", secs(10), t(30)), Some(Leadership::new("w1", 3, t(40))));
    }

    #[test]
    fn release_frees_the_lead_and_keeps_the_term_counter() {
        let mut cluster = Cluster::default();
        cluster.acquire("w1", secs(10), t(0)).unwrap();
        cluster.release("w1", 1);
        assert_eq!(cluster.leader(t(1)), None);
        assert_eq!(cluster.acquire("w2", secs(10), t(1)), Some(Leadership::new("w2", 2, t(11))));
        cluster.release("w2", 2);
        // The former holder taking it again also gets a new term.
        assert_eq!(cluster.acquire("w2", secs(10), t(2)), Some(Leadership::new("w2", 3, t(12))));
    }

    #[test]
    fn release_by_another_worker_or_under_another_term_does_nothing() {
        let mut cluster = Cluster::default();
        cluster.acquire("w1", secs(10), t(0)).unwrap();
        cluster.acquire("w2", secs(10), t(10)).unwrap(); // term 2
        cluster.release("w1", 1); // the old holder, stale term
        cluster.release("w1", 2); // right term, wrong worker
        cluster.release("w2", 1); // right worker, wrong term
        cluster.release("nobody", 7);
        assert_eq!(cluster.leader(t(11)), Some(Leadership::new("w2", 2, t(20))));
        assert_eq!(cluster.acquire("w1", secs(10), t(11)), None);
    }

    #[test]
    fn release_without_a_lead_does_nothing() {
        let mut cluster = Cluster::default();
        cluster.release("w1", 0);
        cluster.release("w1", 1);
        assert_eq!(cluster.acquire("w1", secs(10), t(0)), Some(Leadership::new("w1", 1, t(10))));
    }

    #[test]
    fn a_zero_ttl_lead_is_lapsed_at_once() {
        let mut cluster = Cluster::default();
        assert_eq!(cluster.acquire("w1", Duration::ZERO, t(0)), Some(Leadership::new("w1", 1, t(0))));
        assert_eq!(cluster.leader(t(0)), None);
        assert_eq!(cluster.acquire("w2", secs(10), t(0)), Some(Leadership::new("w2", 2, t(10))));
    }

    #[tokio::test]
    async fn the_storage_uses_its_own_clock_without_now() {
        use haul_core::{LeadershipParams, Storage};

        let storage = crate::MemoryStorage::new();
        let before = Utc::now();
        storage.beat_worker(WorkerBeat::new("w1", before, secs(60))).await.unwrap();
        let listed = storage.list_workers(None).await.unwrap();
        assert_eq!(ids(&listed), ["w1"]);
        assert!(listed[0].last_seen_at >= before && listed[0].last_seen_at <= Utc::now());
        assert_eq!(listed[0].expires_at, listed[0].last_seen_at + TimeDelta::seconds(60));
        storage.remove_worker("w1").await.unwrap();
        storage.remove_worker("w1").await.unwrap();
        assert!(storage.list_workers(None).await.unwrap().is_empty());

        let lead = storage.acquire_leadership(LeadershipParams::new("w1", secs(60))).await.unwrap().unwrap();
        assert_eq!(lead.term, 1);
        assert!(lead.expires_at > Utc::now());
        assert_eq!(storage.leader(None).await.unwrap(), Some(lead.clone()));
        assert_eq!(storage.acquire_leadership(LeadershipParams::new("w2", secs(60))).await.unwrap(), None);
        storage.release_leadership("w1", 1).await.unwrap();
        assert_eq!(storage.leader(None).await.unwrap(), None);
        let lead = storage.acquire_leadership(LeadershipParams::new("w2", secs(60)).now(t(0))).await.unwrap();
        assert_eq!(lead, Some(Leadership::new("w2", 2, t(60))));
    }
}
