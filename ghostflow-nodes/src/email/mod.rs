//! Email nodes: send messages over SMTP ([`EmailSend`]).
//!
//! - **Addresses are checked when the flow loads**: `from`, `to`, `cc`,
//!   `bcc` and `reply_to` written as literals must parse as addresses
//!   (`ada@example.com` or `Ada Lovelace <ada@example.com>`); ones written
//!   as expressions are checked when they are rendered, per run.
//! - **Encryption** is `tls: starttls` (the default: plain connection
//!   upgraded with `STARTTLS`, refused if the server does not offer it),
//!   `tls: tls` (implicit TLS from the first byte, "SMTPS") or `tls: none`
//!   (a trusted local relay). The port defaults by mode: 587, 465, 25. The
//!   server's certificate is checked against the operating system's roots,
//!   plus a CA certificate file (`ca_file`) for a private server.
//! - **Failures say whether to retry.** A 5xx reply (unknown recipient,
//!   refused credentials, policy) is permanent and carries the server's
//!   words; a 4xx reply, a connection failure and a timeout are retryable.
//!   A certificate the node cannot trust is permanent. With a retry policy,
//!   a message whose acceptance was lost on the way may be sent twice.
//! - **Secrets.** The password is named in `auth.password_secret` and read
//!   when the node runs; the engine masks it in every error and event.
//! - **One transport per server per engine**: the settings (host, port,
//!   mode, CA file, credentials) are made into a transport once and shared
//!   by every execution; each message opens its own SMTP session, so a
//!   broken connection never outlives a message.
//! - **Limits.** Attachments (from the `attachments` input, base64) are
//!   bounded in total by `max_attachment_bytes`; the whole exchange by
//!   `timeout`.

mod send;

use ghostflow::Registry;

pub use self::send::{
    EmailAttachment, EmailAuth, EmailSend, EmailSendInput, EmailSendOutput, SmtpTls,
};

/// Registers the email nodes.
pub(crate) fn register(registry: &mut Registry) {
    registry.register::<EmailSend>();
}
