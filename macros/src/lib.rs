//! The `#[job]` attribute of [haul](https://docs.rs/haul).
//!
//! Use it through the `haul` crate (`use haul::prelude::*;` or `haul::job`): the code it
//! generates names the runtime through `::haul::__private`, so a crate using it depends
//! on `haul`, not on this crate directly.

mod args;
mod expand;
mod validate;

use proc_macro::TokenStream;

/// Turns an `async fn` into a background job.
///
/// ```
/// use haul::prelude::*;
/// # #[derive(Debug)] struct MailError;
/// # impl std::fmt::Display for MailError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("smtp refused") }
/// # }
/// # struct Mailer;
/// # impl Mailer { async fn send(&self, _to: &str, _subject: &str) -> Result<(), MailError> { Ok(()) } }
///
/// #[job(queue = "mail", max_attempts = 5)]
/// async fn send_email(mailer: State<Mailer>, to: String, subject: String) -> Result<(), MailError> {
///     mailer.send(&to, &subject).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> haul::Result<()> {
/// let queue = Queue::new(MemoryStorage::new());
/// let job = queue.prepare(&SendEmail::new("ada@example.com", "hello"))?;
/// assert_eq!((job.kind.as_str(), job.queue.as_str(), job.max_attempts), ("send_email", "mail", 5));
/// // In an application: `queue.enqueue(SendEmail::new("ada@example.com", "hello")).await?`
/// # Ok(())
/// # }
/// ```
///
/// # What it generates
///
/// Next to the function, which stays as written (a unit test can still call it):
///
/// - a struct named after the function in `PascalCase` (`send_email` becomes `SendEmail`),
///   with the function's visibility and one field per *stored* argument, serialized as a
///   JSON object (`{"to": "ada@example.com", "subject": "hello"}`);
/// - `SendEmail::new(to, subject)`, taking each argument as `impl Into<T>` (primitive
///   numbers, `bool` and `char` as themselves, so literals infer);
/// - an implementation of `haul::Job` that rebuilds the arguments, injects the others and
///   calls the function;
/// - the registration of the kind name and of the state its `State<T>` arguments need, so
///   a worker can decode stored jobs of this kind, and report when it starts two types
///   that claim the same name or a state it was not given (a producer refuses to enqueue
///   a kind registered twice too).
///
/// # Arguments
///
/// Arguments of these types are *injected* by the worker when the job runs, not stored:
///
/// | Type | Value |
/// |------|-------|
/// | `State<T>` | the `T` registered with `Worker::builder(..).state(value)`; a worker serving the kind's default queue without one fails at start (`Error::MissingState`), and a job of the kind enqueued to another queue fails its attempt with a clear message |
/// | `JobContext`, `&JobContext` | the running job: id, attempt, queue, and the stop token to watch in long work |
///
/// An injected argument may use a pattern (`State(db): State<Db>`). Every other argument is
/// stored with the job, so it must be an owned type that implements `serde::Serialize` and
/// `serde::Deserialize` (`String`, not `&str`), bound to a plain name.
///
/// # Options
///
/// | Option | Value | Default |
/// |--------|-------|---------|
/// | `name = "..."` | the stored kind name: 1 to 100 characters of `A-Z a-z 0-9 _ - . :` | the function's name |
/// | `queue = "..."` | 1 to 100 characters of `A-Z a-z 0-9 _ - .` | `"default"` |
/// | `priority = -5` | an `i16`; lower runs first | `0` |
/// | `max_attempts = 5` | at least 1 | `20` |
/// | `timeout = "30s"` | a duration such as `"500ms"`, `"5m"`, `"1h 30m"` | none |
/// | `backoff = expr` | any expression of type `RetryPolicy` | exponential from 1 s, capped at 1 h |
/// | `unique = true` | while an unfinished job of this kind has the same arguments, an enqueue inserts nothing and returns that job's id | `false` |
/// | `limit_key = argument` | a stored argument whose value (by `Display`) is the job's limit key, which its queue's per-key limits count (`QueueLimits::key_concurrency`) | none |
///
/// Keep `name` stable: it is what stored jobs refer to, so setting it lets the function be
/// renamed without orphaning jobs already in storage. Every option but `name` and
/// `backoff` can be overridden per enqueue (`unique` with `.unique()` or
/// `.unique_with(Unique::new(key).window(..))`, `limit_key` with `.limit_key(..)`);
/// every backend honours it.
///
/// ```
/// use haul::prelude::*;
///
/// #[job(
///     name = "billing:charge",
///     queue = "billing",
///     priority = -10,
///     max_attempts = 3,
///     timeout = "2m",
///     backoff = RetryPolicy::fixed(Duration::from_secs(30)),
///     limit_key = customer_id,
/// )]
/// pub async fn charge_customer(ctx: &JobContext, customer_id: u64, cents: i64) -> Result<(), JobError> {
///     if ctx.attempt() > 1 {
///         // a retry: check with the payment provider before charging again
///     }
///     let _ = (customer_id, cents);
///     Ok(())
/// }
///
/// let job = Queue::new(MemoryStorage::new()).prepare(&ChargeCustomer::new(42, 1999))?;
/// assert_eq!(job.kind, "billing:charge");
/// assert_eq!(job.priority, -10);
/// assert_eq!(job.timeout, Some(Duration::from_secs(120)));
/// assert_eq!(job.limit_key.as_deref(), Some("42"));
/// # Ok::<(), haul::Error>(())
/// ```
///
/// # Return type
///
/// `()` (or nothing), or `Result<(), E>` for any `E: Display`. An error fails the attempt,
/// which is retried according to `backoff` until `max_attempts` is spent. Returning
/// `RetryAfter`, `Discard` or `Snooze` (or a `JobError` made from them) instructs the
/// worker instead.
///
/// # Errors
///
/// Misuse is a compile error pointing at the mistake: a function that is not `async`, is
/// generic, takes `self` or a borrowed stored argument (`&str`), binds a stored argument
/// to a pattern; an unknown or repeated option; an invalid name or queue, `max_attempts =
/// 0`, an unreadable or zero `timeout`, a `priority` out of the `i16` range, a
/// `limit_key` that names no stored argument.
#[proc_macro_attribute]
pub fn job(args: TokenStream, item: TokenStream) -> TokenStream {
    let func = match syn::parse::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(func)) => func,
        Ok(other) => return with_error(item, syn::Error::new_spanned(other, "`#[job]` goes on an `async fn`")),
        Err(error) => return with_error(item, error),
    };
    match validate::validate(syn::parse(args), &func) {
        Ok(job) => expand::expand(&job).into(),
        Err(error) => with_error(emitted_on_error(func), error),
    }
}

/// The function as written, minus what rustc would report again on its own (a
/// variadic `...`), so the error list starts with, and mostly is, ours.
fn emitted_on_error(mut func: syn::ItemFn) -> TokenStream {
    func.sig.variadic = None;
    quote::ToTokens::into_token_stream(func).into()
}

/// The user's item unchanged plus the error, so that one mistake does not cascade into
/// "cannot find function" errors and rust-analyzer keeps working.
fn with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(TokenStream::from(error.into_compile_error()));
    item
}
