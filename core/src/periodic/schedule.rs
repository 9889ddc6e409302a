//! When a periodic job's ticks come: a cron expression in a time zone, or a fixed
//! interval counted from the Unix epoch.

use std::{fmt, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

use crate::{Error, Result, Timestamp};

/// Shortest interval of [`Schedule::every`].
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// When a periodic job's ticks come.
///
/// - [`Schedule::cron`]: a cron expression of 5 fields (minute, hour, day of month,
///   month, day of week) or 6 (seconds first), in UTC or, with [`Schedule::cron_in`],
///   in a named time zone. Daylight saving time follows the usual cron rule: a time
///   that a spring-forward gap skips runs at the first time after the gap; a time that
///   a fall-back overlap repeats runs once, at its first occurrence (expressions with
///   `*` or steps in their time fields run in both passes).
/// - [`Schedule::every`]: a fixed interval, with ticks at whole multiples of it since
///   the Unix epoch (`every(1h)` ticks on the hour, in UTC), so every worker computes the
///   same ticks.
///
/// ```
/// use std::time::Duration;
/// use haul_core::Schedule;
///
/// let nightly = Schedule::cron_in("0 3 * * *", "Europe/Paris")?;
/// let after = "2026-03-28T12:00:00Z".parse()?;
/// // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC once summer time starts.
/// assert_eq!(
///     nightly.upcoming(after, 2),
///     vec!["2026-03-29T01:00:00Z".parse::<chrono::DateTime<chrono::Utc>>()?, "2026-03-30T01:00:00Z".parse()?],
/// );
/// assert!(Schedule::cron("61 * * * *").is_err());
/// let quarter_hourly = Schedule::every(Duration::from_secs(15 * 60))?;
/// assert_eq!(quarter_hourly.next_after("2026-03-28T12:07:00Z".parse()?), Some("2026-03-28T12:15:00Z".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron { expression: String, cron: Box<Cron>, zone: Tz },
    Every { micros: i64 },
}

impl Schedule {
    /// A cron schedule in UTC (5 or 6 fields; see the type's docs).
    pub fn cron(expression: &str) -> Result<Self> {
        Self::cron_with_zone(expression, Tz::UTC)
    }

    /// A cron schedule in the named IANA time zone (`"Europe/Paris"`, `"America/New_York"`).
    pub fn cron_in(expression: &str, zone: &str) -> Result<Self> {
        let parsed: Tz = zone.parse().map_err(|_| {
            invalid(
                format!("{expression} in {zone}"),
                format!("unknown time zone `{zone}` (use an IANA name such as `Europe/Paris`)"),
            )
        })?;
        Self::cron_with_zone(expression, parsed)
    }

    fn cron_with_zone(expression: &str, zone: Tz) -> Result<Self> {
        let shown = || if zone == Tz::UTC { expression.to_owned() } else { format!("{expression} in {zone}") };
        let fields = expression.split_whitespace().count();
        let is_alias = expression.trim_start().starts_with('@');
        if !is_alias && !(5..=6).contains(&fields) {
            return Err(invalid(
                shown(),
                format!("has {fields} fields; use 5 (minute hour day month weekday) or 6 (seconds first)"),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|error| invalid(shown(), error.to_string()))?;
        let schedule =
            Self { kind: Kind::Cron { expression: expression.trim().to_owned(), cron: Box::new(cron), zone } };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(invalid(shown(), "never matches a date to come".to_owned()));
        }
        Ok(schedule)
    }

    /// A schedule that ticks every `interval` (at least [`MIN_INTERVAL`]), at whole
    /// multiples of it since the Unix epoch.
    pub fn every(interval: Duration) -> Result<Self> {
        let shown = || format!("every {interval:?}");
        if interval < MIN_INTERVAL {
            return Err(invalid(shown(), "an interval must be at least one second".to_owned()));
        }
        let micros = i64::try_from(interval.as_micros())
            .ok()
            .filter(|micros| *micros <= TimeDelta::days(365 * 100).num_microseconds().unwrap_or(i64::MAX))
            .ok_or_else(|| invalid(shown(), "an interval must be at most 100 years".to_owned()))?;
        Ok(Self { kind: Kind::Every { micros } })
    }

    /// The latest tick at or before `at`, if the schedule has one.
    pub fn latest_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron { cron, zone, .. } => {
                cron.find_previous_occurrence(&at.with_timezone(zone), true).ok().map(|tick| tick.with_timezone(&Utc))
            }
            Kind::Every { micros } => {
                let now = at.timestamp_micros();
                DateTime::from_timestamp_micros(now - now.rem_euclid(*micros))
            }
        }
    }

    /// The first tick strictly after `at`, if the schedule has one.
    pub fn next_after(&self, at: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Cron { cron, zone, .. } => {
                cron.find_next_occurrence(&at.with_timezone(zone), false).ok().map(|tick| tick.with_timezone(&Utc))
            }
            Kind::Every { micros } => {
                let now = at.timestamp_micros();
                now.checked_sub(now.rem_euclid(*micros))
                    .and_then(|tick| tick.checked_add(*micros))
                    .and_then(DateTime::from_timestamp_micros)
            }
        }
    }

    /// The next `count` ticks after `after`.
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Timestamp> {
        std::iter::successors(self.next_after(after), |tick| self.next_after(*tick)).take(count).collect()
    }

    /// How many ticks fall strictly between `after` and `before`, counting at most `limit`.
    pub(crate) fn ticks_between(&self, after: Timestamp, before: Timestamp, limit: usize) -> usize {
        std::iter::successors(self.next_after(after), |tick| self.next_after(*tick))
            .take_while(|tick| *tick < before)
            .take(limit)
            .count()
    }
}

/// How the schedule reads in logs and in its stored record: `cron "0 3 * * *" in
/// Europe/Paris`, `cron "*/5 * * * *"` (UTC), `every 30s`.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Cron { expression, zone, .. } if *zone == Tz::UTC => write!(f, "cron \"{expression}\""),
            Kind::Cron { expression, zone, .. } => write!(f, "cron \"{expression}\" in {zone}"),
            Kind::Every { micros } => {
                write!(f, "every {:?}", Duration::from_micros(u64::try_from(*micros).unwrap_or(u64::MAX)))
            }
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

fn invalid(schedule: String, reason: String) -> Error {
    Error::InvalidSchedule { schedule, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a valid timestamp")
    }

    #[test]
    fn five_and_six_fields_parse_and_others_say_why_not() {
        assert!(Schedule::cron("*/5 * * * *").is_ok());
        assert!(Schedule::cron("30 */5 * * * *").is_ok());
        assert!(Schedule::cron("@hourly").is_ok());
        let error = Schedule::cron("* * *").expect_err("three fields");
        assert!(error.to_string().contains("has 3 fields"), "{error}");
        let error = Schedule::cron("0 0 0 1 1 * 2030").expect_err("seven fields");
        assert!(error.to_string().contains("has 7 fields"), "{error}");
        let error = Schedule::cron("0 25 * * *").expect_err("hour 25");
        assert!(error.to_string().contains("0 25 * * *"), "{error}");
        let error = Schedule::cron_in("0 3 * * *", "Mars/Olympus").expect_err("unknown zone");
        assert!(error.to_string().contains("unknown time zone `Mars/Olympus`"), "{error}");
        let error = Schedule::cron("0 0 30 2 *").expect_err("February 30th");
        assert!(error.to_string().contains("never matches"), "{error}");
    }

    #[test]
    fn cron_ticks_follow_the_time_zone_across_daylight_saving_changes() {
        // 02:30 does not exist in Paris on 2026-03-29 (02:00 → 03:00): it runs at 03:00.
        let schedule = Schedule::cron_in("30 2 * * *", "Europe/Paris").expect("valid");
        assert_eq!(
            schedule.upcoming(at("2026-03-28T00:00:00Z"), 3),
            vec![at("2026-03-28T01:30:00Z"), at("2026-03-29T01:00:00Z"), at("2026-03-30T00:30:00Z")]
        );
        // 02:30 happens twice on 2026-10-25 (03:00 → 02:00): it runs once.
        assert_eq!(
            schedule.upcoming(at("2026-10-24T12:00:00Z"), 2),
            vec![at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn the_latest_tick_and_the_next_one_bracket_any_time() {
        let schedule = Schedule::cron("0 * * * *").expect("valid");
        assert_eq!(schedule.latest_at_or_before(at("2026-01-01T10:00:00Z")), Some(at("2026-01-01T10:00:00Z")));
        assert_eq!(schedule.latest_at_or_before(at("2026-01-01T10:59:59Z")), Some(at("2026-01-01T10:00:00Z")));
        assert_eq!(schedule.next_after(at("2026-01-01T10:00:00Z")), Some(at("2026-01-01T11:00:00Z")));
        assert_eq!(schedule.ticks_between(at("2026-01-01T10:00:00Z"), at("2026-01-01T13:00:00Z"), 100), 2);
        assert_eq!(schedule.ticks_between(at("2026-01-01T10:00:00Z"), at("2026-01-02T13:00:00Z"), 5), 5);
    }

    #[test]
    fn intervals_tick_at_multiples_since_the_epoch() {
        let schedule = Schedule::every(Duration::from_secs(30)).expect("valid");
        assert_eq!(schedule.latest_at_or_before(at("2026-01-01T10:00:45Z")), Some(at("2026-01-01T10:00:30Z")));
        assert_eq!(schedule.latest_at_or_before(at("2026-01-01T10:00:30Z")), Some(at("2026-01-01T10:00:30Z")));
        assert_eq!(schedule.next_after(at("2026-01-01T10:00:30Z")), Some(at("2026-01-01T10:01:00Z")));
        assert_eq!(schedule.to_string(), "every 30s");
        assert!(Schedule::every(Duration::from_millis(999)).is_err());
        assert!(Schedule::every(Duration::from_secs(u64::MAX)).is_err());
        assert_eq!(
            Schedule::cron_in("0 3 * * *", "Europe/Paris").expect("valid").to_string(),
            "cron \"0 3 * * *\" in Europe/Paris"
        );
    }
}
