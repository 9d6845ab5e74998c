//! The `ghostflow` command line: run, validate and write flow documents, and
//! list the node types they can use.
//!
//! `main` parses the arguments, hands them to the command's module, and
//! turns its [`Failure`] into a message on stderr and an exit code.

mod cli;
mod failure;
mod init;
mod load;
mod nodes;
mod validate;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
