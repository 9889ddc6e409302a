//! `haul migrate`.

use haul::Storage;
use serde_json::json;

use crate::{Exit, Io, error::CliError};

/// Runs the storage's migration, checks that it is ready, and says what was done.
pub(super) async fn run(storage: &dyn Storage, io: &mut Io<'_>, json: bool) -> Result<Exit, CliError> {
    storage.migrate().await?;
    storage.check_ready().await?;
    let backend = storage.backend_name();
    if json {
        io.json_line(&json!({ "backend": backend, "migrated": true, "ready": true }))?;
    } else {
        let done = match backend {
            "postgres" => {
                "haul's schema and tables are created or upgraded to this version (already up to date \
                           ones are left as they are)"
            }
            "redis" => "the key prefix's layout marker is set to this version (an existing one is checked)",
            "memory" => "nothing to migrate: the in-process storage needs no setup",
            _ => "the storage is set up for this version of haul",
        };
        io.out_line(&format!("{backend}: {done}; the storage is ready"))?;
    }
    Ok(Exit::Success)
}
