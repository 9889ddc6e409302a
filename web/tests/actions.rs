//! Every action changes the stored jobs or queues, and answers 303 to the page to
//! show next; a POST without the dashboard's CSRF token, from another origin, or to a
//! read-only dashboard changes nothing.

mod common;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use common::*;
use haul::JobState;

#[tokio::test]
async fn retry_cancel_and_delete_change_one_job() {
    let (storage, dashboard) = setup();
    let failed = discarded(&storage, job("mail"), "boom").await;
    let waiting = enqueue(&storage, job("mail")).await;
    let router = dashboard.router();
    let csrf = csrf_of(&router, "").await;

    let reply = post(&router, &format!("/jobs/{failed}/retry"), &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(reply.location().starts_with(&format!("/jobs/{failed}?notice=Retried")), "{}", reply.location());
    assert_eq!(stored(&storage, failed).await.unwrap().state, JobState::Available);
    let page = get(&router, reply.location()).await;
    assert!(page.body.contains("id=\"notice\""), "the notice is shown");

    let reply = post(&router, &format!("/jobs/{waiting}/cancel"), &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(stored(&storage, waiting).await.unwrap().state, JobState::Cancelled);

    let reply = post(&router, &format!("/jobs/{waiting}/delete"), &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.location().starts_with("/jobs?queue=mail&notice=Deleted"), "{}", reply.location());
    assert!(stored(&storage, waiting).await.is_none());

    // A finished job cannot be cancelled: the page says why.
    let reply = post(&router, &format!("/jobs/{failed}/delete"), &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let reply = post(&router, &format!("/jobs/{failed}/retry"), &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "a deleted job is not found");
}

#[tokio::test]
async fn an_action_the_state_refuses_is_a_conflict_with_the_reason() {
    let (storage, dashboard) = setup();
    let done = completed(&storage, "mail").await;
    let router = dashboard.router();
    let csrf = csrf_of(&router, "").await;
    let reply = post(&router, &format!("/jobs/{done}/cancel"), &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.body.contains("completed"), "{}", reply.body);
    assert_eq!(stored(&storage, done).await.unwrap().state, JobState::Completed);
}

#[tokio::test]
async fn pause_and_resume_change_the_queue() {
    let (storage, dashboard) = setup();
    enqueue(&storage, job("mail")).await;
    let router = dashboard.router();
    let csrf = csrf_of(&router, "").await;
    let paused = || async { storage.counts().await.unwrap().iter().any(|queue| queue.queue == "mail" && queue.paused) };

    let reply = post(&router, "/queues/mail/pause", &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/?notice=Paused%20queue%20mail");
    assert!(paused().await);
    assert!(get(&router, "/").await.body.contains("class=\"resume\""));

    let reply = post(&router, "/queues/mail/resume", &format!("csrf={csrf}")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(!paused().await);
}

#[tokio::test]
async fn a_bulk_action_changes_every_job_its_filter_matches_and_nothing_else() {
    let (storage, dashboard) = setup();
    let mut mail = Vec::new();
    for _ in 0..3 {
        mail.push(discarded(&storage, job("mail"), "boom").await);
    }
    let elsewhere = discarded(&storage, job("reports"), "boom").await;
    let router = dashboard.router();
    let csrf = csrf_of(&router, "").await;

    let page = get(&router, "/jobs?queue=mail&state=discarded").await;
    assert!(page.body.contains("id=\"bulk-retry\""));
    assert!(page.body.contains("data-confirm=\"Retry all 3 discarded jobs in queue mail?\""), "{}", page.body);
    assert!(page.body.contains("id=\"bulk-retry-button\""));
    assert!(page.body.contains("id=\"bulk-delete\"") && !page.body.contains("id=\"bulk-cancel\""));

    let reply = post(&router, "/jobs/retry", &format!("csrf={csrf}&queue=mail&state=discarded&kind=")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), "/jobs?queue=mail&state=discarded&notice=Retried%203%20jobs");
    for id in &mail {
        assert_eq!(stored(&storage, *id).await.unwrap().state, JobState::Available);
    }
    assert_eq!(stored(&storage, elsewhere).await.unwrap().state, JobState::Discarded);
    let page = get(&router, &reply.location().replace("%20", "+")).await;
    assert!(page.body.contains("Retried 3 jobs"));

    let reply = post(&router, "/jobs/cancel", &format!("csrf={csrf}&queue=mail&state=available")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.location().ends_with("notice=Cancelled%203%20jobs"), "{}", reply.location());
    let reply = post(&router, "/jobs/delete", &format!("csrf={csrf}&state=cancelled")).await;
    assert!(reply.location().ends_with("notice=Deleted%203%20jobs"), "{}", reply.location());
    for id in &mail {
        assert!(stored(&storage, *id).await.is_none());
    }
    assert!(stored(&storage, elsewhere).await.is_some());
}

#[tokio::test]
async fn a_bulk_action_needs_a_state() {
    let (storage, dashboard) = setup();
    let id = discarded(&storage, job("mail"), "boom").await;
    let router = dashboard.router();
    let csrf = csrf_of(&router, "").await;
    let page = get(&router, "/jobs?queue=mail").await;
    assert!(!page.body.contains("id=\"bulk-delete\""), "no bulk form without a state");
    let reply = post(&router, "/jobs/delete", &format!("csrf={csrf}&queue=mail")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("needs a state"), "{}", reply.body);
    assert!(stored(&storage, id).await.is_some());
}

#[tokio::test]
async fn a_post_without_the_right_csrf_token_changes_nothing() {
    let (storage, dashboard) = setup();
    let id = discarded(&storage, job("mail"), "boom").await;
    let router = dashboard.router();
    for form in ["", "csrf=", "csrf=0123abcd", "queue=mail&state=discarded"] {
        for uri in [format!("/jobs/{id}/retry"), format!("/jobs/{id}/delete"), "/jobs/retry".to_owned()] {
            let form = if uri == "/jobs/retry" && !form.contains("state") {
                format!("{form}&state=discarded")
            } else {
                form.to_owned()
            };
            let reply = post(&router, &uri, &form).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri} {form}");
            assert!(reply.body.contains("CSRF token is missing or wrong"), "{}", reply.body);
        }
        let reply = post(&router, "/queues/mail/pause", form).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    // Another dashboard's token is wrong too.
    let foreign = csrf_of(&haul_web::Dashboard::new(storage.clone()).router(), "").await;
    let reply = post(&router, &format!("/jobs/{id}/retry"), &format!("csrf={foreign}")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    assert_eq!(stored(&storage, id).await.unwrap().state, JobState::Discarded);
    assert!(!storage.counts().await.unwrap().iter().any(|queue| queue.paused));
}

#[tokio::test]
async fn a_post_from_another_origin_is_refused() {
    let (storage, dashboard) = setup();
    let id = discarded(&storage, job("mail"), "boom").await;
    let router = dashboard.router();
    let csrf = csrf_of(&router, "").await;
    let request = |origin: &str| {
        Request::post(format!("/jobs/{id}/retry"))
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap()
    };
    for origin in ["http://evil.example", "null", "http://127.0.0.1:9999"] {
        let reply = send(&router, request(origin)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(reply.body.contains("Origin header does not match"), "{}", reply.body);
    }
    assert_eq!(stored(&storage, id).await.unwrap().state, JobState::Discarded);
    let reply = send(&router, request("http://127.0.0.1:8080")).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "the same origin goes through");
    assert_eq!(stored(&storage, id).await.unwrap().state, JobState::Available);
}

#[tokio::test]
async fn a_read_only_dashboard_renders_no_action_and_refuses_every_post() {
    let (storage, dashboard) = setup();
    let id = discarded(&storage, job("mail"), "boom").await;
    let csrf = csrf_of(&dashboard.router(), "").await;
    let router = dashboard.read_only(true).router();
    for uri in ["/".to_owned(), "/jobs?state=discarded".to_owned(), format!("/jobs/{id}")] {
        let page = get(&router, &uri).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("method=\"post\""), "{uri}: {}", page.body);
        assert!(!page.body.contains("name=\"csrf\""), "{uri}");
    }
    for uri in [
        format!("/jobs/{id}/retry"),
        format!("/jobs/{id}/delete"),
        "/jobs/delete".to_owned(),
        "/queues/mail/pause".to_owned(),
    ] {
        let reply = post(&router, &uri, &format!("csrf={csrf}&state=discarded")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(reply.body.contains("read-only"));
    }
    assert_eq!(stored(&storage, id).await.unwrap().state, JobState::Discarded);
}
