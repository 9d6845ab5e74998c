//! HTTP nodes: call any HTTP API ([`HttpRequest`]) or a GraphQL endpoint
//! ([`Graphql`]).
//!
//! - **One client per engine.** Every HTTP node of an engine uses the
//!   engine's shared client (see [`crate::net`]), so connections are pooled
//!   across nodes and executions. Timeouts and redirect settings are per
//!   node: the nodes follow redirects themselves, hop by hop.
//! - **Failures say whether to retry.** Timeouts, connection failures, 5xx,
//!   408 and 429 are retryable; other 4xx, bad input and refusals are
//!   permanent. A 429 or 503 with `Retry-After` (seconds or an HTTP date)
//!   asks the engine's retry policy to wait at least that long. Whether to
//!   retry at all is the flow's `retry` policy.
//! - **Secrets** for credentials are named in the config
//!   (`token_secret: API_TOKEN`) and read when the node runs; the engine
//!   masks their values in every error and event. They are sent to the
//!   configured URL's origin only, never to another host a redirect leads
//!   to.
//! - **Network policy.** Give the engine
//!   [`NetworkPolicy::public_only`](crate::NetworkPolicy::public_only) to
//!   refuse loopback, private, link-local and other internal addresses
//!   (checked after DNS resolution, and at every redirect hop).

mod client;
mod config;
mod error;
mod graphql;

use ghostflow::prelude::*;
use indexmap::IndexMap;
use reqwest::header::{self, HeaderMap, HeaderValue};

use self::client::{Request, send};
pub use self::config::{Auth, Base64Bytes, FieldValue, Method, RequestBody, ResponseFormat};
use self::config::{
    BodyKind, absolute_url, check_headers, default_max_response_bytes, default_timeout,
    display_url, header_map, parse_url,
};
pub use self::error::HttpError;
pub use self::graphql::{Graphql, GraphqlInput, GraphqlOutput};
use crate::net::Net;
use crate::yes;

/// Sends an HTTP request and outputs the response's body, status and
/// headers.
///
/// The method, URL, query parameters, headers and body come from the config
/// (where documents may use expressions) and may be completed at run time
/// by the optional inputs: `url` (resolved against the configured URL),
/// `query` and `headers` (set over the configured ones) and `body` (in place
/// of the configured body, encoded the same way). Credentials (`auth`) are
/// read from the engine's secrets. Redirects are followed up to
/// `max_redirects` (or returned as they are with `follow_redirects: false`);
/// the whole exchange must finish within `timeout`, and a body over
/// `max_response_bytes` fails the node. The response body is parsed as the
/// `response` setting says (by default by its `Content-Type`).
///
/// A 4xx or 5xx status fails the node unless `fail_on_status` is false (then
/// a flow can branch on the `status` output): 5xx, 408 and 429 as retryable
/// failures (honouring `Retry-After` on 429 and 503), other 4xx as permanent
/// ones. Requests are not idempotent in general: with a retry policy, a POST
/// that timed out may be sent again.
///
/// ```yaml
/// - id: create_issue
///   type: http_request
///   config:
///     method: POST
///     url: https://api.example.com/v1/issues
///     query: { notify: true }
///     headers: { Accept: application/json }
///     body:
///       json: { title: "Disk almost full", labels: [ops] }
///     auth:
///       bearer: { token_secret: EXAMPLE_API_TOKEN }
///     timeout: 10s
///     max_redirects: 3
///   retry: { max_attempts: 3, backoff: 1s }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = HttpRequestInput, output = HttpResponse, category = "http")]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// The HTTP method.
    #[serde(default)]
    pub method: Method,
    /// The URL, absolute, `http` or `https`. A `url` input is resolved
    /// against it.
    #[serde(deserialize_with = "absolute_url")]
    pub url: String,
    /// Query parameters added to the URL's own; a list repeats the
    /// parameter once per item.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub query: IndexMap<String, FieldValue>,
    /// Request headers. `Content-Type` defaults to the body's type.
    #[serde(
        default,
        deserialize_with = "header_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub headers: IndexMap<String, String>,
    /// The body: `json: <any value>`, `form: {field: value}`,
    /// `text: <string>` or `bytes: <base64>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<RequestBody>,
    /// Credentials: `basic: {username, password_secret}` or
    /// `bearer: {token_secret}`; the secrets are read when the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Time for the whole exchange (redirects and reading the body
    /// included), such as `30s` or `500ms`.
    #[serde(default = "default_timeout")]
    pub timeout: ghostflow::document::DurationText,
    /// Whether to follow redirects; when false, a 3xx response is the
    /// node's output.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// The most redirects to follow; one more fails the node.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// How to read the response body: `auto` (by its `Content-Type`),
    /// `json`, `text` or `bytes` (base64).
    #[serde(default)]
    pub response: ResponseFormat,
    /// Whether a 4xx or 5xx status fails the node; when false, every status
    /// is an ordinary output.
    #[serde(default = "yes")]
    pub fail_on_status: bool,
    /// The largest response body accepted, in bytes (default 10 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_max_redirects() -> u32 {
    10
}

/// Values that complete an [`HttpRequest`] at run time; all optional.
#[derive(Ports, Debug)]
pub struct HttpRequestInput {
    /// A URL, or a path resolved against the configured `url` (`users/42`,
    /// `/v2/items`, `?page=2`).
    pub url: Option<String>,
    /// Query parameters, set over the configured ones.
    pub query: Option<IndexMap<String, FieldValue>>,
    /// Headers, set over the configured ones.
    pub headers: Option<IndexMap<String, String>>,
    /// The body, in place of the configured one and encoded the same way:
    /// any value as JSON (also when no body is configured), an object for
    /// `form`, a string for `text`, a base64 string for `bytes`.
    pub body: Option<serde_json::Value>,
}

/// The response of an [`HttpRequest`].
#[derive(Ports, Debug)]
pub struct HttpResponse {
    /// The body, read as the `response` setting says; `null` when empty.
    pub body: serde_json::Value,
    /// The status code.
    pub status: u16,
    /// The response headers, names in lowercase; repeated headers are
    /// joined with `, `.
    pub headers: IndexMap<String, String>,
    /// The URL that answered, after redirects.
    pub url: String,
}

impl Run for HttpRequest {
    async fn run(&self, input: HttpRequestInput, ctx: &Context) -> Result<HttpResponse, NodeError> {
        let request = self.request(input, ctx)?;
        let method = request.method.clone();
        let net = Net::get(ctx);
        let response = send(&net, request)
            .await
            .map_err(HttpError::into_node_error)?;
        if self.fail_on_status
            && (response.status.is_client_error() || response.status.is_server_error())
        {
            return Err(response.status_error(&method).into_node_error());
        }
        let body = self
            .response
            .decode(&response.headers, &response.body)
            .map_err(|reason| {
                HttpError::Decode {
                    method: method.to_string(),
                    url: display_url(&response.url),
                    reason,
                }
                .into_node_error()
            })?;
        Ok(HttpResponse {
            body,
            status: response.status.as_u16(),
            headers: header_output(&response.headers),
            url: display_url(&response.url),
        })
    }
}

impl HttpRequest {
    /// A GET of `url`, with every other setting at its default.
    ///
    /// # Errors
    /// `url` is not an absolute http or https URL.
    pub fn get(url: impl Into<String>) -> Result<Self, String> {
        let url = url.into();
        parse_url(&url)?;
        Ok(HttpRequest {
            method: Method::Get,
            url,
            query: IndexMap::new(),
            headers: IndexMap::new(),
            body: None,
            auth: None,
            timeout: default_timeout(),
            follow_redirects: true,
            max_redirects: default_max_redirects(),
            response: ResponseFormat::Auto,
            fail_on_status: true,
            max_response_bytes: default_max_response_bytes(),
        })
    }

    /// The exchange this config and these inputs describe.
    fn request(&self, input: HttpRequestInput, ctx: &Context) -> Result<Request, NodeError> {
        let fail = HttpError::into_node_error;
        let base = parse_url(&self.url).map_err(|reason| {
            fail(HttpError::Config {
                field: "url".into(),
                reason,
            })
        })?;
        let mut url = match &input.url {
            Some(relative) => {
                let url = base.join(relative.trim()).map_err(|e| {
                    fail(HttpError::Input {
                        port: "url",
                        reason: format!("`{relative}`: {e}"),
                    })
                })?;
                config::check_scheme(&url).map_err(|reason| {
                    fail(HttpError::Input {
                        port: "url",
                        reason,
                    })
                })?;
                url
            }
            None => base,
        };
        let mut query = self.query.clone();
        if let Some(extra) = input.query {
            query.extend(extra);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &query {
                for text in value.texts() {
                    pairs.append_pair(name, &text);
                }
            }
        }
        let mut headers = check_headers(&self.headers).map_err(|reason| {
            fail(HttpError::Config {
                field: "headers".into(),
                reason,
            })
        })?;
        if let Some(extra) = &input.headers {
            let extra = check_headers(extra).map_err(|reason| {
                fail(HttpError::Input {
                    port: "headers",
                    reason,
                })
            })?;
            for (name, value) in extra {
                if let Some(name) = name {
                    headers.insert(name, value);
                }
            }
        }
        let body = match (&input.body, &self.body) {
            (Some(value), configured) => Some(
                configured
                    .as_ref()
                    .map_or(BodyKind::Json, RequestBody::kind)
                    .encode_input(value)
                    .map_err(fail)?,
            ),
            (None, Some(body)) => Some(body.encode()),
            (None, None) => None,
        };
        let body = body.map(|(bytes, content_type)| {
            if !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            bytes
        });
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        let auth = self.auth.as_ref().map(|a| a.header(ctx)).transpose()?;
        Ok(Request {
            method: self.method.as_reqwest(),
            url,
            headers,
            body,
            auth,
            timeout: self.timeout.0,
            max_redirects: self.follow_redirects.then_some(self.max_redirects),
            max_response_bytes: self.max_response_bytes,
        })
    }
}

/// Response headers as the `headers` output.
fn header_output(headers: &HeaderMap) -> IndexMap<String, String> {
    let mut out: IndexMap<String, String> = IndexMap::with_capacity(headers.keys_len());
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match out.entry(name.as_str().to_owned()) {
            indexmap::map::Entry::Occupied(mut seen) => {
                let joined = seen.get_mut();
                joined.push_str(", ");
                joined.push_str(&value);
            }
            indexmap::map::Entry::Vacant(slot) => {
                slot.insert(value.into_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(config: serde_json::Value) -> Result<HttpRequest, String> {
        let registry = crate::registry();
        registry
            .get("http_request")
            .unwrap()
            .create(&config)
            .map(|_| ())
            .map_err(|e| e.to_string())?;
        serde_json::from_value(config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_a_minimal_config() {
        let node = create(json!({"url": "https://example.com/"})).unwrap();
        assert_eq!(node.method, Method::Get);
        assert_eq!(node.timeout.0, std::time::Duration::from_secs(30));
        assert!(node.follow_redirects && node.fail_on_status);
        assert_eq!(node.max_redirects, 10);
        assert_eq!(node.max_response_bytes, 10 * 1024 * 1024);
        assert_eq!(node.response, ResponseFormat::Auto);
        let same = HttpRequest::get("https://example.com/").unwrap();
        assert_eq!(
            serde_json::to_value(&same).unwrap(),
            serde_json::to_value(&node).unwrap()
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (config, expected) in [
            (json!({}), "missing field `url`"),
            (
                json!({"url": "https://x/", "method": "FETCH"}),
                "method: unknown variant `FETCH`",
            ),
            (
                json!({"url": "/relative"}),
                "url: `/relative`: relative URL without a base",
            ),
            (
                json!({"url": "file:///etc/passwd"}),
                "url: `file:///etc/passwd`: the scheme `file` is not supported",
            ),
            (
                json!({"url": 5}),
                "url: invalid type: integer `5`, expected a string",
            ),
            (json!({"url": "https://x/", "timeout": true}), "timeout: "),
            (
                json!({"url": "https://x/", "timeout": "soon"}),
                "timeout: `soon` is not a duration",
            ),
            (
                json!({"url": "https://x/", "max_redirects": -1}),
                "max_redirects: invalid value: integer `-1`",
            ),
            (
                json!({"url": "https://x/", "headers": {"Bad Name": "v"}}),
                "headers: `Bad Name` is not a valid header name",
            ),
            (
                json!({"url": "https://x/", "query": {"a": {"b": 1}}}),
                "query.a: expected a string, number, boolean or a list of them, got an object",
            ),
            (
                json!({"url": "https://x/", "body": {"xml": "<a/>"}}),
                "body: unknown variant `xml`",
            ),
            (
                json!({"url": "https://x/", "body": {"bytes": "!!"}}),
                "body.bytes: not valid base64",
            ),
            (
                json!({"url": "https://x/", "auth": {"bearer": {"token": "x"}}}),
                "auth.bearer.token: unknown field `token`, expected `token_secret`",
            ),
            (
                json!({"url": "https://x/", "auth": {"basic": {"username": "ada"}}}),
                "auth.basic: missing field `password_secret`",
            ),
            (
                json!({"url": "https://x/", "response": "xml"}),
                "response: unknown variant `xml`",
            ),
            (
                json!({"url": "https://x/", "follow": true}),
                "follow: unknown field `follow`",
            ),
        ] {
            let err = create(config.clone()).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{config}: `{err}` should start with `{expected}`"
            );
        }
    }

    /// The ```yaml blocks of the doc comments in `source`.
    fn yaml_examples(source: &str) -> Vec<String> {
        let mut examples = Vec::new();
        let mut current: Option<String> = None;
        for line in source.lines() {
            let Some(doc) = line.trim_start().strip_prefix("///") else {
                continue;
            };
            let doc = doc.strip_prefix(' ').unwrap_or(doc);
            match (&mut current, doc.trim()) {
                (None, "```yaml") => current = Some(String::new()),
                (Some(_), "```") => examples.extend(current.take()),
                (Some(text), _) => {
                    text.push_str(doc);
                    text.push('\n');
                }
                (None, _) => {}
            }
        }
        examples
    }

    #[test]
    fn the_documented_examples_load_as_documents() {
        let registry = crate::registry();
        let examples: Vec<String> = [include_str!("mod.rs"), include_str!("graphql.rs")]
            .into_iter()
            .flat_map(yaml_examples)
            .collect();
        assert_eq!(examples.len(), 2);
        for example in examples {
            let document = format!(
                "version: 1\nname: example\nnodes:\n{}",
                example
                    .lines()
                    .map(|l| format!("  {l}\n"))
                    .collect::<String>()
            );
            ghostflow::document::Loader::new(&registry)
                .load_bytes(document.as_bytes(), ghostflow::document::Format::Yaml, None)
                .unwrap_or_else(|e| panic!("{e}\n{document}"));
        }
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("x-one", HeaderValue::from_static("1"));
        assert_eq!(
            header_output(&headers),
            IndexMap::from([
                ("set-cookie".to_owned(), "a=1, b=2".to_owned()),
                ("x-one".to_owned(), "1".to_owned()),
            ])
        );
    }
}
