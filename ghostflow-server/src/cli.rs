//! The command line's shape: commands, flags, help texts, and the parsers of
//! flag values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// GhostFlow: run and inspect workflows.
#[derive(Debug, Parser)]
#[command(
    name = "ghostflow",
    version,
    after_help = "\
Examples:
  ghostflow init my-flows              write a starter flow
  ghostflow validate flows/*.yaml      check documents without running them
  ghostflow nodes                      list the node types you can use"
)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check flow documents without running them.
    Validate(ValidateArgs),
    /// List the node types this build knows, with their ports.
    Nodes(NodesArgs),
    /// Print the JSON Schema of flow documents.
    #[command(after_help = "\
Examples:
  ghostflow schema > flow.schema.json
  # then point your editor's YAML language server at it:
  # yaml-language-server: $schema=./flow.schema.json")]
    Schema,
    /// Write a starter flow, `hello.yaml`, that runs without network access.
    Init(InitArgs),
}

/// `ghostflow validate`.
#[derive(Debug, Args)]
#[command(after_help = "\
Prints every problem as `file:line:col: path: message` on stderr and
`FILE: ok (N nodes)` on stdout for each valid file. Exits with 1 when any
file has a problem.

Examples:
  ghostflow validate hello.yaml
  ghostflow validate flows/*.yaml flows/*.json")]
pub(crate) struct ValidateArgs {
    /// The flow documents.
    #[arg(value_name = "FLOW", required = true)]
    pub(crate) flows: Vec<PathBuf>,

    /// Accepts `{{ env.NAME }}` in expressions (repeatable; `'*'` for all),
    /// as `run --allow-env` would.
    #[arg(long, value_name = "NAME")]
    pub(crate) allow_env: Vec<String>,
}

/// `ghostflow nodes`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ghostflow nodes
  ghostflow nodes --json | jq '.[] | select(.type_name == \"if\") | .config_schema'")]
pub(crate) struct NodesArgs {
    /// Prints the full specs (config and port schemas) as a JSON array.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ghostflow init`.
#[derive(Debug, Args)]
#[command(after_help = "\
Never overwrites a file: if DIR/hello.yaml exists, nothing is written.

Examples:
  ghostflow init
  ghostflow init my-flows")]
pub(crate) struct InitArgs {
    /// Where to write `hello.yaml` (created when missing).
    #[arg(value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
