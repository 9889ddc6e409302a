//! `haul prune`: deletes finished jobs older than their retention.

use haul::{Retention, Storage, storage::PruneParams};
use serde_json::json;

use crate::{Exit, Io, args::PruneArgs, error::CliError, format};

/// Calls the storage's prune in batches until a batch deletes fewer jobs than its limit,
/// then says how many were deleted.
pub(super) async fn run(
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    args: &PruneArgs,
) -> Result<Exit, CliError> {
    let retention = Retention::all(args.completed).discarded(args.discarded).cancelled(args.cancelled);
    let mut deleted = 0;
    loop {
        let batch = storage.prune(PruneParams::new(retention).limit(args.batch_size)).await?;
        deleted += batch;
        if batch < args.batch_size as u64 {
            break;
        }
    }
    if json {
        io.json_line(&json!({
            "deleted": deleted,
            "retention": {
                "completed": args.completed.as_secs_f64(),
                "discarded": args.discarded.as_secs_f64(),
                "cancelled": args.cancelled.as_secs_f64(),
            },
        }))?;
    } else {
        io.out_line(&format!(
            "deleted {deleted} finished {} (kept: completed for {}, discarded for {}, cancelled for {})",
            if deleted == 1 { "job" } else { "jobs" },
            format::flag_duration(args.completed),
            format::flag_duration(args.discarded),
            format::flag_duration(args.cancelled),
        ))?;
    }
    Ok(Exit::Success)
}
