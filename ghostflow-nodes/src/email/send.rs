//! `email_send`: one message over SMTP with lettre.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::document::DurationText;
use ghostflow::prelude::*;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::Deserializer;
use tokio::sync::OnceCell;

/// Sends an email over SMTP: text and/or HTML, with attachments, to `to`,
/// `cc` and `bcc` recipients.
///
/// With both `text` and `html` the message is `multipart/alternative`
/// (mail programs show the HTML and fall back to the text); attachments
/// from the `attachments` input (each `{filename, content_type, content}`,
/// the content in base64) make it `multipart/mixed`. `bcc` recipients get
/// the message without appearing in its headers. The node outputs the
/// `Message-ID` it gave the message and the recipients the server
/// accepted. Connections use `tls` (`starttls` by default, `tls` for
/// implicit TLS, `none` for a local relay) with the operating system's
/// roots and an optional `ca_file`; `auth` reads the password from a
/// secret. A 5xx reply fails the node permanently with the server's words,
/// a 4xx reply or a connection failure is retryable.
///
/// ```yaml
/// - id: welcome
///   type: email_send
///   config:
///     host: smtp.example.com
///     tls: starttls
///     auth: { username: robot@example.com, password_secret: SMTP_PASSWORD }
///     from: "Example Robot <robot@example.com>"
///     to: [ada@example.com]
///     bcc: [audit@example.com]
///     subject: Welcome aboard
///     text: "Hello Ada, your account is ready."
///     html: "<p>Hello Ada, your account is <b>ready</b>.</p>"
/// ```
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = EmailSendInput, output = EmailSendOutput, category = "email")]
#[serde(deny_unknown_fields)]
pub struct EmailSend {
    /// The SMTP server's host name or address.
    #[serde(deserialize_with = "host")]
    pub host: String,
    /// The port; by default 587 for `starttls`, 465 for `tls`, 25 for
    /// `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Encryption: `starttls` (upgrade a plain connection; the server must
    /// offer it), `tls` (implicit TLS) or `none` (plain text, for a trusted
    /// local relay only).
    #[serde(default)]
    pub tls: SmtpTls,
    /// A PEM file of CA certificates trusted besides the operating
    /// system's roots, for a server with a private certificate. Relative
    /// paths are read from the flow document's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-path" = true))]
    pub ca_file: Option<String>,
    /// A user name and the secret holding the password (`AUTH PLAIN` or
    /// `LOGIN`, as the server offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "EmailAuth")]
    pub auth: Option<EmailAuth>,
    /// The sender, `robot@example.com` or `Robot <robot@example.com>`.
    #[serde(deserialize_with = "mailbox")]
    pub from: String,
    /// The recipients: an address or a list of them (at least one).
    #[serde(deserialize_with = "required_mailboxes")]
    #[schemars(schema_with = "address_list_schema")]
    pub to: Vec<String>,
    /// Copy recipients, shown in the `Cc` header.
    #[serde(
        default,
        deserialize_with = "mailboxes",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "address_list_schema")]
    pub cc: Vec<String>,
    /// Blind copy recipients: they get the message, no header names them.
    #[serde(
        default,
        deserialize_with = "mailboxes",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "address_list_schema")]
    pub bcc: Vec<String>,
    /// Where answers should go, when not to the sender.
    #[serde(
        default,
        deserialize_with = "optional_mailbox",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<String>,
    /// The subject.
    pub subject: String,
    /// The plain-text body; the `text` input replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The HTML body; the `html` input replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The most bytes of attachments (decoded, all together) a message
    /// takes; default 25 MiB.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: u64,
    /// Time for the whole exchange with the server.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: DurationText,
}

/// How the connection to the SMTP server is encrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text; for a trusted local relay only.
    None,
    /// A plain connection upgraded with `STARTTLS`; fails if the server
    /// does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (implicit TLS, "SMTPS").
    Tls,
}

impl SmtpTls {
    fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// SMTP credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailAuth {
    /// The user name.
    pub username: String,
    /// The name of the secret holding the password.
    pub password_secret: String,
}

/// One attachment of an [`EmailSend`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailAttachment {
    /// The file name shown to the recipient, such as `report.pdf`.
    pub filename: String,
    /// The MIME type, such as `application/pdf`; default
    /// `application/octet-stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The content, in base64.
    pub content: String,
}

/// What completes an [`EmailSend`] at run time; all optional.
#[derive(Ports, Debug)]
pub struct EmailSendInput {
    /// The plain-text body, in place of the configured one.
    pub text: Option<String>,
    /// The HTML body, in place of the configured one.
    pub html: Option<String>,
    /// Files to attach.
    pub attachments: Option<Vec<EmailAttachment>>,
}

/// What an [`EmailSend`] sent.
#[derive(Ports, Debug)]
pub struct EmailSendOutput {
    /// The message's `Message-ID` header, such as `<...@example.com>`.
    pub message_id: String,
    /// The recipients the server accepted (`to`, `cc` and `bcc`).
    pub accepted: Vec<String>,
    /// The server's reply to the message, such as `250 2.0.0 Ok: queued`.
    pub response: String,
}

impl Run for EmailSend {
    async fn run(
        &self,
        input: EmailSendInput,
        ctx: &Context,
    ) -> Result<EmailSendOutput, NodeError> {
        let port = self.port.unwrap_or(self.tls.default_port());
        let server = format!("SMTP server {}:{port}", self.host);
        let (message, message_id) = self.message(input)?;
        let accepted: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        let password = match &self.auth {
            Some(auth) => Some(ctx.secret(&auth.password_secret)?),
            None => None,
        };
        let key = TransportKey {
            host: self.host.clone(),
            port,
            tls: self.tls,
            ca_file: self.ca_file.clone(),
            username: self.auth.as_ref().map(|a| a.username.clone()),
            password: password.map(|p| p.expose().to_owned()),
            timeout: self.timeout.0,
        };
        let timeout = self.timeout;
        let work = async {
            let transport = transport(ctx, key, &server).await?;
            transport
                .send(message)
                .await
                .map_err(|e| smtp_error(&server, &e))
        };
        let reply = match tokio::time::timeout(timeout.0, work).await {
            Ok(reply) => reply?,
            Err(_) => {
                return Err(NodeError::retryable(format!(
                    "{server}: the message was not accepted within {timeout} (config.timeout)"
                )));
            }
        };
        let words: Vec<&str> = reply.message().collect();
        Ok(EmailSendOutput {
            message_id,
            accepted,
            response: format!("{} {}", reply.code(), words.join(" "))
                .trim()
                .to_owned(),
        })
    }
}

impl EmailSend {
    /// The message and its `Message-ID`.
    fn message(&self, input: EmailSendInput) -> Result<(Message, String), NodeError> {
        let bad_config =
            |field: &str, reason: String| NodeError::permanent(format!("config.{field}: {reason}"));
        let parse = |field: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| bad_config(field, format!("`{text}` is not an email address: {e}")))
        };
        let from = parse("from", &self.from)?;
        let message_id = format!(
            "<{:x}.{:016x}@{}>",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default(),
            fastrand::u64(..),
            from.email.domain()
        );
        let mut builder = Message::builder()
            .from(from)
            .subject(self.subject.clone())
            .message_id(Some(message_id.clone()));
        for (field, list) in [("to", &self.to), ("cc", &self.cc), ("bcc", &self.bcc)] {
            for text in list {
                let mailbox = parse(field, text)?;
                builder = match field {
                    "to" => builder.to(mailbox),
                    "cc" => builder.cc(mailbox),
                    _ => builder.bcc(mailbox),
                };
            }
        }
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(parse("reply_to", reply_to)?);
        }
        let text = input.text.or_else(|| self.text.clone());
        let html = input.html.or_else(|| self.html.clone());
        let body = match (text, html) {
            (Some(text), Some(html)) => Body::Multi(MultiPart::alternative_plain_html(text, html)),
            (Some(text), None) => Body::Single(SinglePart::plain(text)),
            (None, Some(html)) => Body::Single(SinglePart::html(html)),
            (None, None) => {
                return Err(NodeError::permanent(
                    "email_send: no body: give `text` and/or `html` (config or input)",
                ));
            }
        };
        let attachments = self.attachments(input.attachments.unwrap_or_default())?;
        let built = if attachments.is_empty() {
            match body {
                Body::Multi(multi) => builder.multipart(multi),
                Body::Single(single) => builder.singlepart(single),
            }
        } else {
            let mixed = match body {
                Body::Multi(multi) => MultiPart::mixed().multipart(multi),
                Body::Single(single) => MultiPart::mixed().singlepart(single),
            };
            builder.multipart(
                attachments
                    .into_iter()
                    .fold(mixed, |mixed, part| mixed.singlepart(part)),
            )
        };
        let message = built.map_err(|e| {
            NodeError::permanent(format!("email_send: cannot make the message: {e}"))
        })?;
        Ok((message, message_id))
    }

    /// The attachments as MIME parts, checked and within the size limit.
    fn attachments(&self, given: Vec<EmailAttachment>) -> Result<Vec<SinglePart>, NodeError> {
        let mut total = 0u64;
        let mut parts = Vec::with_capacity(given.len());
        for (i, attachment) in given.into_iter().enumerate() {
            let bad = |reason: String| {
                NodeError::permanent(format!("input `attachments`[{i}]: {reason}"))
            };
            let name = attachment.filename.trim();
            if name.is_empty() || name.contains(['/', '\\']) || name.chars().any(char::is_control) {
                return Err(bad(format!(
                    "filename {:?} is not a plain file name",
                    attachment.filename
                )));
            }
            let content_type = attachment
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream");
            let content_type = ContentType::parse(content_type)
                .map_err(|e| bad(format!("content_type `{content_type}`: {e}")))?;
            let bytes = BASE64
                .decode(attachment.content.trim())
                .map_err(|e| bad(format!("content is not valid base64: {e}")))?;
            total += bytes.len() as u64;
            if total > self.max_attachment_bytes {
                return Err(bad(format!(
                    "the attachments are larger than {} bytes together (config.max_attachment_bytes)",
                    self.max_attachment_bytes
                )));
            }
            parts.push(Attachment::new(name.to_owned()).body(bytes, content_type));
        }
        Ok(parts)
    }
}

enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

/// The failure for an SMTP error.
fn smtp_error(server: &str, error: &lettre::transport::smtp::Error) -> NodeError {
    let mut words = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        let text = c.to_string();
        if !words.contains(&text) {
            words.push_str(": ");
            words.push_str(&text);
        }
        cause = c.source();
    }
    if let Some(tls) = rustls_error(error) {
        let hint = match tls {
            rustls::Error::InvalidCertificate(_) => {
                " (for a server with a private certificate, give its CA in `ca_file`)"
            }
            _ => "",
        };
        return NodeError::permanent(format!("{server}: TLS failed: {tls}{hint}"));
    }
    if error.is_permanent() {
        NodeError::permanent(format!("{server} refused: {words}"))
    } else if error.is_transient() {
        NodeError::retryable(format!("{server} deferred: {words}"))
    } else if error.is_tls() {
        NodeError::permanent(format!("{server}: TLS failed: {words}"))
    } else if error.is_client() {
        NodeError::permanent(format!("{server}: {words}"))
    } else {
        NodeError::retryable(format!("{server}: {words}"))
    }
}

/// The TLS library's error under `error`, if that is what failed.
fn rustls_error(error: &lettre::transport::smtp::Error) -> Option<&rustls::Error> {
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        cause = c.source();
    }
    None
}

// ------------------------------------------------------------ transports

/// What makes a transport: everything that differs between servers.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TransportKey {
    host: String,
    port: u16,
    tls: SmtpTls,
    ca_file: Option<String>,
    username: Option<String>,
    /// The password itself, so that a changed secret gets its own
    /// transport; in memory only, never printed.
    password: Option<String>,
    timeout: Duration,
}

/// The engine's SMTP transports.
#[derive(Default)]
struct Transports {
    transports: Mutex<HashMap<TransportKey, Arc<OnceCell<AsyncSmtpTransport<Tokio1Executor>>>>>,
}

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transports")
            .field("servers", &lock(&self.transports).len())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The engine's transport for `key`, made on first use.
async fn transport(
    ctx: &Context,
    key: TransportKey,
    server: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, NodeError> {
    let transports = ctx.shared(Transports::default);
    let cell = lock(&transports.transports)
        .entry(key.clone())
        .or_default()
        .clone();
    let transport = cell
        .get_or_try_init(|| async {
            let tls = match key.tls {
                SmtpTls::None => Tls::None,
                mode => {
                    let mut params = TlsParameters::builder(key.host.clone());
                    if let Some(path) = &key.ca_file {
                        let pem = tokio::fs::read(path).await.map_err(|e| {
                            NodeError::permanent(format!(
                                "config.ca_file: cannot read `{path}`: {e}"
                            ))
                        })?;
                        let certificate = Certificate::from_pem(&pem).map_err(|e| {
                            NodeError::permanent(format!(
                                "config.ca_file: `{path}` is not a PEM certificate: {e}"
                            ))
                        })?;
                        params = params.add_root_certificate(certificate);
                    }
                    let params = params.build().map_err(|e| {
                        NodeError::permanent(format!("{server}: cannot set up TLS: {e}"))
                    })?;
                    if mode == SmtpTls::Tls {
                        Tls::Wrapper(params)
                    } else {
                        Tls::Required(params)
                    }
                }
            };
            let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&key.host)
                .port(key.port)
                .tls(tls)
                .timeout(Some(key.timeout));
            if let (Some(username), Some(password)) = (&key.username, &key.password) {
                builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
            }
            Ok::<_, NodeError>(builder.build())
        })
        .await?;
    Ok(transport.clone())
}

// ------------------------------------------------------- config checks

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(30))
}

fn default_max_attachment_bytes() -> u64 {
    25 * 1024 * 1024
}

fn positive_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
    let duration = DurationText::deserialize(deserializer)?;
    if duration.0.is_zero() {
        return Err(serde::de::Error::custom("must be longer than zero"));
    }
    Ok(duration)
}

fn host<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let host = String::deserialize(deserializer)?.trim().to_owned();
    if host.is_empty() || host.contains(['/', ' ', '@', ':']) {
        return Err(serde::de::Error::custom(format!(
            "`{host}` is not a host name or address (write the port in `port`)"
        )));
    }
    Ok(host)
}

fn check_mailbox(text: &str) -> Result<(), String> {
    text.parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("`{text}` is not an email address: {e}"))
}

fn mailbox<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    check_mailbox(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

fn optional_mailbox<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    mailbox(deserializer).map(Some)
}

/// An address or a list of addresses, each checked.
fn mailboxes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let list = match value {
        serde_json::Value::String(one) => vec![one],
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(text) => Ok(text),
                other => Err(serde::de::Error::custom(format!(
                    "expected an address, got {}",
                    crate::kind(&other)
                ))),
            })
            .collect::<Result<Vec<_>, D::Error>>()?,
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected an address or a list of addresses, got {}",
                crate::kind(&other)
            )));
        }
    };
    for text in &list {
        check_mailbox(text).map_err(serde::de::Error::custom)?;
    }
    Ok(list)
}

fn required_mailboxes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let list = mailboxes(deserializer)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom("give at least one recipient"));
    }
    Ok(list)
}

fn address_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "An address (`ada@example.com`, `Ada <ada@example.com>`) or a list of them.",
        "anyOf": [
            { "type": "string" },
            { "type": "array", "items": { "type": "string" } }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(config: serde_json::Value) -> Result<EmailSend, String> {
        crate::registry()
            .get("email_send")
            .unwrap()
            .create(&config)
            .map_err(|e| e.to_string())?;
        serde_json::from_value(config).map_err(|e| e.to_string())
    }

    fn minimal() -> serde_json::Value {
        json!({"host": "smtp.example.com", "from": "a@example.com", "to": "b@example.com", "subject": "s", "text": "t"})
    }

    #[test]
    fn addresses_are_checked_when_the_node_is_made() {
        let node = create(minimal()).unwrap();
        assert_eq!(node.to, ["b@example.com"]);
        assert_eq!(node.tls, SmtpTls::Starttls);
        assert_eq!(node.port, None);
        for (field, value, expected) in [
            (
                "to",
                json!("not an address"),
                "to: `not an address` is not an email address",
            ),
            ("to", json!([]), "to: give at least one recipient"),
            (
                "cc",
                json!(["ok@example.com", 5]),
                "cc: expected an address, got a number",
            ),
            (
                "bcc",
                json!({"a": 1}),
                "bcc: expected an address or a list of addresses, got an object",
            ),
            (
                "from",
                json!("@nowhere"),
                "from: `@nowhere` is not an email address",
            ),
            (
                "host",
                json!("smtp.example.com:25"),
                "host: `smtp.example.com:25` is not a host name",
            ),
            ("tls", json!("ssl"), "tls: unknown variant `ssl`"),
            ("timeout", json!("0s"), "timeout: must be longer than zero"),
        ] {
            let mut config = minimal();
            config[field] = value;
            let err = create(config).unwrap_err();
            assert!(
                err.starts_with(expected),
                "{field}: `{err}` should start with `{expected}`"
            );
        }
    }

    #[test]
    fn messages_have_the_right_structure() {
        let mut config = minimal();
        config["html"] = json!("<p>t</p>");
        config["bcc"] = json!("hidden@example.com");
        let node = create(config).unwrap();
        let attachment = EmailAttachment {
            filename: "a.txt".into(),
            content_type: Some("text/plain".into()),
            content: BASE64.encode("file body"),
        };
        let (message, id) = node
            .message(EmailSendInput {
                text: None,
                html: None,
                attachments: Some(vec![attachment]),
            })
            .unwrap();
        assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(raw.contains("multipart/mixed"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains(&format!("Message-ID: {id}")), "{raw}");
        assert!(!raw.contains("hidden@example.com"), "{raw}");
        assert_eq!(message.envelope().to().len(), 2);

        let too_big = EmailAttachment {
            filename: "big.bin".into(),
            content_type: None,
            content: BASE64.encode(vec![0u8; 64]),
        };
        let mut small = node.clone();
        small.max_attachment_bytes = 10;
        let err = small
            .message(EmailSendInput {
                text: None,
                html: None,
                attachments: Some(vec![too_big]),
            })
            .unwrap_err();
        assert!(err.message().contains("max_attachment_bytes"), "{err}");
        let bad_name = EmailAttachment {
            filename: "../etc/passwd".into(),
            content_type: None,
            content: String::new(),
        };
        let err = node
            .message(EmailSendInput {
                text: None,
                html: None,
                attachments: Some(vec![bad_name]),
            })
            .unwrap_err();
        assert_eq!(
            err.message(),
            "input `attachments`[0]: filename \"../etc/passwd\" is not a plain file name"
        );
    }
}
