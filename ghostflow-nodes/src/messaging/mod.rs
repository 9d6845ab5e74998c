//! Messaging nodes: publish to NATS ([`NatsPublish`], optionally through
//! JetStream) and ask over it ([`NatsRequest`]), run Redis commands
//! ([`Redis`]), publish to an MQTT broker ([`MqttPublish`]), and post to
//! Slack ([`SlackMessage`]) and Discord ([`DiscordMessage`]) through their
//! incoming webhooks.
//!
//! - **One connection per peer per engine.** The NATS client for a server,
//!   the Redis connection manager for a URL and the MQTT client for a broker
//!   are made the first time a node of the engine needs them and then
//!   shared by every node of every execution ([`ghostflow::Context::shared`]).
//!   A connection that cannot be made is not kept: the next attempt tries
//!   again. The MQTT client's event loop is a task that ends when the
//!   engine is dropped; it connects on demand and does not spin on
//!   reconnects while nobody publishes. The webhook nodes use the engine's
//!   shared HTTP client ([`crate::net`]) and its network policy.
//! - **Success means the peer has it.** `nats_publish` flushes, and with
//!   `jetstream: true` waits for the stream's acknowledgement (its stream
//!   and sequence are outputs); `mqtt_publish` with QoS 1 or 2 waits for the
//!   broker's PUBACK or PUBCOMP; the webhooks wait for the service's answer.
//! - **Failures say whether to retry.** Connection failures, timeouts,
//!   NATS "no responders", rate limits and 5xx answers are retryable (Slack's
//!   `Retry-After` and Discord's `retry_after` ask the retry policy to wait
//!   that long); bad input, a refused configuration, a Redis server error
//!   such as `WRONGTYPE`, and the webhook errors (`invalid_payload`,
//!   `channel_not_found`, ...) are permanent, with the peer's own words.
//! - **Payloads.** What a node sends comes from its `payload` input (or
//!   config): with the default `encoding: auto`, a string is sent as its
//!   text and any other value as JSON; `json`, `text` and `base64` force one
//!   reading. Replies are read back as JSON when they parse, else as text
//!   (`reply: json | text | base64` to insist).
//! - **Secrets.** Passwords, tokens, a Redis URL with credentials and the
//!   webhook URLs (whoever has one can post) are named in the config
//!   (`password_secret: NATS_PASSWORD`, `webhook_secret:
//!   SLACK_WEBHOOK_URL`) and read when the node runs; the engine masks
//!   their values in every error and event, and the nodes never print a
//!   URL's credentials.
//! - **Limits.** Subjects, topics and keys are checked when the flow loads;
//!   message sizes are bounded by the peer (NATS `max_payload`) or by the
//!   node (Slack and Discord text limits, checked before sending); every
//!   exchange has a `timeout`.

mod mqtt;
mod nats;
mod redis;
mod webhook;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::Registry;
use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

pub use self::mqtt::{MqttAuth, MqttPublish, MqttPublishInput, MqttPublishOutput, Qos};
pub use self::nats::{
    NatsAuth, NatsPublish, NatsPublishInput, NatsPublishOutput, NatsRequest, NatsRequestInput,
    NatsRequestOutput,
};
pub use self::redis::{Redis, RedisCommand, RedisInput, RedisOutput, RedisValues, SetCondition};
pub use self::webhook::{
    DiscordMessage, DiscordMessageInput, DiscordMessageOutput, SlackMessage, SlackMessageInput,
    SlackMessageOutput,
};
// For `webhook`'s `#[serde(default = "yes")]`.
use crate::yes;

/// Registers the messaging nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register::<NatsPublish>()
        .register::<NatsRequest>()
        .register::<Redis>()
        .register::<MqttPublish>()
        .register::<SlackMessage>()
        .register::<DiscordMessage>();
}

/// How a value becomes the bytes of a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// A string is sent as its text, any other value as JSON.
    #[default]
    Auto,
    /// Always JSON: a string is sent with its quotes.
    Json,
    /// The value must be a string, sent as UTF-8 text.
    Text,
    /// The value must be a base64 string; its bytes are sent.
    Base64,
}

impl PayloadEncoding {
    /// The bytes of `value`; `None` is an empty message. `place` names where
    /// the value came from, for messages (`input `payload``).
    pub(crate) fn encode(
        self,
        value: Option<&serde_json::Value>,
        place: &str,
    ) -> Result<Vec<u8>, String> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        match (self, value) {
            (PayloadEncoding::Auto | PayloadEncoding::Text, serde_json::Value::String(text)) => {
                Ok(text.clone().into_bytes())
            }
            (PayloadEncoding::Auto | PayloadEncoding::Json, other) => {
                Ok(other.to_string().into_bytes())
            }
            (PayloadEncoding::Base64, serde_json::Value::String(text)) => BASE64
                .decode(text.trim())
                .map_err(|e| format!("{place}: not valid base64 (encoding: base64): {e}")),
            (PayloadEncoding::Text | PayloadEncoding::Base64, other) => Err(format!(
                "{place}: expected a string (encoding: {}), got {}",
                if self == PayloadEncoding::Text {
                    "text"
                } else {
                    "base64"
                },
                crate::kind(other)
            )),
        }
    }
}

/// How the bytes of a reply become a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyFormat {
    /// JSON when the bytes parse as JSON, else text (an empty reply is
    /// `null`); bytes that are not UTF-8 fail the node (use `base64`).
    #[default]
    Auto,
    /// JSON, or a permanent failure.
    Json,
    /// UTF-8 text, or a permanent failure.
    Text,
    /// The bytes, as a base64 string.
    Base64,
}

impl ReplyFormat {
    /// The value of `bytes`, or why they cannot be read this way.
    pub(crate) fn decode(self, bytes: &[u8]) -> Result<serde_json::Value, String> {
        let text = || {
            std::str::from_utf8(bytes)
                .map_err(|_| "the reply is not UTF-8 text; read it with `reply: base64`".to_owned())
        };
        match self {
            ReplyFormat::Auto => {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(serde_json::Value::Null);
                }
                match serde_json::from_slice(bytes) {
                    Ok(value) => Ok(value),
                    Err(_) => text().map(|t| serde_json::Value::String(t.to_owned())),
                }
            }
            ReplyFormat::Json => serde_json::from_slice(bytes)
                .map_err(|e| format!("the reply is not valid JSON (reply: json): {e}")),
            ReplyFormat::Text => text().map(|t| serde_json::Value::String(t.to_owned())),
            ReplyFormat::Base64 => Ok(serde_json::Value::String(BASE64.encode(bytes))),
        }
    }
}

/// Checks message headers: names of visible ASCII without `:`, values
/// without line breaks.
pub(crate) fn check_headers(headers: &IndexMap<String, String>) -> Result<(), String> {
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!(
                "`{name}` is not a valid header name (visible ASCII characters, no `:`)"
            ));
        }
        if value.contains(['\r', '\n']) {
            return Err(format!(
                "the value of header `{name}` contains a line break"
            ));
        }
    }
    Ok(())
}

/// Deserializes headers and checks them.
pub(crate) fn header_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<IndexMap<String, String>, D::Error> {
    let headers = IndexMap::<String, String>::deserialize(deserializer)?;
    check_headers(&headers).map_err(serde::de::Error::custom)?;
    Ok(headers)
}

/// `url` without its password (user names are kept), for messages.
pub(crate) fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// `timeout` fields: a duration that is not zero.
pub(crate) fn positive_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ghostflow::document::DurationText, D::Error> {
    let duration = ghostflow::document::DurationText::deserialize(deserializer)?;
    if duration.0.is_zero() {
        return Err(serde::de::Error::custom("must be longer than zero"));
    }
    Ok(duration)
}

/// The schema of an externally tagged enum whose variants all carry
/// fields (`set: {key: ...}`), as one object with a property per variant
/// and exactly one of them. The loader then reports a mistake inside a
/// variant at its own path (`command.set.ttl`), and an unknown variant as
/// an unknown field with a suggestion, where a `oneOf` would only say that
/// no variant matched.
pub(crate) fn one_key_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let schema = T::json_schema(generator);
    let value = schema.as_value();
    let Some(variants) = value.get("oneOf").and_then(serde_json::Value::as_array) else {
        return schema;
    };
    let mut properties = serde_json::Map::new();
    for variant in variants {
        match variant
            .get("properties")
            .and_then(serde_json::Value::as_object)
        {
            Some(props) if props.len() == 1 => {
                for (name, property) in props {
                    let mut property = property.clone();
                    if let (Some(object), Some(description)) =
                        (property.as_object_mut(), variant.get("description"))
                    {
                        object
                            .entry("description")
                            .or_insert_with(|| description.clone());
                    }
                    properties.insert(name.clone(), property);
                }
            }
            _ => return schema,
        }
    }
    let mut merged = serde_json::json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
        "minProperties": 1,
        "maxProperties": 1
    });
    if let Some(description) = value.get("description") {
        merged["description"] = description.clone();
    }
    Schema::try_from(merged).unwrap_or(schema)
}

/// Locks `mutex`; a panic elsewhere while it was held leaves plain maps of
/// clients behind, which are still sound to use.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_encode_as_configured() {
        let auto = PayloadEncoding::Auto;
        assert_eq!(auto.encode(Some(&json!("hi")), "p").unwrap(), b"hi");
        assert_eq!(
            auto.encode(Some(&json!({"a": 1})), "p").unwrap(),
            br#"{"a":1}"#
        );
        assert_eq!(auto.encode(None, "p").unwrap(), b"");
        assert_eq!(
            PayloadEncoding::Json
                .encode(Some(&json!("hi")), "p")
                .unwrap(),
            br#""hi""#
        );
        assert_eq!(
            PayloadEncoding::Base64
                .encode(Some(&json!("AAH/")), "p")
                .unwrap(),
            vec![0, 1, 255]
        );
        assert_eq!(
            PayloadEncoding::Text
                .encode(Some(&json!(5)), "input `payload`")
                .unwrap_err(),
            "input `payload`: expected a string (encoding: text), got a number"
        );
        assert!(
            PayloadEncoding::Base64
                .encode(Some(&json!("!!")), "p")
                .unwrap_err()
                .starts_with("p: not valid base64")
        );
    }

    #[test]
    fn replies_decode_as_configured() {
        let auto = ReplyFormat::Auto;
        assert_eq!(auto.decode(br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(auto.decode(b"plain words").unwrap(), json!("plain words"));
        assert_eq!(auto.decode(b"").unwrap(), json!(null));
        assert!(auto.decode(&[0xff, 0xfe]).unwrap_err().contains("base64"));
        assert_eq!(ReplyFormat::Text.decode(b"42").unwrap(), json!("42"));
        assert!(ReplyFormat::Json.decode(b"nope").is_err());
        assert_eq!(ReplyFormat::Base64.decode(&[0, 1]).unwrap(), json!("AAE="));
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            display_url("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            display_url("nats://ada:pw@127.0.0.1:4222"),
            "nats://ada:***@127.0.0.1:4222"
        );
        assert_eq!(
            display_url("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
