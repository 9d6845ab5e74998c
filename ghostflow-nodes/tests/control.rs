//! Control-flow nodes as users write them: documents loaded with the node
//! library and run by the engine.
#![cfg(all(feature = "control", feature = "data", feature = "text"))]

use ghostflow::document::{Format, Loaded, Loader};
use ghostflow::{Engine, Inputs, NodeStatus, Outcome};
use serde_json::json;

fn load(yaml: &str) -> Result<Loaded, String> {
    let registry = ghostflow_nodes::registry();
    Loader::new(&registry)
        .load_bytes(yaml.as_bytes(), Format::Yaml, Some("flow.yaml"))
        .map_err(|e| e.to_string())
}

async fn run(yaml: &str, inputs: serde_json::Value) -> Outcome {
    let loaded = load(yaml).unwrap_or_else(|e| panic!("does not load:\n{e}"));
    let inputs = Inputs::from_json(inputs.as_object().cloned().unwrap_or_default());
    Engine::new()
        .run(&loaded.flow, inputs)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

const TRIAGE: &str = r#"
version: 1
name: triage
inputs:
  ticket: { schema: { type: object } }
nodes:
  - id: route
    type: switch
    config:
      value: "{{ input.ticket.priority }}"
      cases:
        - { name: urgent, equals: P1 }
        - { name: soon, equals: P2 }
        - { name: big, when: "{{ input.ticket.seats > 500 }}" }
  - id: page
    type: template
    config: { template: "page on-call: {{ data.title }}" }
  - id: queue
    type: template
    config: { template: "queue: {{ data.title }}" }
  - id: account
    type: template
    config: { template: "account manager: {{ data.title }}" }
  - id: backlog
    type: template
    config: { template: "backlog: {{ data.title }}" }
edges:
  - { from: input.ticket, to: route.value }
  - { from: route.urgent, to: page.data }
  - { from: route.soon, to: queue.data }
  - { from: route.big, to: account.data }
  - { from: route.default, to: backlog.data }
outputs:
  page: page.text
  queue: queue.text
  account: account.text
  backlog: backlog.text
"#;

fn taken(outcome: &Outcome) -> Vec<&'static str> {
    ["page", "queue", "account", "backlog"]
        .into_iter()
        .filter(|id| outcome.node(id).unwrap().status == NodeStatus::Succeeded)
        .collect()
}

#[tokio::test]
async fn switch_takes_the_first_matching_case_or_default() {
    let outcome = run(
        TRIAGE,
        json!({"ticket": {"priority": "P1", "seats": 900, "title": "down"}}),
    )
    .await;
    assert_eq!(taken(&outcome), ["page"]);
    assert_eq!(
        outcome.output::<String>("page").unwrap(),
        "page on-call: down"
    );

    let outcome = run(
        TRIAGE,
        json!({"ticket": {"priority": "P3", "seats": 900, "title": "slow"}}),
    )
    .await;
    assert_eq!(taken(&outcome), ["account"]);

    let outcome = run(
        TRIAGE,
        json!({"ticket": {"priority": "P4", "seats": 3, "title": "typo"}}),
    )
    .await;
    assert_eq!(taken(&outcome), ["backlog"]);
    assert_eq!(
        outcome.output::<String>("backlog").unwrap(),
        "backlog: typo"
    );
    assert_eq!(outcome.node("page").unwrap().status, NodeStatus::Skipped);
}

#[tokio::test]
async fn switch_mode_all_takes_every_matching_case() {
    let yaml = TRIAGE.replace(
        "      value: \"{{ input.ticket.priority }}\"",
        "      mode: all\n      value: \"{{ input.ticket.priority }}\"",
    );
    let outcome = run(
        &yaml,
        json!({"ticket": {"priority": "P2", "seats": 900, "title": "x"}}),
    )
    .await;
    assert_eq!(taken(&outcome), ["queue", "account"]);
}

#[test]
fn switch_config_mistakes_are_located() {
    let cases = [
        (
            "cases: []",
            "nodes[0].config.cases: a switch needs at least one case",
        ),
        (
            "cases: [{ name: a, equals: 1 }, { name: a, equals: 2 }]",
            "nodes[0].config.cases[1].name: case `a` appears twice",
        ),
        (
            "cases: [{ name: default, equals: 1 }]",
            "nodes[0].config.cases[0].name: `default` is the name of a built-in output",
        ),
        (
            "cases: [{ name: \"{{ 1 + 1 }}\", equals: 1 }]",
            "nodes[0].config.cases[0].name: `{{ 1 + 1 }}`: a case name is an output port and cannot be an expression",
        ),
        (
            "cases: [{ name: a }]",
            "nodes[0].config.cases[0]: case `a` needs `equals` or `when`",
        ),
        (
            "cases: [{ name: a, when: 3 }]",
            "nodes[0].config.cases[0].when:",
        ),
        ("value: 1", "nodes[0].config: missing field `cases`"),
    ];
    for (config, expected) in cases {
        let yaml = format!(
            "version: 1\nname: s\nnodes:\n  - id: s\n    type: switch\n    config:\n      value: 1\n      {config}\n"
        )
        .replace("      value: 1\n      value: 1\n", "      value: 1\n");
        let err = load(&yaml).expect_err(config);
        assert!(err.contains(expected), "{config}: {err}");
    }
}

#[test]
fn an_edge_from_an_unknown_case_is_refused_with_the_cases_listed() {
    let yaml = TRIAGE.replace(
        "  - id: backlog",
        "  - id: seen\n    type: set\n    config: { fields: { t: \"{{ nodes.route.son.title }}\" } }\n  - id: backlog",
    );
    let err = load(&yaml).unwrap_err();
    assert!(
        err.contains("node `route` has no output `son`") && err.contains("did you mean `soon`"),
        "{err}"
    );
    let yaml = TRIAGE.replace("outputs:\n", "outputs:\n  late: route.later\n");
    let err = load(&yaml).unwrap_err();
    assert!(
        err.contains("outputs.late") && err.contains("`later`") && err.contains("`urgent`"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Sub-flows and for-each.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn engine() -> Engine {
    Engine::builder()
        .registry(Arc::new(ghostflow_nodes::registry()))
        .build()
}

fn load_file(path: &Path) -> Result<Loaded, String> {
    let registry = ghostflow_nodes::registry();
    Loader::new(&registry)
        .load_path(path)
        .map_err(|e| e.to_string())
}

/// A sub-flow that waits `ms` and doubles its item, failing on multiples
/// of 3 when `fail` is set.
fn double_flow(ms: u64, fail: bool) -> String {
    let nodes = if fail {
        "  - id: check\n    type: if\n    config: { condition: \"{{ input.item % 3 == 0 }}\" }\n  - id: stop\n    type: fail\n    config: { message: \"multiple of three\" }\n"
    } else {
        ""
    };
    let edges = if fail {
        "  - { from: input.item, to: check.value }\n  - { from: check.then, to: stop.value }\n  - { from: check.else, to: wait.value }\n"
    } else {
        "  - { from: input.item, to: wait.value }\n"
    };
    format!(
        "version: 1\nname: double\ninputs:\n  item: {{ schema: {{ type: integer }} }}\n  factor: {{ schema: {{ type: integer }}, default: 2 }}\nnodes:\n{nodes}  - id: wait\n    type: delay\n    config: {{ ms: {ms} }}\n  - id: twice\n    type: set\n    config:\n      fields:\n        n: \"{{{{ nodes.wait.value * input.factor }}}}\"\nedges:\n{edges}outputs:\n  doubled: twice.value\n"
    )
}

fn for_each_doc(flow_field: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: batch\ninputs:\n  numbers: {{ schema: {{ type: array }} }}\nnodes:\n  - id: each\n    type: for_each\n    config:\n      flow: {flow_field}\n{extra}edges:\n  - {{ from: input.numbers, to: each.items }}\noutputs:\n  results: each.results\n  errors: each.errors\n"
    )
}

fn dir_with(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

async fn run_loaded(
    loaded: &Loaded,
    inputs: serde_json::Value,
) -> Result<Outcome, ghostflow::Error> {
    engine()
        .run(
            &loaded.flow,
            Inputs::from_json(inputs.as_object().cloned().unwrap_or_default()),
        )
        .await
}

#[tokio::test(start_paused = true)]
async fn for_each_keeps_item_order_and_its_concurrency_limit() {
    let dir = dir_with(&[
        ("double.yaml", double_flow(100, false)),
        (
            "batch.yaml",
            for_each_doc("double.yaml", "      concurrency: 3\n"),
        ),
    ]);
    let loaded = load_file(&dir.path().join("batch.yaml")).unwrap();
    let begin = tokio::time::Instant::now();
    let outcome = run_loaded(&loaded, json!({"numbers": [5, 1, 4, 2, 3, 9, 8, 7, 6, 0]}))
        .await
        .unwrap();
    // Ten 100 ms runs, three at a time: four rounds on tokio's paused clock.
    assert_eq!(begin.elapsed(), Duration::from_millis(400));
    let results: Vec<i64> = outcome
        .output::<Vec<serde_json::Value>>("results")
        .unwrap()
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert_eq!(results, [10, 2, 8, 4, 6, 18, 16, 14, 12, 0]);
    assert_eq!(
        outcome.output::<serde_json::Value>("errors").unwrap(),
        json!([])
    );
}

#[tokio::test(start_paused = true)]
async fn for_each_item_errors_fail_skip_or_collect() {
    let dir = dir_with(&[("double.yaml", double_flow(10, true))]);
    let numbers = json!({"numbers": [1, 3, 4, 6, 7]});
    let batch = |extra: &str| {
        let path = dir.path().join("batch.yaml");
        std::fs::write(&path, for_each_doc("double.yaml", extra)).unwrap();
        load_file(&path).unwrap()
    };

    let err = run_loaded(&batch(""), numbers.clone()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "node `each` failed after 1 attempt(s): item 1 of 5: sub-flow `{}`: node `stop` failed after 1 attempt(s): multiple of three (value: 3)",
            dir.path().join("double.yaml").display()
        )
    );

    let outcome = run_loaded(&batch("      on_item_error: skip\n"), numbers.clone())
        .await
        .unwrap();
    assert_eq!(
        outcome.output::<serde_json::Value>("results").unwrap(),
        json!([{"n": 2}, {"n": 8}, {"n": 14}])
    );
    assert_eq!(
        outcome.output::<serde_json::Value>("errors").unwrap(),
        json!([])
    );

    let outcome = run_loaded(&batch("      on_item_error: collect\n"), numbers)
        .await
        .unwrap();
    assert_eq!(
        outcome.output::<serde_json::Value>("results").unwrap(),
        json!([{"n": 2}, {"n": 8}, {"n": 14}])
    );
    let errors = outcome.output::<Vec<serde_json::Value>>("errors").unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["item"], 3);
    assert_eq!(errors[1]["index"], 3);
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .ends_with("node `stop` failed after 1 attempt(s): multiple of three (value: 6)"),
        "{errors:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn for_each_with_an_inline_flow_an_index_and_shared_inputs() {
    let yaml = r##"
version: 1
name: labels
inputs:
  names: { schema: { type: array } }
  prefix: { schema: { type: string }, default: "#" }
nodes:
  - id: each
    type: for_each
    config:
      index_input: position
      output: label
      with:
        prefix: "{{ input.prefix }}"
      flow:
        version: 1
        name: label
        inputs:
          item: { schema: { type: string } }
          position: { schema: { type: integer } }
          prefix: { schema: { type: string } }
        nodes:
          - id: make
            type: set
            config:
              fields:
                text: "{{ input.prefix }}{{ input.position + 1 }} {{ input.item | upper }}"
        outputs:
          label: make.value
edges:
  - { from: input.names, to: each.items }
outputs:
  labels: each.results
"##;
    let loaded = load(yaml).unwrap();
    let outcome = run_loaded(&loaded, json!({"names": ["ada", "grace"], "prefix": "No."}))
        .await
        .unwrap();
    assert_eq!(
        outcome.output::<serde_json::Value>("labels").unwrap(),
        json!([{"text": "No.1 ADA"}, {"text": "No.2 GRACE"}])
    );
}

#[tokio::test(start_paused = true)]
async fn subflow_runs_a_document_with_inputs_and_returns_its_outputs() {
    let dir = dir_with(&[
        ("double.yaml", double_flow(5, false)),
        (
            "main.yaml",
            "version: 1\nname: main\ninputs:\n  n: { schema: { type: integer } }\nnodes:\n  - id: sub\n    type: subflow\n    config:\n      flow: double.yaml\n      inputs:\n        item: \"{{ input.n + 1 }}\"\n        factor: 10\noutputs:\n  out: sub.outputs\n".to_owned(),
        ),
    ]);
    let loaded = load_file(&dir.path().join("main.yaml")).unwrap();
    let outcome = run_loaded(&loaded, json!({"n": 4})).await.unwrap();
    assert_eq!(
        outcome.output::<serde_json::Value>("out").unwrap(),
        json!({"doubled": {"n": 50}})
    );
}

#[test]
fn sub_flow_problems_are_found_when_the_parent_loads() {
    // A missing file.
    let dir = dir_with(&[("batch.yaml", for_each_doc("missing.yaml", ""))]);
    let err = load_file(&dir.path().join("batch.yaml")).unwrap_err();
    assert!(
        err.contains("nodes[0].config.flow: in the sub-flow:")
            && err.contains("cannot read the file"),
        "{err}"
    );
    // A sub-flow with its own mistake, located in its file.
    let broken = double_flow(5, false).replace("type: delay", "type: dealy");
    let dir = dir_with(&[
        ("double.yaml", broken),
        ("batch.yaml", for_each_doc("double.yaml", "")),
    ]);
    let err = load_file(&dir.path().join("batch.yaml")).unwrap_err();
    assert!(
        err.contains("in the sub-flow:")
            && err.contains("double.yaml:")
            && err.contains("did you mean `delay`"),
        "{err}"
    );
    // Flows that include each other.
    let dir = dir_with(&[
        (
            "a.yaml",
            for_each_doc("b.yaml", "").replace("name: batch", "name: a"),
        ),
        (
            "b.yaml",
            for_each_doc("a.yaml", "").replace("name: batch", "name: b"),
        ),
    ]);
    let err = load_file(&dir.path().join("a.yaml")).unwrap_err();
    assert!(err.contains("the sub-flow includes itself"), "{err}");
    // The flow cannot be an expression.
    let err = load(&for_each_doc("\"{{ input.which }}.yaml\"", "")).unwrap_err();
    assert!(
        err.contains("nodes[0].config.flow: a sub-flow is fixed when the document loads"),
        "{err}"
    );
    // Bad config values name their field.
    let dir = dir_with(&[
        ("double.yaml", double_flow(5, false)),
        (
            "batch.yaml",
            for_each_doc(
                "double.yaml",
                "      concurrency: 0\n      on_item_error: retry\n",
            ),
        ),
    ]);
    let err = load_file(&dir.path().join("batch.yaml")).unwrap_err();
    assert!(err.contains("nodes[0].config.concurrency"), "{err}");
    assert!(err.contains("nodes[0].config.on_item_error"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn for_each_run_time_mistakes_name_the_field() {
    let dir = dir_with(&[
        ("double.yaml", double_flow(5, false)),
        (
            "batch.yaml",
            for_each_doc("double.yaml", "      item_input: number\n"),
        ),
    ]);
    let loaded = load_file(&dir.path().join("batch.yaml")).unwrap();
    let err = run_loaded(&loaded, json!({"numbers": [1]}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("has no input `number` (inputs: `item`, `factor`)")
            && err.to_string().contains("config.item_input: the sub-flow"),
        "{err}"
    );
    // Without a schema on the flow input, the node checks what it gets.
    std::fs::write(
        dir.path().join("batch.yaml"),
        for_each_doc("double.yaml", "").replace("{ schema: { type: array } }", "{}"),
    )
    .unwrap();
    let loaded = load_file(&dir.path().join("batch.yaml")).unwrap();
    let err = run_loaded(&loaded, json!({"numbers": {"a": 1}}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("input `items` must be a list, got an object"),
        "{err}"
    );
    // The same document on an engine without a registry.
    let err = Engine::new()
        .run(
            &loaded.flow,
            Inputs::from_json(json!({"numbers": [1]}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("build the engine with `EngineBuilder::registry`"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_engine_wide_limit_of_one_does_not_deadlock_for_each() {
    let dir = dir_with(&[
        ("double.yaml", double_flow(100, false)),
        (
            "batch.yaml",
            for_each_doc("double.yaml", "      concurrency: 4\n"),
        ),
    ]);
    let loaded = load_file(&dir.path().join("batch.yaml")).unwrap();
    let engine = Engine::builder()
        .registry(Arc::new(ghostflow_nodes::registry()))
        .concurrency_limit(1)
        .build();
    let begin = tokio::time::Instant::now();
    let outcome = engine
        .run(
            &loaded.flow,
            Inputs::from_json(
                json!({"numbers": [1, 2, 3, 4]})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome
            .output::<Vec<serde_json::Value>>("results")
            .unwrap()
            .len(),
        4
    );
    // The four sub-flows' nodes share the single slot: one delay at a time.
    assert_eq!(begin.elapsed(), Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_cancels_its_sub_flows() {
    let dir = dir_with(&[
        ("double.yaml", double_flow(60_000, false)),
        ("batch.yaml", for_each_doc("double.yaml", "")),
    ]);
    let loaded = load_file(&dir.path().join("batch.yaml")).unwrap();
    let engine = engine();
    let begin = tokio::time::Instant::now();
    let execution = engine
        .start(
            &loaded.flow,
            Inputs::from_json(json!({"numbers": [1, 2]}).as_object().cloned().unwrap()),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    execution.cancel();
    let err = execution.wait().await.unwrap_err();
    assert!(matches!(err, ghostflow::Error::Cancelled), "{err}");
    assert!(begin.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn for_each_over_a_flow_built_in_rust() {
    use ghostflow_nodes::control::{ForEach, ItemErrorPolicy, Passthrough};
    let mut b = ghostflow::Flow::builder("echo");
    let item = b.input::<serde_json::Value>("item");
    let pass = b.add("pass", Passthrough {});
    b.connect(item, pass.inp().value);
    b.output("value", pass.out().value);
    let echo = b.build().unwrap();

    let mut b = ghostflow::Flow::builder("outer");
    let items = b.input::<serde_json::Value>("items");
    let each = b.add(
        "each",
        ForEach::new(echo)
            .concurrency(2)
            .on_item_error(ItemErrorPolicy::Collect),
    );
    b.connect(items, each.inp().items);
    b.output("results", each.out().results);
    let outer = b.build().unwrap();
    // No registry needed: the flow is already built.
    let outcome = Engine::new()
        .run(
            &outer,
            Inputs::new().set("items", json!(["a", {"b": 1}, 3])),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.output::<serde_json::Value>("results").unwrap(),
        json!(["a", {"b": 1}, 3])
    );
    // Written out, the sub-flow is inline in the document.
    let document = ghostflow::document::Document::from_flow(&outer).unwrap();
    let config = &document.nodes[0].config;
    assert_eq!(config["flow"]["name"], "echo");
    assert_eq!(config["concurrency"], 2);
}
