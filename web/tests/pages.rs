//! Every page renders what the storage holds: the overview, job lists with their
//! filters and pages, a job's page, workers, schedules; and malformed requests and
//! failing storages get a clear error page.

mod common;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{Router, http::StatusCode};
use chrono::Utc;
use common::*;
use haul::{
    Admin, Error, ErrorKind, JobFilter, JobId, JobRecord, JobState, ListParams, NewJob, QueueCounts, ThroughputSample,
    storage::{Leadership, LeadershipParams, PeriodicRecord, PeriodicUpdate, Timestamp, WorkerBeat, WorkerRecord},
};
use haul_web::Dashboard;
use serde_json::json;

#[tokio::test]
async fn the_overview_shows_counts_pauses_throughput_leader_and_workers() {
    let (storage, dashboard) = setup();
    discarded(&storage, job("mail"), "smtp refused").await;
    enqueue(&storage, job("mail")).await;
    enqueue(&storage, job("reports")).await;
    storage.pause_queue("reports").await.unwrap();
    storage.set_queue_limits("mail", haul::QueueLimits::new().concurrency(3).key_concurrency(2)).await.unwrap();
    storage.set_queue_limits("idle", haul::QueueLimits::new().concurrency(1)).await.unwrap();
    storage.set_queue_limits("keyed", haul::QueueLimits::new().key_concurrency(1)).await.unwrap();
    let rates =
        haul::QueueLimits::new().rate(haul::RateLimit::per_minute(100)).key_rate(haul::RateLimit::per_second(2));
    storage.set_queue_limits("paced", rates).await.unwrap();
    let every = haul::QueueLimits::new()
        .concurrency(5)
        .key_concurrency(1)
        .rate(haul::RateLimit::new(30, Duration::from_millis(1_500)))
        .key_rate(haul::RateLimit::per_hour(3));
    storage.set_queue_limits("every", every).await.unwrap();
    let now = Utc::now();
    let beat =
        WorkerBeat::new("worker-1", now, Duration::from_secs(60)).process("host-a", 42).serving(vec!["mail".into()], 4);
    storage.beat_worker(beat).await.unwrap();
    storage.acquire_leadership(LeadershipParams::new("worker-1", Duration::from_secs(60))).await.unwrap();
    // A minute ago: the chart leaves out the current minute, which is still filling.
    let minute_ago = now - chrono::TimeDelta::minutes(1);
    let samples = vec![
        ThroughputSample::new("mail", minute_ago, 7, 2),
        ThroughputSample::new("reports", minute_ago, 3, 0),
        ThroughputSample::new("mail", now, 1000, 1000),
    ];
    storage.record_throughput(samples, None).await.unwrap();
    let router = dashboard.router();

    let page = get(&router, "/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("<table id=\"queues\">"), "{html}");
    assert!(html.contains("data-queue=\"mail\""));
    assert!(html.contains("data-queue=\"reports\" class=\"paused\""), "{html}");
    assert!(html.contains("href=\"/jobs?queue=mail&amp;state=discarded\">1</a>"), "{html}");
    assert!(html.contains("href=\"/jobs?queue=mail&amp;state=available\">1</a>"));
    assert!(html.contains("<form class=\"resume\" method=\"post\" action=\"/queues/reports/resume\">"), "{html}");
    assert!(
        html.contains(
            "<form class=\"pause\" method=\"post\" action=\"/queues/mail/pause\" data-confirm=\"Pause queue mail? Its \
             jobs stop being claimed until it is resumed.\">"
        ),
        "{html}"
    );
    assert!(html.contains("<span class=\"badge limit-badge\""), "{html}");
    assert!(html.contains(">at most 3 at once, 2 per key</span>"), "both limits of mail are shown: {html}");
    assert!(html.contains("data-queue=\"idle\""), "a limited queue without jobs has its row: {html}");
    assert!(html.contains(">at most 1 at once</span>"), "{html}");
    assert!(html.contains("data-queue=\"keyed\""), "a queue limited per key only has its row: {html}");
    assert!(html.contains(">at most 1 per key</span>"), "{html}");
    assert!(html.contains("data-queue=\"paced\""), "a queue with rate limits only has its row: {html}");
    assert!(html.contains(">at most 100 per 1m, 2 per 1s per key</span>"), "both rates of paced: {html}");
    assert!(
        html.contains(">at most 5 at once, 1 per key, 30 per 1500ms, 3 per 1h per key</span>"),
        "every limit, in order: {html}"
    );
    assert_eq!(html.matches("limit-badge").count(), 5, "reports has no limit");
    assert!(html.contains("<svg id=\"throughput\""));
    assert!(
        html.contains("10 completed, 2 failed"),
        "both queues' samples are summed, the current minute's left out: {html}"
    );
    assert!(html.contains("worker-1") && html.contains("(term "), "the leader is shown");
    assert!(html.contains("id=\"worker-count\"><a href=\"/workers\">1</a>"), "{html}");
    assert!(html.contains("data-refresh-ms=\"5000\""));
    for nav in ["nav-overview", "nav-jobs", "nav-workers", "nav-periodic"] {
        assert!(html.contains(&format!("id=\"{nav}\"")), "{nav}");
    }
    assert!(html.contains("<main id=\"content\">"));
}

#[tokio::test]
async fn the_refresh_interval_is_rendered_and_zero_turns_it_off() {
    let (_storage, dashboard) = setup();
    let router = dashboard.clone().refresh_interval(Duration::from_millis(1500)).router();
    assert!(get(&router, "/").await.body.contains("data-refresh-ms=\"1500\""));
    let router = dashboard.refresh_interval(Duration::ZERO).router();
    assert!(get(&router, "/jobs").await.body.contains("data-refresh-ms=\"0\""));
}

#[tokio::test]
async fn a_job_list_applies_its_filter() {
    let (storage, dashboard) = setup();
    let failed = discarded(&storage, job("mail"), "boom").await;
    let other_queue = discarded(&storage, job("reports"), "boom").await;
    let other_kind = discarded(&storage, NewJob::new("report.build", json!({})).queue("mail"), "boom").await;
    let available = enqueue(&storage, job("mail")).await;
    let router = dashboard.router();

    let all = get(&router, "/jobs").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(listed_ids(&all.body).len(), 4, "{}", all.body);
    assert!(all.body.contains("id=\"job-filter\""));

    let page = get(&router, "/jobs?queue=mail&state=discarded&kind=").await;
    let mut expected = vec![failed.to_string(), other_kind.to_string()];
    expected.sort();
    assert_eq!(listed_ids(&page.body), expected);
    assert!(page.body.contains("<option value=\"discarded\" selected>"), "the filter shows the state");
    assert!(page.body.contains("id=\"match-count\">2<"), "{}", page.body);

    let page = get(&router, "/jobs?queue=mail&state=discarded&kind=mail.send").await;
    assert_eq!(listed_ids(&page.body), vec![failed.to_string()]);
    let page = get(&router, "/jobs?state=available").await;
    assert_eq!(listed_ids(&page.body), vec![available.to_string()]);
    let page = get(&router, "/jobs?queue=reports").await;
    assert_eq!(listed_ids(&page.body), vec![other_queue.to_string()]);
    assert!(page.body.contains("<td class=\"state\"><span class=\"badge state-discarded\">discarded</span>"));
    assert!(
        page.body.contains("<td class=\"run\"><span class=\"muted\">finished </span><time"),
        "a finished job shows when it finished, not its past run_at: {}",
        page.body
    );
    let page = get(&router, "/jobs?state=available").await;
    assert!(page.body.contains("<td class=\"run\"><time"), "{}", page.body);
}

#[tokio::test]
async fn a_job_list_pages_by_id_fifty_at_a_time() {
    let (storage, dashboard) = setup();
    let mut ids = Vec::new();
    for _ in 0..120 {
        ids.push(enqueue(&storage, job("mail")).await.to_string());
    }
    ids.sort();
    let router = dashboard.router();

    let mut uri = "/jobs?queue=mail".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = get(&router, &uri).await;
        assert_eq!(page.status, StatusCode::OK);
        let listed = listed_ids(&page.body);
        pages += 1;
        seen.extend(listed.clone());
        let Some(start) = page.body.find("id=\"next-page\"") else {
            assert_eq!(listed.len(), 20, "the last page holds the rest");
            break;
        };
        assert_eq!(listed.len(), 50);
        let href_start = page.body[start..].find("href=\"").unwrap() + start + 6;
        let href_end = page.body[href_start..].find('"').unwrap() + href_start;
        uri = page.body[href_start..href_end].replace("&amp;", "&");
        assert!(uri.contains(&format!("after={}", listed[49])), "{uri}");
        assert!(uri.contains("queue=mail"), "the next page keeps the filter: {uri}");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let page = get(&router, &format!("/jobs?after={}&limit=10", ids[109])).await;
    assert_eq!(listed_ids(&page.body), ids[110..].to_vec());
}

#[tokio::test]
async fn a_job_page_shows_arguments_metadata_errors_and_times() {
    let (storage, dashboard) = setup();
    let job = NewJob::new("mail.send", json!({ "to": "ada@example.com", "tags": ["a", "b"] }))
        .queue("mail")
        .max_attempts(3)
        .metadata("tenant", "acme")
        .limit_key("customer-42");
    let id = discarded(&storage, job.max_attempts(1), "smtp said no").await;
    let router = dashboard.router();

    let page = get(&router, &format!("/jobs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("<span id=\"job-state\" class=\"badge state-discarded\">discarded</span>"), "{html}");
    assert!(html.contains("id=\"job-args\">{\n  &quot;tags&quot;: [\n"), "pretty JSON: {html}");
    assert!(html.contains("&quot;tenant&quot;: &quot;acme&quot;"));
    assert!(html.contains("id=\"job-errors\""));
    assert!(html.contains("Attempt 1") && html.contains("smtp said no"));
    assert!(html.contains("id=\"job-times\""));
    assert!(html.contains("Created") && html.contains("Finished"));
    assert!(html.contains("id=\"job-attempts\">1 / 1<"), "{html}");
    assert!(html.contains("id=\"retry-button\"") && html.contains("id=\"delete-button\""));
    assert!(!html.contains("id=\"cancel-button\""), "a finished job cannot be cancelled");
    assert!(html.contains("<dt>Limit key</dt><dd id=\"job-limit-key\"><code>customer-42</code></dd>"), "{html}");

    let running = running(&storage, common::job("other")).await;
    let html = get(&router, &format!("/jobs/{}", running.id)).await.body;
    assert!(html.contains("id=\"cancel-button\""));
    assert!(!html.contains("id=\"retry-button\"") && !html.contains("id=\"delete-button\""));
    assert!(html.contains(WORKER), "the holder is shown");
    assert!(!html.contains("Limit key"), "a job without a limit key shows none: {html}");
    assert!(html.contains("<p class=\"none\" id=\"job-metadata\">none</p>"), "no metadata reads none: {html}");
    let crumbs = &html[html.find("class=\"crumbs\"").unwrap()..];
    let crumbs = &crumbs[..crumbs.find("</p>").unwrap()];
    assert!(crumbs.contains(">other</a> / <span class=\"current\">mail.send</span>"), "{crumbs}");
}

#[tokio::test]
async fn unknown_and_malformed_requests_get_clear_errors() {
    let (_storage, dashboard) = setup();
    let router = dashboard.router();

    let page = get(&router, &format!("/jobs/{}", JobId::new())).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("not found"), "{}", page.body);

    let page = get(&router, "/jobs/42").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("`42` is not a job id"), "{}", page.body);

    let page = get(&router, "/jobs?state=done").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("unknown job state `done`; the states are scheduled"), "{}", page.body);

    let page = get(&router, "/jobs?after=nope").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = get(&router, "/jobs?limit=0").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("page size"));

    let page = get(&router, "/nowhere").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("no page at /nowhere"));
}

#[tokio::test]
async fn workers_and_schedules_have_their_pages() {
    let (storage, dashboard) = setup();
    let now = Utc::now();
    for id in ["worker-a", "worker-b"] {
        let beat = WorkerBeat::new(id, now, Duration::from_secs(60)).process("host", 7).serving(vec!["mail".into()], 2);
        storage.beat_worker(beat).await.unwrap();
    }
    storage.acquire_leadership(LeadershipParams::new("worker-b", Duration::from_secs(60))).await.unwrap();
    let update = PeriodicUpdate::new("nightly-report", "cron \"0 3 * * *\" in UTC").next_tick(now);
    storage.save_periodic(update).await.unwrap();
    let router = dashboard.router();

    let page = get(&router, "/workers").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<table id=\"workers\">"));
    assert!(page.body.contains("data-worker=\"worker-a\""));
    assert!(page.body.contains("data-worker=\"worker-b\" class=\"leader\""), "{}", page.body);

    let page = get(&router, "/periodic").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("nightly-report"));
    assert!(page.body.contains("cron &quot;0 3 * * *&quot; in UTC"), "{}", page.body);
}

#[tokio::test]
async fn the_assets_are_served_with_their_types() {
    let (_storage, dashboard) = setup();
    let router = dashboard.router();
    let script = get(&router, "/assets/app.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(script.headers["content-type"], "text/javascript; charset=utf-8");
    assert!(script.body.contains("data-refresh-ms"));
    let style = get(&router, "/assets/app.css").await;
    assert_eq!(style.headers["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn mounted_under_a_prefix_every_link_starts_with_it() {
    let (storage, dashboard) = setup();
    let id = discarded(&storage, job("mail"), "boom").await;
    let app = Router::new().nest("/admin", dashboard.router());

    for uri in ["/admin".to_owned(), "/admin/jobs?state=discarded".to_owned(), format!("/admin/jobs/{id}")] {
        let page = get(&app, &uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
        let mut links = 0;
        for attribute in ["href=\"", "action=\"", "src=\""] {
            for (index, _) in page.body.match_indices(attribute) {
                let value = &page.body[index + attribute.len()..];
                let inside = value.starts_with("/admin/") || value.starts_with("/admin\"");
                assert!(inside, "{uri}: a link outside /admin: {}", &value[..40.min(value.len())]);
                links += 1;
            }
        }
        assert!(links > 5, "{uri} has links");
    }
    let page = get(&app, "/admin/jobs/42").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("href=\"/admin/assets/app.css\""), "error pages are styled under the prefix too");
}

/// An admin whose every call fails as a storage that cannot be reached does.
struct Unreachable;

fn down<T>() -> haul::Result<T> {
    Err(Error::Backend {
        backend: "test",
        kind: ErrorKind::Connection,
        message: "connection refused".into(),
        source: None,
    })
}

#[async_trait]
impl Admin for Unreachable {
    async fn get(&self, _: JobId) -> haul::Result<Option<JobRecord>> {
        down()
    }
    async fn list(&self, _: ListParams) -> haul::Result<Vec<JobRecord>> {
        down()
    }
    async fn counts(&self) -> haul::Result<Vec<QueueCounts>> {
        down()
    }
    async fn cancel(&self, _: JobId, _: Option<Timestamp>) -> haul::Result<JobRecord> {
        down()
    }
    async fn retry(&self, _: JobId, _: Option<Timestamp>) -> haul::Result<JobRecord> {
        down()
    }
    async fn delete(&self, _: JobId) -> haul::Result<()> {
        down()
    }
    async fn pause_queue(&self, _: &str) -> haul::Result<()> {
        down()
    }
    async fn resume_queue(&self, _: &str) -> haul::Result<()> {
        down()
    }
    async fn set_queue_limits(&self, _: &str, _: haul::QueueLimits) -> haul::Result<()> {
        down()
    }
    async fn queue_limits(&self) -> haul::Result<Vec<haul::QueueLimitsRecord>> {
        down()
    }
    async fn list_workers(&self, _: Option<Timestamp>) -> haul::Result<Vec<WorkerRecord>> {
        down()
    }
    async fn leader(&self, _: Option<Timestamp>) -> haul::Result<Option<Leadership>> {
        down()
    }
    async fn list_periodic(&self) -> haul::Result<Vec<PeriodicRecord>> {
        down()
    }
    async fn delete_periodic(&self, _: &str) -> haul::Result<bool> {
        down()
    }
    async fn throughput(&self, _: Timestamp) -> haul::Result<Vec<ThroughputSample>> {
        down()
    }
    async fn retry_jobs(&self, _: JobFilter, _: Option<Timestamp>) -> haul::Result<u64> {
        down()
    }
}

#[tokio::test]
async fn a_failing_storage_gets_an_error_page_not_a_panic() {
    let router = Dashboard::new(Arc::new(Unreachable)).router();
    for uri in ["/", "/jobs", "/workers", "/periodic", &format!("/jobs/{}", JobId::new())] {
        let page = get(&router, uri).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(page.body.contains("connection refused"), "{uri}: {}", page.body);
    }
    let _ = JobState::ALL;
}
