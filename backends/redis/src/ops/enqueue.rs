//! enqueue: validate the whole batch, then one script stores all of it or none.

use std::collections::HashSet;

use haul_core::{
    EnqueueOutcome, EnqueueParams, Error, JobId, NewJob, Result, RunAt, validate_kind_name, validate_queue_name,
};
use redis::Value;
use uuid::Uuid;

use super::distinct;
use crate::{
    RedisStorage,
    codec::{duration_micros, micros, reply},
    error::corrupt,
    keys::QueueKeys,
    scripts::{scripts, with_head},
};

/// The values of one job in `enqueue.lua`'s ARGV, after its group number.
struct Encoded {
    id: String,
    kind: String,
    args: String,
    priority: String,
    run_at: String,
    max_attempts: String,
    timeout: String,
}

impl RedisStorage {
    pub(crate) async fn enqueue_jobs(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        let EnqueueParams { jobs, now, .. } = params;
        if jobs.is_empty() {
            return Ok(EnqueueOutcome::new(Vec::new()));
        }
        validate(&jobs)?;
        let ids: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
        let names = distinct(jobs.iter().map(|job| job.queue.as_str()));
        let queues: Vec<QueueKeys> = names.iter().map(|name| self.inner.keys.queue(name)).collect();
        let encoded = jobs.iter().map(encode).collect::<Result<Vec<_>>>()?;
        let groups: Vec<usize> =
            jobs.iter().map(|job| names.iter().position(|name| *name == job.queue).unwrap_or(0) + 1).collect();

        if !self.is_cluster() {
            let refs: Vec<&QueueKeys> = queues.iter().collect();
            let mut call = with_head(&scripts().enqueue, &self.inner.keys, now, true, &refs);
            for (group, job) in groups.iter().zip(&encoded) {
                push_job(&mut call, *group, job);
            }
            check(self.run(&call).await?)?;
            return Ok(EnqueueOutcome::new(ids));
        }

        // A cluster: index the batch in the prefix's slot (which also finds duplicate
        // ids), then store it queue by queue.
        let members: Vec<String> = jobs.iter().map(|job| format!("{}:{}", job.id, job.queue)).collect();
        let mut reserve = scripts().reserve.prepare_invoke();
        reserve.key(self.inner.keys.jobs()).key(self.inner.keys.queues()).arg(names.len());
        for name in &names {
            reserve.arg(*name);
        }
        for member in &members {
            reserve.arg(member);
        }
        check(self.run(&reserve).await?)?;
        for (at, queue) in queues.iter().enumerate() {
            let mut call = with_head(&scripts().enqueue, &self.inner.keys, now, false, &[queue]);
            for (group, job) in groups.iter().zip(&encoded) {
                if *group == at + 1 {
                    push_job(&mut call, 1, job);
                }
            }
            let stored = self.run(&call).await.and_then(check);
            if let Err(error) = stored {
                // Unindex the jobs of this queue and the next ones, which were not stored.
                let unstored: Vec<&String> =
                    groups.iter().zip(&members).filter(|(group, _)| **group > at).map(|(_, member)| member).collect();
                let unindexed: redis::RedisResult<u64> =
                    redis::cmd("ZREM").arg(self.inner.keys.jobs()).arg(unstored).query_async(&mut self.conn()).await;
                if let Err(cleanup) = unindexed {
                    tracing::warn!(%cleanup, "could not unindex the jobs of a failed enqueue");
                }
                return Err(error);
            }
        }
        Ok(EnqueueOutcome::new(ids))
    }
}

fn push_job(call: &mut redis::ScriptInvocation<'_>, group: usize, job: &Encoded) {
    call.arg(group)
        .arg(&job.id)
        .arg(&job.kind)
        .arg(&job.args)
        .arg(&job.priority)
        .arg(&job.run_at)
        .arg(&job.max_attempts)
        .arg(&job.timeout);
}

/// The reply of `enqueue.lua` or `reserve.lua`: `{}`, or `{'duplicate', id}`.
fn check(value: Value) -> Result<()> {
    let mut items = reply::array(value)?.into_iter();
    match items.next() {
        None => Ok(()),
        Some(status) if reply::string(status.clone())? == "duplicate" => {
            let id = items.next().map(reply::string).transpose()?.unwrap_or_default();
            let id = id.parse::<Uuid>().map_err(|_| corrupt(format!("`{id}` is not a job id")))?;
            Err(Error::DuplicateId(JobId(id)))
        }
        Some(other) => Err(corrupt(format!("unexpected reply {other:?} from enqueue"))),
    }
}

/// Checks the whole batch before anything is sent: names, attempts, arguments, ids.
fn validate(jobs: &[NewJob]) -> Result<()> {
    let mut seen = HashSet::with_capacity(jobs.len());
    for job in jobs {
        validate_queue_name(&job.queue)?;
        validate_kind_name(&job.kind)?;
        if job.max_attempts == 0 {
            return Err(Error::InvalidArgument(
                format!("job {} of kind `{}` has max_attempts 0; it needs at least 1", job.id, job.kind).into(),
            ));
        }
        if !job.args.is_object() {
            return Err(Error::InvalidArgument(
                format!("job {} of kind `{}` has arguments that are not a JSON object", job.id, job.kind).into(),
            ));
        }
        if job.unique.is_some() {
            return Err(Error::Unsupported { backend: crate::BACKEND, feature: "unique jobs (not implemented yet)" });
        }
        if !seen.insert(job.id) {
            return Err(Error::DuplicateId(job.id));
        }
    }
    Ok(())
}

fn encode(job: &NewJob) -> Result<Encoded> {
    let args =
        serde_json::to_string(&job.args).map_err(|source| Error::Serialization { kind: job.kind.clone(), source })?;
    let run_at = match job.run_at {
        RunAt::Now => "n".to_owned(),
        RunAt::At(at) => format!("a{}", micros(at)),
        RunAt::In(delay) => format!("d{}", duration_micros(delay)),
    };
    Ok(Encoded {
        id: job.id.to_string(),
        kind: job.kind.clone(),
        args,
        priority: job.priority.to_string(),
        run_at,
        max_attempts: job.max_attempts.to_string(),
        timeout: job.timeout.map(|timeout| duration_micros(timeout).to_string()).unwrap_or_default(),
    })
}
