//! The throughput chart: completed and failed attempts per minute over the last hour,
//! as an inline SVG drawn on the server.
//!
//! It shows the sixty whole minutes before the current one. The current minute is
//! left out: workers add their counts every few seconds, so it is still filling (and
//! usually has no sample yet), and drawing it would make the line drop at its end. A
//! minute the chart shows has ended, so one without a sample truly had no attempt
//! (or no worker recording): it is drawn as 0.

use chrono::TimeDelta;
use haul::{ThroughputSample, storage::Timestamp};
use maud::{Markup, html};

/// Minutes shown.
const MINUTES: i64 = 60;
/// The drawing's size, in its own units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
/// Room for the axis labels.
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 10.0;

/// The first minute shown when the time is `now`: the chart covers it and the
/// `MINUTES - 1` after it, up to the minute before `now`'s. Read samples from it.
pub(crate) fn first_minute(now: Timestamp) -> Timestamp {
    haul::storage::minute_of(now) - TimeDelta::minutes(MINUTES)
}

/// The chart of `samples` (any queues) for the hour of whole minutes before `now`'s
/// minute; samples outside it (the current minute's among them) are left out.
pub(crate) fn throughput(samples: &[ThroughputSample], now: Timestamp) -> Markup {
    let first = first_minute(now);
    let mut completed = [0_u64; MINUTES as usize];
    let mut failed = [0_u64; MINUTES as usize];
    for sample in samples {
        let index = (haul::storage::minute_of(sample.minute) - first).num_minutes();
        if let Ok(index) = usize::try_from(index)
            && index < completed.len()
        {
            completed[index] = completed[index].saturating_add(sample.completed);
            failed[index] = failed[index].saturating_add(sample.failed);
        }
    }
    let top = nice_max(completed.iter().chain(failed.iter()).copied().max().unwrap_or(0));
    let plot_width = WIDTH - LEFT;
    let plot_height = HEIGHT - BOTTOM - TOP;
    let step = plot_width / (MINUTES - 1) as f64;
    let x = |index: usize| LEFT + index as f64 * step;
    let y = |value: u64| TOP + plot_height - value as f64 / top as f64 * plot_height;
    let points = |values: &[u64]| {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| format!("{:.1},{:.1}", x(index), y(*value)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let total_completed: u64 = completed.iter().sum();
    let total_failed: u64 = failed.iter().sum();
    let label = format!("Throughput over the last hour: {total_completed} completed, {total_failed} failed");
    html! {
        figure .chart {
            svg #throughput xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
                title { (label) }
                @for value in [0, top / 2, top] {
                    line .grid x1=(LEFT) x2=(WIDTH) y1=(format!("{:.1}", y(value))) y2=(format!("{:.1}", y(value))) {}
                    text .axis x=(LEFT - 6.0) y=(format!("{:.1}", y(value) + 4.0)) text-anchor="end" { (value) }
                }
                text .axis x=(LEFT) y=(HEIGHT - 4.0) text-anchor="start" { "−60 min" }
                text .axis x=(LEFT + plot_width / 2.0) y=(HEIGHT - 4.0) text-anchor="middle" { "−30 min" }
                text .axis x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { "−1 min" }
                polyline .series-completed fill="none" points=(points(&completed)) {}
                polyline .series-failed fill="none" points=(points(&failed)) {}
                @for index in 0..completed.len() {
                    @let minute = first + TimeDelta::minutes(index as i64);
                    rect .hover x=(format!("{:.1}", x(index) - step / 2.0)) y=(TOP) width=(format!("{step:.1}")) height=(plot_height) {
                        title { (minute.format("%H:%M UTC")) ": " (completed[index]) " completed, " (failed[index]) " failed" }
                    }
                }
            }
            figcaption .legend {
                span .key-completed { "completed" } " " (total_completed)
                " · "
                span .key-failed { "failed" } " " (total_failed)
            }
        }
    }
}

/// A round top for the scale, at least `max` and at least 1.
fn nice_max(max: u64) -> u64 {
    let mut unit: u64 = 1;
    loop {
        for factor in [1, 2, 5] {
            let candidate = unit.saturating_mul(factor);
            if candidate >= max.max(1) || candidate == u64::MAX {
                return candidate.max(2);
            }
        }
        unit = unit.saturating_mul(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::{TimeZone as _, Utc};

    /// The `points` of the polyline of `series` (`completed` or `failed`).
    fn points(markup: &str, series: &str) -> Vec<(f64, f64)> {
        let marker = format!("class=\"series-{series}\" fill=\"none\" points=\"");
        let start = markup.find(&marker).map(|index| index + marker.len()).unwrap_or_else(|| panic!("{markup}"));
        let end = markup[start..].find('"').map(|index| index + start).unwrap_or_else(|| panic!("{markup}"));
        markup[start..end]
            .split(' ')
            .map(|point| {
                let (x, y) = point.split_once(',').unwrap_or_else(|| panic!("{point}"));
                (x.parse().unwrap_or_else(|_| panic!("{x}")), y.parse().unwrap_or_else(|_| panic!("{y}")))
            })
            .collect()
    }

    #[test]
    fn the_current_minute_is_left_out_and_past_minutes_without_samples_are_zero() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 20).single().unwrap_or_else(|| panic!("a time"));
        let minute = |ago: i64| now - TimeDelta::minutes(ago);
        // Every minute of the hour has 4 completed attempts but the one 10 minutes ago;
        // the current minute has 1 (still filling) and 61 minutes ago is before the chart.
        let mut samples: Vec<ThroughputSample> =
            (1..=60).filter(|ago| *ago != 10).map(|ago| ThroughputSample::new("mail", minute(ago), 4, 1)).collect();
        samples.push(ThroughputSample::new("mail", now, 1, 0));
        samples.push(ThroughputSample::new("mail", minute(61), 100, 100));
        let markup = throughput(&samples, now).into_string();

        assert!(markup.contains("236 completed, 59 failed"), "{markup}");
        let completed = points(&markup, "completed");
        assert_eq!(completed.len(), MINUTES as usize);
        let bottom = HEIGHT - BOTTOM;
        let zeros: Vec<usize> =
            completed.iter().enumerate().filter(|(_, (_, y))| *y == bottom).map(|(i, _)| i).collect();
        assert_eq!(zeros, vec![50], "only the minute without a sample, 10 minutes ago, is 0: {markup}");
        assert_eq!(completed.last().map(|(x, _)| *x), Some(WIDTH), "the last point is the minute before now's");
        assert!(markup.contains("09:29 UTC: 4 completed, 1 failed"), "the last minute shown is 09:29");
        assert!(!markup.contains("09:30 UTC"), "the current minute is not shown: {markup}");
        assert!(markup.contains("08:30 UTC: 4 completed"), "the first minute shown is 08:30");
        assert_eq!(first_minute(now), minute(60) - TimeDelta::seconds(20));
    }

    #[test]
    fn the_scale_is_round() {
        assert_eq!(nice_max(0), 2);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(101), 200);
    }
}
