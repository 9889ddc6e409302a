//! Errors the backend reports: each a kind a caller can match, never a panic.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use haul_core::Admin as _;
use haul_core::{
    ClaimParams, EnqueueParams, Error, ErrorKind, JobId, JobOutcome, JobState, NewJob, PeriodicUpdate, QueueLimits,
    RateLimit, Report, ReportParams, Storage,
};
use haul_redis::{RedisConfig, RedisStorage};
use redis::AsyncCommands;
use serde_json::json;

/// Enqueues `n` jobs of kind `plain` on queue `q`; their ids, in enqueue order.
async fn enqueue_plain(storage: &RedisStorage, n: usize) -> Vec<JobId> {
    let jobs = (0..n).map(|_| NewJob::new("plain", json!({})).queue("q")).collect();
    storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_a_connection_error() {
    // Port 1 on the loopback interface: nothing listens there.
    let error = RedisStorage::connect("redis://127.0.0.1:1").await.unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Connection), "{error:?}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn an_invalid_prefix_is_refused_before_connecting() {
    for bad in ["", "Upper", "1st", "with space", "a{b}", "a:b"] {
        let error =
            RedisStorage::connect_with("redis://127.0.0.1:1", RedisConfig::new().prefix(bad)).await.unwrap_err();
        assert!(matches!(error, Error::InvalidName { what: "namespace", .. }), "{bad:?}: {error:?}");
    }
}

#[tokio::test]
async fn a_url_that_is_not_a_redis_url_is_refused() {
    let error = RedisStorage::connect("postgres://localhost/db").await.unwrap_err();
    assert!(matches!(error, Error::Backend { backend: "redis", kind: ErrorKind::Other, .. }), "{error:?}");
}

#[tokio::test]
async fn a_stored_job_that_was_tampered_with_is_corrupt_data_or_unreadable_arguments() {
    let (storage, guard) = common::storage().await;
    let ids = enqueue_plain(&storage, 2).await;
    let mut conn = common::raw().await;
    let key = |id| guard.queue_key("q", &format!("job:{id}"));
    let _: () = conn.hset(key(ids[0]), "args", "{not json").await.unwrap();
    let _: () = conn.hset(key(ids[1]), "state", "sleeping").await.unwrap();

    // Arguments that cannot be read fail that job alone: the record comes back, saying why.
    let unreadable = storage.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(unreadable.args, serde_json::Value::Null);
    assert!(unreadable.unreadable_args.is_some(), "{unreadable:?}");
    // A field haul itself writes that is not in its form is corrupt data.
    let error = storage.get(ids[1]).await.unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::CorruptData), "{error:?}");
    assert!(!error.is_transient());
}

/// A claim writes its jobs one by one and moves them to the running set at its end; a
/// job whose stored `attempt` is not a number is claimed as a first attempt.
#[tokio::test]
async fn a_job_whose_attempt_count_was_mangled_is_claimed_as_a_first_attempt() {
    let (storage, guard) = common::storage().await;
    let ids = enqueue_plain(&storage, 1).await;
    let mut conn = common::raw().await;
    let _: () = conn.hset(guard.queue_key("q", &format!("job:{}", ids[0])), "attempt", "x").await.unwrap();

    let claimed = storage.claim(ClaimParams::new(["q"], 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    let running: Option<f64> = conn.zscore(guard.queue_key("q", "running"), ids[0].to_string()).await.unwrap();
    assert!(running.is_some(), "the claimed job is in the running set, where rescue finds it");
}

/// A claim that stops at a job it cannot take (here the queue's running-per-key hash,
/// replaced by a string, fails the job's count right after the job was taken) hands
/// over the jobs it took, that one included: they are marked running, sit in the
/// running set and count as starts for the queue's rate limit. The jobs after it stay
/// available, for the next claim.
#[tokio::test]
async fn a_claim_that_stops_at_an_error_hands_over_the_jobs_it_took() {
    let (storage, guard) = common::storage().await;
    storage.set_queue_limits("q", QueueLimits::new().rate(RateLimit::per_minute(10))).await.unwrap();
    let jobs = (0..3).map(|i| NewJob::new("plain", json!({})).queue("q").limit_key(format!("k{i}"))).collect();
    let ids = storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids;
    let mut conn = common::raw().await;
    let key = |suffix: &str| guard.queue_key("q", suffix);
    let _: () = conn.set(key("key_running"), "not a hash").await.unwrap();

    let claimed = storage.claim(ClaimParams::new(["q"], 3)).await.unwrap();
    assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), [ids[0]]);
    let taken = storage.get(ids[0]).await.unwrap().unwrap();
    assert_eq!((taken.state, taken.lease_token), (JobState::Running, Some(claimed[0].claim().unwrap().token)));
    let running: Option<f64> = conn.zscore(key("running"), ids[0].to_string()).await.unwrap();
    assert!(running.is_some(), "the job handed over is in the running set");
    let starts: i64 = conn.zcard(key("starts")).await.unwrap();
    assert_eq!(starts, 1, "the job handed over is a start of the rate limit");
    let available: Vec<String> = conn.zrange(key("available"), 0, -1).await.unwrap();
    assert_eq!(available.len(), 2, "the jobs after it stay available: {available:?}");
    assert_eq!(storage.get(ids[2]).await.unwrap().unwrap().state, JobState::Available);

    let next = storage.claim(ClaimParams::new(["q"], 3)).await.unwrap();
    assert_eq!(next.iter().map(|job| job.id).collect::<Vec<_>>(), [ids[1]], "the next claim goes on from there");
}

/// A member of a queue whose key is not a hash (written by hand) is no job: a claim
/// that meets it takes it out of the queue, leaves the key alone, and claims the jobs
/// behind it. Without this it stayed at the head and failed every claim of its queue.
#[tokio::test]
async fn a_member_whose_key_is_not_a_hash_is_taken_out_of_its_queue_and_the_claim_goes_on() {
    for (limits, what) in [
        (None, "a queue without limits"),
        (Some(QueueLimits::new().key_concurrency(1)), "a queue with a limit per key"),
    ] {
        let (storage, guard) = common::storage().await;
        if let Some(limits) = limits {
            storage.set_queue_limits("q", limits).await.unwrap();
        }
        let ids = enqueue_plain(&storage, 4).await;
        let mut conn = common::raw().await;
        let key = |suffix: &str| guard.queue_key("q", suffix);
        // The first and the third job in claim order become strings.
        for broken in [ids[0], ids[2]] {
            let _: () = conn.del(key(&format!("job:{broken}"))).await.unwrap();
            let _: () = conn.set(key(&format!("job:{broken}")), "not a hash").await.unwrap();
        }

        let claimed = storage.claim(ClaimParams::new(["q"], 4)).await.expect(what);
        assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), [ids[1], ids[3]], "{what}");
        let available: Vec<String> = conn.zrange(key("available"), 0, -1).await.unwrap();
        assert!(available.is_empty(), "{what}: the members that are no job left the queue: {available:?}");
        let kept: String = conn.get(key(&format!("job:{}", ids[0]))).await.unwrap();
        assert_eq!(kept, "not a hash", "{what}: the key is left as it was");
        assert!(storage.claim(ClaimParams::new(["q"], 4)).await.unwrap().is_empty(), "{what}");
    }
}

/// On a cluster a claim over queues in different slots runs one script per queue: a
/// queue whose script fails is left out of the claim, and the jobs of the other queues
/// are handed over, whichever comes first. Run with
/// `HAUL_TEST_REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,… cargo test -p haul-redis --test
/// errors -- --ignored on_a_cluster`.
#[tokio::test]
#[ignore = "needs a Redis Cluster: HAUL_TEST_REDIS_CLUSTER_URLS"]
async fn on_a_cluster_a_queue_whose_claim_fails_is_left_out_and_the_others_are_handed_over() {
    let prefix = common::fresh_prefix();
    let config = RedisConfig::new().prefix(&prefix);
    let storage = RedisStorage::connect_cluster(common::cluster_nodes(), config).await.unwrap();
    assert!(storage.is_cluster());
    let mut raw =
        redis::cluster::ClusterClient::new(common::cluster_nodes()).unwrap().get_async_connection().await.unwrap();
    let enqueue = |queue: &'static str| {
        let storage = storage.clone();
        async move {
            storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({})).queue(queue)])).await.unwrap().ids
                [0]
        }
    };
    let (first, second) = (enqueue("q").await, enqueue("r").await);
    // The claim from `r` fails, whether it runs before or after `q`'s: its scheduled
    // set, which its script reads to promote due jobs, is not a sorted set.
    let broken = format!("haul:{{{prefix}:r}}:scheduled");
    let _: () = raw.set(&broken, "not a hash").await.unwrap();

    for queues in [["r", "q"], ["q", "r"]] {
        let claimed = storage.claim(ClaimParams::new(queues, 2)).await.unwrap();
        assert_eq!(claimed.iter().map(|job| job.id).collect::<Vec<_>>(), [first], "{queues:?}");
        assert_eq!(storage.get(first).await.unwrap().unwrap().state, JobState::Running);
        // Back to available, for the next order.
        storage
            .report(ReportParams::new(vec![Report {
                claim: claimed[0].claim().unwrap(),
                outcome: JobOutcome::Snoozed { delay: std::time::Duration::ZERO },
            }]))
            .await
            .unwrap();
    }
    assert_eq!(storage.get(second).await.unwrap().unwrap().state, JobState::Available, "r's job waits");
    assert_eq!(storage.claim(ClaimParams::new(["q"], 1)).await.unwrap().len(), 1);
    assert!(storage.claim(ClaimParams::new(["q", "r"], 2)).await.is_err(), "a claim that takes nothing fails");

    let _: () = raw.del(&broken).await.unwrap();
    storage.purge().await.unwrap();
}

/// A report applies its outcomes one by one and moves their jobs between the sets at
/// its end: an outcome that fails on a corrupt job hash must not strand the outcomes
/// applied before it outside their sets. A completion that was to delete its job keeps
/// it as completed instead (prune deletes it later): the call fails, so on a cluster
/// the client could not take it out of the indexes.
#[tokio::test]
async fn outcomes_applied_before_a_corrupt_job_stops_the_report_keep_their_set_moves() {
    for delete_completed in [false, true] {
        corrupt_job_stops_the_report(delete_completed).await;
    }
}

async fn corrupt_job_stops_the_report(delete_completed: bool) {
    let (storage, guard) = common::storage().await;
    enqueue_plain(&storage, 2).await;
    let claimed = storage.claim(ClaimParams::new(["q"], 2)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (done, corrupt) = (&claimed[0], &claimed[1]);
    let mut conn = common::raw().await;
    let key = |suffix: &str| guard.queue_key("q", suffix);
    // A report reads each job's hash, and this key no longer holds one.
    let _: () = conn.del(key(&format!("job:{}", corrupt.id))).await.unwrap();
    let _: () = conn.set(key(&format!("job:{}", corrupt.id)), "not a hash").await.unwrap();

    let reports = vec![
        Report { claim: done.claim().unwrap(), outcome: JobOutcome::Completed },
        Report {
            claim: corrupt.claim().unwrap(),
            outcome: JobOutcome::Failed { error: "boom".into(), retry_in: std::time::Duration::ZERO },
        },
    ];
    let params = ReportParams::new(reports).delete_completed(delete_completed);
    assert!(storage.report(params).await.is_err(), "the corrupt job's outcome fails the call");

    assert_eq!(storage.get(done.id).await.unwrap().unwrap().state, JobState::Completed);
    let completed: Option<f64> = conn.zscore(key("completed"), done.id.to_string()).await.unwrap();
    let running: Option<f64> = conn.zscore(key("running"), done.id.to_string()).await.unwrap();
    assert!(completed.is_some(), "the completed job is in the completed set");
    assert!(running.is_none(), "the completed job left the running set");
    let lease: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(key(&format!("job:{}", done.id)))
        .arg(&["lease_token", "lease_expires_at", "claimed_by"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(lease, vec![None, None, None], "the completed job's lease fields are cleared");
}

/// A job hash written by hand whose `max_attempts` is not a number: a failure, or a
/// rescue, discards the job instead of stopping halfway (which once left it marked
/// running in no set, where nothing would ever find it again).
#[tokio::test]
async fn a_job_whose_max_attempts_does_not_read_is_discarded_by_a_failure_or_a_rescue() {
    let (storage, guard) = common::storage().await;
    enqueue_plain(&storage, 2).await;
    let claimed = storage.claim(ClaimParams::new(["q"], 2)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (failed, lost) = (&claimed[0], &claimed[1]);
    let mut conn = common::raw().await;
    let key = |suffix: &str| guard.queue_key("q", suffix);
    for job in [failed, lost] {
        let _: () = conn.hset(key(&format!("job:{}", job.id)), "max_attempts", "many").await.unwrap();
    }

    let outcome = JobOutcome::Failed { error: "boom".into(), retry_in: std::time::Duration::ZERO };
    let reported = storage.report(ReportParams::new(vec![Report { claim: failed.claim().unwrap(), outcome }]));
    assert_eq!(reported.await.unwrap().applied.len(), 1);
    let rescued = storage.rescue_expired(lost.lease_expires_at).await.unwrap();
    assert_eq!((rescued.rescued, rescued.discarded), (0, 1));

    for job in [failed, lost] {
        let state: String = conn.hget(key(&format!("job:{}", job.id)), "state").await.unwrap();
        assert_eq!(state, "discarded", "job {}", job.id);
        let discarded: Option<f64> = conn.zscore(key("discarded"), job.id.to_string()).await.unwrap();
        let running: Option<f64> = conn.zscore(key("running"), job.id.to_string()).await.unwrap();
        assert!(discarded.is_some() && running.is_none(), "job {} is in the discarded set alone", job.id);
    }
}

/// A claimed job that does not read back as a record (a field haul writes, here
/// `created_at`, written by hand) is discarded with the reason; the jobs claimed with it
/// are handed over, instead of the whole claim failing after storage marked them all
/// running. Binary arguments do not fail the claim either.
#[tokio::test]
async fn a_claimed_job_that_does_not_read_back_is_discarded_and_the_others_are_handed_over() {
    let (storage, guard) = common::storage().await;
    let ids = enqueue_plain(&storage, 4).await;
    let mut conn = common::raw().await;
    let key = |suffix: &str| guard.queue_key("q", suffix);
    let _: () = conn.hset(key(&format!("job:{}", ids[1])), "created_at", "yesterday").await.unwrap();
    // Arguments that are not UTF-8 (binary, from another language) are the worker's to
    // discard as unreadable arguments: the job is handed over, saying why.
    let _: () = conn.hset(key(&format!("job:{}", ids[3])), "args", vec![0xff_u8, 0xfe]).await.unwrap();

    let claimed = storage.claim(ClaimParams::new(["q"], 4)).await.unwrap();
    let mut handed_over: Vec<JobId> = claimed.iter().map(|job| job.id).collect();
    handed_over.sort();
    assert_eq!(handed_over, vec![ids[0], ids[2], ids[3]]);
    let binary = claimed.iter().find(|job| job.id == ids[3]).unwrap();
    assert!(binary.unreadable_args.is_some(), "{binary:?}");

    let bad = key(&format!("job:{}", ids[1]));
    let state: String = conn.hget(&bad, "state").await.unwrap();
    assert_eq!(state, "discarded");
    let errors: String = conn.hget(&bad, "errors").await.unwrap();
    assert!(errors.contains("the stored job cannot be read") && errors.contains("created_at"), "{errors}");
    let running: Option<f64> = conn.zscore(key("running"), ids[1].to_string()).await.unwrap();
    assert!(running.is_none(), "the unreadable job is not left running");
}

/// A job at the head of its queue whose attempt count, written by hand, reads as NaN in
/// Lua ("nan") is claimed and discarded like any job that does not read back, and the
/// jobs behind it are handed over: it does not fail the claim, which would block the
/// queue behind it.
#[tokio::test]
async fn a_job_whose_attempt_reads_as_nan_does_not_block_its_queue() {
    let (storage, guard) = common::storage().await;
    let ids = enqueue_plain(&storage, 3).await;
    let mut conn = common::raw().await;
    let key = |suffix: &str| guard.queue_key("q", suffix);
    let head = key(&format!("job:{}", ids[0]));
    let _: () = conn.hset(&head, "attempt", "nan").await.unwrap();

    let claimed = storage.claim(ClaimParams::new(["q"], 3)).await.expect("the claim succeeds");
    let handed_over: Vec<JobId> = claimed.iter().map(|job| job.id).collect();
    assert_eq!(handed_over, vec![ids[1], ids[2]]);
    let state: String = conn.hget(&head, "state").await.unwrap();
    assert_eq!(state, "discarded");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn a_tls_url_is_understood_and_an_unreachable_tls_server_is_a_connection_error() {
    let error = RedisStorage::connect("rediss://127.0.0.1:1").await.unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Connection), "{error:?}");
}

#[tokio::test]
async fn a_periodic_record_written_by_hand_is_left_out_then_replaced() {
    let (storage, guard) = common::storage().await;
    let at = |seconds: i64| chrono::DateTime::from_timestamp(1_900_000_000 + seconds, 0).unwrap();
    storage.save_periodic(PeriodicUpdate::new("kept", "every 1s").last_tick(at(0)).now(at(0))).await.unwrap();
    let mut conn = common::raw().await;
    let key = format!("haul:{{{}}}:periodic", guard.prefix);
    let _: () = conn.hset(&key, "mangled", "not a record").await.unwrap();

    // One bad field does not hide the others (nor stop their schedules).
    let names: Vec<String> = storage.list_periodic().await.unwrap().into_iter().map(|record| record.name).collect();
    assert_eq!(names, ["kept"]);
    // The next save of that schedule replaces it.
    storage.save_periodic(PeriodicUpdate::new("mangled", "every 1s").last_tick(at(5)).now(at(5))).await.unwrap();
    let records = storage.list_periodic().await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].name, "kept");
    assert_eq!((records[1].name.as_str(), records[1].last_tick), ("mangled", Some(at(5))));
}
