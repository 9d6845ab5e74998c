//! Every document in `examples/flows/` loads with the node library and runs
//! with its defaults to the outputs it promises; the broken one is refused
//! with every mistake located.
#![cfg(all(feature = "control", feature = "data", feature = "text"))]

use std::path::{Path, PathBuf};

use ghostflow::document::{Loaded, Loader};
use ghostflow::{Engine, Inputs, NodeStatus, Outcome};
use serde_json::json;

fn flows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flows")
}

fn load(name: &str) -> Loaded {
    let registry = ghostflow_nodes::registry();
    Loader::new(&registry)
        .load_path(&flows_dir().join(name))
        .unwrap_or_else(|e| panic!("{name} does not load:\n{e}"))
}

async fn run(name: &str, inputs: serde_json::Value) -> Outcome {
    let loaded = load(name);
    let inputs = Inputs::from_json(inputs.as_object().cloned().unwrap_or_default());
    // The registry lets for-each and sub-flow nodes load their documents.
    Engine::builder()
        .registry(std::sync::Arc::new(ghostflow_nodes::registry()))
        .build()
        .run(&loaded.flow, inputs)
        .await
        .unwrap_or_else(|e| panic!("{name} failed: {e}"))
}

fn output(outcome: &Outcome, name: &str) -> serde_json::Value {
    outcome.output::<serde_json::Value>(name).unwrap()
}

#[tokio::test]
async fn hello_greets() {
    let outcome = run("hello.yaml", json!({})).await;
    assert_eq!(output(&outcome, "greeting"), json!("Hello, World!"));
    let outcome = run("hello.yaml", json!({"name": "ada lovelace"})).await;
    assert_eq!(output(&outcome, "greeting"), json!("Hello, Ada Lovelace!"));
}

#[tokio::test]
async fn branching_takes_one_branch() {
    let outcome = run("branching.yaml", json!({})).await;
    assert_eq!(
        output(&outcome, "decision"),
        json!("Order of 250 needs a manual review.")
    );
    assert_eq!(outcome.node("approve").unwrap().status, NodeStatus::Skipped);
    assert_eq!(
        output(&outcome, "summary"),
        json!({
            "customer": "ACME Corp",
            "amount": 250,
            "large": true,
            "decision": "Order of 250 needs a manual review."
        })
    );
    let outcome = run("branching.yaml", json!({"amount": 20})).await;
    assert_eq!(
        output(&outcome, "decision"),
        json!("Order of 20 approved automatically.")
    );
    assert_eq!(outcome.node("review").unwrap().status, NodeStatus::Skipped);
}

#[tokio::test(start_paused = true)]
async fn parallel_branches_overlap() {
    let begin = tokio::time::Instant::now();
    let outcome = run("parallel.yaml", json!({})).await;
    assert_eq!(
        output(&outcome, "report"),
        json!("2 sources for nightly-report, all fetched in parallel.")
    );
    // Three 300 ms waits, side by side (the clock is tokio's paused one).
    assert_eq!(begin.elapsed(), std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn error_handling_recovers() {
    let outcome = run("error-handling.yaml", json!({})).await;
    assert_eq!(
        output(&outcome, "report"),
        json!(
            r#"validate failed after 1 attempt(s): record has an invalid email (value: {"id":42,"email":"not-an-email"})"#
        )
    );
    assert_eq!(outcome.node("validate").unwrap().status, NodeStatus::Failed);
    assert_eq!(
        output(&outcome, "stored"),
        json!({"id": 42, "email": "not-an-email"})
    );
}

#[tokio::test]
async fn expressions_price_the_cart() {
    let outcome = run("expressions.yaml", json!({})).await;
    assert_eq!(
        output(&outcome, "cart"),
        json!({"subtotal": 6.5, "tax": 1.3, "total": 7.8})
    );
    assert_eq!(
        output(&outcome, "receipt"),
        // A template's final line break is dropped, as in Jinja.
        json!("notebook: 4.5\npencil: 1.25\neraser: 0.75\ntotal with tax: 7.8")
    );
    let outcome = run(
        "expressions.yaml",
        json!({"items": [{"name": "pen", "price": 3}], "tax_rate": 0.5}),
    )
    .await;
    assert_eq!(
        output(&outcome, "cart"),
        json!({"subtotal": 3, "tax": 1.5, "total": 4.5})
    );
}

#[tokio::test(start_paused = true)]
async fn for_each_checks_orders_two_at_a_time() {
    let begin = tokio::time::Instant::now();
    let outcome = run("for-each.yaml", json!({})).await;
    // Six 200 ms sub-flow runs, two at a time (tokio's paused clock).
    assert_eq!(begin.elapsed(), std::time::Duration::from_millis(600));
    let orders = output(&outcome, "orders");
    let ids: Vec<&str> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A-1", "A-2", "A-4", "A-5", "A-6"]);
    assert_eq!(orders[0]["total"], json!(15.5));
    assert_eq!(orders[2]["position"], json!(3));
    let rejected = output(&outcome, "rejected");
    assert_eq!(rejected[0]["index"], json!(2));
    assert!(
        rejected[0]["error"]
            .as_str()
            .unwrap()
            .contains("order has no lines"),
        "{rejected}"
    );
    assert_eq!(
        output(&outcome, "summary"),
        json!({"priced": 5, "rejected": ["A-3"], "revenue": 62.0})
    );
}

/// Serves `examples/data/` over real HTTP on an ephemeral port, as the
/// example's `python3 -m http.server` does; returns the base URL.
#[cfg(all(feature = "http", feature = "sql"))]
async fn serve_example_data() -> String {
    use axum::http::header;
    let orders = std::fs::read_to_string(flows_dir().join("../data/orders.json")).unwrap();
    let app = axum::Router::new().route(
        "/orders.json",
        axum::routing::get(move || async move {
            ([(header::CONTENT_TYPE, "application/json")], orders)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[cfg(all(feature = "http", feature = "sql"))]
#[tokio::test]
async fn http_to_sql_loads_paid_orders_once_however_often_it_runs() {
    let base = serve_example_data().await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("orders.db").display()
    );
    let inputs = json!({"source": format!("{base}/orders.json"), "database": database});
    let revenue = json!([
        {"customer": "Ada Lovelace", "orders": 2, "revenue": 18.5},
        {"customer": "Grace Hopper", "orders": 1, "revenue": 18.0}
    ]);
    for _ in 0..2 {
        let outcome = run("http-to-sql.yaml", inputs.clone()).await;
        // Three paid orders; the second run updates the same three rows.
        assert_eq!(output(&outcome, "stored"), json!(3));
        assert_eq!(output(&outcome, "revenue"), revenue);
    }
    // A source that is down fails the fetch, after its retries, naming it.
    let down = json!({"source": "http://127.0.0.1:9/orders.json", "database": inputs["database"]});
    let loaded = load("http-to-sql.yaml");
    let err = Engine::new()
        .run(
            &loaded.flow,
            Inputs::from_json(down.as_object().cloned().unwrap()),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("node `fetch` failed"), "{err}");
}

/// The RAG example against the model peer (OpenAI wire format), with a file
/// root of its own holding the handbook, as `ghostflow run` from the
/// repository root would see it.
#[cfg(all(feature = "ai", feature = "file"))]
#[tokio::test]
async fn rag_answers_from_the_retrieved_section() {
    use ghostflow_nodes::file::FileRoot;
    let peer = ghostflow_model_peer::ModelPeer::start().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("examples/data")).unwrap();
    std::fs::copy(
        flows_dir().join("../data/handbook.md"),
        root.path().join("examples/data/handbook.md"),
    )
    .unwrap();
    let engine = Engine::builder()
        .registry(std::sync::Arc::new(ghostflow_nodes::registry()))
        .resource(FileRoot::new(root.path()))
        .build();
    let flow = load("rag.yaml").flow;
    let ask = |question: &str| {
        Inputs::from_json(
            json!({"question": question, "model_url": peer.openai_url()})
                .as_object()
                .cloned()
                .unwrap(),
        )
    };
    let outcome = engine
        .run(
            &flow,
            ask("How many days of paid leave do new employees get?"),
        )
        .await
        .unwrap();
    assert_eq!(
        output(&outcome, "answer"),
        json!(
            "New employees get 25 days of paid leave per calendar year, counted from their first day."
        )
    );
    let sources = output(&outcome, "sources");
    assert!(
        sources[0]["text"]
            .as_str()
            .unwrap()
            .contains("## Paid leave"),
        "{sources}"
    );
    // The store persists; loading the handbook again replaces its sections
    // instead of adding copies, and another question finds another section.
    let outcome = engine
        .run(&flow, ask("How fast is broken equipment replaced?"))
        .await
        .unwrap();
    assert_eq!(
        output(&outcome, "answer"),
        json!("Broken equipment is replaced by the IT desk within two working days.")
    );
    assert_eq!(outcome.node("store").unwrap().status, NodeStatus::Succeeded);
    // The chat request carried the retrieved section in its system prompt.
    let chat = peer
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/chat/completions"))
        .unwrap();
    assert!(
        chat.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Broken equipment is replaced"),
        "{}",
        chat.body
    );
}

#[test]
fn every_example_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(flows_dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "yaml").then(|| path.file_name()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "branching.yaml",
            "error-handling.yaml",
            "expressions.yaml",
            "for-each.yaml",
            "hello.yaml",
            "http-to-sql.yaml",
            "parallel.yaml",
            "rag.yaml"
        ],
        "a new example needs a test here"
    );
}

#[test]
fn the_broken_example_reports_every_mistake_at_its_place() {
    let registry = ghostflow_nodes::registry();
    let path = flows_dir().join("broken/typos.yaml");
    let err = Loader::new(&registry).load_path(&path).unwrap_err();
    let text = err.to_string();
    let expected = [
        ":11:11: nodes[0].type: unknown node type `templte`; did you mean `template`?",
        ":16:19: nodes[1].config.ms: \"soon\" is not of type \"integer\"",
        ":25:14: nodes[3].config.fields.who: the expression reads `input.nmae`, but the flow has no input `nmae` (inputs: `name`); did you mean `name`?",
        "edges[1].from: node `wait` (delay) has no output port `valeu`",
        "outputs.text: node `shout` (template) has no output port `txt`",
    ];
    for line in expected {
        assert!(
            text.lines().any(|l| l.contains(line)),
            "missing `{line}` in:\n{text}"
        );
    }
    assert_eq!(err.problems.len(), 5, "{text}");
}
