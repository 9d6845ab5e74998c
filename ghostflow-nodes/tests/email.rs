//! `email_send` against a real SMTP server: Python's aiosmtpd, started by
//! each test from `tests/peers/smtp_peer.py` on a free port of 127.0.0.1
//! (plain, STARTTLS or implicit TLS with a certificate the test makes),
//! and killed when the test ends. The server records every message it
//! accepts; the tests read the envelope and the raw message back.
#![cfg(feature = "email")]

mod common;
use common::{load, load_error};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ghostflow::document::Document;
use ghostflow::{Engine, Error, Flow, Inputs, MapSecrets, NodeFailure, NodeStatus, Outcome};
use ghostflow_nodes::email::EmailSend;
use serde_json::{Value, json};

// --------------------------------------------------------------- the peer

/// A running SMTP server; killed when dropped.
struct SmtpPeer {
    child: Child,
    port: u16,
    out: tempfile::TempDir,
    /// The PEM of the server's certificate (self-signed, for 127.0.0.1).
    ca_file: PathBuf,
    _certs: tempfile::TempDir,
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpPeer {
    /// Starts the server in `mode` (`none`, `starttls` or `tls`).
    fn start(mode: &str) -> SmtpPeer {
        let found = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "the SMTP test peer needs Python's aiosmtpd: install it with `bash .ci/services.sh`"
        );
        let certs = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        let ca_file = certs.path().join("cert.pem");
        let key_file = certs.path().join("key.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_peer.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--mode", mode, "--out"])
            .arg(out.path())
            .arg("--cert")
            .arg(&ca_file)
            .arg("--key")
            .arg(&key_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run python3 for the SMTP test peer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("the SMTP test peer did not start (it printed {line:?})");
            }
        };
        SmtpPeer {
            child,
            port,
            out,
            ca_file,
            _certs: certs,
        }
    }

    /// The `n`th message the server accepted (from 1), waiting a little
    /// for it.
    fn message(&self, n: usize) -> Received {
        let path = self.out.path().join(format!("{n}.json"));
        for _ in 0..500 {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let record: Value = serde_json::from_str(&text).unwrap();
                return Received(record);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the SMTP peer received no message {n}");
    }

    /// How many messages the server accepted.
    fn count(&self) -> usize {
        std::fs::read_dir(self.out.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
    }

    /// A config for this server, with `extra` set over the basics.
    fn config(&self, tls: &str, extra: Value) -> Value {
        let mut config = json!({
            "host": "127.0.0.1",
            "port": self.port,
            "tls": tls,
            "auth": {"username": "robot", "password_secret": "SMTP_PASSWORD"},
            "from": "Ghost Robot <robot@ghostflow.test>",
            "to": ["ada@example.test"],
            "subject": "Hello",
            "text": "Plain body",
            "timeout": "10s"
        });
        if tls != "none" {
            config["ca_file"] = json!(self.ca_file.display().to_string());
        }
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }
}

/// A message as the server recorded it.
struct Received(Value);

impl Received {
    fn data(&self) -> &str {
        self.0["data"].as_str().unwrap()
    }

    /// The value of header `name` (unfolded), if present.
    fn header(&self, name: &str) -> Option<String> {
        let head = self.data().split("\r\n\r\n").next().unwrap();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

// ------------------------------------------------------------------ helpers

/// A flow of one `email_send` with `config`; a flow input `attachments`
/// when `with_attachments`.
fn send_flow(config: &Value, with_attachments: bool) -> Flow {
    let mut yaml = String::from("version: 1\nname: mail\n");
    if with_attachments {
        yaml.push_str("inputs:\n  attachments: {}\n");
    }
    yaml.push_str(&format!(
        "nodes:\n  - id: mail\n    type: email_send\n    config: {config}\n"
    ));
    if with_attachments {
        yaml.push_str("edges:\n  - { from: input.attachments, to: mail.attachments }\n");
    }
    yaml.push_str(
        "outputs:\n  message_id: mail.message_id\n  accepted: mail.accepted\n  response: mail.response\n",
    );
    load(&yaml)
}

fn engine() -> Engine {
    Engine::builder()
        .secrets(
            MapSecrets::new()
                .with("SMTP_PASSWORD", "s3cret")
                .with("WRONG_PASSWORD", "guess"),
        )
        .build()
}

async fn send(config: &Value) -> Result<Outcome, Error> {
    engine().run(&send_flow(config, false), Inputs::new()).await
}

fn out(outcome: &Outcome, name: &str) -> Value {
    outcome.output::<Value>(name).unwrap()
}

fn node_error(result: Result<Outcome, Error>) -> ghostflow::NodeError {
    match result {
        Err(Error::NodeFailed { error, .. }) => error,
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!(
            "expected a node failure, got outputs {:?}",
            outcome.outputs_json()
        ),
    }
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn a_message_arrives_with_its_envelope_headers_and_both_bodies() {
    let peer = SmtpPeer::start("none");
    let config = peer.config(
        "none",
        json!({
            "to": ["Ada Lovelace <ada@example.test>", "bob@example.test"],
            "cc": "carol@example.test",
            "bcc": ["hidden@example.test"],
            "reply_to": "replies@ghostflow.test",
            "subject": "Quarterly report ✓",
            "text": "The plain version.",
            "html": "<p>The <b>HTML</b> version.</p>"
        }),
    );
    let outcome = send(&config).await.unwrap();
    let message_id = out(&outcome, "message_id");
    let message_id = message_id.as_str().unwrap();
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@ghostflow.test>"),
        "{message_id}"
    );
    assert_eq!(
        out(&outcome, "accepted"),
        json!([
            "ada@example.test",
            "bob@example.test",
            "carol@example.test",
            "hidden@example.test"
        ])
    );
    assert_eq!(
        out(&outcome, "response"),
        json!("250 2.0.0 Ok: queued as 1")
    );

    let received = peer.message(1);
    assert_eq!(received.0["mail_from"], json!("robot@ghostflow.test"));
    assert_eq!(
        received.0["rcpt_tos"],
        json!([
            "ada@example.test",
            "bob@example.test",
            "carol@example.test",
            "hidden@example.test"
        ])
    );
    assert_eq!(received.0["login"], json!("robot"));
    assert_eq!(received.0["tls"], json!(false));
    assert_eq!(
        received.header("From").unwrap(),
        "\"Ghost Robot\" <robot@ghostflow.test>"
    );
    assert_eq!(
        received.header("To").unwrap(),
        "\"Ada Lovelace\" <ada@example.test>, bob@example.test"
    );
    assert_eq!(received.header("Cc").unwrap(), "carol@example.test");
    assert_eq!(
        received.header("Reply-To").unwrap(),
        "replies@ghostflow.test"
    );
    assert_eq!(received.header("Message-ID").unwrap(), message_id);
    assert!(received.header("Date").is_some());
    // The subject's word that is not ASCII is encoded, and decodes back.
    let subject = received.header("Subject").unwrap();
    let (plain, encoded) = subject.split_once("=?utf-8?b?").unwrap();
    assert_eq!(plain, "Quarterly report ");
    let encoded = encoded.strip_suffix("?=").unwrap();
    assert_eq!(
        String::from_utf8(BASE64.decode(encoded).unwrap()).unwrap(),
        "✓"
    );
    // Blind copies are in the envelope, never in the headers.
    assert_eq!(received.header("Bcc"), None);
    assert!(!received.data().contains("hidden@example.test"));
    // Both bodies, as alternatives.
    let content_type = received.header("Content-Type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative; boundary="),
        "{content_type}"
    );
    assert!(
        received
            .data()
            .contains("Content-Type: text/plain; charset=utf-8")
    );
    assert!(
        received
            .data()
            .contains("Content-Type: text/html; charset=utf-8")
    );
    assert!(received.data().contains("The plain version."));
    assert!(received.data().contains("<p>The <b>HTML</b> version.</p>"));
}

#[tokio::test]
async fn attachments_make_a_mixed_message() {
    let peer = SmtpPeer::start("none");
    let config = peer.config("none", json!({"html": "<p>see attached</p>"}));
    let flow = send_flow(&config, true);
    let outcome = engine()
        .run(
            &flow,
            Inputs::new().set(
                "attachments",
                json!([
                    {"filename": "report.csv", "content_type": "text/csv", "content": BASE64.encode("a,b\n1,2\n")},
                    {"filename": "blob.bin", "content": BASE64.encode([0u8, 159, 255])}
                ]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(out(&outcome, "accepted"), json!(["ada@example.test"]));
    let received = peer.message(1);
    let data = received.data();
    assert!(
        received
            .header("Content-Type")
            .unwrap()
            .starts_with("multipart/mixed"),
        "{data}"
    );
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("Content-Disposition: attachment; filename=\"report.csv\""),
        "{data}"
    );
    assert!(data.contains("Content-Type: text/csv"), "{data}");
    assert!(
        data.contains("Content-Disposition: attachment; filename=\"blob.bin\""),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: application/octet-stream"),
        "{data}"
    );
    assert!(data.contains(&BASE64.encode([0u8, 159, 255])), "{data}");

    // Bad attachments fail before anything is sent.
    let error = node_error(
        engine()
            .run(
                &flow,
                Inputs::new().set(
                    "attachments",
                    json!([{"filename": "x.txt", "content": "not base64!"}]),
                ),
            )
            .await,
    );
    assert!(
        error
            .message()
            .starts_with("input `attachments`[0]: content is not valid base64"),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert_eq!(peer.count(), 1);
}

#[tokio::test]
async fn starttls_and_implicit_tls_with_a_private_ca() {
    for mode in ["starttls", "tls"] {
        let peer = SmtpPeer::start(mode);
        let outcome = send(&peer.config(mode, json!({"subject": format!("over {mode}")})))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(out(&outcome, "accepted"), json!(["ada@example.test"]));
        let received = peer.message(1);
        assert_eq!(received.0["tls"], json!(true), "{mode}");
        assert_eq!(received.0["login"], json!("robot"), "{mode}");
        assert_eq!(received.header("Subject").unwrap(), format!("over {mode}"));

        // Without the CA file the server's certificate is not trusted.
        let mut untrusted = peer.config(mode, json!({}));
        untrusted.as_object_mut().unwrap().remove("ca_file");
        let error = node_error(send(&untrusted).await);
        assert_eq!(
            error.message(),
            format!(
                "SMTP server 127.0.0.1:{}: TLS failed: invalid peer certificate: UnknownIssuer (for a server with a private certificate, give its CA in `ca_file`)",
                peer.port
            ),
            "{mode}"
        );
        assert!(!error.is_retryable(), "{mode}: {error}");
        assert_eq!(peer.count(), 1);
    }
}

#[tokio::test]
async fn refusals_are_permanent_and_deferrals_retryable() {
    let peer = SmtpPeer::start("none");
    // A wrong password.
    let error = node_error(
        send(&peer.config(
            "none",
            json!({"auth": {"username": "robot", "password_secret": "WRONG_PASSWORD"}}),
        ))
        .await,
    );
    assert_eq!(
        error.message(),
        format!(
            "SMTP server 127.0.0.1:{} refused: permanent error (535): 5.7.8 Authentication credentials invalid",
            peer.port
        )
    );
    assert!(!error.is_retryable());
    // An unknown recipient.
    let error = node_error(
        send(&peer.config(
            "none",
            json!({"to": ["ada@example.test", "reject-me@example.test"]}),
        ))
        .await,
    );
    assert_eq!(
        error.message(),
        format!(
            "SMTP server 127.0.0.1:{} refused: permanent error (550): 5.1.1 <reject-me@example.test>: Recipient address rejected: User unknown",
            peer.port
        )
    );
    assert!(!error.is_retryable());
    // A mailbox that is not available now.
    let error = node_error(send(&peer.config("none", json!({"to": "later@example.test"}))).await);
    assert_eq!(
        error.message(),
        format!(
            "SMTP server 127.0.0.1:{} deferred: transient error (451): 4.3.0 Mailbox temporarily unavailable, try again later",
            peer.port
        )
    );
    assert!(error.is_retryable());
    // STARTTLS asked of a server that does not offer it.
    let error = node_error(send(&peer.config("starttls", json!({}))).await);
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(peer.count(), 0);
}

#[tokio::test]
async fn a_server_that_is_down_is_a_retryable_failure() {
    let config = json!({
        "host": "127.0.0.1",
        "port": 9,
        "tls": "none",
        "from": "robot@ghostflow.test",
        "to": "ada@example.test",
        "subject": "s",
        "text": "t"
    });
    let error = node_error(send(&config).await);
    assert!(
        error.message().starts_with("SMTP server 127.0.0.1:9: "),
        "{error}"
    );
    assert!(error.message().contains("Connection refused"), "{error}");
    assert!(error.is_retryable());
}

#[test]
fn bad_configs_fail_when_the_flow_loads_naming_the_field() {
    for (config, expected) in [
        (
            r#"{ host: h, from: a@example.test, to: "not an address", subject: s, text: t }"#,
            "nodes[0].config.to: `not an address` is not an email address",
        ),
        (
            r#"{ host: h, from: a@example.test, to: [ok@example.test, "@x"], subject: s, text: t }"#,
            "nodes[0].config.to: `@x` is not an email address",
        ),
        (
            r#"{ host: h, to: b@example.test, subject: s, text: t }"#,
            "nodes[0].config: missing field `from`",
        ),
        (
            r#"{ host: h, from: a@example.test, to: b@example.test, subject: s, tls: ssl }"#,
            "nodes[0].config.tls:",
        ),
        (
            r#"{ host: h, from: a@example.test, to: b@example.test, subject: s, port: "x" }"#,
            "nodes[0].config.port:",
        ),
        (
            r#"{ host: h, from: a@example.test, to: b@example.test, subject: s, auth: { username: u } }"#,
            "nodes[0].config.auth: missing field `password_secret`",
        ),
        (
            r#"{ host: h, from: a@example.test, to: b@example.test, subject: s, password: x }"#,
            "unknown field `password`",
        ),
    ] {
        let yaml = format!(
            "version: 1\nname: bad\nnodes:\n  - id: mail\n    type: email_send\n    config: {config}\n"
        );
        let err = load_error(&yaml);
        assert!(
            err.contains(expected),
            "{config}: `{err}` lacks `{expected}`"
        );
    }
}

#[tokio::test]
async fn on_error_continue_and_skip() {
    let peer = SmtpPeer::start("none");
    let rejected = peer.config("none", json!({"to": "reject@example.test"}));
    let flow = load(&format!(
        r#"
version: 1
name: notify
nodes:
  - id: mail
    type: email_send
    config: {rejected}
    on_error: continue
  - id: after
    type: email_send
    config: {config}
edges:
  - {{ from: mail.message_id, to: after.text }}
outputs:
  failure: mail.error
"#,
        config = peer.config("none", json!({}))
    ));
    let outcome = engine().run(&flow, Inputs::new()).await.unwrap();
    let failure: NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(failure.node, "mail");
    assert!(failure.message.contains("(550)"), "{}", failure.message);
    assert!(!failure.retryable);
    assert_eq!(outcome.node("mail").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("after").unwrap().status, NodeStatus::Skipped);

    let flow = load(&format!(
        r#"
version: 1
name: notify
nodes:
  - id: mail
    type: email_send
    config: {rejected}
    on_error: skip
  - id: after
    type: email_send
    config: {config}
edges:
  - {{ from: mail.message_id, to: after.text }}
"#,
        config = peer.config("none", json!({}))
    ));
    let outcome = engine().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(outcome.node("mail").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("after").unwrap().status, NodeStatus::Skipped);
    assert_eq!(peer.count(), 0);
}

#[tokio::test]
async fn typed_flows_send_and_read_back_as_documents() {
    let peer = SmtpPeer::start("none");
    let node: EmailSend =
        serde_json::from_value(peer.config("none", json!({"text": "typed"}))).unwrap();
    let mut b = Flow::builder("typed");
    let mail = b.add("mail", node);
    b.output("accepted", mail.out().accepted);
    let flow = b.build().unwrap();
    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    for (n, flow) in [flow, load(&yaml)].into_iter().enumerate() {
        let outcome = engine().run(&flow, Inputs::new()).await.unwrap();
        assert_eq!(
            outcome.output::<Vec<String>>("accepted").unwrap(),
            ["ada@example.test"]
        );
        assert!(peer.message(n + 1).data().contains("typed"));
    }
}
