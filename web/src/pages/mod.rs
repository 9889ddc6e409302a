//! The pages: one module each, and the layout they share.

pub(crate) mod chart;
pub(crate) mod detail;
pub(crate) mod jobs;
pub(crate) mod overview;
pub(crate) mod periodic;
pub(crate) mod workers;

use axum::{
    http::{StatusCode, Uri},
    response::{Html, IntoResponse, Response},
};
use haul::{JobState, storage::Timestamp};
use maud::{DOCTYPE, Markup, html};

use crate::{error::PageError, format, paths::Ctx};

/// Which entry of the navigation a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nav {
    /// The overview.
    Overview,
    /// The job lists and job pages.
    Jobs,
    /// The workers.
    Workers,
    /// The periodic schedules.
    Periodic,
    /// No entry (error pages).
    None,
}

/// What the layout around a page's content needs.
struct Frame<'a> {
    base: &'a str,
    title: &'a str,
    nav: Nav,
    refresh_ms: u128,
    read_only: bool,
    notice: Option<&'a str>,
}

/// The document around `content`.
fn layout(frame: &Frame<'_>, content: Markup) -> Markup {
    let base = frame.base;
    let overview = crate::paths::overview_path(base);
    let link = |id: &str, nav: Nav, path: &str, label: &str| {
        let href = if path == "/" { overview.clone() } else { format!("{base}{path}") };
        html! {
            a #(id) href=(href) class=[(frame.nav == nav).then_some("active")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · haul" }
                link rel="stylesheet" href=(format!("{base}/assets/app.css"));
                script src=(format!("{base}/assets/app.js")) defer {}
            }
            body data-refresh-ms=(frame.refresh_ms) {
                header .top {
                    a .brand href=(overview) { "haul" }
                    nav {
                        (link("nav-overview", Nav::Overview, "/", "Overview"))
                        (link("nav-jobs", Nav::Jobs, "/jobs", "Jobs"))
                        (link("nav-workers", Nav::Workers, "/workers", "Workers"))
                        (link("nav-periodic", Nav::Periodic, "/periodic", "Periodic"))
                    }
                    @if frame.read_only {
                        span .read-only title="Actions are turned off" { "read-only" }
                    }
                }
                main #content {
                    @if let Some(notice) = frame.notice {
                        p #notice .notice { (notice) }
                    }
                    (content)
                }
            }
        }
    }
}

/// A page of the dashboard: `content` in the layout, with the dashboard's refresh.
pub(crate) fn render(ctx: &Ctx, nav: Nav, title: &str, notice: Option<&str>, content: Markup) -> Response {
    let frame = Frame {
        base: &ctx.base,
        title,
        nav,
        refresh_ms: ctx.dashboard.refresh.as_millis(),
        read_only: ctx.dashboard.read_only,
        notice,
    };
    Html(layout(&frame, content).into_string()).into_response()
}

/// A page's outcome as a response: the page, or the error's page.
pub(crate) fn respond(ctx: &Ctx, outcome: Result<Response, PageError>) -> Response {
    outcome.unwrap_or_else(|error| error_page(&ctx.base, error.status, &error.message))
}

/// The page for a failed request: the status and what went wrong. It does not refresh.
pub(crate) fn error_page(base: &str, status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let frame = Frame { base, title: reason, nav: Nav::None, refresh_ms: 0, read_only: false, notice: None };
    let content = html! {
        section .error {
            h1 { (status.as_u16()) " " (reason) }
            p #error-message { (message) }
            p { a href=(crate::paths::overview_path(base)) { "Back to the overview" } }
        }
    };
    (status, Html(layout(&frame, content).into_string())).into_response()
}

/// 404 for a path the dashboard does not have.
pub(crate) async fn not_found(ctx: Ctx, uri: Uri) -> Response {
    let message = format!("the dashboard has no page at {}", uri.path());
    error_page(&ctx.base, StatusCode::NOT_FOUND, &message)
}

/// A state's coloured badge.
pub(crate) fn badge(state: JobState) -> Markup {
    html! { span class=(format!("badge state-{state}")) { (state.as_str()) } }
}

/// An instant with its distance from now; `—` when absent.
pub(crate) fn when(at: Option<Timestamp>) -> Markup {
    match at {
        Some(at) => html! {
            time datetime=(format::rfc3339(at)) title=(format::time(at)) { (format::relative(at)) }
        },
        None => html! { span .none { "—" } },
    }
}

/// An instant in full with its distance from now; `—` when absent.
pub(crate) fn when_full(at: Option<Timestamp>) -> Markup {
    match at {
        Some(at) => html! {
            time datetime=(format::rfc3339(at)) { (format::time(at)) } " " span .muted { "(" (format::relative(at)) ")" }
        },
        None => html! { span .none { "—" } },
    }
}

/// The hidden CSRF field of every action form.
pub(crate) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.dashboard.csrf.as_ref()); }
}
