//! Every command, run in-process against a `MemoryStorage` whose jobs the test set up:
//! output, exit codes, confirmation, `--json`.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::{sync::Arc, time::Duration};

use clap::Parser;
use common::{KIND, WORKER, claim, discarded, enqueue, get, job, json_lines, report, running};
use haul::{
    Admin, JobId, JobOutcome, JobState, MemoryStorage, QueueLimits, RateLimit, Storage,
    storage::{LeadershipParams, PeriodicUpdate, ThroughputSample, WorkerBeat},
};
use haul_cli::{Cli, Exit, Io};

/// What one command did.
#[derive(Debug)]
struct Outcome {
    exit: Exit,
    out: String,
    err: String,
}

/// A new, empty storage.
fn storage() -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new())
}

/// Runs `haul <args>` against `storage`, with `input` as its standard input.
async fn haul_with_input(storage: &Arc<dyn Storage>, args: &[&str], input: &str) -> Outcome {
    let cli = Cli::try_parse_from(std::iter::once("haul").chain(args.iter().copied()))
        .unwrap_or_else(|error| panic!("`haul {}` parses: {error}", args.join(" ")));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = input.as_bytes();
    let exit = haul_cli::run(cli, storage.clone(), &mut Io::new(&mut out, &mut err, &mut input)).await;
    Outcome { exit, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

/// Runs `haul <args>` against `storage`, with nothing on its standard input.
async fn haul(storage: &Arc<dyn Storage>, args: &[&str]) -> Outcome {
    haul_with_input(storage, args, "").await
}

/// The exit code clap gives `haul <args>`, which must not parse.
fn usage_error(args: &[&str]) -> (i32, String) {
    let error = Cli::try_parse_from(std::iter::once("haul").chain(args.iter().copied()))
        .expect_err("the command line is refused");
    (error.exit_code(), error.to_string())
}

/// The states of `ids`, in their order.
async fn states(storage: &Arc<dyn Storage>, ids: &[JobId]) -> Vec<JobState> {
    let mut states = Vec::new();
    for &id in ids {
        states.push(get(storage, id).await.state);
    }
    states
}

/// The line of `text` that starts with `start`.
fn line_starting<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|line| line.starts_with(start)).unwrap_or_else(|| panic!("no line starts with {start}: {text}"))
}

/// The whitespace-separated words of `line`.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn migrate_says_there_is_nothing_to_do_in_memory() {
    let storage = storage();
    let outcome = haul(&storage, &["migrate"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(outcome.out.contains("memory: nothing to migrate"), "{outcome:?}");
    let json = json_lines(&haul(&storage, &["migrate", "--json"]).await.out);
    assert_eq!(json, vec![serde_json::json!({ "backend": "memory", "migrated": true, "ready": true })]);
}

#[tokio::test]
async fn queues_shows_each_queues_counts_and_how_long_its_next_job_waited() {
    let storage = storage();
    discarded(&storage, "mail", 2, "smtp refused").await;
    running(&storage, "mail").await;
    enqueue(&storage, job("mail")).await;
    enqueue(&storage, job("reports")).await;
    storage.pause_queue("reports").await.unwrap();

    let outcome = haul(&storage, &["queues"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    let header = words(line_starting(&outcome.out, "QUEUE"));
    assert_eq!(
        header,
        [
            "QUEUE",
            "PAUSED",
            "LIMIT",
            "SCHEDULED",
            "AVAILABLE",
            "RUNNING",
            "RETRYABLE",
            "COMPLETED",
            "DISCARDED",
            "CANCELLED",
            "NEXT",
            "AVAILABLE",
            "WAITED"
        ]
    );
    // queue, paused, limit, then the seven states, then the age of the next available job.
    let mail = words(line_starting(&outcome.out, "mail"));
    assert_eq!(mail[..10], ["mail", "no", "-", "0", "1", "1", "0", "0", "2", "0"], "{}", outcome.out);
    assert!(mail[10].ends_with('s'), "an age in seconds: {mail:?}");
    let reports = words(line_starting(&outcome.out, "reports"));
    assert_eq!(reports[..10], ["reports", "yes", "-", "0", "1", "0", "0", "0", "0", "0"], "{}", outcome.out);

    let json = json_lines(&haul(&storage, &["queues", "--json"]).await.out);
    assert_eq!(json.len(), 2);
    assert_eq!(json[0]["queue"], "mail");
    assert_eq!(json[0]["paused"], false);
    assert_eq!(json[0]["counts"]["discarded"], 2);
    assert_eq!(json[0]["counts"]["cancelled"], 0, "every state is present");
    assert!(json[0]["next_available_at"].is_string() && json[0]["next_available_age"].is_number());
    assert_eq!(json[1]["paused"], true);
}

#[tokio::test]
async fn queues_pause_and_resume_change_the_queue() {
    let storage = storage();
    enqueue(&storage, job("mail")).await;
    let paused = |storage: Arc<dyn Storage>| async move {
        storage.counts().await.unwrap().into_iter().find(|counts| counts.queue == "mail").unwrap().paused
    };

    let outcome = haul(&storage, &["queues", "pause", "mail"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(outcome.out.contains("paused queue mail") && outcome.out.contains("haul queues resume mail"));
    assert!(paused(storage.clone()).await);
    assert!(claim(&storage, "mail").await.is_empty(), "a paused queue hands out nothing");

    let outcome = haul(&storage, &["--json", "queues", "resume", "mail"]).await;
    assert_eq!(json_lines(&outcome.out), vec![serde_json::json!({ "queue": "mail", "paused": false })]);
    assert!(!paused(storage.clone()).await);

    let outcome = haul(&storage, &["queues", "pause", "not a queue"]).await;
    assert_eq!(outcome.exit, Exit::Failure, "{outcome:?}");
    assert!(outcome.err.starts_with("error: invalid queue"), "{outcome:?}");
}

/// The stored limits of every queue, by queue.
async fn stored_limits(storage: &Arc<dyn Storage>) -> Vec<(String, QueueLimits)> {
    storage.queue_limits().await.unwrap().into_iter().map(|record| (record.queue, record.limits)).collect()
}

#[tokio::test]
async fn queues_limit_sets_shows_and_removes_a_concurrency_limit() {
    let storage = storage();
    enqueue(&storage, job("mail")).await;

    let outcome = haul(&storage, &["queues", "limit", "mail", "--concurrency", "3"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(outcome.out.contains("at most 3 of its jobs run at once"), "{outcome:?}");
    let outcome = haul(&storage, &["--json", "queues", "limit", "idle", "--concurrency", "2"]).await;
    assert_eq!(
        json_lines(&outcome.out),
        vec![serde_json::json!({
            "queue": "idle",
            "concurrency_limit": 2,
            "key_concurrency_limit": null,
            "rate_limit": null,
            "key_rate_limit": null,
        })]
    );
    let stored: Vec<_> = storage.queue_limits().await.unwrap().into_iter().map(|record| record.queue).collect();
    assert_eq!(stored, ["idle", "mail"]);

    let outcome = haul(&storage, &["queues"]).await;
    assert_eq!(words(line_starting(&outcome.out, "mail"))[..3], ["mail", "no", "3"], "{}", outcome.out);
    assert_eq!(words(line_starting(&outcome.out, "idle"))[..3], ["idle", "no", "2"], "a limited queue without jobs");
    let json = json_lines(&haul(&storage, &["queues", "--json"]).await.out);
    assert_eq!((json[0]["queue"].as_str(), json[0]["concurrency_limit"].as_u64()), (Some("idle"), Some(2)));
    assert!(json[0]["key_concurrency_limit"].is_null(), "{}", json[0]);

    let outcome = haul(&storage, &["queues", "limit", "mail", "--unlimited"]).await;
    assert!(outcome.out.contains("removed the limits of queue mail"), "{outcome:?}");
    let stored: Vec<_> = storage.queue_limits().await.unwrap().into_iter().map(|record| record.queue).collect();
    assert_eq!(stored, ["idle"]);

    let zero = haul(&storage, &["queues", "limit", "mail", "--concurrency", "0"]).await;
    assert_eq!(zero.exit, Exit::Failure, "{zero:?}");
    assert!(zero.err.contains("at least 1"), "{zero:?}");
    let (code, message) = usage_error(&["queues", "limit", "mail"]);
    assert_eq!(code, 2, "a limit or --unlimited is required");
    for flag in ["--concurrency", "--key-concurrency", "--rate", "--key-rate", "--unlimited"] {
        assert!(message.contains(flag), "the error names {flag}: {message}");
    }
    assert_eq!(usage_error(&["queues", "limit", "mail", "--concurrency", "2", "--unlimited"]).0, 2);
    assert_eq!(usage_error(&["queues", "limit", "mail", "--key-concurrency", "2", "--unlimited"]).0, 2);
    let (code, message) = usage_error(&["queues", "limit", "mail", "--concurrency", "some"]);
    assert_eq!(code, 2);
    assert!(message.contains("`some` is neither a whole number nor `none`"), "{message}");
}

#[tokio::test]
async fn queues_limit_sets_each_limit_and_keeps_the_other() {
    let storage = storage();
    enqueue(&storage, job("mail")).await;

    let outcome = haul(&storage, &["queues", "limit", "mail", "--key-concurrency", "1"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(outcome.out.contains("at most 1 of its jobs per limit key run at once"), "{outcome:?}");
    assert_eq!(stored_limits(&storage).await, [("mail".to_owned(), QueueLimits::new().key_concurrency(1))]);
    assert_eq!(words(line_starting(&haul(&storage, &["queues"]).await.out, "mail"))[..3], ["mail", "no", "1/key"]);

    // The queue-wide limit joins the stored limit per key.
    let outcome = haul(&storage, &["--json", "queues", "limit", "mail", "--concurrency", "5"]).await;
    assert_eq!(
        json_lines(&outcome.out),
        vec![serde_json::json!({
            "queue": "mail",
            "concurrency_limit": 5,
            "key_concurrency_limit": 1,
            "rate_limit": null,
            "key_rate_limit": null,
        })]
    );
    let both = QueueLimits::new().concurrency(5).key_concurrency(1);
    assert_eq!(stored_limits(&storage).await, [("mail".to_owned(), both)]);
    let outcome = haul(&storage, &["queues"]).await;
    assert_eq!(words(line_starting(&outcome.out, "mail"))[..4], ["mail", "no", "5,", "1/key"], "{}", outcome.out);
    let json = json_lines(&haul(&storage, &["queues", "--json"]).await.out);
    assert_eq!((json[0]["concurrency_limit"].as_u64(), json[0]["key_concurrency_limit"].as_u64()), (Some(5), Some(1)));

    // `none` removes one limit and keeps the other; both flags at once set both.
    let outcome = haul(&storage, &["queues", "limit", "mail", "--key-concurrency", "none"]).await;
    assert!(outcome.out.contains("at most 5 of its jobs run at once"), "{outcome:?}");
    assert_eq!(stored_limits(&storage).await, [("mail".to_owned(), QueueLimits::new().concurrency(5))]);
    let outcome = haul(&storage, &["queues", "limit", "mail", "--concurrency", "none", "--key-concurrency", "2"]).await;
    assert!(outcome.out.contains("at most 2 of its jobs per limit key"), "{outcome:?}");
    assert_eq!(stored_limits(&storage).await, [("mail".to_owned(), QueueLimits::new().key_concurrency(2))]);
    let outcome = haul(&storage, &["queues", "limit", "mail", "--concurrency", "4", "--key-concurrency", "3"]).await;
    assert!(outcome.out.contains("at most 4 of its jobs and at most 3 of its jobs per limit key"), "{outcome:?}");
    assert_eq!(
        stored_limits(&storage).await,
        [("mail".to_owned(), QueueLimits::new().concurrency(4).key_concurrency(3))]
    );

    // Removing the last one removes the queue's limits.
    let outcome =
        haul(&storage, &["queues", "limit", "mail", "--concurrency", "none", "--key-concurrency", "none"]).await;
    assert!(outcome.out.contains("removed the limits of queue mail"), "{outcome:?}");
    assert!(stored_limits(&storage).await.is_empty());

    let zero = haul(&storage, &["queues", "limit", "mail", "--key-concurrency", "0"]).await;
    assert_eq!(zero.exit, Exit::Failure, "{zero:?}");
    assert!(zero.err.contains("per key must be at least 1"), "{zero:?}");
}

#[tokio::test]
async fn queues_limit_sets_shows_and_removes_rate_limits_and_keeps_the_others() {
    let storage = storage();
    enqueue(&storage, job("mail")).await;
    let concurrency = QueueLimits::new().concurrency(5).key_concurrency(1);
    storage.set_queue_limits("mail", concurrency).await.unwrap();

    let outcome = haul(&storage, &["queues", "limit", "mail", "--rate", "100/1m"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(
        outcome.out.contains("run at once; at most 100 of its jobs start in any 1m window across every worker"),
        "{outcome:?}"
    );
    let with_rate = concurrency.rate(RateLimit::per_minute(100));
    assert_eq!(stored_limits(&storage).await, [("mail".to_owned(), with_rate)], "the concurrency limits are kept");

    // The rate per key joins the three stored limits.
    let outcome = haul(&storage, &["--json", "queues", "limit", "mail", "--key-rate", "2/1s"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(
        json_lines(&outcome.out),
        vec![serde_json::json!({
            "queue": "mail",
            "concurrency_limit": 5,
            "key_concurrency_limit": 1,
            "rate_limit": { "starts": 100, "period": 60.0 },
            "key_rate_limit": { "starts": 2, "period": 1.0 },
        })]
    );
    let every = with_rate.key_rate(RateLimit::per_second(2));
    assert_eq!(stored_limits(&storage).await, [("mail".to_owned(), every)]);

    // `queues` shows every limit in the LIMIT column; `queues` and `stats` give them in JSON.
    let outcome = haul(&storage, &["queues"]).await;
    assert_eq!(
        words(line_starting(&outcome.out, "mail"))[..7],
        ["mail", "no", "5,", "1/key,", "100/1m,", "2/1s/key", "0"],
        "{}",
        outcome.out
    );
    for command in ["queues", "stats"] {
        let json = json_lines(&haul(&storage, &[command, "--json"]).await.out);
        assert_eq!(json[0]["rate_limit"], serde_json::json!({ "starts": 100, "period": 60.0 }), "{command}");
        assert_eq!(json[0]["key_rate_limit"], serde_json::json!({ "starts": 2, "period": 1.0 }), "{command}");
        assert_eq!(json[0]["concurrency_limit"], 5, "{command}");
    }

    // A rate given in milliseconds reads back in them.
    let outcome = haul(&storage, &["--json", "queues", "limit", "mail", "--rate", "5/500ms"]).await;
    assert_eq!(json_lines(&outcome.out)[0]["rate_limit"], serde_json::json!({ "starts": 5, "period": 0.5 }));
    assert_eq!(words(line_starting(&haul(&storage, &["queues"]).await.out, "mail"))[4], "5/500ms,");

    // `none` removes one rate and keeps the other limits.
    let outcome = haul(&storage, &["queues", "limit", "mail", "--rate", "none"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(stored_limits(&storage).await, [("mail".to_owned(), concurrency.key_rate(RateLimit::per_second(2)))]);
    let outcome =
        haul(&storage, &["queues", "limit", "mail", "--concurrency", "none", "--key-concurrency", "none"]).await;
    assert!(
        outcome.out.contains("limited queue mail: at most 2 of its jobs per limit key start in any 1s window across"),
        "{outcome:?}"
    );
    assert_eq!(
        stored_limits(&storage).await,
        [("mail".to_owned(), QueueLimits::new().key_rate(RateLimit::per_second(2)))]
    );
    assert_eq!(words(line_starting(&haul(&storage, &["queues"]).await.out, "mail"))[2], "2/1s/key");
    let outcome = haul(&storage, &["queues", "limit", "mail", "--key-rate", "none"]).await;
    assert!(outcome.out.contains("removed the limits of queue mail"), "{outcome:?}");
    assert!(stored_limits(&storage).await.is_empty());

    // `--unlimited` removes the rates too.
    storage.set_queue_limits("mail", every).await.unwrap();
    let outcome = haul(&storage, &["queues", "limit", "mail", "--unlimited"]).await;
    assert!(outcome.out.contains("removed the limits of queue mail"), "{outcome:?}");
    assert!(stored_limits(&storage).await.is_empty());
}

#[test]
fn queues_limit_refuses_a_malformed_rate_saying_what_it_takes() {
    for flag in ["--rate", "--key-rate"] {
        for bad in ["100", "100/soon", "x/1m", "/1m", "1.5/1s"] {
            let (code, message) = usage_error(&["queues", "limit", "mail", flag, bad]);
            assert_eq!(code, 2, "{flag} {bad}");
            assert!(
                message.contains("a rate limit reads STARTS/PERIOD, such as 100/1m") && message.contains("`none`"),
                "{flag} {bad}: {message}"
            );
        }
        let (code, message) = usage_error(&["queues", "limit", "mail", flag, "0/1m"]);
        assert_eq!(code, 2);
        assert!(message.contains("at least 1 start per period"), "{message}");
        let (code, message) = usage_error(&["queues", "limit", "mail", flag, "10001/1s"]);
        assert_eq!(code, 2);
        assert!(message.contains("at most 10000 starts"), "{message}");
        let (code, message) = usage_error(&["queues", "limit", "mail", flag, "1/32days"]);
        assert_eq!(code, 2);
        assert!(message.contains("from 1ms to 31 days"), "{message}");
        assert_eq!(usage_error(&["queues", "limit", "mail", flag, "1/1s", "--unlimited"]).0, 2);
    }
}

#[test]
fn queues_limit_help_says_each_flag_keeps_the_other_limits() {
    let help = usage_error(&["queues", "limit", "--help"]).1;
    assert!(help.contains("keeps the others"), "{help}");
    assert!(help.contains("--key-concurrency <N|none>"), "{help}");
    assert!(help.contains("--rate <STARTS/PERIOD|none>"), "{help}");
    assert!(help.contains("--key-rate <STARTS/PERIOD|none>"), "{help}");
}

#[tokio::test]
async fn an_empty_storage_says_so() {
    let storage = storage();
    assert!(haul(&storage, &["queues"]).await.out.starts_with("no queues"));
    assert_eq!(haul(&storage, &["jobs", "list"]).await.out, "no jobs match\n");
    assert_eq!(haul(&storage, &["workers"]).await.out, "no live workers\n");
    assert!(haul(&storage, &["cron"]).await.out.starts_with("no periodic schedules"));
    for args in [&["queues", "--json"][..], &["jobs", "list", "--json"], &["workers", "--json"], &["cron", "--json"]] {
        let outcome = haul(&storage, args).await;
        assert_eq!((outcome.exit, outcome.out.as_str()), (Exit::Success, ""), "{args:?}");
    }
}

#[tokio::test]
async fn jobs_list_shows_a_page_and_how_to_get_the_next() {
    let storage = storage();
    let long_error = format!("connection reset by peer {}", "x".repeat(200));
    let mail = discarded(&storage, "mail", 3, &long_error).await;
    let other = enqueue(&storage, job("other")).await;

    let outcome = haul(&storage, &["jobs", "list", "--state", "discarded", "--limit", "2"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    let lines: Vec<&str> = outcome.out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two jobs: {}", outcome.out);
    assert_eq!(
        words(lines[0]),
        ["ID", "KIND", "QUEUE", "STATE", "ATTEMPT", "RUN", "AT", "CREATED", "AT", "LAST", "ERROR"]
    );
    let first = words(lines[1]);
    assert_eq!(first[..5], [mail[0].to_string().as_str(), KIND, "mail", "discarded", "1/1"]);
    assert!(lines[1].contains("connection reset by peer xxx"), "{}", lines[1]);
    assert!(lines[1].ends_with('…') && lines[1].len() < 250, "the error is cut: {}", lines[1]);
    assert!(lines[2].starts_with(&mail[1].to_string()));
    let hint = format!("haul jobs list --state discarded --limit 2 --after {}", mail[1]);
    assert!(outcome.err.contains(&hint), "{outcome:?}");

    // Following the hint gives the last job, and no hint: the page is not full.
    let after = mail[1].to_string();
    let outcome = haul(&storage, &["jobs", "list", "--state", "discarded", "--limit", "2", "--after", &after]).await;
    let ids: Vec<&str> = outcome.out.lines().skip(1).map(|line| words(line)[0]).collect();
    assert_eq!(ids, [mail[2].to_string()]);
    assert_eq!(outcome.err, "", "no next page");

    // Filters: queue, several states, kind.
    let listed = |outcome: Outcome| -> Vec<String> {
        json_lines(&outcome.out).iter().map(|job| job["id"].as_str().unwrap().to_owned()).collect()
    };
    let both = listed(haul(&storage, &["jobs", "list", "--json", "--state", "discarded,available"]).await);
    assert_eq!(both.len(), 4);
    let repeated =
        listed(haul(&storage, &["jobs", "list", "--json", "--state", "available", "--state", "discarded"]).await);
    assert_eq!(repeated, both);
    assert_eq!(listed(haul(&storage, &["jobs", "list", "--json", "--queue", "other"]).await), [other.to_string()]);
    assert!(listed(haul(&storage, &["jobs", "list", "--json", "--kind", "nothing.such"]).await).is_empty());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(listed(haul(&storage, &["jobs", "list", "--json", "--created-from", &future]).await).is_empty());
    assert_eq!(listed(haul(&storage, &["jobs", "list", "--json", "--created-until", &future]).await).len(), 4);
}

#[tokio::test]
async fn jobs_list_json_has_every_field_of_the_record() {
    let storage = storage();
    let ids = discarded(&storage, "mail", 1, "smtp refused").await;
    let outcome = haul(&storage, &["jobs", "list", "--json"]).await;
    let jobs = json_lines(&outcome.out);
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["id"], ids[0].to_string());
    assert_eq!(job["kind"], KIND);
    assert_eq!(job["state"], "discarded");
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["max_attempts"], 1);
    assert_eq!(job["args"], serde_json::json!({ "to": "ada@example.com", "n": 1 }));
    assert_eq!(job["errors"][0]["message"], "smtp refused");
    assert_eq!(job["errors"][0]["attempt"], 1);
    assert!(job["finished_at"].is_string() && job["created_at"].is_string() && job["run_at"].is_string());
    for field in ["priority", "timeout", "attempted_at", "cancel_requested_at", "lease_token", "lease_expires_at"] {
        assert!(job.get(field).is_some(), "{field} is present");
    }
    for field in ["claimed_by", "unique_key", "limit_key", "metadata", "unreadable_args"] {
        assert!(job.get(field).is_some(), "{field} is present");
    }
}

#[tokio::test]
async fn jobs_show_prints_every_field_and_the_error_history() {
    let storage = storage();
    let id = enqueue(&storage, job("mail").max_attempts(3).metadata("tenant", "acme").limit_key("customer-42")).await;
    for error in ["first failure", "second failure\nwith a second line"] {
        let claimed = claim(&storage, "mail").await;
        let failed = JobOutcome::Failed { error: error.to_owned(), retry_in: Duration::ZERO };
        report(&storage, &claimed, failed, None).await;
        storage.promote_due(Some(chrono::Utc::now() + chrono::Duration::seconds(1))).await.unwrap();
    }

    let outcome = haul(&storage, &["jobs", "show", &id.to_string()]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    let out = &outcome.out;
    assert!(line_starting(out, "id ").ends_with(&id.to_string()));
    assert_eq!(words(line_starting(out, "state ")), ["state", "available"]);
    assert_eq!(words(line_starting(out, "attempt ")), ["attempt", "2", "of", "3"]);
    assert!(out.contains("\n  tenant = acme\n"), "{out}");
    assert_eq!(words(line_starting(out, "limit key ")), ["limit", "key", "customer-42"]);
    assert!(out.contains("arguments\n  {\n    \"n\": 1,\n    \"to\": \"ada@example.com\"\n  }\n"), "{out}");
    let errors: Vec<&str> = out.lines().skip_while(|line| *line != "errors").skip(1).collect();
    assert_eq!(errors.len(), 3, "{out}");
    assert!(errors[0].starts_with("  attempt 1 at ") && errors[0].ends_with(": first failure"), "{out}");
    assert!(errors[1].starts_with("  attempt 2 at ") && errors[1].ends_with(": second failure"), "{out}");
    assert_eq!(errors[2], "    with a second line");
    assert!(!out.contains("held by"), "no lease unless running: {out}");

    // A running job shows its holder.
    let claimed = claim(&storage, "mail").await;
    assert_eq!(claimed.len(), 1);
    let outcome = haul(&storage, &["jobs", "show", &id.to_string()]).await;
    assert_eq!(words(line_starting(&outcome.out, "held by")), ["held", "by", WORKER]);
    assert!(line_starting(&outcome.out, "lease expires at").contains('T'));

    let json = json_lines(&haul(&storage, &["jobs", "show", &id.to_string(), "--json"]).await.out);
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["claimed_by"], WORKER);
    assert_eq!(json[0]["metadata"]["tenant"], "acme");
    assert_eq!(json[0]["limit_key"], "customer-42");
    assert_eq!(json[0]["errors"].as_array().unwrap().len(), 2);

    // A job without a limit key has no such line, and `null` in JSON.
    let plain = enqueue(&storage, job("mail")).await;
    let outcome = haul(&storage, &["jobs", "show", &plain.to_string()]).await;
    assert!(!outcome.out.contains("limit key"), "{}", outcome.out);
    let json = json_lines(&haul(&storage, &["jobs", "show", &plain.to_string(), "--json"]).await.out);
    assert_eq!(json[0]["limit_key"], serde_json::Value::Null);
}

#[tokio::test]
async fn jobs_show_of_an_unknown_job_exits_3() {
    let storage = storage();
    let id = JobId::new();
    let outcome = haul(&storage, &["jobs", "show", &id.to_string()]).await;
    assert_eq!(outcome.exit, Exit::NotFound);
    assert_eq!(outcome.out, "");
    assert!(outcome.err.starts_with(&format!("error: job {id} not found\nhint: ")), "{outcome:?}");
}

#[tokio::test]
async fn retry_by_ids_reports_each_id_and_exits_with_the_worst_outcome() {
    let storage = storage();
    let ids = discarded(&storage, "mail", 2, "boom").await;
    let busy = running(&storage, "mail").await;

    let outcome = haul(&storage, &["jobs", "retry", &ids[0].to_string(), &ids[1].to_string()]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(outcome.out, format!("retried {}: now available\nretried {}: now available\n", ids[0], ids[1]));
    assert_eq!(states(&storage, &ids).await, [JobState::Available, JobState::Available]);

    // A running job: 4, with what to do.
    let outcome = haul(&storage, &["jobs", "retry", &busy.to_string()]).await;
    assert_eq!(outcome.exit, Exit::InvalidState, "{outcome:?}");
    assert!(outcome.err.contains(&format!("could not retry {busy}: job {busy} is running")), "{outcome:?}");
    assert!(outcome.err.contains(&format!("hint: wait for it to finish, or cancel it first: haul jobs cancel {busy}")));

    // An unknown job among others: each is reported, the exit code is 3.
    let unknown = JobId::new();
    let outcome = haul(&storage, &["--json", "jobs", "retry", &busy.to_string(), &unknown.to_string()]).await;
    assert_eq!(outcome.exit, Exit::NotFound, "{outcome:?}");
    let lines = json_lines(&outcome.out);
    assert_eq!(lines[0]["ok"], false);
    assert_eq!(lines[0]["exit_code"], 4);
    assert_eq!(lines[1]["id"], unknown.to_string());
    assert_eq!(lines[1]["exit_code"], 3);
    assert!(outcome.err.contains(&format!("job {unknown} not found")));
}

#[tokio::test]
async fn cancel_and_delete_by_id() {
    let storage = storage();
    let busy = running(&storage, "mail").await;
    let waiting = enqueue(&storage, job("mail")).await;

    let outcome = haul(&storage, &["jobs", "cancel", &waiting.to_string(), &busy.to_string()]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(outcome.out.contains(&format!("cancelled {waiting}: now cancelled")), "{outcome:?}");
    assert!(outcome.out.contains(&format!("asked {busy} to cancel: it is running")), "{outcome:?}");
    assert!(get(&storage, busy).await.cancel_requested_at.is_some());

    // Cancelling a finished job: 4.
    let outcome = haul(&storage, &["jobs", "cancel", &waiting.to_string()]).await;
    assert_eq!(outcome.exit, Exit::InvalidState, "{outcome:?}");
    assert!(outcome.err.contains("hint: it has already finished"), "{outcome:?}");

    // Deleting: the finished job goes, the running one stays (4).
    let outcome = haul(&storage, &["jobs", "delete", &waiting.to_string()]).await;
    assert_eq!((outcome.exit, outcome.out.clone()), (Exit::Success, format!("deleted {waiting}\n")), "{outcome:?}");
    assert!(storage.get(waiting).await.unwrap().is_none());
    let outcome = haul(&storage, &["jobs", "delete", &busy.to_string()]).await;
    assert_eq!(outcome.exit, Exit::InvalidState, "{outcome:?}");
    assert!(outcome.err.contains("cancel it first"), "{outcome:?}");
    assert_eq!(get(&storage, busy).await.state, JobState::Running);
    let outcome = haul(&storage, &["jobs", "delete", &waiting.to_string()]).await;
    assert_eq!(outcome.exit, Exit::NotFound, "{outcome:?}");
}

#[tokio::test]
async fn retry_by_filter_asks_first_and_a_declined_prompt_changes_nothing() {
    let storage = storage();
    let mail = discarded(&storage, "mail", 3, "boom").await;
    let other = discarded(&storage, "other", 1, "boom").await;

    for answer in ["", "n\n", "no\n", "maybe\n"] {
        let outcome =
            haul_with_input(&storage, &["jobs", "retry", "--state", "discarded", "--queue", "mail"], answer).await;
        assert_eq!(outcome.exit, Exit::Declined, "{answer:?}: {outcome:?}");
        assert!(outcome.err.starts_with("retry 3 jobs matching --queue mail --state discarded? [y/N] "), "{outcome:?}");
        assert!(outcome.err.contains("error: declined: nothing was changed\nhint: "), "{outcome:?}");
        if answer.is_empty() {
            assert!(outcome.err.contains("[y/N] \nerror: "), "the error gets a line of its own: {outcome:?}");
        }
        assert_eq!(outcome.out, "");
        assert_eq!(states(&storage, &mail).await, [JobState::Discarded; 3], "nothing changed");
    }

    let outcome = haul_with_input(&storage, &["jobs", "retry", "--state", "discarded", "--queue", "mail"], "y\n").await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(outcome.out, "retried 3 jobs\n");
    assert_eq!(states(&storage, &mail).await, [JobState::Available; 3]);
    assert_eq!(states(&storage, &other).await, [JobState::Discarded], "another queue is left alone");

    // Nothing left to retry: no question.
    let outcome = haul(&storage, &["jobs", "retry", "--state", "discarded", "--queue", "mail"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(outcome.out, "nothing to retry: no job matching --queue mail --state discarded\n");
    assert_eq!(outcome.err, "");
}

#[tokio::test]
async fn a_bulk_action_with_yes_does_not_ask_and_reports_in_json() {
    let storage = storage();
    let ids = discarded(&storage, "mail", 2, "boom").await;
    let outcome = haul(&storage, &["jobs", "retry", "--kind", KIND, "--yes", "--json"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(outcome.err, "", "no question");
    assert_eq!(json_lines(&outcome.out), vec![serde_json::json!({ "action": "retry", "matched": 2, "changed": 2 })]);
    assert_eq!(states(&storage, &ids).await, [JobState::Available; 2]);
}

#[tokio::test]
async fn cancel_by_filter_names_the_jobs_it_leaves_alone() {
    let storage = storage();
    let done = discarded(&storage, "mail", 1, "boom").await[0];
    let busy = running(&storage, "mail").await;
    let waiting = enqueue(&storage, job("mail")).await;
    let elsewhere = enqueue(&storage, job("reports")).await;
    let all = [done, busy, waiting, elsewhere];
    let before = states(&storage, &all).await;
    assert_eq!(before, [JobState::Discarded, JobState::Running, JobState::Available, JobState::Available]);

    let outcome = haul_with_input(&storage, &["jobs", "cancel", "--queue", "mail"], "n\n").await;
    assert_eq!(outcome.exit, Exit::Declined, "{outcome:?}");
    assert!(outcome.err.starts_with("1 more job matching --queue mail is finished, and left alone\n"), "{outcome:?}");
    assert!(outcome.err.contains("cancel 2 jobs matching --queue mail? [y/N]"), "{outcome:?}");
    assert_eq!(states(&storage, &all).await, before, "nothing changed");

    let outcome = haul(&storage, &["jobs", "cancel", "--queue", "mail", "--yes"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(outcome.out, "cancelled 2 jobs\n");
    assert_eq!(get(&storage, waiting).await.state, JobState::Cancelled);
    assert!(get(&storage, busy).await.cancel_requested_at.is_some(), "the running job is asked to stop");
    assert_eq!(states(&storage, &[done, elsewhere]).await, [JobState::Discarded, JobState::Available]);
}

#[tokio::test]
async fn delete_all_asks_about_every_job_and_keeps_running_ones() {
    let storage = storage();
    let gone = discarded(&storage, "mail", 2, "boom").await;
    let busy = running(&storage, "reports").await;

    let outcome = haul_with_input(&storage, &["jobs", "delete", "--all"], "yes\n").await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(outcome.err.contains("1 more job in the storage is running, and left alone"), "{outcome:?}");
    assert!(outcome.err.contains("delete 2 jobs in the storage? [y/N]"), "{outcome:?}");
    assert_eq!(outcome.out, "deleted 2 jobs\n");
    for id in gone {
        assert!(storage.get(id).await.unwrap().is_none());
    }
    assert_eq!(get(&storage, busy).await.state, JobState::Running);
}

#[tokio::test]
async fn an_action_without_ids_filter_or_all_is_bad_usage() {
    let storage = storage();
    let ids = discarded(&storage, "mail", 1, "boom").await;
    for action in ["retry", "cancel", "delete"] {
        let outcome = haul(&storage, &["jobs", action]).await;
        assert_eq!(outcome.exit, Exit::Usage, "{outcome:?}");
        assert!(outcome.err.contains(&format!("say which jobs to {action}")), "{outcome:?}");
        assert!(outcome.err.contains("--all"), "{outcome:?}");
    }
    assert_eq!(states(&storage, &ids).await, [JobState::Discarded]);
}

#[tokio::test]
async fn stats_totals_every_queue() {
    let storage = storage();
    discarded(&storage, "mail", 2, "boom").await;
    enqueue(&storage, job("mail")).await;
    enqueue(&storage, job("reports")).await;
    enqueue(&storage, job("reports")).await;
    storage.pause_queue("reports").await.unwrap();
    storage.set_queue_limits("mail", QueueLimits::new().concurrency(4)).await.unwrap();
    let reports = QueueLimits::new().key_concurrency(1).key_rate(RateLimit::per_hour(30));
    storage.set_queue_limits("reports", reports).await.unwrap();

    let outcome = haul(&storage, &["stats"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    // queue, paused, total, then the seven states.
    assert_eq!(
        words(line_starting(&outcome.out, "mail"))[..10],
        ["mail", "no", "3", "0", "1", "0", "0", "0", "2", "0"]
    );
    assert_eq!(
        words(line_starting(&outcome.out, "reports"))[..10],
        ["reports", "yes", "2", "0", "2", "0", "0", "0", "0", "0"]
    );
    assert_eq!(
        words(line_starting(&outcome.out, "(all queues)"))[..13],
        ["(all", "queues)", "1", "of", "2", "5", "0", "3", "0", "0", "0", "2", "0"]
    );

    let json = json_lines(&haul(&storage, &["stats", "--json"]).await.out);
    assert_eq!(json.len(), 3);
    assert_eq!(json[0]["total"], 3);
    assert_eq!(json[2]["queue"], serde_json::Value::Null);
    assert_eq!(json[2]["total"], 5);
    assert_eq!(json[2]["counts"]["available"], 3);
    let limits: Vec<_> = json.iter().map(|line| line["concurrency_limit"].clone()).collect();
    assert_eq!(limits, [serde_json::json!(4), serde_json::Value::Null, serde_json::Value::Null], "per queue, not all");
    let key_limits: Vec<_> = json.iter().map(|line| line.get("key_concurrency_limit").cloned()).collect();
    assert_eq!(key_limits, [Some(serde_json::Value::Null), Some(serde_json::json!(1)), None], "per queue, not all");
    let rates: Vec<_> = json.iter().map(|line| line.get("rate_limit").cloned()).collect();
    assert_eq!(rates, [Some(serde_json::Value::Null), Some(serde_json::Value::Null), None], "per queue, not all");
    let key_rates: Vec<_> = json.iter().map(|line| line.get("key_rate_limit").cloned()).collect();
    let per_hour = serde_json::json!({ "starts": 30, "period": 3600.0 });
    assert_eq!(key_rates, [Some(serde_json::Value::Null), Some(per_hour), None], "per queue, not all");
    for line in &json {
        assert_eq!(line["completed_last_hour"], 0, "no worker recorded any attempt: {line}");
        assert_eq!(line["failed_last_hour"], 0, "no worker recorded any attempt: {line}");
        assert_eq!(line["completed_per_minute"], 0.0, "{line}");
        assert_eq!(line["failed_per_minute"], 0.0, "{line}");
    }
}

#[tokio::test]
async fn stats_shows_the_attempts_of_the_last_hour_per_queue_and_per_minute() {
    use serde_json::json;

    let storage = storage();
    enqueue(&storage, job("mail")).await;
    let now = chrono::Utc::now();
    let minutes_ago = |minutes: i64| now - chrono::Duration::minutes(minutes);
    let samples = vec![
        ThroughputSample::new("mail", now, 20, 1),
        ThroughputSample::new("mail", minutes_ago(30), 70, 2),
        // Older than the hour: left out.
        ThroughputSample::new("mail", minutes_ago(90), 1000, 1000),
        // A queue that holds no job any more still has its row.
        ThroughputSample::new("reports", minutes_ago(10), 30, 0),
    ];
    storage.record_throughput(samples, None).await.unwrap();

    let outcome = haul(&storage, &["stats"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    let header = outcome.out.lines().next().unwrap();
    assert!(header.contains("CANCELLED  DONE 1H  FAILED 1H  DONE/MIN  FAILED/MIN  NEXT AVAILABLE WAITED"), "{header}");
    // queue, paused, total, the seven states, then done and failed in the hour and per minute.
    assert_eq!(words(line_starting(&outcome.out, "mail"))[10..14], ["90", "3", "1.50", "0.05"]);
    assert_eq!(
        words(line_starting(&outcome.out, "reports")),
        ["reports", "no", "0", "0", "0", "0", "0", "0", "0", "0", "30", "0", "0.50", "0.00", "-"]
    );
    assert_eq!(words(line_starting(&outcome.out, "(all queues)"))[13..17], ["120", "3", "2.00", "0.05"]);

    let json = json_lines(&haul(&storage, &["stats", "--json"]).await.out);
    let last_hour = |line: &serde_json::Value| {
        (
            line["queue"].clone(),
            line["completed_last_hour"].clone(),
            line["failed_last_hour"].clone(),
            line["completed_per_minute"].clone(),
            line["failed_per_minute"].clone(),
        )
    };
    let expected = [("mail", 90, 3, 1.5, 0.05), ("reports", 30, 0, 0.5, 0.0)].map(
        |(queue, completed, failed, completed_per_minute, failed_per_minute)| {
            (json!(queue), json!(completed), json!(failed), json!(completed_per_minute), json!(failed_per_minute))
        },
    );
    assert_eq!(json.iter().map(last_hour).collect::<Vec<_>>()[..2], expected);
    assert_eq!(last_hour(&json[2]), (serde_json::Value::Null, json!(120), json!(3), json!(2.0), json!(0.05)));
    assert_eq!(json.len(), 3);
}

#[tokio::test]
async fn prune_deletes_in_batches_every_job_past_its_retention() {
    let storage = storage();
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    for _ in 0..5 {
        enqueue(&storage, job("old")).await;
    }
    let claimed = claim(&storage, "old").await;
    report(&storage, &claimed, JobOutcome::Completed, Some(two_days_ago)).await;
    let recent = discarded(&storage, "mail", 1, "boom").await;

    let outcome = haul(&storage, &["prune", "--batch-size", "2"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert!(outcome.out.starts_with("deleted 5 finished jobs (kept: completed for 1day"), "{outcome:?}");
    assert!(storage.list(haul::ListParams::new().queue("old")).await.unwrap().is_empty());
    assert_eq!(states(&storage, &recent).await, [JobState::Discarded], "within its retention");

    let outcome = haul(&storage, &["prune", "--discarded", "0s", "--json"]).await;
    assert_eq!(json_lines(&outcome.out)[0]["deleted"], 1);
    assert!(storage.get(recent[0]).await.unwrap().is_none());
}

#[tokio::test]
async fn workers_lists_the_live_workers_and_marks_the_leader() {
    let storage = storage();
    let now = chrono::Utc::now();
    for id in ["worker-a", "worker-b"] {
        let beat = WorkerBeat::new(id, now, Duration::from_secs(60))
            .process("host-1", 42)
            .serving(vec!["mail".into(), "reports".into()], 8)
            .held(3);
        storage.beat_worker(beat).await.unwrap();
    }
    let leadership = storage.acquire_leadership(LeadershipParams::new("worker-b", Duration::from_secs(60))).await;
    let term = leadership.unwrap().expect("nobody else leads").term;

    let outcome = haul(&storage, &["workers"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    let a = words(line_starting(&outcome.out, "worker-a"));
    assert_eq!(a[..6], ["worker-a", "host-1", "42", "mail,reports", "8", "3"]);
    assert_eq!(a.len(), 8, "no leader mark: {a:?}");
    let b = line_starting(&outcome.out, "worker-b");
    assert!(b.ends_with(&format!("yes (term {term})")), "{b}");

    let json = json_lines(&haul(&storage, &["workers", "--json"]).await.out);
    assert_eq!(json.len(), 2);
    assert_eq!((json[0]["leader"].clone(), json[1]["leader"].clone()), (false.into(), true.into()));
    assert_eq!(json[1]["term"], term);
    assert_eq!(json[1]["queues"], serde_json::json!(["mail", "reports"]));
}

#[tokio::test]
async fn cron_lists_the_schedules() {
    let storage = storage();
    let tick = chrono::Utc::now();
    let update = PeriodicUpdate::new("nightly_report", "cron \"0 3 * * *\" in UTC")
        .last_tick(tick)
        .next_tick(tick + chrono::Duration::days(1));
    storage.save_periodic(update).await.unwrap();
    storage.save_periodic(PeriodicUpdate::new("cleanup", "every 30s")).await.unwrap();

    let outcome = haul(&storage, &["cron"]).await;
    assert_eq!(outcome.exit, Exit::Success, "{outcome:?}");
    assert_eq!(
        words(line_starting(&outcome.out, "NAME")),
        ["NAME", "SCHEDULE", "LAST", "TICK", "NEXT", "TICK", "UPDATED"]
    );
    let cleanup = words(line_starting(&outcome.out, "cleanup"));
    assert_eq!(cleanup[..5], ["cleanup", "every", "30s", "-", "-"]);
    let nightly = line_starting(&outcome.out, "nightly_report");
    assert!(nightly.contains("cron \"0 3 * * *\" in UTC"), "{nightly}");
    assert!(nightly.contains(&tick.format("%Y-%m-%dT%H:%M:%SZ").to_string()), "{nightly}");

    let json = json_lines(&haul(&storage, &["cron", "--json"]).await.out);
    assert_eq!(json.len(), 2);
    assert_eq!(json[1]["name"], "nightly_report");
    assert!(json[1]["next_tick"].is_string());
    assert_eq!(json[0]["last_tick"], serde_json::Value::Null);
}

#[test]
fn bad_command_lines_exit_2_saying_what_is_wrong() {
    let (code, message) = usage_error(&["jobs", "list", "--state", "done"]);
    assert_eq!(code, 2);
    assert!(message.contains("unknown job state `done`"), "{message}");
    let (code, message) = usage_error(&["jobs", "show", "42"]);
    assert_eq!(code, 2);
    assert!(message.contains("is not a job id"), "{message}");
    let (code, _) = usage_error(&["jobs", "list", "--created-from", "yesterday"]);
    assert_eq!(code, 2);
    let (code, _) = usage_error(&["jobs", "list", "--limit", "0"]);
    assert_eq!(code, 2);
    let (code, _) = usage_error(&["prune", "--completed", "soon"]);
    assert_eq!(code, 2);
    let id = JobId::new().to_string();
    for conflicting in [
        vec!["jobs", "retry", id.as_str(), "--queue", "mail"],
        vec!["jobs", "delete", id.as_str(), "--all"],
        vec!["jobs", "cancel", "--all", "--state", "running"],
    ] {
        assert_eq!(usage_error(&conflicting).0, 2, "{conflicting:?}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let help = usage_error(&["--help"]).1;
    for line in [
        "0  success",
        "1  the operation or the storage failed",
        "2  bad usage",
        "3  job not found",
        "4  the job's state does not allow the action",
        "5  declined at the confirmation prompt",
    ] {
        assert!(help.contains(line), "{line} missing from:\n{help}");
    }
    assert!(help.contains("HAUL_URL"), "{help}");
}

#[tokio::test]
async fn no_url_is_bad_usage_saying_how_to_give_one() {
    let cli = Cli::try_parse_from(["haul", "queues"]).unwrap();
    let cli = Cli { url: None, ..cli };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input: &[u8] = b"";
    let exit = haul_cli::connect_and_run(cli, &mut Io::new(&mut out, &mut err, &mut input)).await;
    assert_eq!(exit, Exit::Usage);
    let err = String::from_utf8(err).unwrap();
    assert!(err.starts_with("error: no storage URL: pass --url URL or set HAUL_URL\nhint: for example: "), "{err}");
}

#[tokio::test]
async fn a_bad_url_fails_without_repeating_it() {
    let cli = Cli::try_parse_from(["haul", "--url", "mysql://user:secret@localhost/db", "queues"]).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input: &[u8] = b"";
    let exit = haul_cli::connect_and_run(cli, &mut Io::new(&mut out, &mut err, &mut input)).await;
    assert_eq!(exit, Exit::Failure);
    let err = String::from_utf8(err).unwrap();
    assert!(err.starts_with("error: could not open the storage: "), "{err}");
    assert!(err.contains("hint: fix the URL"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}
