//! The throughput samples ([`Storage::record_throughput`](haul_core::Storage::record_throughput),
//! [`Admin::throughput`](haul_core::Admin::throughput)): one statement each
//! (`queries/record_throughput.sql`, `queries/throughput.sql`) on `<schema>.throughput`,
//! one row per queue and minute (migration 0009).

use haul_core::{THROUGHPUT_RETENTION, ThroughputSample, Timestamp, merge_samples};
use sqlx::{Row, postgres::PgRow};

use crate::{PostgresStorage, error::map_sqlx_error, row::micros};

/// A count as stored: a `bigint`, saturating at its maximum.
fn stored_count(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Decodes a row of the throughput table (`queue`, `minute`, `completed`, `failed`).
fn decode_sample(row: &PgRow) -> haul_core::Result<ThroughputSample> {
    let queue: String = row.try_get("queue").map_err(map_sqlx_error)?;
    let minute: Timestamp = row.try_get("minute").map_err(map_sqlx_error)?;
    let completed: i64 = row.try_get("completed").map_err(map_sqlx_error)?;
    let failed: i64 = row.try_get("failed").map_err(map_sqlx_error)?;
    // The table's CHECK keeps the counts non-negative.
    Ok(ThroughputSample::new(queue, minute, u64::try_from(completed).unwrap_or(0), u64::try_from(failed).unwrap_or(0)))
}

impl PostgresStorage {
    /// Checks every sample, then adds them all and deletes the rows older than the
    /// retention before `now`, in one statement. No samples: no round trip.
    pub(crate) async fn add_throughput(
        &self,
        samples: Vec<ThroughputSample>,
        now: Option<Timestamp>,
    ) -> haul_core::Result<()> {
        for sample in &samples {
            sample.validate()?;
        }
        if samples.is_empty() {
            return Ok(());
        }
        // Summed per queue and minute, in (queue, minute) byte order: the statement
        // sums and orders again, this only makes the arrays shorter.
        let merged = merge_samples(samples);
        let mut queues = Vec::with_capacity(merged.len());
        let mut minutes = Vec::with_capacity(merged.len());
        let mut completed = Vec::with_capacity(merged.len());
        let mut failed = Vec::with_capacity(merged.len());
        for sample in merged {
            queues.push(sample.queue);
            minutes.push(sample.minute);
            completed.push(stored_count(sample.completed));
            failed.push(stored_count(sample.failed));
        }
        sqlx::query(self.inner.queries.record_throughput.clone())
            .bind(now)
            .bind(&queues)
            .bind(&minutes)
            .bind(&completed)
            .bind(&failed)
            .bind(micros(THROUGHPUT_RETENTION))
            .execute(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        Ok(())
    }

    /// The samples from the minute holding `since` on, by queue then minute.
    pub(crate) async fn throughput_since(&self, since: Timestamp) -> haul_core::Result<Vec<ThroughputSample>> {
        let rows = sqlx::query(self.inner.queries.throughput.clone())
            .bind(since)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?;
        rows.iter().map(decode_sample).collect()
    }
}
