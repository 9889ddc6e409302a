//! The SQL of every operation, from `queries/*.sql`, with the schema filled in once.

use haul_core::JobState;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// Every statement the storage runs, rendered for one schema.
#[derive(Debug)]
pub(crate) struct Queries {
    pub(crate) enqueue: SqlStr,
    pub(crate) notify: SqlStr,
    pub(crate) lock_unique_keys: SqlStr,
    pub(crate) find_blocking: SqlStr,
    pub(crate) claim: SqlStr,
    pub(crate) claim_one_queue: SqlStr,
    pub(crate) claim_limited: SqlStr,
    pub(crate) lock_queue_limits: SqlStr,
    pub(crate) rate_limited_for: SqlStr,
    pub(crate) limited_queues: SqlStr,
    pub(crate) report: SqlStr,
    pub(crate) complete: SqlStr,
    pub(crate) heartbeat: SqlStr,
    pub(crate) promote_due: SqlStr,
    pub(crate) rescue_expired: SqlStr,
    pub(crate) prune: SqlStr,
    pub(crate) prune_rate_starts: SqlStr,
    pub(crate) cancel: SqlStr,
    pub(crate) retry: SqlStr,
    pub(crate) delete: SqlStr,
    pub(crate) retry_jobs: SqlStr,
    pub(crate) cancel_jobs: SqlStr,
    pub(crate) delete_jobs: SqlStr,
    pub(crate) pause_queue: SqlStr,
    pub(crate) resume_queue: SqlStr,
    pub(crate) lock_queue_limits_table: SqlStr,
    pub(crate) set_queue_limits: SqlStr,
    pub(crate) remove_queue_limits: SqlStr,
    pub(crate) queue_limits: SqlStr,
    pub(crate) get: SqlStr,
    pub(crate) list: SqlStr,
    pub(crate) counts: SqlStr,
    pub(crate) beat_worker: SqlStr,
    pub(crate) remove_worker: SqlStr,
    pub(crate) list_workers: SqlStr,
    pub(crate) acquire_leadership: SqlStr,
    pub(crate) release_leadership: SqlStr,
    pub(crate) leader: SqlStr,
    pub(crate) save_periodic: SqlStr,
    pub(crate) list_periodic: SqlStr,
    pub(crate) delete_periodic: SqlStr,
    pub(crate) record_throughput: SqlStr,
    pub(crate) throughput: SqlStr,
}

impl Queries {
    /// Renders the queries for `schema` and the NOTIFY `channel`. Both must already be
    /// validated (`[a-z][a-z0-9_]*`): the schema goes in as a quoted identifier, the
    /// channel as a string literal. The fragments, without their header comments, go in
    /// where a query names them: `{locked_batch}` (`queries/locked_batch.sql`) first,
    /// then `{matching_ids}` ([`matching_ids`]), then `{claim_update}`
    /// (`queries/claim_update.sql`), then `{claim_commit}` ([`claim_commit`]).
    pub(crate) fn new(schema: &str, channel: &str, async_claim_commit: bool) -> Self {
        let schema = format!("\"{schema}\"");
        let channel = format!("'{channel}'");
        let locked_batch = without_header(include_str!("../queries/locked_batch.sql"));
        let matching_ids = matching_ids(without_header(include_str!("../queries/matching_ids.sql")));
        let claim_update = without_header(include_str!("../queries/claim_update.sql"));
        let claim_commit = claim_commit(async_claim_commit);
        let render = |sql: &str| {
            AssertSqlSafe(
                sql.replace("{locked_batch}", locked_batch)
                    .replace("{matching_ids}", &matching_ids)
                    .replace("{claim_update}", claim_update)
                    .replace("{claim_commit}", claim_commit)
                    .replace("{schema}", &schema)
                    .replace("{channel}", &channel),
            )
            .into_sql_str()
        };
        Self {
            enqueue: render(include_str!("../queries/enqueue.sql")),
            notify: render(include_str!("../queries/notify.sql")),
            lock_unique_keys: render(include_str!("../queries/lock_unique_keys.sql")),
            find_blocking: render(include_str!("../queries/find_blocking.sql")),
            claim: render(include_str!("../queries/claim.sql")),
            claim_one_queue: render(include_str!("../queries/claim_one_queue.sql")),
            claim_limited: render(include_str!("../queries/claim_limited.sql")),
            lock_queue_limits: render(include_str!("../queries/lock_queue_limits.sql")),
            rate_limited_for: render(include_str!("../queries/rate_limited_for.sql")),
            limited_queues: render(include_str!("../queries/limited_queues.sql")),
            report: render(include_str!("../queries/report.sql")),
            complete: render(include_str!("../queries/complete.sql")),
            heartbeat: render(include_str!("../queries/heartbeat.sql")),
            promote_due: render(include_str!("../queries/promote_due.sql")),
            rescue_expired: render(include_str!("../queries/rescue_expired.sql")),
            prune: render(include_str!("../queries/prune.sql")),
            prune_rate_starts: render(include_str!("../queries/prune_rate_starts.sql")),
            cancel: render(include_str!("../queries/cancel.sql")),
            retry: render(include_str!("../queries/retry.sql")),
            delete: render(include_str!("../queries/delete.sql")),
            retry_jobs: render(include_str!("../queries/retry_jobs.sql")),
            cancel_jobs: render(include_str!("../queries/cancel_jobs.sql")),
            delete_jobs: render(include_str!("../queries/delete_jobs.sql")),
            pause_queue: render(include_str!("../queries/pause_queue.sql")),
            resume_queue: render(include_str!("../queries/resume_queue.sql")),
            lock_queue_limits_table: render(include_str!("../queries/lock_queue_limits_table.sql")),
            set_queue_limits: render(include_str!("../queries/set_queue_limits.sql")),
            remove_queue_limits: render(include_str!("../queries/remove_queue_limits.sql")),
            queue_limits: render(include_str!("../queries/queue_limits.sql")),
            get: render(include_str!("../queries/get.sql")),
            list: render(include_str!("../queries/list.sql")),
            counts: render(include_str!("../queries/counts.sql")),
            beat_worker: render(include_str!("../queries/beat_worker.sql")),
            remove_worker: render(include_str!("../queries/remove_worker.sql")),
            list_workers: render(include_str!("../queries/list_workers.sql")),
            acquire_leadership: render(include_str!("../queries/acquire_leadership.sql")),
            release_leadership: render(include_str!("../queries/release_leadership.sql")),
            leader: render(include_str!("../queries/leader.sql")),
            save_periodic: render(include_str!("../queries/save_periodic.sql")),
            list_periodic: render(include_str!("../queries/list_periodic.sql")),
            delete_periodic: render(include_str!("../queries/delete_periodic.sql")),
            record_throughput: render(include_str!("../queries/record_throughput.sql")),
            throughput: render(include_str!("../queries/throughput.sql")),
        }
    }
}

/// The `{claim_commit}` fragment of `queries/claim_update.sql`: nothing, or with
/// asynchronous claim commits ([`crate::PostgresConfig::async_claim_commit`]) a condition
/// without columns, which PostgreSQL evaluates once before the update's first row (a
/// one-time filter), setting `synchronous_commit` off until the end of the claim's
/// transaction (`set_config`'s third argument: local to the transaction). It holds
/// whatever `set_config` returns, so it can never make a claim take nothing.
fn claim_commit(async_claim_commit: bool) -> &'static str {
    if async_claim_commit { "\n  AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL" } else { "" }
}

/// The `{matching_ids}` fragment, from the one branch of `queries/matching_ids.sql`
/// (see its header): the branch for "no state named", then one per state naming it as
/// a constant, merged by id, the first `$7` kept.
fn matching_ids(branch: &str) -> String {
    let any_state = "cardinality($2::text[]) = 0".to_owned();
    let one_state =
        JobState::ALL.iter().map(|state| format!("j.state = '{0}'\n   AND '{0}' = ANY ($2::text[])", state.as_str()));
    let branches: Vec<String> = std::iter::once(any_state)
        .chain(one_state)
        .map(|condition| branch.replace("{state_condition}", &condition).replace('\n', "\n    "))
        .collect();
    format!("SELECT m.id\nFROM (\n    {}\n) AS m\nORDER BY m.id\nLIMIT $7", branches.join("\n    UNION ALL\n    "))
}

/// `sql` without its leading comment lines (a fragment's header, which documents the
/// fragment but has no place in the statements it goes into).
fn without_header(sql: &str) -> &str {
    let mut rest = sql;
    while rest.starts_with("--") {
        rest = rest.split_once('\n').map_or("", |(_, after)| after);
    }
    rest.trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_in() {
        let queries = Queries::new("tenant_1", "haul_tenant_1", false);
        for sql in [
            &queries.enqueue,
            &queries.notify,
            &queries.find_blocking,
            &queries.claim,
            &queries.claim_one_queue,
            &queries.claim_limited,
            &queries.lock_queue_limits,
            &queries.rate_limited_for,
            &queries.prune,
            &queries.prune_rate_starts,
            &queries.limited_queues,
            &queries.lock_queue_limits_table,
            &queries.set_queue_limits,
            &queries.remove_queue_limits,
            &queries.queue_limits,
            &queries.report,
            &queries.complete,
            &queries.retry,
            &queries.delete,
            &queries.list,
            &queries.retry_jobs,
            &queries.cancel_jobs,
            &queries.delete_jobs,
            &queries.counts,
            &queries.beat_worker,
            &queries.remove_worker,
            &queries.list_workers,
            &queries.acquire_leadership,
            &queries.release_leadership,
            &queries.leader,
            &queries.save_periodic,
            &queries.list_periodic,
            &queries.delete_periodic,
            &queries.record_throughput,
            &queries.throughput,
        ] {
            assert!(!sql.as_str().contains('{'), "{}", sql.as_str());
        }
        assert!(queries.claim.as_str().contains("\"tenant_1\".jobs"));
        for sql in [&queries.claim, &queries.claim_one_queue] {
            assert!(sql.as_str().contains("FROM \"tenant_1\".queue_limits AS l"), "the limits guard: {}", sql.as_str());
        }
        for sql in [&queries.claim, &queries.claim_one_queue, &queries.claim_limited] {
            let update = "UPDATE \"tenant_1\".jobs AS j\nSET state            = 'running',";
            assert_eq!(sql.as_str().matches(update).count(), 1, "the claim update: {}", sql.as_str());
        }
        assert!(queries.enqueue.as_str().contains("pg_notify('haul_tenant_1'"));
        assert!(queries.beat_worker.as_str().contains("\"tenant_1\".workers"));
        for sql in [&queries.list, &queries.retry_jobs, &queries.cancel_jobs, &queries.delete_jobs] {
            for state in JobState::ALL {
                let branch = format!("WHERE j.state = '{0}'\n       AND '{0}' = ANY ($2::text[])", state.as_str());
                assert_eq!(sql.as_str().matches(&branch).count(), 1, "{}", sql.as_str());
            }
            assert_eq!(sql.as_str().matches("WHERE cardinality($2::text[]) = 0").count(), 1, "{}", sql.as_str());
            assert_eq!(sql.as_str().matches("UNION ALL").count(), JobState::ALL.len(), "{}", sql.as_str());
            assert!(!sql.as_str().contains("A fragment, not a statement"), "{}", sql.as_str());
        }
        for sql in [&queries.retry_jobs, &queries.cancel_jobs, &queries.delete_jobs] {
            assert!(sql.as_str().contains("FOR UPDATE OF j"), "{}", sql.as_str());
        }
        assert!(queries.retry_jobs.as_str().contains("pg_notify('haul_tenant_1'"));
        assert!(queries.acquire_leadership.as_str().contains("\"tenant_1\".leader"));
        for sql in [&queries.save_periodic, &queries.list_periodic, &queries.delete_periodic] {
            assert!(sql.as_str().contains("\"tenant_1\".periodic"), "{}", sql.as_str());
        }
        for sql in [&queries.record_throughput, &queries.throughput] {
            assert!(sql.as_str().contains("\"tenant_1\".throughput"), "{}", sql.as_str());
        }
    }

    #[test]
    fn only_claims_set_their_commit_asynchronous_and_only_when_asked() {
        let setting = "set_config('synchronous_commit', 'off', true)";
        let synchronous = Queries::new("tenant_1", "haul_tenant_1", false);
        let asynchronous = Queries::new("tenant_1", "haul_tenant_1", true);
        for queries in [&synchronous, &asynchronous] {
            for sql in [&queries.enqueue, &queries.report, &queries.complete, &queries.heartbeat] {
                assert!(!sql.as_str().contains("synchronous_commit"), "{}", sql.as_str());
            }
        }
        for (sync_sql, async_sql) in [
            (&synchronous.claim, &asynchronous.claim),
            (&synchronous.claim_one_queue, &asynchronous.claim_one_queue),
            (&synchronous.claim_limited, &asynchronous.claim_limited),
        ] {
            assert!(!sync_sql.as_str().contains("synchronous_commit"), "{}", sync_sql.as_str());
            assert_eq!(async_sql.as_str().matches(setting).count(), 1, "{}", async_sql.as_str());
            assert!(!async_sql.as_str().contains('{'), "{}", async_sql.as_str());
        }
    }
}
