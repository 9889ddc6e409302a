//! Where things are: the prefix the dashboard is mounted at, links under it, and the
//! encoding of query strings and path segments.

use std::{convert::Infallible, sync::Arc};

use axum::{
    extract::{FromRequestParts, NestedPath},
    http::{Extensions, request::Parts},
};

use crate::Dashboard;

/// The prefix the dashboard's router is nested at (`""` when served at `/`), without
/// a trailing slash.
pub(crate) fn base_of(extensions: &Extensions) -> String {
    extensions.get::<NestedPath>().map_or("", |nested| nested.as_str()).trim_end_matches('/').to_owned()
}

/// The overview's path under `base`: `/` at the root, else `base` itself.
pub(crate) fn overview_path(base: &str) -> String {
    if base.is_empty() { "/".to_owned() } else { base.to_owned() }
}

/// What every page handler needs: the dashboard and the prefix its links start with.
pub(crate) struct Ctx {
    /// The dashboard.
    pub(crate) dashboard: Arc<Dashboard>,
    /// The mount prefix (see [`base_of`]).
    pub(crate) base: String,
}

impl FromRequestParts<Arc<Dashboard>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Dashboard>) -> Result<Self, Self::Rejection> {
        Ok(Self { dashboard: Arc::clone(state), base: base_of(&parts.extensions) })
    }
}

impl Ctx {
    /// The link to `path` (which starts with `/`) under the mount prefix.
    pub(crate) fn href(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The link to the overview, with a notice when one is given. Nested at `/admin`,
    /// it is `/admin` (axum matches a nested router's `/` there, not at `/admin/`).
    pub(crate) fn overview_href(&self, notice: Option<&str>) -> String {
        let path = overview_path(&self.base);
        match notice {
            Some(notice) => format!("{path}?notice={}", encode(notice)),
            None => path,
        }
    }

    /// The link to a job's page.
    pub(crate) fn job_href(&self, id: haul::JobId) -> String {
        self.href(&format!("/jobs/{id}"))
    }

    /// The link to a job's page with a notice.
    pub(crate) fn job_href_with_notice(&self, id: haul::JobId, notice: &str) -> String {
        format!("{}?notice={}", self.job_href(id), encode(notice))
    }

    /// The link to a list of jobs with these query pairs (empty values left out).
    pub(crate) fn jobs_href(&self, pairs: &[(&str, &str)]) -> String {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        if pairs.is_empty() { self.href("/jobs") } else { self.href(&format!("/jobs?{}", query_string(&pairs))) }
    }

    /// The link to an action on a queue.
    pub(crate) fn queue_href(&self, queue: &str, action: &str) -> String {
        self.href(&format!("/queues/{}/{action}", encode(queue)))
    }

    /// Whether actions are offered.
    pub(crate) fn can_act(&self) -> bool {
        !self.dashboard.read_only
    }
}

/// `pairs` as a query string (without the `?`).
pub(crate) fn query_string(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes everything but the unreserved characters (`A-Z a-z 0-9 - . _ ~`).
pub(crate) fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes a form-encoded value (`+` is a space; a malformed escape is kept as is).
pub(crate) fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' if index + 2 < bytes.len() && hex_pair(bytes[index + 1], bytes[index + 2]).is_some() => {
                decoded.extend(hex_pair(bytes[index + 1], bytes[index + 2]));
                index += 2;
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The byte two hex digits give.
fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |byte: u8| char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok());
    Some(digit(high)? * 16 + digit(low)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        for value in ["mail", "a b&c=d/é", "%zz", "100%"] {
            assert_eq!(decode(&encode(value)), value);
        }
        assert_eq!(decode("a+b%2Fc%zz"), "a b/c%zz");
    }
}
