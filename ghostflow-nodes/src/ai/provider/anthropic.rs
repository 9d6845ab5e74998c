//! Anthropic's messages API: `POST {base}/v1/messages`, streamed as
//! server-sent events from `message_start` to `message_stop`.

use futures::future::BoxFuture;
use ghostflow::{Context, NodeError};
use reqwest::header::{HeaderMap, HeaderName};
use serde_json::{Map, Value, json};

use super::{
    Call, Endpoint, Failure, MAX_TOOL_CALLS, PartialCall, excerpt, format_instruction,
    secret_header,
};
use crate::ai::model::{
    ChatModel, ChatRequest, ChatResponse, FinishReason, Message, OnText, Role, ToolCall, Usage,
};
use crate::ai::stream::SseParser;

/// The `max_tokens` sent when a request sets none: Anthropic requires one.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// A model of Anthropic's API.
#[derive(Debug)]
pub(crate) struct Anthropic {
    endpoint: Endpoint,
}

impl Anthropic {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Anthropic { endpoint }
    }

    fn auth(&self, call: &Call<'_>) -> Result<HeaderMap, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            self.endpoint.anthropic_version.clone(),
        );
        if let Some(key) = &call.key {
            headers.insert(
                HeaderName::from_static("x-api-key"),
                secret_header("", key, self.endpoint.api_key_secret.as_deref())?,
            );
        }
        Ok(headers)
    }

    async fn chat_call(
        &self,
        call: &Call<'_>,
        request: &ChatRequest,
        ctx: &Context,
        on_text: OnText<'_>,
    ) -> Result<ChatResponse, Failure> {
        let body = chat_body(&self.endpoint, request);
        let accept = if request.stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let response = call.post(ctx, &body, self.auth(call)?, accept).await?;
        if request.stream {
            let mut parser = SseParser::default();
            let mut state = StreamState::new(&self.endpoint.model);
            let complete = call
                .stream(response, "`message_stop`", |chunk| {
                    for event in parser.push(chunk)? {
                        if state.event(&event.event, &event.data, on_text)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })
                .await?;
            if !complete {
                match parser.finish() {
                    Some(event) if state.event(&event.event, &event.data, on_text)? => {}
                    _ => return Err(Failure::cut_off("`message_stop`")),
                }
            }
            state.finish()
        } else {
            let value = call.json(response).await?;
            parse_message(&value, &self.endpoint.model)
        }
    }
}

impl ChatModel for Anthropic {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a Context,
        on_text: OnText<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, NodeError>> {
        Box::pin(async move {
            let call = self.endpoint.call(ctx, "v1/messages")?;
            call.finish(self.chat_call(&call, request, ctx, on_text))
                .await
        })
    }
}

/// The request body of `/v1/messages`: system messages become the
/// top-level `system`; tool calls and results become `tool_use` and
/// `tool_result` blocks; consecutive messages of one role (tool results
/// are the user's) are merged into one message.
pub(crate) fn chat_body(endpoint: &Endpoint, request: &ChatRequest) -> Value {
    let mut system: Vec<String> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.clone())
        .collect();
    system.extend(format_instruction(request.response_format.as_ref()));
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message.role {
            Role::System => continue,
            Role::User => (
                "user",
                vec![json!({"type": "text", "text": message.content})],
            ),
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
                    "content": message.content,
                })],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !message.content.is_empty() || message.tool_calls.is_empty() {
                    blocks.push(json!({"type": "text", "text": message.content}));
                }
                for call in &message.tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": call.arguments,
                    }));
                }
                ("assistant", blocks)
            }
        };
        match messages.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, blocks)| {
            let content = match blocks.as_slice() {
                [only] if only["type"] == "text" => only["text"].clone(),
                _ => Value::Array(blocks),
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(endpoint.model));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if !request.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if request.stream {
        body.insert("stream".into(), json!(true));
    }
    Value::Object(body)
}

fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
        None if has_tool_calls => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    }
}

/// Input tokens are the uncached ones plus those written to and read from
/// the prompt cache.
fn input_tokens(usage: &Value) -> Option<u64> {
    let count = |field: &str| usage.get(field).and_then(Value::as_u64);
    let base = count("input_tokens")?;
    Some(
        base + count("cache_creation_input_tokens").unwrap_or(0)
            + count("cache_read_input_tokens").unwrap_or(0),
    )
}

/// A complete (not streamed) message.
pub(crate) fn parse_message(value: &Value, model: &str) -> Result<ChatResponse, Failure> {
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_event(value));
    }
    let blocks = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::unexpected("answer without `content`", value))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                if tool_calls.len() == MAX_TOOL_CALLS {
                    return Err(Failure::too_many_tool_calls());
                }
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| Failure::unexpected("tool_use block", block))
                };
                tool_calls.push(ToolCall {
                    id: field("id")?,
                    name: field("name")?,
                    arguments: block.get("input").cloned().unwrap_or_else(|| json!({})),
                });
            }
            // Thinking and other blocks are not part of the answer.
            _ => {}
        }
    }
    let usage = value.get("usage").map(|usage| Usage {
        input_tokens: input_tokens(usage).unwrap_or(0),
        output_tokens: usage
            .get("output_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    Ok(ChatResponse {
        finish_reason: finish_reason(
            value.get("stop_reason").and_then(Value::as_str),
            !tool_calls.is_empty(),
        ),
        message: Message {
            role: Role::Assistant,
            content: text,
            tool_calls,
            tool_call_id: None,
            name: None,
        },
        usage,
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_owned(),
    })
}

/// An `error` event or body: overloaded and server errors may pass.
fn error_event(value: &Value) -> Failure {
    let error = value.get("error").unwrap_or(value);
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let retryable = matches!(
        kind,
        "overloaded_error" | "api_error" | "rate_limit_error" | "timeout_error"
    );
    let failure = format!("the server reported an error: {kind}: {}", excerpt(message));
    if retryable {
        Failure::retryable(failure)
    } else {
        Failure::permanent(failure)
    }
}

/// One content block of a streamed message.
#[derive(Debug)]
enum Block {
    Text,
    Tool(PartialCall),
    Other,
}

/// A streamed message being assembled.
#[derive(Debug)]
pub(crate) struct StreamState {
    model: String,
    text: String,
    blocks: Vec<Block>,
    calls: Vec<ToolCall>,
    stop_reason: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl StreamState {
    pub(crate) fn new(model: &str) -> Self {
        StreamState {
            model: model.to_owned(),
            text: String::new(),
            blocks: Vec::new(),
            calls: Vec::new(),
            stop_reason: None,
            input_tokens: None,
            output_tokens: None,
        }
    }

    /// Takes one event; `true` at `message_stop`.
    pub(crate) fn event(
        &mut self,
        event: &str,
        data: &str,
        on_text: OnText<'_>,
    ) -> Result<bool, Failure> {
        let value: Value = serde_json::from_str(data)
            .map_err(|e| Failure::malformed("a streamed event", data, &e))?;
        let kind = value.get("type").and_then(Value::as_str).unwrap_or(event);
        match kind {
            "message_start" => {
                let message = value.get("message").unwrap_or(&Value::Null);
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    model.clone_into(&mut self.model);
                }
                if let Some(usage) = message.get("usage") {
                    self.usage(usage);
                }
            }
            "content_block_start" => {
                let index = block_index(&value)?;
                let block = value.get("content_block").unwrap_or(&Value::Null);
                let block = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str)
                            && !text.is_empty()
                        {
                            self.text.push_str(text);
                            on_text(text);
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        if self.tool_blocks() == MAX_TOOL_CALLS {
                            return Err(Failure::too_many_tool_calls());
                        }
                        let text = |name: &str| {
                            block
                                .get(name)
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned()
                        };
                        // The input arrives in `input_json_delta`s; the
                        // start carries `{}`, or the whole input when a
                        // server sends it at once.
                        let arguments = match block.get("input") {
                            Some(Value::Object(o)) if !o.is_empty() => {
                                Value::Object(o.clone()).to_string()
                            }
                            _ => String::new(),
                        };
                        Block::Tool(PartialCall {
                            id: text("id"),
                            name: text("name"),
                            arguments,
                        })
                    }
                    _ => Block::Other,
                };
                if index != self.blocks.len() {
                    return Err(Failure::unexpected("block index", &value));
                }
                self.blocks.push(block);
            }
            "content_block_delta" => {
                let index = block_index(&value)?;
                let delta = value.get("delta").unwrap_or(&Value::Null);
                match (
                    self.blocks.get_mut(index),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Some(Block::Text), Some("text_delta")) => {
                        if let Some(text) = delta.get("text").and_then(Value::as_str) {
                            self.text.push_str(text);
                            on_text(text);
                        }
                    }
                    (Some(Block::Tool(call)), Some("input_json_delta")) => {
                        if let Some(json) = delta.get("partial_json").and_then(Value::as_str) {
                            call.arguments.push_str(json);
                        }
                    }
                    (None, _) => return Err(Failure::unexpected("delta of no block", &value)),
                    // Thinking, signatures, citations: not part of the answer.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = block_index(&value)?;
                let Some(block) = self.blocks.get_mut(index) else {
                    return Err(Failure::unexpected("end of no block", &value));
                };
                if let Block::Tool(call) = std::mem::replace(block, Block::Other) {
                    let position = self.calls.len();
                    self.calls.push(call.finish(position)?);
                }
            }
            "message_delta" => {
                if let Some(reason) = value
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = value.get("usage") {
                    self.usage(usage);
                }
            }
            "message_stop" => return Ok(true),
            "error" => return Err(error_event(&value)),
            // `ping`, and event types added later.
            _ => {}
        }
        Ok(false)
    }

    fn tool_blocks(&self) -> usize {
        self.calls.len()
            + self
                .blocks
                .iter()
                .filter(|b| matches!(b, Block::Tool(_)))
                .count()
    }

    /// Counts in `message_start` and `message_delta` (cumulative).
    fn usage(&mut self, usage: &Value) {
        if let Some(input) = input_tokens(usage) {
            self.input_tokens = Some(input);
        }
        if let Some(output) = usage.get("output_tokens").and_then(Value::as_u64) {
            self.output_tokens = Some(output);
        }
    }

    pub(crate) fn finish(self) -> Result<ChatResponse, Failure> {
        let mut calls = self.calls;
        // A tool block the server never closed still counts.
        for block in self.blocks {
            if let Block::Tool(call) = block {
                let position = calls.len();
                calls.push(call.finish(position)?);
            }
        }
        let usage = match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (input, output) => Some(Usage {
                input_tokens: input.unwrap_or(0),
                output_tokens: output.unwrap_or(0),
            }),
        };
        Ok(ChatResponse {
            finish_reason: finish_reason(self.stop_reason.as_deref(), !calls.is_empty()),
            message: Message {
                role: Role::Assistant,
                content: self.text,
                tool_calls: calls,
                tool_call_id: None,
                name: None,
            },
            usage,
            model: self.model,
        })
    }
}

fn block_index(value: &Value) -> Result<usize, Failure> {
    value
        .get("index")
        .and_then(Value::as_u64)
        .map(|i| i as usize)
        .ok_or_else(|| Failure::unexpected("event without a block index", value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::ModelSettings;
    use crate::ai::model::ResponseFormat;
    use crate::ai::model::ToolSpec;

    #[test]
    fn system_tools_and_results_take_anthropic_shapes() {
        let endpoint = ModelSettings::anthropic("claude-test").endpoint().unwrap();
        let a = ToolCall {
            id: "toolu_a".into(),
            name: "a".into(),
            arguments: json!({}),
        };
        let b = ToolCall {
            id: "toolu_b".into(),
            name: "b".into(),
            arguments: json!({"x": 1}),
        };
        let request = ChatRequest {
            messages: vec![
                Message::system("Be brief."),
                Message::user("Do a and b."),
                Message {
                    tool_calls: vec![a.clone(), b.clone()],
                    ..Message::assistant("On it.")
                },
                Message::tool_result(&a, "A done"),
                Message::tool_result(&b, "B done"),
                Message::user("And now?"),
            ],
            stop: vec!["END".into()],
            temperature: Some(0.0),
            tools: vec![ToolSpec {
                name: "a".into(),
                description: "A".into(),
                parameters: json!({"type": "object"}),
            }],
            response_format: Some(ResponseFormat::JsonObject),
            ..ChatRequest::default()
        };
        assert_eq!(
            chat_body(&endpoint, &request),
            json!({
                "model": "claude-test",
                "max_tokens": DEFAULT_MAX_TOKENS,
                "system": "Be brief.\n\nAnswer with one JSON object and nothing else: no prose before or after it, no code fences.",
                "messages": [
                    {"role": "user", "content": "Do a and b."},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "On it."},
                        {"type": "tool_use", "id": "toolu_a", "name": "a", "input": {}},
                        {"type": "tool_use", "id": "toolu_b", "name": "b", "input": {"x": 1}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "A done"},
                        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "B done"},
                        {"type": "text", "text": "And now?"}
                    ]}
                ],
                "temperature": 0.0,
                "stop_sequences": ["END"],
                "tools": [{"name": "a", "description": "A", "input_schema": {"type": "object"}}]
            })
        );
    }

    #[test]
    fn complete_messages_parse() {
        let value = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7}
        });
        let response = parse_message(&value, "claude-test").unwrap();
        assert_eq!(response.message.content, "Checking.");
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            response.message.tool_calls[0].arguments,
            json!({"city": "Paris"})
        );
        assert_eq!(
            response.usage,
            Some(Usage {
                input_tokens: 15,
                output_tokens: 7
            })
        );
        assert_eq!(response.model, "claude-test-1");
    }

    #[test]
    fn streamed_events_assemble_text_and_tool_input() {
        let mut state = StreamState::new("claude-test");
        let mut deltas = Vec::new();
        let mut on_text = |t: &str| deltas.push(t.to_owned());
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ("ping", r#"{"type": "ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Par"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"is\"}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            ),
        ];
        for (event, data) in events {
            assert!(!state.event(event, data, &mut on_text).unwrap(), "{data}");
        }
        assert!(
            state
                .event("message_stop", r#"{"type":"message_stop"}"#, &mut on_text)
                .unwrap()
        );
        let response = state.finish().unwrap();
        assert_eq!(deltas, ["Hello", " there"]);
        assert_eq!(response.message.content, "Hello there");
        assert_eq!(
            response.message.tool_calls,
            [ToolCall {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            }]
        );
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            response.usage,
            Some(Usage {
                input_tokens: 25,
                output_tokens: 15
            })
        );
    }

    #[test]
    fn error_events_say_whether_to_retry() {
        let mut state = StreamState::new("m");
        let failure = state
            .event(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &mut |_| {},
            )
            .unwrap_err();
        assert!(failure.retryable);
        assert_eq!(
            failure.message,
            "the server reported an error: overloaded_error: Overloaded"
        );
        let failure = state
            .event(
                "error",
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#,
                &mut |_| {},
            )
            .unwrap_err();
        assert!(!failure.retryable);
    }

    #[test]
    fn a_streamed_body_gives_the_same_answer_however_it_is_cut() {
        let body = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\u{65e5}\u{672c}\u{8a9e}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"f\",\"input\":{}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"n\\\": 4\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"2}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":8}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        )
        .as_bytes();
        for chunks in crate::ai::stream::tests::chunkings(body) {
            let mut parser = SseParser::default();
            let mut state = StreamState::new("claude-test");
            let mut deltas = String::new();
            let mut on_text = |t: &str| deltas.push_str(t);
            let mut done = false;
            'body: for chunk in &chunks {
                for event in parser.push(chunk).unwrap() {
                    if state
                        .event(&event.event, &event.data, &mut on_text)
                        .unwrap()
                    {
                        done = true;
                        break 'body;
                    }
                }
            }
            assert!(done, "{chunks:?}");
            let response = state.finish().unwrap();
            assert_eq!(deltas, "日本語");
            assert_eq!(response.model, "claude-x");
            assert_eq!(response.message.tool_calls[0].arguments, json!({"n": 42}));
            assert_eq!(
                response.usage,
                Some(Usage {
                    input_tokens: 12,
                    output_tokens: 8
                })
            );
        }
    }
}
