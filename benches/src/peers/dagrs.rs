//! [dagrs](https://crates.io/crates/dagrs) as a contender, through its
//! flow-based `Graph` API: one `DefaultNode` per shape node, whose [`Action`]
//! receives its inputs from its in-channels, broadcasts `1 + sum(inputs)` on
//! its out-channels as a [`Content`], and returns it as its [`Output`]. One
//! `add_edge` per node with successors wires the channels. The run's result
//! is read back from the sinks' outputs with [`Graph::get_results`] after
//! [`Graph::async_start`], which spawns every node on the ambient tokio
//! runtime.

use std::sync::Arc;

use ::dagrs::async_trait::async_trait;
use ::dagrs::{
    Action, Content, DagrsError, DefaultNode, EnvVar, ErrorCode, Graph, InChannels, Node, NodeId,
    NodeTable, OutChannels, Output,
};
use futures::future::BoxFuture;

use crate::contender::{Built, Contender, Ran};
use crate::shapes::{Shape, step};

/// The dagrs contender.
#[derive(Debug, Default)]
pub struct Dagrs;

impl Contender for Dagrs {
    fn name(&self) -> &'static str {
        "dagrs"
    }

    fn unsupported(&self, _shape: &Shape) -> Option<String> {
        None
    }

    fn build(&self, shape: &Arc<Shape>) -> Box<dyn Built> {
        let mut table = NodeTable::new();
        let mut graph = Graph::new();
        let mut ids = Vec::with_capacity(shape.len());
        for i in 0..shape.len() {
            let node = DefaultNode::with_action(format!("n{i}"), StepAction, &mut table);
            ids.push(node.id());
            graph.add_node(node).expect("a fresh node id");
        }
        for (from, succ) in shape.successors().iter().enumerate() {
            if !succ.is_empty() {
                graph
                    .add_edge(ids[from], succ.iter().map(|&to| ids[to]))
                    .expect("both ends are in the graph");
            }
        }
        graph.set_env(EnvVar::new(table));
        let sinks = shape
            .sinks()
            .iter()
            .zip(&ids)
            .filter(|(sink, _)| **sink)
            .map(|(_, id)| *id)
            .collect();
        Box::new(DagrsGraph { graph, sinks })
    }
}

/// A built dagrs graph and the ids of its sinks.
struct DagrsGraph {
    graph: Graph,
    sinks: Vec<NodeId>,
}

impl Built for DagrsGraph {
    fn run(self: Box<Self>) -> BoxFuture<'static, Ran> {
        Box::pin(async move {
            let DagrsGraph { mut graph, sinks } = *self;
            graph.async_start().await.expect("the dagrs run failed");
            let results = graph.get_results::<u64>();
            let checksum = sinks.iter().fold(0u64, |acc, id| {
                let value = results
                    .get(id)
                    .and_then(Option::as_deref)
                    .expect("dagrs kept the sink's output");
                acc.wrapping_add(*value)
            });
            Ran::new(checksum, (graph, results))
        })
    }
}

/// What every node does: one plus the sum of what its in-channels deliver,
/// sent on to every successor and returned as the node's output.
struct StepAction;

#[async_trait]
impl Action for StepAction {
    async fn run(
        &self,
        inputs: &mut InChannels,
        outputs: &mut OutChannels,
        _env: Arc<EnvVar>,
    ) -> Output {
        let received = inputs
            .map(|content| {
                content.and_then(|c| {
                    c.get::<u64>().copied().ok_or_else(|| {
                        DagrsError::new(
                            ErrorCode::DgRun0006NodeExecutionFailed,
                            "an input is not a u64",
                        )
                    })
                })
            })
            .await;
        let values = match received.into_iter().collect::<Result<Vec<u64>, _>>() {
            Ok(values) => values,
            Err(e) => return Output::error(e),
        };
        let value = step(values);
        for sent in outputs.broadcast(Content::new(value)).await {
            if let Err(e) = sent {
                return Output::error(e);
            }
        }
        Output::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes;

    fn run(shape: Shape) -> u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let shape = Arc::new(shape);
        let built = {
            let _guard = rt.enter();
            Dagrs.build(&shape)
        };
        rt.block_on(built.run()).checksum
    }

    #[test]
    fn computes_the_reference_on_small_shapes() {
        for shape in [
            shapes::diamond(),
            shapes::ai_flow(),
            shapes::chain(20),
            shapes::fan_in_tree(100, 8),
            shapes::layered_random(5, 10, 7),
            shapes::fan_out(50),
            shapes::independent(10),
        ] {
            assert_eq!(run(shape.clone()), shape.reference(), "{}", shape.name);
        }
    }
}
