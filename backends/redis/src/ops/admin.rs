//! Operators' calls on one job or queue: cancel, retry, delete, pause and resume, get,
//! counts.

use std::collections::BTreeMap;

use haul_core::{AdminAction, Error, JobId, JobRecord, JobState, QueueCounts, Result, Timestamp, validate_queue_name};
use redis::{AsyncCommands, Script, ScriptInvocation, Value};

use crate::{
    RedisStorage,
    codec::reply,
    error::{corrupt, map_redis_error},
    keys::{QUEUE_SETS, QueueKeys},
    scripts::{head_command, scripts, with_head},
};

/// The states of [`QUEUE_SETS`], in the same order.
pub(crate) const SET_STATES: [JobState; 7] = [
    JobState::Scheduled,
    JobState::Available,
    JobState::Running,
    JobState::Retryable,
    JobState::Completed,
    JobState::Discarded,
    JobState::Cancelled,
];

/// The script of `operation`: an operator's change of one job is one script that
/// checks the job's state atomically, `cancel.lua`, `retry.lua` or `delete.lua`.
pub(crate) fn script(operation: AdminAction) -> &'static Script {
    match operation {
        AdminAction::Cancel => &scripts().cancel,
        AdminAction::Retry => &scripts().retry,
        AdminAction::Delete => &scripts().delete,
    }
}

/// The refusal by `operation` of a job in `state`.
fn refusal(operation: AdminAction, id: JobId, state: JobState) -> Error {
    let (operation, expected) = match operation {
        AdminAction::Cancel => ("cancel", "scheduled, available, retryable or running"),
        AdminAction::Retry => ("retry", "scheduled, available, retryable, completed, discarded or cancelled"),
        AdminAction::Delete => ("delete", "scheduled, available, retryable, completed, discarded or cancelled"),
    };
    Error::InvalidState { id, state, operation, expected }
}

/// Whether the script of `operation` takes the global keys: only `delete.lua`, and
/// only on one server (on a cluster the caller removes the members it returns, see
/// [`RedisStorage::unindex`]).
fn global(operation: AdminAction, storage: &RedisStorage) -> bool {
    matches!(operation, AdminAction::Delete) && !storage.is_cluster()
}

/// The invocation of `operation`'s script on job `id` of `queue`.
fn invocation(
    operation: AdminAction,
    storage: &RedisStorage,
    queue: &QueueKeys,
    id: JobId,
    now: Option<Timestamp>,
) -> ScriptInvocation<'static> {
    let mut call = with_head(script(operation), &storage.inner.keys, now, global(operation, storage), &[queue]);
    call.arg(id.to_string());
    call
}

/// The `EVALSHA` command of `operation`'s script on job `id` of `queue`, for a
/// pipeline (see [`RedisStorage::run_all`]). `allowed` lists the states the job must
/// still be in (see [`allowed_states`]; empty: any): a job in another state is refused
/// like a state the operation does not accept.
pub(crate) fn command(
    operation: AdminAction,
    storage: &RedisStorage,
    queue: &QueueKeys,
    id: JobId,
    allowed: &str,
    now: Option<Timestamp>,
) -> redis::Cmd {
    let mut command = head_command(script(operation), &storage.inner.keys, now, global(operation, storage), &[queue]);
    command.arg(id.to_string()).arg(allowed);
    command
}

/// The argument of the one-job scripts that names the states a job must be in for the
/// script to change it: `states` comma-separated, empty for any state.
pub(crate) fn allowed_states(states: &[JobState]) -> String {
    states.iter().map(|state| state.as_str()).collect::<Vec<_>>().join(",")
}

/// What the script of an operation ([`AdminAction`]) found.
pub(crate) enum Change {
    /// It applied: the rest of its reply (the job's fields after the change, or for a
    /// delete the job's index members).
    Done(Vec<Value>),
    /// There is no such job.
    Missing,
    /// The job is in a state the operation refuses.
    InState(JobState),
}

impl Change {
    /// Reads the reply of an operation's script about job `id`: `{'ok', ...}`,
    /// `{'missing'}` or `{'state', state}`.
    pub(crate) fn from_reply(value: Value, id: JobId) -> Result<Self> {
        let mut items = reply::array(value)?.into_iter();
        let status = items.next().map(reply::string).transpose()?.unwrap_or_default();
        match status.as_str() {
            "ok" => Ok(Self::Done(items.collect())),
            "missing" => Ok(Self::Missing),
            "state" => {
                let state = items.next().map(reply::string).transpose()?.unwrap_or_default();
                Ok(Self::InState(state.parse().map_err(|_| corrupt(format!("job {id} is in state `{state}`")))?))
            }
            _ => Err(corrupt(format!("unexpected reply `{status}` about job {id}"))),
        }
    }
}

/// The members of a deleted job in the jobs index and the unique index (empty for
/// none), as `delete.lua` and `prune.lua` return them (and `report.lua`, the first
/// alone), for [`RedisStorage::unindex`].
pub(crate) struct IndexMembers {
    pub(crate) job: String,
    pub(crate) unique: String,
}

impl IndexMembers {
    /// The members in the rest of a `delete.lua` reply.
    pub(crate) fn from_reply(rest: Vec<Value>) -> Result<Self> {
        let mut rest = rest.into_iter().map(reply::string);
        match (rest.next(), rest.next()) {
            (Some(job), Some(unique)) => Ok(Self { job: job?, unique: unique? }),
            _ => Err(corrupt("delete.lua replied without the job's index members")),
        }
    }
}

impl RedisStorage {
    /// Runs `operation`'s script on the job `id`: the rest of its reply when it
    /// applied, [`Error::NotFound`] or [`Error::InvalidState`] otherwise.
    async fn apply(&self, operation: AdminAction, id: JobId, now: Option<Timestamp>) -> Result<Vec<Value>> {
        let Some(queue) = self.queue_of(id).await? else { return Err(Error::NotFound(id)) };
        let call = invocation(operation, self, &self.inner.keys.queue(&queue), id, now);
        match Change::from_reply(self.run(&call).await?, id)? {
            Change::Done(rest) => Ok(rest),
            Change::Missing => Err(Error::NotFound(id)),
            Change::InState(state) => Err(refusal(operation, id, state)),
        }
    }

    pub(crate) async fn cancel_job(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        let fields = self.apply(AdminAction::Cancel, id, now).await?.into_iter().next();
        reply::record(fields.ok_or_else(|| corrupt(format!("cancel.lua replied without job {id}")))?)
    }

    pub(crate) async fn retry_job(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        let fields = self.apply(AdminAction::Retry, id, now).await?.into_iter().next();
        reply::record(fields.ok_or_else(|| corrupt(format!("retry.lua replied without job {id}")))?)
    }

    /// Two round trips (the job's queue from the jobs index, then `delete.lua`, which
    /// also removes the job's index members), and a third on a cluster, where the
    /// script stays in the queue's slot: removing its members from the indexes in the
    /// prefix's slot, as `prune` does.
    pub(crate) async fn delete_job(&self, id: JobId) -> Result<()> {
        let members = IndexMembers::from_reply(self.apply(AdminAction::Delete, id, None).await?)?;
        self.unindex(&[members]).await
    }

    /// On a cluster, removes the members of deleted jobs from the jobs index and the
    /// unique index (one `ZREM` each, in the prefix's slot); on one server the script
    /// that deleted them did, and this does nothing.
    pub(crate) async fn unindex(&self, deleted: &[IndexMembers]) -> Result<()> {
        if !self.is_cluster() || deleted.is_empty() {
            return Ok(());
        }
        let jobs: Vec<&str> = deleted.iter().map(|members| members.job.as_str()).collect();
        let uniques: Vec<&str> =
            deleted.iter().map(|members| members.unique.as_str()).filter(|member| !member.is_empty()).collect();
        let mut commands = vec![redis::cmd("ZREM").arg(self.inner.keys.jobs()).arg(jobs).clone()];
        if !uniques.is_empty() {
            commands.push(redis::cmd("ZREM").arg(self.inner.keys.unique()).arg(uniques).clone());
        }
        self.query_all(commands).await.map(drop)
    }

    pub(crate) async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        validate_queue_name(queue)?;
        let keys = self.inner.keys.queue(queue);
        if paused {
            let _: u64 = self.conn().sadd(self.inner.keys.queues(), queue).await.map_err(map_redis_error)?;
            let mut call = scripts().pause.prepare_invoke();
            call.key(keys.paused());
            self.run(&call).await?;
        } else {
            let mut call = scripts().resume.prepare_invoke();
            call.key(keys.paused()).arg(self.inner.keys.channel()).arg(queue);
            self.run(&call).await?;
        }
        Ok(())
    }

    pub(crate) async fn get_job(&self, id: JobId) -> Result<Option<JobRecord>> {
        let Some(queue) = self.queue_of(id).await? else { return Ok(None) };
        let value: Value = self.conn().hgetall(self.inner.keys.queue(&queue).job(id)).await.map_err(map_redis_error)?;
        let fields = reply::fields(value)?;
        if fields.is_empty() {
            return Ok(None);
        }
        crate::codec::record_from_fields(&fields).map(Some)
    }

    /// Counts per queue with its head's `run_at`: the queue names, then one round trip
    /// of the counts, the paused flags and each queue's head (`ZRANGE <available> 0 0`,
    /// the first job in claim order), then, when some queue has one, one of the heads'
    /// `run_at` fields.
    pub(crate) async fn queue_counts(&self) -> Result<Vec<QueueCounts>> {
        /// Per queue: the state sets' `ZCARD`s, the paused flag's `EXISTS`, the head.
        const PER_QUEUE: usize = QUEUE_SETS.len() + 2;
        let names = self.queue_names().await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut commands = Vec::with_capacity(names.len() * PER_QUEUE);
        for name in &names {
            let queue = self.inner.keys.queue(name);
            for set in queue.group().take(QUEUE_SETS.len()) {
                commands.push(redis::cmd("ZCARD").arg(set).clone());
            }
            commands.push(redis::cmd("EXISTS").arg(queue.paused()).clone());
            commands.push(redis::cmd("ZRANGE").arg(queue.available()).arg(0).arg(0).clone());
        }
        let mut replies = self.query_all(commands).await?.into_iter();
        let mut counts = Vec::new();
        // The heads' members, by index in `counts`.
        let mut heads: Vec<(usize, String)> = Vec::new();
        for name in names {
            let mut numbers = Vec::with_capacity(QUEUE_SETS.len() + 1);
            for reply in replies.by_ref().take(QUEUE_SETS.len() + 1) {
                numbers.push(u64::try_from(reply::int(reply)?).unwrap_or(0));
            }
            let head = replies.next().map(reply::array).transpose()?.unwrap_or_default();
            let paused = numbers.get(QUEUE_SETS.len()).is_some_and(|&flag| flag > 0);
            let states: BTreeMap<JobState, u64> =
                SET_STATES.into_iter().zip(numbers.iter().copied()).filter(|&(_, count)| count > 0).collect();
            if paused || !states.is_empty() {
                if let Some(member) = head.into_iter().next() {
                    heads.push((counts.len(), reply::string(member)?));
                }
                counts.push(QueueCounts::new(name, paused, states));
            }
        }
        if heads.is_empty() {
            return Ok(counts);
        }
        let fields = heads
            .iter()
            .map(|(at, member)| {
                let id = head_id(member)?;
                Ok(redis::cmd("HGET").arg(self.inner.keys.queue(&counts[*at].queue).job(id)).arg("run_at").clone())
            })
            .collect::<Result<Vec<_>>>()?;
        let run_ats = self.query_all(fields).await?;
        for ((at, member), run_at) in heads.into_iter().zip(run_ats) {
            let run_at = match run_at {
                Value::Nil => member_run_at(&member)?,
                run_at => crate::codec::from_micros(reply::int(run_at)?)?,
            };
            counts[at].next_available_at = Some(run_at);
        }
        Ok(counts)
    }
}

/// The job id in an available-set member (`<run_at, 16 digits>:<id>`).
fn head_id(member: &str) -> Result<JobId> {
    member
        .split_once(':')
        .and_then(|(_, id)| id.parse().ok().map(JobId))
        .ok_or_else(|| corrupt(format!("`{member}` is not an available-set member")))
}

/// The `run_at` in an available-set member, for a head whose job went (claimed and
/// finished, or deleted) between the two round trips: exact, unless before 1970 (the
/// member holds 0 then).
fn member_run_at(member: &str) -> Result<Timestamp> {
    let micros = member.split_once(':').and_then(|(run_at, _)| run_at.parse().ok());
    crate::codec::from_micros(micros.ok_or_else(|| corrupt(format!("`{member}` is not an available-set member")))?)
}
