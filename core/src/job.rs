//! The `Job` trait, its static options, and the registry of job kinds.

use std::{borrow::Cow, collections::HashMap, sync::OnceLock, time::Duration};

use async_trait::async_trait;

use crate::{Error, JobContext, JobError, Result, RetryPolicy, StateMap, StateRequirement};

/// Queue used when a job names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Attempts a job gets when it names no limit.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

/// A unit of background work.
///
/// Implement it with `#[job]` on an async fn rather than by hand: the macro also
/// derives serialization and registers the kind. The stored kind name is the typetag
/// name (`#[typetag::serde(name = "...")]`), and the stored arguments are the struct
/// serialized as a JSON object.
#[typetag::serde(tag = "kind", content = "args")]
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// Runs one attempt.
    async fn perform(self: Box<Self>, ctx: JobContext) -> Result<(), JobError>;

    /// The options of this job kind (queue, priority, attempts, timeout, backoff).
    fn options(&self) -> JobOptions {
        JobOptions::new()
    }

    /// The limit key of this job (see [`crate::limits`]), e.g. the customer its
    /// arguments name; `None` (the default): not key-limited.
    /// `#[job(limit_key = argument)]` returns that argument as a string.
    /// [`Enqueue::limit_key`](crate::Enqueue::limit_key) overrides it per enqueue.
    fn limit_key(&self) -> Option<String> {
        None
    }
}

/// Static options of a job kind. Each can be overridden per enqueue, except the
/// retry policy, which belongs to the kind.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOptions {
    /// Queue jobs of this kind go to.
    pub queue: Cow<'static, str>,
    /// Lower runs first.
    pub priority: i16,
    /// Attempts before the job is discarded.
    pub max_attempts: u32,
    /// Limit on one attempt's run time.
    pub timeout: Option<Duration>,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Unique by kind and arguments among unfinished jobs (see [`crate::Unique::by_args`]).
    pub unique: bool,
}

impl JobOptions {
    /// The defaults: queue `default`, priority 0, 20 attempts, no timeout, exponential backoff.
    pub const fn new() -> Self {
        Self {
            queue: Cow::Borrowed(DEFAULT_QUEUE),
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: None,
            retry: RetryPolicy::exponential(Duration::from_secs(1)),
            unique: false,
        }
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<Cow<'static, str>>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the priority.
    pub const fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the attempt limit.
    pub const fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the per-attempt timeout.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the retry policy.
    pub const fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Makes jobs of this kind unique by their arguments among unfinished jobs.
    pub const fn unique(mut self, unique: bool) -> Self {
        self.unique = unique;
        self
    }
}

impl Default for JobOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The registration of one job kind, submitted by `#[job]` through `inventory`.
#[derive(Debug)]
pub struct JobKind {
    /// The stored kind name.
    pub name: &'static str,
    /// The Rust type implementing it, for error messages.
    pub rust_type: &'static str,
    /// The kind's static options.
    pub options: fn() -> JobOptions,
    /// [`FromContext::required_state`](crate::FromContext::required_state) of each
    /// argument the worker injects into the handler (`&[]` when it takes none): what a
    /// worker running this kind must be given.
    pub injected: &'static [fn() -> Option<StateRequirement>],
}

impl JobKind {
    /// The application state the handler needs from its worker.
    pub fn required_states(&self) -> impl Iterator<Item = StateRequirement> + '_ {
        self.injected.iter().filter_map(|required_state| required_state())
    }
}

inventory::collect!(JobKind);

/// Every job kind registered in this binary.
pub fn registered_kinds() -> impl Iterator<Item = &'static JobKind> {
    inventory::iter::<JobKind>.into_iter()
}

/// Checks that every registered kind name is valid and that no two job types
/// registered the same one ([`Error::DuplicateKind`], for the first such name in
/// alphabetical order).
pub fn check_registered_kinds() -> Result<()> {
    for kind in registered_kinds() {
        crate::validate_kind_name(kind.name)?;
    }
    let first = duplicate_kinds().iter().min_by_key(|(name, _)| **name);
    match first {
        Some((name, types)) => Err(duplicate_kind(name, *types)),
        None => Ok(()),
    }
}

/// Checks that `kind` is registered by at most one job type: a producer must not
/// enqueue a job that workers of this binary could decode as another type.
pub(crate) fn check_kind_not_duplicated(kind: &str) -> Result<()> {
    match duplicate_kinds().get(kind) {
        Some(types) => Err(duplicate_kind(kind, *types)),
        None => Ok(()),
    }
}

/// The kind names registered by more than one job type, each with the first two such
/// types in alphabetical order. Computed once: the registry is fixed at link time.
fn duplicate_kinds() -> &'static HashMap<&'static str, (&'static str, &'static str)> {
    static DUPLICATES: OnceLock<HashMap<&'static str, (&'static str, &'static str)>> = OnceLock::new();
    DUPLICATES.get_or_init(|| {
        let mut types: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
        for kind in registered_kinds() {
            types.entry(kind.name).or_default().push(kind.rust_type);
        }
        types
            .into_iter()
            .filter_map(|(name, mut types)| {
                types.sort_unstable();
                match types.as_slice() {
                    [first, second, ..] => Some((name, (*first, *second))),
                    _ => None,
                }
            })
            .collect()
    })
}

fn duplicate_kind(kind: &str, (first, second): (&'static str, &'static str)) -> Error {
    Error::DuplicateKind { kind: kind.to_owned(), first, second }
}

/// Checks that `states` holds every state needed by the registered kinds whose default
/// queue is one of `queues` ([`Error::MissingState`] for the first missing one, by kind
/// name then type name). Kinds enqueued to another queue than their default are not
/// known here: a missing state fails their attempts instead.
pub(crate) fn check_required_states(queues: &[String], states: &StateMap) -> Result<()> {
    let mut missing: Vec<(&'static str, String, &'static str)> = Vec::new();
    for kind in registered_kinds() {
        let unmet: Vec<StateRequirement> = kind.required_states().filter(|needed| !states.provides(*needed)).collect();
        if unmet.is_empty() {
            continue;
        }
        // Only read for kinds that need something the worker lacks.
        let queue = (kind.options)().queue;
        if !queues.iter().any(|served| *served == queue) {
            continue;
        }
        missing.extend(unmet.into_iter().map(|needed| (kind.name, queue.clone().into_owned(), needed.type_name())));
    }
    match missing.into_iter().min() {
        Some((kind, queue, type_name)) => Err(Error::MissingState { kind: kind.to_owned(), queue, type_name }),
        None => Ok(()),
    }
}

/// Whether `name` is a registered kind.
pub fn is_registered(name: &str) -> bool {
    registered_kinds().any(|kind| kind.name == name)
}

/// Rebuilds a job from its stored kind and arguments.
///
/// Fails with [`Error::UnknownKind`] when no `#[job]` in this binary registers `kind`,
/// and with [`Error::Serialization`] when the arguments no longer fit the job's struct.
pub fn decode_job(kind: &str, args: &serde_json::Value) -> Result<Box<dyn Job>> {
    if !is_registered(kind) {
        return Err(Error::UnknownKind(kind.to_owned()));
    }
    // The tagged form `{"kind": .., "args": ..}` that typetag reads, presented by
    // reference: no copy of the arguments, no map built per job.
    let kind_entry = ("kind", serde_json::Value::String(kind.to_owned()));
    let tagged = [(kind_entry.0, &kind_entry.1), ("args", args)];
    let deserializer = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(tagged.into_iter());
    <Box<dyn Job> as serde::Deserialize>::deserialize(deserializer)
        .map_err(|source| Error::Serialization { kind: kind.to_owned(), source })
}

/// Serializes a job's arguments into the stored form, a JSON object nested at most
/// [`crate::MAX_ARGS_DEPTH`] levels deep.
///
/// Serialization stops as soon as the arguments nest too deep, so even arguments nested
/// millions of levels deep are refused with an error rather than overflowing the stack.
pub fn encode_args<J: Job + serde::Serialize>(job: &J) -> Result<serde_json::Value> {
    encode_args_sized(job).map(|(args, _)| args)
}

/// [`encode_args`], with the length of the arguments' JSON.
pub(crate) fn encode_args_sized<J: Job + serde::Serialize>(job: &J) -> Result<(serde_json::Value, usize)> {
    use crate::storable::{EncodeError, MAX_ARGS_DEPTH, check_args, to_json_within_depth, too_deep};
    let kind = job.typetag_name();
    let serialization = |source| Error::Serialization { kind: kind.to_owned(), source };
    let json = match to_json_within_depth(job, MAX_ARGS_DEPTH) {
        Ok(json) => json,
        Err(EncodeError::TooDeep) => return Err(too_deep(kind)),
        Err(EncodeError::Serde(source)) => return Err(serialization(source)),
    };
    let args: serde_json::Value = serde_json::from_slice(&json).map_err(serialization)?;
    check_args(kind, &args)?;
    if !args.is_object() {
        return Err(Error::InvalidArgument(
            format!("job kind `{kind}` must serialize to a JSON object (a struct with named fields)").into(),
        ));
    }
    Ok((args, json.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FromContext;

    /// State only the test kind below needs.
    struct Ledger;

    fn ledger_queue() -> JobOptions {
        JobOptions::new().queue("core_tests.ledger")
    }

    inventory::submit! {
        JobKind {
            name: "core_tests.needs_ledger",
            rust_type: "core_tests::NeedsLedger",
            options: ledger_queue,
            injected: &[<crate::JobContext as FromContext>::required_state, <crate::State<Ledger> as FromContext>::required_state],
        }
    }

    fn queues(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_kind_records_the_state_its_injected_arguments_need() {
        let kind = registered_kinds().find(|kind| kind.name == "core_tests.needs_ledger");
        let needed: Vec<StateRequirement> = kind.map(|kind| kind.required_states().collect()).unwrap_or_default();
        assert_eq!(needed, vec![StateRequirement::of::<Ledger>()]);
    }

    #[test]
    fn a_worker_serving_the_kinds_queue_without_its_state_is_refused_naming_kind_type_and_fix() {
        let error = check_required_states(&queues(&["other", "core_tests.ledger"]), &StateMap::new()).err();
        let Some(Error::MissingState { kind, queue, type_name }) = &error else {
            panic!("expected MissingState, got {error:?}");
        };
        assert_eq!((kind.as_str(), queue.as_str()), ("core_tests.needs_ledger", "core_tests.ledger"));
        assert!(type_name.ends_with("Ledger"), "{type_name}");
        let message = error.map(|error| error.to_string()).unwrap_or_default();
        assert!(message.contains("`State<") && message.contains("Ledger>`"), "{message}");
        assert!(message.contains("Worker::builder(..).state(value)"), "{message}");
    }

    #[test]
    fn the_state_given_or_a_queue_not_served_passes_the_check() {
        let served = queues(&["core_tests.ledger"]);
        assert!(check_required_states(&served, &StateMap::new().with(Ledger)).is_ok());
        assert!(check_required_states(&queues(&["default"]), &StateMap::new()).is_ok());
    }
}
