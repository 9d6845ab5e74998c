//! The floor: a hand-written tokio executor with nothing but what a DAG
//! needs. Each node has an atomic count of inputs still to come; a node is
//! spawned as a task when its last input arrives; values live in a shared
//! array of atomics. No policies, no events, no store, no type erasure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::contender::{Built, Contender, Ran};
use crate::shapes::{Shape, step};

/// The tokio reference executor.
#[derive(Debug, Default)]
pub struct TokioReference;

impl Contender for TokioReference {
    fn name(&self) -> &'static str {
        "tokio-reference"
    }

    fn unsupported(&self, _shape: &Shape) -> Option<String> {
        None
    }

    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built> {
        let n = shape.len();
        let mut succ: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut pending = Vec::with_capacity(n);
        for (node, preds) in shape.preds.iter().enumerate() {
            for &p in preds {
                succ[p].push(node as u32);
            }
            pending.push(AtomicU32::new(preds.len() as u32));
        }
        let sinks = succ.iter().map(Vec::is_empty).collect();
        Box::new(Graph(Arc::new(GraphState {
            shape: shape.clone(),
            succ: succ.into_iter().map(Vec::into_boxed_slice).collect(),
            pending: pending.into_boxed_slice(),
            values: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sinks,
            remaining: AtomicUsize::new(n),
            checksum: AtomicU64::new(0),
            done: Notify::new(),
        })))
    }
}

struct GraphState {
    shape: Arc<Shape>,
    succ: Box<[Box<[u32]>]>,
    pending: Box<[AtomicU32]>,
    values: Box<[AtomicU64]>,
    sinks: Box<[bool]>,
    remaining: AtomicUsize,
    checksum: AtomicU64,
    done: Notify,
}

struct Graph(Arc<GraphState>);

impl Built for Graph {
    fn run(self: Box<Self>) -> BoxFuture<'static, Ran> {
        let graph = self.0;
        Box::pin(async move {
            if graph.sinks.is_empty() {
                return Ran::new(0, graph);
            }
            for (node, preds) in graph.shape.preds.iter().enumerate() {
                if preds.is_empty() {
                    tokio::spawn(run_node(graph.clone(), node as u32));
                }
            }
            graph.done.notified().await;
            Ran::new(graph.checksum.load(Ordering::Acquire), graph)
        })
    }
}

async fn run_node(graph: Arc<GraphState>, node: u32) {
    let i = node as usize;
    let value = step(
        graph.shape.preds[i]
            .iter()
            .map(|&p| graph.values[p].load(Ordering::Acquire)),
    );
    graph.values[i].store(value, Ordering::Release);
    if graph.sinks[i] {
        graph.checksum.fetch_add(value, Ordering::AcqRel);
    }
    for &s in graph.succ[i].iter() {
        if graph.pending[s as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
            spawn_node(&graph, s);
        }
    }
    if graph.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        graph.done.notify_one();
    }
}

/// Spawns `node`. A separate function, so that the recursive spawn inside
/// [`run_node`] does not need `run_node`'s own future type.
fn spawn_node(graph: &Arc<GraphState>, node: u32) {
    tokio::spawn(run_node(graph.clone(), node));
}
