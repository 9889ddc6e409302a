//! `haul cron`: the periodic schedules.

use haul::Storage;

use crate::{
    Exit, Io,
    error::CliError,
    format, json,
    table::{Align, Table},
};

/// Lists every schedule's record, in name order.
pub(super) async fn run(storage: &dyn Storage, io: &mut Io<'_>, json: bool) -> Result<Exit, CliError> {
    let schedules = storage.list_periodic().await?;
    if json {
        for record in &schedules {
            io.json_line(&json::periodic(record))?;
        }
        return Ok(Exit::Success);
    }
    if schedules.is_empty() {
        io.out_line("no periodic schedules: none has been recorded by a worker's scheduler")?;
        return Ok(Exit::Success);
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("SCHEDULE", Align::Left),
        ("LAST TICK", Align::Left),
        ("NEXT TICK", Align::Left),
        ("UPDATED", Align::Left),
    ]);
    for record in &schedules {
        table.row(vec![
            record.name.clone(),
            record.spec.clone(),
            format::maybe_timestamp(record.last_tick),
            format::maybe_timestamp(record.next_tick),
            format::timestamp(record.updated_at),
        ]);
    }
    for line in table.lines() {
        io.out_line(&line)?;
    }
    Ok(Exit::Success)
}
