//! How values read in text output: instants, ages, durations, long text, shell words.

use std::time::Duration;

use chrono::SecondsFormat;
use haul::storage::Timestamp;

/// What a table shows for an absent value.
pub(crate) const NONE: &str = "-";

/// An instant in RFC 3339, to the second, in UTC (`2030-01-31T12:00:00Z`).
pub(crate) fn timestamp(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An instant as JSON: RFC 3339 with every stored digit, in UTC.
pub(crate) fn timestamp_json(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An optional instant, [`NONE`] when absent.
pub(crate) fn maybe_timestamp(at: Option<Timestamp>) -> String {
    at.map_or_else(|| NONE.to_owned(), timestamp)
}

/// How long ago `since` was at `now`, zero if it is in the future.
pub(crate) fn age(since: Timestamp, now: Timestamp) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

/// A duration in its two largest units, to the second: `2d 3h`, `5m 12s`, `0s`.
pub(crate) fn short_duration(duration: Duration) -> String {
    const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut rest = duration.as_secs();
    let mut parts = Vec::new();
    for (unit, secs) in UNITS {
        let count = rest / secs;
        rest %= secs;
        if count > 0 || !parts.is_empty() {
            parts.push(format!("{count}{unit}"));
        }
        if parts.len() == 2 {
            break;
        }
    }
    // Drop a trailing zero part (`2d 0h` reads `2d`).
    if parts.len() == 2 && parts[1].starts_with('0') {
        parts.pop();
    }
    if parts.is_empty() { "0s".to_owned() } else { parts.join(" ") }
}

/// A duration as the humantime syntax the flags take (`1day`, `30s`, `1h 30m`).
pub(crate) fn flag_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// The first line of `text`, cut to `max` characters with an ellipsis.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or("");
    let cut_line = first_line.len() < text.trim_end().len();
    if first_line.chars().count() <= max && !cut_line {
        return first_line.to_owned();
    }
    let kept: String = first_line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

/// `word` as one shell word: as is when it holds only safe characters, otherwise in
/// single quotes.
pub(crate) fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.:/+=,@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_two_largest_units() {
        assert_eq!(short_duration(Duration::ZERO), "0s");
        assert_eq!(short_duration(Duration::from_millis(1_500)), "1s");
        assert_eq!(short_duration(Duration::from_secs(312)), "5m 12s");
        assert_eq!(short_duration(Duration::from_secs(2 * 86_400 + 3 * 3_600 + 59)), "2d 3h");
        assert_eq!(short_duration(Duration::from_secs(2 * 86_400 + 59)), "2d");
    }

    #[test]
    fn long_text_is_cut_to_its_first_line() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a rather long message", 10), "a rather…");
        assert_eq!(truncate("first\nsecond", 40), "first…");
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("mail"), "mail");
        assert_eq!(shell_word("2030-01-01T00:00:00Z"), "2030-01-01T00:00:00Z");
        assert_eq!(shell_word("it's here"), r"'it'\''s here'");
    }
}
