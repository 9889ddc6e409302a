//! What can make a command fail, its exit code, and what to do about it.

use haul::{Error, ErrorKind};

use crate::Exit;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// No storage URL was given.
    #[error("no storage URL: pass --url URL or set HAUL_URL")]
    NoUrl,
    /// The storage could not be opened.
    #[error("could not open the storage: {0}")]
    Connect(#[source] Error),
    /// A storage call failed.
    #[error("{0}")]
    Storage(#[from] Error),
    /// The command line is valid for the parser but not as a whole.
    #[error("{0}")]
    Usage(String),
    /// The operator declined the confirmation prompt.
    #[error("declined: nothing was changed")]
    Declined,
    /// Writing the output or reading the answer failed.
    #[error("could not write the output or read the answer: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The exit code this failure ends the process with.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::NoUrl | Self::Usage(_) => Exit::Usage,
            Self::Storage(error) => storage_exit(error),
            Self::Declined => Exit::Declined,
            Self::Connect(_) | Self::Io(_) => Exit::Failure,
        }
    }

    /// What the operator can do about it, if there is something to say.
    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            Self::NoUrl => Some(
                "for example: haul --url 'postgres://app@localhost/app?schema=haul' queues, or \
                 export HAUL_URL='redis://127.0.0.1:6379/?prefix=haul'"
                    .to_owned(),
            ),
            Self::Connect(Error::InvalidArgument(_) | Error::InvalidName { .. }) => {
                Some("fix the URL given by --url or HAUL_URL (its parameters are listed in cli/README.md)".to_owned())
            }
            Self::Connect(error) => Some(match error.kind() {
                Some(_) => "check that the server named by --url or HAUL_URL is running and reachable".to_owned(),
                None => "check the URL given by --url or HAUL_URL".to_owned(),
            }),
            Self::Storage(error) => storage_hint(error),
            Self::Usage(_) => Some("see `haul --help`".to_owned()),
            Self::Declined => Some("answer y to go ahead, or pass --yes to skip the question".to_owned()),
            Self::Io(_) => None,
        }
    }
}

/// The exit code of a failed storage call.
pub(crate) fn storage_exit(error: &Error) -> Exit {
    match error {
        Error::NotFound(_) => Exit::NotFound,
        Error::InvalidState { .. } => Exit::InvalidState,
        _ => Exit::Failure,
    }
}

/// What to do about a failed storage call.
pub(crate) fn storage_hint(error: &Error) -> Option<String> {
    match error {
        Error::NotFound(_) => Some(
            "check the id with `haul jobs list`; finished jobs are deleted once their retention has passed".to_owned(),
        ),
        Error::InvalidState { id, operation, .. } => match *operation {
            "retry" => Some(format!("wait for it to finish, or cancel it first: haul jobs cancel {id}")),
            "cancel" => Some(format!("it has already finished; to run it again: haul jobs retry {id}")),
            "delete" => Some(format!("cancel it first (haul jobs cancel {id}) and delete it once it has stopped")),
            _ => None,
        },
        Error::StorageNotReady { .. } => {
            Some("from the command line: haul migrate (with the same --url or HAUL_URL)".to_owned())
        }
        Error::Unsupported { .. } => Some("this backend does not offer it yet".to_owned()),
        Error::Backend { kind: ErrorKind::Connection | ErrorKind::Timeout, .. } => Some(
            "check that the server named by --url or HAUL_URL is running and reachable, then run the command again"
                .to_owned(),
        ),
        Error::Backend { kind: ErrorKind::Conflict, .. } => Some("run the command again".to_owned()),
        _ => None,
    }
}
