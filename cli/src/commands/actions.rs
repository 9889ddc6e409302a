//! `haul jobs retry|cancel|delete`: on jobs named by id, each changed and reported on
//! its own, or on the jobs a filter matches, counted and confirmed first.

use chrono::TimeDelta;
use haul::{AdminAction, JobFilter, JobId, JobRecord, JobState, ListParams, Storage, storage::Timestamp};
use serde_json::json;

use crate::{
    Exit, Io,
    args::ActionArgs,
    error::{self, CliError},
    format,
};

/// How many jobs one `list` call reads while counting the matches.
const COUNT_PAGE: usize = 500;

/// What the command says about an operator action.
trait Wording {
    /// The command's name.
    fn verb(self) -> &'static str;
    /// What it did, as a past participle.
    fn done(self) -> &'static str;
    /// The states it leaves alone, as the confirmation question names them.
    fn refused_states(self) -> &'static str;
}

impl Wording for AdminAction {
    fn verb(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Cancel => "cancel",
            Self::Delete => "delete",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Self::Retry => "retried",
            Self::Cancel => "cancelled",
            Self::Delete => "deleted",
        }
    }

    fn refused_states(self) -> &'static str {
        match self {
            Self::Retry | Self::Delete => "running",
            Self::Cancel => "finished",
        }
    }
}

/// Runs `action` on the jobs `args` names.
pub(super) async fn run(
    action: AdminAction,
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    args: &ActionArgs,
) -> Result<Exit, CliError> {
    if !args.ids.is_empty() {
        return by_ids(action, storage, io, json, &args.ids).await;
    }
    if args.filter.is_empty() && !args.all {
        return Err(CliError::Usage(format!(
            "say which jobs to {}: their ids, filter flags (--queue, --state, --kind, --created-from, \
             --created-until), or --all for every job",
            action.verb()
        )));
    }
    let selection = if args.all {
        "in the storage".to_owned()
    } else {
        let flags: Vec<String> = args
            .filter
            .to_flags()
            .into_iter()
            .map(|(flag, value)| format!("{flag} {}", format::shell_word(&value)))
            .collect();
        format!("matching {}", flags.join(" "))
    };
    by_filter(action, storage, io, json, args.filter.to_filter(), &selection, args.yes).await
}

/// Applies the one-job call to each id and reports each outcome; the exit code is
/// [`Exit::combine`] of theirs. Every id is acted on even when the output closes
/// partway (`| head -n 1`): the exit code still tells whether one failed, and only a
/// run where every call succeeded reports the output's error.
async fn by_ids(
    action: AdminAction,
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    ids: &[JobId],
) -> Result<Exit, CliError> {
    let mut exits = Vec::with_capacity(ids.len());
    let mut output = Ok(());
    for &id in ids {
        let result = match action {
            AdminAction::Retry => storage.retry(id, None).await.map(Some),
            AdminAction::Cancel => storage.cancel(id, None).await.map(Some),
            AdminAction::Delete => storage.delete(id).await.map(|()| None),
        };
        let written = match result {
            Ok(job) => {
                exits.push(Exit::Success);
                report_done(io, json, action, id, job.as_ref())
            }
            Err(failure) => {
                let exit = error::storage_exit(&failure);
                exits.push(exit);
                report_failure(io, json, action, id, &failure, exit)
            }
        };
        if output.is_ok() {
            output = written;
        }
    }
    match Exit::combine(exits) {
        Exit::Success => output.map(|()| Exit::Success).map_err(CliError::from),
        failed => Ok(failed),
    }
}

/// Prints what a successful one-job call did.
fn report_done(
    io: &mut Io<'_>,
    json: bool,
    action: AdminAction,
    id: JobId,
    job: Option<&JobRecord>,
) -> std::io::Result<()> {
    if json {
        let state = job.map(|job| job.state.as_str());
        io.json_line(&json!({ "id": id.to_string(), "action": action.verb(), "ok": true, "state": state }))
    } else {
        io.out_line(&describe_done(action, id, job))
    }
}

/// Prints why a one-job call failed, on the error stream first (it stays open when
/// the output closes), then on the output too with `--json`.
fn report_failure(
    io: &mut Io<'_>,
    json: bool,
    action: AdminAction,
    id: JobId,
    failure: &haul::Error,
    exit: Exit,
) -> std::io::Result<()> {
    io.err_line(&format!("error: could not {} {id}: {failure}", action.verb()))?;
    if let Some(hint) = error::storage_hint(failure) {
        io.err_line(&format!("hint: {hint}"))?;
    }
    if json {
        io.json_line(&json!({
            "id": id.to_string(),
            "action": action.verb(),
            "ok": false,
            "error": failure.to_string(),
            "exit_code": exit.code(),
        }))?;
    }
    Ok(())
}

/// What a successful one-job call did.
fn describe_done(action: AdminAction, id: JobId, job: Option<&JobRecord>) -> String {
    match job {
        Some(job) if action == AdminAction::Cancel && job.state == JobState::Running => {
            format!("asked {id} to cancel: it is running, and stops when its worker next hears from the storage")
        }
        Some(job) => format!("{} {id}: now {}", action.done(), job.state),
        None => format!("{} {id}", action.done()),
    }
}

/// Counts the jobs `filter` matches, asks for confirmation unless `yes`, then runs the
/// storage's bulk call and says how many jobs it changed.
async fn by_filter(
    action: AdminAction,
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    filter: JobFilter,
    selection: &str,
    yes: bool,
) -> Result<Exit, CliError> {
    let Counted { accepted, refused, newest } = count(storage, &filter, action).await?;
    let matched = accepted + refused;
    if accepted == 0 {
        if json {
            io.json_line(&json!({ "action": action.verb(), "matched": matched, "changed": 0 }))?;
        } else if matched == 0 {
            io.out_line(&format!("nothing to {}: no job {selection}", action.verb()))?;
        } else {
            io.out_line(&format!(
                "nothing to {}: the {matched} {} {selection} {} {}",
                action.verb(),
                plural(matched, "job", "jobs"),
                plural(matched, "is", "are"),
                action.refused_states()
            ))?;
        }
        return Ok(Exit::Success);
    }
    if !yes {
        if refused > 0 {
            io.err_line(&format!(
                "{refused} more {} {selection} {} {}, and left alone",
                plural(refused, "job", "jobs"),
                plural(refused, "is", "are"),
                action.refused_states(),
            ))?;
        }
        let question = format!("{} {accepted} {} {selection}?", action.verb(), plural(accepted, "job", "jobs"));
        if !io.confirm(&question)? {
            return Err(CliError::Declined);
        }
    }
    // Jobs stored after the count (while the question waited) are left alone: the call
    // covers jobs created up to the newest one counted.
    let filter = bounded(filter, newest);
    let changed = match action {
        AdminAction::Retry => storage.retry_jobs(filter, None).await?,
        AdminAction::Cancel => storage.cancel_jobs(filter, None).await?,
        AdminAction::Delete => storage.delete_jobs(filter).await?,
    };
    if json {
        io.json_line(&json!({ "action": action.verb(), "matched": matched, "changed": changed }))?;
    } else {
        io.out_line(&format!("{} {changed} {}", action.done(), plural(changed, "job", "jobs")))?;
    }
    Ok(Exit::Success)
}

/// What [`count`] found.
struct Counted {
    /// Matches the action accepts.
    accepted: u64,
    /// Matches it refuses (running or finished jobs).
    refused: u64,
    /// The latest creation time among the matches.
    newest: Option<Timestamp>,
}

/// `filter` narrowed to jobs created no later than `newest` (the latest match counted).
fn bounded(filter: JobFilter, newest: Option<Timestamp>) -> JobFilter {
    let Some(bound) = newest.and_then(|newest| newest.checked_add_signed(TimeDelta::microseconds(1))) else {
        return filter;
    };
    match filter.created_until {
        Some(until) if until <= bound => filter,
        _ => filter.created_until(bound),
    }
}

/// How many jobs `filter` matches that `action` accepts, how many it refuses, and the
/// latest creation time among them.
async fn count(storage: &dyn Storage, filter: &JobFilter, action: AdminAction) -> Result<Counted, CliError> {
    let (mut accepted, mut refused, mut newest) = (0, 0, None::<Timestamp>);
    let mut after = None;
    loop {
        let mut params = ListParams::filtered(filter.clone()).limit(COUNT_PAGE);
        if let Some(after) = after {
            params = params.after(after);
        }
        let page = storage.list(params).await?;
        for job in &page {
            newest = Some(newest.map_or(job.created_at, |newest| newest.max(job.created_at)));
            if action.accepts(job.state) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() == COUNT_PAGE => after = Some(last.id),
            _ => return Ok(Counted { accepted, refused, newest }),
        }
    }
}

/// `one` when `count` is 1, else `many`.
fn plural(count: u64, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use haul::{Admin as _, MemoryStorage, NewJob, storage::EnqueueParams};

    use super::*;

    /// An output whose reader goes away after its first line.
    struct ClosesAfterOneLine(usize);

    impl Write for ClosesAfterOneLine {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 >= 1 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.0 += buf.iter().filter(|&&byte| byte == b'\n').count();
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_id_is_acted_on_and_a_failure_still_tells_when_the_output_closes() {
        let storage = MemoryStorage::new();
        let jobs = vec![NewJob::new("plain", json!({})), NewJob::new("plain", json!({}))];
        let ids = storage.enqueue(EnqueueParams::new(jobs)).await.unwrap().ids;
        let (mut out, mut err, mut input) = (ClosesAfterOneLine(0), Vec::new(), std::io::empty());
        let mut input = std::io::BufReader::new(&mut input);
        let mut io = Io::new(&mut out, &mut err, &mut input);

        let targets = [ids[0], JobId::new(), ids[1]];
        let exit = by_ids(AdminAction::Delete, &storage, &mut io, true, &targets).await.unwrap();
        assert_eq!(exit, Exit::NotFound, "the missing id's exit code");
        for id in ids {
            assert!(storage.get(id).await.unwrap().is_none(), "{id} was deleted");
        }

        // Every call succeeded: the closed output is what is reported.
        let job = storage.enqueue(EnqueueParams::new(vec![NewJob::new("plain", json!({}))])).await.unwrap().ids;
        let (mut out, mut input) = (ClosesAfterOneLine(1), std::io::empty());
        let mut input = std::io::BufReader::new(&mut input);
        let mut io = Io::new(&mut out, &mut err, &mut input);
        let outcome = by_ids(AdminAction::Delete, &storage, &mut io, true, &job).await;
        assert!(matches!(outcome, Err(CliError::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe));
        assert!(storage.get(job[0]).await.unwrap().is_none());
    }
}
