//! The script and the stylesheet, built into the binary.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

/// The page script: auto-refresh and confirmations.
const SCRIPT: &str = include_str!("../assets/app.js");

/// The stylesheet.
const STYLE: &str = include_str!("../assets/app.css");

/// `GET /assets/app.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /assets/app.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// An asset with its type; browsers check it again on each load (it changes with
/// the dashboard's version).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
