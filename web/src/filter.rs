//! The job filter of a list page or a bulk action, read from query or form pairs with
//! a clear message for what is malformed.

use haul::{JobFilter, JobId, JobState};

use crate::error::PageError;

/// How many jobs a list page shows unless `limit` says otherwise.
pub(crate) const PAGE_SIZE: usize = 50;

/// The most a list page shows.
const MAX_PAGE_SIZE: usize = 500;

/// What a job list (or a bulk action) applies to: the query of `/jobs`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListQuery {
    /// Only this queue.
    pub(crate) queue: Option<String>,
    /// Only this state.
    pub(crate) state: Option<JobState>,
    /// Only this kind.
    pub(crate) kind: Option<String>,
    /// Only jobs after this id (the cursor).
    pub(crate) after: Option<JobId>,
    /// The page size.
    pub(crate) limit: usize,
    /// A message to show (after an action).
    pub(crate) notice: Option<String>,
    /// The CSRF token (of a form).
    pub(crate) csrf: Option<String>,
}

impl ListQuery {
    /// Reads the pairs; empty values count as absent, unknown names are ignored.
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<Self, PageError> {
        let mut query = Self { limit: PAGE_SIZE, ..Self::default() };
        for (name, value) in pairs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match name.as_str() {
                "queue" => query.queue = Some(value.to_owned()),
                "kind" => query.kind = Some(value.to_owned()),
                "state" => query.state = Some(parse_state(value)?),
                "after" => query.after = Some(parse_id(value)?),
                "limit" => query.limit = parse_limit(value)?,
                "notice" => query.notice = Some(value.to_owned()),
                "csrf" => query.csrf = Some(value.to_owned()),
                _ => {}
            }
        }
        Ok(query)
    }

    /// The storage's filter.
    pub(crate) fn filter(&self) -> JobFilter {
        let mut filter = JobFilter::new();
        if let Some(queue) = &self.queue {
            filter = filter.queue(queue);
        }
        if let Some(state) = self.state {
            filter = filter.state(state);
        }
        if let Some(kind) = &self.kind {
            filter = filter.kind(kind);
        }
        filter
    }

    /// The filter in words: `discarded jobs in queue mail of kind mail.send`.
    pub(crate) fn describe(&self) -> String {
        let mut words = match self.state {
            Some(state) => format!("{state} jobs"),
            None => "jobs".to_owned(),
        };
        if let Some(queue) = &self.queue {
            words.push_str(&format!(" in queue {queue}"));
        }
        if let Some(kind) = &self.kind {
            words.push_str(&format!(" of kind {kind}"));
        }
        words
    }

    /// The filter's pairs (queue, state, kind), empty ones included as `""`.
    pub(crate) fn filter_pairs(&self) -> [(&'static str, String); 3] {
        [
            ("queue", self.queue.clone().unwrap_or_default()),
            ("state", self.state.map(|state| state.to_string()).unwrap_or_default()),
            ("kind", self.kind.clone().unwrap_or_default()),
        ]
    }
}

/// Reads a job id (a UUID).
pub(crate) fn parse_id(value: &str) -> Result<JobId, PageError> {
    uuid::Uuid::parse_str(value)
        .map(JobId::from)
        .map_err(|error| PageError::bad_request(format!("`{value}` is not a job id (a UUID): {error}")))
}

/// Reads a state by its name.
fn parse_state(value: &str) -> Result<JobState, PageError> {
    value.parse::<JobState>().map_err(|_| {
        let known: Vec<&str> = JobState::ALL.iter().map(|state| state.as_str()).collect();
        PageError::bad_request(format!("unknown job state `{value}`; the states are {}", known.join(", ")))
    })
}

/// Reads a page size from 1 to [`MAX_PAGE_SIZE`].
fn parse_limit(value: &str) -> Result<usize, PageError> {
    match value.parse::<usize>() {
        Ok(limit @ 1..=MAX_PAGE_SIZE) => Ok(limit),
        _ => Err(PageError::bad_request(format!(
            "`{value}` is not a page size: give a whole number from 1 to {MAX_PAGE_SIZE}"
        ))),
    }
}
