//! Progress as plain lines, one per event, for logs and pipes.

use std::io::Write;
use std::time::{Duration, Instant};

use ghostflow::{EventKind, RunStatus};

use super::{Lines, human, printable, token};

/// Writes one line per event:
///
/// ```text
/// [    0µs] run `hello` started (5 nodes)
/// [   41µs] greet started (attempt 1)
/// [   95µs] greet succeeded in 32µs
/// [  1.2ms] llm: The answer is
/// [300.4ms] think failed (attempt 1): timed out after 300ms; retrying in 200ms
/// ```
#[derive(Debug)]
pub(crate) struct Plain<W: Write> {
    out: W,
    lines: Lines,
    /// When the run started on this process's clock, once an event told,
    /// to stamp notes from the command line.
    origin: Option<Instant>,
}

impl<W: Write> Plain<W> {
    /// Writes to `out`.
    pub(crate) fn new(out: W) -> Self {
        Plain {
            out,
            lines: Lines::default(),
            origin: None,
        }
    }

    /// Writes the line of one event (none for a token that does not end a
    /// line yet).
    pub(crate) fn event(&mut self, at: Duration, kind: &EventKind) {
        if self.origin.is_none() {
            let now = Instant::now();
            self.origin = Some(now.checked_sub(at).unwrap_or(now));
        }
        match kind {
            EventKind::RunStarted { flow, nodes } => {
                let noun = if *nodes == 1 { "node" } else { "nodes" };
                self.line(at, &format!("run `{flow}` started ({nodes} {noun})"));
            }
            EventKind::NodeStarted { node, attempt, .. } => {
                self.line(at, &format!("{node} started (attempt {attempt})"));
            }
            EventKind::NodeSucceeded { node, duration, .. } => {
                self.flush(at, node);
                self.line(at, &format!("{node} succeeded in {}", human(*duration)));
            }
            EventKind::NodeFailed {
                node,
                attempt,
                error,
                retry_in,
                ..
            } => {
                self.flush(at, node);
                let retry = match retry_in {
                    Some(delay) => format!("; retrying in {}", human(*delay)),
                    None => String::new(),
                };
                let error = printable(error);
                self.line(
                    at,
                    &format!("{node} failed (attempt {attempt}): {error}{retry}"),
                );
            }
            EventKind::NodeSkipped { node, .. } => {
                self.flush(at, node);
                self.line(at, &format!("{node} skipped"));
            }
            EventKind::NodeCancelled { node, .. } => {
                self.flush(at, node);
                self.line(at, &format!("{node} cancelled"));
            }
            EventKind::NodeProgress { node, data, .. } => match token(data) {
                Some(token) => {
                    for text in self.lines.push(node, token) {
                        self.line(at, &format!("{node}: {text}"));
                    }
                }
                None => {
                    let data = printable(&data.to_string());
                    self.line(at, &format!("{node} progress: {data}"));
                }
            },
            EventKind::RunFinished { status, .. } => {
                self.flush_all(at);
                // The error itself is printed once, by the command, after
                // the progress.
                let status = match status {
                    RunStatus::Succeeded => "succeeded",
                    RunStatus::Failed => "failed",
                    RunStatus::Cancelled => "cancelled",
                    RunStatus::Running => "running",
                };
                self.line(at, &format!("run {status}"));
            }
            // Kinds added later are not shown until this view knows them.
            _ => {}
        }
    }

    /// Writes a message from the command line, stamped with the time into
    /// the run.
    pub(crate) fn note(&mut self, message: &str) {
        let at = self.origin.map_or(Duration::ZERO, |o| o.elapsed());
        self.line(at, message);
    }

    /// Writes the unfinished lines of every stream.
    pub(crate) fn finish(&mut self) {
        let at = self.origin.map_or(Duration::ZERO, |o| o.elapsed());
        self.flush_all(at);
        let _ = self.out.flush();
    }

    /// Writes the unfinished line of `node`'s stream.
    fn flush(&mut self, at: Duration, node: &str) {
        if let Some(text) = self.lines.take(node) {
            self.line(at, &format!("{node}: {text}"));
        }
    }

    fn flush_all(&mut self, at: Duration) {
        for (node, text) in self.lines.take_all() {
            self.line(at, &format!("{node}: {text}"));
        }
    }

    fn line(&mut self, at: Duration, text: &str) {
        // Progress is best effort: a closed stderr must not stop the run.
        let _ = writeln!(self.out, "[{:>9}] {text}", human(at));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(ms: u64, kind: EventKind) -> (Duration, EventKind) {
        (Duration::from_millis(ms), kind)
    }

    #[test]
    fn events_become_lines_and_tokens_join_per_node() {
        let node: Arc<str> = "llm".into();
        let other: Arc<str> = "fetch".into();
        let events = [
            event(
                0,
                EventKind::NodeStarted {
                    node: node.clone(),
                    index: 0,
                    attempt: 1,
                },
            ),
            event(
                1,
                EventKind::NodeProgress {
                    node: node.clone(),
                    index: 0,
                    data: "Hello".into(),
                },
            ),
            event(
                2,
                EventKind::NodeProgress {
                    node: other.clone(),
                    index: 1,
                    data: serde_json::json!({"done": 1}),
                },
            ),
            event(
                3,
                EventKind::NodeProgress {
                    node: node.clone(),
                    index: 0,
                    data: serde_json::json!({"token": ", world\nBye"}),
                },
            ),
            event(
                4,
                EventKind::NodeFailed {
                    node: node.clone(),
                    index: 0,
                    attempt: 1,
                    error: "boom".into(),
                    retry_in: Some(Duration::from_millis(200)),
                },
            ),
            event(
                5,
                EventKind::NodeSucceeded {
                    node: other,
                    index: 1,
                    attempt: 1,
                    duration: Duration::from_micros(1500),
                    outputs: None,
                },
            ),
        ];
        let mut plain = Plain::new(Vec::new());
        for (at, kind) in &events {
            plain.event(*at, kind);
        }
        plain.finish();
        let text = String::from_utf8(plain.out).unwrap();
        assert_eq!(
            text,
            "\
[      0µs] llm started (attempt 1)
[      2ms] fetch progress: {\"done\":1}
[      3ms] llm: Hello, world
[      4ms] llm: Bye
[      4ms] llm failed (attempt 1): boom; retrying in 200ms
[      5ms] fetch succeeded in 1.5ms
"
        );
    }
}
