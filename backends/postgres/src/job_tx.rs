//! The job-scoped transaction: a handler's writes and its job's completion commit
//! together, or not at all.

use std::{
    fmt,
    ops::{Deref, DerefMut},
};

use haul_core::{Error, JobContext, Result};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::{PostgresStorage, error::map_sqlx_error};

impl PostgresStorage {
    /// Begins a transaction for the running job `ctx` whose commit also completes the
    /// job ([`JobTransaction::commit`]): the handler's writes and the job's completion
    /// are stored together, or neither is. For jobs whose only effects are writes to
    /// this database.
    ///
    /// The transaction holds one pooled connection until it ends, while the handler
    /// runs; size the pool for it. The job's lease is still extended by the worker's
    /// heartbeat meanwhile. Dropping the transaction without committing (a handler
    /// returning early with an error, a panic, a timeout) rolls it back, and the
    /// attempt's outcome is reported as usual.
    ///
    /// ```no_run
    /// use haul::prelude::*;
    /// use haul_postgres::PostgresStorage;
    ///
    /// #[job]
    /// async fn credit(ctx: &JobContext, storage: State<PostgresStorage>, account: i64, cents: i64) -> Result<(), JobError> {
    ///     let mut tx = storage.begin_job_transaction(ctx).await?;
    ///     sqlx::query("UPDATE accounts SET balance = balance + $2 WHERE id = $1")
    ///         .bind(account)
    ///         .bind(cents)
    ///         .execute(&mut *tx)
    ///         .await?;
    ///     tx.commit().await?; // the credit and the job's completion, or neither
    ///     Ok(())
    /// }
    /// ```
    pub async fn begin_job_transaction(&self, ctx: &JobContext) -> Result<JobTransaction> {
        let tx = self.inner.pool.begin().await.map_err(map_sqlx_error)?;
        Ok(JobTransaction { tx, storage: self.clone(), ctx: ctx.clone() })
    }
}

/// A transaction of the running job, made by [`PostgresStorage::begin_job_transaction`].
///
/// It dereferences to the transaction's [`PgConnection`], so queries run on it the
/// way they run on an `sqlx` transaction (`.execute(&mut *tx)`), and
/// [`PostgresStorage::enqueue_in_tx`] takes it (`&mut tx`). [`JobTransaction::commit`]
/// completes the job in the same transaction; dropping it rolls everything back.
pub struct JobTransaction {
    tx: Transaction<'static, Postgres>,
    storage: PostgresStorage,
    ctx: JobContext,
}

impl JobTransaction {
    /// Completes the job, fenced by the attempt's claim (job id and lease token of a
    /// running job), and commits the handler's writes with it. Then the worker writes
    /// no outcome for the attempt: the job is already `completed`.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] if the worker no longer holds the job (its lease expired
    /// and it may run elsewhere, or it was cancelled and rescued): the transaction is
    /// rolled back, so none of the handler's writes are kept. A backend error if the
    /// statement or the commit fails; when the connection is lost during the commit,
    /// the outcome is unknown, but the fencing keeps the job consistent either way
    /// (completed with the writes, or neither).
    pub async fn commit(mut self) -> Result<()> {
        let claim = self.ctx.claim();
        let completed = sqlx::query(self.storage.inner.queries.complete.clone())
            .bind(claim.id.0)
            .bind(claim.token.0)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_sqlx_error)?;
        if completed.is_none() {
            if let Err(error) = self.tx.rollback().await {
                // Dropping the connection's transaction rolls back too; the fenced
                // failure is what the caller needs to know.
                tracing::warn!(id = %claim.id, %error, "rolling back a job transaction whose lease was lost failed");
            }
            return Err(Error::LeaseLost(claim.id));
        }
        self.tx.commit().await.map_err(map_sqlx_error)?;
        self.ctx.mark_completed();
        Ok(())
    }

    /// Rolls back the handler's writes; the job stays running, and the handler's
    /// result decides its outcome as usual.
    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await.map_err(map_sqlx_error)
    }

    /// The underlying `sqlx` transaction (to open a savepoint with `begin()`, say).
    pub fn transaction(&mut self) -> &mut Transaction<'static, Postgres> {
        &mut self.tx
    }
}

impl Deref for JobTransaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for JobTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl fmt::Debug for JobTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobTransaction").field("claim", &self.ctx.claim()).finish_non_exhaustive()
    }
}
