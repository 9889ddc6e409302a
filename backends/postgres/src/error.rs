//! The one place where driver errors become haul errors.

use haul_core::{Error, ErrorKind, JobId};
use sqlx::{migrate::MigrateError, postgres::PgDatabaseError};
use uuid::Uuid;

use crate::BACKEND;

/// Maps an sqlx error to a haul [`Error::Backend`] with the right [`ErrorKind`]; the
/// sqlx error stays reachable through `source()`.
///
/// - a job id that is already stored (the primary key `jobs_pkey` violated, which
///   happens when two batches race with one id) is [`Error::DuplicateId`];
/// - lost or refused connections, TLS failures, protocol errors, a closed pool, admin
///   shutdowns and "too many connections" are [`ErrorKind::Connection`];
/// - a pool that gave no connection in time, a cancelled statement
///   (`statement_timeout`) and a lock that could not be had in time are
///   [`ErrorKind::Timeout`];
/// - serialization failures, deadlocks and unique violations are [`ErrorKind::Conflict`];
/// - values or columns that do not decode, and data the server reports corrupted,
///   are [`ErrorKind::CorruptData`];
/// - a failed migration is classified by the error that failed it; a modified or
///   missing migration is [`ErrorKind::Other`];
/// - anything else is [`ErrorKind::Other`] (a missing table says to run `migrate()`).
pub(crate) fn map_sqlx_error(error: sqlx::Error) -> Error {
    if let Some(id) = duplicate_job_id(&error) {
        return Error::DuplicateId(id);
    }
    let (kind, message) = classify(&error);
    Error::backend(BACKEND, kind, message, Some(Box::new(error)))
}

/// The id a batch collided on, when `error` is a violation of the jobs' primary key.
fn duplicate_job_id(error: &sqlx::Error) -> Option<JobId> {
    let sqlx::Error::Database(db) = error else { return None };
    if db.code().as_deref() != Some("23505") || db.constraint() != Some("jobs_pkey") {
        return None;
    }
    key_in_detail(db.try_downcast_ref::<PgDatabaseError>()?.detail()?)
}

/// The key of a unique violation's detail: `Key (id)=(<uuid>) already exists.` (the
/// words are translated with `lc_messages`, the `=(…)` is not).
fn key_in_detail(detail: &str) -> Option<JobId> {
    let start = detail.find("=(")? + 2;
    let end = start + detail[start..].find(')')?;
    Uuid::parse_str(&detail[start..end]).ok().map(JobId)
}

fn classify(error: &sqlx::Error) -> (ErrorKind, String) {
    use sqlx::Error as E;
    let kind = match error {
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolClosed | E::WorkerCrashed => ErrorKind::Connection,
        E::PoolTimedOut => ErrorKind::Timeout,
        E::Decode(_)
        | E::ColumnDecode { .. }
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. } => ErrorKind::CorruptData,
        E::Database(db) => return classify_database(db.code().as_deref(), db.message()),
        E::Migrate(migrate) => match &**migrate {
            MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
                let (kind, message) = classify(inner);
                return (kind, format!("migration failed: {message}"));
            }
            _ => ErrorKind::Other,
        },
        _ => ErrorKind::Other,
    };
    (kind, error.to_string())
}

/// Classifies a server error by its SQLSTATE code.
fn classify_database(code: Option<&str>, message: &str) -> (ErrorKind, String) {
    let code = code.unwrap_or("");
    let kind = match code {
        // serialization_failure, deadlock_detected, unique_violation
        "40001" | "40P01" | "23505" => ErrorKind::Conflict,
        // query_canceled (statement_timeout), lock_not_available (lock_timeout),
        // idle_in_transaction_session_timeout
        "57014" | "55P03" | "25P03" => ErrorKind::Timeout,
        // too_many_connections, admin_shutdown, crash_shutdown, cannot_connect_now
        "53300" | "57P01" | "57P02" | "57P03" => ErrorKind::Connection,
        // data_corrupted, index_corrupted
        "XX001" | "XX002" => ErrorKind::CorruptData,
        // undefined_table, invalid_schema_name
        "42P01" | "3F000" => {
            return (
                ErrorKind::Other,
                format!("{message} (SQLSTATE {code}); has `PostgresStorage::migrate()` run on this schema?"),
            );
        }
        // connection_exception class
        _ if code.starts_with("08") => ErrorKind::Connection,
        _ => ErrorKind::Other,
    };
    (kind, format!("{message} (SQLSTATE {code})"))
}

/// A stored value that does not have the expected form.
pub(crate) fn corrupt(message: impl Into<String>) -> Error {
    Error::backend(BACKEND, ErrorKind::CorruptData, message, None)
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, error::Error as StdError, fmt, io};

    use sqlx::error::{DatabaseError, ErrorKind as SqlxErrorKind};

    use super::*;

    /// A server error with a given SQLSTATE, as the driver would report it.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl StdError for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> SqlxErrorKind {
            SqlxErrorKind::Other
        }
    }

    fn kind_of(error: sqlx::Error) -> Option<ErrorKind> {
        map_sqlx_error(error).kind()
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError(code)))
    }

    #[test]
    fn a_reset_connection_is_a_connection_error() {
        let error = sqlx::Error::Io(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert_eq!(kind_of(error), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_tls_failure_is_a_connection_error() {
        assert_eq!(kind_of(sqlx::Error::Tls("handshake".into())), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_protocol_error_is_a_connection_error() {
        assert_eq!(kind_of(sqlx::Error::Protocol("garbage".into())), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_closed_pool_is_a_connection_error() {
        assert_eq!(kind_of(sqlx::Error::PoolClosed), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_crashed_driver_worker_is_a_connection_error() {
        assert_eq!(kind_of(sqlx::Error::WorkerCrashed), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_pool_timeout_is_a_timeout() {
        assert_eq!(kind_of(sqlx::Error::PoolTimedOut), Some(ErrorKind::Timeout));
    }

    #[test]
    fn a_value_that_does_not_decode_is_corrupt_data() {
        assert_eq!(kind_of(sqlx::Error::Decode("bad".into())), Some(ErrorKind::CorruptData));
        let column = sqlx::Error::ColumnDecode { index: "\"state\"".into(), source: "bad".into() };
        assert_eq!(kind_of(column), Some(ErrorKind::CorruptData));
    }

    #[test]
    fn a_missing_column_is_corrupt_data() {
        assert_eq!(kind_of(sqlx::Error::ColumnNotFound("state".into())), Some(ErrorKind::CorruptData));
        let out_of_bounds = sqlx::Error::ColumnIndexOutOfBounds { index: 3, len: 2 };
        assert_eq!(kind_of(out_of_bounds), Some(ErrorKind::CorruptData));
        assert_eq!(kind_of(sqlx::Error::TypeNotFound { type_name: "x".into() }), Some(ErrorKind::CorruptData));
    }

    #[test]
    fn a_serialization_failure_is_a_conflict() {
        assert_eq!(kind_of(server("40001")), Some(ErrorKind::Conflict));
    }

    #[test]
    fn a_deadlock_is_a_conflict() {
        assert_eq!(kind_of(server("40P01")), Some(ErrorKind::Conflict));
    }

    #[test]
    fn a_unique_violation_without_a_job_key_is_a_conflict() {
        assert_eq!(kind_of(server("23505")), Some(ErrorKind::Conflict));
    }

    #[test]
    fn the_key_of_a_primary_key_violation_is_the_duplicate_id() {
        let id = Uuid::now_v7();
        assert_eq!(key_in_detail(&format!("Key (id)=({id}) already exists.")), Some(JobId(id)));
        assert_eq!(key_in_detail(&format!("Schlüssel »(id)=({id})« existiert bereits.")), Some(JobId(id)));
        assert_eq!(key_in_detail("Key (id)=(not-a-uuid) already exists."), None);
        assert_eq!(key_in_detail("no key here"), None);
    }

    #[test]
    fn a_cancelled_statement_is_a_timeout() {
        assert_eq!(kind_of(server("57014")), Some(ErrorKind::Timeout));
    }

    #[test]
    fn a_lock_timeout_is_a_timeout() {
        assert_eq!(kind_of(server("55P03")), Some(ErrorKind::Timeout));
    }

    #[test]
    fn an_idle_transaction_timeout_is_a_timeout() {
        assert_eq!(kind_of(server("25P03")), Some(ErrorKind::Timeout));
    }

    #[test]
    fn too_many_connections_is_a_connection_error() {
        assert_eq!(kind_of(server("53300")), Some(ErrorKind::Connection));
    }

    #[test]
    fn a_server_shutdown_is_a_connection_error() {
        for code in ["57P01", "57P02", "57P03"] {
            assert_eq!(kind_of(server(code)), Some(ErrorKind::Connection), "{code}");
        }
    }

    #[test]
    fn a_connection_exception_is_a_connection_error() {
        for code in ["08000", "08003", "08006"] {
            assert_eq!(kind_of(server(code)), Some(ErrorKind::Connection), "{code}");
        }
    }

    #[test]
    fn data_the_server_reports_corrupted_is_corrupt_data() {
        assert_eq!(kind_of(server("XX001")), Some(ErrorKind::CorruptData));
        assert_eq!(kind_of(server("XX002")), Some(ErrorKind::CorruptData));
    }

    #[test]
    fn a_missing_table_is_another_error_and_not_transient() {
        let error = map_sqlx_error(server("42P01"));
        assert_eq!(error.kind(), Some(ErrorKind::Other));
        assert!(!error.is_transient());
    }

    #[test]
    fn any_other_server_error_is_another_error() {
        assert_eq!(kind_of(server("22P02")), Some(ErrorKind::Other));
        assert_eq!(kind_of(server("23514")), Some(ErrorKind::Other));
    }

    #[test]
    fn a_migration_is_classified_by_the_error_that_failed_it() {
        let failed = MigrateError::ExecuteMigration(server("40P01"), 1);
        assert_eq!(kind_of(sqlx::Error::Migrate(Box::new(failed))), Some(ErrorKind::Conflict));
        let modified = MigrateError::VersionMismatch(1);
        assert_eq!(kind_of(sqlx::Error::Migrate(Box::new(modified))), Some(ErrorKind::Other));
    }

    #[test]
    fn a_configuration_error_is_another_error() {
        assert_eq!(kind_of(sqlx::Error::Configuration("bad url".into())), Some(ErrorKind::Other));
        assert_eq!(kind_of(sqlx::Error::RowNotFound), Some(ErrorKind::Other));
    }

    #[test]
    fn the_driver_error_stays_reachable_as_the_source() {
        let error = map_sqlx_error(sqlx::Error::PoolTimedOut);
        let source = StdError::source(&error).and_then(|source| source.downcast_ref::<sqlx::Error>());
        assert!(matches!(source, Some(sqlx::Error::PoolTimedOut)));
    }
}
