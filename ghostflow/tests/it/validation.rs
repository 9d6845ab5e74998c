//! Invalid flows and invalid inputs: every problem, clearly named.

use ghostflow::prelude::*;
use ghostflow::{Endpoint, Problem};

use crate::common::*;

fn problems(result: Result<Flow, ghostflow::Error>) -> Vec<Problem> {
    match result {
        Err(ghostflow::Error::Invalid { problems, .. }) => problems,
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(_) => panic!("expected an invalid flow"),
    }
}

#[test]
fn a_cycle_is_reported_with_its_nodes() {
    let mut b = Flow::builder("cyclic");
    let c = b.add("c", Const { value: 1 });
    let x = b.add("x", Add::default());
    let y = b.add("y", Add::default());
    let z = b.add("z", Add::default());
    let after = b.add("after", Add::default());
    b.connect(c.out().n, x.inp().a);
    b.connect(x.out().n, y.inp().a);
    b.connect(y.out().n, z.inp().a);
    b.connect(z.out().n, x.inp().b);
    b.connect(z.out().n, after.inp().a);
    let err = b.build().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cycle: x -> y -> z -> x"), "{text}");
    assert!(
        !text.contains("after"),
        "a node after the cycle is not on it: {text}"
    );
}

#[test]
fn unconnected_required_inputs_name_node_and_port() {
    let mut b = Flow::builder("open");
    let x = b.add("x", Add::default());
    let _ = x;
    let found = problems(b.build());
    assert_eq!(
        found,
        [Problem::UnconnectedInput {
            node: "x".into(),
            port: "a".into()
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "node `x`: required input `a` is not connected"
    );
}

#[test]
fn duplicate_and_invalid_ids_are_reported() {
    let mut b = Flow::builder("dupes");
    b.add("same", Const { value: 1 });
    b.add("same", Const { value: 2 });
    b.add("same", Const { value: 3 });
    b.add("bad id!", Const { value: 4 });
    b.add("", Const { value: 5 });
    let found = problems(b.build());
    assert_eq!(
        found,
        [
            Problem::DuplicateId { id: "same".into() },
            Problem::InvalidId {
                id: "bad id!".into()
            },
            Problem::InvalidId { id: "".into() },
        ]
    );
}

#[test]
fn an_input_connected_twice_lists_its_sources() {
    let mut b = Flow::builder("twice");
    let c1 = b.add("c1", Const { value: 1 });
    let c2 = b.add("c2", Const { value: 2 });
    let x = b.add("x", Add::default());
    b.connect(c1.out().n, x.inp().a);
    b.connect(c2.out().n, x.inp().a);
    let found = problems(b.build());
    assert_eq!(
        found,
        [Problem::InputConnectedTwice {
            node: "x".into(),
            port: "a".into(),
            sources: vec!["c1.n".into(), "c2.n".into()],
        }]
    );
    assert!(
        found[0]
            .to_string()
            .contains("connected 2 times (from c1.n, c2.n)")
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut b = Flow::builder("many");
    let c = b.add("c", Const { value: 1 });
    let x = b.add("x", Add::default());
    let y = b.add("x", Add::default());
    let loner = b.add("loner", Add::default());
    let _ = loner;
    b.connect(c.out().n, x.inp().a);
    b.connect(c.out().n, x.inp().a);
    b.connect(x.out().n, y.inp().a);
    b.connect(y.out().n, x.inp().b);
    let input = b.input::<u64>("n");
    let _ = b.input::<u64>("n");
    b.connect(input, y.inp().b);
    b.connect(input, y.inp().b);
    let err = b.build().unwrap_err();
    let found = match &err {
        ghostflow::Error::Invalid { problems, .. } => problems.clone(),
        other => panic!("{other:?}"),
    };
    assert!(found.contains(&Problem::DuplicateId { id: "x".into() }));
    assert!(found.contains(&Problem::DuplicateFlowPort {
        direction: "input".into(),
        name: "n".into()
    }));
    assert!(found.contains(&Problem::UnconnectedInput {
        node: "loner".into(),
        port: "a".into()
    }));
    assert!(
        found
            .iter()
            .any(|p| matches!(p, Problem::InputConnectedTwice { port, .. } if port == "a"))
    );
    assert!(found.iter().any(|p| matches!(p, Problem::InputConnectedTwice { port, sources, .. } if port == "b" && sources[0] == "input.n")));
    assert!(found.iter().any(|p| matches!(p, Problem::Cycle { .. })));
    assert!(err.to_string().starts_with("invalid flow `many`:"), "{err}");
}

#[test]
fn ports_of_another_builder_are_rejected() {
    let mut other = Flow::builder("other");
    let foreign = other.add("c", Const { value: 1 });
    let mut b = Flow::builder("mine");
    let x = b.add("x", Add::default());
    b.connect(foreign.out().n, x.inp().a);
    let found = problems(b.build());
    assert!(found.contains(&Problem::ForeignPort {
        context: "connect".into()
    }));
}

#[test]
fn out_of_range_erased_edges_are_reported() {
    let mut b = Flow::builder("erased");
    let c = b.add("c", Const { value: 1 });
    let x = b.add("x", Add::default());
    b.connect(c.out().n, x.inp().a);
    b.connect_erased(
        Endpoint {
            node: c.index(),
            port: 9,
        },
        Endpoint {
            node: x.index(),
            port: 1,
        },
    );
    let found = problems(b.build());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].to_string(), "c.#9: no such output port");
}

fn echo_flow() -> Flow {
    let mut b = Flow::builder("echo");
    let n = b.input::<u64>("n");
    let x = b.add("x", Add::default());
    b.connect(n, x.inp().a);
    b.output("n", x.out().n);
    b.output("raw", n);
    b.build().unwrap()
}

#[tokio::test]
async fn flow_inputs_are_checked_before_anything_runs() {
    let flow = echo_flow();
    let engine = Engine::new();
    let err = engine.run(&flow, Inputs::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "flow input `n` is required but was not given"
    );
    let err = engine
        .run(&flow, Inputs::new().set("n", 1u64).set("m", 2u64))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "flow input `m` is not declared by the flow (declared: n)"
    );
    let err = engine
        .run(&flow, Inputs::new().set("n", "one".to_string()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "flow input `n` expects `u64`, got `alloc::string::String`"
    );
    assert!(engine.start(&flow, Inputs::new()).is_err());
}

#[tokio::test]
async fn json_inputs_are_decoded_and_bad_json_fails_the_consuming_node() {
    let flow = echo_flow();
    let engine = Engine::new();
    let inputs = Inputs::from_json(serde_json::json!({"n": 41}).as_object().unwrap().clone());
    let outcome = engine.run(&flow, inputs).await.unwrap();
    assert_eq!(outcome.output::<u64>("n").unwrap(), 41);
    assert_eq!(outcome.output::<u64>("raw").unwrap(), 41);
    assert_eq!(
        outcome.outputs_json().unwrap(),
        *serde_json::json!({"n": 41, "raw": 41}).as_object().unwrap()
    );
    let err = outcome.output::<String>("n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("flow output `n`: expected a value of type `alloc::string::String`"),
        "{err}"
    );
    assert!(outcome.output::<u64>("nope").is_err());

    let inputs = Inputs::from_json(
        serde_json::json!({"n": "forty"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let err = engine.run(&flow, inputs).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "node `x` failed after 1 attempt(s): input port `a`: expected a value of type `u64`"
        ),
        "{text}"
    );
}

/// Panics.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Num)]
pub(crate) struct Panics {}

impl Run for Panics {
    async fn run(&self, _: (), _: &Context) -> Result<Num, NodeError> {
        panic!("boom")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_node_fails_cleanly() {
    let mut b = Flow::builder("panics");
    b.add("p", Panics {});
    let flow = b.build().unwrap();
    let err = Engine::new().run(&flow, Inputs::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `p` failed after 1 attempt(s): node panicked: boom"
    );
}

/// Reads a secret.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = Text)]
pub(crate) struct NeedsSecret {
    /// The secret's name.
    pub(crate) name: String,
}

/// A text.
#[derive(Ports, Debug)]
pub(crate) struct Text {
    /// The text.
    pub(crate) text: String,
}

impl Run for NeedsSecret {
    async fn run(&self, _: (), ctx: &Context) -> Result<Text, NodeError> {
        let secret = ctx.secret(&self.name)?;
        Ok(Text {
            text: format!("{secret:?} has {} chars", secret.expose().len()),
        })
    }
}

#[tokio::test]
async fn secrets_are_redacted_and_missing_ones_are_named() {
    let mut b = Flow::builder("secrets");
    let s = b.add(
        "s",
        NeedsSecret {
            name: "API_KEY".into(),
        },
    );
    b.output("text", s.out().text);
    let flow = b.build().unwrap();
    let engine = Engine::builder()
        .secrets(ghostflow::MapSecrets::new().with("API_KEY", "hunter2"))
        .build();
    let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
    assert_eq!(
        outcome.output::<String>("text").unwrap(),
        "Secret(***) has 7 chars"
    );

    let engine = Engine::builder()
        .secrets(ghostflow::MapSecrets::new())
        .build();
    let err = engine.run(&flow, Inputs::new()).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("node `s`: secret `API_KEY` is not set"),
        "{err}"
    );
}
