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
  ghostflow run my-flows/hello.yaml    run it, with live progress on stderr
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
    /// Run a flow document and print its outputs.
    Run(RunArgs),
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

/// `ghostflow run`.
#[derive(Debug, Args)]
#[command(after_help = "\
Input values:
  --input NAME=VALUE is taken as text when the input's schema says
  `type: string`; otherwise VALUE is read as JSON when it is JSON (numbers,
  booleans, arrays, objects, null) and as text when it is not.
  --input overrides the same name in --input-json.

Progress goes to stderr: a live view on a terminal, one line per event
otherwise. Streamed node output (such as LLM tokens) is shown as it comes.

Exit codes:
  0    the flow succeeded
  1    the flow failed (stderr names the node and its error)
  2    usage error, or the document does not load
  130  interrupted with Ctrl-C (the execution is cancelled)

Examples:
  ghostflow run hello.yaml
  ghostflow run hello.yaml --input name=Ada --input loud=true
  ghostflow run order.yaml --input-json '{\"items\": [1, 2], \"express\": true}'
  ghostflow run fetch.yaml --allow-env API_BASE --json | jq .outputs")]
pub(crate) struct RunArgs {
    /// The flow document (`.json` is read as JSON, anything else as YAML).
    #[arg(value_name = "FLOW")]
    pub(crate) flow: PathBuf,

    /// Sets flow input NAME (repeatable).
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub(crate) inputs: Vec<(String, String)>,

    /// Sets flow inputs from a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_object)]
    pub(crate) input_json: Option<serde_json::Map<String, serde_json::Value>>,

    /// Prints one JSON object describing the outcome on stdout (also when
    /// the flow fails).
    #[arg(long)]
    pub(crate) json: bool,

    /// Lets expressions read environment variable NAME as `{{ env.NAME }}`
    /// (repeatable; `'*'` allows every variable).
    #[arg(long, value_name = "NAME")]
    pub(crate) allow_env: Vec<String>,

    /// Shows no progress; errors are still printed.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,

    /// The directory the file nodes may read and write (default: the
    /// current directory); nothing outside it is reachable.
    #[arg(long, value_name = "DIR")]
    pub(crate) file_root: Option<PathBuf>,

    /// Lets the file nodes read and list, but not write.
    #[arg(long)]
    pub(crate) read_only_files: bool,
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
  ghostflow init my-flows && ghostflow run my-flows/hello.yaml")]
pub(crate) struct InitArgs {
    /// Where to write `hello.yaml` (created when missing).
    #[arg(value_name = "DIR", default_value = ".")]
    pub(crate) dir: PathBuf,
}

/// Parses `NAME=VALUE`; the value may be empty and may contain `=`.
fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

/// Parses a JSON object.
fn parse_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!(
            "expected a JSON object such as '{{\"name\": \"Ada\"}}', got {}",
            crate::inputs::json_kind(&other)
        )),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_assignment("q=a=b").unwrap(),
            ("q".to_owned(), "a=b".to_owned())
        );
        assert_eq!(
            parse_assignment("empty=").unwrap(),
            ("empty".to_owned(), String::new())
        );
        assert!(parse_assignment("novalue").is_err());
        assert!(parse_assignment("=x").is_err());
    }

    #[test]
    fn input_json_must_be_an_object() {
        assert_eq!(parse_object(r#"{"a": 1}"#).unwrap()["a"], 1);
        assert!(parse_object("[1]").unwrap_err().contains("an array"));
        assert!(parse_object("{").unwrap_err().contains("not valid JSON"));
    }
}
