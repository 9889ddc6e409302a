//! The `Job` trait, its static options, and the registry of job kinds.

use std::{borrow::Cow, collections::HashMap, time::Duration};

use async_trait::async_trait;

use crate::{Error, JobContext, JobError, Result, RetryPolicy};

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
}

inventory::collect!(JobKind);

/// Every job kind registered in this binary.
pub fn registered_kinds() -> impl Iterator<Item = &'static JobKind> {
    inventory::iter::<JobKind>.into_iter()
}

/// Checks that no two job types registered the same kind name.
pub fn check_registered_kinds() -> Result<()> {
    let mut seen: HashMap<&'static str, &'static str> = HashMap::new();
    for kind in registered_kinds() {
        crate::validate_kind_name(kind.name)?;
        if let Some(first) = seen.insert(kind.name, kind.rust_type) {
            let (first, second) =
                if first <= kind.rust_type { (first, kind.rust_type) } else { (kind.rust_type, first) };
            return Err(Error::DuplicateKind { kind: kind.name.to_owned(), first, second });
        }
    }
    Ok(())
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
