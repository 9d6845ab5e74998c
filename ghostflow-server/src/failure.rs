//! How a command ends when it does not succeed: what goes to stderr, and the
//! exit code.

use std::io::{self, Write};
use std::process::ExitCode;

/// Exit code of a failed flow, or of `validate` finding problems.
const FAILED: u8 = 1;

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command ran and failed: the flow failed, a file has problems, a
    /// file cannot be written (exit 1). `None` when everything was already
    /// said on stderr.
    Failed(Option<String>),
}

impl Failure {
    /// Prints the failure on stderr and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let mut stderr = io::stderr().lock();
        // Nothing sensible is left to do when stderr itself is gone.
        let (message, code) = match self {
            Failure::Failed(message) => (message.map(|m| format!("error: {m}")), FAILED),
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
