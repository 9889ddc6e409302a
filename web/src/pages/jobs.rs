//! `GET /jobs`: the jobs a filter matches, a page at a time, with the bulk actions
//! on the filter.

use axum::{extract::RawQuery, response::Response};
use haul::{AdminAction, JobRecord, JobState, ListParams};
use maud::{Markup, html};

use super::{Nav, badge, csrf_field, render, respond, when};
use crate::{error::PageError, filter::ListQuery, format, paths::Ctx, security::form_pairs};

/// The job list page.
pub(crate) async fn page(ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    let outcome = build(&ctx, query.as_deref().unwrap_or("")).await;
    respond(&ctx, outcome)
}

/// Reads the page of jobs and renders it.
async fn build(ctx: &Ctx, query: &str) -> Result<Response, PageError> {
    let query = ListQuery::parse(&form_pairs(query))?;
    let admin = &ctx.dashboard.admin;
    // One more than shown tells whether there is a next page.
    let mut params = ListParams::filtered(query.filter()).limit(query.limit + 1);
    if let Some(after) = query.after {
        params = params.after(after);
    }
    let mut jobs = admin.list(params).await?;
    let more = jobs.len() > query.limit;
    jobs.truncate(query.limit);
    let matching = match (&query.kind, query.state) {
        // The counts tell how many match a queue and state; a kind needs a scan.
        (None, _) => {
            let snapshot = ctx.dashboard.counts.get(admin, ctx.dashboard.refresh).await?;
            Some(
                snapshot
                    .queues
                    .iter()
                    .filter(|queue| query.queue.as_ref().is_none_or(|name| *name == queue.queue))
                    .map(|queue| match query.state {
                        Some(state) => queue.get(state),
                        None => queue.states.values().sum(),
                    })
                    .sum::<u64>(),
            )
        }
        (Some(_), _) => None,
    };
    let content = html! {
        h1 { "Jobs" }
        (filter_form(ctx, &query))
        p .matching {
            @if let Some(matching) = matching { span #match-count { (matching) } " " }
            (query.describe())
            @if query.after.is_some() { " · " a href=(first_page(ctx, &query)) { "first page" } }
        }
        @if jobs.is_empty() {
            p .empty { "No job matches." }
        } @else {
            (jobs_table(ctx, &jobs))
        }
        @if more && let Some(last) = jobs.last() {
            p .pager { a #next-page .button href=(next_page(ctx, &query, last)) { "Next page →" } }
        }
        @if ctx.can_act() { (bulk_forms(ctx, &query, matching)) }
    };
    Ok(render(ctx, Nav::Jobs, "Jobs", query.notice.as_deref(), content))
}

/// The GET form that sets the filter.
fn filter_form(ctx: &Ctx, query: &ListQuery) -> Markup {
    html! {
        form #job-filter .filter method="get" action=(ctx.href("/jobs")) {
            label { "State " select name="state" {
                option value="" selected[query.state.is_none()] { "any" }
                @for state in JobState::ALL {
                    option value=(state.as_str()) selected[query.state == Some(state)] { (state.as_str()) }
                }
            } }
            label { "Queue " input type="text" name="queue" value=(query.queue.as_deref().unwrap_or("")) placeholder="any"; }
            label { "Kind " input type="text" name="kind" value=(query.kind.as_deref().unwrap_or("")) placeholder="any"; }
            @if query.limit != crate::filter::PAGE_SIZE {
                input type="hidden" name="limit" value=(query.limit);
            }
            button #apply-filter .button type="submit" { "Filter" }
            " "
            a .clear href=(ctx.href("/jobs")) { "clear" }
        }
    }
}

/// The table of one page of jobs.
fn jobs_table(ctx: &Ctx, jobs: &[JobRecord]) -> Markup {
    html! {
        table #jobs {
            thead { tr {
                th { "Job" } th { "Kind" } th { "Queue" } th { "State" } th .num { "Attempts" }
                th { "Arguments" } th { "Created" } th { "Run at / finished" }
            } }
            tbody {
                @for job in jobs {
                    tr .job data-id=(job.id.to_string()) {
                        td .id { a .job-link href=(ctx.job_href(job.id)) title=(job.id.to_string()) { (short_id(job)) } }
                        td .kind { (job.kind) }
                        td .queue { a href=(ctx.jobs_href(&[("queue", &job.queue)])) { (job.queue) } }
                        td .state { (badge(job.state)) }
                        td .num { (job.attempt) "/" (job.max_attempts) }
                        td .args { code { (format::short_json(&job.args, 80)) } }
                        td { (when(Some(job.created_at))) }
                        td .run { (run_or_finish(job)) }
                    }
                }
            }
        }
    }
}

/// When a job runs, or for a finished job when it finished (its `run_at` is history).
fn run_or_finish(job: &JobRecord) -> Markup {
    if job.state.is_finished() {
        html! { span .muted { "finished " } (when(job.finished_at)) }
    } else {
        when(Some(job.run_at))
    }
}

/// The id's last 12 hex digits: a UUID v7's first ones are its creation time, the
/// same for jobs made together.
fn short_id(job: &JobRecord) -> String {
    let id = job.id.to_string();
    let start = id.len().saturating_sub(12);
    format!("…{}", id.get(start..).unwrap_or(&id))
}

/// The link to the page after `last`.
fn next_page(ctx: &Ctx, query: &ListQuery, last: &JobRecord) -> String {
    let [queue, state, kind] = query.filter_pairs();
    let after = last.id.to_string();
    let limit = if query.limit == crate::filter::PAGE_SIZE { String::new() } else { query.limit.to_string() };
    ctx.jobs_href(&[(queue.0, &queue.1), (state.0, &state.1), (kind.0, &kind.1), ("after", &after), ("limit", &limit)])
}

/// The link to the first page of the same filter.
fn first_page(ctx: &Ctx, query: &ListQuery) -> String {
    let [queue, state, kind] = query.filter_pairs();
    ctx.jobs_href(&[(queue.0, &queue.1), (state.0, &state.1), (kind.0, &kind.1)])
}

/// The bulk actions on the filter: only with a state, and only those the state allows.
fn bulk_forms(ctx: &Ctx, query: &ListQuery, matching: Option<u64>) -> Markup {
    let Some(state) = query.state else {
        return html! { p .hint { "Choose a state to retry, cancel or delete every job the filter matches." } };
    };
    let what = match matching {
        Some(count) => format!("all {count} {}", query.describe()),
        None => format!("all {}", query.describe()),
    };
    let actions = [
        ("retry", "Retry", AdminAction::Retry.accepts(state)),
        ("cancel", "Cancel", AdminAction::Cancel.accepts(state)),
        ("delete", "Delete", AdminAction::Delete.accepts(state)),
    ];
    html! {
        section .bulk {
            h2 { "Every matching job" }
            @for (action, label, allowed) in actions {
                @if allowed {
                    form id=(format!("bulk-{action}")) class=(format!("bulk {action}")) method="post"
                        action=(ctx.href(&format!("/jobs/{action}")))
                        data-confirm=(format!("{label} {what}?")) {
                        (csrf_field(ctx))
                        @for (name, value) in query.filter_pairs() {
                            input type="hidden" name=(name) value=(value);
                        }
                        button id=(format!("bulk-{action}-button")) type="submit" class=(format!("button {action}-button")) {
                            (label) " " (what)
                        }
                    }
                }
            }
        }
    }
}
