//! The cluster layer: the registry of live workers and the leadership of a namespace.
//!
//! Every call passes an explicit `now` from the case's base time ([`at`]). A record or
//! a lead lives while its end is *after* `now`, so at its end exactly it is gone.
//! Terms are checked relative to the first one (the contract does not fix its value):
//! a renewal keeps it, each change of hands (or a retake after a lapse or a release)
//! adds exactly one.

use std::{sync::Arc, time::Duration};

use haul::storage::{Leadership, LeadershipParams, WorkerBeat, WorkerRecord};
use tokio::sync::Barrier;

use super::*;

/// The ttl of the worker records these cases beat.
pub const WORKER_TTL: Duration = Duration::from_secs(60);

/// The ttl of the leaderships these cases take.
pub const LEAD_TTL: Duration = Duration::from_secs(30);

/// Number of racing candidates in the leadership races.
pub const CANDIDATES: usize = 16;

/// A beat of worker `id` at `now` with a [`WORKER_TTL`] ttl, started 100 s before the
/// base time, with every field set to something other than its default.
fn beat(id: &str, held: u32, now: Timestamp) -> WorkerBeat {
    WorkerBeat::new(id, at(-100), WORKER_TTL)
        .process("host-7.example", 4242)
        .serving(vec!["mail".to_owned(), "billing".to_owned(), "default".to_owned()], 8)
        .held(held)
        .now(now)
}

async fn beat_worker(storage: &TestStorage, beat: WorkerBeat) {
    storage.beat_worker(beat).await.expect("beat_worker succeeds");
}

async fn list_workers(storage: &TestStorage, now: Timestamp) -> Vec<WorkerRecord> {
    storage.list_workers(Some(now)).await.expect("list_workers succeeds")
}

fn worker_ids(records: &[WorkerRecord]) -> Vec<&str> {
    records.iter().map(|record| record.id.as_str()).collect()
}

async fn acquire(storage: &TestStorage, worker: &str, now: Timestamp) -> Option<Leadership> {
    storage
        .acquire_leadership(LeadershipParams::new(worker, LEAD_TTL).now(now))
        .await
        .expect("acquire_leadership succeeds")
}

/// `worker` asks for the lead at `now` and must get it, expiring at `now + LEAD_TTL`.
async fn acquired(storage: &TestStorage, worker: &str, now: Timestamp) -> Leadership {
    let lead = acquire(storage, worker, now).await.unwrap_or_else(|| panic!("{worker} gets the lead at {now}"));
    assert_eq!(lead.worker_id, worker, "the lead is the asking worker's");
    assert_eq!(lead.expires_at, now + LEAD_TTL, "the lead ends ttl after the acquire's now");
    lead
}

/// `worker` asks for the lead at `now` and must be refused.
async fn refused(storage: &TestStorage, worker: &str, now: Timestamp) {
    let lead = acquire(storage, worker, now).await;
    assert_eq!(lead, None, "{worker} is refused the lead at {now}");
}

async fn release(storage: &TestStorage, worker: &str, term: u64) {
    storage.release_leadership(worker, term).await.expect("release_leadership succeeds");
}

async fn leader(storage: &TestStorage, now: Timestamp) -> Option<Leadership> {
    storage.leader(Some(now)).await.expect("leader succeeds")
}

// The registry.

/// A beat is listed with every field as sent, seen at the beat's `now` and ending
/// ttl after it.
pub async fn a_beat_is_listed_with_every_field_as_sent(storage: TestStorage) {
    beat_worker(&storage, beat("worker-a", 3, at(0))).await;

    let listed = list_workers(&storage, at(0)).await;
    assert_eq!(listed.len(), 1, "one worker is listed: {listed:?}");
    let record = &listed[0];
    assert_eq!(record.id, "worker-a");
    assert_eq!(record.host, "host-7.example");
    assert_eq!(record.pid, 4242);
    assert_eq!(record.queues, vec!["mail", "billing", "default"], "the queues, in the order sent");
    assert_eq!(record.concurrency, 8);
    assert_eq!(record.held, 3);
    assert_eq!(record.started_at, at(-100));
    assert_eq!(record.last_seen_at, at(0), "seen at the beat's now");
    assert_eq!(record.expires_at, at(60), "ends ttl after the beat");
    assert_eq!(*record, WorkerRecord::from_beat(&beat("worker-a", 3, at(0)), at(0)));
}

/// Numbers anywhere in the `u32` range, an empty host and no queues are kept as sent.
pub async fn a_beat_keeps_the_whole_range_of_its_fields(storage: TestStorage) {
    let sent = WorkerBeat::new("worker-edge", at(-1), WORKER_TTL)
        .process("", u32::MAX)
        .serving(Vec::new(), u32::MAX)
        .held(u32::MAX)
        .now(at(0));
    beat_worker(&storage, sent.clone()).await;

    assert_eq!(list_workers(&storage, at(0)).await, vec![WorkerRecord::from_beat(&sent, at(0))]);
}

/// A second beat of a worker refreshes its record in place: its new `held`, seen at the
/// new `now`, ending ttl after it; the worker is still listed once, and past the end
/// of the first beat.
pub async fn a_second_beat_refreshes_the_record_without_duplicating_it(storage: TestStorage) {
    beat_worker(&storage, beat("worker-a", 1, at(0))).await;
    beat_worker(&storage, beat("worker-a", 5, at(20))).await;

    let listed = list_workers(&storage, at(20)).await;
    assert_eq!(listed.len(), 1, "the worker is listed once: {listed:?}");
    assert_eq!(listed[0].held, 5, "the latest beat's count");
    assert_eq!(listed[0].last_seen_at, at(20));
    assert_eq!(listed[0].expires_at, at(80));
    assert_eq!(listed[0].started_at, at(-100));

    let later = list_workers(&storage, at(70)).await;
    assert_eq!(worker_ids(&later), vec!["worker-a"], "the refreshed record outlives the first beat's end");
}

/// A record is listed until its end and not from its end on.
pub async fn a_record_is_not_listed_once_it_expires(storage: TestStorage) {
    beat_worker(&storage, beat("worker-a", 0, at(0))).await;

    assert_eq!(worker_ids(&list_workers(&storage, at(59)).await), vec!["worker-a"]);
    assert!(list_workers(&storage, at(60)).await.is_empty(), "a record is gone at its end");
    assert!(list_workers(&storage, at(3_600)).await.is_empty(), "and stays gone");
}

/// `remove_worker` removes the worker's record at once, and only that one.
pub async fn removing_a_worker_unlists_it(storage: TestStorage) {
    beat_worker(&storage, beat("worker-a", 0, at(0))).await;
    beat_worker(&storage, beat("worker-b", 0, at(0))).await;

    storage.remove_worker("worker-a").await.expect("remove_worker succeeds");
    assert_eq!(worker_ids(&list_workers(&storage, at(1)).await), vec!["worker-b"]);
}

/// Removing an id with no record (never beaten, or removed already) is not an error and
/// touches no other record.
pub async fn removing_an_unknown_worker_is_ok(storage: TestStorage) {
    storage.remove_worker("never-seen").await.expect("removing an unknown worker is Ok");

    beat_worker(&storage, beat("worker-a", 0, at(0))).await;
    storage.remove_worker("worker-a").await.expect("remove_worker succeeds");
    storage.remove_worker("worker-a").await.expect("removing a removed worker is Ok");
    storage.remove_worker("never-seen").await.expect("removing an unknown worker is Ok");
    assert!(list_workers(&storage, at(1)).await.is_empty());

    beat_worker(&storage, beat("worker-b", 0, at(2))).await;
    storage.remove_worker("never-seen").await.expect("removing an unknown worker is Ok");
    assert_eq!(worker_ids(&list_workers(&storage, at(3)).await), vec!["worker-b"]);
}

/// Several live workers are listed in id order (the order of `String`, byte by byte:
/// capitals first), whatever the order of their beats; an expired one among them is
/// left out.
pub async fn several_workers_are_listed_in_id_order(storage: TestStorage) {
    for id in ["worker-c", "worker-a", "Worker-z", "worker-d", "worker-b"] {
        beat_worker(&storage, beat(id, 0, at(0))).await;
    }
    let short = WorkerBeat::new("worker-bb", at(-100), secs(10)).now(at(0));
    beat_worker(&storage, short).await;

    let listed = list_workers(&storage, at(5)).await;
    assert_eq!(worker_ids(&listed), vec!["Worker-z", "worker-a", "worker-b", "worker-bb", "worker-c", "worker-d"]);
    let listed = list_workers(&storage, at(10)).await;
    assert_eq!(
        worker_ids(&listed),
        vec!["Worker-z", "worker-a", "worker-b", "worker-c", "worker-d"],
        "the expired one is gone"
    );
}

// The leadership.

/// Nobody leads a fresh namespace; the first worker to ask gets the lead, and `leader`
/// names it (same term, same end) until the lead lapses at its end.
pub async fn the_first_worker_to_ask_leads_until_its_lead_lapses(storage: TestStorage) {
    assert_eq!(leader(&storage, at(0)).await, None, "nobody leads a fresh namespace");

    let lead = acquired(&storage, "worker-a", at(0)).await;
    assert_eq!(leader(&storage, at(0)).await.as_ref(), Some(&lead));
    assert_eq!(leader(&storage, at(29)).await.as_ref(), Some(&lead));
    assert_eq!(leader(&storage, at(30)).await, None, "the lead lapses at its end");
}

/// While the lead is live, every other worker is refused and the lead is untouched.
pub async fn another_worker_is_refused_while_the_lead_is_live(storage: TestStorage) {
    let lead = acquired(&storage, "worker-a", at(0)).await;

    refused(&storage, "worker-b", at(0)).await;
    refused(&storage, "worker-b", at(10)).await;
    refused(&storage, "worker-c", at(29)).await;
    assert_eq!(leader(&storage, at(29)).await.as_ref(), Some(&lead), "the refusals left the lead alone");
}

/// The holder's renewal of its live lead keeps the term and ends ttl after the
/// renewal, so others are refused past the first end.
pub async fn a_renewal_keeps_the_term_and_moves_the_end(storage: TestStorage) {
    let first = acquired(&storage, "worker-a", at(0)).await;
    let renewed = acquired(&storage, "worker-a", at(20)).await;
    assert_eq!(renewed.term, first.term, "a renewal keeps the term");
    assert_eq!(renewed.expires_at, at(50));

    refused(&storage, "worker-b", at(40)).await;
    assert_eq!(leader(&storage, at(40)).await.as_ref(), Some(&renewed));

    let again = acquired(&storage, "worker-a", at(49)).await;
    assert_eq!(again.term, first.term, "every renewal keeps the term");
    assert_eq!(again.expires_at, at(79));
}

/// Once the lead lapses, another worker takes it under the next term.
pub async fn a_lapsed_lead_goes_to_another_worker_under_the_next_term(storage: TestStorage) {
    let first = acquired(&storage, "worker-a", at(0)).await;

    let second = acquired(&storage, "worker-b", at(30)).await;
    assert_eq!(second.term, first.term + 1, "a change of hands adds one to the term");
    assert_eq!(leader(&storage, at(30)).await.as_ref(), Some(&second));
}

/// A holder whose lapsed lead another worker took is refused when it asks again, and
/// its late renewal leaves the new lead alone.
pub async fn the_old_holder_is_refused_after_another_took_its_lapsed_lead(storage: TestStorage) {
    acquired(&storage, "worker-a", at(0)).await;
    let second = acquired(&storage, "worker-b", at(30)).await;

    refused(&storage, "worker-a", at(31)).await;
    refused(&storage, "worker-a", at(59)).await;
    assert_eq!(leader(&storage, at(59)).await.as_ref(), Some(&second), "the new lead is untouched");
}

/// A release by the holder under its term frees the lead at once: nobody leads, and
/// another worker takes it before the released lead's end, under the next term.
pub async fn a_release_by_the_holder_frees_the_lead_at_once(storage: TestStorage) {
    let first = acquired(&storage, "worker-a", at(0)).await;
    release(&storage, "worker-a", first.term).await;
    assert_eq!(leader(&storage, at(1)).await, None, "nobody leads after a release");

    let second = acquired(&storage, "worker-b", at(1)).await;
    assert_eq!(second.term, first.term + 1, "taking a released lead adds one to the term");
    assert_eq!(leader(&storage, at(1)).await.as_ref(), Some(&second));
}

/// The holder taking its lead again after releasing it gets the next term, not its old
/// one.
pub async fn the_holder_retaking_its_released_lead_gets_the_next_term(storage: TestStorage) {
    let first = acquired(&storage, "worker-a", at(0)).await;
    release(&storage, "worker-a", first.term).await;

    let again = acquired(&storage, "worker-a", at(1)).await;
    assert_eq!(again.term, first.term + 1, "a released lead taken again is a new term");
}

/// A release under a term the worker no longer holds (its own earlier term) does
/// nothing: its current lead stays, and others are still refused.
pub async fn a_release_under_a_stale_term_does_nothing(storage: TestStorage) {
    let first = acquired(&storage, "worker-a", at(0)).await;
    let second = acquired(&storage, "worker-b", at(30)).await;
    let third = acquired(&storage, "worker-a", at(60)).await;
    assert_eq!((second.term, third.term), (first.term + 1, first.term + 2));

    release(&storage, "worker-a", first.term).await;
    release(&storage, "worker-a", third.term + 1).await;
    assert_eq!(leader(&storage, at(61)).await.as_ref(), Some(&third), "the current lead stays");
    refused(&storage, "worker-b", at(61)).await;
}

/// A release by a worker that does not lead, even under the current term, does
/// nothing.
pub async fn a_release_by_another_worker_does_nothing(storage: TestStorage) {
    let lead = acquired(&storage, "worker-a", at(0)).await;

    release(&storage, "worker-b", lead.term).await;
    release(&storage, "never-led", lead.term).await;
    assert_eq!(leader(&storage, at(1)).await.as_ref(), Some(&lead), "the lead stays");
    refused(&storage, "worker-b", at(1)).await;
}

/// The holder taking its own lead again after it lapsed gets the next term: a lapse
/// ends a term even when nobody else took over.
pub async fn the_same_worker_retaking_its_lapsed_lead_gets_the_next_term(storage: TestStorage) {
    let first = acquired(&storage, "worker-a", at(0)).await;

    let again = acquired(&storage, "worker-a", at(30)).await;
    assert_eq!(again.term, first.term + 1, "a lapsed lead taken again is a new term");
    assert_eq!(leader(&storage, at(30)).await.as_ref(), Some(&again));
}

/// [`CANDIDATES`] workers asking at once for the lead, all at `now` (when nobody holds
/// a live lead): exactly one gets it, and `leader` names it. Returns the winner's lead.
async fn race_for_the_lead(storage: &TestStorage, now: Timestamp) -> Leadership {
    let start = Arc::new(Barrier::new(CANDIDATES));
    let mut candidates = Vec::with_capacity(CANDIDATES);
    for n in 0..CANDIDATES {
        let storage = storage.clone();
        let start = Arc::clone(&start);
        candidates.push(tokio::spawn(async move {
            let worker = format!("candidate-{n:02}");
            start.wait().await;
            let lead = acquire(&storage, &worker, now).await;
            (worker, lead)
        }));
    }
    let mut winners = Vec::new();
    for candidate in candidates {
        let (worker, lead) = candidate.await.expect("candidate task finishes");
        if let Some(lead) = lead {
            assert_eq!(lead.worker_id, worker, "a candidate gets only its own lead");
            assert_eq!(lead.expires_at, now + LEAD_TTL);
            winners.push(lead);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one candidate leads: {winners:?}");
    let winner = winners.remove(0);
    assert_eq!(leader(storage, now).await.as_ref(), Some(&winner), "leader names the winner");
    winner
}

/// Sixteen workers racing for a fresh namespace's lead: exactly one gets it.
pub async fn exactly_one_of_racing_workers_takes_the_lead(storage: TestStorage) {
    race_for_the_lead(&storage, at(0)).await;
}

/// Sixteen workers racing for a lapsed lead: exactly one gets it, under the next term.
pub async fn exactly_one_of_racing_workers_takes_a_lapsed_lead(storage: TestStorage) {
    let first = acquired(&storage, "worker-a", at(0)).await;

    let winner = race_for_the_lead(&storage, at(30)).await;
    assert_eq!(winner.term, first.term + 1, "one change of hands, one term");
}
