//! Operators' actions through the admin seam: deleting one job, listing by every
//! [`JobFilter`] field with keyset pages, and the bulk calls (retry, cancel and delete
//! every job a filter matches), alone and racing with claimers.
//!
//! These cases run on a multi-threaded runtime (see the suite macro), so the racing
//! cases really race; the others run their calls one after another.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use haul::{
    Error, JobFilter, JobId, JobOutcome, JobRecord, JobState, ListParams, NewJob, QueueCounts, Unique,
    storage::{EnqueueOutcome, EnqueueParams, HeartbeatParams, Report},
};

use super::*;

/// The kind of the jobs that a kind filter leaves out.
const OTHER_KIND: &str = "haul_tests.other";

/// How many jobs the racing cases enqueue: enough that on the in-memory backend the
/// claimers are still claiming while the bulk call goes through its matches.
const RACE_JOBS: usize = 1_000;

/// How many jobs each claimer of a racing case claims per call.
const RACE_BATCH: usize = 10;

/// How many claimers race with the bulk call.
const RACE_CLAIMERS: usize = 2;

/// A plain job of [`OTHER_KIND`] on `queue`, due now.
fn other_kind(queue: &str) -> NewJob {
    NewJob::new(OTHER_KIND, serde_json::json!({ "n": 2 })).queue(queue)
}

/// The ids `params` lists, in the order listed.
async fn list_ids(storage: &TestStorage, params: ListParams) -> Vec<JobId> {
    ids_of(&storage.list(params).await.expect("list succeeds"))
}

/// Every stored job, in id order (a few pages of 100 at most in these cases).
async fn all_jobs(storage: &TestStorage) -> Vec<JobRecord> {
    let mut all = Vec::new();
    let mut params = ListParams::new().limit(100);
    loop {
        let page = storage.list(params.clone()).await.expect("list succeeds");
        let Some(last) = page.last() else { return all };
        params = params.after(last.id);
        all.extend(page);
    }
}

/// Pages through the jobs `filter` matches, `limit` at a time, following the `after`
/// cursor until a page comes back empty; returns the non-empty pages.
async fn list_in_pages(storage: &TestStorage, filter: &JobFilter, limit: usize) -> Vec<Vec<JobId>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let mut params = ListParams::filtered(filter.clone()).limit(limit);
        if let Some(id) = after {
            params = params.after(id);
        }
        let page = list_ids(storage, params).await;
        let Some(last) = page.last().copied() else { return pages };
        assert!(page.len() <= limit, "a page holds at most its limit: {page:?}");
        if let Some(previous) = after {
            assert!(page[0] > previous, "a page starts after its cursor");
        }
        after = Some(last);
        pages.push(page);
        assert!(pages.len() <= 100, "paging ends");
    }
}

/// The number of jobs of `queue` in `state`, as `counts` gives it.
async fn count_of(storage: &TestStorage, queue: &str, state: JobState) -> u64 {
    let counts = storage.counts().await.expect("counts succeed");
    counts.iter().find(|counted| counted.queue == queue).map_or(0, |counted| counted.get(state))
}

/// Enqueues and claims `job` at `now` and reports `outcome` for that attempt at
/// `now` + 1 s; returns its id. Its queue must hold no other available job.
async fn attempted_job(storage: &TestStorage, job: NewJob, outcome: JobOutcome, now: Timestamp) -> JobId {
    let record = running_job(storage, job, now).await;
    report_applied(storage, claim_of(&record), outcome, now + chrono::Duration::seconds(1)).await;
    record.id
}

/// A `retryable` job: its first attempt, claimed at `now`, failed with an hour's
/// backoff. Its queue must hold no other available job.
async fn retryable_job(storage: &TestStorage, job: NewJob, now: Timestamp) -> JobId {
    attempted_job(storage, job, failed("try later", secs(3600)), now).await
}

/// A `discarded` job: its attempt, claimed at `now`, was discarded by its handler.
async fn discarded_job(storage: &TestStorage, job: NewJob, now: Timestamp) -> JobId {
    attempted_job(storage, job, JobOutcome::Discarded { reason: "bad input".to_owned() }, now).await
}

/// A `cancelled` job: enqueued at `now` and cancelled at once.
async fn cancelled_job(storage: &TestStorage, job: NewJob, now: Timestamp) -> JobId {
    let id = enqueue_one(storage, job, now).await;
    storage.cancel(id, Some(now)).await.expect("cancel succeeds");
    id
}

/// One job of `queue` in each state but `running`, made from `at(start)` on, with the
/// state each is in. The queue must hold no available job when called.
async fn one_job_in_each_idle_state(storage: &TestStorage, queue: &str, start: i64) -> Vec<(JobState, JobId)> {
    // The jobs that are claimed first, while no other job of the queue is available.
    let retryable = retryable_job(storage, job(queue), at(start)).await;
    let completed = attempted_job(storage, job(queue), JobOutcome::Completed, at(start + 2)).await;
    let discarded = discarded_job(storage, job(queue), at(start + 4)).await;
    let cancelled = cancelled_job(storage, job(queue), at(start + 6)).await;
    let scheduled = enqueue_one(storage, job_at(queue, at(start + 3600)), at(start + 7)).await;
    let available = enqueue_one(storage, job(queue), at(start + 8)).await;
    vec![
        (JobState::Scheduled, scheduled),
        (JobState::Available, available),
        (JobState::Retryable, retryable),
        (JobState::Completed, completed),
        (JobState::Discarded, discarded),
        (JobState::Cancelled, cancelled),
    ]
}

/// Whether `error` is the not-found error of `id`.
fn is_not_found(error: &Error, id: JobId) -> bool {
    matches!(error, Error::NotFound(missing) if *missing == id)
}

/// A job in any state but `running` is deleted: `get` no longer finds it, `list` no
/// longer shows it, `counts` no longer count it, and deleting it again (like deleting
/// an id never stored) is [`Error::NotFound`]. The other jobs are untouched.
pub async fn deleting_a_job_that_is_not_running_removes_it_everywhere(storage: TestStorage) {
    let neighbour = running_job(&storage, job("q"), at(0)).await;
    let jobs = one_job_in_each_idle_state(&storage, "q", 10).await;
    let neighbour_before = get(&storage, neighbour.id).await;
    let mut left: HashSet<JobId> = jobs.iter().map(|(_, id)| *id).collect();
    left.insert(neighbour.id);

    for (state, id) in jobs {
        assert_eq!(state_of(&storage, id).await, state, "set-up: the job is {state}");
        let counted = count_of(&storage, "q", state).await;
        let total = total_jobs(&storage).await;

        storage.delete(id).await.unwrap_or_else(|error| panic!("deleting a {state} job succeeds: {error:?}"));
        left.remove(&id);

        assert_eq!(storage.get(id).await.expect("get succeeds"), None, "a deleted {state} job is gone");
        let listed: HashSet<JobId> = list_ids(&storage, ListParams::new()).await.into_iter().collect();
        assert_eq!(listed, left, "list shows every job but the deleted ones");
        assert!(list_ids(&storage, ListParams::new().state(state)).await.is_empty(), "no {state} job is listed");
        assert_eq!(count_of(&storage, "q", state).await, counted - 1, "counts no longer count the {state} job");
        assert_eq!(total_jobs(&storage).await, total - 1, "counts lose exactly one job");

        let again = storage.delete(id).await.expect_err("deleting a deleted job fails");
        assert!(is_not_found(&again, id), "deleting a deleted {state} job: {again:?}");
    }

    let never_stored = JobId::new();
    let error = storage.delete(never_stored).await.expect_err("deleting an unknown job fails");
    assert!(is_not_found(&error, never_stored), "{error:?}");

    let expected = vec![QueueCounts::new("q", false, BTreeMap::from([(JobState::Running, 1)]))];
    assert_eq!(storage.counts().await.expect("counts succeed"), expected, "only the running neighbour is left");
    assert_eq!(get(&storage, neighbour.id).await, neighbour_before, "the neighbour is untouched");
    report_applied(&storage, claim_of(&neighbour), JobOutcome::Completed, at(100)).await;
}

/// Deleting a running job is an [`Error::InvalidState`] of operation `"delete"`; the job
/// stays running under the same claim, and its holder's report still applies.
pub async fn deleting_a_running_job_is_an_invalid_state_and_keeps_it(storage: TestStorage) {
    let record = running_job(&storage, job("q"), at(0)).await;
    let error = storage.delete(record.id).await.expect_err("deleting a running job fails");
    assert!(
        matches!(
            error,
            Error::InvalidState { id, state: JobState::Running, operation: "delete", .. } if id == record.id
        ),
        "{error:?}"
    );

    let stored = get(&storage, record.id).await;
    assert_eq!(stored.state, JobState::Running);
    assert_eq!(stored.lease_token, record.lease_token, "the holder keeps its claim");
    assert_eq!(list_ids(&storage, ListParams::new()).await, vec![record.id]);
    assert_eq!(count_of(&storage, "q", JobState::Running).await, 1);

    report_applied(&storage, claim_of(&record), JobOutcome::Completed, at(1)).await;
    assert_eq!(state_of(&storage, record.id).await, JobState::Completed);
}

async fn enqueue_outcome(storage: &TestStorage, jobs: Vec<NewJob>, now: Timestamp) -> EnqueueOutcome {
    storage.enqueue(EnqueueParams::new(jobs).now(now)).await.expect("enqueue succeeds")
}

/// Checks that a job with `unique` is skipped while `blocker` is stored, and stored once
/// `blocker` is deleted.
async fn deleting_frees_the_key(storage: &TestStorage, queue: &str, unique: impl Fn() -> Unique, blocker: JobId) {
    let blocked = enqueue_outcome(storage, vec![job(queue).unique(unique())], at(100)).await;
    assert_eq!(blocked.duplicates, vec![blocker], "set-up: the stored job blocks its key");

    storage.delete(blocker).await.expect("delete succeeds");
    let fresh = job(queue).unique(unique());
    let fresh_id = fresh.id;
    let outcome = enqueue_outcome(storage, vec![fresh], at(101)).await;
    assert!(outcome.duplicates.is_empty(), "the deleted job no longer blocks its key: {outcome:?}");
    assert_eq!(outcome.ids, vec![fresh_id]);
    let stored = get(storage, fresh_id).await;
    assert_eq!(stored.state, JobState::Available);
    assert_eq!(stored.unique_key.as_deref(), Some(unique().key.as_str()));
}

/// Deleting a unique job frees its key: a new job with the same key is stored, both
/// after deleting a waiting job (which blocks by default) and after deleting a
/// completed one whose key blocks in every state.
pub async fn deleting_a_unique_job_frees_its_key(storage: TestStorage) {
    let invoice = || Unique::new("invoice:42");
    let waiting = enqueue_one(&storage, job("bills").unique(invoice()), at(0)).await;
    deleting_frees_the_key(&storage, "bills", invoice, waiting).await;

    let welcome = || Unique::new("welcome:ada").states(JobState::ALL);
    let completed = attempted_job(&storage, job("welcome").unique(welcome()), JobOutcome::Completed, at(0)).await;
    deleting_frees_the_key(&storage, "welcome", welcome, completed).await;
}

/// `list` honours every [`JobFilter`] field: queue, several states, kind, `created_from`
/// (inclusive) and `created_until` (exclusive) against the `now` the job was enqueued
/// at, and any combination of them (every field set must match); the result is in id
/// order and is exactly what [`JobFilter::matches`] selects.
pub async fn list_honours_every_filter_field(storage: TestStorage) {
    let ids = ordered_ids(8);
    let pick = |indexes: &[usize]| -> Vec<JobId> { indexes.iter().map(|index| ids[*index]).collect() };
    // Created at 0 s: #0 available in a, #1 available in b.
    enqueue(&storage, vec![job("a").id(ids[0]), job("b").id(ids[1])], at(0)).await;
    // Created at 10 s: #2 available in a (other kind), #3 scheduled in a, #4 completed in a.
    enqueue(
        &storage,
        vec![other_kind("a").id(ids[2]), job_at("a", at(3600)).id(ids[3]), job("a").id(ids[4]).priority(-10)],
        at(10),
    )
    .await;
    let first = claim(&storage, &["a"], 1, at(11)).await;
    assert_eq!(ids_of(&first), vec![ids[4]], "set-up: the most urgent job is claimed");
    report_applied(&storage, claim_of(&first[0]), JobOutcome::Completed, at(12)).await;
    // Created at 20 s: #5 available in b (other kind), #6 available in a, #7 scheduled in b.
    enqueue(&storage, vec![other_kind("b").id(ids[5]), job("a").id(ids[6]), job_at("b", at(3600)).id(ids[7])], at(20))
        .await;

    let everything = all_jobs(&storage).await;
    assert_eq!(ids_of(&everything), ids, "no filter lists every job in id order");
    for (index, created) in [(0, 0), (1, 0), (2, 10), (3, 10), (4, 10), (5, 20), (6, 20), (7, 20)] {
        assert_eq!(everything[index].created_at, at(created), "job #{index} was created when it was enqueued");
    }

    let cases: Vec<(&str, JobFilter, Vec<usize>)> = vec![
        ("queue a", JobFilter::new().queue("a"), vec![0, 2, 3, 4, 6]),
        ("queue b", JobFilter::new().queue("b"), vec![1, 5, 7]),
        ("a queue without jobs", JobFilter::new().queue("nowhere"), vec![]),
        ("one state", JobFilter::new().state(JobState::Available), vec![0, 1, 2, 5, 6]),
        ("two states", JobFilter::new().state(JobState::Scheduled).state(JobState::Completed), vec![3, 4, 7]),
        ("a state no job is in", JobFilter::new().state(JobState::Running), vec![]),
        ("kind", JobFilter::new().kind(OTHER_KIND), vec![2, 5]),
        ("the plain kind", JobFilter::new().kind(KIND), vec![0, 1, 3, 4, 6, 7]),
        ("created from an enqueue instant (inclusive)", JobFilter::new().created_from(at(10)), vec![2, 3, 4, 5, 6, 7]),
        ("created from between enqueues", JobFilter::new().created_from(at(11)), vec![5, 6, 7]),
        ("created from after every enqueue", JobFilter::new().created_from(at(21)), vec![]),
        ("created until an enqueue instant (exclusive)", JobFilter::new().created_until(at(10)), vec![0, 1]),
        ("created until the last enqueue", JobFilter::new().created_until(at(20)), vec![0, 1, 2, 3, 4]),
        ("created until before every enqueue", JobFilter::new().created_until(at(0)), vec![]),
        ("created in [10 s, 20 s)", JobFilter::new().created_from(at(10)).created_until(at(20)), vec![2, 3, 4]),
        ("created in [5 s, 15 s)", JobFilter::new().created_from(at(5)).created_until(at(15)), vec![2, 3, 4]),
        ("created in [20 s, 20 s)", JobFilter::new().created_from(at(20)).created_until(at(20)), vec![]),
        ("queue and state", JobFilter::new().queue("b").state(JobState::Scheduled), vec![7]),
        ("queue, state and kind", JobFilter::new().queue("a").state(JobState::Available).kind(KIND), vec![0, 6]),
        (
            "queue, state and created from",
            JobFilter::new().queue("b").state(JobState::Available).created_from(at(10)),
            vec![5],
        ),
        (
            "every field",
            JobFilter::new()
                .queue("a")
                .state(JobState::Scheduled)
                .state(JobState::Completed)
                .state(JobState::Available)
                .kind(KIND)
                .created_from(at(10))
                .created_until(at(20)),
            vec![3, 4],
        ),
        ("fields that exclude each other", JobFilter::new().queue("b").kind(KIND).state(JobState::Completed), vec![]),
    ];
    for (what, filter, expected) in cases {
        let listed = list_ids(&storage, ListParams::filtered(filter.clone())).await;
        assert_eq!(listed, pick(&expected), "filter by {what}: {filter:?}");
        let by_rule: Vec<JobId> = everything.iter().filter(|job| filter.matches(job)).map(|job| job.id).collect();
        assert_eq!(listed, by_rule, "filter by {what} selects what JobFilter::matches does");
    }
}

/// Keyset pagination with a filter: pages of 2 following the `after` cursor give every
/// match once, in id order, whichever jobs lie between them; a cursor that is the id of
/// a job the filter does not match works the same.
pub async fn list_pages_through_the_matches_of_a_filter(storage: TestStorage) {
    let ids = ordered_ids(12);
    // Odd ids are plain jobs of queue a; even ones are in queue b or of another kind.
    let jobs: Vec<NewJob> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| match index % 4 {
            0 => job("b").id(*id),
            2 => other_kind("a").id(*id),
            _ => job("a").id(*id),
        })
        .rev()
        .collect();
    enqueue(&storage, jobs, at(0)).await;
    let plain_a: Vec<JobId> = ids.iter().skip(1).step_by(2).copied().collect();
    let filter = JobFilter::new().queue("a").kind(KIND);

    let pages = list_in_pages(&storage, &filter, 2).await;
    let expected: Vec<Vec<JobId>> = plain_a.chunks(2).map(<[JobId]>::to_vec).collect();
    assert_eq!(pages, expected, "pages of 2 give the 6 matches in id order, each once");

    let pages = list_in_pages(&storage, &filter, 4).await;
    assert_eq!(pages, vec![plain_a[..4].to_vec(), plain_a[4..].to_vec()], "a short last page ends the list");

    let after_a_non_match = list_ids(&storage, ListParams::filtered(filter.clone()).after(ids[4]).limit(2)).await;
    assert_eq!(after_a_non_match, vec![ids[5], ids[7]], "a cursor on a job the filter skips");
    let after_the_last = list_ids(&storage, ListParams::filtered(filter).after(ids[11])).await;
    assert!(after_the_last.is_empty(), "nothing comes after the last match");
}

/// Listing one state among many jobs of other states returns exactly the jobs in that
/// state, in id order, page after page: here 3 discarded and 5 scheduled jobs spread
/// among 32 completed ones.
pub async fn listing_a_rare_state_finds_exactly_its_jobs(storage: TestStorage) {
    const DISCARDED: [usize; 3] = [4, 17, 31];
    let ids = ordered_ids(40);
    let later = |index: usize| index % 8 == 3;

    let run: Vec<NewJob> = (0..ids.len()).filter(|index| !later(*index)).map(|index| job("q").id(ids[index])).collect();
    enqueue(&storage, run, at(0)).await;
    let claimed = claim(&storage, &["q"], 100, at(1)).await;
    assert_eq!(claimed.len(), 35, "set-up: every job enqueued is claimed");
    let reports = claimed
        .iter()
        .map(|record| {
            let index = ids.iter().position(|id| *id == record.id).expect("a claimed job is one of ours");
            let outcome = if DISCARDED.contains(&index) {
                JobOutcome::Discarded { reason: "bad input".to_owned() }
            } else {
                JobOutcome::Completed
            };
            Report { claim: claim_of(record), outcome }
        })
        .collect();
    let reported = report_all(&storage, reports, at(2)).await;
    assert_eq!(reported.applied.len(), 35, "set-up: every outcome applies");
    let scheduled: Vec<JobId> = (0..ids.len()).filter(|index| later(*index)).map(|index| ids[index]).collect();
    let waiting: Vec<NewJob> = scheduled.iter().map(|id| job_at("q", at(3600)).id(*id)).collect();
    enqueue(&storage, waiting, at(3)).await;
    assert_eq!(count_of(&storage, "q", JobState::Completed).await, 32, "set-up");

    let discarded = JobFilter::new().state(JobState::Discarded);
    let pages = list_in_pages(&storage, &discarded, 2).await;
    assert_eq!(pages, vec![vec![ids[4], ids[17]], vec![ids[31]]], "the discarded jobs, 2 per page");

    let pages = list_in_pages(&storage, &JobFilter::new().queue("q").state(JobState::Scheduled), 2).await;
    assert_eq!(pages, vec![scheduled[..2].to_vec(), scheduled[2..4].to_vec(), scheduled[4..].to_vec()]);

    let either = JobFilter::new().state(JobState::Scheduled).state(JobState::Discarded);
    let mut expected: Vec<JobId> = scheduled.iter().copied().chain(DISCARDED.iter().map(|index| ids[*index])).collect();
    expected.sort();
    let pages = list_in_pages(&storage, &either, 3).await;
    assert_eq!(pages.concat(), expected, "two rare states, in id order, each once");
    assert_eq!(pages.len(), 3, "8 matches in pages of 3");
}

/// The jobs of the bulk-call cases: one of each state in queue `mail`, plus jobs the
/// filter `queue = mail, kind = plain` leaves out.
struct BulkFixture {
    /// A running job of the filter, with its claim.
    running: JobRecord,
    /// The matching jobs in each state but running.
    idle: Vec<(JobState, JobId)>,
    /// A discarded job of the filter whose attempts are used up.
    exhausted: JobId,
    /// Jobs the filter does not match (another queue, another kind), with their state.
    unmatched: Vec<(JobState, JobId)>,
}

impl BulkFixture {
    /// The filter the bulk calls are given.
    fn filter() -> JobFilter {
        JobFilter::new().queue("mail").kind(KIND)
    }

    async fn new(storage: &TestStorage) -> Self {
        let exhausted = attempted_job(storage, job("mail").max_attempts(1), failed("no more", secs(1)), at(0)).await;
        assert_eq!(state_of(storage, exhausted).await, JobState::Discarded, "set-up");
        let other_kind_discarded = discarded_job(storage, other_kind("mail"), at(2)).await;
        let other_kind_retryable = retryable_job(storage, other_kind("mail"), at(4)).await;
        let running = running_job(storage, job("mail"), at(6)).await;
        let idle = one_job_in_each_idle_state(storage, "mail", 10).await;
        let other_queue_discarded = discarded_job(storage, job("other"), at(30)).await;
        let other_queue_available = enqueue_one(storage, job("other"), at(32)).await;
        let other_kind_available = enqueue_one(storage, other_kind("mail"), at(34)).await;
        Self {
            running,
            idle,
            exhausted,
            unmatched: vec![
                (JobState::Discarded, other_kind_discarded),
                (JobState::Retryable, other_kind_retryable),
                (JobState::Available, other_kind_available),
                (JobState::Discarded, other_queue_discarded),
                (JobState::Available, other_queue_available),
            ],
        }
    }

    /// The ids of the matching jobs that are not running.
    fn idle_ids(&self) -> Vec<JobId> {
        let mut ids: Vec<JobId> = self.idle.iter().map(|(_, id)| *id).chain([self.exhausted]).collect();
        ids.sort();
        ids
    }

    /// Checks that the jobs the filter leaves out are untouched: same record as before.
    async fn check_unmatched_untouched(&self, storage: &TestStorage, before: &HashMap<JobId, JobRecord>) {
        for (state, id) in &self.unmatched {
            let stored = get(storage, *id).await;
            assert_eq!(stored.state, *state, "a job the filter does not match keeps its state");
            assert_eq!(Some(&stored), before.get(id), "a job the filter does not match is untouched");
        }
    }
}

/// Every stored job by id.
async fn snapshot(storage: &TestStorage) -> HashMap<JobId, JobRecord> {
    all_jobs(storage).await.into_iter().map(|job| (job.id, job)).collect()
}

/// `retry_jobs` makes every job the filter matches available now, in any state but
/// running, and returns how many it made available; a discarded job whose attempts are
/// used up gets one more. A running match is skipped (still running under its claim,
/// not counted) and its holder's report still applies; jobs the filter leaves out are
/// untouched. The retried jobs can then be claimed.
pub async fn retry_jobs_retries_the_idle_matches_and_skips_running_ones(storage: TestStorage) {
    let fixture = BulkFixture::new(&storage).await;
    let before = snapshot(&storage).await;

    let retried = storage.retry_jobs(BulkFixture::filter(), Some(at(100))).await.expect("retry_jobs succeeds");
    assert_eq!(retried, 7, "the 7 matches that are not running are retried");

    for id in fixture.idle_ids() {
        let stored = get(&storage, id).await;
        assert_eq!(stored.state, JobState::Available, "a retried job is available");
        assert_eq!(stored.run_at, at(100), "a retried job is due now");
        assert_eq!(stored.finished_at, None);
        assert_eq!(stored.lease_token, None);
    }
    let available = list_ids(&storage, ListParams::filtered(BulkFixture::filter().state(JobState::Available))).await;
    assert_eq!(u64::try_from(available.len()).ok(), Some(retried), "the count is the number made available");
    let exhausted = get(&storage, fixture.exhausted).await;
    assert_eq!((exhausted.attempt, exhausted.max_attempts), (1, 2), "a job out of attempts gets one more");

    let running = get(&storage, fixture.running.id).await;
    assert_eq!(running.state, JobState::Running, "a running match is skipped");
    assert_eq!(running.lease_token, fixture.running.lease_token, "its holder keeps the claim");
    fixture.check_unmatched_untouched(&storage, &before).await;
    report_applied(&storage, claim_of(&fixture.running), JobOutcome::Completed, at(101)).await;

    let claimed = claim(&storage, &["mail"], 100, at(102)).await;
    let mut expected = fixture.idle_ids();
    let other_kind_available = fixture.unmatched[2].1;
    expected.push(other_kind_available);
    expected.sort();
    assert_eq!(sorted_ids_of(&claimed), expected, "the retried jobs are claimed, with the queue's other available job");
}

/// `cancel_jobs` cancels every scheduled, available and retryable match, asks a running
/// match to cancel (its holder learns it through heartbeat and then reports it
/// cancelled), leaves finished matches and the jobs the filter leaves out untouched, and
/// counts only the jobs it cancelled or asked to cancel.
pub async fn cancel_jobs_cancels_the_waiting_matches_and_asks_running_ones(storage: TestStorage) {
    let fixture = BulkFixture::new(&storage).await;
    let before = snapshot(&storage).await;

    let cancelled = storage.cancel_jobs(BulkFixture::filter(), Some(at(100))).await.expect("cancel_jobs succeeds");
    assert_eq!(cancelled, 4, "3 waiting matches are cancelled and 1 running match is asked to cancel");

    for (state, id) in &fixture.idle {
        let stored = get(&storage, *id).await;
        match state {
            JobState::Scheduled | JobState::Available | JobState::Retryable => {
                assert_eq!(stored.state, JobState::Cancelled, "a {state} match is cancelled");
                assert_eq!(stored.finished_at, Some(at(100)));
            }
            _ => assert_eq!(Some(&stored), before.get(id), "a {state} match is untouched"),
        }
    }
    assert_eq!(Some(&get(&storage, fixture.exhausted).await), before.get(&fixture.exhausted));
    fixture.check_unmatched_untouched(&storage, &before).await;

    let running = get(&storage, fixture.running.id).await;
    assert_eq!(running.state, JobState::Running, "a running match keeps running");
    assert_eq!(running.cancel_requested_at, Some(at(100)));
    let beat = storage
        .heartbeat(HeartbeatParams::new(vec![claim_of(&fixture.running)], secs(30)).now(at(101)))
        .await
        .expect("heartbeat succeeds");
    assert_eq!(beat.cancelled, vec![claim_of(&fixture.running)], "the holder learns of the cancel");
    assert!(beat.lost.is_empty());
    report_applied(&storage, claim_of(&fixture.running), JobOutcome::Cancelled, at(102)).await;
    assert_eq!(state_of(&storage, fixture.running.id).await, JobState::Cancelled);

    let claimed = claim(&storage, &["mail"], 100, at(103)).await;
    assert_eq!(ids_of(&claimed), vec![fixture.unmatched[2].1], "only the job of another kind is left to claim");
}

/// `delete_jobs` deletes every match that is not running, keeps running matches (their
/// holders' reports still apply) and the jobs the filter leaves out, and returns how
/// many it deleted.
pub async fn delete_jobs_deletes_the_idle_matches_and_keeps_running_ones(storage: TestStorage) {
    let fixture = BulkFixture::new(&storage).await;
    let before = snapshot(&storage).await;

    let deleted = storage.delete_jobs(BulkFixture::filter()).await.expect("delete_jobs succeeds");
    assert_eq!(deleted, 7, "the 7 matches that are not running are deleted");
    for id in fixture.idle_ids() {
        assert_eq!(storage.get(id).await.expect("get succeeds"), None, "a match that was not running is deleted");
    }
    assert_eq!(list_ids(&storage, ListParams::filtered(BulkFixture::filter())).await, vec![fixture.running.id]);
    fixture.check_unmatched_untouched(&storage, &before).await;
    let running = get(&storage, fixture.running.id).await;
    assert_eq!(running.state, JobState::Running, "a running match is kept");
    assert_eq!(running.lease_token, fixture.running.lease_token);
    report_applied(&storage, claim_of(&fixture.running), JobOutcome::Completed, at(100)).await;

    let again = storage.delete_jobs(BulkFixture::filter()).await.expect("delete_jobs succeeds");
    assert_eq!(again, 1, "the job that was running is deleted once it completed");

    let states = JobFilter::new().state(JobState::Discarded).state(JobState::Available);
    let deleted = storage.delete_jobs(states).await.expect("delete_jobs succeeds");
    assert_eq!(deleted, 4, "every discarded or available job left, of any queue and kind");
    let left: Vec<JobId> = all_jobs(&storage).await.iter().map(|job| job.id).collect();
    assert_eq!(left, vec![fixture.unmatched[1].1], "only the retryable job of another kind is left");
    assert_eq!(total_jobs(&storage).await, 1);
}

/// Claims from `queue` in batches of [`RACE_BATCH`] until a claim comes back empty;
/// returns every job claimed.
async fn claim_until_empty(storage: &TestStorage, queue: &str) -> Vec<JobRecord> {
    let mut mine = Vec::new();
    loop {
        let claimed = claim(storage, &[queue], RACE_BATCH, at(1)).await;
        if claimed.is_empty() {
            return mine;
        }
        mine.extend(claimed);
    }
}

/// Runs `action` (a bulk call) on one task and [`claim_until_empty`] on the `race`
/// queue on [`RACE_CLAIMERS`] others, all let go at the same instant; returns what the
/// claimers claimed and the count the action returned.
async fn race_with_claims<F, Fut>(storage: &TestStorage, action: F) -> (Vec<JobRecord>, u64)
where
    F: FnOnce(TestStorage) -> Fut + Send + 'static,
    Fut: Future<Output = haul::Result<u64>> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(RACE_CLAIMERS + 1));
    let claimers: Vec<_> = (0..RACE_CLAIMERS)
        .map(|_| {
            let (storage, start) = (storage.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                claim_until_empty(&storage, "race").await
            })
        })
        .collect();
    let admin = tokio::spawn({
        let storage = storage.clone();
        async move {
            start.wait().await;
            action(storage).await
        }
    });
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.expect("a claimer finishes"));
    }
    let count = admin.await.expect("the bulk call finishes").expect("the bulk call succeeds");
    (claimed, count)
}

/// Enqueues [`RACE_JOBS`] plain jobs in `queue` at 0 s, in batches of 250; returns
/// their ids.
async fn enqueue_race(storage: &TestStorage, queue: &str) -> HashSet<JobId> {
    let mut ids = HashSet::with_capacity(RACE_JOBS);
    for _ in 0..RACE_JOBS / 250 {
        ids.extend(enqueue(storage, (0..250).map(|_| job(queue)).collect(), at(0)).await);
    }
    assert_eq!(ids.len(), RACE_JOBS, "set-up: every job has its own id");
    ids
}

/// The ids of `claimed`, checking none was claimed twice.
fn claimed_once(claimed: &[JobRecord]) -> HashSet<JobId> {
    let ids: HashSet<JobId> = claimed.iter().map(|record| record.id).collect();
    assert_eq!(ids.len(), claimed.len(), "no job is claimed twice");
    ids
}

/// Checks that every job in `claimed` is still running under the claim it was handed,
/// on its first attempt.
async fn check_still_held(storage: &TestStorage, claimed: &[JobRecord]) {
    for record in claimed {
        let stored = storage
            .get(record.id)
            .await
            .expect("get succeeds")
            .unwrap_or_else(|| panic!("claimed job {} still exists", record.id));
        assert_eq!(stored.state, JobState::Running, "a claimed job stays running under its holder");
        assert_eq!(stored.lease_token, record.lease_token, "its holder keeps the claim");
        assert_eq!(stored.attempt, 1);
    }
}

/// `delete_jobs` racing with claimers never deletes a job under its holder: afterwards
/// every claimed job still exists and is running under its claim (its report applies),
/// every job not claimed is gone, and the count returned is the number deleted.
pub async fn delete_jobs_racing_with_claims_never_deletes_a_claimed_job(storage: TestStorage) {
    let enqueued = enqueue_race(&storage, "race").await;
    let (claimed, deleted) =
        race_with_claims(&storage, |storage| async move { storage.delete_jobs(JobFilter::new().queue("race")).await })
            .await;

    let held = claimed_once(&claimed);
    check_still_held(&storage, &claimed).await;
    let mut gone = 0_u64;
    for id in enqueued.difference(&held) {
        assert_eq!(storage.get(*id).await.expect("get succeeds"), None, "a job nobody claimed is deleted");
        gone += 1;
    }
    assert_eq!(deleted, gone, "the count is the number deleted");
    assert_eq!(total_jobs(&storage).await, held.len() as u64);

    let reports = claimed.iter().map(|record| Report { claim: claim_of(record), outcome: JobOutcome::Completed });
    let reported = report_all(&storage, reports.collect(), at(2)).await;
    assert_eq!(reported.applied.len(), held.len(), "every holder's report applies");
}

/// `retry_jobs` racing with claimers never resets a job under its holder: a job claimed
/// between being listed and being retried is skipped, so no job is claimed twice, every
/// job ends running under the one claim it was handed, and every holder's report
/// applies. The count returned is at most the number of jobs.
pub async fn retry_jobs_racing_with_claims_never_resets_a_claimed_job(storage: TestStorage) {
    let enqueued = enqueue_race(&storage, "race").await;
    let (mut claimed, retried) = race_with_claims(&storage, |storage| async move {
        storage.retry_jobs(JobFilter::new().queue("race"), Some(at(1))).await
    })
    .await;
    assert!(retried <= RACE_JOBS as u64, "at most every job is retried: {retried}");

    // Every job was claimed before the claimers stopped; a job a faulty retry made
    // available again under its holder would be claimed a second time here.
    claimed.extend(claim_until_empty(&storage, "race").await);
    let held = claimed_once(&claimed);
    assert_eq!(held, enqueued, "every job is claimed exactly once");
    check_still_held(&storage, &claimed).await;

    let reports = claimed.iter().map(|record| Report { claim: claim_of(record), outcome: JobOutcome::Completed });
    let reported = report_all(&storage, reports.collect(), at(2)).await;
    assert_eq!(reported.applied.len(), RACE_JOBS, "every holder's report applies");
}

/// `cancel_jobs` racing with claimers cancels every job: afterwards each job is either
/// cancelled without ever being claimed, or was claimed and is running with its cancel
/// requested (its holder learns it through heartbeat); the count returned is every job.
pub async fn cancel_jobs_racing_with_claims_cancels_or_asks_every_job(storage: TestStorage) {
    let enqueued = enqueue_race(&storage, "race").await;
    let (claimed, cancelled) = race_with_claims(&storage, |storage| async move {
        storage.cancel_jobs(JobFilter::new().queue("race"), Some(at(1))).await
    })
    .await;
    assert_eq!(cancelled, RACE_JOBS as u64, "every job is cancelled or asked to cancel");

    let held = claimed_once(&claimed);
    for id in &enqueued {
        let stored = get(&storage, *id).await;
        if held.contains(id) {
            assert_eq!(stored.state, JobState::Running, "a claimed job keeps running");
            assert_eq!(stored.cancel_requested_at, Some(at(1)), "a claimed job is asked to cancel");
        } else {
            assert_eq!(stored.state, JobState::Cancelled, "a job nobody claimed is cancelled");
            assert_eq!(stored.attempt, 0, "a cancelled job never ran");
        }
    }

    let claims: Vec<_> = claimed.iter().map(claim_of).collect();
    let beat = storage.heartbeat(HeartbeatParams::new(claims, secs(30)).now(at(2))).await.expect("heartbeat succeeds");
    let mut told: Vec<JobId> = beat.cancelled.iter().map(|claim| claim.id).collect();
    told.sort();
    let mut expected: Vec<JobId> = held.iter().copied().collect();
    expected.sort();
    assert_eq!(told, expected, "every holder learns of the cancel");
    assert!(beat.lost.is_empty());
}

/// Lists every job `admin` matches with `filter`, through the trait object alone.
async fn ids_through(admin: &dyn haul::Admin, filter: JobFilter) -> Vec<JobId> {
    ids_of(&admin.list(ListParams::filtered(filter)).await.expect("list succeeds"))
}

/// A storage works as an `Arc<dyn Admin>` (upcast from the `Arc<dyn Storage>`): get,
/// list, counts and the actions through it see and change the same jobs.
pub async fn a_storage_is_usable_as_a_shared_admin(storage: TestStorage) {
    let ids = ordered_ids(2);
    enqueue(&storage, vec![job("q").id(ids[0]), job_at("q", at(600)).id(ids[1])], at(0)).await;
    let admin: Arc<dyn haul::Admin> = storage.clone();

    assert_eq!(admin.get(ids[0]).await.expect("get succeeds"), Some(get(&storage, ids[0]).await));
    assert_eq!(ids_through(admin.as_ref(), JobFilter::new().queue("q")).await, ids);
    assert_eq!(ids_through(admin.as_ref(), JobFilter::new().state(JobState::Scheduled)).await, vec![ids[1]]);
    assert_eq!(admin.counts().await.expect("counts succeed"), storage.counts().await.expect("counts succeed"));

    admin.delete(ids[0]).await.expect("delete succeeds");
    assert_eq!(storage.get(ids[0]).await.expect("get succeeds"), None, "deleted through the admin");
    let retried = admin.retry_jobs(JobFilter::new().queue("q"), Some(at(1))).await.expect("retry_jobs succeeds");
    assert_eq!(retried, 1);
    claim_only(&storage, "q", ids[1], at(1)).await;
}
