//! The `haul` command line as a library: [`Cli`] is its grammar, [`run`] runs a parsed
//! command against a storage and [`connect_and_run`] opens the storage the command
//! line names first (what the `haul` binary does). Tests call [`run`] with an in-process
//! storage and an [`Io`] over buffers.
//!
//! The commands, their output and the exit codes ([`Exit`]) are described in the
//! crate's README and in `haul --help`.

mod args;
mod commands;
mod error;
mod exit;
mod format;
mod io;
mod json;
mod table;

use std::{io::ErrorKind, sync::Arc};

use haul::Storage;

pub use args::{
    ActionArgs, Cli, Command, FilterArgs, JobsCommand, LimitChange, ListArgs, PruneArgs, QueueAction, QueuesArgs,
    WebArgs,
};
pub use exit::Exit;
pub use io::Io;

use error::CliError;

/// Runs the command `cli` names against `storage`, writing results to `io`'s output,
/// errors (with what to do about them) to its error stream, and reading a confirmation
/// from its input when one is needed. Returns the exit code. `cli.url` is not used:
/// the caller opened `storage`.
pub async fn run(cli: Cli, storage: Arc<dyn Storage>, io: &mut Io<'_>) -> Exit {
    let outcome = commands::execute(&cli, storage, io).await;
    finish(outcome, io)
}

/// Opens the storage `cli.url` names (`--url` or `HAUL_URL`) with `haul::connect`, then
/// [`run`]s the command. No URL is bad usage ([`Exit::Usage`]); a storage that cannot
/// be opened is a failure ([`Exit::Failure`]). The URL is never printed: it may hold a
/// password.
pub async fn connect_and_run(cli: Cli, io: &mut Io<'_>) -> Exit {
    let Some(url) = cli.url.clone() else { return finish(Err(CliError::NoUrl), io) };
    let storage = match haul::connect(&url).await {
        Ok(storage) => storage,
        Err(error) => return finish(Err(CliError::Connect(error)), io),
    };
    if storage.backend_name() == "memory" {
        let note = "note: memory:// opens a new, empty in-process storage: it holds no other process's jobs";
        if let Err(error) = io.err_line(note) {
            return finish(Err(error.into()), io);
        }
    }
    run(cli, storage, io).await
}

/// Reports a failure on the error stream, flushes, and turns the outcome into an exit
/// code. A closed output (`haul jobs list | head`) ends the command quietly, with the
/// exit code the command had (a failed id of several still tells).
fn finish(outcome: Result<Exit, CliError>, io: &mut Io<'_>) -> Exit {
    let outcome = outcome.and_then(|exit| match io.flush() {
        Err(error) if error.kind() != ErrorKind::BrokenPipe => Err(CliError::from(error)),
        _ => Ok(exit),
    });
    match outcome {
        Ok(exit) => exit,
        Err(CliError::Io(error)) if error.kind() == ErrorKind::BrokenPipe => Exit::Success,
        Err(error) => {
            // The error stream is the last place to say anything; if it is gone too,
            // the exit code still tells.
            let _ = io.err_line(&format!("error: {error}"));
            if let Some(hint) = error.hint() {
                let _ = io.err_line(&format!("hint: {hint}"));
            }
            let _ = io.flush();
            error.exit()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output whose reader is gone, with a line still buffered: every write and
    /// flush fails.
    struct Gone;

    impl std::io::Write for Gone {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_output_keeps_the_commands_exit_code() {
        let (mut out, mut err, mut input) = (Gone, Vec::new(), std::io::empty());
        let mut input = std::io::BufReader::new(&mut input);
        let mut io = Io::new(&mut out, &mut err, &mut input);
        assert_eq!(finish(Ok(Exit::NotFound), &mut io), Exit::NotFound, "a failed id still tells");
        assert_eq!(finish(Ok(Exit::Success), &mut io), Exit::Success);
        assert_eq!(finish(Err(std::io::Error::from(ErrorKind::BrokenPipe).into()), &mut io), Exit::Success);
    }
}
