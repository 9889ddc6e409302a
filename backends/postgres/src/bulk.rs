//! The bulk operator calls ([`Admin::retry_jobs`](haul_core::Admin::retry_jobs),
//! [`Admin::cancel_jobs`](haul_core::Admin::cancel_jobs),
//! [`Admin::delete_jobs`](haul_core::Admin::delete_jobs)) as set-based statements: one
//! statement per batch of [`BATCH`] matching jobs, walking the filter's jobs in id
//! order (`queries/retry_jobs.sql`, `cancel_jobs.sql`, `delete_jobs.sql`).

use haul_core::{AdminAction, JobFilter, JobState, Result, Timestamp, validate_queue_name};
use sqlx::{Row, SqlStr};
use uuid::Uuid;

use crate::{PostgresStorage, error::map_sqlx_error, queries::Queries};

/// How many matching jobs one statement looks at (and locks, at most).
pub(crate) const BATCH: usize = 1000;

/// The states whose jobs `action` changes under `filter`, as stored: the filter's
/// states (every state when it names none) that the action accepts. Empty when the
/// filter names only states the action refuses.
pub(crate) fn states(action: AdminAction, filter: &JobFilter) -> Vec<&'static str> {
    let named: &[JobState] = if filter.states.is_empty() { &JobState::ALL } else { &filter.states };
    let mut states: Vec<&'static str> =
        named.iter().filter(|state| action.accepts(**state)).map(|state| state.as_str()).collect();
    states.sort_unstable();
    states.dedup();
    states
}

/// The bulk statement of `action`.
fn statement(action: AdminAction, queries: &Queries) -> SqlStr {
    match action {
        AdminAction::Retry => queries.retry_jobs.clone(),
        AdminAction::Cancel => queries.cancel_jobs.clone(),
        AdminAction::Delete => queries.delete_jobs.clone(),
    }
}

/// Whether the statement of `action` takes the clock override (`$8`).
fn takes_now(action: AdminAction) -> bool {
    !matches!(action, AdminAction::Delete)
}

impl PostgresStorage {
    /// Applies `action` to every job `filter` matches that the action accepts, a batch
    /// per statement, and returns how many jobs it changed. Each statement locks its
    /// batch in id order and checks each job's state on the locked row, so a job that
    /// became running since the batch was read is left alone.
    pub(crate) async fn bulk(&self, filter: &JobFilter, action: AdminAction, now: Option<Timestamp>) -> Result<u64> {
        if let Some(queue) = &filter.queue {
            validate_queue_name(queue)?;
        }
        let states = states(action, filter);
        if states.is_empty() {
            return Ok(0);
        }
        let batch = i64::try_from(BATCH).unwrap_or(i64::MAX);
        let mut changed = 0;
        let mut after: Option<Uuid> = None;
        loop {
            let mut query = sqlx::query(statement(action, &self.inner.queries))
                .bind(filter.queue.as_deref())
                .bind(&states)
                .bind(filter.kind.as_deref())
                .bind(filter.created_from)
                .bind(filter.created_until)
                .bind(after)
                .bind(batch);
            if takes_now(action) {
                query = query.bind(now);
            }
            // Unprepared: planned with the parameters' values (see matching_ids.sql).
            let row = query.persistent(false).fetch_one(&self.inner.pool).await.map_err(map_sqlx_error)?;
            let scanned: i64 = row.try_get("scanned").map_err(map_sqlx_error)?;
            let done: i64 = row.try_get("changed").map_err(map_sqlx_error)?;
            let last: Option<Uuid> = row.try_get("last").map_err(map_sqlx_error)?;
            changed += u64::try_from(done).unwrap_or(0);
            match last {
                Some(last) if scanned >= batch => after = Some(last),
                _ => return Ok(changed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_changes_the_named_states_it_accepts() {
        let all = JobFilter::new();
        assert_eq!(states(AdminAction::Retry, &all).len(), 6);
        assert!(!states(AdminAction::Retry, &all).contains(&"running"));
        assert!(!states(AdminAction::Delete, &all).contains(&"running"));
        assert_eq!(states(AdminAction::Cancel, &all), vec!["available", "retryable", "running", "scheduled"]);

        let mixed = JobFilter::new().state(JobState::Running).state(JobState::Discarded);
        assert_eq!(states(AdminAction::Retry, &mixed), vec!["discarded"]);
        assert_eq!(states(AdminAction::Delete, &mixed), vec!["discarded"]);
        assert_eq!(states(AdminAction::Cancel, &mixed), vec!["running"]);

        let finished = JobFilter::new().state(JobState::Completed);
        assert!(states(AdminAction::Cancel, &finished).is_empty());
    }
}
