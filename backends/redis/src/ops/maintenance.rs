//! promote_due, rescue_expired and prune: one script over every known queue (per queue
//! on a cluster), run again while a queue had more work than one run takes (for prune:
//! more than [`PRUNE_BATCH`] jobs, up to its limit).

use haul_core::{PruneParams, RescueOutcome, Result, Timestamp};

use crate::{
    RedisStorage,
    codec::{duration_micros, reply},
    keys::QueueKeys,
    ops::admin::IndexMembers,
    scripts::{scripts, with_head},
};

/// The most jobs one script run moves per queue and set, so that no run blocks the
/// server for long.
const BATCH: usize = 1_000;

/// The most jobs one run of `prune.lua` deletes; `prune` runs it again (up to its
/// `limit`) while a run deleted this many, so that a caller pruning in a loop never
/// blocks the server for long. Chosen by measurement (`tests/prune_batch.rs`, run with
/// `-- --ignored --nocapture`: each run's time from `SLOWLOG`): on Redis 7.0 on a busy
/// two-core machine, pruning 10,000 completed jobs in runs of 250 took a median of
/// 1.5 to 2.4 ms per run (p90 1.8 to 2.9 ms, max 4.5 ms) over 1 to 20 queues, with and
/// without unique keys, about 0.2 s in all; a single run of 10,000 took 83 to 185 ms.
const PRUNE_BATCH: usize = 250;

/// The error recorded against an attempt whose lease ran out (the memory backend's
/// words).
pub(crate) const LEASE_EXPIRED: &str = "lease expired: the worker holding the job stopped heartbeating";

impl RedisStorage {
    /// The queue groups of every known queue, as script runs: all in one on a server,
    /// one per queue on a cluster.
    async fn maintenance_runs(&self) -> Result<Vec<Vec<QueueKeys>>> {
        let queues: Vec<QueueKeys> = self.queue_names().await?.iter().map(|name| self.inner.keys.queue(name)).collect();
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        Ok(if self.is_cluster() { queues.into_iter().map(|queue| vec![queue]).collect() } else { vec![queues] })
    }

    pub(crate) async fn promote(&self, now: Option<Timestamp>) -> Result<u64> {
        let mut moved = 0;
        for run in self.maintenance_runs().await? {
            let queues: Vec<&QueueKeys> = run.iter().collect();
            loop {
                let mut call = with_head(&scripts().promote, &self.inner.keys, now, false, &queues);
                call.arg(BATCH);
                let mut result = reply::array(self.run(&call).await?)?.into_iter();
                let (Some(count), Some(more)) = (result.next(), result.next()) else { break };
                moved += u64::try_from(reply::int(count)?).unwrap_or(0);
                if reply::int(more)? == 0 {
                    break;
                }
            }
        }
        Ok(moved)
    }

    pub(crate) async fn rescue(&self, now: Option<Timestamp>) -> Result<RescueOutcome> {
        let mut outcome = RescueOutcome::default();
        for run in self.maintenance_runs().await? {
            let queues: Vec<&QueueKeys> = run.iter().collect();
            loop {
                let mut call = with_head(&scripts().rescue, &self.inner.keys, now, false, &queues);
                call.arg(BATCH).arg(LEASE_EXPIRED);
                let counts = reply::array(self.run(&call).await?)?
                    .into_iter()
                    .map(|count| reply::int(count).map(|count| u64::try_from(count).unwrap_or(0)))
                    .collect::<Result<Vec<u64>>>()?;
                let [rescued, discarded, cancelled, more] = counts[..] else { break };
                outcome.rescued += rescued;
                outcome.discarded += discarded;
                outcome.cancelled += cancelled;
                if more == 0 {
                    break;
                }
            }
        }
        Ok(outcome)
    }

    /// Deletes up to `limit` finished jobs past their retention, in runs of
    /// `prune.lua` of at most [`PRUNE_BATCH`] jobs each (per queue on a cluster),
    /// oldest first within a run; stops at `limit` or when nothing is left.
    pub(crate) async fn prune_finished(&self, params: PruneParams) -> Result<u64> {
        let PruneParams { retention, limit, now, .. } = params;
        let keep = [retention.completed, retention.discarded, retention.cancelled].map(duration_micros);
        let mut pruned = 0_usize;
        'runs: for run in self.maintenance_runs().await? {
            let queues: Vec<&QueueKeys> = run.iter().collect();
            loop {
                let batch = limit.saturating_sub(pruned).min(PRUNE_BATCH);
                if batch == 0 {
                    break 'runs;
                }
                let deleted = self.prune_batch(&queues, now, keep, batch).await?;
                pruned += deleted;
                if deleted < batch {
                    break;
                }
            }
        }
        Ok(u64::try_from(pruned).unwrap_or(u64::MAX))
    }

    /// One run of `prune.lua` over `queues`, deleting up to `batch` jobs; on a cluster,
    /// then removes their members from the indexes in the prefix's slot. Returns how
    /// many jobs it deleted.
    async fn prune_batch(
        &self,
        queues: &[&QueueKeys],
        now: Option<Timestamp>,
        keep: [i64; 3],
        batch: usize,
    ) -> Result<usize> {
        let global = !self.is_cluster();
        let mut call = with_head(&scripts().prune, &self.inner.keys, now, global, queues);
        call.arg(batch).arg(keep[0]).arg(keep[1]).arg(keep[2]);
        let reply =
            reply::array(self.run(&call).await?)?.into_iter().map(reply::string).collect::<Result<Vec<String>>>()?;
        // Pairs: the jobs-index member, then the unique-index member ('' for none).
        let members: Vec<IndexMembers> = reply
            .chunks(2)
            .map(|pair| IndexMembers { job: pair[0].clone(), unique: pair.get(1).cloned().unwrap_or_default() })
            .collect();
        self.unindex(&members).await?;
        Ok(members.len())
    }
}
