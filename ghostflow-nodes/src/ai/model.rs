//! The model abstraction that every AI node speaks: messages, tools,
//! requests and responses in one shape, whatever the provider's wire
//! format, and the two traits a provider implements.
//!
//! A node reads a [`ModelSettings`](super::ModelSettings) from its config
//! (which provider, which model, where, with which secret), asks it for a
//! [`ChatModel`] or an [`EmbeddingModel`], and calls it. Providers translate to and from their
//! own protocol (OpenAI-compatible chat completions, Ollama's native API,
//! Anthropic's messages API), stream when asked, and turn every failure
//! into a [`NodeError`] that says whether to retry (429 and 5xx are
//! retryable, with the peer's `Retry-After` as `retry_after`).

use std::fmt;

use futures::future::BoxFuture;
use ghostflow::prelude::*;
use serde_json::Value;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user's words.
    User,
    /// The model's words, and the tools it asked to call.
    Assistant,
    /// The result of a tool call (`tool_call_id` names the call).
    Tool,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text (for a tool result, the result as text or JSON text).
    #[serde(default)]
    pub content: String,
    /// The tools the assistant asked to call (assistant messages only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call this message answers (tool messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's name (tool messages only; some providers need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message::text(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message::text(Role::User, content)
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::text(Role::Assistant, content)
    }

    /// The result of the tool call `call`.
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        Message {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
        }
    }

    fn text(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

/// A tool the model asked to call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The call's id, given by the model (made up when the provider has
    /// none, as Ollama), echoed in the tool's result message.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON object that should match the tool's
    /// parameters schema (the model may get it wrong: check it).
    pub arguments: Value,
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Its name: letters, digits, `_` and `-`, at most 64 characters.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// The JSON Schema of its arguments (an object schema).
    pub parameters: Value,
}

/// What form the model's answer must take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    /// Any text (the default).
    Text,
    /// A JSON object.
    JsonObject,
    /// JSON matching a schema. Providers that can enforce it do; the
    /// structured-output node checks the answer in every case.
    JsonSchema {
        /// A name for the schema (letters, digits, `_`, `-`).
        name: String,
        /// The JSON Schema.
        schema: Value,
    },
}

/// One request to a chat model.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far, system messages included.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// The most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Texts that end the generation.
    pub stop: Vec<String>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// The answer's form; `None` is text.
    pub response_format: Option<ResponseFormat>,
    /// Whether to stream: text deltas reach the `on_text` callback of
    /// [`ChatModel::chat`] as they arrive; the response is the same.
    pub stream: bool,
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished its answer (or hit a stop sequence).
    Stop,
    /// It hit `max_tokens`.
    Length,
    /// It asked to call tools.
    ToolCalls,
    /// The provider filtered the answer.
    ContentFilter,
    /// Another reason, in the provider's words.
    Other(String),
}

/// Tokens a request used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Tokens read (the prompt).
    pub input_tokens: u64,
    /// Tokens written (the answer).
    pub output_tokens: u64,
}

impl Usage {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// The sum of two usages (for a loop of requests).
    #[must_use]
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + other.input_tokens,
            output_tokens: self.output_tokens + other.output_tokens,
        }
    }
}

/// A chat model's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    /// The assistant's message: its text and the tools it asked to call.
    pub message: Message,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Tokens used, when the provider says.
    pub usage: Option<Usage>,
    /// The model that answered, as the provider names it.
    pub model: String,
}

/// The callback that receives streamed text as it arrives.
pub type OnText<'a> = &'a mut (dyn FnMut(&str) + Send);

/// A chat model of some provider. Object safe: nodes hold an
/// `Arc<dyn ChatModel>`.
pub trait ChatModel: Send + Sync + fmt::Debug {
    /// Sends `request`; when `request.stream` is set, calls `on_text` with
    /// each text delta as it arrives. Dropping the future closes the
    /// connection (cancellation, timeouts).
    ///
    /// # Errors
    /// A [`NodeError`] that says whether to retry and names the provider,
    /// the model and what went wrong (status and the provider's message;
    /// never the API key).
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a Context,
        on_text: OnText<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, NodeError>>;
}

/// Vectors for texts, in the order of the inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// One vector per input text.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens used, when the provider says.
    pub usage: Option<Usage>,
    /// The model that answered.
    pub model: String,
}

/// An embedding model of some provider.
pub trait EmbeddingModel: Send + Sync + fmt::Debug {
    /// Embeds `inputs`, one vector each, in order.
    ///
    /// # Errors
    /// As [`ChatModel::chat`].
    fn embed<'a>(
        &'a self,
        inputs: &'a [String],
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Embeddings, NodeError>>;
}
