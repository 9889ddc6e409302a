//! The operators' calls that are Redis-specific in how they work: `delete` removes
//! every key and index member of a job (on a cluster too: ignored, needs
//! `HAUL_TEST_REDIS_CLUSTER_URLS`), the bulk calls pipeline each page's scripts,
//! `list` of a few states reads the state sets; and how long `list` takes on a large
//! prefix (ignored: a measurement, not a check). Run the measurement with
//! `HAUL_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo test --release -p haul-redis --test admin -- --ignored --nocapture measure`
//! (`HAUL_LIST_BENCH_JOBS` jobs, 25,000 by default).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Instant;

use haul_core::{
    Admin, ClaimParams, EnqueueParams, Error, JobFilter, JobId, JobOutcome, JobState, ListParams, NewJob, Report,
    ReportParams, RunAt, Storage, Unique,
};
use haul_redis::RedisStorage;
use serde_json::json;

/// Held for reading by every test that runs scripts, and for writing by the one that
/// makes the server forget them (`SCRIPT FLUSH`), which would otherwise race the
/// others' reloading.
static SCRIPTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn scan_count(pattern: &str) -> usize {
    let mut conn = common::raw().await;
    let found: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap();
    found.len()
}

async fn zrange(key: &str) -> Vec<String> {
    let mut conn = common::raw().await;
    redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).query_async(&mut conn).await.unwrap()
}

/// Claims up to `count` jobs of `queue` and reports `outcome` for each.
async fn finish(storage: &RedisStorage, queue: &str, count: usize, outcome: JobOutcome) -> Vec<JobId> {
    let claimed = storage.claim(ClaimParams::new([queue], count)).await.unwrap();
    let reports = claimed.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: outcome.clone() }).collect();
    storage.report(ReportParams::new(reports)).await.unwrap();
    claimed.iter().map(|job| job.id).collect()
}

#[tokio::test]
async fn delete_removes_the_hash_the_set_member_and_the_index_members() {
    let _scripts = SCRIPTS.read().await;
    let (storage, guard) = common::storage().await;
    let prefix = &guard.prefix;
    let unique = || NewJob::new("plain", json!({})).queue("q").unique(Unique::new("only-one"));
    let id = storage.enqueue(EnqueueParams::new(vec![unique()])).await.unwrap().ids[0];
    let kept = storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({})).queue("q")])).await.unwrap();
    assert_eq!(zrange(&format!("haul:{{{prefix}}}:unique")).await.len(), 1);

    storage.delete(id).await.unwrap();

    assert_eq!(storage.get(id).await.unwrap(), None);
    assert_eq!(scan_count(&format!("haul:{{{prefix}:q}}:job:{id}")).await, 0, "the hash is gone");
    assert!(
        !zrange(&format!("haul:{{{prefix}:q}}:available")).await.iter().any(|member| member.ends_with(&id.to_string()))
    );
    assert_eq!(zrange(&format!("haul:{{{prefix}}}:jobs")).await, [format!("{}:q", kept.ids[0])]);
    assert!(zrange(&format!("haul:{{{prefix}}}:unique")).await.is_empty());
    assert!(matches!(storage.delete(id).await, Err(Error::NotFound(missing)) if missing == id));
    let again = storage.enqueue(EnqueueParams::new(vec![unique()])).await.unwrap();
    assert!(again.duplicates.is_empty() && again.ids[0] != id, "the key no longer blocks");
}

/// A completion reported with `delete_completed` removes the hash of a job without a
/// uniqueness key and its members of every set and of the jobs index, and gives its
/// limit key's count back; a job with a uniqueness key is kept as completed, with its
/// members.
#[tokio::test]
async fn a_deleting_completion_removes_the_hash_the_set_members_and_the_index_members() {
    let _scripts = SCRIPTS.read().await;
    let (storage, guard) = common::storage().await;
    let prefix = &guard.prefix;
    let plain = NewJob::new("plain", json!({})).queue("q");
    let keyed = NewJob::new("plain", json!({})).queue("q").limit_key("k");
    let unique = NewJob::new("plain", json!({})).queue("q").unique(Unique::new("only-one"));
    let ids = storage.enqueue(EnqueueParams::new(vec![plain, keyed, unique])).await.unwrap().ids;
    let claimed = storage.claim(ClaimParams::new(["q"], 3)).await.unwrap();
    let reports = claimed.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed });
    let outcome = storage.report(ReportParams::new(reports.collect()).delete_completed(true)).await.unwrap();
    assert_eq!(outcome.applied.len(), 3);

    let kept = ids[2];
    assert_eq!(scan_count(&format!("haul:{{{prefix}:q}}:job:*")).await, 1, "only the unique job's hash is left");
    assert_eq!(storage.get(kept).await.unwrap().unwrap().state, JobState::Completed);
    for set in ["available", "running"] {
        assert!(zrange(&format!("haul:{{{prefix}:q}}:{set}")).await.is_empty(), "nothing left in {set}");
    }
    assert_eq!(zrange(&format!("haul:{{{prefix}:q}}:completed")).await, [kept.to_string()]);
    assert_eq!(scan_count(&format!("haul:{{{prefix}:q}}:key_running")).await, 0, "the key's count is given back");
    assert_eq!(zrange(&format!("haul:{{{prefix}}}:jobs")).await, [format!("{kept}:q")]);
    assert_eq!(zrange(&format!("haul:{{{prefix}}}:unique")).await.len(), 1, "the kept job's key still blocks");
}

#[tokio::test]
async fn delete_refuses_a_running_job_and_takes_every_other_state() {
    let _scripts = SCRIPTS.read().await;
    let (storage, _guard) = common::storage().await;
    let jobs = (0..4).map(|_| NewJob::new("plain", json!({})).queue("q")).collect();
    let ids = storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids;
    let running = storage.claim(ClaimParams::new(["q"], 1)).await.unwrap()[0].id;
    match storage.delete(running).await {
        Err(Error::InvalidState { id, state: JobState::Running, operation: "delete", .. }) => assert_eq!(id, running),
        other => panic!("expected InvalidState, got {other:?}"),
    }
    assert!(storage.get(running).await.unwrap().is_some(), "a refused delete changes nothing");

    let completed = finish(&storage, "q", 1, JobOutcome::Completed).await[0];
    let cancelled = storage.cancel(ids[3], None).await.unwrap().id;
    let available = ids.iter().copied().find(|id| ![running, completed, cancelled].contains(id)).unwrap();
    for id in [completed, cancelled, available] {
        storage.delete(id).await.unwrap();
        assert_eq!(storage.get(id).await.unwrap(), None);
    }
    let counts = storage.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].states.values().sum::<u64>(), 1, "only the running job is left: {counts:?}");
}

#[tokio::test]
async fn the_bulk_calls_apply_to_every_match_and_skip_running_jobs() {
    let _scripts = SCRIPTS.read().await;
    let (storage, _guard) = common::storage().await;
    // 1,200 jobs (more than two pages): 1,100 discarded, 100 left available.
    let jobs = (0..1_200).map(|n| NewJob::new("plain", json!({ "n": n })).queue("q")).collect();
    storage.enqueue(EnqueueParams::new(jobs)).await.unwrap();
    let discard = || JobOutcome::Discarded { reason: "no".into() };
    let discarded = finish(&storage, "q", 1_100, discard()).await;
    assert_eq!(discarded.len(), 1_100);

    let retried = storage.retry_jobs(JobFilter::new().state(JobState::Discarded), None).await.unwrap();
    assert_eq!(retried, 1_100);
    let counts = storage.counts().await.unwrap();
    assert_eq!(counts[0].get(JobState::Available), 1_200);

    // One running job: cancel_jobs asks it to stop, delete_jobs skips it.
    let running = storage.claim(ClaimParams::new(["q"], 1)).await.unwrap()[0].id;
    let cancelled = storage.cancel_jobs(JobFilter::new().queue("q"), None).await.unwrap();
    assert_eq!(cancelled, 1_200, "1,199 cancelled and one asked to stop");
    assert!(storage.get(running).await.unwrap().unwrap().cancel_requested_at.is_some());
    assert_eq!(storage.cancel_jobs(JobFilter::new(), None).await.unwrap(), 1, "the running one again");

    let deleted = storage.delete_jobs(JobFilter::new()).await.unwrap();
    assert_eq!(deleted, 1_199);
    let left = storage.list(ListParams::new()).await.unwrap();
    assert_eq!(left.iter().map(|job| job.id).collect::<Vec<_>>(), [running]);
    assert_eq!(storage.delete_jobs(JobFilter::new().state(JobState::Cancelled)).await.unwrap(), 0);
}

/// Runs the operators' one-job script `file` (`cancel.lua`, `retry.lua` or
/// `delete.lua`, after `lib.lua`, as the crate assembles it) on job `id` of queue `q`
/// under `prefix` on one server, with `allowed` as the states the job must be in, the
/// argument a bulk call passes; returns the reply's status and second item.
async fn run_one_job_script(prefix: &str, file: &str, id: JobId, allowed: &str) -> (String, String) {
    let body = match file {
        "cancel.lua" => include_str!("../lua/cancel.lua"),
        "retry.lua" => include_str!("../lua/retry.lua"),
        "delete.lua" => include_str!("../lua/delete.lua"),
        other => panic!("not a one-job script: {other}"),
    };
    let script = redis::Script::new(&format!("{}{body}", include_str!("../lua/lib.lua")));
    let base = format!("haul:{{{prefix}:q}}:");
    let mut call = script.prepare_invoke();
    let global = file == "delete.lua";
    if global {
        call.key(format!("haul:{{{prefix}}}:jobs")).key(format!("haul:{{{prefix}}}:queues"));
        call.key(format!("haul:{{{prefix}}}:unique"));
    }
    for set in
        ["scheduled", "available", "running", "retryable", "completed", "discarded", "cancelled", "paused", "limits"]
    {
        call.key(format!("{base}{set}"));
    }
    call.arg("").arg(format!("haul:{{{prefix}}}:wakeup")).arg(if global { "3" } else { "0" }).arg("1");
    call.arg("q").arg(format!("{base}job:")).arg(id.to_string()).arg(allowed);
    let reply: Vec<redis::Value> = call.invoke_async(&mut common::raw().await).await.unwrap();
    let text = |value: Option<&redis::Value>| match value {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8(bytes.clone()).unwrap(),
        _ => String::new(),
    };
    (text(reply.first()), text(reply.get(1)))
}

/// The race of a bulk call with an operator: a job listed in a state of the filter
/// that has left it before its script runs. Each one-job script, given the filter's
/// states, refuses such a job the way it refuses a state its operation does not take
/// (`{'state', state}`, nothing changed), so the bulk call skips it; given a state the
/// job is in, or none, it applies as before.
#[tokio::test]
async fn the_one_job_scripts_refuse_a_job_no_longer_in_the_bulk_filters_states() {
    let _scripts = SCRIPTS.read().await;
    let (storage, guard) = common::storage().await;
    let prefix = &guard.prefix;
    let jobs = (0..3).map(|_| NewJob::new("plain", json!({})).queue("q")).collect();
    let ids = storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids;
    let discarded = finish(&storage, "q", 1, JobOutcome::Discarded { reason: "no".into() }).await[0];
    // Listed as discarded by `delete_jobs(state=discarded)`, then retried by hand.
    storage.retry(discarded, None).await.unwrap();
    let storage = &storage;
    let state = |id| async move { storage.get(id).await.unwrap().map(|job| job.state) };

    let refused = run_one_job_script(prefix, "delete.lua", discarded, "discarded").await;
    assert_eq!(refused, ("state".to_owned(), "available".to_owned()));
    assert_eq!(state(discarded).await, Some(JobState::Available), "not deleted");
    assert!(zrange(&format!("haul:{{{prefix}}}:jobs")).await.iter().any(|m| m.starts_with(&discarded.to_string())));
    let refused = run_one_job_script(prefix, "retry.lua", discarded, "discarded,cancelled").await;
    assert_eq!(refused.0, "state");
    let refused = run_one_job_script(prefix, "cancel.lua", discarded, "scheduled,retryable").await;
    assert_eq!(refused, ("state".to_owned(), "available".to_owned()));
    assert_eq!(state(discarded).await, Some(JobState::Available), "not cancelled");

    // Listed as available by `cancel_jobs(state=available)`, then claimed: not asked
    // to stop.
    let running = storage.claim(ClaimParams::new(["q"], 1)).await.unwrap()[0].id;
    let refused = run_one_job_script(prefix, "cancel.lua", running, "available").await;
    assert_eq!(refused, ("state".to_owned(), "running".to_owned()));
    assert_eq!(storage.get(running).await.unwrap().unwrap().cancel_requested_at, None);

    // A state the job is in, or none at all (the one-job calls), applies.
    let available = ids.iter().copied().find(|id| ![discarded, running].contains(id)).unwrap();
    assert_eq!(state(available).await, Some(JobState::Available));
    assert_eq!(run_one_job_script(prefix, "cancel.lua", available, "scheduled,available").await.0, "ok");
    assert_eq!(state(available).await, Some(JobState::Cancelled));
    assert_eq!(run_one_job_script(prefix, "retry.lua", available, "cancelled").await.0, "ok");
    assert_eq!(run_one_job_script(prefix, "delete.lua", available, "available").await.0, "ok");
    assert_eq!(state(available).await, None);
    assert_eq!(run_one_job_script(prefix, "cancel.lua", running, "").await.0, "ok");
    assert!(storage.get(running).await.unwrap().unwrap().cancel_requested_at.is_some());
}

#[tokio::test]
async fn the_bulk_calls_and_delete_work_after_the_server_forgot_its_scripts() {
    let _scripts = SCRIPTS.write().await;
    let (storage, _guard) = common::storage().await;
    let jobs = (0..3).map(|_| NewJob::new("plain", json!({})).queue("q")).collect();
    let ids = storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids;
    let flush = || async {
        let mut conn = common::raw().await;
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    };
    flush().await;
    assert_eq!(storage.cancel_jobs(JobFilter::new(), None).await.unwrap(), 3);
    flush().await;
    assert_eq!(storage.retry_jobs(JobFilter::new(), None).await.unwrap(), 3);
    flush().await;
    storage.delete(ids[0]).await.unwrap();
    flush().await;
    assert_eq!(storage.delete_jobs(JobFilter::new()).await.unwrap(), 2);
    assert!(storage.list(ListParams::new()).await.unwrap().is_empty());
}

/// 30 jobs over queues `q` and `r`, kinds `a` and `b`: the even ones scheduled, the odd
/// ones available, each set holding them in reverse id order (by run_at), so that only
/// sorting gives id order.
fn mixed_jobs() -> Vec<NewJob> {
    let (later, earlier) = (chrono::Utc::now() + chrono::Duration::hours(1), chrono::Utc::now());
    (0..30)
        .map(|n| {
            let job = NewJob::new(if n % 3 == 0 { "a" } else { "b" }, json!({ "n": n })).queue(["q", "r"][n % 2]);
            let back = chrono::Duration::seconds(n as i64);
            job.run_at(RunAt::At(if n % 2 == 0 { later - back } else { earlier - back }))
        })
        .collect()
}

async fn listed(storage: &RedisStorage, params: ListParams) -> Vec<JobId> {
    storage.list(params).await.unwrap().into_iter().map(|job| job.id).collect()
}

/// With few jobs in the named states, `list` reads the state sets: in id order,
/// honouring the cursor, the limit and the rest of the filter.
#[tokio::test]
async fn list_of_a_few_jobs_states_reads_the_sets_in_id_order() {
    let _scripts = SCRIPTS.read().await;
    let (storage, _guard) = common::storage().await;
    let ids = storage.enqueue(EnqueueParams::new(mixed_jobs())).await.unwrap().ids;
    let states = || ListParams::new().state(JobState::Scheduled).state(JobState::Available);
    assert_eq!(listed(&storage, states()).await, ids);
    assert_eq!(listed(&storage, states().after(ids[9]).limit(7)).await, ids[10..17]);
    assert_eq!(listed(&storage, states().queue("q")).await, ids.iter().copied().step_by(2).collect::<Vec<_>>());
    let kind_a: Vec<JobId> = ids.iter().copied().step_by(3).collect();
    assert_eq!(listed(&storage, states().kind("a").after(ids[0])).await, kind_a[1..]);
    let available: Vec<JobId> = ids.iter().copied().skip(1).step_by(2).collect();
    assert_eq!(listed(&storage, ListParams::new().state(JobState::Available).limit(4)).await, available[..4]);
    assert!(listed(&storage, ListParams::new().state(JobState::Scheduled).queue("r")).await.is_empty());
    assert!(listed(&storage, ListParams::new().state(JobState::Running)).await.is_empty());
    assert!(listed(&storage, ListParams::new().state(JobState::Available).queue("none")).await.is_empty());
}

/// With more than 10,000 jobs in the named states, `list` walks the jobs index, reading
/// the states first: the same order and filter.
#[tokio::test]
async fn list_of_many_jobs_states_walks_the_index_in_id_order() {
    let _scripts = SCRIPTS.read().await;
    let (storage, _guard) = common::storage().await;
    let mut big = Vec::new();
    for _ in 0..2 {
        let jobs = (0..5_005).map(|n| NewJob::new("bulk", json!({ "n": n })).queue("big")).collect();
        big.extend(storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids);
    }
    let ids = storage.enqueue(EnqueueParams::new(mixed_jobs())).await.unwrap().ids;
    let available: Vec<JobId> = ids.iter().copied().skip(1).step_by(2).collect();

    let after_big = ListParams::new().state(JobState::Available).after(big[10_000]).limit(15);
    let expected: Vec<JobId> = big[10_001..].iter().chain(&available[..6]).copied().collect();
    assert_eq!(listed(&storage, after_big).await, expected);
    let kind_a: Vec<JobId> =
        available.iter().copied().filter(|id| ids.iter().position(|x| x == id).unwrap() % 3 == 0).collect();
    assert_eq!(listed(&storage, ListParams::new().state(JobState::Available).kind("a")).await, kind_a);
    let first = ListParams::new().state(JobState::Available).state(JobState::Scheduled).limit(3);
    assert_eq!(listed(&storage, first).await, big[..3]);
    assert_eq!(
        listed(&storage, ListParams::new().state(JobState::Scheduled)).await,
        ids.iter().copied().step_by(2).collect::<Vec<_>>()
    );
}

/// The measurement of `list` on a large prefix; see the module docs.
#[tokio::test]
#[ignore = "a measurement: stores many jobs"]
async fn measure_list_on_many_jobs() {
    let _scripts = SCRIPTS.read().await;
    let total: usize = std::env::var("HAUL_LIST_BENCH_JOBS").ok().and_then(|n| n.parse().ok()).unwrap_or(25_000);
    let (storage, guard) = common::storage().await;
    let started = Instant::now();
    // Every 1,000th job is discarded, about one in 80 cancelled (more than 10,000 from
    // 1,000,000 jobs), the last 100 stay available, the rest complete.
    let queue = "bench";
    for start in (0..total).step_by(5_000) {
        let jobs = (start..total.min(start + 5_000)).map(|n| NewJob::new("plain", json!({ "n": n })).queue(queue));
        storage.enqueue(EnqueueParams::new(jobs.collect())).await.unwrap();
    }
    let mut claimed_so_far = 0;
    while claimed_so_far < total.saturating_sub(100) {
        let count = (total - 100 - claimed_so_far).min(1_000);
        let claimed = storage.claim(ClaimParams::new([queue], count)).await.unwrap();
        let reports = claimed
            .iter()
            .enumerate()
            .map(|(at, job)| {
                let outcome = match (claimed_so_far + at) % 1_000 {
                    500 => JobOutcome::Discarded { reason: "bench".into() },
                    n if n % 80 == 7 => JobOutcome::Cancelled,
                    _ => JobOutcome::Completed,
                };
                Report { claim: job.claim().unwrap(), outcome }
            })
            .collect();
        storage.report(ReportParams::new(reports)).await.unwrap();
        claimed_so_far += claimed.len();
    }
    eprintln!("stored {total} jobs in {:.1?}: {:?}", started.elapsed(), storage.counts().await.unwrap()[0].states);
    let nth = total * 9 / 10;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("haul:{{{}}}:jobs", guard.prefix))
        .arg(nth)
        .arg(nth)
        .query_async(&mut common::raw().await)
        .await
        .unwrap();
    let deep_cursor: JobId = JobId(members[0][..36].parse().unwrap());

    let cases = [
        ("state=discarded, limit 50", ListParams::new().state(JobState::Discarded).limit(50)),
        ("state=completed, limit 50", ListParams::new().state(JobState::Completed).limit(50)),
        ("state=available, limit 50", ListParams::new().state(JobState::Available).limit(50)),
        ("state=cancelled, limit 50", ListParams::new().state(JobState::Cancelled).limit(50)),
        (
            "state=completed, limit 50, after 90%",
            ListParams::new().state(JobState::Completed).after(deep_cursor).limit(50),
        ),
        (
            "state=discarded, limit 50, after 90%",
            ListParams::new().state(JobState::Discarded).after(deep_cursor).limit(50),
        ),
        (
            "state=cancelled, limit 50, after 90%",
            ListParams::new().state(JobState::Cancelled).after(deep_cursor).limit(50),
        ),
        ("no filter, limit 50, after 90%", ListParams::new().after(deep_cursor).limit(50)),
        ("kind=plain, limit 50, after 90%", ListParams::new().kind("plain").after(deep_cursor).limit(50)),
    ];
    for (name, params) in cases {
        let mut times = Vec::new();
        let mut listed = 0;
        for _ in 0..5 {
            let started = Instant::now();
            listed = storage.list(params.clone()).await.unwrap().len();
            times.push(started.elapsed());
        }
        times.sort();
        eprintln!("{name}: {listed} jobs, median {:.1?} (min {:.1?}, max {:.1?})", times[2], times[0], times[4]);
    }
    // The bulk delete of the discarded jobs, against as many cancelled ones deleted one
    // by one.
    let started = Instant::now();
    let deleted = storage.delete_jobs(JobFilter::new().state(JobState::Discarded)).await.unwrap();
    eprintln!("delete_jobs(state=discarded): {deleted} jobs in {:.1?}", started.elapsed());
    let started = Instant::now();
    let cancelled = storage.list(ListParams::new().state(JobState::Cancelled).limit(deleted as usize)).await.unwrap();
    for job in &cancelled {
        storage.delete(job.id).await.unwrap();
    }
    eprintln!("list then delete one by one: {} jobs in {:.1?}", cancelled.len(), started.elapsed());

    let started = Instant::now();
    storage.purge().await.unwrap();
    eprintln!("purged in {:.1?}", started.elapsed());
}

/// On a cluster `delete.lua` stays in the queue's slot and the client removes the
/// index members after it: nothing of a deleted job is left, one by one or in bulk.
/// Run with `HAUL_TEST_REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,… cargo test -p
/// haul-redis --test admin -- --ignored on_a_cluster`.
#[tokio::test]
#[ignore = "needs a Redis Cluster: HAUL_TEST_REDIS_CLUSTER_URLS"]
async fn on_a_cluster_delete_leaves_nothing_of_the_job() {
    let _scripts = SCRIPTS.read().await;
    use redis::AsyncCommands;

    let prefix = common::fresh_prefix();
    let config = haul_redis::RedisConfig::new().prefix(&prefix);
    let storage = RedisStorage::connect_cluster(common::cluster_nodes(), config).await.unwrap();
    assert!(storage.is_cluster());
    let mut raw =
        redis::cluster::ClusterClient::new(common::cluster_nodes()).unwrap().get_async_connection().await.unwrap();
    let unique = |queue: &str, key: &str| NewJob::new("plain", json!({})).queue(queue).unique(Unique::new(key));

    let jobs =
        vec![unique("q", "k1"), unique("r", "k2"), unique("q", "k3"), NewJob::new("plain", json!({})).queue("r")];
    let ids = storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids;
    storage.delete(ids[0]).await.unwrap();
    let index: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:jobs"), 0, -1).await.unwrap();
    assert_eq!(index.len(), 3);
    assert!(!index.iter().any(|member| member.starts_with(&ids[0].to_string())));
    let uniques: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:unique"), 0, -1).await.unwrap();
    assert_eq!(uniques.len(), 2);
    let again = storage.enqueue(EnqueueParams::new(vec![unique("q", "k1")])).await.unwrap();
    assert!(again.duplicates.is_empty(), "the key no longer blocks");

    let running = storage.claim(ClaimParams::new(["r"], 1)).await.unwrap()[0].id;
    assert!(matches!(storage.delete(running).await, Err(Error::InvalidState { .. })));
    assert_eq!(storage.delete_jobs(JobFilter::new()).await.unwrap(), 3, "all but the running one");
    let index: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:jobs"), 0, -1).await.unwrap();
    assert_eq!(index, [format!("{running}:r")]);
    let uniques: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:unique"), 0, -1).await.unwrap();
    assert_eq!(uniques.len(), usize::from(ids[1] == running), "only the running job's key, if it has one");
    assert_eq!(listed(&storage, ListParams::new()).await, [running]);
    assert_eq!(listed(&storage, ListParams::new().state(JobState::Running)).await, [running]);

    // A completion that deletes its job leaves nothing of it either, in two queues (two
    // slots) at once.
    let plain = |queue: &str| NewJob::new("plain", json!({})).queue(queue);
    let added = storage.enqueue(EnqueueParams::new(vec![plain("q"), plain("s")])).await.unwrap().ids;
    let jobs = storage.claim(ClaimParams::new(["q", "s"], 2)).await.unwrap();
    let reports = jobs.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed });
    storage.report(ReportParams::new(reports.collect()).delete_completed(true)).await.unwrap();
    for id in added {
        assert_eq!(storage.get(id).await.unwrap(), None);
    }
    let index: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:jobs"), 0, -1).await.unwrap();
    assert_eq!(index, [format!("{running}:r")], "the completed jobs' members are gone");

    // When the second queue's run fails (a job's key holds no hash), the first queue's
    // deleted job still leaves the jobs index; the failed run keeps its jobs.
    let added = storage.enqueue(EnqueueParams::new(vec![plain("q"), plain("s")])).await.unwrap().ids;
    let jobs = storage.claim(ClaimParams::new(["q", "s"], 2)).await.unwrap();
    let corrupt = format!("haul:{{{prefix}:s}}:job:{}", added[1]);
    let _: () = raw.del(&corrupt).await.unwrap();
    let _: () = raw.set(&corrupt, "not a hash").await.unwrap();
    let mut reports: Vec<Report> =
        jobs.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed }).collect();
    reports.sort_by_key(|report| report.claim.id != added[0]); // queue q's run first
    assert!(storage.report(ReportParams::new(reports).delete_completed(true)).await.is_err());
    assert_eq!(storage.get(added[0]).await.unwrap(), None);
    let index: Vec<String> = raw.zrange(format!("haul:{{{prefix}}}:jobs"), 0, -1).await.unwrap();
    assert!(!index.contains(&format!("{}:q", added[0])), "queue q's deleted job left the index: {index:?}");
    storage.purge().await.unwrap();
}
