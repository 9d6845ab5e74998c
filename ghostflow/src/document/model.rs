//! The flow document, version 1: what a YAML or JSON flow file holds.
//!
//! Field order here is the order in which documents are written, and maps
//! keep the order they were read in, so writing a flow back gives a stable,
//! diff-friendly file.

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::{CircuitBreaker, OnError, RateLimit, RetryPolicy};

/// The document format version this crate reads and writes.
pub const VERSION: u32 = 1;

/// A flow document.
///
/// ```yaml
/// version: 1
/// name: greet
/// inputs:
///   name: { schema: { type: string } }
/// nodes:
///   - id: hello
///     type: template
///     config: { template: "Hello {{ input.name }}!" }
/// outputs:
///   text: hello.text
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "GhostFlow flow document", extend("$id" = "https://ghostflow.dev/schema/flow-v1.json"))]
pub struct Document {
    /// Format version; must be `1`.
    pub version: u32,
    /// The flow's name.
    pub name: String,
    /// What the flow does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Flow inputs by name, each with the JSON Schema of its values. Nodes
    /// read them through edges (`from: input.<name>`) or expressions
    /// (`{{ input.<name> }}`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<String, InputDecl>,
    /// The nodes, in any order.
    pub nodes: Vec<NodeDecl>,
    /// Connections from an output port (`node.port`, or `input.<name>` for a
    /// flow input) to an input port (`node.port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgeDecl>,
    /// Flow outputs by name, each read from `node.port` or `input.<name>`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, String>,
    /// Anything an editor wants to keep (viewport, notes); the engine
    /// ignores it and writes it back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor: Option<serde_json::Value>,
}

/// A declared flow input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputDecl {
    /// JSON Schema of the input's values (any value when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// What the input is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value used when a run does not give one (`null` included).
    /// Without a default the input is required.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<serde_json::Value>,
}

/// A node of the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeDecl {
    /// Unique id: letters, digits, `_` and `-`.
    pub id: String,
    /// The node type, optionally with a version: `http_request` or
    /// `http_request@2`. Without a version, the latest registered one.
    #[serde(rename = "type")]
    pub node_type: String,
    /// What the node's type takes as configuration; string values may hold
    /// expressions (`{{ input.url }}`).
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub config: serde_json::Value,
    /// A note about this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How failed attempts are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryDecl>,
    /// Time limit of each attempt, such as `30s`, `500ms` or `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationText>,
    /// What a failure after the last attempt does: `fail` the run,
    /// `continue` with the failure on the node's `error` port, or `skip` the
    /// node and what depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnErrorDecl>,
    /// The key whose concurrency limit applies (by default the type name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// At most so many attempts per period, shared by the nodes with the
    /// same key (by default the type name): `20/min`, or
    /// `{ limit: 20, per: 1m, key: openai }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDecl>,
    /// Fail fast after repeated failures: `{ failures: 5, cooldown: 30s }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerDecl>,
    /// Where an editor draws the node; the engine ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

/// Retry settings of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDecl {
    /// Attempts in total, including the first.
    pub max_attempts: u32,
    /// Delay before the second attempt (default `100ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<DurationText>,
    /// Upper bound of any delay (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<DurationText>,
    /// Growth factor between attempts (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Fraction of each delay that is randomized, 0 to 1 (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
}

impl RetryDecl {
    /// The engine's retry policy for these settings.
    pub fn to_policy(&self) -> RetryPolicy {
        let mut policy = RetryPolicy::attempts(self.max_attempts);
        if let Some(backoff) = &self.backoff {
            policy = policy.backoff(backoff.0);
        }
        if let Some(max) = &self.max_backoff {
            policy = policy.max_backoff(max.0);
        }
        if let Some(multiplier) = self.multiplier {
            policy = policy.multiplier(multiplier);
        }
        if let Some(jitter) = self.jitter {
            policy = policy.jitter(jitter);
        }
        policy
    }

    /// The settings of an engine retry policy (defaults left out).
    pub fn from_policy(policy: &RetryPolicy) -> Self {
        let default = RetryPolicy::attempts(policy.max_attempts);
        RetryDecl {
            max_attempts: policy.max_attempts,
            backoff: (policy.initial_backoff != default.initial_backoff)
                .then_some(DurationText(policy.initial_backoff)),
            max_backoff: (policy.max_backoff != default.max_backoff)
                .then_some(DurationText(policy.max_backoff)),
            multiplier: (policy.multiplier != default.multiplier).then_some(policy.multiplier),
            jitter: (policy.jitter != default.jitter).then_some(policy.jitter),
        }
    }
}

/// A rate limit as written in documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RateLimitDecl {
    /// `20/min`, `5/s`, `100/h`, `10/250ms`.
    Short(String),
    /// The long form.
    Full {
        /// Attempts per period.
        limit: u32,
        /// The period.
        per: DurationText,
        /// The key whose bucket is shared (by default the type name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

impl RateLimitDecl {
    /// The engine's rate limit.
    ///
    /// # Errors
    /// The short form does not parse, or the limit or period is zero.
    pub fn to_policy(&self) -> Result<RateLimit, String> {
        match self {
            RateLimitDecl::Short(text) => RateLimit::parse(text),
            RateLimitDecl::Full { limit, per, key } => {
                if *limit == 0 || per.0.is_zero() {
                    return Err("the limit and the period must be above zero".to_owned());
                }
                let mut policy = RateLimit::new(*limit, per.0);
                policy.key.clone_from(key);
                Ok(policy)
            }
        }
    }

    /// How a rate limit is written (the long form keeps the key).
    pub fn from_policy(policy: &RateLimit) -> Self {
        RateLimitDecl::Full {
            limit: policy.limit,
            per: DurationText(policy.per),
            key: policy.key.clone(),
        }
    }
}

/// A circuit breaker as written in documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerDecl {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open before one trial attempt.
    pub cooldown: DurationText,
    /// The key whose breaker is shared (by default the type name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl CircuitBreakerDecl {
    /// The engine's circuit breaker.
    pub fn to_policy(&self) -> CircuitBreaker {
        let mut policy = CircuitBreaker::new(self.failures, self.cooldown.0);
        policy.key.clone_from(&self.key);
        policy
    }

    /// How a circuit breaker is written.
    pub fn from_policy(policy: &CircuitBreaker) -> Self {
        CircuitBreakerDecl {
            failures: policy.failures,
            cooldown: DurationText(policy.cooldown),
            key: policy.key.clone(),
        }
    }
}

/// On-error behaviour, as written in documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnErrorDecl {
    /// Fail the whole run.
    Fail,
    /// Go on; the failure goes to the node's `error` port.
    Continue,
    /// Go on as if the node were skipped.
    Skip,
}

impl From<OnErrorDecl> for OnError {
    fn from(decl: OnErrorDecl) -> Self {
        match decl {
            OnErrorDecl::Fail => OnError::Fail,
            OnErrorDecl::Continue => OnError::Continue,
            OnErrorDecl::Skip => OnError::Skip,
        }
    }
}

impl From<OnError> for OnErrorDecl {
    fn from(on_error: OnError) -> Self {
        match on_error {
            OnError::Fail => OnErrorDecl::Fail,
            OnError::Continue => OnErrorDecl::Continue,
            OnError::Skip => OnErrorDecl::Skip,
        }
    }
}

/// An edge between two ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeDecl {
    /// The output port: `node.port`, or `input.<name>` for a flow input.
    pub from: String,
    /// The input port: `node.port`.
    pub to: String,
}

/// Where an editor draws a node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Horizontal position.
    pub x: f64,
    /// Vertical position.
    pub y: f64,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn is_empty_object(value: &serde_json::Value) -> bool {
    value.as_object().is_some_and(serde_json::Map::is_empty)
}

/// A duration written as text (`250ms`, `1.5s`, `2m`, `1h`) or as a number
/// of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl DurationText {
    /// Parses `250ms`, `1.5s`, `2m`, `1h`, or a plain number of milliseconds.
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let not_a_duration =
            || format!("`{text}` is not a duration; write it like `500ms`, `30s` or `2m`");
        if number.is_empty() {
            return Err(not_a_duration());
        }
        let scale = match unit.trim() {
            "" | "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{text}`; use ms, s, m or h (for example `30s`)"
                ));
            }
        };
        let value: f64 = number.parse().map_err(|_| not_a_duration())?;
        Duration::try_from_secs_f64(value * scale)
            .map(DurationText)
            .map_err(|_| format!("duration `{text}` is out of range"))
    }
}

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_secs_f64() * 1e3)
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) && ms > 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Millis(ms) => Ok(DurationText(Duration::from_millis(ms))),
            Raw::Text(text) => DurationText::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: `250ms`, `1.5s`, `2m`, `1h`, or a number of milliseconds.",
            "anyOf": [
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|min|h)?\\s*$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_canonically() {
        for (text, ms) in [
            ("250ms", 250),
            ("1.5s", 1500),
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1500", 1500),
        ] {
            let d = DurationText::parse(text).unwrap();
            assert_eq!(d.0, Duration::from_millis(ms), "{text}");
        }
        assert_eq!(
            DurationText(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(DurationText(Duration::from_secs(30)).to_string(), "30s");
        assert_eq!(DurationText(Duration::from_secs(120)).to_string(), "2m");
        assert_eq!(DurationText(Duration::ZERO).to_string(), "0ms");
        let err = DurationText::parse("5 weeks").unwrap_err();
        assert!(err.contains("unknown unit `weeks`"), "{err}");
        assert!(
            DurationText::parse("fast")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(DurationText::parse("1e400s").is_err());
    }

    #[test]
    fn a_document_reads_and_writes_in_its_own_order() {
        let yaml_like = serde_json::json!({
            "version": 1,
            "name": "demo",
            "inputs": { "b": {}, "a": { "schema": { "type": "string" } } },
            "nodes": [
                { "id": "x", "type": "noop@2", "timeout": "30s", "retry": { "max_attempts": 3 } }
            ],
            "edges": [ { "from": "input.a", "to": "x.value" } ],
            "outputs": { "out": "x.value" }
        });
        let doc: Document = serde_json::from_value(yaml_like.clone()).unwrap();
        assert_eq!(doc.inputs.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(
            doc.nodes[0].timeout,
            Some(DurationText(Duration::from_secs(30)))
        );
        assert_eq!(serde_json::to_value(&doc).unwrap(), yaml_like);
        let err = serde_json::from_value::<Document>(serde_json::json!({
            "version": 1, "name": "x", "nodes": [], "nodez": []
        }))
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `nodez`"), "{err}");
    }
}
