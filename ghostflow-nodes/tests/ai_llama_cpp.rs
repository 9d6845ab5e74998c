//! The OpenAI-compatible provider against a real inference server:
//! llama-cpp-python's OpenAI-compatible server (a FastAPI app on its
//! llama.cpp bindings, llama.cpp underneath; installed by
//! `.ci/llama-server.sh`, which `bash .ci/services.sh` calls), on a tiny
//! Llama model with random weights that each test writes itself
//! (`tests/peers/tiny_llama.py`). Its prose is noise; what is checked is
//! the real protocol: answers, streamed chunks, token counts, finish
//! reasons, grammar-constrained JSON, embeddings, and the server's own
//! errors. Decoding is greedy (temperature 0), so answers repeat.
#![cfg(feature = "ai")]

#[allow(dead_code, reason = "this file loads only documents that are good")]
mod common;
use common::load;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ghostflow::prelude::*;
use ghostflow::{EventKind, Outcome};
use serde_json::{Value, json};

// ---------------------------------------------------------------- the server

/// Where `.ci/llama-server.sh` installs the server.
fn server_python() -> PathBuf {
    let cache = std::env::var_os("GHOSTFLOW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/ghostflow")
        });
    cache.join("llama-cpp-python/bin/python")
}

/// A running llama-cpp-python server, serving the tiny model under the
/// aliases `tiny-chat` (chat, ChatML template) and `tiny-embed`
/// (embeddings, mean pooling); killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LlamaServer {
    fn start() -> LlamaServer {
        let python = server_python();
        assert!(
            python.exists(),
            "the tests against llama-cpp-python's server need it installed at {}: run `bash .ci/services.sh`",
            python.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let made = Command::new(&python)
            .arg(peers.join("tiny_llama.py"))
            .arg(&model)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "writing the tiny model failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let config = json!({
            "host": "127.0.0.1",
            "port": 0,
            "models": [
                {"model": model, "model_alias": "tiny-chat", "chat_format": "chatml",
                 "n_ctx": 2048, "n_threads": 1, "verbose": false},
                {"model": model, "model_alias": "tiny-embed", "embedding": true,
                 "n_ctx": 2048, "n_threads": 1, "verbose": false},
            ]
        });
        let config_file = dir.path().join("config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let mut child = Command::new(&python)
            .args(["-m", "llama_cpp.server", "--config_file"])
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run llama-cpp-python's server");
        // Uvicorn says where it listens once it does.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let url = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!(
                    "llama-cpp-python's server did not start:\n{}",
                    said.join("\n")
                );
            };
            if let Some(rest) = line.split("Uvicorn running on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            said.push(line);
        };
        // Keep reading its log, so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        LlamaServer {
            child,
            url: format!("{url}/v1"),
            _dir: dir,
        }
    }

    fn model(&self, name: &str, extra: &str) -> String {
        format!(
            r#"{{ provider: openai, name: {name}, base_url: "{}"{extra} }}"#,
            self.url
        )
    }
}

// ------------------------------------------------------------------ helpers

fn out(outcome: &Outcome, name: &str) -> Value {
    outcome.output::<Value>(name).unwrap()
}

/// Runs `flow`, returning the outcome and the tokens its progress events
/// carried, in order.
async fn run_streaming(flow: &ghostflow::Flow) -> (Outcome, Vec<String>) {
    let execution = Engine::new().start(flow, Inputs::new()).unwrap();
    let mut stream = execution.events();
    let collect = async move {
        let mut tokens = Vec::new();
        while let Some(event) = stream.next_event().await {
            if let EventKind::NodeProgress { data, .. } = &event.kind {
                tokens.extend(data["token"].as_str().map(str::to_owned));
            }
        }
        tokens
    };
    let (result, tokens) = tokio::join!(execution.wait(), collect);
    (result.unwrap(), tokens)
}

const STREAM_OFF: &str = "      stream: false\n";

/// A greedy twelve-token chat with these extra config lines (at the
/// config's indentation).
fn chat_flow(server: &LlamaServer, extra: &str) -> ghostflow::Flow {
    load(&format!(
        r#"
version: 1
name: chat
nodes:
  - id: ask
    type: chat
    config:
      model: {model}
      system: You are terse.
      prompt: Name three colours.
      temperature: 0
      max_tokens: 12
{extra}outputs:
  text: ask.text
  message: ask.message
  finish_reason: ask.finish_reason
  usage: ask.usage
"#,
        model = server.model("tiny-chat", "")
    ))
}

// -------------------------------------------------------------------- tests

#[tokio::test]
async fn a_chat_answers_with_its_token_counts_and_again_the_same() {
    let server = LlamaServer::start();
    let flow = chat_flow(&server, STREAM_OFF);
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    let text = out(&outcome, "text");
    let text = text.as_str().unwrap();
    assert!(!text.trim().is_empty(), "{outcome:?}");
    // Twelve tokens asked for, twelve written: the answer ran to the limit.
    assert_eq!(out(&outcome, "finish_reason"), json!("length"));
    let usage = out(&outcome, "usage");
    assert_eq!(usage["output_tokens"], json!(12), "{usage}");
    let input = usage["input_tokens"].as_u64().unwrap();
    assert!(
        input > 10,
        "the ChatML prompt has more tokens than that: {usage}"
    );
    assert_eq!(usage["total_tokens"], json!(input + 12), "{usage}");
    assert_eq!(
        out(&outcome, "message"),
        json!({"role": "assistant", "content": text})
    );

    // Greedy decoding: the same prompt, the same answer.
    let again = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(out(&again, "text"), json!(text));
}

#[tokio::test]
async fn a_streamed_chat_arrives_token_by_token_as_the_whole_answer() {
    let server = LlamaServer::start();
    let whole = Engine::new()
        .run(&chat_flow(&server, STREAM_OFF), Inputs::new())
        .await
        .unwrap();
    let (outcome, tokens) = run_streaming(&chat_flow(&server, "")).await;
    // The server sends one chunk per generated token (its first chunk
    // carries only the role); each became a progress event: twelve tokens
    // asked for, twelve events.
    assert_eq!(tokens.len(), 12, "{tokens:?}");
    assert_eq!(json!(tokens.concat()), out(&outcome, "text"));
    assert_eq!(out(&outcome, "text"), out(&whole, "text"));
    assert_eq!(out(&outcome, "finish_reason"), json!("length"));
    // This server ignores `stream_options.include_usage`: a streamed
    // answer comes without counts, and the node says it has none rather
    // than making them up.
    let usage = out(&outcome, "usage");
    assert_eq!(usage, Value::Null, "{usage}");
}

#[tokio::test]
async fn stop_sequences_end_the_answer_early() {
    let server = LlamaServer::start();
    let whole = Engine::new()
        .run(&chat_flow(&server, STREAM_OFF), Inputs::new())
        .await
        .unwrap();
    let text = out(&whole, "text").as_str().unwrap().to_owned();
    // Stop at two characters from the fifth on of the greedy answer: the
    // server cuts there, says `stop`, and leaves the sequence out.
    let at = text.char_indices().nth(4).map(|(i, _)| i).unwrap();
    let stop: String = text[at..].chars().take(2).collect();
    let quoted = serde_json::to_string(&stop).unwrap();
    let flow = chat_flow(&server, &format!("      stop: [{quoted}]\n"));
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    let cut = out(&outcome, "text");
    let cut = cut.as_str().unwrap();
    assert_eq!(out(&outcome, "finish_reason"), json!("stop"));
    assert!(
        text.starts_with(cut) && cut.len() < text.len() && !cut.contains(&stop),
        "{cut:?} from {text:?} at {stop:?}"
    );
}

#[tokio::test]
async fn embeddings_have_the_models_width_and_repeat_for_the_same_text() {
    let server = LlamaServer::start();
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
      model: {model}
      batch_size: 2
edges:
  - {{ from: input.texts, to: vectors.texts }}
outputs:
  vectors: vectors.vectors
  dimensions: vectors.dimensions
"#,
        model = server.model("tiny-embed", "")
    ));
    let texts = ["the flow runs", "a node fails", "the flow runs"];
    let outcome = Engine::new()
        .run(
            &flow,
            Inputs::new().set("texts", texts.map(str::to_owned).to_vec()),
        )
        .await
        .unwrap();
    // The model's embedding width (tiny_llama.py: 64); three texts in two
    // batches, in order.
    assert_eq!(out(&outcome, "dimensions"), json!(64));
    let vectors: Vec<Vec<f64>> = serde_json::from_value(out(&outcome, "vectors")).unwrap();
    assert_eq!(vectors.len(), 3);
    assert!(
        vectors
            .iter()
            .all(|v| v.len() == 64 && v.iter().all(|x| x.is_finite()))
    );
    assert_eq!(vectors[0], vectors[2]);
    assert_ne!(vectors[0], vectors[1]);
}

const SCHEMA: &str = "{ type: object, properties: { done: { type: boolean }, count: { type: integer } }, required: [done, count] }";

fn extract_flow(server: &LlamaServer, extra: &str) -> ghostflow::Flow {
    load(&format!(
        r#"
version: 1
name: extract
nodes:
  - id: facts
    type: extract
    config:
      model: {model}
      prompt: Is it done, and how many?
      schema: {SCHEMA}
      temperature: 0
      max_tokens: 64
      max_attempts: 1
outputs:
  value: facts.value
  attempts: facts.attempts
"#,
        model = server.model("tiny-chat", extra)
    ))
}

/// The server constrains its sampling with a grammar made from the
/// schema, so even random weights answer with matching JSON, at the first
/// attempt, when the schema travels as this server takes it.
#[tokio::test]
async fn structured_output_matches_the_schema_when_asked_the_servers_way() {
    let server = LlamaServer::start();
    let flow = extract_flow(&server, ", schema_format: json_object");
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    let value = out(&outcome, "value");
    assert!(value["done"].is_boolean(), "{value}");
    assert!(value["count"].is_i64(), "{value}");
    assert_eq!(out(&outcome, "attempts"), json!(1));

    // OpenAI's own form, which this server refuses: its words come back.
    let flow = extract_flow(&server, "");
    let error = Engine::new().run(&flow, Inputs::new()).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "openai model `tiny-chat` at {}/chat/completions: 500 ",
            server.url
        )),
        "{message}"
    );
    assert!(message.contains("Input should be 'text'"), "{message}");
}

/// A prompt longer than the model's context. Asked without streaming,
/// the server answers 400 in its words, which is not retried. Streaming,
/// it starts a 200 stream and ends it without an event: the node cannot
/// tell that from a cut connection, so it says so, and retries.
#[tokio::test]
async fn a_prompt_longer_than_the_context_is_refused_in_the_servers_words() {
    let server = LlamaServer::start();
    let flow = |stream: bool| {
        load(&format!(
            r#"
version: 1
name: chat
inputs:
  long: {{ schema: {{ type: string }} }}
nodes:
  - id: ask
    type: chat
    config:
      model: {model}
      max_tokens: 4
      stream: {stream}
    retry: {{ max_attempts: 3, backoff: 10ms }}
edges:
  - {{ from: input.long, to: ask.prompt }}
outputs:
  text: ask.text
"#,
            model = server.model("tiny-chat", "")
        ))
    };
    let long = || Inputs::new().set("long", "the flow runs and the node fails ".repeat(600));

    let error = Engine::new().run(&flow(false), long()).await.unwrap_err();
    let Error::NodeFailed {
        error, attempts, ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(*attempts, 1, "a 400 is not retried");
    assert!(!error.is_retryable());
    let message = error.message();
    assert!(message.contains(": 400 Bad Request: "), "{message}");
    assert!(
        message.contains("maximum context length is 2048 tokens"),
        "{message}"
    );

    let error = Engine::new().run(&flow(true), long()).await.unwrap_err();
    let Error::NodeFailed {
        error, attempts, ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(*attempts, 3);
    assert!(
        error
            .message()
            .contains(": the stream was cut off: it ended before `data: [DONE]`"),
        "{error}"
    );
}
