//! A local HTTP server that speaks the wire formats of three model APIs, so
//! that GhostFlow's model providers are tested against the real protocols
//! rather than against a mock of themselves.
//!
//! One [`ModelPeer`] serves, on one port:
//!
//! | protocol | endpoints | base URL |
//! | --- | --- | --- |
//! | OpenAI-compatible | `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models` | [`ModelPeer::openai_url`] |
//! | Ollama | `POST /api/chat`, `POST /api/embed`, `POST /api/embeddings`, `GET /api/tags`, `GET /api/version` | [`ModelPeer::url`] |
//! | Anthropic | `POST /v1/messages`, `GET /v1/models` (with `anthropic-version`) | [`ModelPeer::url`] |
//!
//! Each request is checked the way the real API checks it (required
//! fields, types, roles, tool-call ids, headers) and refused with the
//! protocol's own error shape and status, naming the field. Every request,
//! good or bad, is recorded ([`ModelPeer::requests`]).
//!
//! # Answers
//!
//! A test scripts the next answers with [`ModelPeer::push`]: one FIFO queue
//! shared by the three protocols, each chat request taking the next
//! [`Reply`] and rendering it in its own protocol (text, tool calls, an
//! error status, a stream cut short, a malformed body, a delay). Embedding
//! requests have their own queue ([`ModelPeer::push_embeddings`]).
//!
//! With nothing queued, a deterministic built-in model answers:
//! - **embeddings** by feature hashing of the text's words into the
//!   requested number of dimensions (256 by default), L2-normalised, so
//!   texts that share words are near each other ([`embed_text`]);
//! - **chat** by extraction: the sentence of the conversation (system,
//!   user and tool messages) that shares the most words with the last user
//!   question, or the last user message itself when nothing matches;
//! - **JSON** when the request asks for it: a value satisfying the JSON
//!   schema of the response format (strings carry the extracted answer),
//!   or `{"answer": ...}` for plain JSON mode;
//! - **a forced tool call** when the request forces one (`tool_choice`),
//!   with arguments satisfying the tool's schema.
//!
//! The answer's `model` is always the model the request named. Stop
//! sequences and token limits are honoured (a "token" is a word here),
//! and usage counts words unless a reply says otherwise. Streams send the
//! text word by word.
//!
//! How one reply reads in each protocol:
//!
//! | reply | OpenAI | Ollama | Anthropic |
//! | --- | --- | --- | --- |
//! | [`Reply::text`] | `content`, streamed as `delta.content` chunks | `message.content`, one NDJSON line per word | a `text` block, `text_delta` events |
//! | [`Reply::tool_call`] | `tool_calls` with `arguments` as a JSON string, streamed by `index` in fragments | `message.tool_calls` with `arguments` as an object | `tool_use` blocks, `input_json_delta` fragments |
//! | [`Reply::status`] | `{"error": {"message", "type", "param", "code"}}` | `{"error": "..."}` | `{"type": "error", "error": {"type", "message"}, "request_id"}` |
//! | [`Reply::finish`] | `finish_reason` | `done_reason` | `stop_reason` (and `stop_sequence`) |
//! | [`Reply::error_after`] | a `data: {"error": ...}` event | an `{"error": ...}` line | an `event: error` |
//!
//! # What is checked
//!
//! - **OpenAI**: unknown top-level parameters, `model`, `messages` (roles,
//!   content strings or parts, assistant `tool_calls` with string
//!   `arguments`, every `tool` message answering a call of the assistant
//!   message before it, every call answered), numeric ranges
//!   (`temperature`, `top_p`, `max_tokens`, ...), `stop`, `stream_options`
//!   only with `stream`, `tools` and their names, `tool_choice` and
//!   `parallel_tool_calls` only with `tools`, `response_format` (and the
//!   word "json" in the messages for `json_object`); embeddings' `input`,
//!   `dimensions`, `encoding_format`. Errors name the parameter in `param`.
//! - **Ollama**: `model`, and every field's JSON type, refused with Go's
//!   own `json: cannot unmarshal ...` message naming the field; roles
//!   (stricter than Ollama, which passes unknown roles to the template);
//!   `format`; `options` types. An empty `messages` only "loads" the model,
//!   as Ollama does.
//! - **Anthropic**: the `anthropic-version` header, unknown top-level
//!   fields, `model`, `max_tokens`, `messages` (roles `user` and
//!   `assistant` only, non-empty content, block types, every
//!   `tool_result` answering a `tool_use` of the message before it and
//!   every `tool_use` answered), `system`, `temperature`,
//!   `stop_sequences`, `tools` with `input_schema`, `tool_choice`. Errors
//!   name the field path (`messages.0.role: ...`).
//!
//! With a key set ([`ModelPeer::api_key`]) every protocol checks it; with
//! models named ([`ModelPeer::only_models`]) others are not found.
//!
//! ```no_run
//! use ghostflow_model_peer::{ModelPeer, Reply};
//! use serde_json::json;
//!
//! # async fn example() {
//! let peer = ModelPeer::start().await;
//! peer.api_key("sk-test");
//! peer.push(Reply::text("Paris."));
//! peer.push(Reply::tool_call("get_weather", json!({"city": "Paris"})));
//! peer.push(Reply::status(429).retry_after(2));
//! // ... point a provider at peer.openai_url() or peer.url() ...
//! assert_eq!(peer.requests().len(), 0);
//! # }
//! ```
//!
//! # The binary
//!
//! `cargo run -p ghostflow-model-peer -- --port 11435` serves the same
//! protocols until killed, for examples and manual runs.

mod anthropic;
mod builtin;
mod chat;
mod ids;
mod ollama;
mod openai;
mod reply;
mod server;
mod stream;

pub use builtin::{DEFAULT_DIMENSIONS, embed_text};
pub use reply::Reply;
pub use server::{ModelPeer, Protocol, Recorded};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>(_: &T) {}

    #[test]
    fn handles_and_futures_are_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<ModelPeer>();
        both::<Reply>();
        both::<Recorded>();
        send_sync(&ModelPeer::start());
    }
}
