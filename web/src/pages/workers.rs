//! `GET /workers`: the live workers, the leader marked.

use axum::response::Response;
use maud::html;

use super::{Nav, render, respond, when, when_full};
use crate::{error::PageError, paths::Ctx};

/// The workers page.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let outcome = build(&ctx).await;
    respond(&ctx, outcome)
}

/// Reads the workers and the leader and renders them.
async fn build(ctx: &Ctx) -> Result<Response, PageError> {
    let admin = &ctx.dashboard.admin;
    let workers = admin.list_workers(None).await?;
    let leader = admin.leader(None).await?;
    let content = html! {
        h1 { "Workers " span .muted { "(" (workers.len()) " live)" } }
        p #leader-line {
            "Leader: "
            @match &leader {
                Some(leader) => { strong { (leader.worker_id) } " · term " (leader.term) " · until " (when_full(Some(leader.expires_at))) }
                None => span .none { "none" },
            }
        }
        @if workers.is_empty() {
            p .empty { "No worker is live." }
        } @else {
            table #workers {
                thead { tr {
                    th { "Worker" } th { "Host" } th .num { "PID" } th { "Queues" } th .num { "Busy" }
                    th { "Started" } th { "Last seen" }
                } }
                tbody {
                    @for worker in &workers {
                        @let leads = leader.as_ref().is_some_and(|leader| leader.worker_id == worker.id);
                        tr .worker data-worker=(worker.id) class=[leads.then_some("leader")] {
                            td { (worker.id) @if leads { " " span .badge .leader-badge { "leader" } } }
                            td { (worker.host) }
                            td .num { (worker.pid) }
                            td { @for (index, queue) in worker.queues.iter().enumerate() {
                                @if index > 0 { ", " }
                                a href=(ctx.jobs_href(&[("queue", queue)])) { (queue) }
                            } }
                            td .num { (worker.held) "/" (worker.concurrency) }
                            td { (when(Some(worker.started_at))) }
                            td { (when(Some(worker.last_seen_at))) }
                        }
                    }
                }
            }
        }
    };
    Ok(render(ctx, Nav::Workers, "Workers", None, content))
}
