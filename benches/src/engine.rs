//! GhostFlow as a contender: a [`Step`] node per shape node, wired with the
//! erased builder API, run by an [`Engine`] with its defaults (memory store,
//! no subscriber) or with one event subscriber attached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use ghostflow::node::BoxFuture as NodeFuture;
use ghostflow::{
    ChannelSink, Context, Endpoint, Engine, ErasedNode, EventKind, Flow, Inputs, NodeError,
    NodeIndex, NodeSpec, PortSpec, Value,
};

use crate::contender::{Built, Contender, Ran};
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
        mut inputs: Vec<Option<Value>>,
        _ctx: &'a Context,
    ) -> NodeFuture<'a, Result<Vec<Option<Value>>, NodeError>> {
        Box::pin(async move {
            let mut out = step([]);
            for slot in inputs.iter_mut() {
                let value = slot
                    .take()
                    .ok_or_else(|| NodeError::permanent("missing input"))?;
                out = out.wrapping_add(value.take::<u64>().map_err(NodeError::from)?);
            }
            if let Some(checksum) = &self.checksum {
                checksum.fetch_add(out, Ordering::AcqRel);
            }
            // The emptied input vector carries the output, as typed nodes do.
            inputs.clear();
            inputs.push(Some(Value::new(out)));
            Ok(inputs)
        })
    }

    fn config_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        Ok(serde_json::json!({}))
    }
}

/// The specs of [`Step`] nodes by arity: a node type's spec is made once,
/// as a registry makes it once per node type, not once per flow.
#[derive(Debug, Default)]
pub struct Specs(Mutex<HashMap<usize, Arc<NodeSpec>>>);

impl Specs {
    /// The spec of a step with `inputs` inputs.
    pub fn get(&self, inputs: usize) -> Arc<NodeSpec> {
        self.0
            .lock()
            .expect("the spec cache is not poisoned")
            .entry(inputs)
            .or_insert_with(|| Step::spec(inputs))
            .clone()
    }
}

/// Builds the GhostFlow flow of `shape`; sinks add to `checksum`.
pub fn build_flow(shape: &Shape, specs: &Specs, checksum: &Arc<AtomicU64>) -> Flow {
    build_flow_timed(shape, specs, checksum).0
}

/// [`build_flow`], also returning how long the final step took: the
/// builder's `build()`, which validates the graph and compiles the plan.
pub fn build_flow_timed(
    shape: &Shape,
    specs: &Specs,
    checksum: &Arc<AtomicU64>,
) -> (Flow, Duration) {
    let sinks = shape.sinks();
    let mut specs_here: HashMap<usize, Arc<NodeSpec>> = HashMap::new();
    let mut b = Flow::builder(shape.name);
    let nodes: Vec<NodeIndex> = shape
        .preds
        .iter()
        .enumerate()
        .map(|(i, preds)| {
            let spec = specs_here
                .entry(preds.len())
                .or_insert_with(|| specs.get(preds.len()))
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
    let began = Instant::now();
    let flow = b.build().expect("benchmark shapes are valid flows");
    (flow, began.elapsed())
}

/// GhostFlow with `Engine::new()`: memory store, no event subscriber.
#[derive(Debug, Default)]
pub struct GhostFlow {
    engine: Engine,
    specs: Specs,
}

impl Contender for GhostFlow {
    fn name(&self) -> &'static str {
        "ghostflow"
    }

    fn unsupported(&self, shape: &Shape) -> Option<String> {
        (shape.max_fan_in() > u16::MAX as usize)
            .then(|| "a node has more than 65,535 input ports".into())
    }

    fn prepare(&self, shape: &Shape) {
        for preds in &shape.preds {
            self.specs.get(preds.len());
        }
    }

    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built> {
        let checksum = Arc::new(AtomicU64::new(0));
        let (flow, compile) = build_flow_timed(shape, &self.specs, &checksum);
        Box::new(GhostFlowRun {
            engine: self.engine.clone(),
            flow,
            compile,
            checksum,
            events: None,
        })
    }
}

/// GhostFlow with one event subscriber: an engine sink whose channel a task
/// drains while the flow runs. The run ends when the subscriber has seen the
/// last event, and the number of events it saw is checked.
#[derive(Debug, Default)]
pub struct GhostFlowEvents {
    specs: Specs,
}

impl Contender for GhostFlowEvents {
    fn name(&self) -> &'static str {
        "ghostflow+events"
    }

    fn unsupported(&self, shape: &Shape) -> Option<String> {
        GhostFlow::default().unsupported(shape)
    }

    fn prepare(&self, shape: &Shape) {
        for preds in &shape.preds {
            self.specs.get(preds.len());
        }
    }

    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built> {
        let checksum = Arc::new(AtomicU64::new(0));
        let (flow, compile) = build_flow_timed(shape, &self.specs, &checksum);
        let (sink, rx) = ChannelSink::new();
        let engine = Engine::builder().event_sink(sink).build();
        Box::new(GhostFlowRun {
            engine,
            flow,
            compile,
            checksum,
            events: Some(rx),
        })
    }
}

struct GhostFlowRun {
    engine: Engine,
    flow: Flow,
    compile: Duration,
    checksum: Arc<AtomicU64>,
    events: Option<tokio::sync::mpsc::UnboundedReceiver<ghostflow::Event>>,
}

impl Built for GhostFlowRun {
    fn compile_time(&self) -> Option<Duration> {
        Some(self.compile)
    }

    fn rerun(&self) -> Option<Box<dyn Built>> {
        // The event variant's subscriber channel is single-use.
        if self.events.is_some() {
            return None;
        }
        Some(Box::new(GhostFlowRun {
            engine: self.engine.clone(),
            flow: self.flow.clone(),
            compile: self.compile,
            checksum: self.checksum.clone(),
            events: None,
        }))
    }

    fn run(self: Box<Self>) -> BoxFuture<'static, Ran> {
        Box::pin(async move {
            let GhostFlowRun {
                engine,
                flow,
                checksum,
                events,
                ..
            } = *self;
            checksum.store(0, Ordering::Release);
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
            let outcome = engine
                .run(&flow, Inputs::new())
                .await
                .expect("benchmark flows succeed");
            if let Some(subscriber) = subscriber {
                let seen = subscriber.await.expect("the subscriber does not panic");
                // run started, started + succeeded per node, run finished
                assert_eq!(seen, 2 * flow.nodes().len() + 2, "events lost");
            }
            Ran::new(checksum.load(Ordering::Acquire), (engine, flow, outcome))
        })
    }
}
