//! The operators' dashboard of haul: an [`axum::Router`] over [`haul::Admin`] that
//! shows queues, jobs, workers and schedules, and retries, cancels, deletes, pauses
//! and resumes.
//!
//! Mount [`Dashboard::router`] in an application (under any path prefix, e.g.
//! `Router::new().nest("/admin", dashboard.router())`), or run it alone with [`serve`]
//! (what `haul web` does). Pages are rendered on the server (maud escapes every value);
//! one small script refreshes the page and asks before destructive actions.
//!
//! Safe by default: [`serve`] refuses a non-loopback address without [`Auth`], every
//! POST carries a per-dashboard CSRF token and is refused when its `Origin` is another
//! host, [`Dashboard::read_only`] renders no action and refuses every POST, and every
//! response carries a strict Content-Security-Policy. See the crate's README.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = haul::connect("postgres://app@localhost/app?schema=haul").await?;
//! let dashboard = haul_web::Dashboard::new(storage).auth(haul_web::Auth::Token("s3cret".into()));
//! let app: axum::Router = axum::Router::new().nest("/admin", dashboard.router());
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod actions;
mod assets;
mod counts;
mod dashboard;
mod error;
mod filter;
mod format;
mod pages;
mod paths;
mod security;
mod serve;

pub use dashboard::{Auth, Dashboard};
pub use error::WebError;
pub use serve::{serve, serve_until};
