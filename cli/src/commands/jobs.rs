//! `haul jobs list` and `haul jobs show ID`.

use haul::{Error, JobId, JobRecord, ListParams, Storage};

use crate::{
    Exit, Io,
    args::ListArgs,
    error::CliError,
    format, json,
    table::{self, Align, Table},
};

/// How many characters of the last error `jobs list` shows.
const LAST_ERROR_WIDTH: usize = 60;

/// Lists one page of the jobs the filter matches, in id order, and when the page is
/// full, tells on the error stream how to get the next one.
pub(super) async fn list(
    storage: &dyn Storage,
    io: &mut Io<'_>,
    json: bool,
    args: &ListArgs,
) -> Result<Exit, CliError> {
    let mut params = ListParams::filtered(args.filter.to_filter()).limit(args.limit);
    if let Some(after) = args.after {
        params = params.after(after);
    }
    let jobs = storage.list(params).await?;
    if json {
        for job in &jobs {
            io.json_line(&json::job(job))?;
        }
    } else if jobs.is_empty() {
        io.out_line("no jobs match")?;
    } else {
        let mut table = Table::new(&[
            ("ID", Align::Left),
            ("KIND", Align::Left),
            ("QUEUE", Align::Left),
            ("STATE", Align::Left),
            ("ATTEMPT", Align::Right),
            ("RUN AT", Align::Left),
            ("CREATED AT", Align::Left),
            ("LAST ERROR", Align::Left),
        ]);
        for job in &jobs {
            table.row(vec![
                job.id.to_string(),
                job.kind.clone(),
                job.queue.clone(),
                job.state.to_string(),
                format!("{}/{}", job.attempt, job.max_attempts),
                format::timestamp(job.run_at),
                format::timestamp(job.created_at),
                job.errors.last().map_or_else(String::new, |error| format::truncate(&error.message, LAST_ERROR_WIDTH)),
            ]);
        }
        for line in table.lines() {
            io.out_line(&line)?;
        }
    }
    if let Some(last) = jobs.last()
        && jobs.len() == args.limit
    {
        io.err_line(&format!("more jobs may follow; the next page: {}", next_page(args, last.id, json)))?;
    }
    Ok(Exit::Success)
}

/// The command line of the page after `last`.
fn next_page(args: &ListArgs, last: JobId, json: bool) -> String {
    let mut words = vec!["haul".to_owned(), "jobs".to_owned(), "list".to_owned()];
    for (flag, value) in args.filter.to_flags() {
        words.push(flag.to_owned());
        words.push(format::shell_word(&value));
    }
    words.extend(["--limit".to_owned(), args.limit.to_string(), "--after".to_owned(), last.to_string()]);
    if json {
        words.push("--json".to_owned());
    }
    words.join(" ")
}

/// Shows every field of one job.
pub(super) async fn show(storage: &dyn Storage, io: &mut Io<'_>, json: bool, id: JobId) -> Result<Exit, CliError> {
    let job = storage.get(id).await?.ok_or(Error::NotFound(id))?;
    if json {
        io.json_line(&json::job(&job))?;
    } else {
        for line in describe(&job) {
            io.out_line(&line)?;
        }
    }
    Ok(Exit::Success)
}

/// A job's fields, one per line (arguments, metadata and errors on lines of their own).
fn describe(job: &JobRecord) -> Vec<String> {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| format::NONE.to_owned());
    let mut fields = vec![
        ("id", job.id.to_string()),
        ("kind", job.kind.clone()),
        ("queue", job.queue.clone()),
        ("state", job.state.to_string()),
        ("priority", job.priority.to_string()),
        ("attempt", format!("{} of {}", job.attempt, job.max_attempts)),
        ("timeout", job.timeout.map_or_else(|| "none".to_owned(), format::flag_duration)),
        ("run at", format::timestamp(job.run_at)),
        ("created at", format::timestamp(job.created_at)),
        ("attempted at", format::maybe_timestamp(job.attempted_at)),
        ("finished at", format::maybe_timestamp(job.finished_at)),
        ("cancel requested at", format::maybe_timestamp(job.cancel_requested_at)),
        ("unique key", optional(&job.unique_key)),
    ];
    if let Some(key) = &job.limit_key {
        fields.push(("limit key", key.clone()));
    }
    if job.claimed_by.is_some() || job.lease_expires_at.is_some() {
        fields.push(("held by", optional(&job.claimed_by)));
        fields.push(("lease expires at", format::maybe_timestamp(job.lease_expires_at)));
    }
    if let Some(reason) = &job.unreadable_args {
        fields.push(("unreadable arguments", reason.clone()));
    }
    let mut lines: Vec<String> = fields.into_iter().map(|(label, value)| format!("{label:<20} {value}")).collect();

    if job.metadata.is_empty() {
        lines.push(format!("{:<20} {}", "metadata", format::NONE));
    } else {
        lines.push("metadata".to_owned());
        lines.extend(job.metadata.iter().map(|(key, value)| format!("  {key} = {value}")));
    }

    lines.push("arguments".to_owned());
    let arguments = serde_json::to_string_pretty(&job.args).unwrap_or_else(|_| job.args.to_string());
    lines.extend(arguments.lines().map(|line| format!("  {line}")));

    if job.errors.is_empty() {
        lines.push(format!("{:<20} {}", "errors", format::NONE));
    } else {
        lines.push("errors".to_owned());
        for error in &job.errors {
            let mut message = error.message.lines();
            lines.push(format!(
                "  attempt {} at {}: {}",
                error.attempt,
                format::timestamp(error.at),
                message.next().unwrap_or("")
            ));
            lines.extend(message.map(|line| format!("    {line}")));
        }
    }
    // Stored text (metadata, error messages, ids written by other programs) reaches the
    // terminal without its control characters, as in the tables.
    lines.iter().map(|line| table::single_line(line)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use haul::{AttemptError, JobRecord};

    use super::*;

    #[test]
    fn a_shown_job_carries_no_control_characters_from_stored_text() {
        let mut job = JobRecord::new(JobId::new(), "mail", serde_json::json!({ "to": "a\u{1b}[2Kb" }));
        job.metadata = Arc::new([("tenant".to_owned(), "x\u{1b}]52;c;Zm9v\u{7}y\r\nz".to_owned())].into());
        job.claimed_by = Some("worker\u{1b}[31m".to_owned());
        job.errors.push(AttemptError {
            attempt: 1,
            at: job.created_at,
            message: "first line\u{1b}[2K\rfake\nsecond\u{8}line".to_owned(),
        });
        let lines = describe(&job);
        for line in &lines {
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
        assert!(lines.iter().any(|line| line.contains("tenant = x ]52;c;Zm9v y  z")), "{lines:#?}");
        assert!(lines.iter().any(|line| line.ends_with("first line [2K fake")), "{lines:#?}");
        assert!(lines.iter().any(|line| line.trim() == "second line"), "{lines:#?}");
    }
}
