//! AI nodes: chat models (OpenAI-compatible, Ollama, Anthropic) with
//! streaming, structured output, embeddings, text splitting, document
//! loading, a vector store, and a tool-calling agent.
//!
//! Every node that talks to a model goes through the [`model`]
//! abstraction, so nodes do not know wire formats and providers do not
//! know nodes.
//!
//! - **Models.** A node names its model with a [`ModelSettings`] block:
//!   `model: { provider: openai, name: gpt-4o-mini, api_key_secret:
//!   OPENAI_API_KEY }`. `provider` is the wire protocol: `openai`
//!   (OpenAI's chat completions and embeddings, also spoken by LiteLLM,
//!   vLLM, the llama.cpp server and LM Studio: set `base_url`, such as
//!   `http://127.0.0.1:8000/v1`), `ollama` (its native `/api/chat` and
//!   `/api/embed`) or `anthropic` (`/v1/messages`; chat only). The block
//!   is checked when the flow loads. [`ModelSettings::chat_model`] and
//!   [`ModelSettings::embedding_model`] give the provider; Rust code can
//!   call it directly.
//! - **Streaming.** With `stream: true` the answer is read as it is
//!   written (server-sent events for OpenAI and Anthropic, one JSON object
//!   per line for Ollama) and every piece of text becomes a progress event
//!   `{"token": "..."}` on the execution's event stream; `ghostflow run`
//!   prints them as they come. The answer is the same either way. A stream
//!   that ends before its last event (`data: [DONE]`, `message_stop`,
//!   `"done": true`) fails as cut off (retryable); a retried attempt
//!   streams its tokens again, after the failure's event.
//! - **Translation.** Providers map the one abstraction onto each
//!   protocol: system messages become Anthropic's top-level `system`; tool
//!   calls are OpenAI's `tool_calls` (arguments as JSON text), Ollama's
//!   (arguments as an object, no ids: stable ids are made up from the
//!   call) and Anthropic's `tool_use` blocks, whose `tool_result`s (and
//!   other consecutive messages of one role) are merged into one message;
//!   JSON output is OpenAI's `response_format`, Ollama's `format`, and for
//!   Anthropic, which has none, an instruction at the end of the system
//!   prompt (check the answer: the structured-output node does).
//!   OpenAI-compatible servers differ in the schema's form:
//!   [`SchemaFormat`] (`model.schema_format`) picks OpenAI's
//!   `json_schema`, `json_object` with a `schema` (llama-cpp-python's
//!   server, which refuses `json_schema`), or the instruction. Anthropic
//!   needs `max_tokens`: [`DEFAULT_MAX_TOKENS`] (1024) when none is set.
//!   OpenAI's own service is sent `max_completion_tokens`, other servers
//!   `max_tokens`. Tool-call arguments that are not valid JSON fail the
//!   request as retryable (another sample may get them right).
//! - **Errors say whether to retry.** 429, 408, 409 and 5xx (Anthropic's
//!   529 "overloaded" too), connection failures, timeouts, streams cut off
//!   and errors a server reports mid-stream are retryable, with the
//!   server's `Retry-After` (seconds or an HTTP date; `retry-after-ms`
//!   too) as the least delay; 400, 401, 403, 404 and other 4xx are
//!   permanent. Messages name the provider, the model and the URL, then
//!   the status and the provider's own message. Whether to retry at all is
//!   the flow's `retry` policy; the node's `timeout` policy and
//!   cancellation drop the request, which closes its connection.
//! - **Secrets.** The API key is a secret named in `api_key_secret`, read
//!   on every request (as `Authorization: Bearer` for OpenAI-compatible
//!   servers and Ollama proxies, `x-api-key` for Anthropic); the engine
//!   masks it everywhere and providers take it out of any message a server
//!   echoes it in.
//! - **Limits.** Everything a server controls is bounded: the answer's
//!   size (`model.max_response_bytes`, 32 MiB by default, all events of a
//!   stream together), each streamed event ([`MAX_EVENT_BYTES`]), the
//!   number of tool calls ([`MAX_TOOL_CALLS`]) and the time of a request
//!   (`model.timeout`, 10 minutes by default). A body that is not the
//!   protocol's JSON is a permanent error quoting its start.
//! - **One client.** Requests use the engine's shared HTTP client
//!   ([`crate::net`]): pooled connections, and the engine's
//!   [`NetworkPolicy`](crate::NetworkPolicy).
//!
//! - **Structured output.** [`Extract`] (`extract`) asks for JSON matching
//!   its `schema` in each provider's way (above) and checks every answer
//!   itself with a JSON Schema validator: an answer that is not JSON (a
//!   fenced code block around it is accepted) or breaks the schema goes
//!   back to the model as a message listing the problems (at most 12,
//!   each with its JSON pointer), up to `max_attempts` answers (3 by
//!   default); then a permanent error with the last problems. For
//!   Anthropic the schema travels as a system-prompt instruction rather
//!   than a forced tool call: the model abstraction has no `tool_choice`,
//!   and the answer is checked the same way whatever the provider. In
//!   Rust, [`ExtractAs<T>`](ExtractAs) takes its schema from `T:
//!   JsonSchema` and its `value` port has type `T` (an answer that does not
//!   deserialize as `T` is fed back too); written to a document it is an
//!   `extract` node.
//! - **Agents.** [`Agent`] (`agent`) loops: it asks the model with its
//!   tools, runs the calls it asks for, gives it the results, and stops
//!   at an answer without calls or after `max_steps` (8) requests. A tool
//!   is a node (`node: { type, config }`, made with the engine's registry;
//!   its parameters are the node's input ports, its result all its
//!   outputs) or a flow (`flow: file.yaml`; parameters its inputs, result
//!   its outputs). The loader checks both when the document loads (the
//!   `x-node` and `x-flow` marks) and reads flow paths from the document's
//!   directory; a tool's config is fixed there (no expressions). Each call
//!   runs as its own execution on the node's engine, with the engine's
//!   policies, secrets and sinks; cancelling the agent cancels them.
//!   Bad arguments (checked against the parameters schema first), an
//!   unknown tool, a failed tool and one slower than `tool_timeout` (60s)
//!   are all results the model reads as `{"error": "..."}`, not node
//!   failures. Results longer than `max_result_bytes` (64 KiB) are cut for
//!   the model. Progress events: `{"tool_call": {step, id, name,
//!   arguments}}`, `{"tool_result": {step, id, name, result | error,
//!   duration_ms}}` and `{"token": ...}`.
//!
//! Nodes: [`Chat`] (`chat`), [`Embed`] (`embed`), [`Extract`] (`extract`)
//! and [`Agent`] (`agent`).
//!
//! # Documents, chunks and vectors
//!
//! A retrieval flow loads a document, cuts it into chunks, embeds the
//! chunks, stores them, and later searches them with an embedded question:
//!
//! ```text
//! file_read / http_request → document_load → text_split → embed → vector_upsert
//! question → embed → vector_search → chat (its `context` in the prompt)
//! ```
//!
//! - [`DocumentLoad`] turns plain text, Markdown, HTML or PDF into text
//!   with metadata (title, headings, page count). Content comes as text or
//!   as base64 bytes (PDFs), the format by content type, extension or
//!   content. Parsers of untrusted files run with every panic caught:
//!   a broken file is a permanent error, never a crash.
//! - [`TextSplit`] cuts text into chunks of at most `chunk_size`
//!   characters or tokens (OpenAI encodings bundled with the program,
//!   nothing downloaded), with overlap, plain or Markdown-aware, each with
//!   its offsets and the document's metadata.
//! - [`VectorUpsert`], [`VectorSearch`] and [`VectorDelete`] work on the
//!   embedded vector store ([`vector::SqliteStore`]): a SQLite file under
//!   the engine's [`FileRoot`](crate::file::FileRoot) (`path` is relative
//!   to it; paths that escape it are refused; without a root the nodes
//!   fail saying how to give one), opened once per engine and shared by
//!   all executions, searched exactly in memory, with metadata filters
//!   checked when the flow loads. [`vector::VectorStore`] is the trait a
//!   database-backed store implements.
//! - **Errors** say what and where (`input `bytes`: ...`,
//!   `config.overlap: ...`, `collection `docs` holds vectors of 384
//!   dimensions; the query vector has 256`). Bad content, bad configs and
//!   mismatched sizes are permanent; a busy or failing store file is
//!   retryable.
//! - **Limits.** Documents over `max_bytes` (20 MiB) or `max_pages`
//!   (1000), texts over `max_input_bytes` (10 MiB), more than
//!   `max_chunks` chunks (10000) or `max_records` records per upsert
//!   (10000), `top_k` over 1000: each fails the node rather than dropping
//!   data silently.

use ghostflow::Registry;

mod agent;
mod chat;
mod documents;
mod embed;
pub mod model;
mod provider;
mod settings;
mod split;
mod stream;
mod structured;
pub mod vector;

pub use self::agent::{
    Agent, AgentInput, AgentOutput, AgentTool, MAX_AGENT_STEPS, OnMaxSteps, ToolCallRecord,
    ToolNode,
};
pub use self::chat::{Chat, ChatInput, ChatOutput};
pub use self::documents::{
    DocumentFormat, DocumentLoad, DocumentLoadInput, DocumentLoadOutput, Loaded,
};
pub use self::embed::{Embed, EmbedInput, EmbedOutput, MAX_BATCH_SIZE};
pub use self::provider::MAX_TOOL_CALLS;
pub use self::provider::anthropic::DEFAULT_MAX_TOKENS;
pub use self::settings::{DEFAULT_ANTHROPIC_VERSION, ModelSettings, Provider, SchemaFormat};
pub use self::split::{
    Chunk, SplitFormat, SplitUnit, TextSplit, TextSplitInput, TextSplitOutput, Tokenizer,
};
pub use self::stream::MAX_EVENT_BYTES;
pub use self::structured::{
    Extract, ExtractAs, ExtractInput, ExtractOutput, ExtractedAs, MAX_EXTRACT_ATTEMPTS,
};
pub use self::vector::{VectorDelete, VectorSearch, VectorUpsert};

/// Registers the AI nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register::<Chat>()
        .register::<Embed>()
        .register::<TextSplit>()
        .register::<DocumentLoad>()
        .register::<VectorUpsert>()
        .register::<VectorSearch>()
        .register::<VectorDelete>()
        .register::<Extract>()
        .register::<Agent>();
}
