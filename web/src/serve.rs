//! Serving the dashboard alone, on its own address (what `haul web` does).

use std::{future::Future, net::SocketAddr};

use tokio::net::TcpListener;

use crate::{Auth, Dashboard, WebError};

impl Dashboard {
    /// Checks that serving on `addr` is safe: a non-loopback address needs
    /// authentication ([`WebError::UnsafeBind`] otherwise), and a token, user name or
    /// password must not be empty ([`WebError::EmptySecret`]).
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), WebError> {
        match &self.auth {
            Auth::Token(token) if token.is_empty() => Err(WebError::EmptySecret),
            Auth::Basic { user, password } if user.is_empty() || password.is_empty() => Err(WebError::EmptySecret),
            Auth::None if !addr.ip().is_loopback() => Err(WebError::UnsafeBind(addr)),
            _ => Ok(()),
        }
    }
}

/// Serves `dashboard` at the root of `bind` until Ctrl-C or SIGTERM. Refuses
/// ([`WebError::UnsafeBind`]) a non-loopback address when the dashboard has no
/// [`Auth`].
pub async fn serve(dashboard: Dashboard, bind: SocketAddr) -> Result<(), WebError> {
    dashboard.check_bind(bind)?;
    let listener = TcpListener::bind(bind).await.map_err(|source| WebError::Bind { addr: bind, source })?;
    serve_until(dashboard, listener, haul::shutdown_signal()).await
}

/// Serves `dashboard` at the root of `listener` until `shutdown` completes (then lets
/// the requests in flight finish). Checks the listener's address as [`serve`] does.
///
/// Without authentication, it answers only requests addressed to a loopback name
/// (`localhost`, `127.0.0.1`, `[::1]`, any port): a web page elsewhere cannot reach it
/// by pointing its own domain name at 127.0.0.1 (DNS rebinding).
pub async fn serve_until(
    dashboard: Dashboard,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let addr = listener.local_addr().map_err(WebError::Serve)?;
    dashboard.check_bind(addr)?;
    let mut dashboard = dashboard;
    dashboard.loopback_hosts_only = dashboard.auth == Auth::None;
    tracing::info!(%addr, "serving the haul dashboard");
    axum::serve(listener, dashboard.router()).with_graceful_shutdown(shutdown).await.map_err(WebError::Serve)
}
