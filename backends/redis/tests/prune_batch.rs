//! `prune` deletes in runs of `prune.lua` of a few hundred jobs, up to its limit, oldest
//! first; and how long one run blocks the server, by batch size (ignored: a
//! measurement, not a check). Run the measurement with
//! `HAUL_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo test --release -p haul-redis --test prune_batch -- --ignored --nocapture`.
//! It sets `slowlog-log-slower-than 0` for its duration (restored after) and reads
//! each script's own run time from `SLOWLOG`.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};

use haul_core::{
    ClaimParams, EnqueueParams, JobOutcome, NewJob, PruneParams, Report, ReportParams, Retention, Storage, Unique,
};
use haul_redis::RedisStorage;
use serde_json::json;

/// Stores `count` completed jobs spread over `queues`, every other one with a unique key
/// when `unique`.
async fn completed_jobs(storage: &RedisStorage, count: usize, queues: &[&str], unique: bool) {
    for start in (0..count).step_by(1000) {
        let jobs = (start..count.min(start + 1000))
            .map(|n| {
                let job = NewJob::new("plain", json!({ "n": n })).queue(queues[n % queues.len()]);
                if unique && n % 2 == 0 { job.unique(Unique::new(format!("key-{n}"))) } else { job }
            })
            .collect();
        storage.enqueue(EnqueueParams::new(jobs)).await.unwrap();
    }
    loop {
        let claimed = storage.claim(ClaimParams::new(queues.iter().copied(), 1000)).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        let reports =
            claimed.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed }).collect();
        storage.report(ReportParams::new(reports)).await.unwrap();
    }
}

fn at(seconds: i64) -> haul_core::Timestamp {
    chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2030, 1, 1, 0, 0, 0).single().unwrap()
        + chrono::Duration::seconds(seconds)
}

/// Stores `count` jobs over `queues`, each with a unique key, completed at `finished`.
async fn finished_at(storage: &RedisStorage, count: usize, queues: &[&str], wave: &str, finished: i64) -> Vec<String> {
    let jobs = (0..count)
        .map(|n| {
            NewJob::new("plain", json!({})).queue(queues[n % queues.len()]).unique(Unique::new(format!("{wave}-{n}")))
        })
        .collect();
    let ids = storage.enqueue(EnqueueParams::new(jobs).now(at(0))).await.unwrap().ids;
    let claimed = storage.claim(ClaimParams::new(queues.iter().copied(), count).now(at(0))).await.unwrap();
    assert_eq!(claimed.len(), count);
    let reports =
        claimed.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: JobOutcome::Completed }).collect();
    storage.report(ReportParams::new(reports).now(at(finished))).await.unwrap();
    ids.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn a_prune_past_one_batch_deletes_up_to_its_limit_oldest_first_across_queues() {
    use redis::AsyncCommands;

    let (storage, _guard) = common::storage().await;
    let queues = ["a", "b", "c"];
    // 3 waves of 300 jobs, over 3 queues, finished at 10, 20 and 30 s; retention 5 s.
    let mut waves = Vec::new();
    for (n, finished) in [10, 20, 30].into_iter().enumerate() {
        waves.push(finished_at(&storage, 300, &queues, &format!("w{n}"), finished).await);
    }
    let prune = |limit: usize, now: i64| {
        storage.prune(PruneParams::new(Retention::all(Duration::from_secs(5))).limit(limit).now(at(now)))
    };

    assert_eq!(prune(10_000, 25).await.unwrap(), 600, "the two waves finished at or before 20 s, in three runs");
    assert_eq!(prune(10_000, 25).await.unwrap(), 0);
    assert_eq!(prune(260, 60).await.unwrap(), 260, "more than one run, stopped at the limit");
    assert_eq!(prune(10_000, 60).await.unwrap(), 40);

    // Oldest first: a limit of the first wave's size takes exactly that wave.
    let (storage, guard2) = common::storage().await;
    let first = finished_at(&storage, 300, &queues, "x", 10).await;
    let second = finished_at(&storage, 300, &queues, "y", 20).await;
    let pruned = storage.prune(PruneParams::new(Retention::all(Duration::ZERO)).limit(300).now(at(60))).await.unwrap();
    assert_eq!(pruned, 300);
    let mut raw = common::raw().await;
    let mut left: Vec<String> = raw.zrange(format!("haul:{{{}}}:jobs", guard2.prefix), 0, -1).await.unwrap();
    left = left.into_iter().map(|member| member.split_once(':').unwrap().0.to_owned()).collect();
    left.sort();
    let mut expected = second.clone();
    expected.sort();
    assert_eq!(left, expected, "the first wave went, the second stayed");
    assert!(first.iter().all(|id| !left.contains(id)));
    let uniques: u64 = raw.zcard(format!("haul:{{{}}}:unique", guard2.prefix)).await.unwrap();
    assert_eq!(uniques, 300, "the pruned jobs left the unique index");
}

/// How many entries the slow log keeps during the measurement (it logs every command
/// of every client then).
const SLOWLOG_LEN: usize = 20_000;

/// The run times (µs) of the `EVALSHA`s on `prefix`'s keys in the slow log whose id is above `*seen` (which moves past them), oldest first.
async fn script_micros(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, seen: &mut i64) -> Vec<u64> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(SLOWLOG_LEN).query_async(conn).await.unwrap();
    let needle = format!("{{{prefix}");
    let mut found = Vec::new();
    let mut newest = *seen;
    for entry in entries {
        let redis::Value::Array(fields) = entry else { continue };
        let (Some(redis::Value::Int(id)), Some(redis::Value::Int(micros)), Some(redis::Value::Array(args))) =
            (fields.first(), fields.get(2), fields.get(3))
        else {
            continue;
        };
        if *id <= *seen {
            continue;
        }
        newest = newest.max(*id);
        let args: Vec<String> = args.iter().filter_map(|arg| redis::from_redis_value_ref(arg).ok()).collect();
        if args.first().is_some_and(|command| command.eq_ignore_ascii_case("evalsha"))
            && args.iter().any(|arg| arg.contains(&needle))
        {
            found.push(u64::try_from(*micros).unwrap());
        }
    }
    *seen = newest;
    found.reverse();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn prune_script_time_by_batch() {
    let mut conn = common::raw().await;
    let config: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("slowlog-*").query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .arg("slowlog-max-len")
        .arg(SLOWLOG_LEN)
        .query_async(&mut conn)
        .await
        .unwrap();

    let jobs = 10_000;
    let many: Vec<String> = (0..20).map(|n| format!("q{n:02}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for (queues, unique) in
        [(&["q"][..], false), (&["q"][..], true), (&["a", "b", "c", "d"][..], true), (&many[..], true)]
    {
        // 10,000 is PruneParams' default limit: runs of PRUNE_BATCH jobs; the others are
        // smaller runs, for comparison.
        for limit in [10_000, 250, 100] {
            let (storage, _guard) = common::storage().await;
            completed_jobs(&storage, jobs, queues, unique).await;
            let mut seen = 0;
            script_micros(&mut conn, storage.prefix(), &mut seen).await;
            let mut runs = Vec::new();
            let started = Instant::now();
            let mut pruned = 0;
            loop {
                let count = storage.prune(PruneParams::new(Retention::all(Duration::ZERO)).limit(limit)).await.unwrap();
                runs.extend(script_micros(&mut conn, storage.prefix(), &mut seen).await);
                pruned += count;
                if count == 0 {
                    break;
                }
            }
            let total = started.elapsed();
            assert_eq!(pruned, jobs as u64);
            runs.pop(); // the last run found nothing
            runs.sort_unstable();
            let median = runs.get(runs.len() / 2).copied().unwrap_or(0);
            let per_run = jobs as f64 / runs.len().max(1) as f64;
            println!(
                "{:2} queue(s), unique {unique:5}, limit {limit:5}: {:3} script runs seen, µs per run: median {median:6} \
                 p90 {:6} max {:6} ({:.1} µs/job); all {jobs} in {total:.0?}",
                queues.len(),
                runs.len(),
                runs.get(runs.len() * 9 / 10).copied().unwrap_or(0),
                runs.last().copied().unwrap_or(0),
                median as f64 / per_run,
            );
        }
    }

    let mut restore = redis::cmd("CONFIG");
    restore.arg("SET");
    for pair in config.chunks(2) {
        restore.arg(&pair[0]).arg(&pair[1]);
    }
    let _: () = restore.query_async(&mut conn).await.unwrap();
}
