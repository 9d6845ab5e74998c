//! Progress of a run on stderr, from the execution's events.
//!
//! - [`Plain`]: one line per event, for logs and pipes:
//!   `[   12.3ms] fetch started (attempt 1)`.
//! - [`Live`]: for a terminal; finished nodes scroll up as permanent lines,
//!   and a small block at the bottom, redrawn in place, shows the nodes
//!   running now with their timers and the tail of what they stream.
//!
//! Progress data that is a string, or an object with a string `token`, is a
//! token stream (an LLM's output, say): both views join the tokens of a node
//! into lines.

mod live;
mod plain;

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::time::Duration;

use ghostflow::{Event, Flow};

pub(crate) use live::Live;
pub(crate) use plain::Plain;

/// Where a run's progress goes.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Nowhere (`--quiet`).
    Quiet,
    /// One line per event.
    Plain(Plain<io::Stderr>),
    /// A live view on a terminal.
    Live(Box<Live<io::Stderr>>),
}

impl Progress {
    /// The view that suits stderr: live on a terminal (unless `TERM=dumb`),
    /// plain lines otherwise; none with `quiet`.
    pub(crate) fn for_stderr(flow: &Flow, quiet: bool) -> Self {
        let stderr = io::stderr();
        if quiet {
            Progress::Quiet
        } else if stderr.is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb") {
            let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            Progress::Live(Box::new(Live::new(stderr, flow, color, terminal_width())))
        } else {
            Progress::Plain(Plain::new(stderr))
        }
    }

    /// Whether the view wants [`tick`](Self::tick) called now and then.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self, Progress::Live(_))
    }

    /// Shows one event.
    pub(crate) fn event(&mut self, event: &Event) {
        match self {
            Progress::Quiet => {}
            Progress::Plain(plain) => plain.event(event.elapsed, &event.kind),
            Progress::Live(live) => live.event(event.elapsed, &event.kind),
        }
    }

    /// Redraws timers and streamed text (live view only).
    pub(crate) fn tick(&mut self) {
        if let Progress::Live(live) = self {
            live.tick();
        }
    }

    /// Shows a message from the command line itself, such as "cancelling".
    pub(crate) fn note(&mut self, message: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Plain(plain) => plain.note(message),
            Progress::Live(live) => live.note(message),
        }
    }

    /// Ends the view: flushes streamed text, clears the live block.
    pub(crate) fn finish(&mut self) {
        match self {
            Progress::Quiet => {}
            Progress::Plain(plain) => plain.finish(),
            Progress::Live(live) => live.finish(),
        }
    }
}

/// Columns of the terminal: `$COLUMNS` when set, else 80.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c >= 20)
        .unwrap_or(80)
}

/// The text of a progress event that is a token of a stream: a string, or
/// an object with a string `token`.
fn token(data: &serde_json::Value) -> Option<&str> {
    match data {
        serde_json::Value::String(token) => Some(token),
        serde_json::Value::Object(object) => object.get("token")?.as_str(),
        _ => None,
    }
}

/// A duration for people: `41µs`, `12.3ms`, `1.25s`, `2m05s`.
fn human(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 && micros.is_multiple_of(1000) {
        format!("{}ms", micros / 1000)
    } else if micros < 1_000_000 {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else if d.as_secs() < 60 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Text from a node, safe to print: control characters (escape sequences
/// that could move the cursor or recolor the terminal, tabs, carriage
/// returns) become spaces.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Lines longer than this are broken at a space, so that a stream without
/// newlines still shows up while it runs.
const MAX_LINE: usize = 160;

/// Tokens of each node, joined into lines.
#[derive(Debug, Default)]
struct Lines {
    /// The unfinished line of each node with one, in order of first token.
    pending: Vec<(Arc<str>, String)>,
}

impl Lines {
    /// Adds a token of `node`; returns the lines it completed.
    fn push(&mut self, node: &Arc<str>, token: &str) -> Vec<String> {
        let slot = match self.pending.iter().position(|(n, _)| n == node) {
            Some(i) => i,
            None => {
                self.pending.push((node.clone(), String::new()));
                self.pending.len() - 1
            }
        };
        let text = &mut self.pending[slot].1;
        let mut done = Vec::new();
        let mut parts = token.split('\n');
        if let Some(first) = parts.next() {
            text.push_str(&printable(first));
        }
        for part in parts {
            done.push(std::mem::replace(text, printable(part)));
        }
        while text.len() > MAX_LINE {
            let end = text.floor_char_boundary(MAX_LINE);
            let Some(cut) = text[..end].rfind(' ').filter(|&i| i > 0) else {
                break;
            };
            let rest = text[cut + 1..].to_owned();
            text.truncate(cut);
            done.push(std::mem::replace(text, rest));
        }
        done
    }

    /// The unfinished line of `node`, if any.
    fn current(&self, node: &str) -> Option<&str> {
        self.pending
            .iter()
            .find(|(n, _)| &**n == node)
            .map(|(_, text)| text.as_str())
            .filter(|text| !text.is_empty())
    }

    /// Ends the stream of `node`: its unfinished line, if any.
    fn take(&mut self, node: &str) -> Option<String> {
        let i = self.pending.iter().position(|(n, _)| &**n == node)?;
        let (_, text) = self.pending.remove(i);
        (!text.is_empty()).then_some(text)
    }

    /// Ends every stream: the unfinished lines, by node.
    fn take_all(&mut self) -> Vec<(Arc<str>, String)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(_, text)| !text.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_objects_with_a_token_are_streams() {
        assert_eq!(token(&serde_json::json!("Hel")), Some("Hel"));
        assert_eq!(token(&serde_json::json!({"token": "lo"})), Some("lo"));
        assert_eq!(token(&serde_json::json!({"done": 3})), None);
        assert_eq!(token(&serde_json::json!(3)), None);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(Duration::from_micros(41)), "41µs");
        assert_eq!(human(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(human(Duration::from_millis(200)), "200ms");
        assert_eq!(human(Duration::from_millis(1250)), "1.25s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn tokens_join_into_lines_per_node() {
        let mut lines = Lines::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(lines.push(&a, "Hel").is_empty());
        assert!(lines.push(&b, "other").is_empty());
        assert_eq!(lines.push(&a, "lo\nwor"), ["Hello"]);
        assert_eq!(lines.current("a"), Some("wor"));
        assert!(lines.push(&a, "ld\x1b[2J").is_empty());
        assert_eq!(lines.take("a").as_deref(), Some("world [2J"));
        assert_eq!(lines.take("a"), None);
        assert_eq!(lines.take_all(), [(b, "other".to_owned())]);
    }

    #[test]
    fn long_lines_break_at_a_space() {
        let mut lines = Lines::default();
        let node: Arc<str> = "n".into();
        let word = "word ".repeat(40);
        let done = lines.push(&node, &word);
        assert_eq!(done.len(), 1);
        assert!(done[0].len() <= MAX_LINE);
        assert!(done[0].ends_with("word"));
    }
}
