//! Progress as a live view on a terminal.
//!
//! ```text
//! ✓ greet      41µs
//! ! fetch      failed (attempt 1): connection reset; retrying in 200ms
//!   llm │ The answer, in short, is that
//! ⠹ fetch      1.21s  (attempt 2)
//! ⠹ llm        0.84s  │ it depends on the
//! ⠹ hello: 2/6 done, 2 running · 1.25s
//! ```
//!
//! Everything that is final (a node's result, a completed line of streamed
//! text, a note) is printed once and scrolls up like any output. Below it, a
//! block of at most [`MAX_RUNNING`] + 2 lines shows the running nodes and a
//! status line; it is erased and redrawn in place with ANSI escapes when
//! events change it (at most every [`MIN_REDRAW`]) and at every tick of the
//! caller's clock. Block lines are cut to the terminal's width so that none
//! wraps, which keeps the redraw exact.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghostflow::{EventKind, Flow, OnError, RunStatus};

use super::{Lines, human, printable, token};

/// Least time between two redraws caused by events: a burst of events is
/// drawn once, and its final lines are printed together.
const MIN_REDRAW: Duration = Duration::from_millis(40);

/// Running nodes shown in the block; more are counted on one line.
const MAX_RUNNING: usize = 8;

/// Spinner frames, one per tick.
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";
const DIM: &str = "2";

/// The live view. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Live<W: Write> {
    out: W,
    color: bool,
    width: usize,
    flow: String,
    total: usize,
    /// Width of the node-id column.
    id_width: usize,
    /// When the run started, on this process's clock.
    origin: Instant,
    /// Nodes whose failure does not fail the run (on-error `continue` or
    /// `skip`).
    tolerant: HashSet<Arc<str>>,
    running: Vec<Running>,
    /// The final state of each node that reached one.
    finals: HashMap<Arc<str>, Final>,
    lines: Lines,
    /// Final lines waiting to be printed above the block.
    commits: Vec<String>,
    /// Lines of the block on screen now (the cursor is just below them).
    drawn: usize,
    /// When the view was last drawn.
    drawn_at: Option<Instant>,
    frame: usize,
    cursor_hidden: bool,
    finished: bool,
}

/// A node with an attempt under way (or waiting to retry).
#[derive(Debug)]
struct Running {
    node: Arc<str>,
    attempt: u32,
    since: Instant,
    /// When the next attempt starts, while waiting for it.
    retry_at: Option<Instant>,
    /// The last progress that was not a token, as compact JSON.
    status: Option<String>,
}

/// How a node ended. A node that fails with on-error `skip` is failed,
/// then skipped: the later state wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Final {
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl<W: Write> Live<W> {
    /// A view of `flow`'s run on `out`, `width` columns wide.
    pub(crate) fn new(out: W, flow: &Flow, color: bool, width: usize) -> Self {
        let id_width = flow
            .nodes()
            .iter()
            .map(|n| n.id.chars().count())
            .max()
            .unwrap_or(0)
            .min(24);
        Live {
            out,
            color,
            width: width.max(20),
            flow: flow.name().to_owned(),
            total: flow.nodes().len(),
            id_width,
            origin: Instant::now(),
            tolerant: flow
                .nodes()
                .iter()
                .filter(|n| matches!(n.policy().on_error, Some(OnError::Continue | OnError::Skip)))
                .map(|n| n.id.clone())
                .collect(),
            running: Vec::new(),
            finals: HashMap::new(),
            lines: Lines::default(),
            commits: Vec::new(),
            drawn: 0,
            drawn_at: None,
            frame: 0,
            cursor_hidden: false,
            finished: false,
        }
    }

    /// Shows one event that happened `at` into the run.
    pub(crate) fn event(&mut self, at: Duration, kind: &EventKind) {
        if self.finished {
            return;
        }
        let now = Instant::now();
        match kind {
            EventKind::RunStarted { flow, nodes } => {
                self.origin = now.checked_sub(at).unwrap_or(now);
                let noun = if *nodes == 1 { "node" } else { "nodes" };
                let line = self.paint(DIM, &format!("running `{flow}` ({nodes} {noun})"));
                self.commits.push(line);
            }
            EventKind::NodeStarted { node, attempt, .. } => {
                match self.running.iter_mut().find(|r| r.node == *node) {
                    Some(running) => {
                        running.attempt = *attempt;
                        running.since = now;
                        running.retry_at = None;
                    }
                    None => self.running.push(Running {
                        node: node.clone(),
                        attempt: *attempt,
                        since: now,
                        retry_at: None,
                        status: None,
                    }),
                }
            }
            EventKind::NodeSucceeded {
                node,
                attempt,
                duration,
                ..
            } => {
                self.end_stream(node);
                self.stop(node, Final::Succeeded);
                let mut text = human(*duration);
                if *attempt > 1 {
                    text.push_str(&format!(" (attempt {attempt})"));
                }
                self.commit_node('✓', GREEN, node, &text);
            }
            EventKind::NodeFailed {
                node,
                attempt,
                error,
                retry_in,
                ..
            } => {
                self.end_stream(node);
                let error = printable(error);
                match retry_in {
                    Some(delay) => {
                        if let Some(running) = self.running.iter_mut().find(|r| r.node == *node) {
                            running.retry_at = Some(now + *delay);
                        }
                        let text = format!(
                            "failed (attempt {attempt}): {error}; retrying in {}",
                            human(*delay)
                        );
                        self.commit_node('!', YELLOW, node, &text);
                    }
                    None if self.tolerant.contains(node) => {
                        self.stop(node, Final::Failed);
                        let text = format!("failed (attempt {attempt}): {error}");
                        self.commit_node('!', YELLOW, node, &text);
                    }
                    None => {
                        self.stop(node, Final::Failed);
                        let text = format!("failed (attempt {attempt}): {error}");
                        let line = self.node_line('✗', node, &text);
                        let line = self.paint(RED, &line);
                        self.commits.push(line);
                    }
                }
            }
            EventKind::NodeSkipped { node, .. } => {
                self.end_stream(node);
                self.stop(node, Final::Skipped);
                let line = self.node_line('-', node, "skipped");
                let line = self.paint(DIM, &line);
                self.commits.push(line);
            }
            EventKind::NodeCancelled { node, .. } => {
                self.end_stream(node);
                self.stop(node, Final::Cancelled);
                self.commit_node('⊘', YELLOW, node, "cancelled");
            }
            EventKind::NodeProgress { node, data, .. } => {
                match token(data) {
                    Some(token) => {
                        for text in self.lines.push(node, token) {
                            self.commit_text(node, &text);
                        }
                    }
                    None => {
                        if let Some(running) = self.running.iter_mut().find(|r| r.node == *node) {
                            running.status = Some(printable(&data.to_string()));
                        }
                    }
                }
                // Streamed text shows at the next tick; only completed
                // lines are worth a redraw now.
                if self.commits.is_empty() {
                    return;
                }
            }
            EventKind::RunFinished { status, .. } => {
                self.summary(at, *status);
                self.finish();
                return;
            }
            _ => return,
        }
        // Drawn now, or at the next event or tick after `MIN_REDRAW`.
        if self
            .drawn_at
            .is_none_or(|at| now.saturating_duration_since(at) >= MIN_REDRAW)
        {
            self.render();
        }
    }

    /// Advances the spinner and redraws the block.
    pub(crate) fn tick(&mut self) {
        if !self.finished {
            self.frame = self.frame.wrapping_add(1);
            self.render();
        }
    }

    /// Prints a message from the command line above the block.
    pub(crate) fn note(&mut self, message: &str) {
        if !self.finished {
            let line = self.paint(YELLOW, &format!("! {message}"));
            self.commits.push(line);
            self.render();
        }
    }

    /// Prints what is left of the streams, erases the block and shows the
    /// cursor again.
    pub(crate) fn finish(&mut self) {
        if self.finished {
            return;
        }
        for (node, text) in self.lines.take_all() {
            self.commit_text(&node, &text);
        }
        self.finished = true;
        self.render();
    }

    /// The final line: how the run ended, after how long, and what each
    /// node did.
    fn summary(&mut self, at: Duration, status: RunStatus) {
        // Nodes still marked running got no final event: they were stopped.
        let stopped = self.running.len();
        let count = |state| self.finals.values().filter(|f| **f == state).count();
        let not_run = self.total.saturating_sub(self.finals.len() + stopped);
        let parts: Vec<String> = [
            (count(Final::Succeeded), "succeeded"),
            (count(Final::Failed), "failed"),
            (count(Final::Skipped), "skipped"),
            (count(Final::Cancelled) + stopped, "cancelled"),
            (not_run, "not run"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let (symbol, color, how) = match status {
            RunStatus::Succeeded => ('✓', GREEN, "succeeded in"),
            RunStatus::Failed => ('✗', RED, "failed after"),
            RunStatus::Cancelled => ('⊘', YELLOW, "cancelled after"),
            RunStatus::Running => ('?', YELLOW, "running for"),
        };
        let head = self.paint(color, &symbol.to_string());
        let line = format!(
            "{head} {} {how} {} · {}",
            self.flow,
            human(at),
            parts.join(", ")
        );
        self.commits.push(line);
    }

    /// Ends `node`'s stream of tokens: its unfinished line is printed.
    fn end_stream(&mut self, node: &str) {
        if let Some(text) = self.lines.take(node) {
            self.commit_text(node, &text);
        }
    }

    /// `node` reached a final state.
    fn stop(&mut self, node: &Arc<str>, state: Final) {
        self.running.retain(|r| r.node != *node);
        self.finals.insert(node.clone(), state);
    }

    /// A line of streamed text: `  llm │ text`.
    fn commit_text(&mut self, node: &str, text: &str) {
        let id = self.paint(DIM, &format!("{node} │"));
        self.commits.push(format!("  {id} {text}"));
    }

    fn commit_node(&mut self, symbol: char, color: &str, node: &str, text: &str) {
        let head = self.paint(color, &symbol.to_string());
        let line = self.node_line(' ', node, text);
        // `node_line` put a blank where the symbol goes.
        self.commits.push(format!("{head}{}", &line[1..]));
    }

    fn node_line(&self, symbol: char, node: &str, text: &str) -> String {
        format!("{symbol} {node:<width$}  {text}", width = self.id_width)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Erases the block, prints the waiting final lines, and draws the
    /// block again (unless finished), in one write.
    fn render(&mut self) {
        let mut buffer = String::new();
        if self.drawn > 0 {
            // Up to the block's first line, then erase to the end of screen.
            buffer.push_str(&format!("\x1b[{}A\r\x1b[J", self.drawn));
        }
        for line in self.commits.drain(..) {
            buffer.push_str(&line);
            buffer.push('\n');
        }
        let block = if self.finished {
            Vec::new()
        } else {
            self.block()
        };
        for line in &block {
            buffer.push_str(line);
            buffer.push('\n');
        }
        self.drawn = block.len();
        self.drawn_at = Some(Instant::now());
        if !self.finished && !self.cursor_hidden {
            buffer.insert_str(0, "\x1b[?25l");
            self.cursor_hidden = true;
        }
        if self.finished && self.cursor_hidden {
            buffer.push_str("\x1b[?25h");
            self.cursor_hidden = false;
        }
        // Progress is best effort: a closed stderr must not stop the run.
        let _ = self
            .out
            .write_all(buffer.as_bytes())
            .and_then(|()| self.out.flush());
    }

    /// The lines of the block: running nodes, then the status line.
    fn block(&self) -> Vec<String> {
        let now = Instant::now();
        let spinner = SPINNER[self.frame % SPINNER.len()];
        let room = self.width - 1;
        let mut block = Vec::new();
        for running in self.running.iter().take(MAX_RUNNING) {
            let mut line = format!(
                "{spinner} {:<width$}  {:>6}",
                &*running.node,
                human(now.saturating_duration_since(running.since)),
                width = self.id_width
            );
            if running.attempt > 1 {
                line.push_str(&format!("  (attempt {})", running.attempt));
            }
            let extra = match running.retry_at {
                Some(at) => Some(format!(
                    "retrying in {}",
                    human(at.saturating_duration_since(now))
                )),
                None => match self.lines.current(&running.node) {
                    Some(text) => Some(format!(
                        "│ {}",
                        tail(text, room.saturating_sub(columns(&line) + 4))
                    )),
                    None => running.status.clone(),
                },
            };
            if let Some(extra) = extra {
                line.push_str("  ");
                line.push_str(&extra);
            }
            block.push(fit(&line, room));
        }
        if self.running.len() > MAX_RUNNING {
            let more = self.running.len() - MAX_RUNNING;
            block.push(fit(&format!("  … and {more} more running"), room));
        }
        let status = format!(
            "{spinner} {}: {}/{} done, {} running · {}",
            self.flow,
            self.finals.len(),
            self.total,
            self.running.len(),
            human(now.saturating_duration_since(self.origin))
        );
        block.push(self.paint(DIM, &fit(&status, room)));
        block
    }
}

impl<W: Write> Drop for Live<W> {
    fn drop(&mut self) {
        if self.cursor_hidden {
            let _ = self.out.write_all(b"\x1b[?25h");
            let _ = self.out.flush();
        }
    }
}

/// Columns a character may take. Anything beyond ASCII counts as two (wide
/// characters do; others only waste a column), so a line never wraps.
fn char_columns(c: char) -> usize {
    if c.is_ascii() { 1 } else { 2 }
}

fn columns(text: &str) -> usize {
    text.chars().map(char_columns).sum()
}

/// `text` cut to `room` columns, with `…` when cut.
fn fit(text: &str, room: usize) -> String {
    if columns(text) <= room {
        return text.to_owned();
    }
    let mut used = 2; // the ellipsis
    let mut out = String::new();
    for c in text.chars() {
        used += char_columns(c);
        if used > room {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// The end of `text` within `room` columns, with `…` when cut.
fn tail(text: &str, room: usize) -> String {
    if columns(text) <= room {
        return text.to_owned();
    }
    let mut used = 2;
    let mut kept: Vec<char> = Vec::new();
    for c in text.chars().rev() {
        used += char_columns(c);
        if used > room {
            break;
        }
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_to_the_room_they_have() {
        assert_eq!(fit("hello", 10), "hello");
        assert_eq!(fit("hello world", 8), "hello …");
        assert!(columns(&fit("héllo wörld", 8)) <= 8);
        assert_eq!(tail("hello world", 8), "… world");
        assert_eq!(tail("abc", 3), "abc");
    }

    fn flow() -> Flow {
        let registry = ghostflow_nodes::registry();
        ghostflow::document::Loader::new(&registry)
            .load_bytes(
                b"version: 1\nname: t\nnodes:\n  - { id: wait, type: delay, config: { ms: 1 } }\n\
                  inputs: { v: {} }\nedges:\n  - { from: input.v, to: wait.value }\n",
                ghostflow::document::Format::Yaml,
                None,
            )
            .unwrap()
            .flow
    }

    #[test]
    fn the_block_is_redrawn_in_place_and_erased_at_the_end() {
        let mut live = Live::new(Vec::new(), &flow(), false, 60);
        let node: Arc<str> = "wait".into();
        let ms = Duration::from_millis;
        live.event(
            ms(0),
            &EventKind::NodeStarted {
                node: node.clone(),
                index: 0,
                attempt: 1,
            },
        );
        live.event(
            ms(1),
            &EventKind::NodeProgress {
                node: node.clone(),
                index: 0,
                data: "first line\nsecond".into(),
            },
        );
        live.tick();
        live.event(
            ms(2),
            &EventKind::NodeSucceeded {
                node,
                index: 0,
                attempt: 1,
                duration: ms(2),
                outputs: None,
            },
        );
        live.event(
            ms(3),
            &EventKind::RunFinished {
                status: RunStatus::Succeeded,
                error: None,
            },
        );
        let text = String::from_utf8(std::mem::take(&mut live.out)).unwrap();
        // The block (a running line and the status line) was drawn, then
        // erased before each redraw.
        assert!(text.contains("\x1b[2A\r\x1b[J"), "{text:?}");
        assert!(text.contains("  wait │ first line\n"), "{text:?}");
        assert!(text.contains("│ second"), "{text:?}");
        assert!(text.contains("  wait │ second\n✓ wait  2ms\n"), "{text:?}");
        assert!(
            text.contains("✓ t succeeded in 3ms · 1 succeeded\n"),
            "{text:?}"
        );
        assert!(text.ends_with("\x1b[?25h"), "{text:?}");
        assert_eq!(live.drawn, 0);
    }
}
