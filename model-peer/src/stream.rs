//! Streamed bodies: SSE and NDJSON framing, and the ways a scripted reply
//! spoils a stream (cut, stall, pace, mid-stream error, malformed event).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::stream;

use crate::chat::Effects;
use crate::server::Shared;

/// How events are framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `data: <json>\n\n` (OpenAI).
    Data,
    /// `event: <name>\ndata: <json>\n\n` (Anthropic).
    Named,
    /// `<json>\n` (Ollama).
    Lines,
}

/// One event of a stream, before framing.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    /// The SSE event name (Anthropic).
    pub(crate) name: &'static str,
    /// The data: JSON text, or `[DONE]`.
    pub(crate) data: String,
}

impl Event {
    pub(crate) fn new(name: &'static str, data: impl Into<String>) -> Event {
        Event {
            name,
            data: data.into(),
        }
    }
}

/// A stream to send.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) framing: Framing,
    pub(crate) events: Vec<Event>,
    /// Which event [`Effects::malformed`] garbles.
    pub(crate) malform_at: usize,
    /// The protocol's mid-stream error event, for [`Effects::error_after`].
    pub(crate) error: Option<Event>,
}

pub(crate) fn frame(framing: Framing, event: &Event) -> Bytes {
    let text = match framing {
        Framing::Data => format!("data: {}\n\n", event.data),
        Framing::Named => format!("event: {}\ndata: {}\n\n", event.name, event.data),
        Framing::Lines => format!("{}\n", event.data),
    };
    Bytes::from(text)
}

/// Cuts the JSON of an event in the middle, so that it no longer parses.
pub(crate) fn garble(data: &str) -> String {
    let mut cut = data.len() / 2;
    while !data.is_char_boundary(cut) {
        cut -= 1;
    }
    data[..cut].to_owned()
}

/// What the body stream does next.
enum Step {
    Send(Bytes),
    Cut,
    Stall,
}

/// Builds the body of a stream: its frames, spoiled as the effects say,
/// with the peer's count of open streams held while it lives.
pub(crate) fn body(plan: Plan, effects: &Effects, shared: &Arc<Shared>) -> Body {
    let mut events = plan.events;
    if effects.malformed
        && let Some(event) = events.get_mut(plan.malform_at)
    {
        event.data = garble(&event.data);
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut end = None;
    if let Some((n, _)) = &effects.error_after {
        events.truncate(*n);
        if let Some(error) = &plan.error {
            events.push(error.clone());
        }
    }
    if let Some(n) = effects.cut_after
        && n < events.len()
    {
        events.truncate(n);
        end = Some(Step::Cut);
    }
    if let Some(n) = effects.stall_after
        && n < events.len()
    {
        events.truncate(n);
        end = Some(Step::Stall);
    }
    steps.extend(events.iter().map(|e| Step::Send(frame(plan.framing, e))));
    steps.extend(end);
    paced(steps, effects.pace, Guard::open(shared))
}

/// The body of a non-streaming answer cut after `n` bytes.
pub(crate) fn cut_body(bytes: Bytes, n: usize, shared: &Arc<Shared>) -> Body {
    let n = n.min(bytes.len());
    let steps = vec![Step::Send(bytes.slice(..n)), Step::Cut];
    paced(steps, None, Guard::open(shared))
}

fn paced(steps: Vec<Step>, pace: Option<Duration>, guard: Guard) -> Body {
    let state = (steps.into_iter(), 0_usize, guard);
    let stream = stream::unfold(state, move |(mut steps, sent, guard)| async move {
        let step = steps.next()?;
        if sent > 0
            && let Some(pace) = pace
        {
            tokio::time::sleep(pace).await;
        }
        match step {
            Step::Send(bytes) => Some((Ok(bytes), (steps, sent + 1, guard))),
            Step::Cut => {
                // Give the server a turn to flush what was sent, so that
                // the client sees the bytes before the connection drops.
                tokio::task::yield_now().await;
                Some((
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "model peer: stream cut as scripted",
                    )),
                    (steps, sent + 1, guard),
                ))
            }
            Step::Stall => {
                std::future::pending::<()>().await;
                None
            }
        }
    });
    Body::from_stream(stream)
}

/// Counts a stream as open from its start until its body is dropped (sent
/// in full, cut, or abandoned by the client).
struct Guard {
    shared: Arc<Shared>,
}

impl Guard {
    fn open(shared: &Arc<Shared>) -> Guard {
        shared.open_streams.send_modify(|n| *n += 1);
        Guard {
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared
            .open_streams
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_each_framing() {
        let e = Event::new("ping", r#"{"type":"ping"}"#);
        assert_eq!(
            &frame(Framing::Data, &e)[..],
            b"data: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(
            &frame(Framing::Named, &e)[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(&frame(Framing::Lines, &e)[..], b"{\"type\":\"ping\"}\n");
    }

    #[test]
    fn garbled_json_does_not_parse() {
        let data = r#"{"a":"é","b":[1,2,3]}"#;
        assert!(serde_json::from_str::<serde_json::Value>(&garble(data)).is_err());
    }
}
