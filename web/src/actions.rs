//! The POST actions: one job (retry, cancel, delete), one queue (pause, resume), and
//! every job a filter matches. Each checks the form's CSRF token, acts, and answers
//! 303 See Other to the page to show next, with a notice.

use axum::{
    body::Bytes,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use haul::{AdminAction, JobState};

use crate::{
    error::PageError,
    filter::{ListQuery, parse_id},
    pages::respond,
    paths::Ctx,
    security::{csrf_matches, form_pairs},
};

/// `POST /jobs/{id}/retry`.
pub(crate) async fn retry(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let outcome = one_job(&ctx, &id, &body, AdminAction::Retry).await;
    respond(&ctx, outcome)
}

/// `POST /jobs/{id}/cancel`.
pub(crate) async fn cancel(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let outcome = one_job(&ctx, &id, &body, AdminAction::Cancel).await;
    respond(&ctx, outcome)
}

/// `POST /jobs/{id}/delete`.
pub(crate) async fn delete(ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let outcome = one_job(&ctx, &id, &body, AdminAction::Delete).await;
    respond(&ctx, outcome)
}

/// `POST /jobs/retry`: every job the form's filter matches.
pub(crate) async fn bulk_retry(ctx: Ctx, body: Bytes) -> Response {
    let outcome = bulk(&ctx, &body, AdminAction::Retry).await;
    respond(&ctx, outcome)
}

/// `POST /jobs/cancel`.
pub(crate) async fn bulk_cancel(ctx: Ctx, body: Bytes) -> Response {
    let outcome = bulk(&ctx, &body, AdminAction::Cancel).await;
    respond(&ctx, outcome)
}

/// `POST /jobs/delete`.
pub(crate) async fn bulk_delete(ctx: Ctx, body: Bytes) -> Response {
    let outcome = bulk(&ctx, &body, AdminAction::Delete).await;
    respond(&ctx, outcome)
}

/// `POST /queues/{queue}/pause`.
pub(crate) async fn pause(ctx: Ctx, Path(queue): Path<String>, body: Bytes) -> Response {
    let outcome = queue_action(&ctx, &queue, &body, true).await;
    respond(&ctx, outcome)
}

/// `POST /queues/{queue}/resume`.
pub(crate) async fn resume(ctx: Ctx, Path(queue): Path<String>, body: Bytes) -> Response {
    let outcome = queue_action(&ctx, &queue, &body, false).await;
    respond(&ctx, outcome)
}

/// The form's pairs, once its CSRF token is checked.
fn checked_form(ctx: &Ctx, body: &[u8]) -> Result<Vec<(String, String)>, PageError> {
    let pairs = form_pairs(&String::from_utf8_lossy(body));
    let given = pairs.iter().find(|(name, _)| name == "csrf").map(|(_, value)| value.as_str());
    if csrf_matches(&ctx.dashboard, given) {
        Ok(pairs)
    } else {
        Err(PageError::forbidden(
            "refused: the form's CSRF token is missing or wrong (the dashboard may have restarted since the page was \
             loaded); reload the page and try again",
        ))
    }
}

/// Retries, cancels or deletes one job.
async fn one_job(ctx: &Ctx, id: &str, body: &[u8], action: AdminAction) -> Result<Response, PageError> {
    checked_form(ctx, body)?;
    let id = parse_id(id)?;
    let admin = &ctx.dashboard.admin;
    let Some(job) = admin.get(id).await? else {
        return Err(PageError::not_found(format!("job {id} not found: it may have been deleted or pruned")));
    };
    let _invalidate = ctx.dashboard.counts.invalidate_on_drop();
    act_on_job(ctx, id, &job.queue, action).await
}

/// The action of [`one_job`] on a job of `queue`.
async fn act_on_job(ctx: &Ctx, id: haul::JobId, queue: &str, action: AdminAction) -> Result<Response, PageError> {
    let admin = &ctx.dashboard.admin;
    match action {
        AdminAction::Retry => {
            admin.retry(id, None).await?;
            Ok(see_other(&ctx.job_href_with_notice(id, "Retried: the job is available now")))
        }
        AdminAction::Cancel => {
            let job = admin.cancel(id, None).await?;
            let notice = if job.state == JobState::Running {
                "Cancel requested: the running job stops when its worker next hears from the storage"
            } else {
                "Cancelled"
            };
            Ok(see_other(&ctx.job_href_with_notice(id, notice)))
        }
        AdminAction::Delete => {
            admin.delete(id).await?;
            let notice = format!("Deleted job {id}");
            Ok(see_other(&ctx.jobs_href(&[("queue", queue), ("notice", &notice)])))
        }
    }
}

/// Applies `action` to every job the form's filter (with a state) matches.
async fn bulk(ctx: &Ctx, body: &[u8], action: AdminAction) -> Result<Response, PageError> {
    let pairs = checked_form(ctx, body)?;
    let query = ListQuery::parse(&pairs)?;
    if query.state.is_none() {
        return Err(PageError::bad_request(
            "a bulk action needs a state in its filter (e.g. every discarded job of a queue); choose one and try again",
        ));
    }
    let admin = &ctx.dashboard.admin;
    let filter = query.filter();
    let _invalidate = ctx.dashboard.counts.invalidate_on_drop();
    let (count, verb) = match action {
        AdminAction::Retry => (admin.retry_jobs(filter, None).await?, "Retried"),
        AdminAction::Cancel => (admin.cancel_jobs(filter, None).await?, "Cancelled"),
        AdminAction::Delete => (admin.delete_jobs(filter).await?, "Deleted"),
    };
    let notice = format!("{verb} {count} {}", if count == 1 { "job" } else { "jobs" });
    let [queue, state, kind] = query.filter_pairs();
    Ok(see_other(&ctx.jobs_href(&[(queue.0, &queue.1), (state.0, &state.1), (kind.0, &kind.1), ("notice", &notice)])))
}

/// Pauses or resumes a queue.
async fn queue_action(ctx: &Ctx, queue: &str, body: &[u8], pause: bool) -> Result<Response, PageError> {
    checked_form(ctx, body)?;
    let admin = &ctx.dashboard.admin;
    let _invalidate = ctx.dashboard.counts.invalidate_on_drop();
    if pause {
        admin.pause_queue(queue).await?;
    } else {
        admin.resume_queue(queue).await?;
    }
    let notice = if pause { format!("Paused queue {queue}") } else { format!("Resumed queue {queue}") };
    Ok(see_other(&ctx.overview_href(Some(&notice))))
}

/// 303 See Other to `location`.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(location) {
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "could not build the address to go back to")
            .into_response(),
    }
}
