//! `haul stats`: per queue and over every queue, counts by state, total, how long the
//! next available job has waited, paused or not.

use haul::{JobState, QueueCounts, Storage, storage::Timestamp};
use serde_json::{Value, json};

use super::queues::{NEXT_AVAILABLE_COLUMN, STATE_COLUMNS, counts_json, next_available_cell, state_cells, yes_no};
use crate::{
    Exit, Io,
    error::CliError,
    table::{Align, Table},
};

/// The name of the row, in the table, that totals every queue.
const ALL_QUEUES: &str = "(all queues)";

/// Jobs of `queue` finished per minute: not reported yet, because no storage call
/// counts finishes over time. Until one does this is `None`: `null` in `--json`, and
/// no column in the table. Never estimated from the counts.
fn throughput_per_minute(_queue: &QueueCounts) -> Option<f64> {
    None
}

/// Prints the statistics: one row per queue and one for every queue together (in
/// `--json`, one line per queue and a last line whose `queue` is `null`).
pub(super) async fn run(storage: &dyn Storage, io: &mut Io<'_>, json: bool) -> Result<Exit, CliError> {
    let queues = storage.counts().await?;
    let now = chrono::Utc::now();
    let all = totals(&queues);
    if json {
        for counts in &queues {
            io.json_line(&stats_json(counts, now, false))?;
        }
        io.json_line(&stats_json(&all, now, true))?;
        return Ok(Exit::Success);
    }
    let mut columns = vec![("QUEUE", Align::Left), ("PAUSED", Align::Left), ("TOTAL", Align::Right)];
    columns.extend(STATE_COLUMNS);
    columns.push(NEXT_AVAILABLE_COLUMN);
    let mut table = Table::new(&columns);
    for counts in &queues {
        let mut row = vec![counts.queue.clone(), yes_no(counts.paused), total(counts).to_string()];
        row.extend(state_cells(counts));
        row.push(next_available_cell(counts, now));
        table.row(row);
    }
    let paused = queues.iter().filter(|counts| counts.paused).count();
    let mut row = vec![ALL_QUEUES.to_owned(), format!("{paused} of {}", queues.len()), total(&all).to_string()];
    row.extend(state_cells(&all));
    row.push(next_available_cell(&all, now));
    table.row(row);
    for line in table.lines() {
        io.out_line(&line)?;
    }
    Ok(Exit::Success)
}

/// One `--json` line: a queue's counts fields, its total and its throughput; for the
/// totals of every queue (`all`), `queue` is `null` and there is no `paused`.
fn stats_json(counts: &QueueCounts, now: Timestamp, all: bool) -> Value {
    let mut object = counts_json(counts, now);
    if all {
        object.insert("queue".to_owned(), Value::Null);
        object.remove("paused");
    }
    object.insert("total".to_owned(), json!(total(counts)));
    object.insert("throughput_per_minute".to_owned(), json!(throughput_per_minute(counts)));
    Value::Object(object)
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
