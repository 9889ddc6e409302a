//! enqueue: validate the whole batch, decide which unique jobs to skip, then one script
//! stores all of the rest or none. Every step is linear in the batch's size.

use std::collections::HashMap;

use haul_core::{
    EnqueueOutcome, EnqueueParams, Error, ErrorKind, JobId, JobRecord, JobState, NewJob, Result, RunAt, Timestamp,
    Unique,
};
use redis::Value;
use uuid::Uuid;

use super::distinct;
use crate::{
    BACKEND, RedisStorage,
    codec::{duration_micros, from_micros, micros, record_from_fields, reply},
    error::corrupt,
    keys::{QueueKeys, unique_digest, unique_member, unique_prefix},
    scripts::{scripts, with_head},
};

/// How many times an enqueue decides again which unique jobs to skip, when jobs with
/// their keys keep being enqueued concurrently, before it fails with a conflict.
const UNIQUE_ATTEMPTS: usize = 16;

/// The values of one job in `enqueue.lua`'s ARGV, after its group number.
struct Encoded {
    id: String,
    kind: String,
    args: String,
    priority: String,
    run_at: String,
    max_attempts: String,
    timeout: String,
    unique_key: String,
    unique_digest: String,
    unique_member: String,
    /// The metadata as a JSON object, or empty for none (no field is written then).
    metadata: String,
    /// The limit key, or empty for none (a limit key is never empty).
    limit_key: String,
}

/// The uniqueness check of one key: the unique-index member prefix of the key and the
/// members seen when the skips were decided. The script refuses the batch if the key
/// has members beyond them (a job with the key was enqueued meanwhile).
struct Check {
    prefix: String,
    seen: Vec<String>,
}

/// A job that may block a unique job of the batch.
enum Holder {
    /// A stored job, as read back.
    Stored(Box<JobRecord>),
    /// An earlier job of the batch, or a job whose index entry exists but whose hash is
    /// not written yet (on a cluster, between `reserve.lua` and `enqueue.lua`): a new
    /// job, created now, in this state.
    New { id: JobId, state: JobState },
}

impl Holder {
    fn id(&self) -> JobId {
        match self {
            Self::Stored(record) => record.id,
            Self::New { id, .. } => *id,
        }
    }

    /// [`Unique::is_blocked_by`]; a new job was created now, so only an empty window
    /// excludes it.
    fn blocks(&self, unique: &Unique, now: Timestamp) -> bool {
        match self {
            Self::Stored(record) => unique.is_blocked_by(record, now),
            Self::New { state, .. } => {
                unique.states.contains(state) && unique.window.is_none_or(|window| !window.is_zero())
            }
        }
    }
}

/// The jobs that may block the unique jobs of one key.
#[derive(Default)]
struct KeyHolders<'a> {
    /// The jobs the unique index listed, read before anything of the batch is decided.
    stored: Vec<Holder>,
    /// The smallest id among `stored` that blocks each distinct [`Unique`] of the key
    /// met so far (usually one), so the stored jobs are looked at once per `Unique`.
    blocking: Vec<(&'a Unique, Option<JobId>)>,
    /// The batch's jobs stored so far with the key, by the state a new job can have
    /// (scheduled, available): the one with the smallest id. New jobs of one state
    /// block exactly the same later jobs, so that one stands for all.
    earlier: [Option<Holder>; 2],
    /// Whether the batch stores a job with the key (the script then checks it).
    stored_one: bool,
}

impl<'a> KeyHolders<'a> {
    /// The smallest id among the jobs that block `unique`, if any.
    fn blocking(&mut self, unique: &'a Unique, now: Timestamp) -> Option<JobId> {
        let stored = match self.blocking.iter().find(|(seen, _)| *seen == unique) {
            Some((_, blocker)) => *blocker,
            None => {
                let blocker = self.stored.iter().filter(|holder| holder.blocks(unique, now)).map(Holder::id).min();
                self.blocking.push((unique, blocker));
                blocker
            }
        };
        let earlier = self.earlier.iter().flatten().filter(|holder| holder.blocks(unique, now)).map(Holder::id).min();
        stored.into_iter().chain(earlier).min()
    }

    /// Records that the batch stores job `id` with the key, in `state`.
    fn store(&mut self, id: JobId, state: JobState) {
        self.stored_one = true;
        let slot = &mut self.earlier[usize::from(state == JobState::Available)];
        if slot.as_ref().is_none_or(|known| id < known.id()) {
            *slot = Some(Holder::New { id, state });
        }
    }
}

/// What an enqueue stores: per input job, `None` to store it or the id of the job that
/// blocks it, and the checks the script makes.
struct Plan {
    skip: Vec<Option<JobId>>,
    checks: Vec<Check>,
}

impl RedisStorage {
    pub(crate) async fn enqueue_jobs(&self, params: EnqueueParams) -> Result<EnqueueOutcome> {
        let EnqueueParams { jobs, now, .. } = params;
        if jobs.is_empty() {
            return Ok(EnqueueOutcome::new(Vec::new()));
        }
        NewJob::validate_batch(&jobs)?;
        let encoded = jobs.iter().map(encode).collect::<Result<Vec<_>>>()?;
        for _ in 0..UNIQUE_ATTEMPTS {
            let plan = if jobs.iter().any(|job| job.unique.is_some()) {
                self.plan_unique(&jobs, &encoded, now).await?
            } else {
                Plan { skip: vec![None; jobs.len()], checks: Vec::new() }
            };
            let stored: Vec<(&NewJob, &Encoded)> = jobs
                .iter()
                .zip(&encoded)
                .zip(&plan.skip)
                .filter(|(_, skip)| skip.is_none())
                .map(|(job, _)| job)
                .collect();
            if !stored.is_empty() && !self.store(&stored, &plan.checks, now).await? {
                continue;
            }
            let ids = jobs.iter().zip(&plan.skip).map(|(job, skip)| skip.unwrap_or(job.id)).collect();
            let duplicates = plan.skip.iter().flatten().copied().collect();
            return Ok(EnqueueOutcome::new(ids).with_duplicates(duplicates));
        }
        Err(Error::backend(
            BACKEND,
            ErrorKind::Conflict,
            format!("jobs with the same uniqueness keys were enqueued concurrently {UNIQUE_ATTEMPTS} times in a row"),
            None,
        ))
    }

    /// Reads the jobs that hold the batch's uniqueness keys and decides which jobs of
    /// the batch they (or earlier jobs of the batch) block.
    async fn plan_unique(&self, jobs: &[NewJob], encoded: &[Encoded], now: Option<Timestamp>) -> Result<Plan> {
        // The batch's distinct keys, in order of first appearance, each with its digest.
        let mut positions: HashMap<&str, usize> = HashMap::new();
        let mut digests: Vec<&str> = Vec::new();
        for (job, encoded) in jobs.iter().zip(encoded) {
            if let Some(unique) = &job.unique {
                positions.entry(unique.key.as_str()).or_insert_with(|| {
                    digests.push(&encoded.unique_digest);
                    digests.len() - 1
                });
            }
        }
        let index = self.inner.keys.unique();
        let mut commands: Vec<redis::Cmd> = digests
            .iter()
            .map(|digest| {
                let prefix = unique_prefix(digest);
                let mut max = Vec::with_capacity(prefix.len() + 2);
                max.push(b'(');
                max.extend_from_slice(prefix.as_bytes());
                max.push(0xff);
                redis::cmd("ZRANGEBYLEX").arg(&index).arg(format!("[{prefix}")).arg(max).clone()
            })
            .collect();
        if now.is_none() {
            commands.push(redis::cmd("TIME"));
        }
        let mut replies = self.query_all(commands).await?;
        let now = match now {
            Some(now) => now,
            None => server_time(replies.pop().unwrap_or(Value::Nil))?,
        };
        let seen = replies
            .into_iter()
            .map(|members| reply::array(members)?.into_iter().map(reply::string).collect::<Result<Vec<String>>>())
            .collect::<Result<Vec<_>>>()?;

        let mut located = Vec::new();
        for (at, members) in seen.iter().enumerate() {
            let prefix = digests.get(at).map(|digest| unique_prefix(digest)).unwrap_or_default();
            for member in members {
                let (id, queue) = member
                    .strip_prefix(&prefix)
                    .and_then(|rest| Some((rest.get(..36)?, rest.get(36..)?.strip_prefix(':')?)))
                    .ok_or_else(|| corrupt(format!("`{member}` is not a unique-index member")))?;
                let id = id.parse::<Uuid>().map_err(|_| corrupt(format!("`{member}` has no job id")))?;
                located.push((at, JobId(id), queue));
            }
        }
        let reads = located
            .iter()
            .map(|(_, id, queue)| redis::cmd("HGETALL").arg(self.inner.keys.queue(queue).job(*id)).clone());
        let hashes = self.query_all(reads.collect()).await?;
        let mut holders: Vec<KeyHolders<'_>> = digests.iter().map(|_| KeyHolders::default()).collect();
        for ((at, id, _), hash) in located.iter().zip(hashes) {
            let fields = reply::fields(hash)?;
            let holder = if fields.is_empty() {
                Holder::New { id: *id, state: JobState::Available }
            } else {
                // A stored job whose key differs has a digest collision: `blocks`
                // compares the keys themselves, so it never blocks.
                Holder::Stored(Box::new(record_from_fields(&fields)?))
            };
            if let Some(key) = holders.get_mut(*at) {
                key.stored.push(holder);
            }
        }

        let mut skip = Vec::with_capacity(jobs.len());
        for job in jobs {
            let Some(unique) = &job.unique else {
                skip.push(None);
                continue;
            };
            let key = positions.get(unique.key.as_str()).and_then(|&at| holders.get_mut(at));
            let Some(key) = key else { return Err(corrupt("a uniqueness key of the batch was not looked up")) };
            let blocking = key.blocking(unique, now);
            if blocking.is_none() {
                key.store(job.id, initial_state(job, now));
            }
            skip.push(blocking);
        }
        let checks = holders
            .iter()
            .zip(digests)
            .zip(seen)
            .filter(|((key, _), _)| key.stored_one)
            .map(|((_, digest), seen)| Check { prefix: unique_prefix(digest), seen })
            .collect();
        Ok(Plan { skip, checks })
    }

    /// Stores `jobs`, unless a check finds that a job with one of their keys was
    /// enqueued meanwhile: then nothing is stored and the result is `false`.
    async fn store(&self, jobs: &[(&NewJob, &Encoded)], checks: &[Check], now: Option<Timestamp>) -> Result<bool> {
        let names = distinct(jobs.iter().map(|(job, _)| job.queue.as_str()));
        let queues: Vec<QueueKeys> = names.iter().map(|name| self.inner.keys.queue(name)).collect();
        let numbers: HashMap<&str, usize> = names.iter().enumerate().map(|(at, name)| (*name, at + 1)).collect();
        let groups: Vec<usize> =
            jobs.iter().map(|(job, _)| numbers.get(job.queue.as_str()).copied().unwrap_or(1)).collect();

        if !self.is_cluster() {
            let refs: Vec<&QueueKeys> = queues.iter().collect();
            let mut call = with_head(&scripts().enqueue, &self.inner.keys, now, true, &refs);
            push_checks(&mut call, checks);
            for (group, (_, job)) in groups.iter().zip(jobs) {
                push_job(&mut call, *group, job);
            }
            return check(self.run(&call).await?);
        }

        // A cluster: index the batch in the prefix's slot (which also finds duplicate
        // ids and makes the uniqueness checks), then store it queue by queue.
        let members: Vec<String> = jobs.iter().map(|(job, _)| format!("{}:{}", job.id, job.queue)).collect();
        let mut reserve = scripts().reserve.prepare_invoke();
        reserve
            .key(self.inner.keys.jobs())
            .key(self.inner.keys.queues())
            .key(self.inner.keys.unique())
            .arg(names.len());
        for name in &names {
            reserve.arg(*name);
        }
        push_checks(&mut reserve, checks);
        let uniques: Vec<&String> =
            jobs.iter().map(|(_, job)| &job.unique_member).filter(|member| !member.is_empty()).collect();
        reserve.arg(uniques.len());
        for member in &uniques {
            reserve.arg(*member);
        }
        for member in &members {
            reserve.arg(member);
        }
        if !check(self.run(&reserve).await?)? {
            return Ok(false);
        }
        for (at, queue) in queues.iter().enumerate() {
            let mut call = with_head(&scripts().enqueue, &self.inner.keys, now, false, &[queue]);
            call.arg(0);
            for (group, (_, job)) in groups.iter().zip(jobs) {
                if *group == at + 1 {
                    push_job(&mut call, 1, job);
                }
            }
            let stored = self.run(&call).await.and_then(check);
            if let Err(error) = stored {
                // Unindex the jobs of this queue and the next ones, which were not stored.
                let unstored = groups.iter().zip(jobs.iter().zip(&members)).filter(|(group, _)| **group > at);
                let (mut index, mut unique) = (Vec::new(), Vec::new());
                for (_, ((_, job), member)) in unstored {
                    index.push(member);
                    if !job.unique_member.is_empty() {
                        unique.push(&job.unique_member);
                    }
                }
                let mut unindexed: redis::RedisResult<u64> =
                    redis::cmd("ZREM").arg(self.inner.keys.jobs()).arg(index).query_async(&mut self.conn()).await;
                if unindexed.is_ok() && !unique.is_empty() {
                    unindexed = redis::cmd("ZREM")
                        .arg(self.inner.keys.unique())
                        .arg(unique)
                        .query_async(&mut self.conn())
                        .await;
                }
                if let Err(cleanup) = unindexed {
                    tracing::warn!(%cleanup, "could not unindex the jobs of a failed enqueue");
                }
                return Err(error);
            }
        }
        Ok(true)
    }
}

/// The state a new job is stored in.
fn initial_state(job: &NewJob, now: Timestamp) -> JobState {
    let later = match job.run_at {
        RunAt::Now => false,
        RunAt::At(at) => micros(at) > micros(now),
        RunAt::In(delay) => duration_micros(delay) > 0,
    };
    if later { JobState::Scheduled } else { JobState::Available }
}

/// The reply of `TIME`: seconds and microseconds.
fn server_time(value: Value) -> Result<Timestamp> {
    let parts = reply::array(value)?
        .into_iter()
        .map(|part| reply::string(part)?.parse::<i64>().map_err(|_| corrupt("`TIME` replied a non-number")))
        .collect::<Result<Vec<i64>>>()?;
    let [seconds, fraction] = parts[..] else { return Err(corrupt("`TIME` replied other than two numbers")) };
    from_micros(seconds.saturating_mul(1_000_000).saturating_add(fraction))
}

fn push_checks(call: &mut redis::ScriptInvocation<'_>, checks: &[Check]) {
    call.arg(checks.len());
    for check in checks {
        call.arg(&check.prefix).arg(check.seen.len());
        for member in &check.seen {
            call.arg(member);
        }
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
        .arg(&job.timeout)
        .arg(&job.unique_key)
        .arg(&job.unique_digest)
        .arg(&job.metadata)
        .arg(&job.limit_key);
}

/// The reply of `enqueue.lua` or `reserve.lua`: `{}` (true), `{'changed'}` (false), or
/// `{'duplicate', id}`.
fn check(value: Value) -> Result<bool> {
    let mut items = reply::array(value)?.into_iter();
    match items.next() {
        None => Ok(true),
        Some(status) => match reply::string(status)?.as_str() {
            "changed" => Ok(false),
            "duplicate" => {
                let id = items.next().map(reply::string).transpose()?.unwrap_or_default();
                let id = id.parse::<Uuid>().map_err(|_| corrupt(format!("`{id}` is not a job id")))?;
                Err(Error::DuplicateId(JobId(id)))
            }
            other => Err(corrupt(format!("unexpected reply `{other}` from enqueue"))),
        },
    }
}

fn encode(job: &NewJob) -> Result<Encoded> {
    let args =
        serde_json::to_string(&job.args).map_err(|source| Error::Serialization { kind: job.kind.clone(), source })?;
    let run_at = match job.run_at {
        RunAt::Now => "n".to_owned(),
        RunAt::At(at) => format!("a{}", micros(at)),
        RunAt::In(delay) => format!("d{}", duration_micros(delay)),
    };
    let (unique_key, unique_digest, unique_member) = match &job.unique {
        Some(unique) => {
            let digest = unique_digest(&unique.key);
            let member = unique_member(&digest, job.id, &job.queue);
            (unique.key.clone(), digest, member)
        }
        None => (String::new(), String::new(), String::new()),
    };
    let metadata = if job.metadata.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&job.metadata)
            .map_err(|source| Error::Serialization { kind: job.kind.clone(), source })?
    };
    Ok(Encoded {
        id: job.id.to_string(),
        kind: job.kind.clone(),
        args,
        priority: job.priority.to_string(),
        run_at,
        max_attempts: job.max_attempts.to_string(),
        timeout: job.timeout.map(|timeout| duration_micros(timeout).to_string()).unwrap_or_default(),
        unique_key,
        unique_digest,
        unique_member,
        metadata,
        limit_key: job.limit_key.clone().unwrap_or_default(),
    })
}
