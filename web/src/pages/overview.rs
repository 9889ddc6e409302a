//! `GET /`: every queue's counts per state, pause and resume, the last hour's
//! throughput, the leader and the live workers.

use axum::{extract::RawQuery, response::Response};
use chrono::Utc;
use std::collections::BTreeMap;

use haul::{JobState, QueueCounts, QueueLimits, RateLimit};
use maud::{Markup, html};

use super::{Nav, chart, csrf_field, render, respond, when};
use crate::{error::PageError, paths::Ctx, security::form_pairs};

/// The overview page.
pub(crate) async fn page(ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    let outcome = build(&ctx, query.as_deref().unwrap_or("")).await;
    respond(&ctx, outcome)
}

/// Reads what the page shows and renders it.
async fn build(ctx: &Ctx, query: &str) -> Result<Response, PageError> {
    let notice = form_pairs(query).into_iter().find(|(name, _)| name == "notice").map(|(_, value)| value);
    let admin = &ctx.dashboard.admin;
    let now = Utc::now();
    let since = chart::first_minute(now);
    let snapshot = ctx.dashboard.counts.get(admin, ctx.dashboard.refresh).await?;
    let samples = admin.throughput(since).await?;
    let leader = admin.leader(None).await?;
    let workers = admin.list_workers(None).await?;
    let limits: BTreeMap<String, QueueLimits> = admin
        .queue_limits()
        .await?
        .into_iter()
        .filter(|record| !record.limits.is_unlimited())
        .map(|record| (record.queue, record.limits))
        .collect();
    let counts = with_limited_queues(&snapshot.queues, &limits);
    let counts = counts.as_slice();
    let content = html! {
        h1 { "Overview" }
        dl #cluster .summary {
            div { dt { "Leader" } dd #leader {
                @match &leader {
                    Some(leader) => { a href=(ctx.href("/workers")) { (leader.worker_id) } " " span .muted { "(term " (leader.term) ")" } }
                    None => span .none { "none" },
                }
            } }
            div { dt { "Live workers" } dd #worker-count { a href=(ctx.href("/workers")) { (workers.len()) } } }
            div { dt { "Queues" } dd { (counts.len()) } }
            div { dt { "Paused" } dd { (counts.iter().filter(|queue| queue.paused).count()) } }
        }
        h2 { "Queues " span .muted #counted-at { "counted " (when(Some(snapshot.taken_at))) } }
        (queues_table(ctx, counts, &limits))
        h2 { "Throughput " span .muted { "completed and failed attempts per minute, last hour" } }
        (chart::throughput(&samples, now))
    };
    Ok(render(ctx, Nav::Overview, "Overview", notice.as_deref(), content))
}

/// `counts`, plus a row of zeros for each limited queue that holds no job (so its
/// limit shows), in queue order.
fn with_limited_queues(counts: &[QueueCounts], limits: &BTreeMap<String, QueueLimits>) -> Vec<QueueCounts> {
    let mut all = counts.to_vec();
    for queue in limits.keys() {
        if !counts.iter().any(|counts| &counts.queue == queue) {
            all.push(QueueCounts::new(queue.clone(), false, BTreeMap::new()));
        }
    }
    all.sort_by(|a, b| a.queue.cmp(&b.queue));
    all
}

/// The queues × states table; a queue with limits says so.
fn queues_table(ctx: &Ctx, counts: &[QueueCounts], limits: &BTreeMap<String, QueueLimits>) -> Markup {
    html! {
        @if counts.is_empty() {
            p .empty { "No queue holds a job yet." }
        }
        table #queues {
            thead { tr {
                th { "Queue" }
                @for state in JobState::ALL { th .num { (state.as_str()) } }
                th { "Oldest available" }
                @if ctx.can_act() { th { "" } }
            } }
            tbody {
                @for queue in counts {
                    tr data-queue=(queue.queue) class=[queue.paused.then_some("paused")] {
                        td .queue {
                            a href=(ctx.jobs_href(&[("queue", &queue.queue)])) { (queue.queue) }
                            @if queue.paused { " " span .badge .paused-badge { "paused" } }
                            @if let Some(limits) = limits.get(&queue.queue) {
                                " " (limit_badge(limits))
                            }
                        }
                        @for state in JobState::ALL {
                            @let count = queue.get(state);
                            td .num {
                                a class=(if count == 0 { "count zero" } else { "count" })
                                    data-state=(state.as_str())
                                    href=(ctx.jobs_href(&[("queue", &queue.queue), ("state", state.as_str())])) { (count) }
                            }
                        }
                        td { (when(queue.next_available_at)) }
                        @if ctx.can_act() {
                            td .actions { (pause_form(ctx, queue)) }
                        }
                    }
                }
            }
        }
    }
}

/// The badge of a queue's limits, those it has, in this order: `at most 5 at once`,
/// `1 per key` (running at once), `100 per 1m` (starts in any window of that period),
/// `2 per 1s per key` (starts of each limit key), joined by commas
/// (`at most 5 at once, 1 per key, 100 per 1m, 2 per 1s per key`).
fn limit_badge(limits: &QueueLimits) -> Markup {
    let in_all = limits.concurrency.map(|limit| format!("{limit} at once"));
    let per_key = limits.key_concurrency.map(|limit| format!("{limit} per key"));
    let rate = limits.rate.map(rate_text);
    let key_rate = limits.key_rate.map(|rate| format!("{} per key", rate_text(rate)));
    let text = [in_all, per_key, rate, key_rate].into_iter().flatten().collect::<Vec<_>>().join(", ");
    html! {
        span .badge .limit-badge
            title="its limits across every worker: jobs running at once (of the whole queue, of each limit key), \
                   and jobs starting in any window of the period (of the whole queue, of each limit key)" {
            "at most " (text)
        }
    }
}

/// A rate limit as `100 per 1m`: its starts, then its period as `RateLimit` prints it
/// (`100/1m`).
fn rate_text(rate: RateLimit) -> String {
    format!("{} per {}", rate.starts, rate.period_text())
}

/// The pause (or, for a paused queue, resume) form of a queue.
fn pause_form(ctx: &Ctx, queue: &QueueCounts) -> Markup {
    let (class, action, label) =
        if queue.paused { ("resume", "resume", "Resume") } else { ("pause", "pause", "Pause") };
    html! {
        form class=(class) method="post" action=(ctx.queue_href(&queue.queue, action))
            data-confirm=[(!queue.paused).then(|| format!("Pause queue {}? Its jobs stop being claimed until it is resumed.", queue.queue))] {
            (csrf_field(ctx))
            button type="submit" class=(format!("button {class}-button")) { (label) }
        }
    }
}
