//! Redis: the common commands, each with its own typed config, on one
//! connection manager per URL per engine.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use indexmap::IndexMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserializer;
use tokio::sync::OnceCell;

use super::{display_url, lock, positive_duration};

/// Runs one Redis command (`get`, `set`, `del`, `exists`, `incr`, `incrby`,
/// `decr`, `expire`, `lpush`, `rpush`, `lpop`, `rpop`, `lrange`, `hset`,
/// `hget`, `hgetall`, `hdel`, `sadd`, `smembers` or `publish`) and outputs
/// its result as JSON.
///
/// Each command has its own fields under `command` (`set: {key, ttl,
/// condition}`); values to write come from the command's fields or the
/// `value` input. With the default `values: text` a string is stored as its
/// text and any other value as JSON, and stored values are read back as
/// strings; with `values: json` every value is stored as JSON and parsed
/// back, so that numbers, objects and strings round-trip exactly. The
/// server's errors (such as `WRONGTYPE`) fail the node permanently with
/// the server's words; connection failures and timeouts are retryable.
/// The server is `url`, or `url_secret` naming a secret that holds the URL
/// (for one with a password); each URL has one connection manager per
/// engine, which reconnects by itself.
///
/// Results: `get`, `hget`, `lpop`, `rpop` the value or `null`; `set` whether
/// it was set (`false` when `condition` stopped it); `del`, `exists`,
/// `hdel`, `sadd` a count; `incr`, `incrby`, `decr` the new number;
/// `expire` whether the key exists; `lpush`, `rpush` the list's length;
/// `lrange`, `smembers` (sorted) a list; `hgetall` an object; `hset` the
/// number of new fields; `publish` the number of subscribers reached.
///
/// ```yaml
/// - id: remember
///   type: redis
///   config:
///     url_secret: REDIS_URL
///     command:
///       set: { key: "session:42", ttl: 30m, condition: nx }
///     values: json
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = RedisInput, output = RedisOutput, category = "messaging")]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// The server, `redis://[[user]:password@]host[:port][/db]`; default
    /// `redis://127.0.0.1:6379`. The client is built without TLS, so
    /// `rediss://` is refused when the flow loads (from `url_secret`, when
    /// the node runs). Put a URL with a password in a secret and name it in
    /// `url_secret` instead.
    #[serde(
        default,
        deserialize_with = "redis_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// The name of a secret holding the server's URL, in place of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<String>,
    /// The command and its arguments, such as `get: { key: user:1 }`.
    #[schemars(schema_with = "super::one_key_of::<RedisCommand>")]
    pub command: RedisCommand,
    /// How values are stored and read back: `text` or `json`.
    #[serde(default)]
    pub values: RedisValues,
    /// Time to connect (the first time) and get the answer.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: DurationText,
}

/// How a [`Redis`] node stores values and reads them back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedisValues {
    /// A string is stored as its text and any other value as JSON; stored
    /// values are read back as strings.
    #[default]
    Text,
    /// Every value is stored as JSON (a string with its quotes) and parsed
    /// back; a stored value that is not JSON fails the node.
    Json,
}

/// A `set` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SetCondition {
    /// Only if the key does not exist yet (`NX`).
    Nx,
    /// Only if the key exists already (`XX`).
    Xx,
}

/// A Redis command with its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum RedisCommand {
    /// `GET key`: the value, or `null`.
    Get {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
    },
    /// `SET key value [PX ttl] [NX|XX]`: whether the value was set.
    Set {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// The value, when the `value` input is not connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
        /// Expire the key after this long, such as `30m`.
        #[serde(
            default,
            deserialize_with = "ttl",
            skip_serializing_if = "Option::is_none"
        )]
        #[schemars(with = "DurationText")]
        ttl: Option<DurationText>,
        /// `nx` (only if absent) or `xx` (only if present).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "SetCondition")]
        condition: Option<SetCondition>,
    },
    /// `DEL key...`: how many keys were deleted.
    Del {
        /// The keys, at least one.
        #[serde(deserialize_with = "keys")]
        keys: Vec<String>,
    },
    /// `EXISTS key...`: how many of the keys exist.
    Exists {
        /// The keys, at least one.
        #[serde(deserialize_with = "keys")]
        keys: Vec<String>,
    },
    /// `INCR key`: the new number.
    Incr {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
    },
    /// `INCRBY key by`: the new number.
    Incrby {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// How much to add (may be negative).
        by: i64,
    },
    /// `DECR key`: the new number.
    Decr {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
    },
    /// `PEXPIRE key ttl`: whether the key exists (and now expires).
    Expire {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// Time to live, such as `10m`.
        #[serde(deserialize_with = "required_ttl")]
        ttl: DurationText,
    },
    /// `LPUSH key value...`: the list's new length.
    Lpush {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// The elements, when the `value` input (a list, or one element)
        /// is not connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Vec<serde_json::Value>")]
        values: Option<Vec<serde_json::Value>>,
    },
    /// `RPUSH key value...`: the list's new length.
    Rpush {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// The elements, when the `value` input (a list, or one element)
        /// is not connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Vec<serde_json::Value>")]
        values: Option<Vec<serde_json::Value>>,
    },
    /// `LPOP key [count]`: the element or `null`; with `count`, a list.
    Lpop {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// Pop up to this many elements, as a list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "u32")]
        count: Option<u32>,
    },
    /// `RPOP key [count]`: the element or `null`; with `count`, a list.
    Rpop {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// Pop up to this many elements, as a list.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "u32")]
        count: Option<u32>,
    },
    /// `LRANGE key start stop`: the elements, a list.
    Lrange {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// First index (negative counts from the end); default 0.
        #[serde(default)]
        start: i64,
        /// Last index, included (negative counts from the end); default -1.
        #[serde(default = "minus_one")]
        stop: i64,
    },
    /// `HSET key field value...`: how many fields are new.
    Hset {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// The fields, when the `value` input (an object) is not connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "IndexMap<String, serde_json::Value>")]
        fields: Option<IndexMap<String, serde_json::Value>>,
    },
    /// `HGET key field`: the value, or `null`.
    Hget {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// The field.
        field: String,
    },
    /// `HGETALL key`: the fields, an object.
    Hgetall {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
    },
    /// `HDEL key field...`: how many fields were removed.
    Hdel {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// The fields, at least one.
        #[serde(deserialize_with = "non_empty_list")]
        fields: Vec<String>,
    },
    /// `SADD key member...`: how many members are new.
    Sadd {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
        /// The members, when the `value` input (a list, or one member) is
        /// not connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Vec<serde_json::Value>")]
        members: Option<Vec<serde_json::Value>>,
    },
    /// `SMEMBERS key`: the members, a sorted list.
    Smembers {
        /// The key.
        #[serde(deserialize_with = "key")]
        key: String,
    },
    /// `PUBLISH channel message`: how many subscribers got it.
    Publish {
        /// The channel.
        #[serde(deserialize_with = "key")]
        channel: String,
        /// The message, when the `value` input is not connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<serde_json::Value>,
    },
}

/// The value a [`Redis`] command writes, when not in its config.
#[derive(Ports, Debug)]
pub struct RedisInput {
    /// `set`: the value; `lpush`, `rpush`, `sadd`: a list of values (or
    /// one); `hset`: an object of fields; `publish`: the message.
    pub value: Option<serde_json::Value>,
}

/// The answer of a [`Redis`] command.
#[derive(Ports, Debug)]
pub struct RedisOutput {
    /// The command's result as JSON (see the node's description).
    pub result: serde_json::Value,
}

impl Run for Redis {
    async fn run(&self, input: RedisInput, ctx: &Context) -> Result<RedisOutput, NodeError> {
        let url = match (&self.url, &self.url_secret) {
            (Some(_), Some(_)) => {
                return Err(NodeError::permanent(
                    "config: `url` and `url_secret` are both set; give one",
                ));
            }
            (Some(url), None) => url.clone(),
            (None, Some(secret)) => {
                let url = ctx.secret(secret)?.expose().trim().to_owned();
                check_url(&url).map_err(|reason| {
                    NodeError::permanent(format!(
                        "config.url_secret: secret `{secret}` is not a Redis URL; {reason}"
                    ))
                })?;
                url
            }
            (None, None) => DEFAULT_URL.to_owned(),
        };
        let shown = display_url(&url);
        let (cmd, reading) = self.command(input.value)?;
        let name = self.command_name();
        let target = format!("Redis {shown}: {name}{}", self.subject());
        let timeout = self.timeout.0;
        let work = async {
            let mut connection = connection(ctx, &url, &shown, timeout).await?;
            cmd.query_async::<redis::Value>(&mut connection)
                .await
                .map_err(|e| redis_error(&target, &e))
        };
        let answer = match tokio::time::timeout(timeout, work).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(NodeError::retryable(format!(
                    "{target}: no answer within {} (config.timeout)",
                    self.timeout
                )));
            }
        };
        let result = reading
            .read(answer, self.values)
            .map_err(|reason| NodeError::permanent(format!("{target}: {reason}")))?;
        Ok(RedisOutput { result })
    }
}

/// How a command's answer becomes its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// A stored value, or `null`.
    Value,
    /// A list of stored values (`null` stays `null`).
    Values,
    /// A sorted list of stored values.
    SortedValues,
    /// An object of stored values.
    Fields,
    /// A number.
    Integer,
    /// `OK` or a number as `true`, nil or 0 as `false`.
    Boolean,
}

impl Reading {
    fn read(self, answer: redis::Value, values: RedisValues) -> Result<serde_json::Value, String> {
        use redis::Value as R;
        let stored = |v: R| stored_value(v, values);
        match (self, answer) {
            (_, R::ServerError(e)) => Err(e.to_string()),
            (Reading::Value | Reading::Values, R::Nil) => Ok(serde_json::Value::Null),
            (Reading::Value, v) => stored(v),
            (Reading::Values | Reading::SortedValues, R::Array(items) | R::Set(items)) => {
                let mut out = items
                    .into_iter()
                    .map(stored)
                    .collect::<Result<Vec<_>, _>>()?;
                if self == Reading::SortedValues {
                    out.sort_by_key(ToString::to_string);
                }
                Ok(serde_json::Value::Array(out))
            }
            (Reading::SortedValues, R::Nil) => Ok(serde_json::Value::Array(Vec::new())),
            (Reading::Fields, R::Map(pairs)) => {
                let mut object = serde_json::Map::with_capacity(pairs.len());
                for (field, value) in pairs {
                    object.insert(text(field)?, stored(value)?);
                }
                Ok(serde_json::Value::Object(object))
            }
            (Reading::Fields, R::Array(items)) => {
                let mut object = serde_json::Map::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(field), Some(value)) = (items.next(), items.next()) {
                    object.insert(text(field)?, stored(value)?);
                }
                Ok(serde_json::Value::Object(object))
            }
            (Reading::Integer, R::Int(n)) => Ok(n.into()),
            (Reading::Boolean, R::Okay) => Ok(true.into()),
            (Reading::Boolean, R::Nil) => Ok(false.into()),
            (Reading::Boolean, R::Int(n)) => Ok((n != 0).into()),
            (Reading::Boolean, R::Boolean(b)) => Ok(b.into()),
            (_, other) => Err(format!("unexpected answer from the server: {other:?}")),
        }
    }
}

/// A stored value as JSON: text, or parsed JSON with `values: json`.
fn stored_value(value: redis::Value, values: RedisValues) -> Result<serde_json::Value, String> {
    let text = text(value)?;
    match values {
        RedisValues::Text => Ok(serde_json::Value::String(text)),
        RedisValues::Json => serde_json::from_str(&text).map_err(|e| {
            let mut start: String = text.chars().take(40).collect();
            if start.len() < text.len() {
                start.push_str("...");
            }
            format!("the stored value `{start}` is not JSON ({e}); read it with `values: text`")
        }),
    }
}

/// A bulk or simple string (or a number) as text.
fn text(value: redis::Value) -> Result<String, String> {
    use redis::Value as R;
    match value {
        R::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| "a stored value is not UTF-8 text".to_owned())
        }
        R::SimpleString(text) => Ok(text),
        R::VerbatimString { text, .. } => Ok(text),
        R::Int(n) => Ok(n.to_string()),
        R::Double(x) => Ok(x.to_string()),
        R::Okay => Ok("OK".to_owned()),
        other => Err(format!("unexpected answer from the server: {other:?}")),
    }
}

impl Redis {
    fn command_name(&self) -> &'static str {
        match &self.command {
            RedisCommand::Get { .. } => "GET",
            RedisCommand::Set { .. } => "SET",
            RedisCommand::Del { .. } => "DEL",
            RedisCommand::Exists { .. } => "EXISTS",
            RedisCommand::Incr { .. } => "INCR",
            RedisCommand::Incrby { .. } => "INCRBY",
            RedisCommand::Decr { .. } => "DECR",
            RedisCommand::Expire { .. } => "PEXPIRE",
            RedisCommand::Lpush { .. } => "LPUSH",
            RedisCommand::Rpush { .. } => "RPUSH",
            RedisCommand::Lpop { .. } => "LPOP",
            RedisCommand::Rpop { .. } => "RPOP",
            RedisCommand::Lrange { .. } => "LRANGE",
            RedisCommand::Hset { .. } => "HSET",
            RedisCommand::Hget { .. } => "HGET",
            RedisCommand::Hgetall { .. } => "HGETALL",
            RedisCommand::Hdel { .. } => "HDEL",
            RedisCommand::Sadd { .. } => "SADD",
            RedisCommand::Smembers { .. } => "SMEMBERS",
            RedisCommand::Publish { .. } => "PUBLISH",
        }
    }

    /// ` key` (or ` key1 key2`), for messages.
    fn subject(&self) -> String {
        match &self.command {
            RedisCommand::Del { keys } | RedisCommand::Exists { keys } => {
                format!(" {}", keys.join(" "))
            }
            RedisCommand::Publish { channel, .. } => format!(" {channel}"),
            RedisCommand::Get { key }
            | RedisCommand::Set { key, .. }
            | RedisCommand::Incr { key }
            | RedisCommand::Incrby { key, .. }
            | RedisCommand::Decr { key }
            | RedisCommand::Expire { key, .. }
            | RedisCommand::Lpush { key, .. }
            | RedisCommand::Rpush { key, .. }
            | RedisCommand::Lpop { key, .. }
            | RedisCommand::Rpop { key, .. }
            | RedisCommand::Lrange { key, .. }
            | RedisCommand::Hset { key, .. }
            | RedisCommand::Hget { key, .. }
            | RedisCommand::Hgetall { key }
            | RedisCommand::Hdel { key, .. }
            | RedisCommand::Sadd { key, .. }
            | RedisCommand::Smembers { key } => format!(" {key}"),
        }
    }

    /// The command to send and how to read its answer.
    fn command(
        &self,
        input: Option<serde_json::Value>,
    ) -> Result<(redis::Cmd, Reading), NodeError> {
        let values = self.values;
        let encode = |value: &serde_json::Value| -> Vec<u8> {
            match (values, value) {
                (RedisValues::Text, serde_json::Value::String(text)) => text.clone().into_bytes(),
                (_, other) => other.to_string().into_bytes(),
            }
        };
        let missing = |what: &str, field: &str| {
            NodeError::permanent(format!(
                "{}: no {what}: connect the `value` input or set config.command.{}.{field}",
                self.command_name(),
                self.command_name().to_lowercase(),
            ))
        };
        // A list from the input (an array, or one value) or the config.
        let list = |configured: &Option<Vec<serde_json::Value>>, what: &str, field: &str| {
            let items: Vec<serde_json::Value> = match (&input, configured) {
                (Some(serde_json::Value::Array(items)), _) => items.clone(),
                (Some(one), _) => vec![one.clone()],
                (None, Some(items)) => items.clone(),
                (None, None) => return Err(missing(what, field)),
            };
            if items.is_empty() {
                return Err(NodeError::permanent(format!(
                    "{}: the list of {what} is empty",
                    self.command_name()
                )));
            }
            Ok(items)
        };
        let mut cmd = redis::cmd(self.command_name());
        let reading = match &self.command {
            RedisCommand::Get { key } => {
                cmd.arg(key);
                Reading::Value
            }
            RedisCommand::Set {
                key,
                value,
                ttl,
                condition,
            } => {
                let value = input
                    .as_ref()
                    .or(value.as_ref())
                    .ok_or_else(|| missing("value", "value"))?;
                cmd.arg(key).arg(encode(value));
                if let Some(ttl) = ttl {
                    cmd.arg("PX").arg(millis(ttl.0));
                }
                match condition {
                    Some(SetCondition::Nx) => {
                        cmd.arg("NX");
                    }
                    Some(SetCondition::Xx) => {
                        cmd.arg("XX");
                    }
                    None => {}
                }
                Reading::Boolean
            }
            RedisCommand::Del { keys } | RedisCommand::Exists { keys } => {
                cmd.arg(keys);
                Reading::Integer
            }
            RedisCommand::Incr { key } | RedisCommand::Decr { key } => {
                cmd.arg(key);
                Reading::Integer
            }
            RedisCommand::Incrby { key, by } => {
                cmd.arg(key).arg(*by);
                Reading::Integer
            }
            RedisCommand::Expire { key, ttl } => {
                cmd.arg(key).arg(millis(ttl.0));
                Reading::Boolean
            }
            RedisCommand::Lpush { key, values } | RedisCommand::Rpush { key, values } => {
                cmd.arg(key);
                for item in list(values, "values", "values")? {
                    cmd.arg(encode(&item));
                }
                Reading::Integer
            }
            RedisCommand::Lpop { key, count } | RedisCommand::Rpop { key, count } => {
                cmd.arg(key);
                match count {
                    Some(count) => {
                        cmd.arg(*count);
                        Reading::Values
                    }
                    None => Reading::Value,
                }
            }
            RedisCommand::Lrange { key, start, stop } => {
                cmd.arg(key).arg(*start).arg(*stop);
                Reading::Values
            }
            RedisCommand::Hset { key, fields } => {
                let fields: IndexMap<String, serde_json::Value> = match (&input, fields) {
                    (Some(serde_json::Value::Object(object)), _) => {
                        object.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                    }
                    (Some(other), _) => {
                        return Err(NodeError::permanent(format!(
                            "input `value`: HSET takes an object of fields, got {}",
                            crate::kind(other)
                        )));
                    }
                    (None, Some(fields)) => fields.clone(),
                    (None, None) => return Err(missing("fields", "fields")),
                };
                if fields.is_empty() {
                    return Err(NodeError::permanent("HSET: no fields to set"));
                }
                cmd.arg(key);
                for (field, value) in &fields {
                    cmd.arg(field).arg(encode(value));
                }
                Reading::Integer
            }
            RedisCommand::Hget { key, field } => {
                cmd.arg(key).arg(field);
                Reading::Value
            }
            RedisCommand::Hgetall { key } => {
                cmd.arg(key);
                Reading::Fields
            }
            RedisCommand::Hdel { key, fields } => {
                cmd.arg(key).arg(fields);
                Reading::Integer
            }
            RedisCommand::Sadd { key, members } => {
                cmd.arg(key);
                for member in list(members, "members", "members")? {
                    cmd.arg(encode(&member));
                }
                Reading::Integer
            }
            RedisCommand::Smembers { key } => {
                cmd.arg(key);
                Reading::SortedValues
            }
            RedisCommand::Publish { channel, message } => {
                let message = input
                    .as_ref()
                    .or(message.as_ref())
                    .ok_or_else(|| missing("message", "message"))?;
                cmd.arg(channel).arg(encode(message));
                Reading::Integer
            }
        };
        Ok((cmd, reading))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The failure for a Redis error: server errors are permanent (except the
/// ones that say to try again), connection trouble is retryable.
fn redis_error(target: &str, error: &redis::RedisError) -> NodeError {
    use redis::{ErrorKind as Kind, ServerErrorKind as Server};
    let server_words = || match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => error.to_string(),
    };
    match error.kind() {
        Kind::Server(
            Server::BusyLoading | Server::TryAgain | Server::ClusterDown | Server::MasterDown,
        ) => NodeError::retryable(format!("{target}: {}", server_words())),
        Kind::Server(_) | Kind::Extension => {
            NodeError::permanent(format!("{target}: {}", server_words()))
        }
        Kind::AuthenticationFailed => {
            NodeError::permanent(format!("{target}: authentication failed: {error}"))
        }
        Kind::InvalidClientConfig | Kind::Client | Kind::UnexpectedReturnType | Kind::Parse => {
            NodeError::permanent(format!("{target}: {error}"))
        }
        _ => NodeError::retryable(format!("{target}: {error}")),
    }
}

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(5))
}

fn minus_one() -> i64 {
    -1
}

/// Whether `url` is a Redis URL the client understands; if not, why (in
/// the driver's words, which never include the password).
fn check_url(url: &str) -> Result<(), String> {
    const FORM: &str = "write it as redis://[[user]:password@]host[:port][/db]";
    if let Ok(parsed) = url::Url::parse(url)
        && matches!(parsed.scheme(), "rediss" | "valkeys")
    {
        return Err(format!(
            "TLS ({}://) is not supported; {FORM}",
            parsed.scheme()
        ));
    }
    redis::Client::open(url).map(|_| ()).map_err(|error| {
        // The driver writes `reason - Kind[: detail]`; the kind is noise.
        let reason = error.to_string().replacen(" - InvalidClientConfig", "", 1);
        format!("{reason}; {FORM}")
    })
}

fn redis_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(deserializer)?.trim().to_owned();
    check_url(&url).map_err(|reason| {
        serde::de::Error::custom(format!(
            "`{}` is not a Redis URL: {reason}",
            display_url(&url)
        ))
    })?;
    Ok(Some(url))
}

/// A key: not empty, at most 1024 bytes, no control characters.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    const MAX: usize = 1024;
    if key.is_empty() {
        return Err("the key is empty".to_owned());
    }
    if key.len() > MAX {
        return Err(format!("the key is longer than {MAX} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("{key:?}: a key has no control characters"));
    }
    Ok(())
}

fn key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let key = String::deserialize(deserializer)?;
    check_key(&key).map_err(serde::de::Error::custom)?;
    Ok(key)
}

fn keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let keys = Vec::<String>::deserialize(deserializer)?;
    if keys.is_empty() {
        return Err(serde::de::Error::custom("give at least one key"));
    }
    for key in &keys {
        check_key(key).map_err(serde::de::Error::custom)?;
    }
    Ok(keys)
}

fn non_empty_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let items = Vec::<String>::deserialize(deserializer)?;
    if items.is_empty() {
        return Err(serde::de::Error::custom("give at least one"));
    }
    Ok(items)
}

fn required_ttl<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
    let ttl = DurationText::deserialize(deserializer)?;
    if ttl.0 < Duration::from_millis(1) {
        return Err(serde::de::Error::custom("a time to live is at least 1ms"));
    }
    Ok(ttl)
}

fn ttl<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DurationText>, D::Error> {
    required_ttl(deserializer).map(Some)
}

/// The engine's Redis connection managers, one per URL.
#[derive(Default)]
struct RedisConnections {
    managers: Mutex<HashMap<String, Arc<OnceCell<ConnectionManager>>>>,
}

impl fmt::Debug for RedisConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnections")
            .field("servers", &lock(&self.managers).len())
            .finish()
    }
}

/// The engine's connection manager for `url`, connected on first use.
async fn connection(
    ctx: &Context,
    url: &str,
    shown: &str,
    timeout: Duration,
) -> Result<ConnectionManager, NodeError> {
    let connections = ctx.shared(RedisConnections::default);
    let cell = lock(&connections.managers)
        .entry(url.to_owned())
        .or_default()
        .clone();
    let manager = cell
        .get_or_try_init(|| async {
            let fail = |e: redis::RedisError| {
                let message = format!("cannot connect to Redis at {shown}: {e}");
                if e.kind() == redis::ErrorKind::AuthenticationFailed
                    || e.kind() == redis::ErrorKind::InvalidClientConfig
                {
                    NodeError::permanent(message)
                } else {
                    NodeError::retryable(message)
                }
            };
            let client = redis::Client::open(url).map_err(fail)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2));
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(fail)
        })
        .await?;
    Ok(manager.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("user:1").is_ok());
        assert_eq!(check_key("").unwrap_err(), "the key is empty");
        assert!(check_key(&"k".repeat(2000)).unwrap_err().contains("1024"));
        assert!(check_key("a\nb").unwrap_err().contains("control"));
    }

    #[test]
    fn answers_are_read_per_command() {
        use redis::Value as R;
        let bulk = |s: &str| R::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            Reading::Value
                .read(bulk("{\"a\":1}"), RedisValues::Json)
                .unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            Reading::Value
                .read(bulk("{\"a\":1}"), RedisValues::Text)
                .unwrap(),
            json!("{\"a\":1}")
        );
        assert_eq!(
            Reading::Value.read(R::Nil, RedisValues::Json).unwrap(),
            json!(null)
        );
        assert_eq!(
            Reading::Boolean.read(R::Okay, RedisValues::Text).unwrap(),
            json!(true)
        );
        assert_eq!(
            Reading::Boolean.read(R::Nil, RedisValues::Text).unwrap(),
            json!(false)
        );
        assert_eq!(
            Reading::SortedValues
                .read(R::Array(vec![bulk("b"), bulk("a")]), RedisValues::Text)
                .unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            Reading::Fields
                .read(R::Array(vec![bulk("f"), bulk("1")]), RedisValues::Json)
                .unwrap(),
            json!({"f": 1})
        );
        let err = Reading::Value
            .read(bulk("plain"), RedisValues::Json)
            .unwrap_err();
        assert!(
            err.starts_with("the stored value `plain` is not JSON"),
            "{err}"
        );
    }
}
