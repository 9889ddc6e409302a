//! The bulk calls (`retry_jobs`, `cancel_jobs`, `delete_jobs`): a page of `list`, then
//! the one-job script of each job of the page the operation accepts, all in one round
//! trip, each script checking again that its job is still in a state of the filter.

use haul_core::{AdminAction, JobFilter, JobRecord, ListParams, Result, Timestamp};

use crate::{
    RedisStorage,
    ops::admin::{Change, IndexMembers, allowed_states, command, script},
};

/// How many jobs a bulk call reads per page of `list` (and runs scripts for per round
/// trip).
const BULK_PAGE: usize = 500;

impl RedisStorage {
    /// Applies `operation` to every job `filter` matches that it accepts, a page at a
    /// time: one `list` page, then the page's scripts (`cancel.lua`, `retry.lua` or
    /// `delete.lua`, one per job) pipelined in one round trip (sent concurrently on a
    /// cluster), plus, for deletes on a cluster, one round trip removing the deleted
    /// jobs' index members. Each script checks the job's state again, atomically: a job
    /// that went away since the page was read, or is now in a state the operation
    /// refuses (running, for a retry or a delete; finished, for a cancel) or, when the
    /// filter names states, in none of them, is skipped and not counted. (The rest of
    /// the filter, queue, kind and creation time, never changes.) Returns how many jobs
    /// the scripts changed.
    pub(crate) async fn bulk(&self, filter: JobFilter, operation: AdminAction, now: Option<Timestamp>) -> Result<u64> {
        let mut changed = 0;
        let allowed = allowed_states(&filter.states);
        let mut params = ListParams::filtered(filter).limit(BULK_PAGE);
        loop {
            let page = self.list_jobs(params.clone()).await?;
            changed += self.apply_page(&page, operation, &allowed, now).await?;
            match page.last() {
                Some(last) if page.len() == BULK_PAGE => params = params.after(last.id),
                _ => return Ok(changed),
            }
        }
    }

    /// Runs `operation`'s script on each job of `page` it accepts, in one round trip,
    /// changing only jobs still in one of the states `allowed` names (see
    /// [`allowed_states`]; empty: any); returns how many it changed.
    async fn apply_page(
        &self,
        page: &[JobRecord],
        operation: AdminAction,
        allowed: &str,
        now: Option<Timestamp>,
    ) -> Result<u64> {
        let targets: Vec<&JobRecord> = page.iter().filter(|job| operation.accepts(job.state)).collect();
        let calls = targets
            .iter()
            .map(|job| command(operation, self, &self.inner.keys.queue(&job.queue), job.id, allowed, now))
            .collect();
        let replies = self.run_all(script(operation), calls).await?;
        let (mut changed, mut deleted, mut failure) = (0, Vec::new(), None);
        for (job, outcome) in targets.iter().zip(replies) {
            // A failure is returned once the deleted jobs are unindexed.
            match outcome.and_then(|value| Change::from_reply(value, job.id)) {
                Ok(Change::Done(rest)) => {
                    changed += 1;
                    if matches!(operation, AdminAction::Delete) {
                        match IndexMembers::from_reply(rest) {
                            Ok(members) => deleted.push(members),
                            Err(error) => failure = failure.or(Some(error)),
                        }
                    }
                }
                Ok(Change::Missing | Change::InState(_)) => {}
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        self.unindex(&deleted).await?;
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap

    use haul_core::{
        Admin, AdminAction, ClaimParams, EnqueueParams, JobFilter, JobOutcome, JobState, ListParams, NewJob, Report,
        ReportParams, Storage,
    };
    use serde_json::json;

    use super::allowed_states;
    use crate::{RedisConfig, RedisStorage};

    /// A storage on a fresh prefix of the server in `HAUL_TEST_REDIS_URL`.
    async fn storage() -> RedisStorage {
        let url = std::env::var("HAUL_TEST_REDIS_URL")
            .unwrap_or_else(|_| panic!("set HAUL_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) to run the Redis tests"));
        let prefix = format!("haul_test_{}", &uuid::Uuid::now_v7().simple().to_string()[16..]);
        RedisStorage::connect_with(&url, RedisConfig::new().prefix(prefix)).await.unwrap()
    }

    /// A bulk call's page listed before an operator changed its jobs: each job that
    /// left the filter's states since is skipped and not counted, however the
    /// operation would take its new state.
    #[tokio::test]
    async fn a_page_applies_only_to_jobs_still_in_the_filters_states() {
        let storage = storage().await;
        let jobs = (0..3).map(|_| NewJob::new("plain", json!({})).queue("q")).collect();
        storage.enqueue(EnqueueParams::new(jobs)).await.unwrap();
        let claimed = storage.claim(ClaimParams::new(["q"], 3)).await.unwrap();
        let outcome = JobOutcome::Discarded { reason: "no".into() };
        let reports = claimed.iter().map(|job| Report { claim: job.claim().unwrap(), outcome: outcome.clone() });
        storage.report(ReportParams::new(reports.collect())).await.unwrap();
        let filter = JobFilter::new().state(JobState::Discarded);
        let allowed = allowed_states(&filter.states);
        let page = storage.list_jobs(ListParams::filtered(filter.clone())).await.unwrap();
        assert_eq!(page.len(), 3);

        // An operator retries the first job between the list and the deletes.
        storage.retry(page[0].id, None).await.unwrap();
        assert_eq!(storage.apply_page(&page, AdminAction::Delete, &allowed, None).await.unwrap(), 2);
        let left = storage.list_jobs(ListParams::new()).await.unwrap();
        assert_eq!(left.iter().map(|job| (job.id, job.state)).collect::<Vec<_>>(), [(page[0].id, JobState::Available)]);

        // Listed as available, then claimed: `cancel_jobs(state=available)` leaves it.
        let filter = JobFilter::new().state(JobState::Available);
        let page = storage.list_jobs(ListParams::filtered(filter.clone())).await.unwrap();
        storage.claim(ClaimParams::new(["q"], 1)).await.unwrap();
        let cancelled = storage.apply_page(&page, AdminAction::Cancel, &allowed_states(&filter.states), None).await;
        assert_eq!(cancelled.unwrap(), 0);
        assert_eq!(storage.get_job(page[0].id).await.unwrap().unwrap().cancel_requested_at, None);
        // Without states (a filter naming none), the running job is asked to stop.
        assert_eq!(storage.apply_page(&page, AdminAction::Cancel, "", None).await.unwrap(), 1);
        assert!(storage.get_job(page[0].id).await.unwrap().unwrap().cancel_requested_at.is_some());
        storage.purge().await.unwrap();
    }
}
