//! What can go wrong: [`WebError`] for serving, [`PageError`] for one request.

use std::net::SocketAddr;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// Why [`crate::serve`] could not serve the dashboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The address is not a loopback one and no authentication is set.
    #[error(
        "refusing to serve the dashboard on {0} without authentication: anyone who can reach it could retry, \
         cancel and delete jobs; pass --token or --basic (Dashboard::auth), or bind to 127.0.0.1"
    )]
    UnsafeBind(SocketAddr),
    /// The token, user name or password is empty: it would let anyone in.
    #[error("the dashboard's token, user name and password must not be empty")]
    EmptySecret,
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the dashboard's server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A request that cannot be answered with its page: the status and what to say.
#[derive(Debug)]
pub(crate) struct PageError {
    /// The status.
    pub(crate) status: StatusCode,
    /// What went wrong, for the operator.
    pub(crate) message: String,
}

impl PageError {
    /// An error with `status` and `message`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// 400: the request names something malformed.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403: refused.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: nothing there.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<haul::Error> for PageError {
    fn from(error: haul::Error) -> Self {
        use haul::{Error, ErrorKind};
        let status = match &error {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::InvalidState { .. } => StatusCode::CONFLICT,
            Error::InvalidName { .. } | Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Error::StorageNotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Backend { kind: ErrorKind::Connection | ErrorKind::Timeout, .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(%error, "a storage call of the dashboard failed");
        }
        Self { status, message: error.to_string() }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        crate::pages::error_page("", self.status, &self.message)
    }
}
