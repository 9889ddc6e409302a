//! OpenTelemetry trace propagation (feature `opentelemetry`), end to end on the memory
//! backend: a job enqueued inside a span stores its `traceparent`, and the `haul.job`
//! span of each of its attempts, exported by an in-memory exporter, is a child of that
//! span in the same trace.
//!
//! Each test sets its subscriber for its own thread (`set_default`) and runs on a
//! current-thread runtime, so the worker's tasks, on that thread too, report to it.

#![allow(clippy::unwrap_used)]

use haul::{
    otel::{TRACEPARENT, TRACESTATE},
    prelude::*,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::{Instrument as _, subscriber::DefaultGuard};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[job(queue = "traced")]
async fn traced() -> Result<(), JobError> {
    Ok(())
}

#[job(queue = "traced_retried", max_attempts = 3)]
async fn traced_retried(ctx: JobContext) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        return Err(RetryAfter(Duration::from_millis(10)).into());
    }
    Ok(())
}

/// The OpenTelemetry pipeline of an application, exporting to memory, as this thread's
/// subscriber until the guard drops.
struct Telemetry {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    _guard: DefaultGuard,
}

impl Telemetry {
    fn start() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("haul-test"));
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        Self { provider, exporter, _guard }
    }

    /// The `haul.job` spans exported so far, in the order they ended.
    fn job_spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_spans().unwrap().into_iter().filter(|span| span.name == "haul.job").collect()
    }
}

/// Runs a worker of `queue` until job `id` has completed, and returns its record.
async fn run_to_completion(storage: &MemoryStorage, queue: &str, id: JobId) -> JobRecord {
    let producer = Queue::new(storage.clone());
    let worker = Worker::builder(storage.clone())
        .queues([queue])
        .poll_interval(Duration::from_millis(20))
        .maintenance_interval(Duration::from_millis(20))
        .build();
    let done = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while producer.get(id).await.unwrap().is_none_or(|job| job.state != JobState::Completed) {
            assert!(tokio::time::Instant::now() < deadline, "job {id} did not complete within 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    worker.run_until(done).await.unwrap();
    producer.get(id).await.unwrap().unwrap()
}

fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

#[tokio::test]
async fn a_job_enqueued_in_a_span_runs_in_a_child_span_of_that_trace() {
    let telemetry = Telemetry::start();
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let request = tracing::info_span!("request");
    let parent = span_context(&request);
    let id = async { queue.enqueue(Traced::new()).await }.instrument(request.clone()).await.unwrap();
    drop(request);

    let job = run_to_completion(&storage, "traced", id).await;
    let expected = format!("00-{}-{}-01", parent.trace_id(), parent.span_id());
    assert_eq!(job.metadata.get(TRACEPARENT), Some(&expected));
    assert!(!job.metadata.contains_key(TRACESTATE), "the trace has no vendor state");

    let spans = telemetry.job_spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].span_context.trace_id(), parent.trace_id(), "the job's span continues the trace");
    assert_eq!(spans[0].parent_span_id, parent.span_id(), "the job's span is a child of the enqueuing span");
    assert!(spans[0].parent_span_is_remote, "its parent was read back from storage");
    assert!(spans[0].links.is_empty());
}

#[tokio::test]
async fn each_attempt_of_a_retried_job_is_a_child_of_the_enqueuing_span() {
    let telemetry = Telemetry::start();
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let request = tracing::info_span!("request");
    let parent = span_context(&request);
    let ids = async { queue.enqueue_many([TracedRetried::new()]).await }.instrument(request).await.unwrap();

    let job = run_to_completion(&storage, "traced_retried", ids[0]).await;
    assert_eq!(job.attempt, 2);
    let spans = telemetry.job_spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for span in &spans {
        assert_eq!(span.span_context.trace_id(), parent.trace_id());
        assert_eq!(span.parent_span_id, parent.span_id());
    }
    assert_ne!(spans[0].span_context.span_id(), spans[1].span_context.span_id());
}

#[tokio::test]
async fn a_job_enqueued_outside_any_span_gets_no_traceparent_and_its_span_a_new_trace() {
    let telemetry = Telemetry::start();
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let id = queue.enqueue(Traced::new()).await.unwrap();

    let job = run_to_completion(&storage, "traced", id).await;
    assert!(!job.metadata.contains_key(TRACEPARENT), "{:?}", job.metadata);
    let spans = telemetry.job_spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert!(spans[0].span_context.is_valid());
    assert_eq!(spans[0].parent_span_id, SpanId::INVALID, "the job's span is a root");
}

#[tokio::test]
async fn a_traceparent_set_by_the_caller_is_kept() {
    let telemetry = Telemetry::start();
    let storage = MemoryStorage::new();
    let queue = Queue::new(storage.clone());
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let prepared = queue.prepare(&Traced::new()).unwrap().metadata(TRACEPARENT, given);
    let ids = async { queue.insert(vec![prepared]).await }.instrument(tracing::info_span!("request")).await.unwrap();

    let job = run_to_completion(&storage, "traced", ids[0]).await;
    assert_eq!(job.metadata[TRACEPARENT], given);
    let spans = telemetry.job_spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(spans[0].parent_span_id.to_string(), "00f067aa0ba902b7");
}
