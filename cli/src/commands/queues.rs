//! `haul queues`, `haul queues pause NAME`, `haul queues resume NAME`, `haul queues
//! limit NAME`, and the counts columns `haul stats` shares.

use std::collections::BTreeMap;

use haul::{JobState, QueueCounts, QueueLimits, Storage, storage::Timestamp};
use serde_json::{Value, json};

use crate::{
    Exit, Io,
    args::LimitChange,
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

/// The `LIMIT` cell of a queue: its concurrency limit, then its limit per key (`5`,
/// `1/key`, `5, 1/key`), [`format::NONE`] when it has neither.
pub(super) fn limit_cell(limits: Option<&QueueLimits>) -> String {
    let limits = limits.copied().unwrap_or_default();
    let parts: Vec<String> =
        [limits.concurrency.map(|limit| limit.to_string()), limits.key_concurrency.map(|limit| format!("{limit}/key"))]
            .into_iter()
            .flatten()
            .collect();
    if parts.is_empty() { format::NONE.to_owned() } else { parts.join(", ") }
}

/// Adds a queue's limits to its JSON fields: `concurrency_limit` and
/// `key_concurrency_limit`, `null` when not limited.
pub(super) fn insert_limits_json(object: &mut serde_json::Map<String, Value>, limits: Option<&QueueLimits>) {
    object.insert("concurrency_limit".to_owned(), json!(limits.and_then(|limits| limits.concurrency)));
    object.insert("key_concurrency_limit".to_owned(), json!(limits.and_then(|limits| limits.key_concurrency)));
}

/// Every queue's stored limits, by queue.
pub(super) async fn stored_limits(storage: &dyn Storage) -> Result<BTreeMap<String, QueueLimits>, CliError> {
    Ok(storage.queue_limits().await?.into_iter().map(|record| (record.queue, record.limits)).collect())
}

/// Lists every queue with its counts and its limits (a limited queue without jobs too).
pub(super) async fn list(storage: &dyn Storage, io: &mut Io<'_>, json: bool) -> Result<Exit, CliError> {
    let mut queues = storage.counts().await?;
    let limits = stored_limits(storage).await?;
    for queue in limits.keys() {
        if !queues.iter().any(|counts| &counts.queue == queue) {
            queues.push(QueueCounts::new(queue.clone(), false, BTreeMap::new()));
        }
    }
    queues.sort_by(|a, b| a.queue.cmp(&b.queue));
    let now = chrono::Utc::now();
    if json {
        for counts in &queues {
            let mut object = counts_json(counts, now);
            insert_limits_json(&mut object, limits.get(&counts.queue));
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
        let mut row = vec![counts.queue.clone(), yes_no(counts.paused), limit_cell(limits.get(&counts.queue))];
        row.extend(state_cells(counts));
        row.push(next_available_cell(counts, now));
        table.row(row);
    }
    for line in table.lines() {
        io.out_line(&line)?;
    }
    Ok(Exit::Success)
}

/// What `haul queues limit` changes: each limit given is set or removed, a limit not
/// given keeps its stored value; `unlimited` removes both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LimitsChange {
    /// The change to the concurrency limit, if any.
    pub(crate) concurrency: Option<LimitChange>,
    /// The change to the limit per key, if any.
    pub(crate) key_concurrency: Option<LimitChange>,
    /// Remove both limits.
    pub(crate) unlimited: bool,
}

impl LimitsChange {
    /// The limits after this change to `current`.
    fn apply(self, current: QueueLimits) -> QueueLimits {
        if self.unlimited {
            return QueueLimits::new();
        }
        let mut limits = current;
        if let Some(change) = self.concurrency {
            limits.concurrency = change.apply();
        }
        if let Some(change) = self.key_concurrency {
            limits.key_concurrency = change.apply();
        }
        limits
    }

    /// Whether the result depends on the stored limits (a limit is kept).
    fn keeps_a_limit(self) -> bool {
        !self.unlimited && (self.concurrency.is_none() || self.key_concurrency.is_none())
    }
}

/// Changes a queue's limits: reads the stored ones when one is kept, then stores the
/// result (which replaces them; unlimited removes them).
pub(super) async fn limit(
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    queue: &str,
    change: LimitsChange,
) -> Result<Exit, CliError> {
    let current = if change.keeps_a_limit() {
        stored_limits(storage).await?.remove(queue).unwrap_or_default()
    } else {
        QueueLimits::new()
    };
    let limits = change.apply(current);
    storage.set_queue_limits(queue, limits).await?;
    if json {
        let mut object = serde_json::Map::new();
        object.insert("queue".to_owned(), json!(queue));
        insert_limits_json(&mut object, Some(&limits));
        io.json_line(&Value::Object(object))?;
    } else if limits.is_unlimited() {
        io.out_line(&format!("removed the limits of queue {queue}"))?;
    } else {
        io.out_line(&format!(
            "limited queue {queue}: {} run at once across every worker, from each worker's next claim",
            describe_limits(limits)
        ))?;
    }
    Ok(Exit::Success)
}

/// Limits that are not unlimited, in words: `at most 3 of its jobs`, `at most 1 of its
/// jobs per limit key`, or both joined by `and`.
fn describe_limits(limits: QueueLimits) -> String {
    let in_all = limits.concurrency.map(|limit| format!("at most {limit} of its jobs"));
    let per_key = limits.key_concurrency.map(|limit| format!("at most {limit} of its jobs per limit key"));
    [in_all, per_key].into_iter().flatten().collect::<Vec<_>>().join(" and ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_cell_shows_both_limits() {
        assert_eq!(limit_cell(None), "-");
        assert_eq!(limit_cell(Some(&QueueLimits::new().concurrency(5))), "5");
        assert_eq!(limit_cell(Some(&QueueLimits::new().key_concurrency(1))), "1/key");
        assert_eq!(limit_cell(Some(&QueueLimits::new().concurrency(5).key_concurrency(1))), "5, 1/key");
    }

    #[test]
    fn a_change_keeps_the_limit_it_does_not_name() {
        let stored = QueueLimits::new().concurrency(5).key_concurrency(2);
        let change = |concurrency, key_concurrency, unlimited| LimitsChange { concurrency, key_concurrency, unlimited };
        let set = |limit| Some(LimitChange::Set(limit));
        assert_eq!(change(set(3), None, false).apply(stored), QueueLimits::new().concurrency(3).key_concurrency(2));
        assert_eq!(change(None, set(1), false).apply(stored), QueueLimits::new().concurrency(5).key_concurrency(1));
        assert_eq!(change(Some(LimitChange::Remove), None, false).apply(stored), QueueLimits::new().key_concurrency(2));
        assert_eq!(change(None, None, true).apply(stored), QueueLimits::new());
        assert!(change(set(3), None, false).keeps_a_limit());
        assert!(!change(set(3), Some(LimitChange::Remove), false).keeps_a_limit());
        assert!(!change(None, None, true).keeps_a_limit());
    }
}
