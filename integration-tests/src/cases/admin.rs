//! Operators' calls: pause and resume, counts, get and list.

use std::collections::BTreeMap;

use haul::{JobOutcome, JobState, QueueCounts, storage::ListParams};

use super::*;

/// Pausing a queue stops claims from it, enqueueing into it still works, and resuming
/// lets the waiting jobs be claimed.
pub async fn pausing_a_queue_holds_its_jobs_until_it_is_resumed(storage: TestStorage) {
    storage.pause_queue("mail").await.expect("pause succeeds");
    let id = enqueue_one(&storage, job("mail"), at(0)).await;
    assert_eq!(state_of(&storage, id).await, JobState::Available, "enqueueing into a paused queue works");
    assert!(claim(&storage, &["mail"], 10, at(1)).await.is_empty());

    storage.resume_queue("mail").await.expect("resume succeeds");
    claim_only(&storage, "mail", id, at(2)).await;
}

/// Pausing twice and resuming once leaves the queue resumed; resuming a queue that is
/// not paused is harmless.
pub async fn pause_and_resume_are_idempotent(storage: TestStorage) {
    storage.resume_queue("mail").await.expect("resuming a queue that is not paused succeeds");
    storage.pause_queue("mail").await.expect("pause succeeds");
    storage.pause_queue("mail").await.expect("pausing again succeeds");
    let id = enqueue_one(&storage, job("mail"), at(0)).await;
    assert!(claim(&storage, &["mail"], 10, at(1)).await.is_empty());
    storage.resume_queue("mail").await.expect("resume succeeds");
    claim_only(&storage, "mail", id, at(2)).await;
}

/// Counts are per queue (sorted by name) and per state, with empty states left out
/// and the paused flag set only on paused queues.
pub async fn counts_jobs_per_queue_and_state(storage: TestStorage) {
    // Queue "b": one scheduled, one completed. Queue "a": two available, one running.
    enqueue_one(&storage, job_at("b", at(600)), at(0)).await;
    let done = running_job(&storage, job("b"), at(0)).await;
    report_applied(&storage, claim_of(&done), JobOutcome::Completed, at(1)).await;
    running_job(&storage, job("a"), at(0)).await;
    enqueue(&storage, vec![job("a"), job("a")], at(2)).await;
    storage.pause_queue("b").await.expect("pause succeeds");

    let counts = storage.counts().await.expect("counts succeed");
    let expected = vec![
        QueueCounts::new("a", false, BTreeMap::from([(JobState::Available, 2), (JobState::Running, 1)]))
            .next_available_at(Some(at(2))),
        QueueCounts::new("b", true, BTreeMap::from([(JobState::Scheduled, 1), (JobState::Completed, 1)])),
    ];
    assert_eq!(counts, expected);
}

/// Looking up a job that does not exist finds nothing (and is not an error).
pub async fn get_of_an_unknown_id_is_none(storage: TestStorage) {
    enqueue_one(&storage, job("q"), at(0)).await;
    assert_eq!(storage.get(haul::JobId::new()).await.expect("get succeeds"), None);
}

/// Listing filters by queue, by any of several states, and by kind, in id order.
pub async fn list_filters_by_queue_state_and_kind(storage: TestStorage) {
    let ids = ordered_ids(5);
    let jobs = vec![
        job("a").id(ids[0]),
        NewJob::new("other.kind", serde_json::json!({})).queue("a").id(ids[1]),
        job_at("a", at(60)).id(ids[2]),
        job("b").id(ids[3]),
        job("a").id(ids[4]),
    ];
    enqueue(&storage, jobs, at(0)).await;

    let list = |params: ListParams| {
        let storage = storage.clone();
        async move { ids_of(&storage.list(params).await.expect("list succeeds")) }
    };
    assert_eq!(list(ListParams::new()).await, ids, "no filter lists everything in id order");
    assert_eq!(list(ListParams::new().queue("a")).await, vec![ids[0], ids[1], ids[2], ids[4]]);
    assert_eq!(list(ListParams::new().queue("a").state(JobState::Scheduled)).await, vec![ids[2]]);
    assert_eq!(list(ListParams::new().kind("other.kind")).await, vec![ids[1]]);
    assert_eq!(list(ListParams::new().queue("b").kind("other.kind")).await, Vec::<haul::JobId>::new());
    assert_eq!(
        list(ListParams::new().state(JobState::Scheduled).state(JobState::Available).queue("a")).await,
        vec![ids[0], ids[1], ids[2], ids[4]],
    );
    assert_eq!(list(ListParams::new().state(JobState::Running)).await, Vec::<haul::JobId>::new());
}

/// Listing pages through every job with the `after` cursor, in id order, each job once.
pub async fn list_pages_with_the_after_cursor(storage: TestStorage) {
    let ids = ordered_ids(7);
    let mut jobs: Vec<_> = ids.iter().map(|id| job("q").id(*id)).collect();
    jobs.reverse();
    enqueue(&storage, jobs, at(0)).await;

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let mut params = ListParams::new().limit(3);
        if let Some(id) = after {
            params = params.after(id);
        }
        let page = ids_of(&storage.list(params).await.expect("list succeeds"));
        if page.is_empty() {
            break;
        }
        after = page.last().copied();
        pages.push(page);
        assert!(pages.len() <= 3, "paging ends");
    }
    assert_eq!(pages, vec![ids[..3].to_vec(), ids[3..6].to_vec(), ids[6..].to_vec()]);
}

/// A listed job carries its whole record, as `get` returns it.
pub async fn list_returns_the_same_records_as_get(storage: TestStorage) {
    let running = running_job(&storage, job("q").priority(4), at(0)).await;
    let waiting = enqueue_one(&storage, job_at("q", at(90)), at(0)).await;
    let listed = storage.list(ListParams::new().queue("q")).await.expect("list succeeds");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], get(&storage, running.id).await);
    assert_eq!(listed[1], get(&storage, waiting).await);
}

/// `counts` gives each queue's `next_available_at`: the `run_at` of the available job a
/// claim would take next (lowest priority value, then earliest `run_at`), not the
/// oldest job of the queue, ignoring scheduled, running and finished jobs; `None` for
/// a queue with no available job.
pub async fn counts_give_the_run_at_of_the_next_job_to_claim(storage: TestStorage) {
    // Queue "head": the oldest and most urgent job is running, and an urgent one is
    // scheduled in the future; of the available ones, the oldest has a lower priority
    // (a higher value), so the head is the earliest of priority 0.
    running_job(&storage, job_at("head", at(-100)).priority(-5), at(0)).await;
    enqueue(
        &storage,
        vec![
            job_at("head", at(1_000)).priority(-10),
            job_at("head", at(10)).priority(1),
            job_at("head", at(50)),
            job_at("head", at(20)),
        ],
        at(100),
    )
    .await;
    // Queue "idle": a scheduled job, a running one and a completed one, none available.
    enqueue_one(&storage, job_at("idle", at(1_000)), at(0)).await;
    running_job(&storage, job("idle"), at(0)).await;
    let done = running_job(&storage, job("idle"), at(0)).await;
    report_applied(&storage, claim_of(&done), JobOutcome::Completed, at(1)).await;

    let next = |counts: &[QueueCounts], queue: &str| {
        let counted = counts.iter().find(|counted| counted.queue == queue);
        counted.unwrap_or_else(|| panic!("queue `{queue}` is counted: {counts:?}")).next_available_at
    };
    let counts = storage.counts().await.expect("counts succeed");
    assert_eq!(next(&counts, "head"), Some(at(20)), "{counts:?}");
    assert_eq!(next(&counts, "idle"), None, "no job of `idle` is available: {counts:?}");

    // The next claim takes exactly that job; then the head is the next one in order.
    let claimed = claim(&storage, &["head"], 1, at(100)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(Some(claimed[0].run_at), next(&counts, "head"), "the claim took the counted head");
    let counts = storage.counts().await.expect("counts succeed");
    assert_eq!(next(&counts, "head"), Some(at(50)), "{counts:?}");
}
