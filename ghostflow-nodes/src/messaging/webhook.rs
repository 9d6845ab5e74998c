//! Slack and Discord incoming webhooks, on the engine's shared HTTP client.
//!
//! A webhook URL is a credential (whoever has it can post), so it is always
//! a secret, and no message of these nodes shows it.

use std::time::Duration;

use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserializer;

use super::{positive_duration, yes};
use crate::net::Net;

/// Posts a message to a Slack channel through an incoming webhook.
///
/// The message is `text` (Slack's `mrkdwn`) and/or `blocks` (Block Kit),
/// from the config or the inputs of the same names; `thread_ts` answers in
/// a thread. The webhook URL is read from the secret named by
/// `webhook_secret`. Slack's answers become failures with Slack's own
/// words: `invalid_payload`, `no_text`, `channel_not_found`,
/// `channel_is_archived`, `action_prohibited` and the like are permanent; a
/// 429 is retried no sooner than its `Retry-After`, and 5xx answers and
/// connection failures are retryable. Text over 40,000 characters and more
/// than 50 blocks are refused before sending.
///
/// ```yaml
/// - id: notify
///   type: slack_message
///   config:
///     webhook_secret: SLACK_WEBHOOK_URL
///     text: "Deploy of *{{ input.service }}* finished"
///   retry: { max_attempts: 3, backoff: 1s }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = SlackMessageInput, output = SlackMessageOutput, category = "messaging")]
#[serde(deny_unknown_fields)]
pub struct SlackMessage {
    /// The name of the secret holding the webhook URL
    /// (`https://hooks.slack.com/services/...`).
    pub webhook_secret: String,
    /// The message text (or the fallback text of `blocks`); the `text`
    /// input replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Block Kit blocks, objects with a `type`; the `blocks` input replaces
    /// them.
    #[serde(
        default,
        deserialize_with = "slack_blocks",
        skip_serializing_if = "Option::is_none"
    )]
    pub blocks: Option<Vec<serde_json::Value>>,
    /// The `ts` of a message to answer in its thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
    /// Whether `text` is read as Slack markup (`mrkdwn`); Slack's default
    /// is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrkdwn: Option<bool>,
    /// Whether Slack shows previews of links in the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfurl_links: Option<bool>,
    /// Whether Slack shows previews of media in the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfurl_media: Option<bool>,
    /// Time for the whole exchange.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: DurationText,
}

/// Values that complete a [`SlackMessage`] at run time.
#[derive(Ports, Debug)]
pub struct SlackMessageInput {
    /// The text, in place of the configured one.
    pub text: Option<String>,
    /// Block Kit blocks, in place of the configured ones.
    pub blocks: Option<Vec<serde_json::Value>>,
}

/// Slack's answer to a [`SlackMessage`].
#[derive(Ports, Debug)]
pub struct SlackMessageOutput {
    /// Slack's answer: `ok`.
    pub response: String,
}

const SLACK_MAX_TEXT: usize = 40_000;
const SLACK_MAX_BLOCKS: usize = 50;

impl Run for SlackMessage {
    async fn run(
        &self,
        input: SlackMessageInput,
        ctx: &Context,
    ) -> Result<SlackMessageOutput, NodeError> {
        let text = input.text.or_else(|| self.text.clone());
        let blocks = match input.blocks {
            Some(blocks) => {
                check_blocks(&blocks)
                    .map_err(|reason| NodeError::permanent(format!("input `blocks`: {reason}")))?;
                Some(blocks)
            }
            None => self.blocks.clone(),
        };
        let text = text.filter(|t| !t.trim().is_empty());
        if text.is_none() && blocks.as_ref().is_none_or(Vec::is_empty) {
            return Err(NodeError::permanent(
                "slack_message: nothing to post: give `text` or `blocks` (config or input)",
            ));
        }
        if let Some(text) = &text
            && text.chars().count() > SLACK_MAX_TEXT
        {
            return Err(NodeError::permanent(format!(
                "slack_message: the text has {} characters; Slack takes at most {SLACK_MAX_TEXT}",
                text.chars().count()
            )));
        }
        let mut body = serde_json::Map::new();
        if let Some(text) = text {
            body.insert("text".into(), text.into());
        }
        if let Some(blocks) = blocks {
            body.insert("blocks".into(), blocks.into());
        }
        for (name, value) in [
            (
                "thread_ts",
                self.thread_ts.clone().map(serde_json::Value::from),
            ),
            ("mrkdwn", self.mrkdwn.map(serde_json::Value::from)),
            (
                "unfurl_links",
                self.unfurl_links.map(serde_json::Value::from),
            ),
            (
                "unfurl_media",
                self.unfurl_media.map(serde_json::Value::from),
            ),
        ] {
            if let Some(value) = value {
                body.insert(name.into(), value);
            }
        }
        let target = format!("Slack webhook (secret `{}`)", self.webhook_secret);
        let url = webhook_url(ctx, &self.webhook_secret)?;
        let answer = post_json(ctx, url, &body.into(), self.timeout, &target).await?;
        let words = String::from_utf8_lossy(&answer.body).trim().to_owned();
        if answer.status.is_success() && words == "ok" {
            return Ok(SlackMessageOutput { response: words });
        }
        let shown = if words.is_empty() {
            String::new()
        } else {
            format!(": {}", snippet(&words))
        };
        let message = format!("{target} answered {}{shown}", answer.status);
        Err(match answer.status {
            StatusCode::TOO_MANY_REQUESTS => {
                let error = NodeError::retryable(message);
                match retry_after_header(&answer.headers) {
                    Some(delay) => error.with_retry_after(delay),
                    None => error,
                }
            }
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                NodeError::retryable(message)
            }
            _ => NodeError::permanent(message),
        })
    }
}

fn slack_blocks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<serde_json::Value>>, D::Error> {
    let blocks = Vec::<serde_json::Value>::deserialize(deserializer)?;
    check_blocks(&blocks).map_err(serde::de::Error::custom)?;
    Ok(Some(blocks))
}

fn check_blocks(blocks: &[serde_json::Value]) -> Result<(), String> {
    if blocks.len() > SLACK_MAX_BLOCKS {
        return Err(format!(
            "{} blocks; Slack takes at most {SLACK_MAX_BLOCKS}",
            blocks.len()
        ));
    }
    for (i, block) in blocks.iter().enumerate() {
        if !block.get("type").is_some_and(serde_json::Value::is_string) {
            return Err(format!(
                "block {i} is not a Block Kit block (an object with a `type`)"
            ));
        }
    }
    Ok(())
}

/// Posts a message to a Discord channel through a webhook.
///
/// The message is `content` and/or `embeds`, from the config or the inputs
/// of the same names, with an optional `username` and `avatar_url` that
/// override the webhook's, `allowed_mentions` (Discord pings whoever the
/// content mentions unless this says otherwise; `{ parse: [] }` pings
/// nobody), and `thread_id` to post in a thread. With `wait: true` (the
/// default) Discord answers with the message it created, whose `id` is an
/// output; with `wait: false` it answers 204 and `id` stays empty. The
/// webhook URL is read from the secret named by `webhook_secret`. Limits
/// are checked before sending: 2,000 characters of content, 10 embeds of
/// at most 6,000 characters (256 for a title, 4,096 for a description, 25
/// fields), 80 for the username. A 429 is retried no sooner than Discord's
/// `retry_after`; 5xx answers and connection failures are retryable; other
/// errors are permanent with Discord's message and code.
///
/// ```yaml
/// - id: alert
///   type: discord_message
///   config:
///     webhook_secret: DISCORD_WEBHOOK_URL
///     content: "Build **{{ input.build }}** failed"
///     username: ghostflow
///     allowed_mentions: { parse: [] }
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = DiscordMessageInput, output = DiscordMessageOutput, category = "messaging")]
#[serde(deny_unknown_fields)]
pub struct DiscordMessage {
    /// The name of the secret holding the webhook URL
    /// (`https://discord.com/api/webhooks/...`).
    pub webhook_secret: String,
    /// The message text, at most 2,000 characters; the `content` input
    /// replaces it.
    #[serde(
        default,
        deserialize_with = "discord_content",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<String>,
    /// The name shown for the message, in place of the webhook's.
    #[serde(
        default,
        deserialize_with = "discord_username",
        skip_serializing_if = "Option::is_none"
    )]
    pub username: Option<String>,
    /// The avatar shown for the message, an http(s) URL.
    #[serde(
        default,
        deserialize_with = "avatar_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub avatar_url: Option<String>,
    /// Up to 10 embeds (objects with `title`, `description`, `fields`,
    /// ...); the `embeds` input replaces them.
    #[serde(
        default,
        deserialize_with = "discord_embeds",
        skip_serializing_if = "Option::is_none"
    )]
    pub embeds: Option<Vec<serde_json::Value>>,
    /// Which mentions ping, as Discord's `allowed_mentions` object (such as
    /// `{ parse: [users] }`).
    #[serde(
        default,
        deserialize_with = "json_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_mentions: Option<serde_json::Value>,
    /// Read the message aloud (text-to-speech).
    #[serde(default)]
    pub tts: bool,
    /// Post in this thread of the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// Ask Discord for the created message (`?wait=true`), so that its id
    /// is an output.
    #[serde(default = "yes")]
    pub wait: bool,
    /// Time for the whole exchange.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: DurationText,
}

/// Values that complete a [`DiscordMessage`] at run time.
#[derive(Ports, Debug)]
pub struct DiscordMessageInput {
    /// The content, in place of the configured one.
    pub content: Option<String>,
    /// Embeds, in place of the configured ones.
    pub embeds: Option<Vec<serde_json::Value>>,
}

/// Discord's answer to a [`DiscordMessage`].
#[derive(Ports, Debug)]
pub struct DiscordMessageOutput {
    /// The id of the created message (with `wait: true`).
    pub id: Option<String>,
    /// The created message as Discord returned it (with `wait: true`).
    pub message: Option<serde_json::Value>,
}

const DISCORD_MAX_CONTENT: usize = 2000;
const DISCORD_MAX_USERNAME: usize = 80;
const DISCORD_MAX_EMBEDS: usize = 10;
const DISCORD_MAX_EMBED_TOTAL: usize = 6000;

impl Run for DiscordMessage {
    async fn run(
        &self,
        input: DiscordMessageInput,
        ctx: &Context,
    ) -> Result<DiscordMessageOutput, NodeError> {
        let content = match input.content {
            Some(content) => {
                check_content(&content)
                    .map_err(|reason| NodeError::permanent(format!("input `content`: {reason}")))?;
                Some(content)
            }
            None => self.content.clone(),
        };
        let embeds = match input.embeds {
            Some(embeds) => {
                check_embeds(&embeds)
                    .map_err(|reason| NodeError::permanent(format!("input `embeds`: {reason}")))?;
                Some(embeds)
            }
            None => self.embeds.clone(),
        };
        let content = content.filter(|c| !c.trim().is_empty());
        if content.is_none() && embeds.as_ref().is_none_or(Vec::is_empty) {
            return Err(NodeError::permanent(
                "discord_message: nothing to post: give `content` or `embeds` (config or input)",
            ));
        }
        let mut body = serde_json::Map::new();
        if let Some(content) = content {
            body.insert("content".into(), content.into());
        }
        if let Some(embeds) = embeds {
            body.insert("embeds".into(), embeds.into());
        }
        if let Some(username) = &self.username {
            body.insert("username".into(), username.clone().into());
        }
        if let Some(avatar) = &self.avatar_url {
            body.insert("avatar_url".into(), avatar.clone().into());
        }
        if let Some(mentions) = &self.allowed_mentions {
            body.insert("allowed_mentions".into(), mentions.clone());
        }
        if self.tts {
            body.insert("tts".into(), true.into());
        }
        let target = format!("Discord webhook (secret `{}`)", self.webhook_secret);
        let mut url = webhook_url(ctx, &self.webhook_secret)?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("wait", if self.wait { "true" } else { "false" });
            if let Some(thread) = &self.thread_id {
                query.append_pair("thread_id", thread);
            }
        }
        let answer = post_json(ctx, url, &body.into(), self.timeout, &target).await?;
        if answer.status.is_success() {
            if answer.status == StatusCode::NO_CONTENT || answer.body.is_empty() {
                return Ok(DiscordMessageOutput {
                    id: None,
                    message: None,
                });
            }
            let message: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|e| {
                NodeError::permanent(format!(
                    "{target} answered {} with a body that is not JSON: {e}",
                    answer.status
                ))
            })?;
            let id = match &message["id"] {
                serde_json::Value::String(id) => Some(id.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            return Ok(DiscordMessageOutput {
                id,
                message: Some(message),
            });
        }
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
        let words = match &parsed {
            Some(body) => {
                let mut words = body["message"]
                    .as_str()
                    .map_or_else(|| snippet(&body.to_string()), str::to_owned);
                if let Some(code) = body.get("code").filter(|c| !c.is_null()) {
                    words.push_str(&format!(" (code {code})"));
                }
                if let Some(errors) = body.get("errors") {
                    words.push_str(&format!(": {}", snippet(&errors.to_string())));
                }
                words
            }
            None => snippet(String::from_utf8_lossy(&answer.body).trim()),
        };
        let shown = if words.is_empty() {
            String::new()
        } else {
            format!(": {words}")
        };
        let message = format!("{target} answered {}{shown}", answer.status);
        Err(match answer.status {
            StatusCode::TOO_MANY_REQUESTS => {
                let delay = parsed
                    .as_ref()
                    .and_then(|b| b["retry_after"].as_f64())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .or_else(|| retry_after_header(&answer.headers));
                let error = NodeError::retryable(message);
                match delay {
                    Some(delay) => error.with_retry_after(delay),
                    None => error,
                }
            }
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                NodeError::retryable(message)
            }
            _ => NodeError::permanent(message),
        })
    }
}

fn check_content(content: &str) -> Result<(), String> {
    let chars = content.chars().count();
    if chars > DISCORD_MAX_CONTENT {
        return Err(format!(
            "{chars} characters; Discord takes at most {DISCORD_MAX_CONTENT}"
        ));
    }
    Ok(())
}

fn discord_content<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let content = String::deserialize(deserializer)?;
    check_content(&content).map_err(serde::de::Error::custom)?;
    Ok(Some(content))
}

fn discord_username<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let username = String::deserialize(deserializer)?;
    let chars = username.chars().count();
    if username.trim().is_empty() || chars > DISCORD_MAX_USERNAME {
        return Err(serde::de::Error::custom(format!(
            "a username has 1 to {DISCORD_MAX_USERNAME} characters, this one {chars}"
        )));
    }
    Ok(Some(username))
}

fn avatar_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    match url::Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(Some(text)),
        _ => Err(serde::de::Error::custom(format!(
            "`{text}` is not an http or https URL"
        ))),
    }
}

fn json_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    if !value.is_object() {
        return Err(serde::de::Error::custom(format!(
            "expected an object, got {}",
            crate::kind(&value)
        )));
    }
    Ok(Some(value))
}

fn discord_embeds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<serde_json::Value>>, D::Error> {
    let embeds = Vec::<serde_json::Value>::deserialize(deserializer)?;
    check_embeds(&embeds).map_err(serde::de::Error::custom)?;
    Ok(Some(embeds))
}

/// Discord's limits on embeds.
fn check_embeds(embeds: &[serde_json::Value]) -> Result<(), String> {
    if embeds.len() > DISCORD_MAX_EMBEDS {
        return Err(format!(
            "{} embeds; Discord takes at most {DISCORD_MAX_EMBEDS}",
            embeds.len()
        ));
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        if !embed.is_object() {
            return Err(format!("embed {i} is not an object"));
        }
        let mut text = |value: &serde_json::Value, what: &str, max: usize| {
            let chars = value.as_str().map_or(0, |s| s.chars().count());
            total += chars;
            if chars > max {
                Err(format!(
                    "embed {i}: the {what} has {chars} characters; Discord takes at most {max}"
                ))
            } else {
                Ok(())
            }
        };
        text(&embed["title"], "title", 256)?;
        text(&embed["description"], "description", 4096)?;
        text(&embed["footer"]["text"], "footer text", 2048)?;
        text(&embed["author"]["name"], "author name", 256)?;
        if let Some(fields) = embed.get("fields") {
            let fields = fields
                .as_array()
                .ok_or_else(|| format!("embed {i}: `fields` is not a list"))?;
            if fields.len() > 25 {
                return Err(format!(
                    "embed {i}: {} fields; Discord takes at most 25",
                    fields.len()
                ));
            }
            for field in fields {
                text(&field["name"], "field name", 256)?;
                text(&field["value"], "field value", 1024)?;
            }
        }
    }
    if total > DISCORD_MAX_EMBED_TOTAL {
        return Err(format!(
            "the embeds have {total} characters of text together; Discord takes at most {DISCORD_MAX_EMBED_TOTAL}"
        ));
    }
    Ok(())
}

// --------------------------------------------------------- the exchange

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(30))
}

/// The webhook URL in secret `name`.
fn webhook_url(ctx: &Context, name: &str) -> Result<url::Url, NodeError> {
    let secret = ctx.secret(name)?;
    let url = url::Url::parse(secret.expose().trim()).map_err(|e| {
        NodeError::permanent(format!(
            "config.webhook_secret: secret `{name}` is not a URL: {e}"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NodeError::permanent(format!(
            "config.webhook_secret: secret `{name}` is not an http or https URL"
        )));
    }
    Ok(url)
}

/// A webhook's answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The most of an answer's body that is read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// POSTs `body` as JSON to `url` and reads the answer, within `timeout`.
/// Messages name `target`, never the URL.
async fn post_json(
    ctx: &Context,
    url: url::Url,
    body: &serde_json::Value,
    timeout: DurationText,
    target: &str,
) -> Result<Answer, NodeError> {
    let net = Net::get(ctx);
    // `client_for` names the URL when it refuses one: say it without.
    if let Some(refusal) = net.policy().refusal(&url) {
        return Err(NodeError::permanent(format!("{target}: {refusal}")));
    }
    if url.host().is_none() {
        return Err(NodeError::permanent(format!(
            "{target}: the URL has no host"
        )));
    }
    // Scheme, host and policy are checked: what is left is the client's
    // own failure, which does not name the URL.
    let client = net
        .client_for(&url)
        .map_err(|e| NodeError::permanent(format!("{target}: {}", e.message())))?;
    let exchange = async {
        let mut response = client
            .post(url)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(
                header::ACCEPT,
                HeaderValue::from_static("application/json, text/plain"),
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| transport_error(target, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(target, &e))?
        {
            let room = MAX_ANSWER_BYTES.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(Answer {
            status,
            headers,
            body: bytes,
        })
    };
    match tokio::time::timeout(timeout.0, exchange).await {
        Ok(answer) => answer,
        Err(_) => Err(NodeError::retryable(format!(
            "{target}: no answer within {timeout} (config.timeout)"
        ))),
    }
}

/// A client error in words, without the URL.
fn transport_error(target: &str, error: &reqwest::Error) -> NodeError {
    let mut innermost = None;
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        innermost = Some(c.to_string());
        cause = c.source();
    }
    if let Some(refusal) = find_refusal(error) {
        return NodeError::permanent(format!("{target}: {refusal}"));
    }
    let reason = innermost.unwrap_or_else(|| error.to_string());
    if error.is_connect() {
        NodeError::retryable(format!("{target}: cannot connect: {reason}"))
    } else {
        NodeError::retryable(format!("{target}: the exchange failed: {reason}"))
    }
}

fn find_refusal(error: &reqwest::Error) -> Option<crate::net::Refusal> {
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        if let Some(refusal) = c.downcast_ref::<crate::net::Refusal>() {
            return Some(refusal.clone());
        }
        cause = c.source();
    }
    None
}

/// `Retry-After` in seconds.
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// The start of a text, on one line, for messages.
fn snippet(text: &str) -> String {
    const MAX_CHARS: usize = 300;
    let mut out: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = out.char_indices().nth(MAX_CHARS) {
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discord_limits_are_checked() {
        assert!(check_content(&"é".repeat(2000)).is_ok());
        assert_eq!(
            check_content(&"é".repeat(2001)).unwrap_err(),
            "2001 characters; Discord takes at most 2000"
        );
        assert!(
            check_embeds(&[json!({"title": "t", "fields": [{"name": "a", "value": "b"}]})]).is_ok()
        );
        assert_eq!(
            check_embeds(&[json!({"title": "x".repeat(257)})]).unwrap_err(),
            "embed 0: the title has 257 characters; Discord takes at most 256"
        );
        let eleven: Vec<_> = (0..11).map(|_| json!({})).collect();
        assert!(check_embeds(&eleven).unwrap_err().starts_with("11 embeds"));
        let big: Vec<_> = (0..2)
            .map(|_| json!({"description": "d".repeat(3500)}))
            .collect();
        assert!(check_embeds(&big).unwrap_err().contains("7000 characters"));
    }

    #[test]
    fn slack_blocks_need_a_type() {
        assert!(check_blocks(&[json!({"type": "section"})]).is_ok());
        assert_eq!(
            check_blocks(&[json!({"text": "x"})]).unwrap_err(),
            "block 0 is not a Block Kit block (an object with a `type`)"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(30)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_header(&headers), None);
    }
}
