//! The `chat` node: one turn of a conversation with a chat model.

use ghostflow::expr::TextTemplate;
use ghostflow::prelude::*;
use serde::Deserializer;
use serde_json::{Value, json};

use super::model::{ChatRequest, FinishReason, Message, Role, Usage};
use super::settings::ModelSettings;

/// Sends a prompt (and the conversation so far) to a chat model and
/// outputs its answer: the text, the whole message, why it stopped and the
/// tokens it used.
///
/// The request is the `system` prompt, then the `history` input, then the
/// user's message: the `prompt` input if connected, else the `prompt`
/// template. Both templates are the node's own (minijinja, in the same
/// sandbox as expressions) and read the node's inputs as `data`,
/// `history` and `prompt`. With `stream: true` (the default) the answer is
/// streamed and each piece of text is a progress event
/// (`{"token": "..."}`) on the execution's event stream, which
/// `ghostflow run` shows live.
///
/// The `messages` output is the history with the new user message and the
/// answer appended (without the configured system prompt), ready to feed
/// the `history` of the next `chat`. The API key is read from the secret
/// named in `model.api_key_secret`. Rate limits (429) and server errors
/// (5xx) are retryable, with the server's `Retry-After`; set a `retry`
/// policy to retry them.
///
/// ```yaml
/// - id: answer
///   type: chat
///   config:
///     model: { provider: openai, name: gpt-4o-mini, api_key_secret: OPENAI_API_KEY }
///     system: "You answer in one short sentence."
///     prompt: "What is the capital of {{ data.country }}?"
///     temperature: 0.2
///     max_tokens: 200
///   retry: { max_attempts: 3, backoff: 1s }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = ChatInput, output = ChatOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct Chat {
    /// The model: `provider`, `name`, and where and with which key.
    pub model: ModelSettings,
    /// The system prompt, a template reading `data`, `history` and
    /// `prompt`; sent first. An empty result sends none.
    #[serde(
        default,
        deserialize_with = "optional_template",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-template" = true))]
    pub system: Option<String>,
    /// The user's message, a template reading `data`, `history` and
    /// `prompt`; the `prompt` input replaces it.
    #[serde(
        default,
        deserialize_with = "optional_template",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-template" = true))]
    pub prompt: Option<String>,
    /// Sampling temperature, from 0 (most predictable) to 2.
    #[serde(
        default,
        deserialize_with = "temperature",
        skip_serializing_if = "Option::is_none"
    )]
    pub temperature: Option<f64>,
    /// The most tokens to generate (Anthropic needs a limit: 1024 when
    /// none is set).
    #[serde(
        default,
        deserialize_with = "max_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<u32>,
    /// Texts that end the answer when the model writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Whether to stream the answer, each piece of text a progress event.
    #[serde(default = "crate::yes")]
    pub stream: bool,
}

pub(crate) fn optional_template<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    TextTemplate::parse(&text).map_err(serde::de::Error::custom)?;
    Ok(Some(text))
}

pub(crate) fn temperature<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    let value = Option::<f64>::deserialize(deserializer)?;
    if let Some(t) = value
        && !(0.0..=2.0).contains(&t)
    {
        return Err(serde::de::Error::custom(format!(
            "the temperature is {t}; it goes from 0 to 2"
        )));
    }
    Ok(value)
}

pub(crate) fn max_tokens<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    let value = Option::<u32>::deserialize(deserializer)?;
    if value == Some(0) {
        return Err(serde::de::Error::custom("at least 1 token"));
    }
    Ok(value)
}

/// What a [`Chat`] reads; all optional, but a prompt or a history is
/// needed.
#[derive(Ports, Debug)]
pub struct ChatInput {
    /// The conversation so far (messages with `role` and `content`, tool
    /// calls and results), such as the `messages` of an earlier `chat`.
    pub history: Option<Vec<Message>>,
    /// Any value, readable by the templates as `data`.
    pub data: Option<Value>,
    /// The user's message, in place of the `prompt` template.
    pub prompt: Option<String>,
}

/// The answer of a [`Chat`].
#[derive(Ports, Debug)]
pub struct ChatOutput {
    /// The answer's text.
    pub text: String,
    /// The answer as a message: `role`, `content` and any `tool_calls`.
    pub message: Message,
    /// Why the model stopped: `stop`, `length`, `tool_calls`,
    /// `content_filter`, or the provider's own word.
    pub finish_reason: String,
    /// Tokens used, `{input_tokens, output_tokens, total_tokens}`, or
    /// null when the provider did not say.
    pub usage: Value,
    /// The history, the user's message and the answer: the `history` of
    /// the next turn.
    pub messages: Vec<Message>,
}

impl Chat {
    /// A streaming chat with `model` and no prompt yet.
    pub fn new(model: ModelSettings) -> Self {
        Chat {
            model,
            system: None,
            prompt: None,
            temperature: None,
            max_tokens: None,
            stop: Vec::new(),
            stream: true,
        }
    }

    /// This chat with a system prompt template.
    #[must_use]
    pub fn system(mut self, template: impl Into<String>) -> Self {
        self.system = Some(template.into());
        self
    }

    /// This chat with a user prompt template.
    #[must_use]
    pub fn prompt(mut self, template: impl Into<String>) -> Self {
        self.prompt = Some(template.into());
        self
    }

    /// The request these inputs make, and the new turn (history and the
    /// user's message, without the system prompt).
    fn request(&self, input: ChatInput) -> Result<(ChatRequest, Vec<Message>), NodeError> {
        let conversation = Conversation::new(
            self.system.as_deref(),
            self.prompt.as_deref(),
            input.history,
            input.data,
            input.prompt,
        )?;
        Ok((
            ChatRequest {
                messages: conversation.messages(),
                temperature: self.temperature,
                max_tokens: self.max_tokens,
                stop: self.stop.clone(),
                tools: Vec::new(),
                response_format: None,
                stream: self.stream,
            },
            conversation.turn,
        ))
    }
}

/// What a prompt-driven node sends: the rendered `system` template, then
/// the history and the user's message (the `prompt` input, or the
/// rendered `prompt` template). Templates read `data`, `history` and
/// `prompt`. Shared by `chat`, `extract` and `agent`.
#[derive(Debug)]
pub(crate) struct Conversation {
    /// The system message, when the template rendered to any text.
    pub(crate) system: Option<Message>,
    /// The history, then the user's message when there is one.
    pub(crate) turn: Vec<Message>,
}

impl Conversation {
    /// Renders the templates against the inputs.
    ///
    /// # Errors
    /// A tool message in the history without its call id, a template that
    /// fails to render (naming `config.system` or `config.prompt`), or
    /// nothing to send at all.
    pub(crate) fn new(
        system: Option<&str>,
        prompt: Option<&str>,
        history: Option<Vec<Message>>,
        data: Option<Value>,
        prompt_input: Option<String>,
    ) -> Result<Conversation, NodeError> {
        let history = history.unwrap_or_default();
        for (i, message) in history.iter().enumerate() {
            if message.role == Role::Tool && message.tool_call_id.is_none() {
                return Err(NodeError::permanent(format!(
                    "input `history`[{i}]: a tool message needs the `tool_call_id` it answers"
                )));
            }
        }
        let vars = json!({
            "data": data.unwrap_or(Value::Null),
            "history": history,
            "prompt": prompt_input,
        });
        let render = |field: &str, template: &str| {
            TextTemplate::parse(template)
                .and_then(|t| t.render(&vars))
                .map_err(|e| NodeError::permanent(format!("config.{field}: {e}")))
        };
        let system = match system {
            Some(template) => Some(render("system", template)?)
                .filter(|text| !text.trim().is_empty())
                .map(Message::system),
            None => None,
        };
        let user = match (prompt_input, prompt) {
            (Some(prompt), _) => Some(prompt),
            (None, Some(template)) => Some(render("prompt", template)?),
            (None, None) => None,
        };
        if user.is_none() && history.is_empty() {
            return Err(NodeError::permanent(
                "nothing to send: set `prompt` in the config, or connect the `prompt` or `history` input",
            ));
        }
        let mut turn = history;
        turn.extend(user.map(Message::user));
        Ok(Conversation { system, turn })
    }

    /// Every message of the request: the system prompt, then the turn.
    pub(crate) fn messages(&self) -> Vec<Message> {
        self.system.iter().chain(&self.turn).cloned().collect()
    }
}

impl Run for Chat {
    async fn run(&self, input: ChatInput, ctx: &Context) -> Result<ChatOutput, NodeError> {
        let (request, mut messages) = self.request(input)?;
        let model = self.model.chat_model(ctx)?;
        let mut on_text = |delta: &str| ctx.progress(json!({ "token": delta }));
        let response = model.chat(&request, ctx, &mut on_text).await?;
        messages.push(response.message.clone());
        Ok(ChatOutput {
            text: response.message.content.clone(),
            finish_reason: finish_reason_text(&response.finish_reason),
            usage: usage_json(response.usage),
            message: response.message,
            messages,
        })
    }
}

/// The finish reason as one word.
pub(crate) fn finish_reason_text(reason: &FinishReason) -> String {
    match reason {
        FinishReason::Stop => "stop".to_owned(),
        FinishReason::Length => "length".to_owned(),
        FinishReason::ToolCalls => "tool_calls".to_owned(),
        FinishReason::ContentFilter => "content_filter".to_owned(),
        FinishReason::Other(other) => other.clone(),
    }
}

/// Usage as the `usage` output.
pub(crate) fn usage_json(usage: Option<Usage>) -> Value {
    match usage {
        Some(usage) => json!({
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total(),
        }),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(config: Value) -> Result<Chat, String> {
        serde_path_to_error::deserialize::<_, Chat>(config)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    fn model() -> Value {
        json!({"provider": "ollama", "name": "llama3.2"})
    }

    #[test]
    fn configs_are_checked_when_they_load() {
        let node = chat(json!({"model": model(), "prompt": "Hi {{ data.name }}"})).unwrap();
        assert!(node.stream);
        for (config, expected) in [
            (json!({"prompt": "x"}), ".: missing field `model`"),
            (
                json!({"model": model(), "prompt": "{{ oops"}),
                "prompt: syntax error",
            ),
            (
                json!({"model": model(), "temperature": 3}),
                "temperature: the temperature is 3; it goes from 0 to 2",
            ),
            (
                json!({"model": model(), "max_tokens": 0}),
                "max_tokens: at least 1 token",
            ),
            (
                json!({"model": {"provider": "ollama", "name": ""}}),
                "model.name: the model name is empty",
            ),
            (
                json!({"model": model(), "stream": "yes"}),
                "stream: invalid type: string \"yes\", expected a boolean",
            ),
        ] {
            let err = chat(config.clone()).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{config}: `{err}` should start with `{expected}`"
            );
        }
        let spec = Chat::spec();
        for field in ["system", "prompt"] {
            assert_eq!(
                spec.config_schema["properties"][field]["x-template"],
                json!(true)
            );
        }
    }

    #[test]
    fn requests_are_system_history_then_prompt() {
        let node = Chat::new(ModelSettings::ollama("m"))
            .system("You help {{ data.user }}.")
            .prompt("Say {{ data.word }}, after {{ history | length }} messages.");
        let history = vec![Message::user("hi"), Message::assistant("hello")];
        let (request, turn) = node
            .request(ChatInput {
                history: Some(history.clone()),
                data: Some(json!({"user": "Ada", "word": "yes"})),
                prompt: None,
            })
            .unwrap();
        assert_eq!(
            request.messages,
            [
                Message::system("You help Ada."),
                history[0].clone(),
                history[1].clone(),
                Message::user("Say yes, after 2 messages."),
            ]
        );
        assert_eq!(turn, request.messages[1..]);
        assert!(request.stream);
        // The prompt input wins over the template, and templates read it.
        let node = Chat::new(ModelSettings::ollama("m"))
            .system("{% if prompt %}Answer: {{ prompt }}{% endif %}")
            .prompt("unused {{ data.missing.deeper }}");
        let (request, _) = node
            .request(ChatInput {
                history: None,
                data: None,
                prompt: Some("Why?".into()),
            })
            .unwrap();
        assert_eq!(
            request.messages,
            [Message::system("Answer: Why?"), Message::user("Why?")]
        );
        // Nothing to send.
        let err = Chat::new(ModelSettings::ollama("m"))
            .request(ChatInput {
                history: None,
                data: None,
                prompt: None,
            })
            .unwrap_err();
        assert!(err.message().starts_with("nothing to send"), "{err}");
        // A template that fails names its field.
        let err = Chat::new(ModelSettings::ollama("m"))
            .prompt("{{ data.a.b }}")
            .request(ChatInput {
                history: None,
                data: None,
                prompt: None,
            })
            .unwrap_err();
        assert!(err.message().starts_with("config.prompt: "), "{err}");
        assert!(!err.is_retryable());
    }
}
