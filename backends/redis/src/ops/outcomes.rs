//! report and heartbeat: find each claimed job's queue, then one script per call (per
//! queue on a cluster) checks every claim and applies what it holds.

use std::time::Duration;

use haul_core::{
    Claim, Error, HeartbeatOutcome, HeartbeatParams, JobId, JobOutcome, ReportOutcome, ReportParams, Result,
};

use super::distinct;
use crate::{
    RedisStorage,
    codec::{duration_micros, reply},
    keys::QueueKeys,
    scripts::{scripts, with_head},
};

/// An outcome as `report.lua` takes it: name, text, µs.
fn encode(outcome: &JobOutcome) -> Result<(&'static str, &str, i64)> {
    Ok(match outcome {
        JobOutcome::Completed => ("completed", "", 0),
        JobOutcome::Failed { error, retry_in } => ("failed", error.as_str(), duration_micros(*retry_in)),
        JobOutcome::Discarded { reason } => ("discarded", reason.as_str(), 0),
        JobOutcome::Cancelled => ("cancelled", "", 0),
        JobOutcome::Snoozed { delay } => ("snoozed", "", duration_micros(*delay)),
        other => {
            return Err(Error::InvalidArgument(
                format!("the redis backend does not support the outcome {other:?}").into(),
            ));
        }
    })
}

/// Claims sorted by queue: the queue groups, and for each claim (in input order) its
/// group (0-based), or `None` when its job does not exist.
struct Located {
    queues: Vec<QueueKeys>,
    groups: Vec<Option<usize>>,
}

impl RedisStorage {
    async fn locate_claims(&self, claims: &[Claim]) -> Result<Located> {
        let ids: Vec<JobId> = claims.iter().map(|claim| claim.id).collect();
        let found = self.locate(&ids).await?;
        let names = distinct(found.iter().flatten().map(String::as_str));
        let groups = found.iter().map(|queue| queue.as_ref().and_then(|q| names.iter().position(|n| n == q))).collect();
        let queues = names.iter().map(|name| self.inner.keys.queue(name)).collect();
        Ok(Located { queues, groups })
    }

    pub(crate) async fn report_outcomes(&self, params: ReportParams) -> Result<ReportOutcome> {
        let ReportParams { reports, now, .. } = params;
        let encoded = reports.iter().map(|report| encode(&report.outcome)).collect::<Result<Vec<_>>>()?;
        let claims: Vec<Claim> = reports.iter().map(|report| report.claim).collect();
        let located = self.locate_claims(&claims).await?;
        let mut applied = vec![false; claims.len()];

        // One server: one run for every queue; a cluster: one run per queue.
        let runs: Vec<Vec<usize>> = if self.is_cluster() {
            (0..located.queues.len()).map(|group| vec![group]).collect()
        } else {
            vec![(0..located.queues.len()).collect()]
        };
        for run in runs.into_iter().filter(|run| !run.is_empty()) {
            let queues: Vec<&QueueKeys> = run.iter().map(|&group| &located.queues[group]).collect();
            let mut call = with_head(&scripts().report, &self.inner.keys, now, false, &queues);
            let mut members = Vec::new();
            for (at, (claim, (name, text, micros))) in claims.iter().zip(&encoded).enumerate() {
                let Some(group) = located.groups[at].and_then(|group| run.iter().position(|&g| g == group)) else {
                    continue;
                };
                call.arg(group + 1)
                    .arg(claim.id.to_string())
                    .arg(claim.token.to_string())
                    .arg(*name)
                    .arg(*text)
                    .arg(*micros);
                members.push(at);
            }
            let results = reply::array(self.run(&call).await?)?;
            for (at, result) in members.into_iter().zip(results) {
                applied[at] = reply::int(result)? == 1;
            }
        }

        self.forget(claims.iter().map(|claim| claim.id));
        let mut outcome = ReportOutcome::default();
        for (claim, applied) in claims.iter().zip(applied) {
            if applied { outcome.applied.push(claim.id) } else { outcome.rejected.push(claim.id) }
        }
        Ok(outcome)
    }

    pub(crate) async fn heartbeat_claims(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        let HeartbeatParams { claims, lease, now, .. } = params;
        let located = self.locate_claims(&claims).await?;
        // 0 lost, 1 extended, 2 extended and cancel requested.
        let mut states = vec![0_i64; claims.len()];
        let runs: Vec<Vec<usize>> = if self.is_cluster() {
            (0..located.queues.len()).map(|group| vec![group]).collect()
        } else {
            vec![(0..located.queues.len()).collect()]
        };
        for run in runs.into_iter().filter(|run| !run.is_empty()) {
            let queues: Vec<&QueueKeys> = run.iter().map(|&group| &located.queues[group]).collect();
            let mut call = with_head(&scripts().heartbeat, &self.inner.keys, now, false, &queues);
            call.arg(lease_micros(lease));
            let mut members = Vec::new();
            for (at, claim) in claims.iter().enumerate() {
                let Some(group) = located.groups[at].and_then(|group| run.iter().position(|&g| g == group)) else {
                    continue;
                };
                call.arg(group + 1).arg(claim.id.to_string()).arg(claim.token.to_string());
                members.push(at);
            }
            let results = reply::array(self.run(&call).await?)?;
            for (at, result) in members.into_iter().zip(results) {
                states[at] = reply::int(result)?;
            }
        }

        let mut outcome = HeartbeatOutcome::default();
        for (claim, state) in claims.iter().zip(states) {
            match state {
                0 => outcome.lost.push(claim.id),
                2 => {
                    outcome.extended.push(claim.id);
                    outcome.cancelled.push(claim.id);
                }
                _ => outcome.extended.push(claim.id),
            }
        }
        self.forget(outcome.lost.iter().copied());
        Ok(outcome)
    }
}

fn lease_micros(lease: Duration) -> i64 {
    duration_micros(lease)
}
