//! The long-transaction workload (PostgreSQL): steady production with a worker running,
//! before, during and after another connection holds a snapshot open, so that what dead
//! tuples that cannot be cleaned up cost shows in throughput and latency.

use std::{collections::HashMap, sync::Arc, time::Duration};

use haul::{JobId, Queue};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::{
    BoxError, Figure, Latency, Settings,
    backends::Postgres,
    ui::Ui,
    workloads::{self, Backend, Call, Latencies, LatencyWorker, STEADY_GRACE, now_micros},
};

/// The longest before and after phases when `--long-tx-phase-seconds` is not given.
const DEFAULT_PHASE: Duration = Duration::from_secs(10);

/// How long the snapshot is held and how long the phases around it last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// The held snapshot's duration.
    pub(crate) hold: Duration,
    /// The before and after phases' duration.
    pub(crate) phase: Duration,
}

impl Plan {
    /// A hold of `hold_seconds` with phases of `phase_seconds`, or of the hold's length up
    /// to 10 s; `None` when the hold is not positive (the workload is skipped).
    pub(crate) fn new(hold_seconds: f64, phase_seconds: Option<f64>) -> Option<Self> {
        if !hold_seconds.is_finite() || hold_seconds <= 0.0 {
            return None;
        }
        let hold = Duration::from_secs_f64(hold_seconds);
        let phase = phase_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or_else(|| hold.min(DEFAULT_PHASE), Duration::from_secs_f64);
        Some(Self { hold, phase })
    }
}

/// A transaction on a connection of its own that holds a REPEATABLE READ snapshot (and so
/// the database's xmin horizon) until [`HeldSnapshot::release`]. Dropping it without
/// releasing closes the socket, which makes the server roll the transaction back.
struct HeldSnapshot {
    conn: PgConnection,
    pid: i32,
}

impl HeldSnapshot {
    /// Begins the transaction and takes its snapshot by reading `table`.
    async fn open(url: &str, table: &str) -> Result<Self, BoxError> {
        let mut conn = PgConnection::connect(url).await?;
        let begun = async {
            sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ").execute(&mut conn).await?;
            sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM {table} LIMIT 1"))).fetch_optional(&mut conn).await?;
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&mut conn).await
        }
        .await;
        match begun {
            Ok(pid) => Ok(Self { conn, pid }),
            Err(error) => {
                let _ = conn.close().await;
                Err(error.into())
            }
        }
    }

    /// The held transaction's xmin as another session sees it (`None`: no snapshot held).
    async fn xmin(&self, admin: &PgPool) -> Result<Option<String>, BoxError> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = $1 AND state = 'idle in transaction'",
        )
        .bind(self.pid)
        .fetch_optional(admin)
        .await?
        .flatten())
    }

    /// Rolls the transaction back and closes the connection (closed even when the rollback
    /// fails).
    async fn release(mut self) -> Result<(), BoxError> {
        let rolled_back = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        let closed = self.conn.close().await;
        rolled_back?;
        closed?;
        Ok(())
    }
}

/// Instants of the run, in microseconds since the harness's base instant.
#[derive(Clone, Copy, Debug)]
struct Timeline {
    start: u64,
    hold_start: u64,
    hold_end: u64,
    end: u64,
}

/// What the hold observed: the xmin it held and the jobs table's dead tuples at the end of
/// each phase (from the statistics, which lag by up to a second or so).
#[derive(Debug, Default)]
struct Observed {
    xmin: Option<String>,
    dead: [Option<i64>; 3],
    /// Jobs that did not start within the grace period after production.
    missing: usize,
}

/// Steady production at `settings.rate` for the plan's before, hold and after phases with
/// one worker running: one figure per phase, the during and after ones compared with before.
pub(crate) async fn run(pg: &mut Postgres, settings: &Settings, plan: Plan, ui: &Ui) -> Result<Vec<Figure>, BoxError> {
    let name = pg.name();
    let rate = f64::from(settings.rate.max(1));
    let produced_for = plan.phase * 2 + plan.hold;
    let total = ((rate * produced_for.as_secs_f64()) as usize).max(1);
    let label = format!("long tx: {}/s for {:.0} s", settings.rate, produced_for.as_secs_f64());
    let (url, admin) = (pg.url().to_owned(), pg.admin().clone());
    workloads::on_fresh(pg, async |pg, storage| {
        let queue = Queue::new(storage.clone());
        let table = format!("\"{}\".jobs", storage.schema());
        let latencies = Arc::new(Latencies::default());
        let bar = ui.bar_on(name, &label, total, Arc::clone(&latencies.done));
        let worker = LatencyWorker::start(pg, storage, settings, &latencies).await?;

        let start = now_micros();
        let mut observed = Observed::default();
        let (produced, held) = tokio::join!(workloads::produce(&queue, rate, total), async {
            tokio::time::sleep(plan.phase).await;
            observed.dead[0] = dead_tuples(&admin, storage.schema()).await;
            let snapshot = HeldSnapshot::open(&url, &table).await?;
            let hold_start = now_micros();
            let watched = snapshot.xmin(&admin).await;
            tokio::time::sleep(plan.hold).await;
            observed.dead[1] = dead_tuples(&admin, storage.schema()).await;
            let released = snapshot.release().await;
            let hold_end = now_micros();
            observed.xmin = watched?;
            released?;
            Ok::<_, BoxError>((hold_start, hold_end))
        });
        let end = now_micros();
        let deadline = tokio::time::Instant::now() + STEADY_GRACE;
        while latencies.done.load(std::sync::atomic::Ordering::Relaxed) < total
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worker.stop(pg).await?;
        let (calls, _) = produced?;
        let (hold_start, hold_end) = held?;
        observed.dead[2] = dead_tuples(&admin, storage.schema()).await;
        let done = latencies.done.load(std::sync::atomic::Ordering::Relaxed);
        bar.finish(done, Duration::from_micros(end.saturating_sub(start)));
        let starts: HashMap<JobId, u64> =
            latencies.starts.lock().map(|s| s.iter().copied().collect()).unwrap_or_default();
        let timeline = Timeline { start, hold_start, hold_end, end };
        observed.missing = total - done.min(total);
        Ok(figures(name, settings.rate, plan, &timeline, &calls, &starts, &observed))
    })
    .await
}

/// The jobs table's dead tuples according to the statistics, if it can be read.
async fn dead_tuples(admin: &PgPool, schema: &str) -> Option<i64> {
    sqlx::query_scalar::<_, i64>(
        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'",
    )
    .bind(schema.to_owned())
    .fetch_optional(admin)
    .await
    .ok()
    .flatten()
}

/// One figure per phase: the jobs that started in it per second, and the latency of the
/// jobs whose enqueue call started in it.
fn figures(
    name: &'static str,
    rate: u32,
    plan: Plan,
    t: &Timeline,
    calls: &[Call],
    starts: &HashMap<JobId, u64>,
    observed: &Observed,
) -> Vec<Figure> {
    let windows = [
        (format!("long tx: before, {rate}/s"), t.start, t.hold_start),
        (format!("long tx: during, snapshot held {:.0} s", plan.hold.as_secs_f64()), t.hold_start, t.hold_end),
        ("long tx: after".to_owned(), t.hold_end, t.end),
    ];
    let phases: Vec<(Figure, Option<Latency>)> = windows
        .into_iter()
        .map(|(label, from, to)| {
            let started = starts.values().filter(|&&s| (from..to).contains(&s)).count();
            let mut latency: Vec<u64> = calls
                .iter()
                .filter(|(_, at, _)| (from..to).contains(at))
                .filter_map(|(id, at, _)| starts.get(id).map(|s| s.saturating_sub(*at)))
                .collect();
            let latency = Latency::of(&mut latency);
            let elapsed = Duration::from_micros(to.saturating_sub(from));
            (Figure::new(name, &label, started, elapsed).latency(latency), latency)
        })
        .collect();
    let (before_rate, before_latency) = (phases[0].0.jobs_per_second, phases[0].1);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    phases
        .into_iter()
        .enumerate()
        .map(|(index, (figure, latency))| {
            if index == 0 {
                return figure;
            }
            let throughput = ratio(figure.jobs_per_second, before_rate);
            let mut note = format!("{}/before: jobs/s {throughput:.2}x", if index == 1 { "during" } else { "after" });
            if let (Some(now), Some(before)) = (latency, before_latency) {
                note.push_str(&format!(
                    ", p50 {:.2}x, p99 {:.2}x",
                    ratio(now.p50_ms, before.p50_ms),
                    ratio(now.p99_ms, before.p99_ms)
                ));
            }
            if index == 1 {
                let verdict = if throughput > 0.8 { "met" } else { "missed" };
                note.push_str(&format!(
                    " (target: jobs/s above 0.80x before: {verdict}); held xmin {}; jobs table dead tuples at the \
                     end of before/during/after: {}",
                    observed.xmin.as_deref().unwrap_or("not seen"),
                    observed.dead.map(|d| d.map_or_else(|| "?".to_owned(), |d| d.to_string())).join(" / ")
                ));
            }
            if index == 2 && observed.missing > 0 {
                note.push_str(&format!(
                    "; {} jobs did not start within {} s",
                    observed.missing,
                    STEADY_GRACE.as_secs()
                ));
            }
            figure.ratio_to_before(throughput).note(note)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_of_zero_skips_the_workload_and_phases_default_to_the_hold_up_to_ten_seconds() {
        assert!(Plan::new(0.0, None).is_none());
        let short = Plan::new(2.0, None).expect("a plan");
        assert_eq!((short.hold, short.phase), (Duration::from_secs(2), Duration::from_secs(2)));
        let long = Plan::new(60.0, None).expect("a plan");
        assert_eq!(long.phase, DEFAULT_PHASE);
        assert_eq!(Plan::new(60.0, Some(5.0)).expect("a plan").phase, Duration::from_secs(5));
    }

    #[test]
    fn each_phase_counts_the_starts_inside_it_and_compares_with_before() {
        // Before: 0-10 s, 10 jobs starting 1 s after their enqueue; during: 10-20 s, 5 jobs
        // starting 3 s after; after: 20-30 s, 10 jobs starting 1 s after.
        let second = 1_000_000;
        let mut calls = Vec::new();
        let mut starts = HashMap::new();
        let mut add = |at: u64, delay: u64| {
            let id = JobId::new();
            calls.push((id, at, at));
            starts.insert(id, at + delay);
        };
        (0..9).for_each(|s| add(s * second, second));
        (10..15).for_each(|s| add(s * second, 3 * second));
        (19..29).for_each(|s| add(s * second, second));
        let t = Timeline { start: 0, hold_start: 10 * second, hold_end: 20 * second, end: 30 * second };
        let plan = Plan::new(10.0, None).expect("a plan");
        let figures = figures("postgres", 1, plan, &t, &calls, &starts, &Observed::default());
        let started: Vec<usize> = figures.iter().map(|f| f.jobs).collect();
        // Starts at 1..=9 s; 11..=15 s and the one enqueued at 19 s starting at 20 s goes after.
        assert_eq!(started, [9, 5, 10]);
        let ratios: Vec<f64> = figures.iter().map(|f| f.ratio_to_before.unwrap_or(-1.0)).collect();
        for (ratio, expected) in ratios.iter().zip([-1.0, 5.0 / 9.0, 10.0 / 9.0]) {
            assert!((ratio - expected).abs() < 1e-9, "{ratios:?}");
        }
        let p50: Vec<f64> = figures.iter().filter_map(|f| f.latency.map(|l| l.p50_ms)).collect();
        assert_eq!(p50, [1_000.0, 3_000.0, 1_000.0]);
        assert!(figures[1].note.as_deref().is_some_and(|n| n.contains("missed")));
    }
}
