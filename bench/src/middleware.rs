//! The `middleware` workload (memory backend): what an empty middleware stack costs the
//! memory drain, and, with the bench's `otel` feature, what OpenTelemetry trace
//! propagation costs it, each as a ratio to the plain drain measured in the same run.
//!
//! Every variant drains `--jobs` pre-enqueued no-op jobs with one worker set up as the
//! drain row with prefetch (`--concurrency` slots, `--prefetch` jobs claimed ahead),
//! timed from the worker's start until every job is completed in storage:
//!
//! - **A**: no middleware, the baseline;
//! - **B**: one pass-through middleware (`from_fn` calling `next.run(ctx)` and nothing else);
//! - **C**: three of them;
//! - **D** (feature `otel`): no middleware, haul built with `opentelemetry`, and a
//!   `tracing` subscriber with a `tracing_opentelemetry` layer (see [`otel`]); the jobs are
//!   enqueued inside a span, so each carries a `traceparent` and each `haul.job` span
//!   is recorded as its child;
//! - **E** (feature `otel`): as D, but the jobs are enqueued outside any span, so they
//!   carry no `traceparent` and each `haul.job` span starts its own trace. D/E is what
//!   haul's propagation itself costs; E/A what recording a span per job costs any
//!   application with such a layer, with or without haul's feature.
//!
//! **Fair comparison.** The variants run in `--middleware-rounds` (default 5) interleaved
//! rounds, after one unreported warm-up round, the order rotated by one each round so
//! that no variant always follows the same one; each figure is the median of its rounds.
//! Every measurement gets a fresh `MemoryStorage` and a tokio runtime of its own, built
//! the same way for every variant (multi-thread, the default worker count, as the
//! harness's own runtime) and driven from a blocking thread, so no variant inherits
//! another's tasks, queues or heap state.
//!
//! D's and E's subscriber is not installed globally (it could not be removed again, and
//! A, B and C would then run under it): it is made the default dispatcher, with
//! `tracing::dispatcher::set_default`, of each thread of that measurement's runtime
//! (from the runtime's thread-start hook) and of the thread driving it, and of no other
//! thread. A fresh subscriber is built for each such measurement and dropped with its
//! runtime, after which `tracing`'s callsite interest and max level are recomputed and
//! checked to be back to those of a program that never had a subscriber (max level
//! off): A, B and C run on that fast path whichever variant ran before them. D/A is thus
//! the whole cost of turning tracing with OpenTelemetry on for these jobs (propagation,
//! plus recording and exporting every `haul.job` span), on the same binary (haul built
//! with the feature) as A.

use std::{
    sync::{Arc, atomic::AtomicUsize},
    time::Duration,
};

use haul::{JobContext, WorkerBuilder, middleware::Next};

use crate::{BoxError, Figure, Settings, backends, ui::Ui, workloads};

/// A baseline drain shorter than this is noted as too short to compare.
const SHORT: Duration = Duration::from_millis(100);

/// The extra time per job a variant may cost before its note says so (the 10 %).
const BUDGET: f64 = 0.10;

/// One way to run the drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// No middleware (A).
    Bare,
    /// This many pass-through middleware (B: 1, C: 3).
    PassThrough(usize),
    /// A recording OpenTelemetry subscriber, with the jobs enqueued inside a span (D) or
    /// outside any (E).
    #[cfg(feature = "otel")]
    Otel { propagate: bool },
}

impl Variant {
    /// Every variant this build measures, A first.
    fn all() -> Vec<Variant> {
        #[allow(unused_mut)]
        let mut all = vec![Variant::Bare, Variant::PassThrough(1), Variant::PassThrough(3)];
        #[cfg(feature = "otel")]
        all.extend([Variant::Otel { propagate: true }, Variant::Otel { propagate: false }]);
        all
    }

    fn letter(self) -> char {
        match self {
            Variant::Bare => 'A',
            Variant::PassThrough(1) => 'B',
            Variant::PassThrough(_) => 'C',
            #[cfg(feature = "otel")]
            Variant::Otel { propagate: true } => 'D',
            #[cfg(feature = "otel")]
            Variant::Otel { propagate: false } => 'E',
        }
    }

    fn label(self) -> String {
        let what = match self {
            Variant::Bare => "no middleware".to_owned(),
            Variant::PassThrough(n) => format!("{n} pass-through"),
            #[cfg(feature = "otel")]
            Variant::Otel { propagate: true } => "OTel layer + traceparent".to_owned(),
            #[cfg(feature = "otel")]
            Variant::Otel { propagate: false } => "OTel layer, no parent".to_owned(),
        };
        format!("middleware {}: {what}", self.letter())
    }

    /// The worker of this variant.
    fn configure(self, mut builder: WorkerBuilder) -> WorkerBuilder {
        if let Variant::PassThrough(n) = self {
            for _ in 0..n {
                builder = builder.middleware(haul::middleware::from_fn(|ctx: JobContext, next: Next| async move {
                    next.run(ctx).await
                }));
            }
        }
        builder
    }
}

/// What every measurement drains.
#[derive(Clone, Copy, Debug)]
struct Shape {
    jobs: usize,
    concurrency: usize,
    prefetch: usize,
}

#[cfg(feature = "otel")]
type Otel = otel::Otel;

#[cfg(feature = "otel")]
const D_NOTE: &str = otel::NOTE;

#[cfg(not(feature = "otel"))]
const D_NOTE: &str =
    "D and E (OpenTelemetry, with and without propagation) are measured when the bench is built with `--features otel`";

/// Without the `otel` feature there are no variants D and E, and nothing to set up for them.
#[cfg(not(feature = "otel"))]
#[derive(Debug)]
enum Otel {}

/// Measures every variant (memory backend): one figure per variant, then a note for
/// the run's notes.
pub(crate) async fn run(settings: &Settings, ui: &Ui) -> Result<(Vec<Figure>, String), BoxError> {
    let shape = Shape { jobs: settings.jobs, concurrency: settings.concurrency, prefetch: settings.prefetch };
    let variants = Variant::all();
    let rounds = settings.middleware_rounds.max(1);
    #[cfg(feature = "otel")]
    let otel = Some(Arc::new(otel::Otel::new(shape.jobs)));
    #[cfg(not(feature = "otel"))]
    let otel: Option<Arc<Otel>> = None;

    let bar = ui.bar("memory", &format!("middleware ({} variants x {} rounds)", variants.len(), rounds + 1), {
        variants.len() * (rounds + 1)
    });
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); variants.len()];
    // Round 0 warms up (allocator, page faults) and is not reported.
    for round in 0..=rounds {
        for i in 0..variants.len() {
            let index = (i + round) % variants.len();
            let elapsed = measure(variants[index], shape, otel.clone()).await?;
            if round > 0 {
                times[index].push(elapsed);
            }
            bar.counter().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    bar.clear();
    #[cfg(feature = "otel")]
    if let Some(otel) = &otel {
        otel.shutdown();
    }

    let medians: Vec<Duration> = times.iter().map(|t| median(t)).collect();
    let mut figures = Vec::with_capacity(variants.len());
    let mut ratios = Vec::new();
    for (index, variant) in variants.iter().enumerate() {
        let slowest = times[index].iter().max().copied().unwrap_or_default();
        let fastest = times[index].iter().min().copied().unwrap_or_default();
        let spread = format!("median of {rounds} rounds, {:.3}-{:.3} s", fastest.as_secs_f64(), slowest.as_secs_f64());
        let mut figure = Figure::new("memory", &variant.label(), shape.jobs, medians[index]);
        if index == 0 {
            figure = figure.note(format!("{spread}; the baseline"));
        } else {
            // Ratio of jobs/s: the baseline's median time over this variant's.
            let ratio = medians[0].as_secs_f64() / medians[index].as_secs_f64().max(f64::EPSILON);
            let mut per_round: Vec<f64> = times[0]
                .iter()
                .zip(&times[index])
                .map(|(a, x)| a.as_secs_f64() / x.as_secs_f64().max(f64::EPSILON))
                .collect();
            per_round.sort_unstable_by(f64::total_cmp);
            let (low, high) = (per_round[0], per_round[per_round.len() - 1]);
            let paired = per_round[per_round.len() / 2];
            let cost = 1.0 / ratio - 1.0;
            figure = figure.ratio_to_baseline(ratio).note(format!(
                "{spread}; {}/A {ratio:.3}x jobs/s, {:+.1} % time per job{}; the ratio within each round: \
                 {low:.3}-{high:.3}x, median {paired:.3}x",
                variant.letter(),
                cost * 100.0,
                if cost > BUDGET { format!(", over the {:.0} % budget", BUDGET * 100.0) } else { String::new() }
            ));
            ratios.push(format!("{}/A {ratio:.3}x", variant.letter()));
        }
        figures.push(figure);
    }
    #[cfg(feature = "otel")]
    {
        let at = |variant| variants.iter().position(|v| *v == variant);
        if let (Some(d), Some(e)) = (at(Variant::Otel { propagate: true }), at(Variant::Otel { propagate: false })) {
            let ratio = medians[e].as_secs_f64() / medians[d].as_secs_f64().max(f64::EPSILON);
            ratios.push(format!("D/E {ratio:.3}x"));
        }
    }

    let short = if medians[0] < SHORT {
        format!(
            "; a drain lasts under {:.1} s at this --jobs, too short to resolve a few per cent: raise --jobs",
            SHORT.as_secs_f64()
        )
    } else {
        String::new()
    };
    let note = format!(
        "middleware (memory): {} pre-enqueued no-op jobs drained by one worker with {} slots and prefetch {} (as \
         the drain row with prefetch); A none, B one pass-through middleware, C three; each variant {rounds} times \
         in interleaved rounds (order rotated each round, after a warm-up round), each time on a fresh storage \
         and a tokio runtime of its own built alike; jobs/s from the median; ratios of jobs/s to A in this run: \
         {}{short}; {}",
        shape.jobs,
        shape.concurrency,
        shape.prefetch,
        ratios.join(", "),
        D_NOTE,
    );
    Ok((figures, note))
}

/// The median of `times` (the upper one of an even count).
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// One drain of `variant`, on a runtime of its own driven from a blocking thread (for D
/// with its subscriber as the default dispatcher of every thread of that runtime).
async fn measure(variant: Variant, shape: Shape, otel: Option<Arc<Otel>>) -> Result<Duration, BoxError> {
    #[cfg(feature = "otel")]
    let dispatch = match (variant, &otel) {
        (Variant::Otel { .. }, Some(otel)) => Some(otel.dispatch()),
        _ => None,
    };
    let measured = tokio::task::spawn_blocking(move || -> Result<Duration, BoxError> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        #[cfg(feature = "otel")]
        if let Some(dispatch) = &dispatch {
            let for_threads = dispatch.clone();
            builder.on_thread_start(move || otel::enter(&for_threads)).on_thread_stop(otel::leave);
        }
        let runtime = builder.build()?;
        // The builder keeps its thread hooks (and their dispatcher) until dropped.
        drop(builder);
        let measured = {
            #[cfg(feature = "otel")]
            let _default = dispatch.as_ref().map(tracing::dispatcher::set_default);
            runtime.block_on(drain(variant, shape, otel.clone()))
        };
        // Joins the runtime's threads: their dispatcher guards are dropped by now.
        drop(runtime);
        #[cfg(feature = "otel")]
        if let (Variant::Otel { propagate }, Some(otel), Some(dispatch)) = (variant, &otel, dispatch) {
            drop(dispatch);
            otel.finish_round(shape.jobs, propagate)?;
        }
        measured
    })
    .await??;
    Ok(measured)
}

/// One drain of `variant` on a fresh storage.
async fn drain(variant: Variant, shape: Shape, otel: Option<Arc<Otel>>) -> Result<Duration, BoxError> {
    workloads::on_fresh(&mut backends::Memory, async |_, storage| {
        workloads::drain_once(
            storage,
            shape.jobs,
            shape.concurrency,
            shape.prefetch,
            async |queue| match (variant, &otel) {
                #[cfg(feature = "otel")]
                (Variant::Otel { propagate: true }, Some(otel)) => otel.enqueue(queue, shape.jobs).await,
                _ => workloads::enqueue_noops(queue, shape.jobs, &AtomicUsize::new(0)).await,
            },
            |builder| variant.configure(builder),
        )
        .await
    })
    .await
}

/// Variant D's subscriber, exporter and checks.
#[cfg(feature = "otel")]
pub(crate) mod otel {
    use std::{
        cell::RefCell,
        sync::{
            Arc, Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use haul::Queue;
    use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId, TracerProvider as _};
    use opentelemetry_sdk::{
        error::OTelSdkResult,
        trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter},
    };
    use tracing::{Dispatch, Instrument as _, dispatcher::DefaultGuard, level_filters::LevelFilter};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use crate::{BoxError, workloads};

    /// How D and E were measured, for the run's notes.
    pub(super) const NOTE: &str = "D and E: haul built with `opentelemetry` (as for A, B and C in this build), \
        and a subscriber (registry, INFO filter, tracing-opentelemetry layer with its defaults over an SDK provider: \
        AlwaysOn sampler, batch processor, an exporter that drops spans) made the default dispatcher of the threads \
        of that measurement's runtime only, never global, so A, B and C run with no subscriber; D's jobs are \
        enqueued inside a span (in every round each job's haul.job span was exported as its child), E's outside \
        any (each haul.job span was exported as a root): D/E is the cost of the propagation itself";

    thread_local! {
        /// The dispatcher guard of a thread of D's runtime.
        static DEFAULT: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
    }

    /// Makes `dispatch` this thread's default (a runtime's thread-start hook).
    pub(super) fn enter(dispatch: &Dispatch) {
        let guard = tracing::dispatcher::set_default(dispatch);
        DEFAULT.with(|default| *default.borrow_mut() = Some(guard));
    }

    /// Restores this thread's dispatcher (the runtime's thread-stop hook).
    pub(super) fn leave() {
        let guard = DEFAULT.with(|default| default.borrow_mut().take());
        drop(guard);
    }

    /// A subscriber interested in nothing, that says so with its level hint.
    struct Off;

    impl tracing::Subscriber for Off {
        fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
            tracing::subscriber::Interest::never()
        }

        fn max_level_hint(&self) -> Option<LevelFilter> {
            Some(LevelFilter::OFF)
        }

        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            false
        }

        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }

        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

        fn event(&self, _: &tracing::Event<'_>) {}

        fn enter(&self, _: &tracing::span::Id) {}

        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// What the exporter saw of one round.
    #[derive(Debug, Default)]
    struct Seen {
        /// `haul.job` spans exported.
        jobs: AtomicUsize,
        /// Those whose parent is the enqueuing span.
        children: AtomicUsize,
        /// Those without a parent.
        roots: AtomicUsize,
        /// The enqueuing span of the round.
        parent: Mutex<Option<(TraceId, SpanId)>>,
    }

    /// An exporter that drops every span after counting the jobs' ones.
    #[derive(Debug)]
    struct DropSpans(Arc<Seen>);

    impl SpanExporter for DropSpans {
        fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
            let parent = self.0.parent.lock().ok().and_then(|parent| *parent);
            let jobs = batch.iter().filter(|span| span.name == "haul.job");
            let (mut seen, mut children, mut roots) = (0, 0, 0);
            for span in jobs {
                seen += 1;
                if parent == Some((span.span_context.trace_id(), span.parent_span_id)) {
                    children += 1;
                }
                if span.parent_span_id == SpanId::INVALID {
                    roots += 1;
                }
            }
            self.0.jobs.fetch_add(seen, Ordering::Relaxed);
            self.0.children.fetch_add(children, Ordering::Relaxed);
            self.0.roots.fetch_add(roots, Ordering::Relaxed);
            std::future::ready(Ok(()))
        }
    }

    /// The tracer provider, shared by every round; a subscriber of its own per round.
    #[derive(Debug)]
    pub(crate) struct Otel {
        provider: SdkTracerProvider,
        seen: Arc<Seen>,
    }

    impl Otel {
        /// A provider sampling every span (`AlwaysOn`) into a batch processor whose queue
        /// holds a whole round (no span is dropped for lack of room, so every one is
        /// counted) and whose exporter drops them.
        pub(crate) fn new(jobs: usize) -> Self {
            let seen = Arc::new(Seen::default());
            let processor = BatchSpanProcessor::builder(DropSpans(Arc::clone(&seen)))
                .with_batch_config(BatchConfigBuilder::default().with_max_queue_size(jobs.max(2_048) + 1).build())
                .build();
            let provider =
                SdkTracerProvider::builder().with_sampler(Sampler::AlwaysOn).with_span_processor(processor).build();
            Self { provider, seen }
        }

        /// A fresh subscriber for one round: the registry with a global `INFO` filter (as
        /// an application would run; haul's per-job `debug!` events are not recorded) and
        /// a `tracing_opentelemetry` layer with its defaults over the provider's tracer.
        pub(super) fn dispatch(&self) -> Dispatch {
            let layer = tracing_opentelemetry::layer().with_tracer(self.provider.tracer("haul-bench"));
            Dispatch::new(tracing_subscriber::registry().with(LevelFilter::INFO).with(layer))
        }

        /// Enqueues the round's jobs inside one span, whose ids the exporter then expects
        /// as every `haul.job` span's trace and parent.
        pub(super) async fn enqueue(&self, queue: &Queue, jobs: usize) -> Result<(), BoxError> {
            let span = tracing::info_span!("bench.enqueue");
            let context = span.context();
            let ids = context.span().span_context().clone();
            if !ids.is_valid() {
                return Err("the enqueuing span has no OpenTelemetry context: is the subscriber installed?".into());
            }
            if let Ok(mut parent) = self.seen.parent.lock() {
                *parent = Some((ids.trace_id(), ids.span_id()));
            }
            workloads::enqueue_noops(queue, jobs, &AtomicUsize::new(0)).instrument(span).await
        }

        /// After a round whose subscriber is gone: exports what is left, checks that every
        /// job's span was exported, as a child of the enqueuing span when `propagated` and
        /// as a root otherwise, resets the counts, and checks that `tracing` is back to
        /// having no subscriber for the next variant.
        pub(super) fn finish_round(&self, jobs: usize, propagated: bool) -> Result<(), BoxError> {
            self.provider.force_flush()?;
            let seen = self.seen.jobs.swap(0, Ordering::Relaxed);
            let children = self.seen.children.swap(0, Ordering::Relaxed);
            let roots = self.seen.roots.swap(0, Ordering::Relaxed);
            if let Ok(mut parent) = self.seen.parent.lock() {
                *parent = None;
            }
            let expected = if propagated { (jobs, jobs, 0) } else { (jobs, 0, jobs) };
            if (seen, children, roots) != expected {
                return Err(format!(
                    "OTel variant: {seen} haul.job spans exported for {jobs} jobs, {children} children of the \
                     enqueuing span, {roots} roots (propagation {})",
                    if propagated { "expected" } else { "not expected" }
                )
                .into());
            }
            // Registering a dispatcher drops the dead ones and recomputes the callsites'
            // interest and the max level from the live ones: with only `Off` alive, the
            // state of a program that never had a subscriber (max level off, every
            // callsite "never"). (`rebuild_interest_cache` alone would ask `NoSubscriber`,
            // whose missing level hint counts as TRACE.)
            drop(Dispatch::new(Off));
            if LevelFilter::current() != LevelFilter::OFF {
                return Err("the OTel variant's subscriber outlived its round".into());
            }
            Ok(())
        }

        /// Shuts the provider down (its batch thread).
        pub(crate) fn shutdown(&self) {
            let _ = self.provider.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_time_and_the_upper_one_of_an_even_count() {
        let ms = |values: &[u64]| values.iter().map(|v| Duration::from_millis(*v)).collect::<Vec<_>>();
        assert_eq!(median(&ms(&[30, 10, 20, 50, 40])), Duration::from_millis(30));
        assert_eq!(median(&ms(&[20, 10])), Duration::from_millis(20));
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn every_variant_has_its_own_letter_and_a_first_baseline() {
        let variants = Variant::all();
        assert_eq!(variants[0], Variant::Bare);
        let letters: std::collections::BTreeSet<char> = variants.iter().map(|v| v.letter()).collect();
        assert_eq!(letters.len(), variants.len());
    }
}
