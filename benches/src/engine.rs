//! GhostFlow as a contender: a [`Step`] node per shape node, wired with the
//! erased builder API, run by an [`Engine`] with its defaults (memory store,
//! no subscriber) or with one event subscriber attached.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use ghostflow::node::BoxFuture as NodeFuture;
use ghostflow::{
    ChannelSink, Context, Endpoint, Engine, ErasedNode, EventKind, Flow, Inputs, NodeError,
    NodeIndex, NodeSpec, PortSpec, Value,
};

use crate::contender::{Built, Contender};
use crate::shapes::{Shape, step};

/// A node with `n` `u64` inputs and one `u64` output: `1 + sum(inputs)`. A
/// sink also adds its value to the run's checksum.
#[derive(Debug)]
pub struct Step {
    spec: Arc<NodeSpec>,
    checksum: Option<Arc<AtomicU64>>,
}

impl Step {
    /// The spec of a step with `inputs` inputs.
    pub fn spec(inputs: usize) -> Arc<NodeSpec> {
        Arc::new(NodeSpec {
            type_name: "step".into(),
            version: "1".into(),
            description: "Outputs one plus the sum of its inputs.".into(),
            category: "bench".into(),
            config_schema: serde_json::json!({}),
            inputs: (0..inputs)
                .map(|i| PortSpec::of::<u64>(&format!("in{i}"), None, true))
                .collect(),
            outputs: vec![PortSpec::of::<u64>("out", None, true)],
        })
    }

    /// A step with the given spec; a sink when `checksum` is set.
    pub fn new(spec: Arc<NodeSpec>, checksum: Option<Arc<AtomicU64>>) -> Self {
        Step { spec, checksum }
    }
}

impl ErasedNode for Step {
    fn spec(&self) -> Arc<NodeSpec> {
        self.spec.clone()
    }

    fn run<'a>(
        &'a self,
        inputs: Vec<Option<Value>>,
        _ctx: &'a Context,
    ) -> NodeFuture<'a, Result<Vec<Option<Value>>, NodeError>> {
        Box::pin(async move {
            let mut values = Vec::with_capacity(inputs.len());
            for slot in inputs {
                let value = slot.ok_or_else(|| NodeError::permanent("missing input"))?;
                values.push(value.take::<u64>().map_err(NodeError::from)?);
            }
            let out = step(values);
            if let Some(checksum) = &self.checksum {
                checksum.fetch_add(out, Ordering::AcqRel);
            }
            Ok(vec![Some(Value::new(out))])
        })
    }

    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(serde_json::json!({}))
    }
}

/// Builds the GhostFlow flow of `shape`; sinks add to `checksum`. Specs are
/// shared per arity, as a registry shares them per node type.
pub fn build_flow(shape: &Shape, checksum: &Arc<AtomicU64>) -> Flow {
    let sinks = shape.sinks();
    let mut specs: HashMap<usize, Arc<NodeSpec>> = HashMap::new();
    let mut b = Flow::builder(shape.name);
    let nodes: Vec<NodeIndex> = shape
        .preds
        .iter()
        .enumerate()
        .map(|(i, preds)| {
            let spec = specs
                .entry(preds.len())
                .or_insert_with(|| Step::spec(preds.len()))
                .clone();
            let node = Step::new(spec, sinks[i].then(|| checksum.clone()));
            b.add_erased(format!("n{i}"), Arc::new(node))
        })
        .collect();
    for (i, preds) in shape.preds.iter().enumerate() {
        for (slot, &p) in preds.iter().enumerate() {
            b.connect_erased(
                Endpoint {
                    node: nodes[p],
                    port: 0,
                },
                Endpoint {
                    node: nodes[i],
                    port: slot as u16,
                },
            );
        }
    }
    b.build().expect("benchmark shapes are valid flows")
}

/// GhostFlow with `Engine::new()`: memory store, no event subscriber.
#[derive(Debug, Default)]
pub struct GhostFlow {
    engine: Engine,
}

impl Contender for GhostFlow {
    fn name(&self) -> &'static str {
        "ghostflow"
    }

    fn unsupported(&self, shape: &Shape) -> Option<String> {
        (shape.max_fan_in() > u16::MAX as usize)
            .then(|| "a node has more than 65,535 input ports".into())
    }

    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built> {
        let checksum = Arc::new(AtomicU64::new(0));
        let flow = build_flow(shape, &checksum);
        Box::new(GhostFlowRun {
            engine: self.engine.clone(),
            flow,
            checksum,
            events: None,
        })
    }
}

/// GhostFlow with one event subscriber: an engine sink whose channel a task
/// drains while the flow runs. The run ends when the subscriber has seen the
/// last event, and the number of events it saw is checked.
#[derive(Debug, Default)]
pub struct GhostFlowEvents;

impl Contender for GhostFlowEvents {
    fn name(&self) -> &'static str {
        "ghostflow+events"
    }

    fn unsupported(&self, shape: &Shape) -> Option<String> {
        GhostFlow::default().unsupported(shape)
    }

    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built> {
        let checksum = Arc::new(AtomicU64::new(0));
        let flow = build_flow(shape, &checksum);
        let (sink, rx) = ChannelSink::new();
        let engine = Engine::builder().event_sink(sink).build();
        Box::new(GhostFlowRun {
            engine,
            flow,
            checksum,
            events: Some(rx),
        })
    }
}

struct GhostFlowRun {
    engine: Engine,
    flow: Flow,
    checksum: Arc<AtomicU64>,
    events: Option<tokio::sync::mpsc::UnboundedReceiver<ghostflow::Event>>,
}

impl Built for GhostFlowRun {
    fn run(self: Box<Self>) -> BoxFuture<'static, u64> {
        Box::pin(async move {
            let GhostFlowRun {
                engine,
                flow,
                checksum,
                events,
            } = *self;
            let subscriber = events.map(|mut rx| {
                tokio::spawn(async move {
                    let mut seen = 0usize;
                    while let Some(event) = rx.recv().await {
                        seen += 1;
                        if matches!(event.kind, EventKind::RunFinished { .. }) {
                            break;
                        }
                    }
                    seen
                })
            });
            engine
                .run(&flow, Inputs::new())
                .await
                .expect("benchmark flows succeed");
            if let Some(subscriber) = subscriber {
                let seen = subscriber.await.expect("the subscriber does not panic");
                // run started, started + succeeded per node, run finished
                assert_eq!(seen, 2 * flow.nodes().len() + 2, "events lost");
            }
            checksum.load(Ordering::Acquire)
        })
    }
}
