//! Anthropic's messages API: `POST /v1/messages` (and `GET /v1/models`).

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::chat::{
    self, Answer, ChatCall, Effects, Failure, Finish, Format, Outcome, Role, ToolChoice, ToolDef,
    Turn,
};
use crate::server::{self, Shared};
use crate::stream::{self, Event, Framing, Plan};

/// A refused request: status, error type and message.
#[derive(Debug)]
struct Bad {
    status: u16,
    kind: &'static str,
    message: String,
}

type Checked<T> = Result<T, Bad>;

fn bad(message: impl Into<String>) -> Bad {
    Bad {
        status: 400,
        kind: "invalid_request_error",
        message: message.into(),
    }
}

fn required(path: &str) -> Bad {
    bad(format!("{path}: Field required"))
}

/// Anthropic's error body, with a request id.
pub(crate) fn error_response(
    status: u16,
    kind: &str,
    message: &str,
    request_id: Option<&str>,
) -> Response {
    let request_id =
        request_id.map_or_else(|| "req_011CmodelpeerRequest0".to_owned(), str::to_owned);
    let mut response = server::json_response(
        status,
        &json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": request_id
        }),
    );
    server::set_header(&mut response, "request-id", &request_id);
    response
}

fn refuse(b: &Bad, shared: &Shared) -> Response {
    error_response(
        b.status,
        b.kind,
        &b.message,
        Some(&shared.ids.anthropic_request()),
    )
}

/// The error type and message for a status.
fn failure_parts(failure: &Failure) -> (&'static str, String) {
    let (kind, message) = match failure.status {
        400 => ("invalid_request_error", "Invalid request."),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API.",
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => (
            "not_found_error",
            "The requested resource could not be found.",
        ),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit. Please try again later.",
        ),
        500 => ("api_error", "Internal server error"),
        529 => ("overloaded_error", "Overloaded"),
        s if s >= 500 => ("api_error", "Internal server error"),
        _ => ("invalid_request_error", "Invalid request."),
    };
    (
        kind,
        failure
            .message
            .clone()
            .unwrap_or_else(|| message.to_owned()),
    )
}

fn fail(failure: &Failure, shared: &Shared) -> Response {
    let (kind, message) = failure_parts(failure);
    let response = error_response(
        failure.status,
        kind,
        &message,
        Some(&shared.ids.anthropic_request()),
    );
    server::with_retry_after(response, failure)
}

/// `None` when the headers let the request go on, else the refusal.
fn check_headers(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if let Some(key) = shared.api_key() {
        let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let refusal = match given {
            None => Some("x-api-key header is required"),
            Some(given) if given != key => Some("invalid x-api-key"),
            Some(_) => None,
        };
        if let Some(message) = refusal {
            return Some(error_response(
                401,
                "authentication_error",
                message,
                Some(&shared.ids.anthropic_request()),
            ));
        }
    }
    let version = headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    if version.is_none() {
        return Some(error_response(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
            Some(&shared.ids.anthropic_request()),
        ));
    }
    None
}

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "search_result",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
];

/// Text blocks of `system` or of a tool result: a string or a list of
/// blocks, of which the text ones are kept.
fn text_of(value: &Value, path: &str) -> Checked<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let at = format!("{path}.{i}");
                let Some(block) = block.as_object() else {
                    return Err(bad(format!(
                        "{at}: Input should be a valid dictionary or object to extract fields from"
                    )));
                };
                match block.get("type").and_then(Value::as_str) {
                    None => return Err(required(&format!("{at}.type"))),
                    Some("text") => match block.get("text") {
                        Some(Value::String(t)) => texts.push(t.clone()),
                        Some(_) => {
                            return Err(bad(format!("{at}.text: Input should be a valid string")));
                        }
                        None => return Err(required(&format!("{at}.text"))),
                    },
                    Some(_) => {}
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(bad(format!("{path}: Input should be a valid string"))),
    }
}

/// Parses `messages`, checking Anthropic's rules for tool use: every
/// `tool_result` answers a `tool_use` of the message just before, and a
/// message after `tool_use` blocks answers all of them.
fn parse_messages(body: &Map<String, Value>) -> Checked<Vec<Turn>> {
    let messages = match body.get("messages") {
        None => return Err(required("messages")),
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err(bad("messages: Input should be a valid list")),
    };
    if messages.is_empty() {
        return Err(bad(
            "messages: List should have at least 1 item after validation, not 0",
        ));
    }
    let mut turns = Vec::new();
    // The tool_use ids of the previous message, with its index.
    let mut previous_uses: (usize, Vec<String>) = (0, Vec::new());
    let last = messages.len() - 1;
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages.{i}");
        let Some(message) = message.as_object() else {
            return Err(bad(format!(
                "{at}: Input should be a valid dictionary or object to extract fields from"
            )));
        };
        let role = match message.get("role") {
            None => return Err(required(&format!("{at}.role"))),
            Some(Value::String(r)) if r == "user" => Role::User,
            Some(Value::String(r)) if r == "assistant" => Role::Assistant,
            Some(_) => {
                return Err(bad(format!(
                    "{at}.role: Input should be 'user' or 'assistant'"
                )));
            }
        };
        let content = match message.get("content") {
            None => return Err(required(&format!("{at}.content"))),
            Some(content) => content,
        };
        let mut texts = Vec::new();
        let mut uses = Vec::new();
        let mut results = Vec::new();
        match content {
            Value::String(text) => {
                if text.is_empty() && !(role == Role::Assistant && i == last) {
                    return Err(bad(format!(
                        "{at}: all messages must have non-empty content except for the optional final assistant message"
                    )));
                }
                texts.push(text.clone());
            }
            Value::Array(blocks) => {
                if blocks.is_empty() && !(role == Role::Assistant && i == last) {
                    return Err(bad(format!(
                        "{at}: all messages must have non-empty content except for the optional final assistant message"
                    )));
                }
                for (j, block) in blocks.iter().enumerate() {
                    let at = format!("{at}.content.{j}");
                    let Some(block) = block.as_object() else {
                        return Err(bad(format!(
                            "{at}: Input should be a valid dictionary or object to extract fields from"
                        )));
                    };
                    let kind = match block.get("type") {
                        None => return Err(required(&format!("{at}.type"))),
                        Some(Value::String(kind)) => kind.as_str(),
                        Some(_) => {
                            return Err(bad(format!("{at}.type: Input should be a valid string")));
                        }
                    };
                    if !BLOCK_TYPES.contains(&kind) {
                        let expected: Vec<String> =
                            BLOCK_TYPES.iter().map(|t| format!("'{t}'")).collect();
                        return Err(bad(format!(
                            "{at}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {}",
                            expected.join(", ")
                        )));
                    }
                    match kind {
                        "text" => match block.get("text") {
                            None => return Err(required(&format!("{at}.text"))),
                            Some(Value::String(t)) if t.is_empty() => {
                                return Err(bad("messages: text content blocks must be non-empty"));
                            }
                            Some(Value::String(t)) => texts.push(t.clone()),
                            Some(_) => {
                                return Err(bad(format!(
                                    "{at}.text: Input should be a valid string"
                                )));
                            }
                        },
                        "tool_use" => {
                            if role != Role::Assistant {
                                return Err(bad(format!(
                                    "{at}: `tool_use` blocks can only be in `assistant` messages"
                                )));
                            }
                            let id = match block.get("id") {
                                None => return Err(required(&format!("{at}.id"))),
                                Some(Value::String(id)) => id.clone(),
                                Some(_) => {
                                    return Err(bad(format!(
                                        "{at}.id: Input should be a valid string"
                                    )));
                                }
                            };
                            match block.get("name") {
                                None => return Err(required(&format!("{at}.name"))),
                                Some(Value::String(_)) => {}
                                Some(_) => {
                                    return Err(bad(format!(
                                        "{at}.name: Input should be a valid string"
                                    )));
                                }
                            }
                            match block.get("input") {
                                None => return Err(required(&format!("{at}.input"))),
                                Some(Value::Object(_)) => {}
                                Some(_) => {
                                    return Err(bad(format!(
                                        "{at}.input: Input should be a valid dictionary"
                                    )));
                                }
                            }
                            if uses.contains(&id) {
                                return Err(bad(format!("{at}: `tool_use` ids must be unique")));
                            }
                            uses.push(id);
                        }
                        "tool_result" => {
                            if role != Role::User {
                                return Err(bad(format!(
                                    "{at}: `tool_result` blocks can only be in `user` messages"
                                )));
                            }
                            let id = match block.get("tool_use_id") {
                                None => return Err(required(&format!("{at}.tool_use_id"))),
                                Some(Value::String(id)) => id.clone(),
                                Some(_) => {
                                    return Err(bad(format!(
                                        "{at}.tool_use_id: Input should be a valid string"
                                    )));
                                }
                            };
                            if !previous_uses.1.contains(&id) {
                                return Err(bad(format!(
                                    "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                                )));
                            }
                            if let Some(flag) = block.get("is_error")
                                && !flag.is_boolean()
                            {
                                return Err(bad(format!(
                                    "{at}.is_error: Input should be a valid boolean"
                                )));
                            }
                            let text = match block.get("content") {
                                None | Some(Value::Null) => String::new(),
                                Some(content) => text_of(content, &format!("{at}.content"))?,
                            };
                            results.push((id, text));
                        }
                        _ => {}
                    }
                }
            }
            _ => return Err(bad(format!("{at}.content: Input should be a valid list"))),
        }
        let (use_index, open) = &previous_uses;
        let missing: Vec<&String> = open
            .iter()
            .filter(|id| !results.iter().any(|(r, _)| r == *id))
            .collect();
        if !missing.is_empty() {
            let ids: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(bad(format!(
                "messages.{use_index}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                ids.join(", ")
            )));
        }
        for (_, text) in results {
            turns.push(Turn {
                role: Role::Tool,
                text,
            });
        }
        if !texts.is_empty() || role == Role::Assistant {
            turns.push(Turn {
                role,
                text: texts.join("\n"),
            });
        }
        previous_uses = (i, uses);
    }
    Ok(turns)
}

fn parse_tools(body: &Map<String, Value>) -> Checked<Vec<ToolDef>> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(bad("tools: Input should be a valid list")),
    };
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools.{i}");
        let Some(tool) = tool.as_object() else {
            return Err(bad(format!(
                "{at}: Input should be a valid dictionary or object to extract fields from"
            )));
        };
        let name = match tool.get("name") {
            None => return Err(required(&format!("{at}.name"))),
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err(bad(format!("{at}.name: Input should be a valid string"))),
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(format!(
                "{at}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )));
        }
        // Server tools (`web_search_20250305`, ...) name a version type and
        // take no schema.
        let server_tool = tool
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "custom");
        if server_tool {
            continue;
        }
        if let Some(description) = tool.get("description")
            && !description.is_string()
        {
            return Err(bad(format!(
                "{at}.description: Input should be a valid string"
            )));
        }
        let schema = match tool.get("input_schema") {
            None => return Err(required(&format!("{at}.input_schema"))),
            Some(Value::Object(schema)) => schema,
            Some(_) => {
                return Err(bad(format!(
                    "{at}.input_schema: Input should be a valid dictionary"
                )));
            }
        };
        match schema.get("type") {
            None => return Err(required(&format!("{at}.input_schema.type"))),
            Some(Value::String(t)) if t == "object" => {}
            Some(_) => {
                return Err(bad(format!(
                    "{at}.input_schema.type: Input should be 'object'"
                )));
            }
        }
        out.push(ToolDef {
            name,
            parameters: Value::Object(schema.clone()),
        });
    }
    Ok(out)
}

fn parse_tool_choice(body: &Map<String, Value>, tools: &[ToolDef]) -> Checked<ToolChoice> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(Value::Object(choice)) => choice,
        Some(_) => {
            return Err(bad(
                "tool_choice: Input should be a valid dictionary or object to extract fields from",
            ));
        }
    };
    if body.get("tools").is_none_or(Value::is_null) {
        return Err(bad(
            "tool_choice may only be specified while providing tools",
        ));
    }
    match choice.get("type").and_then(Value::as_str) {
        None => Err(required("tool_choice.type")),
        Some("auto") => Ok(ToolChoice::Auto),
        Some("none") => Ok(ToolChoice::None),
        Some("any") => Ok(ToolChoice::Any),
        Some("tool") => match choice.get("name") {
            None => Err(required("tool_choice.tool.name")),
            Some(Value::String(name)) => {
                if !tools.iter().any(|t| &t.name == name) {
                    return Err(bad(format!(
                        "tool_choice.tool.name: tool '{name}' is not one of the provided tools"
                    )));
                }
                Ok(ToolChoice::Named(name.clone()))
            }
            Some(_) => Err(bad("tool_choice.tool.name: Input should be a valid string")),
        },
        Some(other) => Err(bad(format!(
            "tool_choice: Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        ))),
    }
}

fn parse(body: &[u8]) -> Checked<ChatCall> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("The request body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(bad(
            "Input should be a valid dictionary or object to extract fields from",
        ));
    };
    if let Some(extra) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("{extra}: Extra inputs are not permitted")));
    }
    let model = match body.get("model") {
        None => return Err(required("model")),
        Some(Value::String(model)) => model.clone(),
        Some(_) => return Err(bad("model: Input should be a valid string")),
    };
    let max_tokens = match body.get("max_tokens") {
        None => return Err(required("max_tokens")),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => {
            let n = n.as_i64().unwrap_or(i64::MAX);
            if n < 1 {
                return Err(bad(
                    "max_tokens: Input should be greater than or equal to 1",
                ));
            }
            u64::try_from(n).unwrap_or(u64::MAX)
        }
        Some(_) => return Err(bad("max_tokens: Input should be a valid integer")),
    };
    let mut turns = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => turns.push(Turn {
            role: Role::System,
            text: text_of(system, "system")?,
        }),
    }
    turns.extend(parse_messages(&body)?);
    match body.get("temperature") {
        None | Some(Value::Null) => {}
        Some(Value::Number(t)) => {
            let t = t.as_f64().unwrap_or(0.0);
            if t > 1.0 {
                return Err(bad("temperature: Input should be less than or equal to 1"));
            }
            if t < 0.0 {
                return Err(bad(
                    "temperature: Input should be greater than or equal to 0",
                ));
            }
        }
        Some(_) => return Err(bad("temperature: Input should be a valid number")),
    }
    let stop = match body.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut stop = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => stop.push(s.clone()),
                    _ => {
                        return Err(bad(format!(
                            "stop_sequences.{i}: Input should be a valid string"
                        )));
                    }
                }
            }
            stop
        }
        Some(_) => return Err(bad("stop_sequences: Input should be a valid list")),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream: Input should be a valid boolean")),
    };
    let tools = parse_tools(&body)?;
    let tool_choice = parse_tool_choice(&body, &tools)?;
    Ok(ChatCall {
        model,
        turns,
        tools,
        tool_choice,
        format: Format::Text,
        max_tokens: Some(max_tokens),
        stop,
        stream,
    })
}

fn stop_reason(finish: &Finish) -> (String, Value) {
    match finish {
        Finish::Stop => ("end_turn".to_owned(), Value::Null),
        Finish::Length => ("max_tokens".to_owned(), Value::Null),
        Finish::ToolCalls => ("tool_use".to_owned(), Value::Null),
        Finish::StopSequence(s) => ("stop_sequence".to_owned(), json!(s)),
        Finish::ContentFilter => ("refusal".to_owned(), Value::Null),
        Finish::Other(other) => (other.clone(), Value::Null),
    }
}

/// `POST /v1/messages`.
pub(crate) async fn messages(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(refusal) = check_headers(shared, headers) {
        return refusal;
    }
    let call = match parse(body) {
        Ok(call) => call,
        Err(b) => return refuse(&b, shared),
    };
    if !shared.knows(&call.model) {
        return error_response(
            404,
            "not_found_error",
            &format!("model: {}", call.model),
            Some(&shared.ids.anthropic_request()),
        );
    }
    let reply = shared.next_chat().await;
    let request_id = shared.ids.anthropic_request();
    match chat::resolve(&call, reply) {
        Err(mismatch) => error_response(
            500,
            "api_error",
            &format!("model peer: {mismatch}"),
            Some(&request_id),
        ),
        Ok(Outcome::Fail(failure)) => fail(&failure, shared),
        Ok(Outcome::Answer(answer, effects)) => {
            if let Some((_, failure)) = &effects.error_after
                && !call.stream
            {
                return fail(failure, shared);
            }
            let answer = with_ids(answer, shared);
            let mut response = if call.stream {
                let plan = plan(&call, &answer, &effects, shared);
                let body = stream::body(plan, &effects, shared);
                let mut r = server::body_response(200, "text/event-stream; charset=utf-8", body);
                server::set_header(&mut r, "cache-control", "no-cache");
                r
            } else {
                let object = message(&call, &answer, shared);
                server::finished(
                    shared,
                    200,
                    "application/json",
                    object.to_string(),
                    effects.malformed,
                    effects.cut_after,
                )
            };
            server::set_header(&mut response, "request-id", &request_id);
            response
        }
    }
}

fn with_ids(mut answer: Answer, shared: &Shared) -> Answer {
    for call in &mut answer.tool_calls {
        if call.id.is_none() {
            call.id = Some(shared.ids.anthropic_tool());
        }
    }
    answer
}

/// The `message` object of a non-streaming answer.
fn message(call: &ChatCall, answer: &Answer, shared: &Shared) -> Value {
    let mut content = Vec::new();
    if !answer.text.is_empty() {
        content.push(json!({"type": "text", "text": answer.text}));
    }
    for tool in &answer.tool_calls {
        content.push(
            json!({"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.arguments}),
        );
    }
    let (reason, sequence) = stop_reason(&answer.finish);
    json!({
        "id": shared.ids.anthropic_message(),
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": call.model,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens}
    })
}

/// The events of a streamed answer, `message_start` to `message_stop`.
fn plan(call: &ChatCall, answer: &Answer, effects: &Effects, shared: &Shared) -> Plan {
    let mut events = vec![Event::new(
        "message_start",
        json!({
            "type": "message_start",
            "message": {
                "id": shared.ids.anthropic_message(),
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": call.model,
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1}
            }
        })
        .to_string(),
    )];
    let mut malform_at = None;
    let mut index = 0;
    let mut pinged = false;
    let mut block = |events: &mut Vec<Event>, start: Value, deltas: Vec<Value>, index: usize| {
        events.push(Event::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start})
                .to_string(),
        ));
        if !pinged {
            events.push(Event::new("ping", json!({"type": "ping"}).to_string()));
            pinged = true;
        }
        for delta in deltas {
            if malform_at.is_none() {
                malform_at = Some(events.len());
            }
            events.push(Event::new(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}).to_string(),
            ));
        }
        events.push(Event::new(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}).to_string(),
        ));
    };
    if !answer.text.is_empty() {
        let deltas = chat::pieces(&answer.text)
            .into_iter()
            .map(|piece| json!({"type": "text_delta", "text": piece}))
            .collect();
        block(
            &mut events,
            json!({"type": "text", "text": ""}),
            deltas,
            index,
        );
        index += 1;
    }
    for tool in &answer.tool_calls {
        let arguments = tool.arguments.to_string();
        let mut deltas = vec![json!({"type": "input_json_delta", "partial_json": ""})];
        deltas.extend(
            chat::fragments(&arguments)
                .into_iter()
                .map(|f| json!({"type": "input_json_delta", "partial_json": f})),
        );
        block(
            &mut events,
            json!({"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}),
            deltas,
            index,
        );
        index += 1;
    }
    if !pinged {
        events.push(Event::new("ping", json!({"type": "ping"}).to_string()));
    }
    let (reason, sequence) = stop_reason(&answer.finish);
    events.push(Event::new(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": {"output_tokens": answer.output_tokens}
        })
        .to_string(),
    ));
    events.push(Event::new(
        "message_stop",
        json!({"type": "message_stop"}).to_string(),
    ));
    let error = effects.error_after.as_ref().map(|(_, failure)| {
        let (kind, message) = failure_parts(failure);
        Event::new(
            "error",
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
        )
    });
    Plan {
        framing: Framing::Named,
        malform_at: malform_at.unwrap_or(0),
        events,
        error,
    }
}

/// `GET /v1/models` with `anthropic-version`.
pub(crate) fn models(shared: &Shared, headers: &HeaderMap) -> Response {
    if let Some(refusal) = check_headers(shared, headers) {
        return refusal;
    }
    let data: Vec<Value> = shared
        .model_list()
        .into_iter()
        .map(|id| {
            json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    server::json_response(
        200,
        &json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
    )
}

/// An unknown path or method.
pub(crate) fn not_found(shared: &Shared) -> Response {
    error_response(
        404,
        "not_found_error",
        "Not Found",
        Some(&shared.ids.anthropic_request()),
    )
}
