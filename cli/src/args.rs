//! The command line's grammar: every command, flag and value parser.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use haul::{Error, JobFilter, JobId, JobState, RateLimit, storage::Timestamp};

/// The long description `haul --help` prints, exit codes included.
const LONG_ABOUT: &str = "\
Inspect and operate haul job queues: queues and their counts, jobs (list, show, retry, \
cancel, delete), workers, periodic schedules, retention and migrations.

The storage is named by a URL, as haul::connect takes it: --url, or the HAUL_URL \
environment variable. For example:
  HAUL_URL='postgres://app@db.internal/app?schema=haul' haul queues
  haul --url 'redis://127.0.0.1:6379/?prefix=billing' jobs list --state discarded

Every command that prints takes --json: one JSON object per line instead of a table.

Exit codes:
  0  success
  1  the operation or the storage failed (the message says why)
  2  bad usage: an unknown flag, a missing argument, no storage URL
  3  job not found
  4  the job's state does not allow the action (retry of a running job, cancel of a finished one...)
  5  declined at the confirmation prompt: nothing was changed

When several ids are given and they fail for different reasons, the exit code is the \
first of 1, 3, 4 that applies.";

/// The `haul` command line: a storage URL, an output format and one command.
#[derive(Clone, Debug, Parser)]
#[command(name = "haul", version, about = "Inspect and operate haul job queues", long_about = LONG_ABOUT)]
pub struct Cli {
    /// The storage URL (postgres://, redis://, rediss://, redis+cluster://, memory://), with
    /// its parameters (?schema=, ?prefix=...). Its value is never printed: it may hold a
    /// password.
    #[arg(long, env = "HAUL_URL", hide_env_values = true, global = true, value_name = "URL")]
    pub url: Option<String>,

    /// Print one JSON object per line instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade what the storage needs for this version of haul.
    ///
    /// PostgreSQL: the schema and its tables; Redis: the key layout's version marker;
    /// memory: nothing. Safe to run again, and from several processes at once.
    Migrate,
    /// List the queues, or pause or resume one.
    ///
    /// Without a subcommand: each queue's job counts per state, whether it is paused,
    /// and how long the job the next claim would take has waited.
    Queues(QueuesArgs),
    /// List, show, retry, cancel or delete jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Counts by state and in total, per queue and over every queue.
    ///
    /// Also how long the job the next claim would take has waited, and which queues
    /// are paused. With --json, the last line (whose queue is null) totals every queue.
    Stats,
    /// Delete finished jobs older than their retention.
    ///
    /// Calls the storage's prune in batches of --batch-size until a batch deletes fewer,
    /// so every job past its retention is gone when it returns.
    Prune(PruneArgs),
    /// The live workers, and which one leads.
    Workers,
    /// The periodic schedules: name, schedule, last and next tick.
    Cron,
    /// Serve the web dashboard until Ctrl-C.
    ///
    /// Overview of queues and throughput, job lists and pages, workers and schedules,
    /// with retry, cancel, delete, pause and resume (unless --read-only). Binds to
    /// 127.0.0.1:8080 by default; another address that is not loopback needs --token or
    /// --basic.
    Web(WebArgs),
}

/// `haul web`. Its `Debug` never prints the token or the password.
#[derive(Clone, Args)]
pub struct WebArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Show everything but offer no action: every POST is refused.
    #[arg(long)]
    pub read_only: bool,
    /// Require this token: an `Authorization: Bearer` header, or `?token=` once in the
    /// browser (it then sets a cookie). Prefer the environment variable: a command line
    /// shows in `ps`.
    #[arg(long, env = "HAUL_WEB_TOKEN", hide_env_values = true, value_name = "TOKEN", conflicts_with = "basic")]
    pub token: Option<String>,
    /// Require HTTP Basic authentication with this user and password (prefer the
    /// environment variable: a command line shows in `ps`).
    #[arg(long, env = "HAUL_WEB_BASIC", hide_env_values = true, value_name = "USER:PASSWORD")]
    pub basic: Option<String>,
}

impl std::fmt::Debug for WebArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebArgs")
            .field("bind", &self.bind)
            .field("read_only", &self.read_only)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("basic", &self.basic.as_ref().map(|_| ".."))
            .finish()
    }
}

/// `haul queues [pause|resume|limit NAME]`.
#[derive(Clone, Debug, Args)]
pub struct QueuesArgs {
    /// Pause, resume or limit a queue; without it, list the queues.
    #[command(subcommand)]
    pub action: Option<QueueAction>,
}

/// A change to one queue.
#[derive(Clone, Debug, Subcommand)]
pub enum QueueAction {
    /// Stop claims from a queue (enqueueing still works; running jobs finish).
    Pause {
        /// The queue.
        name: String,
    },
    /// Let claims from a paused queue happen again.
    Resume {
        /// The queue.
        name: String,
    },
    /// Set how many of a queue's jobs may run at once and how many may start per period,
    /// across every worker, in all and per limit key (stored: every worker obeys them from
    /// its next claim), or remove them.
    ///
    /// Each flag changes its own limit and keeps the others as stored: `--key-concurrency 1`
    /// on a queue limited to 5 leaves it limited to 5 in all and 1 per key. `none` removes
    /// one limit, `--unlimited` all of them. Give at least one of the five.
    #[command(group = clap::ArgGroup::new("limits").required(true).multiple(true))]
    Limit {
        /// The queue.
        name: String,
        /// At most N of its jobs running at once (at least 1); `none` removes this limit.
        #[arg(long, value_name = "N|none", value_parser = parse_limit_change, group = "limits")]
        concurrency: Option<LimitChange>,
        /// At most N of its jobs with the same limit key (e.g. a customer id, set when the
        /// job is enqueued) running at once (at least 1); `none` removes this limit.
        #[arg(long, value_name = "N|none", value_parser = parse_limit_change, group = "limits")]
        key_concurrency: Option<LimitChange>,
        /// At most STARTS of its jobs starting (being claimed) in any window of PERIOD,
        /// e.g. `100/1m` or `5/500ms` (a sliding window); `none` removes this limit.
        #[arg(long, value_name = "STARTS/PERIOD|none", value_parser = parse_rate_change, group = "limits")]
        rate: Option<LimitChange<RateLimit>>,
        /// At most STARTS of its jobs with the same limit key starting in any window of
        /// PERIOD, e.g. `2/1s`; `none` removes this limit.
        #[arg(long, value_name = "STARTS/PERIOD|none", value_parser = parse_rate_change, group = "limits")]
        key_rate: Option<LimitChange<RateLimit>>,
        /// Remove all of the queue's limits.
        #[arg(long, group = "limits", conflicts_with_all = ["concurrency", "key_concurrency", "rate", "key_rate"])]
        unlimited: bool,
    },
}

/// A change to one of a queue's limits, as `haul queues limit` takes it: a concurrency
/// limit (`u32`) or a rate limit ([`RateLimit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitChange<T = u32> {
    /// Set the limit to this (the storage refuses a concurrency of 0).
    Set(T),
    /// Remove the limit.
    Remove,
}

impl<T> LimitChange<T> {
    /// The limit after this change.
    pub fn apply(self) -> Option<T> {
        match self {
            Self::Set(limit) => Some(limit),
            Self::Remove => None,
        }
    }
}

/// `haul jobs ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, in id (creation) order, a page at a time.
    ///
    /// When the page is full, the command line of the next page (--after the last id)
    /// is printed on the error stream.
    List(ListArgs),
    /// Every field of one job: arguments, metadata, timestamps, errors, lease.
    Show {
        /// The job's id.
        #[arg(value_parser = parse_job_id)]
        id: JobId,
    },
    /// Make jobs available again now.
    ///
    /// Any state but running; a job whose attempts are used up gets one more. Give ids
    /// (each is retried and reported on its own), or filter flags or --all (the matching
    /// jobs are counted, and you are asked to confirm unless --yes).
    Retry(ActionArgs),
    /// Cancel jobs that have not finished.
    ///
    /// A scheduled, available or retryable job is cancelled at once; a running one is
    /// asked to stop, and stops when its worker next hears from the storage. Ids, or
    /// filter flags or --all, as for retry.
    Cancel(ActionArgs),
    /// Delete jobs that are not running, with everything stored about them.
    ///
    /// Ids, or filter flags or --all, as for retry.
    Delete(ActionArgs),
}

/// Which jobs: every flag set must match; none set matches every job.
#[derive(Clone, Debug, Default, Args)]
#[group(id = "filter", multiple = true)]
pub struct FilterArgs {
    /// Only jobs of this queue.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// Only jobs in this state (repeatable, or comma-separated): scheduled, available,
    /// running, retryable, completed, discarded, cancelled.
    #[arg(long = "state", value_name = "STATE", value_parser = parse_state, value_delimiter = ',')]
    pub states: Vec<JobState>,
    /// Only jobs of this kind.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only jobs created at or after this instant (RFC 3339: 2030-01-31T12:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_timestamp)]
    pub created_from: Option<Timestamp>,
    /// Only jobs created before this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_timestamp)]
    pub created_until: Option<Timestamp>,
}

impl FilterArgs {
    /// Whether no flag is set (the filter matches every job).
    pub fn is_empty(&self) -> bool {
        self.queue.is_none()
            && self.states.is_empty()
            && self.kind.is_none()
            && self.created_from.is_none()
            && self.created_until.is_none()
    }

    /// The storage's filter.
    pub fn to_filter(&self) -> JobFilter {
        let mut filter = JobFilter::new();
        if let Some(queue) = &self.queue {
            filter = filter.queue(queue);
        }
        for &state in &self.states {
            filter = filter.state(state);
        }
        if let Some(kind) = &self.kind {
            filter = filter.kind(kind);
        }
        if let Some(from) = self.created_from {
            filter = filter.created_from(from);
        }
        if let Some(until) = self.created_until {
            filter = filter.created_until(until);
        }
        filter
    }

    /// The flags that give this filter again, as `(flag, value)` pairs in a fixed order.
    pub fn to_flags(&self) -> Vec<(&'static str, String)> {
        let mut flags = Vec::new();
        if let Some(queue) = &self.queue {
            flags.push(("--queue", queue.clone()));
        }
        for state in &self.states {
            flags.push(("--state", state.to_string()));
        }
        if let Some(kind) = &self.kind {
            flags.push(("--kind", kind.clone()));
        }
        if let Some(from) = self.created_from {
            flags.push(("--created-from", crate::format::timestamp(from)));
        }
        if let Some(until) = self.created_until {
            flags.push(("--created-until", crate::format::timestamp(until)));
        }
        flags
    }
}

/// `haul jobs list`.
#[derive(Clone, Debug, Args)]
pub struct ListArgs {
    /// Which jobs.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only jobs after this id (the last id of the previous page).
    #[arg(long, value_name = "ID", value_parser = parse_job_id)]
    pub after: Option<JobId>,
    /// At most this many jobs.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = parse_limit)]
    pub limit: usize,
}

/// `haul jobs retry|cancel|delete`: some ids, or the jobs a filter matches.
#[derive(Clone, Debug, Args)]
pub struct ActionArgs {
    /// The jobs' ids (each is changed on its own and reported); or give filter flags
    /// instead, or --all.
    #[arg(value_name = "ID", value_parser = parse_job_id, conflicts_with_all = ["filter", "all"])]
    pub ids: Vec<JobId>,
    /// Which jobs, when no id is given.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Every job (instead of ids or filter flags).
    #[arg(long, conflicts_with = "filter")]
    pub all: bool,
    /// Do not ask for confirmation before changing the jobs a filter matches.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `haul prune`.
#[derive(Clone, Debug, Args)]
pub struct PruneArgs {
    /// Keep completed jobs this long after they finished (e.g. 12h, 1d, 2w).
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = humantime::parse_duration)]
    pub completed: Duration,
    /// Keep discarded jobs this long after they finished.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub discarded: Duration,
    /// Keep cancelled jobs this long after they finished.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub cancelled: Duration,
    /// Delete at most this many jobs per storage call.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = parse_limit)]
    pub batch_size: usize,
}

/// Reads a job id (a UUID).
pub(crate) fn parse_job_id(value: &str) -> Result<JobId, String> {
    uuid::Uuid::parse_str(value)
        .map(JobId::from)
        .map_err(|error| format!("`{value}` is not a job id (a UUID, as `haul jobs list` shows them): {error}"))
}

/// Reads a job state by its name.
pub(crate) fn parse_state(value: &str) -> Result<JobState, String> {
    value.parse::<JobState>().map_err(|_| {
        let known: Vec<&str> = JobState::ALL.iter().map(|state| state.as_str()).collect();
        format!("unknown job state `{value}`; the states are {}", known.join(", "))
    })
}

/// Reads an RFC 3339 instant.
pub(crate) fn parse_timestamp(value: &str) -> Result<Timestamp, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|error| format!("`{value}` is not an RFC 3339 instant such as 2030-01-31T12:00:00Z: {error}"))
}

/// Reads `user:password` (the password may hold `:`). The error never repeats the
/// value: it holds a password.
pub(crate) fn parse_basic(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => {
            Ok((user.to_owned(), password.to_owned()))
        }
        _ => Err("give the user and the password as USER:PASSWORD, neither empty".to_owned()),
    }
}

/// Reads a limit of `haul queues limit`: a whole number, or `none`. Zero is let through
/// for the storage to refuse with its reason.
pub(crate) fn parse_limit_change(value: &str) -> Result<LimitChange, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(LimitChange::Remove);
    }
    value
        .parse::<u32>()
        .map(LimitChange::Set)
        .map_err(|error| format!("`{value}` is neither a whole number nor `none`: {error}"))
}

/// Reads a rate limit of `haul queues limit`: `STARTS/PERIOD` (checked as
/// [`RateLimit`]'s `FromStr` checks it), or `none`.
pub(crate) fn parse_rate_change(value: &str) -> Result<LimitChange<RateLimit>, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(LimitChange::Remove);
    }
    value.parse::<RateLimit>().map(LimitChange::Set).map_err(|error| match error {
        Error::InvalidArgument(reason) => format!("{reason} (or `none` to remove the limit)"),
        other => other.to_string(),
    })
}

/// Reads a count of at least one.
fn parse_limit(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(limit) => Ok(limit),
        Err(error) => Err(format!("`{value}` is not a whole number: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn states_and_ids_are_refused_with_what_is_expected() {
        let error = parse_state("done").unwrap_err();
        assert!(error.contains("discarded") && error.contains("`done`"), "{error}");
        assert!(parse_job_id("42").unwrap_err().contains("UUID"));
        assert!(parse_timestamp("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_limit("0").unwrap_err(), "must be at least 1");
        assert_eq!(parse_basic("ops:pa:ss").unwrap(), ("ops".to_owned(), "pa:ss".to_owned()));
        assert!(parse_basic("ops").unwrap_err().contains("USER:PASSWORD"));
        assert_eq!(parse_limit_change("none"), Ok(LimitChange::Remove));
        assert_eq!(parse_limit_change("3"), Ok(LimitChange::Set(3)));
        assert!(parse_limit_change("-1").unwrap_err().contains("neither a whole number nor `none`"));
        assert_eq!(parse_rate_change("NONE"), Ok(LimitChange::Remove));
        assert_eq!(parse_rate_change("100/1m"), Ok(LimitChange::Set(RateLimit::per_minute(100))));
        let error = parse_rate_change("100").unwrap_err();
        assert!(error.contains("STARTS/PERIOD") && error.contains("`none`"), "{error}");
        assert!(parse_rate_change("0/1s").unwrap_err().contains("at least 1 start"));
    }
}
