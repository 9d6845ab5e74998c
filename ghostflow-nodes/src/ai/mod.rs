//! AI nodes: chat models (OpenAI-compatible, Ollama, Anthropic) with
//! streaming, structured output, embeddings, text splitting, document
//! loading, a vector store, and a tool-calling agent.
//!
//! Every node that talks to a model goes through the [`model`]
//! abstraction, so nodes do not know wire formats and providers do not
//! know nodes.
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

mod documents;
pub mod model;
mod split;
pub mod vector;

pub use self::documents::{
    DocumentFormat, DocumentLoad, DocumentLoadInput, DocumentLoadOutput, Loaded,
};
pub use self::split::{
    Chunk, SplitFormat, SplitUnit, TextSplit, TextSplitInput, TextSplitOutput, Tokenizer,
};
pub use self::vector::{VectorDelete, VectorSearch, VectorUpsert};

/// Registers the AI nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register::<TextSplit>()
        .register::<DocumentLoad>()
        .register::<VectorUpsert>()
        .register::<VectorSearch>()
        .register::<VectorDelete>();
}
