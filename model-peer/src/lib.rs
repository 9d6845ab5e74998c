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
//! sequences and token limits are honoured (a "token" is a word here).
//! Streams send the text word by word.
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
