//! Events, the store, value sharing.

use std::sync::Arc;

use ghostflow::prelude::*;
use ghostflow::{ChannelSink, EventKind, ExecutionStore, MemoryStore, NodeStatus, RunStatus};

use crate::common::*;

/// Reports progress twice.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Num, output = Num)]
pub(crate) struct Chatty {}

impl Run for Chatty {
    async fn run(&self, input: Num, ctx: &Context) -> Result<Num, NodeError> {
        ctx.progress(serde_json::json!({"token": "hel"}));
        ctx.progress("lo");
        Ok(input)
    }
}

fn small_flow() -> Flow {
    let mut b = Flow::builder("small");
    let c = b.add("c", Const { value: 5 });
    let chatty = b.add("chatty", Chatty {});
    b.connect(c.out().n, chatty.inp().n);
    b.output("n", chatty.out().n);
    b.build().unwrap()
}

fn kinds(events: &[ghostflow::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::RunStarted { .. } => "run_started".to_owned(),
            EventKind::NodeStarted { node, attempt, .. } => format!("started {node}#{attempt}"),
            EventKind::NodeSucceeded { node, .. } => format!("succeeded {node}"),
            EventKind::NodeProgress { node, data, .. } => format!("progress {node} {data}"),
            EventKind::RunFinished { status, .. } => format!("finished {status:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn an_execution_streams_its_events_in_order_even_when_subscribed_late() {
    let flow = small_flow();
    let execution = Engine::new().start(&flow, Inputs::new()).unwrap();
    let early = execution.events();
    let run_id = execution.run_id();
    // Subscribe again after the end: the log is replayed.
    let late_source = Engine::new().start(&flow, Inputs::new()).unwrap();
    let outcome = execution.wait().await.unwrap();
    assert_eq!(outcome.run_id(), run_id);
    let early: Vec<_> = futures::StreamExt::collect(early).await;
    let expected = [
        "run_started",
        "started c#1",
        "succeeded c",
        "started chatty#1",
        r#"progress chatty {"token":"hel"}"#,
        r#"progress chatty "lo""#,
        "succeeded chatty",
        "finished Succeeded",
    ];
    assert_eq!(kinds(&early), expected);
    assert!(early.iter().all(|e| e.run_id == run_id));
    assert!(early.windows(2).all(|w| w[0].elapsed <= w[1].elapsed));

    let late_events = late_source.events();
    let late_id = late_source.run_id();
    late_source.wait().await.unwrap();
    let late: Vec<_> = futures::StreamExt::collect(late_events).await;
    assert_eq!(kinds(&late), expected);
    assert!(late.iter().all(|e| e.run_id == late_id));
}

#[tokio::test]
async fn engine_sinks_see_every_execution_and_payloads_on_request() {
    let (sink, mut rx) = ChannelSink::new();
    let engine = Engine::builder().event_sink(sink.with_payloads()).build();
    let flow = small_flow();
    engine.run(&flow, Inputs::new()).await.unwrap();
    engine.run(&flow, Inputs::new()).await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    assert_eq!(events.len(), 16);
    let payload = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::NodeSucceeded { node, outputs, .. } if &**node == "chatty" => {
                outputs.clone()
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(payload),
        serde_json::json!({"n": 5})
    );
    // Events serialize to flat JSON objects for the CLI and the server.
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["event"], "run_started");
    assert_eq!(json["flow"], "small");
    assert!(json["elapsed_us"].is_u64());
}

#[tokio::test]
async fn failures_and_retries_are_events() {
    let (sink, mut rx) = ChannelSink::new();
    let engine = Engine::builder().event_sink(sink).build();
    let mut b = Flow::builder("retrying");
    let c = b.add("c", Const { value: 1 });
    let f = b.add(
        "flaky",
        Flaky {
            failures: 1,
            ..Flaky::default()
        },
    );
    b.connect(c.out().n, f.inp().n);
    b.policy(&f).retry(
        RetryPolicy::attempts(2)
            .backoff(std::time::Duration::from_millis(1))
            .jitter(0.0),
    );
    let flow = b.build().unwrap();
    engine.run(&flow, Inputs::new()).await.unwrap();
    let mut failed = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let EventKind::NodeFailed {
            node,
            attempt,
            error,
            retry_in,
            ..
        } = event.kind
        {
            failed.push((node.to_string(), attempt, error, retry_in));
        }
    }
    assert_eq!(
        failed,
        [(
            "flaky".to_owned(),
            1,
            "attempt 1 failed".to_owned(),
            Some(std::time::Duration::from_millis(1))
        )]
    );
}

#[tokio::test]
async fn the_store_holds_the_execution_state_as_plain_data() {
    let store = MemoryStore::new().with_outputs();
    let engine = Engine::builder().store(store.clone()).build();
    let flow = if_else();
    let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
    let state = store.load(outcome.run_id()).unwrap();
    assert_eq!(state.status, RunStatus::Succeeded);
    assert_eq!(state.flow, "branchy");
    assert_eq!(state.node("branch").unwrap().status, NodeStatus::Succeeded);
    assert_eq!(state.node("branch").unwrap().attempts, 1);
    assert_eq!(state.node("low").unwrap().status, NodeStatus::Skipped);
    let outputs = state.node("branch").unwrap().outputs.clone().unwrap();
    // `then`, `else`, and the implicit `error` port.
    assert_eq!(outputs.len(), 3);
    assert_eq!(
        outputs[0].as_ref().unwrap().downcast_ref::<u64>(),
        Some(&50)
    );
    assert!(outputs[1].is_none() && outputs[2].is_none());
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["nodes"][1]["status"], "succeeded");

    // Without `with_outputs`, the default keeps transitions but not values.
    let engine = Engine::new();
    let outcome = engine.run(&flow, Inputs::new()).await.unwrap();
    let state = engine.store().load(outcome.run_id()).unwrap();
    assert!(state.node("branch").unwrap().outputs.is_none());
    assert_eq!(state.status, RunStatus::Succeeded);
}

#[test]
fn the_memory_store_keeps_only_the_most_recent_executions() {
    let store = MemoryStore::with_capacity(2);
    let flow = if_else();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine = Engine::builder().store(store.clone()).build();
    let ids: Vec<_> = (0..3)
        .map(|_| {
            rt.block_on(engine.run(&flow, Inputs::new()))
                .unwrap()
                .run_id()
        })
        .collect();
    assert_eq!(store.run_ids(), ids[1..]);
    assert!(engine.store().load(ids[0]).is_none());
}

#[test]
fn the_memory_store_is_bounded_by_node_records_and_reuses_evicted_records() {
    // `branchy` has 4 nodes: two executions fit in 8 records, three do not.
    let store = MemoryStore::with_capacity(100).with_max_node_records(8);
    let engine = Engine::builder().store(store.clone()).build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ok = if_else();
    let ids: Vec<_> = (0..3)
        .map(|_| {
            rt.block_on(engine.run(&ok, Inputs::new()))
                .unwrap()
                .run_id()
        })
        .collect();
    assert_eq!(store.run_ids(), ids[1..]);

    // A failing run then reuses an evicted record: nothing of the old run
    // may show through.
    let mut b = Flow::builder("failing");
    let c = b.add("c", Const { value: 1 });
    let f = b.add(
        "f",
        Flaky {
            failures: 1,
            permanent: true,
            ..Flaky::default()
        },
    );
    let x = b.add("x", Add::default());
    let y = b.add("y", Add::default());
    b.connect(c.out().n, f.inp().n);
    b.connect(f.out().n, x.inp().a);
    b.connect(x.out().n, y.inp().a);
    let failing = b.build().unwrap();
    let err = rt
        .block_on(engine.run(&failing, Inputs::new()))
        .unwrap_err();
    assert!(err.to_string().contains("node `f` failed"), "{err}");
    let last = *store.run_ids().last().unwrap();
    let state = store.load(last).unwrap();
    assert_eq!(state.flow, "failing");
    assert_eq!(state.status, RunStatus::Failed);
    assert_eq!(state.node("c").unwrap().status, NodeStatus::Succeeded);
    assert_eq!(state.node("f").unwrap().status, NodeStatus::Failed);
    assert_eq!(
        state.node("f").unwrap().error.as_deref(),
        Some("attempt 1 failed")
    );
    assert_eq!(state.node("x").unwrap().status, NodeStatus::NotRun);
    assert_eq!(state.node("y").unwrap().attempts, 0);
    assert!(state.error.unwrap().contains("node `f` failed"));
}

fn if_else() -> Flow {
    let mut b = Flow::builder("branchy");
    let c = b.add("c", Const { value: 50 });
    let branch = b.add("branch", Branch { threshold: 10 });
    let low = b.add("low", Add::default());
    b.connect(c.out().n, branch.inp().n);
    b.connect(branch.out().otherwise, low.inp().a);
    b.build().unwrap()
}

/// A large payload.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Big {
    /// Bytes.
    pub(crate) bytes: Vec<u8>,
}

/// A shared large payload.
#[derive(Ports, Debug)]
pub(crate) struct BigPort {
    /// The payload.
    pub(crate) big: Arc<Big>,
}

/// An address.
#[derive(Ports, Debug)]
pub(crate) struct Address {
    /// Where the payload lives.
    pub(crate) addr: u64,
}

/// Makes a megabyte.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(output = BigPort)]
pub(crate) struct MakeBig {}

impl Run for MakeBig {
    async fn run(&self, _: (), _: &Context) -> Result<BigPort, NodeError> {
        Ok(BigPort {
            big: Arc::new(Big {
                bytes: vec![7; 1 << 20],
            }),
        })
    }
}

/// Reports where its payload lives.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = BigPort, output = Address)]
pub(crate) struct WhereIs {}

impl Run for WhereIs {
    async fn run(&self, input: BigPort, _: &Context) -> Result<Address, NodeError> {
        Ok(Address {
            addr: input.big.bytes.as_ptr() as u64,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_shares_values_instead_of_copying_them() {
    let mut b = Flow::builder("fan-out");
    let big = b.add("big", MakeBig {});
    let mut readers = Vec::new();
    for i in 0..8 {
        let r = b.add(format!("r{i}"), WhereIs {});
        b.connect(big.out().big, r.inp().big);
        b.output(format!("a{i}"), r.out().addr);
        readers.push(r);
    }
    b.output("big", big.out().big);
    let flow = b.build().unwrap();
    let outcome = Engine::new().run(&flow, Inputs::new()).await.unwrap();
    let original = outcome.output::<Arc<Big>>("big").unwrap().bytes.as_ptr() as u64;
    for i in 0..8 {
        assert_eq!(
            outcome.output::<u64>(&format!("a{i}")).unwrap(),
            original,
            "reader {i}"
        );
    }
}
