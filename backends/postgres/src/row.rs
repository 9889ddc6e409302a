//! Rows to records, and Rust values to SQL parameters.

use std::time::Duration;

use haul_core::{
    AttemptError, JobId, JobRecord, JobState, Leadership, LeaseToken, Metadata, Result, Timestamp, WorkerBeat,
    WorkerRecord, metadata_from_json,
};
use sqlx::{Row, postgres::PgRow, types::Json};
use uuid::Uuid;

use crate::error::{corrupt, map_sqlx_error};

/// The longest delay, lease or retention sent to the database (1,000 years): longer
/// ones are capped so `now ± delay` stays within PostgreSQL's timestamp range.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(1000 * 366 * 24 * 3600);

/// A delay in whole microseconds, capped at [`MAX_DELAY`].
pub(crate) fn micros(delay: Duration) -> i64 {
    i64::try_from(delay.min(MAX_DELAY).as_micros()).unwrap_or(i64::MAX)
}

/// A per-attempt timeout in whole milliseconds, rounded up so a short timeout never
/// becomes zero.
pub(crate) fn timeout_ms(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// Parses a stored state name; an unknown one means the row is corrupt.
pub(crate) fn parse_state(state: &str) -> Result<JobState> {
    state.parse().map_err(|_| corrupt(format!("unknown job state `{state}` in the jobs table")))
}

fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(map_sqlx_error)
}

fn count(row: &PgRow, name: &str, value: i32) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| corrupt(format!("negative `{name}` ({value}) in row {:?}", row.try_get::<Uuid, _>("id").ok())))
}

/// Decodes a full row of the jobs table.
pub(crate) fn decode_record(row: &PgRow) -> Result<JobRecord> {
    let id: Uuid = column(row, "id")?;
    let state: String = column(row, "state")?;
    let attempt: i32 = column(row, "attempt")?;
    let max_attempts: i32 = column(row, "max_attempts")?;
    let timeout: Option<i64> = column(row, "timeout_ms")?;
    let timeout = timeout
        .map(|ms| u64::try_from(ms).map(Duration::from_millis))
        .transpose()
        .map_err(|_| corrupt(format!("negative `timeout_ms` in job {id}")))?;
    let errors: serde_json::Value = column(row, "errors")?;
    let errors: Vec<AttemptError> = serde_json::from_value(errors)
        .map_err(|error| corrupt(format!("the `errors` of job {id} are not a list of attempt errors: {error}")))?;
    let lease_token: Option<Uuid> = column(row, "lease_token")?;

    // Arguments that cannot be read fail their job alone (see `JobRecord::unreadable_args`).
    let (args, unreadable_args) = match row.try_get::<serde_json::Value, _>("args") {
        Ok(args) => (args, None),
        Err(error @ sqlx::Error::ColumnDecode { .. }) => (serde_json::Value::Null, Some(error.to_string())),
        Err(error) => return Err(map_sqlx_error(error)),
    };
    let mut record = JobRecord::new(JobId(id), column::<String>(row, "kind")?, args);
    record.unreadable_args = unreadable_args;
    record.queue = column(row, "queue")?;
    record.priority = column(row, "priority")?;
    record.state = parse_state(&state)?;
    record.attempt = count(row, "attempt", attempt)?;
    record.max_attempts = count(row, "max_attempts", max_attempts)?;
    record.timeout = timeout;
    record.run_at = column::<Timestamp>(row, "run_at")?;
    record.created_at = column::<Timestamp>(row, "created_at")?;
    record.attempted_at = column(row, "attempted_at")?;
    record.finished_at = column(row, "finished_at")?;
    record.cancel_requested_at = column(row, "cancel_requested_at")?;
    record.errors = errors;
    record.lease_token = lease_token.map(LeaseToken);
    record.lease_expires_at = column(row, "lease_expires_at")?;
    record.claimed_by = column(row, "claimed_by")?;
    record.unique_key = column(row, "unique_key")?;
    record.metadata = std::sync::Arc::new(decode_metadata(row, id)?);
    record.limit_key = column(row, "limit_key")?;
    Ok(record)
}

/// Decodes the `metadata` column (migration 0007): NULL for none, else a JSON object of
/// strings, read straight into the map; anything else is read leniently
/// ([`metadata_from_json`]), so a row written by hand never fails a claim.
fn decode_metadata(row: &PgRow, id: Uuid) -> Result<Metadata> {
    match row.try_get::<Option<Json<Metadata>>, _>("metadata") {
        Ok(metadata) => Ok(metadata.map(|Json(metadata)| metadata).unwrap_or_default()),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let value: Option<serde_json::Value> = column(row, "metadata")?;
            Ok(metadata_from_json(JobId(id), value.unwrap_or(serde_json::Value::Null)))
        }
        Err(error) => Err(map_sqlx_error(error)),
    }
}

/// A non-negative `bigint` column of the workers table as a `u32`; anything else
/// means the row is corrupt.
fn worker_count(id: &str, name: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("`{name}` ({value}) of worker `{id}` is not a u32")))
}

/// Decodes a row of the workers table.
pub(crate) fn decode_worker(row: &PgRow) -> Result<WorkerRecord> {
    let id: String = column(row, "id")?;
    let pid = worker_count(&id, "pid", column(row, "pid")?)?;
    let concurrency = worker_count(&id, "concurrency", column(row, "concurrency")?)?;
    let held = worker_count(&id, "held", column(row, "held")?)?;
    // `WorkerRecord` is non-exhaustive: built from the beat it records, then given the
    // stored end.
    let beat = WorkerBeat::new(id, column(row, "started_at")?, Duration::ZERO)
        .process(column::<String>(row, "host")?, pid)
        .serving(column(row, "queues")?, concurrency)
        .held(held);
    let mut record = WorkerRecord::from_beat(&beat, column(row, "last_seen_at")?);
    record.expires_at = column(row, "expires_at")?;
    Ok(record)
}

/// Decodes a held row of the leader table (`worker_id`, `term`, `expires_at`).
pub(crate) fn decode_leadership(row: &PgRow) -> Result<Leadership> {
    let worker_id: String = column(row, "worker_id")?;
    let term: i64 = column(row, "term")?;
    let term = u64::try_from(term).map_err(|_| corrupt(format!("negative leadership term {term}")))?;
    Ok(Leadership::new(worker_id, term, column::<Timestamp>(row, "expires_at")?))
}

#[cfg(test)]
mod tests {
    use haul_core::ErrorKind;

    use super::*;

    #[test]
    fn an_unknown_state_is_corrupt_data() {
        assert_eq!(parse_state("exploded").err().and_then(|error| error.kind()), Some(ErrorKind::CorruptData));
        assert_eq!(parse_state("running").ok(), Some(JobState::Running));
    }

    #[test]
    fn delays_are_capped_and_timeouts_rounded_up() {
        assert_eq!(micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(micros(Duration::MAX), micros(MAX_DELAY));
        assert_eq!(timeout_ms(Duration::from_micros(1)), 1);
        assert_eq!(timeout_ms(Duration::from_secs(5)), 5000);
    }
}
