//! Control-flow nodes as users write them: documents loaded with the node
//! library and run by the engine.

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
