//! The cluster layer on PostgreSQL (`HAUL_TEST_POSTGRES_URL`): the worker registry
//! (`workers` table) and the leadership (`leader` table), each rule with an explicit
//! clock, the database's own clock, and concurrent acquisitions and beats on one
//! schema. The cross-backend rules are in the conformance suite; these are the
//! backend's own.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use std::{sync::Arc, time::Duration};

use haul_core::{Leadership, LeadershipParams, Storage, Timestamp, WorkerBeat, WorkerRecord};
use haul_postgres::PostgresStorage;
use sqlx::AssertSqlSafe;
use tokio::sync::Barrier;

/// A fixed instant, whole seconds after 2020-01-01T00:00:00Z (the storage keeps
/// microseconds, so these compare exactly with what it returns). Well before the
/// database's clock: a record or lead made at one of these has ended by `now()`.
fn at(seconds: i64) -> Timestamp {
    Timestamp::from_timestamp(1_577_836_800 + seconds, 0).unwrap()
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn chrono_secs(seconds: i64) -> chrono::Duration {
    chrono::Duration::seconds(seconds)
}

/// A beat of `id` at `now`, living `ttl`.
fn beat(id: &str, now: Timestamp, ttl: Duration) -> WorkerBeat {
    WorkerBeat::new(id, at(-60), ttl)
        .process("host-a", 4242)
        .serving(vec!["default".to_owned(), "mail".to_owned()], 8)
        .held(3)
        .now(now)
}

/// Every stored worker id, expired or not, in byte order.
async fn stored_ids(storage: &PostgresStorage) -> Vec<String> {
    let query = format!("SELECT id FROM \"{}\".workers ORDER BY id COLLATE \"C\"", storage.schema());
    sqlx::query_scalar(AssertSqlSafe(query)).fetch_all(storage.pool()).await.unwrap()
}

/// The database's clock.
async fn db_now(storage: &PostgresStorage) -> Timestamp {
    sqlx::query_scalar("SELECT now()").fetch_one(storage.pool()).await.unwrap()
}

fn ids(workers: &[WorkerRecord]) -> Vec<&str> {
    workers.iter().map(|worker| worker.id.as_str()).collect()
}

async fn acquire(storage: &PostgresStorage, worker: &str, ttl: Duration, now: Timestamp) -> Option<Leadership> {
    storage.acquire_leadership(LeadershipParams::new(worker, ttl).now(now)).await.unwrap()
}

mod workers {
    use super::*;

    #[tokio::test]
    async fn a_beat_is_listed_as_beaten_seen_at_now_and_ending_at_now_plus_ttl() {
        let (storage, _guard) = common::storage().await;
        let beat = beat("w1", at(0), secs(30));
        storage.beat_worker(beat.clone()).await.unwrap();

        let listed = storage.list_workers(Some(at(1))).await.unwrap();
        assert_eq!(listed, vec![WorkerRecord::from_beat(&beat, at(0))]);
        assert_eq!(listed[0].last_seen_at, at(0));
        assert_eq!(listed[0].expires_at, at(30));
        assert_eq!(listed[0].queues, ["default", "mail"]);
    }

    #[tokio::test]
    async fn counts_and_pids_keep_the_whole_u32_range() {
        let (storage, _guard) = common::storage().await;
        let beat = WorkerBeat::new("w1", at(0), secs(30))
            .process("", u32::MAX)
            .serving(Vec::new(), u32::MAX)
            .held(u32::MAX)
            .now(at(0));
        storage.beat_worker(beat.clone()).await.unwrap();
        assert_eq!(storage.list_workers(Some(at(0))).await.unwrap(), vec![WorkerRecord::from_beat(&beat, at(0))]);
    }

    #[tokio::test]
    async fn a_second_beat_replaces_the_record_and_moves_its_end() {
        let (storage, _guard) = common::storage().await;
        storage.beat_worker(beat("w1", at(0), secs(30))).await.unwrap();
        let second = WorkerBeat::new("w1", at(-5), secs(60))
            .process("host-b", 7)
            .serving(vec!["other".to_owned()], 2)
            .held(1)
            .now(at(20));
        storage.beat_worker(second.clone()).await.unwrap();

        let listed = storage.list_workers(Some(at(50))).await.unwrap();
        assert_eq!(listed, vec![WorkerRecord::from_beat(&second, at(20))]);
        assert_eq!(listed[0].expires_at, at(80));
        assert_eq!(stored_ids(&storage).await, ["w1"]);
    }

    #[tokio::test]
    async fn a_record_is_listed_until_its_end_and_not_at_it() {
        let (storage, _guard) = common::storage().await;
        storage.beat_worker(beat("w1", at(0), secs(30))).await.unwrap();
        let just_before = at(30) - chrono::Duration::microseconds(1);
        assert_eq!(ids(&storage.list_workers(Some(just_before)).await.unwrap()), ["w1"]);
        assert!(storage.list_workers(Some(at(30))).await.unwrap().is_empty());
        assert!(storage.list_workers(Some(at(31))).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn workers_are_listed_in_id_byte_order() {
        let (storage, _guard) = common::storage().await;
        let names = ["b", "a-2", "B", "a_1", "a1", "ä", "A"];
        for name in names {
            storage.beat_worker(beat(name, at(0), secs(30))).await.unwrap();
        }
        let mut expected = names.to_vec();
        expected.sort_unstable();
        assert_eq!(ids(&storage.list_workers(Some(at(1))).await.unwrap()), expected);
    }

    #[tokio::test]
    async fn removing_a_worker_deletes_its_record_and_an_unknown_id_is_not_an_error() {
        let (storage, _guard) = common::storage().await;
        storage.beat_worker(beat("w1", at(0), secs(30))).await.unwrap();
        storage.beat_worker(beat("w2", at(0), secs(30))).await.unwrap();
        storage.remove_worker("w1").await.unwrap();
        storage.remove_worker("w1").await.unwrap();
        storage.remove_worker("never-seen").await.unwrap();
        assert_eq!(ids(&storage.list_workers(Some(at(1))).await.unwrap()), ["w2"]);
        assert_eq!(stored_ids(&storage).await, ["w2"]);
    }

    #[tokio::test]
    async fn a_beat_deletes_records_expired_for_over_an_hour_and_keeps_recently_expired_ones() {
        let (storage, _guard) = common::storage().await;
        storage.beat_worker(beat("long-gone", at(0), secs(10))).await.unwrap();
        storage.beat_worker(beat("just-gone", at(3000), secs(10))).await.unwrap();
        storage.beat_worker(beat("alive", at(3000), secs(7200))).await.unwrap();
        // At 3611 s, `long-gone` ended 3601 s ago, `just-gone` 601 s ago.
        storage.beat_worker(beat("beating", at(3611), secs(30))).await.unwrap();
        assert_eq!(stored_ids(&storage).await, ["alive", "beating", "just-gone"]);
        assert_eq!(ids(&storage.list_workers(Some(at(3611))).await.unwrap()), ["alive", "beating"]);
    }

    #[tokio::test]
    async fn a_worker_expired_for_hours_beats_its_record_back() {
        let (storage, _guard) = common::storage().await;
        storage.beat_worker(beat("w1", at(0), secs(10))).await.unwrap();
        storage.beat_worker(beat("w1", at(7200), secs(10))).await.unwrap();
        assert_eq!(ids(&storage.list_workers(Some(at(7201))).await.unwrap()), ["w1"]);
    }

    #[tokio::test]
    async fn without_a_clock_override_the_database_clock_is_used() {
        let (storage, _guard) = common::storage().await;
        let before = db_now(&storage).await;
        storage.beat_worker(WorkerBeat::new("w1", before, secs(600)).process("h", 1)).await.unwrap();
        let after = db_now(&storage).await;

        let listed = storage.list_workers(None).await.unwrap();
        assert_eq!(ids(&listed), ["w1"]);
        let record = &listed[0];
        assert!(before <= record.last_seen_at && record.last_seen_at <= after, "{record:?}");
        assert_eq!(record.expires_at - record.last_seen_at, chrono_secs(600));
        // A record whose end is before the database's clock is not listed.
        storage.beat_worker(beat("w2", at(0), secs(1))).await.unwrap();
        assert_eq!(ids(&storage.list_workers(None).await.unwrap()), ["w1"]);
    }

    /// Every worker's record expired over an hour ago, and all beat at once: each
    /// beat's sweep meets rows the other beats hold (their own rows, being refreshed),
    /// and skips them instead of waiting, so no beat fails or deadlocks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_beats_sweeping_each_other_all_succeed() {
        let (storage, _guard) = common::storage().await;
        let names: Vec<String> = (0..16).map(|n| format!("w{n:02}")).collect();
        for name in &names {
            storage.beat_worker(beat(name, at(0), secs(1))).await.unwrap();
        }
        for round in 0..5 {
            let now = at(7200 * (round + 1));
            let barrier = Arc::new(Barrier::new(names.len()));
            let tasks: Vec<_> = names
                .iter()
                .map(|name| {
                    let (storage, barrier, name) = (storage.clone(), barrier.clone(), name.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        storage.beat_worker(beat(&name, now, secs(1))).await
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            assert_eq!(storage.list_workers(Some(now)).await.unwrap().len(), names.len(), "round {round}");
        }
    }
}

mod leadership {
    use super::*;

    #[tokio::test]
    async fn the_first_acquisition_gets_term_one_until_now_plus_ttl() {
        let (storage, _guard) = common::storage().await;
        assert_eq!(storage.leader(Some(at(0))).await.unwrap(), None);
        let lead = acquire(&storage, "w1", secs(30), at(0)).await;
        assert_eq!(lead, Some(Leadership::new("w1", 1, at(30))));
        assert_eq!(storage.leader(Some(at(29))).await.unwrap(), lead);
        assert_eq!(storage.leader(Some(at(30))).await.unwrap(), None, "lapsed at its end");
    }

    #[tokio::test]
    async fn another_worker_is_refused_while_the_lead_is_live_and_takes_it_once_lapsed() {
        let (storage, _guard) = common::storage().await;
        acquire(&storage, "w1", secs(30), at(0)).await.unwrap();
        assert_eq!(acquire(&storage, "w2", secs(30), at(29)).await, None);
        assert_eq!(storage.leader(Some(at(29))).await.unwrap(), Some(Leadership::new("w1", 1, at(30))));

        let taken = acquire(&storage, "w2", secs(30), at(30)).await;
        assert_eq!(taken, Some(Leadership::new("w2", 2, at(60))));
        assert_eq!(storage.leader(Some(at(30))).await.unwrap(), taken);
        assert_eq!(acquire(&storage, "w1", secs(30), at(31)).await, None, "the old leader is now refused");
    }

    #[tokio::test]
    async fn renewing_a_live_lead_keeps_the_term_and_moves_the_end() {
        let (storage, _guard) = common::storage().await;
        acquire(&storage, "w1", secs(30), at(0)).await.unwrap();
        assert_eq!(acquire(&storage, "w1", secs(30), at(20)).await, Some(Leadership::new("w1", 1, at(50))));
        assert_eq!(acquire(&storage, "w1", secs(100), at(49)).await, Some(Leadership::new("w1", 1, at(149))));
        assert_eq!(storage.leader(Some(at(148))).await.unwrap(), Some(Leadership::new("w1", 1, at(149))));
    }

    #[tokio::test]
    async fn the_same_worker_taking_its_lapsed_lead_again_gets_the_next_term() {
        let (storage, _guard) = common::storage().await;
        acquire(&storage, "w1", secs(30), at(0)).await.unwrap();
        assert_eq!(acquire(&storage, "w1", secs(30), at(30)).await, Some(Leadership::new("w1", 2, at(60))));
        assert_eq!(acquire(&storage, "w1", secs(30), at(1000)).await, Some(Leadership::new("w1", 3, at(1030))));
    }

    #[tokio::test]
    async fn releasing_frees_the_lead_and_keeps_the_term() {
        let (storage, guard) = common::storage().await;
        acquire(&storage, "w1", secs(30), at(0)).await.unwrap();
        storage.release_leadership("w1", 1).await.unwrap();
        assert_eq!(storage.leader(Some(at(1))).await.unwrap(), None);
        let term: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT term FROM \"{}\".leader", guard.schema)))
            .fetch_one(storage.pool())
            .await
            .unwrap();
        assert_eq!(term, 1);

        // Before the released lead's end, anyone may take it, under the next term.
        assert_eq!(acquire(&storage, "w2", secs(30), at(1)).await, Some(Leadership::new("w2", 2, at(31))));
        storage.release_leadership("w2", 2).await.unwrap();
        assert_eq!(acquire(&storage, "w2", secs(30), at(2)).await, Some(Leadership::new("w2", 3, at(32))));
    }

    #[tokio::test]
    async fn a_release_by_another_worker_or_under_another_term_does_nothing() {
        let (storage, _guard) = common::storage().await;
        acquire(&storage, "w1", secs(30), at(0)).await.unwrap();
        acquire(&storage, "w1", secs(30), at(30)).await.unwrap(); // term 2
        let live = Some(Leadership::new("w1", 2, at(60)));
        storage.release_leadership("w1", 1).await.unwrap();
        storage.release_leadership("w2", 2).await.unwrap();
        storage.release_leadership("w1", 3).await.unwrap();
        storage.release_leadership("w1", u64::MAX).await.unwrap();
        assert_eq!(storage.leader(Some(at(31))).await.unwrap(), live);
        assert_eq!(acquire(&storage, "w2", secs(30), at(31)).await, None);

        storage.release_leadership("w1", 2).await.unwrap();
        storage.release_leadership("w1", 2).await.unwrap(); // twice: nothing more
        assert_eq!(storage.leader(Some(at(31))).await.unwrap(), None);
    }

    #[tokio::test]
    async fn releasing_before_any_acquisition_does_nothing() {
        let (storage, _guard) = common::storage().await;
        storage.release_leadership("w1", 1).await.unwrap();
        assert_eq!(acquire(&storage, "w1", secs(30), at(0)).await, Some(Leadership::new("w1", 1, at(30))));
    }

    #[tokio::test]
    async fn without_a_clock_override_the_database_clock_is_used() {
        let (storage, _guard) = common::storage().await;
        let before = db_now(&storage).await;
        let lead = storage.acquire_leadership(LeadershipParams::new("w1", secs(600))).await.unwrap().unwrap();
        let after = db_now(&storage).await;
        assert_eq!((lead.worker_id.as_str(), lead.term), ("w1", 1));
        let expires = lead.expires_at;
        assert!(before + chrono_secs(600) <= expires && expires <= after + chrono_secs(600), "{lead:?}");
        assert_eq!(storage.leader(None).await.unwrap(), Some(lead.clone()));
        assert_eq!(storage.acquire_leadership(LeadershipParams::new("w2", secs(600))).await.unwrap(), None);

        // A lead that ended before the database's clock has lapsed.
        let old = acquire(&storage, "w1", secs(1), at(0)).await.unwrap();
        assert_eq!(old.term, 1, "a renewal, at the override's time");
        assert_eq!(storage.leader(None).await.unwrap(), None);
        let taken = storage.acquire_leadership(LeadershipParams::new("w2", secs(600))).await.unwrap().unwrap();
        assert_eq!((taken.worker_id.as_str(), taken.term), ("w2", 2));
    }

    /// 16 workers ask at once, on their own connections: one gets the lead, the others
    /// `None`. Again once it lapsed, and again on the database's clock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_sixteen_concurrent_acquisitions_exactly_one_succeeds() {
        let (storage, _guard) = common::storage().await;
        let rounds = [(Some(at(0)), 1), (Some(at(30)), 2), (Some(at(45)), 2), (None, 3)];
        let mut leaders = Vec::new();
        for (round, (now, term)) in rounds.into_iter().enumerate() {
            let barrier = Arc::new(Barrier::new(16));
            let tasks: Vec<_> = (0..16)
                .map(|n| {
                    let (storage, barrier) = (storage.clone(), barrier.clone());
                    tokio::spawn(async move {
                        let mut params = LeadershipParams::new(format!("r{round}-w{n:02}"), secs(30));
                        params.now = now;
                        barrier.wait().await;
                        storage.acquire_leadership(params).await
                    })
                })
                .collect();
            let mut won = Vec::new();
            for task in tasks {
                won.extend(task.await.unwrap().unwrap());
            }
            if round == 2 {
                // At 45 s the round-1 lead (until 60 s) is live: nobody of round 2 gets it.
                assert!(won.is_empty(), "round {round}: {won:?}");
                continue;
            }
            assert_eq!(won.len(), 1, "round {round}: {won:?}");
            let lead = won.remove(0);
            assert_eq!(lead.term, term, "round {round}: {lead:?}");
            assert!(lead.worker_id.starts_with(&format!("r{round}-")), "{lead:?}");
            assert_eq!(storage.leader(now).await.unwrap(), Some(lead.clone()));
            leaders.push(lead);
        }
        assert_eq!(leaders.len(), 3);
    }
}
