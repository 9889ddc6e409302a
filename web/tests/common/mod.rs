//! Fixtures shared by the dashboard's tests: a memory storage with jobs put in the
//! state a test needs through the storage's own calls, and requests sent in-process.

#![allow(dead_code, unreachable_pub)] // each test binary uses its own part of these fixtures

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use haul::{
    JobId, JobOutcome, JobRecord, MemoryStorage, NewJob, Storage,
    storage::{ClaimParams, EnqueueParams, Report, ReportParams},
};
use haul_web::Dashboard;
use serde_json::json;
use tower::ServiceExt as _;

/// The kind of the jobs the fixtures enqueue.
pub const KIND: &str = "mail.send";

/// The worker id the fixtures claim as.
pub const WORKER: &str = "worker-7";

/// A fresh memory storage and a dashboard over it.
pub fn setup() -> (Arc<dyn Storage>, Dashboard) {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let dashboard = Dashboard::new(storage.clone());
    (storage, dashboard)
}

/// A response's status, headers and body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Location` header.
    pub fn location(&self) -> &str {
        self.headers.get(header::LOCATION).expect("a Location header").to_str().expect("ASCII")
    }
}

/// Sends `request` to `router`.
pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body reads");
    Reply { status, headers, body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body") }
}

/// `GET uri`.
pub async fn get(router: &Router, uri: &str) -> Reply {
    send(router, Request::get(uri).body(Body::empty()).expect("a request")).await
}

/// `POST uri` with a form body.
pub async fn post(router: &Router, uri: &str, form: &str) -> Reply {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .expect("a request");
    send(router, request).await
}

/// The CSRF token rendered in a page's forms.
pub fn csrf(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a page with a form") + marker.len();
    let end = html[start..].find('"').expect("a closing quote") + start;
    html[start..end].to_owned()
}

/// The CSRF token of `router`'s dashboard, read from its overview (which must show a
/// queue, so has a pause form).
pub async fn csrf_of(router: &Router, prefix: &str) -> String {
    csrf(&get(router, &format!("{prefix}/")).await.body)
}

/// A job of [`KIND`] on `queue`, with one attempt.
pub fn job(queue: &str) -> NewJob {
    NewJob::new(KIND, json!({ "to": "ada@example.com", "n": 1 })).queue(queue).max_attempts(1)
}

/// Enqueues `job` and returns its id.
pub async fn enqueue(storage: &Arc<dyn Storage>, job: NewJob) -> JobId {
    storage.enqueue(EnqueueParams::new(vec![job])).await.expect("enqueue succeeds").ids[0]
}

/// Enqueues `job`, claims it as [`WORKER`] (its queue must have no other available
/// job): it is running.
pub async fn running(storage: &Arc<dyn Storage>, job: NewJob) -> JobRecord {
    let queue = job.queue.clone();
    let id = enqueue(storage, job).await;
    let claimed = storage.claim(ClaimParams::new([queue], 100).worker_id(WORKER)).await.expect("claim succeeds");
    assert_eq!(claimed.len(), 1, "the job just enqueued is its queue's only available one");
    assert_eq!(claimed[0].id, id);
    claimed.into_iter().next().expect("one job")
}

/// Enqueues `job`, runs it and reports `outcome`; returns its id.
pub async fn finished(storage: &Arc<dyn Storage>, job: NewJob, outcome: JobOutcome) -> JobId {
    let record = running(storage, job).await;
    let report = Report { claim: record.claim().expect("a claimed job has a lease"), outcome };
    let outcome = storage.report(ReportParams::new(vec![report])).await.expect("report succeeds");
    assert!(outcome.rejected.is_empty(), "the outcome applies: {outcome:?}");
    record.id
}

/// A job on `queue` whose only attempt failed with `error`: discarded.
pub async fn discarded(storage: &Arc<dyn Storage>, job: NewJob, error: &str) -> JobId {
    let failed = JobOutcome::Failed { error: error.to_owned(), retry_in: Duration::from_secs(1) };
    finished(storage, job.max_attempts(1), failed).await
}

/// A completed job on `queue`.
pub async fn completed(storage: &Arc<dyn Storage>, queue: &str) -> JobId {
    finished(storage, job(queue), JobOutcome::Completed).await
}

/// The stored job.
pub async fn stored(storage: &Arc<dyn Storage>, id: JobId) -> Option<JobRecord> {
    storage.get(id).await.expect("get succeeds")
}

/// The ids of the `tr.job` rows of a list page, in order.
pub fn listed_ids(html: &str) -> Vec<String> {
    let marker = "<tr class=\"job\" data-id=\"";
    html.match_indices(marker)
        .map(|(index, _)| {
            let start = index + marker.len();
            html[start..start + 36].to_owned()
        })
        .collect()
}
