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

use ghostflow::prelude::*;
use ghostflow::{EventKind, MapSecrets, NodeStatus, Outcome};
use ghostflow_model_peer::{ModelPeer, Reply};
use ghostflow_nodes::ai::model::ChatRequest;
use ghostflow_nodes::ai::{Chat, Embed, ModelSettings};
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
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{provider}: {result:?}"
        );
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

// ---------------------------------------------------------- the model peer

const PROVIDERS: [&str; 3] = ["openai", "ollama", "anthropic"];

/// The API key the peer requires, and the secret that holds it.
const KEY: &str = "sk-test-5ecret";

async fn peer() -> ModelPeer {
    let peer = ModelPeer::start().await;
    peer.api_key(KEY);
    peer
}

fn base_url(peer: &ModelPeer, provider: &str) -> String {
    if provider == "openai" {
        peer.openai_url()
    } else {
        peer.url()
    }
}

/// The `model` block for `provider` at the peer, as YAML flow mapping.
fn model_yaml(peer: &ModelPeer, provider: &str) -> String {
    format!(
        r#"{{ provider: {provider}, name: test-model, base_url: "{}", api_key_secret: MODEL_KEY }}"#,
        base_url(peer, provider)
    )
}

fn settings(peer: &ModelPeer, provider: &str) -> ModelSettings {
    let settings = match provider {
        "openai" => ModelSettings::openai("test-model"),
        "ollama" => ModelSettings::ollama("test-model"),
        _ => ModelSettings::anthropic("test-model"),
    };
    settings
        .base_url(base_url(peer, provider))
        .api_key_secret("MODEL_KEY")
}

fn engine() -> Engine {
    Engine::builder()
        .secrets(MapSecrets::new().with("MODEL_KEY", KEY))
        .build()
}

/// A flow of one `chat` node with this config (YAML mapping lines at the
/// node's config indentation) and node keys, all outputs out.
fn chat_doc(config: &str, extra: &str) -> ghostflow::Flow {
    load(&format!(
        "version: 1\nname: chat\nnodes:\n  - id: ask\n    type: chat\n    config:\n{config}{extra}outputs:\n  text: ask.text\n  message: ask.message\n  finish_reason: ask.finish_reason\n  usage: ask.usage\n  messages: ask.messages\n"
    ))
}

fn out(outcome: &Outcome, name: &str) -> Value {
    outcome.output::<Value>(name).unwrap()
}

/// The tokens of a run's progress events, in order.
fn tokens(events: &[ghostflow::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeProgress { data, .. } => data["token"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// Runs `flow`, returning the outcome and every event of the execution.
async fn run_with_events(
    engine: &Engine,
    flow: &ghostflow::Flow,
    inputs: Inputs,
) -> (Result<Outcome, Error>, Vec<ghostflow::Event>) {
    let execution = engine.start(flow, inputs).unwrap();
    let mut stream = execution.events();
    let collect = async move {
        let mut events = Vec::new();
        while let Some(event) = stream.next_event().await {
            events.push(event);
        }
        events
    };
    let (result, events) = tokio::join!(execution.wait(), collect);
    (result, events)
}

/// The delays the engine chose after failed attempts, and their errors.
fn retries(events: &[ghostflow::Event]) -> Vec<(Option<Duration>, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeFailed {
                retry_in, error, ..
            } => Some((*retry_in, error.clone())),
            _ => None,
        })
        .collect()
}

fn chat_path(provider: &str) -> &'static str {
    match provider {
        "openai" => "/v1/chat/completions",
        "ollama" => "/api/chat",
        _ => "/v1/messages",
    }
}

#[tokio::test]
async fn a_chat_without_streaming_answers_on_every_provider() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(
            Reply::text("Paris is the capital of France.")
                .finish("stop")
                .usage(12, 5),
        );
        let flow = chat_doc(
            &format!(
                "      model: {}\n      system: \"Answer about {{{{ data.topic }}}} in one sentence.\"\n      prompt: \"What is the capital of {{{{ data.country }}}}?\"\n      temperature: 0.5\n      max_tokens: 50\n      stop: [\"END\"]\n      stream: false\n",
                model_yaml(&peer, provider)
            ),
            "",
        );
        let flow_with_data = load(&format!(
            "{}edges:\n  - {{ from: input.data, to: ask.data }}\ninputs:\n  data: {{}}\n",
            ghostflow::document::Document::from_flow(&flow)
                .unwrap()
                .to_yaml()
        ));
        let (result, events) = run_with_events(
            &engine(),
            &flow_with_data,
            Inputs::new().set("data", json!({"topic": "geography", "country": "France"})),
        )
        .await;
        let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(
            out(&outcome, "text"),
            json!("Paris is the capital of France.")
        );
        assert_eq!(out(&outcome, "finish_reason"), json!("stop"), "{provider}");
        assert_eq!(
            out(&outcome, "usage"),
            json!({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}),
            "{provider}"
        );
        assert_eq!(
            out(&outcome, "message"),
            json!({"role": "assistant", "content": "Paris is the capital of France."})
        );
        assert_eq!(
            out(&outcome, "messages"),
            json!([
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris is the capital of France."}
            ])
        );
        assert!(tokens(&events).is_empty(), "{provider}: no streaming");

        // What the peer saw.
        let requests = peer.requests();
        assert_eq!(requests.len(), 1, "{provider}");
        let request = &requests[0];
        assert_eq!(request.path, chat_path(provider));
        let body = &request.body;
        assert_eq!(body["model"], json!("test-model"));
        match provider {
            "openai" => {
                assert_eq!(
                    request.header("authorization"),
                    Some(&*format!("Bearer {KEY}"))
                );
                assert_eq!(
                    body["messages"],
                    json!([
                        {"role": "system", "content": "Answer about geography in one sentence."},
                        {"role": "user", "content": "What is the capital of France?"}
                    ])
                );
                assert_eq!(body["temperature"], json!(0.5));
                assert_eq!(body["max_tokens"], json!(50));
                assert_eq!(body["stop"], json!(["END"]));
                assert_eq!(body["stream"], json!(false));
            }
            "ollama" => {
                assert_eq!(
                    request.header("authorization"),
                    Some(&*format!("Bearer {KEY}"))
                );
                assert_eq!(body["messages"][0]["role"], json!("system"));
                assert_eq!(
                    body["options"],
                    json!({"temperature": 0.5, "num_predict": 50, "stop": ["END"]})
                );
                assert_eq!(body["stream"], json!(false));
            }
            _ => {
                assert_eq!(request.header("x-api-key"), Some(KEY));
                assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(request.header("authorization"), None);
                assert_eq!(
                    body["system"],
                    json!("Answer about geography in one sentence.")
                );
                assert_eq!(
                    body["messages"],
                    json!([{"role": "user", "content": "What is the capital of France?"}])
                );
                assert_eq!(body["max_tokens"], json!(50));
                assert_eq!(body["stop_sequences"], json!(["END"]));
                assert!(body.get("stream").is_none());
            }
        }
    }
}

#[tokio::test]
async fn streamed_tokens_arrive_as_progress_events_in_order() {
    let answer = "The quick brown fox jumps over the lazy dog, and then naps.";
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::text(answer).usage(9, 13));
        let flow = chat_doc(
            &format!(
                "      model: {}\n      prompt: Tell me about the fox.\n",
                model_yaml(&peer, provider)
            ),
            "",
        );
        let (result, events) = run_with_events(&engine(), &flow, Inputs::new()).await;
        let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        let tokens = tokens(&events);
        assert!(tokens.len() > 5, "{provider}: {tokens:?}");
        assert_eq!(tokens.concat(), answer, "{provider}");
        assert_eq!(out(&outcome, "text"), json!(answer));
        assert_eq!(out(&outcome, "finish_reason"), json!("stop"));
        assert_eq!(
            out(&outcome, "usage")["total_tokens"],
            json!(22),
            "{provider}"
        );
        // The tokens come while the node runs: after it started, before it
        // succeeded.
        let position =
            |pred: &dyn Fn(&EventKind) -> bool| events.iter().position(|e| pred(&e.kind)).unwrap();
        let started = position(&|k| matches!(k, EventKind::NodeStarted { .. }));
        let first = position(&|k| matches!(k, EventKind::NodeProgress { .. }));
        let done = position(&|k| matches!(k, EventKind::NodeSucceeded { .. }));
        assert!(started < first && first < done, "{provider}");
        let request = peer.last_request().unwrap();
        match provider {
            "openai" => {
                assert_eq!(request.body["stream"], json!(true));
                assert_eq!(
                    request.body["stream_options"],
                    json!({"include_usage": true})
                );
            }
            _ => assert_eq!(request.body["stream"], json!(true), "{provider}"),
        }
    }
}

#[tokio::test]
async fn finish_reasons_and_usage_come_through_streamed_or_not() {
    for provider in PROVIDERS {
        for stream in [false, true] {
            let peer = peer().await;
            peer.push(
                Reply::text("A long answer cut")
                    .finish("length")
                    .usage(40, 3),
            );
            let flow = chat_doc(
                &format!(
                    "      model: {}\n      prompt: Write an essay.\n      max_tokens: 3\n      stream: {stream}\n",
                    model_yaml(&peer, provider)
                ),
                "",
            );
            let outcome = engine().run(&flow, Inputs::new()).await.unwrap();
            assert_eq!(
                out(&outcome, "finish_reason"),
                json!("length"),
                "{provider} {stream}"
            );
            assert_eq!(
                out(&outcome, "usage"),
                json!({"input_tokens": 40, "output_tokens": 3, "total_tokens": 43}),
                "{provider} {stream}"
            );
        }
    }
}

#[tokio::test]
async fn history_feeds_the_next_turn() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::text("Hello Ada."));
        peer.push(Reply::text("Your name is Ada."));
        let model = model_yaml(&peer, provider);
        let flow = load(&format!(
            r#"
version: 1
name: two-turns
nodes:
  - id: first
    type: chat
    config:
      model: {model}
      system: You are friendly.
      prompt: My name is Ada.
  - id: second
    type: chat
    config:
      model: {model}
      system: You are friendly.
      prompt: What is my name?
edges:
  - {{ from: first.messages, to: second.history }}
outputs:
  text: second.text
  messages: second.messages
"#
        ));
        let outcome = engine().run(&flow, Inputs::new()).await.unwrap();
        assert_eq!(out(&outcome, "text"), json!("Your name is Ada."));
        assert_eq!(
            out(&outcome, "messages"),
            json!([
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": "Hello Ada."},
                {"role": "user", "content": "What is my name?"},
                {"role": "assistant", "content": "Your name is Ada."}
            ])
        );
        let second = peer.last_request().unwrap();
        let texts: Vec<_> = match provider {
            "anthropic" => {
                assert_eq!(second.body["system"], json!("You are friendly."));
                second.body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["content"].clone())
                    .collect()
            }
            _ => second.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["content"].clone())
                .collect(),
        };
        let expected = if provider == "anthropic" {
            json!(["My name is Ada.", "Hello Ada.", "What is my name?"])
        } else {
            json!([
                "You are friendly.",
                "My name is Ada.",
                "Hello Ada.",
                "What is my name?"
            ])
        };
        assert_eq!(Value::Array(texts), expected, "{provider}");
    }
}

// ----------------------------------------------- the providers themselves

/// Calls the chat model of its settings with the request on its input and
/// outputs the response, so that tests reach what the `chat` node does not
/// offer (tools, response formats) through the engine, with its retries.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = ProbeInput, output = ProbeOutput, category = "test")]
pub struct Probe {
    /// The model.
    pub model: ModelSettings,
}

/// The input of [`Probe`].
#[derive(Ports, Debug)]
pub struct ProbeInput {
    /// `{messages, tools, response_format, stream, ...}`.
    pub request: Value,
}

/// The output of [`Probe`].
#[derive(Ports, Debug)]
pub struct ProbeOutput {
    /// `{message, finish_reason, usage, model, tokens}`.
    pub response: Value,
}

impl Run for Probe {
    async fn run(&self, input: ProbeInput, ctx: &Context) -> Result<ProbeOutput, NodeError> {
        let r = &input.request;
        let request = ChatRequest {
            messages: serde_json::from_value(r["messages"].clone()).unwrap(),
            temperature: r["temperature"].as_f64(),
            max_tokens: r["max_tokens"].as_u64().map(|n| n as u32),
            stop: serde_json::from_value(r.get("stop").cloned().unwrap_or(json!([]))).unwrap(),
            tools: serde_json::from_value(r.get("tools").cloned().unwrap_or(json!([]))).unwrap(),
            response_format: serde_json::from_value(
                r.get("response_format").cloned().unwrap_or(Value::Null),
            )
            .unwrap(),
            stream: r["stream"].as_bool().unwrap_or(false),
        };
        let model = self.model.chat_model(ctx)?;
        let mut tokens = Vec::new();
        let mut on_text = |t: &str| tokens.push(t.to_owned());
        let response = model.chat(&request, ctx, &mut on_text).await?;
        Ok(ProbeOutput {
            response: json!({
                "message": response.message,
                "finish_reason": response.finish_reason,
                "usage": response.usage,
                "model": response.model,
                "tokens": tokens,
            }),
        })
    }
}

fn probe_flow(settings: ModelSettings) -> ghostflow::Flow {
    let mut b = ghostflow::Flow::builder("probe");
    let request = b.input::<Value>("request");
    let probe = b.add("probe", Probe { model: settings });
    b.connect(request, probe.inp().request);
    b.output("response", probe.out().response);
    b.build().unwrap()
}

async fn probe(peer: &ModelPeer, provider: &str, request: Value) -> Result<Value, Error> {
    let flow = probe_flow(settings(peer, provider));
    let outcome = engine()
        .run(&flow, Inputs::new().set("request", request))
        .await?;
    Ok(out(&outcome, "response"))
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"]
        }
    })
}

#[tokio::test]
async fn tool_calls_parse_single_and_several_streamed_or_not_and_results_go_back() {
    for provider in PROVIDERS {
        for stream in [false, true] {
            let peer = peer().await;
            let what = format!("{provider}, stream {stream}");
            // One call.
            peer.push(Reply::tool_call("get_weather", json!({"city": "Paris"})));
            let question = json!([
                {"role": "system", "content": "You check the weather."},
                {"role": "user", "content": "Weather in Paris?"}
            ]);
            let response = probe(
                &peer,
                provider,
                json!({"messages": question, "tools": [weather_tool()], "stream": stream}),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(response["finish_reason"], json!("tool_calls"), "{what}");
            let calls = response["message"]["tool_calls"]
                .as_array()
                .unwrap()
                .clone();
            assert_eq!(calls.len(), 1, "{what}");
            assert_eq!(calls[0]["name"], json!("get_weather"));
            assert_eq!(calls[0]["arguments"], json!({"city": "Paris"}), "{what}");
            assert!(!calls[0]["id"].as_str().unwrap().is_empty());

            // Several at once, with text before them.
            peer.push(
                Reply::tool_calls(vec![
                    ("get_weather", json!({"city": "Paris"})),
                    ("get_weather", json!({"city": "Rome"})),
                    ("get_time", json!({})),
                ])
                .with_text("Let me look."),
            );
            let mut time_tool = weather_tool();
            time_tool["name"] = json!("get_time");
            time_tool["parameters"] = json!({"type": "object", "properties": {}});
            let tools = json!([weather_tool(), time_tool]);
            let response = probe(
                &peer,
                provider,
                json!({"messages": question, "tools": tools, "stream": stream}),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            let message = response["message"].clone();
            let calls = message["tool_calls"].as_array().unwrap().clone();
            let names: Vec<_> = calls.iter().map(|c| c["name"].clone()).collect();
            assert_eq!(
                names,
                [
                    json!("get_weather"),
                    json!("get_weather"),
                    json!("get_time")
                ]
            );
            assert_eq!(calls[1]["arguments"], json!({"city": "Rome"}), "{what}");
            assert_eq!(calls[2]["arguments"], json!({}), "{what}");
            assert_eq!(message["content"], json!("Let me look."), "{what}");
            if stream {
                assert_eq!(
                    response["tokens"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap())
                        .collect::<String>(),
                    "Let me look."
                );
            }
            let ids: std::collections::BTreeSet<_> = calls
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ids.len(), 3, "{what}: ids tell the calls apart");

            // The results go back: the peer checks that every result
            // answers a call of the assistant message before it.
            peer.push(Reply::text("Sunny in Paris, rain in Rome, and it is noon."));
            let mut conversation = question.as_array().unwrap().clone();
            conversation.push(message.clone());
            for (call, result) in calls.iter().zip(["21C sunny", "14C rain", "12:00"]) {
                conversation.push(json!({
                    "role": "tool", "content": result,
                    "tool_call_id": call["id"], "name": call["name"]
                }));
            }
            let response = probe(
                &peer,
                provider,
                json!({"messages": conversation, "tools": tools, "stream": stream}),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                response["message"]["content"],
                json!("Sunny in Paris, rain in Rome, and it is noon.")
            );
            let sent = peer.last_request().unwrap().body;
            match provider {
                "openai" => {
                    let messages = sent["messages"].as_array().unwrap();
                    assert_eq!(messages.len(), 6);
                    assert_eq!(
                        messages[2]["tool_calls"][0]["function"]["arguments"],
                        json!("{\"city\":\"Paris\"}")
                    );
                    assert_eq!(messages[3]["tool_call_id"], calls[0]["id"]);
                    assert_eq!(messages[5]["role"], json!("tool"));
                }
                "ollama" => {
                    let messages = sent["messages"].as_array().unwrap();
                    assert_eq!(
                        messages[2]["tool_calls"][0]["function"]["arguments"],
                        json!({"city": "Paris"})
                    );
                    assert_eq!(messages[3]["tool_name"], json!("get_weather"));
                    assert_eq!(messages[5]["tool_name"], json!("get_time"));
                }
                _ => {
                    // The three results are one user message of
                    // `tool_result` blocks.
                    let messages = sent["messages"].as_array().unwrap();
                    assert_eq!(messages.len(), 3, "{sent}");
                    assert_eq!(
                        messages[1]["content"][0],
                        json!({"type": "text", "text": "Let me look."})
                    );
                    assert_eq!(messages[1]["content"][1]["type"], json!("tool_use"));
                    let results = messages[2]["content"].as_array().unwrap();
                    assert_eq!(results.len(), 3);
                    assert_eq!(results[1]["type"], json!("tool_result"));
                    assert_eq!(results[1]["tool_use_id"], calls[1]["id"]);
                    assert_eq!(results[1]["content"], json!("14C rain"));
                    assert_eq!(
                        sent["tools"][0]["input_schema"],
                        weather_tool()["parameters"]
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_json_schema_response_format_is_asked_for_in_each_protocol() {
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "population": {"type": "integer"}
        },
        "required": ["city", "population"],
        "additionalProperties": false
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    for provider in PROVIDERS {
        for stream in [false, true] {
            let peer = peer().await;
            if provider == "anthropic" {
                // Anthropic has no response format: the system prompt asks
                // for JSON, which the peer cannot read; a real model would
                // follow it. Answer as one would.
                peer.push(Reply::text(r#"{"city": "Paris", "population": 2102650}"#));
            }
            let request = json!({
                "messages": [
                    {"role": "system", "content": "Paris has 2102650 inhabitants."},
                    {"role": "user", "content": "Which city, and how many inhabitants?"}
                ],
                "response_format": {"json_schema": {"name": "city", "schema": schema}},
                "stream": stream
            });
            let response = probe(&peer, provider, request)
                .await
                .unwrap_or_else(|e| panic!("{provider}: {e}"));
            let text = response["message"]["content"].as_str().unwrap();
            let answer: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{provider}: not JSON ({e}): {text}"));
            assert!(validator.is_valid(&answer), "{provider}: {answer}");
            let sent = peer.last_request().unwrap().body;
            match provider {
                "openai" => assert_eq!(
                    sent["response_format"],
                    json!({"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
                ),
                "ollama" => assert_eq!(sent["format"], schema),
                _ => {
                    let system = sent["system"].as_str().unwrap();
                    assert!(system.starts_with("Paris has 2102650 inhabitants.\n\nAnswer with one JSON value that matches this JSON Schema"), "{system}");
                    assert!(system.ends_with(&schema.to_string()), "{system}");
                }
            }
        }
    }
}

// ---------------------------------------------------------- embeddings

#[tokio::test]
async fn embeddings_come_in_batches_one_vector_per_text() {
    let texts = [
        "The cat sat on the mat.",
        "A cat was sitting on a mat.",
        "Stock markets fell sharply today.",
        "Cats like mats.",
        "Interest rates and stock markets.",
    ];
    for provider in ["openai", "ollama"] {
        let peer = peer().await;
        let flow = load(&format!(
            r#"
version: 1
name: embed
inputs:
  texts: {{ schema: {{ type: array, items: {{ type: string }} }} }}
nodes:
  - id: vectors
    type: embed
    config:
      model: {{ provider: {provider}, name: test-embed, base_url: "{}", api_key_secret: MODEL_KEY, dimensions: 64 }}
      batch_size: 2
edges:
  - {{ from: input.texts, to: vectors.texts }}
outputs:
  vectors: vectors.vectors
  dimensions: vectors.dimensions
  usage: vectors.usage
"#,
            base_url(&peer, provider)
        ));
        let outcome = engine()
            .run(&flow, Inputs::new().set("texts", json!(texts)))
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        let vectors: Vec<Vec<f32>> = serde_json::from_value(out(&outcome, "vectors")).unwrap();
        assert_eq!(vectors.len(), 5);
        assert_eq!(out(&outcome, "dimensions"), json!(64));
        for (text, vector) in texts.iter().zip(&vectors) {
            let expected = ghostflow_model_peer::embed_text(text, 64);
            assert_eq!(vector.len(), 64);
            for (a, b) in vector.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-6, "{provider}: {text}");
            }
        }
        // Similar texts are near each other.
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(cos(&vectors[0], &vectors[1]) > cos(&vectors[0], &vectors[2]));
        // Three requests of at most two texts.
        let requests = peer.requests();
        assert_eq!(requests.len(), 3, "{provider}");
        let path = if provider == "openai" {
            "/v1/embeddings"
        } else {
            "/api/embed"
        };
        for (request, expected) in requests
            .iter()
            .zip([&texts[0..2], &texts[2..4], &texts[4..5]])
        {
            assert_eq!(request.path, path);
            assert_eq!(request.body["input"], json!(expected));
            assert_eq!(request.body["dimensions"], json!(64));
            assert_eq!(request.body["model"], json!("test-embed"));
        }
        assert!(
            out(&outcome, "usage")["input_tokens"].as_u64().unwrap() > 0,
            "{provider}"
        );

        // One text on `text`.
        let flow = load(&format!(
            r#"
version: 1
name: embed-one
inputs:
  text: {{ schema: {{ type: string }} }}
nodes:
  - id: vectors
    type: embed
    config:
      model: {{ provider: {provider}, name: test-embed, base_url: "{}", api_key_secret: MODEL_KEY }}
edges:
  - {{ from: input.text, to: vectors.text }}
outputs:
  vectors: vectors.vectors
  dimensions: vectors.dimensions
"#,
            base_url(&peer, provider)
        ));
        let outcome = engine()
            .run(&flow, Inputs::new().set("text", "hello world".to_owned()))
            .await
            .unwrap();
        assert_eq!(
            out(&outcome, "dimensions"),
            json!(ghostflow_model_peer::DEFAULT_DIMENSIONS)
        );
        assert_eq!(out(&outcome, "vectors").as_array().unwrap().len(), 1);

        // A server that returns fewer vectors than texts is caught.
        peer.push_embeddings(Reply::embeddings(vec![vec![1.0, 0.0]]));
        let (error, _) = node_error(
            engine()
                .run(
                    &flow_of_two(&peer, provider),
                    Inputs::new().set("texts", vec!["one".to_owned(), "two".to_owned()]),
                )
                .await,
        );
        assert!(
            error.message().ends_with("asked for 2 embedding(s), got 1"),
            "{provider}: {error}"
        );
        assert!(!error.is_retryable());
    }
}

fn flow_of_two(peer: &ModelPeer, provider: &str) -> ghostflow::Flow {
    let mut model = settings(peer, provider);
    model.name = "test-embed".into();
    let mut b = ghostflow::Flow::builder("two");
    let texts = b.input::<Vec<String>>("texts");
    let node = b.add("vectors", Embed::new(model));
    b.connect(texts, node.inp().texts);
    b.output("vectors", node.out().vectors);
    b.build().unwrap()
}

// ------------------------------------------------------------------ errors

/// A one-node chat flow at the peer with these extra config lines and node
/// keys.
fn simple_chat(peer: &ModelPeer, provider: &str, config: &str, extra: &str) -> ghostflow::Flow {
    chat_doc(
        &format!(
            "      model: {}\n      prompt: Hello there.\n{config}",
            model_yaml(peer, provider)
        ),
        extra,
    )
}

fn endpoint(peer: &ModelPeer, provider: &str) -> String {
    format!("{}{}", peer.url(), chat_path(provider))
}

const RETRY: &str = "    retry: { max_attempts: 3, backoff: 10ms, jitter: 0 }\n";

#[tokio::test]
async fn a_wrong_key_is_a_permanent_401_that_never_shows_the_key() {
    for provider in PROVIDERS {
        let peer = peer().await;
        let wrong = "sk-wrong-key-123456";
        let engine = Engine::builder()
            .secrets(MapSecrets::new().with("MODEL_KEY", wrong))
            .build();
        let flow = simple_chat(&peer, provider, "", RETRY);
        let (error, attempts) = node_error(engine.run(&flow, Inputs::new()).await);
        let prefix = format!(
            "{provider} model `test-model` at {}: 401 Unauthorized: ",
            endpoint(&peer, provider)
        );
        assert!(error.message().starts_with(&prefix), "{error}");
        assert!(!error.is_retryable(), "{provider}");
        assert_eq!(attempts, 1, "{provider}");
        assert!(!error.message().contains(wrong), "{error}");
        let said = match provider {
            "openai" => "Incorrect API key provided",
            "ollama" => "unauthorized",
            _ => "invalid x-api-key",
        };
        assert!(error.message().contains(said), "{error}");
    }
    // A secret that is not there fails before any request.
    let peer = peer().await;
    let flow = simple_chat(&peer, "openai", "", "");
    let (error, _) = node_error(Engine::new().run(&flow, Inputs::new()).await);
    assert_eq!(error.message(), "node `ask`: secret `MODEL_KEY` is not set");
    assert!(peer.requests().is_empty());
}

// The clock is paused: the engine's retry wait passes in no time, and the
// time it waited is read from the clock, exactly.
#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_retried_no_sooner_than_asked() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::status(429).retry_after(2));
        peer.push(Reply::text("Finally."));
        let flow = simple_chat(&peer, provider, "", RETRY);
        let started = tokio::time::Instant::now();
        let (result, events) = run_with_events(&engine(), &flow, Inputs::new()).await;
        let waited = started.elapsed();
        let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(out(&outcome, "text"), json!("Finally."));
        assert_eq!(outcome.node("ask").unwrap().attempts, 2);
        let retries = retries(&events);
        assert_eq!(retries.len(), 1, "{provider}");
        assert_eq!(retries[0].0, Some(Duration::from_secs(2)), "{provider}");
        assert!(
            retries[0].1.starts_with(&format!(
                "{provider} model `test-model` at {}: 429 Too Many Requests",
                endpoint(&peer, provider)
            )),
            "{}",
            retries[0].1
        );
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
            "{waited:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_and_client_errors_are_not() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::status(500));
        peer.push(Reply::status(503));
        peer.push(Reply::text("Third time lucky."));
        let flow = simple_chat(&peer, provider, "", RETRY);
        let (result, events) = run_with_events(&engine(), &flow, Inputs::new()).await;
        let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(out(&outcome, "text"), json!("Third time lucky."));
        let retries = retries(&events);
        assert!(
            retries[0].1.contains(": 500 Internal Server Error"),
            "{:?}",
            retries
        );
        assert!(
            retries[1].1.contains(": 503 Service Unavailable"),
            "{:?}",
            retries
        );

        for status in [400, 403, 404] {
            peer.push(Reply::status(status));
            let (error, attempts) = node_error(engine().run(&flow, Inputs::new()).await);
            assert!(!error.is_retryable(), "{provider} {status}: {error}");
            assert_eq!(attempts, 1);
            assert!(error.message().contains(&format!(": {status} ")), "{error}");
        }
    }
    // Anthropic's "overloaded" (529) may pass later.
    let peer = peer().await;
    peer.push(Reply::status(529));
    peer.push(Reply::text("Back."));
    let flow = simple_chat(&peer, "anthropic", "", RETRY);
    let (result, events) = run_with_events(&engine(), &flow, Inputs::new()).await;
    assert_eq!(out(&result.unwrap(), "text"), json!("Back."));
    assert!(
        retries(&events)[0].1.contains(": 529 Overloaded"),
        "{:?}",
        retries(&events)
    );
}

#[tokio::test]
async fn an_unknown_model_names_itself_in_the_providers_words() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.only_models(["some-other-model"]);
        let flow = simple_chat(&peer, provider, "      stream: false\n", RETRY);
        let (error, attempts) = node_error(engine().run(&flow, Inputs::new()).await);
        assert!(!error.is_retryable());
        assert_eq!(attempts, 1);
        assert!(error.message().contains("404 Not Found: "), "{error}");
        assert!(error.message().contains("test-model"), "{error}");
    }
}

#[tokio::test]
async fn a_stream_cut_off_midway_is_a_retryable_failure() {
    for provider in PROVIDERS {
        let peer = peer().await;
        // Paced, so that the peer's server writes the events before it
        // breaks the connection (unpaced, it drops them unsent with the
        // head: the client sees a connection closed before any answer).
        let cut = || {
            Reply::text("one two three four five six seven")
                .cut_after(4)
                .pace(Duration::from_millis(1))
        };
        peer.push(cut());
        let flow = simple_chat(&peer, provider, "", "");
        let (result, events) = run_with_events(&engine(), &flow, Inputs::new()).await;
        let (error, _) = node_error(result);
        let terminator = match provider {
            "openai" => "`data: [DONE]`",
            "ollama" => "the line with `\"done\": true`",
            _ => "`message_stop`",
        };
        // The peer breaks the connection: the client's reason follows.
        let expected = format!(
            "{provider} model `test-model` at {}: the stream was cut off: it ended before {terminator} (",
            endpoint(&peer, provider)
        );
        assert!(error.message().starts_with(&expected), "{error}");
        assert!(error.is_retryable());
        // What came before the cut was streamed.
        assert!(!tokens(&events).is_empty(), "{provider}");

        // Retried, the second answer is whole.
        peer.push(cut());
        peer.push(Reply::text("All of it."));
        let flow = simple_chat(&peer, provider, "", RETRY);
        let outcome = engine().run(&flow, Inputs::new()).await.unwrap();
        assert_eq!(out(&outcome, "text"), json!("All of it."));
        assert_eq!(outcome.node("ask").unwrap().attempts, 2);

        // A body cut off without streaming.
        peer.push(Reply::text("A complete sentence that is long enough.").cut_after(20));
        let flow = simple_chat(&peer, provider, "      stream: false\n", "");
        let (error, _) = node_error(engine().run(&flow, Inputs::new()).await);
        assert!(error.is_retryable(), "{provider}: {error}");
        // (The peer's server drops the unsent head with the body: the
        // client sees the connection close before the answer.)
        assert!(
            error
                .message()
                .contains(": the request failed: connection closed")
                || error.message().contains(": reading the answer failed: "),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_error_in_the_middle_of_a_stream_is_reported_and_retryable() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::text("one two three four five").error_after(2, 500));
        let flow = simple_chat(&peer, provider, "", "");
        let (error, _) = node_error(engine().run(&flow, Inputs::new()).await);
        assert!(error.is_retryable(), "{provider}: {error}");
        assert!(
            error.message().contains(": the server reported an error: "),
            "{error}"
        );
    }
}

#[tokio::test]
async fn malformed_json_is_a_permanent_failure_quoting_it() {
    for provider in PROVIDERS {
        for stream in [false, true] {
            let peer = peer().await;
            peer.push(Reply::malformed());
            let flow = simple_chat(&peer, provider, &format!("      stream: {stream}\n"), RETRY);
            let (error, attempts) = node_error(engine().run(&flow, Inputs::new()).await);
            assert!(!error.is_retryable(), "{provider} {stream}: {error}");
            assert_eq!(attempts, 1);
            let what = match (stream, provider) {
                (false, _) => "the answer",
                (true, "ollama") => "a streamed line",
                (true, _) => "a streamed event",
            };
            let message = error.message();
            assert!(
                message.contains(&format!(": {what} is not valid JSON (")),
                "{provider} {stream}: {message}"
            );
            // The excerpt is quoted, and short.
            let quoted = message
                .rsplit_once("): `")
                .map(|(_, q)| q)
                .unwrap_or_default();
            assert!(quoted.ends_with('`') && quoted.len() < 130, "{message}");
        }
    }
}

#[tokio::test]
async fn cancelling_while_the_peer_streams_closes_its_stream() {
    for provider in PROVIDERS {
        let peer = peer().await;
        // Anthropic's stream starts with three events before any text.
        peer.push(Reply::text("a story that will never end properly").stall_after(6));
        let flow = simple_chat(&peer, provider, "", "");
        let execution = engine().start(&flow, Inputs::new()).unwrap();
        let mut events = execution.events();
        while let Some(event) = events.next_event().await {
            if matches!(event.kind, EventKind::NodeProgress { .. }) {
                break;
            }
        }
        assert_eq!(peer.open_streams(), 1, "{provider}");
        execution.cancel();
        let result = execution.wait().await;
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{provider}: {result:?}"
        );
        tokio::time::timeout(Duration::from_secs(20), peer.wait_open_streams(0))
            .await
            .unwrap_or_else(|_| panic!("{provider}: the stream was left open"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_model_hits_the_node_timeout() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::builtin().delay(Duration::from_secs(60)));
        let flow = simple_chat(&peer, provider, "", "    timeout: 1s\n");
        let (error, _) = node_error(engine().run(&flow, Inputs::new()).await);
        assert_eq!(error.message(), "timed out after 1s", "{provider}");
        assert!(error.is_retryable());
    }
}

#[tokio::test]
async fn unreachable_and_refused_servers_say_so() {
    // Nothing listens on port 9.
    let flow = chat_doc(
        "      model: { provider: ollama, name: m, base_url: \"http://127.0.0.1:9\" }\n      prompt: hi\n",
        "",
    );
    let (error, _) = node_error(Engine::new().run(&flow, Inputs::new()).await);
    assert!(
        error
            .message()
            .starts_with("ollama model `m` at http://127.0.0.1:9/api/chat: cannot connect: "),
        "{error}"
    );
    assert!(error.is_retryable());
    // An engine that refuses private addresses refuses the peer.
    let peer = peer().await;
    let engine = Engine::builder()
        .secrets(MapSecrets::new().with("MODEL_KEY", KEY))
        .resource(ghostflow_nodes::NetworkPolicy::public_only())
        .build();
    let flow = simple_chat(&peer, "openai", "", RETRY);
    let (error, attempts) = node_error(engine.run(&flow, Inputs::new()).await);
    assert!(!error.is_retryable());
    assert_eq!(attempts, 1);
    assert!(
        error.message().ends_with(
            ": 127.0.0.1 is a loopback address, which this engine's network policy refuses"
        ),
        "{error}"
    );
    assert!(peer.requests().is_empty());
}

// ------------------------------------------------------- documents, policies

#[tokio::test]
async fn bad_configs_fail_when_the_flow_loads_at_their_path() {
    for (node, config, expected) in [
        (
            "chat",
            "{ prompt: hi }",
            "nodes[0].config: missing field `model`",
        ),
        (
            "chat",
            "{ model: { provider: gemini, name: g }, prompt: hi }",
            "nodes[0].config.model.provider:",
        ),
        (
            "chat",
            "{ model: { provider: openai }, prompt: hi }",
            "nodes[0].config.model: missing field `name`",
        ),
        (
            "chat",
            r#"{ model: { provider: openai, name: m, base_url: "localhost:8000" }, prompt: hi }"#,
            "nodes[0].config.model.base_url: `localhost:8000`: the scheme `localhost` is not supported",
        ),
        (
            "chat",
            "{ model: { provider: openai, name: m, api_key: sk-123 }, prompt: hi }",
            "nodes[0].config.model.api_key:",
        ),
        (
            "chat",
            "{ model: { provider: openai, name: m }, temperature: hot }",
            "nodes[0].config.temperature:",
        ),
        (
            "chat",
            "{ model: { provider: openai, name: m }, temperature: 7 }",
            "nodes[0].config.temperature: the temperature is 7; it goes from 0 to 2",
        ),
        (
            "chat",
            r#"{ model: { provider: openai, name: m }, prompt: "{{ data.x " }"#,
            "nodes[0].config.prompt: syntax error",
        ),
        (
            "chat",
            "{ model: { provider: ollama, name: m, organization: acme }, prompt: hi }",
            "nodes[0].config.model: `organization` is an OpenAI setting, but the provider is ollama",
        ),
        (
            "extract",
            "{ model: { provider: anthropic, name: m, schema_format: json_object }, schema: { type: object } }",
            "nodes[0].config.model: `schema_format` is a setting of OpenAI-compatible servers, but the provider is anthropic",
        ),
        (
            "extract",
            "{ model: { provider: openai, name: m, schema_format: grammar }, schema: { type: object } }",
            r#"nodes[0].config.model.schema_format: "grammar" is not one of "json_schema", "json_object", "instruction""#,
        ),
        (
            "embed",
            "{ model: { provider: anthropic, name: claude } }",
            "nodes[0].config.model: Anthropic has no embeddings API",
        ),
        (
            "embed",
            "{ model: { provider: openai, name: e }, batch_size: 0 }",
            "nodes[0].config.batch_size: the batch size is 0",
        ),
    ] {
        let yaml = format!(
            "version: 1\nname: bad\nnodes:\n  - id: n\n    type: {node}\n    config: {config}\n"
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
    let peer = peer().await;
    let model = model_yaml(&peer, "openai");
    let document = |policy: &str| {
        load(&format!(
            r#"
version: 1
name: policies
nodes:
  - id: ask
    type: chat
    config:
      model: {model}
      prompt: hi
    on_error: {policy}
  - id: again
    type: chat
    config:
      model: {model}
      system: Say it again.
edges:
  - {{ from: ask.messages, to: again.history }}
outputs:
  text: again.text
{}
"#,
            if policy == "continue" {
                "  failure: ask.error"
            } else {
                ""
            }
        ))
    };
    peer.push(Reply::status(401).message("no such key"));
    let outcome = engine()
        .run(&document("continue"), Inputs::new())
        .await
        .unwrap();
    let failure: ghostflow::NodeFailure = outcome.output("failure").unwrap();
    assert_eq!(failure.node, "ask");
    assert!(
        failure.message.ends_with(": 401 Unauthorized: no such key"),
        "{}",
        failure.message
    );
    assert!(!failure.retryable);
    assert_eq!(outcome.node("ask").unwrap().status, NodeStatus::Failed);
    assert_eq!(outcome.node("again").unwrap().status, NodeStatus::Skipped);

    peer.push(Reply::status(401));
    let outcome = engine()
        .run(&document("skip"), Inputs::new())
        .await
        .unwrap();
    assert_eq!(outcome.node("ask").unwrap().status, NodeStatus::Skipped);
    assert_eq!(outcome.node("again").unwrap().status, NodeStatus::Skipped);
    assert!(outcome.output_value("text").is_none());
}

#[tokio::test]
async fn typed_flows_run_and_read_back_as_documents() {
    let peer = peer().await;
    let mut b = ghostflow::Flow::builder("typed");
    let question = b.input::<String>("question");
    let ask = b.add(
        "ask",
        Chat::new(settings(&peer, "ollama"))
            .system("Paris is the capital of France. Rome is the capital of Italy."),
    );
    b.connect(question, ask.inp().prompt);
    b.output("text", ask.out().text);
    let flow = b.build().unwrap();
    let inputs = || Inputs::new().set("question", "What is the capital of Italy?".to_owned());
    let direct = engine().run(&flow, inputs()).await.unwrap();
    // The peer's built-in model answers with the best matching sentence.
    assert_eq!(out(&direct, "text"), json!("Rome is the capital of Italy."));
    let yaml = ghostflow::document::Document::from_flow(&flow)
        .unwrap()
        .to_yaml();
    assert!(yaml.contains("type: chat"), "{yaml}");
    let reloaded = engine().run(&load(&yaml), inputs()).await.unwrap();
    assert_eq!(out(&reloaded, "text"), out(&direct, "text"));
}

#[tokio::test]
async fn anthropic_settings_made_in_rust_cannot_embed() {
    let peer = peer().await;
    let mut b = ghostflow::Flow::builder("no-embeddings");
    let text = b.input::<String>("text");
    let node = b.add("vectors", Embed::new(settings(&peer, "anthropic")));
    b.connect(text, node.inp().text);
    b.output("vectors", node.out().vectors);
    let flow = b.build().unwrap();
    let (error, _) = node_error(
        engine()
            .run(&flow, Inputs::new().set("text", "hi".to_owned()))
            .await,
    );
    assert!(
        error
            .message()
            .starts_with("config.model.provider: Anthropic has no embeddings API"),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(peer.requests().is_empty());
}
