//! AI nodes: chat models (OpenAI-compatible, Ollama, Anthropic) with
//! streaming, structured output, embeddings, text splitting, document
//! loading, a vector store, and a tool-calling agent.
//!
//! Every node that talks to a model goes through the [`model`]
//! abstraction, so nodes do not know wire formats and providers do not
//! know nodes.

use ghostflow::Registry;

pub mod model;

/// Registers the AI nodes.
pub(crate) fn register(registry: &mut Registry) {
    let _ = registry;
}
