//! OpenTelemetry trace propagation through job metadata (feature `opentelemetry`).
//!
//! **At enqueue**, [`inject`] writes the OpenTelemetry context of the current span (the
//! current `tracing` span as seen by a [`tracing_opentelemetry`] layer, or else the
//! current [`opentelemetry::Context`]) into each job's [metadata](crate::Metadata) as
//! the W3C Trace Context headers: [`TRACEPARENT`], and [`TRACESTATE`] when the trace
//! carries vendor state. [`Queue`](crate::Queue) calls it on every enqueue path
//! (`enqueue`, `enqueue_many`, `insert`) before its enqueue middleware, so a middleware
//! sees the header and may replace or remove it. A job whose metadata already holds a
//! `traceparent` keeps it, a job enqueued outside any span gets none, and a job whose
//! metadata would go over [`MAX_METADATA_BYTES`] with the headers is stored without them.
//!
//! **At run time**, the worker calls [`continue_trace`] on each attempt's `haul.job`
//! span: the span takes the stored context as its OpenTelemetry **parent**. It only
//! does so when the application's subscriber has a `tracing_opentelemetry` layer; an
//! unreadable header is ignored (the span then starts its own trace).
//!
//! # Child, not link
//!
//! The job's span is a *child* of the span that enqueued it: the request and the work it
//! deferred are one trace, the view an operator expects when asking why a request was
//! slow to take effect, and the choice of River and apalis. A child also inherits the
//! sampling decision of its parent (with the usual parent-based sampler), so a sampled
//! request's jobs are sampled and the others are not, at no cost in unsampled traces.
//!
//! The trade-off: a job may start long after the request ended (a scheduled job, a
//! backlog, a retry after an hour of backoff), and each attempt is another child of the
//! same parent, so such a trace stretches over hours and gains a `haul.job` span per
//! attempt; a tail-sampling collector that closed the trace may see the late spans
//! apart. A [link](https://opentelemetry.io/docs/concepts/signals/traces/#span-links)
//! instead would start a new trace per attempt, short and self-contained, pointing back
//! to the enqueue; but most trace viewers do not follow links, so the request and its
//! jobs would be searched for separately. An application that prefers links can remove
//! the `traceparent` in an enqueue middleware and keep it under another key, then add
//! the link itself in a handler middleware (`OpenTelemetrySpanExt::add_link` on the
//! current span).
//!
//! Jobs retried by hand ([`Queue::retry`](crate::Queue::retry)) keep their metadata, so
//! their next attempt joins the original trace too. Periodic jobs, which the leader
//! enqueues through storage without a caller's span, start a new trace at each run. Jobs
//! enqueued by other paths than [`Queue`](crate::Queue) (such as the PostgreSQL
//! backend's `enqueue_in_tx`) carry a `traceparent` only if the caller calls [`inject`]
//! on them first.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

use crate::{MAX_METADATA_BYTES, Metadata, NewJob, metadata::metadata_size};

/// The metadata key of the W3C `traceparent` header (trace id, parent span id, flags).
pub const TRACEPARENT: &str = "traceparent";

/// The metadata key of the W3C `tracestate` header (vendor state), stored only when
/// not empty.
pub const TRACESTATE: &str = "tracestate";

/// Writes the current span's trace context into the metadata of each job that has no
/// [`TRACEPARENT`] yet (see the [module docs](self)). Does nothing outside a span with
/// a valid OpenTelemetry context.
pub fn inject(jobs: &mut [NewJob]) {
    if jobs.iter().all(|job| job.metadata.contains_key(TRACEPARENT)) {
        return;
    }
    let Some(cx) = current_context() else {
        return;
    };
    let mut headers = Headers::default();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    let added = metadata_size(headers.0.iter().map(|(key, value)| (key, value)));
    for job in jobs.iter_mut().filter(|job| !job.metadata.contains_key(TRACEPARENT)) {
        if metadata_size(&job.metadata).saturating_add(added) > MAX_METADATA_BYTES {
            tracing::debug!(id = %job.id, kind = %job.kind, "no room in the job's metadata for its trace context");
            continue;
        }
        job.metadata.extend(headers.0.iter().cloned());
    }
}

/// Makes the trace context stored in `metadata` (a [`TRACEPARENT`], and its
/// [`TRACESTATE`]) the OpenTelemetry parent of `span`, which must not have been
/// entered yet. Does nothing without a `traceparent`, with an unreadable one, or when
/// the subscriber has no `tracing_opentelemetry` layer or does not record `span`.
pub fn continue_trace(span: &tracing::Span, metadata: &Metadata) {
    if !metadata.contains_key(TRACEPARENT) {
        return;
    }
    // The job's context holds the stored trace alone, whatever the worker's thread has
    // attached.
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), &MetadataExtractor(metadata));
    if !cx.span().span_context().is_valid() {
        tracing::debug!(traceparent = %metadata[TRACEPARENT], "ignoring the job's unreadable traceparent");
        return;
    }
    // No layer, or a span it filters out: nothing records the parent, nothing to do.
    if let Err(SetParentError::AlreadyStarted) = span.set_parent(cx) {
        tracing::debug!("the job's span started before its stored trace context could become its parent");
    }
}

/// The OpenTelemetry context of the current span, if it belongs to a trace.
fn current_context() -> Option<Context> {
    let valid = |cx: &Context| cx.span().span_context().is_valid();
    let cx = tracing::Span::current().context();
    if valid(&cx) {
        return Some(cx);
    }
    // An application that opens spans with the OpenTelemetry API alone.
    let cx = Context::current();
    valid(&cx).then_some(cx)
}

/// The headers a propagator writes, empty values left out.
#[derive(Default)]
struct Headers(Vec<(String, String)>);

impl Injector for Headers {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.push((key.to_ascii_lowercase(), value));
        }
    }
}

struct MetadataExtractor<'a>(&'a Metadata);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn job() -> NewJob {
        NewJob::new("kind", serde_json::json!({}))
    }

    /// Runs `f` with a subscriber that has an OpenTelemetry layer.
    fn with_otel<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn a_job_enqueued_in_a_span_gets_its_traceparent_unless_it_has_one_or_no_room() {
        with_otel(|| {
            let span = tracing::info_span!("request");
            let _entered = span.enter();
            let trace_id = span.context().span().span_context().trace_id();
            let mut kept = job();
            kept.metadata.insert(TRACEPARENT.into(), PARENT.into());
            let mut full = job();
            full.metadata.insert("big".into(), "v".repeat(MAX_METADATA_BYTES - 3));
            let mut jobs = [job(), kept, full];
            inject(&mut jobs);

            let traceparent = &jobs[0].metadata[TRACEPARENT];
            assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "{traceparent}");
            assert!(!jobs[0].metadata.contains_key(TRACESTATE), "an empty tracestate is not stored");
            assert_eq!(jobs[1].metadata[TRACEPARENT], PARENT);
            assert!(!jobs[2].metadata.contains_key(TRACEPARENT));
        });
    }

    #[test]
    fn no_span_or_no_layer_means_no_traceparent() {
        let mut jobs = [job()];
        with_otel(|| inject(&mut jobs));
        let span = tracing::info_span!("without a layer");
        span.in_scope(|| inject(&mut jobs));
        assert!(jobs[0].metadata.is_empty());
    }

    #[test]
    fn a_context_opened_with_the_opentelemetry_api_alone_is_propagated() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let mut jobs = [job()];
        let trace_id = tracer.in_span("request", |cx| {
            inject(&mut jobs);
            cx.span().span_context().trace_id()
        });
        assert!(jobs[0].metadata[TRACEPARENT].contains(&trace_id.to_string()));
    }

    #[test]
    fn the_stored_context_becomes_the_spans_parent_and_a_bad_one_is_ignored() {
        with_otel(|| {
            let mut metadata = Metadata::new();
            metadata.insert(TRACEPARENT.into(), PARENT.into());
            metadata.insert(TRACESTATE.into(), "vendor=value".into());
            let span = tracing::info_span!("haul.job");
            continue_trace(&span, &metadata);
            let context = span.context();
            let span_context = context.span().span_context().clone();
            assert_eq!(span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(span_context.trace_state().header(), "vendor=value");

            metadata.insert(TRACEPARENT.into(), "00-not-a-trace-01".into());
            let span = tracing::info_span!("haul.job");
            continue_trace(&span, &metadata);
            assert_ne!(span.context().span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        });
    }
}
