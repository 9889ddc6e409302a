//! [`Dashboard`]: the configuration, and the router built from it.

use std::{fmt, sync::Arc, time::Duration};

use axum::{
    Router, middleware,
    routing::{get, post},
};
use haul::Admin;

use crate::{actions, assets, counts::CountsCache, pages, security};

/// The default time between two refreshes of a page.
const DEFAULT_REFRESH: Duration = Duration::from_secs(5);

/// Who may use the dashboard.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anyone who can reach it (the default; [`crate::serve`] then binds only to a
    /// loopback address).
    #[default]
    None,
    /// Requests carry `Authorization: Bearer <token>`, or the cookie a first
    /// `?token=<token>` sets (HttpOnly, SameSite=Strict, and Secure when the request
    /// says it came over HTTPS, as a proxy's `X-Forwarded-Proto: https` does: see the
    /// crate's README).
    Token(String),
    /// HTTP Basic authentication (`WWW-Authenticate: Basic`).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl fmt::Debug for Auth {
    // Never prints a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(..)"),
            Self::Basic { user, .. } => f.debug_struct("Basic").field("user", user).finish_non_exhaustive(),
        }
    }
}

/// The dashboard over one storage: configure it, then mount [`Dashboard::router`] or
/// [`crate::serve`] it. Clones share the storage and the CSRF secret.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) admin: Arc<dyn Admin>,
    pub(crate) read_only: bool,
    pub(crate) auth: Auth,
    pub(crate) refresh: Duration,
    /// The per-dashboard secret every form carries as its `csrf` field.
    pub(crate) csrf: Arc<str>,
    /// The queue counts the pages share (see [`crate::counts`]).
    pub(crate) counts: Arc<CountsCache>,
    /// Answer only requests whose `Host` is a loopback name: set when served alone
    /// without authentication ([`crate::serve_until`]).
    pub(crate) loopback_hosts_only: bool,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("read_only", &self.read_only)
            .field("auth", &self.auth)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A dashboard over `admin` (the `Arc<dyn Storage>` that `haul::connect` returns
    /// converts to it): actions allowed, no authentication, a refresh every 5 s.
    pub fn new(admin: Arc<dyn Admin>) -> Self {
        Self {
            admin,
            read_only: false,
            auth: Auth::None,
            refresh: DEFAULT_REFRESH,
            csrf: security::new_secret().into(),
            counts: Arc::default(),
            loopback_hosts_only: false,
        }
    }

    /// With `true`, no action is rendered and every POST is answered 403.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Who may use it (default [`Auth::None`]).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// How often an open page reloads its content (default 5 s; zero turns it off).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// The router: mount it with `Router::nest("/admin", dashboard.router())`, or serve
    /// it at `/`. Its links follow the prefix it is nested at.
    pub fn router(&self) -> Router {
        let shared = Arc::new(self.clone());
        Router::new()
            .route("/", get(pages::overview::page))
            .route("/jobs", get(pages::jobs::page))
            .route("/jobs/retry", post(actions::bulk_retry))
            .route("/jobs/cancel", post(actions::bulk_cancel))
            .route("/jobs/delete", post(actions::bulk_delete))
            .route("/jobs/{id}", get(pages::detail::page))
            .route("/jobs/{id}/retry", post(actions::retry))
            .route("/jobs/{id}/cancel", post(actions::cancel))
            .route("/jobs/{id}/delete", post(actions::delete))
            .route("/queues/{queue}/pause", post(actions::pause))
            .route("/queues/{queue}/resume", post(actions::resume))
            .route("/workers", get(pages::workers::page))
            .route("/periodic", get(pages::periodic::page))
            .route("/assets/app.js", get(assets::script))
            .route("/assets/app.css", get(assets::style))
            .fallback(pages::not_found)
            .layer(middleware::from_fn_with_state(Arc::clone(&shared), security::guard))
            .layer(middleware::from_fn(security::headers))
            .with_state(shared)
    }
}
