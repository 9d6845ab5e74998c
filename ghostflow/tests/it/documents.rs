//! Flow documents: loading, expressions, writing back, and every kind of bad
//! input, each reported at its place.

use std::sync::Arc;

use ghostflow::document::{Document, Format, LoadOptions, Loader};
use ghostflow::prelude::*;
use ghostflow::{ChannelSink, EventKind, MapSecrets, NodeStatus, Registry, Value};

use crate::common::*;

/// Doubles a number given in its config.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Pair, output = Num, category = "test")]
pub(crate) struct Scale {
    /// The factor.
    pub(crate) factor: u64,
}

impl Run for Scale {
    async fn run(&self, input: Pair, _: &Context) -> Result<Num, NodeError> {
        Ok(Num {
            n: (input.a + input.b.unwrap_or(0)) * self.factor,
        })
    }
}

/// Fails with its config in the message.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Num, category = "test")]
pub(crate) struct Leaky {
    /// A token, which the failure message quotes.
    pub(crate) token: String,
}

impl Run for Leaky {
    async fn run(&self, _: (), ctx: &Context) -> Result<Num, NodeError> {
        ctx.progress(format!("using {}", self.token));
        Err(NodeError::permanent(format!(
            "the server refused token {}",
            self.token
        )))
    }
}

/// A text.
#[derive(Ports, Debug)]
pub(crate) struct Words {
    /// The text.
    pub(crate) text: String,
}

/// Emits its configured text.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Words, category = "test")]
pub(crate) struct Say {
    /// What to say.
    pub(crate) text: String,
}

impl Run for Say {
    async fn run(&self, _: (), _: &Context) -> Result<Words, NodeError> {
        Ok(Words {
            text: self.text.clone(),
        })
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<Const>()
        .register::<Add>()
        .register::<Scale>()
        .register::<Branch>()
        .register::<Merge>()
        .register::<Leaky>()
        .register::<Say>();
    r
}

fn load(yaml: &str) -> Result<ghostflow::document::Loaded, ghostflow::document::LoadError> {
    Loader::new(&registry()).load_bytes(yaml.as_bytes(), Format::Yaml, Some("flow.yaml"))
}

/// The problems of a document that must not load, one per line.
fn problems(yaml: &str) -> String {
    load(yaml).unwrap_err().to_string()
}

const ARITHMETIC: &str = r#"
version: 1
name: arithmetic
inputs:
  x:
    schema: { type: integer }
  factor:
    schema: { type: integer }
    default: 3
nodes:
  - id: one
    type: const
    config: { value: 1 }
  - id: sum
    type: add
  - id: scaled
    type: scale
    config:
      factor: "{{ input.factor }}"
    timeout: 5s
    retry: { max_attempts: 2, backoff: 10ms }
edges:
  - { from: input.x, to: sum.a }
  - { from: one.n, to: sum.b }
  - { from: sum.n, to: scaled.a }
outputs:
  result: scaled.n
  echo: input.x
"#;

#[tokio::test]
async fn a_yaml_document_loads_and_runs_with_json_inputs_and_defaults() {
    let loaded = load(ARITHMETIC).unwrap();
    assert_eq!(loaded.flow.name(), "arithmetic");
    let outcome = Engine::new()
        .run(
            &loaded.flow,
            Inputs::new().set_value("x", Value::json(serde_json::json!(4))),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output::<u64>("result").unwrap(), 15);
    assert_eq!(outcome.output::<u64>("echo").unwrap(), 4);
    let policy = loaded.flow.node("scaled").unwrap().policy();
    assert_eq!(policy.timeout, Some(std::time::Duration::from_secs(5)));
    assert_eq!(policy.retry.as_ref().unwrap().max_attempts, 2);
    // The default can be overridden.
    let outcome = Engine::new()
        .run(
            &loaded.flow,
            Inputs::from_json(
                serde_json::json!({"x": 1, "factor": 10})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output::<u64>("result").unwrap(), 20);
}

#[tokio::test]
async fn the_same_flow_in_json_loads_the_same() {
    let yaml = load(ARITHMETIC).unwrap();
    let json = yaml.document.to_json();
    let loaded = Loader::new(&registry())
        .load_bytes(json.as_bytes(), Format::Json, Some("flow.json"))
        .unwrap();
    assert_eq!(loaded.document, yaml.document);
    let outcome = Engine::new()
        .run(
            &loaded.flow,
            Inputs::new().set_value("x", Value::json(serde_json::json!(4))),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output::<u64>("result").unwrap(), 15);
}

#[tokio::test]
async fn reading_a_node_output_in_an_expression_orders_and_skips_like_an_edge() {
    let yaml = r#"
version: 1
name: refs
inputs:
  v: { schema: { type: integer } }
nodes:
  - id: start
    type: const
    config: { value: "{{ input.v }}" }
  - id: branch
    type: branch
    config: { threshold: 10 }
  - id: big
    type: say
    config: { text: "big {{ nodes.branch.then }} from {{ nodes.start.n }}" }
  - id: small
    type: say
    config: { text: "small {{ nodes.branch.else }}" }
edges:
  - { from: start.n, to: branch.n }
outputs:
  big: big.text
  small: small.text
"#;
    let flow = load(yaml).unwrap().flow;
    let run = |v: u64| {
        let flow = flow.clone();
        async move {
            Engine::new()
                .run(
                    &flow,
                    Inputs::new().set_value("v", Value::json(serde_json::json!(v))),
                )
                .await
                .unwrap()
        }
    };
    let outcome = run(50).await;
    assert_eq!(outcome.output::<String>("big").unwrap(), "big 50 from 50");
    assert_eq!(outcome.node("small").unwrap().status, NodeStatus::Skipped);
    let outcome = run(3).await;
    assert_eq!(outcome.output::<String>("small").unwrap(), "small 3");
    assert_eq!(outcome.node("big").unwrap().status, NodeStatus::Skipped);
}

#[tokio::test]
async fn a_builder_flow_written_as_a_document_loads_and_runs_the_same() {
    let mut b = Flow::builder("round-trip");
    let x = b.input::<u64>("x");
    let one = b.add("one", Const { value: 1 });
    let sum = b.add("sum", Add::default());
    let scaled = b.add("scaled", Scale { factor: 7 });
    b.connect(x, sum.inp().a);
    b.connect(one.out().n, sum.inp().b);
    b.connect(sum.out().n, scaled.inp().a);
    b.output("result", scaled.out().n);
    b.policy(&scaled)
        .on_error(OnError::Skip)
        .timeout(std::time::Duration::from_millis(1500))
        .retry(RetryPolicy::attempts(4).backoff(std::time::Duration::from_millis(20)));
    let flow = b.build().unwrap();
    let direct = Engine::new()
        .run(&flow, Inputs::new().set("x", 5u64))
        .await
        .unwrap();

    let document = Document::from_flow(&flow).unwrap();
    let yaml = document.to_yaml();
    let loaded = Loader::new(&registry())
        .load_bytes(yaml.as_bytes(), Format::Yaml, None)
        .unwrap_or_else(|e| panic!("{e}\n---\n{yaml}"));
    let reloaded = Engine::new()
        .run(
            &loaded.flow,
            Inputs::new().set_value("x", Value::json(serde_json::json!(5))),
        )
        .await
        .unwrap();
    assert_eq!(
        reloaded.output::<u64>("result").unwrap(),
        direct.output::<u64>("result").unwrap()
    );
    assert_eq!(reloaded.output::<u64>("result").unwrap(), 42);
    // The document reads back as itself, and writes the same text again.
    assert_eq!(loaded.document, document);
    assert_eq!(loaded.document.to_yaml(), yaml);
    let policy = loaded.flow.node("scaled").unwrap().policy();
    assert_eq!(policy.on_error, Some(OnError::Skip));
    assert_eq!(policy.timeout, Some(std::time::Duration::from_millis(1500)));
    assert_eq!(
        policy.retry.as_ref().unwrap().initial_backoff,
        std::time::Duration::from_millis(20)
    );
}

#[tokio::test]
async fn secrets_read_by_expressions_never_show_in_errors_or_events() {
    let yaml = r#"
version: 1
name: leaky
nodes:
  - id: call
    type: leaky
    config: { token: "Bearer {{ secrets.API_TOKEN }}" }
"#;
    let loaded = load(yaml).unwrap();
    let (sink, mut events) = ChannelSink::new();
    let engine = Engine::builder()
        .secrets(MapSecrets::new().with("API_TOKEN", "tok-5ecret-value"))
        .event_sink(sink.with_payloads())
        .build();
    let err = engine.run(&loaded.flow, Inputs::new()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the server refused token Bearer ***"),
        "{text}"
    );
    assert!(!text.contains("5ecret"), "{text}");
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(serde_json::to_string(&event).unwrap());
    }
    assert!(
        seen.iter().any(|e| e.contains("using Bearer ***")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|e| !e.contains("5ecret")), "{seen:?}");
    // Without the secret, the run fails naming it.
    let err = Engine::builder()
        .secrets(MapSecrets::new())
        .build()
        .run(&loaded.flow, Inputs::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("secret `API_TOKEN` is not set"),
        "{err}"
    );
    // And a loader that checks secrets refuses the document up front.
    let options = LoadOptions {
        secrets: Some(Arc::new(MapSecrets::new())),
        ..LoadOptions::default()
    };
    let err = Loader::with_options(&registry(), options)
        .load_bytes(yaml.as_bytes(), Format::Yaml, Some("f.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("secret `API_TOKEN` is not set"), "{err}");
    assert!(err.starts_with("f.yaml:7:"), "{err}");
}

#[tokio::test]
async fn events_of_a_loaded_flow_name_its_nodes() {
    let loaded = load(ARITHMETIC).unwrap();
    let execution = Engine::new()
        .start(
            &loaded.flow,
            Inputs::new().set_value("x", Value::json(serde_json::json!(1))),
        )
        .unwrap();
    let events: Vec<_> = futures::StreamExt::collect(execution.events()).await;
    let started: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::NodeStarted { node, .. } => Some(node.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 3);
    assert!(started.contains(&"scaled".to_owned()));
}

// ---- bad input: each a clear message at its place, never a panic ----

#[test]
fn malformed_yaml_and_json_point_at_the_syntax_error() {
    let err = problems("version: 1\nname: x\nnodes:\n  - id: a\n   type: b\n");
    assert!(err.starts_with("flow.yaml:5:"), "{err}");
    let err = Loader::new(&registry())
        .load_bytes(
            b"{\"version\": 1,\n \"name\": \"x\",\n}",
            Format::Json,
            Some("f.json"),
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "f.json:2:13: invalid JSON: trailing comma (JSON allows no `,` before a closing bracket)"
    );
}

#[test]
fn a_wrong_version_is_refused_first() {
    let err = problems("version: 3\nname: x\nnodes: []\n");
    assert_eq!(
        err,
        "flow.yaml:1:10: version: unsupported document version 3; this reader takes version 1"
    );
    let err = problems("name: x\nnodes: []\n");
    assert!(err.contains("missing `version`"), "{err}");
}

#[test]
fn shape_errors_are_all_reported_with_their_places() {
    let err = problems(
        "version: 1\nname: x\nnodes:\n  - id: a\n    type: const\n    tiemout: 5s\n  - type: add\nedgez: []\n",
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 3, "{err}");
    assert!(err.contains("tiemout"), "{err}");
    assert!(err.contains("edgez"), "{err}");
    assert!(err.contains("nodes[1]") && err.contains("id"), "{err}");
}

#[test]
fn every_meaning_problem_is_reported_at_once() {
    let yaml = r#"
version: 1
name: broken
inputs:
  x: { schema: { type: string } }
nodes:
  - id: one
    type: cnst
  - id: two
    type: const@9
  - id: three
    type: scale
    config: { factor: "lots" }
  - id: four
    type: add
  - id: five
    type: say
    config: { text: "{{ input.y }}" }
  - id: six
    type: say
    config: { text: "{{ unknown.thing }}" }
  - id: seven
    type: say
    config: { text: "{{ input.x + }}" }
edges:
  - { from: three.n, to: four.a }
  - { from: three.nn, to: four.b }
  - { from: ghost.n, to: four.a }
  - { from: input.x, to: four.a }
"#;
    let err = problems(yaml);
    let expect = [
        (
            "flow.yaml:8:11: nodes[0].type",
            "unknown node type `cnst`; did you mean `const`?",
        ),
        (
            "flow.yaml:10:11: nodes[1].type",
            "node type `const` has no version `9` (available: 1)",
        ),
        (
            "flow.yaml:13:23: nodes[2].config.factor",
            "is not of type \"integer\"",
        ),
        ("nodes[4].config", "no input `y`"),
        ("nodes[5].config.text", "unknown variable `unknown`"),
        ("nodes[6].config.text", "syntax error"),
        ("edges[1].from", "has no output port `nn`"),
        ("edges[2].from", "there is no node `ghost`"),
        (
            "edges[3]",
            "type-incompatible edge: `input.x` produces string but the input takes integer",
        ),
    ];
    for (place, message) in expect {
        assert!(
            err.lines()
                .any(|l| l.contains(place) && l.contains(message)),
            "missing `{place}` … `{message}` in:\n{err}"
        );
    }
}

#[test]
fn graph_problems_point_at_nodes_and_edges() {
    let yaml = r#"
version: 1
name: graph
nodes:
  - id: a
    type: add
  - id: b
    type: add
  - id: c
    type: add
  - id: one
    type: const
    config: { value: 1 }
edges:
  - { from: a.n, to: b.a }
  - { from: b.n, to: a.a }
  - { from: one.n, to: c.b }
  - { from: one.n, to: c.b }
"#;
    let err = problems(yaml);
    assert!(err.contains("cycle: a -> b -> a"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("edges[3]") && l.contains("connected 2 times")),
        "{err}"
    );
    assert!(
        err.contains("node `c`: required input `a` is not connected"),
        "{err}"
    );
}

#[test]
fn expressions_that_read_themselves_or_make_a_cycle_are_refused() {
    let yaml = r#"
version: 1
name: selfish
nodes:
  - id: a
    type: say
    config: { text: "{{ nodes.a.text }}" }
  - id: b
    type: say
    config: { text: "{{ nodes.c.text }}" }
  - id: c
    type: say
    config: { text: "{{ nodes.b.text }}" }
"#;
    let err = problems(yaml);
    assert!(err.contains("its own node"), "{err}");
    assert!(
        err.contains("cycle: b -> c -> b") || err.contains("cycle: c -> b -> c"),
        "{err}"
    );
}

#[test]
fn oversized_deep_and_non_utf8_documents_are_refused() {
    let big = format!(
        "version: 1\nname: x\nnodes: []\n# {}\n",
        "x".repeat(50 * 1024 * 1024)
    );
    let err = problems(&big);
    assert!(err.contains("limit"), "{err}");
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let json = format!("{{\"version\": 1, \"name\": \"x\", \"nodes\": [], \"editor\": {deep}}}");
    let err = Loader::new(&registry())
        .load_bytes(json.as_bytes(), Format::Json, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nest"), "{err}");
    let err = Loader::new(&registry())
        .load_bytes(
            b"version: 1\nname: \xff\xfe\nnodes: []\n",
            Format::Yaml,
            Some("f.yaml"),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("UTF-8"), "{err}");
}

#[tokio::test]
async fn inputs_are_checked_against_their_schemas_and_null_defaults_count() {
    let yaml = r#"
version: 1
name: checked
inputs:
  n: { schema: { type: integer, minimum: 1 } }
  label:
    schema: { type: [string, "null"] }
    default: null
nodes:
  - id: out
    type: say
    config: { text: "{{ input.n }} {{ input.label }}" }
outputs:
  text: out.text
"#;
    let flow = load(yaml).unwrap().flow;
    let err = Engine::new()
        .run(
            &flow,
            Inputs::new().set_value("n", Value::json(serde_json::json!(0))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ghostflow::Error::InputInvalid { name, .. } if name == "n"),
        "{err}"
    );
    assert!(err.to_string().contains("less than the minimum"), "{err}");
    let outcome = Engine::new()
        .run(
            &flow,
            Inputs::new().set_value("n", Value::json(serde_json::json!(2))),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output::<String>("text").unwrap(), "2 None");
}

#[test]
fn rate_limits_and_breakers_load_and_write_back() {
    let yaml = r#"
version: 1
name: guarded
nodes:
  - id: a
    type: const
    config: { value: 1 }
    rate_limit: 20/min
    circuit_breaker: { failures: 3, cooldown: 30s, key: api }
  - id: b
    type: const
    config: { value: 2 }
    rate_limit: { limit: 5, per: 1s, key: api }
"#;
    let loaded = load(yaml).unwrap();
    let a = loaded.flow.node("a").unwrap().policy();
    let limit = a.rate_limit.as_ref().unwrap();
    assert_eq!(
        (limit.limit, limit.per),
        (20, std::time::Duration::from_secs(60))
    );
    let breaker = a.circuit_breaker.as_ref().unwrap();
    assert_eq!(breaker.failures, 3);
    assert_eq!(breaker.key.as_deref(), Some("api"));
    let b = loaded.flow.node("b").unwrap().policy();
    assert_eq!(b.rate_limit.as_ref().unwrap().key.as_deref(), Some("api"));
    // Written back and loaded again, the policies are the same.
    let again = Document::from_flow(&loaded.flow).unwrap().to_yaml();
    let reloaded = load(&again).unwrap_or_else(|e| panic!("{e}\n{again}"));
    assert_eq!(reloaded.flow.node("a").unwrap().policy(), a);
    let err = problems(
        "version: 1\nname: x\nnodes:\n  - id: a\n    type: const\n    config: { value: 1 }\n    rate_limit: lots\n",
    );
    assert!(
        err.contains("nodes[0].rate_limit: `lots` is not a rate"),
        "{err}"
    );
}

/// A node declaration inside a config, as an agent's tool holds one.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Declared {
    /// The node type.
    #[serde(rename = "type")]
    pub(crate) node_type: String,
    /// Its config.
    #[serde(default)]
    pub(crate) config: serde_json::Value,
}

/// One entry of a [`Toolbox`]: a node or a sub-flow.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// Its name.
    pub(crate) name: String,
    /// A node to make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-node" = true))]
    pub(crate) node: Option<Declared>,
    /// A flow document's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-flow" = true))]
    pub(crate) flow: Option<String>,
}

/// Holds node declarations and sub-flows deep in its config; says how many.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Words, category = "test")]
pub(crate) struct Toolbox {
    /// The entries.
    pub(crate) entries: Vec<Entry>,
    /// A label, which may be an expression.
    #[serde(default)]
    pub(crate) label: String,
}

impl Run for Toolbox {
    async fn run(&self, _: (), _: &Context) -> Result<Words, NodeError> {
        Ok(Words {
            text: format!("{}: {} entries", self.label, self.entries.len()),
        })
    }
}

/// Marks below the top level of a config (a list of `{ node }` and
/// `{ flow }` entries) are checked when the document loads, at their
/// place; relative flow paths are read from the document's directory; a
/// field holding them is left alone by expressions, the others are not.
#[tokio::test]
async fn node_declarations_and_sub_flows_nested_in_configs_are_checked_at_load() {
    let dir = std::env::temp_dir().join(format!("ghostflow-nested-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("part.yaml"),
        "version: 1\nname: part\nnodes:\n  - id: say\n    type: say\n    config: { text: hi }\noutputs:\n  text: say.text\n",
    )
    .unwrap();
    let mut registry = registry();
    registry.register::<Toolbox>();
    let loader = Loader::new(&registry);
    let write = |name: &str, body: &str| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let good = write(
        "good.yaml",
        r#"
version: 1
name: nested
inputs:
  who: { schema: { type: string } }
nodes:
  - id: box
    type: toolbox
    config:
      label: "{{ input.who }}"
      entries:
        - { name: a, node: { type: say, config: { text: "{{ input.who | upper }}" } } }
        - { name: b, flow: part.yaml }
outputs:
  text: box.text
"#,
    );
    let err = loader.load_path(&good).unwrap_err().to_string();
    assert!(
        err.contains("nodes[0].config.entries[0].node.config.text: a nested node's config is fixed when the document loads; it cannot hold expressions"),
        "{err}"
    );
    let good = write(
        "good.yaml",
        &std::fs::read_to_string(&good)
            .unwrap()
            .replace("\"{{ input.who | upper }}\"", "hello"),
    );
    let loaded = loader.load_path(&good).unwrap_or_else(|e| panic!("{e}"));
    let config = loaded.flow.nodes()[0].node.config_json().unwrap();
    assert_eq!(
        config["entries"][1]["flow"],
        serde_json::json!(dir.join("part.yaml").display().to_string())
    );
    let outcome = Engine::new()
        .run(&loaded.flow, Inputs::new().set("who", "Ada".to_owned()))
        .await
        .unwrap();
    assert_eq!(outcome.output::<String>("text").unwrap(), "Ada: 2 entries");

    let bad = write(
        "bad.yaml",
        r#"
version: 1
name: nested
nodes:
  - id: box
    type: toolbox
    config:
      entries:
        - { name: a, node: { type: sya } }
        - { name: b, node: { type: scale, config: { factor: lots } } }
        - { name: c, flow: missing.yaml }
        - { name: d, node: { type: toolbox, config: { entries: [{ name: e, node: { type: nope } }] } } }
"#,
    );
    let err = loader.load_path(&bad).unwrap_err().to_string();
    for (place, message) in [
        (
            "bad.yaml:9:36: nodes[0].config.entries[0].node.type",
            "unknown node type `sya`; did you mean `say`?",
        ),
        (
            "nodes[0].config.entries[1].node.config.factor",
            "is not of type \"integer\"",
        ),
        ("nodes[0].config.entries[2].flow", "in the sub-flow: "),
        (
            "nodes[0].config.entries[3].node.config.entries[0].node.type",
            "unknown node type `nope`",
        ),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(place) && l.contains(message)),
            "missing `{place}` … `{message}` in:\n{err}"
        );
    }
    assert!(err.contains("missing.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
