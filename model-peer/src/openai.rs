//! The OpenAI-compatible protocol: `POST /v1/chat/completions`,
//! `POST /v1/embeddings`, `GET /v1/models`.

use std::sync::Arc;

use axum::http::{HeaderMap, Method};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::chat::{
    self, Answer, ChatCall, Effects, Failure, Finish, Format, Outcome, Role, ToolChoice, ToolDef,
    Turn,
};
use crate::ids::unix_seconds;
use crate::server::{self, Shared, Vectors};
use crate::stream::{self, Event, Framing, Plan};

/// A refused request: status and the fields of OpenAI's error object.
#[derive(Debug)]
pub(crate) struct Bad {
    status: u16,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

type Checked<T> = Result<T, Bad>;

fn bad(message: impl Into<String>, param: Option<&str>, code: Option<&'static str>) -> Bad {
    Bad {
        status: 400,
        message: message.into(),
        kind: "invalid_request_error",
        param: param.map(str::to_owned),
        code,
    }
}

fn missing(param: &str) -> Bad {
    bad(
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn invalid_type(param: &str, expected: &str, got: &Value) -> Bad {
    bad(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            describe(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

fn invalid_value(param: &str, value: &str, supported: &[&str]) -> Bad {
    bad(
        format!(
            "Invalid value: '{value}'. Supported values are: {}.",
            listing(supported)
        ),
        Some(param),
        Some("invalid_value"),
    )
}

/// `'a'`, `'a' and 'b'`, `'a', 'b', and 'c'`.
fn listing(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

/// How OpenAI names the type of a JSON value in its errors.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The error body of OpenAI's API.
pub(crate) fn error(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    server::json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn refuse(b: &Bad) -> Response {
    error(b.status, &b.message, b.kind, b.param.as_deref(), b.code)
}

/// The error object for a scripted or peer-made failure.
fn failure_object(failure: &Failure, model: &str) -> Value {
    let (kind, code, message): (&str, Option<&str>, String) = match failure.status {
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided: sk-test****. You can find your API key at https://platform.openai.com/account/api-keys.".to_owned(),
        ),
        403 => (
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
            "Country, region, or territory not supported".to_owned(),
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            format!("The model `{model}` does not exist or you do not have access to it."),
        ),
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            format!(
                "Rate limit reached for {model} in organization org-modelpeer on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {}s.",
                failure.retry_after.unwrap_or(20)
            ),
        ),
        500 => (
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!".to_owned(),
        ),
        503 => (
            "server_error",
            None,
            "The engine is currently overloaded, please try again later.".to_owned(),
        ),
        s if s >= 500 => ("server_error", None, format!("Server error ({s}).")),
        s => ("invalid_request_error", None, format!("Request refused ({s}).")),
    };
    let message = failure.message.clone().unwrap_or(message);
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn fail(failure: &Failure, model: &str, shared: &Shared) -> Response {
    let mut response = server::json_response(failure.status, &failure_object(failure, model));
    server::set_header(&mut response, "x-request-id", &shared.ids.openai_request());
    server::with_retry_after(response, failure)
}

/// `None` when the request may go on, else the 401 to answer.
fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = shared.api_key()?;
    match server::bearer(headers) {
        Some(given) if given == key => None,
        Some(given) => {
            // As OpenAI shows it: the first three and last four characters.
            let chars: Vec<char> = given.chars().collect();
            let shown: String = if chars.len() > 8 {
                let stars = "*".repeat(chars.len() - 7);
                let head: String = chars[..3].iter().collect();
                let tail: String = chars[chars.len() - 4..].iter().collect();
                format!("{head}{stars}{tail}")
            } else {
                "*".repeat(chars.len())
            };
            Some(error(
                401,
                &format!(
                    "Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys."
                ),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ))
        }
        None => Some(error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )),
    }
}

fn parse_body(body: &[u8]) -> Checked<Map<String, Value>> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        bad(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
            None,
            None,
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(invalid_type("body", "an object", &other)),
    }
}

fn check_known(body: &Map<String, Value>, known: &[&str]) -> Checked<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(bad(
            format!("Unrecognized request argument supplied: {key}"),
            None,
            None,
        )),
        None => Ok(()),
    }
}

fn model_of(body: &Map<String, Value>) -> Checked<String> {
    match body.get("model") {
        None | Some(Value::Null) => Err(bad("you must provide a model parameter", None, None)),
        Some(Value::String(model)) => Ok(model.clone()),
        Some(other) => Err(invalid_type("model", "a string", other)),
    }
}

fn number(body: &Map<String, Value>, name: &str, min: f64, max: f64) -> Checked<Option<f64>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x > max {
                Err(bad(
                    format!(
                        "Invalid '{name}': decimal above maximum value. Expected a value <= {max}, but got {n} instead."
                    ),
                    Some(name),
                    Some("decimal_above_max_value"),
                ))
            } else if x < min {
                Err(bad(
                    format!(
                        "Invalid '{name}': decimal below minimum value. Expected a value >= {min}, but got {n} instead."
                    ),
                    Some(name),
                    Some("decimal_below_min_value"),
                ))
            } else {
                Ok(Some(x))
            }
        }
        Some(other) => Err(invalid_type(name, "a decimal", other)),
    }
}

fn integer(body: &Map<String, Value>, name: &str, min: i64) -> Checked<Option<i64>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            let x = n.as_i64().unwrap_or(i64::MAX);
            if x < min {
                Err(bad(
                    format!(
                        "Invalid '{name}': integer below minimum value. Expected a value >= {min}, but got {x} instead."
                    ),
                    Some(name),
                    Some("integer_below_min_value"),
                ))
            } else {
                Ok(Some(x))
            }
        }
        Some(other) => Err(invalid_type(name, "an integer", other)),
    }
}

fn boolean(body: &Map<String, Value>, name: &str) -> Checked<Option<bool>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid_type(name, "a boolean", other)),
    }
}

/// The text of a message's `content` (a string or text parts).
fn content_text(content: &Value, param: &str, parts_allowed: &[&str]) -> Checked<String> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                let at = format!("{param}[{i}]");
                let Some(part) = part.as_object() else {
                    return Err(invalid_type(&at, "an object", part));
                };
                let kind = match part.get("type") {
                    None => return Err(missing(&format!("{at}.type"))),
                    Some(Value::String(kind)) => kind.as_str(),
                    Some(other) => {
                        return Err(invalid_type(&format!("{at}.type"), "a string", other));
                    }
                };
                if !parts_allowed.contains(&kind) {
                    return Err(invalid_value(&format!("{at}.type"), kind, parts_allowed));
                }
                if kind == "text" || kind == "refusal" {
                    let field = if kind == "text" { "text" } else { "refusal" };
                    match part.get(field) {
                        None => return Err(missing(&format!("{at}.{field}"))),
                        Some(Value::String(text)) => texts.push(text.clone()),
                        Some(other) => {
                            return Err(invalid_type(&format!("{at}.{field}"), "a string", other));
                        }
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        other => Err(invalid_type(
            param,
            "one of a string or array of objects",
            other,
        )),
    }
}

const ROLES: &[&str] = &[
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];

/// Parses the `messages` array into turns, with OpenAI's rules for tool
/// calls and their results.
fn parse_messages(body: &Map<String, Value>) -> Checked<Vec<Turn>> {
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err(missing("messages")),
        Some(Value::Array(messages)) => messages,
        Some(other) => return Err(invalid_type("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    let mut turns = Vec::new();
    // The assistant message whose tool calls are being answered: its
    // index and the ids not answered yet.
    let mut open: Option<(usize, Vec<String>)> = None;
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Some(message) = message.as_object() else {
            return Err(invalid_type(&at, "an object", message));
        };
        let role = match message.get("role") {
            None => return Err(missing(&format!("{at}.role"))),
            Some(Value::String(role)) => role.as_str(),
            Some(other) => return Err(invalid_type(&format!("{at}.role"), "a string", other)),
        };
        if !ROLES.contains(&role) {
            return Err(invalid_value(&format!("{at}.role"), role, ROLES));
        }
        if let Some(name) = message.get("name")
            && !name.is_string()
        {
            return Err(invalid_type(&format!("{at}.name"), "a string", name));
        }
        if role != "tool"
            && let Some((index, unanswered)) = open.take()
            && !unanswered.is_empty()
        {
            return Err(unanswered_calls(index, &unanswered));
        }
        let content = message.get("content");
        let param = format!("{at}.content");
        match role {
            "system" | "developer" | "user" => {
                let allowed: &[&str] = if role == "user" {
                    &["text", "image_url", "input_audio", "file"]
                } else {
                    &["text"]
                };
                let text = match content {
                    None => return Err(missing(&param)),
                    Some(content) => content_text(content, &param, allowed)?,
                };
                let role = if role == "user" {
                    Role::User
                } else {
                    Role::System
                };
                turns.push(Turn { role, text });
            }
            "assistant" => {
                let text = match content {
                    None | Some(Value::Null) => None,
                    Some(content) => Some(content_text(content, &param, &["text", "refusal"])?),
                };
                let ids = parse_tool_calls(message.get("tool_calls"), &at)?;
                if text.is_none() && ids.is_empty() && message.get("function_call").is_none() {
                    return Err(bad(
                        "Invalid value for 'content': expected a string, got null.",
                        Some(&format!("messages.[{i}].content")),
                        None,
                    ));
                }
                if !ids.is_empty() {
                    open = Some((i, ids));
                }
                turns.push(Turn {
                    role: Role::Assistant,
                    text: text.unwrap_or_default(),
                });
            }
            "tool" => {
                let id = match message.get("tool_call_id") {
                    None | Some(Value::Null) => {
                        return Err(bad(
                            "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
                            Some(&format!("messages.[{i}].tool_call_id")),
                            None,
                        ));
                    }
                    Some(Value::String(id)) => id.clone(),
                    Some(other) => {
                        return Err(invalid_type(
                            &format!("{at}.tool_call_id"),
                            "a string",
                            other,
                        ));
                    }
                };
                let Some((_, unanswered)) = open.as_mut() else {
                    return Err(bad(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        Some(&format!("messages.[{i}].role")),
                        None,
                    ));
                };
                match unanswered.iter().position(|u| *u == id) {
                    Some(found) => {
                        unanswered.remove(found);
                    }
                    None => {
                        return Err(bad(
                            format!(
                                "Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of previous message."
                            ),
                            Some(&format!("messages.[{i}].tool_call_id")),
                            None,
                        ));
                    }
                }
                let text = match content {
                    None => return Err(missing(&param)),
                    Some(content) => content_text(content, &param, &["text"])?,
                };
                turns.push(Turn {
                    role: Role::Tool,
                    text,
                });
            }
            _ => {
                // `function`, the deprecated form of a tool result.
                let text = match content {
                    None | Some(Value::Null) => String::new(),
                    Some(content) => content_text(content, &param, &["text"])?,
                };
                turns.push(Turn {
                    role: Role::Tool,
                    text,
                });
            }
        }
    }
    if let Some((index, unanswered)) = open
        && !unanswered.is_empty()
    {
        return Err(unanswered_calls(index, &unanswered));
    }
    Ok(turns)
}

fn unanswered_calls(index: usize, ids: &[String]) -> Bad {
    bad(
        format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            ids.join(", ")
        ),
        Some(&format!("messages.[{index}].role")),
        None,
    )
}

/// Checks an assistant message's `tool_calls`; returns their ids.
fn parse_tool_calls(calls: Option<&Value>, at: &str) -> Checked<Vec<String>> {
    let calls = match calls {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(calls)) => calls,
        Some(other) => return Err(invalid_type(&format!("{at}.tool_calls"), "an array", other)),
    };
    let mut ids = Vec::new();
    for (j, call) in calls.iter().enumerate() {
        let at = format!("{at}.tool_calls[{j}]");
        let Some(call) = call.as_object() else {
            return Err(invalid_type(&at, "an object", call));
        };
        let text = |name: &str| -> Checked<String> {
            match call.get(name) {
                None => Err(missing(&format!("{at}.{name}"))),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(invalid_type(&format!("{at}.{name}"), "a string", other)),
            }
        };
        let id = text("id")?;
        let kind = text("type")?;
        if kind != "function" {
            return Err(invalid_value(&format!("{at}.type"), &kind, &["function"]));
        }
        let function = match call.get("function") {
            None => return Err(missing(&format!("{at}.function"))),
            Some(Value::Object(function)) => function,
            Some(other) => return Err(invalid_type(&format!("{at}.function"), "an object", other)),
        };
        for field in ["name", "arguments"] {
            match function.get(field) {
                None => return Err(missing(&format!("{at}.function.{field}"))),
                Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(invalid_type(
                        &format!("{at}.function.{field}"),
                        "a string",
                        other,
                    ));
                }
            }
        }
        ids.push(id);
    }
    Ok(ids)
}

fn check_name(name: &str, param: &str) -> Checked<()> {
    if name.chars().count() > 64 {
        return Err(bad(
            format!(
                "Invalid '{param}': string too long. Expected a string with maximum length 64, but got a string with length {} instead.",
                name.chars().count()
            ),
            Some(param),
            Some("string_above_max_length"),
        ));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad(
            format!(
                "Invalid '{param}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            ),
            Some(param),
            Some("invalid_value"),
        ));
    }
    Ok(())
}

fn parse_tools(body: &Map<String, Value>) -> Checked<Vec<ToolDef>> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(other) => return Err(invalid_type("tools", "an array", other)),
    };
    if tools.is_empty() {
        return Err(bad(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("tools"),
            Some("empty_array"),
        ));
    }
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let Some(tool) = tool.as_object() else {
            return Err(invalid_type(&at, "an object", tool));
        };
        match tool.get("type") {
            None => return Err(missing(&format!("{at}.type"))),
            Some(Value::String(kind)) if kind == "function" => {}
            Some(Value::String(kind)) => {
                return Err(invalid_value(&format!("{at}.type"), kind, &["function"]));
            }
            Some(other) => return Err(invalid_type(&format!("{at}.type"), "a string", other)),
        }
        let function = match tool.get("function") {
            None => return Err(missing(&format!("{at}.function"))),
            Some(Value::Object(function)) => function,
            Some(other) => return Err(invalid_type(&format!("{at}.function"), "an object", other)),
        };
        let name = match function.get("name") {
            None => return Err(missing(&format!("{at}.function.name"))),
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(invalid_type(
                    &format!("{at}.function.name"),
                    "a string",
                    other,
                ));
            }
        };
        check_name(&name, &format!("{at}.function.name"))?;
        if let Some(description) = function.get("description")
            && !description.is_string()
        {
            return Err(invalid_type(
                &format!("{at}.function.description"),
                "a string",
                description,
            ));
        }
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(Value::Object(p)) => Value::Object(p.clone()),
            Some(other) => {
                return Err(invalid_type(
                    &format!("{at}.function.parameters"),
                    "an object",
                    other,
                ));
            }
        };
        out.push(ToolDef { name, parameters });
    }
    Ok(out)
}

fn parse_tool_choice(body: &Map<String, Value>, tools: &[ToolDef]) -> Checked<ToolChoice> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(choice) => choice,
    };
    if tools.is_empty() {
        return Err(bad(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            Some("tool_choice"),
            None,
        ));
    }
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Any),
            other => Err(invalid_value(
                "tool_choice",
                other,
                &["none", "auto", "required"],
            )),
        },
        Value::Object(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| missing("tool_choice.function.name"))?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(bad(
                    format!(
                        "Invalid value for 'tool_choice': function '{name}' is not one of the 'tools'."
                    ),
                    Some("tool_choice"),
                    None,
                ));
            }
            Ok(ToolChoice::Named(name.to_owned()))
        }
        other => Err(invalid_type(
            "tool_choice",
            "one of a string or object",
            other,
        )),
    }
}

fn parse_format(body: &Map<String, Value>, turns: &[Turn]) -> Checked<Format> {
    let format = match body.get("response_format") {
        None | Some(Value::Null) => return Ok(Format::Text),
        Some(Value::Object(format)) => format,
        Some(other) => return Err(invalid_type("response_format", "an object", other)),
    };
    let kind = match format.get("type") {
        None => return Err(missing("response_format.type")),
        Some(Value::String(kind)) => kind.as_str(),
        Some(other) => return Err(invalid_type("response_format.type", "a string", other)),
    };
    match kind {
        "text" => Ok(Format::Text),
        "json_object" => {
            if !turns.iter().any(|t| t.text.to_lowercase().contains("json")) {
                return Err(bad(
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                    Some("messages"),
                    None,
                ));
            }
            Ok(Format::JsonObject)
        }
        "json_schema" => {
            let spec = match format.get("json_schema") {
                None => return Err(missing("response_format.json_schema")),
                Some(Value::Object(spec)) => spec,
                Some(other) => {
                    return Err(invalid_type(
                        "response_format.json_schema",
                        "an object",
                        other,
                    ));
                }
            };
            match spec.get("name") {
                None => return Err(missing("response_format.json_schema.name")),
                Some(Value::String(name)) => check_name(name, "response_format.json_schema.name")?,
                Some(other) => {
                    return Err(invalid_type(
                        "response_format.json_schema.name",
                        "a string",
                        other,
                    ));
                }
            }
            match spec.get("schema") {
                None | Some(Value::Null) => Ok(Format::JsonSchema(json!({}))),
                Some(Value::Object(schema)) => {
                    Ok(Format::JsonSchema(Value::Object(schema.clone())))
                }
                Some(other) => Err(invalid_type(
                    "response_format.json_schema.schema",
                    "an object",
                    other,
                )),
            }
        }
        other => Err(invalid_value(
            "response_format.type",
            other,
            &["text", "json_object", "json_schema"],
        )),
    }
}

fn parse_stop(body: &Map<String, Value>) -> Checked<Vec<String>> {
    match body.get("stop") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            if items.len() > 4 {
                return Err(bad(
                    format!(
                        "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {} instead.",
                        items.len()
                    ),
                    Some("stop"),
                    Some("array_above_max_length"),
                ));
            }
            Ok(items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect())
        }
        Some(other) => Err(invalid_type(
            "stop",
            "one of a string or array of strings",
            other,
        )),
    }
}

const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// The parsed request and whether the stream ends with a usage chunk.
fn parse_chat(body: &[u8]) -> Checked<(ChatCall, bool)> {
    let body = parse_body(body)?;
    check_known(&body, CHAT_FIELDS)?;
    let model = model_of(&body)?;
    let turns = parse_messages(&body)?;
    number(&body, "temperature", 0.0, 2.0)?;
    number(&body, "top_p", 0.0, 1.0)?;
    number(&body, "presence_penalty", -2.0, 2.0)?;
    number(&body, "frequency_penalty", -2.0, 2.0)?;
    integer(&body, "n", 1)?;
    integer(&body, "seed", i64::MIN)?;
    boolean(&body, "parallel_tool_calls")?;
    let max_tokens = integer(&body, "max_tokens", 1)?;
    let max_completion = integer(&body, "max_completion_tokens", 1)?;
    let max_tokens = match (max_tokens, max_completion) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let stop = parse_stop(&body)?;
    let stream = boolean(&body, "stream")?.unwrap_or(false);
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(_) if !stream => {
            return Err(bad(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                Some("stream_options"),
                None,
            ));
        }
        Some(Value::Object(options)) => match options.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid_type(
                    "stream_options.include_usage",
                    "a boolean",
                    other,
                ));
            }
        },
        Some(other) => return Err(invalid_type("stream_options", "an object", other)),
    };
    let tools = parse_tools(&body)?;
    if tools.is_empty()
        && body
            .get("parallel_tool_calls")
            .is_some_and(|p| !p.is_null())
    {
        return Err(bad(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.",
            Some("parallel_tool_calls"),
            None,
        ));
    }
    let tool_choice = parse_tool_choice(&body, &tools)?;
    let format = parse_format(&body, &turns)?;
    let call = ChatCall {
        model,
        turns,
        tools,
        tool_choice,
        format,
        max_tokens: max_tokens.map(|m| u64::try_from(m).unwrap_or(0)),
        stop,
        stream,
    };
    Ok((call, include_usage))
}

fn finish_reason(finish: &Finish) -> String {
    match finish {
        Finish::Stop | Finish::StopSequence(_) => "stop".to_owned(),
        Finish::Length => "length".to_owned(),
        Finish::ToolCalls => "tool_calls".to_owned(),
        Finish::ContentFilter => "content_filter".to_owned(),
        Finish::Other(other) => other.clone(),
    }
}

fn usage(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(refusal) = unauthorized(shared, headers) {
        return refusal;
    }
    let (call, include_usage) = match parse_chat(body) {
        Ok(parsed) => parsed,
        Err(b) => return refuse(&b),
    };
    if !shared.knows(&call.model) {
        return fail(
            &Failure {
                status: 404,
                message: None,
                retry_after: None,
            },
            &call.model,
            shared,
        );
    }
    let reply = shared.next_chat().await;
    match chat::resolve(&call, reply) {
        Err(mismatch) => error(
            500,
            &format!("model peer: {mismatch}"),
            "server_error",
            None,
            None,
        ),
        Ok(Outcome::Fail(failure)) => fail(&failure, &call.model, shared),
        Ok(Outcome::Answer(answer, effects)) => {
            if let Some((_, failure)) = &effects.error_after
                && !call.stream
            {
                return fail(failure, &call.model, shared);
            }
            let answer = with_ids(answer, shared);
            let mut response = if call.stream {
                let plan = plan(&call, &answer, &effects, include_usage, shared);
                let body = stream::body(plan, &effects, shared);
                let mut r = server::body_response(200, "text/event-stream; charset=utf-8", body);
                server::set_header(&mut r, "cache-control", "no-cache");
                r
            } else {
                let object = completion(&call, &answer, shared);
                server::finished(
                    shared,
                    200,
                    "application/json",
                    object.to_string(),
                    effects.malformed,
                    effects.cut_after,
                )
            };
            server::set_header(&mut response, "x-request-id", &shared.ids.openai_request());
            response
        }
    }
}

fn with_ids(mut answer: Answer, shared: &Shared) -> Answer {
    for call in &mut answer.tool_calls {
        if call.id.is_none() {
            call.id = Some(shared.ids.openai_call());
        }
    }
    answer
}

fn tool_call_object(call: &chat::ToolUse) -> Value {
    json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments.to_string()}
    })
}

/// The `chat.completion` object.
fn completion(call: &ChatCall, answer: &Answer, shared: &Shared) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if answer.text.is_empty() && !answer.tool_calls.is_empty() {
        Value::Null
    } else {
        json!(answer.text)
    };
    message.insert("content".into(), content);
    if !answer.tool_calls.is_empty() {
        message.insert(
            "tool_calls".into(),
            answer.tool_calls.iter().map(tool_call_object).collect(),
        );
    }
    message.insert("refusal".into(), Value::Null);
    message.insert("annotations".into(), json!([]));
    json!({
        "id": shared.ids.openai_completion(),
        "object": "chat.completion",
        "created": unix_seconds(),
        "model": call.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(&answer.finish)
        }],
        "usage": usage(answer),
        "service_tier": "default"
    })
}

/// The events of a streamed completion.
fn plan(
    call: &ChatCall,
    answer: &Answer,
    effects: &Effects,
    include_usage: bool,
    shared: &Shared,
) -> Plan {
    let id = shared.ids.openai_completion();
    let created = unix_seconds();
    let fingerprint = shared.ids.fingerprint();
    let chunk = |choices: Value, usage: Option<Value>| -> Event {
        let mut object = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": call.model,
            "system_fingerprint": fingerprint,
            "choices": choices
        });
        if include_usage {
            object["usage"] = usage.unwrap_or(Value::Null);
        }
        Event::new("", object.to_string())
    };
    let delta = |delta: Value| {
        chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            None,
        )
    };
    let header = |i: usize, tool: &chat::ToolUse| {
        json!({
            "index": i,
            "id": tool.id,
            "type": "function",
            "function": {"name": tool.name, "arguments": ""}
        })
    };
    let mut events = Vec::new();
    let tools_only = answer.text.is_empty() && !answer.tool_calls.is_empty();
    if tools_only {
        events.push(delta(json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [header(0, &answer.tool_calls[0])]
        })));
    } else {
        events.push(delta(json!({"role": "assistant", "content": ""})));
        for piece in chat::pieces(&answer.text) {
            events.push(delta(json!({"content": piece})));
        }
    }
    for (i, tool) in answer.tool_calls.iter().enumerate() {
        if i > 0 || !tools_only {
            events.push(delta(json!({"tool_calls": [header(i, tool)]})));
        }
        let arguments = tool.arguments.to_string();
        for fragment in chat::fragments(&arguments) {
            events.push(delta(json!({
                "tool_calls": [{"index": i, "function": {"arguments": fragment}}]
            })));
        }
    }
    events.push(chunk(
        json!([{
            "index": 0,
            "delta": {},
            "logprobs": null,
            "finish_reason": finish_reason(&answer.finish)
        }]),
        None,
    ));
    if include_usage {
        events.push(chunk(json!([]), Some(usage(answer))));
    }
    events.push(Event::new("", "[DONE]"));
    let error = effects
        .error_after
        .as_ref()
        .map(|(_, failure)| Event::new("", failure_object(failure, &call.model).to_string()));
    Plan {
        framing: Framing::Data,
        malform_at: 1,
        events,
        error,
    }
}

const EMBEDDING_FIELDS: &[&str] = &["model", "input", "dimensions", "encoding_format", "user"];

/// The texts to embed (token arrays become their numbers as words).
fn parse_input(input: Option<&Value>) -> Checked<Vec<String>> {
    let invalid = || {
        bad(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            None,
            None,
        )
    };
    let tokens = |items: &[Value]| -> Option<String> {
        items
            .iter()
            .map(|t| t.as_u64().map(|n| n.to_string()))
            .collect::<Option<Vec<_>>>()
            .map(|words| words.join(" "))
    };
    match input {
        None | Some(Value::Null) => Err(missing("input")),
        Some(Value::String(s)) if !s.is_empty() => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 2048 => {
            if items
                .iter()
                .all(|i| i.as_str().is_some_and(|s| !s.is_empty()))
            {
                Ok(items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect())
            } else if let Some(text) = tokens(items) {
                Ok(vec![text])
            } else {
                items
                    .iter()
                    .map(|i| match i {
                        Value::Array(t) if !t.is_empty() => tokens(t).ok_or_else(invalid),
                        _ => Err(invalid()),
                    })
                    .collect()
            }
        }
        Some(_) => Err(invalid()),
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(refusal) = unauthorized(shared, headers) {
        return refusal;
    }
    let parsed = (|| -> Checked<(String, Vec<String>, Option<usize>, bool)> {
        let body = parse_body(body)?;
        check_known(&body, EMBEDDING_FIELDS)?;
        let model = model_of(&body)?;
        let inputs = parse_input(body.get("input"))?;
        let dimensions = integer(&body, "dimensions", 1)?.map(|d| usize::try_from(d).unwrap_or(1));
        let base64 = match body.get("encoding_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(f)) if f == "float" => false,
            Some(Value::String(f)) if f == "base64" => true,
            Some(Value::String(f)) => {
                return Err(invalid_value("encoding_format", f, &["float", "base64"]));
            }
            Some(other) => return Err(invalid_type("encoding_format", "a string", other)),
        };
        Ok((model, inputs, dimensions, base64))
    })();
    let (model, inputs, dimensions, base64) = match parsed {
        Ok(parsed) => parsed,
        Err(b) => return refuse(&b),
    };
    if !shared.knows(&model) {
        let failure = Failure {
            status: 404,
            message: None,
            retry_after: None,
        };
        return fail(&failure, &model, shared);
    }
    match server::vectors(shared, &inputs, dimensions).await {
        Vectors::Fail(failure) => fail(&failure, &model, shared),
        Vectors::Mismatch(m) => error(500, &format!("model peer: {m}"), "server_error", None, None),
        Vectors::Ready {
            vectors,
            malformed,
            cut_after,
        } => {
            let data: Vec<Value> = vectors
                .iter()
                .enumerate()
                .map(|(index, vector)| {
                    let embedding = if base64 {
                        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        json!(vector)
                    };
                    json!({"object": "embedding", "embedding": embedding, "index": index})
                })
                .collect();
            let tokens: u64 = inputs.iter().map(|i| chat::tokens(i).max(1)).sum();
            let object = json!({
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
            });
            let mut response = server::finished(
                shared,
                200,
                "application/json",
                object.to_string(),
                malformed,
                cut_after,
            );
            server::set_header(&mut response, "x-request-id", &shared.ids.openai_request());
            response
        }
    }
}

/// `GET /v1/models`.
pub(crate) fn models(shared: &Shared, headers: &HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(shared, headers) {
        return refusal;
    }
    let data: Vec<Value> = shared
        .model_list()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "model-peer"}))
        .collect();
    server::json_response(200, &json!({"object": "list", "data": data}))
}

/// An unknown path.
pub(crate) fn not_found(method: &Method, path: &str) -> Response {
    error(
        404,
        &format!("Invalid URL ({method} {path})"),
        "invalid_request_error",
        None,
        None,
    )
}

/// A known path with the wrong method.
pub(crate) fn method_not_allowed(method: &Method, path: &str) -> Response {
    error(
        405,
        &format!("Invalid method for URL ({method} {path})"),
        "invalid_request_error",
        None,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_like_openai_errors() {
        assert_eq!(listing(&["a", "b"]), "'a' and 'b'");
        assert_eq!(listing(&["a", "b", "c"]), "'a', 'b', and 'c'");
    }
}
