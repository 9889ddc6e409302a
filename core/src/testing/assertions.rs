//! Reading and asserting what the application enqueued: the jobs stored `scheduled`,
//! `available` or `retryable`.

use std::{any::type_name, fmt::Write};

use serde::de::DeserializeOwned;

use super::TestJobs;
use crate::{Job, JobRecord, JobState, ListParams, Result, Timestamp};

/// Jobs read per `list` call.
const PAGE: usize = 500;

/// Jobs an assertion's failure message lists at most.
const LISTED: usize = 50;

impl TestJobs {
    /// Every enqueued job (stored `scheduled`, `available` or `retryable`), in id
    /// (creation) order.
    pub async fn enqueued(&self) -> Result<Vec<JobRecord>> {
        let storage = self.shared.storage.as_ref();
        let mut jobs: Vec<JobRecord> = Vec::new();
        loop {
            let mut params = ListParams::new()
                .state(JobState::Scheduled)
                .state(JobState::Available)
                .state(JobState::Retryable)
                .limit(PAGE);
            if let Some(last) = jobs.last() {
                params = params.after(last.id);
            }
            let page = storage.list(params).await?;
            if page.is_empty() {
                return Ok(jobs);
            }
            jobs.extend(page);
        }
    }

    /// The enqueued jobs of type `J`, decoded, in id (creation) order.
    ///
    /// A stored job is a `J` when its kind is `J`'s kind name and its arguments decode
    /// as a `J`.
    pub async fn all_enqueued<J: Job + DeserializeOwned>(&self) -> Result<Vec<J>> {
        Ok(self.enqueued().await?.iter().filter_map(decode_as::<J>).collect())
    }

    /// Asserts that an enqueued job of type `J` satisfies `matches`.
    ///
    /// # Panics
    ///
    /// When none does, with a message listing the enqueued jobs (kind, queue, state,
    /// arguments); or when the storage cannot list them.
    pub async fn assert_enqueued<J: Job + DeserializeOwned>(&self, matches: impl Fn(&J) -> bool) {
        let enqueued = self.enqueued_or_panic("assert_enqueued").await;
        if !enqueued.iter().any(|record| decode_as::<J>(record).is_some_and(|job| matches(&job))) {
            panic!(
                "expected an enqueued job of type `{}` matching the predicate, found none; {}",
                type_name::<J>(),
                describe(&enqueued, self.now())
            );
        }
    }

    /// Asserts that no enqueued job of type `J` satisfies `matches` (`|_| true`: that no
    /// job of type `J` is enqueued).
    ///
    /// # Panics
    ///
    /// When one does, with a message listing those that do; or when the storage cannot
    /// list the enqueued jobs.
    pub async fn refute_enqueued<J: Job + DeserializeOwned>(&self, matches: impl Fn(&J) -> bool) {
        let enqueued = self.enqueued_or_panic("refute_enqueued").await;
        let found: Vec<JobRecord> =
            enqueued.into_iter().filter(|record| decode_as::<J>(record).is_some_and(|job| matches(&job))).collect();
        if !found.is_empty() {
            panic!(
                "expected no enqueued job of type `{}` matching the predicate, found some; {}",
                type_name::<J>(),
                describe(&found, self.now())
            );
        }
    }

    /// Asserts that an enqueued job has the kind name `kind` and arguments that contain
    /// `args`: every key of an object in `args` is present with a matching value (so
    /// `json!({})` matches any job of the kind); other values (strings, numbers, arrays…)
    /// must be equal.
    ///
    /// # Panics
    ///
    /// When no job matches, with a message listing the enqueued jobs (kind, queue,
    /// state, arguments); or when the storage cannot list them.
    pub async fn assert_enqueued_json(&self, kind: &str, args: serde_json::Value) {
        let enqueued = self.enqueued_or_panic("assert_enqueued_json").await;
        if !enqueued.iter().any(|record| record.kind == kind && contains(&record.args, &args)) {
            panic!(
                "expected an enqueued job of kind `{kind}` with arguments containing {args}, found none; {}",
                describe(&enqueued, self.now())
            );
        }
    }

    /// Asserts that no enqueued job has the kind name `kind` and arguments that contain
    /// `args` (as [`TestJobs::assert_enqueued_json`] matches them).
    ///
    /// # Panics
    ///
    /// When one does, with a message listing those that do; or when the storage cannot
    /// list the enqueued jobs.
    pub async fn refute_enqueued_json(&self, kind: &str, args: serde_json::Value) {
        let enqueued = self.enqueued_or_panic("refute_enqueued_json").await;
        let found: Vec<JobRecord> =
            enqueued.into_iter().filter(|record| record.kind == kind && contains(&record.args, &args)).collect();
        if !found.is_empty() {
            panic!(
                "expected no enqueued job of kind `{kind}` with arguments containing {args}, found some; {}",
                describe(&found, self.now())
            );
        }
    }

    async fn enqueued_or_panic(&self, assertion: &str) -> Vec<JobRecord> {
        self.enqueued().await.unwrap_or_else(|error| panic!("{assertion}: cannot list the enqueued jobs: {error}"))
    }
}

/// The job `record` holds, if it is a `J`: its kind is `J`'s and its arguments decode.
fn decode_as<J: Job + DeserializeOwned>(record: &JobRecord) -> Option<J> {
    J::deserialize(&record.args).ok().filter(|job| job.typetag_name() == record.kind)
}

/// Whether `value` contains `expected`: objects key by key (recursively), anything else
/// by equality.
fn contains(value: &serde_json::Value, expected: &serde_json::Value) -> bool {
    match (value, expected) {
        (serde_json::Value::Object(value), serde_json::Value::Object(expected)) => {
            expected.iter().all(|(key, expected)| value.get(key).is_some_and(|value| contains(value, expected)))
        }
        _ => value == expected,
    }
}

/// The jobs, one per line (the first [`LISTED`]), for an assertion's failure message.
fn describe(jobs: &[JobRecord], now: Timestamp) -> String {
    if jobs.is_empty() {
        return "no job is enqueued".to_owned();
    }
    let mut text = format!("enqueued jobs ({}):", jobs.len());
    for job in jobs.iter().take(LISTED) {
        let when = if job.run_at > now {
            let wait = (job.run_at - now).to_std().unwrap_or_default();
            format!("{}, due in {wait:?}", job.state)
        } else {
            job.state.to_string()
        };
        let _ = write!(text, "\n  - {} on queue `{}` ({when}): {}", job.kind, job.queue, job.args);
    }
    if jobs.len() > LISTED {
        let _ = write!(text, "\n  - … and {} more", jobs.len() - LISTED);
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::JobId;

    #[test]
    fn objects_match_by_the_keys_expected_and_other_values_by_equality() {
        let args = json!({ "to": "ada@example.com", "meta": { "lang": "en", "tries": 2 }, "tags": ["a", "b"] });
        assert!(contains(&args, &json!({})));
        assert!(contains(&args, &json!({ "to": "ada@example.com" })));
        assert!(contains(&args, &json!({ "meta": { "lang": "en" } })));
        assert!(contains(&args, &json!({ "tags": ["a", "b"] })));
        assert!(!contains(&args, &json!({ "tags": ["a"] })));
        assert!(!contains(&args, &json!({ "to": "bob@example.com" })));
        assert!(!contains(&args, &json!({ "from": "ada@example.com" })));
        assert!(!contains(&args, &json!({ "meta": { "tries": "2" } })));
    }

    #[test]
    fn a_failure_lists_kind_queue_state_due_time_and_arguments() {
        let now = chrono::Utc::now();
        let mut scheduled = JobRecord::new(JobId::new(), "send_email", json!({ "to": "ada@example.com" }));
        scheduled.queue = "mail".to_owned();
        scheduled.state = JobState::Scheduled;
        scheduled.run_at = now + chrono::Duration::seconds(60);
        let mut available = JobRecord::new(JobId::new(), "resize", json!({ "width": 640 }));
        available.run_at = now;
        let text = describe(&[scheduled, available], now);
        assert_eq!(
            text,
            "enqueued jobs (2):\n  - send_email on queue `mail` (scheduled, due in 60s): {\"to\":\"ada@example.com\"}\n  \
             - resize on queue `default` (available): {\"width\":640}"
        );
        assert_eq!(describe(&[], now), "no job is enqueued");
    }
}
