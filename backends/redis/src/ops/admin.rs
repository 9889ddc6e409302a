//! Operators' calls: cancel, retry, pause and resume, get, list, counts.

use std::collections::BTreeMap;

use haul_core::{Error, JobId, JobRecord, JobState, ListParams, QueueCounts, Result, Timestamp, validate_queue_name};
use redis::{AsyncCommands, Value};

use crate::{
    RedisStorage,
    codec::reply,
    error::{corrupt, map_redis_error},
    keys::QUEUE_SETS,
    scripts::{scripts, with_head},
};

/// How many jobs-index members `list` reads per round trip.
const LIST_PAGE: usize = 500;

/// The states of [`QUEUE_SETS`], in the same order.
const SET_STATES: [JobState; 7] = [
    JobState::Scheduled,
    JobState::Available,
    JobState::Running,
    JobState::Retryable,
    JobState::Completed,
    JobState::Discarded,
    JobState::Cancelled,
];

/// What `cancel.lua` and `retry.lua` found.
enum Change {
    Done(Box<JobRecord>),
    Missing,
    InState(JobState),
}

impl RedisStorage {
    /// Runs `cancel.lua` or `retry.lua` on the job `id`.
    async fn change(&self, script: &redis::Script, id: JobId, now: Option<Timestamp>) -> Result<Change> {
        let Some(queue) = self.queue_of(id).await? else { return Ok(Change::Missing) };
        let queue = self.inner.keys.queue(&queue);
        let mut call = with_head(script, &self.inner.keys, now, false, &[&queue]);
        call.arg(id.to_string());
        let mut items = reply::array(self.run(&call).await?)?.into_iter();
        let status = items.next().map(reply::string).transpose()?.unwrap_or_default();
        match (status.as_str(), items.next()) {
            ("ok", Some(fields)) => Ok(Change::Done(Box::new(reply::record(fields)?))),
            ("missing", _) => Ok(Change::Missing),
            ("state", Some(state)) => {
                let state = reply::string(state)?;
                Ok(Change::InState(state.parse().map_err(|_| corrupt(format!("job {id} is in state `{state}`")))?))
            }
            _ => Err(corrupt(format!("unexpected reply `{status}` about job {id}"))),
        }
    }

    pub(crate) async fn cancel_job(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        match self.change(&scripts().cancel, id, now).await? {
            Change::Done(record) => Ok(*record),
            Change::Missing => Err(Error::NotFound(id)),
            Change::InState(state) => Err(Error::InvalidState {
                id,
                state,
                operation: "cancel",
                expected: "scheduled, available, retryable or running",
            }),
        }
    }

    pub(crate) async fn retry_job(&self, id: JobId, now: Option<Timestamp>) -> Result<JobRecord> {
        match self.change(&scripts().retry, id, now).await? {
            Change::Done(record) => Ok(*record),
            Change::Missing => Err(Error::NotFound(id)),
            Change::InState(state) => Err(Error::InvalidState {
                id,
                state,
                operation: "retry",
                expected: "scheduled, available, retryable, completed, discarded or cancelled",
            }),
        }
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

    /// Walks the jobs index in id order, a page at a time, reading the jobs whose
    /// queue matches and keeping those whose state and kind match.
    pub(crate) async fn list_jobs(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        if let Some(queue) = &params.queue {
            validate_queue_name(queue)?;
        }
        let mut listed = Vec::new();
        if params.limit == 0 {
            return Ok(listed);
        }
        let mut start = params.after.map_or_else(|| "-".to_owned(), |after| format!("({after};"));
        loop {
            let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(self.inner.keys.jobs())
                .arg(&start)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(LIST_PAGE)
                .query_async(&mut self.conn())
                .await
                .map_err(map_redis_error)?;
            let Some(last) = members.last() else { break };
            let last_id = last.split_once(':').map_or(last.as_str(), |(id, _)| id);
            start = format!("({last_id};");

            let wanted: Vec<(JobId, &str)> = members
                .iter()
                .filter_map(|member| member.split_once(':'))
                .filter(|(_, queue)| params.queue.as_deref().is_none_or(|wanted| wanted == *queue))
                .filter_map(|(id, queue)| id.parse().ok().map(|id| (JobId(id), queue)))
                .collect();
            if !wanted.is_empty() {
                let commands = wanted
                    .iter()
                    .map(|(id, queue)| redis::cmd("HGETALL").arg(self.inner.keys.queue(queue).job(*id)).clone());
                let replies = self.query_all(commands.collect()).await?;
                for value in replies {
                    let fields = reply::fields(value)?;
                    if fields.is_empty() {
                        continue; // pruned since the index was read
                    }
                    let record = crate::codec::record_from_fields(&fields)?;
                    let state_matches = params.states.is_empty() || params.states.contains(&record.state);
                    let kind_matches = params.kind.as_ref().is_none_or(|kind| *kind == record.kind);
                    if state_matches && kind_matches {
                        listed.push(record);
                        if listed.len() >= params.limit {
                            return Ok(listed);
                        }
                    }
                }
            }
            if members.len() < LIST_PAGE {
                break;
            }
        }
        Ok(listed)
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
