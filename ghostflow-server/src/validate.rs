//! `ghostflow validate`: load documents without running them.

use crate::cli::ValidateArgs;
use crate::failure::{Failure, print_stdout};

/// Loads each file; prints `FILE: ok (N nodes)` on stdout for a valid one
/// and every problem, located, on stderr for the others.
///
/// # Errors
/// [`Failure::Failed`] when any file has a problem.
pub(crate) fn validate(args: &ValidateArgs) -> Result<(), Failure> {
    let mut broken = Vec::new();
    for path in &args.flows {
        // Secrets are a property of where a flow runs, not of the document.
        match crate::load::load(path, &args.allow_env, false) {
            Ok(loaded) => {
                let count = loaded.flow.nodes().len();
                let noun = if count == 1 { "node" } else { "nodes" };
                print_stdout(&format!("{}: ok ({count} {noun})", path.display()))?;
            }
            Err(error) => {
                eprintln!("{error}");
                broken.push((path, error.problems.len()));
            }
        }
    }
    match broken.as_slice() {
        [] => Ok(()),
        [(path, count)] if args.flows.len() == 1 => Err(Failure::Failed(Some(format!(
            "{} has {count} problem{}",
            path.display(),
            if *count == 1 { "" } else { "s" }
        )))),
        _ => Err(Failure::Failed(Some(format!(
            "{} of {} files {} problems",
            broken.len(),
            args.flows.len(),
            if broken.len() == 1 { "has" } else { "have" }
        )))),
    }
}
