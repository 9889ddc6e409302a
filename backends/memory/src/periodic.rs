//! The records of periodic schedules: what the leader last did with each one.
//!
//! Kept in the [`Store`](crate::store::Store), so every save runs under the same lock
//! as the jobs and is atomic per record. The rule of a save is
//! [`PeriodicUpdate::apply`]: the stored `last_tick` never moves back.

use std::collections::BTreeMap;

use haul_core::{PeriodicRecord, PeriodicUpdate, Timestamp};

/// The periodic records of one storage, by name (name order is listing order).
#[derive(Debug, Default)]
pub(crate) struct Periodics {
    records: BTreeMap<String, PeriodicRecord>,
}

impl Periodics {
    /// Applies `update` to its record (creating it if needed) at `now`; a stale update
    /// (of the stored spec, with a last tick before the stored one) changes nothing.
    pub(crate) fn save(&mut self, update: &PeriodicUpdate, now: Timestamp) {
        let record = update.apply(self.records.get(&update.name), now);
        self.records.insert(record.name.clone(), record);
    }

    /// Every record, in name order.
    pub(crate) fn list(&self) -> Vec<PeriodicRecord> {
        self.records.values().cloned().collect()
    }

    /// Deletes the record of `name`; whether there was one.
    pub(crate) fn delete(&mut self, name: &str) -> bool {
        self.records.remove(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap

    use chrono::{TimeDelta, TimeZone, Utc};
    use haul_core::Admin as _;

    use super::*;

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn names(records: &[PeriodicRecord]) -> Vec<&str> {
        records.iter().map(|record| record.name.as_str()).collect()
    }

    fn only(periodics: &Periodics) -> PeriodicRecord {
        let mut listed = periodics.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        listed.remove(0)
    }

    #[test]
    fn a_first_save_stores_the_update_at_now() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("nightly", "every 60s").last_tick(t(0)).next_tick(t(60)), t(5));
        let record = only(&periodics);
        assert_eq!(
            (record.name.as_str(), record.spec.as_str(), record.last_tick, record.next_tick, record.updated_at),
            ("nightly", "every 60s", Some(t(0)), Some(t(60)), t(5))
        );
    }

    #[test]
    fn a_first_save_may_have_no_ticks() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("nightly", "every 60s"), t(5));
        let record = only(&periodics);
        assert_eq!((record.last_tick, record.next_tick, record.updated_at), (None, None, t(5)));
    }

    #[test]
    fn a_later_tick_replaces_the_record() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("p", "every 60s").last_tick(t(0)).next_tick(t(60)), t(1));
        periodics.save(&PeriodicUpdate::new("p", "every 30s").last_tick(t(60)).next_tick(t(90)), t(61));
        let record = only(&periodics);
        assert_eq!(
            (record.spec.as_str(), record.last_tick, record.next_tick, record.updated_at),
            ("every 30s", Some(t(60)), Some(t(90)), t(61))
        );
    }

    #[test]
    fn an_equal_tick_updates_the_rest_of_the_record() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("p", "every 60s").last_tick(t(0)).next_tick(t(60)), t(1));
        periodics.save(&PeriodicUpdate::new("p", "every 10s").last_tick(t(0)).next_tick(t(10)), t(2));
        let record = only(&periodics);
        assert_eq!(
            (record.spec.as_str(), record.last_tick, record.next_tick, record.updated_at),
            ("every 10s", Some(t(0)), Some(t(10)), t(2))
        );
    }

    #[test]
    fn an_earlier_tick_changes_nothing() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("p", "every 60s").last_tick(t(60)).next_tick(t(120)), t(61));
        let before = only(&periodics);
        periodics.save(&PeriodicUpdate::new("p", "every 60s").last_tick(t(0)).next_tick(t(30)), t(70));
        assert_eq!(only(&periodics), before);
    }

    #[test]
    fn another_spec_with_an_earlier_tick_takes_the_record_and_keeps_the_later_tick() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("p", "every 60s").last_tick(t(60)).next_tick(t(120)), t(61));
        periodics.save(&PeriodicUpdate::new("p", "every 30s").last_tick(t(0)).next_tick(t(30)), t(70));
        let record = only(&periodics);
        assert_eq!(
            (record.spec.as_str(), record.last_tick, record.next_tick, record.updated_at),
            ("every 30s", Some(t(60)), Some(t(30)), t(70))
        );
    }

    #[test]
    fn no_tick_keeps_the_stored_one_and_takes_the_rest() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("p", "every 60s").last_tick(t(60)).next_tick(t(120)), t(61));
        periodics.save(&PeriodicUpdate::new("p", "every 30s").next_tick(t(90)), t(70));
        let record = only(&periodics);
        assert_eq!(
            (record.spec.as_str(), record.last_tick, record.next_tick, record.updated_at),
            ("every 30s", Some(t(60)), Some(t(90)), t(70))
        );
    }

    #[test]
    fn a_tick_over_a_record_without_one_is_taken() {
        let mut periodics = Periodics::default();
        periodics.save(&PeriodicUpdate::new("p", "every 60s"), t(0));
        periodics.save(&PeriodicUpdate::new("p", "every 60s").last_tick(t(60)), t(61));
        assert_eq!(only(&periodics).last_tick, Some(t(60)));
    }

    #[test]
    fn the_spec_is_stored_as_given() {
        let mut periodics = Periodics::default();
        let spec = "cron \"0 3 * * *\" in Europe/Paris — «nightly» 'x'";
        periodics.save(&PeriodicUpdate::new("p", spec), t(0));
        assert_eq!(only(&periodics).spec, spec);
    }

    #[test]
    fn records_are_listed_in_name_order_and_deleted_one_by_one() {
        let mut periodics = Periodics::default();
        for name in ["b", "a:x", "C", "a"] {
            periodics.save(&PeriodicUpdate::new(name, "every 1m"), t(0));
        }
        assert_eq!(names(&periodics.list()), ["C", "a", "a:x", "b"]);
        assert!(periodics.delete("a"));
        assert!(!periodics.delete("a"));
        assert!(!periodics.delete("nobody"));
        assert_eq!(names(&periodics.list()), ["C", "a:x", "b"]);
    }

    #[tokio::test]
    async fn the_storage_uses_its_own_clock_without_now() {
        use haul_core::Storage;

        let storage = crate::MemoryStorage::new();
        let before = Utc::now();
        storage.save_periodic(PeriodicUpdate::new("p", "every 60s").last_tick(t(0))).await.unwrap();
        let listed = storage.list_periodic().await.unwrap();
        assert_eq!(names(&listed), ["p"]);
        assert!(listed[0].updated_at >= before && listed[0].updated_at <= Utc::now());
        storage.save_periodic(PeriodicUpdate::new("p", "every 60s").last_tick(t(60)).now(t(61))).await.unwrap();
        assert_eq!(storage.list_periodic().await.unwrap()[0].updated_at, t(61));
        assert!(storage.delete_periodic("p").await.unwrap());
        assert!(!storage.delete_periodic("p").await.unwrap());
        assert!(storage.list_periodic().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_saves_end_with_the_latest_tick() {
        use haul_core::Storage;

        let storage = crate::MemoryStorage::new();
        let tasks: Vec<_> = (0..64)
            .map(|n| {
                let storage = storage.clone();
                tokio::spawn(async move {
                    let update = PeriodicUpdate::new("p", "every 1s").last_tick(t(n)).now(t(n)).next_tick(t(n + 1));
                    storage.save_periodic(update).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let listed = storage.list_periodic().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].last_tick, listed[0].next_tick), (Some(t(63)), Some(t(64))));
    }
}
