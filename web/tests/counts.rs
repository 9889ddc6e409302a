//! The pages share one count of the queues (`Admin::counts`, whose cost grows with the
//! stored jobs): pages within its lifetime reuse it, an action from the dashboard makes
//! the next page count again, and an old count is served at once while one recount
//! runs in the background.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use axum::{Router, http::StatusCode};
use common::*;
use haul::{Admin, JobId, JobState, QueueCounts, Storage};
use haul_test_support::{Hooked, StorageHooks};
use haul_web::Dashboard;
use tokio::sync::RwLock;

/// The longest a poll below waits for the dashboard to get somewhere.
const DEADLINE: Duration = Duration::from_secs(10);

/// A storage that counts its `counts()` calls, and holds them at a gate while a test
/// keeps the gate's write lock.
struct Counting {
    inner: Arc<dyn Storage>,
    calls: AtomicUsize,
    gate: RwLock<()>,
}

impl Counting {
    fn new(inner: Arc<dyn Storage>) -> Arc<Hooked<Self>> {
        Arc::new(Hooked::new(Self { inner, calls: AtomicUsize::new(0), gate: RwLock::new(()) }))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl StorageHooks for Counting {
    type Inner = Arc<dyn Storage>;
    fn inner(&self) -> &Arc<dyn Storage> {
        &self.inner
    }
    async fn counts(&self) -> haul::Result<Vec<QueueCounts>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _open = self.gate.read().await;
        self.inner.counts().await
    }
}

/// A memory storage with one discarded job in `mail`, the counting admin over it, and
/// the discarded job's id.
async fn counted_setup() -> (Arc<dyn Storage>, Arc<Hooked<Counting>>, JobId) {
    let (storage, _) = setup();
    let id = discarded(&storage, job("mail"), "boom").await;
    let counting = Counting::new(Arc::clone(&storage));
    (storage, counting, id)
}

/// The dashboard's router over `counting`, refreshing every `refresh`.
fn router(counting: &Arc<Hooked<Counting>>, refresh: Duration) -> Router {
    let admin: Arc<dyn Admin> = Arc::clone(counting) as Arc<dyn Admin>;
    Dashboard::new(admin).refresh_interval(refresh).router()
}

/// The overview, which must answer at once (it never waits for a background recount).
async fn overview(router: &Router) -> String {
    let page = tokio::time::timeout(DEADLINE, get(router, "/")).await.expect("the overview answers at once");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body
}

/// The count of `state` in queue `mail` an overview shows.
fn shown(html: &str, state: JobState) -> u64 {
    let marker = format!("href=\"/jobs?queue=mail&amp;state={state}\">");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {state} count of mail: {html}")) + marker.len();
    let digits: String = html[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("a number after {marker}"))
}

/// Polls `probe` until it holds, at most [`DEADLINE`].
async fn until(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out after {DEADLINE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn pages_within_the_lifetime_share_one_count() {
    let (storage, counting, _) = counted_setup().await;
    let router = router(&counting, Duration::from_secs(3600));

    let html = overview(&router).await;
    assert_eq!(counting.calls(), 1);
    assert_eq!(shown(&html, JobState::Discarded), 1);
    assert!(html.contains("id=\"counted-at\""), "the page says when it counted");

    // A change behind the dashboard's back waits for the next count.
    enqueue(&storage, job("mail")).await;
    let list = get(&router, "/jobs?queue=mail").await;
    assert!(list.body.contains("id=\"match-count\">1<"), "the list's count is the shared one: {}", list.body);
    let html = overview(&router).await;
    assert_eq!(shown(&html, JobState::Available), 0, "still the first count");
    assert_eq!(counting.calls(), 1, "three pages, one count");
}

#[tokio::test]
async fn an_action_makes_the_next_page_count_again() {
    let (_storage, counting, id) = counted_setup().await;
    let router = router(&counting, Duration::from_secs(3600));
    let html = overview(&router).await;
    assert_eq!(counting.calls(), 1);
    let token = csrf(&html);

    let reply = post(&router, &format!("/jobs/{id}/retry"), &format!("csrf={token}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let html = overview(&router).await;
    assert_eq!(counting.calls(), 2, "the retry dropped the snapshot");
    assert_eq!((shown(&html, JobState::Discarded), shown(&html, JobState::Available)), (0, 1), "{html}");

    let reply = post(&router, "/queues/mail/pause", &format!("csrf={token}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let list = get(&router, "/jobs?queue=mail&state=available").await;
    assert!(list.body.contains("id=\"match-count\">1<"), "{}", list.body);
    let html = overview(&router).await;
    assert_eq!(counting.calls(), 3, "the pause dropped it too; the list and the overview shared the recount");
    assert!(html.contains("data-queue=\"mail\" class=\"paused\""), "{html}");
}

#[tokio::test]
async fn an_old_count_is_served_at_once_while_one_recount_runs() {
    let (storage, counting, _) = counted_setup().await;
    // A refresh far shorter than any test step: every snapshot is soon old.
    let router = router(&counting, Duration::from_millis(1));
    assert_eq!(shown(&overview(&router).await, JobState::Available), 0);
    assert_eq!(counting.calls(), 1);

    // Recounts now start, then wait at the gate.
    let closed = counting.gate.write().await;
    enqueue(&storage, job("mail")).await;
    until("a page to start a recount in the background", async || {
        let html = overview(&router).await;
        assert_eq!(shown(&html, JobState::Available), 0, "the old count is served while the recount waits");
        counting.calls() >= 2
    })
    .await;
    let html = overview(&router).await;
    assert_eq!(shown(&html, JobState::Available), 0);
    assert_eq!(counting.calls(), 2, "one recount at a time");

    drop(closed);
    until("the recount to reach the pages", async || shown(&overview(&router).await, JobState::Available) == 1).await;
}
