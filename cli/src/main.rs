//! The `haul` binary: parses the command line, opens the storage it names and runs the
//! command (see the haul_cli library).

use std::process::ExitCode;

use clap::Parser;
use haul_cli::{Cli, Exit, Io};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return Exit::Failure.into();
        }
    };
    let (stdout, stderr, stdin) = (std::io::stdout(), std::io::stderr(), std::io::stdin());
    let (mut out, mut err, mut input) = (stdout.lock(), stderr.lock(), stdin.lock());
    let mut io = Io::new(&mut out, &mut err, &mut input);
    runtime.block_on(haul_cli::connect_and_run(cli, &mut io)).into()
}
