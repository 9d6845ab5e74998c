//! The protocol-neutral form of a chat request and of its answer: each
//! protocol parses into [`ChatCall`], and renders an [`Outcome`].

use std::time::Duration;

use serde_json::Value;

use crate::builtin;
use crate::reply::{Kind, Reply};

/// Who wrote a turn of the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One turn, reduced to its text.
#[derive(Clone, Debug)]
pub(crate) struct Turn {
    pub(crate) role: Role,
    pub(crate) text: String,
}

/// A tool the request offers.
#[derive(Clone, Debug)]
pub(crate) struct ToolDef {
    pub(crate) name: String,
    pub(crate) parameters: Value,
}

/// Whether and which tool the request forces.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called (OpenAI `required`, Anthropic `any`).
    Any,
    Named(String),
}

/// The form the answer must take.
#[derive(Clone, Debug)]
pub(crate) enum Format {
    Text,
    JsonObject,
    JsonSchema(Value),
}

/// A validated chat request, whatever its protocol.
#[derive(Clone, Debug)]
pub(crate) struct ChatCall {
    pub(crate) model: String,
    pub(crate) turns: Vec<Turn>,
    pub(crate) tools: Vec<ToolDef>,
    pub(crate) tool_choice: ToolChoice,
    pub(crate) format: Format,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) stop: Vec<String>,
    pub(crate) stream: bool,
}

/// A tool call of the answer.
#[derive(Clone, Debug)]
pub(crate) struct ToolUse {
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    pub(crate) arguments: Value,
}

/// Why the answer stopped.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ToolCalls,
    StopSequence(String),
    ContentFilter,
    /// A protocol's own word, sent as given.
    Other(String),
}

impl Finish {
    fn parse(reason: &str) -> Finish {
        match reason {
            "stop" | "end_turn" => Finish::Stop,
            "length" | "max_tokens" => Finish::Length,
            "tool_calls" | "tool_use" => Finish::ToolCalls,
            "content_filter" | "refusal" => Finish::ContentFilter,
            "stop_sequence" => Finish::StopSequence(String::new()),
            other => Finish::Other(other.to_owned()),
        }
    }
}

/// The answer to render.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) text: String,
    pub(crate) tool_calls: Vec<ToolUse>,
    pub(crate) finish: Finish,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
}

/// How the answer is delivered.
#[derive(Clone, Debug, Default)]
pub(crate) struct Effects {
    pub(crate) pace: Option<Duration>,
    pub(crate) cut_after: Option<usize>,
    pub(crate) stall_after: Option<usize>,
    pub(crate) error_after: Option<(usize, Failure)>,
    pub(crate) malformed: bool,
}

/// An error to answer with.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    /// The message instead of the protocol's usual one.
    pub(crate) message: Option<String>,
    pub(crate) retry_after: Option<u64>,
}

/// What a request gets.
#[derive(Debug)]
pub(crate) enum Outcome {
    Answer(Answer, Effects),
    Fail(Failure),
}

/// Combines a request and the reply it took (or the built-in model) into
/// what to send. `Err` when the reply cannot answer a chat request (an
/// embeddings reply pushed to the chat queue).
pub(crate) fn resolve(call: &ChatCall, reply: Option<Reply>) -> Result<Outcome, String> {
    let reply = reply.unwrap_or_else(Reply::builtin);
    let effects = Effects {
        pace: reply.pace,
        cut_after: reply.cut_after,
        stall_after: reply.stall_after,
        error_after: reply.error_after.map(|(n, status)| {
            (
                n,
                Failure {
                    status,
                    message: reply.message.clone(),
                    retry_after: reply.retry_after,
                },
            )
        }),
        malformed: reply.malformed,
    };
    let (text, tool_calls) = match reply.kind {
        Kind::Status(status) => {
            return Ok(Outcome::Fail(Failure {
                status,
                message: reply.message,
                retry_after: reply.retry_after,
            }));
        }
        Kind::Embeddings(_) => {
            return Err("an embeddings reply was queued for chat requests \
                 (push it with push_embeddings)"
                .to_owned());
        }
        Kind::Builtin => builtin::answer(call),
        Kind::Text(text) => (text, Vec::new()),
        Kind::ToolCalls(calls) => {
            let mut given = reply.call_ids.into_iter();
            let uses = calls
                .into_iter()
                .map(|(name, arguments)| ToolUse {
                    id: given.next(),
                    name,
                    arguments,
                })
                .collect();
            (reply.text.unwrap_or_default(), uses)
        }
    };
    let (text, natural) = limit(text, call);
    let finish = match reply.finish.as_deref() {
        Some(reason) => match Finish::parse(reason) {
            Finish::StopSequence(s) if s.is_empty() => match &natural {
                Finish::StopSequence(found) => Finish::StopSequence(found.clone()),
                _ => Finish::StopSequence(call.stop.first().cloned().unwrap_or_default()),
            },
            other => other,
        },
        None if !tool_calls.is_empty() => Finish::ToolCalls,
        None => natural,
    };
    let (input_tokens, output_tokens) = reply.usage.unwrap_or_else(|| {
        let input = call.turns.iter().map(|t| tokens(&t.text)).sum::<u64>()
            + call
                .tools
                .iter()
                .map(|t| tokens(&t.parameters.to_string()))
                .sum::<u64>();
        let output = tokens(&text)
            + tool_calls
                .iter()
                .map(|c| 1 + tokens(&c.arguments.to_string()))
                .sum::<u64>();
        (input.max(1), output.max(1))
    });
    Ok(Outcome::Answer(
        Answer {
            text,
            tool_calls,
            finish,
            input_tokens,
            output_tokens,
        },
        effects,
    ))
}

/// Applies the request's stop sequences and token limit to `text`.
fn limit(text: String, call: &ChatCall) -> (String, Finish) {
    let mut text = text;
    let mut finish = Finish::Stop;
    let earliest = call
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at);
    if let Some((at, stop)) = earliest {
        let stop = stop.clone();
        text.truncate(at);
        finish = Finish::StopSequence(stop);
    }
    if let Some(max) = call.max_tokens {
        let pieces = pieces(&text);
        if pieces.len() as u64 > max {
            let keep = usize::try_from(max).unwrap_or(usize::MAX);
            text = pieces[..keep].concat();
            finish = Finish::Length;
        }
    }
    (text, finish)
}

/// The number of "tokens" of a text: its whitespace-separated words.
pub(crate) fn tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits text into the deltas of a stream: each word with the whitespace
/// before it, so that joining the pieces gives the text back.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                out.push(&text[start..i]);
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Splits a JSON text into fragments of a few characters, as models
/// stream tool arguments.
pub(crate) fn fragments(json: &str) -> Vec<&str> {
    const SIZE: usize = 8;
    let mut out = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, _) in json.char_indices() {
        if count == SIZE {
            out.push(&json[start..i]);
            start = i;
            count = 0;
        }
        count += 1;
    }
    if start < json.len() {
        out.push(&json[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_back_to_the_text() {
        for text in ["Paris is big.", "  lead and trail  ", "one", "", "a\n\nb c"] {
            assert_eq!(pieces(text).concat(), text);
        }
        assert_eq!(pieces("Paris is big."), ["Paris", " is", " big."]);
    }

    #[test]
    fn fragments_join_back_to_the_json() {
        let json = r#"{"city":"Paris, élan","n":1}"#;
        let parts = fragments(json);
        assert!(parts.len() > 2);
        assert_eq!(parts.concat(), json);
    }
}
