//! `haul stats`: per queue and over every queue, counts by state, total, the attempts
//! completed and failed in the last hour (in all and per minute), how long the next
//! available job has waited, paused or not.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use haul::{
    JobState, QueueCounts, Storage,
    storage::{Timestamp, minute_of},
};
use serde_json::{Value, json};

use super::queues::{
    NEXT_AVAILABLE_COLUMN, STATE_COLUMNS, counts_json, insert_limits_json, next_available_cell, state_cells, yes_no,
};
use crate::{
    Exit, Io,
    error::CliError,
    table::{Align, Table},
};

/// The name of the row, in the table, that totals every queue.
const ALL_QUEUES: &str = "(all queues)";

/// How many minutes "the last hour" holds: the current minute (still filling) and the
/// 59 before it. The per-minute figures divide by this.
const WINDOW_MINUTES: u32 = 60;

/// The throughput columns, between the state counts and the wait of the next job.
const THROUGHPUT_COLUMNS: [(&str, Align); 4] =
    [("DONE 1H", Align::Right), ("FAILED 1H", Align::Right), ("DONE/MIN", Align::Right), ("FAILED/MIN", Align::Right)];

/// The attempts of a queue that ended in the last hour, as workers recorded them
/// (`Storage::record_throughput`): completed, and failed (errors, timeouts, discards).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LastHour {
    completed: u64,
    failed: u64,
}

impl LastHour {
    /// Adds `other`'s attempts to these.
    fn add(&mut self, other: Self) {
        self.completed = self.completed.saturating_add(other.completed);
        self.failed = self.failed.saturating_add(other.failed);
    }

    /// Completed attempts per minute, averaged over the hour.
    fn completed_per_minute(self) -> f64 {
        per_minute(self.completed)
    }

    /// Failed attempts per minute, averaged over the hour.
    fn failed_per_minute(self) -> f64 {
        per_minute(self.failed)
    }
}

/// `attempts` in the last hour as an average per minute.
fn per_minute(attempts: u64) -> f64 {
    // Exact up to 2^53 attempts an hour.
    attempts as f64 / f64::from(WINDOW_MINUTES)
}

/// The start of the first minute of the last hour before `now`.
fn window_start(now: Timestamp) -> Timestamp {
    minute_of(now) - TimeDelta::minutes(i64::from(WINDOW_MINUTES) - 1)
}

/// Each queue's attempts in the last hour before `now`; queues with none are absent.
async fn last_hour(storage: &dyn Storage, now: Timestamp) -> Result<BTreeMap<String, LastHour>, CliError> {
    let mut by_queue: BTreeMap<String, LastHour> = BTreeMap::new();
    for sample in storage.throughput(window_start(now)).await? {
        let ended = LastHour { completed: sample.completed, failed: sample.failed };
        by_queue.entry(sample.queue).or_default().add(ended);
    }
    Ok(by_queue)
}

/// Prints the statistics: one row per queue and one for every queue together (in
/// `--json`, one line per queue and a last line whose `queue` is `null`). A queue that
/// holds no job but ended attempts in the last hour has a row too, with zero counts.
pub(super) async fn run(storage: &dyn Storage, io: &mut Io<'_>, json: bool) -> Result<Exit, CliError> {
    let now = chrono::Utc::now();
    let mut queues = storage.counts().await?;
    let throughput = last_hour(storage, now).await?;
    for queue in throughput.keys() {
        if !queues.iter().any(|counts| &counts.queue == queue) {
            queues.push(QueueCounts::new(queue.clone(), false, BTreeMap::new()));
        }
    }
    queues.sort_by(|a, b| a.queue.cmp(&b.queue));
    let of = |queue: &str| throughput.get(queue).copied().unwrap_or_default();
    let all = totals(&queues);
    let mut all_throughput = LastHour::default();
    for ended in throughput.values() {
        all_throughput.add(*ended);
    }

    if json {
        let limits = super::queues::stored_limits(storage).await?;
        for counts in &queues {
            let mut line = stats_json(counts, of(&counts.queue), now, false);
            insert_limits_json(&mut line, limits.get(&counts.queue));
            io.json_line(&Value::Object(line))?;
        }
        io.json_line(&Value::Object(stats_json(&all, all_throughput, now, true)))?;
        return Ok(Exit::Success);
    }
    let mut columns = vec![("QUEUE", Align::Left), ("PAUSED", Align::Left), ("TOTAL", Align::Right)];
    columns.extend(STATE_COLUMNS);
    columns.extend(THROUGHPUT_COLUMNS);
    columns.push(NEXT_AVAILABLE_COLUMN);
    let mut table = Table::new(&columns);
    for counts in &queues {
        let mut row = vec![counts.queue.clone(), yes_no(counts.paused), total(counts).to_string()];
        row.extend(state_cells(counts));
        row.extend(throughput_cells(of(&counts.queue)));
        row.push(next_available_cell(counts, now));
        table.row(row);
    }
    let paused = queues.iter().filter(|counts| counts.paused).count();
    let mut row = vec![ALL_QUEUES.to_owned(), format!("{paused} of {}", queues.len()), total(&all).to_string()];
    row.extend(state_cells(&all));
    row.extend(throughput_cells(all_throughput));
    row.push(next_available_cell(&all, now));
    table.row(row);
    for line in table.lines() {
        io.out_line(&line)?;
    }
    Ok(Exit::Success)
}

/// The cells of [`THROUGHPUT_COLUMNS`]: totals, then averages per minute to two decimals.
fn throughput_cells(ended: LastHour) -> [String; 4] {
    [
        ended.completed.to_string(),
        ended.failed.to_string(),
        format!("{:.2}", ended.completed_per_minute()),
        format!("{:.2}", ended.failed_per_minute()),
    ]
}

/// One `--json` line: a queue's counts fields, its total and its last hour's attempts
/// (totals and averages per minute); for the totals of every queue (`all`), `queue` is
/// `null` and there is no `paused`.
fn stats_json(counts: &QueueCounts, ended: LastHour, now: Timestamp, all: bool) -> serde_json::Map<String, Value> {
    let mut object = counts_json(counts, now);
    if all {
        object.insert("queue".to_owned(), Value::Null);
        object.remove("paused");
    }
    object.insert("total".to_owned(), json!(total(counts)));
    object.insert("completed_last_hour".to_owned(), json!(ended.completed));
    object.insert("failed_last_hour".to_owned(), json!(ended.failed));
    object.insert("completed_per_minute".to_owned(), json!(ended.completed_per_minute()));
    object.insert("failed_per_minute".to_owned(), json!(ended.failed_per_minute()));
    object
}

/// Every queue's counts added up; the next available job is the one that waited
/// longest among the queues' next ones.
fn totals(queues: &[QueueCounts]) -> QueueCounts {
    let states = JobState::ALL
        .into_iter()
        .map(|state| (state, queues.iter().map(|counts| counts.get(state)).sum::<u64>()))
        .filter(|&(_, count)| count > 0)
        .collect();
    let oldest = queues.iter().filter_map(|counts| counts.next_available_at).min();
    QueueCounts::new(ALL_QUEUES, false, states).next_available_at(oldest)
}

/// How many jobs a queue holds.
fn total(counts: &QueueCounts) -> u64 {
    counts.states.values().sum()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_window_is_the_current_minute_and_the_59_before_it() {
        let now = chrono::Utc.with_ymd_and_hms(2030, 1, 1, 12, 30, 42).single().unwrap();
        assert_eq!(window_start(now), chrono::Utc.with_ymd_and_hms(2030, 1, 1, 11, 31, 0).single().unwrap());
    }

    #[test]
    fn per_minute_figures_average_over_sixty_minutes() {
        let ended = LastHour { completed: 90, failed: 1 };
        assert_eq!(throughput_cells(ended), ["90", "1", "1.50", "0.02"].map(str::to_owned));
        assert!((ended.completed_per_minute() - 1.5).abs() < f64::EPSILON);
    }
}
