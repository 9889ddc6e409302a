//! What keeps the dashboard safe: job data is escaped, authentication is required when
//! set, every response carries the security headers, and `serve` refuses to expose an
//! unauthenticated dashboard.

mod common;

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use base64::Engine as _;
use chrono::Utc;
use common::*;
use haul::{
    NewJob,
    storage::{PeriodicUpdate, WorkerBeat},
};
use haul_web::{Auth, WebError};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const PAYLOAD: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn job_data_is_escaped_on_every_page() {
    let (storage, dashboard) = setup();
    let job = NewJob::new("mail.send", json!({ "html": PAYLOAD, PAYLOAD: "key" }))
        .queue("mail")
        .metadata("note", PAYLOAD)
        .metadata(PAYLOAD, "value");
    let id = discarded(&storage, job, &format!("failed: {PAYLOAD}")).await;
    let beat = WorkerBeat::new(format!("worker-{PAYLOAD}"), Utc::now(), Duration::from_secs(60))
        .process(PAYLOAD, 1)
        .serving(vec!["mail".into()], 1);
    storage.beat_worker(beat).await.unwrap();
    storage.save_periodic(PeriodicUpdate::new("nightly", format!("every {PAYLOAD}"))).await.unwrap();
    let router = dashboard.router();

    let pages = [
        "/".to_owned(),
        "/jobs".to_owned(),
        "/jobs?state=discarded&queue=mail".to_owned(),
        format!("/jobs/{id}"),
        "/workers".to_owned(),
        "/periodic".to_owned(),
        "/jobs?kind=%3Cscript%3Ealert(1)%3C%2Fscript%3E&notice=%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned(),
    ];
    for uri in pages {
        let page = get(&router, &uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(!page.body.contains("<script>alert"), "{uri} holds the raw payload: {}", page.body);
        if uri != "/" {
            assert!(
                page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{uri} shows it escaped: {}",
                page.body
            );
        }
    }
    let detail = get(&router, &format!("/jobs/{id}")).await.body;
    assert!(detail.contains("failed: &lt;script&gt;alert(1)&lt;/script&gt;"), "the error message is escaped");
    assert!(detail.contains("&quot;note&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"), "metadata");
    let bad = get(&router, "/jobs?state=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(!bad.body.contains("<script>alert"), "an error message quoting the request is escaped");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (_storage, dashboard) = setup();
    let router = dashboard.clone().router();
    let locked = dashboard.auth(Auth::Token("t0ken".into())).router();
    for (router, uri) in
        [(&router, "/"), (&router, "/jobs/42"), (&router, "/nowhere"), (&router, "/assets/app.js"), (&locked, "/")]
    {
        let reply = get(router, uri).await;
        assert_eq!(
            reply.headers["content-security-policy"],
            "default-src 'self'; script-src 'self'; style-src 'self'; form-action 'self'; base-uri 'none'; \
             frame-ancestors 'none'; object-src 'none'"
        );
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        assert_eq!(reply.headers["referrer-policy"], "same-origin");
        assert_eq!(reply.headers["x-frame-options"], "DENY");
    }
    let page = get(&router, "/").await.body;
    assert!(!page.contains("<style") && !page.contains("style=\""), "no inline style");
    assert!(!page.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn token_auth_takes_a_bearer_header_or_a_token_once_then_its_cookie() {
    let (_storage, dashboard) = setup();
    let router = dashboard.auth(Auth::Token("s3cret-token".into())).router();

    let reply = get(&router, "/jobs").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("Authorization: Bearer"), "{}", reply.body);
    let bearer = |token: &str| {
        Request::get("/jobs").header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap()
    };
    assert_eq!(send(&router, bearer("s3cret-token")).await.status, StatusCode::OK);
    assert_eq!(send(&router, bearer("wrong")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&router, "/jobs?token=wrong").await.status, StatusCode::UNAUTHORIZED);

    let reply = get(&router, "/jobs?state=discarded&token=s3cret-token").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/jobs?state=discarded", "the token leaves the URL");
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "over plain HTTP the cookie is not Secure: {cookie}");
    assert!(!cookie.contains("s3cret-token"), "the cookie does not hold the token itself");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = Request::get("/jobs?state=discarded").header(header::COOKIE, pair).body(Body::empty()).unwrap();
    assert_eq!(send(&router, with_cookie).await.status, StatusCode::OK);
    let forged = Request::get("/jobs").header(header::COOKIE, "haul_web_token=abc").body(Body::empty()).unwrap();
    assert_eq!(send(&router, forged).await.status, StatusCode::UNAUTHORIZED);

    // POSTs need it too, before anything else is looked at.
    assert_eq!(post(&router, "/queues/mail/pause", "csrf=x").await.status, StatusCode::UNAUTHORIZED);
    // The assets hold nothing secret.
    assert_eq!(get(&router, "/assets/app.css").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_token_cookie_is_secure_when_a_proxy_says_the_browser_used_https() {
    let (_storage, dashboard) = setup();
    let router = dashboard.auth(Auth::Token("s3cret-token".into())).router();
    let cookie_behind = |name: &str, value: &str| {
        let request = Request::get("/jobs?token=s3cret-token").header(name, value).body(Body::empty()).unwrap();
        let router = router.clone();
        async move {
            let reply = send(&router, request).await;
            assert_eq!(reply.status, StatusCode::SEE_OTHER);
            reply.headers[header::SET_COOKIE].to_str().unwrap().to_owned()
        }
    };
    for (name, value) in [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-proto", "HTTPS, http"),
        ("forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43"),
        ("forwarded", "proto=\"https\", proto=http"),
        ("forwarded", "for=192.0.2.60; Proto=HTTPS"),
    ] {
        let cookie = cookie_behind(name, value).await;
        assert!(cookie.ends_with("; Secure"), "{name}: {value} gives {cookie}");
    }
    for (name, value) in [
        ("x-forwarded-proto", "http"),
        ("x-forwarded-proto", "http, https"),
        ("forwarded", "for=192.0.2.60;proto=http"),
        ("forwarded", "proto=http, proto=https"),
        ("x-forwarded-host", "https"),
    ] {
        let cookie = cookie_behind(name, value).await;
        assert!(!cookie.contains("Secure"), "{name}: {value} gives {cookie}");
    }
    // An HTTP/2 request's URI carries its scheme.
    let over_tls = Request::get("https://localhost/jobs?token=s3cret-token").body(Body::empty()).unwrap();
    let reply = send(&router, over_tls).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[tokio::test]
async fn basic_auth_asks_for_the_user_and_password() {
    let (_storage, dashboard) = setup();
    let auth = Auth::Basic { user: "ops".into(), password: "pa:ss".into() };
    let router = dashboard.auth(auth).router();

    let reply = get(&router, "/").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic realm=\"haul\""));
    let basic = |credentials: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        Request::get("/").header(header::AUTHORIZATION, format!("Basic {encoded}")).body(Body::empty()).unwrap()
    };
    assert_eq!(send(&router, basic("ops:pa:ss")).await.status, StatusCode::OK);
    for wrong in ["ops:pa", "admin:pa:ss", "ops", ""] {
        assert_eq!(send(&router, basic(wrong)).await.status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
}

#[tokio::test]
async fn serve_refuses_a_public_address_without_auth() {
    let (_storage, dashboard) = setup();
    let error = haul_web::serve(dashboard.clone(), "0.0.0.0:0".parse().unwrap()).await.unwrap_err();
    assert!(matches!(error, WebError::UnsafeBind(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("--token") && message.contains("--basic") && message.contains("127.0.0.1"), "{message}");
    assert!(dashboard.check_bind("[::1]:8080".parse().unwrap()).is_ok());
    let locked = dashboard.auth(Auth::Token("t".into()));
    assert!(locked.check_bind("0.0.0.0:8080".parse().unwrap()).is_ok());
}

#[tokio::test]
async fn serve_until_answers_over_tcp_and_stops_when_told() {
    let (storage, dashboard) = setup();
    enqueue(&storage, job("mail")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(haul_web::serve_until(dashboard, listener, async {
        let _ = stopped.await;
    }));

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /jobs HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("class=\"job\""));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Sends one `GET /` over TCP to `addr` with `host` as its `Host` header; returns the
/// status line.
async fn status_for_host(addr: std::net::SocketAddr, host: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the server accepts");
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("the request is sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("the response is read");
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn served_alone_without_auth_it_answers_only_loopback_host_names() {
    let (_storage, dashboard) = setup();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(haul_web::serve_until(dashboard, listener, async {
        let _ = stopped.await;
    }));
    for host in
        [addr.to_string(), format!("localhost:{}", addr.port()), "[::1]:8080".to_owned(), "127.0.0.2".to_owned()]
    {
        assert!(status_for_host(addr, &host).await.starts_with("HTTP/1.1 200"), "{host}");
    }
    // A page at evil.example that pointed its name at 127.0.0.1 (DNS rebinding).
    for host in ["evil.example", "evil.example:8080", "localhost.evil.example"] {
        assert!(status_for_host(addr, host).await.starts_with("HTTP/1.1 421"), "{host}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_empty_token_or_password_is_refused_and_lets_nobody_in() {
    let (storage, dashboard) = setup();
    let public = "0.0.0.0:8080".parse().unwrap();
    let empty_token = dashboard.clone().auth(Auth::Token(String::new()));
    assert!(matches!(empty_token.check_bind(public), Err(WebError::EmptySecret)));
    let empty_password = dashboard.clone().auth(Auth::Basic { user: "ops".into(), password: String::new() });
    assert!(matches!(empty_password.check_bind(public), Err(WebError::EmptySecret)));

    // Mounted in an application, where nothing calls check_bind: still nobody gets in.
    let token_reply = get(&empty_token.router(), "/?token=").await;
    assert_eq!(token_reply.status, StatusCode::UNAUTHORIZED);
    let basic = base64::engine::general_purpose::STANDARD.encode("ops:");
    let request = axum::http::Request::get("/")
        .header("authorization", format!("Basic {basic}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let basic_reply = send(&empty_password.router(), request).await;
    assert_eq!(basic_reply.status, StatusCode::UNAUTHORIZED);
    drop(storage);
}
