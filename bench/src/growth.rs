//! The `growth` workload: does a drain's throughput hold as the backlog or the history
//! grows? Drains of `--growth-sizes` pre-enqueued jobs (the `drain` workload's worker:
//! one instance, `--concurrency` slots, default prefetch), then one of the first size with
//! `--growth-history` finished jobs kept in the same queue. Each figure's note gives its
//! jobs/s as a ratio to the first size's.

use std::time::Duration;

use haul::{
    JobOutcome, Queue, Storage,
    storage::{ClaimParams, Report, ReportParams},
};

use crate::{
    BoxError, Figure, Settings,
    ui::Ui,
    workloads::{Backend, DrainPlan, drain, enqueue_noops},
};

/// Jobs claimed and completed per call while the finished jobs are stored.
const FINISH_BATCH: usize = 5_000;

/// The growth workload's figures on `backend`.
pub(crate) async fn run<B: Backend>(backend: &mut B, settings: &Settings, ui: &Ui) -> Result<Vec<Figure>, BoxError> {
    let concurrency = settings.concurrency;
    let mut figures = Vec::new();
    let mut first: Option<(String, f64)> = None;
    for &size in &settings.growth_sizes {
        let label = format!("growth: drain of {size}");
        let figure = drain(backend, &label, DrainPlan::new(size, 1, concurrency), ui).await?;
        figures.push(compared_with_first(figure, &mut first));
    }
    let Some(&size) = settings.growth_sizes.first() else { return Ok(figures) };
    if settings.growth_history > 0 {
        let label = format!("growth: drain of {size}, {} finished kept", settings.growth_history);
        let plan = DrainPlan::new(size, 1, concurrency).history(settings.growth_history);
        let figure = drain(backend, &label, plan, ui).await?;
        figures.push(compared_with_first(figure, &mut first));
    }
    Ok(figures)
}

/// `figure` with its jobs/s as a ratio to the first figure's (which `first` keeps).
fn compared_with_first(figure: Figure, first: &mut Option<(String, f64)>) -> Figure {
    match first {
        None => {
            *first = Some((figure.workload.clone(), figure.jobs_per_second));
            figure
        }
        Some((label, rate)) => {
            let ratio = figure.jobs_per_second / rate.max(f64::EPSILON);
            let note = format!("{ratio:.2}x the jobs/s of `{label}`");
            figure.ratio_to_baseline(ratio).note(note)
        }
    }
}

/// Stores `jobs` finished no-op jobs in the queue `bench`: enqueued in batches of 1,000,
/// then claimed and completed through the `Storage` API, [`FINISH_BATCH`] at a time (no
/// worker; not timed).
pub(crate) async fn store_finished<S: Storage>(storage: &S, queue: &Queue, jobs: usize) -> Result<(), BoxError> {
    enqueue_noops(queue, jobs, &std::sync::atomic::AtomicUsize::new(0)).await?;
    let mut finished = 0;
    while finished < jobs {
        let params =
            ClaimParams::new(["bench"], FINISH_BATCH).lease(Duration::from_secs(600)).worker_id("bench-history");
        let claimed = storage.claim(params).await?;
        if claimed.is_empty() {
            return Err(format!("only {finished} of {jobs} jobs to finish could be claimed").into());
        }
        let reports = claimed
            .iter()
            .map(|record| {
                let claim = record.claim().ok_or("a claimed job without a claim")?;
                Ok(Report { claim, outcome: JobOutcome::Completed })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        storage.report(ReportParams::new(reports)).await?;
        finished += claimed.len();
    }
    Ok(())
}
