//! `haul workers`: the live workers, and the leader.

use haul::Storage;

use crate::{
    Exit, Io,
    error::CliError,
    format, json,
    table::{Align, Table},
};

/// Lists the live workers, marking the one that leads. A leadership whose worker has
/// no live record is told on its own line (on the error stream with `--json`).
pub(super) async fn run(storage: &dyn Storage, io: &mut Io<'_>, json: bool) -> Result<Exit, CliError> {
    let workers = storage.list_workers(None).await?;
    let leader = storage.leader(None).await?;
    let term_of = |id: &str| leader.as_ref().filter(|leader| leader.worker_id == id).map(|leader| leader.term);
    if json {
        for worker in &workers {
            io.json_line(&json::worker(worker, term_of(&worker.id)))?;
        }
    } else if workers.is_empty() {
        io.out_line("no live workers")?;
    } else {
        let mut table = Table::new(&[
            ("ID", Align::Left),
            ("HOST", Align::Left),
            ("PID", Align::Right),
            ("QUEUES", Align::Left),
            ("CONCURRENCY", Align::Right),
            ("HELD", Align::Right),
            ("STARTED", Align::Left),
            ("LAST SEEN", Align::Left),
            ("LEADER", Align::Left),
        ]);
        for worker in &workers {
            table.row(vec![
                worker.id.clone(),
                worker.host.clone(),
                worker.pid.to_string(),
                worker.queues.join(","),
                worker.concurrency.to_string(),
                worker.held.to_string(),
                format::timestamp(worker.started_at),
                format::timestamp(worker.last_seen_at),
                term_of(&worker.id).map_or_else(String::new, |term| format!("yes (term {term})")),
            ]);
        }
        for line in table.lines() {
            io.out_line(&line)?;
        }
    }
    match &leader {
        Some(leader) if !workers.iter().any(|worker| worker.id == leader.worker_id) => {
            let note = format!(
                "leader: {} (term {}, until {}), which has no live worker record",
                leader.worker_id,
                leader.term,
                format::timestamp(leader.expires_at)
            );
            if json { io.err_line(&note)? } else { io.out_line(&note)? }
        }
        None if !workers.is_empty() && !json => io.out_line("no leader: none of the workers leads right now")?,
        _ => {}
    }
    Ok(Exit::Success)
}
