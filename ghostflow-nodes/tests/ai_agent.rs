//! Structured output (`extract`, and the typed `ExtractAs<T>`) and the
//! tool-calling `agent`, against the model peer
//! (`ghostflow_model_peer::ModelPeer`, one per test) on every provider,
//! with scripted replies: the requests the peer records show what each
//! provider was sent (the schema, the validation problems fed back, the
//! tools and their results). Tools are test nodes registered beside the
//! library's, and flow documents written to a temporary directory.
#![cfg(feature = "ai")]

mod common;
use common::{load, load_error};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ghostflow::document::{Document, Format, Loader};
use ghostflow::prelude::*;
use ghostflow::{Event, EventKind, MapSecrets, Outcome, Registry};
use ghostflow_model_peer::{ModelPeer, Protocol, Reply};
use ghostflow_nodes::ai::{ExtractAs, ModelSettings};
use serde_json::{Value, json};
use tokio::sync::watch;

// ---------------------------------------------------------------- tools

/// What the test tools saw, shared through the engine's resources.
#[derive(Debug)]
struct Probe {
    /// Runs of `stock_lookup`.
    lookups: AtomicU32,
    /// Gates running now, and the most that ran at once.
    active: watch::Sender<(u32, u32)>,
    /// Gates stopped before they finished.
    stopped: AtomicU32,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            lookups: AtomicU32::new(0),
            active: watch::channel((0, 0)).0,
            stopped: AtomicU32::new(0),
        }
    }
}

fn probe(ctx: &Context) -> Arc<Probe> {
    ctx.resource::<Probe>()
        .expect("the test engine has a probe")
}

/// An item to look up.
#[derive(Ports, Debug)]
pub struct StockQuery {
    /// The item's SKU.
    pub sku: String,
    /// The warehouse to look in (`main` by default).
    pub warehouse: Option<String>,
}

/// What is in stock.
#[derive(Ports, Debug)]
pub struct Stock {
    /// Units in stock.
    pub in_stock: u64,
    /// The warehouse looked in.
    pub warehouse: String,
}

/// Looks up how many units of an item are in stock.
///
/// Ten per character of the SKU; the SKU `broken` fails.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = StockQuery, output = Stock, category = "test")]
pub struct StockLookup {}

impl Run for StockLookup {
    async fn run(&self, input: StockQuery, ctx: &Context) -> Result<Stock, NodeError> {
        probe(ctx).lookups.fetch_add(1, Ordering::SeqCst);
        if input.sku == "broken" {
            return Err(NodeError::permanent(
                "the stock database refused SKU `broken`",
            ));
        }
        Ok(Stock {
            in_stock: input.sku.len() as u64 * 10,
            warehouse: input.warehouse.unwrap_or_else(|| "main".to_owned()),
        })
    }
}

/// An order line.
#[derive(Ports, Debug)]
pub struct Line {
    /// The item's SKU.
    pub sku: String,
    /// How many.
    pub qty: u64,
}

/// A price.
#[derive(Ports, Debug)]
pub struct Price {
    /// The line's total, in cents.
    pub total_cents: u64,
}

/// Prices an order line at a fixed unit price.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Line, output = Price, category = "test")]
pub struct PriceQuote {
    /// The unit price, in cents.
    pub unit_cents: u64,
}

impl Run for PriceQuote {
    async fn run(&self, input: Line, _: &Context) -> Result<Price, NodeError> {
        Ok(Price {
            total_cents: input.qty * self.unit_cents,
        })
    }
}

/// A label.
#[derive(Ports, Debug)]
pub struct Label {
    /// The label.
    pub label: String,
}

/// Waits until `together` gates have run at once (forever with 0), then
/// echoes its label.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Label, output = Label, category = "test")]
pub struct Gate {
    /// How many gates must be running for this one to go on.
    pub together: u32,
}

/// Counts a gate out when it ends, and as stopped when it did not finish.
struct Running {
    probe: Arc<Probe>,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.probe.active.send_modify(|(now, _)| *now -= 1);
        if !self.finished {
            self.probe.stopped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Run for Gate {
    async fn run(&self, input: Label, ctx: &Context) -> Result<Label, NodeError> {
        let probe = probe(ctx);
        let mut running = Running {
            probe: probe.clone(),
            finished: false,
        };
        probe.active.send_modify(|(now, most)| {
            *now += 1;
            *most = (*most).max(*now);
        });
        if self.together == 0 {
            std::future::pending::<()>().await;
        }
        let mut seen = probe.active.subscribe();
        seen.wait_for(|(_, most)| *most >= self.together)
            .await
            .map_err(|e| NodeError::permanent(e.to_string()))?;
        running.finished = true;
        Ok(input)
    }
}

/// An invoice, as the typed extraction reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Invoice {
    /// The invoice number.
    pub number: String,
    /// The total, in euros.
    pub total: f64,
}

/// A line about an invoice.
#[derive(Ports, Debug)]
pub struct InvoiceIn {
    /// The invoice.
    pub invoice: Invoice,
}

/// Says what an invoice is for.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = InvoiceIn, output = Label, category = "test")]
pub struct DescribeInvoice {}

impl Run for DescribeInvoice {
    async fn run(&self, input: InvoiceIn, _: &Context) -> Result<Label, NodeError> {
        Ok(Label {
            label: format!(
                "invoice {} for {:.2} EUR",
                input.invoice.number, input.invoice.total
            ),
        })
    }
}

fn registry() -> Registry {
    let mut registry = ghostflow_nodes::registry();
    registry
        .register::<StockLookup>()
        .register::<PriceQuote>()
        .register::<Gate>()
        .register::<DescribeInvoice>();
    registry
}

// --------------------------------------------------------------- helpers

const PROVIDERS: [&str; 3] = ["openai", "ollama", "anthropic"];

/// The API key the peer requires, and the secret that holds it.
const KEY: &str = "sk-agent-5ecret";

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

/// The `model` block for `provider` at the peer, as a YAML flow mapping.
fn model_yaml(peer: &ModelPeer, provider: &str) -> String {
    format!(
        r#"{{ provider: {provider}, name: test-model, base_url: "{}", api_key_secret: MODEL_KEY }}"#,
        base_url(peer, provider)
    )
}

fn settings(peer: &ModelPeer, provider: &str) -> ModelSettings {
    match provider {
        "openai" => ModelSettings::openai("test-model"),
        "ollama" => ModelSettings::ollama("test-model"),
        _ => ModelSettings::anthropic("test-model"),
    }
    .base_url(base_url(peer, provider))
    .api_key_secret("MODEL_KEY")
}

fn engine() -> Engine {
    Engine::builder()
        .secrets(MapSecrets::new().with("MODEL_KEY", KEY))
        .registry(Arc::new(registry()))
        .resource(Probe::default())
        .build()
}

/// Loads a YAML document with the test registry, from `dir` when given
/// (so that relative flow paths are read from there).
fn load_in(dir: Option<&std::path::Path>, yaml: &str) -> Flow {
    let registry = registry();
    let loader = Loader::new(&registry);
    let loaded = match dir {
        Some(dir) => {
            let path = dir.join("main.yaml");
            std::fs::write(&path, yaml).unwrap();
            loader.load_path(&path)
        }
        None => loader.load_bytes(yaml.as_bytes(), Format::Yaml, None),
    };
    loaded.unwrap_or_else(|e| panic!("{e}\n{yaml}")).flow
}

/// The problems of a document the test registry refuses.
fn refused_in(dir: &std::path::Path, yaml: &str) -> String {
    let registry = registry();
    let path = dir.join("main.yaml");
    std::fs::write(&path, yaml).unwrap();
    match Loader::new(&registry).load_path(&path) {
        Ok(_) => panic!("the document loaded, but should have been refused:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// Runs `flow`, returning the outcome and every event of the execution.
async fn run_with_events(
    engine: &Engine,
    flow: &Flow,
    inputs: Inputs,
) -> (Result<Outcome, Error>, Vec<Event>) {
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

/// The progress data of a run's events, in order.
fn progress(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeProgress { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect()
}

/// The node error of a failed run.
fn node_error(result: Result<Outcome, Error>) -> NodeError {
    match result {
        Err(Error::NodeFailed { error, .. }) => error,
        Err(other) => panic!("expected a node failure, got {other}"),
        Ok(outcome) => panic!(
            "expected a node failure, got outputs {:?}",
            outcome.outputs_json()
        ),
    }
}

fn out(outcome: &Outcome, name: &str) -> Value {
    outcome.output::<Value>(name).unwrap()
}

/// The texts a request sent, per message, in order: the system prompt
/// first (Anthropic's top-level `system` too), tool results as their
/// content.
fn sent_texts(body: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    if let Some(system) = body["system"].as_str() {
        texts.push(system.to_owned());
    }
    for message in body["messages"].as_array().into_iter().flatten() {
        match &message["content"] {
            Value::String(text) => texts.push(text.clone()),
            Value::Array(blocks) => {
                for block in blocks {
                    match block["type"].as_str() {
                        Some("text") => texts.push(block["text"].as_str().unwrap_or("").to_owned()),
                        Some("tool_result") => {
                            texts.push(block["content"].as_str().unwrap_or("").to_owned());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    texts
}

/// The tool results a request gave the model, in the protocol's shape:
/// (the call id, or the tool name for Ollama; the content).
fn sent_tool_results(body: &Value, provider: &str) -> Vec<(String, String)> {
    let mut results = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        match provider {
            "anthropic" => {
                for block in message["content"].as_array().into_iter().flatten() {
                    if block["type"] == "tool_result" {
                        results.push((
                            block["tool_use_id"].as_str().unwrap_or("").to_owned(),
                            block["content"].as_str().unwrap_or("").to_owned(),
                        ));
                    }
                }
            }
            _ if message["role"] == "tool" => {
                let key = if provider == "openai" {
                    &message["tool_call_id"]
                } else {
                    &message["tool_name"]
                };
                results.push((
                    key.as_str().unwrap_or("").to_owned(),
                    message["content"].as_str().unwrap_or("").to_owned(),
                ));
            }
            _ => {}
        }
    }
    results
}

/// The tools a request offered: (name, parameters schema).
fn sent_tools(body: &Value, provider: &str) -> Vec<(String, Value)> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tool| match provider {
            "anthropic" => (
                tool["name"].as_str().unwrap_or("").to_owned(),
                tool["input_schema"].clone(),
            ),
            _ => (
                tool["function"]["name"].as_str().unwrap_or("").to_owned(),
                tool["function"]["parameters"].clone(),
            ),
        })
        .collect()
}

fn chat_requests(peer: &ModelPeer) -> Vec<Value> {
    peer.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect()
}

// ---------------------------------------------------- structured output

const PERSON_SCHEMA: &str = "{ type: object, properties: { name: { type: string }, age: { type: integer, minimum: 0 } }, required: [name, age], additionalProperties: false }";

/// A one-node `extract` flow with extra config lines.
fn extract_doc(peer: &ModelPeer, provider: &str, extra: &str) -> Flow {
    load(&format!(
        r#"
version: 1
name: person
inputs:
  text: {{ schema: {{ type: string }} }}
nodes:
  - id: person
    type: extract
    config:
      model: {model}
      system: "You read about people."
      prompt: "Who is this? {{{{ data }}}}"
      schema: {PERSON_SCHEMA}
      schema_name: person
{extra}edges:
  - {{ from: input.text, to: person.data }}
outputs:
  value: person.value
  attempts: person.attempts
  usage: person.usage
"#,
        model = model_yaml(peer, provider)
    ))
}

fn person_inputs() -> Inputs {
    Inputs::new().set("text", "Ada Lovelace, 36, mathematician.".to_owned())
}

/// The first answer matches: one request, asking for the schema in the
/// provider's own way.
#[tokio::test]
async fn extract_takes_a_first_answer_that_matches_on_every_provider() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::text(r#"{"name": "Ada Lovelace", "age": 36}"#).usage(30, 9));
        let flow = extract_doc(&peer, provider, "      stream: false\n");
        let outcome = engine()
            .run(&flow, person_inputs())
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(
            out(&outcome, "value"),
            json!({"name": "Ada Lovelace", "age": 36})
        );
        assert_eq!(out(&outcome, "attempts"), json!(1));
        assert_eq!(
            out(&outcome, "usage"),
            json!({"input_tokens": 30, "output_tokens": 9, "total_tokens": 39}),
            "{provider}"
        );
        let requests = chat_requests(&peer);
        assert_eq!(requests.len(), 1, "{provider}");
        let body = &requests[0];
        let schema: Value = json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
            "required": ["name", "age"],
            "additionalProperties": false
        });
        match provider {
            "openai" => assert_eq!(
                body["response_format"],
                json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
            ),
            "ollama" => assert_eq!(body["format"], schema),
            _ => {
                let system = body["system"].as_str().unwrap();
                assert!(system.starts_with("You read about people."), "{system}");
                assert!(
                    system.contains("matches this JSON Schema")
                        && system.contains(&schema.to_string()),
                    "{system}"
                );
            }
        }
        let texts = sent_texts(body);
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("Who is this? Ada Lovelace, 36")),
            "{provider}: {texts:?}"
        );
    }
}

/// The built-in model of the peer answers a JSON Schema request with a
/// value that satisfies it (where the protocol carries the schema), and
/// streaming gives the same value.
#[tokio::test]
async fn extract_streams_and_takes_the_peers_own_answer() {
    for provider in ["openai", "ollama"] {
        let peer = peer().await;
        let flow = extract_doc(&peer, provider, "");
        let (result, events) = run_with_events(&engine(), &flow, person_inputs()).await;
        let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        let value = out(&outcome, "value");
        assert!(
            value["name"].is_string() && value["age"].is_u64(),
            "{value}"
        );
        assert_eq!(out(&outcome, "attempts"), json!(1));
        let tokens: String = progress(&events)
            .iter()
            .filter_map(|d| d["token"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&tokens).unwrap(),
            value,
            "{provider}"
        );
    }
}

/// One answer that is not JSON, one that breaks the schema, then one that
/// matches: each problem goes back to the model as a message, and the
/// attempts, usage and progress events count them.
#[tokio::test]
async fn extract_feeds_the_problems_back_and_asks_again_on_every_provider() {
    for provider in PROVIDERS {
        // One bad answer.
        let peer = peer().await;
        peer.push(Reply::text("Ada Lovelace is 36.").usage(10, 5));
        peer.push(
            Reply::text(
                r#"```json
{"name": "Ada Lovelace", "age": 36}
```"#,
            )
            .usage(20, 6),
        );
        let flow = extract_doc(&peer, provider, "      stream: false\n");
        let (result, events) = run_with_events(&engine(), &flow, person_inputs()).await;
        let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(
            out(&outcome, "value"),
            json!({"name": "Ada Lovelace", "age": 36})
        );
        assert_eq!(out(&outcome, "attempts"), json!(2));
        assert_eq!(
            out(&outcome, "usage"),
            json!({"input_tokens": 30, "output_tokens": 11, "total_tokens": 41})
        );
        let requests = chat_requests(&peer);
        assert_eq!(requests.len(), 2, "{provider}");
        let texts = sent_texts(&requests[1]);
        let n = texts.len();
        assert_eq!(
            texts[n - 2],
            "Ada Lovelace is 36.",
            "{provider}: the bad answer"
        );
        assert!(
            texts[n - 1].contains("- the answer is not JSON (expected value at line 1 column 1)")
                && texts[n - 1].ends_with("Answer again with only the corrected JSON value."),
            "{provider}: {}",
            texts[n - 1]
        );
        let invalid: Vec<Value> = progress(&events)
            .into_iter()
            .filter_map(|d| d.get("invalid_answer").cloned())
            .collect();
        assert_eq!(
            invalid,
            [
                json!({"attempt": 1, "problems": ["the answer is not JSON (expected value at line 1 column 1)"]})
            ]
        );

        // Two bad answers: not JSON, then against the schema.
        let peer = self::peer().await;
        peer.push(Reply::text("I think: {name: Ada}"));
        peer.push(Reply::text(
            r#"{"name": "Ada", "age": "thirty-six", "born": 1815}"#,
        ));
        peer.push(Reply::text(r#"{"name": "Ada", "age": 36}"#));
        let flow = extract_doc(&peer, provider, "");
        let outcome = engine()
            .run(&flow, person_inputs())
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(out(&outcome, "attempts"), json!(3));
        assert_eq!(out(&outcome, "value"), json!({"name": "Ada", "age": 36}));
        let requests = chat_requests(&peer);
        assert_eq!(requests.len(), 3);
        let texts = sent_texts(&requests[2]);
        let feedback = texts.last().unwrap();
        assert!(
            feedback.contains("- at `/age`: \"thirty-six\" is not of type \"integer\"")
                && feedback
                    .contains("Additional properties are not allowed ('born' was unexpected)"),
            "{provider}: {feedback}"
        );
        // The whole exchange is there, in order.
        assert!(
            texts.iter().any(|t| t == "I think: {name: Ada}")
                && texts.iter().any(|t| t.contains("the answer is not JSON")),
            "{provider}: {texts:?}"
        );
    }
}

/// Answers that never match fail the node after `max_attempts`,
/// permanently, with the last problems.
#[tokio::test]
async fn extract_fails_after_max_attempts_on_every_provider() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::text(r#"{"name": "Ada"}"#));
        peer.push(Reply::text(r#"{"name": 7, "age": -1}"#));
        peer.push(Reply::text("never seen"));
        let flow = extract_doc(&peer, provider, "      max_attempts: 2\n");
        let error = node_error(engine().run(&flow, person_inputs()).await);
        assert!(!error.is_retryable());
        assert_eq!(
            error.message(),
            "no answer matched the schema in 2 attempts (max_attempts); the last one: at `/name`: 7 is not of type \"string\"; at `/age`: -1 is less than the minimum of 0",
            "{provider}"
        );
        assert_eq!(chat_requests(&peer).len(), 2, "{provider}");
        assert_eq!(peer.pending(), 1);
    }
}

/// The typed form in a builder flow: the schema comes from the type, the
/// output is the type, connected to a typed node; written as a document
/// it is an `extract` node that loads and runs the same.
#[tokio::test]
async fn the_typed_extract_feeds_a_typed_node_in_a_builder_flow() {
    for provider in PROVIDERS {
        let peer = peer().await;
        peer.push(Reply::text(r#"{"number": "2024-17"}"#));
        peer.push(Reply::text(r#"{"number": "2024-17", "total": 118.5}"#));
        peer.push(Reply::text(r#"{"number": "2024-17", "total": 118.5}"#));
        let mut b = Flow::builder("invoices");
        let text = b.input::<String>("text");
        let extract = b.add(
            "invoice",
            ExtractAs::<Invoice>::new(settings(&peer, provider))
                .system("You read invoices.")
                .stream(false),
        );
        let describe = b.add("describe", DescribeInvoice {});
        b.connect(text, extract.inp().prompt);
        b.connect(extract.out().value, describe.inp().invoice);
        b.output("line", describe.out().label);
        b.output("attempts", extract.out().attempts);
        let flow = b.build().unwrap();
        let inputs = || Inputs::new().set("text", "Invoice 2024-17, total 118.50 EUR".to_owned());
        let outcome = engine()
            .run(&flow, inputs())
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(
            outcome.output::<String>("line").unwrap(),
            "invoice 2024-17 for 118.50 EUR"
        );
        assert_eq!(outcome.output::<u32>("attempts").unwrap(), 2);
        let requests = chat_requests(&peer);
        let feedback = sent_texts(&requests[1]).pop().unwrap();
        assert!(
            feedback.contains("\"total\" is a required property"),
            "{provider}: {feedback}"
        );
        if provider == "openai" {
            assert_eq!(
                requests[0]["response_format"]["json_schema"]["name"],
                json!("Invoice")
            );
            assert_eq!(
                requests[0]["response_format"]["json_schema"]["schema"]["required"],
                json!(["number", "total"])
            );
        }

        let document = Document::from_flow(&flow).unwrap();
        let yaml = document.to_yaml();
        assert!(yaml.contains("type: extract"), "{yaml}");
        let reloaded = load_in(None, &yaml);
        let outcome = engine().run(&reloaded, inputs()).await.unwrap();
        assert_eq!(
            outcome.output::<String>("line").unwrap(),
            "invoice 2024-17 for 118.50 EUR"
        );
    }
}

/// A count that must be even: serde is stricter than the schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pairs {
    /// How many, an even number.
    #[serde(deserialize_with = "even")]
    pub count: u32,
}

fn even<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(deserializer)?;
    if n % 2 == 1 {
        return Err(serde::de::Error::custom(format!(
            "{n} is odd; give an even count"
        )));
    }
    Ok(n)
}

/// An answer that matches `T`'s schema but does not deserialize as a `T`
/// is fed back with serde's reason.
#[tokio::test]
async fn the_typed_extract_feeds_back_what_does_not_deserialize() {
    let peer = peer().await;
    peer.push(Reply::text(r#"{"count": 3}"#));
    peer.push(Reply::text(r#"{"count": 4}"#));
    let mut b = Flow::builder("pairs");
    let extract = b.add(
        "pairs",
        ExtractAs::<Pairs>::new(settings(&peer, "ollama")).prompt("How many pairs of socks?"),
    );
    let typed: ghostflow::Port<ghostflow::Out, Pairs> = extract.out().value;
    b.output("pairs", typed);
    let flow = b.build().unwrap();
    let outcome = engine().run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(
        outcome.output::<Pairs>("pairs").unwrap(),
        Pairs { count: 4 }
    );
    let feedback = sent_texts(&chat_requests(&peer)[1]).pop().unwrap();
    assert!(
        feedback.contains("- it does not read as `ai_agent::Pairs`: 3 is odd; give an even count"),
        "{feedback}"
    );
}

// ------------------------------------------------------------- the agent

const QUOTE_FLOW: &str = r#"
version: 1
name: quote
description: Quotes the price of some units of an item, in cents.
inputs:
  sku: { schema: { type: string }, description: The item's SKU. }
  qty: { schema: { type: integer, minimum: 1 }, description: How many units. }
nodes:
  - id: price
    type: price_quote
    config: { unit_cents: 250 }
edges:
  - { from: input.sku, to: price.sku }
  - { from: input.qty, to: price.qty }
outputs:
  total_cents: price.total_cents
"#;

/// A directory with the `quote.yaml` tool flow.
fn tool_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quote.yaml"), QUOTE_FLOW).unwrap();
    dir
}

/// The shop agent, with a node tool (`stock`), a flow tool (`quote`) and
/// a gate (`gate`), extra config lines and node keys.
fn shop_doc(
    dir: &std::path::Path,
    peer: &ModelPeer,
    provider: &str,
    config: &str,
    node: &str,
) -> Flow {
    load_in(
        Some(dir),
        &format!(
            r#"
version: 1
name: shop
inputs:
  question: {{ schema: {{ type: string }} }}
nodes:
  - id: clerk
    type: agent
    config:
      model: {model}
      system: "You help shoppers. Use the tools."
      tools:
        - name: stock
          description: How many units of an item are in stock.
          node: {{ type: stock_lookup }}
        - name: quote
          flow: quote.yaml
        - name: gate
          node: {{ type: gate, config: {{ together: 2 }} }}
{config}{node}edges:
  - {{ from: input.question, to: clerk.prompt }}
outputs:
  answer: clerk.answer
  transcript: clerk.transcript
  steps: clerk.steps
  usage: clerk.usage
  tool_calls: clerk.tool_calls
"#,
            model = model_yaml(peer, provider)
        ),
    )
}

fn question() -> Inputs {
    Inputs::new().set(
        "question",
        "Can I buy 3 of SKU A12, and for how much?".to_owned(),
    )
}

/// A node tool and a flow tool called in one step, their results given
/// back in the protocol's shape, then the answer: every output, on every
/// provider.
#[tokio::test]
async fn the_agent_calls_a_node_tool_and_a_flow_tool_on_every_provider() {
    for provider in PROVIDERS {
        let dir = tool_dir();
        let peer = peer().await;
        peer.push(
            Reply::tool_calls([
                ("stock", json!({"sku": "A12"})),
                ("quote", json!({"sku": "A12", "qty": 3})),
            ])
            .usage(40, 12),
        );
        peer.push(Reply::text("Yes: 30 are in stock, and 3 cost 7.50.").usage(70, 14));
        let flow = shop_doc(dir.path(), &peer, provider, "      stream: false\n", "");
        let outcome = engine()
            .run(&flow, question())
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(
            out(&outcome, "answer"),
            json!("Yes: 30 are in stock, and 3 cost 7.50.")
        );
        assert_eq!(out(&outcome, "steps"), json!(2));
        assert_eq!(
            out(&outcome, "usage"),
            json!({"input_tokens": 110, "output_tokens": 26, "total_tokens": 136})
        );
        let calls = out(&outcome, "tool_calls");
        let calls = calls.as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["name"], json!("stock"));
        assert_eq!(calls[0]["step"], json!(1));
        assert_eq!(calls[0]["arguments"], json!({"sku": "A12"}));
        assert_eq!(
            calls[0]["result"],
            json!({"in_stock": 30, "warehouse": "main"})
        );
        assert_eq!(calls[1]["name"], json!("quote"));
        assert_eq!(calls[1]["result"], json!({"total_cents": 750}));
        assert!(
            calls
                .iter()
                .all(|c| c["duration_ms"].is_u64() && c.get("error").is_none())
        );
        let transcript = out(&outcome, "transcript");
        let roles: Vec<&str> = transcript
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "tool", "tool", "assistant"]
        );
        assert_eq!(transcript[2]["tool_calls"][0]["id"], calls[0]["id"]);
        assert_eq!(transcript[3]["tool_call_id"], calls[0]["id"]);

        let requests = chat_requests(&peer);
        assert_eq!(requests.len(), 2, "{provider}");
        // The tools, with their parameters: the node's input ports, the
        // flow's inputs.
        let tools = sent_tools(&requests[0], provider);
        let names: Vec<&str> = tools.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stock", "quote", "gate"], "{provider}");
        assert_eq!(
            tools[0].1,
            json!({
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "description": "The item's SKU."},
                    "warehouse": {"type": "string", "description": "The warehouse to look in (`main` by default)."}
                },
                "required": ["sku"],
                "additionalProperties": false
            }),
            "{provider}"
        );
        assert_eq!(
            tools[1].1,
            json!({
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "description": "The item's SKU."},
                    "qty": {"type": "integer", "minimum": 1, "description": "How many units."}
                },
                "required": ["sku", "qty"],
                "additionalProperties": false
            })
        );
        if provider != "ollama" {
            let description = match provider {
                "openai" => &requests[0]["tools"][1]["function"]["description"],
                _ => &requests[0]["tools"][1]["description"],
            };
            assert_eq!(
                description,
                &json!("Quotes the price of some units of an item, in cents.")
            );
        }
        // The results, as the protocol carries them.
        let results = sent_tool_results(&requests[1], provider);
        let contents: Vec<Value> = results
            .iter()
            .map(|(_, content)| serde_json::from_str(content).unwrap())
            .collect();
        assert_eq!(
            contents,
            [
                json!({"in_stock": 30, "warehouse": "main"}),
                json!({"total_cents": 750})
            ],
            "{provider}"
        );
        let keys: Vec<&str> = results.iter().map(|(k, _)| k.as_str()).collect();
        match provider {
            "ollama" => assert_eq!(keys, ["stock", "quote"]),
            _ => assert_eq!(
                keys,
                [
                    calls[0]["id"].as_str().unwrap(),
                    calls[1]["id"].as_str().unwrap()
                ]
            ),
        }
    }
}

/// The calls of one step run at once with `parallel_tool_calls`, one
/// after the other without; the events show it.
#[tokio::test]
async fn the_calls_of_a_step_run_together_or_in_order() {
    for provider in PROVIDERS {
        for parallel in [true, false] {
            let dir = tool_dir();
            let peer = peer().await;
            // Two gates that each wait for two gates: they can only both
            // finish when they run at once. In order, the first waits
            // until the tool timeout stops it.
            peer.push(Reply::tool_calls([
                ("gate", json!({"label": "first"})),
                ("gate", json!({"label": "second"})),
            ]));
            peer.push(Reply::text("Both gates are through."));
            let config = format!(
                "      parallel_tool_calls: {parallel}\n      tool_timeout: 100ms\n      stream: false\n"
            );
            let flow = shop_doc(dir.path(), &peer, provider, &config, "");
            let engine = engine();
            let (result, events) = run_with_events(&engine, &flow, question()).await;
            let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
            let probe = engine.resource::<Probe>().unwrap();
            let order: Vec<String> = progress(&events)
                .iter()
                .filter_map(|d| {
                    let (kind, body) = d.as_object()?.iter().next()?;
                    Some(format!(
                        "{kind} {}",
                        body["arguments"]["label"]
                            .as_str()
                            .unwrap_or(body["result"]["label"].as_str().unwrap_or("error"),)
                    ))
                })
                .collect();
            let calls = out(&outcome, "tool_calls");
            if parallel {
                assert_eq!(probe.active.borrow().1, 2, "{provider}");
                // Both start before either ends; they end in any order.
                assert_eq!(
                    order[..2],
                    ["tool_call first", "tool_call second"],
                    "{provider}"
                );
                let mut ends = order[2..].to_vec();
                ends.sort();
                assert_eq!(
                    ends,
                    ["tool_result first", "tool_result second"],
                    "{provider}"
                );
                assert_eq!(calls[0]["result"], json!({"label": "first"}));
                assert_eq!(calls[1]["result"], json!({"label": "second"}));
            } else {
                assert_eq!(probe.active.borrow().1, 1, "{provider}");
                assert_eq!(
                    order,
                    [
                        "tool_call first",
                        "tool_result error",
                        "tool_call second",
                        "tool_result error"
                    ],
                    "{provider}"
                );
                assert_eq!(probe.stopped.load(Ordering::SeqCst), 2);
                assert_eq!(
                    calls[0]["error"],
                    json!("the tool did not finish within 100ms (tool_timeout) and was stopped")
                );
            }
        }
    }
}

/// A tool that fails, bad arguments (wrong type, missing, unknown, not an
/// object) and an unknown tool all go back to the model as error results;
/// the tool does not run on bad arguments, and the agent goes on.
#[tokio::test]
async fn tool_failures_and_bad_arguments_go_back_to_the_model_on_every_provider() {
    for provider in PROVIDERS {
        let dir = tool_dir();
        let peer = peer().await;
        peer.push(Reply::tool_calls([
            ("stock", json!({"sku": "broken"})),
            ("stock", json!({"sku": 12})),
            ("quote", json!({"sku": "A12", "qty": 0, "discount": 5})),
            ("refund", json!({"order": 1})),
        ]));
        peer.push(Reply::tool_call("stock", json!({"warehouse": "north"})));
        peer.push(Reply::text("Sorry, I could not look that up."));
        let flow = shop_doc(dir.path(), &peer, provider, "      stream: false\n", "");
        let engine = engine();
        let outcome = engine
            .run(&flow, question())
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!(
            out(&outcome, "answer"),
            json!("Sorry, I could not look that up.")
        );
        assert_eq!(out(&outcome, "steps"), json!(3));
        let probe = engine.resource::<Probe>().unwrap();
        assert_eq!(probe.lookups.load(Ordering::SeqCst), 1, "only `broken` ran");
        let errors: Vec<String> = out(&outcome, "tool_calls")
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["error"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(errors.len(), 5);
        assert!(
            errors[0].contains("the stock database refused SKU `broken`"),
            "{}",
            errors[0]
        );
        assert_eq!(
            errors[1],
            "invalid arguments: at `/sku`: 12 is not of type \"string\""
        );
        assert_eq!(
            errors[2],
            "invalid arguments: at `/qty`: 0 is less than the minimum of 1; Additional properties are not allowed ('discount' was unexpected)"
        );
        assert_eq!(
            errors[3],
            "there is no tool `refund`; the tools are `stock`, `quote`, `gate`"
        );
        assert_eq!(
            errors[4],
            "invalid arguments: \"sku\" is a required property"
        );

        let requests = chat_requests(&peer);
        let results = sent_tool_results(&requests[1], provider);
        let told: Vec<Value> = results
            .iter()
            .map(|(_, content)| serde_json::from_str(content).unwrap())
            .collect();
        assert_eq!(told.len(), 4, "{provider}");
        for (told, error) in told.iter().zip(&errors) {
            assert_eq!(told, &json!({ "error": error }), "{provider}");
        }
    }
}

/// A tool that takes longer than `tool_timeout` is stopped (its run is
/// cancelled) and the model is told.
#[tokio::test]
async fn a_slow_tool_is_stopped_at_its_timeout_and_the_model_told() {
    for provider in PROVIDERS {
        let dir = tool_dir();
        let peer = peer().await;
        peer.push(Reply::tool_call("gate", json!({"label": "alone"})));
        peer.push(Reply::text("The gate did not open."));
        let flow = shop_doc(
            dir.path(),
            &peer,
            provider,
            "      tool_timeout: 150ms\n      stream: false\n",
            "",
        );
        let engine = engine();
        let outcome = engine.run(&flow, question()).await.unwrap();
        assert_eq!(out(&outcome, "answer"), json!("The gate did not open."));
        let probe = engine.resource::<Probe>().unwrap();
        assert_eq!(probe.stopped.load(Ordering::SeqCst), 1, "{provider}");
        assert_eq!(probe.active.borrow().0, 0);
        let told = sent_tool_results(&chat_requests(&peer)[1], provider);
        assert_eq!(
            serde_json::from_str::<Value>(&told[0].1).unwrap(),
            json!({"error": "the tool did not finish within 150ms (tool_timeout) and was stopped"})
        );
    }
}

/// A model that keeps calling tools fails the node after `max_steps`,
/// saying how long the transcript got; with `on_max_steps: last_text`
/// its last text is the answer.
#[tokio::test]
async fn max_steps_ends_a_model_that_keeps_calling_tools() {
    for provider in PROVIDERS {
        let dir = tool_dir();
        let peer = peer().await;
        peer.push(Reply::tool_call("stock", json!({"sku": "A1"})).usage(5, 1));
        peer.push(Reply::tool_call("stock", json!({"sku": "A2"})).usage(5, 1));
        let flow = shop_doc(
            dir.path(),
            &peer,
            provider,
            "      max_steps: 2\n      stream: false\n",
            "",
        );
        let engine = engine();
        let error = node_error(engine.run(&flow, question()).await);
        assert!(!error.is_retryable());
        // system, user, then (assistant, tool) and the last assistant.
        assert_eq!(
            error.message(),
            "no final answer within 2 steps (max_steps): the model still asked to call `stock`; the transcript has 5 messages",
            "{provider}"
        );
        assert_eq!(chat_requests(&peer).len(), 2);
        assert_eq!(
            engine
                .resource::<Probe>()
                .unwrap()
                .lookups
                .load(Ordering::SeqCst),
            1,
            "the last step's calls are not run"
        );

        let peer = self::peer().await;
        peer.push(Reply::tool_call("stock", json!({"sku": "A1"})));
        peer.push(
            Reply::tool_call("stock", json!({"sku": "A2"})).with_text("A1 has 20; checking A2."),
        );
        let flow = shop_doc(
            dir.path(),
            &peer,
            provider,
            "      max_steps: 2\n      on_max_steps: last_text\n      stream: false\n",
            "",
        );
        let outcome = engine.run(&flow, question()).await.unwrap();
        assert_eq!(out(&outcome, "answer"), json!("A1 has 20; checking A2."));
        assert_eq!(out(&outcome, "steps"), json!(2));
    }
}

/// The events of a streaming agent on `Execution::events()`, in order:
/// the node starts, each call and its result, the answer's tokens, the
/// node succeeds.
#[tokio::test]
async fn the_agents_events_come_in_order() {
    for provider in PROVIDERS {
        let dir = tool_dir();
        let peer = peer().await;
        peer.push(Reply::tool_call("stock", json!({"sku": "B7"})));
        peer.push(Reply::tool_call("quote", json!({"sku": "B7", "qty": 2})));
        peer.push(Reply::text("B7: 20 in stock, 2 for 5.00."));
        let flow = shop_doc(dir.path(), &peer, provider, "", "");
        let (result, events) = run_with_events(&engine(), &flow, question()).await;
        let outcome = result.unwrap_or_else(|e| panic!("{provider}: {e}"));
        let calls = out(&outcome, "tool_calls");
        let mut seen = Vec::new();
        let mut text = String::new();
        for event in &events {
            match &event.kind {
                EventKind::NodeStarted { node, .. } => seen.push(format!("started {node}")),
                EventKind::NodeSucceeded { node, .. } => seen.push(format!("succeeded {node}")),
                EventKind::NodeProgress { node, data, .. } => {
                    assert_eq!(&**node, "clerk");
                    if let Some(token) = data["token"].as_str() {
                        text.push_str(token);
                        if seen.last().map(String::as_str) != Some("token") {
                            seen.push("token".to_owned());
                        }
                    } else if let Some(call) = data.get("tool_call") {
                        seen.push(format!(
                            "tool_call {} {}",
                            call["name"].as_str().unwrap(),
                            call["step"]
                        ));
                        assert!(call["id"].is_string() && call["arguments"].is_object());
                    } else if let Some(result) = data.get("tool_result") {
                        seen.push(format!("tool_result {}", result["name"].as_str().unwrap()));
                        assert!(result["duration_ms"].is_u64() && result["result"].is_object());
                    }
                }
                EventKind::RunStarted { .. } => seen.push("run started".to_owned()),
                EventKind::RunFinished { .. } => seen.push("run finished".to_owned()),
                _ => {}
            }
        }
        assert_eq!(
            seen,
            [
                "run started",
                "started clerk",
                "tool_call stock 1",
                "tool_result stock",
                "tool_call quote 2",
                "tool_result quote",
                "token",
                "succeeded clerk",
                "run finished"
            ],
            "{provider}"
        );
        assert_eq!(text, "B7: 20 in stock, 2 for 5.00.");
        assert_eq!(calls[1]["result"], json!({"total_cents": 500}));
    }
}

/// Cancelling the execution while a tool runs ends the tool's run too.
#[tokio::test]
async fn cancelling_a_running_agent_ends_its_tool_runs() {
    for provider in PROVIDERS {
        let dir = tool_dir();
        let peer = peer().await;
        peer.push(Reply::tool_calls([
            ("gate", json!({"label": "a"})),
            ("gate", json!({"label": "b"})),
        ]));
        // Gates that wait for three: they hold until stopped.
        let flow = load_in(
            Some(dir.path()),
            &format!(
                r#"
version: 1
name: stuck
nodes:
  - id: clerk
    type: agent
    config:
      model: {}
      prompt: "Open the gates."
      tools:
        - name: gate
          description: Waits at a gate.
          node: {{ type: gate, config: {{ together: 3 }} }}
outputs:
  answer: clerk.answer
"#,
                model_yaml(&peer, provider)
            ),
        );
        let engine = engine();
        let probe = engine.resource::<Probe>().unwrap();
        let mut active = probe.active.subscribe();
        let execution = engine.start(&flow, Inputs::new()).unwrap();
        tokio::time::timeout(
            Duration::from_secs(20),
            active.wait_for(|(now, _)| *now == 2),
        )
        .await
        .expect("both gates start")
        .unwrap();
        execution.cancel();
        let result = execution.wait().await;
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{provider}: {result:?}"
        );
        tokio::time::timeout(
            Duration::from_secs(20),
            active.wait_for(|(now, _)| *now == 0),
        )
        .await
        .expect("the gates' runs end")
        .unwrap();
        assert_eq!(probe.stopped.load(Ordering::SeqCst), 2, "{provider}");
    }
}

/// Bad agent configs are refused when the flow loads, at their place.
#[test]
fn bad_agent_configs_are_refused_at_their_place() {
    let dir = tool_dir();
    let doc = |tools: &str, extra: &str| {
        format!(
            "version: 1\nname: bad\nnodes:\n  - id: clerk\n    type: agent\n    config:\n      model: {{ provider: openai, name: m }}\n      prompt: hi\n{extra}      tools:\n{tools}"
        )
    };
    let cases = [
        (
            doc(
                "        - { name: stock, node: { type: stock_lokup } }\n",
                "",
            ),
            "main.yaml:10:40: nodes[0].config.tools[0].node.type: unknown node type `stock_lokup`; did you mean `stock_lookup`?",
        ),
        (
            doc(
                "        - { name: stock, node: { type: stock_lookup } }\n        - { name: stock, flow: quote.yaml }\n",
                "",
            ),
            "nodes[0].config.tools: tools[1]: the name `stock` is taken by tools[0]; tool names must be unique",
        ),
        (
            doc("        - { name: quote, flow: missing.yaml }\n", ""),
            "nodes[0].config.tools[0].flow: in the sub-flow: ",
        ),
        (
            doc(
                "        - { name: gate, node: { type: gate, config: { together: many } } }\n",
                "",
            ),
            "nodes[0].config.tools[0].node.config.together: \"many\" is not of type \"integer\"",
        ),
        (
            doc(
                "        - { name: stock, node: { type: stock_lookup, config: { x: \"{{ input.y }}\" } } }\n",
                "",
            ),
            "nodes[0].config.tools[0].node.config.x: a nested node's config is fixed when the document loads",
        ),
        (
            doc(
                "        - { name: \"look up\", node: { type: stock_lookup } }\n",
                "",
            ),
            "nodes[0].config.tools[0].name: ",
        ),
        (
            doc("        - { name: stock }\n", ""),
            "nodes[0].config.tools: tools[0] (`stock`): give the `node`",
        ),
        (
            doc(
                "        - { name: stock, node: { type: stock_lookup } }\n",
                "      max_steps: 0\n",
            ),
            "nodes[0].config.max_steps: 0 is less than the minimum of 1",
        ),
        (
            doc(
                "        - { name: stock, node: { type: stock_lookup } }\n",
                "      tool_timeout: later\n",
            ),
            "nodes[0].config.tool_timeout: ",
        ),
    ];
    for (yaml, expected) in cases {
        let err = refused_in(dir.path(), &yaml);
        assert!(
            err.lines().any(|l| l.contains(expected)),
            "missing `{expected}` in:\n{err}\n{yaml}"
        );
    }
    // The library's registry alone does not know the test tools.
    let err = load_error(&doc(
        "        - { name: stock, node: { type: stock_lookup } }\n",
        "",
    ));
    assert!(
        err.contains("nodes[0].config.tools[0].node.type: unknown node type `stock_lookup`"),
        "{err}"
    );
    // A bad `extract` schema.
    let err = load_error(
        "version: 1\nname: bad\nnodes:\n  - id: x\n    type: extract\n    config:\n      model: { provider: openai, name: m }\n      prompt: hi\n      schema: { type: thing }\n",
    );
    assert!(err.contains("nodes[0].config.schema: "), "{err}");
}

/// A relative tool flow is read from the document's directory, and the
/// document written back names it by its full path.
#[tokio::test]
async fn tool_flows_are_read_from_the_documents_directory() {
    let dir = tool_dir();
    let peer = peer().await;
    let flow = shop_doc(dir.path(), &peer, "openai", "", "");
    let config = flow.nodes()[0].node.config_json().unwrap();
    assert_eq!(
        config["tools"][1]["flow"],
        json!(dir.path().join("quote.yaml").display().to_string())
    );
    peer.push(Reply::tool_call("quote", json!({"sku": "Z", "qty": 4})));
    peer.push(Reply::text("10.00"));
    let outcome = engine().run(&flow, question()).await.unwrap();
    assert_eq!(
        out(&outcome, "tool_calls")[0]["result"],
        json!({"total_cents": 1000})
    );
}

/// An engine without a registry cannot make a document's tools; the
/// message says how to fix it.
#[tokio::test]
async fn an_engine_without_a_registry_says_so() {
    let dir = tool_dir();
    let peer = peer().await;
    let flow = shop_doc(dir.path(), &peer, "openai", "", "");
    let engine = Engine::builder()
        .secrets(MapSecrets::new().with("MODEL_KEY", KEY))
        .build();
    let error = node_error(engine.run(&flow, question()).await);
    assert_eq!(
        error.message(),
        "config.tools[0].node: this engine has no node registry to make the tool with; build the engine with `EngineBuilder::registry`"
    );
    assert!(chat_requests(&peer).is_empty());
}

/// `on_error: continue` puts an agent's failure on its `error` port,
/// once, and the flow goes on.
#[tokio::test]
async fn on_error_continue_puts_the_agents_failure_on_its_error_port() {
    let dir = tool_dir();
    let peer = peer().await;
    peer.push(Reply::tool_call("stock", json!({"sku": "A1"})));
    let flow = load_in(
        Some(dir.path()),
        &format!(
            r#"
version: 1
name: tolerant
nodes:
  - id: clerk
    type: agent
    config:
      model: {}
      prompt: "Count A1."
      max_steps: 1
      tools:
        - {{ name: stock, description: Stock., node: {{ type: stock_lookup }} }}
    on_error: continue
outputs:
  failure: clerk.error
"#,
            model_yaml(&peer, "anthropic")
        ),
    );
    let (result, events) = run_with_events(&engine(), &flow, Inputs::new()).await;
    let outcome = result.unwrap();
    let failure = out(&outcome, "failure");
    assert_eq!(failure["node"], json!("clerk"));
    assert_eq!(failure["retryable"], json!(false));
    assert_eq!(
        failure["message"],
        json!(
            "no final answer within 1 step (max_steps): the model still asked to call `stock`; the transcript has 2 messages"
        )
    );
    let failed = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::NodeFailed { .. }))
        .count();
    assert_eq!(failed, 1);
    assert_eq!(chat_requests(&peer).len(), 1);
    assert_eq!(
        peer.requests()[0].protocol,
        Protocol::Anthropic,
        "the request went to the Anthropic endpoint"
    );
}

/// Tools made in Rust: a typed node and a built flow, in a builder flow,
/// without any registry.
#[tokio::test]
async fn tools_made_in_rust_need_no_registry() {
    use ghostflow_nodes::ai::{Agent, AgentTool};
    let peer = peer().await;
    peer.push(Reply::tool_calls([
        ("price", json!({"sku": "K", "qty": 2})),
        ("double", json!({"sku": "KK", "qty": 3})),
    ]));
    peer.push(Reply::text("6.00 and 15.00"));
    let mut inner = Flow::builder("double");
    let sku = inner.input::<String>("sku");
    let qty = inner.input::<u64>("qty");
    let quote = inner.add("quote", PriceQuote { unit_cents: 500 });
    inner.connect(sku, quote.inp().sku);
    inner.connect(qty, quote.inp().qty);
    inner.output("total_cents", quote.out().total_cents);
    let inner = inner.build().unwrap();

    let mut b = Flow::builder("rust-tools");
    let agent = b.add(
        "clerk",
        Agent::new(settings(&peer, "ollama"))
            .prompt("Price K.")
            .tool(AgentTool::node(
                "price",
                "Prices a line.",
                PriceQuote { unit_cents: 300 },
            ))
            .tool(AgentTool::flow("double", "Prices a line at 5.00.", inner))
            .stream(false),
    );
    b.output("answer", agent.out().answer);
    b.output("calls", agent.out().tool_calls);
    let flow = b.build().unwrap();
    let engine = Engine::builder()
        .secrets(MapSecrets::new().with("MODEL_KEY", KEY))
        .build();
    let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(
        outcome.output::<String>("answer").unwrap(),
        "6.00 and 15.00"
    );
    let calls = out(&outcome, "calls");
    assert_eq!(calls[0]["result"], json!({"total_cents": 600}));
    assert_eq!(calls[1]["result"], json!({"total_cents": 1500}));
    // Written as a document, the tools are a node declaration and an
    // inline flow.
    let yaml = Document::from_flow(&flow).unwrap().to_yaml();
    assert!(yaml.contains("type: price_quote"), "{yaml}");
    assert!(yaml.contains("name: double"), "{yaml}");
}

/// An agent takes no slot of the engine-wide concurrency limit, whose
/// slots its tools' runs need: with a limit of one it still finishes, also
/// when its model comes from an expression (the engine learns that it
/// runs flows from its type, not from a config it cannot read yet).
#[tokio::test]
async fn an_agent_never_waits_for_its_own_slot() {
    let dir = tool_dir();
    for model in ["test-model", "\"{{ input.model }}\""] {
        let peer = peer().await;
        peer.push(Reply::tool_calls([("stock", json!({"sku": "A12"}))]));
        peer.push(Reply::text("30 in stock."));
        let flow = load_in(
            Some(dir.path()),
            &format!(
                r#"
version: 1
name: limited
inputs:
  model: {{ schema: {{ type: string }} }}
nodes:
  - id: clerk
    type: agent
    config:
      model: {{ provider: openai, name: {model}, base_url: "{}", api_key_secret: MODEL_KEY }}
      prompt: "How many A12?"
      stream: false
      tools:
        - name: stock
          node: {{ type: stock_lookup }}
outputs:
  answer: clerk.answer
"#,
                peer.openai_url()
            ),
        );
        let engine = Engine::builder()
            .secrets(MapSecrets::new().with("MODEL_KEY", KEY))
            .registry(Arc::new(registry()))
            .resource(Probe::default())
            .concurrency_limit(1)
            .build();
        let inputs = Inputs::new().set("model", "test-model".to_owned());
        let outcome = tokio::time::timeout(Duration::from_secs(20), engine.run(&flow, inputs))
            .await
            .unwrap_or_else(|_| panic!("model {model}: the agent waited for its own slot"))
            .unwrap();
        assert_eq!(out(&outcome, "answer"), json!("30 in stock."), "{model}");
        let asked = chat_requests(&peer);
        assert_eq!(asked[0]["model"], json!("test-model"));
    }
}
