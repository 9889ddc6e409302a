//! report and heartbeat: find each claimed job's queue, then one script per call (per
//! queue on a cluster) checks every claim and applies what it holds.

use std::{borrow::Cow, time::Duration};

use haul_core::{
    Claim, Error, HeartbeatOutcome, HeartbeatParams, JobId, JobOutcome, ReportOutcome, ReportParams, Result, Timestamp,
    storable_text,
};
use redis::{Script, ScriptInvocation, Value};

use super::distinct;
use crate::{
    RedisStorage,
    codec::{duration_micros, reply},
    keys::QueueKeys,
    ops::admin::IndexMembers,
    scripts::{scripts, with_head},
};

/// An outcome as `report.lua` takes it: name, text (NUL characters replaced, as on
/// every backend), µs.
fn encode(outcome: &JobOutcome) -> Result<(&'static str, Cow<'_, str>, i64)> {
    Ok(match outcome {
        JobOutcome::Completed => ("completed", Cow::Borrowed(""), 0),
        JobOutcome::Failed { error, retry_in } => ("failed", storable_text(error), duration_micros(*retry_in)),
        JobOutcome::Discarded { reason } => ("discarded", storable_text(reason), 0),
        JobOutcome::Cancelled => ("cancelled", Cow::Borrowed(""), 0),
        JobOutcome::Snoozed { delay } => ("snoozed", Cow::Borrowed(""), duration_micros(*delay)),
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

    /// Runs `script` over the located claims, one run for every queue on one server and
    /// one per queue on a cluster. `global`: with the prefix's global keys on one
    /// server. `head` adds the arguments that follow the common head; `claim_args`
    /// adds, after the claim's group number, the arguments of the claim at an input
    /// position. Returns each located claim's reply with its input position (claims
    /// whose job does not exist are left out). The values a run's reply holds after its
    /// claims' go to `after` as each run ends, so a caller has those of the runs that
    /// ended before one failed.
    async fn run_by_queue(
        &self,
        located: &Located,
        script: &Script,
        (now, global): (Option<Timestamp>, bool),
        head: impl Fn(&mut ScriptInvocation<'_>),
        claim_args: impl Fn(&mut ScriptInvocation<'_>, usize),
        after: &mut Vec<Value>,
    ) -> Result<Vec<(usize, Value)>> {
        let runs: Vec<Vec<usize>> = if self.is_cluster() {
            (0..located.queues.len()).map(|group| vec![group]).collect()
        } else {
            vec![(0..located.queues.len()).collect()]
        };
        let mut replies = Vec::new();
        let global = global && !self.is_cluster();
        for run in runs.into_iter().filter(|run| !run.is_empty()) {
            let queues: Vec<&QueueKeys> = run.iter().map(|&group| &located.queues[group]).collect();
            let mut call = with_head(script, &self.inner.keys, now, global, &queues);
            head(&mut call);
            let mut members = Vec::new();
            for (at, group) in located.groups.iter().enumerate() {
                let Some(group) = group.and_then(|group| run.iter().position(|&g| g == group)) else {
                    continue;
                };
                call.arg(group + 1);
                claim_args(&mut call, at);
                members.push(at);
            }
            let mut results = reply::array(self.run(&call).await?)?;
            let rest = results.split_off(members.len().min(results.len()));
            replies.extend(members.into_iter().zip(results));
            after.extend(rest);
        }
        Ok(replies)
    }

    pub(crate) async fn report_outcomes(&self, params: ReportParams) -> Result<ReportOutcome> {
        let ReportParams { reports, now, delete_completed, .. } = params;
        let encoded = reports.iter().map(|report| encode(&report.outcome)).collect::<Result<Vec<_>>>()?;
        let claims: Vec<Claim> = reports.iter().map(|report| report.claim).collect();
        let located = self.locate_claims(&claims).await?;
        let mut deleted = Vec::new();
        let replies = self
            .run_by_queue(
                &located,
                &scripts().report,
                (now, true),
                |call| {
                    call.arg(if delete_completed { "1" } else { "0" });
                },
                |call, at| {
                    let (claim, (name, text, micros)) = (&claims[at], &encoded[at]);
                    call.arg(claim.id.to_string())
                        .arg(claim.token.to_string())
                        .arg(*name)
                        .arg(text.as_ref())
                        .arg(*micros);
                },
                &mut deleted,
            )
            .await;
        // On a cluster, the jobs the completions deleted leave the jobs index here, also
        // when the run of a later queue failed.
        let deleted = deleted
            .into_iter()
            .map(|member| Ok(IndexMembers { job: reply::string(member)?, unique: String::new() }))
            .collect::<Result<Vec<_>>>()?;
        let unindexed = self.unindex(&deleted).await;
        let replies = replies?;
        unindexed?;
        let mut applied = vec![false; claims.len()];
        for (at, result) in replies {
            applied[at] = reply::int(result)? == 1;
        }

        self.forget(claims.iter().map(|claim| claim.id));
        let mut outcome = ReportOutcome::default();
        for (claim, applied) in claims.iter().zip(applied) {
            if applied { outcome.applied.push(*claim) } else { outcome.rejected.push(*claim) }
        }
        Ok(outcome)
    }

    pub(crate) async fn heartbeat_claims(&self, params: HeartbeatParams) -> Result<HeartbeatOutcome> {
        let HeartbeatParams { claims, lease, now, .. } = params;
        let located = self.locate_claims(&claims).await?;
        let replies = self
            .run_by_queue(
                &located,
                &scripts().heartbeat,
                (now, false),
                |call| {
                    call.arg(lease_micros(lease));
                },
                |call, at| {
                    call.arg(claims[at].id.to_string()).arg(claims[at].token.to_string());
                },
                &mut Vec::new(),
            )
            .await?;
        // 0 lost, 1 extended, 2 extended and cancel requested.
        let mut states = vec![0_i64; claims.len()];
        for (at, result) in replies {
            states[at] = reply::int(result)?;
        }

        let mut outcome = HeartbeatOutcome::default();
        for (claim, state) in claims.iter().zip(states) {
            match state {
                0 => outcome.lost.push(*claim),
                2 => {
                    outcome.extended.push(*claim);
                    outcome.cancelled.push(*claim);
                }
                _ => outcome.extended.push(*claim),
            }
        }
        self.forget(outcome.lost.iter().map(|claim| claim.id));
        Ok(outcome)
    }
}

fn lease_micros(lease: Duration) -> i64 {
    duration_micros(lease)
}
