//! Criterion benchmarks of the engine, for regression tracking:
//! plan compilation, the scheduler on the comparison shapes, passing JSON
//! payloads along edges, and event fan-out to subscribers.
//!
//! Run with `cargo bench -p ghostflow-benches` (or `-- <filter>`). The
//! side-by-side comparison with other executors is the `compare` binary.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ghostflow::prelude::*;
use ghostflow::{ChannelSink, Value};
use ghostflow_benches::engine::{Specs, build_flow};
use ghostflow_benches::shapes;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn compile(c: &mut Criterion) {
    let specs = Specs::default();
    let mut group = c.benchmark_group("compile");
    for shape in shapes::all() {
        let checksum = Arc::new(AtomicU64::new(0));
        group.throughput(Throughput::Elements(shape.len() as u64));
        group.bench_function(shape.name, |b| {
            b.iter(|| build_flow(&shape, &specs, &checksum))
        });
    }
    group.finish();
}

fn scheduler(c: &mut Criterion) {
    let rt = runtime();
    let engine = Engine::new();
    let specs = Specs::default();
    let mut group = c.benchmark_group("scheduler");
    for shape in shapes::all() {
        let checksum = Arc::new(AtomicU64::new(0));
        let flow = build_flow(&shape, &specs, &checksum);
        group.throughput(Throughput::Elements(shape.len() as u64));
        group.bench_function(shape.name, |b| {
            b.iter(|| {
                rt.block_on(engine.run(&flow, Inputs::new()))
                    .expect("bench flows succeed")
            })
        });
    }
    group.finish();
}

/// A JSON document.
#[derive(Ports, Debug)]
pub struct Doc {
    /// The document.
    pub doc: Arc<serde_json::Value>,
}

/// A length.
#[derive(Ports, Debug)]
pub struct Len {
    /// Number of members of the document's `items`.
    pub len: u64,
}

/// Passes a document on unchanged.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Doc, output = Doc)]
pub struct Forward {}

impl Run for Forward {
    async fn run(&self, input: Doc, _: &Context) -> Result<Doc, NodeError> {
        Ok(input)
    }
}

/// Counts the document's items.
#[derive(Node, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[node(input = Doc, output = Len)]
pub struct CountItems {}

impl Run for CountItems {
    async fn run(&self, input: Doc, _: &Context) -> Result<Len, NodeError> {
        let len = input.doc["items"].as_array().map_or(0, Vec::len);
        Ok(Len { len: len as u64 })
    }
}

/// A JSON document of about `bytes` bytes.
fn payload(bytes: usize) -> serde_json::Value {
    let item = serde_json::json!({"id": 12345, "name": "a node name", "tags": ["x", "y"]});
    let per_item = item.to_string().len() + 1;
    let items = vec![item; (bytes / per_item).max(1)];
    serde_json::json!({ "items": items })
}

/// A chain of 10 forwarding nodes, then 10 readers of the last one.
fn payload_flow() -> Flow {
    let mut b = Flow::builder("payloads");
    let input = b.input::<Arc<serde_json::Value>>("doc");
    let mut last = b.add("f0", Forward {});
    b.connect(input, last.inp().doc);
    for i in 1..10 {
        let next = b.add(format!("f{i}"), Forward {});
        b.connect(last.out().doc, next.inp().doc);
        last = next;
    }
    for i in 0..10 {
        let reader = b.add(format!("r{i}"), CountItems {});
        b.connect(last.out().doc, reader.inp().doc);
        b.output(format!("len{i}"), reader.out().len);
    }
    b.build().expect("a valid flow")
}

fn values(c: &mut Criterion) {
    let rt = runtime();
    let engine = Engine::new();
    let flow = payload_flow();
    let mut group = c.benchmark_group("values");
    for size in [1024, 100 * 1024] {
        let doc = Arc::new(payload(size));
        let expected = doc["items"].as_array().map_or(0, Vec::len) as u64;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("chain10_fanout10", size),
            &doc,
            |b, doc| {
                b.iter(|| {
                    let inputs =
                        Inputs::new().set_value("doc", Value::from_arc(Arc::new(doc.clone())));
                    let outcome = rt.block_on(engine.run(&flow, inputs)).expect("runs");
                    assert_eq!(outcome.output::<u64>("len9").expect("output"), expected);
                })
            },
        );
    }
    group.finish();
}

fn events(c: &mut Criterion) {
    let rt = runtime();
    let shape = shapes::chain(100);
    let specs = Specs::default();
    let checksum = Arc::new(AtomicU64::new(0));
    let flow = build_flow(&shape, &specs, &checksum);
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(shape.len() as u64));
    for subscribers in [0usize, 1, 4] {
        let mut builder = Engine::builder();
        let mut receivers = Vec::new();
        for _ in 0..subscribers {
            let (sink, rx) = ChannelSink::new();
            builder = builder.event_sink(sink);
            receivers.push(rx);
        }
        let engine = builder.build();
        group.bench_function(BenchmarkId::new("chain100_sinks", subscribers), |b| {
            b.iter(|| {
                rt.block_on(engine.run(&flow, Inputs::new())).expect("runs");
                for rx in &mut receivers {
                    while rx.try_recv().is_ok() {}
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, compile, scheduler, values, events);
criterion_main!(benches);
