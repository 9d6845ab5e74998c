//! How a command ends when it does not succeed: what goes to stderr, and the
//! exit code.

use std::io::{self, Write};
use std::process::ExitCode;

use ghostflow::document::LoadError;

/// Exit code of a failed flow, or of `validate` finding problems.
const FAILED: u8 = 1;
/// Exit code of a usage error or a document that does not load.
const USAGE: u8 = 2;
/// Exit code after Ctrl-C: 128 + SIGINT, as shells report it.
const INTERRUPTED: u8 = 130;

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Wrong arguments or inputs (exit 2).
    Usage(String),
    /// The document does not load: every problem, one per line (exit 2).
    Load(LoadError),
    /// The command ran and failed: the flow failed, a file has problems, a
    /// file cannot be written (exit 1). `None` when everything was already
    /// said on stderr.
    Failed(Option<String>),
    /// Interrupted with Ctrl-C (exit 130).
    Interrupted(String),
}

impl Failure {
    /// Prints the failure on stderr and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let mut stderr = io::stderr().lock();
        // Nothing sensible is left to do when stderr itself is gone.
        let (message, code) = match self {
            Failure::Usage(message) => (Some(format!("error: {message}")), USAGE),
            Failure::Load(error) => {
                let count = error.problems.len();
                let origin = error.origin.as_deref().unwrap_or("the document");
                let summary = if count == 1 {
                    format!("error: {origin} does not load (1 problem)")
                } else {
                    format!("error: {origin} does not load ({count} problems)")
                };
                let hint = if error
                    .problems
                    .iter()
                    .any(|p| p.message.contains("environment variables are not allowed"))
                {
                    "\nhint: let expressions read a variable with `--allow-env NAME`"
                } else {
                    ""
                };
                (Some(format!("{error}\n{summary}{hint}")), USAGE)
            }
            Failure::Failed(message) => (message.map(|m| format!("error: {m}")), FAILED),
            Failure::Interrupted(message) => (Some(message), INTERRUPTED),
        };
        if let Some(message) = message {
            let _ = writeln!(stderr, "{message}");
        }
        ExitCode::from(code)
    }
}

/// Writes `text` and a newline to stdout. A closed pipe (`ghostflow nodes |
/// head`) ends the output quietly.
pub(crate) fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Failed(Some(format!(
            "cannot write to stdout: {e}"
        )))),
    }
}
