//! The `ghostflow` command line.
//!
//! This first version lists the node catalog; running and validating flow
//! documents come with the document format.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// GhostFlow: run and inspect workflows.
#[derive(Debug, Parser)]
#[command(name = "ghostflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the node types this build knows, with descriptions and schemas.
    Nodes {
        /// Print the full specs as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Nodes { json } => {
            let specs = ghostflow_nodes::specs();
            if json {
                match serde_json::to_string_pretty(&specs) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the catalog: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                for spec in &specs {
                    let summary = spec.description.split("\n\n").next().unwrap_or_default();
                    println!(
                        "{:<14} {:<8} {}",
                        format!("{}@{}", spec.type_name, spec.version),
                        spec.category,
                        summary
                    );
                }
            }
            ExitCode::SUCCESS
        }
    }
}
