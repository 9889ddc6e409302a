//! `list`: the jobs a filter matches, in id order after a cursor, read from the state
//! sets when the filter names a few jobs' states, else by walking the jobs index.

use std::str::FromStr;

use haul_core::{JobFilter, JobId, JobRecord, JobState, ListParams, Result, validate_queue_name};
use redis::Value;

use crate::{
    RedisStorage,
    codec::{Fields, from_micros, record_from_fields, reply},
    error::corrupt,
    keys::QueueKeys,
    ops::admin::SET_STATES,
};

/// How many jobs-index members the walk reads per round trip, and the most job hashes
/// `list` reads per round trip.
const LIST_PAGE: usize = 500;

/// The most members of the matching state sets that `list` reads and sorts itself;
/// beyond it the matches are many, hence dense among the stored jobs, and walking the
/// jobs index finds a page of them sooner.
const SET_READ_LIMIT: u64 = 10_000;

/// The fields the walk reads of each candidate before reading whole hashes: what a
/// filter may reject a job on, besides its queue (which the index member holds).
const PROBED_FIELDS: [&str; 3] = ["state", "kind", "created_at"];

impl RedisStorage {
    /// Lists the jobs `params.filter` matches with an id greater than `params.after`,
    /// up to `params.limit`, in id order. Which jobs are read depends on the filter:
    ///
    /// - When it names states, the sizes of the matching state sets (of its queue, or
    ///   of every queue in the queue set) are read first (`ZCARD`s, one round trip).
    ///   If they hold at most 10,000 members in all, their members are read (one round
    ///   trip), the ids greater than the cursor are sorted (the string order of the
    ///   UUIDv7 ids is their order, the jobs index's order), and the hashes are read
    ///   in that order, in pipelined batches, until `limit` jobs match: a page costs
    ///   about four round trips whatever the number of other jobs.
    /// - Otherwise (more matches than that, so they are dense among the stored jobs),
    ///   and always without a state filter, the jobs index is walked from the cursor,
    ///   500 members per round trip, skipping other queues' members. When the filter
    ///   can reject a job on its state, kind or creation time, only those fields are
    ///   read of each candidate (`HMGET`, pipelined) before the whole hashes of the
    ///   matches; a page then costs about three round trips per 500 jobs walked.
    ///
    /// Every job read is checked against the whole filter ([`JobFilter::matches`]), so a
    /// job that changed state while being listed is listed only if it still matches.
    pub(crate) async fn list_jobs(&self, params: ListParams) -> Result<Vec<JobRecord>> {
        if let Some(queue) = &params.filter.queue {
            validate_queue_name(queue)?;
        }
        if params.limit == 0 {
            return Ok(Vec::new());
        }
        if !params.filter.states.is_empty() {
            let sets = self.state_sets(&params.filter).await?;
            let sizes = self.query_all(sets.iter().map(|set| redis::cmd("ZCARD").arg(&set.key).clone()).collect());
            let sizes = sizes.await?.into_iter().map(reply::int).collect::<Result<Vec<i64>>>()?;
            let total: u64 = sizes.iter().map(|&size| u64::try_from(size).unwrap_or(0)).sum();
            if total <= SET_READ_LIMIT {
                // Every set is read, even one that was empty a round trip ago: a job may
                // have moved into it since.
                return self.list_from_sets(&params, sets).await;
            }
        }
        self.walk_index(&params).await
    }

    /// The state sets `filter` (which names states) may find jobs in.
    async fn state_sets(&self, filter: &JobFilter) -> Result<Vec<StateSet>> {
        let names = match &filter.queue {
            Some(queue) => vec![queue.clone()],
            None => self.queue_names().await?,
        };
        let mut sets = Vec::with_capacity(names.len() * filter.states.len());
        for name in names {
            let queue = self.inner.keys.queue(&name);
            for &state in &filter.states {
                sets.push(StateSet { key: state_set(&queue, state), queue: name.clone(), state });
            }
        }
        Ok(sets)
    }

    /// Reads the members of `sets`, then the jobs after the cursor in id order. On one
    /// server the sets are read in one transaction (`MULTI`/`EXEC`), so a job moving
    /// between two of them is seen in one or the other; on a cluster, where the sets of
    /// several queues live in several slots, they are read concurrently and a job that
    /// moves during that round trip can be missed by this page.
    async fn list_from_sets(&self, params: &ListParams, sets: Vec<StateSet>) -> Result<Vec<JobRecord>> {
        let reads: Vec<redis::Cmd> =
            sets.iter().map(|set| redis::cmd("ZRANGE").arg(&set.key).arg(0).arg(-1).clone()).collect();
        let replies: Vec<Value> = if self.is_cluster() {
            self.query_all(reads).await?
        } else {
            let mut transaction = redis::pipe();
            transaction.atomic();
            for read in reads {
                transaction.add_command(read);
            }
            transaction.query_async(&mut self.conn()).await.map_err(crate::error::map_redis_error)?
        };
        let mut found: Vec<(JobId, &str)> = Vec::new();
        for (set, members) in sets.iter().zip(replies) {
            for member in reply::array(members)? {
                let member = reply::string(member)?;
                let id = if set.state == JobState::Available { member_id(&member) } else { Some(member.as_str()) };
                let id = id
                    .and_then(|id| id.parse().ok())
                    .map(JobId)
                    .ok_or_else(|| corrupt(format!("`{member}` is not a member of the {} set", set.state)))?;
                if params.after.is_none_or(|after| id > after) {
                    found.push((id, set.queue.as_str()));
                }
            }
        }
        // A job that moved between two of the sets while they were read is in both.
        found.sort_unstable();
        found.dedup_by_key(|(id, _)| *id);
        let mut listed = Vec::new();
        self.read_matches(params, found.into_iter(), &mut listed).await?;
        Ok(listed)
    }

    /// Walks the jobs index from the cursor, a page at a time.
    async fn walk_index(&self, params: &ListParams) -> Result<Vec<JobRecord>> {
        let filter = &params.filter;
        let probe = !filter.states.is_empty()
            || filter.kind.is_some()
            || filter.created_from.is_some()
            || filter.created_until.is_some();
        let mut listed = Vec::new();
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
                .map_err(crate::error::map_redis_error)?;
            let Some(last) = members.last() else { break };
            let last_id = last.split_once(':').map_or(last.as_str(), |(id, _)| id);
            start = format!("({last_id};");

            let mut candidates: Vec<(JobId, &str)> = members
                .iter()
                .filter_map(|member| member.split_once(':'))
                .filter(|(_, queue)| filter.queue.as_deref().is_none_or(|wanted| wanted == *queue))
                .filter_map(|(id, queue)| id.parse().ok().map(|id| (JobId(id), queue)))
                .collect();
            if probe && !candidates.is_empty() {
                let reads = candidates.iter().map(|(id, queue)| {
                    redis::cmd("HMGET").arg(self.inner.keys.queue(queue).job(*id)).arg(&PROBED_FIELDS[..]).clone()
                });
                let probed = self.query_all(reads.collect()).await?;
                let keep = probed.into_iter().map(|value| may_match(filter, value)).collect::<Result<Vec<bool>>>()?;
                let mut keep = keep.into_iter();
                candidates.retain(|_| keep.next().unwrap_or(false));
            }
            self.read_matches(params, candidates.into_iter(), &mut listed).await?;
            if listed.len() >= params.limit || members.len() < LIST_PAGE {
                break;
            }
        }
        Ok(listed)
    }

    /// Reads the hashes of `candidates` (in id order) in pipelined batches, appending
    /// to `listed` the jobs that match, until it holds `params.limit`. The
    /// first batch is as large as the jobs still wanted, each next one twice the last
    /// (at most [`LIST_PAGE`]), so a filter that most candidates match costs one round
    /// trip and one that few match a few more.
    async fn read_matches<'a>(
        &self,
        params: &ListParams,
        mut candidates: impl Iterator<Item = (JobId, &'a str)>,
        listed: &mut Vec<JobRecord>,
    ) -> Result<()> {
        let mut batch = params.limit.saturating_sub(listed.len()).clamp(1, LIST_PAGE);
        while listed.len() < params.limit {
            let reads: Vec<redis::Cmd> = candidates
                .by_ref()
                .take(batch)
                .map(|(id, queue)| redis::cmd("HGETALL").arg(self.inner.keys.queue(queue).job(id)).clone())
                .collect();
            if reads.is_empty() {
                break;
            }
            for value in self.query_all(reads).await? {
                let fields = reply::fields(value)?;
                if fields.is_empty() {
                    continue; // deleted since the index or its set was read
                }
                let record = record_from_fields(&fields)?;
                if params.filter.matches(&record) {
                    listed.push(record);
                    if listed.len() >= params.limit {
                        break;
                    }
                }
            }
            batch = (batch * 2).min(LIST_PAGE);
        }
        Ok(())
    }
}

/// One state set of one queue.
struct StateSet {
    key: String,
    queue: String,
    state: JobState,
}

/// The key of the set of `queue`'s jobs in `state`.
fn state_set(queue: &QueueKeys, state: JobState) -> String {
    let at = SET_STATES.iter().position(|&set| set == state).unwrap_or_default();
    queue.group().nth(at).unwrap_or_default()
}

/// The id in an available-set member (`<run_at, 16 digits>:<id>`).
fn member_id(member: &str) -> Option<&str> {
    member.split_once(':').map(|(_, id)| id)
}

/// Whether a job whose [`PROBED_FIELDS`] are `value` (an `HMGET` reply) may match
/// `filter`: false only when one of them rules it out, or when the job is gone.
fn may_match(filter: &JobFilter, value: Value) -> Result<bool> {
    let mut fields = Fields::new();
    for (name, field) in PROBED_FIELDS.iter().zip(reply::array(value)?) {
        if field != Value::Nil {
            fields.insert((*name).to_owned(), reply::string(field)?);
        }
    }
    let Some(state) = fields.get("state") else { return Ok(false) };
    // A field that cannot be read rules nothing out: reading the whole job reports it.
    let state_ok =
        filter.states.is_empty() || JobState::from_str(state).map_or(true, |state| filter.states.contains(&state));
    let kind_ok = filter.kind.as_ref().is_none_or(|kind| fields.get("kind").is_none_or(|stored| stored == kind));
    let created =
        fields.get("created_at").and_then(|micros| micros.parse().ok()).and_then(|micros| from_micros(micros).ok());
    let created_ok = created.is_none_or(|created| {
        filter.created_from.is_none_or(|from| created >= from)
            && filter.created_until.is_none_or(|until| created < until)
    });
    Ok(state_ok && kind_ok && created_ok)
}
