//! Scripted answers: what the next request gets, whatever its protocol.

use std::time::Duration;

use serde_json::Value;

/// One scripted answer, queued with [`ModelPeer::push`] (chat) or
/// [`ModelPeer::push_embeddings`] (embeddings) and rendered in the
/// protocol of the request that takes it.
///
/// A reply is built from one constructor ([`Reply::text`],
/// [`Reply::tool_call`], [`Reply::status`], ...) and any number of
/// modifiers ([`Reply::cut_after`], [`Reply::delay`], [`Reply::usage`],
/// ...).
///
/// [`ModelPeer::push`]: crate::ModelPeer::push
/// [`ModelPeer::push_embeddings`]: crate::ModelPeer::push_embeddings
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Reply {
    pub(crate) kind: Kind,
    pub(crate) text: Option<String>,
    pub(crate) finish: Option<String>,
    pub(crate) usage: Option<(u64, u64)>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) message: Option<String>,
    pub(crate) call_ids: Vec<String>,
    pub(crate) delay: Option<Duration>,
    pub(crate) pace: Option<Duration>,
    pub(crate) cut_after: Option<usize>,
    pub(crate) stall_after: Option<usize>,
    pub(crate) error_after: Option<(usize, u16)>,
    pub(crate) malformed: bool,
}

/// What a reply answers with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// The built-in model's answer.
    Builtin,
    /// This text.
    Text(String),
    /// These tool calls (name, arguments).
    ToolCalls(Vec<(String, Value)>),
    /// An error with this HTTP status.
    Status(u16),
    /// These vectors (embedding requests).
    Embeddings(Vec<Vec<f32>>),
}

impl Reply {
    fn of(kind: Kind) -> Reply {
        Reply {
            kind,
            text: None,
            finish: None,
            usage: None,
            retry_after: None,
            message: None,
            call_ids: Vec::new(),
            delay: None,
            pace: None,
            cut_after: None,
            stall_after: None,
            error_after: None,
            malformed: false,
        }
    }

    /// The assistant answers `text` (streamed word by word).
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::of(Kind::Text(text.into()))
    }

    /// The assistant calls one tool with these arguments (a JSON object).
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Reply {
        Reply::of(Kind::ToolCalls(vec![(name.into(), arguments)]))
    }

    /// The assistant calls several tools at once, in this order.
    pub fn tool_calls<N: Into<String>>(calls: impl IntoIterator<Item = (N, Value)>) -> Reply {
        Reply::of(Kind::ToolCalls(
            calls.into_iter().map(|(n, a)| (n.into(), a)).collect(),
        ))
    }

    /// The built-in model's answer, to combine with modifiers
    /// (`Reply::builtin().delay(..)`).
    pub fn builtin() -> Reply {
        Reply::of(Kind::Builtin)
    }

    /// An error with this HTTP status, in the protocol's own error shape
    /// and words (401 an authentication error, 429 a rate limit, 529
    /// Anthropic's overload, ...).
    pub fn status(status: u16) -> Reply {
        Reply::of(Kind::Status(status))
    }

    /// The built-in model's answer in a body that is not valid JSON
    /// (streaming: one `data:` line or NDJSON line cut in the middle of
    /// its JSON, the rest of the stream intact). See
    /// [`Reply::malformed_body`] to garble another reply.
    pub fn malformed() -> Reply {
        Reply::builtin().malformed_body()
    }

    /// These vectors answer an embedding request, one per input (queued
    /// with [`ModelPeer::push_embeddings`](crate::ModelPeer::push_embeddings);
    /// sent as given, whatever the number of inputs or dimensions).
    pub fn embeddings(vectors: Vec<Vec<f32>>) -> Reply {
        Reply::of(Kind::Embeddings(vectors))
    }

    /// Text sent before the tool calls of a [`Reply::tool_call`] reply.
    pub fn with_text(mut self, text: impl Into<String>) -> Reply {
        self.text = Some(text.into());
        self
    }

    /// The ids of the tool calls, in order, instead of generated ones
    /// (`call_...`, `toolu_...`).
    pub fn call_ids<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Reply {
        self.call_ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Why the model stopped, in neutral words mapped to each protocol's
    /// (`"stop"`, `"length"`, `"tool_calls"`, `"content_filter"`,
    /// `"stop_sequence"`) or in a protocol's own words (`"end_turn"`,
    /// `"max_tokens"`, `"tool_use"`, ...), which are sent as given.
    pub fn finish(mut self, reason: impl Into<String>) -> Reply {
        self.finish = Some(reason.into());
        self
    }

    /// The token usage to report (input, output) instead of the counted
    /// one.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Reply {
        self.usage = Some((input_tokens, output_tokens));
        self
    }

    /// For an error reply: a `Retry-After` header of this many seconds.
    pub fn retry_after(mut self, seconds: u64) -> Reply {
        self.retry_after = Some(seconds);
        self
    }

    /// For an error reply: this message instead of the protocol's usual
    /// one for the status.
    pub fn message(mut self, message: impl Into<String>) -> Reply {
        self.message = Some(message.into());
        self
    }

    /// Waits this long before answering at all (for timeouts and
    /// cancellation). Uses tokio's clock, so a paused test clock applies.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }

    /// Waits this long between two events of a stream.
    pub fn pace(mut self, pause: Duration) -> Reply {
        self.pace = Some(pause);
        self
    }

    /// Sends only the first `n` events of a stream (SSE events or NDJSON
    /// lines, the role/`message_start` event counted), then closes the
    /// connection without the stream's terminator (`[DONE]`,
    /// `message_stop`, `done: true`) and without ending the chunked body,
    /// so the client sees a cut connection. A non-streaming answer is cut
    /// after `n` bytes of its body.
    pub fn cut_after(mut self, n: usize) -> Reply {
        self.cut_after = Some(n);
        self
    }

    /// Sends the first `n` events of a stream, then sends nothing more and
    /// keeps the connection open until the client goes away (for
    /// cancellation tests with [`ModelPeer::wait_open_streams`](crate::ModelPeer::wait_open_streams)).
    pub fn stall_after(mut self, n: usize) -> Reply {
        self.stall_after = Some(n);
        self
    }

    /// Sends the first `n` events of a stream, then the protocol's
    /// mid-stream error for `status` (Anthropic's `event: error`, an
    /// OpenAI `data: {"error": ...}` event, an Ollama `{"error": ...}`
    /// line), then ends the stream. A non-streaming request gets the error
    /// response for `status` instead.
    pub fn error_after(mut self, n: usize, status: u16) -> Reply {
        self.error_after = Some((n, status));
        self
    }

    /// Garbles the body: a non-streaming body becomes invalid JSON; in a
    /// stream, the first content delta is cut in the middle of its JSON.
    pub fn malformed_body(mut self) -> Reply {
        self.malformed = true;
        self
    }
}
