//! What `#[job]` generates, exercised at run time through the `haul` facade.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use haul::prelude::*;
use haul::{Control, Job, StateMap};
use haul_core::job::{decode_job, registered_kinds};
use serde_json::json;

/// Records what the handlers did, shared through `State<Outbox>`.
#[derive(Default)]
struct Outbox(Mutex<Vec<String>>);

impl Outbox {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn sent(ctx: &JobContext) -> Vec<String> {
        ctx.state::<Self>().unwrap().0.0.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct MailError(&'static str);

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

#[job(
    queue = "mail",
    priority = -3,
    max_attempts = 5,
    timeout = "1m 30s",
    backoff = RetryPolicy::fixed(Duration::from_secs(5)),
    unique = true
)]
async fn send_email(outbox: State<Outbox>, to: String, subject: String) -> Result<(), MailError> {
    if to.is_empty() {
        return Err(MailError("no recipient"));
    }
    outbox.push(format!("{to}: {subject}"));
    Ok(())
}

#[job]
async fn ping() {}

#[job(name = "reports:nightly")]
async fn build_report(State(outbox): State<Outbox>, ctx: &JobContext, day: u32, owner: Option<String>) {
    outbox.push(format!("report {day} for {owner:?}, attempt {}", ctx.attempt()));
}

#[job(queue = "billing", limit_key = customer_id)]
async fn charge(customer_id: u64, cents: i64) {
    let _ = (customer_id, cents);
}

#[job(priority = -32768)]
async fn r#type(r#type: String, ctx: JobContext) -> Result<(), JobError> {
    Err(JobError::discard(format!("{type} in {}", ctx.kind())))
}

fn queue() -> Queue {
    Queue::new(MemoryStorage::new())
}

fn test_context() -> JobContext {
    JobContext::for_test(StateMap::new().with(Outbox::default()))
}

#[test]
fn the_struct_serializes_to_a_json_object_of_the_stored_arguments() {
    let job = SendEmail::new("ada@example.com", "hello");
    assert_eq!(serde_json::to_value(&job).unwrap(), json!({"to": "ada@example.com", "subject": "hello"}));
    assert_eq!(serde_json::to_value(Ping::new()).unwrap(), json!({}));
    assert_eq!(serde_json::to_value(BuildReport::new(7, None)).unwrap(), json!({"day": 7, "owner": null}));
    assert_eq!(serde_json::to_value(Type::new("x")).unwrap(), json!({"type": "x"}));
}

#[test]
fn stored_arguments_are_fields_named_after_the_arguments() {
    let job = SendEmail { to: "ada@example.com".to_owned(), subject: "hello".to_owned() };
    assert_eq!((job.to.as_str(), job.subject.as_str()), ("ada@example.com", "hello"));
}

#[test]
fn prepare_uses_the_options_of_the_attribute() {
    let job = queue().prepare(&SendEmail::new("ada@example.com", "hello")).unwrap();
    assert_eq!(job.kind, "send_email");
    assert_eq!(job.args, json!({"to": "ada@example.com", "subject": "hello"}));
    assert_eq!(job.queue, "mail");
    assert_eq!(job.priority, -3);
    assert_eq!(job.max_attempts, 5);
    assert_eq!(job.timeout, Some(Duration::from_secs(90)));
    assert_eq!(
        job.unique.map(|unique| unique.key),
        Some(r#"send_email:{"subject":"hello","to":"ada@example.com"}"#.to_owned()),
        "unique by kind and arguments"
    );
    let options = SendEmail::new("", "").options();
    assert_eq!(options.retry, RetryPolicy::fixed(Duration::from_secs(5)));
}

#[test]
fn a_job_without_options_gets_the_defaults_and_its_function_name() {
    let job = queue().prepare(&Ping::new()).unwrap();
    assert_eq!(job.kind, "ping");
    assert_eq!(job.args, json!({}));
    assert_eq!((job.queue.as_str(), job.priority, job.max_attempts, job.timeout), ("default", 0, 20, None));
    assert_eq!(job.unique, None);
    assert_eq!(Ping::new().options(), haul::JobOptions::new());
}

#[test]
fn the_limit_key_option_takes_the_named_arguments_value() {
    let job = queue().prepare(&Charge::new(42, 1999)).unwrap();
    assert_eq!(job.limit_key.as_deref(), Some("42"));
    assert_eq!(Charge::new(7, 0).limit_key(), Some("7".to_owned()));
    assert_eq!(queue().prepare(&Ping::new()).unwrap().limit_key, None, "no limit key unless asked");
}

#[test]
fn the_name_option_sets_the_stored_kind() {
    assert_eq!(queue().prepare(&BuildReport::new(7, None)).unwrap().kind, "reports:nightly");
    assert!(decode_job("build_report", &json!({"day": 7, "owner": null})).is_err());
    assert_eq!(queue().prepare(&Type::new("x")).unwrap().priority, i16::MIN);
}

#[test]
fn every_job_kind_is_registered_with_its_rust_type_and_options() {
    let kind = registered_kinds().find(|kind| kind.name == "send_email").unwrap();
    assert_eq!(kind.rust_type, "generated::SendEmail");
    assert_eq!((kind.options)(), SendEmail::new("", "").options());
    let names: Vec<_> = registered_kinds().map(|kind| kind.name).collect();
    for name in ["ping", "reports:nightly", "send_email", "type"] {
        assert!(names.contains(&name), "{name} is not in {names:?}");
    }
    haul_core::job::check_registered_kinds().unwrap();
}

#[test]
fn each_kind_records_the_state_its_injected_arguments_need() {
    let needs = |name: &str| -> Vec<haul_core::StateRequirement> {
        registered_kinds().find(|kind| kind.name == name).unwrap().required_states().collect()
    };
    let outbox = haul_core::StateRequirement::of::<Outbox>();
    assert_eq!(needs("send_email"), [outbox]);
    // A pattern (`State(outbox): State<Outbox>`) and a context argument.
    assert_eq!(needs("reports:nightly"), [outbox]);
    assert_eq!(needs("type"), [], "a `JobContext` needs no state");
    assert_eq!(needs("ping"), []);
}

#[tokio::test]
async fn the_original_function_is_still_callable() {
    let ctx = test_context();
    let outbox = ctx.state::<Outbox>().unwrap();
    send_email(outbox.clone(), "ada@example.com".to_owned(), "direct".to_owned()).await.unwrap();
    ping().await;
    assert_eq!(Outbox::sent(&ctx), ["ada@example.com: direct"]);
}

#[tokio::test]
async fn a_decoded_job_runs_its_handler_with_injected_state() {
    let stored = queue().prepare(&SendEmail::new("ada@example.com", "hello")).unwrap();
    let job = decode_job(&stored.kind, &stored.args).unwrap();
    assert_eq!(job.options().queue, "mail");
    let ctx = test_context();
    job.perform(ctx.clone()).await.unwrap();
    assert_eq!(Outbox::sent(&ctx), ["ada@example.com: hello"]);
}

#[tokio::test]
async fn injected_patterns_and_a_borrowed_context_reach_the_handler() {
    let stored = queue().prepare(&BuildReport::new(7, Some("ops".to_owned()))).unwrap();
    let job = decode_job(&stored.kind, &stored.args).unwrap();
    let ctx = test_context();
    job.perform(ctx.clone()).await.unwrap();
    assert_eq!(Outbox::sent(&ctx), [r#"report 7 for Some("ops"), attempt 1"#]);
}

#[tokio::test]
async fn handler_errors_and_instructions_become_job_errors() {
    let failing = decode_job("send_email", &json!({"to": "", "subject": "hello"})).unwrap();
    let error = failing.perform(test_context()).await.unwrap_err();
    assert_eq!(error.message(), "no recipient");
    assert!(error.control().is_none());

    let discarding = decode_job("type", &json!({"type": "x"})).unwrap();
    let error = discarding.perform(test_context()).await.unwrap_err();
    assert!(matches!(error.control(), Some(Control::Discard(_))));
    assert_eq!(error.message(), "x in test");
}

#[tokio::test]
async fn missing_state_fails_the_attempt_with_the_type_named() {
    let job = decode_job("send_email", &json!({"to": "ada@example.com", "subject": "hello"})).unwrap();
    let error = job.perform(JobContext::for_test(StateMap::new())).await.unwrap_err();
    assert!(error.message().contains("generated::Outbox"), "{}", error.message());
}

#[test]
fn arguments_that_no_longer_fit_the_struct_are_a_decode_error() {
    assert!(decode_job("send_email", &json!({"to": "ada@example.com"})).is_err());
    assert!(decode_job("ping", &json!({"extra": 1})).is_ok());
}
