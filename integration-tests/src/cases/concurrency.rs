//! Concurrency: racing claimers never share a job and never lose one.
//!
//! These cases run on a multi-threaded runtime (see the suite macro), so the claimers
//! really race.

use std::collections::{HashMap, HashSet};

use haul::{JobId, JobOutcome, JobState};

use super::*;

/// Number of racing claimers.
pub const CLAIMERS: usize = 8;

async fn enqueue_many(storage: &TestStorage, queue: &str, count: usize, batch: usize) -> HashSet<JobId> {
    let mut all = HashSet::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let size = left.min(batch);
        let ids = enqueue(storage, (0..size).map(|_| job(queue)).collect(), at(0)).await;
        all.extend(ids);
        left -= size;
    }
    assert_eq!(all.len(), count, "every enqueued job has its own id");
    all
}

/// Eight claimers racing over 5,000 jobs claim every job exactly once, and every job
/// ends up running with its first attempt.
pub async fn racing_claimers_claim_each_job_exactly_once(storage: TestStorage) {
    const JOBS: usize = 5_000;
    let enqueued = enqueue_many(&storage, "race", JOBS, 500).await;

    let mut claimers = Vec::new();
    for n in 0..CLAIMERS {
        let storage = storage.clone();
        claimers.push(tokio::spawn(async move {
            let worker = format!("claimer-{n}");
            let mut mine = Vec::new();
            loop {
                let claimed = claim_as(&storage, &["race"], 17, at(1), &worker).await;
                if claimed.is_empty() {
                    return mine;
                }
                for record in claimed {
                    assert_eq!(record.attempt, 1, "a job claimed once has attempt 1");
                    assert_eq!(record.claimed_by.as_deref(), Some(worker.as_str()));
                    mine.push(record.id);
                }
            }
        }));
    }
    let mut seen: HashMap<JobId, usize> = HashMap::with_capacity(JOBS);
    for claimer in claimers {
        for id in claimer.await.expect("claimer task finishes") {
            *seen.entry(id).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "{} jobs were claimed more than once, e.g. {:?}", twice.len(), twice.first());
    let seen: HashSet<JobId> = seen.into_keys().collect();
    assert_eq!(seen.len(), JOBS, "every job is claimed");
    assert_eq!(seen, enqueued, "exactly the enqueued jobs are claimed");

    let counts = storage.counts().await.expect("counts succeed");
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].get(JobState::Running), JOBS as u64);
    assert_eq!(counts[0].states.len(), 1, "every job is running: {:?}", counts[0].states);
}

/// Racing claimers that fail every first attempt and complete every second one, while
/// promotion runs alongside, run each job exactly once per attempt and lose none.
pub async fn racing_claimers_run_each_attempt_exactly_once(storage: TestStorage) {
    const JOBS: usize = 1_000;
    let enqueued = enqueue_many(&storage, "race", JOBS, 250).await;

    let promoter = {
        let storage = storage.clone();
        tokio::spawn(async move {
            loop {
                storage.promote_due(Some(at(1))).await.expect("promote succeeds");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut claimers = Vec::new();
    for n in 0..CLAIMERS {
        let storage = storage.clone();
        claimers.push(tokio::spawn(async move {
            let worker = format!("claimer-{n}");
            let mut attempts = Vec::new();
            loop {
                let claimed = claim_as(&storage, &["race"], 13, at(1), &worker).await;
                if claimed.is_empty() {
                    let counts = storage.counts().await.expect("counts succeed");
                    if counts.iter().map(|queue| queue.get(JobState::Completed)).sum::<u64>() == JOBS as u64 {
                        return attempts;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                let mut reports = Vec::new();
                for record in claimed {
                    attempts.push((record.id, record.attempt));
                    let outcome =
                        if record.attempt == 1 { failed("first try", secs(0)) } else { JobOutcome::Completed };
                    reports.push(haul::storage::Report { claim: claim_of(&record), outcome });
                }
                let count = reports.len();
                let outcome = report_all(&storage, reports, at(1)).await;
                assert_eq!(outcome.applied.len(), count, "every outcome of a held job applies: {outcome:?}");
            }
        }))
    }
    let deadline = tokio::time::timeout(PATIENCE * 3, async {
        let mut attempts: HashMap<(JobId, u32), usize> = HashMap::new();
        for claimer in claimers {
            for attempt in claimer.await.expect("claimer task finishes") {
                *attempts.entry(attempt).or_default() += 1;
            }
        }
        attempts
    })
    .await;
    promoter.abort();
    let attempts = deadline.expect("the claimers finish every job in time");

    assert!(attempts.values().all(|count| *count == 1), "no attempt of a job is run twice");
    for id in &enqueued {
        assert!(attempts.contains_key(&(*id, 1)) && attempts.contains_key(&(*id, 2)), "job {id} ran both attempts");
    }
    assert_eq!(attempts.len(), 2 * JOBS, "no job ran a third attempt");
    let counts = storage.counts().await.expect("counts succeed");
    assert_eq!(counts[0].get(JobState::Completed), JOBS as u64);
    assert_eq!(counts[0].states.len(), 1, "every job is completed: {:?}", counts[0].states);
}

/// Batches enqueued at the same time from many tasks are all stored.
pub async fn concurrent_enqueues_lose_no_job(storage: TestStorage) {
    let mut producers = Vec::new();
    for _ in 0..CLAIMERS {
        let storage = storage.clone();
        producers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..10 {
                ids.extend(enqueue(&storage, (0..25).map(|_| job("burst")).collect(), at(0)).await);
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for producer in producers {
        all.extend(producer.await.expect("producer task finishes"));
    }
    assert_eq!(all.len(), CLAIMERS * 250);
    let counts = storage.counts().await.expect("counts succeed");
    assert_eq!(counts[0].get(JobState::Available), (CLAIMERS * 250) as u64);
}
