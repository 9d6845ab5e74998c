//! Ollama's native API: `POST {base}/api/chat` (streamed as
//! newline-delimited JSON) and `POST {base}/api/embed`.

use futures::future::BoxFuture;
use ghostflow::{Context, NodeError};
use serde_json::{Map, Value, json};

use super::openai::vector_of;
use super::{
    Call, Endpoint, Failure, MAX_TOOL_CALLS, bearer_headers, excerpt, function_call,
    function_tools, openai_finish_reason,
};
use crate::ai::model::{
    ChatModel, ChatRequest, ChatResponse, EmbeddingModel, Embeddings, FinishReason, Message,
    OnText, ResponseFormat, Role, ToolCall, Usage,
};
use crate::ai::stream::NdjsonParser;

/// What ends an Ollama stream, for messages.
const TERMINATOR: &str = "the line with `\"done\": true`";

/// A model served by Ollama.
#[derive(Debug)]
pub(crate) struct Ollama {
    endpoint: Endpoint,
}

impl Ollama {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Ollama { endpoint }
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
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let response = call.post(ctx, &body, bearer_headers(call)?, accept).await?;
        if request.stream {
            let mut parser = NdjsonParser::default();
            let mut state = StreamState::new(&self.endpoint.model);
            let complete = call
                .stream(response, TERMINATOR, |chunk| {
                    for line in parser.push(chunk)? {
                        if state.line(&line, on_text)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })
                .await?;
            if !complete {
                // A last line without its newline counts when it is whole.
                let last = parser.finish();
                let whole = last
                    .as_deref()
                    .filter(|l| serde_json::from_str::<Value>(l).is_ok());
                match whole {
                    Some(line) if state.line(line, on_text)? => {}
                    _ => return Err(Failure::cut_off(TERMINATOR)),
                }
            }
            state.finish()
        } else {
            let value = call.json(response).await?;
            let mut state = StreamState::new(&self.endpoint.model);
            if !state.value(&value, &mut |_| {})? {
                return Err(Failure::unexpected("answer, not `\"done\": true`", &value));
            }
            state.finish()
        }
    }

    async fn embed_call(
        &self,
        call: &Call<'_>,
        inputs: &[String],
        ctx: &Context,
    ) -> Result<Embeddings, Failure> {
        let mut body = json!({"model": self.endpoint.model, "input": inputs});
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

impl ChatModel for Ollama {
    fn chat<'a>(
        &'a self,
        request: &'a ChatRequest,
        ctx: &'a Context,
        on_text: OnText<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, NodeError>> {
        Box::pin(async move {
            let call = self.endpoint.call(ctx, "api/chat")?;
            call.finish(self.chat_call(&call, request, ctx, on_text))
                .await
        })
    }
}

impl EmbeddingModel for Ollama {
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
            let call = self.endpoint.call(ctx, "api/embed")?;
            call.finish(self.embed_call(&call, inputs, ctx)).await
        })
    }
}

/// The request body of `/api/chat`. Ollama streams unless told not to, so
/// `stream` is always sent.
pub(crate) fn chat_body(endpoint: &Endpoint, request: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(endpoint.model));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(message_json).collect()),
    );
    body.insert("stream".into(), json!(request.stream));
    if !request.tools.is_empty() {
        body.insert("tools".into(), function_tools(&request.tools));
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("format".into(), json!("json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert("format".into(), schema.clone());
        }
    }
    let mut options = Map::new();
    if let Some(temperature) = request.temperature {
        options.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        options.insert("num_predict".into(), json!(max_tokens));
    }
    if !request.stop.is_empty() {
        options.insert("stop".into(), json!(request.stop));
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    Value::Object(body)
}

fn message_json(message: &Message) -> Value {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = json!({"role": role, "content": message.content});
    if !message.tool_calls.is_empty() {
        // Ollama's calls have no ids; their arguments are objects.
        out["tool_calls"] = message
            .tool_calls
            .iter()
            .map(|call| json!({"function": {"name": call.name, "arguments": call.arguments}}))
            .collect();
    }
    if message.role == Role::Tool
        && let Some(name) = &message.name
    {
        out["tool_name"] = json!(name);
    }
    out
}

/// An answer being assembled from its lines (one line, when not streamed).
#[derive(Debug)]
pub(crate) struct StreamState {
    model: String,
    text: String,
    calls: Vec<ToolCall>,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl StreamState {
    pub(crate) fn new(model: &str) -> Self {
        StreamState {
            model: model.to_owned(),
            text: String::new(),
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    /// Takes one line; `true` at the line with `"done": true`.
    pub(crate) fn line(&mut self, line: &str, on_text: OnText<'_>) -> Result<bool, Failure> {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Failure::malformed("a streamed line", line, &e))?;
        self.value(&value, on_text)
    }

    pub(crate) fn value(&mut self, value: &Value, on_text: OnText<'_>) -> Result<bool, Failure> {
        if let Some(error) = value.get("error") {
            let message = error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(Failure::retryable(format!(
                "the server reported an error: {}",
                excerpt(&message)
            )));
        }
        if !value.is_object() {
            return Err(Failure::permanent(format!(
                "expected a JSON object per line, got {}: `{}`",
                crate::kind(value),
                excerpt(&value.to_string())
            )));
        }
        if let Some(model) = value.get("model").and_then(Value::as_str)
            && !model.is_empty()
        {
            model.clone_into(&mut self.model);
        }
        if let Some(message) = value.get("message") {
            if let Some(text) = message.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                self.text.push_str(text);
                on_text(text);
            }
            if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    self.tool_call(call)?;
                }
            }
        }
        if value.get("done").and_then(Value::as_bool) == Some(true) {
            self.finish = Some(
                value
                    .get("done_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("stop")
                    .to_owned(),
            );
            let count = |field: &str| value.get(field).and_then(Value::as_u64);
            if let (None, None) = (count("prompt_eval_count"), count("eval_count")) {
                self.usage = None;
            } else {
                self.usage = Some(Usage {
                    input_tokens: count("prompt_eval_count").unwrap_or(0),
                    output_tokens: count("eval_count").unwrap_or(0),
                });
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn tool_call(&mut self, call: &Value) -> Result<(), Failure> {
        if self.calls.len() == MAX_TOOL_CALLS {
            return Err(Failure::too_many_tool_calls());
        }
        self.calls.push(function_call(self.calls.len(), call)?);
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<ChatResponse, Failure> {
        // Ollama says `stop` when the model called tools.
        let finish_reason = match self.finish.as_deref() {
            _ if !self.calls.is_empty() => FinishReason::ToolCalls,
            Some(reason) => openai_finish_reason(reason),
            None => FinishReason::Stop,
        };
        Ok(ChatResponse {
            message: Message {
                role: Role::Assistant,
                content: self.text,
                tool_calls: self.calls,
                tool_call_id: None,
                name: None,
            },
            finish_reason,
            usage: self.usage,
            model: self.model,
        })
    }
}

/// An `/api/embed` answer.
pub(crate) fn parse_embeddings(
    value: &Value,
    expected: usize,
    model: &str,
) -> Result<Embeddings, Failure> {
    let list = value
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::unexpected("embeddings answer without `embeddings`", value))?;
    if list.len() != expected {
        return Err(Failure::permanent(format!(
            "asked for {expected} embedding(s), got {}",
            list.len()
        )));
    }
    let vectors = list
        .iter()
        .map(|v| vector_of(Some(v)).ok_or_else(|| Failure::unexpected("embedding", v)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Embeddings {
        vectors,
        usage: value
            .get("prompt_eval_count")
            .and_then(Value::as_u64)
            .map(|n| Usage {
                input_tokens: n,
                output_tokens: 0,
            }),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model)
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::ModelSettings;
    use crate::ai::model::ToolSpec;
    use crate::ai::provider::stable_call_id;

    #[test]
    fn requests_use_ollama_names() {
        let endpoint = ModelSettings::ollama("llama3.2").endpoint().unwrap();
        let call = ToolCall {
            id: "call_x".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        };
        let request = ChatRequest {
            messages: vec![
                Message::system("Be brief."),
                Message::user("Weather?"),
                Message {
                    tool_calls: vec![call.clone()],
                    ..Message::assistant("")
                },
                Message::tool_result(&call, "21C"),
            ],
            temperature: Some(0.1),
            max_tokens: Some(10),
            stop: vec!["\n\n".into()],
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather".into(),
                parameters: json!({"type": "object"}),
            }],
            response_format: Some(ResponseFormat::JsonSchema {
                name: "x".into(),
                schema: json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            }),
            stream: false,
        };
        assert_eq!(
            chat_body(&endpoint, &request),
            json!({
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather?"},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                    ]},
                    {"role": "tool", "content": "21C", "tool_name": "get_weather"}
                ],
                "stream": false,
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "Weather", "parameters": {"type": "object"}
                }}],
                "format": {"type": "object", "properties": {"a": {"type": "string"}}},
                "options": {"temperature": 0.1, "num_predict": 10, "stop": ["\n\n"]}
            })
        );
    }

    #[test]
    fn lines_assemble_into_an_answer_with_stable_ids() {
        let mut state = StreamState::new("llama3.2");
        let mut deltas = Vec::new();
        let mut on_text = |t: &str| deltas.push(t.to_owned());
        for line in [
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"Hel"},"done":false}"#,
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"lo"},"done":false}"#,
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":{}}},{"function":{"name":"b","arguments":{"x":1}}}]},"done":false}"#,
        ] {
            assert!(!state.line(line, &mut on_text).unwrap());
        }
        assert!(
            state
                .line(
                    r#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":7,"eval_count":3}"#,
                    &mut on_text
                )
                .unwrap()
        );
        let response = state.finish().unwrap();
        assert_eq!(deltas, ["Hel", "lo"]);
        assert_eq!(response.message.content, "Hello");
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            response.usage,
            Some(Usage {
                input_tokens: 7,
                output_tokens: 3
            })
        );
        let ids: Vec<_> = response
            .message
            .tool_calls
            .iter()
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(
            ids,
            [
                stable_call_id(0, "a", &json!({})),
                stable_call_id(1, "b", &json!({"x": 1}))
            ]
        );
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn errors_in_lines_are_reported() {
        let mut state = StreamState::new("m");
        let failure = state
            .line(
                r#"{"error":"an error was encountered while running the model"}"#,
                &mut |_| {},
            )
            .unwrap_err();
        assert!(failure.retryable);
        assert_eq!(
            failure.message,
            "the server reported an error: an error was encountered while running the model"
        );
        let failure = state.line("{\"done\":tru", &mut |_| {}).unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure
                .message
                .starts_with("a streamed line is not valid JSON"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn embeddings_are_checked() {
        let value =
            json!({"model": "e", "embeddings": [[0.5, 0.5], [1, 0]], "prompt_eval_count": 6});
        let embeddings = parse_embeddings(&value, 2, "e").unwrap();
        assert_eq!(embeddings.vectors, [vec![0.5, 0.5], vec![1.0, 0.0]]);
        assert_eq!(embeddings.usage.unwrap().input_tokens, 6);
        assert!(
            parse_embeddings(&value, 1, "e")
                .unwrap_err()
                .message
                .contains("asked for 1 embedding(s), got 2")
        );
        assert!(
            parse_embeddings(&json!({"embeddings": [["a"]]}), 1, "e")
                .unwrap_err()
                .message
                .starts_with("unexpected embedding")
        );
    }

    #[test]
    fn a_streamed_body_gives_the_same_answer_however_it_is_cut() {
        let body = concat!(
            "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-22T20:33:28.123648Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Ol\u{e1}, \"},\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-22T20:33:28.123648Z\",\"message\":{\"role\":\"assistant\",\"content\":\"mundo \u{1f60a}\"},\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-22T20:33:28.123648Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"length\",\"done\":true,\"total_duration\":1,\"prompt_eval_count\":4,\"eval_count\":2}\n",
        )
        .as_bytes();
        for chunks in crate::ai::stream::tests::chunkings(body) {
            let mut parser = NdjsonParser::default();
            let mut state = StreamState::new("m");
            let mut deltas = String::new();
            let mut on_text = |t: &str| deltas.push_str(t);
            let mut done = false;
            'body: for chunk in &chunks {
                for line in parser.push(chunk).unwrap() {
                    if state.line(&line, &mut on_text).unwrap() {
                        done = true;
                        break 'body;
                    }
                }
            }
            assert!(done, "{chunks:?}");
            let response = state.finish().unwrap();
            assert_eq!(deltas, "Olá, mundo 😊");
            assert_eq!(response.finish_reason, FinishReason::Length);
            assert_eq!(response.usage.unwrap().total(), 6);
        }
    }
}
