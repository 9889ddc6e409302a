//! `haul queues`, `haul queues pause NAME`, `haul queues resume NAME`, `haul queues
//! limit NAME`, and the counts columns `haul stats` shares.

use std::collections::BTreeMap;

use haul::{JobState, QueueCounts, QueueLimits, RateLimit, Storage, storage::Timestamp};
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

/// The `LIMIT` cell of a queue: its concurrency limit, its limit per key, its rate limit
/// and its rate limit per key, those it has, in that order (`5`, `1/key`, `5, 1/key`,
/// `100/1m`, `2/1s/key`, `5, 1/key, 100/1m, 2/1s/key`); [`format::NONE`] when it has none.
pub(super) fn limit_cell(limits: Option<&QueueLimits>) -> String {
    let limits = limits.copied().unwrap_or_default();
    let parts: Vec<String> = [
        limits.concurrency.map(|limit| limit.to_string()),
        limits.key_concurrency.map(|limit| format!("{limit}/key")),
        limits.rate.map(|rate| rate.to_string()),
        limits.key_rate.map(|rate| format!("{rate}/key")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() { format::NONE.to_owned() } else { parts.join(", ") }
}

/// Adds a queue's limits to its JSON fields: `concurrency_limit` and
/// `key_concurrency_limit` (numbers), `rate_limit` and `key_rate_limit` (objects, see
/// [`rate_json`]), each `null` when not limited.
pub(super) fn insert_limits_json(object: &mut serde_json::Map<String, Value>, limits: Option<&QueueLimits>) {
    let limits = limits.copied().unwrap_or_default();
    object.insert("concurrency_limit".to_owned(), json!(limits.concurrency));
    object.insert("key_concurrency_limit".to_owned(), json!(limits.key_concurrency));
    object.insert("rate_limit".to_owned(), limits.rate.map_or(Value::Null, rate_json));
    object.insert("key_rate_limit".to_owned(), limits.key_rate.map_or(Value::Null, rate_json));
}

/// A rate limit as JSON: `{"starts": 100, "period": 60.0}`, the period in seconds like
/// every duration of the JSON output.
fn rate_json(rate: RateLimit) -> Value {
    json!({ "starts": rate.starts, "period": rate.period.as_secs_f64() })
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
/// given keeps its stored value; `unlimited` removes them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LimitsChange {
    /// The change to the concurrency limit, if any.
    pub(crate) concurrency: Option<LimitChange>,
    /// The change to the concurrency limit per key, if any.
    pub(crate) key_concurrency: Option<LimitChange>,
    /// The change to the rate limit, if any.
    pub(crate) rate: Option<LimitChange<RateLimit>>,
    /// The change to the rate limit per key, if any.
    pub(crate) key_rate: Option<LimitChange<RateLimit>>,
    /// Remove every limit.
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
        if let Some(change) = self.rate {
            limits.rate = change.apply();
        }
        if let Some(change) = self.key_rate {
            limits.key_rate = change.apply();
        }
        limits
    }

    /// Whether the result depends on the stored limits (a limit is kept).
    fn keeps_a_limit(self) -> bool {
        !self.unlimited
            && (self.concurrency.is_none()
                || self.key_concurrency.is_none()
                || self.rate.is_none()
                || self.key_rate.is_none())
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
            "limited queue {queue}: {} across every worker, from each worker's next claim",
            describe_limits(limits)
        ))?;
    }
    Ok(Exit::Success)
}

/// Limits that are not unlimited, in words: how many run at once (`at most 3 of its
/// jobs`, `at most 1 of its jobs per limit key`, or both joined by `and`, then `run at
/// once`), then each rate limit (`at most 100 of its jobs start in any 1m window`),
/// joined by `; `.
fn describe_limits(limits: QueueLimits) -> String {
    let in_all = limits.concurrency.map(|limit| format!("at most {limit} of its jobs"));
    let per_key = limits.key_concurrency.map(|limit| format!("at most {limit} of its jobs per limit key"));
    let at_once: Vec<String> = [in_all, per_key].into_iter().flatten().collect();
    let at_once = (!at_once.is_empty()).then(|| format!("{} run at once", at_once.join(" and ")));
    let rate = limits.rate.map(|rate| describe_rate(rate, ""));
    let key_rate = limits.key_rate.map(|rate| describe_rate(rate, " per limit key"));
    [at_once, rate, key_rate].into_iter().flatten().collect::<Vec<_>>().join("; ")
}

/// A rate limit in words: `at most 100 of its jobs{scope} start in any 1m window`.
fn describe_rate(rate: RateLimit, scope: &str) -> String {
    format!("at most {} of its jobs{scope} start in any {} window", rate.starts, rate.period_text())
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
    fn the_limit_cell_shows_every_limit() {
        assert_eq!(limit_cell(None), "-");
        assert_eq!(limit_cell(Some(&QueueLimits::new().concurrency(5))), "5");
        assert_eq!(limit_cell(Some(&QueueLimits::new().key_concurrency(1))), "1/key");
        assert_eq!(limit_cell(Some(&QueueLimits::new().concurrency(5).key_concurrency(1))), "5, 1/key");
        assert_eq!(limit_cell(Some(&QueueLimits::new().rate(RateLimit::per_minute(100)))), "100/1m");
        assert_eq!(limit_cell(Some(&QueueLimits::new().key_rate(RateLimit::per_second(2)))), "2/1s/key");
        let every = QueueLimits::new()
            .concurrency(5)
            .key_concurrency(1)
            .rate(RateLimit::per_minute(100))
            .key_rate(RateLimit::per_second(2));
        assert_eq!(limit_cell(Some(&every)), "5, 1/key, 100/1m, 2/1s/key");
    }

    #[test]
    fn limits_read_in_words() {
        assert_eq!(describe_limits(QueueLimits::new().concurrency(3)), "at most 3 of its jobs run at once");
        let rates = QueueLimits::new().rate(RateLimit::per_minute(100)).key_rate(RateLimit::per_second(2));
        assert_eq!(
            describe_limits(rates.concurrency(4)),
            "at most 4 of its jobs run at once; at most 100 of its jobs start in any 1m window; \
             at most 2 of its jobs per limit key start in any 1s window"
        );
    }

    #[test]
    fn a_change_keeps_the_limits_it_does_not_name() {
        let rate = RateLimit::per_minute(100);
        let key_rate = RateLimit::per_second(2);
        let stored = QueueLimits::new().concurrency(5).key_concurrency(2).rate(rate).key_rate(key_rate);
        let none =
            LimitsChange { concurrency: None, key_concurrency: None, rate: None, key_rate: None, unlimited: false };
        let set = |limit| Some(LimitChange::Set(limit));
        let rates = |limits: QueueLimits| limits.rate(rate).key_rate(key_rate);
        let change = LimitsChange { concurrency: set(3), ..none };
        assert_eq!(change.apply(stored), rates(QueueLimits::new().concurrency(3).key_concurrency(2)));
        let change = LimitsChange { key_concurrency: set(1), ..none };
        assert_eq!(change.apply(stored), rates(QueueLimits::new().concurrency(5).key_concurrency(1)));
        let change = LimitsChange { concurrency: Some(LimitChange::Remove), ..none };
        assert_eq!(change.apply(stored), rates(QueueLimits::new().key_concurrency(2)));
        let slower = RateLimit::per_hour(10);
        let change = LimitsChange { rate: Some(LimitChange::Set(slower)), ..none };
        assert_eq!(
            change.apply(stored),
            QueueLimits::new().concurrency(5).key_concurrency(2).rate(slower).key_rate(key_rate)
        );
        let change = LimitsChange { key_rate: Some(LimitChange::Set(slower)), ..none };
        assert_eq!(
            change.apply(stored),
            QueueLimits::new().concurrency(5).key_concurrency(2).rate(rate).key_rate(slower)
        );
        let change = LimitsChange { rate: Some(LimitChange::Remove), key_rate: Some(LimitChange::Remove), ..none };
        assert_eq!(change.apply(stored), QueueLimits::new().concurrency(5).key_concurrency(2));
        assert_eq!(LimitsChange { unlimited: true, ..none }.apply(stored), QueueLimits::new());

        assert!(LimitsChange { concurrency: set(3), ..none }.keeps_a_limit());
        assert!(
            LimitsChange { concurrency: set(3), key_concurrency: Some(LimitChange::Remove), ..none }.keeps_a_limit()
        );
        let all_four = LimitsChange {
            concurrency: set(3),
            key_concurrency: Some(LimitChange::Remove),
            rate: Some(LimitChange::Set(rate)),
            key_rate: Some(LimitChange::Remove),
            unlimited: false,
        };
        assert!(!all_four.keeps_a_limit());
        assert!(LimitsChange { concurrency: None, ..all_four }.keeps_a_limit());
        assert!(LimitsChange { key_concurrency: None, ..all_four }.keeps_a_limit());
        assert!(LimitsChange { rate: None, ..all_four }.keeps_a_limit());
        assert!(LimitsChange { key_rate: None, ..all_four }.keeps_a_limit());
        assert!(!LimitsChange { unlimited: true, ..none }.keeps_a_limit());
    }
}
