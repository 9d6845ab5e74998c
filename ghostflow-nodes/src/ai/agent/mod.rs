//! The `agent` node: a chat model that calls tools (other nodes, or whole
//! flows) in a loop until it answers.

mod tools;

use std::num::NonZeroU32;
use std::time::Duration;

use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use serde::Deserializer;
use serde_json::{Map, Value, json};

use self::tools::ReadyTool;
pub use self::tools::{AgentTool, ToolNode};
use super::chat::{Conversation, max_tokens, optional_template, temperature, usage_json};
use super::model::{ChatRequest, Message, ToolCall};
use super::settings::ModelSettings;
use super::structured::add_usage;

/// The most steps an [`Agent`] may be given.
pub const MAX_AGENT_STEPS: u32 = 100;

/// Answers with a chat model that may call tools, other nodes or whole
/// flows, in a loop: each step asks the model, runs the tools it calls and
/// gives it their results, until it answers without calling any.
///
/// A tool is a node (`node: { type, config }`, made with the engine's
/// registry: its parameters are its input ports, its result all its
/// outputs) or a flow (`flow: path.yaml`: its inputs are the parameters,
/// its outputs the result), each run on the engine as a flow of its own,
/// with the engine's policies and secrets; both are checked when the flow
/// loads. The model's arguments are checked against the tool's parameters
/// schema first: bad arguments, a tool that fails and a tool that takes
/// longer than `tool_timeout` all go back to the model as an error result,
/// for it to correct or work around. The calls of one step run at once
/// (`parallel_tool_calls`) or one after the other. Every call and result
/// is a progress event (`{"tool_call": {...}}`, `{"tool_result": {...}}`),
/// and streamed text is `{"token": ...}`.
///
/// The prompts are built as `chat` builds them (`system`, the `history`
/// input, then the `prompt` input or template). A model still calling
/// tools after `max_steps` steps is a permanent error (or, with
/// `on_max_steps: last_text`, its last text is the answer). A retry of
/// the node (a model's 429 or 5xx under a `retry` policy) starts the loop
/// again, so tools may run again.
///
/// ```yaml
/// - id: support
///   type: agent
///   config:
///     model: { provider: openai, name: gpt-4o-mini, api_key_secret: OPENAI_API_KEY }
///     system: "You answer questions about orders. Use the tools."
///     prompt: "{{ data.question }}"
///     tools:
///       - name: fetch_order
///         description: Fetches an order by its URL.
///         node: { type: http_request, config: { method: GET } }
///       - name: refund
///         description: Refunds an order; give its id and the amount.
///         flow: refund.yaml
///     max_steps: 8
///     tool_timeout: 30s
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = AgentInput, output = AgentOutput, category = "ai")]
#[serde(deny_unknown_fields)]
pub struct Agent {
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
    /// The tools the model may call, each `{ name, description, node }`
    /// or `{ name, description, flow }`; names unique.
    #[serde(default, deserialize_with = "tools::tools")]
    pub tools: Vec<AgentTool>,
    /// The most model requests (steps) before giving up (at most 100).
    #[serde(default = "default_max_steps", deserialize_with = "max_steps")]
    #[schemars(range(min = 1, max = 100))]
    pub max_steps: NonZeroU32,
    /// How long one tool call may take; a call that takes longer is
    /// stopped and the model told.
    #[serde(default = "default_tool_timeout", deserialize_with = "tool_timeout")]
    pub tool_timeout: DurationText,
    /// Whether the calls of one step run at once (`true`) or one after the
    /// other, in the model's order. This is how the agent runs them; the
    /// model may ask for several calls in one step either way.
    #[serde(default = "crate::yes")]
    pub parallel_tool_calls: bool,
    /// What reaching `max_steps` without an answer does: `fail`, or
    /// `last_text` (the model's last text is the answer).
    #[serde(default)]
    pub on_max_steps: OnMaxSteps,
    /// The most bytes of one tool result given to the model; a longer one
    /// is cut, saying so (the `tool_calls` output keeps it whole).
    #[serde(
        default = "default_max_result_bytes",
        deserialize_with = "max_result_bytes"
    )]
    pub max_result_bytes: usize,
    /// Sampling temperature, from 0 (most predictable) to 2.
    #[serde(
        default,
        deserialize_with = "temperature",
        skip_serializing_if = "Option::is_none"
    )]
    pub temperature: Option<f64>,
    /// The most tokens to generate per step.
    #[serde(
        default,
        deserialize_with = "max_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<u32>,
    /// Whether to stream the model's text, each piece a progress event.
    #[serde(default = "crate::yes")]
    pub stream: bool,
}

/// What an [`Agent`] does when it reaches `max_steps` without an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMaxSteps {
    /// Fail, permanently, saying how long the transcript got.
    #[default]
    Fail,
    /// Answer with the model's last text (possibly empty).
    LastText,
}

/// What an [`Agent`] reads; all optional, but a prompt or a history is
/// needed.
#[derive(Ports, Debug)]
pub struct AgentInput {
    /// The conversation so far (messages with `role` and `content`), such
    /// as the `transcript` of an earlier agent.
    pub history: Option<Vec<Message>>,
    /// Any value, readable by the templates as `data`.
    pub data: Option<Value>,
    /// The user's message, in place of the `prompt` template.
    pub prompt: Option<String>,
}

/// What an [`Agent`] gives.
#[derive(Ports, Debug)]
pub struct AgentOutput {
    /// The model's final answer.
    pub answer: String,
    /// Every message: the system prompt, the history, the user's message,
    /// and each step's answer and tool results. (To go on with the
    /// conversation, give it as the `history` of an agent without a
    /// `system` prompt, or leave out its first message.)
    pub transcript: Vec<Message>,
    /// How many model requests it took.
    pub steps: u32,
    /// Tokens used by all the steps, `{input_tokens, output_tokens,
    /// total_tokens}`, or null when the provider did not say.
    pub usage: Value,
    /// Every tool call, in order: its step, id, name, arguments, result
    /// (or error) and duration.
    pub tool_calls: Vec<ToolCallRecord>,
}

/// One tool call an [`Agent`] made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallRecord {
    /// The step it was asked for, from 1.
    pub step: u32,
    /// The call's id, from the model.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments the model gave.
    pub arguments: Value,
    /// The tool's outputs, by name, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it did not, when it did not (bad arguments, a failure, a
    /// timeout, an unknown tool): what the model was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

fn default_max_steps() -> NonZeroU32 {
    NonZeroU32::new(8).unwrap_or(NonZeroU32::MIN)
}

fn default_tool_timeout() -> DurationText {
    DurationText(Duration::from_secs(60))
}

fn default_max_result_bytes() -> usize {
    64 * 1024
}

fn max_steps<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroU32, D::Error> {
    let n = u32::deserialize(deserializer)?;
    if n == 0 || n > MAX_AGENT_STEPS {
        return Err(serde::de::Error::custom(format!(
            "{n} steps; give from 1 to {MAX_AGENT_STEPS}"
        )));
    }
    Ok(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

fn tool_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
    let timeout = DurationText::deserialize(deserializer)?;
    if timeout.0.is_zero() {
        return Err(serde::de::Error::custom(
            "the timeout must be longer than 0",
        ));
    }
    Ok(timeout)
}

fn max_result_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(deserializer)?;
    if n < 256 {
        return Err(serde::de::Error::custom(format!(
            "{n} bytes is too little for a tool result; give at least 256"
        )));
    }
    Ok(n)
}

/// `text` cut to at most `max` bytes (at a character boundary), saying so.
fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… (cut: the result has {} bytes, {max} are shown)",
        &text[..end],
        text.len()
    )
}

impl Agent {
    /// An agent on `model`, without tools or prompts yet.
    pub fn new(model: ModelSettings) -> Self {
        Agent {
            model,
            system: None,
            prompt: None,
            tools: Vec::new(),
            max_steps: default_max_steps(),
            tool_timeout: default_tool_timeout(),
            parallel_tool_calls: true,
            on_max_steps: OnMaxSteps::Fail,
            max_result_bytes: default_max_result_bytes(),
            temperature: None,
            max_tokens: None,
            stream: true,
        }
    }

    /// This agent with a system prompt template.
    #[must_use]
    pub fn system(mut self, template: impl Into<String>) -> Self {
        self.system = Some(template.into());
        self
    }

    /// This agent with a user prompt template.
    #[must_use]
    pub fn prompt(mut self, template: impl Into<String>) -> Self {
        self.prompt = Some(template.into());
        self
    }

    /// This agent with one more tool.
    #[must_use]
    pub fn tool(mut self, tool: AgentTool) -> Self {
        self.tools.push(tool);
        self
    }

    /// This agent giving up after `n` steps (1 to 100).
    #[must_use]
    pub fn max_steps(mut self, n: u32) -> Self {
        self.max_steps = NonZeroU32::new(n.min(MAX_AGENT_STEPS)).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// This agent stopping tool calls after `timeout`.
    #[must_use]
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = DurationText(timeout);
        self
    }

    /// This agent running the calls of a step at once, or in order.
    #[must_use]
    pub fn parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.parallel_tool_calls = parallel;
        self
    }

    /// This agent streaming the model's text or not.
    #[must_use]
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Runs one tool call, reporting it and its result as progress events.
    async fn call(
        &self,
        call: &ToolCall,
        step: u32,
        tools: &[ReadyTool],
        ctx: &Context,
    ) -> ToolCallRecord {
        ctx.progress(json!({"tool_call": {
            "step": step,
            "id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }}));
        let started = tokio::time::Instant::now();
        let outcome = self.outcome(call, tools, ctx).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut event = json!({
            "step": step,
            "id": call.id,
            "name": call.name,
            "duration_ms": duration_ms,
        });
        match &outcome {
            Ok(result) => event["result"] = result.clone(),
            Err(error) => event["error"] = json!(error),
        }
        ctx.progress(json!({ "tool_result": event }));
        let (result, error) = match outcome {
            Ok(result) => (Some(result), None),
            Err(error) => (None, Some(error)),
        };
        ToolCallRecord {
            step,
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            result,
            error,
            duration_ms,
        }
    }

    /// What one call gives: the tool's outputs, or what to tell the model.
    async fn outcome(
        &self,
        call: &ToolCall,
        tools: &[ReadyTool],
        ctx: &Context,
    ) -> Result<Value, String> {
        let Some(tool) = tools.iter().find(|t| t.spec.name == call.name) else {
            let names: Vec<String> = tools.iter().map(|t| format!("`{}`", t.spec.name)).collect();
            return Err(format!(
                "there is no tool `{}`; the tools are {}",
                call.name,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ));
        };
        let arguments = match &call.arguments {
            Value::Object(arguments) => arguments.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(format!(
                    "invalid arguments: they must be a JSON object, not {}",
                    crate::kind(other)
                ));
            }
        };
        let problems = tool.check_arguments(&Value::Object(arguments.clone()));
        if !problems.is_empty() {
            return Err(format!("invalid arguments: {}", problems.join("; ")));
        }
        match tokio::time::timeout(self.tool_timeout.0, tool.call(ctx, arguments)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the tool did not finish within {} (tool_timeout) and was stopped",
                self.tool_timeout
            )),
        }
    }

    /// The tool message that gives the model a call's result.
    fn result_message(&self, call: &ToolCall, record: &ToolCallRecord) -> Message {
        let text = match (&record.result, &record.error) {
            (Some(result), _) => result.to_string(),
            (None, Some(error)) => json!({ "error": error }).to_string(),
            (None, None) => "null".to_owned(),
        };
        Message::tool_result(call, bounded(text, self.max_result_bytes))
    }
}

impl Run for Agent {
    async fn run(&self, input: AgentInput, ctx: &Context) -> Result<AgentOutput, NodeError> {
        let tools = tools::prepare(&self.tools, ctx)?;
        let model = self.model.chat_model(ctx)?;
        let mut request = ChatRequest {
            messages: Conversation::new(
                self.system.as_deref(),
                self.prompt.as_deref(),
                input.history,
                input.data,
                input.prompt,
            )?
            .messages(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            stop: Vec::new(),
            tools: tools.iter().map(|t| t.spec.clone()).collect(),
            response_format: None,
            stream: self.stream,
        };
        let max_steps = self.max_steps.get();
        let mut usage = None;
        let mut records: Vec<ToolCallRecord> = Vec::new();
        let mut last_text = String::new();
        let mut pending: Vec<String> = Vec::new();
        for step in 1..=max_steps {
            let mut on_text = |delta: &str| ctx.progress(json!({ "token": delta }));
            let response = model.chat(&request, ctx, &mut on_text).await?;
            add_usage(&mut usage, response.usage);
            let calls = response.message.tool_calls.clone();
            last_text.clone_from(&response.message.content);
            request.messages.push(response.message);
            if calls.is_empty() {
                return Ok(AgentOutput {
                    answer: last_text,
                    transcript: request.messages,
                    steps: step,
                    usage: usage_json(usage),
                    tool_calls: records,
                });
            }
            if step == max_steps {
                pending = calls.iter().map(|c| format!("`{}`", c.name)).collect();
                break;
            }
            let done: Vec<ToolCallRecord> = if self.parallel_tool_calls {
                futures::future::join_all(calls.iter().map(|c| self.call(c, step, &tools, ctx)))
                    .await
            } else {
                let mut done = Vec::with_capacity(calls.len());
                for call in &calls {
                    done.push(self.call(call, step, &tools, ctx).await);
                }
                done
            };
            for (call, record) in calls.iter().zip(done) {
                request.messages.push(self.result_message(call, &record));
                records.push(record);
            }
        }
        match self.on_max_steps {
            OnMaxSteps::LastText => Ok(AgentOutput {
                answer: last_text,
                transcript: request.messages,
                steps: max_steps,
                usage: usage_json(usage),
                tool_calls: records,
            }),
            OnMaxSteps::Fail => Err(NodeError::permanent(format!(
                "no final answer within {max_steps} step{} (max_steps): the model still asked to call {}; the transcript has {} messages",
                if max_steps == 1 { "" } else { "s" },
                pending.join(", "),
                request.messages.len()
            ))),
        }
    }

    const RUNS_FLOWS: bool = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(config: Value) -> Result<Agent, String> {
        serde_path_to_error::deserialize::<_, Agent>(config)
            .map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    fn model() -> Value {
        json!({"provider": "ollama", "name": "llama3.2"})
    }

    #[test]
    fn configs_are_checked_when_they_load() {
        let node = agent(json!({"model": model(), "prompt": "Hi"})).unwrap();
        assert_eq!(node.max_steps.get(), 8);
        assert_eq!(node.tool_timeout.0, Duration::from_secs(60));
        assert!(node.parallel_tool_calls && node.stream);
        assert_eq!(node.on_max_steps, OnMaxSteps::Fail);
        for (config, expected) in [
            (json!({"prompt": "x"}), ".: missing field `model`"),
            (
                json!({"model": model(), "max_steps": 0}),
                "max_steps: 0 steps; give from 1 to 100",
            ),
            (
                json!({"model": model(), "tool_timeout": "0s"}),
                "tool_timeout: the timeout must be longer than 0",
            ),
            (
                json!({"model": model(), "tool_timeout": "soon"}),
                "tool_timeout: `soon` is not a duration",
            ),
            (
                json!({"model": model(), "on_max_steps": "answer"}),
                "on_max_steps: unknown variant `answer`",
            ),
            (
                json!({"model": model(), "max_result_bytes": 10}),
                "max_result_bytes: 10 bytes is too little",
            ),
            (
                json!({"model": model(), "tools": [{"name": "x", "node": {"type": "t"}}, {"name": "x", "node": {"type": "t"}}]}),
                "tools: tools[1]: the name `x` is taken by tools[0]",
            ),
            (
                json!({"model": model(), "tools": [{"name": "", "node": {"type": "t"}}]}),
                "tools[0].name: `` is not a tool name",
            ),
        ] {
            let err = agent(config.clone()).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{config}: `{err}` should start with `{expected}`"
            );
        }
        let spec = Agent::spec();
        assert!(spec.config_schema["properties"]["system"]["x-template"] == json!(true));
    }

    #[test]
    fn long_results_are_cut_at_a_character() {
        assert_eq!(bounded("short".into(), 300), "short");
        let text = "é".repeat(200);
        let cut = bounded(text, 301);
        assert!(cut.starts_with(&"é".repeat(150)), "{cut}");
        assert!(
            cut.ends_with("… (cut: the result has 400 bytes, 301 are shown)"),
            "{cut}"
        );
    }
}
