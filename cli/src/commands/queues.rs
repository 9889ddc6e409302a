//! `haul queues`, `haul queues pause NAME`, `haul queues resume NAME`, `haul queues
//! limit NAME`, and the counts columns `haul stats` shares.

use std::collections::BTreeMap;

use haul::{JobState, QueueCounts, QueueLimits, Storage, storage::Timestamp};
use serde_json::{Value, json};

use crate::{
    Exit, Io,
    error::CliError,
    format, json,
    table::{Align, Table},
};

/// The header of each state's count column, in lifecycle order.
pub(super) const STATE_COLUMNS: [(&str, Align); 7] = [
    ("SCHEDULED", Align::Right),
    ("AVAILABLE", Align::Right),
    ("RUNNING", Align::Right),
    ("RETRYABLE", Align::Right),
    ("COMPLETED", Align::Right),
    ("DISCARDED", Align::Right),
    ("CANCELLED", Align::Right),
];

/// The header of the column telling how long the next available job has waited.
pub(super) const NEXT_AVAILABLE_COLUMN: (&str, Align) = ("NEXT AVAILABLE WAITED", Align::Left);

/// Each state's count, in [`STATE_COLUMNS`] order.
pub(super) fn state_cells(counts: &QueueCounts) -> Vec<String> {
    JobState::ALL.into_iter().map(|state| counts.get(state).to_string()).collect()
}

/// How long the job the next claim would take has waited, [`format::NONE`] when no
/// job is available.
pub(super) fn next_available_cell(counts: &QueueCounts, now: Timestamp) -> String {
    counts.next_available_at.map_or_else(|| format::NONE.to_owned(), |at| format::short_duration(format::age(at, now)))
}

/// `paused` as a table shows it.
pub(super) fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

/// The JSON fields of a queue's counts: queue, paused, counts, the next available job's
/// `run_at` and its age in seconds.
pub(super) fn counts_json(counts: &QueueCounts, now: Timestamp) -> serde_json::Map<String, Value> {
    let mut object = serde_json::Map::new();
    object.insert("queue".to_owned(), json!(counts.queue));
    object.insert("paused".to_owned(), json!(counts.paused));
    object.insert("counts".to_owned(), json::state_counts(counts));
    object.insert("next_available_at".to_owned(), json!(counts.next_available_at.map(format::timestamp_json)));
    object.insert(
        "next_available_age".to_owned(),
        json!(counts.next_available_at.map(|at| format::age(at, now).as_secs_f64())),
    );
    object
}

/// Lists every queue with its counts and its concurrency limit (a limited queue
/// without jobs too).
pub(super) async fn list(storage: &dyn Storage, io: &mut Io<'_>, json: bool) -> Result<Exit, CliError> {
    let mut queues = storage.counts().await?;
    let limits: BTreeMap<String, QueueLimits> =
        storage.queue_limits().await?.into_iter().map(|record| (record.queue, record.limits)).collect();
    for queue in limits.keys() {
        if !queues.iter().any(|counts| &counts.queue == queue) {
            queues.push(QueueCounts::new(queue.clone(), false, BTreeMap::new()));
        }
    }
    queues.sort_by(|a, b| a.queue.cmp(&b.queue));
    let limit_of = |queue: &str| limits.get(queue).and_then(|limits| limits.concurrency);
    let now = chrono::Utc::now();
    if json {
        for counts in &queues {
            let mut object = counts_json(counts, now);
            object.insert("concurrency_limit".to_owned(), json!(limit_of(&counts.queue)));
            io.json_line(&Value::Object(object))?;
        }
        return Ok(Exit::Success);
    }
    if queues.is_empty() {
        io.out_line("no queues: no job has been enqueued and no queue paused or limited")?;
        return Ok(Exit::Success);
    }
    let mut columns = vec![("QUEUE", Align::Left), ("PAUSED", Align::Left), ("LIMIT", Align::Right)];
    columns.extend(STATE_COLUMNS);
    columns.push(NEXT_AVAILABLE_COLUMN);
    let mut table = Table::new(&columns);
    for counts in &queues {
        let limit = limit_of(&counts.queue).map_or_else(|| format::NONE.to_owned(), |limit| limit.to_string());
        let mut row = vec![counts.queue.clone(), yes_no(counts.paused), limit];
        row.extend(state_cells(counts));
        row.push(next_available_cell(counts, now));
        table.row(row);
    }
    for line in table.lines() {
        io.out_line(&line)?;
    }
    Ok(Exit::Success)
}

/// Sets (`Some`) or removes a queue's concurrency limit.
pub(super) async fn limit(
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    queue: &str,
    concurrency: Option<u32>,
) -> Result<Exit, CliError> {
    let limits = concurrency.map_or_else(QueueLimits::new, |concurrency| QueueLimits::new().concurrency(concurrency));
    storage.set_queue_limits(queue, limits).await?;
    if json {
        io.json_line(&json!({ "queue": queue, "concurrency_limit": concurrency }))?;
    } else if let Some(concurrency) = concurrency {
        io.out_line(&format!(
            "limited queue {queue}: at most {concurrency} of its jobs run at once across every worker, from each \
             worker's next claim"
        ))?;
    } else {
        io.out_line(&format!("removed the limit of queue {queue}"))?;
    }
    Ok(Exit::Success)
}

/// Pauses (`pause`) or resumes a queue.
pub(super) async fn pause(
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    queue: &str,
    pause: bool,
) -> Result<Exit, CliError> {
    if pause {
        storage.pause_queue(queue).await?;
    } else {
        storage.resume_queue(queue).await?;
    }
    if json {
        io.json_line(&json!({ "queue": queue, "paused": pause }))?;
    } else if pause {
        io.out_line(&format!(
            "paused queue {queue}: workers claim nothing from it (jobs can still be enqueued) until \
             `haul queues resume {}`",
            format::shell_word(queue)
        ))?;
    } else {
        io.out_line(&format!("resumed queue {queue}: workers claim from it again"))?;
    }
    Ok(Exit::Success)
}
