//! `GET /periodic`: every periodic schedule with its last and next tick.

use axum::response::Response;
use maud::html;

use super::{Nav, render, respond, when, when_full};
use crate::{error::PageError, paths::Ctx};

/// The periodic schedules page.
pub(crate) async fn page(ctx: Ctx) -> Response {
    let outcome = build(&ctx).await;
    respond(&ctx, outcome)
}

/// Reads the schedules and renders them.
async fn build(ctx: &Ctx) -> Result<Response, PageError> {
    let schedules = ctx.dashboard.admin.list_periodic().await?;
    let content = html! {
        h1 { "Periodic jobs" }
        @if schedules.is_empty() {
            p .empty { "No periodic schedule is recorded." }
        } @else {
            table #periodic {
                thead { tr { th { "Name" } th { "Schedule" } th { "Last tick" } th { "Next tick" } th { "Updated" } } }
                tbody {
                    @for schedule in &schedules {
                        tr .schedule data-name=(schedule.name) {
                            td { (schedule.name) }
                            td { code { (schedule.spec) } }
                            td { (when_full(schedule.last_tick)) }
                            td { (when_full(schedule.next_tick)) }
                            td { (when(Some(schedule.updated_at))) }
                        }
                    }
                }
            }
        }
    };
    Ok(render(ctx, Nav::Periodic, "Periodic", None, content))
}
