//! The `graphql` node: one query or mutation, GraphQL over HTTP.

use ghostflow::prelude::*;
use indexmap::IndexMap;
use reqwest::header::{self, HeaderValue};

use super::client::{Request, Response, send};
use super::config::{
    Auth, absolute_url, check_headers, default_max_response_bytes, default_timeout, display_url,
    header_map, parse_url,
};
use super::error::{HttpError, status_is_retryable};
use crate::net::Net;
use crate::yes;

/// Sends a GraphQL query or mutation with its variables to an endpoint and
/// outputs the response's `data` and `errors`.
///
/// The request is a `POST` of `{query, variables, operationName}` as JSON.
/// Variables come from the config and from the `variables` input (set over
/// the configured ones). Credentials, headers, timeout and size limit work
/// as for `http_request`; redirects are followed (up to 10).
///
/// Errors in the GraphQL response fail the node (permanently: the same
/// query would fail again) unless `fail_on_errors` is false; then they are
/// on the `errors` output beside whatever `data` the server returned. A
/// response that is not GraphQL fails by its status as `http_request` does:
/// retryable for 5xx, 408 and 429 (honouring `Retry-After`), permanent
/// otherwise.
///
/// ```yaml
/// - id: repo
///   type: graphql
///   config:
///     endpoint: https://api.example.com/graphql
///     query: |
///       query Repo($owner: String!, $name: String!) {
///         repository(owner: $owner, name: $name) { stars }
///       }
///     variables: { owner: ghostflow-rs, name: ghostflow }
///     auth:
///       bearer: { token_secret: EXAMPLE_API_TOKEN }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = GraphqlInput, output = GraphqlOutput, category = "http")]
#[serde(deny_unknown_fields)]
pub struct Graphql {
    /// The endpoint's URL, absolute, `http` or `https`.
    #[serde(deserialize_with = "absolute_url")]
    pub endpoint: String,
    /// The query or mutation document.
    pub query: String,
    /// Variables; the `variables` input is set over them.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// Which operation of the document to run, when it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
    /// Request headers.
    #[serde(
        default,
        deserialize_with = "header_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub headers: IndexMap<String, String>,
    /// Credentials: `basic: {username, password_secret}` or
    /// `bearer: {token_secret}`; the secrets are read when the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Time for the whole exchange, such as `30s`.
    #[serde(default = "default_timeout")]
    pub timeout: ghostflow::document::DurationText,
    /// Whether errors in the response fail the node; when false they go to
    /// the `errors` output.
    #[serde(default = "yes")]
    pub fail_on_errors: bool,
    /// The largest response body accepted, in bytes (default 10 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

/// Run-time values of a [`Graphql`] request.
#[derive(Ports, Debug)]
pub struct GraphqlInput {
    /// Variables, set over the configured ones.
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The result of a [`Graphql`] request.
#[derive(Ports, Debug)]
pub struct GraphqlOutput {
    /// The response's `data`; `null` when it has none.
    pub data: serde_json::Value,
    /// The response's `errors`; empty when there are none.
    pub errors: Vec<serde_json::Value>,
}

/// Errors shown in a failure message; the rest are counted.
const ERRORS_SHOWN: usize = 3;

impl Run for Graphql {
    async fn run(&self, input: GraphqlInput, ctx: &Context) -> Result<GraphqlOutput, NodeError> {
        let fail = HttpError::into_node_error;
        let url = parse_url(&self.endpoint).map_err(|reason| {
            fail(HttpError::Config {
                field: "endpoint".into(),
                reason,
            })
        })?;
        let mut variables = self.variables.clone();
        if let Some(extra) = input.variables {
            variables.extend(extra);
        }
        let mut payload = serde_json::Map::new();
        payload.insert("query".into(), self.query.clone().into());
        payload.insert("variables".into(), variables.into());
        if let Some(name) = &self.operation_name {
            payload.insert("operationName".into(), name.clone().into());
        }
        let mut headers = check_headers(&self.headers).map_err(|reason| {
            fail(HttpError::Config {
                field: "headers".into(),
                reason,
            })
        })?;
        headers
            .entry(header::CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
        headers
            .entry(header::ACCEPT)
            .or_insert(HeaderValue::from_static(
                "application/graphql-response+json, application/json;q=0.9",
            ));
        let auth = self.auth.as_ref().map(|a| a.header(ctx)).transpose()?;
        let request = Request {
            method: reqwest::Method::POST,
            url,
            headers,
            body: Some(serde_json::Value::Object(payload).to_string().into_bytes()),
            auth,
            timeout: self.timeout.0,
            max_redirects: Some(10),
            max_response_bytes: self.max_response_bytes,
        };
        let response = send(&Net::get(ctx), request).await.map_err(fail)?;
        self.read(&response).map_err(fail)
    }
}

impl Graphql {
    /// The outputs of a response, or why it fails the node.
    fn read(&self, response: &Response) -> Result<GraphqlOutput, HttpError> {
        let method = reqwest::Method::POST;
        let success = response.status.is_success();
        let parsed = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(map)
                    if map.contains_key("data") || map.contains_key("errors") =>
                {
                    Some(map)
                }
                _ => None,
            });
        let Some(mut map) = parsed else {
            // Not a GraphQL response: the status says what happened.
            if !success {
                return Err(response.status_error(&method));
            }
            return Err(HttpError::Decode {
                method: method.to_string(),
                url: display_url(&response.url),
                reason: format!(
                    "{}: the response is not a GraphQL response (a JSON object with `data` or `errors`)",
                    response.status
                ),
            });
        };
        // A server failure is worth retrying whatever the body says.
        if status_is_retryable(response.status) {
            return Err(response.status_error(&method));
        }
        let data = map.remove("data").unwrap_or(serde_json::Value::Null);
        let errors = match map.remove("errors") {
            Some(serde_json::Value::Array(errors)) => errors,
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(other) => vec![other],
        };
        if !errors.is_empty() && (self.fail_on_errors || !success) {
            return Err(HttpError::GraphQl {
                method: method.to_string(),
                url: display_url(&response.url),
                summary: summarize(&errors),
            });
        }
        if !success {
            return Err(response.status_error(&method));
        }
        Ok(GraphqlOutput { data, errors })
    }
}

/// The first errors' messages, with where they happened.
fn summarize(errors: &[serde_json::Value]) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(ERRORS_SHOWN)
        .map(|error| {
            let message = error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            let mut at = Vec::new();
            if let Some(path) = error.get("path").and_then(serde_json::Value::as_array) {
                let path: Vec<String> = path
                    .iter()
                    .map(|p| match p {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                at.push(format!("path {}", path.join(".")));
            }
            if let Some(location) = error
                .get("locations")
                .and_then(|l| l.get(0))
                .and_then(|l| Some((l.get("line")?.as_u64()?, l.get("column")?.as_u64()?)))
            {
                at.push(format!("line {}, column {}", location.0, location.1));
            }
            if at.is_empty() {
                message
            } else {
                format!("{message} ({})", at.join("; "))
            }
        })
        .collect();
    if errors.len() > ERRORS_SHOWN {
        parts.push(format!("and {} more", errors.len() - ERRORS_SHOWN));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_are_summarized_with_their_place() {
        let errors = [
            json!({"message": "Cannot query field \"x\"", "locations": [{"line": 2, "column": 5}]}),
            json!({"message": "Not allowed", "path": ["user", 0, "email"]}),
            json!({"code": 7}),
            json!({"message": "fourth"}),
            json!({"message": "fifth"}),
        ];
        assert_eq!(
            summarize(&errors),
            r#"Cannot query field "x" (line 2, column 5); Not allowed (path user.0.email); {"code":7}; and 2 more"#
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let registry = crate::registry();
        let graphql = registry.get("graphql").unwrap();
        for (config, expected) in [
            (json!({"query": "{ a }"}), "missing field `endpoint`"),
            (
                json!({"endpoint": "https://x/graphql"}),
                "missing field `query`",
            ),
            (
                json!({"endpoint": "https://x/graphql", "query": "{ a }", "variables": [1]}),
                "variables: invalid type: sequence, expected a map",
            ),
            (
                json!({"endpoint": "https://x/graphql", "query": 3}),
                "query: invalid type: integer `3`, expected a string",
            ),
            (
                json!({"endpoint": "graphql", "query": "{ a }"}),
                "endpoint: `graphql`: relative URL without a base",
            ),
        ] {
            let err = graphql.create(&config).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{config}: `{err}` should start with `{expected}`"
            );
        }
    }
}
