//! The `growth` workload: does a drain's throughput hold as the backlog or the history
//! grows? Drains of `--growth-sizes` pre-enqueued jobs (the `drain` workload's worker:
//! one instance, `--concurrency` slots, default prefetch), then one of the second size
//! (the first if only one is given) with `--growth-history` finished jobs kept in the
//! same queue. Each drain's note gives its jobs/s as a ratio to the first size's, the
//! kept-history drain's as a ratio to the drain of its own size.

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

/// The growth workload's figures on `backend`: each drain of `--growth-sizes` compared
/// with the first, then the drain with the history kept, compared with the drain of
/// the same size ([`history_drain`]).
pub(crate) async fn run<B: Backend>(backend: &mut B, settings: &Settings, ui: &Ui) -> Result<Vec<Figure>, BoxError> {
    let concurrency = settings.concurrency;
    let mut figures = Vec::new();
    for &size in &settings.growth_sizes {
        let label = format!("growth: drain of {size}");
        let figure = drain(backend, &label, DrainPlan::new(size, 1, concurrency), ui).await?;
        figures.push(match figures.first() {
            Some(first) => compared(figure, first),
            None => figure,
        });
    }
    let Some(at) = history_drain(&settings.growth_sizes) else { return Ok(figures) };
    if settings.growth_history > 0 {
        let size = settings.growth_sizes[at];
        let label = format!("growth: drain of {size}, {} finished kept", settings.growth_history);
        let plan = DrainPlan::new(size, 1, concurrency).history(settings.growth_history);
        let figure = drain(backend, &label, plan, ui).await?;
        figures.push(compared(figure, &figures[at]));
    }
    Ok(figures)
}

/// Which of `sizes` the drain with the history kept drains (and is compared with): the
/// second (the first when there is one). The first, 10,000 by default, lasts a few tens
/// of ms on memory, too short a time to tell the history's cost from the machine's noise.
fn history_drain(sizes: &[usize]) -> Option<usize> {
    (!sizes.is_empty()).then(|| usize::from(sizes.len() > 1))
}

/// `figure` with its jobs/s as a ratio to `baseline`'s.
fn compared(figure: Figure, baseline: &Figure) -> Figure {
    figure.compared_to("", &baseline.workload, baseline.jobs_per_second)
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

#[cfg(test)]
mod tests {
    use super::history_drain;

    #[test]
    fn the_history_drain_takes_the_second_size_or_the_only_one() {
        assert_eq!(history_drain(&[10_000, 100_000, 1_000_000]), Some(1));
        assert_eq!(history_drain(&[100_000, 100_000]), Some(1));
        assert_eq!(history_drain(&[5_000]), Some(0));
        assert_eq!(history_drain(&[]), None);
    }
}
