//! The `ghostflow` command line: run, validate and write flow documents, and
//! list the node types they can use.
//!
//! `main` parses the arguments, hands them to the command's module, and
//! turns its [`Failure`] into a message on stderr and an exit code: 1 when a
//! flow or a check failed, 2 for usage and load errors, 130 after Ctrl-C.

mod cli;
mod failure;
mod init;
mod inputs;
mod load;
mod nodes;
mod progress;
mod run;
mod validate;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => block_on(run::run(args)),
        Command::Validate(args) => validate::validate(&args),
        Command::Nodes(args) => nodes::nodes(&args),
        Command::Schema => nodes::schema(),
        Command::Init(args) => init::init(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// Runs `future` on a multi-threaded runtime: the library never creates one.
fn block_on(future: impl Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(Some(format!("cannot start the async runtime: {e}"))))?;
    let result = runtime.block_on(future);
    // Do not wait for nodes that ignore cancellation (blocking work): the
    // outcome is known, and a second Ctrl-C must end the process promptly.
    runtime.shutdown_background();
    result
}
