//! How values read on a page: times, ages and durations, JSON.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use haul::storage::Timestamp;

/// An instant as `2030-01-31 12:00:00 UTC`.
pub(crate) fn time(at: Timestamp) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An instant in RFC 3339, for `<time datetime>`.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How far `at` is from now: `3m ago`, `in 2h`, `now`.
pub(crate) fn relative(at: Timestamp) -> String {
    let seconds = (at - Utc::now()).num_seconds();
    let span = span(seconds.unsigned_abs());
    if seconds.abs() < 1 {
        "now".to_owned()
    } else if seconds < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A number of seconds in its largest unit: `42s`, `5m`, `3h`, `2d`.
fn span(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A duration as `30s`, `1.5s`, `250ms`.
pub(crate) fn duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// A JSON value indented for reading.
pub(crate) fn pretty_json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A short form of a JSON value for a table cell: its compact text, cut at `max`
/// characters.
pub(crate) fn short_json(value: &serde_json::Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}
