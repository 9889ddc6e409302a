//! A log of handler runs that survives the process that wrote it.
//!
//! Fault cases kill workers, so what a handler did cannot live in the worker's memory:
//! [`Logged`] jobs append one line per event to a file shared by every worker process of
//! the case, and the case reads it back to check each job's history against storage.

use std::{
    collections::{BTreeSet, HashMap},
    fs::OpenOptions,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use haul::{JobContext, JobError, JobId, JobRecord, JobState, State};

/// The kind name of [`Logged`] jobs.
pub const LOGGED_KIND: &str = "haul_faults.logged";

/// What a handler of a [`Logged`] job reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The handler started.
    Started,
    /// The handler finished and is about to return success.
    Succeeded,
}

/// One line of a [`RunLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// What happened.
    pub event: Event,
    /// The job.
    pub job: JobId,
    /// The attempt the handler ran as.
    pub attempt: u32,
    /// The worker process that ran it.
    pub pid: u32,
}

/// An append-only file of [`Run`] lines, one per handler event.
///
/// Each line is written with one `write` on a file opened for appending, so lines from
/// concurrent handlers and processes never interleave.
#[derive(Clone, Debug)]
pub struct RunLog {
    path: PathBuf,
}

impl RunLog {
    /// A log at `path` (created on the first event).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, event: Event, ctx: &JobContext) -> std::io::Result<()> {
        let name = match event {
            Event::Started => "started",
            Event::Succeeded => "succeeded",
        };
        let line = format!("{name} {} {} {}\n", ctx.id(), ctx.attempt(), std::process::id());
        OpenOptions::new().create(true).append(true).open(&self.path)?.write_all(line.as_bytes())
    }

    /// Every complete line written so far (a process killed mid-write may leave a
    /// partial last line, which is ignored).
    pub fn read(&self) -> Vec<Run> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => panic!("cannot read the run log {}: {error}", self.path.display()),
        };
        text.lines().filter_map(parse_run).collect()
    }

    /// How many handlers have reached `event`.
    pub fn count(&self, event: Event) -> usize {
        self.read().iter().filter(|run| run.event == event).count()
    }
}

fn parse_run(line: &str) -> Option<Run> {
    let mut fields = line.split(' ');
    let event = match fields.next()? {
        "started" => Event::Started,
        "succeeded" => Event::Succeeded,
        _ => return None,
    };
    let job = JobId(uuid::Uuid::parse_str(fields.next()?).ok()?);
    let attempt = fields.next()?.parse().ok()?;
    let pid = fields.next()?.parse().ok()?;
    Some(Run { event, job, attempt, pid })
}

/// Sleeps for `sleep_ms`, logging its start and its success in the worker's
/// [`RunLog`].
#[haul::job(name = "haul_faults.logged", max_attempts = 5)]
pub async fn logged(log: State<RunLog>, ctx: &JobContext, sleep_ms: u64) -> Result<(), JobError> {
    log.append(Event::Started, ctx).map_err(|error| JobError::fail(format!("cannot write the run log: {error}")))?;
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    log.append(Event::Succeeded, ctx).map_err(|error| JobError::fail(format!("cannot write the run log: {error}")))?;
    Ok(())
}

/// What the run log says about one job, next to its stored record.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// `(attempt, pid)` of each start.
    pub starts: Vec<(u32, u32)>,
    /// `(attempt, pid)` of each success.
    pub successes: Vec<(u32, u32)>,
}

/// The run log grouped by job.
pub fn histories(runs: &[Run]) -> HashMap<JobId, History> {
    let mut by_job: HashMap<JobId, History> = HashMap::new();
    for run in runs {
        let history = by_job.entry(run.job).or_default();
        match run.event {
            Event::Started => history.starts.push((run.attempt, run.pid)),
            Event::Succeeded => history.successes.push((run.attempt, run.pid)),
        }
    }
    by_job
}

/// Checks at-least-once with fencing for jobs that all ended `completed`:
/// - every job is completed;
/// - no attempt started twice (in one process or two);
/// - the stored completion is the one of a handler run that returned success, on the
///   stored attempt.
///
/// An earlier attempt may never have started (its worker died, or its claim's reply was
/// lost, between the claim and the handler) or may have succeeded without its outcome
/// being written (its worker died first); either way its lease expired and the job ran
/// again. Returns how many jobs ran more than one attempt.
pub fn assert_completed_at_least_once(records: &[JobRecord], runs: &[Run]) -> usize {
    let histories = histories(runs);
    for record in records {
        let history = histories.get(&record.id).cloned().unwrap_or_default();
        assert_completed_by_a_success(record, &history);
    }
    records.iter().filter(|record| record.attempt > 1).count()
}

fn assert_completed_by_a_success(record: &JobRecord, history: &History) {
    assert_eq!(record.state, JobState::Completed, "job {} ended {}", record.id, record.state);
    let attempts: BTreeSet<u32> = history.starts.iter().map(|(attempt, _)| *attempt).collect();
    assert_eq!(attempts.len(), history.starts.len(), "job {}: an attempt started twice: {history:?}", record.id);
    assert!(
        history.successes.iter().any(|(attempt, _)| *attempt == record.attempt),
        "job {}: completed on attempt {} without a handler returning success on it: {history:?}",
        record.id,
        record.attempt
    );
}

/// Checks, for jobs that all ended `completed` while connections were being cut and no
/// worker died, what [`assert_completed_at_least_once`] checks and that no outcome was
/// dropped: no earlier attempt succeeded (a success whose outcome was lost would have
/// been rescued and run again). An attempt that never started is a claim whose reply was
/// lost; the lease expiry recovers it.
///
/// Returns how many claims were lost that way.
pub fn assert_no_outcome_dropped(records: &[JobRecord], runs: &[Run]) -> usize {
    let histories = histories(runs);
    let mut lost_claims = 0;
    for record in records {
        let history = histories.get(&record.id).cloned().unwrap_or_default();
        assert_completed_by_a_success(record, &history);
        assert!(
            history.successes.iter().all(|(attempt, _)| *attempt == record.attempt),
            "job {}: an earlier attempt succeeded but its outcome was not written: {history:?}",
            record.id
        );
        let started: BTreeSet<u32> = history.starts.iter().map(|(attempt, _)| *attempt).collect();
        lost_claims += (1..record.attempt).filter(|attempt| !started.contains(attempt)).count();
    }
    lost_claims
}

/// What the run log says happened to a completed job after its completion.
#[derive(Clone, Debug)]
pub struct AfterCompletion {
    /// The job.
    pub job: JobId,
    /// The attempt storage completed it with.
    pub completed_attempt: u32,
    /// `(attempt, pid)` of each handler start logged after that attempt's success.
    pub late_starts: Vec<(u32, u32)>,
    /// How many handlers started as the completed attempt.
    pub completed_attempt_starts: usize,
}

/// For completed jobs: each job whose log shows a handler started after the success of
/// the attempt storage completed it with (a claim that ran after its lease had expired
/// and another worker had finished the job), or whose completed attempt did not start
/// exactly once. The log is appended in time order, so its line order is the order the
/// events happened in, across processes.
pub fn started_after_completion(records: &[JobRecord], runs: &[Run]) -> Vec<AfterCompletion> {
    let mut by_job: HashMap<JobId, Vec<(usize, &Run)>> = HashMap::new();
    for (line, run) in runs.iter().enumerate() {
        by_job.entry(run.job).or_default().push((line, run));
    }
    let mut found = Vec::new();
    for record in records.iter().filter(|record| record.state == JobState::Completed) {
        let lines = by_job.get(&record.id).map(Vec::as_slice).unwrap_or_default();
        let completed_attempt_starts =
            lines.iter().filter(|(_, run)| run.event == Event::Started && run.attempt == record.attempt).count();
        let success = lines
            .iter()
            .find(|(_, run)| run.event == Event::Succeeded && run.attempt == record.attempt)
            .map(|(line, _)| *line);
        let late_starts: Vec<(u32, u32)> = lines
            .iter()
            .filter(|(line, run)| run.event == Event::Started && success.is_some_and(|success| *line > success))
            .map(|(_, run)| (run.attempt, run.pid))
            .collect();
        if !late_starts.is_empty() || completed_attempt_starts != 1 {
            found.push(AfterCompletion {
                job: record.id,
                completed_attempt: record.attempt,
                late_starts,
                completed_attempt_starts,
            });
        }
    }
    found
}
