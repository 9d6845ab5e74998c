//! NATS: publish (optionally through JetStream) and request-reply, on one
//! client per server and credentials per engine.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, HeaderMap, ServerAddr};
use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use indexmap::IndexMap;
use serde::Deserializer;
use tokio::sync::OnceCell;

use super::{
    PayloadEncoding, ReplyFormat, check_headers, display_url, header_map, lock, positive_duration,
};

/// Credentials for a NATS server, read from the engine's secrets when the
/// node runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NatsAuth {
    /// A user name and a password.
    UserPassword {
        /// The user name.
        username: String,
        /// The name of the secret holding the password.
        password_secret: String,
    },
    /// An authentication token.
    Token {
        /// The name of the secret holding the token.
        token_secret: String,
    },
}

/// Publishes a message on a NATS subject, and waits until it is written to
/// the server (or, with `jetstream: true`, until a stream has stored it).
///
/// The payload comes from the `payload` input, else from the config; with
/// the default `encoding: auto` a string is sent as its text and any other
/// value as JSON. Headers from the config and the `headers` input are sent
/// with it. Core NATS delivers to whoever subscribes at that moment and
/// acknowledges nothing: the node flushes its connection, so a success
/// means the message left for the server. With `jetstream: true` the
/// server's JetStream acknowledges the message once a stream has stored it,
/// and the stream and sequence are outputs (set a `Nats-Msg-Id` header to
/// let the stream drop a retried duplicate). Wildcards are refused in the
/// subject; the server's `max_payload` bounds the size.
///
/// ```yaml
/// - id: announce
///   type: nats_publish
///   config:
///     url: nats://127.0.0.1:4222
///     subject: orders.created
///     headers: { Nats-Msg-Id: "order-1042" }
///     jetstream: true
///     timeout: 5s
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = NatsPublishInput, output = NatsPublishOutput, category = "messaging")]
#[serde(deny_unknown_fields)]
pub struct NatsPublish {
    /// The server: `nats://host:port` (default `nats://127.0.0.1:4222`) or
    /// `tls://host:port`.
    #[serde(default = "default_url", deserialize_with = "nats_url")]
    pub url: String,
    /// Credentials: `user_password: {username, password_secret}` or
    /// `token: {token_secret}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::one_key_of::<NatsAuth>")]
    pub auth: Option<NatsAuth>,
    /// The subject, such as `orders.created`; no wildcards.
    #[serde(deserialize_with = "publish_subject")]
    pub subject: String,
    /// Message headers; the `headers` input adds to them.
    #[serde(
        default,
        deserialize_with = "header_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub headers: IndexMap<String, String>,
    /// The payload when the `payload` input is not connected; without
    /// either the message is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// How the payload becomes bytes: `auto`, `json`, `text` or `base64`.
    #[serde(default)]
    pub encoding: PayloadEncoding,
    /// Publish through JetStream and wait for the stream's acknowledgement.
    #[serde(default)]
    pub jetstream: bool,
    /// Time to connect (the first time), publish and flush or be
    /// acknowledged.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: DurationText,
}

/// Values that complete a [`NatsPublish`] at run time.
#[derive(Ports, Debug)]
pub struct NatsPublishInput {
    /// The payload, in place of the configured one.
    pub payload: Option<serde_json::Value>,
    /// Headers, set over the configured ones.
    pub headers: Option<IndexMap<String, String>>,
}

/// What a [`NatsPublish`] sent.
#[derive(Ports, Debug)]
pub struct NatsPublishOutput {
    /// The subject published to.
    pub subject: String,
    /// The size of the payload in bytes.
    pub bytes: u64,
    /// With `jetstream: true`, the stream that stored the message.
    pub stream: Option<String>,
    /// With `jetstream: true`, the message's sequence number in the stream.
    pub sequence: Option<u64>,
    /// With `jetstream: true`, whether the stream had the message already
    /// (same `Nats-Msg-Id`) and did not store it again.
    pub duplicate: Option<bool>,
}

impl Run for NatsPublish {
    async fn run(
        &self,
        input: NatsPublishInput,
        ctx: &Context,
    ) -> Result<NatsPublishOutput, NodeError> {
        let payload = self
            .encoding
            .encode(
                input.payload.as_ref().or(self.payload.as_ref()),
                payload_place(input.payload.is_some()),
            )
            .map_err(NodeError::permanent)?;
        let headers = nats_headers(&self.headers, input.headers.as_ref())?;
        let bytes = payload.len() as u64;
        let target = format!("NATS {} subject `{}`", display_url(&self.url), self.subject);
        let work = async {
            let client = client(ctx, &self.url, self.auth.as_ref(), self.timeout.0).await?;
            if self.jetstream {
                let mut js = async_nats::jetstream::new(client);
                js.set_timeout(self.timeout.0);
                let subject = self.subject.clone();
                let pending = match headers {
                    Some(headers) => {
                        js.publish_with_headers(subject, headers, payload.into())
                            .await
                    }
                    None => js.publish(subject, payload.into()).await,
                }
                .map_err(|e| jetstream_error(&target, &e))?;
                let ack = pending.await.map_err(|e| jetstream_error(&target, &e))?;
                Ok(NatsPublishOutput {
                    subject: self.subject.clone(),
                    bytes,
                    stream: Some(ack.stream),
                    sequence: Some(ack.sequence),
                    duplicate: Some(ack.duplicate),
                })
            } else {
                let subject = self.subject.clone();
                match headers {
                    Some(headers) => {
                        client
                            .publish_with_headers(subject, headers, payload.into())
                            .await
                    }
                    None => client.publish(subject, payload.into()).await,
                }
                .map_err(|e| {
                    use async_nats::client::PublishErrorKind as Kind;
                    let message = format!("{target}: cannot publish: {e}");
                    match e.kind() {
                        Kind::MaxPayloadExceeded | Kind::InvalidSubject => {
                            NodeError::permanent(message)
                        }
                        Kind::Send => NodeError::retryable(message),
                    }
                })?;
                client.flush().await.map_err(|e| {
                    NodeError::retryable(format!("{target}: cannot flush the connection: {e}"))
                })?;
                Ok(NatsPublishOutput {
                    subject: self.subject.clone(),
                    bytes,
                    stream: None,
                    sequence: None,
                    duplicate: None,
                })
            }
        };
        match tokio::time::timeout(self.timeout.0, work).await {
            Ok(result) => result,
            Err(_) => Err(NodeError::retryable(format!(
                "{target}: not {} within {} (config.timeout)",
                if self.jetstream {
                    "acknowledged"
                } else {
                    "published"
                },
                self.timeout
            ))),
        }
    }
}

fn jetstream_error(
    target: &str,
    error: &async_nats::jetstream::context::PublishError,
) -> NodeError {
    use async_nats::jetstream::context::PublishErrorKind as Kind;
    match error.kind() {
        Kind::StreamNotFound => {
            NodeError::permanent(format!("{target}: no JetStream stream takes this subject"))
        }
        Kind::WrongLastMessageId | Kind::WrongLastSequence | Kind::MaxPayloadExceeded => {
            NodeError::permanent(format!("{target}: JetStream refused the message: {error}"))
        }
        Kind::TimedOut => NodeError::retryable(format!(
            "{target}: JetStream did not acknowledge the message in time"
        )),
        Kind::BrokenPipe | Kind::MaxAckPending | Kind::Other => {
            NodeError::retryable(format!("{target}: JetStream publish failed: {error}"))
        }
    }
}

/// Sends a request on a NATS subject and outputs the reply.
///
/// The request's payload and headers are made as [`NatsPublish`] makes
/// them. The reply is read as JSON when it parses, else as text (`reply`
/// says otherwise), and its headers are an output. No subscriber on the
/// subject ("no responders") and no reply within `timeout` are retryable
/// failures that say so: a retry policy can wait out a service that is
/// restarting.
///
/// ```yaml
/// - id: price
///   type: nats_request
///   config:
///     url: nats://127.0.0.1:4222
///     subject: pricing.quote
///     payload: { sku: "A-1", quantity: 3 }
///     timeout: 2s
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = NatsRequestInput, output = NatsRequestOutput, category = "messaging")]
#[serde(deny_unknown_fields)]
pub struct NatsRequest {
    /// The server: `nats://host:port` (default `nats://127.0.0.1:4222`) or
    /// `tls://host:port`.
    #[serde(default = "default_url", deserialize_with = "nats_url")]
    pub url: String,
    /// Credentials: `user_password: {username, password_secret}` or
    /// `token: {token_secret}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::one_key_of::<NatsAuth>")]
    pub auth: Option<NatsAuth>,
    /// The subject the service listens on; no wildcards.
    #[serde(deserialize_with = "publish_subject")]
    pub subject: String,
    /// Request headers; the `headers` input adds to them.
    #[serde(
        default,
        deserialize_with = "header_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub headers: IndexMap<String, String>,
    /// The payload when the `payload` input is not connected; without
    /// either the request is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// How the payload becomes bytes: `auto`, `json`, `text` or `base64`.
    #[serde(default)]
    pub encoding: PayloadEncoding,
    /// How the reply is read: `auto` (JSON if it parses, else text),
    /// `json`, `text` or `base64`.
    #[serde(default)]
    pub reply: ReplyFormat,
    /// Time to connect (the first time) and get the reply.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: DurationText,
}

/// Values that complete a [`NatsRequest`] at run time.
#[derive(Ports, Debug)]
pub struct NatsRequestInput {
    /// The payload, in place of the configured one.
    pub payload: Option<serde_json::Value>,
    /// Headers, set over the configured ones.
    pub headers: Option<IndexMap<String, String>>,
}

/// The reply to a [`NatsRequest`].
#[derive(Ports, Debug)]
pub struct NatsRequestOutput {
    /// The reply's payload, read as `reply` says.
    pub reply: serde_json::Value,
    /// The reply's headers; repeated headers are joined with `, `.
    pub headers: IndexMap<String, String>,
}

impl Run for NatsRequest {
    async fn run(
        &self,
        input: NatsRequestInput,
        ctx: &Context,
    ) -> Result<NatsRequestOutput, NodeError> {
        let payload = self
            .encoding
            .encode(
                input.payload.as_ref().or(self.payload.as_ref()),
                payload_place(input.payload.is_some()),
            )
            .map_err(NodeError::permanent)?;
        let headers = nats_headers(&self.headers, input.headers.as_ref())?;
        let target = format!("NATS {} subject `{}`", display_url(&self.url), self.subject);
        let timeout = self.timeout.0;
        let work = async {
            let client = client(ctx, &self.url, self.auth.as_ref(), timeout).await?;
            let mut request = async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(timeout));
            if let Some(headers) = headers {
                request = request.headers(headers);
            }
            client
                .send_request(self.subject.clone(), request)
                .await
                .map_err(|e| {
                    use async_nats::client::RequestErrorKind as Kind;
                    match e.kind() {
                        Kind::NoResponders => NodeError::retryable(format!(
                            "{target}: no responders: nothing subscribes to this subject"
                        )),
                        Kind::TimedOut => self.timed_out(&target),
                        Kind::InvalidSubject | Kind::MaxPayloadExceeded => {
                            NodeError::permanent(format!("{target}: {e}"))
                        }
                        Kind::Other => {
                            NodeError::retryable(format!("{target}: request failed: {e}"))
                        }
                    }
                })
        };
        let message = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result?,
            Err(_) => return Err(self.timed_out(&target)),
        };
        let reply = self
            .reply
            .decode(&message.payload)
            .map_err(|reason| NodeError::permanent(format!("{target}: {reason}")))?;
        Ok(NatsRequestOutput {
            reply,
            headers: message
                .headers
                .as_ref()
                .map(header_output)
                .unwrap_or_default(),
        })
    }
}

impl NatsRequest {
    fn timed_out(&self, target: &str) -> NodeError {
        NodeError::retryable(format!(
            "{target}: no reply within {} (config.timeout)",
            self.timeout
        ))
    }
}

fn payload_place(from_input: bool) -> &'static str {
    if from_input {
        "input `payload`"
    } else {
        "config.payload"
    }
}

/// The configured headers with the input's set over them; `None` when
/// there are none.
fn nats_headers(
    configured: &IndexMap<String, String>,
    input: Option<&IndexMap<String, String>>,
) -> Result<Option<HeaderMap>, NodeError> {
    if let Some(input) = input {
        check_headers(input)
            .map_err(|reason| NodeError::permanent(format!("input `headers`: {reason}")))?;
    }
    let mut merged: IndexMap<&str, &str> = configured
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (name, value) in input.into_iter().flatten() {
        merged.insert(name, value);
    }
    if merged.is_empty() {
        return Ok(None);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in merged {
        headers.insert(name, value);
    }
    Ok(Some(headers))
}

/// Headers as an output, sorted by name; repeated ones joined with `, `.
fn header_output(headers: &HeaderMap) -> IndexMap<String, String> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(name, values)| {
            let joined = values
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            (name.to_string(), joined)
        })
        .collect();
    out.sort();
    out.into_iter().collect()
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(10))
}

fn nats_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let url = String::deserialize(deserializer)?;
    ServerAddr::from_str(url.trim())
        .map_err(|e| serde::de::Error::custom(format!("`{}`: {e}", display_url(&url))))?;
    Ok(url.trim().to_owned())
}

fn publish_subject<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let subject = String::deserialize(deserializer)?;
    check_subject(&subject).map_err(serde::de::Error::custom)?;
    Ok(subject)
}

/// A subject to publish to: dot-separated tokens, none empty, no
/// whitespace, no wildcard.
pub(crate) fn check_subject(subject: &str) -> Result<(), String> {
    const MAX: usize = 1024;
    if subject.is_empty() {
        return Err("the subject is empty".to_owned());
    }
    if subject.len() > MAX {
        return Err(format!("the subject is longer than {MAX} bytes"));
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{subject}`: a subject has no whitespace"));
    }
    for token in subject.split('.') {
        match token {
            "" => {
                return Err(format!(
                    "`{subject}`: empty token (a subject is tokens separated by single dots)"
                ));
            }
            "*" | ">" => {
                return Err(format!(
                    "`{subject}`: the wildcard `{token}` cannot be published to; name one subject"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The engine's NATS clients, one per server and credentials.
#[derive(Default)]
struct NatsClients {
    clients: Mutex<HashMap<String, Arc<OnceCell<Client>>>>,
}

impl fmt::Debug for NatsClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsClients")
            .field("servers", &lock(&self.clients).len())
            .finish()
    }
}

/// The engine's client for `url` with `auth`, connected on first use.
async fn client(
    ctx: &Context,
    url: &str,
    auth: Option<&NatsAuth>,
    timeout: Duration,
) -> Result<Client, NodeError> {
    // The key holds the credentials themselves, so that a changed password
    // gets its own connection; it stays in memory and is never printed.
    let (options, identity) = match auth {
        None => (ConnectOptions::new(), String::new()),
        Some(NatsAuth::UserPassword {
            username,
            password_secret,
        }) => {
            let password = ctx.secret(password_secret)?;
            let identity = format!("user\0{username}\0{}", password.expose());
            (
                ConnectOptions::new()
                    .user_and_password(username.clone(), password.expose().to_owned()),
                identity,
            )
        }
        Some(NatsAuth::Token { token_secret }) => {
            let token = ctx.secret(token_secret)?;
            let identity = format!("token\0{}", token.expose());
            (
                ConnectOptions::new().token(token.expose().to_owned()),
                identity,
            )
        }
    };
    let clients = ctx.shared(NatsClients::default);
    let cell = lock(&clients.clients)
        .entry(format!("{url}\0{identity}"))
        .or_default()
        .clone();
    let client = cell
        .get_or_try_init(|| async {
            options
                .name("ghostflow")
                .connection_timeout(timeout)
                .connect(url)
                .await
                .map_err(|e| {
                    use async_nats::ConnectErrorKind as Kind;
                    let message = format!("cannot connect to NATS at {}: {e}", display_url(url));
                    match e.kind() {
                        Kind::Authentication | Kind::AuthorizationViolation | Kind::ServerParse => {
                            NodeError::permanent(message)
                        }
                        _ => NodeError::retryable(message),
                    }
                })
        })
        .await?;
    Ok(client.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked() {
        assert!(check_subject("orders.created").is_ok());
        assert!(check_subject("a").is_ok());
        for (subject, expected) in [
            ("", "the subject is empty"),
            ("a b", "`a b`: a subject has no whitespace"),
            (
                "a..b",
                "`a..b`: empty token (a subject is tokens separated by single dots)",
            ),
            (
                "orders.*",
                "`orders.*`: the wildcard `*` cannot be published to; name one subject",
            ),
            (
                "orders.>",
                "`orders.>`: the wildcard `>` cannot be published to; name one subject",
            ),
        ] {
            assert_eq!(check_subject(subject).unwrap_err(), expected, "{subject}");
        }
    }
}
