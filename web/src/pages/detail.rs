//! `GET /jobs/{id}`: everything stored about one job, and its actions.

use axum::{
    extract::{Path, RawQuery},
    response::Response,
};
use haul::{AdminAction, JobRecord, JobState};
use maud::{Markup, html};

use super::{Nav, badge, csrf_field, render, respond, when_full};
use crate::{error::PageError, filter::parse_id, format, paths::Ctx, security::form_pairs};

/// The job page.
pub(crate) async fn page(ctx: Ctx, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    let outcome = build(&ctx, &id, query.as_deref().unwrap_or("")).await;
    respond(&ctx, outcome)
}

/// Reads the job and renders it.
async fn build(ctx: &Ctx, id: &str, query: &str) -> Result<Response, PageError> {
    let notice = form_pairs(query).into_iter().find(|(name, _)| name == "notice").map(|(_, value)| value);
    let id = parse_id(id)?;
    let Some(job) = ctx.dashboard.admin.get(id).await? else {
        return Err(PageError::not_found(format!(
            "job {id} not found: it may have been deleted, or pruned once its retention passed"
        )));
    };
    let title = format!("Job {}", job.kind);
    let content = html! {
        p .crumbs {
            a href=(ctx.href("/jobs")) { "Jobs" } " / "
            a href=(ctx.jobs_href(&[("queue", &job.queue)])) { (job.queue) } " / "
            span .current { (job.kind) }
        }
        h1 { (job.kind) " " span #job-state class=(format!("badge state-{}", job.state)) { (job.state.as_str()) } }
        p .job-id { code { (job.id.to_string()) } }
        @if ctx.can_act() { (actions(ctx, &job)) }
        div .columns {
            section {
                h2 { "Job" }
                (info(ctx, &job))
            }
            section {
                h2 { "Times" }
                dl #job-times .fields {
                    dt { "Created" } dd { (when_full(Some(job.created_at))) }
                    dt { "Run at" } dd { (when_full(Some(job.run_at))) }
                    dt { "Attempted" } dd { (when_full(job.attempted_at)) }
                    dt { "Finished" } dd { (when_full(job.finished_at)) }
                    @if job.cancel_requested_at.is_some() {
                        dt { "Cancel requested" } dd { (when_full(job.cancel_requested_at)) }
                    }
                    @if job.lease_expires_at.is_some() {
                        dt { "Lease expires" } dd { (when_full(job.lease_expires_at)) }
                    }
                }
            }
        }
        h2 { "Arguments" }
        @if let Some(reason) = &job.unreadable_args {
            p .error-message { "The stored arguments cannot be read: " (reason) }
        }
        pre #job-args .json { (format::pretty_json(&job.args)) }
        h2 { "Metadata" }
        @if job.metadata.is_empty() {
            p #job-metadata .none { "none" }
        } @else {
            pre #job-metadata .json { (metadata_json(&job)) }
        }
        h2 { "Errors " span .muted { "(" (job.errors.len()) ")" } }
        @if job.errors.is_empty() { p .empty { "No attempt has failed." } }
        ol #job-errors .errors {
            @for error in &job.errors {
                li value=(error.attempt) {
                    div .error-head { "Attempt " (error.attempt) " · " (when_full(Some(error.at))) }
                    pre .error-message { (error.message) }
                }
            }
        }
    };
    Ok(render(ctx, Nav::Jobs, &title, notice.as_deref(), content))
}

/// The job's fields other than times, arguments and errors.
fn info(ctx: &Ctx, job: &JobRecord) -> Markup {
    html! {
        dl #job-info .fields {
            dt { "Kind" } dd { a href=(ctx.jobs_href(&[("kind", &job.kind)])) { (job.kind) } }
            dt { "Queue" } dd { a href=(ctx.jobs_href(&[("queue", &job.queue)])) { (job.queue) } }
            dt { "State" } dd { (badge(job.state)) }
            dt { "Attempts" } dd #job-attempts { (job.attempt) " / " (job.max_attempts) }
            dt { "Priority" } dd { (job.priority) }
            dt { "Timeout" } dd { @match job.timeout { Some(timeout) => (format::duration(timeout)), None => "none" } }
            @if let Some(holder) = &job.claimed_by { dt { "Claimed by" } dd { (holder) } }
            @if let Some(key) = &job.unique_key { dt { "Unique key" } dd { code { (key) } } }
            @if let Some(key) = &job.limit_key { dt { "Limit key" } dd #job-limit-key { code { (key) } } }
        }
    }
}

/// The metadata as a JSON object.
fn metadata_json(job: &JobRecord) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        job.metadata.iter().map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone()))).collect();
    format::pretty_json(&serde_json::Value::Object(map))
}

/// The forms of the actions the job's state allows.
fn actions(ctx: &Ctx, job: &JobRecord) -> Markup {
    let retry = AdminAction::Retry.accepts(job.state);
    let cancel = AdminAction::Cancel.accepts(job.state);
    let delete = AdminAction::Delete.accepts(job.state);
    let form = |action: &str, label: &str, confirm: Option<String>| {
        html! {
            form id=(action) class=(format!("action {action}")) method="post"
                action=(ctx.href(&format!("/jobs/{}/{action}", job.id))) data-confirm=[confirm] {
                (csrf_field(ctx))
                button id=(format!("{action}-button")) type="submit" class=(format!("button {action}-button")) { (label) }
            }
        }
    };
    html! {
        div .actions {
            @if retry { (form("retry", "Retry now", None)) }
            @if cancel { (form("cancel", "Cancel", Some(format!("Cancel job {}?", job.id)))) }
            @if delete { (form("delete", "Delete", Some(format!("Delete job {} and everything stored about it?", job.id)))) }
            @if job.state == JobState::Running { p .hint { "A running job can be cancelled; retry and delete wait until it stops." } }
        }
    }
}
