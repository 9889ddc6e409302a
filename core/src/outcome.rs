//! What a handler can tell the runtime: success, failure, or an explicit instruction.

use std::{any::Any, fmt, time::Duration};

/// Ask for the next attempt after a given delay (the attempt is spent).
///
/// ```
/// # use std::time::Duration;
/// use haul_core::{JobError, RetryAfter};
/// let err: JobError = RetryAfter(Duration::from_secs(30)).into();
/// assert!(matches!(err.control(), Some(haul_core::Control::RetryAfter(_))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

/// Give up on the job now: it is discarded with this reason, whatever attempts are left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discard(pub String);

/// Run the job again after a delay without spending an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snooze(pub Duration);

/// An explicit instruction from a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// See [`RetryAfter`].
    RetryAfter(RetryAfter),
    /// See [`Discard`].
    Discard(Discard),
    /// See [`Snooze`].
    Snooze(Snooze),
}

/// The error of a handler: a failure message, or a [`Control`] instruction.
///
/// Any `std::error::Error` converts into it, so `?` works in handlers that return
/// `Result<(), JobError>`. It deliberately does not implement `std::error::Error`
/// itself (like `anyhow::Error`), which is what makes that conversion possible.
pub struct JobError {
    message: String,
    control: Option<Control>,
}

impl JobError {
    /// A plain failure: the job is retried according to its retry policy.
    pub fn fail(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), control: None }
    }

    /// Retry after `delay`, spending the attempt.
    pub fn retry_after(delay: Duration) -> Self {
        RetryAfter(delay).into()
    }

    /// Discard the job with `reason`.
    pub fn discard(reason: impl Into<String>) -> Self {
        Discard(reason.into()).into()
    }

    /// Run again after `delay` without spending the attempt.
    pub fn snooze(delay: Duration) -> Self {
        Snooze(delay).into()
    }

    /// The instruction carried, if any.
    pub fn control(&self) -> Option<&Control> {
        self.control.as_ref()
    }

    /// The message recorded in the job's error history.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Recognises haul's own instruction types inside any error value; anything else
    /// becomes a failure with its `Display` text.
    fn from_any<E: fmt::Display + Send + 'static>(error: E) -> Self {
        let any: Box<dyn Any + Send> = Box::new(error);
        let any = match any.downcast::<JobError>() {
            Ok(error) => return *error,
            Err(any) => any,
        };
        let any = match any.downcast::<RetryAfter>() {
            Ok(retry) => return (*retry).into(),
            Err(any) => any,
        };
        let any = match any.downcast::<Snooze>() {
            Ok(snooze) => return (*snooze).into(),
            Err(any) => any,
        };
        match any.downcast::<Discard>() {
            Ok(discard) => (*discard).into(),
            // `from_any` is only called with the `E` boxed above, so this is `E`.
            Err(any) => match any.downcast::<E>() {
                Ok(error) => Self::fail(&*error),
                Err(_) => Self::fail("handler error of an unexpected type"),
            },
        }
    }
}

impl From<RetryAfter> for JobError {
    fn from(retry: RetryAfter) -> Self {
        Self { message: format!("retry requested in {:?}", retry.0), control: Some(Control::RetryAfter(retry)) }
    }
}

impl From<Discard> for JobError {
    fn from(discard: Discard) -> Self {
        Self { message: discard.0.clone(), control: Some(Control::Discard(discard)) }
    }
}

impl From<Snooze> for JobError {
    fn from(snooze: Snooze) -> Self {
        Self { message: format!("snoozed for {:?}", snooze.0), control: Some(Control::Snooze(snooze)) }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self { message, control: None }
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError").field("message", &self.message).field("control", &self.control).finish()
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry requested in {:?}", self.0)
    }
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Snooze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snoozed for {:?}", self.0)
    }
}

/// What a `#[job]` handler may return: `()` or `Result<(), E>` for any displayable `E`
/// (including [`JobError`], [`RetryAfter`], [`Discard`] and [`Snooze`], which are
/// recognised as instructions).
pub trait IntoJobResult {
    /// Converts the handler's return value.
    fn into_job_result(self) -> Result<(), JobError>;
}

impl IntoJobResult for () {
    fn into_job_result(self) -> Result<(), JobError> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> IntoJobResult for Result<(), E> {
    fn into_job_result(self) -> Result<(), JobError> {
        self.map_err(JobError::from_any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("smtp refused")]
    struct Smtp(#[source] std::io::Error);

    #[test]
    fn instructions_are_recognised_through_any_error_type() {
        let snooze: Result<(), Snooze> = Err(Snooze(Duration::from_secs(5)));
        let err = snooze.into_job_result().err();
        assert!(
            matches!(err.as_ref().and_then(JobError::control), Some(Control::Snooze(Snooze(d))) if d.as_secs() == 5)
        );

        let discard: Result<(), JobError> = Err(JobError::discard("bad address"));
        let err = discard.into_job_result().err();
        assert!(matches!(err.as_ref().and_then(JobError::control), Some(Control::Discard(_))));
    }

    #[test]
    fn plain_errors_keep_their_message_and_sources() {
        let plain: Result<(), String> = Err("boom".to_owned());
        let err = plain.into_job_result().err();
        assert_eq!(err.as_ref().map(JobError::message), Some("boom"));
        assert!(err.as_ref().and_then(JobError::control).is_none());

        let chained: JobError = Smtp(std::io::Error::other("reset")).into();
        assert_eq!(chained.message(), "smtp refused: reset");
    }
}
