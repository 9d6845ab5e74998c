//! OpenAI's chat completions (`POST {base}/chat/completions`) and
//! embeddings (`POST {base}/embeddings`), as OpenAI and the servers that
//! copy its API speak them.

use futures::future::BoxFuture;
use ghostflow::{Context, NodeError};
use serde_json::{Map, Value, json};

use super::{
    Call, Endpoint, Failure, MAX_TOOL_CALLS, PartialCall, bearer_headers, excerpt,
    format_instruction, function_call, function_tools, openai_finish_reason,
};
use crate::ai::model::{
    ChatModel, ChatRequest, ChatResponse, EmbeddingModel, Embeddings, FinishReason, Message,
    OnText, ResponseFormat, Role, Usage,
};
use crate::ai::settings::SchemaFormat;
use crate::ai::stream::SseParser;

/// A model behind an OpenAI-compatible API.
#[derive(Debug)]
pub(crate) struct OpenAi {
    endpoint: Endpoint,
}

impl OpenAi {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        OpenAi { endpoint }
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
        let response = call.post(ctx, &body, bearer_headers(call)?, accept).await?;
        if request.stream {
            let mut parser = SseParser::default();
            let mut state = StreamState::new(&self.endpoint.model);
            let complete = call
                .stream(response, "`data: [DONE]`", |chunk| {
                    for event in parser.push(chunk)? {
                        if state.event(&event.data, on_text)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })
                .await?;
            if !complete {
                match parser.finish() {
                    Some(event) if state.event(&event.data, on_text)? => {}
                    _ => return Err(Failure::cut_off("`data: [DONE]`")),
                }
            }
            state.finish()
        } else {
            let value = call.json(response).await?;
            parse_chat(&value, &self.endpoint.model)
        }
    }

    async fn embed_call(
        &self,
        call: &Call<'_>,
        inputs: &[String],
        ctx: &Context,
    ) -> Result<Embeddings, Failure> {
        let mut body = json!({
            "model": self.endpoint.model,
            "input": inputs,
            "encoding_format": "float",
        });
        if let Some(dimensions) = self.endpoint.dimensions {
            body["dimensions"] = json!(dimensions);
        }
        let response = call
            .post(ctx, &body, bearer_headers(call)?, "application/json")
            .await?;
        let value = call.json(response).await?;
        parse_embeddings(&value, inputs.len(), &self.endpoint.model)
    }
}

impl ChatModel for OpenAi {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a Context,
        on_text: OnText<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, NodeError>> {
        Box::pin(async move {
            let call = self.endpoint.call(ctx, "chat/completions")?;
            call.finish(self.chat_call(&call, request, ctx, on_text))
                .await
        })
    }
}

impl EmbeddingModel for OpenAi {
    fn embed<'a>(
        &'a self,
        inputs: &'a [String],
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Embeddings, NodeError>> {
        Box::pin(async move {
            if inputs.is_empty() {
                return Ok(Embeddings {
                    vectors: Vec::new(),
                    usage: None,
                    model: self.endpoint.model.clone(),
                });
            }
            let call = self.endpoint.call(ctx, "embeddings")?;
            call.finish(self.embed_call(&call, inputs, ctx)).await
        })
    }
}

/// The request body of a chat completion.
pub(crate) fn chat_body(endpoint: &Endpoint, request: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(endpoint.model));
    let mut messages: Vec<Value> = request.messages.iter().map(message_json).collect();
    let format = request.response_format.as_ref();
    if endpoint.schema_format == SchemaFormat::Instruction
        && let Some(instruction) = format_instruction(format)
    {
        // Into the leading system message, where chat templates want it,
        // or as one.
        match messages.first_mut() {
            Some(first) if first["role"] == "system" => {
                let content = first["content"].as_str().unwrap_or_default();
                first["content"] = json!(format!("{content}\n\n{instruction}"));
            }
            _ => messages.insert(0, json!({"role": "system", "content": instruction})),
        }
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        // OpenAI itself refuses `max_tokens` for its newer models; the
        // servers that copy its API know `max_tokens` best.
        let field = if endpoint.official {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(field.into(), json!(max_tokens));
    }
    if !request.stop.is_empty() {
        body.insert("stop".into(), json!(request.stop));
    }
    if !request.tools.is_empty() {
        body.insert("tools".into(), function_tools(&request.tools));
    }
    match (format, endpoint.schema_format) {
        (None | Some(ResponseFormat::Text), _) | (_, SchemaFormat::Instruction) => {}
        (Some(ResponseFormat::JsonObject), _) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        (Some(ResponseFormat::JsonSchema { name, schema }), SchemaFormat::JsonSchema) => {
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
            );
        }
        (Some(ResponseFormat::JsonSchema { schema, .. }), SchemaFormat::JsonObject) => {
            body.insert(
                "response_format".into(),
                json!({"type": "json_object", "schema": schema}),
            );
        }
    }
    body.insert("stream".into(), json!(request.stream));
    if request.stream {
        // The last event before `[DONE]` then carries the usage.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

fn message_json(message: &Message) -> Value {
    match message.role {
        Role::System => json!({"role": "system", "content": message.content}),
        Role::User => json!({"role": "user", "content": message.content}),
        Role::Assistant => {
            let mut out = json!({"role": "assistant"});
            if message.tool_calls.is_empty() {
                out["content"] = json!(message.content);
            } else {
                out["content"] = if message.content.is_empty() {
                    Value::Null
                } else {
                    json!(message.content)
                };
                out["tool_calls"] = message
                    .tool_calls
                    .iter()
                    .map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": call.arguments.to_string(),
                            }
                        })
                    })
                    .collect();
            }
            out
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id.clone().unwrap_or_default(),
            "content": message.content,
        }),
    }
}

fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        input_tokens: usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        output_tokens: usage
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// Message content: a string, null, or (some servers) a list of text parts.
fn content_text(content: Option<&Value>) -> Result<String, Failure> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect()),
        Some(other) => Err(Failure::unexpected("message content", other)),
    }
}

/// A complete (not streamed) chat completion.
pub(crate) fn parse_chat(value: &Value, model: &str) -> Result<ChatResponse, Failure> {
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(stream_error(error));
    }
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| Failure::unexpected("answer without choices", value))?;
    let message = choice
        .get("message")
        .ok_or_else(|| Failure::unexpected("choice without a message", choice))?;
    let mut content = content_text(message.get("content"))?;
    if content.is_empty()
        && let Some(refusal) = message.get("refusal").and_then(Value::as_str)
    {
        content = refusal.to_owned();
    }
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        if calls.len() > MAX_TOOL_CALLS {
            return Err(Failure::too_many_tool_calls());
        }
        for (index, call) in calls.iter().enumerate() {
            tool_calls.push(function_call(index, call)?);
        }
    }
    let finish_reason = finish_reason(
        choice.get("finish_reason").and_then(Value::as_str),
        !tool_calls.is_empty(),
    );
    Ok(ChatResponse {
        message: Message {
            role: Role::Assistant,
            content,
            tool_calls,
            tool_call_id: None,
            name: None,
        },
        finish_reason,
        usage: usage_of(value),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_owned(),
    })
}

fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason {
        Some(reason) => openai_finish_reason(reason),
        None if has_tool_calls => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    }
}

/// An `error` object in a body or in the stream.
fn stream_error(error: &Value) -> Failure {
    let message = match error {
        Value::String(text) => text.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    };
    // Servers send errors in the stream when something broke on their side.
    Failure::retryable(format!(
        "the server reported an error: {}",
        excerpt(&message)
    ))
}

/// A streamed chat completion being assembled.
#[derive(Debug)]
pub(crate) struct StreamState {
    model: String,
    text: String,
    calls: Vec<PartialCall>,
    finish: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl StreamState {
    pub(crate) fn new(model: &str) -> Self {
        StreamState {
            model: model.to_owned(),
            text: String::new(),
            calls: Vec::new(),
            finish: None,
            usage: None,
            done: false,
        }
    }

    /// Takes one event's data; `true` at `[DONE]`.
    pub(crate) fn event(&mut self, data: &str, on_text: OnText<'_>) -> Result<bool, Failure> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| Failure::malformed("a streamed event", data, &e))?;
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            return Err(stream_error(error));
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str)
            && !model.is_empty()
        {
            model.clone_into(&mut self.model);
        }
        if let Some(usage) = usage_of(&chunk) {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(false);
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                self.text.push_str(text);
                on_text(text);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, piece) in calls.iter().enumerate() {
                    self.tool_call_piece(position, piece)?;
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(reason.to_owned());
        }
        Ok(false)
    }

    /// A piece of a tool call: the first has its `id` and name, the
    /// following ones more of its arguments; `index` says which call.
    fn tool_call_piece(&mut self, position: usize, piece: &Value) -> Result<(), Failure> {
        let index = piece
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        if index >= MAX_TOOL_CALLS {
            return Err(Failure::too_many_tool_calls());
        }
        if index >= self.calls.len() {
            self.calls.resize_with(index + 1, PartialCall::default);
        }
        let call = &mut self.calls[index];
        if let Some(id) = piece.get("id").and_then(Value::as_str) {
            id.clone_into(&mut call.id);
        }
        if let Some(function) = piece.get("function") {
            if let Some(name) = function.get("name").and_then(Value::as_str) {
                call.name.push_str(name);
            }
            match function.get("arguments") {
                Some(Value::String(more)) => call.arguments.push_str(more),
                Some(Value::Object(object)) => {
                    call.arguments
                        .push_str(&Value::Object(object.clone()).to_string());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The response, once `[DONE]` came.
    pub(crate) fn finish(self) -> Result<ChatResponse, Failure> {
        debug_assert!(self.done);
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        for (index, call) in self.calls.into_iter().enumerate() {
            if call.name.is_empty() && call.arguments.is_empty() {
                continue;
            }
            tool_calls.push(call.finish(index)?);
        }
        Ok(ChatResponse {
            finish_reason: finish_reason(self.finish.as_deref(), !tool_calls.is_empty()),
            message: Message {
                role: Role::Assistant,
                content: self.text,
                tool_calls,
                tool_call_id: None,
                name: None,
            },
            usage: self.usage,
            model: self.model,
        })
    }
}

/// An embeddings answer: one vector per input, put in input order by
/// their `index`.
pub(crate) fn parse_embeddings(
    value: &Value,
    expected: usize,
    model: &str,
) -> Result<Embeddings, Failure> {
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::unexpected("embeddings answer without `data`", value))?;
    if data.len() != expected {
        return Err(Failure::permanent(format!(
            "asked for {expected} embedding(s), got {}",
            data.len()
        )));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        let vector = vector_of(item.get("embedding"))
            .ok_or_else(|| Failure::unexpected("embedding", item))?;
        match vectors.get_mut(index) {
            Some(slot @ None) => *slot = Some(vector),
            _ => {
                return Err(Failure::permanent(format!(
                    "the embeddings answer has a bad or repeated index {index}"
                )));
            }
        }
    }
    Ok(Embeddings {
        // Every slot is filled: as many items as slots, no index twice.
        vectors: vectors.into_iter().flatten().collect(),
        usage: value.get("usage").map(|usage| Usage {
            input_tokens: usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            output_tokens: 0,
        }),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_owned(),
    })
}

/// A JSON array of numbers as a vector.
pub(crate) fn vector_of(value: Option<&Value>) -> Option<Vec<f32>> {
    value?
        .as_array()?
        .iter()
        .map(|n| n.as_f64().map(|f| f as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::ModelSettings;
    use crate::ai::model::{ToolCall, ToolSpec};

    fn endpoint() -> Endpoint {
        ModelSettings::openai("gpt-test")
            .base_url("http://127.0.0.1:9/v1")
            .endpoint()
            .unwrap()
    }

    #[test]
    fn requests_carry_every_part_of_the_abstraction() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        };
        let request = ChatRequest {
            messages: vec![
                Message::system("Be brief."),
                Message::user("Weather in Paris?"),
                Message {
                    tool_calls: vec![call.clone()],
                    ..Message::assistant("")
                },
                Message::tool_result(&call, r#"{"temp":21}"#),
            ],
            temperature: Some(0.5),
            max_tokens: Some(64),
            stop: vec!["END".into()],
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather of a city".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            response_format: Some(ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema: json!({"type": "object"}),
            }),
            stream: true,
        };
        assert_eq!(
            chat_body(&endpoint(), &request),
            json!({
                "model": "gpt-test",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":21}"}
                ],
                "temperature": 0.5,
                "max_tokens": 64,
                "stop": ["END"],
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "Weather of a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
                }}],
                "response_format": {"type": "json_schema",
                    "json_schema": {"name": "answer", "schema": {"type": "object"}}},
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
        // OpenAI's own service gets `max_completion_tokens`.
        let official = ModelSettings::openai("gpt-test").endpoint().unwrap();
        let body = chat_body(
            &official,
            &ChatRequest {
                messages: vec![Message::user("hi")],
                max_tokens: Some(5),
                response_format: Some(ResponseFormat::JsonObject),
                ..ChatRequest::default()
            },
        );
        assert_eq!(body["max_completion_tokens"], json!(5));
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["stream"], json!(false));
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn the_schema_travels_as_the_server_takes_it() {
        let schema = json!({"type": "object", "required": ["ok"]});
        let request = |first: Message| ChatRequest {
            messages: vec![first, Message::user("Go.")],
            response_format: Some(ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema: schema.clone(),
            }),
            ..ChatRequest::default()
        };
        let at = |format: SchemaFormat| {
            ModelSettings::openai("m")
                .base_url("http://127.0.0.1:9/v1")
                .schema_format(format)
                .endpoint()
                .unwrap()
        };

        let body = chat_body(
            &at(SchemaFormat::JsonObject),
            &request(Message::system("Be brief.")),
        );
        assert_eq!(
            body["response_format"],
            json!({"type": "json_object", "schema": schema})
        );
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );

        // As an instruction: into the leading system message, or as one.
        let body = chat_body(
            &at(SchemaFormat::Instruction),
            &request(Message::system("Be brief.")),
        );
        assert!(body.get("response_format").is_none(), "{body}");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        let system = messages[0]["content"].as_str().unwrap();
        assert!(
            system.starts_with(
                "Be brief.\n\nAnswer with one JSON value that matches this JSON Schema"
            ),
            "{system}"
        );
        assert!(system.ends_with(&schema.to_string()), "{system}");
        let body = chat_body(
            &at(SchemaFormat::Instruction),
            &request(Message::user("Hi.")),
        );
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["role"], json!("system"));
        assert_eq!(messages[1], json!({"role": "user", "content": "Hi."}));

        // A request without a format is the same whatever the setting.
        let plain = ChatRequest {
            messages: vec![Message::user("Hi.")],
            ..ChatRequest::default()
        };
        for format in [SchemaFormat::JsonObject, SchemaFormat::Instruction] {
            assert_eq!(
                chat_body(&at(format), &plain),
                chat_body(&at(SchemaFormat::JsonSchema), &plain)
            );
        }
    }

    #[test]
    fn complete_answers_parse() {
        let value = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test-0613",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "b", "arguments": "{\"x\":1}"}}
                ]
            }}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
        });
        let response = parse_chat(&value, "gpt-test").unwrap();
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(response.model, "gpt-test-0613");
        assert_eq!(
            response.usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 5
            })
        );
        assert_eq!(
            response.message.tool_calls,
            [
                ToolCall {
                    id: "call_a".into(),
                    name: "a".into(),
                    arguments: json!({})
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "b".into(),
                    arguments: json!({"x": 1})
                },
            ]
        );
        let failure = parse_chat(&json!({"choices": []}), "m").unwrap_err();
        assert!(
            failure
                .message
                .starts_with("unexpected answer without choices"),
            "{}",
            failure.message
        );
    }

    fn stream(events: &[&str]) -> (Result<ChatResponse, Failure>, Vec<String>) {
        let mut state = StreamState::new("gpt-test");
        let mut deltas = Vec::new();
        let mut on_text = |t: &str| deltas.push(t.to_owned());
        for data in events {
            match state.event(data, &mut on_text) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return (Err(e), deltas),
            }
        }
        (state.finish(), deltas)
    }

    #[test]
    fn streamed_tool_calls_assemble_from_pieces() {
        let (response, deltas) = stream(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Let me check."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"b","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            "[DONE]",
        ]);
        let response = response.unwrap();
        assert_eq!(deltas, ["Let me check."]);
        assert_eq!(response.message.content, "Let me check.");
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(response.message.tool_calls.len(), 2);
        assert_eq!(
            response.message.tool_calls[0].arguments,
            json!({"city": "Paris"})
        );
        assert_eq!(response.message.tool_calls[1].id, "call_2");
        assert_eq!(
            response.usage,
            Some(Usage {
                input_tokens: 3,
                output_tokens: 4
            })
        );
    }

    #[test]
    fn stream_errors_are_reported() {
        let (response, _) = stream(&[r#"{"choices":[{"delta":{"content":"a"}}]}"#, "{oops"]);
        let failure = response.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure
                .message
                .starts_with("a streamed event is not valid JSON"),
            "{}",
            failure.message
        );
        assert!(failure.message.ends_with("`{oops`"), "{}", failure.message);
        let (response, _) = stream(&[r#"{"error":{"message":"model overloaded"}}"#]);
        let failure = response.unwrap_err();
        assert!(failure.retryable);
        assert_eq!(
            failure.message,
            "the server reported an error: model overloaded"
        );
        let too_many = format!(
            r#"{{"choices":[{{"delta":{{"tool_calls":[{{"index":{MAX_TOOL_CALLS},"function":{{"name":"x"}}}}]}}}}]}}"#
        );
        let (response, _) = stream(&[&too_many]);
        assert!(
            response
                .unwrap_err()
                .message
                .contains("more than 128 tool calls")
        );
    }

    #[test]
    fn embeddings_come_back_in_input_order() {
        let value = json!({
            "object": "list", "model": "emb",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
                {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}
            ],
            "usage": {"prompt_tokens": 4, "total_tokens": 4}
        });
        let embeddings = parse_embeddings(&value, 2, "emb").unwrap();
        assert_eq!(embeddings.vectors, [vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(embeddings.usage.unwrap().input_tokens, 4);
        assert!(
            parse_embeddings(&value, 3, "emb")
                .unwrap_err()
                .message
                .contains("asked for 3 embedding(s), got 2")
        );
        let repeated = json!({"data": [
            {"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}
        ]});
        assert!(
            parse_embeddings(&repeated, 2, "emb")
                .unwrap_err()
                .message
                .contains("repeated index 0")
        );
    }

    /// A body as a server streams it, through the SSE parser and the
    /// decoder, cut in every way.
    #[test]
    fn a_streamed_body_gives_the_same_answer_however_it_is_cut() {
        let body = concat!(
            ": ping\r\n\r\n",
            "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Gr\u{fc}\u{df}e \"}}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\u{1f30d}!\"}}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"q\\\":\"}}]}}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"\u{e9}t\u{e9}\\\"}\"}}]}}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\r\n\r\n",
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\r\n\r\n",
            "data: [DONE]\r\n\r\n",
        )
        .as_bytes();
        for chunks in crate::ai::stream::tests::chunkings(body) {
            let mut parser = SseParser::default();
            let mut state = StreamState::new("gpt-test");
            let mut deltas = String::new();
            let mut on_text = |t: &str| deltas.push_str(t);
            let mut done = false;
            'body: for chunk in &chunks {
                for event in parser.push(chunk).unwrap() {
                    if state.event(&event.data, &mut on_text).unwrap() {
                        done = true;
                        break 'body;
                    }
                }
            }
            assert!(done, "{chunks:?}");
            let response = state.finish().unwrap();
            assert_eq!(deltas, "Grüße 🌍!");
            assert_eq!(response.message.content, "Grüße 🌍!");
            assert_eq!(response.model, "gpt-x");
            assert_eq!(
                response.message.tool_calls[0].arguments,
                json!({"q": "été"})
            );
            assert_eq!(response.finish_reason, FinishReason::ToolCalls);
            assert_eq!(response.usage.unwrap().total(), 11);
        }
    }
}
