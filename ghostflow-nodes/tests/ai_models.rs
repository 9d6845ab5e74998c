//! The `chat` and `embed` nodes and the three providers (OpenAI-compatible,
//! Ollama, Anthropic) against real peers on 127.0.0.1: the model peer
//! (`ghostflow_model_peer::ModelPeer`, one per test, speaking each
//! protocol's wire format with scripted replies), and for cancellation and
//! timeouts a raw HTTP server that starts a stream and then stalls, so
//! that the test can see its connection close. Flows are mostly written as
//! YAML documents; the clock is paused where time matters.
#![cfg(feature = "ai")]

mod common;
use common::{load, load_error};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ghostflow::{Engine, Error, EventKind, Inputs, MapSecrets, Outcome};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

// ------------------------------------------------------------ the staller

/// A server that answers one request with the head of a stream and its
/// first piece, then sends nothing more; it reports when the client closes
/// the connection, and the request it got.
struct Staller {
    url: String,
    closed: oneshot::Receiver<()>,
    request: Arc<Mutex<String>>,
}

async fn staller(content_type: &'static str, first: &'static str) -> Staller {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, closed) = oneshot::channel();
    let request = Arc::new(Mutex::new(String::new()));
    let seen = request.clone();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // The request: its head, then as many bytes as it says.
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the client closed before sending its request");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + length {
                    *seen.lock().unwrap() = text;
                    break;
                }
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        // Nothing more; wait for the client to go.
        loop {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = tx.send(());
    });
    Staller {
        url,
        closed,
        request,
    }
}

/// The first event of a stream, per protocol, and the base URL to give.
fn stalled_stream(provider: &str) -> (&'static str, &'static str, &'static str) {
    match provider {
        "openai" => (
            "text/event-stream",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Once upon\"}}]}\n\n",
            "/v1",
        ),
        "anthropic" => (
            "text/event-stream",
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Once upon\"}}\n\n",
            "",
        ),
        _ => (
            "application/x-ndjson",
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Once upon\"},\"done\":false}\n",
            "",
        ),
    }
}

/// A one-node chat flow against `base_url`, with extra node keys.
fn chat_flow(provider: &str, base_url: &str, extra: &str) -> ghostflow::Flow {
    load(&format!(
        r#"
version: 1
name: story
nodes:
  - id: ask
    type: chat
    config:
      model: {{ provider: {provider}, name: story-model, base_url: "{base_url}" }}
      prompt: "Tell me a long story."
{extra}outputs:
  text: ask.text
"#
    ))
}

/// Cancelling an execution while tokens stream stops it at once and
/// closes the connection to the model server.
#[tokio::test]
async fn cancelling_a_streaming_chat_closes_the_connection() {
    for provider in ["openai", "anthropic", "ollama"] {
        let (content_type, first, path) = stalled_stream(provider);
        let server = staller(content_type, first).await;
        let flow = chat_flow(provider, &format!("{}{path}", server.url), "");
        let execution = Engine::new().start(&flow, Inputs::new()).unwrap();
        let mut events = execution.events();
        loop {
            let event = events.next_event().await.expect("a token before the end");
            if let EventKind::NodeProgress { node, data, .. } = &event.kind {
                assert_eq!(&**node, "ask");
                assert_eq!(data, &json!({"token": "Once upon"}), "{provider}");
                break;
            }
        }
        execution.cancel();
        let result = execution.wait().await;
        assert!(matches!(result, Err(Error::Cancelled)), "{provider}: {result:?}");
        // The peer sees the connection close (a bound, not a timing: a
        // connection left open would hang the test).
        tokio::time::timeout(Duration::from_secs(20), server.closed)
            .await
            .unwrap_or_else(|_| panic!("{provider}: the connection was left open"))
            .unwrap();
        let request = server.request.lock().unwrap().clone();
        let expected_path = match provider {
            "openai" => "POST /v1/chat/completions HTTP/1.1",
            "anthropic" => "POST /v1/messages HTTP/1.1",
            _ => "POST /api/chat HTTP/1.1",
        };
        assert!(request.starts_with(expected_path), "{request}");
    }
}

/// The node's `timeout` policy drops the request (and its connection);
/// the model's own `timeout` setting fails it with its own message.
#[tokio::test(start_paused = true)]
async fn a_stalled_stream_hits_the_node_timeout_and_the_model_timeout() {
    for provider in ["openai", "anthropic", "ollama"] {
        let (content_type, first, path) = stalled_stream(provider);
        let server = staller(content_type, first).await;
        let flow = chat_flow(
            provider,
            &format!("{}{path}", server.url),
            "    timeout: 200ms\n",
        );
        let (error, attempts) = node_error(Engine::new().run(&flow, Inputs::new()).await);
        assert_eq!(error.message(), "timed out after 200ms", "{provider}");
        assert!(error.is_retryable());
        assert_eq!(attempts, 1);
        server.closed.await.unwrap();

        let server = staller(content_type, first).await;
        let base_url = format!("{}{path}", server.url);
        let flow = load(&format!(
            r#"
version: 1
name: story
nodes:
  - id: ask
    type: chat
    config:
      model: {{ provider: {provider}, name: story-model, base_url: "{base_url}", timeout: 150ms }}
      prompt: "Tell me a long story."
outputs:
  text: ask.text
"#
        ));
        let (error, _) = node_error(Engine::new().run(&flow, Inputs::new()).await);
        let endpoint = match provider {
            "openai" => format!("{base_url}/chat/completions"),
            "anthropic" => format!("{base_url}/v1/messages"),
            _ => format!("{base_url}/api/chat"),
        };
        assert_eq!(
            error.message(),
            format!(
                "{provider} model `story-model` at {endpoint}: no complete answer within 150ms (config.model.timeout)"
            )
        );
        assert!(error.is_retryable());
        server.closed.await.unwrap();
    }
}

// ------------------------------------------------------------------ helpers

/// The node error of a failed run, and the attempts made.
fn node_error(result: Result<Outcome, Error>) -> (ghostflow::NodeError, u32) {
    match result {
        Err(Error::NodeFailed {
            error, attempts, ..
        }) => (error, attempts),
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!(
            "expected a node failure, got outputs {:?}",
            outcome.outputs_json()
        ),
    }
}

#[allow(dead_code)]
fn unused() -> (MapSecrets, Value, String) {
    (MapSecrets::new(), json!(null), load_error(""))
}
