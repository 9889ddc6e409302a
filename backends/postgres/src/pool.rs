//! Opening the pool of a storage that connects by itself, failing fast and saying why.
//!
//! sqlx's pool retries a refused connection until its acquire timeout (30 s by
//! default) and then reports only "pool timed out". So one connection is opened
//! directly first, bounded by the same timeout: a server that cannot be reached fails
//! at once with the driver's own reason ("Connection refused", a failed password, an
//! unknown database). It is closed before the pool opens its own.

use std::time::Duration;

use haul_core::{Error, ErrorKind, Result};
use sqlx::{
    Connection, PgConnection,
    postgres::{PgConnectOptions, PgPool},
};

use crate::{BACKEND, PostgresConfig, error::map_sqlx_error};

/// Opens a pool of `config`'s size on `options`, after one direct connection.
pub(crate) async fn open_pool(options: PgConnectOptions, config: &PostgresConfig) -> Result<PgPool> {
    let server = server_name(&options);
    let timeout = config.connect_timeout();
    match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
        Ok(Ok(first)) => {
            // Only a polite goodbye: the pool opens its own connections.
            let _ = first.close().await;
        }
        Ok(Err(error)) => return Err(connect_error(error, &server)),
        Err(_elapsed) => return Err(no_answer_error(&server, timeout)),
    }
    config.pool_options().connect_with(options).await.map_err(|error| connect_error(error, &server))
}

/// Where `options` connect: `host:port`, or the Unix socket's directory and port.
fn server_name(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => format!("{} (port {})", socket.display(), options.get_port()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// [`map_sqlx_error`]'s error, its message saying which server could not be reached.
fn connect_error(error: sqlx::Error, server: &str) -> Error {
    match map_sqlx_error(error) {
        Error::Backend { backend, kind, message, source } => Error::Backend {
            backend,
            kind,
            message: format!("cannot connect to PostgreSQL at {server}: {message}"),
            source,
        },
        other => other,
    }
}

/// The server at `server` did not complete a connection within `timeout`.
fn no_answer_error(server: &str, timeout: Duration) -> Error {
    Error::backend(
        BACKEND,
        ErrorKind::Connection,
        format!(
            "cannot connect to PostgreSQL at {server}: no answer within {timeout:?} (`acquire_timeout`); is the \
             address right, and is it reachable?"
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use std::{io, str::FromStr};

    use super::*;

    #[test]
    fn a_refused_connection_keeps_its_kind_and_says_where() {
        let refused = sqlx::Error::Io(io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused"));
        let error = connect_error(refused, "127.0.0.1:1");
        assert_eq!(error.kind(), Some(ErrorKind::Connection));
        let message = error.to_string();
        assert!(message.contains("cannot connect to PostgreSQL at 127.0.0.1:1") && message.contains("refused"));
    }

    #[test]
    fn no_answer_in_time_is_a_connection_error() {
        let error = no_answer_error("h:5432", Duration::from_secs(2));
        assert_eq!(error.kind(), Some(ErrorKind::Connection));
        assert!(error.to_string().contains("no answer within 2s"), "{error}");
    }

    #[test]
    fn the_server_is_named_without_user_or_password() {
        let options = PgConnectOptions::from_str("postgres://u:secret@db.example:6543/jobs").expect("a valid URL");
        assert_eq!(server_name(&options), "db.example:6543");
        let socket = PgConnectOptions::from_str("postgres:///jobs?host=/run/postgresql").expect("a valid URL");
        assert!(server_name(&socket).starts_with("/run/postgresql (port "), "{}", server_name(&socket));
    }
}
