//! Whether a schema holds every migration this build of haul embeds
//! ([`Storage::check_ready`](haul_core::Storage::check_ready)).

use std::collections::HashSet;

use haul_core::{Error, Result};
use sqlx::Row;

use crate::{BACKEND, PostgresStorage, error::map_sqlx_error, storage::MIGRATIONS};

/// How to fix a schema that is not ready, as every refusal ends.
const FIX: &str = "call `storage.migrate()` once, or connect with `?migrate=true`";

impl PostgresStorage {
    /// Checks that every embedded migration is recorded as applied in
    /// `<schema>._sqlx_migrations`, failing with [`Error::StorageNotReady`] that names
    /// the schema, what it lacks and the fix. Versions applied by a newer haul, which
    /// this build does not know, are accepted once all of this build's are applied.
    pub(crate) async fn check_migrated(&self) -> Result<()> {
        let schema = &self.inner.schema;
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS has_schema, \
             to_regclass(format('%I._sqlx_migrations', $1::text)) IS NOT NULL AS has_table",
        )
        .bind(schema)
        .fetch_one(&self.inner.pool)
        .await
        .map_err(map_sqlx_error)?;
        let has_schema: bool = row.try_get("has_schema").map_err(map_sqlx_error)?;
        let has_table: bool = row.try_get("has_table").map_err(map_sqlx_error)?;
        if !has_schema {
            return Err(not_ready(format!("schema `{schema}` does not exist: {FIX}")));
        }
        if !has_table {
            return Err(not_ready(format!(
                "schema `{schema}` has no `_sqlx_migrations` table (haul's tables were never created there): {FIX}"
            )));
        }
        // A migration that failed part-way is recorded as unsuccessful: not applied.
        let query = format!("SELECT version FROM \"{schema}\"._sqlx_migrations WHERE success");
        let applied: HashSet<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(map_sqlx_error)?
            .into_iter()
            .collect();
        let missing = missing_migrations(&applied);
        if missing.is_empty() {
            return Ok(());
        }
        let migrations = if missing.len() == 1 { "migration" } else { "migrations" };
        Err(not_ready(format!("schema `{schema}` lacks {migrations} {}: {FIX}", missing.join(", "))))
    }
}

/// The embedded (up) migrations whose version is not in `applied`, as
/// `<version> (<description>)`, in version order.
fn missing_migrations(applied: &HashSet<i64>) -> Vec<String> {
    MIGRATIONS
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration() && !applied.contains(&migration.version))
        .map(|migration| format!("{} ({})", migration.version, migration.description))
        .collect()
}

fn not_ready(reason: String) -> Error {
    Error::StorageNotReady { backend: BACKEND, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_migration_is_missing_from_an_empty_history_and_none_from_a_full_one() {
        let embedded: HashSet<i64> = MIGRATIONS.iter().map(|migration| migration.version).collect();
        assert_eq!(missing_migrations(&HashSet::new()).len(), embedded.len());
        assert!(missing_migrations(&embedded).is_empty());
        let newer: HashSet<i64> = embedded.iter().copied().chain([i64::MAX]).collect();
        assert!(missing_migrations(&newer).is_empty(), "versions this build does not know are fine");
    }

    #[test]
    fn a_missing_migration_is_named_by_version_and_description() {
        let first = MIGRATIONS.iter().map(|migration| migration.version).min().unwrap_or_default();
        let all_but_first: HashSet<i64> =
            MIGRATIONS.iter().map(|migration| migration.version).filter(|version| *version != first).collect();
        let missing = missing_migrations(&all_but_first);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].starts_with(&format!("{first} (")), "{missing:?}");
    }
}
