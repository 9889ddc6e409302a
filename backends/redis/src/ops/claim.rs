//! claim: one script promotes the due jobs of the requested queues and claims the best
//! available ones, within the queues' limits, and tells how long a rate limit holds
//! back jobs it would otherwise have taken.

use std::time::Duration;

use haul_core::{
    Claim, ClaimParams, Error, JobId, JobOutcome, KEY_LIMIT_SCAN, LeaseToken, PacedClaim, Report, ReportParams, Result,
    validate_queue_name,
};
use redis::Value;

use super::distinct;
use crate::{
    RedisStorage,
    codec::{Fields, duration_micros, parse_uuid, record_from_fields, reply},
    error::corrupt,
    keys::QueueKeys,
    scripts::{scripts, with_head},
};

/// The most jobs one claim call returns.
pub(crate) const MAX_CLAIM: usize = 10_000;

/// Claimed jobs that do not read back as records, each with its claim when that reads,
/// and why.
type Unreadable = Vec<(Option<Claim>, Error)>;

/// The most due jobs a claim promotes per queue and set before claiming.
const CLAIM_PROMOTE_LIMIT: usize = 1_000;

impl RedisStorage {
    pub(crate) async fn claim_jobs(&self, params: ClaimParams) -> Result<PacedClaim> {
        for queue in &params.queues {
            validate_queue_name(queue)?;
        }
        let limit = params.limit.min(MAX_CLAIM);
        let names = distinct(params.queues.iter().map(String::as_str));
        if limit == 0 || names.is_empty() {
            return Ok(PacedClaim::new(Vec::new()));
        }
        let queues: Vec<QueueKeys> = names.iter().map(|name| self.inner.keys.queue(name)).collect();
        let claimed = if !self.is_cluster() || queues.len() == 1 {
            let refs: Vec<&QueueKeys> = queues.iter().collect();
            self.claim_from(&refs, limit, &params).await?
        } else {
            self.claim_across_slots(&queues, limit, &params).await?
        };
        self.remember(claimed.jobs.iter().map(|job| (job.id, job.queue.as_str())));
        Ok(claimed)
    }

    /// One run of `claim.lua` over `queues`.
    async fn claim_from(&self, queues: &[&QueueKeys], limit: usize, params: &ClaimParams) -> Result<PacedClaim> {
        let mut call = with_head(&scripts().claim, &self.inner.keys, params.now, false, queues);
        call.arg(limit)
            .arg(duration_micros(params.lease))
            .arg(&params.worker_id)
            .arg(CLAIM_PROMOTE_LIMIT)
            .arg(KEY_LIMIT_SCAN);
        let tokens: Vec<String> = (0..limit).map(|_| LeaseToken::new().to_string()).collect();
        for token in &tokens {
            call.arg(token);
        }
        let (claimed, unreadable, stopped) = paced_claim(self.run(&call).await?, tokens, &params.worker_id)?;
        if let Some(failure) = stopped {
            // The jobs taken are marked running: hand them over. A member that is no job
            // (its key is not a hash) was taken out of its queue; a job that could not be
            // taken for another reason stays available, and the next claim meets it again.
            tracing::error!(%failure, taken = claimed.jobs.len(), "a claim met what it could not take; the jobs it took are handed over");
        }
        self.discard_unreadable(unreadable, params).await;
        Ok(claimed)
    }

    /// Discards the jobs a claim took but cannot hand over, because a field haul writes
    /// does not read back (a job hash written by hand): each gets the reason, so that it
    /// neither fails the claim of the jobs taken with it nor comes back after its lease.
    /// A job whose id or lease token cannot be read, or whose discard fails, is left to
    /// its lease.
    async fn discard_unreadable(&self, unreadable: Unreadable, params: &ClaimParams) {
        let mut reports = Vec::new();
        for (claim, error) in unreadable {
            tracing::error!(id = ?claim.map(|claim| claim.id), %error, "a claimed job cannot be read; discarding it");
            if let Some(claim) = claim {
                let reason = format!("the stored job cannot be read: {error}");
                reports.push(Report { claim, outcome: JobOutcome::Discarded { reason } });
            }
        }
        if !reports.is_empty() {
            let mut report = ReportParams::new(reports);
            report.now = params.now;
            // The jobs claimed with them are handed over all the same.
            match self.report_outcomes(report).await {
                Ok(outcome) => {
                    for claim in outcome.rejected {
                        tracing::warn!(id = %claim.id, "could not find an unreadable claimed job to discard it; it is rescued after its lease");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not discard unreadable claimed jobs; they are rescued after their leases");
                }
            }
        }
    }

    /// On a cluster, the queues live in different slots: look at the heads of their
    /// available sets first (no more of a queue with a concurrency limit than its free
    /// slots), share the limit out in claim order, then claim from each queue its
    /// share. What is left (queues whose due jobs were not promoted yet, or whose
    /// limits per key held jobs of the head back) is claimed queue by queue, leaving
    /// out the queues that gave less than their share: their script found no more.
    /// Each claim checks its queue's limits again, atomically, rate limits included
    /// (the start sets live in the queue's slot), and the claim tells the sooner of
    /// the runs' waits for a rate limit. A queue whose run fails is left out of the rest
    /// of the claim, and the other queues' jobs are handed over: the claim fails only
    /// when no run took a job.
    async fn claim_across_slots(&self, queues: &[QueueKeys], limit: usize, params: &ClaimParams) -> Result<PacedClaim> {
        /// Per queue: the paused flag, the limits, the running jobs, the head.
        const PER_QUEUE: usize = 4;
        let mut commands = Vec::with_capacity(queues.len() * PER_QUEUE);
        for queue in queues {
            commands.push(redis::cmd("EXISTS").arg(queue.paused()).clone());
            commands.push(redis::cmd("HGET").arg(queue.limits()).arg("concurrency").clone());
            commands.push(redis::cmd("ZCARD").arg(queue.running()).clone());
            commands.push(redis::cmd("ZRANGE").arg(queue.available()).arg(0).arg(limit - 1).arg("WITHSCORES").clone());
        }
        let replies = self.query_all(commands).await?;
        let mut heads: Vec<(f64, String, usize)> = Vec::new();
        let mut replies = replies.into_iter();
        for at in 0..queues.len() {
            let (Some(paused), Some(concurrency), Some(running), Some(head)) =
                (replies.next(), replies.next(), replies.next(), replies.next())
            else {
                break;
            };
            if reply::int(paused)? != 0 {
                continue;
            }
            let free = match concurrency {
                Value::Nil => limit,
                concurrency => {
                    let running = usize::try_from(reply::int(running)?).unwrap_or(0);
                    usize::try_from(reply::int(concurrency)?).unwrap_or(0).saturating_sub(running)
                }
            };
            let mut items = reply::array(head)?.into_iter();
            let mut taken = 0;
            while let (true, Some(member), Some(score)) = (taken < free, items.next(), items.next()) {
                let score = reply::string(score)?.parse::<f64>().unwrap_or(0.0);
                heads.push((score, reply::string(member)?, at));
                taken += 1;
            }
        }
        heads.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut shares = vec![0_usize; queues.len()];
        for (_, _, at) in heads.iter().take(limit) {
            shares[*at] += 1;
        }

        let mut claimed = PacedClaim::new(Vec::new());
        let mut failed = vec![false; queues.len()];
        let mut first_error = None;
        let mut drained = vec![false; queues.len()];
        for ((queue, &share), (drained, failed)) in queues.iter().zip(&shares).zip(drained.iter_mut().zip(&mut failed))
        {
            if share > 0 {
                match self.claim_from(&[queue], share, params).await {
                    Ok(part) => {
                        *drained = part.jobs.len() < share;
                        claimed = merge(claimed, part);
                    }
                    Err(error) => {
                        *failed = true;
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        for ((queue, drained), failed) in queues.iter().zip(drained).zip(failed) {
            if claimed.jobs.len() >= limit {
                break;
            }
            if !drained && !failed {
                match self.claim_from(&[queue], limit - claimed.jobs.len(), params).await {
                    Ok(part) => claimed = merge(claimed, part),
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        match first_error {
            Some(error) if claimed.jobs.is_empty() => Err(error),
            Some(error) => {
                // The jobs claimed from the other queues are marked running: hand them over.
                tracing::error!(%error, taken = claimed.jobs.len(), "claiming from a queue failed; the jobs claimed from the other queues are handed over");
                Ok(claimed)
            }
            None => Ok(claimed),
        }
    }
}

/// A claim's reply from `claim.lua`: `{wait, now, deadline, jobs[, failure]}`, where
/// `wait` is how many ms until a rate limit that held back a job lets one more start, or
/// -1 when none did, `jobs` the claimed jobs' fields as read before the claim (but the
/// attempt), the n-th claimed under the n-th of `tokens`, and `failure` what the claim
/// could not take: the members it took out of their queues as no job, the job it
/// stopped at and why. Also the jobs that do not read back as records, each with its claim
/// when that reads.
fn paced_claim(value: Value, tokens: Vec<String>, worker: &str) -> Result<(PacedClaim, Unreadable, Option<String>)> {
    let mut parts = reply::array(value)?.into_iter();
    let wait = parts.next().map(reply::int).transpose()?.unwrap_or(-1);
    let now = parts.next().map(reply::string).transpose()?.unwrap_or_default();
    let deadline = parts.next().map(reply::string).transpose()?.unwrap_or_default();
    let listed = parts.next().map(reply::field_lists).transpose()?.unwrap_or_default();
    // Read whatever it holds: the jobs are handed over either way.
    let stopped = parts.next().map(|failure| reply::string(failure).unwrap_or_else(|error| error.to_string()));
    if listed.len() > tokens.len() {
        return Err(corrupt(format!("a claim of at most {} jobs returned {}", tokens.len(), listed.len())));
    }
    let (mut jobs, mut unreadable) = (Vec::with_capacity(listed.len()), Vec::new());
    for (mut fields, token) in listed.into_iter().zip(tokens) {
        // What the claim wrote besides the attempt, as the script wrote it.
        for (name, value) in [
            ("state", "running"),
            ("attempted_at", now.as_str()),
            ("lease_expires_at", deadline.as_str()),
            ("claimed_by", worker),
        ] {
            fields.insert(name.to_owned(), value.to_owned());
        }
        fields.insert("lease_token".to_owned(), token);
        match record_from_fields(&fields) {
            Ok(record) => jobs.push(record),
            Err(error) => unreadable.push((claim_of(&fields), error)),
        }
    }
    let wait = u64::try_from(wait).ok().map(Duration::from_millis);
    Ok((PacedClaim::new(jobs).rate_limited_for(wait), unreadable, stopped))
}

/// The claim of a claimed job's fields, when its id and lease token read.
fn claim_of(fields: &Fields) -> Option<Claim> {
    let uuid = |name: &str| parse_uuid(fields, name).ok();
    Some(Claim { id: JobId(uuid("id")?), token: LeaseToken(uuid("lease_token")?) })
}

/// The claims of two runs as one: the jobs of both, in order, and the sooner of their
/// waits for a rate limit.
fn merge(first: PacedClaim, second: PacedClaim) -> PacedClaim {
    let wait = match (first.rate_limited_for, second.rate_limited_for) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut jobs = first.jobs;
    jobs.extend(second.jobs);
    PacedClaim::new(jobs).rate_limited_for(wait)
}
