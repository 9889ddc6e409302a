//! The JSON form of what the commands print (`--json`): one object per line, with the
//! field names of haul's records. Instants are RFC 3339 strings in UTC, durations are
//! seconds (a number), absent values are `null`.

use haul::{
    JobRecord, JobState, QueueCounts,
    storage::{PeriodicRecord, Timestamp, WorkerRecord},
};
use serde_json::{Map, Value, json};

use crate::format;

/// An optional instant.
fn instant(at: Option<Timestamp>) -> Value {
    at.map_or(Value::Null, |at| Value::String(format::timestamp_json(at)))
}

/// A job, every field of its record.
pub(crate) fn job(job: &JobRecord) -> Value {
    let errors: Vec<Value> = job
        .errors
        .iter()
        .map(|error| {
            json!({
                "attempt": error.attempt,
                "at": format::timestamp_json(error.at),
                "message": error.message,
            })
        })
        .collect();
    json!({
        "id": job.id.to_string(),
        "kind": job.kind,
        "queue": job.queue,
        "state": job.state.as_str(),
        "priority": job.priority,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout.map(|timeout| timeout.as_secs_f64()),
        "run_at": format::timestamp_json(job.run_at),
        "created_at": format::timestamp_json(job.created_at),
        "attempted_at": instant(job.attempted_at),
        "finished_at": instant(job.finished_at),
        "cancel_requested_at": instant(job.cancel_requested_at),
        "errors": errors,
        "lease_token": job.lease_token.map(|token| token.to_string()),
        "lease_expires_at": instant(job.lease_expires_at),
        "claimed_by": job.claimed_by,
        "unique_key": job.unique_key,
        "limit_key": job.limit_key,
        "metadata": *job.metadata,
        "args": job.args,
        "unreadable_args": job.unreadable_args,
    })
}

/// Every state's count of a queue, zeros included, in lifecycle order.
pub(crate) fn state_counts(counts: &QueueCounts) -> Value {
    let map: Map<String, Value> =
        JobState::ALL.into_iter().map(|state| (state.as_str().to_owned(), json!(counts.get(state)))).collect();
    Value::Object(map)
}

/// A live worker, and whether it leads (with its term when it does).
pub(crate) fn worker(worker: &WorkerRecord, leader_term: Option<u64>) -> Value {
    json!({
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": worker.queues,
        "concurrency": worker.concurrency,
        "held": worker.held,
        "started_at": format::timestamp_json(worker.started_at),
        "last_seen_at": format::timestamp_json(worker.last_seen_at),
        "expires_at": format::timestamp_json(worker.expires_at),
        "leader": leader_term.is_some(),
        "term": leader_term,
    })
}

/// A periodic schedule's record.
pub(crate) fn periodic(record: &PeriodicRecord) -> Value {
    json!({
        "name": record.name,
        "spec": record.spec,
        "last_tick": instant(record.last_tick),
        "next_tick": instant(record.next_tick),
        "updated_at": format::timestamp_json(record.updated_at),
    })
}
