//! Ollama's native API: `POST /api/chat` (NDJSON streaming by default),
//! `POST /api/embed`, `POST /api/embeddings`, `GET /api/tags`,
//! `GET /api/version`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::chat::{
    self, Answer, ChatCall, Effects, Failure, Finish, Format, Outcome, Role, ToolChoice, ToolDef,
    Turn,
};
use crate::ids::rfc3339_now;
use crate::server::{self, Shared, Vectors};
use crate::stream::{self, Event, Framing, Plan};

/// A refused request: status and Ollama's one-line message.
#[derive(Debug)]
struct Bad {
    status: u16,
    message: String,
}

type Checked<T> = Result<T, Bad>;

fn bad(message: impl Into<String>) -> Bad {
    Bad {
        status: 400,
        message: message.into(),
    }
}

/// Go's `encoding/json` type error, as Ollama returns it for a field of
/// the wrong type: `json: cannot unmarshal string into Go struct field
/// ChatRequest.messages of type []api.Message`.
fn unmarshal(value: &Value, structure: &str, path: &str, go_type: &str) -> Bad {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    bad(format!(
        "json: cannot unmarshal {kind} into Go struct field {structure}.{path} of type {go_type}"
    ))
}

/// Ollama's error body.
pub(crate) fn error_response(status: u16, message: &str, failure: Option<&Failure>) -> Response {
    let response = server::json_response(status, &json!({ "error": message }));
    match failure {
        Some(failure) => server::with_retry_after(response, failure),
        None => response,
    }
}

fn refuse(b: &Bad) -> Response {
    error_response(b.status, &b.message, None)
}

fn failure_message(failure: &Failure, model: &str) -> String {
    if let Some(message) = &failure.message {
        return message.clone();
    }
    match failure.status {
        400 => "invalid request".to_owned(),
        401 => "unauthorized".to_owned(),
        403 => "forbidden".to_owned(),
        404 => format!("model \"{model}\" not found, try pulling it first"),
        429 => "too many requests".to_owned(),
        500 => "llama runner process has terminated: exit status 2".to_owned(),
        503 => "server busy, please try again.  maximum pending requests exceeded".to_owned(),
        s => format!("request failed with status {s}"),
    }
}

fn fail(failure: &Failure, model: &str) -> Response {
    error_response(
        failure.status,
        &failure_message(failure, model),
        Some(failure),
    )
}

/// `None` when the request may go on, else the 401 (only with a key set:
/// Ollama itself has no keys, the proxies and clouds in front of it do).
fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = shared.api_key()?;
    match server::bearer(headers) {
        Some(given) if given == key => None,
        _ => Some(error_response(401, "unauthorized", None)),
    }
}

fn parse_object(body: &[u8]) -> Checked<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("missing request body"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(bad(format!(
            "json: cannot unmarshal {} into Go value of type api.ChatRequest",
            match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "null",
            }
        ))),
        Err(e) => Err(bad(format!("invalid character in request body: {e}"))),
    }
}

fn model_of(body: &Map<String, Value>, structure: &str) -> Checked<String> {
    match body.get("model") {
        None | Some(Value::Null) => Err(bad("model is required")),
        Some(Value::String(m)) if m.trim().is_empty() => Err(bad("model is required")),
        Some(Value::String(m)) => Ok(m.clone()),
        Some(other) => Err(unmarshal(other, structure, "model", "string")),
    }
}

const ROLES: &[&str] = &["system", "user", "assistant", "tool"];

fn parse_messages(body: &Map<String, Value>) -> Checked<Vec<Turn>> {
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(messages)) => messages,
        Some(other) => return Err(unmarshal(other, "ChatRequest", "messages", "[]api.Message")),
    };
    let mut turns = Vec::new();
    for message in messages {
        let Some(message) = message.as_object() else {
            return Err(unmarshal(message, "ChatRequest", "messages", "api.Message"));
        };
        let role = match message.get("role") {
            None | Some(Value::Null) => "",
            Some(Value::String(role)) => role.as_str(),
            Some(other) => return Err(unmarshal(other, "Message", "messages.role", "string")),
        };
        let role = match role {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                let roles: Vec<String> = ROLES.iter().map(|r| format!("\"{r}\"")).collect();
                return Err(bad(format!(
                    "invalid message role \"{other}\": expected one of {}",
                    roles.join(", ")
                )));
            }
        };
        let text = match message.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => return Err(unmarshal(other, "Message", "messages.content", "string")),
        };
        for field in ["tool_name", "tool_call_id", "thinking"] {
            if let Some(value) = message.get(field)
                && !value.is_string()
                && !value.is_null()
            {
                return Err(unmarshal(
                    value,
                    "Message",
                    &format!("messages.{field}"),
                    "string",
                ));
            }
        }
        if let Some(images) = message.get("images")
            && !images.is_array()
            && !images.is_null()
        {
            return Err(unmarshal(
                images,
                "Message",
                "messages.images",
                "[]api.ImageData",
            ));
        }
        match message.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) => {
                for call in calls {
                    let Some(function) = call.get("function") else {
                        continue;
                    };
                    if let Some(arguments) = function.get("arguments")
                        && !arguments.is_object()
                    {
                        return Err(unmarshal(
                            arguments,
                            "ToolCallFunction",
                            "messages.tool_calls.function.arguments",
                            "api.ToolCallFunctionArguments",
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(unmarshal(
                    other,
                    "Message",
                    "messages.tool_calls",
                    "[]api.ToolCall",
                ));
            }
        }
        turns.push(Turn { role, text });
    }
    Ok(turns)
}

fn parse_tools(body: &Map<String, Value>) -> Checked<Vec<ToolDef>> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(other) => return Err(unmarshal(other, "ChatRequest", "tools", "api.Tools")),
    };
    let mut out = Vec::new();
    for tool in tools {
        let Some(function) = tool.get("function").and_then(Value::as_object) else {
            return Err(unmarshal(
                tool.get("function").unwrap_or(tool),
                "Tool",
                "tools.function",
                "api.ToolFunction",
            ));
        };
        let name = match function.get("name") {
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(unmarshal(
                    other,
                    "ToolFunction",
                    "tools.function.name",
                    "string",
                ));
            }
            None => String::new(),
        };
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(Value::Object(p)) => Value::Object(p.clone()),
            Some(other) => {
                return Err(unmarshal(
                    other,
                    "ToolFunction",
                    "tools.function.parameters",
                    "api.ToolFunctionParameters",
                ));
            }
        };
        out.push(ToolDef { name, parameters });
    }
    Ok(out)
}

/// `options`: `temperature`, `num_predict`, `stop` and the like, checked
/// as Ollama checks them.
fn parse_options(body: &Map<String, Value>) -> Checked<(Option<u64>, Vec<String>)> {
    let options = match body.get("options") {
        None | Some(Value::Null) => return Ok((None, Vec::new())),
        Some(Value::Object(options)) => options,
        Some(other) => {
            return Err(unmarshal(
                other,
                "ChatRequest",
                "options",
                "map[string]interface {}",
            ));
        }
    };
    let floats = [
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    ];
    let integers = [
        "num_predict",
        "num_ctx",
        "seed",
        "top_k",
        "num_keep",
        "repeat_last_n",
    ];
    for (key, value) in options {
        if value.is_null() {
            continue;
        }
        if floats.contains(&key.as_str()) && !value.is_number() {
            return Err(bad(format!("option \"{key}\" must be of type float32")));
        }
        if integers.contains(&key.as_str()) && !value.is_number() {
            return Err(bad(format!("option \"{key}\" must be of type integer")));
        }
    }
    let num_predict = options
        .get("num_predict")
        .and_then(Value::as_f64)
        .filter(|n| *n >= 0.0)
        .map(|n| n as u64);
    let stop = match options.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut stop = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => stop.push(s.clone()),
                    _ => return Err(bad("option \"stop\" must be of an array of strings")),
                }
            }
            stop
        }
        Some(_) => return Err(bad("option \"stop\" must be of type array")),
    };
    Ok((num_predict, stop))
}

/// The request, or `None` for an empty `messages` (Ollama then only loads
/// the model).
fn parse_chat(body: &[u8]) -> Checked<(ChatCall, bool)> {
    let body = parse_object(body)?;
    let model = model_of(&body, "ChatRequest")?;
    let stream = match body.get("stream") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(unmarshal(other, "ChatRequest", "stream", "bool")),
    };
    let empty = body
        .get("messages")
        .is_none_or(|m| m.as_array().is_some_and(Vec::is_empty));
    let turns = parse_messages(&body)?;
    let format = match body.get("format") {
        None | Some(Value::Null) => Format::Text,
        Some(Value::String(f)) if f.is_empty() => Format::Text,
        Some(Value::String(f)) if f == "json" => Format::JsonObject,
        Some(Value::Object(schema)) => Format::JsonSchema(Value::Object(schema.clone())),
        Some(other) => {
            return Err(bad(format!(
                "invalid format: {other}; expected \"json\" or a valid JSON Schema"
            )));
        }
    };
    let tools = parse_tools(&body)?;
    let (max_tokens, stop) = parse_options(&body)?;
    let call = ChatCall {
        model,
        turns,
        tools,
        tool_choice: ToolChoice::Auto,
        format,
        max_tokens,
        stop,
        stream,
    };
    Ok((call, empty))
}

fn done_reason(finish: &Finish) -> String {
    match finish {
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolCalls | Finish::ContentFilter => {
            "stop".to_owned()
        }
        Finish::Length => "length".to_owned(),
        Finish::Other(other) => other.clone(),
    }
}

/// The statistics of a final object, as Go writes them: zero values are
/// left out (`omitempty`).
fn metrics(object: &mut Map<String, Value>, answer: &Answer) {
    let prompt = answer.input_tokens;
    let eval = answer.output_tokens;
    let prompt_eval_duration = prompt * 1_000_000;
    let eval_duration = eval * 10_000_000;
    let load_duration = 1_000_000;
    let stats = [
        (
            "total_duration",
            load_duration + prompt_eval_duration + eval_duration + 500_000,
        ),
        ("load_duration", load_duration),
        ("prompt_eval_count", prompt),
        ("prompt_eval_duration", prompt_eval_duration),
        ("eval_count", eval),
        ("eval_duration", eval_duration),
    ];
    for (name, value) in stats {
        if value > 0 {
            object.insert(name.to_owned(), json!(value));
        }
    }
}

fn tool_calls_value(answer: &Answer) -> Value {
    answer
        .tool_calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            json!({
                "id": call.id,
                "function": {"index": index, "name": call.name, "arguments": call.arguments}
            })
        })
        .collect()
}

fn final_object(call: &ChatCall, answer: &Answer, content: &str, tool_calls: bool) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), json!(content));
    if tool_calls && !answer.tool_calls.is_empty() {
        message.insert("tool_calls".into(), tool_calls_value(answer));
    }
    let mut object = Map::new();
    object.insert("model".into(), json!(call.model));
    object.insert("created_at".into(), json!(rfc3339_now()));
    object.insert("message".into(), Value::Object(message));
    object.insert("done_reason".into(), json!(done_reason(&answer.finish)));
    object.insert("done".into(), json!(true));
    metrics(&mut object, answer);
    Value::Object(object)
}

/// `POST /api/chat`.
pub(crate) async fn chat(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(refusal) = unauthorized(shared, headers) {
        return refusal;
    }
    let (call, empty) = match parse_chat(body) {
        Ok(parsed) => parsed,
        Err(b) => return refuse(&b),
    };
    if !shared.knows(&call.model) {
        return error_response(404, &format!("model '{}' not found", call.model), None);
    }
    if empty {
        let object = json!({
            "model": call.model,
            "created_at": rfc3339_now(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": "load",
            "done": true
        });
        return server::json_response(200, &object);
    }
    let reply = shared.next_chat().await;
    match chat::resolve(&call, reply) {
        Err(mismatch) => error_response(500, &format!("model peer: {mismatch}"), None),
        Ok(Outcome::Fail(failure)) => fail(&failure, &call.model),
        Ok(Outcome::Answer(answer, effects)) => {
            if let Some((_, failure)) = &effects.error_after
                && !call.stream
            {
                return fail(failure, &call.model);
            }
            let mut answer = answer;
            for tool in &mut answer.tool_calls {
                if tool.id.is_none() {
                    tool.id = Some(shared.ids.ollama_call());
                }
            }
            if call.stream {
                let plan = plan(&call, &answer, &effects);
                let body = stream::body(plan, &effects, shared);
                server::body_response(200, "application/x-ndjson", body)
            } else {
                let object = final_object(&call, &answer, &answer.text, true);
                server::finished(
                    shared,
                    200,
                    "application/json; charset=utf-8",
                    object.to_string(),
                    effects.malformed,
                    effects.cut_after,
                )
            }
        }
    }
}

/// The NDJSON lines of a streamed answer: one per word, one with the tool
/// calls, then the final `done: true` line with the statistics.
fn plan(call: &ChatCall, answer: &Answer, effects: &Effects) -> Plan {
    let line = |message: Value| {
        Event::new(
            "",
            json!({
                "model": call.model,
                "created_at": rfc3339_now(),
                "message": message,
                "done": false
            })
            .to_string(),
        )
    };
    let mut events: Vec<Event> = chat::pieces(&answer.text)
        .into_iter()
        .map(|piece| line(json!({"role": "assistant", "content": piece})))
        .collect();
    if !answer.tool_calls.is_empty() {
        events.push(line(json!({
            "role": "assistant",
            "content": "",
            "tool_calls": tool_calls_value(answer)
        })));
    }
    events.push(Event::new(
        "",
        final_object(call, answer, "", false).to_string(),
    ));
    let error = effects.error_after.as_ref().map(|(_, failure)| {
        Event::new(
            "",
            json!({"error": failure_message(failure, &call.model)}).to_string(),
        )
    });
    Plan {
        framing: Framing::Lines,
        malform_at: 0,
        events,
        error,
    }
}

/// The texts of an embed request's `input`.
fn parse_input(input: Option<&Value>) -> Checked<Vec<String>> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad("invalid input type")),
            })
            .collect(),
        Some(_) => Err(bad("invalid input type")),
    }
}

fn parse_dimensions(body: &Map<String, Value>) -> Checked<Option<usize>> {
    match body.get("dimensions") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) | None => Err(bad("dimensions must be a positive integer")),
            Some(d) => Ok(Some(usize::try_from(d).unwrap_or(usize::MAX))),
        },
        Some(other) => Err(unmarshal(other, "EmbedRequest", "dimensions", "int")),
    }
}

/// `POST /api/embed`.
pub(crate) async fn embed(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(refusal) = unauthorized(shared, headers) {
        return refusal;
    }
    let parsed = (|| -> Checked<(String, Vec<String>, Option<usize>)> {
        let body = parse_object(body)?;
        let model = model_of(&body, "EmbedRequest")?;
        let inputs = parse_input(body.get("input"))?;
        let dimensions = parse_dimensions(&body)?;
        Ok((model, inputs, dimensions))
    })();
    let (model, inputs, dimensions) = match parsed {
        Ok(parsed) => parsed,
        Err(b) => return refuse(&b),
    };
    if !shared.knows(&model) {
        return error_response(
            404,
            &format!("model \"{model}\" not found, try pulling it first"),
            None,
        );
    }
    let tokens: u64 = inputs.iter().map(|i| chat::tokens(i).max(1)).sum();
    let answer = vectors_response(shared, &model, &inputs, dimensions, |vectors| {
        let mut object = Map::new();
        object.insert("model".into(), json!(model));
        object.insert("embeddings".into(), json!(vectors));
        object.insert("total_duration".into(), json!(2_000_000 + tokens * 100_000));
        object.insert("load_duration".into(), json!(1_000_000));
        if tokens > 0 {
            object.insert("prompt_eval_count".into(), json!(tokens));
        }
        Value::Object(object)
    });
    answer.await
}

/// `POST /api/embeddings`, the older single-text form.
pub(crate) async fn embeddings(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(refusal) = unauthorized(shared, headers) {
        return refusal;
    }
    let parsed = (|| -> Checked<(String, String)> {
        let body = parse_object(body)?;
        let model = model_of(&body, "EmbeddingRequest")?;
        let prompt = match body.get("prompt") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(p)) => p.clone(),
            Some(other) => return Err(unmarshal(other, "EmbeddingRequest", "prompt", "string")),
        };
        Ok((model, prompt))
    })();
    let (model, prompt) = match parsed {
        Ok(parsed) => parsed,
        Err(b) => return refuse(&b),
    };
    if !shared.knows(&model) {
        return error_response(
            404,
            &format!("model \"{model}\" not found, try pulling it first"),
            None,
        );
    }
    let inputs = if prompt.is_empty() {
        Vec::new()
    } else {
        vec![prompt]
    };
    vectors_response(
        shared,
        &model,
        &inputs,
        None,
        |vectors| json!({"embedding": vectors.first().cloned().unwrap_or_default()}),
    )
    .await
}

async fn vectors_response(
    shared: &Arc<Shared>,
    model: &str,
    inputs: &[String],
    dimensions: Option<usize>,
    shape: impl FnOnce(&[Vec<f32>]) -> Value,
) -> Response {
    match server::vectors(shared, inputs, dimensions).await {
        Vectors::Fail(failure) => fail(&failure, model),
        Vectors::Mismatch(m) => error_response(500, &format!("model peer: {m}"), None),
        Vectors::Ready {
            vectors,
            malformed,
            cut_after,
        } => server::finished(
            shared,
            200,
            "application/json; charset=utf-8",
            shape(&vectors).to_string(),
            malformed,
            cut_after,
        ),
    }
}

/// `GET /api/tags`.
pub(crate) fn tags(shared: &Shared, headers: &HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(shared, headers) {
        return refusal;
    }
    let models: Vec<Value> = shared
        .model_list()
        .into_iter()
        .map(|name| {
            let name = if name.contains(':') {
                name
            } else {
                format!("{name}:latest")
            };
            let family = name
                .split([':', '-', '.'])
                .next()
                .unwrap_or("llama")
                .to_owned();
            json!({
                "name": name,
                "model": name,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 2_019_393_189_u64,
                "digest": digest(&name),
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": family,
                    "families": [family],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M"
                }
            })
        })
        .collect();
    server::json_response(200, &json!({ "models": models }))
}

/// A SHA-256-looking digest, the same for the same name.
fn digest(name: &str) -> String {
    let seed = name
        .bytes()
        .fold(0_u64, |h, b| crate::ids::mix(h ^ u64::from(b)));
    (0..4_u64)
        .map(|i| format!("{:016x}", crate::ids::mix(seed.wrapping_add(i))))
        .collect()
}

/// `GET /api/version`.
pub(crate) fn version() -> Response {
    server::json_response(200, &json!({"version": "0.12.0"}))
}

/// `GET /`: Ollama's liveness answer.
pub(crate) fn root() -> Response {
    server::bytes_response(
        200,
        "text/plain; charset=utf-8",
        Bytes::from_static(b"Ollama is running"),
    )
}

/// An unknown path (gin's plain-text 404).
pub(crate) fn not_found() -> Response {
    server::bytes_response(404, "text/plain", Bytes::from_static(b"404 page not found"))
}

/// A known path with the wrong method.
pub(crate) fn method_not_allowed() -> Response {
    server::bytes_response(
        405,
        "text/plain",
        Bytes::from_static(b"405 method not allowed"),
    )
}
