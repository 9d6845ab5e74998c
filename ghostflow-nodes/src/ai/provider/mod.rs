//! The providers: one module per wire protocol, and what they share here:
//! the request on the engine's client, the limits, and how failures become
//! [`NodeError`]s.
//!
//! A provider object holds an [`Endpoint`] (where, which model, which
//! secret, which limits) and nothing else: the HTTP client is the engine's
//! shared one, and the API key is read from the running node's context on
//! every request, so that each execution masks it in what it reports.

pub(crate) mod anthropic;
mod ollama;
mod openai;

use std::fmt;
use std::time::{Duration, SystemTime};

use ghostflow::document::DurationText;
use ghostflow::{Context, NodeError, Secret};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

pub(crate) use self::anthropic::Anthropic;
pub(crate) use self::ollama::Ollama;
pub(crate) use self::openai::OpenAi;
use super::model::{FinishReason, ResponseFormat, ToolCall, ToolSpec};
use super::settings::{Provider, SchemaFormat};
use crate::net::{Net, Refusal};

/// The most tool calls one answer may ask for.
pub const MAX_TOOL_CALLS: usize = 128;

/// How much of an error response is read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Where and how a provider sends its requests; made from
/// [`ModelSettings`](super::ModelSettings), checked.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) provider: Provider,
    pub(crate) model: String,
    pub(crate) base: url::Url,
    /// Whether `base` is the provider's own service (not a compatible
    /// server), for what only the original accepts.
    pub(crate) official: bool,
    pub(crate) api_key_secret: Option<String>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) anthropic_version: HeaderValue,
    pub(crate) timeout: Duration,
    pub(crate) max_response_bytes: u64,
    pub(crate) dimensions: Option<u32>,
    pub(crate) schema_format: SchemaFormat,
}

impl Endpoint {
    /// `path` under the base URL (whose own path is kept).
    pub(crate) fn url(&self, path: &str) -> url::Url {
        let mut url = self.base.clone();
        let joined = format!(
            "{}/{}",
            self.base.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        url.set_path(&joined);
        url
    }

    /// Starts a call to `path`: the URL, and the API key read from `ctx`.
    pub(crate) fn call(&self, ctx: &Context, path: &str) -> Result<Call<'_>, NodeError> {
        let key = self
            .api_key_secret
            .as_deref()
            .map(|name| ctx.secret(name))
            .transpose()?;
        Ok(Call {
            endpoint: self,
            url: self.url(path),
            key,
        })
    }
}

/// One request in flight: where it goes, and the key to keep out of
/// messages.
pub(crate) struct Call<'a> {
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) url: url::Url,
    pub(crate) key: Option<Secret>,
}

impl fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// What went wrong, before it names the call.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) retryable: bool,
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    /// A failure another attempt cannot fix.
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// A failure another attempt may not meet.
    pub(crate) fn retryable(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// The answer is not what the protocol says: permanent (a server that
    /// sends something else, such as an HTML page at a wrong URL, sends it
    /// again).
    pub(crate) fn malformed(what: &str, text: &str, error: &serde_json::Error) -> Self {
        Failure::permanent(format!(
            "{what} is not valid JSON ({error}): `{}`",
            excerpt(text)
        ))
    }

    /// The answer is JSON, but not of the protocol's shape.
    pub(crate) fn unexpected(what: &str, value: &Value) -> Self {
        Failure::permanent(format!(
            "unexpected {what}: `{}`",
            excerpt(&value.to_string())
        ))
    }

    /// A stream that ended before its last event.
    pub(crate) fn cut_off(terminator: &str) -> Self {
        Failure::retryable(format!(
            "the stream was cut off: it ended before {terminator}"
        ))
    }

    /// More tool calls than [`MAX_TOOL_CALLS`].
    pub(crate) fn too_many_tool_calls() -> Self {
        Failure::permanent(format!(
            "the answer asks for more than {MAX_TOOL_CALLS} tool calls"
        ))
    }
}

impl From<super::stream::StreamError> for Failure {
    fn from(error: super::stream::StreamError) -> Self {
        Failure::permanent(error.to_string())
    }
}

/// The start of `text` on one line, for messages.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 120;
    let mut out: String = text
        .split_whitespace()
        .flat_map(|word| [" ", word])
        .skip(1)
        .collect();
    if let Some((cut, _)) = out.char_indices().nth(MAX_CHARS) {
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

impl Call<'_> {
    /// The error the engine sees, naming the provider, model and URL, with
    /// the API key masked.
    pub(crate) fn error(&self, failure: Failure) -> NodeError {
        let mut message = format!(
            "{} model `{}` at {}: {}",
            self.endpoint.provider, self.endpoint.model, self.url, failure.message
        );
        if let Some(key) = &self.key
            && !key.expose().is_empty()
            && message.contains(key.expose())
        {
            message = message.replace(key.expose(), "***");
        }
        let error = if failure.retryable {
            NodeError::retryable(message)
        } else {
            NodeError::permanent(message)
        };
        match failure.retry_after {
            Some(delay) => error.with_retry_after(delay),
            None => error,
        }
    }

    /// Runs `work` (this call's request and reading its answer) under the
    /// endpoint's timeout, with its failure in the engine's words.
    pub(crate) async fn finish<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, NodeError> {
        match tokio::time::timeout(self.endpoint.timeout, work).await {
            Ok(result) => result.map_err(|f| self.error(f)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// The error for a request that did not finish in time.
    pub(crate) fn timed_out(&self) -> NodeError {
        self.error(Failure::retryable(format!(
            "no complete answer within {} (config.model.timeout)",
            DurationText(self.endpoint.timeout)
        )))
    }

    /// POSTs `body` as JSON with `auth` headers; a status other than 2xx
    /// is read and returned as the provider's error.
    pub(crate) async fn post(
        &self,
        ctx: &Context,
        body: &Value,
        auth: HeaderMap,
        accept: &'static str,
    ) -> Result<reqwest::Response, Failure> {
        let net = Net::get(ctx);
        // The call's URL is in every message already: the refusal alone.
        if let Some(refusal) = net.policy().refusal(&self.url) {
            return Err(Failure::permanent(refusal.to_string()));
        }
        let client = net
            .client_for(&self.url)
            .map_err(|e| Failure::permanent(e.message().to_owned()))?;
        let mut headers = auth;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        for (name, value) in &self.endpoint.headers {
            headers.insert(name.clone(), value.clone());
        }
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Failure::permanent(format!("cannot encode the request: {e}")))?;
        let response = client
            .post(self.url.clone())
            .headers(headers)
            .body(bytes)
            .send()
            .await
            .map_err(|e| transport_failure(&e, Phase::Send))?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else {
            Err(status_failure(response).await)
        }
    }

    /// Reads the whole body as JSON, up to the endpoint's limit.
    pub(crate) async fn json(&self, mut response: reqwest::Response) -> Result<Value, Failure> {
        let limit = self.endpoint.max_response_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_failure(&e, Phase::Read))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|e| Failure::malformed("the answer", &String::from_utf8_lossy(&body), &e))
    }

    /// Feeds the body to `each` chunk by chunk as it arrives, up to the
    /// endpoint's limit, until `each` says the stream is complete (`true`)
    /// or the body ends (`false`: cut off, unless `each` decides otherwise
    /// at its end). A connection that breaks is a stream cut off before
    /// `terminator`.
    pub(crate) async fn stream(
        &self,
        mut response: reqwest::Response,
        terminator: &str,
        mut each: impl FnMut(&[u8]) -> Result<bool, Failure>,
    ) -> Result<bool, Failure> {
        let limit = self.endpoint.max_response_bytes;
        let mut read = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            let Failure { message, .. } = transport_failure(&e, Phase::Read);
            let mut cut = Failure::cut_off(terminator);
            let reason = message.trim_start_matches("reading the answer failed: ");
            cut.message = format!("{} ({reason})", cut.message);
            cut
        })? {
            read += chunk.len() as u64;
            if read > limit {
                return Err(too_large(limit));
            }
            if each(&chunk)? {
                // The rest (nothing, for a well-behaved server) is dropped
                // with the response, which closes the connection if unread.
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn too_large(limit: u64) -> Failure {
    Failure::permanent(format!(
        "the answer is larger than {limit} bytes (config.model.max_response_bytes)"
    ))
}

/// When a client error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Connecting, sending, waiting for the response's head.
    Send,
    /// Reading the body.
    Read,
}

/// A client error in words: the innermost cause says most (`Connection
/// refused (os error 111)`).
fn transport_failure(error: &reqwest::Error, phase: Phase) -> Failure {
    let mut innermost = None;
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        if let Some(refusal) = c.downcast_ref::<Refusal>() {
            return Failure::permanent(refusal.to_string());
        }
        innermost = Some(c.to_string());
        cause = c.source();
    }
    let reason = innermost.unwrap_or_else(|| error.to_string());
    if error.is_connect() {
        Failure::retryable(format!("cannot connect: {reason}"))
    } else if error.is_builder() {
        Failure::permanent(format!("the request cannot be made: {reason}"))
    } else if phase == Phase::Send {
        Failure::retryable(format!("the request failed: {reason}"))
    } else {
        Failure::retryable(format!("reading the answer failed: {reason}"))
    }
}

/// A response with an error status: its status, the provider's message,
/// whether to retry and when.
async fn status_failure(mut response: reqwest::Response) -> Failure {
    let status = response.status();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let mut body = Vec::new();
    // The error body is read for its message only: what does not arrive
    // (or does not fit) is left out.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_ERROR_BODY_BYTES {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let (message, _) = error_message(&text);
    // Anthropic's `overloaded_error` comes with 529 (a 5xx), its
    // `rate_limit_error` with 429: the status says it.
    let retryable = status_is_retryable(status);
    let status_text = match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None if status.as_u16() == 529 => "529 Overloaded".to_owned(),
        None => status.as_u16().to_string(),
    };
    let message = match message {
        Some(message) if !message.is_empty() => format!("{status_text}: {message}"),
        _ => status_text,
    };
    Failure {
        message,
        retryable,
        retry_after: if retryable { retry_after } else { None },
    }
}

/// 5xx, 408 Request Timeout, 409 Conflict (a busy resource) and 429 Too
/// Many Requests may pass later; the rest of 4xx would fail again.
pub(crate) fn status_is_retryable(status: StatusCode) -> bool {
    crate::net::status_is_retryable(status) || status == StatusCode::CONFLICT
}

/// The provider's message in an error body, and its error type when it
/// says: `{"error": {"message", "type"}}` (OpenAI, Anthropic),
/// `{"error": "..."}` (Ollama), `{"message": ...}` or `{"detail": ...}`
/// (other compatible servers); otherwise the start of the text.
pub(crate) fn error_message(text: &str) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        let text = excerpt(text);
        return ((!text.is_empty()).then_some(text), None);
    };
    let error = value.get("error").unwrap_or(&value);
    let kind = error.get("type").and_then(Value::as_str).map(str::to_owned);
    let message = match error {
        Value::String(message) => Some(message.clone()),
        Value::Object(object) => object
            .get("message")
            .or_else(|| object.get("detail"))
            .map(|m| match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        _ => None,
    }
    .map(|m| excerpt(&m))
    .or_else(|| Some(excerpt(text)));
    (message, kind)
}

/// How long the server asked to wait: `retry-after-ms` (milliseconds),
/// else `Retry-After` as seconds (a fraction allowed) or an HTTP date (a
/// date in the past is no delay).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text(header::RETRY_AFTER.as_str())?;
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A made-up id for a tool call that came without one (Ollama's):
/// the same call at the same place of an answer always gets the same id.
pub(crate) fn stable_call_id(index: usize, name: &str, arguments: &Value) -> String {
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{index}\u{0}{name}\u{0}{arguments}");
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("call_{hash:016x}")
}

/// A tool call's arguments as JSON text parsed (OpenAI sends them as a
/// string); empty text is no arguments.
pub(crate) fn parse_arguments(name: &str, text: &str) -> Result<Value, Failure> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|e| Failure {
        message: format!(
            "the arguments of tool call `{name}` are not valid JSON ({e}): `{}`",
            excerpt(text)
        ),
        // The model wrote them: another sample may get them right.
        retryable: true,
        retry_after: None,
    })
}

/// One complete tool call of OpenAI's and Ollama's shape,
/// `{"id"?, "function": {"name", "arguments"?}}`, the `index`th of its
/// answer: the arguments as JSON text (OpenAI's), an object (Ollama's, and
/// a few OpenAI-compatible servers') or none; a call without an id gets a
/// [`stable_call_id`].
pub(crate) fn function_call(index: usize, call: &Value) -> Result<ToolCall, Failure> {
    let function = call
        .get("function")
        .ok_or_else(|| Failure::unexpected("tool call", call))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::unexpected("tool call without a name", call))?;
    let arguments = match function.get("arguments") {
        Some(Value::String(text)) => parse_arguments(name, text)?,
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(object) => object.clone(),
    };
    let id = match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => stable_call_id(index, name, &arguments),
    };
    Ok(ToolCall {
        id,
        name: name.to_owned(),
        arguments,
    })
}

/// The `tools` of a request, as OpenAI and Ollama take them.
pub(crate) fn function_tools(tools: &[ToolSpec]) -> Value {
    tools
        .iter()
        .map(|tool| {
            serde_json::json!({
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                }
            })
        })
        .collect()
}

/// A tool call being assembled from streamed pieces.
#[derive(Debug, Default)]
pub(crate) struct PartialCall {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: String,
}

impl PartialCall {
    /// The finished call.
    pub(crate) fn finish(self, index: usize) -> Result<ToolCall, Failure> {
        let arguments = parse_arguments(&self.name, &self.arguments)?;
        let id = if self.id.is_empty() {
            stable_call_id(index, &self.name, &arguments)
        } else {
            self.id
        };
        Ok(ToolCall {
            id,
            name: self.name,
            arguments,
        })
    }
}

/// The finish reason, from OpenAI's and Ollama's words.
pub(crate) fn openai_finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// `Authorization: Bearer` with the call's key, if it has one (OpenAI's
/// and compatible servers'; Ollama takes none, a proxy in front of it may).
pub(crate) fn bearer_headers(call: &Call<'_>) -> Result<HeaderMap, Failure> {
    let mut headers = HeaderMap::new();
    if let Some(key) = &call.key {
        headers.insert(
            header::AUTHORIZATION,
            secret_header("Bearer ", key, call.endpoint.api_key_secret.as_deref())?,
        );
    }
    Ok(headers)
}

/// A header value from a secret, marked sensitive.
pub(crate) fn secret_header(
    prefix: &str,
    key: &Secret,
    secret_name: Option<&str>,
) -> Result<HeaderValue, Failure> {
    let mut value = HeaderValue::from_str(&format!("{prefix}{}", key.expose())).map_err(|_| {
        Failure::permanent(format!(
            "secret `{}` has characters a header cannot carry",
            secret_name.unwrap_or_default()
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// What the system prompt gains when the request asks for JSON of a
/// server without a response format (Anthropic's, or an OpenAI-compatible
/// one set to `schema_format: instruction`): the model is told, and the
/// caller checks.
pub(crate) fn format_instruction(format: Option<&ResponseFormat>) -> Option<String> {
    match format? {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(
            "Answer with one JSON object and nothing else: no prose before or after it, no code fences."
                .to_owned(),
        ),
        ResponseFormat::JsonSchema { schema, .. } => Some(format!(
            "Answer with one JSON value that matches this JSON Schema, and nothing else: no prose before or after it, no code fences.\n{schema}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#
            ),
            (
                Some("Incorrect API key provided".to_owned()),
                Some("invalid_request_error".to_owned())
            )
        );
        assert_eq!(
            error_message(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            (
                Some("Overloaded".to_owned()),
                Some("overloaded_error".to_owned())
            )
        );
        assert_eq!(
            error_message(r#"{"error":"model \"llama9\" not found, try pulling it first"}"#),
            (
                Some("model \"llama9\" not found, try pulling it first".to_owned()),
                None
            )
        );
        assert_eq!(
            error_message(r#"{"detail":"Not Found"}"#),
            (Some("Not Found".to_owned()), None)
        );
        assert_eq!(
            error_message("<html>\n<body>Bad   Gateway</body></html>"),
            (
                Some("<html> <body>Bad Gateway</body></html>".to_owned()),
                None
            )
        );
        assert_eq!(error_message(""), (None, None));
        let long = "x".repeat(500);
        assert_eq!(error_message(&long).0.unwrap().chars().count(), 123);
    }

    #[test]
    fn retry_after_reads_milliseconds_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Tue, 14 Nov 2023 22:13:50 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Tue, 14 Nov 2023 22:00:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "2"), ("retry-after-ms", "1500")]),
                now
            ),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn made_up_ids_are_stable_and_tell_calls_apart() {
        let a = stable_call_id(0, "get_weather", &json!({"city": "Paris"}));
        assert_eq!(
            a,
            stable_call_id(0, "get_weather", &json!({"city": "Paris"}))
        );
        assert!(a.starts_with("call_") && a.len() == 21, "{a}");
        assert_ne!(
            a,
            stable_call_id(1, "get_weather", &json!({"city": "Paris"}))
        );
        assert_ne!(
            a,
            stable_call_id(0, "get_weather", &json!({"city": "Rome"}))
        );
    }

    #[test]
    fn arguments_parse_or_say_why_not() {
        assert_eq!(parse_arguments("f", "").unwrap(), json!({}));
        assert_eq!(parse_arguments("f", r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        let failure = parse_arguments("f", r#"{"a":"#).unwrap_err();
        assert!(failure.retryable);
        assert!(
            failure
                .message
                .starts_with("the arguments of tool call `f` are not valid JSON"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.ends_with(r#": `{"a":`"#),
            "{}",
            failure.message
        );
    }

    #[test]
    fn statuses_sort_into_retryable_and_permanent() {
        for (code, retryable) in [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (422, false),
            (429, true),
            (500, true),
            (503, true),
            (529, true),
        ] {
            assert_eq!(
                status_is_retryable(StatusCode::from_u16(code).unwrap()),
                retryable,
                "{code}"
            );
        }
    }
}
