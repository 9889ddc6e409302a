//! What keeps the dashboard safe: authentication, the checks every POST passes, the
//! response headers, and constant-time comparison of secrets.

use std::sync::Arc;

use axum::{
    extract::{OriginalUri, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::{Auth, Dashboard, paths};

/// The cookie a `?token=` sets.
const TOKEN_COOKIE: &str = "haul_web_token";

/// The query parameter that carries a token once.
const TOKEN_PARAM: &str = "token";

/// The policy every response carries: scripts and styles from the dashboard's own
/// files only, never inline.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'; object-src 'none'";

/// A fresh random secret: 32 bytes, hex.
pub(crate) fn new_secret() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether two secrets are equal, in time that depends on their lengths only.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Adds the security headers to every response.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Authenticates every request but those for the assets (which hold nothing secret),
/// then refuses a POST to a read-only dashboard or from another origin. The CSRF
/// token, in the form's body, is checked by each action.
pub(crate) async fn guard(State(dashboard): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let base = paths::base_of(request.extensions());
    if dashboard.loopback_hosts_only && !addressed_to_loopback(request.headers()) {
        let message = "refused: this dashboard answers only requests addressed to localhost, 127.0.0.1 or [::1] \
                       (serve it with --token or --basic to reach it by another name)";
        return crate::pages::error_page(&base, StatusCode::MISDIRECTED_REQUEST, message);
    }
    if !is_asset(request.uri().path()) {
        match authenticate(&dashboard, &base, &request) {
            Authenticated::Yes => {}
            Authenticated::Redirect(response) | Authenticated::No(response) => return response,
        }
    }
    if request.method() == Method::POST {
        if dashboard.read_only {
            let message = "this dashboard is read-only: retry, cancel, delete, pause and resume are turned off";
            return crate::pages::error_page(&base, StatusCode::FORBIDDEN, message);
        }
        if !same_origin(request.headers(), request.uri()) {
            let message = "refused: this form was sent from another site (its Origin header does not match the \
                           Host); reload the dashboard and try again from its own page";
            return crate::pages::error_page(&base, StatusCode::FORBIDDEN, message);
        }
    }
    next.run(request).await
}

/// Whether `path` is one of the built-in assets (served without authentication: they
/// hold nothing secret).
fn is_asset(path: &str) -> bool {
    matches!(path, "/assets/app.js" | "/assets/app.css")
}

/// Whether the request's `Host` names a loopback address (`localhost`, `127.x.x.x`,
/// `[::1]`), whatever the port.
fn addressed_to_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|host| host.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(rest) => rest.split_once(']').map_or("", |(address, _)| address),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The outcome of authentication.
enum Authenticated {
    /// Go on.
    Yes,
    /// A `?token=` that was right: set the cookie and drop it from the URL.
    Redirect(Response),
    /// Refused (401).
    No(Response),
}

/// Checks the request's credentials against the dashboard's [`Auth`].
fn authenticate(dashboard: &Dashboard, base: &str, request: &Request) -> Authenticated {
    match &dashboard.auth {
        Auth::None => Authenticated::Yes,
        Auth::Token(token) => token_auth(dashboard, token, base, request),
        Auth::Basic { user, password } => {
            if basic_matches(request.headers(), user, password) {
                Authenticated::Yes
            } else {
                let mut response = crate::pages::error_page(
                    base,
                    StatusCode::UNAUTHORIZED,
                    "authentication required: sign in with the dashboard's user name and password",
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"haul\", charset=\"UTF-8\""),
                );
                Authenticated::No(response)
            }
        }
    }
}

/// Token authentication: a bearer header, the cookie, or a `?token=` that sets it.
fn token_auth(dashboard: &Dashboard, token: &str, base: &str, request: &Request) -> Authenticated {
    let headers = request.headers();
    // An empty token lets nobody in (`serve` refuses one; a mounted dashboard must not
    // turn it into no authentication).
    let token_set = !token.is_empty();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| same_secret(given.trim(), token));
    let cookie =
        cookie_value(headers, TOKEN_COOKIE).is_some_and(|given| same_secret(given, &cookie_of(dashboard, token)));
    if token_set && (bearer || cookie) {
        return Authenticated::Yes;
    }
    let query = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = form_pairs(query);
    if let Some((_, given)) = pairs.iter().find(|(name, _)| name == TOKEN_PARAM)
        && token_set
        && same_secret(given, token)
    {
        let rest: Vec<(String, String)> = pairs.into_iter().filter(|(name, _)| name != TOKEN_PARAM).collect();
        let path = request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri().path().to_owned(), |uri| uri.path().to_owned());
        // One leading slash: `//host/…` would send the browser to another host.
        let path = format!("/{}", path.trim_start_matches('/'));
        let location = if rest.is_empty() { path } else { format!("{path}?{}", paths::query_string(&rest)) };
        let cookie_path = paths::overview_path(base);
        let secure = if arrived_over_https(request) { "; Secure" } else { "" };
        let cookie = format!(
            "{TOKEN_COOKIE}={}; Path={cookie_path}; HttpOnly; SameSite=Strict{secure}",
            cookie_of(dashboard, token)
        );
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie)) {
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            return Authenticated::Redirect(response);
        }
    }
    let mut response = crate::pages::error_page(
        base,
        StatusCode::UNAUTHORIZED,
        "authentication required: send the header `Authorization: Bearer <token>`, or open the dashboard once \
         with ?token=<token> in its URL",
    );
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"haul\""));
    Authenticated::No(response)
}

/// Whether `request` says the browser sent it over HTTPS: a reverse proxy that ended
/// TLS says so with `X-Forwarded-Proto: https` or `Forwarded: proto=https` (the first
/// hop's), and an HTTP/2 request's URI with its `https` scheme (an HTTP/1.1 request's
/// URI has none). A client that forges either header only makes its own cookie `Secure`.
fn arrived_over_https(request: &Request) -> bool {
    let first_hop = |name: header::HeaderName| {
        request.headers().get(name).and_then(|value| value.to_str().ok()).and_then(|value| value.split(',').next())
    };
    let forwarded_proto = first_hop(header::FORWARDED).and_then(|hop| {
        hop.split(';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.trim().eq_ignore_ascii_case("proto").then(|| value.trim().trim_matches('"'))
        })
    });
    let x_forwarded_proto = first_hop(header::HeaderName::from_static("x-forwarded-proto")).map(str::trim);
    request.uri().scheme_str() == Some("https")
        || [forwarded_proto, x_forwarded_proto].into_iter().flatten().any(|proto| proto.eq_ignore_ascii_case("https"))
}

/// The cookie's value for `token`: a digest of the dashboard's secret and the token,
/// so the token itself is not stored in the browser.
fn cookie_of(dashboard: &Dashboard, token: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(dashboard.csrf.as_bytes());
    digest.update([0]);
    digest.update(token.as_bytes());
    hex(&digest.finalize())
}

/// The value of the cookie `name`, if the request has it.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether the request's Basic credentials are `user` and `password`.
fn basic_matches(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
    let Ok(decoded) = String::from_utf8(decoded) else { return false };
    let Some((given_user, given_password)) = decoded.split_once(':') else { return false };
    // Both compared, whatever the first gives, so the time tells nothing.
    let user_ok = same_secret(given_user, user);
    let password_ok = same_secret(given_password, password);
    // Empty credentials let nobody in.
    user_ok & password_ok & !user.is_empty() & !password.is_empty()
}

/// Whether a request's `Origin`, when it has one, names the host it was sent to.
fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let Some((_, origin_host)) = origin.split_once("://") else { return false };
    let origin_host = origin_host.trim_end_matches('/');
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|authority| authority.as_str().to_owned()));
    host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host))
}

/// Whether `given` is the dashboard's CSRF token.
pub(crate) fn csrf_matches(dashboard: &Dashboard, given: Option<&str>) -> bool {
    given.is_some_and(|given| same_secret(given, &dashboard.csrf))
}

/// The pairs of an `application/x-www-form-urlencoded` string.
pub(crate) fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (paths::decode(name), paths::decode(value))
        })
        .collect()
}
